"""ActivityTracker: times and labels in two dicts, and the saved state of schema 1."""

from __future__ import annotations

from qss_exporter.activity import ActivityTracker
from qss_exporter.store import Sample


def test_an_entry_is_active_for_the_whole_window() -> None:
    tracker = ActivityTracker(window=60.0)
    tracker.touch(("acme", "meeting", "m1", "alice"), 100.2, ("acme", "meeting"))
    tracker.touch(("acme", "meeting", "m1", "bob"), 99.0, ("acme", "meeting"))
    assert tracker.count_by_labels(160.2) == [Sample(("acme", "meeting"), 1.0)]  # alice, 60 s after her record
    assert tracker.count_by_labels(160.3) == []
    assert tracker.expire(160.3) == 2
    assert len(tracker) == 0


def test_an_older_record_does_not_move_an_entry_back_and_a_leave_is_final() -> None:
    tracker = ActivityTracker(window=60.0)
    key = ("acme", "meeting", "m1", "alice")
    tracker.touch(key, 200.0, ("acme", "meeting", "wifi"))
    tracker.touch(key, 150.0, ("acme", "meeting", "wired"))  # a late retry: the newer stays
    assert tracker.count_by_labels(255.0) == [Sample(("acme", "meeting", "wifi"), 1.0)]
    tracker.end(key, 256.0)
    tracker.touch(key, 250.0, ("acme", "meeting", "wifi"))  # a redelivery after the leave
    assert tracker.count_by_labels(256.0) == []
    assert tracker.counted() == []


def test_a_snapshot_of_schema_1_with_time_and_labels_pairs_is_taken_back() -> None:
    tracker = ActivityTracker(window=60.0)
    tracker.restore(
        {
            "keys": [("acme", "meeting", "m1", "alice"), ("acme", "meeting", "m1", "bob")],
            "seen": [(100.5, ("acme", "meeting")), (90.0, ("acme", "meeting"))],
            "ended": [("acme", "meeting", "m1", "carol")],
            "ended_at": [95.0],
        }
    )
    assert tracker.count_by_labels(150.0) == [Sample(("acme", "meeting"), 2.0)]
    assert tracker.count_by_labels(150.5) == [Sample(("acme", "meeting"), 1.0)]
    tracker.touch(("acme", "meeting", "m1", "carol"), 120.0, ("acme", "meeting"))  # she left: not back
    again = ActivityTracker(window=60.0)
    again.restore(tracker.snapshot())
    assert again.snapshot() == tracker.snapshot()
    assert again.count_by_labels(150.5) == [Sample(("acme", "meeting"), 1.0)]
