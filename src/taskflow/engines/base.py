"""The engine contract every engine kind implements."""

from __future__ import annotations

import abc
import contextlib
from typing import TYPE_CHECKING, Any

from taskflow.types.notifier import Notifier

if TYPE_CHECKING:
    from collections.abc import Iterator

    from taskflow.flow import Flow
    from taskflow.persistence.base import Backend
    from taskflow.persistence.models import FlowDetail
    from taskflow.storage import Storage

__all__ = ["Engine"]


class Engine(abc.ABC):
    """Runs one flow against one flow detail (and optionally a persistence backend).

    Args:
        flow: the flow (or lone atom) to run.
        flow_detail: where the flow's state and results are recorded.
        backend: the persistence backend ``flow_detail`` belongs to, if any.
        options: engine options (kind specific; unknown ones are ignored).
    """

    def __init__(
        self,
        flow: Flow,
        flow_detail: FlowDetail,
        backend: Backend | None,
        options: dict[str, Any] | None,
    ) -> None:
        self._flow = flow
        self._flow_detail = flow_detail
        self._backend = backend
        self._options = dict(options or {})
        self._notifier = Notifier()
        self._atom_notifier = Notifier()

    @property
    def notifier(self) -> Notifier:
        """Flow state changes: events are flow states, details {engine, flow_name, ...}."""
        return self._notifier

    @property
    def atom_notifier(self) -> Notifier:
        """Atom state changes: events are atom states, details {task_name, task_uuid, ...}."""
        return self._atom_notifier

    @property
    def options(self) -> dict[str, Any]:
        return self._options

    @property
    @abc.abstractmethod
    def storage(self) -> Storage:
        """The engine's :class:`~taskflow.storage.Storage`."""

    @property
    @abc.abstractmethod
    def statistics(self) -> dict[str, Any]:
        """Figures gathered about the last run (kind specific; empty when none were kept)."""

    @abc.abstractmethod
    def compile(self) -> None:
        """Compile the flow into a runnable plan (idempotent)."""

    @abc.abstractmethod
    def prepare(self) -> None:
        """Create the atoms' details and put the flow in a runnable state."""

    @abc.abstractmethod
    def validate(self) -> None:
        """Check that every requirement can be satisfied (MissingDependencies otherwise)."""

    @abc.abstractmethod
    def run(self, timeout: float | None = None) -> None:
        """Run the flow to a final state, raising its failures if it did not succeed."""

    @abc.abstractmethod
    def run_iter(self, timeout: float | None = None) -> Iterator[str]:
        """Run the flow step by step, yielding the engine's states."""

    @abc.abstractmethod
    def suspend(self) -> None:
        """Stop scheduling; in-flight atoms finish and the flow ends SUSPENDED."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Put every atom back to PENDING (results cleared) and the flow to PENDING."""

    def owning(self) -> contextlib.AbstractContextManager[None]:
        """Own the flow detail for the whole block, in one claim (taskflow's own; not in
        upstream TaskFlow).

        Each step that writes (``prepare``, ``run``, ``storage.inject`` outside a run)
        otherwise claims the flow and releases it again: a write each, and a lease renewed
        meanwhile. Inside this block they find it owned already. Re-entrant; the claim ends
        when the outermost block does. Raises what claiming does
        (:class:`~taskflow.exceptions.FlowOwned`). An engine that keeps no ownership
        (no backend, or a kind of its own) owns nothing here.
        """
        return contextlib.nullcontext()
