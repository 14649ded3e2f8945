"""The conductor's event names."""

from __future__ import annotations

__all__ = [
    "ENGINE_STEPS",
    "JOB_ABANDONED",
    "JOB_CONSUMED",
    "JOB_TRASHED",
]

#: The engine steps a dispatch announces as ``<step>_start`` / ``<step>_end``.
ENGINE_STEPS = ("compilation", "preparation", "validation", "running")
JOB_CONSUMED = "job_consumed"
JOB_ABANDONED = "job_abandoned"
JOB_TRASHED = "job_trashed"
