"""Shortcuts for making log books and flow details, optionally saved to a backend.

Upstream's public path, kept for its users: a face over the persistence layer, where the
functions live (``taskflow.persistence._books``, beside the models they make). This module
only re-exports them; nothing inside taskflow imports it, so no layer below reaches it.
"""

from __future__ import annotations

from taskflow.persistence._books import (
    create_flow_detail,
    temporary_flow_detail,
    temporary_log_book,
)

__all__ = ["create_flow_detail", "temporary_flow_detail", "temporary_log_book"]
