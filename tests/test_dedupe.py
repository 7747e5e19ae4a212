from __future__ import annotations

import sys

from qss_exporter.dedupe import DedupeWindow, ParticipantHistory, participant_bucket


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


def test_participant_history_evicts_the_least_recently_started_first_and_holds_its_cap() -> None:
    history = ParticipantHistory(window=7200, max_entries=30)
    for participant in range(10):  # ten participants, three events each: the cap is reached exactly
        for event in range(3):
            assert not history.seen(("a", "m", str(participant)), ("qos", participant, event), float(participant))
    assert len(history) == 30
    assert history.evicted == 0
    assert not history.seen(("a", "m", "0"), ("qos", 0, 3), 20.0)  # the oldest is the one seen: it stays
    assert len(history) == 28
    assert history.evicted == 3
    for newcomer in range(10, 15):  # each new participant pushes out the least recently started
        assert not history.seen(("a", "m", str(newcomer)), ("qos", newcomer, 0), 30.0)
        assert len(history) <= 30
    # Participant 0, kept once as the one being seen, was still the least recently started: it went next.
    assert history.evicted == 3 + 4
    assert len(history) == 3 * 8 + 5  # participants 2..9 and the five newcomers
    assert history.seen(("a", "m", "2"), ("qos", 2, 0), 40.0)  # the oldest held still recognises its retries
    assert not history.seen(("a", "m", "0"), ("qos", 0, 0), 40.0)  # an evicted one's retry is new again


def test_participant_history_eviction_stays_bounded_past_the_cap_for_many_participants() -> None:
    history = ParticipantHistory(window=7200, max_entries=1000)
    for participant in range(20_000):
        history.seen(("a", "m", str(participant)), ("qos", participant), float(participant))
    assert len(history) == 1000
    assert history.evicted == 19_000
    assert all(history.seen(("a", "m", str(p)), ("qos", p), 20_000.0) for p in range(19_000, 20_000))
    assert history.expire(now=19_802.0 + 7200) == 802  # idle longer than the window: the oldest expire
    assert len(history) == 198


def test_participants_whose_ids_collide_share_a_history_and_stay_apart() -> None:
    alice = ("acct", "m", "alice")
    buckets = {participant_bucket(("a", "m", str(n))) for n in range(100_000)}
    assert len(buckets) >= 99_990  # few collisions among 100k participants
    # What a collision amounts to: bob's events in alice's bucket. Each event is recognised by its own key.
    shared = ParticipantHistory(window=7200, max_entries=1000)
    assert not shared.seen(alice, ("qos", "alice", 1), 0.0)
    assert not shared.seen(alice, ("qos", "bob", 1), 0.0)  # bob's event, in alice's bucket
    assert shared.seen(alice, ("qos", "bob", 1), 60.0)
    assert not shared.seen(alice, ("qos", "bob", 2), 60.0)
    assert len(shared) == 3


def test_participant_history_takes_back_a_schema_1_snapshot_keyed_by_ids() -> None:
    old = ParticipantHistory(window=7200, max_entries=1000)
    old.seen(("acct", "m", "alice"), ("qos", 1), 100.0)
    records = old.snapshot()["records"]
    history = ParticipantHistory(window=7200, max_entries=1000)
    history.restore({"keys": [("acct", "m", "alice")], "records": records})  # schema 1: the tuple of ids
    assert history.seen(("acct", "m", "alice"), ("qos", 1), 200.0)
    assert not history.seen(("acct", "m", "bob"), ("qos", 1), 200.0)
    again = ParticipantHistory(window=7200, max_entries=1000)
    again.restore(history.snapshot())
    assert again.seen(("acct", "m", "bob"), ("qos", 1), 300.0)
    assert len(again) == 2


def test_a_participant_id_with_a_lone_surrogate_has_a_history_too() -> None:
    history = ParticipantHistory(window=7200, max_entries=1000)
    odd = ("acct", "m", "\ud800")
    assert participant_bucket(odd) != participant_bucket(("acct", "m", "\ud801"))
    assert not history.seen(odd, ("qos", 1), 0.0)
    assert history.seen(odd, ("qos", 1), 60.0)


def test_participant_history_keeps_its_start_order_across_shards_through_expiry_and_a_snapshot() -> None:
    history = ParticipantHistory(window=7200, max_entries=100_000)
    participants = [("acct", "m", str(n)) for n in range(2_000)]  # spread over every shard
    for n, participant in enumerate(participants):
        history.seen(participant, ("qos", n), float(n))
    for participant in participants[1::2]:  # the odd ones stay busy; the even ones go idle
        history.seen(participant, ("qos", "later"), 2_000.0)
    assert history.expire(now=7200.0 + 1_000.5) == 500  # even participants 0 .. 998 idle past the window
    restored = ParticipantHistory(window=7200, max_entries=100_000)
    restored.restore(history.snapshot())
    assert len(restored) == len(history) == 1_000 * 2 + 500  # the odd ones' two events, the even ones' one
    # Least recently started first: the snapshot's order is the participants' first events', whatever the shard.
    remaining = [p for n, p in enumerate(participants) if n % 2 or n >= 1_000]
    assert restored.snapshot()["keys"] == [participant_bucket(p) for p in remaining]
    restored_cap = ParticipantHistory(window=7200, max_entries=len(history) - 2)
    restored_cap.restore(history.snapshot())  # past its cap: the least recently started go first
    assert not restored_cap.seen(remaining[0], ("qos", 1), 2_001.0)  # participant 1's first event, forgotten
    assert restored_cap.seen(remaining[2], ("qos", 5), 2_001.0)


def test_participant_history_tables_stay_small_for_tens_of_thousands_of_participants() -> None:
    # One dict of every history doubles its table (2.5 -> 5 MiB at ~45k histories) at a chance moment of
    # churn: the soak's RSS steps. The shards keep each table small, so growth comes in small steps.
    history = ParticipantHistory(window=7200, max_entries=10_000_000)
    for n in range(60_000):
        history.seen(("acct", "m", str(n)), ("qos", n), float(n % 3600))
    tables = history._shards
    assert sum(map(len, tables)) == 60_000
    assert max(sys.getsizeof(table) for table in tables) <= 64 * 1024
