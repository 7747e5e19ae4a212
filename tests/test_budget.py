"""The series budget (budget.py): what `check-config` and the start-up log state, and a saturating simulation
through the real agent that reaches every combination the budget counts, and no more."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from qss_exporter.budget import TARGET_SAMPLES
from qss_exporter.config import config_from_mapping, load_config
from qss_exporter.core import config_budget
from qss_exporter.demo.driver import demo_config
from qss_exporter.demo.simulator import default_accounts
from qss_exporter.zoom.events import CONTEXT_EVENTS
from qss_exporter.zoom.vocabulary import STREAM_TYPES
from tests.conftest import ACCOUNT_ID, SECRET, AgentFactory
from tests.process import REPO, AgentProcess
from tests.secret_watch import register_secret
from tests.test_config import EXAMPLE, EXAMPLE_ENVIRON


def _check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qss_exporter", "check-config", "--config", str(path)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _row(stdout: str, family: str) -> tuple[int, int]:
    """(series, samples) of `family` in check-config's table."""
    for line in stdout.splitlines():
        words = line.split()
        if words and words[0] == family:
            return int(words[1].replace(",", "")), int(words[2].replace(",", ""))
    raise AssertionError(f"no row for {family} in:\n{stdout}")


def test_check_config_states_the_budget_of_config_example(tmp_path: Path) -> None:
    (tmp_path / "globex_webhook_secret_token").write_text("globex-new\n")
    (tmp_path / "globex_client_secret").write_text("globex-client-secret\n")
    env = EXAMPLE_ENVIRON | {"SECRETS_DIR": str(tmp_path)}
    result = _check_config(EXAMPLE, env)
    assert result.returncode == 0, result.stderr
    # 2 accounts x 3 products x 18 stream types x 6 network types x (2 sites + unknown), 12 samples each.
    assert _row(result.stdout, "zoom_qss_media_latency_seconds") == (1_944, 23_328)
    # ... x 2 stats (avg, max) for the session summaries.
    assert _row(result.stdout, "zoom_qss_participant_session_latency_seconds") == (3_888, 46_656)
    # The example's globex account has a WebSocket: its families count one account; the poller is off.
    assert _row(result.stdout, "zoom_qss_websocket_connect_failures_total") == (9, 9)
    assert "zoom_qss_api_requests_total" not in result.stdout
    budget = config_budget(load_config(EXAMPLE, environ=env))
    assert _row(result.stdout, "total") == (budget.total_series, budget.total_samples)
    assert budget.total_series < budget.max_series < budget.total_samples
    assert budget.total_samples > TARGET_SAMPLES
    assert (
        f"warning: series budget: the worst case, {budget.total_samples:,} Prometheus series per scrape, is more "
        f"than a single target should carry ({TARGET_SAMPLES:,}" in result.stderr
    )
    assert "limits.max_series (" not in result.stderr  # under the cap: no warning about it


def test_check_config_states_the_budget_of_the_demo_configuration(tmp_path: Path) -> None:
    for labels, latency in ((None, 3_888), (("network_type", "site", "client_os"), 42_768)):
        mapping, tokens = demo_config(default_accounts(), "127.0.0.1:0", "127.0.0.1:0", 60.0, labels)
        register_secret(*tokens.values(), mapping["detail"]["hash_key"])
        path = tmp_path / "demo.yaml"
        path.write_text(yaml.safe_dump(mapping))
        result = _check_config(path)
        assert result.returncode == 0, result.stderr
        # 2 accounts x 3 products x 18 stream types x 6 network types x (5 sites + unknown) [x 11 client OSes].
        assert _row(result.stdout, "zoom_qss_media_latency_seconds") == (latency, latency * 12)
        # Detail mode: the 10 worst participants' 18 streams, under detail.max_series with the other detail families.
        assert "zoom_qss_participant_latency_seconds" in result.stdout
        assert _row(result.stdout, "zoom_qss_participant_latency_seconds") == (180, 180)
        assert "(all together at most detail.max_series)" in result.stdout
    # With client_os the worst case passes limits.max_series: check-config says so.
    assert "is more than limits.max_series (200,000)" in result.stderr


def test_an_unbounded_label_would_be_named_not_guessed() -> None:
    from qss_exporter.budget import series_budget
    from qss_exporter.store import Store

    store = Store(1000, time.time)
    store.counter("zoom_qss_widgets_total", "A family with a label the budget does not know.", ("account", "colour"))
    config = config_from_mapping({"accounts": [{"name": "a", "account_id": "x", "webhook_secret_token": "s"}]})
    budget = series_budget(config, store.families())
    assert budget.families == ()
    assert budget.unknown == ("zoom_qss_widgets_total: colour",)
    assert (
        "series budget: zoom_qss_widgets_total: colour has no declared set of values; not counted" in budget.warnings()
    )


def test_the_start_up_log_states_the_budget(tmp_path: Path) -> None:
    config = {
        "listen": {"webhook": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
        "accounts": [{"name": "acme", "account_id": ACCOUNT_ID, "webhook_secret_token": SECRET}],
        "limits": {"max_series": 1000},
        "log": {"format": "json"},
    }
    with AgentProcess(tmp_path, config) as agent:
        log = agent.log_text()
    budget = config_budget(config_from_mapping(config))
    assert f'"message":"{budget.summary()}"' in log
    assert '"budget":{"zoom_qss_media_latency_seconds":324,' in log  # 1 account x 3 products x 18 streams x 6
    assert f"the worst case, {budget.total_series:,} series, is more than limits.max_series (1,000)" in log


# --------------------------------------------------------------------------------- the saturating simulation

_SEQUENCE = itertools.count()
_PRODUCTS = {
    # product -> (QoS, data, QoS summary, data summary events; person key, instance key, QoS person id key)
    "meeting": ("meeting.participant_qos", "meeting.participant_data", "meeting.participant_qos_summary",
                "meeting.participant_data_summary", "participant", "uuid", "user_id"),
    "webinar": ("webinar.participant_qos", "webinar.participant_data", "webinar.participant_qos_summary",
                "webinar.participant_data_summary", "participant", "uuid", "user_id"),
    "session": ("session.user_qos", "session.user_data", "session.user_qos_summary", "session.user_data_summary",
                "user", "session_id", "id"),
}  # fmt: skip
_NETWORKS = {"wired": "Wired", "wifi": "Wifi", "cellular": "Cellular", "ppp": "PPP", "other": "Others", "unknown": None}
_SITES = {"leeds": "10.20.1.1", "unknown": "192.0.2.1"}  # the second is in no site
_QUALITIES = ("good", "fair", "poor", "bad")
_NOTES = ("network bandwidth low", "internet connection unstable", "something else")


def _envelope(event: str, product: str, person: dict[str, Any], instance: str = "sat-instance") -> dict[str, Any]:
    _, _, _, _, person_key, instance_key, _ = _PRODUCTS[product]
    stamp = int(time.time() * 1000) + next(_SEQUENCE) % 100  # now, and never twice the same event
    obj = {instance_key: instance, person_key: person}
    return {"event": event, "event_ts": stamp, "payload": {"account_id": ACCOUNT_ID, "object": obj}}


def _grades(quality: str) -> list[dict[str, Any]]:
    return [
        {"type": f"{media}_quality", "details": {"quality": quality, "quality_score": "3.5"}}
        for media in ("audio", "video", "as")
    ]


def _minute_ms(minute: int) -> int:
    """The `minute`th of the last four minutes, in Unix milliseconds (recent, as real records are)."""
    return (int(time.time()) - (len(_QUALITIES) - minute) * 60) * 1000


def _minute(minute: int) -> str:
    """The same moment as Zoom writes a record's `date_time`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_minute_ms(minute) // 1000))


def _qos(product: str, participant: str, quality: str, note: str, minute: int) -> dict[str, Any]:
    stream = {"bitrate": "41 kbps", "latency": "38 ms", "jitter": "4 ms", "avg_loss": "0.2%", "max_loss": "1.4%"}
    picture = {"resolution": "1280*720", "frame_rate": "25 fps"}
    entries: list[dict[str, Any]] = [{"type": kind, "details": stream | picture} for kind in STREAM_TYPES]
    entries += _grades(quality)
    cpu = {"zoom_avg_cpu_usage": "9%", "zoom_max_cpu_usage": "17%", "system_max_cpu_usage": "46%"}
    entries += [
        {"type": "cpu_usage", "details": cpu},
        {"type": "wifi_rssi", "details": {"avg_rssi": "-63", "rssi_unit": "dBm"}},
        {"type": "notification", "details": {"network_notification": note}},
    ]
    for entry in entries:
        entry["date_time"] = _minute(minute)  # a minute apart: time in each grade
    body = _envelope(_PRODUCTS[product][0], product, {_PRODUCTS[product][6]: participant, "qos": entries})
    body["event_ts"] = _minute_ms(minute) + next(_SEQUENCE) % 100  # Zoom's record time: a minute apart too
    return body


def _data(product: str, participant: str, network: str | None, address: str, *, final: bool = False) -> dict[str, Any]:
    data = {
        "device": "Windows",
        "data_center": "FR (Sub)",
        "version": "6.2.5.41632",
        "audio_internal_ip_address": address,
    }
    if network is not None:
        data["network_type"] = network
    person_id = "id" if product == "session" else "participant_id"
    event = _PRODUCTS[product][3 if final else 1]
    return _envelope(event, product, {person_id: participant, "data": [data]})


def _summary(product: str, participant: str, quality: str) -> dict[str, Any]:
    units = {"bitrate": "40 kbps", "latency": "40 ms", "jitter": "4 ms", "loss": "0.3%"}
    stats = {f"{stat}_{value}": unit for stat in ("min", "avg", "max") for value, unit in units.items()}
    entries: list[dict[str, Any]] = [{"type": kind, "details": stats} for kind in STREAM_TYPES]
    entries += _grades(quality)
    person_id = "id" if product == "session" else "participant_id"
    return _envelope(_PRODUCTS[product][2], product, {person_id: participant, "qos": entries})


def _context(event: str) -> dict[str, Any]:
    product = event.partition(".")[0]
    person: dict[str, Any] = {"id": "ctx-person"} if product == "session" else {"user_id": "ctx-person"}
    body = _envelope(event, product, person, instance="ctx-instance")
    if not event.endswith(("joined", "left")):
        del body["payload"]["object"][_PRODUCTS[product][4]]
    return body


def _phone(call: str, leg: str, direction: str, *, summary: bool) -> dict[str, Any]:
    details = {"bitrate": "31", "avg_loss": "0.4", "jitter": "12", "network_delay": "48", "mos": "4.1"}
    sample = {"date_time": "2025-10-24T14:10:00Z", "type": direction, "details": details}
    stamp = int(time.time() * 1000) + next(_SEQUENCE) % 100
    leg_qos: dict[str, Any] = {"type": leg, "qos": [sample] if summary else sample}
    obj: dict[str, Any] = {"call_id": call, "call_qos": [leg_qos] if summary else leg_qos}
    event = "phone.call_qos_summary" if summary else "phone.call_qos"
    return {"event": event, "event_ts": stamp, "payload": {"account_id": ACCOUNT_ID, "object": obj}}


def saturating_events() -> Iterator[dict[str, Any]]:
    """Every combination of label values one account, one site and the default labels allow, at least once."""
    for product, (network, raw), (site, address) in itertools.product(_PRODUCTS, _NETWORKS.items(), _SITES.items()):
        who = f"{product}-{network}-{site}"
        yield _data(product, f"active-{who}", raw, address)  # stays active: the gauges
        for minute, (quality, note) in enumerate(zip(_QUALITIES, itertools.cycle(_NOTES), strict=False)):
            yield _qos(product, f"active-{who}", quality, note, minute)
        for quality in _QUALITIES:  # one summary per grade: the session families
            yield _data(product, f"ended-{who}-{quality}", raw, address)
            yield _summary(product, f"ended-{who}-{quality}", quality)
    for product in _PRODUCTS:
        yield _data(product, f"left-{product}", "Wired", _SITES["leeds"], final=True)
    yield from (_context(event) for event in CONTEXT_EVENTS)
    for leg, direction in itertools.product(("caller", "callee"), ("sending", "receiving")):
        yield _phone("call-active", leg, direction, summary=False)
    yield _phone("call-ended", "caller", "sending", summary=True)


def _exposed(text: str) -> dict[str, tuple[int, int]]:
    """(series, samples) per family in an exposition: label sets without `le`, and every line."""
    found: dict[str, tuple[int, int]] = {}
    for family in text_string_to_metric_families(text):
        labelsets = {frozenset((k, v) for k, v in s.labels.items() if k != "le") for s in family.samples}
        name = family.name + "_total" if family.type == "counter" else family.name
        found[name] = (len(labelsets) if family.samples else 0, len(family.samples))
    return found


async def test_the_budget_is_what_a_saturating_simulation_reaches(start_agent: AgentFactory) -> None:
    running = await start_agent(
        accounts=[{"name": "acme", "account_id": ACCOUNT_ID, "webhook_secret_token": SECRET}],
        sites=[{"name": "leeds", "cidrs": ["10.20.0.0/16"]}],
    )
    for body in saturating_events():
        response = await running.post(body)
        assert response.status_code == 200, (response.text, body["event"])
    response = await running.scrape_text()
    exposed = _exposed(response.text)
    budget = running.agent.budget
    assert budget.unknown == ()
    over = {
        f.name: (exposed.get(f.name), f.series) for f in budget.families if exposed.get(f.name, (0, 0))[0] > f.series
    }
    assert over == {}, "exposed more than the budget allows"
    assert set(exposed) <= {family.name for family in budget.families}
    # Every family reaches its worst case: the budget is exact for this label domain, not just within 2x.
    reached = {f.name: exposed.get(f.name, (0, 0)) for f in budget.families}
    assert reached == {f.name: (f.series, f.samples) for f in budget.families}
    total = sum(series for series, _ in exposed.values())
    assert budget.total_series / 2 <= total <= budget.total_series
    assert budget.total_series > 5_000  # the QoS families' 648 label sets each, not a trivial domain
