"""Emulator processes shared by the HTTP-level tests (one per configuration, started once per
session and reset before each test), and builders for valid messages."""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.support.emulator import REPO_ROOT, RunningEmulator, free_port, start_emulator

DATA = Path(__file__).parent / "data"

ORG = "5C1328435BF324E90A49402A@AdobeOrg"  # the seed examples' org
SEED_DATASET = "5da9452f7de80400007jc52a"
OTHER_DATASET = "6e00000000000000000000aa"
PROFILE_SCHEMA_ID = "https://ns.adobe.com/acme/schemas/profile-test"
CONTENT_TYPE = "application/vnd.adobe.xed-full+json;version=1"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
TOKEN_LIFETIME_S = 100
HEADERS = {"Content-Type": "application/json", "x-sandbox-name": "prod"}
FLOW_ID = "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2"
OTHER_FLOW_ID = "0c2f4b1a-7e3d-4a55-9b7e-2d4c8f1e6a90"


def seed_single() -> dict[str, Any]:
    """The single-message example of the API reference, as printed there."""
    result: dict[str, Any] = orjson.loads((DATA / "seed_single.json").read_bytes())
    return result


def seed_batch() -> dict[str, Any]:
    """The batch example of the API reference, as printed there."""
    result: dict[str, Any] = orjson.loads((DATA / "seed_batch.json").read_bytes())
    return result


def envelope(
    entity: dict[str, Any] | None = None,
    *,
    dataset: str = SEED_DATASET,
    schema_id: str | None = "https://ns.adobe.com/acme/schemas/event",
    org: str = ORG,
) -> dict[str, Any]:
    """A valid message around `entity` (by default a small ExperienceEvent)."""
    schema_ref: dict[str, Any] = {"contentType": CONTENT_TYPE}
    if schema_id is not None:
        schema_ref["id"] = schema_id
    if entity is None:
        entity = {"_id": "event-1", "timestamp": "2024-05-01T12:00:00Z"}
    return {
        "header": {
            "schemaRef": schema_ref,
            "imsOrgId": org,
            "datasetId": dataset,
            "source": {"name": "tests"},
        },
        "body": {"xdmMeta": {"schemaRef": copy.deepcopy(schema_ref)}, "xdmEntity": entity},
    }


def event(event_id: str, **fields: Any) -> dict[str, Any]:
    """A valid message whose entity has `_id` = event_id."""
    return envelope({"_id": event_id, "timestamp": "2024-05-01T12:00:00Z", **fields})


def main_config(tmp: Path) -> dict[str, Any]:
    return {
        "ims_org_id": ORG,
        "sync_validation_per_min": 3,
        "connections": {
            "open": {},
            "datasets": {"datasets": [SEED_DATASET, OTHER_DATASET]},
            "auth": {"authentication": True},
            "flow": {"require_flow_id": True},
            "dataflow": {"dataflows": {FLOW_ID: {"dataset": SEED_DATASET}, OTHER_FLOW_ID: {}}},
            "limited": {
                "rate_limit": {"requests_per_s": 0.01, "requests_burst": 2, "retry_after_s": 7}
            },
            "limited-messages": {"rate_limit": {"messages_per_s": 0.01, "messages_burst": 10}},
        },
        "credentials": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}],
        "token_lifetime_s": TOKEN_LIFETIME_S,
        "schemas": {PROFILE_SCHEMA_ID: str(DATA / "profile_schema.json")},
        "reject": [{"pointer": "/body/xdmEntity/_id", "equals": "reject-me"}],
        "record_file": str(tmp / "accepted.jsonl"),
    }


def _fresh(emulator: RunningEmulator) -> RunningEmulator:
    emulator.reset()
    return emulator


@pytest.fixture(scope="session")
def main_emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    tmp = tmp_path_factory.mktemp("emulator-main")
    with start_emulator(main_config(tmp), tmp) as emulator:
        yield emulator


@pytest.fixture
def emulator(main_emulator_process: RunningEmulator) -> RunningEmulator:
    """Connections configured, org checked, auth, rate limits, a schema, a reject rule."""
    return _fresh(main_emulator_process)


@pytest.fixture(scope="session")
def default_emulator_process() -> Iterator[RunningEmulator]:
    with start_emulator() as emulator:  # no config at all, no tmp_path: the helper's defaults
        yield emulator


@pytest.fixture
def default_emulator(default_emulator_process: RunningEmulator) -> RunningEmulator:
    """No configuration: any connection id, no auth, no limits."""
    return _fresh(default_emulator_process)


@pytest.fixture(scope="session")
def status_emulator_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningEmulator]:
    config = {"rejection_shape": "status", "strict": True, "sync_validation": "unsupported"}
    with start_emulator(config, tmp_path_factory.mktemp("emulator-status")) as emulator:
        yield emulator


@pytest.fixture
def status_emulator(status_emulator_process: RunningEmulator) -> RunningEmulator:
    """Rejections shaped {"status", "message"}; strict schemaRef.id; sync validation → 501."""
    return _fresh(status_emulator_process)


@pytest.fixture(scope="session")
def xaction_emulator_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningEmulator]:
    config = {"rejection_shape": "status_with_xaction", "require_sandbox_name": False}
    with start_emulator(config, tmp_path_factory.mktemp("emulator-xaction")) as emulator:
        yield emulator


@pytest.fixture
def xaction_emulator(xaction_emulator_process: RunningEmulator) -> RunningEmulator:
    """Rejections shaped {"xactionId", "status", "message"}; x-sandbox-name optional."""
    return _fresh(xaction_emulator_process)


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """A keep-alive client, as the connector uses."""
    with httpx.Client(timeout=10) as client:
        yield client


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (the one its default route uses),
    or None when it has none. No packet is sent: connecting a UDP socket only picks a route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104


@contextlib.contextmanager
def emulator_at(
    host: str,
    config: Mapping[str, Any],
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """An emulator process listening on `host` (the shared helper listens on 127.0.0.1 only);
    yields its base URL."""
    config_file = tmp_path / f"emulator-{time.monotonic_ns()}.yaml"
    config_file.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "connector", "emulator", "--host", host, "--port", str(port)]
    command += ["--config", str(config_file)]
    environment = {**os.environ, **(env or {})}
    with (config_file.with_suffix(".log")).open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment
        )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, config_file.with_suffix(".log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/__emulator/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"no emulator on {url}"
            time.sleep(0.02)  # poll interval while the process starts
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
