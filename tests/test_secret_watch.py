"""The secret watch can fail: a planted secret is found in each kind of output it watches."""

from __future__ import annotations

import logging
from pathlib import Path

from tests.process import ExporterProcess
from tests.secret_watch import WATCH

PLANTED = "planted-secret-7d1f0c"
log = logging.getLogger("qss_exporter.test")


def test_a_secret_in_a_log_line_at_any_level_is_found() -> None:
    with WATCH.planted(PLANTED) as found:
        log.debug("the token is %s", PLANTED)
        logging.getLogger("some.library").info("url https://user:%s@host", PLANTED)
    assert [leak.origin for leak in found] == ["log qss_exporter.test DEBUG", "log some.library INFO"]
    assert PLANTED not in str(found[0])  # the report masks it


def test_a_secret_in_structured_fields_or_a_traceback_is_found() -> None:
    with WATCH.planted(PLANTED) as found:
        log.info("starting", extra={"fields": {"config": {"token": PLANTED}}})
        try:
            raise ValueError(f"bad value {PLANTED}")
        except ValueError:
            log.exception("failed")
    assert len(found) == 2


def test_a_secret_in_a_process_s_output_is_found(tmp_path: Path) -> None:
    with WATCH.planted(PLANTED) as found:
        process = ExporterProcess(["check-config", "--config", str(tmp_path / f"{PLANTED}.yaml")])
        process.process.wait(timeout=30)
        process.kill()  # joins the thread that reads its output
    assert found  # "<path>: invalid configuration" and "cannot read <path>"
    assert {leak.origin for leak in found} == {"process qss-exporter check-config"}


def test_a_configuration_registers_every_form_of_its_secrets() -> None:
    config = {
        "accounts": [
            {"webhook_secret_token": ["rotation-one-123", "rotation-two-456"], "client_secret": "client-9f8e"}
        ],
        "otlp": {"endpoint": "https://otel-user:url-pass-5c4b@otel", "headers": "authorization=Bearer%20hdr-token-77"},
    }
    with WATCH.planted("unused-placeholder") as found:
        WATCH.register_config(config, {"ZOOM_SECRET": "env-secret-2a2a", "HOME": "/root-home-dir"})
        for value in ("rotation-two-456", "client-9f8e", "url-pass-5c4b", "env-secret-2a2a"):
            WATCH.scan(f"line with {value}", "probe")
        WATCH.scan("line with /root-home-dir", "probe")
    assert found == []  # only the placeholder's own leaks are collected by `planted`
    leaked = [leak for leak in WATCH.leaks if leak.origin == "probe"]
    assert {leak.secret for leak in leaked} == {"rotation-two-456", "client-9f8e", "url-pass-5c4b", "env-secret-2a2a"}
    WATCH.leaks[:] = [leak for leak in WATCH.leaks if leak.origin != "probe"]  # planted, not a real leak
