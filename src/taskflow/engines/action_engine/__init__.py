"""Upstream's path for the local engines (re-exports; the machinery is in taskflow._engine)."""
