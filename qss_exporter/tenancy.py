"""Which Zoom accounts each configured account may speak for, and the `account` label each gets.

A webhook secret or a WebSocket subscription belongs to one configured account: an event it
delivers may name that account's `account_id` or one of its declared `sub_accounts`, nothing else.
So one tenant's secret cannot write into another tenant's series, and `account` label values come
only from the configuration (plus, where an account opts in, its undeclared sub-accounts, all
labelled with its name and remembered in a bounded table).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["ACCOUNT_MISMATCH", "UNDECLARED_MAX", "UNKNOWN_ACCOUNT", "Tenancy", "Tenant"]

# Refusal outcomes (labels of zoom_qss_webhook_requests_total and zoom_qss_websocket_events_total).
UNKNOWN_ACCOUNT: Final = "unknown_account"  # an account id no configured account speaks for
ACCOUNT_MISMATCH: Final = "account_mismatch"  # another configured account's id: refused as forged

UNDECLARED_MAX: Final = 10_000  # undeclared sub-account ids remembered (opt-in); later ones are refused
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Zoom account ids are 22 URL-safe base64 characters


@dataclass(frozen=True, slots=True)
class Tenant:
    """One configured account: its label, its own id, its declared sub-accounts and the opt-in."""

    name: str
    account_id: str
    sub_accounts: tuple[str, ...] = ()
    undeclared_sub_accounts: bool = False  # accept other ids from this account's credentials, as `name`


class Tenancy:
    """The account table: id -> label, and who may speak for which id."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self.names = tuple(tenant.name for tenant in tenants)
        self._labels: dict[str, str] = {}
        self._owners: dict[str, str] = {}
        for tenant in tenants:
            self._labels[tenant.account_id] = tenant.name
            self._owners[tenant.account_id] = tenant.name
            for sub in tenant.sub_accounts:
                # A declared sub-account keeps its own id as its label: an operator-chosen, bounded value
                # that keeps one master account's sub-accounts apart on the dashboards.
                self._labels[sub] = sub
                self._owners[sub] = tenant.name
        self._open = tuple(tenant.name for tenant in tenants if tenant.undeclared_sub_accounts)
        self._learned: dict[str, str] = {}

    def reconfigured(self, tenants: Sequence[Tenant]) -> Tenancy:
        """A table for `tenants` (a configuration reload) that keeps the undeclared sub-accounts learned so
        far whose master still accepts them and which are not now declared or configured themselves."""
        table = Tenancy(tenants)
        table._learned = {
            account_id: owner
            for account_id, owner in self._learned.items()
            if owner in table._open and account_id not in table._owners
        }
        return table

    def label(self, account_id: str) -> str | None:
        """The `account` label of events naming `account_id`; None for an id no account speaks for."""
        return self._labels.get(account_id) or self._learned.get(account_id)

    def check(self, speakers: Collection[str], account_id: str) -> str | None:
        """None when a credential of one of `speakers` (configured account names) may deliver an event
        naming `account_id`; else the refusal outcome, `account_mismatch` or `unknown_account`."""
        owner = self._owners.get(account_id) or self._learned_owner(account_id)
        if owner is not None:
            return None if owner in speakers else ACCOUNT_MISMATCH
        for name in self._open:
            if name in speakers and _ACCOUNT_ID.fullmatch(account_id) and len(self._learned) < UNDECLARED_MAX:
                self._learned[account_id] = name
                return None
        return UNKNOWN_ACCOUNT

    def _learned_owner(self, account_id: str) -> str | None:
        # A learned id is labelled with (and owned by) the account that first delivered it.
        return self._learned.get(account_id)

    @property
    def undeclared(self) -> int:
        """Undeclared sub-account ids remembered so far (at most UNDECLARED_MAX)."""
        return len(self._learned)
