"""The fleet package's one exception: a one-line message the CLI prints as is."""

from __future__ import annotations


class FleetError(Exception):
    """A refused operation or bad input; nothing was changed half-way."""
