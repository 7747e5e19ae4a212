"""deploy/: the Compose file and the Kubernetes manifests pass schema validation (offline, schemas shipped in
the PyPI packages check-jsonschema and kubernetes-validate), and what they point at exists and is valid."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the test extras
import pytest
import yaml

from tests.dashboards.artefacts import RULE_FILES
from tests.process import REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSIONS = ["1.29.0", "1.37.0"]
# The fields of the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1) that the manifest uses,
# checked strictly: no Python package ships the operator's CRD schema, so this is our own excerpt of it.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                        },
                    },
                },
            },
        },
    },
}


def _tool(module: str) -> Any:
    """A validator from the test extras; missing is a skip on a laptop but a failure in CI."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is required in CI (pip install -e '.[test]')")
        pytest.skip(f"{module} not installed (pip install -e '.[test]')")


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    documents: list[tuple[str, dict[str, Any]]] = []
    for name in kustomization["resources"]:
        documents.extend((name, doc) for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc)
    return documents


def test_compose_file_matches_the_compose_spec() -> None:
    _tool("check_jsonschema")
    result = _check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    _tool("check_jsonschema")
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    ports:\n", "    portz:\n", 1))
    assert _check_compose(broken).returncode != 0


def test_compose_mounts_exist_and_the_stack_is_wired() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"qss-exporter", "prometheus", "grafana"}
    assert services["qss-exporter"]["command"][0] == "demo"
    assert (DEPLOY / services["qss-exporter"]["build"]["context"] / "Dockerfile").exists()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port}: the demo stack listens on loopback only"
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == "qss-exporter"  # QssExporterDown selects this job
    assert job["static_configs"][0]["targets"] == ["qss-exporter:9877"]


def test_compose_prometheus_config_and_its_rules_pass_promtool(promtool: str, tmp_path: Path) -> None:
    """Laid out as in the container: prometheus.yml with the rules directory beside it."""
    shutil.copy(DEPLOY / "prometheus" / "prometheus.yml", tmp_path / "prometheus.yml")
    (tmp_path / "rules").symlink_to(REPO / "dashboards" / "rules")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "qss-exporter.yaml").read_text())["providers"]
    assert mounts["../dashboards"] == provider["options"]["path"]
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name in {path.name for path in (REPO / "dashboards").glob("*.json")}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_match_the_kubernetes_schemas(version: str) -> None:
    kubernetes_validate = _tool("kubernetes_validate")

    kinds = []
    for name, document in _manifests():
        kinds.append(document["kind"])
        if document["kind"] == "ServiceMonitor":
            jsonschema.validate(document, SERVICE_MONITOR_SCHEMA)
            continue
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {error.message} at {'.'.join(map(str, error.path))}")
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Secret", "Service", "ServiceMonitor"]


def test_the_kubernetes_validator_rejects_a_broken_manifest() -> None:
    kubernetes_validate = _tool("kubernetes_validate")

    deployment = next(doc for _, doc in _manifests() if doc["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    monitor = next(doc for _, doc in _manifests() if doc["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoint"] = monitor["spec"].pop("endpoints")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)


def test_kubernetes_objects_fit_together() -> None:
    objects = {document["kind"]: document for _, document in _manifests()}
    deployment, service = objects["Deployment"], objects["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"webhook": 8080, "metrics": 9877}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9877"
    monitor = objects["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]
    }
    assert service["metadata"]["name"] == "qss-exporter"  # the ServiceMonitor's job label, which the rules select
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert volumes["secrets"]["secret"]["secretName"] == objects["Secret"]["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_kubernetes_config_passes_check_config(tmp_path: Path) -> None:
    """The ConfigMap's config.yaml, with the Secret's files where the Deployment mounts them, is valid."""
    objects = {document["kind"]: document for _, document in _manifests()}
    config = tmp_path / "config.yaml"
    config.write_text(objects["ConfigMap"]["data"]["config.yaml"])
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key, value in objects["Secret"]["stringData"].items():
        (secrets / key).write_text(value)
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][-1].endswith("/config.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "qss_exporter", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "SECRETS_DIR": str(secrets)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
