"""Configuration reload (reload.py): SIGHUP and `POST /-/reload` on the real agent process, with webhooks sent
all the while; which keys apply live, and the table in docs/config.md that says so."""

from __future__ import annotations

import copy
import http.client
import itertools
import re
import signal
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args, get_origin

import bcrypt
import httpx
import orjson
import pytest
import yaml
from pydantic import BaseModel

from qss_exporter.config import Config, config_from_mapping
from qss_exporter.reload import LIVE_ACCOUNT_KEYS, applies_live, live_changes, restart_changes
from qss_exporter.zoom.signature import sign
from tests.conftest import ACCOUNT_ID, SECRET, AgentFactory, parse_metrics, total
from tests.process import REPO, AgentProcess
from tests.samples import load_sample
from tests.secret_watch import register_secret

STEADY = "steady-secret-token"  # acme's in every configuration below: the background sender signs with it
OLD = "old-secret-token"
NEW = "new-secret-token"
GLOBEX = "globex-secret-token"
register_secret(STEADY, OLD, NEW, GLOBEX)
GLOBEX_ID = "Gq7rTn0bR8aL5mWcY2kPzB"
LEEDS, LISBON = "10.20.4.117", "10.30.1.9"


def _config(*, acme: list[str], globex: bool = False, lisbon: bool = False, **extra: Any) -> dict[str, Any]:
    accounts = [{"name": "acme", "account_id": ACCOUNT_ID, "webhook_secret_token": acme}]
    if globex:
        accounts.append({"name": "globex", "account_id": GLOBEX_ID, "webhook_secret_token": GLOBEX})
    sites = [{"name": "leeds", "cidrs": ["10.20.0.0/16"]}]
    if lisbon:
        sites.append({"name": "lisbon", "cidrs": ["10.30.0.0/16"]})
    return {
        "listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
        "accounts": accounts,
        "sites": sites,
        **extra,
    }


_SEQUENCE = itertools.count()


def _now_ms() -> int:
    """Now, as Zoom's `event_ts`; a millisecond apart each time, so that no two events are duplicates."""
    return int(time.time() * 1000) + next(_SEQUENCE) % 100


_RECORDS = itertools.count(-int(time.time()))  # minus the record's Unix second


def _qos(participant: str, account_id: str = ACCOUNT_ID) -> bytes:
    body = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["event_ts"] = _now_ms()  # activity is judged by event time
    body["payload"]["account_id"] = account_id
    body["payload"]["object"]["participant"]["user_id"] = participant
    # Each call is another record (its own second, counting back from the start, so never repeated):
    # the same content again would be a redelivery, counted once.
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(-next(_RECORDS)))
    for entry in body["payload"]["object"]["participant"]["qos"]:
        entry["date_time"] = stamp
    return orjson.dumps(body)


def _data(participant: str, address: str, account_id: str = ACCOUNT_ID) -> bytes:
    body = copy.deepcopy(load_sample("meeting.participant_data"))
    body["event_ts"] = _now_ms()
    body["payload"]["account_id"] = account_id
    body["payload"]["object"]["participant"]["participant_id"] = participant
    entry = body["payload"]["object"]["participant"]["data"][0]
    for key in [key for key in entry if key.endswith("internal_ip_address")]:
        entry[key] = address
    return orjson.dumps(body)


def _rewrite(agent: AgentProcess, config: Mapping[str, Any]) -> None:
    agent.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))


def _sighup(agent: AgentProcess, expect: str = r"configuration reloaded: .*") -> str:
    agent.process.send_signal(signal.SIGHUP)
    return agent.wait_for(expect).group(0)


class Sender:
    """Signed webhooks to the agent, one after another from a thread, each a new participant's record."""

    def __init__(self, agent: AgentProcess, secret: str = STEADY) -> None:
        self._agent = agent
        self._secret = secret
        self.statuses: Counter[int] = Counter()
        self.answers: list[int] = []  # in the order they came
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        url = urllib.parse.urlsplit(self._agent.webhook_url)
        # http.client rather than httpx: one kept-alive connection, and no log line per request.
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        sent = 0
        while not self._stop.is_set():
            sent += 1
            body = _qos(f"sender-{sent}")
            stamp = str(int(time.time()))
            headers = {"x-zm-request-timestamp": stamp, "x-zm-signature": sign(self._secret, stamp, body)}
            connection.request("POST", url.path, body, headers)
            response = connection.getresponse()
            response.read()
            self.statuses[response.status] += 1
            self.answers.append(response.status)
        connection.close()

    @contextmanager
    def running(self) -> Iterator[Sender]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=15)


def test_sighup_rotates_the_secret_adds_an_account_and_a_site_and_keeps_the_state(tmp_path: Path) -> None:
    """The acceptance test of issue 14 point 2, on the real process: each live class of key, the state kept,
    and no webhook answered 5xx while webhooks arrive throughout the reloads."""
    with AgentProcess(tmp_path, _config(acme=[STEADY, OLD])) as agent, Sender(agent).running() as sender:
        started = total(parse_metrics(agent.scrape_text()), "zoom_qss_config_last_reload_success_timestamp_seconds")
        # Before: a participant in Leeds, and an event that Zoom may deliver again.
        assert agent.post_signed(_data("p-leeds", LEEDS), OLD).status_code == 200
        assert agent.post_signed(_qos("p-leeds"), OLD).status_code == 200
        retried = _qos("p-retried")
        assert agent.post_signed(retried, OLD).status_code == 200

        # Rotate OLD -> NEW, add the account globex and the site lisbon, while webhooks signed with OLD arrive.
        _rewrite(agent, _config(acme=[STEADY, NEW], globex=True, lisbon=True))
        with Sender(agent, OLD).running() as rotated:
            time.sleep(0.3)
            line = _sighup(agent)
            time.sleep(0.3)
        # Each request was verified under one configuration: accepted until the reload, refused after, no mix.
        switch = rotated.answers.index(401)
        assert switch > 0
        assert rotated.answers == [200] * switch + [401] * (len(rotated.answers) - switch)
        assert line.endswith("changed accounts[0].webhook_secret_token, accounts[1], sites[1]")
        assert agent.post_signed(_qos("p-new"), NEW).status_code == 200
        assert agent.post_signed(_qos("p-old"), OLD).status_code == 401  # the removed token stops at once
        assert agent.post_signed(_qos("p-globex", GLOBEX_ID), GLOBEX).status_code == 200
        assert agent.post_signed(_qos("p-forged", GLOBEX_ID), NEW).status_code == 403  # acme's token is not globex's
        assert agent.post_signed(_data("p-lisbon", LISBON), NEW).status_code == 200
        assert agent.post_signed(_qos("p-lisbon"), NEW).status_code == 200
        assert agent.post_signed(_qos("p-leeds"), NEW).status_code == 200  # enrichment from before the reload
        assert agent.post_signed(retried, NEW).status_code == 200  # a duplicate: counted once

        samples = parse_metrics(agent.scrape_text())
        assert total(samples, "zoom_qss_media_records_total", account="globex") > 0
        assert total(samples, "zoom_qss_events_total", account="globex", event="meeting.participant_qos") == 1
        assert total(samples, "zoom_qss_media_records_total", site="lisbon") > 0
        leeds = total(samples, "zoom_qss_media_records_total", site="leeds")
        assert leeds == 2 * total(samples, "zoom_qss_media_records_total", site="lisbon")  # both of p-leeds's records
        assert total(samples, "zoom_qss_active_participants", site="leeds") == 1  # still in the meeting
        assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == 1
        assert total(samples, "zoom_qss_config_last_reload_successful") == 1
        assert total(samples, "zoom_qss_config_reloads_total", outcome="success") == 1
        assert total(samples, "zoom_qss_config_last_reload_success_timestamp_seconds") > started

        # A listed rotation: the old token next to the new one verifies again, by POST /-/reload this time.
        _rewrite(agent, _config(acme=[STEADY, NEW, OLD], globex=True, lisbon=True))
        answer = httpx.post(agent.metrics_url + "/-/reload", timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.text == "configuration reloaded: changed accounts[0].webhook_secret_token\n"
        assert agent.post_signed(_qos("p-old-again"), OLD).status_code == 200
        assert agent.post_signed(_qos("p-new-again"), NEW).status_code == 200
        time.sleep(0.5)  # a few more webhooks after the last reload
    assert sender.statuses.keys() == {200}, sender.statuses
    assert sender.statuses[200] > 10
    assert "Traceback" not in agent.log_text()


def test_an_invalid_or_restart_only_edit_is_refused_and_the_running_configuration_keeps_serving(
    tmp_path: Path,
) -> None:
    with AgentProcess(tmp_path, _config(acme=[STEADY, OLD])) as agent, Sender(agent).running() as sender:
        # Invalid: an unknown key and a bad CIDR (the new token in the same file must not apply either).
        broken = _config(acme=[STEADY, NEW], lisbon=True)
        broken["sites"][1]["cidrs"] = ["10.30.0.300/16"]
        broken["accounts"][0]["colour"] = "blue"
        _rewrite(agent, broken)
        _sighup(agent, r"configuration not reloaded \(invalid\)")
        log = agent.log_text()
        assert "configuration not reloaded: accounts[0].colour: unknown key" in log
        assert "configuration not reloaded: sites[1].cidrs[0]: not an IPv4 or IPv6 network, got '10.30.0.300/16'" in log
        assert "Traceback" not in log
        samples = parse_metrics(agent.scrape_text())
        assert total(samples, "zoom_qss_config_last_reload_successful") == 0
        assert total(samples, "zoom_qss_config_reloads_total", outcome="invalid") == 1
        assert agent.post_signed(_qos("p-old"), OLD).status_code == 200  # the old configuration still serves
        assert agent.post_signed(_qos("p-new"), NEW).status_code == 401

        # Restart-only: a new metrics port next to the new token; nothing of it applies.
        moved = _config(acme=[STEADY, NEW])
        moved["listen"]["metrics"] = "127.0.0.1:1"
        moved["pipeline"] = {"activity_window_seconds": 60}
        _rewrite(agent, moved)
        answer = httpx.post(agent.metrics_url + "/-/reload", timeout=10)
        assert answer.status_code == 500
        assert answer.text.splitlines() == [
            "listen.metrics: changed; only a restart applies it",
            "pipeline.activity_window_seconds: changed; only a restart applies it",
        ]
        samples = parse_metrics(agent.scrape_text())
        assert total(samples, "zoom_qss_config_reloads_total", outcome="restart_required") == 1
        assert total(samples, "zoom_qss_config_last_reload_successful") == 0
        assert agent.post_signed(_qos("p-old-2"), OLD).status_code == 200
        assert agent.post_signed(_qos("p-new-2"), NEW).status_code == 401

        # Fixed: the gauge is 1 again.
        _rewrite(agent, _config(acme=[STEADY, NEW]))
        _sighup(agent)
        samples = parse_metrics(agent.scrape_text())
        assert total(samples, "zoom_qss_config_last_reload_successful") == 1
        assert agent.post_signed(_qos("p-new-3"), NEW).status_code == 200
    assert sender.statuses.keys() == {200}, sender.statuses
    assert NEW not in agent.log_text()
    assert OLD not in agent.log_text()


def test_post_reload_needs_the_listeners_credentials(tmp_path: Path) -> None:
    """The web configuration given by `--web.config.file`: a reload keeps using it (it is not a changed key)."""
    web = tmp_path / "web.yaml"
    web.write_text(
        yaml.safe_dump({"basic_auth_users": {"prometheus": bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()}})
    )
    with AgentProcess(tmp_path, _config(acme=[STEADY, OLD]), args=["--web.config.file", str(web)]) as agent:
        _rewrite(agent, _config(acme=[STEADY, NEW]))
        url = agent.metrics_url + "/-/reload"
        assert httpx.post(url, timeout=10).status_code == 401
        assert httpx.post(url, auth=("prometheus", "wrong"), timeout=10).status_code == 401
        assert agent.post_signed(_qos("p-new"), NEW).status_code == 401  # nothing was reloaded
        assert httpx.get(url, auth=("prometheus", "pw"), timeout=10).status_code == 405
        answer = httpx.post(url, auth=("prometheus", "pw"), timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.text == "configuration reloaded: changed accounts[0].webhook_secret_token\n"
        assert agent.post_signed(_qos("p-new-2"), NEW).status_code == 200


# ------------------------------------------------------------------------------------------- which keys


def _base() -> dict[str, Any]:
    return _config(acme=[STEADY])


def _with(change: dict[str, Any]) -> Config:
    mapping = _base()
    for key, value in change.items():
        section, _, name = key.partition(".")
        if name:
            mapping.setdefault(section, {})[name] = value
        else:
            mapping[section] = value
    return config_from_mapping(mapping)


PULLED = {
    "name": "wsacct",
    "account_id": "W1",
    "client_id": "cid",
    "client_secret": "csecret",
    "websocket": {"subscription_id": "s"},
}
register_secret("csecret")


@pytest.mark.parametrize(
    ("change", "restart"),
    [
        ({"webhook.timestamp_tolerance_seconds": 60}, []),
        ({"webhook.shed_after_seconds": 2.0}, []),
        ({"webhook.path": "/hook"}, ["webhook.path"]),
        ({"webhook.insecure_skip_verification": True}, ["webhook.insecure_skip_verification"]),
        ({"limits.max_series": 1000}, []),
        ({"limits.series_ttl_seconds": 60}, ["limits.series_ttl_seconds"]),
        ({"log.level": "debug"}, []),
        ({"log.format": "json"}, ["log.format"]),
        ({"labels.extra_data_centers": ["ZZ"]}, []),
        ({"labels.client_os": True}, ["labels.client_os"]),
        ({"sites": [{"name": "oslo", "cidrs": ["10.9.0.0/16"]}]}, []),
        ({"sites": []}, ["sites: from none to some or back (adds or removes the `site` label)"]),
        (
            {
                "accounts": [
                    {"name": "acme2", "account_id": "A2", "webhook_secret_token": STEADY, "sub_accounts": ["S1"]}
                ]
            },
            [],
        ),
        ({"otlp.enabled": True, "otlp.endpoint": "http://127.0.0.1:4318"}, ["otlp.enabled", "otlp.endpoint"]),
        ({"state.leader": {"lease_seconds": 30}}, ["state.leader.lease_seconds"]),
        (
            {"detail.enabled": True, "detail.hash_key": "k", "detail.worst": {"participants": 1}},
            [
                "detail.enabled",
                "detail.hash_key",
                "detail.worst.participants",
            ],
        ),
    ],
)
def test_restart_changes_name_every_key_only_a_restart_applies(change: dict[str, Any], restart: list[str]) -> None:
    assert restart_changes(config_from_mapping(_base()), _with(change)) == restart


def test_an_account_the_poller_or_a_websocket_pulls_for_keeps_its_identity_until_a_restart() -> None:
    base = _base()
    base["accounts"].append(PULLED)
    before = config_from_mapping(base)
    renamed = copy.deepcopy(base)
    renamed["accounts"][1]["name"] = "wsacct2"
    assert restart_changes(before, config_from_mapping(renamed)) == [
        "accounts[1] (wsacct2): an account with client_id or websocket added or renamed",
        "accounts (wsacct): an account with client_id or websocket removed or renamed",
    ]
    secret = copy.deepcopy(base)
    secret["accounts"][1]["client_secret"] = "csecret2"
    register_secret("csecret2")
    assert restart_changes(before, config_from_mapping(secret)) == ["accounts[1].client_secret"]
    token = copy.deepcopy(base)
    token["accounts"][1]["webhook_secret_token"] = NEW
    after = config_from_mapping(token)
    assert restart_changes(before, after) == []
    assert live_changes(before, after) == ["accounts[1].webhook_secret_token"]  # a path, never the value


def _keys(model: type[BaseModel], prefix: str) -> dict[str, list[str]]:
    """Every section of the configuration (`accounts[]`, `otlp.logs` ...) and its keys, from the models."""
    sections: dict[str, list[str]] = {prefix: []}
    for name, field in model.model_fields.items():
        sections[prefix].append(name)
        nested = [arg for arg in (field.annotation, *get_args(field.annotation)) if isinstance(arg, type)]
        for arg in (*nested, *(a for n in get_args(field.annotation) for a in get_args(n))):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                many = get_origin(field.annotation) is tuple
                sections |= _keys(arg, f"{prefix}.{name}{'[]' if many else ''}".lstrip("."))
    return sections


def _names(cell: str) -> list[str]:
    """The keys in a table cell: `key`, with a footnote mark or not."""
    return re.findall(r"`([^`]+)`", cell)


def test_the_reload_table_in_docs_config_md_names_every_key_as_the_code_applies_it() -> None:
    text = (REPO / "docs" / "config.md").read_text()
    table = text.split("## Reloading the configuration", 1)[1].split("| section | live | restart |", 1)[1]
    rows: dict[str, tuple[list[str], list[str]]] = {}
    for line in table.split("\n\n", 1)[0].splitlines():
        if line.startswith("| `"):
            section, live_cell, restart_cell = (cell.strip() for cell in line.strip("|").split("|"))
            rows[section.strip("`")] = (_names(live_cell), _names(restart_cell))
    sections = _keys(Config, "")
    sections.pop("")
    assert set(rows) == set(sections)
    for section, keys in sections.items():
        live, restart = rows[section]
        assert sorted(live + restart) == sorted(keys), section
        assert live == [key for key in keys if applies_live(f"{section}.{key}")], section
    assert rows["accounts[]"][0] == list(LIVE_ACCOUNT_KEYS)


async def test_an_agent_without_a_configuration_file_refuses_a_reload(start_agent: AgentFactory) -> None:
    """The demo and in-process agents run on a built-in configuration: a reload says so and changes nothing."""
    running = await start_agent()
    answer = await running.client.post(running.metrics_url + "/-/reload")
    assert answer.status_code == 500
    assert answer.text == "no configuration file to reload: this agent runs on a built-in configuration\n"
    samples = await running.scrape()
    assert total(samples, "zoom_qss_config_reloads_total", outcome="invalid") == 1
    assert total(samples, "zoom_qss_config_last_reload_successful") == 0
    assert (await running.post(_qos("p"), SECRET)).status_code == 200
