"""A wrapper that keeps secrets out of logs, reprs, tracebacks and error messages.

Only code that hands the value to the SDK calls :meth:`Secret.reveal`.
"""

from __future__ import annotations

from typing import Final

_MASK: Final = "***"


class Secret:
    """An opaque string; ``str``/``repr``/``format`` all show ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
