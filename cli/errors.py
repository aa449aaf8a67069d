"""The command line's own error: bad input, reported as one line with exit code 2."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A command was given something it cannot use (a missing key, an unreadable file)."""
