"""Loading and running engines: ``load``, ``run``, factories and resumption from details."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from taskflow import _plugins
from taskflow import exceptions as exc

if TYPE_CHECKING:
    from taskflow.engines.base import Engine
    from taskflow.flow import Flow
    from taskflow.persistence.models import FlowDetail, LogBook

__all__ = [
    "flow_from_detail",
    "load",
    "load_from_detail",
    "load_from_factory",
    "run",
    "save_factory_details",
]

ENGINES_NAMESPACE = "taskflow.engines"
ENGINE_DEFAULT = "default"


def _coerce(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _parse_engine(engine: str | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split ``'parallel://?max_workers=4'`` into a name and options (explicit kwargs win).

    ``None`` names the default engine, as upstream TaskFlow has it.
    """
    if engine is None:
        return ENGINE_DEFAULT, options
    if "://" not in engine:
        return engine, options
    parts = urlsplit(engine)
    merged = {key: _coerce(value) for key, value in parse_qsl(parts.query)}
    merged.update(options)
    return parts.scheme, merged


def _fetch_backend(backend: Any) -> Any:
    """``backend`` itself, or the backend its configuration (a URI or dict) names, upgraded.

    A configuration is used as :func:`taskflow.persistence.backends.backend` uses it: the
    backend is fetched and its schema created or migrated, so that
    ``engines.run(flow, backend="sqlite:///flows.db")`` works on a fresh database. (Upstream
    TaskFlow refuses a URI, and skips the upgrade for a dict, which then fails on the first
    write to a fresh SQL database.)
    """
    if backend is None or not isinstance(backend, (str, Mapping)):
        return backend
    from taskflow.persistence import backends

    fetched = backends.fetch(backend)
    try:
        with fetched.get_connection() as conn:
            conn.upgrade()
    except BaseException:
        fetched.close()
        raise
    return fetched


@contextlib.contextmanager
def _backend_for_call(backend: Any) -> Iterator[Any]:
    """:func:`_fetch_backend` for one call: a backend made from a configuration is closed after."""
    fetched = _fetch_backend(backend)
    try:
        yield fetched
    finally:
        if fetched is not backend:
            fetched.close()


def load(
    flow: Flow | Any,
    store: Mapping[str, Any] | None = None,
    flow_detail: FlowDetail | None = None,
    book: LogBook | None = None,
    backend: Any = None,
    namespace: str = ENGINES_NAMESPACE,
    engine: str | None = ENGINE_DEFAULT,
    **kwargs: Any,
) -> Engine:
    """Make an engine that will run ``flow``.

    Args:
        flow: the flow (or lone atom) to run.
        store: values injected (persisted) before running.
        flow_detail: the detail to run against; created (in ``book``/``backend``) if None.
        book: the logbook a created flow detail goes in.
        backend: a persistence backend, or its configuration (URI or dict): then the
            backend is fetched and upgraded, as ``backends.backend(conf)`` does.
        namespace: the entry-point group engines are looked up in.
        engine: the engine kind's name or URI (``'parallel://?max_workers=4'``); None
            is the default engine.
        **kwargs: engine options.

    Raises:
        NotFound: no engine kind of that name.
    """
    from taskflow.persistence import _books

    name, options = _parse_engine(engine, dict(kwargs))
    backend = _fetch_backend(backend)
    if flow_detail is None:
        flow_detail = _books.create_flow_detail(flow, book=book, backend=backend)
    try:
        engine_cls = _plugins.load(namespace, name)
    except exc.NotFound:
        raise exc.NotFound(f"Could not find engine '{name}' in namespace '{namespace}'") from None
    engine_obj: Engine = engine_cls(flow, flow_detail, backend, options)
    if store:
        engine_obj.storage.inject(store)
    return engine_obj


def run(
    flow: Flow | Any,
    store: Mapping[str, Any] | None = None,
    flow_detail: FlowDetail | None = None,
    book: LogBook | None = None,
    backend: Any = None,
    namespace: str = ENGINES_NAMESPACE,
    engine: str | None = ENGINE_DEFAULT,
    **kwargs: Any,
) -> dict[str, Any]:
    """Load and run ``flow``; returns every named result (``storage.fetch_all()``).

    A backend made here from a configuration (see :func:`load`) is closed when the run ends.
    """
    with _backend_for_call(backend) as fetched:
        loaded = load(flow, store, flow_detail, book, fetched, namespace, engine, **kwargs)
        loaded.run()
        return loaded.storage.fetch_all()


def _callable_name(function: Callable[..., Any]) -> str:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(f"Flow factory {function!r} is not reimportable by name")
    name = f"{module}.{qualname}"
    try:
        if _import_callable(name) is not function:
            raise ValueError(f"Flow factory {function!r} is not reimportable by name")
    except ImportError:
        raise ValueError(f"Flow factory {function!r} is not reimportable by name") from None
    return name


def _import_callable(name: str) -> Callable[..., Any]:
    module_name, _, attr = name.rpartition(".")
    # Walk back until a module imports, then resolve the rest as attributes (nested names).
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"Could not find '{name}'") from None
        if not callable(obj):
            raise ImportError(f"'{name}' is not callable")
        return obj  # type: ignore[no-any-return]
    raise ImportError(f"Could not import '{module_name or attr}' to find '{name}'")


def save_factory_details(
    flow_detail: FlowDetail,
    flow_factory: Callable[..., Any] | str,
    factory_args: Any,
    factory_kwargs: Mapping[str, Any] | None,
    backend: Any = None,
) -> None:
    """Record in ``flow_detail.meta['factory']`` how to rebuild its flow (and save it)."""
    name = flow_factory if isinstance(flow_factory, str) else _callable_name(flow_factory)
    flow_detail.meta["factory"] = {
        "name": name,
        "args": list(factory_args or ()),
        "kwargs": dict(factory_kwargs or {}),
    }
    with _backend_for_call(backend) as fetched:
        if fetched is not None:
            with fetched.get_connection() as conn:
                conn.update_flow_details(flow_detail)


def load_from_factory(
    flow_factory: Callable[..., Any] | str,
    factory_args: Any = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    store: Mapping[str, Any] | None = None,
    book: LogBook | None = None,
    backend: Any = None,
    namespace: str = ENGINES_NAMESPACE,
    engine: str | None = ENGINE_DEFAULT,
    **kwargs: Any,
) -> Engine:
    """Build a flow with ``flow_factory`` and load it, recording the factory for resumption."""
    from taskflow.persistence import _books

    if isinstance(flow_factory, str):
        factory = _import_callable(flow_factory)
        name = flow_factory
    else:
        factory = flow_factory
        name = _callable_name(flow_factory)
    flow = factory(*(factory_args or ()), **(factory_kwargs or {}))
    backend = _fetch_backend(backend)
    flow_detail = _books.create_flow_detail(flow, book=book, backend=backend)
    save_factory_details(flow_detail, name, factory_args, factory_kwargs, backend=backend)
    return load(
        flow,
        store=store,
        flow_detail=flow_detail,
        book=book,
        backend=backend,
        namespace=namespace,
        engine=engine,
        **kwargs,
    )


def flow_from_detail(flow_detail: FlowDetail) -> Flow:
    """Rebuild a flow from the factory recorded in its detail.

    Raises:
        ValueError: the detail has no factory recorded.
        ImportError: the factory can not be imported.
    """
    try:
        factory_data = flow_detail.meta["factory"]
    except (KeyError, AttributeError, TypeError):
        raise ValueError(
            f"Cannot reconstruct flow {flow_detail.name} {flow_detail.uuid}:"
            " no factory information saved."
        ) from None
    try:
        factory = _import_callable(factory_data["name"])
    except (KeyError, ImportError) as err:
        raise ImportError(
            f"Could not import factory for flow {flow_detail.name} {flow_detail.uuid}"
        ) from err
    args = factory_data.get("args", ())
    kwargs = factory_data.get("kwargs", {})
    return factory(*args, **kwargs)  # type: ignore[no-any-return]


def load_from_detail(
    flow_detail: FlowDetail,
    store: Mapping[str, Any] | None = None,
    backend: Any = None,
    namespace: str = ENGINES_NAMESPACE,
    engine: str | None = ENGINE_DEFAULT,
    **kwargs: Any,
) -> Engine:
    """Rebuild the flow of ``flow_detail`` from its factory and load it to resume."""
    rebuilt = flow_from_detail(flow_detail)
    return load(rebuilt, store, flow_detail, None, backend, namespace, engine, **kwargs)
