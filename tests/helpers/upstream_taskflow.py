"""Upstream TaskFlow 6.5.0 itself, importable in a child interpreter, for interop tests.

The same mechanism as the examples test (``helpers/upstream_examples.py``): pip installs the
published release with what the test needs (``taskflow==6.5.0`` plus ``extras``) into the
cache directory outside the repository (``pip install --target``, under the cache's lock),
once; children then run with only that directory on their path and without site-packages
(``python -S``), so they import upstream's ``taskflow``, never this tree's.
``TASKFLOW_TEST_UPSTREAM_PYTHON`` names an interpreter that already has upstream (and the
extras) installed instead, e.g. a virtual environment's ``bin/python``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from tests.helpers.upstream_examples import (
    UPSTREAM_VERSION,
    UnavailableError,
    _locked,
    _pip,
    cache_dir,
)

__all__ = ["UPSTREAM_VERSION", "UnavailableError", "UpstreamPython", "prepare", "prepare_or_skip"]


@dataclasses.dataclass(frozen=True)
class UpstreamPython:
    """How to start an interpreter that imports upstream TaskFlow.

    Attributes:
        argv: the interpreter's command line before the script.
        env: environment variables to set for it (``PYTHONPATH``).
        root: the directory upstream's ``taskflow`` must be imported from (None: not
            checked, for an interpreter given by ``TASKFLOW_TEST_UPSTREAM_PYTHON``).
    """

    argv: tuple[str, ...]
    env: dict[str, str]
    root: Path | None


def prepare(extras: tuple[str, ...] = ()) -> UpstreamPython:
    """Install upstream TaskFlow and ``extras`` into the cache if missing.

    Raises:
        UnavailableError: pip could not install them.
    """
    configured = os.environ.get("TASKFLOW_TEST_UPSTREAM_PYTHON")
    if configured:
        return UpstreamPython((configured,), {}, None)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    name = "-".join(re.sub(r"[^a-z0-9]+", "_", e.lower()) for e in extras)
    base = cache_dir()
    target = base / f"upstream-{UPSTREAM_VERSION}-{tag}{'-' + name if name else ''}"
    with _locked(base):
        if not (target / ".complete").exists():
            staging = Path(tempfile.mkdtemp(prefix="upstream-", dir=base))
            try:
                _pip(
                    "install",
                    "--quiet",
                    "--no-warn-script-location",
                    "--target",
                    str(staging),
                    f"taskflow=={UPSTREAM_VERSION}",
                    *extras,
                    timeout=900,
                )
                (staging / ".complete").write_text(" ".join(extras) + "\n", encoding="utf-8")
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return UpstreamPython((sys.executable, "-S"), {"PYTHONPATH": str(target)}, target)


def prepare_or_skip(extras: tuple[str, ...] = ()) -> UpstreamPython:
    """:func:`prepare`, or skip the test saying why it could not (fail instead under
    ``TASKFLOW_TEST_REQUIRE_SERVICES=1``)."""
    import pytest

    try:
        return prepare(extras)
    except UnavailableError as err:
        with_ = f" with {', '.join(extras)}" if extras else ""
        reason = f"cannot install upstream taskflow {UPSTREAM_VERSION}{with_}: {err}"
        if os.environ.get("TASKFLOW_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
