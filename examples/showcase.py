"""Book a trip: three reservations in parallel, then a payment, persisted to a SQLite file.

Part 1: the card is declined, so everything already reserved is cancelled again, in reverse
order, automatically.

Part 2: the process booking the trip is killed (SIGKILL) while it charges the card. A new
process opens the same SQLite file, finds the unfinished flow and resumes it: the reservations
that were already made are not made again; only the interrupted payment runs again.

Run it with::

    python examples/showcase.py [path/to/showcase.db]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from typing import Any

from taskflow import engines, states, task
from taskflow.patterns import linear_flow, unordered_flow
from taskflow.persistence import backends, models

_print_lock = threading.Lock()
_CRASH_ENV = "SHOWCASE_CRASH_WHILE_CHARGING"
# The child process prints times from the parent's start, so the story reads in order.
_EPOCH = float(os.environ.setdefault("SHOWCASE_EPOCH", repr(time.time())))
_WHO = "child " if os.environ.get(_CRASH_ENV) else ""


def say(text: str) -> None:
    with _print_lock:
        print(f"  [{time.time() - _EPOCH:5.2f}s] {_WHO}{text}", flush=True)


class Reserve(task.Task):
    """Reserve one thing (a flight, a room, a car); reverting cancels the reservation."""

    def __init__(self, what: str) -> None:
        super().__init__(name=f"reserve_{what}", provides=f"{what}_booking")
        self.what = what

    def execute(self, traveller: str) -> str:
        time.sleep(0.2)  # the remote booking system takes a while
        number = zlib.crc32(f"{traveller}/{self.what}".encode()) % 10000
        booking = f"{self.what.upper()}-{number:04d}"
        say(f"reserved {self.what:<6} -> {booking}")
        return booking

    def revert(self, traveller: str, result: Any, **kwargs: Any) -> None:
        say(f"cancelled {self.what:<6} (booking {result})")


class Pay(task.Task):
    """Charge the card for all three bookings."""

    def execute(self, card: str, flight_booking: str, hotel_booking: str, car_booking: str) -> str:
        say(f"charging card {card} ...")
        if os.environ.get(_CRASH_ENV):
            say("*** the booking process is killed (SIGKILL) ***")
            os.kill(os.getpid(), signal.SIGKILL)
        if card.endswith("0000"):
            say(f"card {card} declined!")
            raise RuntimeError(f"card {card} was declined")
        say(f"charged card {card} for {flight_booking}, {hotel_booking}, {car_booking}")
        return "receipt-42"


def trip() -> linear_flow.Flow:
    """The flow; also the factory a resumed process rebuilds it with."""
    reservations = unordered_flow.Flow("reservations").add(
        Reserve("flight"), Reserve("hotel"), Reserve("car")
    )
    return linear_flow.Flow("book-trip").add(reservations, Pay("pay", provides="receipt"))


def _watch(engine: Any, interesting: tuple[str, ...]) -> None:
    def show(state: str, details: dict[str, Any]) -> None:
        if state in interesting:
            say(f"{details['task_name']:<15} {state}")

    engine.atom_notifier.register("*", show)


def part_one(backend: Any) -> None:
    print("Part 1: the card is declined; the three reservations are cancelled again.")
    engine = engines.load(
        trip(),
        store={"traveller": "Ada", "card": "4111-0000-0000-0000"},
        backend=backend,
        engine="parallel",
        max_workers=3,
    )
    _watch(engine, (states.FAILURE, states.REVERTING, states.REVERTED))
    try:
        engine.run()
    except RuntimeError as err:
        say(f"flow {engine.storage.get_flow_state()}: {err}")


def book_in_child(db_path: str) -> None:
    """Runs in a child process: starts booking, and dies while charging the card."""
    backend = backends.fetch({"connection": f"sqlite:///{db_path}"})
    book = models.LogBook("showcase")
    with backend.get_connection() as conn:
        conn.save_logbook(book)
    engine = engines.load_from_factory(
        trip,
        store={"traveller": "Grace", "card": "4111-1111-1111-1111"},
        book=book,
        backend=backend,
        engine="parallel",
        max_workers=3,
    )
    engine.run()


def part_two(db_path: str, backend: Any) -> None:
    print("Part 2: the booking process is killed while charging; a new one resumes it.")
    child = subprocess.run(
        [sys.executable, __file__, "--child", db_path],
        env={**os.environ, _CRASH_ENV: "1"},
        check=False,
    )
    say(f"booking process ended by signal {-child.returncode} (SIGKILL is 9)")
    with backend.get_connection() as conn:
        unfinished = [
            fd
            for book in conn.get_logbooks()
            if book.name == "showcase"
            for fd in book
            if fd.state not in (states.SUCCESS, states.REVERTED)
        ]
    for fd in unfinished:
        left = {ad.name: ad.state for ad in fd if not ad.name.startswith("_")}
        say(f"found flow '{fd.name}' left {fd.state}: {left}")
        engine = engines.load_from_detail(fd, backend=backend, engine="parallel", max_workers=3)
        _watch(engine, (states.RUNNING, states.SUCCESS))
        engine.run()
        receipt = engine.storage.fetch("receipt")
        say(f"flow {engine.storage.get_flow_state()} after resuming: receipt {receipt}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        book_in_child(sys.argv[2])
        return
    db_path = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.path.join(tempfile.mkdtemp(prefix="taskflow-showcase-"), "showcase.db")
    )
    print(f"Everything is persisted to the SQLite file {db_path}")
    backend = backends.fetch({"connection": f"sqlite:///{db_path}"})
    with backend.get_connection() as conn:
        conn.upgrade()
    part_one(backend)
    part_two(db_path, backend)


if __name__ == "__main__":
    main()
