"""Crash harness: persisted flows killed with SIGKILL at random moments, then resumed.

``flows`` builds the flows (and says what they must produce), ``child`` is what runs in the
killed processes, ``journal`` is how those processes report what they did, ``checks`` judges
a finished trial from its journal and the backend, ``harness`` drives trials against every
durable backend. See ``test_crash.py`` for how to replay a failed trial.
"""
