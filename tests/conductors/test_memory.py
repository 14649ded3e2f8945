"""A conductor keeps nothing per job: its heap is no bigger after a few hundred more jobs.

The bounded version of ``benchmarks/conductor_memory.py`` (which checks the issue's figure:
within 20 MiB from 100 to 1,000 jobs). tracemalloc counts the Python objects allocated and
still alive, exactly, so a leak of even a small object per job shows, where RSS would hide
it among the allocator's caches; tracing is started after a warm-up (imports, compiled
statements, pools) and only the jobs after it are traced, as tracing slows Python down.
"""

from __future__ import annotations

import contextlib
import gc
import time
import tracemalloc
from typing import TYPE_CHECKING

import pytest

from taskflow import states
from tests.conductors import flows

if TYPE_CHECKING:
    from taskflow.conductors.base import Conductor
    from tests.conductors.conftest import Env

#: Jobs run before tracing starts, traced before the heap is first measured (bounded caches
#: fill up: statements, pooled connections' cursors), then traced and measured. The heap
#: wobbles by a few tens of KiB whatever the count (which cursors and parsers happen to be
#: alive at the measurement): enough traced jobs keep that well under the per-job bound.
WARM_UP, SETTLE, TRACED = 30, 30, 240
#: Traced bytes per job that the heap may grow by: an engine, a storage or a logbook left
#: behind per job is tens of KiB; what is left of settling and the watcher thread's
#: in-flight reads is tens of bytes per job.
PER_JOB = 1024


def _run(env: Env, conductor: Conductor, count: int, start: int) -> list[str]:
    """Post ``count`` one-task jobs and run them; their flow details' uuids (the jobs
    themselves, which hold their books, are not kept: they are the test's, not the
    conductor's)."""
    flow_uuids = []
    for index in range(start, start + count):
        job = env.post(flows.adder, f"add-{index}", store={"a": index, "b": 1})
        flow_uuids.append(env.flow_detail(job).uuid)
    conductor.run(max_dispatches=count)
    return flow_uuids


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["blocking", "nonblocking"])
def test_a_conductors_heap_does_not_grow_with_the_jobs_it_runs(env: Env, kind: str):
    conductor = env.conductor(kind)
    _run(env, conductor, WARM_UP, 0)
    started = time.perf_counter()
    tracemalloc.start()
    try:
        _run(env, conductor, SETTLE, WARM_UP)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        flow_uuids = []
        for wave in range(WARM_UP + SETTLE, WARM_UP + SETTLE + TRACED, 30):
            flow_uuids += _run(env, conductor, 30, wave)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(
        f"{kind}: {growth / TRACED:.0f} bytes per job over {TRACED} traced jobs"
        f" ({time.perf_counter() - started:.1f}s)"
    )
    assert growth < PER_JOB * TRACED, f"grew by {growth} bytes over {TRACED} jobs"
    with contextlib.closing(env.persistence.get_connection()) as conn:
        assert {conn.get_flow_details(uuid).state for uuid in flow_uuids} == {states.SUCCESS}
