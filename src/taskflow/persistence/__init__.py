"""Persistence: the models stored (``models``), the backend contract (``base``) and the
backends themselves (``backends``)."""
