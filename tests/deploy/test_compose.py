"""docker-compose.yml: valid against the Compose specification's JSON schema, and wired so that
`docker compose up` runs the worker against the broker, the registry and the emulator.

There is no Docker engine on the development and CI machines, so nothing is started here; the
file is checked as data. The schema is the one check-jsonschema vendors from the compose-spec
project (Apache-2.0; its licence ships beside it in the package) for its `check-compose-spec` hook.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import math
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from connector.mapping import MappingLoadError, TargetDefaults, load_mappings
from connector.settings import ConfigError, env_var_name, iter_fields, load_settings
from tests.deploy.conftest import REPO
from tests.support.kafka import end_offsets, unique_name

COMPOSE_FILE = REPO / "docker-compose.yml"
SERVICES = {"kafka", "registry", "emulator", "topic-init", "producer", "worker"}
SETTING_ENV_NAMES = {env_var_name(path) for path, *_ in iter_fields()}


def compose_schema() -> dict[str, Any]:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendored.joinpath("compose-spec.json").read_text("utf-8"))
    return schema


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_schema_is_the_compose_specification() -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    assert {"services", "configs", "volumes", "networks"} <= schema["properties"].keys()


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


@pytest.mark.parametrize(
    ("path", "bad_value"),
    [
        (("services", "worker", "depends_on"), 5),
        (("services", "worker", "stop_grace_period"), ["35s"]),
        (("services", "kafka", "healthcheck", "intervall"), "5s"),
        (("services", "worker", "restart_policy"), "always"),
    ],
)
def test_the_schema_catches_mistakes(
    compose: dict[str, Any], path: tuple[str, ...], bad_value: object
) -> None:
    """The validation has teeth: a wrong type or an unknown key is reported."""
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad_value
    errors = schema_errors(broken)
    assert errors, f"setting {'.'.join(path)} = {bad_value!r} passed the schema"


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_images_are_pinned_and_name_no_registry_host(compose: dict[str, Any]) -> None:
    images = {name: svc["image"] for name, svc in compose["services"].items()}
    for name, image in images.items():
        first = image.split("/")[0]
        has_more = "/" in image
        assert not (has_more and ("." in first or ":" in first or first == "localhost")), (
            f"{name}: {image} names a registry host"
        )
        assert ":" in image.split("/")[-1], f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image} is not pinned"
    assert images["kafka"].startswith("apache/kafka:")
    assert images["registry"] == "apicurio/apicurio-registry:3.3.3"
    built = {n for n, svc in compose["services"].items() if "build" in svc}
    assert built == {"emulator", "topic-init", "producer", "worker"}
    assert {images[n] for n in built} == {"aep-connector:local"}


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    """(host address, host port, container port) of each published port, in either syntax."""
    found: list[tuple[str | None, str, str]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append(
                (entry.get("host_ip"), str(entry.get("published", "")), str(entry["target"]))
            )
            continue
        parts = str(entry).rsplit(":", 2)
        if len(parts) == 3:
            found.append((parts[0].strip("[]"), parts[1], parts[2]))
        elif len(parts) == 2:
            found.append((None, parts[0], parts[1]))
        else:
            found.append((None, "", parts[0]))
    return found


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    """Nothing here is hardened for a network (the emulator's control API, an unauthenticated
    broker and registry): publish on 127.0.0.1, not on every interface of the host."""
    published = {
        name: published_ports(service)
        for name, service in compose["services"].items()
        if service.get("ports")
    }
    assert set(published) == {"kafka", "registry", "emulator", "worker"}
    for name, ports in published.items():
        for host_ip, host_port, _container_port in ports:
            assert host_ip == "127.0.0.1", (
                f"{name}: port {host_port} is published on all interfaces"
            )
            assert host_port, f"{name}: a port without a fixed host port is published"
    assert ("127.0.0.1", "8090", "8090") in published["emulator"]
    assert ("127.0.0.1", "9094", "9094") in published["kafka"]


@pytest.mark.parametrize(
    "entry",
    ["8090:8090", "0.0.0.0:8090:8090", "8090", {"target": 8090, "published": 8090}],
)
def test_the_loopback_check_catches_every_interface(compose: dict[str, Any], entry: object) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["emulator"]["ports"] = [entry]
    with pytest.raises(AssertionError):
        test_ports_are_published_on_loopback_only(broken)


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "healthcheck" in compose["services"]["kafka"]


def test_emulator_serves_on_the_port_the_worker_calls(compose: dict[str, Any]) -> None:
    emulator = compose["services"]["emulator"]
    # All interfaces inside its container, so that the worker container can reach it.
    assert emulator["command"] == ["emulator", "--host", "0.0.0.0", "--port", "8090"]  # noqa: S104
    worker_env = compose["services"]["worker"]["environment"]
    assert worker_env["AEP_CONNECTOR_PLATFORM__BASE_URL"] == "http://emulator:8090"
    # The image's HEALTHCHECK probes the worker's /healthz; the emulator needs its own.
    assert "8090/__emulator/health" in " ".join(emulator["healthcheck"]["test"])


def test_worker_wiring(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    env = worker["environment"]
    assert worker["command"] == ["run"]
    assert env["AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_URL"].startswith("http://registry:8080/")
    mount = f"./mappings/examples:{env['AEP_CONNECTOR_MAPPINGS_DIR']}:ro"
    assert mount in worker["volumes"]
    assert (REPO / "mappings" / "examples").is_dir()
    assert worker["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "registry": {"condition": "service_started"},
        "emulator": {"condition": "service_healthy"},
        "topic-init": {"condition": "service_completed_successfully"},
    }
    assert worker["read_only"] is True
    assert worker["cap_drop"] == ["ALL"]
    port = env["AEP_CONNECTOR_OPS__PORT"]
    assert f"127.0.0.1:{port}:{port}" in worker["ports"]
    grace = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert grace, worker["stop_grace_period"]
    assert int(grace.group(1)) > math.ceil(float(env["AEP_CONNECTOR_OPS__SHUTDOWN_TIMEOUT_S"]))


def test_worker_environment_is_a_valid_configuration(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose["services"]["worker"]["environment"]
    assert set(env) - SETTING_ENV_NAMES == set(), "unknown settings in the worker's environment"
    for name in list(os.environ):
        if name.startswith("AEP_CONNECTOR_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        settings = load_settings()
    except ConfigError as exc:
        pytest.fail("the worker refuses the compose environment:\n" + "\n".join(exc.problems))
    topic_init_env = compose["services"]["topic-init"]["environment"]
    assert settings.dead_letter.topic == topic_init_env["DEAD_LETTER_TOPIC"]


def test_producer_runs_after_the_topics_exist(compose: dict[str, Any]) -> None:
    producer = compose["services"]["producer"]
    topic_init = compose["services"]["topic-init"]
    assert topic_init["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert producer["depends_on"] == {"topic-init": {"condition": "service_completed_successfully"}}
    for service in (producer, topic_init):
        assert "./mappings/examples:/examples:ro" in service["volumes"]
        assert service["configs"] == [
            {"source": "examples-script", "target": "/opt/compose/examples.py"}
        ]
    assert producer["entrypoint"][-1] == "produce"
    assert topic_init["entrypoint"][-1] == "topics"


# --- the inline script of topic-init and producer ----------------------------------------------


@pytest.fixture(scope="module")
def examples_script(compose: dict[str, Any]) -> ModuleType:
    content = compose["configs"]["examples-script"]["content"]
    # Compose interpolates $VAR in inline content; the script must not contain any.
    assert "$" not in content
    module = ModuleType("compose_examples")
    exec(compile(content, "docker-compose.yml:examples-script", "exec"), module.__dict__)  # noqa: S102
    return module


def test_script_finds_mappings_topics_and_inputs(
    examples_script: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "web-commerce.yaml").write_text(
        "name: web-commerce\nsource:\n  topics: [web.commerce, web.commerce.eu]\n"
        "target: {datasetId: d}\nmappings: []\n"
    )
    (tmp_path / "web-commerce.input.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    (tmp_path / "web-commerce.expected.jsonl").write_text('{"x": 1}\n')
    (tmp_path / "profile.yaml").write_text(
        "source:\n  topics: [crm.profiles]\n  format: avro\ntarget: {datasetId: d}\n"
    )
    (tmp_path / "profile-sample.json").write_text('[{"p": 1}, {"p": 2}, {"p": 3}]')
    (tmp_path / "profiles-other-input.jsonl").write_text('{"no": 1}\n')
    (tmp_path / "README.md").write_text("not a mapping")

    found = examples_script.example_mappings(tmp_path)
    assert found == [
        ("profile.yaml", ["crm.profiles"], "avro", [tmp_path / "profile-sample.json"]),
        (
            "web-commerce.yaml",
            ["web.commerce", "web.commerce.eu"],
            "json",
            [tmp_path / "web-commerce.input.jsonl"],
        ),
    ]
    assert examples_script.records(tmp_path / "web-commerce.input.jsonl") == [{"a": 1}, {"a": 2}]
    assert len(examples_script.records(tmp_path / "profile-sample.json")) == 3


def test_script_finds_the_shipped_examples(examples_script: ModuleType) -> None:
    """The producer has something to send for every example mapping that compose mounts."""
    found = examples_script.example_mappings(REPO / "mappings" / "examples")
    assert found, "mappings/examples has no mapping files"
    for name, topics, _fmt, inputs in found:
        assert topics, f"{name}: the producer only follows source.topics"
        assert inputs, f"{name}: no example input file (<stem>.input.jsonl) to produce"
        assert all(examples_script.records(path) for path in inputs)


def test_worker_loads_the_mounted_examples(compose: dict[str, Any]) -> None:
    """./mappings/examples, mounted as the worker's mappings directory, compiles as a whole."""
    env = compose["services"]["worker"]["environment"]
    defaults = TargetDefaults(
        connection_id=env["AEP_CONNECTOR_PLATFORM__CONNECTION_ID"],
        ims_org_id=env["AEP_CONNECTOR_PLATFORM__IMS_ORG_ID"],
    )
    try:
        compiled = load_mappings(REPO / "mappings" / "examples", defaults)
    except MappingLoadError as exc:
        pytest.fail("the worker refuses mappings/examples:\n" + "\n".join(exc.problems))
    assert compiled


@pytest.mark.integration
def test_script_creates_topics_and_produces_to_a_real_broker(
    examples_script: ModuleType,
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = unique_name("compose-example")
    dead_letter = unique_name("compose-dlq")
    (tmp_path / "orders.yaml").write_text(
        f"name: orders\nsource:\n  topics: [{topic}]\ntarget: {{datasetId: d}}\nmappings: []\n"
    )
    (tmp_path / "orders.input.jsonl").write_text('{"id": 1}\n{"id": 2}\n{"id": 3}\n')
    monkeypatch.setattr(examples_script, "EXAMPLES", tmp_path)

    examples_script.create_topics(kafka_bootstrap, 2, dead_letter)
    examples_script.create_topics(kafka_bootstrap, 2, dead_letter)  # a rerun finds them there
    examples_script.produce(kafka_bootstrap, 4)

    assert sum(end_offsets(kafka_bootstrap, topic).values()) == 4 * 3
    assert len(end_offsets(kafka_bootstrap, topic)) == 2
    assert sum(end_offsets(kafka_bootstrap, dead_letter).values()) == 0
