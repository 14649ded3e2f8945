"""The README's first command: a failure reverted, then a crash resumed, on a SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import services

ROOT = Path(__file__).resolve().parent.parent


def test_showcase_reverts_then_resumes_after_a_crash(tmp_path):
    services.need_module("sqlalchemy", "database")  # the showcase persists to SQLite
    db = tmp_path / "showcase.db"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "showcase.py"), str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("Part 2:")
    # Part 1: every reservation is made, the payment fails, all of them are cancelled,
    # and the payment itself is reverted before any reservation is.
    for what in ("flight", "hotel", "car"):
        assert f"reserved {what}" in first
        assert f"cancelled {what}" in first
    assert first.index("pay             REVERTED") < first.index("reserve_flight  REVERTING")
    assert "flow REVERTED: card 4111-0000-0000-0000 was declined" in first
    # Part 2: the child dies while charging; the resumed run does not reserve anything again
    # (each reservation is made once, by the child) and charges the card to completion.
    assert "child *** the booking process is killed (SIGKILL) ***" in second
    assert "ended by signal 9" in second
    assert "'pay': 'RUNNING'" in second
    for what in ("flight", "hotel", "car"):
        assert second.count(f"reserved {what}") == 1
    resumed = second.split("found flow")[1].split("\n", 1)[1]  # what ran after the resume
    assert "reserve_" not in resumed
    assert "charged card 4111-1111-1111-1111" in resumed
    assert "flow SUCCESS after resuming: receipt receipt-42" in resumed
    assert db.exists()
