"""Make thumbnails of six photos with three conductor processes, one of them killed mid-job.

A *jobboard* is a shared list of jobs. Each job points at a flow saved in a persistence
backend, with the values it runs on. A *conductor* is a worker process: it claims a job on
the board, runs the job's flow with an engine, and consumes the job (removes it from the
board) when the flow is done.

A claim is a lease: the conductor renews it while it works. This program kills (SIGKILL)
one conductor while it is resizing a photo. Its claim is no longer renewed, so once the
lease lapses (one second here) another conductor claims the job and resumes its flow from
the persisted state: the tasks already done are not run again, the interrupted one is (so
tasks must be safe to repeat). Every job is completed once.

Everything is in SQLite files: the board in ``jobs.db``, the flows in ``flows.db``, and a
journal of what every task and conductor did in ``journal.txt``. Run it with::

    python examples/conductors_showcase.py [DIRECTORY]

Without a directory the files go to a temporary one, removed at the end. The program exits
with status 1 if any job was not completed exactly once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from taskflow import engines, states, task
from taskflow.conductors import backends as conductor_backends
from taskflow.jobs import backends as board_backends
from taskflow.patterns import linear_flow
from taskflow.persistence import backends as persistence_backends
from taskflow.persistence import models

if TYPE_CHECKING:
    from taskflow.jobs.base import Job, JobBoard
    from taskflow.persistence.base import Backend

PHOTOS = [f"photo-{n}" for n in range(1, 7)]
CONDUCTORS = ["conductor-1", "conductor-2", "conductor-3"]
LEASE = 1.0  # seconds a claim lasts unless its holder renews it (the default is 3)
TIMEOUT = 30.0  # give up (and fail) if the jobs are not all done by then

# Times are printed from the first process's start, so the story reads in order.
_EPOCH = float(os.environ.setdefault("SHOWCASE_EPOCH", repr(time.time())))
_me = "main"  # the name of this process: "main" or a conductor's
_journal = ""  # the journal file (a conductor process sets it)


def say(text: str) -> None:
    print(f"  [{time.time() - _EPOCH:5.2f}s] {text}", flush=True)


def record(*words: str) -> None:
    """Append one line to the journal: who did what (small appends do not interleave)."""
    with open(_journal, "a") as journal:
        journal.write(" ".join((_me, *words)) + "\n")


def read_journal(directory: str) -> list[list[str]]:
    with open(os.path.join(directory, "journal.txt")) as journal:
        # Whole lines only: a line may be read while another process is still writing it.
        return [line.split() for line in journal if line.endswith("\n")]


# -- the flow every job runs ------------------------------------------------------------------


class Download(task.Task):
    def execute(self, photo: str) -> str:
        record("start", "download", photo)
        time.sleep(0.1)
        record("end", "download", photo)
        return f"{photo}.jpg"


class Resize(task.Task):
    def execute(self, photo: str, original: str) -> str:
        record("start", "resize", photo)
        time.sleep(0.4)  # the slow part: here is where a conductor gets killed
        record("end", "resize", photo)
        return original.replace(".jpg", "-thumb.jpg")


class Publish(task.Task):
    def execute(self, photo: str, thumbnail: str) -> str:
        record("start", "publish", photo)
        record("end", "publish", photo)
        return f"https://cdn.example.com/{thumbnail}"


def thumbnail_flow() -> linear_flow.Flow:
    """The flow factory: a job's flow is saved with its name, and each conductor calls it
    to rebuild the flow (the conductors run this file, so they find ``__main__.thumbnail_flow``;
    in an application it is a function in a module that both sides import)."""
    return linear_flow.Flow("thumbnail").add(
        Download("download", provides="original"),
        Resize("resize", provides="thumbnail"),
        Publish("publish", provides="url"),
    )


# -- the backends: two SQLite files, no server ------------------------------------------------


def open_persistence(directory: str) -> Backend:
    return persistence_backends.fetch({"connection": f"sqlite:///{directory}/flows.db"})


def board_conf(directory: str) -> dict[str, Any]:
    return {"board": "sqlite", "connection": f"sqlite:///{directory}/jobs.db", "lease": LEASE}


# -- a conductor process ----------------------------------------------------------------------


def run_conductor(name: str, directory: str) -> None:
    global _me, _journal
    _me, _journal = name, os.path.join(directory, "journal.txt")
    persistence = open_persistence(directory)
    with board_backends.backend("photos", board_conf(directory), persistence=persistence) as board:
        # A blocking conductor runs one job at a time; after 3 failed attempts a job would be
        # set aside in the board's trash instead of being tried forever.
        conductor = conductor_backends.fetch(
            "blocking", name, board, persistence=persistence, max_attempts=3
        )
        conductor.notifier.register("running_start", on_running_start)
        conductor.notifier.register("job_consumed", on_job_consumed)
        # SIGTERM: stop claiming jobs and return from run() (stop() must not run inside the
        # signal handler, which may interrupt the conductor itself).
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=conductor.stop).start())
        conductor.run()
    persistence.close()


def on_running_start(event: str, details: dict[str, Any]) -> None:
    job, engine = details["job"], details["engine"]
    if job.attempts == 0:
        say(f"{_me} claimed {job.name} and runs it")
        return
    done = [
        name
        for name in ("download", "resize", "publish")
        if engine.storage.get_atom_state(name) == states.SUCCESS
    ]
    say(
        f"{_me} claimed {job.name} (attempt {job.attempts + 1}) once the last claim's lease"
        f" lapsed; its fencing token {job.token} shuts out the old holder."
        f" Already done, not run again: {', '.join(done) or 'nothing'}"
    )


def on_job_consumed(event: str, details: dict[str, Any]) -> None:
    record("consumed", "-", details["job"].name)
    say(f"{_me} finished {details['job'].name}: its job is consumed")


# -- the main process: post jobs, start conductors, kill one, check the records ---------------


def post_jobs(board: JobBoard, persistence: Backend) -> list[Job]:
    """One job per photo, each pointing at a saved flow (its factory and its inputs)."""
    jobs = []
    for photo in PHOTOS:
        book = models.LogBook(photo)
        flow_detail = models.FlowDetail("thumbnail", str(uuid.uuid4()))
        book.add(flow_detail)
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.save_logbook(book)
        engines.save_factory_details(flow_detail, thumbnail_flow, (), {}, backend=persistence)
        details = {"flow_uuid": flow_detail.uuid, "store": {"photo": photo}}
        jobs.append(board.post(photo, book=book, details=details))
    say(f"posted {len(jobs)} jobs: {', '.join(PHOTOS)}")
    return jobs


def kill_one_mid_job(directory: str, conductors: dict[str, subprocess.Popen[bytes]]) -> str:
    """Wait until some conductor is resizing a photo, then SIGKILL it; returns its name."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            for who, event, step, photo in read_journal(directory):
                if (event, step) == ("start", "resize"):
                    conductors[who].kill()
                    conductors[who].wait()
                    say(f"*** {who} killed (SIGKILL) while resizing {photo} ***")
                    return who
        time.sleep(0.01)
    raise SystemExit("FAILED: no conductor ever started resizing a photo")


def check(
    directory: str, jobs: list[Job], board: JobBoard, persistence: Backend, killed: str
) -> list[str]:
    """Print every job's outcome from the stored records; return what is wrong, if anything."""
    problems = []
    journal = read_journal(directory)
    if board.job_count or list(board.iter_trash()):
        problems.append("jobs are left on the board or in its trash")
    for job in jobs:
        photo = job.name
        with contextlib.closing(persistence.get_connection()) as conn:
            flow_detail = conn.get_flow_details(job.details["flow_uuid"])
        url = {atom.name: atom.results for atom in flow_detail}.get("publish")
        consumers = [who for who, event, _, p in journal if event == "consumed" and p == photo]
        note = ""
        for step in ("download", "resize", "publish"):
            starts = [
                who for who, event, s, p in journal if (event, s, p) == ("start", step, photo)
            ]
            # Only a task the killed conductor was in the middle of may have run twice.
            interrupted = killed in starts and [killed, "end", step, photo] not in journal
            if interrupted:
                note = f" ({step} interrupted by the kill, run again)"
            if len(starts) != 1 + interrupted:
                problems.append(f"{photo}: {step} started by {starts}")
        print(f"  {photo}: {flow_detail.state}, {url}, done by {', '.join(consumers)}{note}")
        if (
            flow_detail.state != states.SUCCESS
            or url != f"https://cdn.example.com/{photo}-thumb.jpg"
        ):
            problems.append(f"{photo}: flow {flow_detail.state}, url {url}")
        if len(consumers) != 1 or killed in consumers:
            problems.append(f"{photo}: consumed by {consumers}, not once by a live conductor")
    return problems


def main() -> int:
    if sys.argv[1:2] == ["--conductor"]:
        run_conductor(sys.argv[2], sys.argv[3])
        return 0
    with contextlib.ExitStack() as cleanup:
        if len(sys.argv) > 1:
            directory = os.path.abspath(sys.argv[1])
            os.makedirs(directory, exist_ok=True)
        else:
            directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="taskflow-"))
        print(f"The jobboard is {directory}/jobs.db; the flows are saved in flows.db.")
        persistence = open_persistence(directory)
        cleanup.callback(persistence.close)
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.upgrade()  # create the flow tables once, before the conductors start
        board = cleanup.enter_context(
            board_backends.backend("photos", board_conf(directory), persistence=persistence)
        )
        conductors = {
            name: subprocess.Popen([sys.executable, __file__, "--conductor", name, directory])
            for name in CONDUCTORS
        }
        for proc in conductors.values():
            cleanup.callback(proc.kill)  # if anything goes wrong below
        say(f"started {', '.join(CONDUCTORS)} (a claim is a {LEASE:g} s lease, renewed as it runs)")
        jobs = post_jobs(board, persistence)
        killed = kill_one_mid_job(directory, conductors)
        all_done = all(job.wait(timeout=TIMEOUT) for job in jobs)
        survivors = [proc for name, proc in conductors.items() if name != killed]
        for proc in survivors:
            proc.terminate()  # SIGTERM: a graceful stop
        stopped = all(proc.wait(TIMEOUT) == 0 for proc in survivors)
        say(f"all jobs done: {all_done}; the live conductors stopped cleanly: {stopped}")
        print("What the stored records (flows.db, jobs.db, journal.txt) say:")
        problems = check(directory, jobs, board, persistence, killed)
        if not (all_done and stopped):
            problems.append("a job was not done in time, or a conductor did not stop cleanly")
        for problem in problems:
            print(f"FAILED: {problem}")
        if not problems:
            print(f"Every job was completed once, though {killed} was killed in the middle of one.")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
