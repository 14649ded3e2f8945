"""The README's third command: three conductor processes on a SQLite board, one SIGKILLed.

The showcase's claims are checked against what it stored (the board, the flows and the
journal its processes appended to), not only against what it printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from taskflow import states
from taskflow.jobs import backends as board_backends
from taskflow.persistence import backends as persistence_backends
from tests.helpers import services

ROOT = Path(__file__).resolve().parent.parent
SHOWCASE = ROOT / "examples" / "conductors_showcase.py"
PHOTOS = [f"photo-{n}" for n in range(1, 7)]
STEPS = ("download", "resize", "publish")


def _run(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    services.need_module("sqlalchemy", "database")
    services.need_module("jsonschema", "database")  # the SQL board checks its records with it
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(SHOWCASE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    return proc, time.monotonic() - started


def test_every_job_is_completed_once_although_a_conductor_is_killed(tmp_path):
    proc, elapsed = _run(str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"
    out = proc.stdout
    killed, victim = re.search(
        r"\*\*\* (conductor-\d) killed \(SIGKILL\) while resizing (photo-\d)", out
    ).groups()
    assert f"Every job was completed once, though {killed} was killed" in out

    # The board: nothing left, nothing trashed.
    with board_backends.backend(
        "photos", {"board": "sqlite", "connection": f"sqlite:///{tmp_path / 'jobs.db'}"}
    ) as board:
        assert board.job_count == 0
        assert list(board.iter_trash()) == []

    # The flows: one per photo, every task done with the right result.
    backend = persistence_backends.fetch(f"sqlite:///{tmp_path / 'flows.db'}")
    with contextlib.closing(backend), contextlib.closing(backend.get_connection()) as conn:
        books = {book.name: book for book in conn.get_logbooks()}
        assert sorted(books) == PHOTOS
        for photo, book in books.items():
            (flow_detail,) = book
            assert flow_detail.state == states.SUCCESS
            assert {ad.state for ad in flow_detail} == {states.SUCCESS}
            results = {ad.name: ad.results for ad in flow_detail}
            assert results == {
                "_TaskFlow_INJECTOR": {"photo": photo},
                "download": f"{photo}.jpg",
                "resize": f"{photo}-thumb.jpg",
                "publish": f"https://cdn.example.com/{photo}-thumb.jpg",
            }
            # The killed conductor's job was claimed again (fencing token 2), and its flow
            # taken over under that token; every other job was claimed once.
            ownership = conn.read_ownership(flow_detail.uuid)
            assert ownership is not None
            claims = 2 if photo == victim else 1
            assert ownership.fence_token == claims

    # The journal: who started and ended which task, and who consumed which job.
    journal = [line.split() for line in (tmp_path / "journal.txt").read_text().splitlines()]
    consumed = Counter(photo for _, event, _, photo in journal if event == "consumed")
    assert consumed == Counter(PHOTOS)  # every job consumed exactly once
    consumers = {photo: who for who, event, _, photo in journal if event == "consumed"}
    assert killed not in consumers.values()
    # The killed conductor died in the middle of resizing: nothing after that, from it.
    assert [line[1:] for line in journal if line[0] == killed][-1] == ["start", "resize", victim]
    for photo in PHOTOS:
        runs = [(who, event, step) for who, event, step, p in journal if p == photo]
        rescuer = consumers[photo]
        if photo == victim:
            # Done tasks are not run again; the interrupted one is, by the conductor that
            # resumed the job.
            assert runs == [
                (killed, "start", "download"),
                (killed, "end", "download"),
                (killed, "start", "resize"),
                (rescuer, "start", "resize"),
                (rescuer, "end", "resize"),
                (rescuer, "start", "publish"),
                (rescuer, "end", "publish"),
                (rescuer, "consumed", "-"),
            ]
            assert f"{rescuer} claimed {photo} (attempt 2)" in out
            assert "Already done, not run again: download" in out
        else:
            expected = [(rescuer, edge, step) for step in STEPS for edge in ("start", "end")]
            assert runs == [*expected, (rescuer, "consumed", "-")]


def test_without_a_directory_it_leaves_no_files_behind(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc, _ = _run(env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(tmp_path) in proc.stdout  # its files were there...
    assert list(tmp_path.iterdir()) == []  # ...and are gone


def test_it_exits_non_zero_when_a_job_is_not_completed_exactly_once(tmp_path):
    # A journal that already says photo-1 was consumed: now it is consumed twice.
    (tmp_path / "journal.txt").write_text("conductor-1 consumed - photo-1\n")
    proc, _ = _run(str(tmp_path))
    assert proc.returncode == 1
    assert "FAILED: photo-1: consumed by ['conductor-1', " in proc.stdout
    assert "Every job was completed once" not in proc.stdout
