from __future__ import annotations

import pytest

from qss_exporter.store import Sample, Store


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_histogram_buckets_are_le_and_sum_counts() -> None:
    store = Store(100, FakeClock())
    family = store.histogram("h_seconds", "doc", ("a",), (0.1, 0.5, 1.0))
    for value in (0.1, 0.2, 0.5, 0.7, 3.0):
        family.observe(("x",), value)
    (series,) = family.series()
    assert series.counts == [1, 2, 1, 1]  # 0.1 -> le=0.1 (inclusive), 3.0 -> +Inf
    assert series.sum == pytest.approx(4.5)


def test_series_cap_refuses_and_counts_per_family() -> None:
    store = Store(3, FakeClock())
    counter = store.counter("c_total", "doc", ("k",))
    histogram = store.histogram("h", "doc", ("k",), (1.0,))
    for i in range(3):
        counter.inc((str(i),))
    histogram.observe(("new",), 1.0)
    counter.inc(("new",))
    counter.inc(("0",))  # existing series still update at the cap
    assert (len(counter), len(histogram)) == (3, 0)
    assert (counter.dropped, histogram.dropped) == (1, 1)
    assert counter.value(("0",)) == 2.0
    assert store.series_count == 3


def test_ttl_expiry_frees_series_and_cap_room() -> None:
    clock = FakeClock(0.0)
    store = Store(2, clock)
    family = store.counter("c_total", "doc", ("k",), ttl=60)
    forever = store.counter("d_total", "doc", ("k",))
    store.now = 0.0
    family.inc(("old",))
    forever.inc(("kept",))
    clock.now = 30.0
    store.now = 30.0
    clock.now = 61.0
    assert store.expire() == 1
    assert (len(family), len(forever)) == (0, 1)
    store.now = 61.0
    family.inc(("fresh",))
    assert (len(family), family.dropped) == (1, 0)


def test_label_count_mismatch_is_a_programming_error() -> None:
    store = Store(10, FakeClock())
    with pytest.raises(ValueError, match="expected 2 label values"):
        store.counter("c_total", "doc", ("a", "b")).inc(("only-one",))


def test_duplicate_family_and_bad_buckets_rejected() -> None:
    store = Store(10, FakeClock())
    store.gauge("g", "doc", ())
    with pytest.raises(ValueError, match="registered twice"):
        store.gauge("g", "doc", ())
    with pytest.raises(ValueError, match="strictly increasing"):
        store.histogram("h", "doc", (), (1.0, 1.0))


def test_callback_family_has_no_stored_series() -> None:
    store = Store(10, FakeClock())
    family = store.callback("active", "doc", ("k",), lambda: [Sample(("a",), 2.0)])
    assert [s.value for s in family.collect()] == [2.0]
    assert store.series_count == 0


@pytest.mark.parametrize("scale", [0, 3, 6])
def test_exponential_buckets_hold_each_value_between_their_bounds(scale: int) -> None:
    store = Store(100, FakeClock())
    family = store.histogram("h", "doc", (), (1.0,), exponential_scale=scale)
    base = 2.0 ** (2.0**-scale)
    values = [0.001, 0.038, 0.134, 1.0, 2.0, 7.875e3, -67.0, 0.0]
    for value in values:
        family.observe((), value)
    (series,) = family.series()
    assert series.counts == [6, 2]  # the explicit buckets are unchanged
    exponential = series.exponential  # type: ignore[attr-defined]  # a DualHistogramSeries
    assert exponential.zero_count == 1
    assert sum(exponential.positive.values()) == 6
    assert list(exponential.negative.values()) == [1]
    for value in values[:-2]:  # every positive value has a bucket whose bounds contain it
        assert any(base**i < value <= base ** (i + 1) * (1 + 1e-12) for i in exponential.positive), value
    (negative,) = exponential.negative
    assert base**negative < 67.0 <= base ** (negative + 1)


def test_histograms_without_a_scale_keep_no_exponential_buckets() -> None:
    family = Store(10, FakeClock()).histogram("h", "doc", (), (1.0,))
    family.observe((), 0.5)
    (series,) = family.series()
    assert not hasattr(series, "exponential")


def test_a_refused_series_counts_once_however_often_it_is_updated() -> None:
    store = Store(1, FakeClock())
    family = store.counter("c_total", "doc", ("k",))
    histogram = store.histogram("h", "doc", ("k",), (1.0,))
    family.inc(("kept",))
    for _ in range(1000):
        family.inc(("refused",))
        histogram.handle(("refused",)).observe(0.5, 0.0)
        histogram.observe(("other",), 0.5)
    assert (family.dropped, histogram.dropped) == (1, 2)


def test_computed_series_count_against_the_cap_and_the_cut_ones_are_counted() -> None:
    store = Store(10, FakeClock())
    stored = store.counter("c_total", "doc", ("k",))
    for n in range(4):
        stored.inc((str(n),))
    rows = [Sample((str(n),), 1.0) for n in range(8)]
    active = store.callback("active", "doc", ("k",), lambda: rows)
    assert [s.labels for s in active.collect()] == [(str(n),) for n in range(6)]  # the room left: 10 - 4
    assert (len(active), active.dropped, store.computed_count) == (6, 2, 6)
    stored.inc(("new",))  # the cap is full with the computed series: refused
    assert (len(stored), stored.dropped) == (4, 1)
    rows[:] = rows[:3]  # fewer active participants: their room is given back
    assert len(active.collect()) == 3
    stored.inc(("new",))
    assert (len(stored), store.computed_count) == (5, 3)
    assert active.dropped == 2  # refusals are a counter: they never go down


def test_fixed_size_self_metrics_are_not_capped() -> None:
    store = Store(1, FakeClock())
    store.counter("c_total", "doc", ("k",)).inc(("a",))
    series = store.callback("series", "doc", ("f",), lambda: [Sample(("a",), 1.0), Sample(("b",), 0.0)], capped=False)
    assert len(series.collect()) == 2
    assert store.computed_count == 0


def test_families_with_the_same_labels_share_one_label_text_and_it_is_dropped_with_its_series() -> None:
    clock = FakeClock()
    store = Store(100, clock)
    latency = store.histogram("latency", "doc", ("media", "path"), (1.0,), ttl=60.0)
    jitter = store.histogram("jitter", "doc", ("media", "path"), (1.0,), ttl=60.0)
    records = store.counter("records_total", "doc", ("media", "path"), ttl=60.0)
    other = store.counter("other_total", "doc", ("kind", "path"))
    labels = ("audio", 'a"b')
    latency.observe(labels, 0.5)
    jitter.observe(("audio", 'a"b'), 0.5)  # an equal tuple, not the same one
    records.inc(labels)
    other.inc(labels)
    (a,), (b,), (c,), (d,) = latency.series(), jitter.series(), records.series(), other.series()
    assert a.text == 'media="audio",path="a\\"b"'
    assert a.text is b.text is c.text  # one string for the three series: the renderer's cache, shared
    assert d.text == 'kind="audio",path="a\\"b"'
    assert store.label_texts == 2
    clock.now += 61.0
    assert store.expire() == 3
    assert store.label_texts == 1  # the texts of expired series go with them
    latency.observe(labels, 0.5)
    (again,) = latency.series()
    assert again.text == 'media="audio",path="a\\"b"'
    assert store.label_texts == 2
