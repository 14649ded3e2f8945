"""taskflow: tasks that either complete or are cleanly reverted, resumable from any crash.

Importing this package has no side effects; import the modules you need
(``taskflow.engines``, ``taskflow.patterns.linear_flow``, ``taskflow.task``...).
"""
