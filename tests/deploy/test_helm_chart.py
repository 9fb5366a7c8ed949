"""The Helm chart: lint, render every ci/ scenario, validate every manifest offline against the
Kubernetes schemas, and check the behaviours an operator relies on."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from connector.mapping import MappingLoadError, TargetDefaults, load_mappings
from connector.settings import ConfigError, env_var_name, iter_fields, load_settings
from tests.deploy import chart_schema
from tests.deploy.conftest import (
    CHART,
    NAMESPACE,
    REPO,
    SCENARIOS,
    Helm,
    Rendered,
    scenario_file,
)

pytestmark = pytest.mark.integration

#: The oldest and the newest Kubernetes schemas kubernetes-validate ships that the chart targets.
KUBE_SCHEMA_VERSIONS = ("1.25.0", "1.37.0")
#: Custom resources: not in the Kubernetes schemas, checked structurally below.
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),  # tests/deploy/test_monitoring.py
}
BASE_KINDS = {"Deployment", "ConfigMap", "Service", "ServiceAccount"}
EXPECTED_KINDS = {
    "minimal": BASE_KINDS,
    "existing-secret": BASE_KINDS,
    "hpa": BASE_KINDS | {"HorizontalPodAutoscaler", "PodDisruptionBudget"},
    "full": BASE_KINDS | {"Secret", "PodDisruptionBudget", "ScaledObject", "ServiceMonitor"},
    "monitoring": BASE_KINDS | {"ServiceMonitor", "PrometheusRule"},
}
SETTING_ENV_NAMES = {env_var_name(path) for path, *_ in iter_fields()}


def test_every_ci_scenario_is_covered() -> None:
    assert set(SCENARIOS) == set(EXPECTED_KINDS), "add the new ci/ scenario to EXPECTED_KINDS"


# --- lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(chart: Helm, scenario: str) -> None:
    done = chart.run("lint", str(CHART), "--strict", "--values", str(scenario_file(scenario)))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "[WARNING]" not in output, output
    assert "[ERROR]" not in output, output
    # Lint reports a template `fail` as INFO and still passes: treat it as the error it is.
    assert "Fail:" not in output, output


def test_helm_lint_rejects_values_off_the_schema(chart: Helm) -> None:
    done = chart.run(
        "lint",
        str(CHART),
        "--strict",
        "--values",
        str(scenario_file("minimal")),
        "--set",
        "config.kafka.bootstrap_server=kafka:9092",
    )
    assert done.returncode != 0
    assert "bootstrap_server" in done.stdout + done.stderr


# --- Kubernetes schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_SCHEMA_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_manifests_match_kubernetes_schemas(
    chart: Helm, scenario: str, version: str
) -> None:
    rendered = chart.scenario(scenario)
    assert rendered.kinds == EXPECTED_KINDS[scenario]
    for doc in rendered.docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            continue  # test_custom_resources_are_well_formed
        # Strict schemas: an unknown or misplaced field fails too. A kind without a schema
        # raises SchemaNotFoundError, so nothing is skipped silently.
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {where}: {exc.message}")


def test_every_template_is_rendered_by_some_scenario(chart: Helm) -> None:
    rendered_sources: set[str] = set()
    for scenario in SCENARIOS:
        text = chart.scenario(scenario).text
        rendered_sources |= set(re.findall(r"^# Source: aep-connector/(\S+)$", text, re.M))
    templates = {f"templates/{p.name}" for p in (CHART / "templates").glob("*.yaml") if p.is_file()}
    assert templates - rendered_sources == set()


def test_custom_resources_are_well_formed(chart: Helm) -> None:
    rendered = chart.scenario("full")
    deployment = rendered.deployment
    env = rendered.env
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"

    scaled = rendered.one("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["namespace"] == NAMESPACE
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert isinstance(spec["pollingInterval"], int)
    assert spec["pollingInterval"] > 0
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata values are strings"
    assert {"bootstrapServers", "consumerGroup", "lagThreshold"} <= metadata.keys()
    # The scaler must measure the lag of the group the worker actually joins.
    assert metadata["consumerGroup"] == env["AEP_CONNECTOR_KAFKA__GROUP_ID"]["value"]
    assert metadata["bootstrapServers"] == env["AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS"]["value"]
    assert int(metadata["lagThreshold"]) > 0
    assert metadata["offsetResetPolicy"] in ("earliest", "latest")
    assert trigger["authenticationRef"] == {"name": "kafka-sasl"}

    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    if monitor["metadata"]["namespace"] != NAMESPACE:
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert service["spec"]["selector"].items() <= rendered.pod["metadata"]["labels"].items()


def test_keda_defaults_follow_the_worker_settings(chart: Helm) -> None:
    rendered = chart.scenario("minimal", sets=["keda.enabled=true"])
    metadata = rendered.one("ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert metadata["bootstrapServers"] == "kafka-bootstrap.kafka.svc:9092"
    assert metadata["consumerGroup"] == "aep-connector"
    assert "topic" not in metadata
    assert "authenticationRef" not in rendered.one("ScaledObject")["spec"]["triggers"][0]


def test_hpa_targets_the_deployment_and_owns_replicas(chart: Helm) -> None:
    rendered = chart.scenario("hpa")
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert "replicas" not in rendered.deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == rendered.deployment["metadata"]["name"]
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}


def test_without_autoscaling_the_deployment_has_replicas(chart: Helm) -> None:
    rendered = chart.scenario("minimal", sets=["replicaCount=6"])
    assert rendered.deployment["spec"]["replicas"] == 6


# --- rolling on change ----------------------------------------------------------------------


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_mapping_change_changes_the_checksum(chart: Helm, tmp_path: Path) -> None:
    minimal = scenario_file("minimal")
    first = chart.template(minimal).annotations["checksum/mappings"]
    again = chart.template(minimal).annotations["checksum/mappings"]
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert first == again, "the checksum must be deterministic, or every upgrade rolls the pods"

    mappings = yaml.safe_load(minimal.read_text(encoding="utf-8"))["mappings"]
    edited = {name: text.replace("now()", "currentTimestamp()") for name, text in mappings.items()}
    assert edited != mappings
    changed = chart.template(minimal, _write(tmp_path / "edit.yaml", {"mappings": edited}))
    assert changed.annotations["checksum/mappings"] != first

    added = {"mappings": {"crm.yaml": "topic: crm\nformat: json\n"}}
    more = chart.template(minimal, _write(tmp_path / "add.yaml", added))
    assert more.annotations["checksum/mappings"] not in (
        first,
        changed.annotations["checksum/mappings"],
    )
    assert set(more.one("ConfigMap")["data"]) == {"web-commerce.yaml", "crm.yaml"}


def test_configmap_holds_the_mappings_byte_for_byte(chart: Helm) -> None:
    values = yaml.safe_load(scenario_file("full").read_text(encoding="utf-8"))
    configmap = chart.scenario("full").one("ConfigMap")
    assert configmap["data"] == values["mappings"]


def test_credential_change_changes_the_secret_checksum_only(chart: Helm) -> None:
    base = chart.scenario("full").annotations
    rotated = chart.scenario("full", sets=["secrets.clientSecret=rotated"]).annotations
    assert rotated["checksum/secret"] != base["checksum/secret"]
    assert rotated["checksum/mappings"] == base["checksum/mappings"]


# --- termination grace period ---------------------------------------------------------------


def _grace_and_drain(rendered: Rendered) -> tuple[int, float]:
    grace = rendered.pod["spec"]["terminationGracePeriodSeconds"]
    drain = float(rendered.env["AEP_CONNECTOR_OPS__SHUTDOWN_TIMEOUT_S"]["value"])
    return grace, drain


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_grace_period_exceeds_the_drain_bound(chart: Helm, scenario: str) -> None:
    grace, drain = _grace_and_drain(chart.scenario(scenario))
    assert isinstance(grace, int)
    assert grace > drain


@pytest.mark.parametrize(("drain", "expected"), [(20, 35), (50.5, 66), (1, 16), (0.2, 16)])
def test_grace_period_is_derived_from_the_drain_bound(
    chart: Helm, tmp_path: Path, drain: float, expected: int
) -> None:
    values = _write(tmp_path / "drain.yaml", {"config": {"ops": {"shutdown_timeout_s": drain}}})
    rendered = chart.template(scenario_file("minimal"), values)
    assert _grace_and_drain(rendered) == (expected, drain)


@pytest.mark.parametrize("grace", ["20", "10"])
def test_grace_period_not_above_the_drain_bound_fails(chart: Helm, grace: str) -> None:
    error = chart.template_error(
        scenario_file("minimal"), sets=[f"terminationGracePeriodSeconds={grace}"]
    )
    assert (
        f"terminationGracePeriodSeconds ({grace}) must be larger than "
        "config.ops.shutdown_timeout_s (20)"
    ) in error


# --- security, probes, mounts ---------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_strict_security_context(chart: Helm, scenario: str) -> None:
    rendered = chart.scenario(scenario)
    pod_spec = rendered.pod["spec"]
    pod_ctx = pod_spec["securityContext"]
    ctx = rendered.container["securityContext"]
    assert pod_ctx["runAsNonRoot"] is True
    assert ctx["runAsNonRoot"] is True
    assert isinstance(ctx["runAsUser"], int)
    assert ctx["runAsUser"] > 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "add" not in ctx["capabilities"]
    assert ctx.get("privileged", False) is False
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod_ctx["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod_spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_and_service_use_the_ops_port(chart: Helm, scenario: str) -> None:
    rendered = chart.scenario(scenario)
    container = rendered.container
    [port] = container["ports"]
    assert port["name"] == "ops"
    assert port["containerPort"] == int(rendered.env["AEP_CONNECTOR_OPS__PORT"]["value"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    [service_port] = rendered.one("Service")["spec"]["ports"]
    assert service_port["targetPort"] == "ops"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_mappings_mounted_read_only_where_the_worker_reads(chart: Helm, scenario: str) -> None:
    rendered = chart.scenario(scenario)
    mounts = {m["name"]: m for m in rendered.container["volumeMounts"]}
    volumes = {v["name"]: v for v in rendered.pod["spec"]["volumes"]}
    assert mounts["mappings"]["readOnly"] is True
    assert mounts["mappings"]["mountPath"] == rendered.env["AEP_CONNECTOR_MAPPINGS_DIR"]["value"]
    sources = [s["configMap"]["name"] for s in volumes["mappings"]["projected"]["sources"]]
    configmaps = [c["metadata"]["name"] for c in rendered.mapping_configmaps]
    values = yaml.safe_load(scenario_file(scenario).read_text(encoding="utf-8"))
    extra = [values["existingMappingsConfigMap"]] if values.get("existingMappingsConfigMap") else []
    assert sources == configmaps + extra
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert "emptyDir" in volumes["tmp"]


def test_no_mappings_fails_with_a_clear_message(chart: Helm) -> None:
    error = chart.template_error()
    assert "no mappings: set mappings (file name -> contents) or existingMappingsConfigMap" in error


def test_existing_mappings_configmap_alone_is_enough(chart: Helm, tmp_path: Path) -> None:
    values = _write(tmp_path / "v.yaml", {"existingMappingsConfigMap": "shared-mappings"})
    rendered = chart.template(values)
    assert rendered.of_kind("ConfigMap") == []
    assert "checksum/mappings" not in rendered.annotations
    [source] = next(v for v in rendered.pod["spec"]["volumes"] if v["name"] == "mappings")[
        "projected"
    ]["sources"]
    assert source == {"configMap": {"name": "shared-mappings"}}


# --- credentials ----------------------------------------------------------------------------


def test_existing_secret_is_used_and_no_secret_rendered(chart: Helm) -> None:
    rendered = chart.scenario("existing-secret")
    assert rendered.of_kind("Secret") == []
    assert "checksum/secret" not in rendered.annotations
    assert "must-not-be-rendered" not in rendered.text
    refs = {
        name: entry["valueFrom"]["secretKeyRef"]
        for name, entry in rendered.env.items()
        if "valueFrom" in entry
    }
    assert refs == {
        "AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_ID": {
            "name": "aep-connector-credentials",
            "key": "client-id",
        },
        "AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET": {
            "name": "aep-connector-credentials",
            "key": "client-secret",
        },
        "AEP_CONNECTOR_KAFKA__SECRET_PROPERTIES": {
            "name": "aep-connector-credentials",
            "key": "kafka-secret-properties",
        },
    }


def test_chart_secret_holds_credentials_and_env_only_references_it(chart: Helm) -> None:
    values = yaml.safe_load(scenario_file("full").read_text(encoding="utf-8"))["secrets"]
    rendered = chart.scenario("full")
    secret = rendered.one("Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["client-id"] == values["clientId"]
    assert data["client-secret"] == values["clientSecret"]
    assert json.loads(data["kafka-secret-properties"]) == values["kafkaSecretProperties"]
    assert (
        json.loads(data["schema-registry-secret-properties"])
        == values["schemaRegistrySecretProperties"]
    )
    # Plain text of a credential appears nowhere in the manifests (only base64 in the Secret).
    for plain in ("p8e-not-a-real-secret", "not-a-real-password"):
        assert plain not in rendered.text
    refs = [e["valueFrom"]["secretKeyRef"] for e in rendered.env.values() if "valueFrom" in e]
    assert len(refs) == 4
    assert {r["name"] for r in refs} == {secret["metadata"]["name"]}
    assert {r["key"] for r in refs} == set(secret["data"])


def test_no_credentials_no_secret(chart: Helm) -> None:
    rendered = chart.scenario("minimal")
    assert rendered.of_kind("Secret") == []
    assert not any("valueFrom" in e for e in rendered.env.values())


# --- the settings the worker receives ---------------------------------------------------------


def _worker_environment(rendered: Rendered) -> dict[str, str]:
    """The container's environment as the worker would see it, Secret references resolved
    from the chart-made Secret, or with stand-in values for a Secret made outside the chart."""
    stand_ins = {
        "client-id": "client-id-value",
        "client-secret": "client-secret-value",
        "kafka-secret-properties": '{"sasl.password": "pw"}',
        "schema-registry-secret-properties": '{"basic.auth.user.info": "u:pw"}',
    }
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in rendered.of_kind("Secret")
    }
    environment: dict[str, str] = {}
    for name, entry in rendered.env.items():
        if "value" in entry:
            environment[name] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        environment[name] = secrets.get(ref["name"], stand_ins)[ref["key"]]
    return environment


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_environment_is_a_valid_worker_configuration(
    chart: Helm, scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = chart.scenario(scenario)
    environment = _worker_environment(rendered)
    connector_vars = {n for n in environment if n.startswith("AEP_CONNECTOR_")}
    assert connector_vars - SETTING_ENV_NAMES == set(), "the chart sets unknown settings"

    for name in list(os.environ):
        if name.startswith("AEP_CONNECTOR_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    try:
        settings = load_settings()
    except ConfigError as exc:
        pytest.fail("the worker refuses the chart's environment:\n" + "\n".join(exc.problems))

    assert str(settings.mappings_dir) == rendered.container["volumeMounts"][0]["mountPath"]
    assert settings.ops.port == rendered.container["ports"][0]["containerPort"]
    grace = rendered.pod["spec"]["terminationGracePeriodSeconds"]
    assert grace >= math.ceil(settings.ops.shutdown_timeout_s) + 1


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_mappings_load_in_the_worker(chart: Helm, scenario: str, tmp_path: Path) -> None:
    """The ci/ mappings, as the ConfigMap delivers them, compile with the worker's loader."""
    rendered = chart.scenario(scenario)
    files = {name: text for cm in rendered.mapping_configmaps for name, text in cm["data"].items()}
    assert files, "every scenario here ships inline mappings"
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    env = rendered.env
    defaults = TargetDefaults(
        connection_id=env.get("AEP_CONNECTOR_PLATFORM__CONNECTION_ID", {}).get("value"),
        ims_org_id=env.get("AEP_CONNECTOR_PLATFORM__IMS_ORG_ID", {}).get("value"),
    )
    try:
        compiled = load_mappings(tmp_path, defaults)
    except MappingLoadError as exc:
        pytest.fail("the worker refuses the chart's mappings:\n" + "\n".join(exc.problems))
    assert len(compiled) == len(files)


def test_large_numbers_are_not_rendered_in_exponent_form(chart: Helm, tmp_path: Path) -> None:
    # YAML numbers reach templates as float64; a naive toString prints 1e+06.
    values = {"config": {"batching": {"max_request_bytes": 1000000, "max_records": 250}}}
    rendered = chart.template(scenario_file("minimal"), _write(tmp_path / "n.yaml", values))
    env = rendered.env
    assert env["AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES"]["value"] == "1000000"
    assert env["AEP_CONNECTOR_BATCHING__MAX_RECORDS"]["value"] == "250"


def test_null_keeps_the_worker_default(chart: Helm, tmp_path: Path) -> None:
    values = {"config": {"platform": {"sandbox_name": None}}}
    rendered = chart.template(scenario_file("minimal"), _write(tmp_path / "null.yaml", values))
    assert "AEP_CONNECTOR_PLATFORM__SANDBOX_NAME" not in rendered.env


# --- values, schema and relations between values ----------------------------------------------


def test_values_schema_config_follows_the_settings_model() -> None:
    committed = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert committed["properties"]["config"] == chart_schema.config_schema(), (
        "values.schema.json is out of date with connector/settings.py: run "
        "`.venv/bin/python -m tests.deploy.chart_schema --write`"
    )


@pytest.mark.parametrize(
    ("assignment", "complaint"),
    [
        ("config.kafka.bootstrap_server=kafka:9092", "bootstrap_server"),
        ("config.ops.log_format=xml", "log_format"),
        ("config.batching.max_in_flight_requests=0", "max_in_flight_requests"),
        ("config.platform.auth.client_secret=inline", "client_secret"),
        # Secret client properties belong in secrets.*SecretProperties, as the worker says.
        ("config.kafka.properties.sasl\\.password=inline", "sasl.password"),
        ("config.kafka.properties.ssl\\.key\\.pem=inline", "ssl.key.pem"),
        ("config.kafka.schema_registry_properties.basic\\.auth\\.user\\.info=u:p", "basic.auth"),
        ("config.platform.transport.client_key_password=inline", "client_key_password"),
        ("mappings.notes\\.txt=hello", "notes.txt"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
    ],
)
def test_values_schema_rejects(chart: Helm, assignment: str, complaint: str) -> None:
    error = chart.template_error(scenario_file("minimal"), sets=[assignment])
    assert "schema" in error, error
    assert complaint in error, error


def test_hpa_and_keda_are_exclusive(chart: Helm) -> None:
    error = chart.template_error(scenario_file("full"), sets=["autoscaling.enabled=true"])
    assert "autoscaling.enabled and keda.enabled are exclusive" in error


def test_pdb_needs_exactly_one_bound(chart: Helm) -> None:
    both = chart.template_error(
        scenario_file("minimal"),
        sets=["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1"],
    )
    assert "set minAvailable or maxUnavailable, not both" in both
    zero = chart.scenario(
        "minimal", sets=["podDisruptionBudget.enabled=true", "podDisruptionBudget.maxUnavailable=0"]
    )
    assert zero.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 0


def test_every_value_is_commented() -> None:
    """Each key in values.yaml has a comment right above it, unless it sits inside a value that
    is documented as a whole (a `# --` comment above its parent)."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    undocumented: list[str] = []
    whole: list[int] = []  # indents of ancestors documented as a whole
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z0-9_.\-]+):", line)
        if not match:
            continue
        indent = len(match.group(1))
        whole = [i for i in whole if i < indent]
        above = lines[index - 1].strip() if index else ""
        if not whole and not above.startswith("#"):
            undocumented.append(f"line {index + 1}: {line.strip()}")
        if _comment_block_has_marker(lines, index):
            whole.append(indent)
    assert undocumented == []


def _comment_block_has_marker(lines: list[str], index: int) -> bool:
    """Whether the comment block right above line `index` starts with `# --`."""
    i = index - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        if lines[i].strip().startswith("# --"):
            return True
        i -= 1
    return False


def test_install_helm_reuses_the_pinned_binary(helm: Path) -> None:
    again = subprocess.run(
        [str(REPO / "scripts" / "install-helm")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert Path(again.stdout.strip()) == helm
    assert "building" not in again.stderr
    info = subprocess.run(
        ["go", "version", "-m", str(helm)], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"^\s*mod\s+helm\.sh/helm/v3\s+v3\.22\.0\s", info, re.M), info
