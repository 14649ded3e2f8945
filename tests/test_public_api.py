"""Our public API is upstream TaskFlow 6.5.0's, name for name and parameter for parameter.

``helpers/public_api_golden.json`` lists what upstream exposes (see
``helpers/public_api_golden.py`` for how it was recorded). Every golden name must exist here
with the same kind, every golden constant must keep its value, and every golden callable must
accept the same parameters (same names, same positional order, no new required ones).

Anything we leave out on purpose is listed below with the reason; everything else that is
missing fails the test.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import pytest

_HELPER = Path(__file__).parent / "helpers" / "public_api_golden.py"


def _load_probe() -> Any:
    # Loaded by path: the helper doubles as a script run under upstream's interpreter, so it
    # must not depend on how pytest puts tests/ on sys.path.
    spec = importlib.util.spec_from_file_location("_public_api_probe", _HELPER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


probe = _load_probe()
GOLDEN: dict[str, Any] = json.loads(probe.GOLDEN_PATH.read_text())

#: Upstream names we do not provide, keyed ``module:name`` (or ``module.Class:member``).
REMOVED_ON_PURPOSE: dict[str, str] = {
    # Module loggers are objects, not API; logging is configured by logger name
    # (``logging.getLogger("taskflow.storage")``), which does not need the attribute.
    "taskflow.task:LOG": "module logger object, not API",
    "taskflow.types.notifier:LOG": "module logger object, not API",
    "taskflow.engines.helpers:LOG": "module logger object, not API",
    "taskflow.engines.action_engine.engine:LOG": "module logger object, not API",
    "taskflow.storage:LOG": "module logger object, not API",
    "taskflow.persistence.backends:LOG": "module logger object, not API",
    "taskflow.utils.persistence_utils:LOG": "module logger object, not API",
    "taskflow.listeners.base:LOG": "module logger object, not API",
    "taskflow.listeners.logging:LOG": "module logger object, not API",
    "taskflow.listeners.timing:LOG": "module logger object, not API",
    "taskflow.listeners.claims:LOG": "module logger object, not API",
    "taskflow.jobs.backends.impl_redis:LOG": "module logger object, not API",
    "taskflow.jobs.backends.impl_zookeeper:LOG": "module logger object, not API",
    "taskflow.jobs.backends.impl_etcd:LOG": "module logger object, not API",
    "taskflow.jobs.base:RETRY_ATTEMPTS": (
        "retry tuning of upstream's own board code; no board here reads it, and a module "
        "constant that changes nothing would mislead"
    ),
    "taskflow.jobs.base:RETRY_WAIT_TIMEOUT": "same as RETRY_ATTEMPTS",
    "taskflow.engines.worker_based.executor:LOG": "module logger object, not API",
    "taskflow.engines.worker_based.protocol:build_a_machine": (
        "builds the automaton FiniteMachine behind upstream's Request; ours keeps a request's "
        "lifecycle as a transition table (Request.transition/current_state work the same), "
        "with no automaton dependency"
    ),
    "taskflow.engines.worker_based.protocol:make_an_event": (
        "names the event ('on_<state>') of build_a_machine's machine; nothing else uses it"
    ),
}

#: Upstream signatures we match in spirit but not literally, keyed like REMOVED_ON_PURPOSE.
SIGNATURE_EXCEPTIONS: dict[str, str] = {
    "taskflow.patterns.graph_flow.Flow:add": (
        "upstream takes **kwargs and reads resolve_requires/resolve_existing from it; ours "
        "names those two keyword-only, so every valid upstream call still works"
    ),
    "taskflow.patterns.graph_flow.TargetedFlow:add": "same as graph_flow.Flow.add",
    "taskflow.patterns.graph_flow:TargetedFlow": (
        "upstream forwards (*args, **kwargs) to graph_flow.Flow(name, retry=None); ours spells "
        "those parameters out"
    ),
    "taskflow.types.graph:merge_graphs": (
        "upstream's **kwargs only carries overlap_detector, which ours names keyword-only"
    ),
    "taskflow.task.MapFunctorTask:execute": (
        "called by the engine with keyword arguments only; upstream's *args is never filled"
    ),
    "taskflow.task.ReduceFunctorTask:execute": "same as MapFunctorTask.execute",
    "taskflow.types.graph:DiGraph": (
        "networkx subclass; ours forwards (*args, **kwargs) to networkx, which takes "
        "incoming_graph_data positionally and name as a graph attribute"
    ),
    "taskflow.types.graph:Graph": "same as DiGraph",
    "taskflow.types.graph:OrderedDiGraph": "same as DiGraph",
    "taskflow.types.graph:OrderedGraph": "same as DiGraph",
    "taskflow.types.tree:FrozenNode": (
        "an exception class; ours keeps Exception's constructor, which accepts any arguments"
    ),
    "taskflow.jobs.backends.impl_redis:RedisJob": (
        "jobs are made by their board from what it read, as job_class(board, listing, "
        "persistence); users get them from post() and iterjobs(), never construct one"
    ),
    "taskflow.jobs.backends.impl_zookeeper:ZookeeperJob": "same as impl_redis.RedisJob",
    "taskflow.jobs.backends.impl_etcd:EtcdJob": "same as impl_redis.RedisJob",
}

#: Public modules of ours that upstream 6.5.0 does not have, with what each exposes (in the
#: golden's form): not generated from upstream, so their API changes only on purpose here.
OURS_ONLY: dict[str, dict[str, Any]] = {
    "taskflow.jobs.backends.impl_sqlalchemy": {
        "names": {"SQLAlchemyJobBoard": "class"},
        "values": {},
        "signatures": {
            # Upstream's boards' constructor without ``client`` (an engine is made from conf).
            "SQLAlchemyJobBoard": [
                ["name", "POSITIONAL_OR_KEYWORD", False],
                ["conf", "POSITIONAL_OR_KEYWORD", False],
                ["persistence", "POSITIONAL_OR_KEYWORD", True],
                ["emit_notifications", "POSITIONAL_OR_KEYWORD", True],
            ],
        },
    },
}

# Parameter kinds, as recorded by the probe.
_POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
_VARIADIC = ("VAR_POSITIONAL", "VAR_KEYWORD")


@functools.cache
def _ours() -> dict[str, Any]:
    return probe.describe()  # type: ignore[no-any-return]


def _golden_key_exists(key: str) -> bool:
    owner, _, name = key.partition(":")
    if owner in GOLDEN["modules"]:
        module = GOLDEN["modules"][owner]
        return name in module["names"] or name in module["signatures"]
    if owner in GOLDEN["classes"]:
        return name in GOLDEN["classes"][owner]["members"]
    return False


def signature_problems(upstream: list[list[Any]], ours: list[list[Any]] | None) -> list[str]:
    """Ways a call that works upstream could fail against ``ours`` (empty when compatible)."""
    if ours is None:
        return ["has no inspectable signature"]
    problems: list[str] = []
    our_params = {name: (kind, has_default) for name, kind, has_default in ours}
    our_kinds = {kind for _, kind, _ in ours}
    for name, kind, has_default in upstream:
        if kind in _VARIADIC:
            if kind not in our_kinds:
                star = "*" if kind == "VAR_POSITIONAL" else "**"
                problems.append(f"accepts {star}{name} upstream but not here")
            continue
        if name not in our_params:
            if kind != "POSITIONAL_ONLY":
                problems.append(f"parameter {name!r} is missing")
            continue
        our_kind, our_default = our_params[name]
        if kind in _POSITIONAL and our_kind == "KEYWORD_ONLY":
            problems.append(f"parameter {name!r} is keyword-only here")
        if kind != "POSITIONAL_ONLY" and our_kind == "POSITIONAL_ONLY":
            problems.append(f"parameter {name!r} is positional-only here")
        if has_default and not our_default:
            problems.append(f"parameter {name!r} has a default upstream but is required here")
    upstream_order = [name for name, kind, _ in upstream if kind in _POSITIONAL]
    our_order = [name for name, kind, _ in ours if kind in _POSITIONAL]
    if our_order[: len(upstream_order)] != upstream_order:
        problems.append(f"positional order {our_order} differs from upstream {upstream_order}")
    upstream_names = {name for name, _, _ in upstream}
    problems.extend(
        f"extra parameter {name!r} is required"
        for name, kind, has_default in ours
        if name not in upstream_names and kind not in _VARIADIC and not has_default
    )
    return problems


def _check_signatures(
    owner: str, upstream: dict[str, list[list[Any]]], ours: dict[str, list[list[Any]]]
) -> list[str]:
    errors: list[str] = []
    for name, sig in upstream.items():
        key = f"{owner}:{name}"
        if key in REMOVED_ON_PURPOSE or key in SIGNATURE_EXCEPTIONS:
            continue
        if name not in ours and not _has_member(owner, name):
            continue  # reported as a missing name by the other tests
        errors.extend(f"{key}: {p}" for p in signature_problems(sig, ours.get(name)))
    return errors


def _has_member(owner: str, name: str) -> bool:
    if owner in GOLDEN["modules"]:
        return hasattr(importlib.import_module(owner), name)
    return name in _ours()["classes"][owner]["members"]


def test_golden_was_recorded_from_upstream_6_5_0() -> None:
    assert GOLDEN["upstream_version"] == "6.5.0"
    assert set(GOLDEN["modules"]) == set(probe.MODULES)
    assert set(GOLDEN["classes"]) == set(probe.CLASSES)


@pytest.mark.parametrize("key", sorted(REMOVED_ON_PURPOSE.keys() | SIGNATURE_EXCEPTIONS.keys()))
def test_exception_lists_name_real_upstream_api(key: str) -> None:
    # A stale entry would silently hide a name; each must still be in the golden.
    assert _golden_key_exists(key), f"{key} is not in the golden"


def test_removed_and_signature_exception_lists_do_not_overlap() -> None:
    assert not REMOVED_ON_PURPOSE.keys() & SIGNATURE_EXCEPTIONS.keys()


@pytest.mark.parametrize("module_name", sorted(GOLDEN["modules"]))
def test_module_has_upstream_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    expected = GOLDEN["modules"][module_name]["names"]
    missing = []
    wrong_kind = []
    for name, kind in expected.items():
        if f"{module_name}:{name}" in REMOVED_ON_PURPOSE:
            continue
        if not hasattr(module, name):
            missing.append(f"{name} ({kind})")
            continue
        obj = getattr(module, name)
        if kind == "class" and not inspect.isclass(obj):
            wrong_kind.append(f"{name} should be a class")
        elif kind == "function" and not callable(obj):
            wrong_kind.append(f"{name} should be callable")
        elif kind == "constant" and inspect.ismodule(obj):
            wrong_kind.append(f"{name} should be a value, not a module")
    assert not missing, f"{module_name} lacks upstream names: {', '.join(missing)}"
    assert not wrong_kind, f"{module_name}: {'; '.join(wrong_kind)}"


@pytest.mark.parametrize("module_name", sorted(GOLDEN["modules"]))
def test_module_constants_keep_upstream_values(module_name: str) -> None:
    module = importlib.import_module(module_name)
    differing = {}
    for name, value in GOLDEN["modules"][module_name]["values"].items():
        if hasattr(module, name) and probe.plain_value(getattr(module, name)) != value:
            differing[name] = (value, probe.plain_value(getattr(module, name)))
    assert not differing, f"{module_name} constants differ (upstream, ours): {differing}"


@pytest.mark.parametrize("module_name", sorted(GOLDEN["modules"]))
def test_module_callables_accept_upstream_parameters(module_name: str) -> None:
    ours = _ours()["modules"][module_name]["signatures"]
    errors = _check_signatures(module_name, GOLDEN["modules"][module_name]["signatures"], ours)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("class_name", sorted(GOLDEN["classes"]))
def test_class_has_upstream_members(class_name: str) -> None:
    upstream = GOLDEN["classes"][class_name]
    ours = _ours()["classes"][class_name]
    missing = []
    wrong_kind = []
    for name, kind in upstream["members"].items():
        if f"{class_name}:{name}" in REMOVED_ON_PURPOSE:
            continue
        if name not in ours["members"]:
            missing.append(f"{name} ({kind})")
        elif ours["members"][name] != kind:
            wrong_kind.append(f"{name} is a {ours['members'][name]} here, a {kind} upstream")
    missing.extend(p for p in upstream["protocols"] if p not in ours["protocols"])
    assert not missing, f"{class_name} lacks upstream members: {', '.join(missing)}"
    assert not wrong_kind, f"{class_name}: {'; '.join(wrong_kind)}"
    if not upstream["hashable"]:
        assert not ours["hashable"], f"{class_name} is unhashable upstream"


@pytest.mark.parametrize("class_name", sorted(GOLDEN["classes"]))
def test_class_keeps_upstream_bases(class_name: str) -> None:
    # Only bases from in-scope modules: users rely on isinstance() against those.
    in_scope = {b for b in GOLDEN["classes"][class_name]["bases"] if _in_scope(b)}
    missing = in_scope - set(_ours()["classes"][class_name]["bases"])
    assert not missing, f"{class_name} no longer subclasses {sorted(missing)}"


def _in_scope(dotted: str) -> bool:
    return dotted.rpartition(".")[0] in GOLDEN["modules"]


@pytest.mark.parametrize("class_name", sorted(GOLDEN["classes"]))
def test_class_methods_accept_upstream_parameters(class_name: str) -> None:
    upstream = GOLDEN["classes"][class_name]["methods"]
    ours = _ours()["classes"][class_name]["methods"]
    errors = _check_signatures(class_name, upstream, ours)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("module_name", sorted(OURS_ONLY))
def test_module_of_our_own_keeps_its_api(module_name: str) -> None:
    assert module_name not in GOLDEN["modules"], "upstream has it: compare with the golden"
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(OURS_ONLY[module_name]["names"])
    assert probe.module_surface(module_name) == OURS_ONLY[module_name]


def test_signature_check_catches_incompatible_changes() -> None:
    # Guards the checker itself: each of these would break some upstream call.
    upstream = [["a", "POSITIONAL_OR_KEYWORD", False], ["b", "POSITIONAL_OR_KEYWORD", True]]
    assert signature_problems(upstream, upstream) == []
    assert signature_problems(upstream, [["a", "POSITIONAL_OR_KEYWORD", False]])
    assert signature_problems(upstream, list(reversed(upstream)))
    assert signature_problems(upstream, [upstream[0], ["b", "KEYWORD_ONLY", True]])
    assert signature_problems(upstream, [upstream[0], ["b", "POSITIONAL_OR_KEYWORD", False]])
    assert signature_problems(upstream, [*upstream, ["c", "KEYWORD_ONLY", False]])
    assert not signature_problems(upstream, [*upstream, ["c", "KEYWORD_ONLY", True]])
    assert signature_problems([["kw", "VAR_KEYWORD", False]], [])
