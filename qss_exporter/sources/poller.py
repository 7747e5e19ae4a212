"""The REST QoS-summary poller: recovers participant summaries that webhooks missed, within Zoom's limits.

What it polls: the meeting, webinar and Video SDK session instances the pipeline saw (webhooks or
WebSocket), once they have ended: a summary was seen and nothing arrived for `settle_seconds`, or
nothing arrived for `idle_seconds`; and, with `lookback_hours`, the instances of Zoom's past-meeting
and past-webinar lists that the agent never saw (after downtime). Each instance's summaries enter
the pipeline as source `poll`; a participant session already counted (from a webhook, before or
after a restart) is not counted again.

Video SDK sessions are matched differently: Zoom's REST listing and its webhooks share no user id, so
the poller counts what dedupe.SessionSummaries chooses (matching on `user_key` or name), and keeps each
webhook summary's match beside its id in the state file.

Progress lives in state.py's SQLite file, so a restart resumes the backlog without repeats or gaps.
The poller runs beside the webhook listener in the agent's task group and never blocks it: it only
reads from the pipeline's listener (memory) and writes to SQLite from its own thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import httpx

from qss_exporter.catalogue import POLL_OUTCOMES, TOKEN_OUTCOMES, ApiFamilies
from qss_exporter.config import Config, PollerConfig
from qss_exporter.errors import BudgetExhausted, ZoomApiError, ZoomAuthError
from qss_exporter.pipeline import Pipeline
from qss_exporter.state import InstanceKey, PendingInstance, Sighting, State, SummaryKey
from qss_exporter.zoom.api import ListedProduct, ZoomApi
from qss_exporter.zoom.oauth import TokenProvider
from qss_exporter.zoom.ratelimit import AccountLimits, Backoff, DailyBudget, SlidingWindow, utc_day
from qss_exporter.zoom.records import PhoneQosRecord, Product, QosRecord, Record, SummaryRecord
from qss_exporter.zoom.summaries import REST_SESSION_PREFIX

__all__ = ["PollAccount", "Poller", "build_poller"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

FLUSH_DELAY = 1.0  # sightings are written in batches at most this long after they arrive
MAX_NAP = 300.0  # an idle worker looks again at least this often (a new UTC day, gauges)
GAUGE_INTERVAL = 15.0  # while busy or paused, the backlog gauges are refreshed this often (at most)
GIVE_UP_AFTER = 48 * 3600.0  # an instance still failing (or "not ended") this long after its first poll
NOT_ENDED_MAX_DELAY = 6 * 3600.0
NOT_SUBSCRIBED_PAUSE = 3600.0  # 400/200: ask again hourly, in case the subscription was added
SWEEP_OVERLAP = 3600.0  # each sweep re-lists the last hour of the previous one: Zoom lists past instances late
PRUNE_INTERVAL = 3600.0
FINISHED_RETENTION = 7 * 86400.0  # at least; longer with a longer look-back window
_PRODUCTS: tuple[Product, ...] = ("meeting", "webinar", "session")
_LISTED: tuple[ListedProduct, ...] = ("meeting", "webinar")  # Video SDK sessions are not listed (own credentials)
# A Video SDK webhook summary is stored as "<per-session user id>\x1f<match>" (REST users as "rest:<digest>"):
# the match is what the poll compares REST users with, also after a restart.
_MATCH_SEPARATOR = "\x1f"


@dataclass(frozen=True, slots=True)
class PollAccount:
    """A configured account whose instances are polled with its OAuth credentials."""

    name: str  # the `account` label
    account_id: str
    sub_accounts: tuple[str, ...]  # master account: polled through /accounts/{id}/...
    tokens: TokenProvider
    token_url: str

    @property
    def account_ids(self) -> tuple[str, ...]:
        return (self.account_id, *self.sub_accounts)

    def sub_account(self, account_id: str) -> str | None:
        return None if account_id == self.account_id else account_id


@dataclass(slots=True)
class _Run:
    """One account's running state: its API client, pauses and what was already said in the log."""

    account: PollAccount
    api: ZoomApi
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    resume_at: float = 0.0  # no call before this (daily budget spent, credentials refused, token endpoint down)
    account_failures: int = 0
    account_error_logged: bool = False
    budget_logged_until: float = 0.0
    not_subscribed: dict[str, float] = field(default_factory=dict)  # product -> paused until


class Poller:
    """Polls every PollAccount; `observe` is the pipeline's record listener, `run` the background task."""

    def __init__(
        self,
        settings: PollerConfig,
        pipeline: Pipeline,
        families: ApiFamilies,
        accounts: Sequence[PollAccount],
        client: httpx.AsyncClient,
        *,
        api_base_url: str,
        dedupe_window: float,
        clock: Callable[[], float],
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._m = families
        self._accounts = tuple(accounts)
        self._client = client
        self._api_base_url = api_base_url
        self._dedupe_window = dedupe_window
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._owners = {account_id: account for account in accounts for account_id in account.account_ids}
        self._sightings: dict[tuple[str, str, str], tuple[float, bool, bool]] = {}  # last seen, summary seen, ended
        self._counted: list[SummaryKey] = []
        self._dirty = asyncio.Event()
        self._state: State | None = None
        self._runs: dict[str, _Run] = {}
        self._flush_lock = asyncio.Lock()
        self._gauges_refreshed = 0.0
        # Off while another replica polls (leadership.py): instances seen here would never be polled.
        self.observing = True
        for account in accounts:
            for outcome in TOKEN_OUTCOMES:
                families.token_requests.inc((account.name, outcome), 0)
            families.budget_limit.set((account.name,), settings.daily_budget)
            families.budget_used.set((account.name,), 0)
            families.backlog.set((account.name,), 0)
            families.oldest_pending_age.set((account.name,), 0)
            for product in _PRODUCTS:
                for poll_outcome in POLL_OUTCOMES:
                    families.polls.inc((account.name, product, poll_outcome), 0)
        pipeline.add_record_listener(self.observe)

    @property
    def state(self) -> State:
        if self._state is None:
            raise RuntimeError("the poller's state is opened by run()")
        return self._state

    # ------------------------------------------------------------------------ discovery (hot path)

    def observe(self, record: Record, source: str) -> None:
        """Pipeline listener: remember which instances had records, in memory; `_flush` writes them."""
        if (
            not self.observing
            or source == "poll"
            or isinstance(record, PhoneQosRecord)
            or record.account_id not in self._owners
        ):
            return
        key = (record.account_id, record.product, record.instance)  # a plain tuple: built per record
        if record.__class__ is QosRecord:  # ~95 % of all records: the cheap path
            counted = ended = False
        else:
            counted = isinstance(record, SummaryRecord)
            # `meeting.ended`-style events say the instance is over: poll it at once.
            ended = getattr(record, "kind", None) == "ended"
        summary = counted
        seen = self._sightings.get(key)
        if seen is not None:
            summary, ended = summary or seen[1], ended or seen[2]
        self._sightings[key] = (self._clock(), summary, ended)
        # Only this record's own summary is counted (the instance's flag is not: a participant whose record
        # came after someone else's summary must still be counted from the poll).
        if counted and isinstance(record, SummaryRecord):
            participant = record.participant_id
            if record.product == "session":
                participant = f"{participant}{_MATCH_SEPARATOR}{record.match}"
            self._counted.append(SummaryKey(record.account_id, record.product, record.instance, participant))
        if seen is None or counted or ended:
            self._dirty.set()

    def sighted(
        self,
        account_id: str,
        product: Product,
        instance: str,
        at: float,
        summary_of: str | None,
        match: str,
        ended: bool,
    ) -> None:
        """A sighting another replica's webhooks made (shared_sightings.py), taken as `observe` takes a record.

        `summary_of`: the participant whose summary that replica counted, if the record was a summary.
        """
        if account_id not in self._owners:
            return
        key = (account_id, product, instance)
        counted = summary_of is not None
        summary = counted
        seen = self._sightings.get(key)
        if seen is not None:
            summary, ended, at = summary or seen[1], ended or seen[2], max(at, seen[0])
        self._sightings[key] = (at, summary, ended)
        if summary_of is not None:
            participant = summary_of if product != "session" else f"{summary_of}{_MATCH_SEPARATOR}{match}"
            self._counted.append(SummaryKey(account_id, product, instance, participant))
        if seen is None or counted or ended:
            self._dirty.set()

    def wake(self) -> None:
        """Look for due instances now (after a clock jump in tests, or new sightings)."""
        for run in self._runs.values():
            run.wake.set()

    # ------------------------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        settings = self._settings
        self._state = await asyncio.to_thread(State.open, settings.state_dir)
        state = self._state
        # Summaries counted before a restart stay counted: a late Zoom retry of one is a duplicate.
        self._restore(await state.counted_since(self._clock() - self._dedupe_window))
        for account in self._accounts:
            run = _Run(account, self._api(account, state))
            self._runs[account.name] = run
            await run.api.limits.budget.load()
        await self._refresh_gauges()
        log.info(
            "poller: polling %s; state in %s",
            ", ".join(account.name for account in self._accounts),
            state.path or "memory (not kept across restarts)",
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(self._supervise("flush", self._flush_loop))
            for run in self._runs.values():
                group.create_task(self._supervise(f"{run.account.name} worker", functools.partial(self._work, run)))
                if settings.lookback_hours:
                    group.create_task(self._supervise(f"{run.account.name} sweep", functools.partial(self._sweep, run)))

    def _restore(self, counted: Sequence[SummaryKey]) -> None:
        """Tell the pipeline which summaries were counted before a restart (Video SDK: with their matches)."""
        sessions: dict[tuple[str, str], tuple[dict[str, str], int]] = {}
        for key in counted:
            if key.product != "session":
                self._pipeline.remember(("qos_summary", *key))
                continue
            webhooks, polled = sessions.get((key.account_id, key.instance), ({}, -1))
            if key.participant_id.startswith(REST_SESSION_PREFIX):
                polled = max(polled, 0) + 1
            else:
                user, _, match = key.participant_id.partition(_MATCH_SEPARATOR)
                webhooks[user] = match
                self._pipeline.remember(("qos_summary", key.account_id, key.product, key.instance, user))
            sessions[key.account_id, key.instance] = (webhooks, polled)
        now = self._clock()
        for (account_id, instance), (webhooks, polled) in sessions.items():
            self._pipeline.session_summaries.restore(account_id, instance, webhooks, polled, now)

    async def close(self, *, flush: bool = True) -> None:
        """Write what is still in memory and close the state file and the HTTP client (after `run` was cancelled).

        `flush=False` drops the unwritten sightings, as a crash would (tests).
        """
        await self.close_state(flush=flush)
        await self._client.aclose()

    async def close_state(self, *, flush: bool = True) -> None:
        """Write what is still in memory and close the state file; `run` may start again (leadership.py)."""
        if self._state is not None:
            if flush:
                await self._flush()
            await self._state.close()
            self._state = None

    def _api(self, account: PollAccount, state: State) -> ZoomApi:
        settings, name = self._settings, account.name
        clock, sleep = self._clock, self._sleep
        budget = DailyBudget(
            account.account_id,
            settings.daily_budget,
            state,
            clock=clock,
            on_change=lambda used: self._m.budget_used.set((name,), used),
        )
        limits = AccountLimits(
            {
                "heavy": SlidingWindow(settings.heavy_per_second, 1.0, clock=clock, sleep=sleep),
                "resource_intensive": SlidingWindow(
                    settings.resource_intensive_per_minute, 60.0, clock=clock, sleep=sleep
                ),
            },
            budget,
            settings.max_concurrency,
        )
        return ZoomApi(
            self._client,
            self._api_base_url,
            account.tokens,
            limits,
            clock=clock,
            sleep=sleep,
            backoff=Backoff(1.0, 60.0, self._rng),
            timeout=settings.request_timeout_seconds,
            on_response=lambda endpoint, code: self._m.requests.inc((name, endpoint, code)),
            on_rate_limited=lambda kind: self._m.rate_limited.inc((name, kind)),
        )

    async def _supervise(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop` forever; a bug is logged with its traceback and the loop restarts a minute later."""
        while True:
            try:
                await loop()
            except Exception:  # the task boundary: one bug must not stop polling for good
                log.exception("poller: %s failed; restarting it in 60 s", what)
                await self._sleep(60.0)

    async def _nap(self, event: asyncio.Event, seconds: float) -> None:
        """Sleep `seconds` (injected sleep), or less if `event` is set meanwhile."""
        if not event.is_set():
            sleeper = asyncio.ensure_future(self._sleep(max(0.0, seconds)))
            waker = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
        event.clear()

    # --------------------------------------------------------------------------------- flushing

    async def _flush_loop(self) -> None:
        last_prune = self._clock()
        while True:
            await self._nap(self._dirty, PRUNE_INTERVAL)
            await self._sleep(FLUSH_DELAY)  # gather a second's worth of sightings into one transaction
            await self._flush()
            self.wake()
            now = self._clock()
            if now - last_prune >= PRUNE_INTERVAL:
                last_prune = now
                retention = max(FINISHED_RETENTION, self._settings.lookback_hours * 3600.0 + 2 * 86400.0)
                await self.state.prune(now - retention, now - self._dedupe_window, utc_day(now - 7 * 86400.0))

    async def _flush(self) -> None:
        async with self._flush_lock:
            sightings, self._sightings = self._sightings, {}
            counted, self._counted = self._counted, []
            try:
                if sightings:
                    await self.state.record_sightings(
                        [Sighting(InstanceKey(*key), *seen) for key, seen in sightings.items()]
                    )
                if counted:
                    await self.state.record_counted(counted, self._clock())
            except BaseException:  # a full disk, a locked file, a cancellation: keep them for the next flush
                for key, (at, summary, ended) in sightings.items():
                    newer = self._sightings.get(key)
                    if newer is not None:
                        at, summary, ended = newer[0], summary or newer[1], ended or newer[2]
                    self._sightings[key] = (at, summary, ended)
                self._counted[:0] = counted
                raise

    # ----------------------------------------------------------------------------------- polling

    async def _work(self, run: _Run) -> None:
        settings, account = self._settings, run.account
        while True:
            now = self._clock()
            if run.resume_at > now:
                # Paused (daily budget spent, credentials refused): the backlog gauges keep moving, so
                # that the alert on the oldest pending age fires during the pause, not after it.
                if now - self._gauges_refreshed >= GAUGE_INTERVAL:
                    await self._refresh_gauges()
                # Until the next refresh is due, not a whole interval: a wake-up in between (a flush) must
                # not stretch the gap between two refreshes to almost two intervals.
                await self._nap(run.wake, min(run.resume_at, self._gauges_refreshed + GAUGE_INTERVAL) - now)
                continue
            await self._flush()  # webhook summaries counted so far must be known before polling
            batch = await self.state.due(
                account.account_ids, now, settings.settle_seconds, settings.idle_seconds, settings.max_concurrency
            )
            if not batch:
                await self._refresh_gauges()
                due = await self.state.next_due(account.account_ids, settings.settle_seconds, settings.idle_seconds)
                await self._nap(run.wake, MAX_NAP if due is None else min(MAX_NAP, due - now))
                continue
            async with asyncio.TaskGroup() as group:
                for pending in batch:
                    group.create_task(self._poll(run, pending))
            if self._clock() - self._gauges_refreshed >= GAUGE_INTERVAL:  # a backlog scan; not after every batch
                await self._refresh_gauges()

    async def _poll(self, run: _Run, pending: PendingInstance) -> None:
        account, state = run.account, self.state
        key = pending.key
        product = cast(Product, key.product)
        now = self._clock()
        first_attempt = pending.first_attempt or now
        paused = run.not_subscribed.get(product, 0.0)
        if paused > now:  # the app lacks this product's summary subscription: no call until asked again
            await state.reschedule(key, paused, pending.attempts, first_attempt)
            return
        if run.resume_at > now:
            return
        try:
            listing = await run.api.qos_summaries(
                product, key.account_id, key.instance, account.sub_account(key.account_id)
            )
        except BudgetExhausted as error:
            self._budget_spent(run, error)
            return
        except ZoomAuthError as error:
            self._account_failed(run, error, refused=True)
            return
        except ZoomApiError as error:
            if error.url == account.token_url:
                self._account_failed(run, error, refused=False)
            else:
                await self._failed(run, pending, product, error, first_attempt)
            return
        self._account_ok(run)
        counted = await state.counted_for(key)
        if product == "session":  # no id in common with the webhooks: matched on user_key or name
            webhooks = {}
            for row in counted:
                if not row.startswith(REST_SESSION_PREFIX):
                    user, _, match = row.partition(_MATCH_SEPARATOR)
                    webhooks[user] = match
            chosen = self._pipeline.session_summaries.choose(
                key.account_id, key.instance, listing.records, webhooks, self._clock()
            )
        else:
            chosen = [record for record in listing.records if record.participant_id not in counted]
        # Written before it is counted: a crash in between loses this instance's counts, never doubles them.
        await state.finish(
            key,
            "polled",
            self._clock(),
            [SummaryKey(*key, record.participant_id) for record in listing.records],
        )
        for index, record in enumerate(chosen):
            await self._pipeline.ingest_shared(record, "poll")
            if index % 100 == 99:
                await asyncio.sleep(0)  # a large webinar must not hold the event loop
        for invalid in listing.invalid:
            self._pipeline.count_parse_error(invalid.field)
        self._m.polls.inc((account.name, product, "polled"))
        log.debug("poller: %s %s polled: %d participant summaries", account.name, product, len(listing.records))

    async def _failed(
        self, run: _Run, pending: PendingInstance, product: Product, error: ZoomApiError, first_attempt: float
    ) -> None:
        account, state, settings = run.account, self.state, self._settings
        key, attempts, now = pending.key, pending.attempts + 1, self._clock()
        if error.status == 400 and error.code == 12702:  # older than a year: Zoom keeps no summaries
            await state.finish(key, "too_old", now)
            self._m.polls.inc((account.name, product, "too_old"))
            return
        if error.status == 400 and error.code == 200:
            if run.not_subscribed.get(product) is None:
                log.error(
                    "poller: account %s: Zoom refuses %s QoS summaries because the app is not subscribed to the "
                    "%s event (Zoom code 200: %s). Fix: in the Zoom Marketplace app, Features > Event "
                    "Subscription, add that event (Quality of Service Subscription); the poller asks again hourly.",
                    account.name,
                    product,
                    _SUMMARY_EVENT_NAMES[product],
                    error,
                )
            run.not_subscribed[product] = now + NOT_SUBSCRIBED_PAUSE
            await state.reschedule(key, now + NOT_SUBSCRIBED_PAUSE, pending.attempts, first_attempt)
            self._m.polls.inc((account.name, product, "not_subscribed"))
            return
        if now - first_attempt >= GIVE_UP_AFTER:
            log.warning(
                "poller: %s %s: giving up after %d attempts over 48 h: %s", account.name, product, attempts, error
            )
            await state.finish(key, "gave_up", now)
            self._m.polls.inc((account.name, product, "gave_up"))
            return
        if error.status == 404 and error.code == 3001:  # not ended yet (or unknown): ask again later
            delay = min(NOT_ENDED_MAX_DELAY, settings.not_ended_retry_seconds * 2.0 ** min(attempts - 1, 16))
            await state.reschedule(key, now + delay, attempts, first_attempt)
            self._m.polls.inc((account.name, product, "not_ended"))
            return
        delay = Backoff(60.0, 3600.0, self._rng).delay(attempts)
        log.warning(
            "poller: %s %s failed (attempt %d), retrying in %.0f s: %s", account.name, product, attempts, delay, error
        )
        await state.reschedule(key, now + delay, attempts, first_attempt)
        self._m.polls.inc((account.name, product, "failed"))

    def _budget_spent(self, run: _Run, error: BudgetExhausted) -> None:
        run.resume_at = max(run.resume_at, error.resume_at)
        if run.budget_logged_until < error.resume_at:
            run.budget_logged_until = error.resume_at
            log.warning(
                "poller: account %s: the daily API budget is spent (poller.daily_budget %d, or Zoom's daily limit); "
                "polling resumes in %.0f s",
                run.account.name,
                self._settings.daily_budget,
                error.resume_at - self._clock(),
            )

    def _account_failed(self, run: _Run, error: ZoomApiError, *, refused: bool) -> None:
        """Credentials refused or token endpoint unreachable: pause the account, growing to hourly; log once."""
        run.account_failures += 1
        delay = min(3600.0, 60.0 * 2.0 ** min(run.account_failures - 1, 10))
        run.resume_at = max(run.resume_at, self._clock() + delay)
        if run.account_error_logged:
            return
        run.account_error_logged = True
        if refused:
            log.error(
                "poller: account %s: Zoom refused the OAuth client credentials (%s). Check accounts[].client_id, "
                "client_secret and account_id, and that the Server-to-Server OAuth app is activated. The poller "
                "tries again with growing pauses (up to hourly); webhooks are not affected.",
                run.account.name,
                error,
            )
        else:
            log.warning(
                "poller: account %s: no OAuth token (%s); trying again with growing pauses", run.account.name, error
            )

    def _account_ok(self, run: _Run) -> None:
        if run.account_error_logged:
            log.info("poller: account %s: Zoom accepts the OAuth credentials again", run.account.name)
        run.account_failures, run.account_error_logged = 0, False

    # ----------------------------------------------------------------------------- look-back sweep

    async def _sweep(self, run: _Run) -> None:
        settings, account = self._settings, run.account
        while True:
            now = self._clock()
            if run.resume_at > now:
                await self._sleep(run.resume_at - now)
                continue
            for account_id in account.account_ids:
                for product in _LISTED:
                    if not await self._sweep_one(run, account_id, product):
                        break
            await self._sleep(settings.sweep_interval_seconds)

    async def _sweep_one(self, run: _Run, account_id: str, product: ListedProduct) -> bool:
        """List one product's past instances since the last sweep; False when the account must pause."""
        account, state = run.account, self.state
        now = self._clock()
        start = now - self._settings.lookback_hours * 3600.0
        position = await state.sweep_position(account_id, product)
        if position is not None:
            start = max(start, position - SWEEP_OVERLAP)
        try:
            uuids = await run.api.past_instances(product, start, now, account.sub_account(account_id))
        except BudgetExhausted as error:
            self._budget_spent(run, error)
            return False
        except ZoomAuthError as error:
            self._account_failed(run, error, refused=True)
            return False
        except ZoomApiError as error:
            if error.url == account.token_url:
                self._account_failed(run, error, refused=False)
                return False
            log.warning("poller: %s: look-back sweep of past %ss failed: %s", account.name, product, error)
            return True
        self._account_ok(run)
        new = await state.record_ended((InstanceKey(account_id, product, uuid) for uuid in uuids), now)
        await state.set_sweep_position(account_id, product, now)
        if new:
            log.info("poller: %s: look-back sweep found %d %s(s) not seen before", account.name, new, product)
            run.wake.set()
        return True

    # -------------------------------------------------------------------------------- self-metrics

    async def _refresh_gauges(self) -> None:
        settings, now = self._settings, self._clock()
        self._gauges_refreshed = now
        backlog = await self.state.backlog(now, settings.settle_seconds, settings.idle_seconds)
        for run in self._runs.values():
            name = run.account.name
            rows = [backlog[account_id] for account_id in run.account.account_ids if account_id in backlog]
            oldest = [row.oldest_due for row in rows if row.oldest_due is not None]
            self._m.backlog.set((name,), sum(row.pending for row in rows))
            self._m.oldest_pending_age.set((name,), max(0.0, now - min(oldest)) if oldest else 0.0)
            self._m.budget_used.set((name,), run.api.limits.budget.used())


_SUMMARY_EVENT_NAMES = {
    "meeting": "Meeting Participant QoS Summary (meeting.participant_qos_summary)",
    "webinar": "Webinar Participant QoS Summary (webinar.participant_qos_summary)",
    "session": "Video SDK Session User QoS Summary (session.user_qos_summary)",
}


def build_poller(
    config: Config,
    pipeline: Pipeline,
    families: ApiFamilies,
    *,
    clock: Callable[[], float],
    sleep: Sleep = asyncio.sleep,
    transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None,
) -> Poller | None:
    """The poller for `config`, or None when `poller.enabled` is false (accounts without credentials are skipped)."""
    settings = config.poller
    if not settings.enabled:
        return None
    client = httpx.AsyncClient(timeout=settings.request_timeout_seconds, transport=transport)
    accounts: list[PollAccount] = []
    for account in config.accounts:
        if account.client_id is None or account.client_secret is None:
            log.info("poller: account %s has no client_id/client_secret and is not polled", account.name)
            continue
        name = account.name
        tokens = TokenProvider(
            client,
            config.zoom.oauth_token_url,
            account.account_id,
            account.client_id,
            account.client_secret.reveal(),
            clock=clock,
            on_result=lambda outcome, name=name: families.token_requests.inc((name, outcome)),  # type: ignore[misc]
        )
        accounts.append(
            PollAccount(name, account.account_id, account.sub_accounts, tokens, config.zoom.oauth_token_url)
        )
    return Poller(
        settings,
        pipeline,
        families,
        accounts,
        client,
        api_base_url=config.zoom.api_base_url,
        dedupe_window=config.pipeline.dedupe_window_seconds,
        clock=clock,
        sleep=sleep,
        rng=rng,
    )
