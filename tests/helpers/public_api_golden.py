"""Black-box probe of taskflow's public surface, shared by the golden generator and the test.

The same code looks at upstream TaskFlow 6.5.0 (to write ``public_api_golden.json``) and at
this package (in ``tests/test_public_api.py``), so both sides are described identically.
It only imports modules and inspects the objects they expose; it never reads source files.

Regenerate the golden (only when moving to a new upstream release)::

    /work/upstream-venv/bin/python tests/helpers/public_api_golden.py

What is recorded:

* ``modules``: for every in-scope module, its public names (``__all__`` if upstream had one,
  else names without a leading underscore that the module defines itself: classes and
  functions whose ``__module__`` is that module, plus module-level data).  Names a package
  imports from its own submodules count as its own (``taskflow.engines.load``); names
  imported from anywhere else are helpers and are left out.  Each name maps to its kind:
  ``class``, ``function`` or ``constant``.
* ``values``: the value of each plain constant (strings, numbers, tuples, enum members).
* ``signatures``: parameters of every public function and of every public class's
  constructor, as ``[name, inspect.Parameter kind name, has_default]`` triples.
* ``classes``: for the classes users touch most, their public members (looked up on a
  real instance, so attributes set in ``__init__`` count), each ``method`` or
  ``attribute``, the container/context-manager protocol methods they support, their
  taskflow base classes, and the parameters of every public method.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json
import re
import sys
import types
import uuid
from pathlib import Path
from typing import Any

GOLDEN_PATH = Path(__file__).with_name("public_api_golden.json")

MODULES = (
    "taskflow.atom",
    "taskflow.task",
    "taskflow.retry",
    "taskflow.flow",
    "taskflow.patterns.linear_flow",
    "taskflow.patterns.unordered_flow",
    "taskflow.patterns.graph_flow",
    "taskflow.deciders",
    "taskflow.states",
    "taskflow.exceptions",
    "taskflow.types.failure",
    "taskflow.types.notifier",
    "taskflow.types.sets",
    "taskflow.types.entity",
    "taskflow.types.timing",
    "taskflow.types.latch",
    "taskflow.types.graph",
    "taskflow.types.tree",
    "taskflow.engines",
    "taskflow.engines.base",
    "taskflow.engines.helpers",
    "taskflow.engines.action_engine.engine",
    "taskflow.storage",
    "taskflow.persistence.models",
    "taskflow.persistence.base",
    "taskflow.persistence.backends",
    "taskflow.persistence.backends.impl_memory",
    "taskflow.utils.persistence_utils",
    "taskflow.utils.misc",
    "taskflow.utils.threading_utils",
    "taskflow.listeners.base",
    "taskflow.listeners.logging",
    "taskflow.listeners.printing",
    "taskflow.listeners.timing",
    "taskflow.listeners.capturing",
    "taskflow.listeners.claims",
    "taskflow.logging",
    "taskflow.formatters",
    "taskflow.jobs",
    "taskflow.jobs.base",
    "taskflow.jobs.backends",
    "taskflow.jobs.backends.impl_redis",
    "taskflow.jobs.backends.impl_zookeeper",
    "taskflow.jobs.backends.impl_etcd",
    "taskflow.conductors",
    "taskflow.conductors.base",
    "taskflow.conductors.backends",
    "taskflow.conductors.backends.impl_blocking",
    "taskflow.conductors.backends.impl_nonblocking",
    "taskflow.conductors.backends.impl_executor",
    "taskflow.utils.redis_utils",
    "taskflow.utils.eventlet_utils",
    "taskflow.engines.worker_based.engine",
    "taskflow.engines.worker_based.executor",
    "taskflow.engines.worker_based.worker",
    "taskflow.engines.worker_based.protocol",
    "taskflow.engines.worker_based.proxy",
)

#: Classes whose members and method parameters are compared, not just their names.
CLASSES = (
    "taskflow.atom.Atom",
    "taskflow.task.Task",
    "taskflow.task.FunctorTask",
    "taskflow.task.MapFunctorTask",
    "taskflow.task.ReduceFunctorTask",
    "taskflow.retry.Retry",
    "taskflow.retry.AlwaysRevert",
    "taskflow.retry.AlwaysRevertAll",
    "taskflow.retry.Times",
    "taskflow.retry.ForEachBase",
    "taskflow.retry.ForEach",
    "taskflow.retry.ParameterizedForEach",
    "taskflow.retry.History",
    "taskflow.flow.Flow",
    "taskflow.patterns.linear_flow.Flow",
    "taskflow.patterns.unordered_flow.Flow",
    "taskflow.patterns.graph_flow.Flow",
    "taskflow.patterns.graph_flow.TargetedFlow",
    "taskflow.storage.Storage",
    "taskflow.engines.base.Engine",
    "taskflow.engines.action_engine.engine.ActionEngine",
    "taskflow.engines.action_engine.engine.SerialActionEngine",
    "taskflow.engines.action_engine.engine.ParallelActionEngine",
    "taskflow.types.notifier.Notifier",
    "taskflow.types.notifier.RestrictedNotifier",
    "taskflow.types.failure.Failure",
    "taskflow.persistence.models.LogBook",
    "taskflow.persistence.models.FlowDetail",
    "taskflow.persistence.models.AtomDetail",
    "taskflow.persistence.models.TaskDetail",
    "taskflow.persistence.models.RetryDetail",
    "taskflow.persistence.base.Backend",
    "taskflow.persistence.base.Connection",
    "taskflow.persistence.backends.impl_memory.MemoryBackend",
    "taskflow.persistence.backends.impl_memory.Connection",
    "taskflow.listeners.base.Listener",
    "taskflow.listeners.base.DumpingListener",
    "taskflow.listeners.logging.LoggingListener",
    "taskflow.listeners.logging.DynamicLoggingListener",
    "taskflow.listeners.printing.PrintingListener",
    "taskflow.listeners.timing.DurationListener",
    "taskflow.listeners.timing.PrintingDurationListener",
    "taskflow.listeners.timing.EventTimeListener",
    "taskflow.listeners.capturing.CaptureListener",
    "taskflow.listeners.claims.CheckingClaimListener",
    "taskflow.engines.worker_based.protocol.Notify",
    "taskflow.engines.worker_based.protocol.Request",
    "taskflow.engines.worker_based.protocol.Response",
    "taskflow.engines.worker_based.proxy.Proxy",
)

#: Dunder methods that change how users can use an object (len, iteration, ``with`` ...).
PROTOCOL_METHODS = (
    "__call__",
    "__contains__",
    "__delitem__",
    "__enter__",
    "__exit__",
    "__getitem__",
    "__iter__",
    "__len__",
    "__setitem__",
)

Signature = list[list[Any]]


def resolve(dotted: str) -> Any:
    """Import ``pkg.module.Name`` and return the named object."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def kind_of(obj: Any) -> str:
    if inspect.isclass(obj):
        return "class"
    return "function" if callable(obj) else "constant"


def module_names(module_name: str) -> dict[str, str]:
    """Public names of one module mapped to their kind (see the module docstring)."""
    module = importlib.import_module(module_name)
    declared = getattr(module, "__all__", None)
    is_package = hasattr(module, "__path__")
    names: dict[str, str] = {}
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            continue
        kind = kind_of(obj)
        if declared is not None:
            if name in declared:
                names[name] = kind
            continue
        if kind == "constant":
            names[name] = kind
            continue
        owner = getattr(obj, "__module__", None) or ""
        if owner == module_name or (is_package and owner.startswith(module_name + ".")):
            names[name] = kind
    return names


def signature_of(obj: Any) -> Signature | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [
        [p.name, p.kind.name, p.default is not inspect.Parameter.empty]
        for p in sig.parameters.values()
    ]


def plain_value(obj: Any) -> Any:
    """A JSON-comparable form of a constant, or None for values not worth comparing."""
    if isinstance(obj, enum.Enum):
        return {"enum": plain_value(obj.value)}
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, str | int | float):
        return obj
    if isinstance(obj, frozenset | set):
        return {"set": sorted(map(repr, obj))}
    if isinstance(obj, tuple | list) and all(isinstance(v, str | int | type) for v in obj):
        return [v.__qualname__ if isinstance(v, type) else v for v in obj]
    return None


def _concrete(cls: type, *args: Any, **kwargs: Any) -> Any:
    """Instantiate ``cls``, stubbing out its abstract methods when it has any."""
    abstract: frozenset[str] = getattr(cls, "__abstractmethods__", frozenset())
    if abstract:
        # Stubs keep the member's flavour (property or method) so ``member_kind`` agrees
        # with the real class; signatures are always read from the real class.
        stubs = {
            name: property(lambda self: None)
            if isinstance(inspect.getattr_static(cls, name), property)
            else (lambda self, *a, **kw: None)
            for name in abstract
        }
        cls = type(cls.__name__, (cls,), stubs)
    return cls(*args, **kwargs)


def sample_instances() -> dict[str, Any]:
    """One instance per entry of ``CLASSES``, built only through the public API."""
    from taskflow import engines, task
    from taskflow import retry as retry_mod
    from taskflow.flow import Flow
    from taskflow.listeners import base as lbase
    from taskflow.listeners import capturing, claims, printing, timing
    from taskflow.listeners import logging as llogging
    from taskflow.patterns import graph_flow, linear_flow, unordered_flow
    from taskflow.persistence import base as pbase
    from taskflow.persistence import models
    from taskflow.persistence.backends import impl_memory
    from taskflow.types import failure, notifier

    class Echo(task.Task):
        def execute(self, x: int = 1) -> int:
            return x

    serial = engines.load(linear_flow.Flow("serial").add(Echo("t")), engine="serial")
    parallel = engines.load(linear_flow.Flow("parallel").add(Echo("t")), engine="parallel")
    backend = impl_memory.MemoryBackend()
    unused: Any = object()  # the claim listener only touches job/board when events fire
    try:
        raise ValueError("boom")
    except ValueError:
        captured = failure.Failure()
    made: dict[str, Any] = {
        "taskflow.atom.Atom": _concrete(resolve("taskflow.atom.Atom"), name="a"),
        "taskflow.task.Task": Echo("t"),
        "taskflow.task.FunctorTask": task.FunctorTask(lambda: 1, name="f"),
        "taskflow.task.MapFunctorTask": task.MapFunctorTask(
            lambda v: v, requires=["a", "b"], name="m"
        ),
        "taskflow.task.ReduceFunctorTask": task.ReduceFunctorTask(
            lambda a, b: a + b, requires=["a", "b"], name="r"
        ),
        "taskflow.retry.Retry": _concrete(retry_mod.Retry, name="r"),
        "taskflow.retry.AlwaysRevert": retry_mod.AlwaysRevert("r"),
        "taskflow.retry.AlwaysRevertAll": retry_mod.AlwaysRevertAll("r"),
        "taskflow.retry.Times": retry_mod.Times(2, name="r"),
        "taskflow.retry.ForEachBase": _concrete(retry_mod.ForEachBase, name="r"),
        "taskflow.retry.ForEach": retry_mod.ForEach([1, 2], name="r"),
        "taskflow.retry.ParameterizedForEach": retry_mod.ParameterizedForEach(name="r"),
        "taskflow.retry.History": retry_mod.History([]),
        "taskflow.flow.Flow": _concrete(Flow, "f"),
        "taskflow.patterns.linear_flow.Flow": linear_flow.Flow("f"),
        "taskflow.patterns.unordered_flow.Flow": unordered_flow.Flow("f"),
        "taskflow.patterns.graph_flow.Flow": graph_flow.Flow("f"),
        "taskflow.patterns.graph_flow.TargetedFlow": graph_flow.TargetedFlow("f"),
        "taskflow.storage.Storage": serial.storage,
        "taskflow.engines.base.Engine": _concrete(
            resolve("taskflow.engines.base.Engine"),
            linear_flow.Flow("f"),
            models.FlowDetail("f", str(uuid.uuid4())),
            None,
            {},
        ),
        "taskflow.engines.action_engine.engine.ActionEngine": _concrete(
            resolve("taskflow.engines.action_engine.engine.ActionEngine"),
            linear_flow.Flow("f"),
            models.FlowDetail("f", str(uuid.uuid4())),
            None,
            {},
        ),
        "taskflow.engines.action_engine.engine.SerialActionEngine": serial,
        "taskflow.engines.action_engine.engine.ParallelActionEngine": parallel,
        "taskflow.types.notifier.Notifier": notifier.Notifier(),
        "taskflow.types.notifier.RestrictedNotifier": notifier.RestrictedNotifier(["x"]),
        "taskflow.types.failure.Failure": captured,
        "taskflow.persistence.models.LogBook": models.LogBook("b"),
        "taskflow.persistence.models.FlowDetail": models.FlowDetail("f", str(uuid.uuid4())),
        "taskflow.persistence.models.AtomDetail": _concrete(
            models.AtomDetail, "a", str(uuid.uuid4())
        ),
        "taskflow.persistence.models.TaskDetail": models.TaskDetail("t", str(uuid.uuid4())),
        "taskflow.persistence.models.RetryDetail": models.RetryDetail("r", str(uuid.uuid4())),
        "taskflow.persistence.base.Backend": _concrete(pbase.Backend, {}),
        "taskflow.persistence.base.Connection": _concrete(pbase.Connection),
        "taskflow.persistence.backends.impl_memory.MemoryBackend": backend,
        "taskflow.persistence.backends.impl_memory.Connection": backend.get_connection(),
        "taskflow.listeners.base.Listener": lbase.Listener(serial),
        "taskflow.listeners.base.DumpingListener": _concrete(lbase.DumpingListener, serial),
        "taskflow.listeners.logging.LoggingListener": llogging.LoggingListener(serial),
        "taskflow.listeners.logging.DynamicLoggingListener": llogging.DynamicLoggingListener(
            serial
        ),
        "taskflow.listeners.printing.PrintingListener": printing.PrintingListener(serial),
        "taskflow.listeners.timing.DurationListener": timing.DurationListener(serial),
        "taskflow.listeners.timing.PrintingDurationListener": timing.PrintingDurationListener(
            serial
        ),
        "taskflow.listeners.timing.EventTimeListener": timing.EventTimeListener(serial),
        "taskflow.listeners.capturing.CaptureListener": capturing.CaptureListener(serial),
        "taskflow.listeners.claims.CheckingClaimListener": claims.CheckingClaimListener(
            serial, unused, unused, "owner"
        ),
    }
    made.update(_worker_based_instances(Echo("t")))
    return made


def _worker_based_instances(a_task: Any) -> dict[str, Any]:
    """The worker-based engine's message classes and proxy (on kombu's memory transport:
    making one connects to nothing)."""
    from taskflow.engines.worker_based import protocol, proxy

    prefix = "taskflow.engines.worker_based"
    return {
        f"{prefix}.protocol.Notify": protocol.Notify(topic="t", tasks=["m.T"]),
        f"{prefix}.protocol.Request": protocol.Request(a_task, "u", "execute", {"x": 1}),
        f"{prefix}.protocol.Response": protocol.Response("SUCCESS", result=1),
        f"{prefix}.proxy.Proxy": proxy.Proxy("t", "ex", transport="memory"),
    }


def member_kind(cls: type, instance: Any, name: str) -> str:
    """``method`` for callables defined as routines, else ``attribute``."""
    for klass in cls.__mro__:
        if name in vars(klass):
            found = vars(klass)[name]
            if inspect.isfunction(found) or isinstance(found, classmethod | staticmethod):
                return "method"
            break
    try:
        value = getattr(instance, name)
    except Exception:  # a property that needs more setup is still an attribute
        return "attribute"
    return "method" if inspect.isroutine(value) else "attribute"


def method_signature(cls: type, instance: Any, name: str) -> Signature | None:
    """Parameters of a method as callers see them (without ``self``)."""
    try:
        raw = inspect.getattr_static(cls, name)
    except AttributeError:  # set on the instance only
        return signature_of(getattr(instance, name))
    if inspect.isfunction(raw):
        sig = signature_of(raw)
        return None if sig is None else sig[1:]
    return signature_of(getattr(cls, name))


def class_surface(dotted: str, instance: Any) -> dict[str, Any]:
    """Members, protocol methods, taskflow bases and method parameters of one class."""
    cls = resolve(dotted)
    names = {n for n in dir(cls) if not n.startswith("_")}
    names |= {n for n in dir(instance) if not n.startswith("_")}
    members = {n: member_kind(cls, instance, n) for n in sorted(names)}
    # Looked up in the class's own MRO: ``getattr(cls, "__call__")`` would find type's.
    protocols = [
        d
        for d in PROTOCOL_METHODS
        if any(vars(k).get(d) is not None for k in cls.__mro__ if k is not object)
    ]
    methods: dict[str, Signature] = {}
    for name, kind in members.items():
        if kind == "method":
            sig = method_signature(cls, instance, name)
            if sig is not None:
                methods[name] = sig
    bases = [
        f"{base.__module__}.{base.__qualname__}"
        for base in cls.__mro__[1:]
        if base.__module__.startswith("taskflow.")
    ]
    return {
        "members": members,
        "protocols": protocols,
        "bases": bases,
        "methods": methods,
        "hashable": getattr(cls, "__hash__", None) is not None,
    }


def module_surface(module_name: str) -> dict[str, Any]:
    """Names, constant values and callable signatures of one module."""
    module = importlib.import_module(module_name)
    names = module_names(module_name)
    values: dict[str, Any] = {}
    signatures: dict[str, Signature] = {}
    for name, kind in names.items():
        obj = getattr(module, name)
        if kind == "constant":
            value = plain_value(obj)
            if value is not None:
                values[name] = value
        else:
            sig = signature_of(obj)
            if sig is not None:
                signatures[name] = sig
    return {"names": names, "values": values, "signatures": signatures}


def describe() -> dict[str, Any]:
    """Everything the golden records, for whichever taskflow is importable."""
    instances = sample_instances()
    return {
        "modules": {m: module_surface(m) for m in MODULES},
        "classes": {c: class_surface(c, instances[c]) for c in CLASSES},
    }


def main() -> None:
    from importlib import metadata

    version = metadata.version("taskflow")
    golden = {
        "comment": "Generated by tests/helpers/public_api_golden.py; do not edit by hand.",
        "upstream_version": version,
        **describe(),
    }
    text = json.dumps(golden, indent=1, sort_keys=True)
    # One line per innermost list (a parameter triple, a tuple constant) keeps the file
    # short enough to review and its diffs readable.
    text = re.sub(r"\[[^\[\]{}]*\]", lambda m: json.dumps(json.loads(m.group())), text)
    GOLDEN_PATH.write_text(text + "\n")
    print(f"wrote {GOLDEN_PATH} from taskflow {version}", file=sys.stderr)


if __name__ == "__main__":
    main()
