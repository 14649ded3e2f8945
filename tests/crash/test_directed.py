"""Crash trials aimed at the windows the design names (DESIGN.md §3), on the directory backend.

The random trials (``test_crash.py``) hit these windows by chance; these hit each one on
purpose, with both local engines, so a regression there fails every run. Each plan kills
the child at one precise point (see ``child.py``); the flow is then resumed to its end and
checked exactly like a random trial.
"""

from __future__ import annotations

import random

import pytest

from tests.crash import harness

# (id, variant, kill plans of the successive children)
WINDOWS = [
    # After RUNNING is stored, before the task is called.
    (
        "after-running",
        "good",
        [{"mode": "write-after", "n": 1, "match": {"atom": "c", "state": "RUNNING"}}],
    ),
    # A call returned; its result is not stored yet (the first, fifth and tenth outcomes).
    ("before-result-1", "good", [{"mode": "result", "n": 1}]),
    ("before-result-5", "good", [{"mode": "result", "n": 5}]),
    ("before-result-10", "fail", [{"mode": "result", "n": 10}]),
    # Right after a result is stored, before any successor starts.
    (
        "after-result",
        "good",
        [{"mode": "write-after", "n": 1, "match": {"atom": "b", "state": "SUCCESS"}}],
    ),
    # In the middle of a task, and of the unordered part running in parallel.
    ("mid-execute", "good", [{"mode": "execute", "n": 4}]),
    # The retried subflow: its failure stored, before the retry decides.
    (
        "after-subflow-failure",
        "good",
        [{"mode": "write-after", "n": 1, "match": {"atom": "r2", "state": "FAILURE"}}],
    ),
    # The retry's RETRY decision stored, before its subflow is marked for reverting.
    (
        "after-retry-decision",
        "good",
        [{"mode": "write-after", "n": 1, "match": {"atom": "retry", "intention": "RETRY"}}],
    ),
    # Mid-way through the subflow's revert, and just after it was reset for the next attempt.
    ("mid-subflow-revert", "good", [{"mode": "revert", "n": 1}]),
    (
        "after-subflow-reset",
        "good",
        [{"mode": "write-after", "n": 2, "match": {"atom": "r1", "state": "PENDING"}}],
    ),
    # The flow's revert: after the first REVERT intention is stored, mid-revert, before a
    # revert result is stored, and several kills in a row.
    (
        "after-first-revert-intention",
        "fail",
        [{"mode": "write-after", "n": 1, "match": {"atom": "a", "intention": "REVERT"}}],
    ),
    (
        "fan-after-first-revert-intention",
        "fanfail",
        [{"mode": "write-after", "n": 1, "match": {"atom": "a", "intention": "REVERT"}}],
    ),
    ("mid-revert", "fail", [{"mode": "revert", "n": 8}]),
    (
        "before-revert-result",
        "fail",
        [{"mode": "write-before", "n": 1, "match": {"atom": "c", "state": "REVERTED"}}],
    ),
    (
        "kill-resume-kill",
        "fail",
        [{"mode": "result", "n": 6}, {"mode": "revert", "n": 2}, {"mode": "write-before", "n": 3}],
    ),
]


@pytest.mark.parametrize("engine", ["serial", "parallel"])
@pytest.mark.parametrize(("variant", "plans"), [pytest.param(v, p, id=i) for i, v, p in WINDOWS])
def test_window(tmp_path, engine, variant, plans):
    kind = harness.KINDS["dir"]
    with kind.provision(None, tmp_path, random.Random(0)) as conf:
        report = harness.run_trial(kind, conf, variant, 0, 0, tmp_path, plans=plans, engine=engine)
    assert not report.violations, f"journal {tmp_path / 'journal.jsonl'}\n{report.describe()}"
    assert report.kills == len(plans), f"a planned kill missed its window\n{report.describe()}"


def test_lost_write_is_noticed(tmp_path):
    """A write acknowledged but never made (a lying backend) fails the trial."""
    kind = harness.KINDS["dir"]
    plans = [{"mode": "result", "n": 4, "drop": 6}]
    with kind.provision(None, tmp_path, random.Random(0)) as conf:
        report = harness.run_trial(kind, conf, "good", 0, 0, tmp_path, plans=plans, engine="serial")
    assert report.kills == 1
    assert any("but the writes that returned left" in v for v in report.violations), (
        report.describe()
    )
