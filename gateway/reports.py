"""The reported-properties queue: coalesce progress, keep every status transition.

Sans-I/O (no clock, no SDK), so the link's sender and the tests drive it alike.
Patches are JSON merge patches. A run of progress patches collapses into one;
a transition (``transition=True``) is *sealed*: later patches never merge into
it, so each transition ends up as the last part of some PATCH and the twin
walks through every status even when the hub was unreachable for a while.
Merging never reorders: what the hub ends up with equals applying every patch
in order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from gateway import mergepatch

JsonObject = dict[str, Any]
#: Entries kept apart at most; beyond this (a very long outage) the oldest transitions
#: merge, so memory stays bounded and only intermediate statuses are lost, never values.
MAX_ENTRIES = 64


@dataclass
class _Entry:
    patch: JsonObject
    sealed: bool  # a status transition: nothing later merges into it


class ReportQueue:
    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def has_transition(self) -> bool:
        """A transition is waiting: send without waiting for the rate limit."""
        return any(e.sealed for e in self._entries)

    def add(self, patch: JsonObject, *, transition: bool = False) -> None:
        last = self._entries[-1] if self._entries else None
        if last is not None and not last.sealed and mergepatch.composable(last.patch, patch):
            last.patch = mergepatch.compose(last.patch, patch)
            last.sealed = transition
        else:
            self._entries.append(_Entry(copy.deepcopy(patch), transition))
        if len(self._entries) > MAX_ENTRIES:
            self._squash_oldest()

    def _squash_oldest(self) -> None:
        for i in range(len(self._entries) - 1):
            first, second = self._entries[i], self._entries[i + 1]
            if mergepatch.composable(first.patch, second.patch):
                second.patch = mergepatch.compose(first.patch, second.patch)
                del self._entries[i]
                return

    def take(self) -> JsonObject:
        """The next PATCH: leading entries merged up to and including the first transition."""
        entry = self._entries.pop(0)
        patch = entry.patch
        while not entry.sealed and self._entries:
            if not mergepatch.composable(patch, self._entries[0].patch):
                break
            entry = self._entries.pop(0)
            patch = mergepatch.compose(patch, entry.patch)
        return patch

    def put_back(self, patch: JsonObject) -> None:
        """A PATCH that failed goes first again, as the unit it was."""
        self._entries.insert(0, _Entry(patch, True))
