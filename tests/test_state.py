"""qss_exporter.state: the poller's SQLite file, its scheduling rules, and the fallback to memory."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qss_exporter.state import FILE_NAME, Backlog, InstanceKey, Sighting, State, SummaryKey

T0 = 1_772_452_800.0  # 2026-03-02 12:00 UTC
SETTLE, IDLE = 300.0, 1800.0
A = InstanceKey("acct", "meeting", "uuid-a==")
B = InstanceKey("acct", "webinar", "uuid-b==")
C = InstanceKey("sub", "meeting", "uuid-c==")


async def open_state(directory: Path) -> State:
    return await asyncio.to_thread(State.open, directory)


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[State]:
    opened = await open_state(tmp_path / "state")
    yield opened
    await opened.close()


async def due(state: State, now: float, accounts: tuple[str, ...] = ("acct", "sub")) -> list[InstanceKey]:
    return [pending.key for pending in await state.due(accounts, now, SETTLE, IDLE, 100)]


async def test_the_file_and_its_directory_are_created_on_first_start(tmp_path: Path) -> None:
    directory = tmp_path / "var" / "lib" / "qss-exporter"
    state = await open_state(directory)
    try:
        assert state.path == directory / FILE_NAME
        assert (directory / FILE_NAME).is_file()
        assert directory.stat().st_mode & 0o777 == 0o700
    finally:
        await state.close()


async def test_an_unwritable_directory_falls_back_to_memory_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="qss_exporter.state"):
        state = await open_state(blocker / "state")
    try:
        assert state.path is None
        await state.record_sightings([Sighting(A, T0, True)])
        assert await due(state, T0 + SETTLE) == [A]  # still works, in memory
    finally:
        await state.close()
    [record] = caplog.records
    assert "keeping progress in memory only" in record.getMessage()
    assert "poller.state_dir" in record.getMessage()


async def test_a_file_from_a_newer_version_is_not_touched(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute("PRAGMA user_version=99")
    with caplog.at_level(logging.WARNING, logger="qss_exporter.state"):
        state = await open_state(tmp_path)
    await state.close()
    assert state.path is None
    assert "newer qss-exporter" in caplog.text


async def test_instances_become_due_after_settle_or_idle_or_at_once_when_ended(state: State) -> None:
    await state.record_sightings([Sighting(A, T0, summary_seen=True), Sighting(B, T0, summary_seen=False)])
    assert await due(state, T0 + SETTLE - 1) == []
    assert await due(state, T0 + SETTLE) == [A]
    assert await due(state, T0 + IDLE) == [A, B]
    # A later record postpones the poll; a summary seen once stays seen.
    await state.record_sightings([Sighting(A, T0 + 100, summary_seen=False)])
    assert await due(state, T0 + SETTLE) == []
    assert await due(state, T0 + 100 + SETTLE) == [A]
    assert await state.next_due(("acct",), SETTLE, IDLE) == T0 + 100 + SETTLE
    # Zoom listed C as a past meeting: due at once; only the accounts asked for are returned.
    assert await state.record_ended([C, A], T0 + 5) == 1
    assert await due(state, T0 + 5, ("sub",)) == [C]
    assert await due(state, T0 + 5) == [A, C]  # A is known to have ended now too (and was seen first)
    await state.record_sightings([Sighting(B, T0, summary_seen=False, ended=True)])  # meeting.ended
    assert B in await due(state, T0 + 1)


async def test_rescheduling_and_finishing(state: State) -> None:
    await state.record_sightings([Sighting(A, T0, True), Sighting(B, T0, True)])
    await state.reschedule(A, T0 + 5000, attempts=1, first_attempt=T0 + SETTLE)
    pending = next(p for p in await state.due(("acct",), T0 + 5000, SETTLE, IDLE, 10) if p.key == A)
    assert (pending.attempts, pending.first_attempt, pending.due) == (1, T0 + SETTLE, T0 + 5000)
    await state.finish(B, "polled", T0 + 400, [SummaryKey(*B, "p1"), SummaryKey(*B, "p2")])
    assert await state.status(B) == "polled"
    # A finished instance is never made pending again, by records or by a sweep.
    await state.record_sightings([Sighting(B, T0 + 500, True)])
    await state.record_ended([B], T0 + 600)
    assert await due(state, T0 + 10_000) == [A]
    assert await state.counted_for(B) == {"p1", "p2"}
    assert await state.backlog(T0 + 10_000, SETTLE, IDLE) == {"acct": Backlog(1, T0 + 5000)}
    assert await state.backlog(T0, SETTLE, IDLE) == {"acct": Backlog(1, None)}


async def test_everything_survives_a_restart(tmp_path: Path) -> None:
    first = await open_state(tmp_path)
    await first.record_sightings([Sighting(A, T0, True)])
    await first.record_counted([SummaryKey(*A, "p9")], T0)
    await first.set_sweep_position("acct", "meeting", T0 - 60)
    assert await first.spend("acct", "2026-03-02", 2) == 1
    await first.close()

    second = await open_state(tmp_path)
    try:
        assert await due(second, T0 + SETTLE) == [A]
        assert await second.counted_since(T0 - 1) == [SummaryKey(*A, "p9")]
        assert await second.sweep_position("acct", "meeting") == T0 - 60
        assert await second.sweep_position("acct", "webinar") is None
        assert await second.spend("acct", "2026-03-02", 2) == 2
        assert await second.spend("acct", "2026-03-02", 2) is None  # the limit holds across the restart
        assert await second.used("acct", "2026-03-02") == 2
    finally:
        await second.close()


async def test_the_budget_is_never_spent_past_its_limit(state: State) -> None:
    results = await asyncio.gather(*(state.spend("acct", "2026-03-02", 7) for _ in range(20)))
    assert sorted(r for r in results if r is not None) == list(range(1, 8))
    assert results.count(None) == 13
    await state.exhaust("other", "2026-03-02", 5)
    assert await state.spend("other", "2026-03-02", 5) is None


async def test_pruning_keeps_what_pending_polls_still_need(state: State) -> None:
    await state.record_sightings([Sighting(A, T0, True), Sighting(B, T0, True)])
    await state.record_counted([SummaryKey(*A, "p1"), SummaryKey(*B, "p1")], T0)
    await state.finish(B, "polled", T0)
    await state.spend("acct", "2026-02-20", 10)
    await state.prune(finished_before=T0 + 1, counted_before=T0 + 1, budget_before_day="2026-02-25")
    assert await state.counted_for(A) == {"p1"}  # A is still pending: its poll must skip p1
    assert await state.counted_for(B) == set()
    assert await state.status(B) is None
    assert await state.used("acct", "2026-02-20") == 0
