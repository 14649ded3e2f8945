"""Book a trip: three reservations in parallel, then a payment.

The first attempt's payment is declined, so everything already reserved is cancelled again,
in reverse order, automatically. The second attempt goes through. Run it with::

    python examples/showcase.py
"""

from __future__ import annotations

import threading
import time
from typing import Any

from taskflow import engines, task
from taskflow.patterns import linear_flow, unordered_flow

_print_lock = threading.Lock()
_started = time.monotonic()


def say(text: str) -> None:
    with _print_lock:
        print(f"  [{time.monotonic() - _started:5.2f}s] {text}", flush=True)


class Reserve(task.Task):
    """Reserve one thing (a flight, a room, a car); cancelling it undoes the reservation."""

    def __init__(self, what: str) -> None:
        super().__init__(name=f"reserve_{what}", provides=f"{what}_booking")
        self.what = what

    def execute(self, traveller: str) -> str:
        time.sleep(0.2)  # the remote booking system takes a while
        booking = f"{self.what.upper()}-{abs(hash((traveller, self.what))) % 10000:04d}"
        say(f"reserved {self.what:<6} -> {booking}")
        return booking

    def revert(self, traveller: str, result: Any, **kwargs: Any) -> None:
        say(f"cancelled {self.what:<6} (booking {result})")


class Pay(task.Task):
    """Charge the card for all three bookings."""

    def execute(self, card: str, flight_booking: str, hotel_booking: str, car_booking: str) -> str:
        if card.endswith("0000"):
            say(f"card {card} declined!")
            raise RuntimeError(f"card {card} was declined")
        say(f"charged card {card} for {flight_booking}, {hotel_booking}, {car_booking}")
        return "receipt-42"


def trip() -> linear_flow.Flow:
    reservations = unordered_flow.Flow("reservations").add(
        Reserve("flight"), Reserve("hotel"), Reserve("car")
    )
    return linear_flow.Flow("book-trip").add(reservations, Pay("pay", provides="receipt"))


def attempt(card: str) -> None:
    engine = engines.load(
        trip(),
        store={"traveller": "Ada", "card": card},
        engine="parallel",
        max_workers=3,
    )
    engine.atom_notifier.register(
        "*",
        lambda state, details: (
            say(f"{details['task_name']:<15} {state}")
            if state in ("REVERTING", "REVERTED", "FAILURE")
            else None
        ),
    )
    try:
        engine.run()
    except RuntimeError as err:
        say(f"flow {engine.storage.get_flow_state()}: {err}")
    else:
        receipt = engine.storage.fetch("receipt")
        say(f"flow {engine.storage.get_flow_state()}: receipt {receipt}")


def main() -> None:
    print("Attempt 1: the card is declined; the three reservations are cancelled again.")
    attempt("4111-0000-0000-0000")
    print("Attempt 2: a good card; everything goes through.")
    attempt("4111-1111-1111-1111")


if __name__ == "__main__":
    main()
