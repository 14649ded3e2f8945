"""Runs one flow with upstream TaskFlow 6.5's worker-based engine (run by upstream).

Run as ``python _upstream_engine.py '<json conf>'`` under an interpreter that imports
upstream TaskFlow (see ``tests/helpers/upstream_taskflow.py``) with the repository root on
its path for :mod:`tests.workers.tasks` (which imports only ``taskflow.task``). The conf
holds ``exchange``, ``url``, ``topic``, ``case`` (``"results"`` or ``"failure"``) and
``journal`` (a file path the tasks journal to). Logging goes to stderr at WARNING, as
``LEVEL logger: message`` lines. One JSON object is printed on stdout:

``{"taskflow": <file upstream's taskflow came from>, "tasks": <file of the task module>,
"outcome": "success" | <name of the exception run() raised>, "failures": [{"exception_str",
"is_value_error"}] (what that exception wraps), "results": {name: value} (success only),
"states": {atom name: state, "<flow>": flow state}, "events": {task name: [[event,
details], ...]} (what each task's notifier heard on the engine's side), "accepted": {task
name: {response state: count}} (the responses the engine matched to that task's requests)}``.
"""

from __future__ import annotations

import json
import logging
import re
import sys

import taskflow
from taskflow import engines, exceptions
from taskflow.patterns import linear_flow
from tests.workers import tasks


class Accepted(logging.Handler):
    """Counts the responses upstream's executor says it accepted, per task and state."""

    _MATCHED = re.compile(
        r"Extracted response .*'state': '(?P<state>[A-Z]+)'.* and matched it to request"
        r" .*'task_name': '(?P<task>[^']+)'"
    )

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.counts = {}

    def emit(self, record):
        found = self._MATCHED.search(record.getMessage())
        if found:
            per_task = self.counts.setdefault(found["task"], {})
            per_task[found["state"]] = per_task.get(found["state"], 0) + 1


def _flow(case):
    if case == "results":
        return linear_flow.Flow("sums").add(
            tasks.Add("first", provides="c"),
            tasks.Add("second", rebind={"a": "c"}, provides="d"),
            tasks.Sleep("nap", provides="nap_pid"),
            tasks.Progress("progress", provides="said"),
        ), {"a": 1, "b": 2, "seconds": 2.5}
    if case == "failure":
        return linear_flow.Flow("failing").add(
            tasks.Echo("one", provides="x"),
            tasks.Echo("two", rebind={"value": "x"}),
            tasks.Boom("boom"),
        ), {"value": [1, 2]}
    raise ValueError(case)


def main():
    conf = json.loads(sys.argv[1])
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    to_stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(to_stderr)
    logging.getLogger().setLevel(logging.WARNING)
    # Upstream's executor logs each response it accepts at DEBUG ("Extracted response
    # '<Response ... {'state': ...}>' and matched it to request '<Request ...
    # 'task_name': ...>'"): counted per (task, state), they show what it took in.
    accepted = Accepted()
    wbe = logging.getLogger("taskflow.engines.worker_based")
    wbe.setLevel(logging.DEBUG)
    wbe.addHandler(accepted)
    flow, store = _flow(conf["case"])
    store["journal_path"] = conf["journal"]
    events = {}
    for atom in flow:
        heard = events.setdefault(atom.name, [])
        atom.notifier.register(
            atom.notifier.ANY, lambda event, details, heard=heard: heard.append([event, details])
        )
    engine = engines.load(
        flow,
        store=store,
        engine="worker-based",
        exchange=conf["exchange"],
        topics=[conf["topic"]],
        url=conf["url"],
        transition_timeout=30,
    )
    report = {"taskflow": taskflow.__file__, "tasks": tasks.__file__, "events": events}
    report["accepted"] = accepted.counts
    try:
        engine.run()
    except Exception as err:
        report["outcome"] = type(err).__name__
        wrapped = list(err) if isinstance(err, exceptions.WrappedFailure) else []
        report["failures"] = [
            {"exception_str": f.exception_str, "is_value_error": bool(f.check(ValueError))}
            for f in wrapped
        ]
    else:
        report["outcome"] = "success"
        report["results"] = engine.storage.fetch_all()
    report["states"] = {atom.name: engine.storage.get_atom_state(atom.name) for atom in flow}
    report["states"]["<flow>"] = engine.storage.get_flow_state()
    print(json.dumps(report, default=repr), flush=True)


if __name__ == "__main__":
    main()
