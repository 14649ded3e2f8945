"""Jobboards: shared lists of jobs, each pointing at a persisted flow, that conductors claim.

``taskflow.jobs.backends.fetch(name, conf)`` builds a board; ``taskflow.jobs.base`` holds
the contracts (:class:`~taskflow.jobs.base.JobBoard`, :class:`~taskflow.jobs.base.Job`,
:class:`~taskflow.jobs.base.JobPriority`). The machinery shared by taskflow's own boards
lives in the private ``taskflow._jobs`` package.
"""

from __future__ import annotations

__all__: list[str] = []
