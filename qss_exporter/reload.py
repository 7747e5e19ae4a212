"""Configuration reload (SIGHUP, `POST /-/reload`): which keys apply live, the comparison, its self-metrics.

A reload re-reads the file with the validation `check-config` and start-up share, then compares it with
the running configuration. A file that changes only live keys (LIVE_KEYS) is applied whole, in one
synchronous step on the event loop, so a request sees the old configuration or the new, never a mix.
A file that is invalid, or that changes a key only a restart applies, changes nothing: the running
configuration stays, the log says why (key paths, never values), and
`zoom_qss_config_last_reload_successful` is 0 until a reload or restart succeeds. So the configuration
that runs is always one file's content, and the gauge tells whether it is the file on disk (as with
Prometheus's `prometheus_config_last_reload_successful`). Knows the configuration, not the parts it
applies to (app.py hands over `apply`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from qss_exporter.config import AccountConfig, Config
from qss_exporter.errors import ConfigError
from qss_exporter.store import CounterFamily, GaugeFamily, Store

__all__ = [
    "LIVE_ACCOUNT_KEYS",
    "LIVE_KEYS",
    "RELOAD_OUTCOMES",
    "ReloadFamilies",
    "ReloadResult",
    "Reloader",
    "applies_live",
    "live_changes",
    "restart_changes",
]

log = logging.getLogger(__name__)

RELOAD_OUTCOMES: Final = ("success", "invalid", "restart_required")

# Keys a reload applies to the running agent; every other key needs a restart (docs/config.md has the
# table, and a test keeps it equal to these). The state they feed (dedupe, enrichment, activity,
# detail mode, series) is kept across a reload.
LIVE_KEYS: Final = (
    "webhook.timestamp_tolerance_seconds",
    "webhook.shed_after_seconds",
    "sites",
    "labels.extra_data_centers",
    "limits.max_series",
    "log.level",
)
# Keys of an account that apply live; for an account that has `client_id` or `websocket`, only the
# webhook secret does: its poller and WebSocket run with its name, id and sub-accounts until a restart.
LIVE_ACCOUNT_KEYS: Final = (
    "name",
    "account_id",
    "webhook_secret_token",
    "webhook_secret_token_file",
    "sub_accounts",
    "undeclared_sub_accounts",
)
_PULLED_ACCOUNT_KEYS: Final = (
    "account_id",
    "client_id",
    "client_secret",
    "client_secret_file",
    "websocket",
    "sub_accounts",
)


@dataclass(frozen=True, slots=True)
class ReloadFamilies:
    """`zoom_qss_config_*`: whether the last reload applied, when one last did, and reloads by outcome."""

    successful: GaugeFamily
    success_time: GaugeFamily
    reloads: CounterFamily

    @classmethod
    def register(cls, store: Store, started: float) -> ReloadFamilies:
        families = cls(
            store.gauge(
                "zoom_qss_config_last_reload_successful",
                "1 if the last configuration reload applied (or none was tried since the start), else 0.",
                (),
            ),
            store.gauge(
                "zoom_qss_config_last_reload_success_timestamp_seconds",
                "Unix time the running configuration was loaded: the start, or the last reload that applied.",
                (),
            ),
            store.counter(
                "zoom_qss_config_reloads_total",
                "Configuration reloads by outcome: success, invalid (the running configuration stays), "
                "restart_required (a key that only a restart applies changed; nothing applied).",
                ("outcome",),
            ),
        )
        families.successful.set((), 1.0)
        families.success_time.set((), started)
        for outcome in RELOAD_OUTCOMES:
            families.reloads.inc((outcome,), 0)
        return families

    def record(self, outcome: str, now: float) -> None:
        self.reloads.inc((outcome,))
        self.successful.set((), 1.0 if outcome == "success" else 0.0)
        if outcome == "success":
            self.success_time.set((), now)


def applies_live(key: str) -> bool:
    """Whether a reload applies a change of `key` (`webhook.path`, `accounts[].name`, `sites[].cidrs`)."""
    if key.startswith("accounts[]."):
        return key.removeprefix("accounts[].") in LIVE_ACCOUNT_KEYS
    return key in LIVE_KEYS or key.startswith("sites[].")


def _diff(old: Any, new: Any, path: str) -> list[str]:
    """Key paths under `path` whose values differ (an added or removed list item is `path[i]`)."""
    if old == new:
        return []
    if isinstance(old, BaseModel) and type(old) is type(new):
        return [
            change
            for key in type(old).model_fields
            for change in _diff(getattr(old, key), getattr(new, key), _join(path, key))
        ]
    if isinstance(old, tuple) and isinstance(new, tuple) and any(isinstance(item, BaseModel) for item in (*old, *new)):
        return [
            change
            for index in range(max(len(old), len(new)))
            for change in (
                _diff(old[index], new[index], f"{path}[{index}]")
                if index < min(len(old), len(new))
                else [f"{path}[{index}]"]
            )
        ]
    return [path]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _pulled(account: AccountConfig) -> bool:
    """An account the poller or a WebSocket pulls for: its identity is fixed until a restart."""
    return account.client_id is not None or account.websocket is not None


def _account_restarts(old: Sequence[AccountConfig], new: Sequence[AccountConfig]) -> list[str]:
    """Changes to accounts that the poller or a WebSocket pulls for (matched by name)."""
    before = {account.name: account for account in old if _pulled(account)}
    after = {account.name: (index, account) for index, account in enumerate(new) if _pulled(account)}
    found: list[str] = []
    for name, (index, account) in after.items():
        if name not in before:
            found.append(f"accounts[{index}] ({name}): an account with client_id or websocket added or renamed")
            continue
        found += [
            f"accounts[{index}].{key}"
            for key in _PULLED_ACCOUNT_KEYS
            if getattr(before[name], key) != getattr(account, key)
        ]
    found += [
        f"accounts ({name}): an account with client_id or websocket removed or renamed"
        for name in before
        if name not in after
    ]
    return found


def restart_changes(old: Config, new: Config) -> list[str]:
    """The changed keys of `new` that only a restart applies (empty: a reload can apply it)."""
    found: list[str] = []
    for section in type(old).model_fields:
        if section == "accounts":
            found += _account_restarts(old.accounts, new.accounts)
        elif section == "sites":
            # The `site` label exists only while some site is mapped: going from none to some changes the families.
            if bool(old.sites) != bool(new.sites) and old.labels.site and new.labels.site:
                found.append("sites: from none to some or back (adds or removes the `site` label)")
        else:
            found += [
                change
                for change in _diff(getattr(old, section), getattr(new, section), section)
                if not applies_live(change)
            ]
    return found


def live_changes(old: Config, new: Config) -> list[str]:
    """The changed keys of `new` that a reload applies (for the log: paths, never values)."""
    changed = _diff(old, new, "")
    return [change for change in changed if change.startswith(("accounts", "sites")) or applies_live(change)]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did: `outcome` (one of RELOAD_OUTCOMES) and the lines that say why or what changed."""

    outcome: str
    lines: tuple[str, ...]

    @property
    def applied(self) -> bool:
        return self.outcome == "success"


class Reloader:
    """Runs one reload at a time: load and validate (in a thread), compare, apply or refuse, record."""

    def __init__(
        self,
        load: Callable[[], tuple[Config, Sequence[str]]],
        current: Config,
        apply: Callable[[Config], None],
        families: ReloadFamilies,
        clock: Callable[[], float],
    ) -> None:
        self._load = load
        self.current = current
        self._apply = apply
        self._families = families
        self._clock = clock
        self._lock = asyncio.Lock()

    async def reload(self) -> ReloadResult:
        """Re-read the file and apply it if it is valid and changes only live keys; never raises ConfigError."""
        async with self._lock:  # a second request waits, then reads the file again itself
            try:
                # File reads and validation off the event loop: webhooks keep being answered meanwhile.
                config, warnings = await asyncio.to_thread(self._load)
            except ConfigError as error:
                for problem in error.problems:
                    log.error("configuration not reloaded: %s", problem)
                return self._refused("invalid", error.problems)
            restart = restart_changes(self.current, config)
            if restart:
                for change in restart:
                    log.error("configuration not reloaded: %s changed; only a restart applies it", change)
                lines = [f"{change}: changed; only a restart applies it" for change in restart]
                return self._refused("restart_required", lines)
            changed = live_changes(self.current, config)
            self._apply(config)  # synchronous: no request runs between the old configuration and the new
            self.current = config
            self._families.record("success", self._clock())
            for warning in warnings:
                log.warning("%s", warning)
            summary = f"changed {', '.join(changed)}" if changed else "nothing changed"
            log.info("configuration reloaded: %s", summary)
            return ReloadResult("success", (f"configuration reloaded: {summary}",))

    def _refused(self, outcome: str, lines: Sequence[str]) -> ReloadResult:
        self._families.record(outcome, self._clock())
        log.error("configuration not reloaded (%s): the running configuration stays", outcome)
        return ReloadResult(outcome, tuple(lines))
