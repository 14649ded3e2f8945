"""Benchmark this project against upstream TaskFlow 6.5.0, side by side, in one run.

Usage::

    python benchmarks/run.py [--quick] [--only NAME ...] [--repeat N] [--json PATH]
                             [--upstream-venv PATH] [--impl both|ours|upstream]
                             [--against GITREF] [--postgres-url URL]

Each measurement runs ``benchmarks/workloads.py`` in a fresh process: under this interpreter
with ``src/`` first on ``PYTHONPATH`` for "ours", and under a cached virtual environment
holding ``taskflow==6.5.0`` for "upstream". The environment is created on first use outside
the repository (``~/.cache/taskflow-bench/upstream-6.5.0`` unless ``--upstream-venv`` or
``TASKFLOW_BENCH_UPSTREAM_VENV`` says otherwise), with the SQL backend's dependencies
(SQLAlchemy, alembic, psycopg 3) and the clients of the jobboards and of the worker-based
engine (kombu). The table shows medians, the ratio upstream/ours and the project's target
for each workload. A workload that fails on one implementation is reported in the table and
the run goes on.

``--against GITREF`` also measures this project as it was at that git ref ("before"): its
``src/`` tree is exported (``git archive``) to a temporary directory outside the repository
and run exactly like ours, each of its runs interleaved with one of ours so that drift in the
machine's speed affects both alike. Two more columns show before's numbers and ours/before,
flagged when ours is more than 10% slower (or bigger). ``--impl ours --against REF`` compares
the two without running upstream.

The jobboard benchmarks (``jobs_<board>``, ``jobsnb_<board>``, ``pickup_<board>`` for the
sqlite, postgresql, redis, zookeeper and etcd boards; upstream has only the last three) run
``benchmarks/jobboards.py``, which starts its own conductor processes under the same
interpreter; they need the services on loopback (see that file for the addresses).

The worker-based engine benchmarks (``wbe_rtt1``, ``wbe_rtt4``: round trip per task of a
200-task chain on 1 and 4 workers; ``wbe_flow3``: the wall of a 3-task flow;
``wbe_throughput``: 200 unordered 20 ms tasks on 4 workers of 10 threads) run
``benchmarks/workers.py``, which starts its own worker processes under the same interpreter;
they need RabbitMQ at ``TASKFLOW_BENCH_AMQP_URL`` (default
``amqp://guest:guest@127.0.0.1:5672//``).

The persistence benchmarks write to SQLite files in the temporary directory and to new
schemas of the PostgreSQL database at ``--postgres-url`` (or ``TASKFLOW_BENCH_POSTGRES_URL``;
default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UPSTREAM_VERSION = "6.5.0"
ROOT = Path(__file__).resolve().parent.parent
WORKLOADS_PY = Path(__file__).resolve().parent / "workloads.py"
JOBBOARDS_PY = Path(__file__).resolve().parent / "jobboards.py"
WORKERS_PY = Path(__file__).resolve().parent / "workers.py"
DEFAULT_VENV = Path.home() / ".cache" / "taskflow-bench" / f"upstream-{UPSTREAM_VERSION}"
#: What upstream's SQL backend needs for SQLite and PostgreSQL (psycopg 3, named explicitly
#: in the workloads' URI), its Redis (with msgpack), ZooKeeper and etcd jobboards and its
#: worker-based engine (kombu) need, installed next to it; and the modules that show they
#: are there.
UPSTREAM_EXTRAS = (
    "SQLAlchemy",
    "alembic",
    "psycopg[binary]",
    "redis",
    "msgpack",
    "kazoo",
    "etcd3gw",
    "kombu",
)
UPSTREAM_EXTRA_MODULES = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "msgpack",
    "kazoo",
    "etcd3gw",
    "kombu",
)
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
IMPLS = ("ours", "upstream", "before")
#: ours/before above this is flagged: ours got more than 10% slower (or bigger).
REGRESSION = 1.10


@dataclass(frozen=True)
class Spec:
    """One benchmark as the runner sees it.

    Attributes:
        workload: the workload name understood by ``workloads.py``.
        args: extra arguments for ``workloads.py``.
        tasks: the number of tasks ours runs (and upstream, outside ``--quick``).
        upstream_repeat: how many times upstream runs by default; 0 means never.
        quick_upstream_tasks: the smaller size upstream runs with ``--quick``, if any.
        needs: other benchmarks whose "ours" results this one's ratio is computed from.
        script: the workload file (``workloads.py``, ``jobboards.py`` or ``workers.py``).
        repeat: how many times ours runs by default, if not the runner's default.
    """

    workload: str
    args: tuple[str, ...] = ()
    tasks: int = 1000
    upstream_repeat: int = 3
    quick_upstream_tasks: int | None = None
    needs: tuple[str, ...] = ()
    script: Path = WORKLOADS_PY
    repeat: int | None = None


SPECS: dict[str, Spec] = {
    "linear": Spec("linear", quick_upstream_tasks=200),
    # Upstream's serial engine is quadratic in the flow's length: 10k tasks would take it
    # well over twenty minutes, so only ours runs this size.
    "linear10k": Spec("linear", tasks=10_000, upstream_repeat=0, needs=("linear",)),
    "floor": Spec("floor", upstream_repeat=0, needs=("linear",)),
    # Upstream needs ~35 s and ~3 GB here, so it runs once even in a normal run.
    "graph": Spec("graph", tasks=5000, upstream_repeat=1, quick_upstream_tasks=1000),
    "parallel_own": Spec("parallel", ("--mode", "own"), tasks=256),
    "parallel_pool": Spec("parallel", ("--mode", "pool"), tasks=256),
    "revert": Spec("revert", quick_upstream_tasks=200),
    # Upstream needs ~0.1 s per persisted task (minutes per run), so it runs once.
    "sqlite": Spec("persist", ("--store", "sqlite"), upstream_repeat=1, quick_upstream_tasks=100),
    # Upstream has no such key; its row compares with upstream's "sqlite" run.
    "sqlite_full": Spec(
        "persist", ("--store", "sqlite", "--sync", "full"), upstream_repeat=0, needs=("sqlite",)
    ),
    "sqlite_floor": Spec(
        "persist_floor", ("--sync", "normal"), upstream_repeat=0, needs=("sqlite",)
    ),
    "sqlite_full_floor": Spec(
        "persist_floor", ("--sync", "full"), upstream_repeat=0, needs=("sqlite_full",)
    ),
    "postgres": Spec(
        "persist", ("--store", "postgres"), upstream_repeat=1, quick_upstream_tasks=100
    ),
}

#: Jobboard kinds, and those upstream TaskFlow 6.5 has.
BOARDS = ("sqlite", "postgresql", "redis", "zookeeper", "etcd")
UPSTREAM_BOARDS = ("redis", "zookeeper", "etcd")
#: Boards whose jobs/s must reach this multiple of upstream's (issue 9).
JOBS_TARGET = {"redis": 10.0, "zookeeper": 10.0}
#: An idle conductor's median pickup must stay below this, on every board (seconds).
PICKUP_TARGET = 0.050

for _board in BOARDS:
    _upstream = 1 if _board in UPSTREAM_BOARDS else 0
    # Upstream runs 300 jobs at 8-17 jobs/s (20-40 s), so once by default.
    SPECS[f"jobs_{_board}"] = Spec(
        "jobs",
        ("--board", _board),
        tasks=300,
        upstream_repeat=_upstream,
        quick_upstream_tasks=100,
        script=JOBBOARDS_PY,
        repeat=3,
    )
    SPECS[f"jobsnb_{_board}"] = Spec(
        "jobs",
        ("--board", _board, "--kind", "nonblocking"),
        tasks=300,
        upstream_repeat=_upstream,
        quick_upstream_tasks=100,
        script=JOBBOARDS_PY,
        repeat=1,
    )
    # Each run is 30 posts at 0.1-0.6 s apart: a distribution of its own.
    SPECS[f"pickup_{_board}"] = Spec(
        "pickup",
        ("--board", _board),
        tasks=30,
        upstream_repeat=_upstream,
        quick_upstream_tasks=10,
        script=JOBBOARDS_PY,
        repeat=1,
    )

#: Worker-based engine (issue 10): the round trip per task must be this multiple of
#: upstream's, a 3-task flow's wall below WBE_FLOW3_TARGET seconds, and 200 unordered 20 ms
#: tasks on 4 workers of 10 threads within WBE_THROUGHPUT_TARGET times the ideal 0.1 s.
WBE_RTT_TARGET = 8.0
WBE_FLOW3_TARGET = 0.050
WBE_THROUGHPUT_TARGET = 3.0

# Each process starts its workers and runs a warm-up flow first; upstream's runs take about
# a second more each (its engine discovers the workers first), ten of them in wbe_flow3.
for _workers in (1, 4):
    SPECS[f"wbe_rtt{_workers}"] = Spec(
        "wbe_rtt",
        ("--workers", str(_workers)),
        tasks=200,
        script=WORKERS_PY,
        repeat=3,
    )
SPECS["wbe_flow3"] = Spec("wbe_flow3", ("--runs", "10"), tasks=3, script=WORKERS_PY, repeat=3)
SPECS["wbe_throughput"] = Spec(
    "wbe_throughput",
    ("--workers", "4", "--threads", "10", "--delay", "0.02"),
    tasks=200,
    script=WORKERS_PY,
    repeat=3,
)

UPSTREAM_SKIPPED = {
    "linear10k": "skipped (quadratic)",
    "floor": "n/a (plain Python)",
    "sqlite_full": "n/a (no such key)",
    "sqlite_floor": "n/a (stdlib sqlite3)",
    "sqlite_full_floor": "n/a (stdlib sqlite3)",
    **{
        f"{kind}_{board}": "n/a (no such board)"
        for kind in ("jobs", "jobsnb", "pickup")
        for board in BOARDS
        if board not in UPSTREAM_BOARDS
    },
}


@dataclass
class Measurement:
    """The samples of one benchmark on one implementation."""

    tasks: int
    planned: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def median(self, key: str) -> float | None:
        values = [s[key] for s in self.samples if isinstance(s.get(key), int | float)]
        return statistics.median(values) if values else None


@dataclass
class Row:
    """One line of the printed table; ``data`` holds the numbers for the JSON report."""

    name: str
    ours: str
    upstream: str
    ratio: str
    target: str
    met: str
    runs: str
    data: dict[str, Any] = field(default_factory=dict)
    #: (benchmark, sample key) this row's ours/before compares; lower is better.
    compare: tuple[str, str] | None = None
    before: str = ""
    change: str = ""


# --------------------------------------------------------------------------- upstream venv


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _installed_version(python: Path) -> str | None:
    probe = "import importlib.metadata as m; print(m.version('taskflow'))"
    try:
        done = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _has_extras(python: Path) -> bool:
    probe = f"import {', '.join(UPSTREAM_EXTRA_MODULES)}"
    try:
        done = subprocess.run(
            [str(python), "-c", probe], capture_output=True, timeout=60, check=False
        )
    except OSError:
        return False
    return done.returncode == 0


def ensure_upstream_venv(venv: Path) -> Path:
    """Return the upstream interpreter, creating the virtual environment on first use.

    An existing environment that lacks the SQL backend's dependencies gets them installed.

    Raises:
        RuntimeError: when the environment cannot be created or taskflow not installed.
    """
    python = _venv_python(venv)
    exists = python.exists()
    if exists and _installed_version(python) == UPSTREAM_VERSION and _has_extras(python):
        return python
    verb = "completing" if exists else "creating"
    _log(f"{verb} upstream environment in {venv} (once; later runs reuse it)")
    steps = []
    if not exists:
        steps.append([sys.executable, "-m", "venv", str(venv)])
    steps.append(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"taskflow=={UPSTREAM_VERSION}",
            *UPSTREAM_EXTRAS,
        ]
    )
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise RuntimeError(f"{' '.join(step[:4])} failed: {' '.join(tail)}")
    version = _installed_version(python)
    if version != UPSTREAM_VERSION:
        raise RuntimeError(f"{python} has taskflow {version}, expected {UPSTREAM_VERSION}")
    return python


# --------------------------------------------------------------------------- measuring


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Impl:
    """One implementation under measurement and how to start its workload processes.

    Attributes:
        name: "ours", "upstream" or "before".
        python: the interpreter.
        src: put first on ``PYTHONPATH`` (a source tree); None: ``PYTHONPATH`` is cleared.
        home: where the imported ``taskflow`` package must come from.
    """

    name: str
    python: Path
    src: Path | None
    home: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)
        if self.src is not None:
            extra = env.get("PYTHONPATH")
            env["PYTHONPATH"] = str(self.src) + (os.pathsep + extra if extra else "")
        else:
            # Nothing from this repository may shadow the upstream package.
            env.pop("PYTHONPATH", None)
        return env


def _source_impl(name: str, src: Path) -> Impl:
    """A source tree run by this interpreter (``src`` first on ``PYTHONPATH``)."""
    return Impl(name, Path(sys.executable), src, src)


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


def export_source(ref: str) -> tuple[str, Path]:
    """Export ``src/`` at git ``ref`` into a new temporary directory outside the repository.

    Returns:
        (the commit's abbreviated hash, the exported ``src`` directory); the caller removes
        its parent directory.

    Raises:
        RuntimeError: the ref names no commit, or it has no ``src/`` tree.
    """
    resolved = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if resolved.returncode != 0:
        raise RuntimeError(f"--against {ref!r}: not a commit of {ROOT}")
    commit = resolved.stdout.decode().strip()
    archive = _git("archive", "--format=tar", commit, "src")
    if archive.returncode != 0:
        reason = archive.stderr.decode().strip().splitlines()[-1:] or ["git archive failed"]
        raise RuntimeError(f"--against {ref!r}: {reason[0]}")
    parent = Path(tempfile.mkdtemp(prefix="taskflow-bench-before-"))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(parent, filter="data")
    return commit[:12], parent / "src"


def measure_once(impl: Impl, spec: Spec, tasks: int, timeout: float) -> dict[str, Any]:
    """Run one workload process and return its JSON report.

    Raises:
        RuntimeError: with a one-line reason when the workload failed in any way.
    """
    command = [
        str(impl.python),
        str(spec.script),
        spec.workload,
        "--tasks",
        str(tasks),
        *spec.args,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=impl.env(), check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:g} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RuntimeError(tail[0])
    report: dict[str, Any] = json.loads(lines[-1])
    if "error" in report:
        raise RuntimeError(report["error"])
    if not Path(report["taskflow_file"]).resolve().is_relative_to(impl.home.resolve()):
        raise RuntimeError(f"imported the wrong taskflow: {report['taskflow_file']}")
    if not report.get("ok"):
        keys = ("executed", "reverted", "raised", "stored")
        details = {k: report.get(k) for k in keys if k in report}
        raise RuntimeError(f"wrong behaviour: {details}")
    return report


def _brief(report: dict[str, Any]) -> str:
    if report["workload"] == "jobs":
        return _jobs_text(report["jobs_per_second"], report["cpu_per_job"])
    if report["workload"] == "pickup":
        return _pickup_text(report["median"], report["p95"])
    if report["workload"] == "wbe_rtt":
        return _rtt_text(report["per_task"], report["seconds"])
    if report["workload"] == "wbe_flow3":
        return f"{_fmt_seconds(report['seconds'])} (min {_fmt_seconds(report['min'])})"
    if report["workload"] == "wbe_throughput":
        return _throughput_text(report["seconds"], report["over_ideal"])
    text = _fmt_seconds(report["seconds"])
    if "fraction" in report:
        text += f" ({report['fraction']:.0%} of ideal)"
    if "peak_rss" in report and report["workload"] in ("graph", "persist"):
        text += f", peak {_fmt_bytes(report['peak_rss'])}"
    return text


def _schedule(plan: list[tuple[str, str, int, int]]) -> list[tuple[str, str, int]]:
    """(benchmark, impl, run index) in run order.

    A benchmark's "before" runs alternate with its "ours" runs (ours first in even rounds,
    before first in odd ones), so that a machine getting faster or slower during the run
    weighs on both alike; other runs keep the plan's order.
    """
    order: list[tuple[str, str, int]] = []
    paired = {(name, impl): repeats for name, impl, _, repeats in plan}
    for name, impl, _, repeats in plan:
        if impl == "before":
            continue  # scheduled with ours
        if impl == "ours" and (name, "before") in paired:
            rounds = max(repeats, paired[(name, "before")])
            for i in range(rounds):
                pair = ["ours", "before"] if i % 2 == 0 else ["before", "ours"]
                order.extend((name, who, i) for who in pair if i < paired[(name, who)])
        else:
            order.extend((name, impl, i) for i in range(repeats))
    return order


def run_measurements(
    plan: list[tuple[str, str, int, int]], impls: dict[str, Impl | str], timeout: float
) -> dict[tuple[str, str], Measurement]:
    """Run every (benchmark, impl, tasks, repeats) of the plan, stopping a pair at its first
    failure so a broken or hanging implementation does not stall the whole run."""
    results: dict[tuple[str, str], Measurement] = {}
    for name, who, tasks, repeats in plan:
        result = results[(name, who)] = Measurement(tasks=tasks, planned=repeats)
        impl = impls[who]
        if isinstance(impl, str):  # the environment could not be set up
            result.error = impl
    for name, who, i in _schedule(plan):
        result = results[(name, who)]
        impl = impls[who]
        if isinstance(impl, str) or result.error is not None:
            continue
        label = f"{name:<18}{who:<9}{i + 1}/{result.planned}"
        try:
            report = measure_once(impl, SPECS[name], result.tasks, timeout)
        except RuntimeError as exc:
            result.error = str(exc)
            _log(f"{label}  error: {exc}")
            continue
        result.samples.append(report)
        _log(f"{label}  {_brief(report)}")
    return results


# --------------------------------------------------------------------------- table


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1000:
        return f"{seconds:.0f} s"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _fmt_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def _jobs_text(rate: float | None, cpu: float | None, growth: float | None = None) -> str:
    text = f"{rate:.0f} jobs/s" if rate is not None else "-"
    if cpu is not None:
        text += f", {_fmt_seconds(cpu)} CPU/job"
    if growth is not None:
        text += f", {'+' if growth >= 0 else '-'}{_fmt_bytes(abs(growth))}/job"
    return text


def _pickup_text(median: float | None, p95: float | None) -> str:
    return f"{_fmt_seconds(median)} (p95 {_fmt_seconds(p95)})"


def _redacted_url(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url


def _rtt_text(per_task: float | None, wall: float | None) -> str:
    return f"{_fmt_seconds(per_task)}/task (run {_fmt_seconds(wall)})"


def _throughput_text(wall: float | None, over_ideal: float | None) -> str:
    text = _fmt_seconds(wall)
    return text if over_ideal is None else f"{text} ({over_ideal:.2g}x ideal)"


def _fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _med(m: Measurement | None, key: str) -> float | None:
    return m.median(key) if m else None


class TableBuilder:
    """Turns measurements into table rows, collecting error footnotes on the way."""

    def __init__(self, results: dict[tuple[str, str], Measurement]) -> None:
        self.results = results
        self.notes: list[str] = []
        #: Whether "before" (``--against``) was measured: its columns are shown.
        self.against = any(impl == "before" for _, impl in results)

    def get(self, name: str, impl: str) -> Measurement | None:
        return self.results.get((name, impl))

    def cell(self, name: str, impl: str, text: str | None) -> str:
        """The cell's text, or a numbered reference to an error footnote, or why not run."""
        m = self.get(name, impl)
        if m is None:
            return UPSTREAM_SKIPPED.get(name, "not run") if impl == "upstream" else "not run"
        if m.error is not None:
            note = f"{name} ({impl}): {m.error}"
            if note not in self.notes:
                self.notes.append(note)
            return f"ERROR [{self.notes.index(note) + 1}]"
        return text or "-"

    def timing(self, name: str, impl: str, key: str = "seconds", per_task: bool = True) -> str:
        m = self.get(name, impl)
        if m is None or not m.samples:
            return self.cell(name, impl, None)
        text = _fmt_seconds(m.median(key))
        if per_task:
            text += f" ({_fmt_seconds(m.median('per_task'))}/task)"
        if impl == "upstream" and self.reduced(name):
            text += f" n={m.tasks}*"
        return self.cell(name, impl, text)

    def runs(self, name: str, upstream_of: str | None = None) -> str:
        """Processes run: ours/upstream (/before with ``--against``).

        ``upstream_of`` names the benchmark whose upstream runs the row shows, if another.
        """
        impls = IMPLS if self.against else IMPLS[:2]
        counts = [self.get((upstream_of or name) if i == "upstream" else name, i) for i in impls]
        return "/".join(str(len(m.samples)) if m else "-" for m in counts)

    def fill_before(self, row: Row) -> None:
        """Set the row's before and ours/before cells from the metric it compares."""
        if row.compare is None:
            row.before = row.change = "-"
            return
        name, key = row.compare
        ours, before = _med(self.get(name, "ours"), key), _med(self.get(name, "before"), key)
        worse = "SLOWER"
        if key == "peak_rss":
            worse = "BIGGER"
            row.before = self.cell(name, "before", None if before is None else _fmt_bytes(before))
        elif key == "per_task":
            row.before = self.timing(name, "before")
        else:
            row.before = self.timing(name, "before", key, per_task=False)
        ratio = _div(ours, before)
        row.change = "-" if ratio is None else f"{ratio:.2f}x"
        if ratio is not None and ratio > REGRESSION:
            row.change += f" {worse}"
        row.data["before"] = {"metric": key, "ours": ours, "before": before, "ratio": ratio}

    def reduced(self, name: str) -> bool:
        """Whether upstream ran a smaller size than ours (``--quick``)."""
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        return bool(ours and up and ours.tasks != up.tasks)

    def verdict(self, ok: bool, unknown: bool, name: str | None = None) -> str:
        if unknown:
            return "?"
        mark = "*" if name and self.reduced(name) else ""
        return ("yes" if ok else "NO") + mark

    def rows(self, names: list[str]) -> list[Row]:
        out: list[Row] = []
        for name in names:
            if name in ("linear", "revert"):
                out.append(
                    self.speedup_row(name, f"{name} (1000 tasks)", 300 if name == "linear" else 100)
                )
            elif name == "linear10k":
                out.append(self.scaling_row())
            elif name == "floor":
                out.append(self.floor_row())
            elif name == "graph":
                out.extend(self.graph_rows())
            elif name == "sqlite":
                out.append(self.speedup_row(name, "sqlite (1000 tasks)", 100))
                out.append(self.memory_row(name, "sqlite peak RSS (process)"))
            elif name == "sqlite_full":
                out.append(self.sqlite_full_row())
            elif name in ("sqlite_floor", "sqlite_full_floor"):
                out.append(self.sqlite_floor_row(name))
            elif name == "postgres":
                out.append(self.speedup_row(name, "postgres (1000 tasks)", 30))
            elif name.startswith(("jobs_", "jobsnb_")):
                out.append(self.jobs_row(name))
            elif name.startswith("pickup_"):
                out.append(self.pickup_row(name))
            elif name.startswith("wbe_rtt"):
                out.append(self.wbe_rtt_row(name))
            elif name == "wbe_flow3":
                out.append(self.wbe_flow3_row())
            elif name == "wbe_throughput":
                out.append(self.wbe_throughput_row())
            else:
                out.append(self.parallel_row(name))
        if self.against:
            for row in out:
                self.fill_before(row)
        return out

    def speedup_row(self, name: str, title: str, target: float) -> Row:
        """Compare per-task time, so quick runs at smaller upstream sizes still compare."""
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        ratio = _div(_med(up, "per_task"), _med(ours, "per_task"))
        return Row(
            title,
            self.timing(name, "ours"),
            self.timing(name, "upstream"),
            _fmt_ratio(ratio),
            f"up/ours >= {target:g}x",
            self.verdict(ratio is not None and ratio >= target, ratio is None, name),
            self.runs(name),
            {"ours": _med(ours, "seconds"), "upstream": _med(up, "seconds"), "ratio": ratio},
            compare=(name, "per_task"),
        )

    def jobs_row(self, name: str) -> Row:
        """Jobs per second end to end, with CPU and memory growth per job (jobboards.py)."""
        kind, board = name.split("_", 1)
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        texts = {}
        for impl, m in (("ours", ours), ("upstream", up)):
            rate = _med(m, "jobs_per_second")
            text = None
            if rate is not None:
                text = _jobs_text(rate, _med(m, "cpu_per_job"), _med(m, "rss_growth_per_job"))
                if impl == "upstream" and self.reduced(name):
                    text += f" n={m.tasks}*" if m else ""
            texts[impl] = self.cell(name, impl, text)
        ratio = _div(_med(ours, "jobs_per_second"), _med(up, "jobs_per_second"))
        target = JOBS_TARGET.get(board) if kind == "jobs" else None
        conductors = "blocking" if kind == "jobs" else "non-blocking"
        return Row(
            f"{board} board: 300 jobs, 2 {conductors}",
            texts["ours"],
            texts["upstream"],
            f"{_fmt_ratio(ratio)} (ours/up)" if ratio is not None else "-",
            f"ours/up >= {target:g}x" if target else "-",
            self.verdict(ratio is not None and ratio >= target, ratio is None, name)
            if target
            else "-",
            self.runs(name),
            {
                "ours": _med(ours, "jobs_per_second"),
                "upstream": _med(up, "jobs_per_second"),
                "ratio": ratio,
                "cpu_per_job": {
                    "ours": _med(ours, "cpu_per_job"),
                    "upstream": _med(up, "cpu_per_job"),
                },
                "rss_growth_per_job": {
                    "ours": _med(ours, "rss_growth_per_job"),
                    "upstream": _med(up, "rss_growth_per_job"),
                },
            },
            compare=(name, "seconds"),
        )

    def pickup_row(self, name: str) -> Row:
        """An idle conductor's pickup latency: median (p95) of each run's, then the median."""
        board = name.split("_", 1)[1]
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        texts = {}
        for impl, m in (("ours", ours), ("upstream", up)):
            median = _med(m, "median")
            text = None if median is None else _pickup_text(median, _med(m, "p95"))
            if text is not None and impl == "upstream" and self.reduced(name):
                text += f" n={m.tasks}*" if m else ""
            texts[impl] = self.cell(name, impl, text)
        median = _med(ours, "median")
        ratio = _div(_med(up, "median"), median)
        return Row(
            f"{board} board: idle conductor pickup",
            texts["ours"],
            texts["upstream"],
            _fmt_ratio(ratio),
            f"median < {PICKUP_TARGET * 1000:g} ms",
            self.verdict(median is not None and median < PICKUP_TARGET, median is None),
            self.runs(name),
            {
                "ours": median,
                "upstream": _med(up, "median"),
                "ratio": ratio,
                "p95": {"ours": _med(ours, "p95"), "upstream": _med(up, "p95")},
            },
            compare=(name, "median"),
        )

    def wbe_rtt_row(self, name: str) -> Row:
        """Round trip per task of a 200-task chain (first RUNNING to last SUCCESS / 200)."""
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        texts = {}
        for impl, m in (("ours", ours), ("upstream", up)):
            per_task = _med(m, "per_task")
            text = None if per_task is None else _rtt_text(per_task, _med(m, "seconds"))
            texts[impl] = self.cell(name, impl, text)
        ratio = _div(_med(up, "per_task"), _med(ours, "per_task"))
        workers = SPECS[name].args[-1]
        return Row(
            f"wbe round trip: 200-task chain, {workers} worker{'s' if workers != '1' else ''}",
            texts["ours"],
            texts["upstream"],
            _fmt_ratio(ratio),
            f"up/ours >= {WBE_RTT_TARGET:g}x",
            self.verdict(ratio is not None and ratio >= WBE_RTT_TARGET, ratio is None),
            self.runs(name),
            {
                "ours": _med(ours, "per_task"),
                "upstream": _med(up, "per_task"),
                "ratio": ratio,
                "wall": {"ours": _med(ours, "seconds"), "upstream": _med(up, "seconds")},
            },
            compare=(name, "per_task"),
        )

    def wbe_flow3_row(self) -> Row:
        """The wall of a 3-task flow on a warm worker (median of each process's 10 runs)."""
        name = "wbe_flow3"
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        texts = {}
        for impl, m in (("ours", ours), ("upstream", up)):
            wall = _med(m, "seconds")
            text = None
            if wall is not None:
                text = f"{_fmt_seconds(wall)} (min {_fmt_seconds(_med(m, 'min'))})"
            texts[impl] = self.cell(name, impl, text)
        wall = _med(ours, "seconds")
        ratio = _div(_med(up, "seconds"), wall)
        return Row(
            "wbe 3-task flow wall, 1 worker",
            texts["ours"],
            texts["upstream"],
            _fmt_ratio(ratio),
            f"ours < {WBE_FLOW3_TARGET * 1000:g} ms",
            self.verdict(wall is not None and wall < WBE_FLOW3_TARGET, wall is None),
            self.runs(name),
            {"ours": wall, "upstream": _med(up, "seconds"), "ratio": ratio},
            compare=(name, "seconds"),
        )

    def wbe_throughput_row(self) -> Row:
        """200 unordered 20 ms tasks on 4 workers of 10 threads: wall against the ideal."""
        name = "wbe_throughput"
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        texts = {}
        for impl, m in (("ours", ours), ("upstream", up)):
            wall = _med(m, "seconds")
            text = None if wall is None else _throughput_text(wall, _med(m, "over_ideal"))
            texts[impl] = self.cell(name, impl, text)
        over = _med(ours, "over_ideal")
        ratio = _div(_med(up, "seconds"), _med(ours, "seconds"))
        return Row(
            "wbe throughput: 200x20ms unordered, 4x10 threads",
            texts["ours"],
            texts["upstream"],
            _fmt_ratio(ratio),
            f"ours <= {WBE_THROUGHPUT_TARGET:g}x ideal",
            self.verdict(over is not None and over <= WBE_THROUGHPUT_TARGET, over is None),
            self.runs(name),
            {
                "ours": _med(ours, "seconds"),
                "upstream": _med(up, "seconds"),
                "ratio": ratio,
                "over_ideal": {"ours": over, "upstream": _med(up, "over_ideal")},
            },
            compare=(name, "seconds"),
        )

    def scaling_row(self) -> Row:
        big = self.get("linear10k", "ours")
        ratio = _div(_med(big, "per_task"), _med(self.get("linear", "ours"), "per_task"))
        return Row(
            "linear10k (10k tasks)",
            self.timing("linear10k", "ours"),
            self.cell("linear10k", "upstream", None),
            f"{ratio:.2f} (10k/1k)" if ratio is not None else "-",
            "10k/1k per task <= 1.3",
            self.verdict(ratio is not None and ratio <= 1.3, ratio is None),
            self.runs("linear10k"),
            {"ours": _med(big, "seconds"), "per_task": _med(big, "per_task"), "scaling": ratio},
            compare=("linear10k", "per_task"),
        )

    def floor_row(self) -> Row:
        floor = _med(self.get("floor", "ours"), "seconds")
        ratio = _div(_med(self.get("linear", "ours"), "seconds"), floor)
        return Row(
            "floor (1000 plain calls)",
            self.cell("floor", "ours", f"{_fmt_seconds(floor)} (loop)"),
            self.cell("floor", "upstream", None),
            f"{ratio:.0f} (ours/floor)" if ratio is not None else "-",
            "ours/floor <= 150",
            self.verdict(ratio is not None and ratio <= 150, ratio is None),
            self.runs("floor"),
            {"floor": floor, "ours_over_floor": ratio},
            compare=("floor", "seconds"),
        )

    def graph_rows(self) -> list[Row]:
        timed = self.speedup_row("graph", "graph load+compile+prepare", 100)
        memory = self.memory_row("graph", "graph peak RSS (process)")
        ours, up = self.get("graph", "ours"), self.get("graph", "upstream")
        reduced = self.reduced("graph")
        b_o, b_u = _med(ours, "build_seconds"), _med(up, "build_seconds")
        build = Row(
            "graph flow build (info)",
            self.timing("graph", "ours", "build_seconds", per_task=False),
            self.timing("graph", "upstream", "build_seconds", per_task=False),
            "-" if reduced else _fmt_ratio(_div(b_u, b_o)),
            "-",
            "-",
            self.runs("graph"),
            {"ours": b_o, "upstream": b_u},
            compare=("graph", "build_seconds"),
        )
        return [timed, memory, build]

    def memory_row(self, name: str, title: str) -> Row:
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        mem_o, mem_u = _med(ours, "peak_rss"), _med(up, "peak_rss")
        reduced = self.reduced(name)
        # Peak memory at two different sizes says nothing, so quick runs don't judge it.
        ratio = None if reduced else _div(mem_u, mem_o)
        # The whole process's peak decides; the part added after imports is shown too.
        texts = {
            impl: f"{_fmt_bytes(_med(m, 'peak_rss'))} (+{_fmt_bytes(_med(m, 'peak_delta'))})"
            for impl, m in (("ours", ours), ("upstream", up))
        }
        if up and reduced:
            texts["upstream"] += f" n={up.tasks}*"
        return Row(
            title,
            self.cell(name, "ours", texts["ours"]),
            self.cell(name, "upstream", texts["upstream"]),
            _fmt_ratio(ratio),
            "ours < 10% of up",
            "n/a*" if reduced else self.verdict(ratio is not None and ratio > 10, ratio is None),
            self.runs(name),
            {"ours": mem_o, "upstream": mem_u, "ratio": ratio},
            compare=(name, "peak_rss"),
        )

    def sqlite_full_row(self) -> Row:
        """Ours with ``sqlite_synchronous='full'`` against upstream's one SQLite mode.

        Upstream's defaults (rollback journal, ``synchronous`` FULL) also make every commit
        survive a power cut, so this is the like-for-like durability comparison; information
        only, the project sets no target for it.
        """
        ours, up = self.get("sqlite_full", "ours"), self.get("sqlite", "upstream")
        ratio = _div(_med(up, "per_task"), _med(ours, "per_task"))
        upstream = UPSTREAM_SKIPPED["sqlite_full"]
        if up is not None:
            upstream = self.timing("sqlite", "upstream")
        return Row(
            "sqlite_full (sync FULL, info)",
            self.timing("sqlite_full", "ours"),
            upstream,
            _fmt_ratio(ratio),
            "-",
            "-",
            self.runs("sqlite_full", upstream_of="sqlite"),
            {"ours": _med(ours, "seconds"), "upstream": _med(up, "seconds"), "ratio": ratio},
            compare=("sqlite_full", "per_task"),
        )

    def sqlite_floor_row(self, name: str) -> Row:
        """The raw sqlite3 floor of one synchronous mode and ours/floor for that mode."""
        of = "sqlite_full" if name == "sqlite_full_floor" else "sqlite"
        floor = _med(self.get(name, "ours"), "seconds")
        ratio = _div(_med(self.get(of, "ours"), "seconds"), floor)
        mode = "FULL" if of == "sqlite_full" else "NORMAL"
        return Row(
            f"{name} ({mode}, 2000 commits)",
            self.cell(name, "ours", f"{_fmt_seconds(floor)} (sqlite3)"),
            self.cell(name, "upstream", None),
            f"{ratio:.2f} ({of}/floor)" if ratio is not None else "-",
            "ours/floor <= 3",
            self.verdict(ratio is not None and ratio <= 3, ratio is None),
            self.runs(name),
            {"floor": floor, "ours_over_floor": ratio},
            compare=(name, "seconds"),
        )

    def parallel_row(self, name: str) -> Row:
        ours, up = self.get(name, "ours"), self.get(name, "upstream")
        cells: dict[str, str] = {}
        fractions: dict[str, float | None] = {}
        for impl, m in (("ours", ours), ("upstream", up)):
            seconds = _med(m, "seconds")
            fraction = fractions[impl] = _div(_med(m, "ideal_seconds"), seconds)
            text = None
            if fraction is not None:
                text = f"{_fmt_seconds(seconds)} ({fraction:.0%} of ideal)"
            cells[impl] = self.cell(name, impl, text)
        ratio = _div(_med(up, "seconds"), _med(ours, "seconds"))
        ok = fractions["ours"] is not None and fractions["ours"] >= 0.9
        return Row(
            f"{name} (256x10ms/16)",
            cells["ours"],
            cells["upstream"],
            _fmt_ratio(ratio),
            "ours >= 90% of ideal",
            self.verdict(ok, fractions["ours"] is None),
            self.runs(name),
            {
                "ours": _med(ours, "seconds"),
                "upstream": _med(up, "seconds"),
                "ratio": ratio,
                "fraction_of_ideal": fractions,
            },
            compare=(name, "seconds"),
        )


def render(rows: list[Row], before: str | None = None) -> str:
    """The table; with ``before`` (its column title), before's two columns after ours'."""
    header = Row("workload", "ours", "upstream 6.5.0", "ratio", "target", "met?", "runs")
    cols: tuple[str, ...] = ("name", "ours", "upstream", "ratio", "target", "met", "runs")
    if before is not None:
        header.before, header.change = before, "ours/before"
        cols = ("name", "ours", "before", "change", *cols[2:])
    table = [[getattr(r, c) for c in cols] for r in [header, *rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def build_plan(args: argparse.Namespace) -> list[tuple[str, str, int, int]]:
    """List (benchmark, impl, tasks, repeats) in run order, dependencies included."""
    names = list(dict.fromkeys(args.only or SPECS))
    for name in list(names):
        names.extend(dep for dep in SPECS[name].needs if dep not in names)
    selected = set(args.only or SPECS)
    default_repeat = 1 if args.quick else 5
    plan = []
    for name in SPECS:  # keep the canonical order
        if name not in names:
            continue
        spec = SPECS[name]
        ours_repeat = args.repeat or min(default_repeat, spec.repeat or default_repeat)
        if args.impl in ("both", "ours"):
            plan.append((name, "ours", spec.tasks, ours_repeat))
            if args.against:
                plan.append((name, "before", spec.tasks, ours_repeat))
        # A dependency pulled in only for its "ours" numbers doesn't run upstream.
        if args.impl in ("both", "upstream") and spec.upstream_repeat and name in selected:
            if args.upstream_repeat:
                repeat = args.upstream_repeat
            elif args.quick:
                repeat = 1
            else:
                repeat = min(spec.upstream_repeat, ours_repeat)
            tasks = spec.tasks
            if args.quick and spec.quick_upstream_tasks:
                tasks = spec.quick_upstream_tasks
            plan.append((name, "upstream", tasks, repeat))
    return plan


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="benchmarks: " + ", ".join(SPECS),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one run each; upstream's slow workloads at smaller sizes (marked *)",
    )
    parser.add_argument("--only", nargs="+", choices=list(SPECS), metavar="NAME")
    parser.add_argument("--repeat", type=int, metavar="N", help="runs per benchmark for ours")
    parser.add_argument(
        "--upstream-repeat",
        type=int,
        metavar="N",
        help=(
            "runs per benchmark for upstream "
            "(default: 1 for graph, sqlite, postgres; else min(3, --repeat))"
        ),
    )
    parser.add_argument(
        "--upstream-venv",
        type=Path,
        default=Path(os.environ.get("TASKFLOW_BENCH_UPSTREAM_VENV") or DEFAULT_VENV),
        metavar="PATH",
        help=f"virtual environment for taskflow=={UPSTREAM_VERSION} (default: {DEFAULT_VENV})",
    )
    parser.add_argument("--impl", choices=["both", "ours", "upstream"], default="both")
    parser.add_argument(
        "--against",
        metavar="GITREF",
        help=(
            "also measure src/ as of this git ref ('before'), runs interleaved with ours, and "
            "show ours/before; with --impl ours, upstream is not run"
        ),
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TASKFLOW_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        metavar="URL",
        help=f"database for the postgres benchmark (default: {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--timeout", type=float, default=900, metavar="S", help="per process (default 900)"
    )
    args = parser.parse_args(argv)
    for option in ("repeat", "upstream_repeat"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.against and args.impl == "upstream":
        parser.error("--against compares with ours: use --impl both or --impl ours")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    before: tuple[str, Path] | None = None
    if args.against:
        try:
            before = export_source(args.against)
        except RuntimeError as exc:
            _log(str(exc))
            return 2
    try:
        return _run(args, argv, before)
    finally:
        if before is not None:
            shutil.rmtree(before[1].parent, ignore_errors=True)


def _run(args: argparse.Namespace, argv: list[str] | None, before: tuple[str, Path] | None) -> int:
    # The workload processes inherit it (see Impl.env).
    os.environ["TASKFLOW_BENCH_POSTGRES_URL"] = args.postgres_url
    plan = build_plan(args)
    impls: dict[str, Impl | str] = {"ours": _source_impl("ours", ROOT / "src")}
    if before is not None:
        impls["before"] = _source_impl("before", before[1])
    if any(impl == "upstream" for _, impl, _, _ in plan):
        try:
            python = ensure_upstream_venv(args.upstream_venv.expanduser())
            impls["upstream"] = Impl("upstream", python, None, python.parent.parent)
        except (OSError, RuntimeError) as exc:
            impls["upstream"] = f"upstream environment unavailable: {exc}"
            _log(str(impls["upstream"]))
    results = run_measurements(plan, impls, args.timeout)

    builder = TableBuilder(results)
    rows = builder.rows([name for name in SPECS if name in (args.only or SPECS)])
    against = "" if before is None else f" and before ({args.against} = {before[0]})"
    print(
        f"taskflow benchmarks: ours ({ROOT / 'src'}) vs upstream {UPSTREAM_VERSION}{against}; "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print("medians; ratio = upstream/ours unless the column says otherwise\n")
    print(render(rows, None if before is None else f"before ({before[0][:8]})"))
    shown = {name for name, _ in results}
    runs = "ours/upstream/before" if before is not None else "ours/upstream"
    footnotes = [f"runs = {runs} processes; each runs a tiny warm-up flow before measuring"]
    if before is not None:
        footnotes.append(
            f"before: src/ of {args.against} ({before[0]}) exported to a temporary directory,"
            "\n  each run interleaved with one of ours; ours/before compares the row's main"
            f"\n  number (lower is better), flagged SLOWER/BIGGER above {REGRESSION:.2f}x"
        )
    if "graph" in shown:
        footnotes.append(
            "peak RSS: ru_maxrss of the process (+ the part added after imports and warm-up)"
        )
    if "floor" in shown:
        footnotes.append("floor: the same execute() calls in a plain loop, results in a dict")
    if shown & {"sqlite", "sqlite_full", "postgres"}:
        footnotes.append(
            "sqlite/postgres: the linear chain run by engines.run(flow, backend={'connection':"
            "\n  URI}) on an empty database (schema created untimed); a run counts only if a new"
            "\n  backend then reads back 1 flow and every atom as SUCCESS"
        )
    if shown & {"sqlite", "sqlite_full", "sqlite_floor", "sqlite_full_floor"}:
        footnotes.append(
            f"sqlite: a new file per run in {tempfile.gettempdir()}; ours in WAL mode, synchronous"
            "\n  NORMAL (sqlite_full: FULL); upstream with its defaults (rollback journal, FULL),"
            "\n  so sqlite_full's upstream column repeats upstream's sqlite run"
        )
    if shown & {"sqlite_floor", "sqlite_full_floor"}:
        footnotes.append(
            "sqlite floors: stdlib sqlite3, WAL, 2 autocommitted one-row UPDATEs per task;"
            "\n  ratio = ours' time for the chain / the floor's time, same synchronous mode"
        )
    if "postgres" in shown:
        footnotes.append(
            f"postgres: {os.environ['TASKFLOW_BENCH_POSTGRES_URL']} (psycopg 3 for both), a new"
            "\n  schema per run (search_path through PGOPTIONS), dropped afterwards"
        )
    if any(name.startswith(("jobs_", "jobsnb_", "pickup_")) for name in shown):
        footnotes.append(
            "jobboards (benchmarks/jobboards.py): a new board per run (redis namespace, zookeeper"
            "\n  path, etcd path, postgresql schema, sqlite file), removed afterwards; each job a"
            "\n  book with one flow detail (one task, factory saved with save_factory_details) in"
            "\n  one SQLite persistence file; every board and conductor with its defaults"
            "\n  jobs/s: 300 jobs posted first, then 2 conductor processes (each its own board"
            "\n  and persistence objects, connected and warmed up) told to go at once; time from"
            "\n  the go to the last job_consumed event. CPU/job: the conductors' CPU from the go"
            "\n  to their last consume, summed, / 300; +X/job: their RSS growth likewise"
            "\n  pickup: one idle blocking conductor; 30 times a random 0.1-0.6 s pause, post()"
            "\n  one job, time until its task starts (time.time() in both processes); median"
            "\n  (p95) of the 30, then the median over runs"
        )
    if any(name.startswith("wbe_") for name in shown):
        footnotes.append(
            "worker-based engine (benchmarks/workers.py): RabbitMQ at "
            f"{_redacted_url(os.environ.get('TASKFLOW_BENCH_AMQP_URL') or DEFAULT_AMQP_URL)},"
            "\n  a new exchange per process; worker processes (one topic each) started and seen"
            "\n  consuming on the broker before anything is measured, killed after; each process"
            "\n  runs its flow once as a warm-up first; every task's result and the flow's"
            "\n  SUCCESS are checked"
            "\n  round trip: 200 chained x+1 tasks on 1 or 4 workers of 1 thread; per task ="
            "\n  (last task's SUCCESS - first task's RUNNING, on the engine's atom_notifier)"
            "\n  / 200, so the time before the first task (upstream discovers workers for ~1 s"
            "\n  first) does not count; run = the whole engines.load + run"
            "\n  3-task flow: engines.load + run + fetch_all of a 3-task chain on 1 warm worker,"
            "\n  median of 10 in each process (min: the fastest), then the median over runs"
            "\n  throughput: engines.load + run of 200 unordered tasks sleeping 20 ms on 4"
            "\n  workers of 10 threads; ideal = 200 x 20 ms / 40 threads = 0.1 s"
        )
    if any(builder.reduced(name) for name in SPECS):
        footnotes.append(
            "* --quick: upstream ran fewer tasks (n=...); ratios compare per-task cost, which\n"
            "  understates upstream's quadratic growth, so 'met?' is only indicative"
        )
    footnotes.extend(f"[{i}] {note}" for i, note in enumerate(builder.notes, 1))
    print("\n" + "\n".join(footnotes))

    if args.json:
        report = {
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "upstream_version": UPSTREAM_VERSION,
            "argv": sys.argv[1:] if argv is None else argv,
            "quick": args.quick,
            "against": None if before is None else {"ref": args.against, "commit": before[0]},
            "rows": [vars(r) for r in rows],
            "measurements": [
                {
                    "benchmark": name,
                    "impl": impl,
                    "tasks": m.tasks,
                    "planned_runs": m.planned,
                    "error": m.error,
                    "samples": m.samples,
                }
                for (name, impl), m in results.items()
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
