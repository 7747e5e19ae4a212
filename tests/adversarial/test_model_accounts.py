"""A secret speaks for its own account and its sub-accounts only: forgeries and unknown accounts are refused."""

from __future__ import annotations

import copy
import hashlib
import hmac

import orjson

from tests.adversarial.conftest import DECLARED_SUB, MSP_ACCOUNT_ID, MSP_SECRET, delta, post, qos_event, scrape
from tests.conftest import ACCOUNT_ID, OTHER_SECRET, SECRET, SESSION_ACCOUNT_ID, Series
from tests.process import AgentProcess


def _account_series(samples: Series, account: str) -> Series:
    return {key: value for key, value in samples.items() if ("account", account) in key[1]}


def test_an_event_for_another_tenant_is_refused_counted_and_changes_nothing(shared_agent: AgentProcess) -> None:
    forged = qos_event()  # acme's account id ...
    before = scrape(shared_agent)
    response = post(shared_agent, forged, secret=OTHER_SECRET)  # ... signed with acme-health's secret
    after = scrape(shared_agent)
    assert response.status_code == 403
    assert response.json() == {"error": "account_mismatch: this secret token does not deliver events of that account"}
    assert delta(before, after, "zoom_qss_webhook_requests_total", outcome="account_mismatch") == 1
    assert _account_series(after, "acme") == _account_series(before, "acme")
    assert _account_series(after, "acme-health") == _account_series(before, "acme-health")
    # The forgery was not remembered: acme's own delivery of the same event is counted, once.
    assert post(shared_agent, forged, secret=SECRET).status_code == 200
    assert post(shared_agent, forged, secret=SECRET).status_code == 200
    final = scrape(shared_agent)
    assert delta(after, final, "zoom_qss_webhook_requests_total", outcome="accepted") == 1
    assert delta(after, final, "zoom_qss_webhook_requests_total", outcome="duplicate") == 1
    assert delta(after, final, "zoom_qss_media_records_total", account="acme") == 4


def test_an_unknown_account_is_refused_and_never_becomes_a_label(shared_agent: AgentProcess) -> None:
    stranger = qos_event(account_id="StrangerAccount0000001")
    before = scrape(shared_agent)
    response = post(shared_agent, stranger, secret=SECRET)
    after = scrape(shared_agent)
    assert response.status_code == 403
    assert delta(before, after, "zoom_qss_webhook_requests_total", outcome="unknown_account") == 1
    accounts = {value for (_, labels), _ in after.items() for name, value in labels if name == "account"}
    assert accounts <= {"acme", "acme-health", "msp", DECLARED_SUB}
    assert "refused a webhook (unknown_account)" in shared_agent.log_text()


def test_a_master_account_speaks_for_its_sub_accounts(shared_agent: AgentProcess) -> None:
    declared = qos_event(account_id=DECLARED_SUB)
    undeclared = qos_event(account_id="UndeclaredSub000000001")
    other_tenant = qos_event(account_id=SESSION_ACCOUNT_ID)
    before = scrape(shared_agent)
    assert post(shared_agent, declared, secret=MSP_SECRET).status_code == 200
    assert post(shared_agent, undeclared, secret=MSP_SECRET).status_code == 200  # opted in: labelled msp
    assert post(shared_agent, other_tenant, secret=MSP_SECRET).status_code == 403  # never another tenant
    assert post(shared_agent, qos_event(account_id=MSP_ACCOUNT_ID), secret=SECRET).status_code == 403
    after = scrape(shared_agent)
    assert delta(before, after, "zoom_qss_media_records_total", account=DECLARED_SUB) == 4
    assert delta(before, after, "zoom_qss_media_records_total", account="msp") == 4
    assert delta(before, after, "zoom_qss_webhook_requests_total", outcome="account_mismatch") == 2


def test_url_validation_still_answers_with_the_secret_that_verified_it(shared_agent: AgentProcess) -> None:
    body = orjson.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": "tok-123"}, "event_ts": 1})
    for secret in (SECRET, OTHER_SECRET, MSP_SECRET):
        answer = shared_agent.post_signed(body, secret).json()
        expected = hmac.new(secret.encode(), b"tok-123", hashlib.sha256).hexdigest()
        assert answer == {"plainToken": "tok-123", "encryptedToken": expected}


def test_a_sub_account_event_keeps_all_its_values(shared_agent: AgentProcess) -> None:
    """Nothing is lost for accepted accounts: the same event under a sub-account records every stream."""
    event = qos_event(account_id=DECLARED_SUB)
    twin = copy.deepcopy(event)
    twin["payload"]["account_id"] = ACCOUNT_ID
    before = scrape(shared_agent)
    assert post(shared_agent, event, secret=MSP_SECRET).status_code == 200
    assert post(shared_agent, twin, secret=SECRET).status_code == 200
    after = scrape(shared_agent)
    for name in (
        "zoom_qss_media_latency_seconds_count",
        "zoom_qss_media_records_total",
        "zoom_qss_quality_records_total",
    ):
        assert delta(before, after, name, account=DECLARED_SUB) == delta(before, after, name, account="acme") > 0
