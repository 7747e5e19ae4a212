"""Pipeline state shared by replicas in Redis (`state.backend: redis`): one round trip per event, local fallback.

What is shared, and how (docs/deploy.md "Two replicas with Redis" says it for operators):

* **Dedupe.** An event's dedupe key, digested, is `SET ... NX PX <dedupe window>`: the replica that sets
  it counts the event, every other replica (a Zoom retry landing elsewhere) sees a duplicate. The local
  windows keep running too, so a retry that reaches the same replica during a Redis outage is still
  recognised; an event is a duplicate when either says so.
* **Enrichment.** A `*_data` event's label values are merged into the participant's entry in Redis (a
  field a later data event leaves empty keeps the earlier value, as locally) with `PX <enrichment TTL>`;
  every QoS or summary record reads the entry in the same round trip as its dedupe check, so a local
  cache would save no round trip; the entry read is put into the local directory, which answers alone
  while Redis is away.
* **Activity.** A leave (leave event, summary, data summary) sets an `ended` marker in the participant's
  hash (for the activity window), a meeting's end a meeting marker; a QoS record reads them, so a leave
  seen anywhere ends the participant everywhere. Which replica counts a participant in
  `zoom_qss_active_participants` (and a call in `zoom_qss_phone_active_calls`): the one that received
  their latest QoS record (it writes itself as the owner); a meeting in `zoom_qss_active_meetings`: the
  replica whose claim on it holds, taken by a replica that counts one of its participants. `sync`
  reconciles every few seconds: entries owned elsewhere are forgotten here, ended ones ended. The
  gauges summed over the replicas are then a single agent's.

Everything the request path asks goes through `check`, within a per-call timeout in milliseconds. The
checks of concurrent requests share one EVALSHA (`_ask`: a batch, auto-pipelined: at most IN_FLIGHT_MAX
batches on their way, the next one growing meanwhile). When Redis is slow or gone the record is decided
from local state (counted in `zoom_qss_state_local_decisions_total{reason}`), and for a few seconds the
request path does not try Redis at all (`down`): `sync` probes it in the background and puts it back.
Not Redis Cluster: a script touches several participants' keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from qss_exporter.activity import ActivityTracker
from qss_exporter.dedupe import digest
from qss_exporter.enrichment import ParticipantDirectory
from qss_exporter.redis_client import REDIS_ERRORS, redis_call
from qss_exporter.store import CounterFamily, GaugeFamily, Store
from qss_exporter.timekeeping import Timekeeper, record_second
from qss_exporter.zoom.records import (
    MeetingEvent,
    ParticipantInfo,
    PhoneQosRecord,
    QosRecord,
    Record,
    SummaryRecord,
)

__all__ = ["LAYOUT", "LOCAL_DECISION_REASONS", "SharedFamilies", "SharedState", "Verdict", "run_sync", "shared_key"]

log = logging.getLogger(__name__)

# Why a record was decided from local state alone: Redis did not answer within the call timeout, answered
# with an error (or the connection failed), or was known to be down (not asked: `sync` probes it).
LOCAL_DECISION_REASONS = ("timeout", "error", "down")
SYNC_CHUNK = 500  # activity entries reconciled per script call
# Batches of checks on their way to Redis at once; the next one waits and grows meanwhile (SharedState._ask).
# Interleaved in one run (bench/replicas.py's setup, load ~2.5): 1 gave 0.74 - 0.82 x local state's
# events/s, 2 gave 0.65 - 0.74, 4 gave 0.62 - 0.85: fewer, bigger batches cost less per event.
IN_FLIGHT_MAX = 1
# What a batch's call may end with besides Redis errors: ValueError, a reply msgpack cannot read.
_SEND_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, ValueError)
BATCH_MAX = 500  # events per script call: Redis runs a script alone, ~40 us per event (~20 ms for 500)
SYNC_TIMEOUT_SECONDS = 2.0
_SEP = "\x1f"  # between label values in an enrichment entry (no label value holds it: vocabulary.py)

# The key layout's version, in every shared-state key after `key_prefix`: replicas of two layouts never
# read each other's keys (a rollout across a layout change drops the shared windows once: CHANGELOG).
# 2: one hash per participant (and per call) for the activity keys, instead of a key per field.
LAYOUT = "2:"

# A batch of events' questions in one EVALSHA (`_send`): ARGV[1] the events, msgpack-packed, ARGV[2] now
# (s); the reply is the per-event answers, msgpack-packed. One blob each way, not one command per event
# with its keys and arguments: redis-py's cost per command and per argument, not Redis, limited a
# replica (bench/replicas.py). The constants (@D@ dedupe ms, @E@ enrichment ms, @A@ activity ms, @ME@
# this replica, @GAP@ Timekeeper.max_gap, @P@ the key prefix with LAYOUT) are written into the script,
# and the keys are built in it (not Redis Cluster: a script touches keys it is not given).
# An event: {1 mode, 2 its dedupe digest (hex), 3 new label values, 4 the record time (s), 5 the
# participant's activity key (JSON, for releases), 6 their enrichment id, 7 their activity id (or the
# call's), 8 their meeting's, 9 phone samples' dedupe digests}.
# Its keys: d:<digest> (SET NX, the dedupe window), e:<enrichment id> (the label values, the enrichment
# TTL), a:<activity id> (a participant's hash) or c:<call> (a call's), xm:<meeting> (a meeting's end,
# read by `sync` only: locally a meeting's end ends the participants active then, not later ones).
# A participant's hash holds x (ended: when, in ms of the writing replica's clock (not Redis's TIME: the
# least-privilege ACL of docs/config.md does not grant it); an end older than the activity window is no
# end, as locally), o (the owner), t (the record times, comma-separated), h (the replicas holding their
# first time's records, space-separated); one PEXPIRE (the activity window) per touched hash. One hash
# instead of four keys: 5 calls per QoS record instead of 6 - 8, and Redis's CPU per event in the
# script 34 - 35 us instead of 44 - 47 (3,000 participants' QoS records replayed through EVALSHA in
# batches of 100, Redis's used_cpu per event, the two layouts one after the other).
# Modes: q (QoS: read enrichment and markers, own), s (a leave: end, read enrichment), i (data event:
# merge enrichment), f (data summary: merge and end), m (a meeting's end), c (phone sample), z (phone
# summary: dedupe each sample), Z (z, and the call ended), e (a phone call's end), o (anything else).
# An answer: {new, enrichment or '', ended, record times before this one (comma-separated), 1 when this
# replica is to hold the record's time (a first time), sample flags...}. Events are answered in order,
# as one after the other.
_CHECK = """
local D, E, A, ME, GAP, P = '@D@', '@E@', '@A@', '@ME@', '@GAP@', '@P@'
local WINDOW = tonumber(A)
local now = ARGV[2]
local now_ms = tonumber(now) * 1000
local DUPLICATE = {0, '', 0, '', 0}
local function ended_at(value)
  return value and now_ms - tonumber(value) < WINDOW
end
-- The replicas holding a first time's records (h) learn its spacing (or the participant's end) from here.
local function release(holders, who, gap)
  if not holders then return end
  for holder in string.gmatch(holders, '[^ ]+') do
    if holder ~= ME then
      redis.call('RPUSH', P .. 'r:' .. holder, who .. '\t' .. gap)
      redis.call('PEXPIRE', P .. 'r:' .. holder, A)
    end
  end
end
local function check(ask)
  local mode = ask[1]
  if not redis.call('SET', P .. 'd:' .. ask[2], '1', 'NX', 'PX', D) then return DUPLICATE end
  local ended = 0
  local times = ''
  local hold = 0
  if mode == 'q' then
    local a = P .. 'a:' .. ask[7]
    local f = redis.call('HMGET', a, 'x', 't', 'h')
    local set = {}
    if ended_at(f[1]) then ended = 1 else set[#set + 1] = 'o'; set[#set + 1] = ME end
    -- The participant's recent record times (timekeeping.py): those before this one are returned, this
    -- one is added unless within SAME_TIME (2 s) of one held; the newest 8 are kept.
    times = f[2] or ''
    local at = tonumber(ask[4])
    local list = {}
    local same = false
    for value in string.gmatch(times, '[0-9]+') do
      local t = tonumber(value)
      if math.abs(t - at) <= 2 then same = true end
      list[#list + 1] = t
    end
    -- A first time's records are held by the replicas that received them (h) until the second time
    -- arrives: its replica tells them the spacing (a release), as one agent credits it.
    local holders = f[3]
    if holders == '' then holders = nil end
    if #list == 0 or (same and #list == 1 and holders) then
      if not holders then
        holders = ME
      elseif not string.find(' ' .. holders .. ' ', ' ' .. ME .. ' ', 1, true) then
        holders = holders .. ' ' .. ME
      end
      set[#set + 1] = 'h'; set[#set + 1] = holders
      hold = 1
    elseif not same and #list == 1 and at > list[1] then
      release(holders, ask[5], math.min(at - list[1], tonumber(GAP)))
      if holders then set[#set + 1] = 'h'; set[#set + 1] = '' end
    end
    if not same then
      list[#list + 1] = at
      table.sort(list)
      while #list > 8 do table.remove(list, 1) end
      set[#set + 1] = 't'; set[#set + 1] = table.concat(list, ',')
    end
    if #set > 0 then redis.call('HSET', a, unpack(set)) end
    redis.call('PEXPIRE', a, A)
  elseif mode == 'c' then
    local c = P .. 'c:' .. ask[7]
    if ended_at(redis.call('HGET', c, 'x')) then
      ended = 1
    else
      redis.call('HSET', c, 'o', ME)
      redis.call('PEXPIRE', c, A)
    end
  elseif mode == 's' or mode == 'f' then
    local a = P .. 'a:' .. ask[7]
    local holders = redis.call('HGET', a, 'h')
    release(holders ~= '' and holders or nil, ask[5], 'end')
    redis.call('HSET', a, 'x', now_ms, 'h', '')
    redis.call('PEXPIRE', a, A)
  elseif mode == 'e' or mode == 'Z' then
    local c = P .. 'c:' .. ask[7]
    redis.call('HSET', c, 'x', now_ms)
    redis.call('PEXPIRE', c, A)
  elseif mode == 'm' then
    redis.call('SET', P .. 'xm:' .. ask[8], now, 'PX', A)
  end
  local entry = ''
  if mode == 'i' or mode == 'f' then
    local e = P .. 'e:' .. ask[6]
    local old = {}
    local stored = redis.call('GET', e)
    if stored then
      for value in string.gmatch(stored .. '\\31', '([^\\31]*)\\31') do old[#old + 1] = value end
    end
    local merged = {}
    local i = 0
    for value in string.gmatch(ask[3] .. '\\31', '([^\\31]*)\\31') do
      i = i + 1
      if value == '' then value = old[i] or 'unknown' end
      merged[i] = value
    end
    entry = table.concat(merged, '\\31')
    redis.call('SET', e, entry, 'PX', E)
  elseif mode == 'q' or mode == 's' then
    entry = redis.call('GET', P .. 'e:' .. ask[6]) or ''
  end
  local result = {1, entry, ended, times, hold}
  if mode == 'z' or mode == 'Z' then
    for _, sample in ipairs(ask[9]) do
      result[#result + 1] = redis.call('SET', P .. 'd:' .. sample, '1', 'NX', 'PX', D) and 1 or 0
    end
  end
  return result
end
local answers = {}
for i, ask in ipairs(cmsgpack.unpack(ARGV[1])) do answers[i] = check(ask) end
return cmsgpack.pack(answers)
"""
# Per activity entry, KEYS its hash and its meeting's end marker (a pair; a call's hash twice: a call has no
# meeting); ARGV 1 this replica, 2 activity ms, 3 now (s). An entry without an owner (expired, or Redis restarted
# empty) is claimed. Returns per entry 0 (keep), 1 (owned elsewhere: forget here), 2 (ended).
_SYNC = """
local now_ms = tonumber(ARGV[3]) * 1000
local window = tonumber(ARGV[2])
local result = {}
for k = 1, #KEYS, 2 do
  local code = 0
  local f = redis.call('HMGET', KEYS[k], 'x', 'o')
  local meeting_ended = KEYS[k + 1] ~= KEYS[k] and redis.call('EXISTS', KEYS[k + 1]) == 1
  if (f[1] and now_ms - tonumber(f[1]) < window) or meeting_ended then
    code = 2
  elseif not f[2] then
    redis.call('HSET', KEYS[k], 'o', ARGV[1])
    redis.call('PEXPIRE', KEYS[k], ARGV[2])
  elseif f[2] ~= ARGV[1] then
    code = 1
  end
  result[#result + 1] = code
end
return result
"""
# KEYS meetings' claims; ARGV 1 this replica, 2 claim ms, 3.. per key 1 (this replica counts a participant
# of it: claim or keep) or 0 (release if ours). Returns per key 1 when the claim is this replica's.
_CLAIM = """
local result = {}
for k = 1, #KEYS do
  local holder = redis.call('GET', KEYS[k])
  local mine = 0
  if ARGV[k + 2] == '1' then
    if not holder then
      redis.call('SET', KEYS[k], ARGV[1], 'PX', ARGV[2])
      mine = 1
    elseif holder == ARGV[1] then
      redis.call('PEXPIRE', KEYS[k], ARGV[2])
      mine = 1
    end
  elseif holder == ARGV[1] then
    redis.call('DEL', KEYS[k])
  end
  result[k] = mine
end
return result
"""


class _Batch:
    """Events asked of Redis together, in one script call: their questions and their callers' futures."""

    __slots__ = ("asks", "futures", "timer")

    def __init__(self) -> None:
        self.asks: list[list[Any]] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.timer: asyncio.TimerHandle | None = None

    def expire(self, seconds: float) -> None:
        """The call timeout passed: its callers decide locally (a late answer is dropped)."""
        for future in self.futures:
            if not future.done():
                future.set_exception(TimeoutError(f"no answer from Redis within {seconds * 1000:g} ms"))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What Redis knows about one record: counted elsewhere, the shared enrichment, ended elsewhere."""

    duplicate: bool
    enrichment: tuple[str, ...] | None = None
    ended: bool = False
    samples: tuple[bool, ...] = ()  # phone summary: per sample, True when it was counted already
    times: tuple[int, ...] | None = None  # QoS: the participant's record times known before this one
    hold: bool = False  # QoS: a first time, held here until its successor's replica releases it


_DUPLICATE = Verdict(True)  # one for every duplicate: a Verdict is frozen


@dataclass(frozen=True, slots=True)
class SharedFamilies:
    up: GaugeFamily
    local_decisions: CounterFamily

    @classmethod
    def register(cls, store: Store) -> SharedFamilies:
        families = cls(
            store.gauge(
                "zoom_qss_state_shared_up",
                "1 while the shared state in Redis answers; 0 while records are decided locally.",
                (),
            ),
            store.counter(
                "zoom_qss_state_local_decisions_total",
                "Records decided from this replica's state alone because Redis did not answer in time.",
                ("reason",),
            ),
        )
        for reason in LOCAL_DECISION_REASONS:
            families.local_decisions.inc((reason,), 0)
        return families


def shared_key(record: Record) -> str:
    """`record`'s dedupe key as the replicas share it: the local key's process-independent digest
    (dedupe.digest; a QoS record's key holds its content itself, not Python's salted hash of it)."""
    return format(digest(record.dedupe_key), "016x")


class SharedState:
    """The shared part of one replica's pipeline state in Redis; `identity` names this replica there."""

    def __init__(
        self,
        client: Redis,
        families: SharedFamilies,
        *,
        key_prefix: str,
        identity: str,
        dedupe_window: float,
        enrichment_ttl: float,
        activity_window: float,
        call_timeout: float,
        retry_seconds: float,
        max_gap: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._m = families
        self._p = key_prefix + LAYOUT
        self.identity = identity
        self._dedupe_ms = str(max(1, round(dedupe_window * 1000)))
        self._enrichment_ms = str(max(1, round(enrichment_ttl * 1000)))
        self._enrichment_ttl = enrichment_ttl
        self._activity_ms = str(max(1, round(activity_window * 1000)))
        self._timeout = call_timeout
        # `sync` runs in the background, with bigger scripts: a slow answer there must not count as an outage.
        self._sync_timeout = max(SYNC_TIMEOUT_SECONDS, call_timeout * 4)
        self._retry = retry_seconds
        self._max_gap = max_gap
        self._clock = clock
        self._check_text = (
            _CHECK.replace("@D@", self._dedupe_ms)
            .replace("@E@", self._enrichment_ms)
            .replace("@A@", self._activity_ms)
            .replace("@ME@", identity)
            .replace("@GAP@", str(max_gap))
            .replace("@P@", self._p)
        )
        self._check_sha = client.register_script(self._check_text).sha
        self._batch: _Batch | None = None  # the events asked since the last batch left (`_ask`)
        self._scheduled = False  # the batch is to leave at the end of this loop iteration
        self._in_flight = 0  # batches sent and not answered yet
        self._sending: set[asyncio.Task[None]] = set()
        self._sync = client.register_script(_SYNC)
        self._claim = client.register_script(_CLAIM)
        self._down_until = 0.0  # time.monotonic() before which the request path does not ask Redis
        self._lost = False  # a call failed since the last successful sync
        self._loaded = False  # the scripts were loaded since Redis last failed a call (`sync`)
        self._claimed: set[tuple[str, ...]] = set()  # meetings this replica claimed at the last sync
        self._decisions = {reason: families.local_decisions.handle((reason,)) for reason in LOCAL_DECISION_REASONS}
        families.up.set((), 1)

    @property
    def lost(self) -> bool:
        """A call failed since the last successful sync (the state is being caught up)."""
        return self._lost

    @property
    def up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _local(self, reason: str) -> None:
        self._decisions[reason].add(1.0, self._clock())

    def _failed(self, error: BaseException) -> None:
        if self.up:
            log.warning("state: Redis did not answer (%s); deciding from local state until it does", error or "timeout")
        self._down_until = time.monotonic() + self._retry
        self._lost = True
        self._loaded = False
        self._m.up.set((), 0)

    async def check(
        self, record: Record, directory: ParticipantDirectory, account: str, digested: int | None = None
    ) -> Verdict | None:
        """Ask Redis about `record` in one round trip; None when it cannot answer now (decide locally).

        `digested`: its dedupe key's digest when the caller has it (Pipeline.ingest_shared: computed
        once for Redis and the local history; a QoS record's is the check's costliest part).
        """
        if not self.up:
            self._local("down")
            return None
        values = who = entry = activity = meeting = ""
        made = 0
        samples: list[str] = []
        if isinstance(record, QosRecord | SummaryRecord | ParticipantInfo | MeetingEvent):
            # Activity is keyed by the account label (the gauges' label), enrichment by the Zoom account id.
            meeting = f"{account}|{record.product}|{record.instance}"
            activity = f"{meeting}|{record.participant_id}"
            entry = f"{record.account_id}|{record.instance}|{record.participant_id}"
            who = orjson.dumps([account, record.product, record.instance, record.participant_id]).decode()
            if isinstance(record, QosRecord):
                mode = "q"
                made = record_second(record.record_time if record.record_time is not None else self._clock())
            elif isinstance(record, SummaryRecord):
                mode = "s"
            elif isinstance(record, ParticipantInfo):
                mode = "f" if record.final else "i"
                known = directory.known(record, self._clock())
                values = _SEP.join(value or "" for value in known)
            else:
                mode = {"left": "s", "ended": "m"}.get(record.kind, "o")
        elif isinstance(record, PhoneQosRecord):
            activity = f"{account}|{record.call_id}"
            if record.event == "phone.call_qos_summary":
                mode = "Z" if record.ended else "z"
                call_id, account_id = record.call_id, record.account_id
                samples = [
                    format(digest(("phone.call_qos", account_id, call_id, s.leg, s.direction, s.sample_time)), "016x")
                    for s in record.samples
                ]
            elif record.ended:
                mode = "e"
            else:
                mode = "c"
        else:
            mode = "o"
        key = shared_key(record) if digested is None else format(digested, "016x")
        try:
            reply = await self._ask([mode, key, values, made, who, entry, activity, meeting, samples])
        except TimeoutError as error:
            self._failed(error)
            self._local("timeout")
            return None
        except REDIS_ERRORS as error:
            self._failed(error)
            self._local("error")
            return None
        if not reply[0]:
            return _DUPLICATE
        # Per event on the request path: no generators, one tuple per answer part (bench/replicas.py).
        _, entry, ended, times, hold = reply[:5]
        held = (tuple(map(int, times.split(","))) if times else ()) if mode == "q" else None
        enrichment = tuple(entry.split(_SEP)) if entry else None
        if enrichment is not None and len(enrichment) != len(directory.labels):
            enrichment = None  # written by a replica with other labels enabled: not ours to use
        samples_counted = tuple(not flag for flag in reply[5:]) if len(reply) > 5 else ()
        return Verdict(False, enrichment, bool(ended), samples_counted, held, bool(hold))

    def _ask(self, ask: list[Any]) -> asyncio.Future[Any]:
        """The check script's answer to `ask`, sent with the other events asked meanwhile (auto-pipelining).

        A batch goes to Redis at the end of the loop iteration that started it while fewer than
        IN_FLIGHT_MAX batches are on their way; otherwise it grows until one returns, so that a
        saturated replica sends few big batches instead of many small ones. One timer per batch fails
        its events at the call timeout (counted from the batch's first event), whatever the connection
        does; the batch itself runs in a task of its own, so that no caller's cancellation stops it
        half-way.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch()
            batch.timer = loop.call_later(self._timeout, batch.expire, self._timeout)
        batch.asks.append(ask)
        batch.futures.append(future)
        if not self._scheduled and self._in_flight < IN_FLIGHT_MAX:
            self._scheduled = True
            loop.call_soon(self._send_batch)
        return future

    def _send_batch(self) -> None:
        self._scheduled = False
        batch, self._batch = self._batch, None
        if batch is None:
            return
        self._in_flight += 1
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._in_flight -= 1
        if not task.cancelled() and task.exception() is not None:  # a bug: its callers time out meanwhile
            log.error("state: a batch of checks failed", exc_info=task.exception())
        if self._batch is not None and not self._scheduled:  # it grew while this one was away: send it now
            self._scheduled = True
            self._send_batch()

    async def _send(self, batch: _Batch) -> None:
        answers: list[Any] = []
        try:
            for start in range(0, len(batch.asks), BATCH_MAX):
                blob = msgpack.packb(batch.asks[start : start + BATCH_MAX])
                now = int(self._clock())
                try:
                    reply = await self._client.evalsha(self._check_sha, 0, blob, now)
                except NoScriptError:  # Redis restarted (or flushed its scripts): load it again
                    await self._client.script_load(self._check_text)
                    reply = await self._client.evalsha(self._check_sha, 0, blob, now)
                answers += msgpack.unpackb(reply, unicode_errors="replace")  # label values are held to closed sets
            outcome: BaseException | None = None
        except _SEND_ERRORS as error:
            outcome = error
        if batch.timer is not None:
            batch.timer.cancel()
        for index, future in enumerate(batch.futures):
            if future.done():
                continue  # its caller gave up (timeout, cancelled)
            if index < len(answers):
                future.set_result(answers[index])
            else:
                future.set_exception(outcome or ConnectionError("Redis answered too few events"))

    async def sync(
        self,
        participants: ActivityTracker,
        calls: ActivityTracker,
        timekeeper: Timekeeper | None = None,
        directory: ParticipantDirectory | None = None,
    ) -> bool:
        """Reconcile local activity with the other replicas' (module docstring); False when Redis did not answer.

        Also the probe that brings the request path back to Redis after an outage.
        """
        p = self._p
        try:
            if not self._loaded:
                await self._load_scripts()
            if self._lost and directory is not None:
                await self._restore_directory(directory)
            if timekeeper is not None:
                await self._releases(timekeeper)
            entries = participants.counted()
            for start in range(0, len(entries), SYNC_CHUNK):
                chunk = entries[start : start + SYNC_CHUNK]
                keys: list[str] = []
                for account, product, instance, participant in chunk:
                    meeting = f"{account}|{product}|{instance}"
                    keys += [f"{p}a:{meeting}|{participant}", f"{p}xm:{meeting}"]
                codes = await redis_call(
                    self._sync(keys=keys, args=[self.identity, self._activity_ms, int(self._clock())]),
                    self._sync_timeout,
                )
                self._apply(participants, chunk, codes, timekeeper)
            entries = calls.counted()
            for start in range(0, len(entries), SYNC_CHUNK):
                chunk = entries[start : start + SYNC_CHUNK]
                keys = []
                for account, call_id in chunk:
                    call = f"{account}|{call_id}"
                    keys += [f"{p}c:{call}", f"{p}c:{call}"]
                codes = await redis_call(
                    self._sync(keys=keys, args=[self.identity, self._activity_ms, int(self._clock())]),
                    self._sync_timeout,
                )
                self._apply(calls, chunk, codes)
            await self._claim_meetings(participants)
        except REDIS_ERRORS as error:
            self._failed(error)
            return False
        if self._lost:
            log.info("state: Redis answers again; sharing resumes")
        self._lost = False
        self._down_until = 0.0
        self._m.up.set((), 1)
        return True

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD the scripts (at start, and when Redis answers again after failing), so that a fresh
        or restarted Redis does not answer the first batch NOSCRIPT and cost it a second round trip.
        A flush meanwhile is still met by `_send` (and redis-py's Script for the others)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for script in (self._check_text, self._sync.script, self._claim.script):
                pipe.script_load(script)
            await redis_call(pipe.execute(), self._sync_timeout)
        self._loaded = True

    async def _restore_directory(self, directory: ParticipantDirectory) -> None:
        """After an outage: give Redis the enrichment this replica holds (data events it received meanwhile;
        all of it if Redis restarted empty). An entry Redis has already is kept (SET NX)."""
        now = self._clock()
        entries = directory.entries()
        for start in range(0, len(entries), SYNC_CHUNK):
            async with self._client.pipeline(transaction=False) as pipe:
                for (account_id, instance, participant_id), updated, values in entries[start : start + SYNC_CHUNK]:
                    left = max(1, round((self._enrichment_ttl - (now - updated)) * 1000))
                    key = f"{self._p}e:{account_id}|{instance}|{participant_id}"
                    pipe.set(key, _SEP.join(values), nx=True, px=left)
                await redis_call(pipe.execute(), self._sync_timeout)

    async def _releases(self, timekeeper: Timekeeper) -> None:
        """Credit the first times held here whose successor (or leave) reached another replica."""
        key = f"{self._p}r:{self.identity}"
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            items, _ = await redis_call(pipe.execute(), self._sync_timeout)
        for item in items:
            text = item.decode() if isinstance(item, bytes) else str(item)
            who, _, gap = text.rpartition("\t")
            participant = tuple(orjson.loads(who))
            if gap == "end":
                timekeeper.end(participant)
            else:
                timekeeper.release(participant, float(gap), self._clock())

    def _apply(
        self,
        tracker: ActivityTracker,
        chunk: Sequence[tuple[str, ...]],
        codes: Sequence[int],
        timekeeper: Timekeeper | None = None,
    ) -> None:
        now = self._clock()
        for key, code in zip(chunk, codes, strict=True):
            if code == 1:
                tracker.forget(key)
            elif code == 2:
                tracker.end(key, now)
                if timekeeper is not None:
                    timekeeper.end(key)

    async def _claim_meetings(self, participants: ActivityTracker) -> None:
        """Claim the meetings this replica counts a participant of; release the others it claimed."""
        counted = {key[:3] for key in participants.counted()}
        meetings = sorted(counted | self._claimed)
        claimed: set[tuple[str, ...]] = set()
        for start in range(0, len(meetings), SYNC_CHUNK):
            chunk = meetings[start : start + SYNC_CHUNK]
            keys = [f"{self._p}m:{account}|{product}|{instance}" for account, product, instance in chunk]
            wanted = ["1" if meeting in counted else "0" for meeting in chunk]
            claim_ms = str(max(1, round(self._retry * 3000)))  # a dead replica's claims go within 3 syncs
            mine = await redis_call(self._claim(keys=keys, args=[self.identity, claim_ms, *wanted]), self._sync_timeout)
            claimed |= {meeting for meeting, flag in zip(chunk, mine, strict=True) if flag}
        self._claimed = claimed
        participants.uncounted = counted - claimed


async def run_sync(
    shared: SharedState,
    participants: ActivityTracker,
    calls: ActivityTracker,
    timekeeper: Timekeeper,
    directory: ParticipantDirectory,
    every: float,
) -> None:
    """Reconcile every `every` seconds, and sooner while Redis is down (to notice its return)."""
    while True:
        await shared.sync(participants, calls, timekeeper, directory)
        await asyncio.sleep(min(every, 0.5) if shared.lost else every)
