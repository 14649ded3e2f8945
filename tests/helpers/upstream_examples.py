"""Fetch upstream TaskFlow's example programs and run them, black-box, against this tree.

The examples are never copied into the repository: the published 6.5.0 wheel is downloaded
with pip into a cache directory outside it (``~/.cache/taskflow-tests`` unless
``TASKFLOW_TEST_UPSTREAM_CACHE`` says otherwise), only ``taskflow/examples/`` is extracted from
it, and the two third-party libraries the examples import themselves (oslo.utils, futurist) are
installed next to it with ``pip install --target``. Each example then runs unchanged in a child
interpreter whose ``PYTHONPATH`` puts our ``src`` directory first.

A tiny ``sitecustomize`` on that path records, when each interpreter exits, which file
``taskflow`` was imported from, which script it ran and which persistence backends it loaded,
so a test can prove the example (and any interpreter it started) really ran on our package
and not on an upstream copy that happened to be importable. Asked to, it also seeds the
``random`` module and interrupts the program right after it printed a given line (Ctrl-C or
a hard kill), so resumable examples can be stopped at a known point and resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = [
    "UPSTREAM_VERSION",
    "SRC_DIR",
    "UUID_PATTERN",
    "ExampleRun",
    "Interpreter",
    "UnavailableError",
    "Upstream",
    "cache_dir",
    "mask_addresses",
    "mask_uuids",
    "prepare",
    "run_example",
]

UPSTREAM_VERSION = "6.5.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
SRC_DIR = REPO_ROOT / "src"

#: A lowercase canonical UUID, as TaskFlow prints them.
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID = re.compile(UUID_PATTERN)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_PROBE_ENV = "TASKFLOW_EXAMPLE_PROBE"
_SEED_ENV = "TASKFLOW_EXAMPLE_SEED"
_STOP_AFTER_ENV = "TASKFLOW_EXAMPLE_STOP_AFTER"
_STOP_SIGNAL_ENV = "TASKFLOW_EXAMPLE_STOP_SIGNAL"
# Written into the cache, never into the repository. It shadows any other sitecustomize for
# the example interpreters only, which is harmless for these programs. Every interpreter an
# example starts inherits the environment, so each one records itself.
_PROBE_SOURCE = f'''\
import atexit
import json
import os
import random
import signal
import sys
import threading

_OUT = os.environ.get("{_PROBE_ENV}")
_SEED = os.environ.get("{_SEED_ENV}")
_STOP_AFTER = os.environ.get("{_STOP_AFTER_ENV}")
_STOP_SIGNAL = os.environ.get("{_STOP_SIGNAL_ENV}", "SIGINT")
_recorded = []


def _record():
    if _recorded:
        return
    _recorded.append(True)
    module = sys.modules.get("taskflow")
    prefix = "taskflow.persistence.backends.impl_"
    record = {{
        "pid": os.getpid(),
        "taskflow": getattr(module, "__file__", None),
        "script": sys.argv[0] if sys.argv else None,
        "backends": sorted(n[len(prefix):] for n in list(sys.modules) if n.startswith(prefix)),
    }}
    with open(_OUT, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\\n")


class _Tripwire:
    """Stdout that signals its own process once the marker has been printed on a full line."""

    def __init__(self, stream):
        self._stream = stream
        self._seen = ""
        self._armed = True
        self._lock = threading.Lock()

    def write(self, text):
        written = self._stream.write(text)
        with self._lock:
            if not self._armed:
                return written
            self._seen += text
            at = self._seen.find(_STOP_AFTER)
            if at < 0 or "\\n" not in self._seen[at:]:
                self._seen = self._seen[-len(_STOP_AFTER) - 1:] if at < 0 else self._seen
                return written
            self._armed = False
        self._stream.flush()
        sig = getattr(signal, _STOP_SIGNAL)
        if sig == signal.SIGKILL and _OUT:
            _record()  # atexit never runs after a hard kill
        os.kill(os.getpid(), sig)
        return written

    def __getattr__(self, name):
        return getattr(self._stream, name)


if _OUT:
    atexit.register(_record)
if _SEED:
    random.seed(int(_SEED))
if _STOP_AFTER:
    sys.stdout = _Tripwire(sys.stdout)
'''
# Importing this raises ImportError, which is how a program sees a library that is not there.
_BLOCKER_SOURCE = 'raise ImportError("sqlalchemy is hidden from this example run")\n'


class UnavailableError(RuntimeError):
    """The upstream wheel or the examples' own dependencies could not be obtained."""


@dataclasses.dataclass(frozen=True)
class Upstream:
    """Where the prepared upstream material lives.

    Attributes:
        examples: the extracted ``taskflow/examples`` directory.
        deps: the ``pip --target`` directory holding oslo.utils, futurist and their deps.
        probe: the directory holding the recording ``sitecustomize``.
        no_sqlalchemy: a directory whose ``sqlalchemy`` package fails to import; put first on
            the path, it makes a program take its no-SQLAlchemy branch.
    """

    examples: Path
    deps: Path
    probe: Path
    no_sqlalchemy: Path


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """What the probe recorded about one Python interpreter of an example run.

    Attributes:
        pid: its process id.
        taskflow_file: resolved file ``taskflow`` was imported from, ``"None"`` if never.
        script: its ``sys.argv[0]`` (the script it ran).
        backends: short names (``dir``, ``sqlalchemy``...) of the persistence backend
            modules ``taskflow.persistence.backends.impl_*`` that were imported.
    """

    pid: int
    taskflow_file: str
    script: str | None
    backends: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ExampleRun:
    """Outcome of one example run.

    Attributes:
        returncode: exit status of the example's interpreter.
        stdout: everything it printed on standard output.
        stderr: everything it printed on standard error.
        taskflow_files: ``pid -> file`` that ``taskflow`` came from, per recorded interpreter.
        main_pid: pid of the example's own interpreter (children may have recorded too).
        interpreters: ``pid -> record`` for every interpreter that recorded itself.
    """

    returncode: int
    stdout: str
    stderr: str
    taskflow_files: dict[int, str]
    main_pid: int
    interpreters: dict[int, Interpreter] = dataclasses.field(default_factory=dict)


def cache_dir() -> Path:
    """The cache directory (created), refusing any location inside the repository."""
    configured = os.environ.get("TASKFLOW_TEST_UPSTREAM_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "taskflow-tests"
    base = base.expanduser().resolve()
    if base == REPO_ROOT or REPO_ROOT in base.parents:
        # Upstream files must never land where they could be committed.
        raise ValueError(f"upstream cache {base} must be outside the repository {REPO_ROOT}")
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextlib.contextmanager
def _locked(base: Path) -> Iterator[None]:
    # Several pytest processes (xdist workers, parallel runs) may prepare the cache at once.
    with open(base / ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pip(*args: str, timeout: float) -> None:
    command = [sys.executable, "-m", "pip", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise UnavailableError(f"{' '.join(command)} timed out after {timeout}s") from err
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise UnavailableError(f"{' '.join(command)} failed ({done.returncode}):\n{tail}")


def _examples(base: Path) -> Path:
    target = base / f"taskflow-{UPSTREAM_VERSION}"
    examples = target / "taskflow" / "examples"
    if (target / ".complete").exists():
        return examples
    wheels = base / "wheels"
    wheel = next(iter(sorted(wheels.glob(f"taskflow-{UPSTREAM_VERSION}-*.whl"))), None)
    if wheel is None:
        _pip(
            "download",
            "--no-deps",
            "--only-binary=:all:",
            f"taskflow=={UPSTREAM_VERSION}",
            "-d",
            str(wheels),
            timeout=300,
        )
        wheel = next(iter(sorted(wheels.glob(f"taskflow-{UPSTREAM_VERSION}-*.whl"))), None)
        if wheel is None:
            raise UnavailableError(f"pip reported success but left no wheel in {wheels}")
    # Extract beside the final place, then rename: a half-extracted tree is never used.
    staging = Path(tempfile.mkdtemp(prefix="extract-", dir=base))
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [n for n in archive.namelist() if n.startswith("taskflow/examples/")]
            if not members:
                raise UnavailableError(f"{wheel.name} holds no taskflow/examples/")
            archive.extractall(staging, members)
        (staging / ".complete").write_text(wheel.name + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return examples


def _deps(base: Path) -> Path:
    # Compiled wheels (psutil, PyYAML, wrapt) are interpreter specific.
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    target = base / f"deps-{tag}"
    if (target / ".complete").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix="deps-", dir=base))
    try:
        _pip(
            "install",
            "--quiet",
            "--no-warn-script-location",
            "--target",
            str(staging),
            "oslo.utils",
            "futurist",
            timeout=600,
        )
        if (staging / "taskflow").exists():
            raise UnavailableError("installing oslo.utils/futurist pulled in upstream taskflow")
        (staging / ".complete").write_text("oslo.utils futurist\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prepare() -> Upstream:
    """Download/extract/install what is missing in the cache and say where it is.

    Raises:
        UnavailableError: pip could not fetch the wheel or the examples' dependencies.
    """
    base = cache_dir()
    with _locked(base):
        examples = _examples(base)
        deps = _deps(base)
        probe = base / "probe"
        probe.mkdir(exist_ok=True)
        (probe / "sitecustomize.py").write_text(_PROBE_SOURCE, encoding="utf-8")
        blocker = base / "no-sqlalchemy" / "sqlalchemy"
        blocker.mkdir(parents=True, exist_ok=True)
        (blocker / "__init__.py").write_text(_BLOCKER_SOURCE, encoding="utf-8")
    return Upstream(examples=examples, deps=deps, probe=probe, no_sqlalchemy=blocker.parent)


def run_example(
    upstream: Upstream,
    name: str,
    cwd: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    without_sqlalchemy: bool = False,
    seed: int | None = None,
    stop_after: str | None = None,
    stop_signal: str = "SIGINT",
    python: str | None = None,
    timeout: float = 120.0,
) -> ExampleRun:
    """Run ``<name>.py`` unchanged from the extracted examples, with our package first.

    Args:
        upstream: what :func:`prepare` returned.
        name: example name without ``.py``.
        cwd: working directory of the run (examples may write files there).
        args: command line arguments given to the example.
        env: extra environment variables for the example (and what it starts).
        without_sqlalchemy: make ``import sqlalchemy`` fail in every interpreter of the run.
        seed: seed the ``random`` module with this before the example starts.
        stop_after: once a full line containing this text has been printed, send
            ``stop_signal`` to the printing process (an exact, repeatable interruption point).
        stop_signal: ``"SIGINT"`` (Ctrl-C) or ``"SIGKILL"`` (a crash).
        python: another interpreter to run the example with, without our ``src`` on the
            path: ``/work/upstream-venv/bin/python`` shows what upstream itself prints.
        timeout: seconds before the whole process group is killed and ``TimeoutError`` raised.
    """
    script = upstream.examples / f"{name}.py"
    if not script.is_file():
        raise FileNotFoundError(script)
    probe_file = cwd / ".taskflow-probe"
    probe_file.unlink(missing_ok=True)
    paths = [upstream.probe] if python else [SRC_DIR, upstream.deps, upstream.probe]
    if without_sqlalchemy:
        paths.insert(0, upstream.no_sqlalchemy)
    merged = dict(os.environ)
    merged.update(env or {})
    merged["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    merged[_PROBE_ENV] = str(probe_file)
    for key, value in ((_SEED_ENV, seed), (_STOP_AFTER_ENV, stop_after)):
        merged.pop(key, None)
        if value is not None:
            merged[key] = str(value)
    merged[_STOP_SIGNAL_ENV] = stop_signal
    if stop_after is not None:
        # Unbuffered, so everything printed before the interruption reaches the pipe.
        merged["PYTHONUNBUFFERED"] = "1"
    # A new session lets a timeout take down worker processes the example started.
    with subprocess.Popen(
        [python or sys.executable, str(script), *args],
        cwd=cwd,
        env=merged,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise TimeoutError(
                f"example {name} still running after {timeout}s; output so far:\n"
                + out.decode("utf-8", "replace")
                + err.decode("utf-8", "replace")
            ) from None
    interpreters = _read_probe(probe_file)
    return ExampleRun(
        returncode=proc.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        taskflow_files={pid: rec.taskflow_file for pid, rec in interpreters.items()},
        main_pid=proc.pid,
        interpreters=interpreters,
    )


def _read_probe(probe_file: Path) -> dict[int, Interpreter]:
    found: dict[int, Interpreter] = {}
    if not probe_file.exists():
        return found
    for line in probe_file.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        path = record["taskflow"]
        found[record["pid"]] = Interpreter(
            pid=record["pid"],
            # Resolved, so a symlinked checkout still compares equal to SRC_DIR.
            taskflow_file="None" if path is None else str(Path(path).resolve()),
            script=record["script"],
            backends=tuple(record["backends"]),
        )
    return found


def mask_uuids(text: str, names: dict[str, str] | None = None) -> str:
    """Replace UUIDs by ``<name>`` when known in ``names``, else by ``<uuid>``."""
    known = names or {}
    return _UUID.sub(lambda m: f"<{known.get(m.group(0), 'uuid')}>", text)


def mask_addresses(text: str) -> str:
    """Replace ``0x…`` object addresses (default ``repr`` of objects) by ``0x?``."""
    return _ADDRESS.sub("0x?", text)
