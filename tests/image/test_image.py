"""The built image, run for real: its commands through `buildah run --isolation chroot`, and the
worker inside it against the real broker and the emulator on the host network, as UID 10001."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.image.buildah import (
    InImageProcess,
    WorkingContainer,
    image_config,
    mounted_root,
    working_container,
)
from tests.image.conftest import REPO_ROOT, BuiltImage
from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import consume_all, create_topic, produce, unique_name
from tests.support.report import measurement
from tests.support.worker import drained, free_port, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.image]

UID = 10001
MAPPINGS_DIR = "/etc/aep-connector/mappings"
ORG = "ACME@AdobeOrg"
SCHEMA_REF = {
    "id": "https://ns.adobe.com/acme/schemas/orders",
    "contentType": "application/vnd.adobe.xed-full+json;version=1",
}


@pytest.fixture
def container(image: BuiltImage) -> Iterator[WorkingContainer]:
    with working_container(image.id) as working:
        yield working


def project_version() -> str:
    import tomllib

    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        version: str = tomllib.load(handle)["project"]["version"]
    return version


def readable_dir(path: Path) -> Path:
    """A directory the image's unprivileged user can read once bind-mounted (pytest's tmp dirs
    are private to root)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    for child in path.iterdir():
        child.chmod(0o644)
    return path


# ---------------------------------------------------------------------------- the package


def test_version(container: WorkingContainer) -> None:
    done = container.run(["aep-connector", "--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"aep-connector, version {project_version()}"


def test_image_holds_exactly_this_checkouts_package(image: BuiltImage) -> None:
    """Every module of connector/ is in the image, byte for byte (a stale or stub package from the
    dependency-caching step of the build would differ), and nothing else is."""
    sources = {
        path.relative_to(REPO_ROOT / "connector").as_posix(): path.read_bytes()
        for path in (REPO_ROOT / "connector").rglob("*")
        if path.is_file() and path.suffix in (".py", ".typed")
    }
    with mounted_root(image.id) as root:
        packages = list(root.glob("opt/python/lib/python3.11/site-packages/connector"))
        packages += list(root.glob("usr/local/lib/python3.11/site-packages/connector"))
        assert len(packages) == 1, f"connector installed {len(packages)} times: {packages}"
        installed = {
            path.relative_to(packages[0]).as_posix(): path.read_bytes()
            for path in packages[0].rglob("*")
            if path.is_file() and path.suffix in (".py", ".typed")
        }
    assert sorted(installed) == sorted(sources)
    differing = [
        name
        for name in sources
        if hashlib.sha256(installed[name]).digest() != hashlib.sha256(sources[name]).digest()
    ]
    assert not differing, f"the image's copies differ from the checkout: {differing}"


def test_image_configuration(image: BuiltImage, container: WorkingContainer) -> None:
    config = image_config(image.id)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["aep-connector"]
    assert config["Cmd"] == ["run"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    done = container.run(["id", "-u"])
    assert done.stdout.strip() == str(UID)
    # The runtime stage has no compiler, and no package was fetched into it.
    done = container.run(["sh", "-c", "command -v gcc cc g++ make || true"])
    assert done.stdout.strip() == ""


def test_the_builds_ca_bundle_is_in_no_layer(image: BuiltImage) -> None:
    """The CA bundle was a build secret: mounted while downloading, stored nowhere."""
    body = max(image.build_ca_marker.splitlines(), key=len)  # one base64 line of the marker
    assert len(body) == 64
    with mounted_root(image.id) as root:
        done = subprocess.run(
            ["grep", "-rlF", "--", body, str(root)], capture_output=True, text=True, check=False
        )
    assert done.returncode == 1, f"the build's CA bundle is in the image: {done.stdout}"


# ---------------------------------------------------------------------------- check, emulator


def test_check_with_the_shipped_example_mappings(container: WorkingContainer) -> None:
    examples = REPO_ROOT / "mappings" / "examples"
    volumes = [(examples, MAPPINGS_DIR)]
    done = container.run(
        ["aep-connector", "check"],
        env={"AEP_CONNECTOR_PLATFORM__CONNECTION_ID": "inlet-1"},
        volumes=volumes,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Without a connection id the same mappings are refused: they were read from the mount.
    done = container.run(["aep-connector", "check"], volumes=volumes)
    assert done.returncode == 2
    for example in sorted(examples.glob("*.yaml")):
        assert f"{MAPPINGS_DIR}/{example.name}" in done.stderr


def envelope(entity_id: str) -> dict[str, Any]:
    return {
        "header": {
            "schemaRef": SCHEMA_REF,
            "imsOrgId": ORG,
            "datasetId": "ds-orders",
            "source": {"name": "image-test"},
        },
        "body": {"xdmMeta": {"schemaRef": SCHEMA_REF}, "xdmEntity": {"_id": entity_id}},
    }


def test_emulator(container: WorkingContainer, tmp_path: Path) -> None:
    config_dir = tmp_path / "emulator"
    config_dir.mkdir()
    (config_dir / "emulator.yaml").write_text(
        yaml.safe_dump(
            {"ims_org_id": ORG, "reject": [{"pointer": "/body/xdmEntity/_id", "equals": "no"}]}
        )
    )
    readable_dir(config_dir)
    port = free_port()
    argv = ["aep-connector", "emulator", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--config", "/etc/emulator/emulator.yaml"]
    with (
        container.start(
            argv, tmp_path / "emulator.log", volumes=[(config_dir, "/etc/emulator")]
        ) as process,
        httpx.Client(timeout=5) as client,
    ):
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.alive(), process.output()
            try:
                if client.get(f"{url}/__emulator/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the emulator in the image did not answer"
            time.sleep(0.1)
        pid = process.command_pid()
        assert pid is not None
        assert process.uid(pid) == UID
        emulator = RunningEmulator(url, process.popen, config_dir, process.log_file, client)
        response = client.post(
            emulator.batch_url("c1"),
            content=orjson.dumps({"messages": [envelope("yes"), envelope("no")]}),
            headers={"Content-Type": "application/json", "x-sandbox-name": "prod"},
        )
        assert response.status_code < 300, response.text
        answers = response.json()["responses"]
        assert "xactionId" in answers[0]
        assert answers[1]["statusCode"] == 400
        assert "reject rule" in answers[1]["message"]
        stats = emulator.stats()
        assert (stats["messages_accepted"], stats["messages_rejected"]) == (1, 1)


# ---------------------------------------------------------------------------- the worker


def orders_mapping(topic: str) -> dict[str, Any]:
    return {
        "name": "orders",
        "source": {"topics": [topic], "format": "json"},
        "target": {"datasetId": "ds-orders", "schemaRef": SCHEMA_REF, "sourceName": "image"},
        "mappings": [
            {"source": "id", "destination": "_id"},
            {"sourceType": "EXPRESSION", "source": "upper(name)", "destination": "_acme.name"},
            {"source": "n", "destination": "_acme.n"},
        ],
    }


def wait_while_alive(process: InImageProcess, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert process.alive(), f"the worker exited:\n{process.output()[-3000:]}"
        assert time.monotonic() < deadline, f"not drained in {timeout_s} s:\n{process.output()}"
        time.sleep(0.2)


def test_run_delivers_and_dead_letters_as_uid_10001(
    image: BuiltImage, container: WorkingContainer, kafka_bootstrap: str, tmp_path: Path
) -> None:
    total = 500
    topic = create_topic(kafka_bootstrap, unique_name("image-orders"), partitions=2)
    dlq = create_topic(kafka_bootstrap, unique_name("image-dlq"), partitions=1)
    group = unique_name("image-group")
    records = [
        (f"k{n}".encode(), orjson.dumps({"id": f"id-{n}", "name": f"order {n}", "n": n}))
        for n in range(total)
    ]
    poison = (b"poison", b'{"id": "broken", ')
    produce(kafka_bootstrap, topic, [*records[:250], poison, *records[250:]])
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "orders.yaml").write_text(yaml.safe_dump(orders_mapping(topic), sort_keys=False))
    readable_dir(mappings)

    config = image_config(image.id)
    command = [*config["Entrypoint"], *config["Cmd"]]  # what `docker run IMAGE` runs
    healthcheck = config["Healthcheck"]["Test"][1:]

    with start_emulator({"ims_org_id": ORG}, tmp_path) as emulator:
        settings = worker_env(kafka_bootstrap, group, emulator.url, Path(MAPPINGS_DIR), dlq)
        env = {k: v for k, v in settings.items() if k.startswith("AEP_CONNECTOR_")}
        ops = f"http://127.0.0.1:{env['AEP_CONNECTOR_OPS__PORT']}"
        probe_env = {"AEP_CONNECTOR_OPS__PORT": env["AEP_CONNECTOR_OPS__PORT"]}
        started = time.monotonic()
        with container.start(
            command, tmp_path / "worker.log", env=env, volumes=[(mappings, MAPPINGS_DIR)]
        ) as worker:
            wait_while_alive(worker, drained(kafka_bootstrap, group, topic), 180)
            elapsed = time.monotonic() - started
            pid = worker.command_pid()
            assert pid is not None, worker.output()
            assert worker.uid(pid) == UID
            assert httpx.get(f"{ops}/readyz", timeout=5).status_code == 200
            health = container.run(healthcheck, env=probe_env, timeout_s=30)
            assert health.returncode == 0, health.stdout + health.stderr
            worker.signal_command(signal.SIGTERM)
            assert worker.wait_exit() == 0, worker.output()[-3000:]
        # With the worker gone the same health check fails: it does probe the worker.
        health = container.run(healthcheck, env=probe_env, timeout_s=30)
        assert health.returncode != 0
        accepted = emulator.messages()

    measurement(
        "image test: worker in the image, 500 JSON records + 1 poison",
        f"{elapsed:.1f} s from `buildah run` to the last commit",
    )
    entities = [line["message"]["body"]["xdmEntity"] for line in accepted]
    assert sorted(e["_id"] for e in entities) == sorted(f"id-{n}" for n in range(total))
    assert all(e["_acme"]["name"] == f"ORDER {e['_acme']['n']}" for e in entities)
    letters = consume_all(kafka_bootstrap, dlq, 1, timeout_s=20)
    assert len(letters) == 1
    letter: Any = letters[0]
    headers = dict(letter.headers() or [])
    assert letter.key() == b"poison"
    assert letter.value() == poison[1]
    assert headers["aep.dlq.stage"] == b"decode"
    assert headers["aep.dlq.error.class"] == b"invalid_json"
