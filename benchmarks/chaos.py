"""Chaos on conductor fleets, bigger and longer than the tests': kills, pauses, then checks.

Usage::

    python benchmarks/chaos.py [--board all|sqlite|postgresql|redis|zookeeper|etcd]
                               [--jobs 60] [--tasks 4] [--conductors 4] [--kills 12]
                               [--pauses 3] [--seed N] [--deadline 600]

Runs :class:`tests.conductors.chaos.Chaos` (see its docstring for the schedule and every
invariant checked) on each board chosen, one after the other, each against the service the
tests use (``TASKFLOW_TEST_POSTGRES_URL``, ``..._REDIS_URL``, ``..._ZK_HOSTS``,
``..._ETCD``; loopback defaults) in a namespace, schema or path of its own, with SQLite
persistence in a temporary directory (PostgreSQL persistence on the PostgreSQL board).
Prints the seed (``--seed`` or ``TASKFLOW_CHAOS_SEED`` replays a run's schedule), the
schedule as it is played, the checks' summary and the time each board took. Exit status 1
if any board broke an invariant or hung; an unreachable service is reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives with the tests

from tests.conductors.chaos import BOARDS, Chaos, Plan, board_env, seed  # noqa: E402
from tests.helpers import services  # noqa: E402

#: Each board's service: (name in tests/helpers/services.py, default port).
SERVICES = {
    "postgresql": ("POSTGRES_URL", 5432),
    "redis": ("REDIS_URL", 6379),
    "zookeeper": ("ZK_HOSTS", 2181),
    "etcd": ("ETCD", 2379),
}


def run_board(kind: str, plan: Plan) -> bool | None:
    """One run on a board of ``kind``; None if its service is unreachable."""
    address = None
    if kind in SERVICES:
        name, port = SERVICES[kind]
        address = services.address(name)
        if not services.reachable(address, port):
            print(f"{kind}: service unreachable at {address}, skipped")
            return None
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="taskflow-chaos-") as tmp,
        board_env(kind, Path(tmp), address, "benchmark-chaos") as env,
    ):
        chaos = Chaos(env, plan)
        try:
            chaos.run()
            chaos.check()
        except AssertionError as err:
            print(f"{kind}: FAILED after {time.monotonic() - started:.1f}s\n{err}")
            return False
    print(f"{kind}: ok in {time.monotonic() - started:.1f}s (seed {plan.seed})")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--board", choices=("all", *BOARDS), default="all")
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--conductors", type=int, default=4)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--pauses", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="default: TASKFLOW_CHAOS_SEED")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds per board")
    args = parser.parse_args(argv)
    plan = Plan(
        seed=args.seed if args.seed is not None else seed(),
        jobs=args.jobs,
        tasks=args.tasks,
        conductors=args.conductors,
        kills=args.kills,
        pauses=args.pauses,
        deadline=args.deadline,
    )
    kinds = BOARDS if args.board == "all" else (args.board,)
    results = {kind: run_board(kind, plan) for kind in kinds}
    print(
        "summary: "
        + ", ".join(
            f"{kind} {'skipped' if ok is None else 'ok' if ok else 'FAILED'}"
            for kind, ok in results.items()
        )
    )
    return 1 if any(ok is False for ok in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
