"""The exception raised for inconsistent model specifications."""

from __future__ import annotations

__all__ = ["ModelError"]


class ModelError(ValueError):
    """Inconsistent model specification."""
