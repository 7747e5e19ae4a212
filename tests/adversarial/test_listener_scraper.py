"""The metrics listener protected the Prometheus way (issue 11, point 9): Debian's real Prometheus
scrapes the agent over mutual TLS with basic auth, given an exporter-toolkit web configuration file
through `--web.config.file`, and is refused without credentials, with a wrong password and without a
client certificate. A renewed certificate is served without a restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import httpx
import pytest
import trustme
import yaml

from tests.conftest import base_config
from tests.dashboards.prometheus_process import PrometheusProcess
from tests.process import AgentProcess

PASSWORD = "scrape-s3cret"


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is required in CI (Debian package prometheus)")
        pytest.skip("prometheus not installed (Debian package prometheus)")
    return path


class Certificates:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA()
        self.ca.cert_pem.write_to_path(directory / "ca.pem")
        self.issue_server()
        client = self.ca.issue_cert("prometheus.monitoring.svc")
        client.cert_chain_pems[0].write_to_path(directory / "client.pem")
        client.private_key_pem.write_to_path(directory / "client.key")

    def issue_server(self) -> None:
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        # Written aside and renamed into place, as cert-manager and Kubernetes secret volumes do.
        for name, blob in (("server.pem", server.cert_chain_pems[0]), ("server.key", server.private_key_pem)):
            blob.write_to_path(self.directory / f".{name}")
            os.replace(self.directory / f".{name}", self.directory / name)

    def path(self, name: str) -> str:
        return str(self.directory / name)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[AgentProcess, Certificates]]:
    certificates = Certificates(tmp_path)
    web_config = {
        "tls_server_config": {
            "cert_file": "server.pem",  # relative to the web configuration file
            "key_file": "server.key",
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": "ca.pem",
        },
        "basic_auth_users": {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()},
        "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
    }
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web_config))
    with AgentProcess(tmp_path, base_config(), args=["--web.config.file", str(tmp_path / "web.yml")]) as process:
        yield process, certificates


def _job(name: str, target: str, certificates: Certificates, **extra: Any) -> dict[str, Any]:
    tls: dict[str, Any] = {"ca_file": certificates.path("ca.pem")}
    if extra.pop("client_cert", True):
        tls |= {"cert_file": certificates.path("client.pem"), "key_file": certificates.path("client.key")}
    return {"job_name": name, "scheme": "https", "tls_config": tls, "static_configs": [{"targets": [target]}], **extra}


def _targets(prometheus: PrometheusProcess) -> dict[str, dict[str, Any]]:
    return {target["labels"]["job"]: target for target in prometheus.api("targets")["activeTargets"]}


def test_prometheus_scrapes_over_mutual_tls_with_basic_auth_and_is_refused_without(
    agent: tuple[AgentProcess, Certificates], prometheus_binary: str, tmp_path: Path
) -> None:
    process, certificates = agent
    assert process.metrics_url.startswith("https://")
    target = urlsplit(process.metrics_url).netloc
    right = {"username": "prometheus", "password": PASSWORD}
    jobs = [
        _job("good", target, certificates, basic_auth=right),
        _job("no-credentials", target, certificates),
        _job("wrong-password", target, certificates, basic_auth={**right, "password": "guess"}),
        _job("no-client-cert", target, certificates, basic_auth=right, client_cert=False),
    ]
    (tmp_path / "prometheus").mkdir()
    prometheus = PrometheusProcess(prometheus_binary, tmp_path / "prometheus", target, [], scrape_configs=jobs)
    try:
        prometheus.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            targets = _targets(prometheus)
            if len(targets) == 4 and all(t["lastScrape"] != "0001-01-01T00:00:00Z" for t in targets.values()):
                break
            time.sleep(0.5)
        up = {sample["metric"]["job"]: float(sample["value"][1]) for sample in prometheus.query("up")}
        build = prometheus.query('zoom_qss_build_info{job="good"}')
    finally:
        prometheus.close()
    assert up == {"good": 1.0, "no-credentials": 0.0, "wrong-password": 0.0, "no-client-cert": 0.0}
    assert build, "the good job scraped no exporter series"
    assert "401" in targets["no-credentials"]["lastError"]
    assert "401" in targets["wrong-password"]["lastError"]
    # Refused in the handshake: with TLS 1.3 the client learns it as the connection closing (EOF).
    handshake = targets["no-client-cert"]["lastError"]
    assert any(word in handshake.lower() for word in ("eof", "tls", "certificate", "reset")), handshake
    assert "401" not in handshake
    assert "Traceback" not in process.log_text()


def _client_context(certificates: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certificates.path("ca.pem"))
    context.load_cert_chain(certificates.path("client.pem"), certificates.path("client.key"))
    return context


def _served_certificate(url: str, certificates: Certificates) -> bytes:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=5) as sock,
        _client_context(certificates).wrap_socket(sock, server_hostname=parts.hostname) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def test_everything_sits_behind_the_auth_and_a_renewed_certificate_is_served_without_restart(
    agent: tuple[AgentProcess, Certificates],
) -> None:
    process, certificates = agent
    context = _client_context(certificates)
    with httpx.Client(verify=context, timeout=10) as client:
        for path in ("/", "/metrics", "/healthz", "/readyz", "/-/reload"):
            response = client.get(process.metrics_url + path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Basic"
            assert response.headers["x-content-type-options"] == "nosniff"
        landing = client.get(process.metrics_url + "/", auth=("prometheus", PASSWORD))
        assert landing.status_code == 200
        assert PASSWORD not in landing.text
        assert "$2" not in landing.text  # no password hash either

    before = _served_certificate(process.metrics_url, certificates)
    certificates.issue_server()
    deadline = time.monotonic() + 10
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.3)
        after = _served_certificate(process.metrics_url, certificates)
    assert after != before, "the renewed certificate was not picked up"
    assert "certificate files reloaded" in process.log_text()
