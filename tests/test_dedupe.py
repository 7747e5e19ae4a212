from __future__ import annotations

from qss_exporter.dedupe import DedupeWindow


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
