"""Merge-patch algebra the cloud link relies on for coalescing and desired catch-up."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway import mergepatch

_keys = st.sampled_from(["a", "b", "c"])
_scalars = st.one_of(st.integers(0, 3), st.booleans(), st.text(max_size=2))
documents = st.recursive(
    _scalars, lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=8
).filter(lambda d: isinstance(d, dict))
patches = st.recursive(
    st.one_of(_scalars, st.none()),
    lambda inner: st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
).filter(lambda d: isinstance(d, dict))


@given(documents, documents)
def test_diff_takes_old_to_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert mergepatch.apply(old, mergepatch.diff(old, new)) == new


@given(documents, patches, patches)
def test_composable_patches_compose_exactly(
    target: dict[str, Any], first: dict[str, Any], second: dict[str, Any]
) -> None:
    if mergepatch.composable(first, second):
        one_by_one = mergepatch.apply(mergepatch.apply(target, first), second)
        assert mergepatch.apply(target, mergepatch.compose(first, second)) == one_by_one


def test_null_then_object_is_not_composable() -> None:
    assert not mergepatch.composable({"e": None}, {"e": {"code": "y"}})
    assert mergepatch.composable({"e": {"a": 1}}, {"e": {"b": None}})
    assert mergepatch.diff({"x": {"a": 1}, "$version": 3}, {"x": {}, "$version": 4}) == {
        "x": {"a": None}
    }
