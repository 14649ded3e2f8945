"""The engine's view of one flow detail: atom states, results, injections and lookups.

Theory of operation: every atom of a flow has one :class:`~taskflow.persistence.models.AtomDetail`
held in memory by this object. A transition mutates that detail in place and hands it to the
backend connection (``update_atom_details``), one atom record per write; nothing is re-read from
the backend. Without a backend nothing is written at all (the details in memory are the store).

Symbol lookups follow the precedence of the specification: atom injections, then flow injections
(which shadow atom outputs), then the providers visible from the atom's scope, nearest first.
That rule is written once, in :meth:`Storage.fetch_args`: the engine calls it with the
:class:`Binding` objects its compiler resolved for each atom, and the public scoped lookups
(``fetch_mapped_args(..., atom_name=X)`` and friends) build the same bindings through the scope
fetcher the engine installs with :meth:`Storage.set_scope_fetcher`. Before a flow is compiled
(no scope fetcher) every provider of a symbol is visible.

Threads: every write reads a record held here, changes it and saves it whole, so two writers
at once could create a record twice or save an older copy last. Each write therefore runs
under :attr:`Storage.lock`, from its read to the backend's answer; so do the reads that walk
every record. The engine's own argument lookups (:meth:`Storage.fetch_args`) read single
entries and take no lock, and its saves take it only when they reach a backend: one
uncontended acquire per write, next to a database round trip.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from taskflow import exceptions as exc
from taskflow import states
from taskflow.persistence import models
from taskflow.persistence.models import META_INJECTED, META_PROGRESS, META_PROGRESS_DETAILS

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from taskflow.atom import Atom
    from taskflow.persistence.base import Backend, Connection, Ownership
    from taskflow.retry import History
    from taskflow.types.failure import Failure

__all__ = [
    "META_INJECTED",
    "META_PROGRESS",
    "META_PROGRESS_DETAILS",
    "RETRY_ATTEMPTS",
    "RETRY_WAIT_TIMEOUT",
    "STATES_WITH_RESULTS",
    "Storage",
]

#: How many times a failed backend write may be attempted (kept for compatibility).
RETRY_ATTEMPTS = 3
#: Seconds to wait between those attempts (kept for compatibility).
RETRY_WAIT_TIMEOUT = 5
#: Atom states in which a result (or a failure) may be recorded for an atom.
STATES_WITH_RESULTS = (
    states.FAILURE,
    states.REVERTED,
    states.REVERTING,
    states.REVERT_FAILURE,
    states.SUCCESS,
)

LOG = logging.getLogger(__name__)

#: Name of the atom detail holding persisted flow-level injections.
_INJECTOR = "_TaskFlow_INJECTOR"

#: States in which an atom's execute result (or failure) can be read.
_EXECUTE_RESULT_STATES = frozenset((states.SUCCESS, states.FAILURE, states.REVERTING))
_REVERT_RESULT_STATES = frozenset((states.REVERTED, states.REVERT_FAILURE, states.REVERTING))


@functools.cache
def _detail_kind(cls: type) -> type[models.AtomDetail]:
    from taskflow.retry import Retry
    from taskflow.task import Task

    if issubclass(cls, Retry):
        return models.RetryDetail
    if issubclass(cls, Task):
        return models.TaskDetail
    raise TypeError(f"Unknown atom type {cls} requested to ensure (not a task or a retry)")


@functools.lru_cache(maxsize=64)
def _version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


def _new_uuid() -> str:
    """A random (version 4) UUID string, about four times cheaper than ``str(uuid4())``."""
    value = (random.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC << 60) | (
        0x8 << 60
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


#: ``(provider atom name, key into its result or None for all of it)``, nearest scope first.
Providers = tuple[tuple[str, Any], ...]
#: ``f(atom_name, symbol)``: the providers of ``symbol`` visible from that atom's scope, or
#: None when the atom is not part of the compiled flow.
ScopeFetcher = Callable[[str, str], "Providers | None"]


@dataclass(slots=True)  # not frozen: compiling a flow makes one per argument, cheaply
class Binding:
    """Where one argument of an atom takes its value from.

    Engines resolve these once per atom when they compile a flow; :meth:`Storage.fetch_args`
    reads them.
    """

    arg: str  # the parameter name
    symbol: str  # the name the value is looked up under
    optional: bool  # an unavailable value leaves the argument out instead of failing
    providers: Providers


#: What :func:`_result_value` returns when a provider has no value for a lookup.
_NOTHING: Final[Any] = object()


def _result_value(ad: models.AtomDetail, key: Any) -> Any:
    """The value ``ad`` provides under ``key``, its Failure, or ``_NOTHING``.

    An atom whose execution failed provides its Failure until it is reset, whatever its state
    (REVERTED after the failure, say), as upstream. Otherwise a provider counts once it has
    executed (SUCCESS) and while it reverts; a retry provides the value of its latest attempt.
    A result that lacks ``key`` provides nothing, so the lookup moves on to the next provider.
    """
    failure = ad.failure
    if failure is not None:
        return failure
    if ad.state not in _EXECUTE_RESULT_STATES:
        return _NOTHING
    value = ad.results
    if type(ad) is models.RetryDetail:
        if not value:
            return _NOTHING
        value = value[-1][0]
    if key is None:
        return value
    try:
        return value[key]
    except (LookupError, TypeError):
        return _NOTHING


class Storage:
    """Interface between an engine and the persisted details of one flow.

    Args:
        flow_detail: the :class:`~taskflow.persistence.models.FlowDetail` to run against.
        backend: a persistence backend; None keeps everything in memory only.
        scope_fetcher: ``f(atom_name, symbol)`` giving the providers visible to an atom.
    """

    injector_name = _INJECTOR

    def __init__(
        self,
        flow_detail: models.FlowDetail,
        backend: Backend | None = None,
        scope_fetcher: ScopeFetcher | None = None,
    ) -> None:
        self._flowdetail = flow_detail
        self._connection: Connection | None = None
        if backend is not None:
            self._connection = backend.get_connection()
        else:
            # A private in-memory backend for API users; the engine skips writing to it, as
            # the details held here already are the only copy.
            from taskflow.persistence.backends.impl_memory import MemoryBackend

            backend = MemoryBackend({"deep_copy": False})
        self._private_backend = self._connection is None
        self._backend = backend
        self._scope_fetcher = scope_fetcher
        # Held by every write (see the module docstring). Re-entrant: writes call each other
        # (inject creates the injector record), and the write guard may reload this storage.
        self.lock = threading.RLock()
        # Where persisted writes made outside an engine's run (``inject``) get the flow's
        # ownership from (set by the engine; re-entrant).
        self._write_guard: Callable[[], AbstractContextManager[None]] | None = None
        # Called before every persisted write while set (see set_fence_check).
        self._fence_check: Callable[[], None] | None = None
        self._transient: dict[str, Any] = {}
        self._atom_transient: dict[str, dict[str, Any]] = {}
        self._load(flow_detail)

    def _load(self, flow_detail: models.FlowDetail) -> None:
        """Index ``flow_detail``'s records; transient injections (kept) are applied on top."""
        self._flowdetail = flow_detail
        self._details: dict[str, models.AtomDetail] = {}
        # symbol -> [(provider atom name, key into its result)], in registration order.
        self._providers: dict[str, list[tuple[str, Any]]] = {}
        # Flow-level injections visible to every atom: persisted ones and transient ones merged.
        self._flow_injected: dict[str, Any] = {}
        # Invariant: _atom_injected[name] == persisted injections of atom ``name`` updated
        # with its transient ones; atoms without injections have no entry.
        self._atom_injected: dict[str, dict[str, Any]] = {}
        for ad in flow_detail:
            self._details[ad.name] = ad
            if ad.meta and META_INJECTED in ad.meta:
                self._atom_injected[ad.name] = dict(ad.meta[META_INJECTED])
        self._index_injections()
        for name, pairs in self._atom_transient.items():
            self._atom_injected.setdefault(name, {}).update(pairs)

    def reload(self, flow_detail: models.FlowDetail) -> None:
        """Start again from ``flow_detail``, the flow as the backend holds it now (after
        another engine ran it, say): the flow detail this storage was made with takes its
        state, metadata and atom details. Transient injections stay; atoms must be ensured
        again."""
        with self.lock:
            self._flowdetail.update(flow_detail)
            self._load(self._flowdetail)

    def set_write_guard(self, guard: Callable[[], AbstractContextManager[None]] | None) -> None:
        """Have persisted writes made outside a run (``inject``) happen inside ``guard()``."""
        self._write_guard = guard

    def set_fence_check(self, check: Callable[[], None] | None) -> None:
        """Call ``check()`` before every persisted write (None: stop), which raises to refuse
        the write: the claim this storage's owner runs for (a conductor's claim of the
        job) may be lost, even though nobody has claimed the flow itself yet."""
        self._fence_check = check

    # -- properties ---------------------------------------------------------------------------

    @property
    def flow_name(self) -> str:
        return self._flowdetail.name

    @property
    def flow_uuid(self) -> str:
        return self._flowdetail.uuid

    @property
    def flow_meta(self) -> dict[str, Any]:
        return self._flowdetail.meta

    @property
    def backend(self) -> Backend | None:
        """The persistence backend; without one given, a private in-memory backend.

        The private backend is brought up to date each time it is asked for (it shares this
        storage's detail objects, so only new atoms need adding): engines never write to it on
        their hot path.
        """
        if self._connection is None and self._private_backend:
            with self.lock, self._backend.get_connection() as conn:
                conn.update_flow_details(self._flowdetail, ignore_missing=True)
        return self._backend

    # -- writes -------------------------------------------------------------------------------

    @property
    def persists(self) -> bool:
        """Whether writes reach a backend (without one, the details in memory are the store)."""
        return self._connection is not None

    def save_atom_detail(self, ad: models.AtomDetail) -> None:
        """Persist one atom record, changed in place by the caller (no-op without a backend).

        The engine's hot path: with a backend, one uncontended lock around the write, which
        keeps it from interleaving with a write of the same record from another thread.
        """
        connection = self._connection
        if connection is not None:
            with self.lock:
                if self._fence_check is not None:
                    self._fence_check()
                # Backends raise StorageFailure (or UnstorableValue, NotFound) themselves.
                connection.update_atom_details(ad)

    def _save_atom(self, ad: models.AtomDetail) -> None:
        """:meth:`save_atom_detail` for callers that hold the lock already."""
        if self._connection is not None:
            if self._fence_check is not None:
                self._fence_check()
            self._connection.update_atom_details(ad)

    def _save_flow(self) -> None:
        """Persist the flow detail's own fields (one record, not its atoms)."""
        if self._connection is not None:
            if self._fence_check is not None:
                self._fence_check()
            self._connection.update_flow_record(self._flowdetail)

    def _create_atom_detail(
        self, kind: type[models.AtomDetail], name: str, save: bool = True
    ) -> models.AtomDetail:
        ad = kind(name, _new_uuid())
        ad.state = states.PENDING
        ad.intention = states.EXECUTE
        self._flowdetail.add(ad)
        self._details[name] = ad
        if save:
            self._save_flow_with_atoms()
        return ad

    def _save_flow_with_atoms(self) -> None:
        if self._connection is not None:
            if self._fence_check is not None:
                self._fence_check()
            self._connection.update_flow_details(self._flowdetail)

    def ensure_atoms(self, atoms: Iterable[Atom]) -> list[str]:
        """Ensure each atom has a detail (created PENDING/EXECUTE if missing); their uuids.

        Details created here are saved together, in one write of the flow detail.
        """
        created: list[str] = []
        with self.lock:
            uuids = [self._ensure_atom(atom, created) for atom in atoms]
            if created:
                self._save_flow_with_atoms()
        return uuids

    def ensure_atom(self, atom: Atom) -> str:
        """Ensure ``atom`` has a detail and register what it provides; returns its uuid."""
        return self.ensure_atoms([atom])[0]

    def _ensure_atom(self, atom: Atom, created: list[str]) -> str:
        kind = _detail_kind(type(atom))
        name = atom.name
        if not name:
            raise ValueError("An atom name must be provided (not empty)")
        ad = self._details.get(name)
        if ad is None:
            ad = self._create_atom_detail(kind, name, save=False)
            created.append(name)
        elif not isinstance(ad, kind):
            raise exc.Duplicate(
                f"Atom detail '{name}' already exists in flow detail '{self.flow_name}' with a"
                f" different type ({type(ad).__name__} instead of {kind.__name__})"
            )
        if ad.version is None:
            ad.version = _version_text(atom.version)
        providers_of = self._providers
        for symbol, key in atom.save_as.items():
            providers = providers_of.get(symbol)
            if providers is None:
                providers_of[symbol] = [(name, key)]
            elif (name, key) not in providers:
                providers.append((name, key))
        return ad.uuid

    def atom_detail(self, atom_name: str) -> models.AtomDetail:
        """The in-memory detail of an atom (NotFound if unknown)."""
        try:
            return self._details[atom_name]
        except KeyError:
            raise exc.NotFound(f"Unknown atom name '{atom_name}'") from None

    def get_atom_uuid(self, atom_name: str) -> str:
        return self.atom_detail(atom_name).uuid

    def set_atom_state(self, atom_name: str, state: str) -> None:
        with self.lock:
            ad = self.atom_detail(atom_name)
            if ad.state != state:
                ad.state = state
                self._save_atom(ad)

    def get_atom_state(self, atom_name: str) -> str:
        state = self.atom_detail(atom_name).state
        return state if state is not None else states.PENDING

    def set_atom_intention(self, atom_name: str, intention: str) -> None:
        with self.lock:
            ad = self.atom_detail(atom_name)
            if ad.intention != intention:
                ad.intention = intention
                self._save_atom(ad)

    def get_atom_intention(self, atom_name: str) -> str:
        intention = self.atom_detail(atom_name).intention
        return intention if intention is not None else states.EXECUTE

    def get_atoms_states(self, atom_names: Iterable[str]) -> dict[str, tuple[str, str]]:
        return {
            name: (self.get_atom_state(name), self.get_atom_intention(name)) for name in atom_names
        }

    def update_atom_metadata(self, atom_name: str, update_with: Mapping[str, Any]) -> None:
        if not update_with:
            return
        with self.lock:
            ad = self.atom_detail(atom_name)
            ad.meta.update(update_with)
            self._save_atom(ad)

    def set_task_progress(
        self, task_name: str, progress: float, details: Mapping[str, Any] | None = None
    ) -> None:
        """Record a task's progress (and optional details about it) in its metadata.

        As upstream: ``details`` None keeps the details reported before; empty details erase
        them (an engine reports a task's progress with the event's other keys as details, so
        a bare ``update_progress`` erases what an earlier report said).
        """
        meta: dict[str, Any] = {META_PROGRESS: progress}
        if details is not None:
            meta[META_PROGRESS_DETAILS] = (
                {"at_progress": progress, "details": dict(details)} if details else None
            )
        self.update_atom_metadata(task_name, meta)

    def get_task_progress(self, task_name: str) -> float:
        return float(self.atom_detail(task_name).meta.get(META_PROGRESS, 0.0))

    def get_task_progress_details(self, task_name: str) -> dict[str, Any] | None:
        """``{'at_progress': p, 'details': d}`` of the last report with details, else None."""
        details: dict[str, Any] | None = self.atom_detail(task_name).meta.get(META_PROGRESS_DETAILS)
        return details or None

    def save(self, atom_name: str, result: Any, state: str = states.SUCCESS) -> None:
        """Store an atom's result (or Failure) together with its new state, in one write."""
        with self.lock:
            ad = self.atom_detail(atom_name)
            ad.put(state, result)
            self._save_atom(ad)
            if atom_name == _INJECTOR:
                self._index_injections()

    def save_retry_failure(self, retry_name: str, failed_atom_name: str, failure: Failure) -> None:
        """Add ``failure`` of ``failed_atom_name`` to the retry's latest history entry."""
        with self.lock:
            ad = self.atom_detail(retry_name)
            if not isinstance(ad, models.RetryDetail):
                raise TypeError(f"Atom '{retry_name}' is not a retry controller")
            try:
                failures = ad.last_failures
            except exc.NotFound:
                ad.results.append((None, {}))
                failures = ad.last_failures
            existing = failures.get(failed_atom_name)
            if existing is None or not existing.matches(failure):
                failures[failed_atom_name] = failure
                self._save_atom(ad)

    def cleanup_retry_history(self, retry_name: str, state: str) -> None:
        """Forget a retry's history (after it was reverted) and set its state."""
        with self.lock:
            ad = self.atom_detail(retry_name)
            ad.results = []
            ad.state = state
            self._save_atom(ad)

    def reset(self, atom_name: str, state: str = states.PENDING) -> None:
        """Clear an atom's results and put it back in ``state`` (its intention is kept)."""
        if atom_name == _INJECTOR:
            return
        with self.lock:
            ad = self.atom_detail(atom_name)
            if ad.state == state and ad.results is None and ad.failure is None:
                return
            ad.reset(state)
            self._save_atom(ad)

    # -- reads --------------------------------------------------------------------------------

    def get_execute_result(self, atom_name: str) -> Any:
        """The atom's execute result, or its Failure (NotFound if it has none).

        As upstream, a failed atom's Failure is returned in any state until the atom is reset
        (after it was REVERTED, say); a result only while SUCCESS, FAILURE or REVERTING (a
        task that succeeded and was then reverted has none).
        """
        ad = self.atom_detail(atom_name)
        if ad.failure is not None:
            return ad.failure
        if ad.state not in _EXECUTE_RESULT_STATES:
            raise exc.NotFound(
                f"Result for atom '{atom_name}' is not currently known (state {ad.state})"
            )
        # A retry's result is its whole history (as upstream); lookups use the latest value.
        return ad.results

    get = get_execute_result

    def get_revert_result(self, atom_name: str) -> Any:
        """What the atom's revert returned, or its Failure (NotFound if neither is known).

        A failed revert's Failure is returned in any state until the atom is reset, as
        upstream; a revert result only while REVERTING, REVERTED or REVERT_FAILURE.
        """
        ad = self.atom_detail(atom_name)
        if ad.revert_failure is not None:
            return ad.revert_failure
        if ad.state not in _REVERT_RESULT_STATES:
            raise exc.NotFound(
                f"Revert result for atom '{atom_name}' is not currently known (state {ad.state})"
            )
        return ad.revert_results

    def get_execute_failures(self) -> dict[str, Failure]:
        with self.lock:  # walks every record: none may be added meanwhile
            return {ad.name: ad.failure for ad in self._details.values() if ad.failure is not None}

    get_failures = get_execute_failures

    def get_revert_failures(self) -> dict[str, Failure]:
        with self.lock:
            return {
                ad.name: ad.revert_failure
                for ad in self._details.values()
                if ad.revert_failure is not None
            }

    def has_failures(self) -> bool:
        return bool(self.get_execute_failures() or self.get_revert_failures())

    # -- injection ----------------------------------------------------------------------------

    def inject(self, pairs: Mapping[str, Any], transient: bool = False) -> None:
        """Make values visible to every atom of the flow (they shadow atom outputs).

        Persisted injections are saved in the injector atom detail; transient ones live only
        as long as this storage object.
        """
        pairs = dict(pairs)
        with self.lock:
            if not transient and self._write_guard is not None:
                # Owned while writing: the guard may reload this storage first (see reload).
                # Entered under the lock, so that concurrent injections claim one at a time.
                with self._write_guard():
                    self._inject(pairs, transient)
                return
            self._inject(pairs, transient)

    def _inject(self, pairs: dict[str, Any], transient: bool) -> None:
        if transient:
            self._transient.update(pairs)
        else:
            ad = self._details.get(_INJECTOR)
            if ad is None:
                # Created with its values: one write, not a creation and then an update.
                ad = self._create_atom_detail(models.TaskDetail, _INJECTOR, save=False)
                ad.put(states.SUCCESS, pairs)
                self._save_flow_with_atoms()
            else:
                merged = dict(ad.results or {})
                merged.update(pairs)
                ad.put(states.SUCCESS, merged)
                self._save_atom(ad)
        self._flow_injected.update(pairs)
        for symbol in pairs:
            providers = self._providers.setdefault(symbol, [])
            entry = (_INJECTOR, symbol)
            if entry not in providers:
                providers.insert(0, entry)

    def _index_injections(self) -> None:
        """Index the flow-level injections: what the injector's record holds, with the
        transient ones on top (as upstream reads them from it), each provided by the
        injector before any atom. Also after the record was overwritten (``save``)."""
        injector = self._details.get(_INJECTOR)
        results = injector.results if injector is not None else None
        injected = self._flow_injected
        injected.clear()  # in place: a live mapping (see flow_injected)
        if isinstance(results, dict):
            injected.update(results)
        injected.update(self._transient)
        for symbol, providers in self._providers.items():
            if symbol not in injected and (_INJECTOR, symbol) in providers:
                providers.remove((_INJECTOR, symbol))
        for symbol in injected:
            providers = self._providers.setdefault(symbol, [])
            if (_INJECTOR, symbol) not in providers:
                providers.insert(0, (_INJECTOR, symbol))

    def inject_atom_args(
        self, atom_name: str, pairs: Mapping[str, Any], transient: bool = True
    ) -> None:
        """Give one atom argument values by symbol (before any other source)."""
        with self.lock:
            ad = self._details.get(atom_name)
            if ad is None:
                raise exc.NotFound(f"Unknown atom name '{atom_name}'")
            if transient:
                self._atom_transient.setdefault(atom_name, {}).update(pairs)
            else:
                injected = dict(ad.meta.get(META_INJECTED, {}))
                injected.update(pairs)
                ad.meta[META_INJECTED] = injected
                self._save_atom(ad)
            merged = dict(ad.meta.get(META_INJECTED, {}))
            merged.update(self._atom_transient.get(atom_name, {}))
            self._atom_injected[atom_name] = merged

    def injected_atom_names(self) -> set[str]:
        """Names of the atoms that have values injected for them (transient or persisted)."""
        return set(self._atom_injected)

    def atom_injections(self, atom_name: str) -> dict[str, Any]:
        """Values injected for one atom, transient ones winning over persisted ones."""
        return dict(self._atom_injected.get(atom_name, ()))

    @property
    def flow_injected(self) -> dict[str, Any]:
        """Live mapping of every flow-level injection (read by engines on their hot path)."""
        return self._flow_injected

    # -- lookups ------------------------------------------------------------------------------

    def set_scope_fetcher(self, scope_fetcher: ScopeFetcher | None) -> None:
        self._scope_fetcher = scope_fetcher

    def fetch_args(self, atom_name: str, bindings: Iterable[Binding]) -> dict[str, Any]:
        """The arguments of one call of ``atom_name``: ``{arg: value}`` for ``bindings``.

        This is the one place the lookup precedence lives (see the module docstring).

        Raises:
            NotFound: a required argument has no value (no provider has a result yet).
        """
        kwargs: dict[str, Any] = {}
        injected = self._atom_injected.get(atom_name)
        flow_injected = self._flow_injected
        details = self._details
        for binding in bindings:
            symbol = binding.symbol
            if injected and symbol in injected:
                kwargs[binding.arg] = injected[symbol]
            elif symbol in flow_injected:
                kwargs[binding.arg] = flow_injected[symbol]
            else:
                for provider, key in binding.providers:
                    ad = details.get(provider)  # None: compiled, not yet prepared
                    value = _NOTHING if ad is None else _result_value(ad, key)
                    if value is not _NOTHING:
                        kwargs[binding.arg] = value
                        break
                else:
                    if not binding.optional:
                        raise exc.NotFound(self._unfound(atom_name, binding))
        return kwargs

    def _unfound(self, atom_name: str, binding: Binding) -> str:
        """Why ``binding`` found no value: a provider's result lacking the key, by name."""
        for provider, key in binding.providers:
            ad = self._details.get(provider)
            if key is not None and ad is not None and ad.state in _EXECUTE_RESULT_STATES:
                result = ad.results
                if type(ad) is models.RetryDetail:
                    result = result[-1][0] if result else None
                return (
                    f"Atom '{atom_name}' requires '{binding.symbol}' (argument"
                    f" '{binding.arg}'), which is {key!r} of the result of atom '{provider}',"
                    f" but that result ({type(result).__name__}) has no {key!r}"
                )
        return (
            f"Atom '{atom_name}' requires '{binding.symbol}' (argument '{binding.arg}') but no"
            f" provider has a result for it (searched {[p for p, _ in binding.providers]})"
        )

    def _provider_value(self, provider: str, key: Any, symbol: str) -> tuple[bool, Any]:
        """(found, value) for one provider; IGNOREd or unfinished providers are not found."""
        if provider == _INJECTOR:
            if symbol in self._transient:
                return True, self._transient[symbol]
            injector = self._details.get(_INJECTOR)
            if injector is not None and injector.results and symbol in injector.results:
                return True, injector.results[symbol]
            return False, None
        ad = self._details.get(provider)
        if ad is None:
            return False, None
        value = _result_value(ad, key)
        return value is not _NOTHING, value

    def _visible_providers(self, symbol: str, atom_name: str) -> Providers:
        """Providers of ``symbol`` seen from ``atom_name``'s scope (all of them uncompiled)."""
        if self._scope_fetcher is not None:
            scoped = self._scope_fetcher(atom_name, symbol)
            if scoped is not None:
                return scoped
        return tuple(self._providers.get(symbol, ()))

    def _fetch_one(self, symbol: str) -> Any:
        """The value of ``symbol`` outside any atom's scope: every provider must have one."""
        if symbol in self._flow_injected:
            return self._flow_injected[symbol]
        providers = self._providers.get(symbol)
        if not providers:
            raise exc.NotFound(f"Name '{symbol}' is not mapped as a produced output by any atom")
        values = self._fetch_all_of(symbol)
        if values is None:
            raise exc.NotFound(
                f"Unable to find result '{symbol}': not every provider of it has a result"
                f" (providers: {[p for p, _ in providers]})"
            )
        if not values:
            raise exc.NotFound(f"Unable to find result '{symbol}': its providers were skipped")
        return values[0]

    def fetch(self, name: str, many_handler: Callable[[list[Any]], Any] | None = None) -> Any:
        """The value of symbol ``name`` (the first provider's, unless ``many_handler`` picks).

        Raises:
            NotFound: nothing provides ``name``, or some provider has no result yet.
        """
        if many_handler is None:
            return self._fetch_one(name)
        values = self._fetch_all_of(name)
        if not values:
            raise exc.NotFound(f"Unable to find result '{name}'")
        return many_handler(values)

    def _fetch_all_of(self, symbol: str) -> list[Any] | None:
        """Values of every provider of ``symbol``; None if one of them has none yet."""
        values = []
        for provider, key in self._providers.get(symbol, []):
            try:
                found, value = self._provider_value(provider, key, symbol)
            except exc.NotFound:
                return None
            if not found:
                ad = self._details.get(provider)
                if ad is not None and ad.state == states.IGNORE:
                    continue
                return None
            values.append(value)
        return values

    def fetch_all(self, many_handler: Callable[[list[Any]], Any] | None = None) -> dict[str, Any]:
        """Every resolvable symbol; a list of values where several providers have one."""
        if many_handler is None:

            def many_handler(values: list[Any]) -> Any:
                return values[0] if len(values) == 1 else values

        results: dict[str, Any] = {}
        with self.lock:  # walks every provider: none may be added meanwhile
            for symbol in list(self._providers):
                values = self._fetch_all_of(symbol)
                if values:
                    results[symbol] = many_handler(values)
        return results

    def fetch_mapped_args(
        self,
        args_mapping: Mapping[str, str],
        atom_name: str | None = None,
        scope_walker: Any = None,
        optional_args: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Fetch ``{arg: value}`` for ``{arg: symbol}``; optional symbols only if resolvable."""
        optional = set(optional_args or ())
        if atom_name is not None:
            return self.fetch_args(
                atom_name,
                [
                    Binding(
                        arg,
                        symbol,
                        arg in optional or symbol in optional,
                        self._visible_providers(symbol, atom_name),
                    )
                    for arg, symbol in args_mapping.items()
                ],
            )
        mapped: dict[str, Any] = {}
        for arg, symbol in args_mapping.items():
            try:
                mapped[arg] = self._fetch_one(symbol)
            except exc.NotFound:
                if arg in optional or symbol in optional:
                    continue
                raise
        return mapped

    def fetch_unsatisfied_args(
        self,
        atom_name: str,
        args_mapping: Mapping[str, str],
        scope_walker: Any = None,
        optional_args: Iterable[str] | None = None,
    ) -> set[str]:
        """The required symbols of ``args_mapping`` that nothing can currently provide."""
        optional = set(optional_args or ())
        injected = self._atom_injected.get(atom_name, {})
        missing = set()
        for symbol in args_mapping.values():
            if symbol in optional or symbol in injected or symbol in self._flow_injected:
                continue
            if not self._visible_providers(symbol, atom_name):
                missing.add(symbol)
        return missing

    # -- ownership ----------------------------------------------------------------------------

    def claim(
        self, lease: float, fencing_token: int | None = None, fencing_key: str | None = None
    ) -> Ownership | None:
        """Own the flow detail for ``lease`` seconds: this storage's writes are then fenced.

        None without a backend (nothing to share), or with a backend that does not record
        ownership (a user's own backend: it runs unfenced, with a warning).
        ``fencing_token``, ``fencing_key``: see
        :meth:`taskflow.persistence.base.Connection.claim_flow`.

        Raises:
            taskflow.exceptions.FlowOwned: another engine owns the flow.
        """
        if self._connection is None:
            return None
        try:
            # Under the lock: claiming fences the connection every write goes through.
            with self.lock:
                return self._connection.claim_flow(
                    self.flow_uuid, lease, fencing_token, fencing_key
                )
        except exc.NotImplementedError:
            LOG.warning(
                "Backend %s does not record flow ownership: flow '%s' runs unfenced",
                type(self._backend).__name__,
                self.flow_name,
            )
            return None

    def renew(self, ownership: Ownership, lease: float) -> Ownership:
        """Extend ``ownership`` (through a connection of its own: safe from another thread).

        Raises:
            taskflow.exceptions.OwnershipLost: another engine claimed the flow since.
        """
        with self._backend.get_connection() as conn:
            return conn.renew_flow(self.flow_uuid, ownership.token, lease)

    def release(self, ownership: Ownership) -> None:
        """Give up ``ownership`` (nothing happens if another engine holds the flow since)."""
        if self._connection is not None:
            with self.lock:
                self._connection.release_flow(self.flow_uuid, ownership.token)

    # -- flow ---------------------------------------------------------------------------------

    def set_flow_state(self, state: str) -> None:
        with self.lock:
            self._flowdetail.state = state
            self._save_flow()

    def get_flow_state(self) -> str:
        state = self._flowdetail.state
        return state if state is not None else states.PENDING

    def change_flow_state(self, state: str) -> tuple[bool, str]:
        """Move the flow to ``state`` if allowed; (moved, old state)."""
        with self.lock:
            old = self.get_flow_state()
            if states.check_flow_transition(old, state):
                self.set_flow_state(state)
                return True, old
            return False, old

    def update_flow_metadata(self, update_with: Mapping[str, Any]) -> None:
        if update_with:
            with self.lock:
                self._flowdetail.meta.update(update_with)
                self._save_flow()

    def get_retry_history(self, retry_name: str) -> History:
        from taskflow.retry import History

        ad = self.atom_detail(retry_name)
        if not isinstance(ad, models.RetryDetail):
            raise TypeError(f"Atom '{retry_name}' is not a retry controller")
        return History(list(ad.results), failure=ad.failure)

    def get_retry_histories(self) -> list[tuple[str, History]]:
        with self.lock:
            return [
                (name, self.get_retry_history(name))
                for name, ad in self._details.items()
                if isinstance(ad, models.RetryDetail)
            ]
