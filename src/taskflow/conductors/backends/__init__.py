"""Find a conductor kind by name: ``fetch('blocking', 'my-conductor', board, ...)``.

Kinds are looked up through :func:`taskflow._plugins.load`: the built-in ``blocking`` and
``nonblocking``, then ``taskflow.conductors`` entry points (upstream TaskFlow's group).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from taskflow import _plugins
from taskflow import exceptions as exc

if TYPE_CHECKING:
    from taskflow.conductors.base import Conductor
    from taskflow.jobs.base import JobBoard

__all__ = ["fetch"]

LOG = logging.getLogger(__name__)

#: Entry point group searched for conductor kinds.
CONDUCTOR_NAMESPACE = "taskflow.conductors"


def fetch(
    kind: str,
    name: str,
    jobboard: JobBoard,
    namespace: str = CONDUCTOR_NAMESPACE,
    **kwargs: Any,
) -> Conductor:
    """Create a conductor of ``kind`` named ``name`` that takes jobs from ``jobboard``.

    Args:
        kind: ``'blocking'``, ``'nonblocking'`` or a plugin's name.
        name: the name the conductor claims jobs with.
        jobboard: the board jobs come from.
        namespace: the entry point group to search.
        **kwargs: passed to the conductor's constructor (``persistence=``, ``engine=``...).

    Raises:
        taskflow.exceptions.NotFound: no conductor kind of that name.
        TypeError: an argument the kind does not take.
    """
    LOG.debug("Looking for %r conductor driver in %r", kind, namespace)
    try:
        conductor_cls = _plugins.load(namespace, kind)
    except exc.NotFound as err:
        raise exc.NotFound(f"Could not find conductor {kind}: {err.args[0]}") from None
    conductor: Conductor = conductor_cls(name, jobboard, **kwargs)
    return conductor
