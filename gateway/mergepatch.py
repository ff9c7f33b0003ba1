"""JSON merge patches (RFC 7386) as twins use them: apply, compose and diff.

Pure functions, no I/O. The cloud link uses them to coalesce reported
patches and to turn a re-read desired document into the patch that takes the
caller from what it last saw to the hub's current state.
"""

from __future__ import annotations

import copy
from typing import Any

JsonObject = dict[str, Any]
_META = ("$version", "$metadata")


def apply(target: JsonObject, patch: JsonObject) -> JsonObject:
    """``target`` with ``patch`` merged in; ``None`` deletes. Neither input is changed."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            base = out.get(key)
            out[key] = apply(base if isinstance(base, dict) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def composable(first: JsonObject, second: JsonObject) -> bool:
    """Whether one patch equals applying ``first`` then ``second``.

    Not when ``second`` puts an object where ``first`` put a scalar or null:
    merged, that object would combine with the *original* value's members,
    which applying them one after the other would have discarded.
    """
    for key, value in second.items():
        if key not in first or not isinstance(value, dict):
            continue
        earlier = first[key]
        if not isinstance(earlier, dict) or not composable(earlier, value):
            return False
    return True


def compose(first: JsonObject, second: JsonObject) -> JsonObject:
    """One patch with the effect of ``first`` then ``second``; needs :func:`composable`."""
    out = copy.deepcopy(first)
    for key, value in second.items():
        earlier = out.get(key)
        if isinstance(value, dict) and isinstance(earlier, dict):
            out[key] = compose(earlier, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def diff(old: JsonObject, new: JsonObject) -> JsonObject:
    """The patch that turns ``old`` into ``new`` (``$``-metadata ignored)."""
    patch: JsonObject = {}
    for key in old.keys() - new.keys():
        if key not in _META:
            patch[key] = None
    for key, value in new.items():
        if key in _META:
            continue
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = diff(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            # Documents hold no nulls, and an object replacing a scalar starts from {}.
            patch[key] = copy.deepcopy(value)
    return patch


def strip_meta(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k not in _META}
