"""Shared CLI plumbing: the one exception every command raises for a clean exit."""

from __future__ import annotations


class CommandError(Exception):
    """A user-facing failure: printed as one line on stderr, then a non-zero exit."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
