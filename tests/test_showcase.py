"""The README's first command: the showcase runs, fails once with a full revert, then succeeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_showcase_reverts_then_succeeds():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "showcase.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    first, second = out.split("Attempt 2:")
    # Attempt 1: every reservation is made, the payment fails, all of them are cancelled,
    # and the payment itself is reverted before any reservation is.
    for what in ("flight", "hotel", "car"):
        assert f"reserved {what}" in first
        assert f"cancelled {what}" in first
    assert first.index("pay             REVERTED") < first.index("reserve_flight  REVERTING")
    assert "flow REVERTED: card 4111-0000-0000-0000 was declined" in first
    # Attempt 2: no revert at all, and the receipt is there.
    assert "cancelled" not in second
    assert "flow SUCCESS: receipt receipt-42" in second
