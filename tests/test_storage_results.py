"""What ``Storage.get`` and the lookups return once atoms were reverted (issue 8).

Observed on upstream taskflow 6.5, black-box: an atom whose execution failed keeps giving its
Failure (``get``, ``fetch``, ``fetch_all``) in every state until it is reset, REVERTED and
REVERT_FAILURE included; an atom that succeeded and was then reverted has no result any
more (NotFound). A failed revert's Failure is likewise what ``get_revert_result`` gives in
every state.
"""

from __future__ import annotations

import pytest

from taskflow import engines, retry, states, task
from taskflow import exceptions as exc
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends, models
from taskflow.storage import Storage
from taskflow.types.failure import Failure


class Ok(task.Task):
    def execute(self) -> str:
        return f"{self.name}-result"

    def revert(self, **kwargs: object) -> str:
        return f"{self.name}-reverted"


class Boom(task.Task):
    def execute(self) -> None:
        raise RuntimeError(f"boom {self.name}")

    def revert(self, **kwargs: object) -> str:
        return "boom-reverted"


class BadRevert(Ok):
    def revert(self, **kwargs: object) -> str:
        raise ValueError(f"revert of {self.name} fails")


class BoomBadRevert(Boom):
    def revert(self, **kwargs: object) -> str:
        raise ValueError(f"revert of {self.name} fails")


def failure(message: str = "bad") -> Failure:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        return Failure()


def _run(flow: lf.Flow, error: type[Exception]) -> Storage:
    engine = engines.load(flow, backend=backends.fetch({"connection": "memory://"}))
    with pytest.raises(error):
        engine.run()
    return engine.storage


def test_get_of_a_task_reverted_after_its_failure_is_that_failure():
    storage = _run(lf.Flow("f").add(Ok("a", provides="x"), Boom("b", provides="y")), RuntimeError)
    assert storage.get_atom_state("b") == states.REVERTED
    result = storage.get("b")
    assert isinstance(result, Failure)
    assert result.check(RuntimeError)
    assert result.exception_str == "boom b"
    assert storage.get_execute_result("b") is result
    assert storage.get_revert_result("b") == "boom-reverted"
    assert storage.fetch("y") is result
    assert storage.fetch_all() == {"y": result}


def test_get_of_a_task_reverted_after_its_success_is_not_found():
    storage = _run(lf.Flow("f").add(Ok("a", provides="x"), Boom("b", provides="y")), RuntimeError)
    assert storage.get_atom_state("a") == states.REVERTED
    with pytest.raises(exc.NotFound):
        storage.get("a")
    with pytest.raises(exc.NotFound):
        storage.fetch("x")
    assert storage.get_revert_result("a") == "a-reverted"


def test_get_after_a_failed_revert():
    # b fails, a's revert fails: a (REVERT_FAILURE) has no execute result, b keeps its Failure.
    storage = _run(
        lf.Flow("f").add(BadRevert("a", provides="x"), Boom("b", provides="y")), ValueError
    )
    assert storage.get_atom_state("a") == states.REVERT_FAILURE
    with pytest.raises(exc.NotFound):
        storage.get("a")
    assert storage.get_revert_result("a").check(ValueError)
    assert storage.get("b").check(RuntimeError)


def test_get_of_a_failed_task_whose_revert_failed_is_its_execute_failure():
    storage = _run(lf.Flow("f").add(Ok("a", provides="x"), BoomBadRevert("b")), ValueError)
    assert storage.get_atom_state("b") == states.REVERT_FAILURE
    assert storage.get("b").check(RuntimeError)
    assert storage.get_revert_result("b").check(ValueError)
    assert storage.get("a") == "a-result"  # never reverted: the failed revert stopped it


def test_a_retried_task_gives_its_new_result():
    attempts: list[int] = []

    class Flaky(task.Task):
        def execute(self) -> str:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("first attempt")
            return "second attempt"

    engine = engines.load(lf.Flow("f", retry=retry.Times(2)).add(Flaky("t", provides="v")))
    engine.run()
    assert engine.storage.get("t") == "second attempt"
    assert engine.storage.fetch("v") == "second attempt"


def test_reverted_failure_survives_a_reload():
    backend = backends.fetch({"connection": "memory://"})
    engine = engines.load(lf.Flow("f").add(Boom("b", provides="y")), backend=backend)
    with pytest.raises(RuntimeError):
        engine.run()
    with backend.get_connection() as conn:
        reloaded = Storage(conn.get_flow_details(engine.storage.flow_uuid), backend=backend)
    assert reloaded.get_atom_state("b") == states.REVERTED
    assert reloaded.get("b").check(RuntimeError)


@pytest.mark.parametrize(
    "state",
    [
        states.PENDING,
        states.RUNNING,
        states.IGNORE,
        states.REVERTING,
        states.REVERTED,
        states.REVERT_FAILURE,
        states.RETRYING,
    ],
)
def test_execute_failure_is_returned_in_every_state(state):
    storage = Storage(models.FlowDetail("f", "u"))
    storage.ensure_atoms([Ok("t", provides="x"), Ok("other")])
    boom = failure()
    storage.save("t", boom, states.FAILURE)
    storage.set_atom_state("t", state)
    assert storage.get("t") is boom
    assert storage.fetch("x") is boom
    assert storage.fetch_all() == {"x": boom}
    assert storage.fetch_mapped_args({"v": "x"}, atom_name="other") == {"v": boom}


def test_reset_forgets_the_failure():
    storage = Storage(models.FlowDetail("f", "u"))
    storage.ensure_atom(Ok("t", provides="x"))
    storage.save("t", failure(), states.FAILURE)
    storage.save("t", "reverted", states.REVERTED)
    storage.reset("t")
    with pytest.raises(exc.NotFound):
        storage.get("t")
    with pytest.raises(exc.NotFound):
        storage.fetch("x")


@pytest.mark.parametrize(
    "state", [states.PENDING, states.RUNNING, states.SUCCESS, states.FAILURE, states.REVERTED]
)
def test_revert_failure_is_returned_in_every_state(state):
    storage = Storage(models.FlowDetail("f", "u"))
    storage.ensure_atom(Ok("t"))
    boom = failure("revert")
    storage.save("t", boom, states.REVERT_FAILURE)
    storage.set_atom_state("t", state)
    assert storage.get_revert_result("t") is boom
