"""Does a conductor's memory stay flat? Its RSS and traced heap after N jobs, then after M.

Usage::

    python benchmarks/conductor_memory.py [--first 100] [--jobs 1000] [--kind blocking]
                                          [--no-tracemalloc]

One conductor (``--kind``, default blocking) runs one-task jobs on a SQLite jobboard with
SQLite persistence, both in a temporary directory, in this process. Jobs are posted in waves
of at most 100 (by a board opened and closed for each wave, so the poster keeps nothing) and
the conductor runs each wave to its end (``run(max_dispatches=...)``). After ``--first``
jobs and again after ``--jobs`` jobs, with the garbage collected, it prints the process's
RSS and (unless ``--no-tracemalloc``) the bytes tracemalloc sees allocated, then the growth
between the two and per job. The issue's target: within 20 MiB (upstream TaskFlow 6.5 grows
by about 1.4 MiB per job). Exit status 1 if the RSS grew by more than that.

With tracemalloc the run is several times slower; its figure is the one that shows a leak
of Python objects exactly (RSS also moves with the allocator's caching and fragmentation).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from taskflow import engines, task
from taskflow.conductors import backends as conductor_backends
from taskflow.jobs import backends as board_backends
from taskflow.patterns import linear_flow
from taskflow.persistence import backends as persistence_backends
from taskflow.persistence import models

MIB = 1024 * 1024
#: The issue's bound on growth between the two checkpoints.
LIMIT = 20 * MIB
#: Jobs posted at once at most (the conductor lists the whole board on each claim).
WAVE = 100


class Add(task.Task):
    def execute(self, a: int, b: int) -> int:
        return a + b


def one_task() -> linear_flow.Flow:
    return linear_flow.Flow("one").add(Add("add", provides="sum"))


def rss() -> int:
    """This process's resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    import resource

    return pages * resource.getpagesize()


def post_wave(board_conf: dict[str, Any], persistence: Any, start: int, count: int) -> None:
    """Post ``count`` jobs, each a book with one flow detail (``a + b``), then forget them."""
    poster = board_backends.fetch("poster", board_conf, persistence=persistence)
    poster.connect()
    try:
        for index in range(start, start + count):
            book = models.LogBook(f"job-{index}")
            flow_detail = models.FlowDetail(f"job-{index}", str(uuid.uuid4()))
            flow_detail.meta["store"] = {"a": index, "b": 1}
            book.add(flow_detail)
            with contextlib.closing(persistence.get_connection()) as conn:
                conn.save_logbook(book)
            engines.save_factory_details(flow_detail, one_task, (), {}, backend=persistence)
            poster.post(f"job-{index}", book=book)
    finally:
        poster.close()


def measure(label: str, traced: bool) -> tuple[int, int]:
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] if traced else 0
    resident = rss()
    heap_text = f", traced heap {heap / MIB:7.2f} MiB" if traced else ""
    print(f"{label}: RSS {resident / MIB:7.2f} MiB{heap_text}", flush=True)
    return resident, heap


def run(first: int, jobs: int, kind: str, traced: bool) -> tuple[int, int]:
    """The growth (RSS, traced heap) between ``first`` jobs done and ``jobs`` jobs done."""
    workdir = Path(tempfile.mkdtemp(prefix="taskflow-memory-"))
    try:
        persistence = persistence_backends.fetch(f"sqlite:///{workdir / 'flows.db'}")
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.upgrade()
        board_conf = {"board": "sqlite", "connection": f"sqlite:///{workdir / 'board.db'}"}
        board = board_backends.fetch("conductor", board_conf, persistence=persistence)
        board.connect()
        conductor = conductor_backends.fetch(kind, "memory", board, persistence=persistence)
        if traced:
            tracemalloc.start()
        done = 0
        figures = []
        started = time.perf_counter()
        for checkpoint in (first, jobs):
            while done < checkpoint:
                count = min(WAVE, checkpoint - done)
                post_wave(board_conf, persistence, done, count)
                conductor.run(max_dispatches=count)
                done += count
            figures.append(measure(f"after {done:5d} jobs", traced))
        elapsed = time.perf_counter() - started
        with contextlib.closing(persistence.get_connection()) as conn:
            books = list(conn.get_logbooks())
        succeeded = sum(
            1 for book in books for flow_detail in book if flow_detail.state == "SUCCESS"
        )
        if traced:
            tracemalloc.stop()
        conductor.close()
        board.close()
        persistence.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if succeeded != jobs:
        raise SystemExit(f"only {succeeded} of {jobs} flows succeeded")
    print(f"{jobs} jobs in {elapsed:.1f}s ({jobs / elapsed:.0f} jobs/s, {kind} conductor)")
    (rss_first, heap_first), (rss_last, heap_last) = figures
    return rss_last - rss_first, heap_last - heap_first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--first", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kind", choices=("blocking", "nonblocking"), default="blocking")
    parser.add_argument("--no-tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.first < args.jobs:
        parser.error("need 0 < --first < --jobs")
    traced = not args.no_tracemalloc
    rss_growth, heap_growth = run(args.first, args.jobs, args.kind, traced)
    extra = args.jobs - args.first
    growth = f"RSS {rss_growth / MIB:+.2f} MiB ({rss_growth / extra / 1024:+.2f} KiB/job)"
    if traced:
        growth += f", traced heap {heap_growth / MIB:+.2f} MiB"
        growth += f" ({heap_growth / extra / 1024:+.2f} KiB/job)"
    print(f"growth over the last {extra} jobs: {growth}")
    ok = rss_growth <= LIMIT
    print(f"{'within' if ok else 'NOT within'} {LIMIT // MIB} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
