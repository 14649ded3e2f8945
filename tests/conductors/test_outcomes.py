"""Each kind of conductor: events, and what happens to a job after its run (consume,
abandon, trash), as upstream TaskFlow 6.5 does (observed black-box), plus ``max_attempts``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow._conductors.outcomes import Outcome, outcome_of
from taskflow._serialization import UnstorableValue
from taskflow.types.failure import Failure
from tests.conductors import flows
from tests.conductors.conftest import PATIENCE, record_events

if TYPE_CHECKING:
    from tests.conductors.conftest import Env

KINDS = ["blocking", "nonblocking"]

STEPS = [
    f"{step}_{edge}"
    for step in ("compilation", "preparation", "validation", "running")
    for edge in ("start", "end")
]


def _run(env: Env, kind: str, max_dispatches: int, **kwargs: object) -> list[tuple[str, str]]:
    conductor = env.conductor(kind, **kwargs)  # type: ignore[arg-type]
    events = record_events(conductor)
    conductor.run(max_dispatches=max_dispatches)
    assert conductor.wait(0)
    return events


@pytest.mark.parametrize("kind", KINDS)
def test_a_successful_job_is_consumed_after_every_step(env: Env, kind: str):
    job = env.post(flows.ok, "ok")
    events = _run(env, kind, 1)
    assert events == [(event, "ok") for event in [*STEPS, "job_consumed"]]
    assert job.state == states.COMPLETE
    flow_detail = env.flow_detail(job)
    assert flow_detail.state == states.SUCCESS
    results = {ad.name: ad.results for ad in flow_detail if not ad.name.startswith("_")}
    assert results == {"one": "ONE", "two": "TWO"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_whose_task_fails_is_consumed_after_reverting(env: Env, kind: str):
    # As upstream: the failure is the job's result; running it again would fail again.
    job = env.post(flows.boom, "boom")
    events = _run(env, kind, 1)
    assert events == [(e, "boom") for e in [*STEPS[:-1], "job_consumed"]]  # no running_end
    assert job.state == states.COMPLETE
    assert env.flow_detail(job).state == states.REVERTED
    assert ("revert", "boom") in [(e, n) for e, n, _ in flows.read_journal(env.journal)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_stopped_by_a_storage_failure_is_abandoned(env: Env, kind: str):
    job = env.post(flows.outage, "outage")
    events = _run(env, kind, 1)
    assert events[-1] == ("job_abandoned", "outage")
    assert job.state == states.UNCLAIMED
    assert job.attempts == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_whose_result_can_not_be_stored_is_consumed_after_reverting(env: Env, kind: str):
    # UnstorableValue is a StorageFailure, but not an outage: the task failed, as it would
    # on every attempt, so the job is done (not abandoned to fail again and again).
    job = env.post(flows.unstorable, "unstorable")
    events = _run(env, kind, 1)
    assert events[-1] == ("job_consumed", "unstorable")
    assert job.state == states.COMPLETE
    assert env.flow_detail(job).state == states.REVERTED


def test_failures_that_call_for_another_attempt():
    def wrapped(*errors: Exception) -> exc.WrappedFailure:
        failures = []
        for error in errors:
            try:
                raise error
            except Exception:
                failures.append(Failure())
        return exc.WrappedFailure(failures)

    assert outcome_of(exc.ExecutionFailure("x")) is Outcome.ABANDON
    assert outcome_of(exc.FlowOwned("x")) is Outcome.ABANDON
    assert outcome_of(exc.OwnershipLost("x")) is Outcome.ABANDON
    assert outcome_of(RuntimeError("x")) is Outcome.CONSUME
    assert outcome_of(exc.MissingDependencies("f", ["a"])) is Outcome.CONSUME
    both = wrapped(exc.StorageFailure("a"), exc.ExecutionFailure("b"))
    assert outcome_of(both) is Outcome.ABANDON
    assert outcome_of(wrapped(exc.StorageFailure("a"), RuntimeError("b"))) is Outcome.CONSUME
    # A value no backend can store is its task's failure, not an outage.
    assert outcome_of(UnstorableValue("nan")) is Outcome.CONSUME
    assert outcome_of(wrapped(UnstorableValue("nan"))) is Outcome.CONSUME


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("broken factory", "ValueError: this factory is broken"),
        ("no factory", "ValueError: Cannot reconstruct flow"),
        ("no flow detail", "NotFound: No flow detail in book"),
        ("two flow details", "MultipleChoices: Book"),
        ("unknown flow_uuid", "NotFound: No flow detail"),
        ("no book", "NotFound: No book found in job"),
    ],
)
def test_a_job_that_cannot_become_an_engine_is_trashed_at_once(
    env: Env, kind: str, case: str, reason: str
):
    if case == "broken factory":
        job = env.post(flows.broken, "bad")
    elif case == "no factory":
        job = env.post(None, "bad")
    elif case == "no flow detail":
        job = env.post(flows.ok, "bad", flows=0)
    elif case == "two flow details":
        job = env.post(flows.ok, "bad", flows=2)
    elif case == "unknown flow_uuid":
        job = env.post(flows.ok, "bad", flow_uuid="not-in-the-book")
    else:
        job = env.post(flows.ok, "bad", book=False)
    events = _run(env, kind, 1)
    assert events == [("job_trashed", "bad")]  # before any engine step
    trash = env.trash()
    assert trash[job.uuid] is not None
    assert trash[job.uuid].startswith(reason), trash[job.uuid]  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", KINDS)
def test_the_job_names_its_flow_detail_and_the_store_merges_job_over_flow(env: Env, kind: str):
    job = env.post(
        flows.adder, "adder", store={"a": 1, "b": 10}, job_store={"b": 2}, flows=3, flow_uuid=1
    )
    _run(env, kind, 1)
    assert job.state == states.COMPLETE
    chosen = env.flow_detail(job, 1)
    assert chosen.state == states.SUCCESS
    assert next(ad for ad in chosen if ad.name == "add").results == 3
    assert env.flow_detail(job, 0).state is None  # the others are left alone


@pytest.mark.parametrize("kind", KINDS)
def test_engine_kind_and_options_reach_the_engine_with_the_jobs_fencing_token(env: Env, kind: str):
    job = env.post(flows.ok, "ok")
    conductor = env.conductor(kind, engine="parallel", engine_options={"max_workers": 2})
    seen: dict[str, object] = {}

    def running(event: str, details: dict[str, object]) -> None:
        engine = details["engine"]
        seen["engine"] = type(engine).__name__
        seen["options"] = dict(engine.options)  # type: ignore[attr-defined]
        seen["token"] = details["job"].token  # type: ignore[attr-defined]

    conductor.notifier.register("running_start", running)
    conductor.run(max_dispatches=1)
    assert seen["engine"] == "ParallelActionEngine"
    options = seen["options"]
    assert options["max_workers"] == 2  # type: ignore[index]
    token = seen["token"]
    assert isinstance(token, int)
    assert options["fencing_token"] == token  # type: ignore[index]
    assert options["fencing_key"] == job.uuid  # type: ignore[index]
    # The run owned the flow for the job's claim (persistence/base.py claim_flow).
    with contextlib.closing(env.persistence.get_connection()) as conn:
        ownership = conn.read_ownership(env.flow_detail(job).uuid)
    assert ownership is not None
    assert (ownership.fence_key, ownership.fence_token) == (job.uuid, token)


@pytest.mark.parametrize("kind", KINDS)
def test_max_attempts_trashes_a_job_with_its_last_error(env: Env, kind: str):
    job = env.post(flows.outage, "outage")
    events = _run(env, kind, 2, max_attempts=2)
    # Attempt 1 is abandoned; attempt 2 is the last allowed: trashed, not abandoned.
    assert [e for e in events if e[0].startswith("job_")] == [
        ("job_abandoned", "outage"),
        ("job_trashed", "outage"),
    ]
    reason = env.trash()[job.uuid]
    assert reason is not None
    assert "2 attempts (max_attempts=2)" in reason
    assert "StorageFailure: database unreachable" in reason
    starts = [n for e, n, _ in flows.read_journal(env.journal) if e == "start"]
    assert starts == ["outage", "outage"]


def test_max_attempts_trashes_on_claim_a_job_already_attempted_that_often(env: Env):
    job = env.post(flows.ok, "ok")
    holder = env.board("holder")
    for _ in range(2):  # two holders that gave the job up
        listed = next(iter(holder.iterjobs()))
        holder.claim(listed, "someone")
        holder.abandon(listed, "someone")
    events = _run(env, "blocking", 1, max_attempts=2)
    assert events == [("job_trashed", "ok")]  # never run a third time
    reason = env.trash()[job.uuid]
    assert reason is not None
    assert reason.startswith("Gave up after 2 attempts (max_attempts=2)")
    assert not env.journal.exists()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"wait_timeout": -1}, ValueError),
        ({"wait_timeout": "soon"}, ValueError),
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": 1.5}, ValueError),
        ({"executor_factory": 5}, ValueError),
        ({"max_simultaneous_jobs": 0}, ValueError),
        ({"bogus": 1}, TypeError),
    ],
)
def test_bad_options_are_refused(env: Env, kwargs: dict[str, object], error: type[Exception]):
    with pytest.raises(error):
        env.conductor("nonblocking", **kwargs)


def test_conductor_identity_and_fetch(env: Env):
    conductor = env.conductor("blocking", name="alpha")
    entity = conductor.conductor
    assert entity.kind == "conductor"
    metadata = entity.metadata
    assert entity.name == f"alpha@{metadata['hostname']}:{metadata['pid']}"
    assert type(conductor).__name__ == "BlockingConductor"
    assert type(env.conductor("nonblocking")).__name__ == "NonBlockingConductor"
    with pytest.raises(exc.NotFound, match="Could not find conductor nope"):
        env.conductor("nope")


def test_a_conductor_with_no_job_waits_quietly_and_stops_promptly(env: Env):
    conductor = env.conductor("nonblocking")
    assert not conductor.wait(0.01)  # no run yet
    thread = env.start(conductor)
    assert not conductor.wait(0.2)
    conductor.stop()
    assert conductor.wait(1.0)  # well within one wait_timeout step
    thread.join(PATIENCE)
    # A stopped conductor stays stopped, as upstream's: a later run returns at once.
    env.post(flows.ok, "late")
    conductor.run()
    assert not env.journal.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_whose_flow_another_holder_owns_is_abandoned_with_the_job_store_unwritten(
    env: Env, kind: str
):
    # Two jobs pointing at one flow detail: while the holder of the other one owns the
    # flow, this job can not run it now, but may later (abandoned, never trashed). The
    # job's store is written under the run's own claim, so nothing was written either.
    job = env.post(flows.ok, "shared", job_store={"extra": 1})
    flow_detail = env.flow_detail(job)
    with contextlib.closing(env.persistence.get_connection()) as holder:
        holder.claim_flow(flow_detail.uuid, 60.0, fencing_token=7, fencing_key="other-job")
        events = _run(env, kind, 1)
        assert events == [("job_abandoned", "shared")]
        assert job.state == states.UNCLAIMED
        assert env.trash() == {}
        assert [ad.name for ad in env.flow_detail(job)] == []
        holder.release_flow(flow_detail.uuid, holder.read_ownership(flow_detail.uuid).token)
    # Once the other holder let go, the job runs (the next attempt by anyone).
    events = _run(env, kind, 1)
    assert events[-1] == ("job_consumed", "shared")
    stored = env.flow_detail(job)
    assert stored.state == states.SUCCESS
    injected = {ad.name: ad.results for ad in stored if ad.name.startswith("_")}
    assert list(injected.values()) == [
        {"journal": str(env.journal), "gate": str(env.gate), "extra": 1}
    ]
