"""The REST poller's progress, kept in one SQLite file so that a restart neither repeats nor forgets work.

It holds the meeting / webinar / session instances to poll and those already polled, the participant
summaries already counted (for the dedupe window), the look-back sweep position and the daily API
budget spent. It knows nothing about Zoom's API or the metric store: rows in, rows out.

Every sqlite3 call runs on one worker thread, never on the event loop: a commit can wait for the
disk for milliseconds, and webhook handling must never wait for it. One thread also serialises the
connection, which sqlite3 requires.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

__all__ = ["FILE_NAME", "Backlog", "InstanceKey", "PendingInstance", "Sighting", "State", "SummaryKey"]

log = logging.getLogger(__name__)

FILE_NAME = "poller.sqlite3"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    account_id TEXT NOT NULL,          -- the instance's account (a sub-account's id for master-account paths)
    product TEXT NOT NULL,             -- meeting, webinar, session
    instance TEXT NOT NULL,            -- meeting / webinar UUID or Video SDK session id
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,           -- newest record (any event) of the instance
    summary_seen INTEGER NOT NULL DEFAULT 0,
    ended INTEGER NOT NULL DEFAULT 0,  -- known to have ended (listed as past by Zoom, or an `ended` event)
    not_before REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt REAL,
    status TEXT NOT NULL DEFAULT 'pending',  -- pending, or how it finished: polled, too_old, gave_up
    finished REAL,
    PRIMARY KEY (account_id, product, instance)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS instances_by_status ON instances (status, account_id);
CREATE TABLE IF NOT EXISTS counted (
    account_id TEXT NOT NULL,
    product TEXT NOT NULL,
    instance TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (account_id, product, instance, participant_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sweeps (
    account_id TEXT NOT NULL,
    product TEXT NOT NULL,
    position REAL NOT NULL,            -- instances that ended before this time have been listed
    PRIMARY KEY (account_id, product)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS budget (
    scope TEXT NOT NULL,
    day TEXT NOT NULL,                 -- UTC day, YYYY-MM-DD
    used INTEGER NOT NULL,
    PRIMARY KEY (scope, day)
) WITHOUT ROWID;
"""
# When an instance is due: at once when Zoom listed it as past, `settle` after its last record when a
# summary was seen (everyone may have left), `idle` after it otherwise; never before `not_before`.
_DUE = (
    "MAX(CASE WHEN ended THEN first_seen WHEN summary_seen THEN last_seen + :settle ELSE last_seen + :idle END,"
    " not_before)"
)

T = TypeVar("T")
Status = Literal["polled", "too_old", "gave_up"]


class InstanceKey(NamedTuple):
    account_id: str
    product: str
    instance: str


class SummaryKey(NamedTuple):
    """A participant session already counted (the dedupe key of its summary, less the constant prefix)."""

    account_id: str
    product: str
    instance: str
    participant_id: str


@dataclass(frozen=True, slots=True)
class Sighting:
    """Records of an instance arrived (by webhook or WebSocket) up to `last_seen`."""

    key: InstanceKey
    last_seen: float
    summary_seen: bool
    ended: bool = False  # an event said the instance ended (meeting.ended and the like)


@dataclass(frozen=True, slots=True)
class PendingInstance:
    key: InstanceKey
    due: float
    attempts: int
    first_attempt: float | None


@dataclass(frozen=True, slots=True)
class Backlog:
    """Pending instances of one account id: how many, and since when the longest-waiting one is due."""

    pending: int
    oldest_due: float | None  # None when none is due yet


class State:
    """The poller's SQLite store; `path` is None when it fell back to memory."""

    def __init__(self, connection: sqlite3.Connection, path: Path | None) -> None:
        self._connection = connection
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qss-state")
        self.busy = 0  # calls queued or running; simulated-time tests advance the clock only at 0

    @classmethod
    def open(cls, directory: Path) -> State:
        """Open (creating on first start) `directory/poller.sqlite3`; in memory, with a warning, if that fails.

        Blocking: call it off the event loop (`asyncio.to_thread`).
        """
        path = directory / FILE_NAME
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            connection = cls._connect(str(path))
        except (OSError, sqlite3.Error) as error:
            log.warning(
                "poller state: cannot write %s (%s); keeping progress in memory only, so after a restart the "
                "poller forgets what it polled and what was pending. Set poller.state_dir to a writable directory.",
                path,
                error,
            )
            return cls(cls._connect(":memory:"), None)
        return cls(connection, path)

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        connection = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=5.0)
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"written by a newer qss-exporter (schema {version} > {_SCHEMA_VERSION})")
            if target != ":memory:":
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            connection.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, self._connection)
        finally:
            self.busy -= 1

    async def close(self) -> None:
        await self._run(lambda connection: connection.close())
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------------------- instances

    async def record_sightings(self, sightings: Sequence[Sighting]) -> None:
        """Learn instances from records; an instance already finished is left alone."""
        rows = [(*s.key, s.last_seen, s.last_seen, int(s.summary_seen), int(s.ended)) for s in sightings]

        def work(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(
                    "INSERT INTO instances (account_id, product, instance, first_seen, last_seen, summary_seen, ended)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, product, instance) DO UPDATE SET"
                    " last_seen = MAX(last_seen, excluded.last_seen),"
                    " summary_seen = MAX(summary_seen, excluded.summary_seen),"
                    " ended = MAX(ended, excluded.ended) WHERE status = 'pending'",
                    rows,
                )

        await self._run(work)

    async def record_ended(self, keys: Iterable[InstanceKey], now: float) -> int:
        """Instances Zoom listed as past: due at once. Returns how many were new."""
        rows = [(*key, now, now) for key in keys]

        def work(db: sqlite3.Connection) -> int:
            with _transaction(db):
                before = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
                db.executemany(
                    "INSERT INTO instances (account_id, product, instance, first_seen, last_seen, ended)"
                    " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (account_id, product, instance) DO UPDATE SET"
                    " ended = 1 WHERE status = 'pending'",
                    rows,
                )
                return int(db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] - before)

        return await self._run(work)

    async def due(
        self, account_ids: Sequence[str], now: float, settle: float, idle: float, limit: int
    ) -> list[PendingInstance]:
        """Pending instances of `account_ids` that are due at `now`, longest-waiting first."""
        names, params = _in(account_ids)
        query = (
            f"SELECT account_id, product, instance, {_DUE} AS due, attempts, first_attempt FROM instances"
            f" WHERE status = 'pending' AND account_id IN ({names}) AND {_DUE} <= :now ORDER BY due LIMIT :limit"
        )
        params |= {"settle": settle, "idle": idle, "now": now, "limit": limit}

        def work(db: sqlite3.Connection) -> list[PendingInstance]:
            return [
                PendingInstance(InstanceKey(a, p, i), due, attempts, first)
                for a, p, i, due, attempts, first in db.execute(query, params)
            ]

        return await self._run(work)

    async def next_due(self, account_ids: Sequence[str], settle: float, idle: float) -> float | None:
        """When the earliest pending instance of `account_ids` becomes due (None: nothing pending)."""
        names, params = _in(account_ids)
        query = f"SELECT MIN({_DUE}) FROM instances WHERE status = 'pending' AND account_id IN ({names})"
        params |= {"settle": settle, "idle": idle}

        def work(db: sqlite3.Connection) -> float | None:
            value = db.execute(query, params).fetchone()[0]
            return None if value is None else float(value)

        return await self._run(work)

    async def backlog(self, now: float, settle: float, idle: float) -> dict[str, Backlog]:
        """Per instance account id: pending instances and the oldest due time among those due."""
        query = (
            f"SELECT account_id, COUNT(*), MIN(CASE WHEN {_DUE} <= :now THEN {_DUE} END) FROM instances"
            " WHERE status = 'pending' GROUP BY account_id"
        )

        def work(db: sqlite3.Connection) -> dict[str, Backlog]:
            rows = db.execute(query, {"settle": settle, "idle": idle, "now": now})
            return {account: Backlog(count, oldest) for account, count, oldest in rows}

        return await self._run(work)

    async def reschedule(self, key: InstanceKey, not_before: float, attempts: int, first_attempt: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE instances SET not_before = ?, attempts = ?, first_attempt = COALESCE(first_attempt, ?)"
                " WHERE account_id = ? AND product = ? AND instance = ?",
                (not_before, attempts, first_attempt, *key),
            )

        await self._run(work)

    async def finish(self, key: InstanceKey, status: Status, now: float, counted: Sequence[SummaryKey] = ()) -> None:
        """Mark an instance done, and remember its counted summaries, in one transaction."""

        def work(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(
                    "UPDATE instances SET status = ?, finished = ?"
                    " WHERE account_id = ? AND product = ? AND instance = ?",
                    (status, now, *key),
                )
                _insert_counted(db, counted, now)

        await self._run(work)

    async def status(self, key: InstanceKey) -> str | None:
        def work(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT status FROM instances WHERE account_id = ? AND product = ? AND instance = ?", tuple(key)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(work)

    # ------------------------------------------------------------------------- counted summaries

    async def record_counted(self, counted: Sequence[SummaryKey], now: float) -> None:
        """Participant summaries counted from webhooks (the poller remembers its own in `finish`)."""

        def work(db: sqlite3.Connection) -> None:
            with _transaction(db):
                _insert_counted(db, counted, now)

        await self._run(work)

    async def counted_for(self, key: InstanceKey) -> set[str]:
        """Participant ids of `key` whose summaries were counted already."""

        def work(db: sqlite3.Connection) -> set[str]:
            rows = db.execute(
                "SELECT participant_id FROM counted WHERE account_id = ? AND product = ? AND instance = ?", tuple(key)
            )
            return {row[0] for row in rows}

        return await self._run(work)

    async def counted_since(self, since: float) -> list[SummaryKey]:
        def work(db: sqlite3.Connection) -> list[SummaryKey]:
            rows = db.execute(
                "SELECT account_id, product, instance, participant_id FROM counted WHERE at >= ?", (since,)
            )
            return [SummaryKey(*row) for row in rows]

        return await self._run(work)

    # ------------------------------------------------------------------------------ look-back sweep

    async def sweep_position(self, account_id: str, product: str) -> float | None:
        def work(db: sqlite3.Connection) -> float | None:
            row = db.execute(
                "SELECT position FROM sweeps WHERE account_id = ? AND product = ?", (account_id, product)
            ).fetchone()
            return None if row is None else float(row[0])

        return await self._run(work)

    async def set_sweep_position(self, account_id: str, product: str, position: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO sweeps (account_id, product, position) VALUES (?, ?, ?)"
                " ON CONFLICT (account_id, product) DO UPDATE SET position = MAX(position, excluded.position)",
                (account_id, product, position),
            )

        await self._run(work)

    # ------------------------------------------------------------------------- daily API budget

    async def spend(self, scope: str, day: str, limit: int) -> int | None:
        """Count one call of `scope` on `day` (committed before it is made); None when `limit` is reached."""

        def work(db: sqlite3.Connection) -> int | None:
            with _transaction(db):
                row = db.execute(
                    "INSERT INTO budget (scope, day, used) VALUES (?, ?, 1) ON CONFLICT (scope, day) DO UPDATE"
                    " SET used = used + 1 WHERE used < ? RETURNING used",
                    (scope, day, limit),
                ).fetchone()
            return None if row is None or row[0] > limit else int(row[0])

        return await self._run(work)

    async def exhaust(self, scope: str, day: str, limit: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO budget (scope, day, used) VALUES (?, ?, ?)"
                " ON CONFLICT (scope, day) DO UPDATE SET used = MAX(used, excluded.used)",
                (scope, day, limit),
            )

        await self._run(work)

    async def used(self, scope: str, day: str) -> int:
        def work(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT used FROM budget WHERE scope = ? AND day = ?", (scope, day)).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(work)

    # ------------------------------------------------------------------------------ housekeeping

    async def prune(self, finished_before: float, counted_before: float, budget_before_day: str) -> None:
        """Forget finished instances, counted summaries and budget days older than the given limits."""

        def work(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("DELETE FROM instances WHERE status != 'pending' AND finished < ?", (finished_before,))
                # An instance still pending keeps them all: its poll must skip what webhooks counted.
                db.execute(
                    "DELETE FROM counted WHERE at < ? AND NOT EXISTS (SELECT 1 FROM instances i"
                    " WHERE i.status = 'pending' AND i.account_id = counted.account_id"
                    " AND i.product = counted.product AND i.instance = counted.instance)",
                    (counted_before,),
                )
                db.execute("DELETE FROM budget WHERE day < ?", (budget_before_day,))

        await self._run(work)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        self._db.execute("COMMIT" if error is None else "ROLLBACK")


def _insert_counted(db: sqlite3.Connection, counted: Sequence[SummaryKey], now: float) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO counted (account_id, product, instance, participant_id, at) VALUES (?, ?, ?, ?, ?)",
        [(*key, now) for key in counted],
    )


def _in(values: Sequence[str]) -> tuple[str, dict[str, object]]:
    """Named placeholders for `IN (...)` and their values."""
    params: dict[str, object] = {f"v{index}": value for index, value in enumerate(values)}
    return ",".join(f":{name}" for name in params), params
