"""The two-replica variants with Redis: deploy/compose.replicated.yaml and the kustomize overlay
deploy/kubernetes-replicated, schema-validated like the single-replica bundle (test_deploy.py), and wired
together: replicas, the PodDisruptionBudget, the Redis Service and its password, a valid configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]  # no stubs in the test extras
import pytest
import yaml

from tests.dashboards.artefacts import RULE_FILES
from tests.dashboards.test_deploy import KUBERNETES_VERSIONS, SERVICE_MONITOR_SCHEMA, _check_compose, _tool
from tests.process import REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.replicated.yaml"
OVERLAY = DEPLOY / "kubernetes-replicated"
COMPOSE_ENV = {"ZOOM_ACCOUNT_ID": "acme-id", "ZOOM_WEBHOOK_SECRET_TOKEN": "token", "QSS_REDIS_PASSWORD": "pw"}


def check_config(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qss_exporter", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, **env},
    )


# ----------------------------------------------------------------------------------------- Compose


def test_the_replicated_compose_file_matches_the_compose_spec() -> None:
    _tool("check_jsonschema")
    result = _check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_replicated_compose_stack_runs_two_replicas_on_one_redis(tmp_path: Path) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"redis", "qss-exporter", "prometheus"}
    exporter = services["qss-exporter"]
    assert exporter["deploy"]["replicas"] == 2
    assert exporter["command"][:2] == ["run", "--config"]
    assert exporter["depends_on"] == ["redis"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port}: the stack listens on loopback only"
    mounts = dict(volume.split(":")[:2] for volume in exporter["volumes"])
    config_path = DEPLOY / next(source for source, target in mounts.items() if target == exporter["command"][2])
    # The password reaches both Redis and the exporter from the one variable; the config reads it.
    assert "${QSS_REDIS_PASSWORD:?set QSS_REDIS_PASSWORD}" in services["redis"]["command"]
    assert set(COMPOSE_ENV) <= set(exporter["environment"])
    config = yaml.safe_load(config_path.read_text())
    assert config["state"]["backend"] == "redis"
    assert urlsplit(config["state"]["redis"]["url"]).hostname == "redis"
    assert config["state"]["redis"]["password"] == "${QSS_REDIS_PASSWORD}"
    result = check_config(config_path, COMPOSE_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_replicated_prometheus_finds_every_replica_and_loads_the_rules(promtool: str, tmp_path: Path) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    mounts = dict(volume.split(":")[:2] for volume in services["prometheus"]["volumes"])
    source = next(path for path, target in mounts.items() if target == "/etc/prometheus/prometheus.yml")
    prometheus = yaml.safe_load((DEPLOY / source).read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == "qss-exporter"  # QssExporterDown selects this job
    (discovery,) = job["dns_sd_configs"]
    assert (discovery["names"], discovery["type"], discovery["port"]) == (["qss-exporter"], "A", 9877)
    shutil.copy(DEPLOY / source, tmp_path / "prometheus.yml")
    (tmp_path / "rules").symlink_to(REPO / "dashboards" / "rules")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


# -------------------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """`kubectl kustomize` of the overlay; missing kubectl is a skip on a laptop but a failure in CI."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI"):
            pytest.fail(
                "kubectl (with its built-in kustomize) is required in CI to render deploy/kubernetes-replicated"
            )
        pytest.skip("kubectl not installed")
    result = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_overlay_matches_the_kubernetes_schemas(rendered: list[dict[str, Any]], version: str) -> None:
    kubernetes_validate = _tool("kubernetes_validate")
    for document in rendered:
        if document["kind"] == "ServiceMonitor":
            jsonschema.validate(document, SERVICE_MONITOR_SCHEMA)
            continue
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = f"{document['kind']} {document['metadata']['name']}"
            pytest.fail(f"{where}: {error.message} at {'.'.join(map(str, error.path))}")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered) == [
        ("ConfigMap", "qss-exporter"),
        ("Deployment", "qss-exporter"),
        ("Deployment", "qss-exporter-redis"),
        ("PodDisruptionBudget", "qss-exporter"),
        ("Secret", "qss-exporter"),
        ("Secret", "qss-exporter-redis"),
        ("Service", "qss-exporter"),
        ("Service", "qss-exporter-redis"),
        ("ServiceMonitor", "qss-exporter"),
    ]


def test_the_overlay_runs_two_replicas_that_reach_redis_and_are_never_both_evicted(
    rendered: list[dict[str, Any]],
) -> None:
    exporter = named(rendered, "Deployment", "qss-exporter")
    assert exporter["spec"]["replicas"] == 2
    assert exporter["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = exporter["spec"]["template"]
    labels = pod["metadata"]["labels"]
    budget = named(rendered, "PodDisruptionBudget", "qss-exporter")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    # Redis is neither behind the exporter's Service, nor counted by its budget, nor scraped as an exporter.
    redis = named(rendered, "Deployment", "qss-exporter-redis")
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    for selector in (named(rendered, "Service", "qss-exporter")["spec"]["selector"], budget["selector"]["matchLabels"]):
        assert not selector.items() <= redis_labels.items()
    redis_service = named(rendered, "Service", "qss-exporter-redis")
    assert redis_service["spec"]["selector"].items() <= redis_labels.items()
    monitor = named(rendered, "ServiceMonitor", "qss-exporter")
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= redis_service["metadata"]["labels"].items()
    # The one password: Redis requires it, the exporter reads it from the mounted Secret.
    (redis_container,) = redis["spec"]["template"]["spec"]["containers"]
    (variable,) = redis_container["env"]
    assert variable["valueFrom"]["secretKeyRef"] == {"name": "qss-exporter-redis", "key": "password"}
    assert "$(REDIS_PASSWORD)" in redis_container["args"]
    (container,) = pod["spec"]["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes["redis"]["secret"]["secretName"] == "qss-exporter-redis"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # not ready until Redis answered
    config = yaml.safe_load(named(rendered, "ConfigMap", "qss-exporter")["data"]["config.yaml"])
    redis_config = config["state"]["redis"]
    url = urlsplit(redis_config["url"])
    assert (url.hostname, url.port) == ("qss-exporter-redis", redis_service["spec"]["ports"][0]["port"])
    assert redis_config["password_file"].endswith("/password")
    assert redis_config["password_file"].replace("${REDIS_SECRETS_DIR:-", "").startswith(mounts["redis"])


def test_the_overlay_config_passes_check_config(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(named(rendered, "ConfigMap", "qss-exporter")["data"]["config.yaml"])
    directories = {
        "SECRETS_DIR": ("qss-exporter", tmp_path / "secrets"),
        "REDIS_SECRETS_DIR": ("qss-exporter-redis", tmp_path / "redis"),
    }
    for secret, directory in directories.values():
        directory.mkdir()
        for key, value in named(rendered, "Secret", secret)["stringData"].items():
            (directory / key).write_text(value)
    result = check_config(config, {name: str(directory) for name, (_, directory) in directories.items()})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "REPLACE_WITH_A_LONG_RANDOM_PASSWORD" not in result.stdout + result.stderr
