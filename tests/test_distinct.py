"""qss_exporter/distinct.py: exact below a thousand distinct items, within a few percent above, in bounded memory."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qss_exporter.distinct import EXACT_LIMIT, DistinctCount


@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=300))
def test_exact_up_to_the_limit_however_often_items_repeat(items: list[tuple[str, str]]) -> None:
    counter = DistinctCount()
    for item in items + items:
        counter.add(item)
    assert counter.count() == len(set(items))


@pytest.mark.parametrize("n", [EXACT_LIMIT + 1, 5_000, 100_000])
def test_estimate_within_five_percent_and_memory_bounded(n: int) -> None:
    counter = DistinctCount()
    previous = 0
    for i in range(n):
        counter.add(("acme", "meeting", f"version-{i}"))
        if i % 997 == 0:
            now = counter.count()
            assert now >= previous  # a counter: never decreases
            previous = now
    assert abs(counter.count() - n) <= max(0.05 * n, 2)
    assert sys.getsizeof(counter._registers) < 5_000  # 4096 one-byte registers, whatever n is
    assert counter._exact is None
