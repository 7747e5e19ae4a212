from __future__ import annotations

from qss_exporter.dedupe import DedupeWindow, ParticipantHistory


def test_remembers_for_at_least_the_window() -> None:
    window = DedupeWindow(7200, 1000, now=0.0)
    assert not window.seen(("a",), 0.0)
    for t in range(0, 7200, 60):
        assert window.seen(("a",), float(t))
        window.seen(("filler", t), float(t))  # traffic makes generations rotate
    assert window.seen(("a",), 7199.0)


def test_forgets_after_the_longest_lifetime() -> None:
    window = DedupeWindow(7200, 1000, now=0.0, generations=4)
    window.seen(("a",), 0.0)
    assert not window.seen(("a",), 7200 * 4 / 3 + 1)


def test_idle_gap_ages_generations() -> None:
    window = DedupeWindow(300, 1000, now=0.0)
    window.seen(("a",), 0.0)
    assert not window.seen(("a",), 10_000.0)


def test_memory_is_bounded_and_early_eviction_is_counted() -> None:
    window = DedupeWindow(7200, 100, now=0.0)
    for i in range(1000):
        window.seen(("k", i), 0.0)
    assert len(window) <= 100
    assert window.evicted == 1000 - len(window)


def test_distinct_keys_are_not_duplicates() -> None:
    window = DedupeWindow(7200, 10_000, now=0.0)
    assert not any(window.seen(("event", i), 1.0) for i in range(5000))
    assert all(window.seen(("event", i), 2.0) for i in range(5000))


def test_participant_history_recognises_redelivery_within_the_window_only() -> None:
    history = ParticipantHistory(window=7200, max_entries=10_000)
    alice = ("acct", "meeting-1", "alice")
    assert not history.seen(alice, ("qos", 1), 0.0)
    assert not history.seen(alice, ("qos", 2), 60.0)
    assert not history.seen(("acct", "meeting-1", "bob"), ("qos", 1), 60.0)  # another participant
    assert history.seen(alice, ("qos", 1), 85 * 60.0)  # Zoom's last retry
    assert not history.seen(alice, ("qos", 3), 7300.0)  # trims what is older than the window
    assert not history.seen(alice, ("qos", 1), 7300.0)
    assert len(history) == 3  # alice: qos 3 and qos 1 again (both older ones trimmed); bob: qos 1


def test_participant_history_survives_many_events_and_expires_idle_participants() -> None:
    history = ParticipantHistory(window=7200, max_entries=1_000_000)
    participants = [("acct", "m", str(p)) for p in range(100)]
    for minute in range(150):
        for participant in participants:
            assert not history.seen(participant, ("qos", participant, minute), minute * 60.0)
    assert all(history.seen(p, ("qos", p, 149), 149 * 60.0) for p in participants)
    assert len(history) == 100 * 121  # two hours of minutes (and the one at the edge) per participant
    assert history.expire(now=149 * 60.0 + 7201) == 100
    assert len(history) == 0


def test_participant_history_is_bounded() -> None:
    history = ParticipantHistory(window=7200, max_entries=50)
    for participant in range(20):
        for event in range(5):
            history.seen(("a", "m", str(participant)), event, 0.0)
    assert len(history) <= 50
    assert history.evicted == 100 - len(history)
