"""taskflow: tasks that either complete or are cleanly reverted, resumable from any crash.

Importing this package has no side effects beyond the customary ``NullHandler`` on the
``taskflow`` logger (so a library's warnings never print unless the application configures
logging); import the modules you need (``taskflow.engines``, ``taskflow.task``...).
"""

import logging as _logging

_logging.getLogger(__name__).addHandler(_logging.NullHandler())
