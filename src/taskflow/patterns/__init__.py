"""The flow patterns: linear, unordered and graph flows."""

from __future__ import annotations

__all__: list[str] = []
