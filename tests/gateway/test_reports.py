"""The reported-properties queue: progress coalesces, transitions survive, order holds."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway import mergepatch
from gateway.reports import MAX_ENTRIES, ReportQueue


def _drain(queue: ReportQueue) -> list[dict[str, Any]]:
    sent = []
    while len(queue):
        sent.append(queue.take())
    return sent


def test_fifty_progress_reports_are_one_patch_with_the_last_values() -> None:
    queue = ReportQueue()
    for i in range(50):
        queue.add({"firmware": {"progress": i * 2, "bytesWritten": i * 1024}})
    queue.add({"firmware": {"fwUpdateStatus": "applying", "error": None}})
    assert not queue.has_transition
    merged = {"progress": 98, "bytesWritten": 49 * 1024, "fwUpdateStatus": "applying",
              "error": None}  # fmt: skip
    assert _drain(queue) == [{"firmware": merged}]


def test_each_transition_ends_its_own_patch_so_the_twin_walks_every_status() -> None:
    # The hub was unreachable for a whole update: everything queued at once.
    queue = ReportQueue()
    for status in ("downloading", "verifying", "applying"):
        queue.add({"firmware": {"fwUpdateStatus": status}}, transition=True)
        queue.add({"firmware": {"progress": 50}})
        queue.add({"firmware": {"progress": 60}})
    queue.add({"firmware": {"fwUpdateStatus": "current"}}, transition=True)
    assert queue.has_transition
    sent = _drain(queue)
    statuses = [p["firmware"].get("fwUpdateStatus") for p in sent]
    assert statuses == ["downloading", "verifying", "applying", "current"]
    assert sent[1] == {"firmware": {"progress": 60, "fwUpdateStatus": "verifying"}}


def test_a_failed_patch_goes_first_again_as_one_unit() -> None:
    queue = ReportQueue()
    queue.add({"firmware": {"fwUpdateStatus": "applying"}}, transition=True)
    queue.add({"firmware": {"progress": 10}})
    first = queue.take()
    queue.add({"firmware": {"progress": 20}})
    queue.put_back(first)
    assert _drain(queue) == [first, {"firmware": {"progress": 20}}]


def test_a_very_long_outage_keeps_memory_bounded_and_the_final_values() -> None:
    queue = ReportQueue()
    for i in range(1000):
        queue.add({"firmware": {"fwUpdateStatus": f"s{i}", "progress": i}}, transition=True)
    assert len(queue) <= MAX_ENTRIES
    sent = _drain(queue)
    assert sent[-1] == {"firmware": {"fwUpdateStatus": "s999", "progress": 999}}
    assert [p["firmware"]["fwUpdateStatus"] for p in sent][-3:] == ["s997", "s998", "s999"]


_values = st.one_of(
    st.none(),
    st.integers(0, 3),
    st.dictionaries(st.sampled_from("xy"), st.integers(0, 3), max_size=2),
)
_patches = st.dictionaries(st.sampled_from("abc"), _values, min_size=1, max_size=3)


@given(st.lists(st.tuples(_patches, st.booleans()), min_size=1, max_size=12))
def test_what_is_sent_equals_every_patch_applied_in_order(
    reports: list[tuple[dict[str, Any], bool]],
) -> None:
    queue = ReportQueue()
    expected: dict[str, Any] = {}
    for patch, transition in reports:
        queue.add(patch, transition=transition)
        expected = mergepatch.apply(expected, patch)
    state: dict[str, Any] = {}
    for patch in _drain(queue):
        state = mergepatch.apply(state, patch)
    assert state == expected
