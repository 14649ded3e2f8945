"""A jobboard on ZooKeeper, sharing its tree with upstream TaskFlow's boards.

``fetch('board', {'board': 'zookeeper', 'hosts': 'zk1:2181,zk2:2181', 'path':
'/taskflow/jobs'})`` or ``fetch('board', 'zookeeper://zk1:2181?path=/taskflow/jobs')``.
Jobs are sequential znodes under ``path`` and a claim is an ephemeral ``<job>.lock`` znode,
exactly as upstream TaskFlow 6.5 lays them out, so upstream's conductors and ours can work
the same board (see :mod:`taskflow._jobs.zookeeper` for the layout and what we add).

Configuration keys:

=====================  =========================================================================
``path``               where jobs live (default ``/taskflow/jobs``); the trash and the entities
                       go beside it, in ``<parent>/.trash`` and ``<parent>/.entities``
``hosts``              ``"h1:2181,h2:2181"``, a list or a ``{host: port}`` dict (default: the
                       URI's host, else ``localhost:2181``)
``timeout``            the ZooKeeper session timeout in seconds (default: ``lease``). A claim
                       lasts as long as its holder's session: a killed or paused holder's job
                       is claimable again once the session expires, which the server does
                       no sooner than its minimum session timeout (2 ticks, 4 s by default)
``lease``              seconds between checks that this board's claims are still held
                       (``lease / 3``), and the session timeout's default (default 3)
``handler``            a kazoo handler, or ``"threading"``, ``"eventlet"``, ``"gevent"``
``check_compatible``   check the server is ZooKeeper >= 3.4 on connect (default True)
``connect_timeout``    seconds ``connect()`` may take (default 10)
others                 see :func:`taskflow.utils.kazoo_utils.make_client`
=====================  =========================================================================

Beyond upstream's API: ``job.token`` (the fencing token of the claim), ``job.attempts``,
``board.trash(job, who, reason=None)``, ``board.iter_trash()``, ``board.wait_for_change()``
and ``board.holds(job)``; see :mod:`taskflow._jobs` for the guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow._jobs import zookeeper
from taskflow._jobs.board import Board, BoardJob
from taskflow._jobs.zookeeper import ZookeeperStore

if TYPE_CHECKING:
    from taskflow.persistence.base import Backend

__all__ = ["ZookeeperJob", "ZookeeperJobBoard"]


class ZookeeperJob(BoardJob):
    """A job of a :class:`ZookeeperJobBoard`."""

    @property
    def root(self) -> str:
        """Its board's jobs directory (the board's ``path``)."""
        board = self._board_impl
        assert isinstance(board, ZookeeperJobBoard)
        return board.path

    @property
    def path(self) -> str:
        """Its znode (``<board path>/jobNNNNNNNNNN``)."""
        return f"{self.root}/job{self.sequence:010d}"

    @property
    def lock_path(self) -> str:
        """The znode that exists while someone holds the job (``<path>.lock``)."""
        return self.path + ".lock"


class ZookeeperJobBoard(Board):
    """A jobboard on a ZooKeeper tree (configuration: the module docstring).

    Args:
        name: the board's name.
        conf: its configuration.
        client: a kazoo client to use instead of making one; started on connect if needed,
            never stopped by :meth:`close` (its owner does that).
        persistence: the backend jobs' books are loaded from.
        emit_notifications: whether :attr:`notifier` gets POSTED/REMOVAL events.

    Raises:
        ValueError, TypeError: a bad configuration value (the key is named); nothing
            connects yet.
    """

    job_class = ZookeeperJob

    #: Upstream's names for the layout and its limits (see :mod:`taskflow._jobs.zookeeper`).
    DEFAULT_PATH = zookeeper.DEFAULT_PATH
    TRASH_FOLDER = zookeeper.TRASH_DIR
    ENTITY_FOLDER = zookeeper.ENTITY_DIR
    JOB_PREFIX = zookeeper.JOB_PREFIX
    LOCK_POSTFIX = zookeeper.LOCK_SUFFIX
    MIN_ZK_VERSION = zookeeper.MIN_ZK_VERSION

    def __init__(
        self,
        name: str,
        conf: dict[str, Any],
        client: Any = None,
        persistence: Backend | None = None,
        emit_notifications: bool = True,
    ) -> None:
        self._zk = ZookeeperStore(conf, client=client)
        super().__init__(
            name,
            conf,
            self._zk,
            persistence=persistence,
            emit_notifications=emit_notifications,
        )

    @property
    def path(self) -> str:
        """Where the jobs are (normalized)."""
        return self._zk.path

    @property
    def trash_path(self) -> str:
        """Where trashed jobs go."""
        return self._zk.trash_path

    @property
    def entity_path(self) -> str:
        """Where registered entities go (``<entity_path>/<kind>/<name>``)."""
        return self._zk.entity_path
