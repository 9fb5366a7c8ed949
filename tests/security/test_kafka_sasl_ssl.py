"""The worker as a process against a real broker over SASL_SSL (SCRAM-SHA-512, TLS verified
against a CA made for the test): it consumes, delivers and dead-letters; a wrong password or
a broker certificate it cannot verify halts it (exit 3) with a clear message, and nothing is
committed. Setup and checks use the broker's PLAINTEXT listener; the worker sees only the
SASL_SSL one."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import (
    SaslSslBroker,
    committed_offsets,
    consume_all,
    create_topic,
    produce,
    unique_name,
)
from tests.support.tls import CertificateAuthority
from tests.support.worker import (
    drained,
    start_worker,
    wait_until,
    worker_env,
    write_mapping,
)

pytestmark = pytest.mark.integration

SCHEMA_REF = {
    "id": "https://ns.adobe.com/acme/schemas/orders",
    "contentType": "application/vnd.adobe.xed-full+json;version=1",
}


@dataclass
class Setup:
    broker: SaslSslBroker
    topic: str
    dlq: str
    group: str
    mappings_dir: Path
    tmp_path: Path

    def env(self, emulator: RunningEmulator, password: str, **properties: str) -> dict[str, str]:
        """The worker's environment: the SASL_SSL listener only, the password a secret."""
        return worker_env(
            self.broker.sasl_bootstrap,
            self.group,
            emulator.url,
            self.mappings_dir,
            self.dlq,
            AEP_CONNECTOR_KAFKA__PROPERTIES=json.dumps(
                {**self.broker.client_properties(), **properties}
            ),
            AEP_CONNECTOR_KAFKA__SECRET_PROPERTIES=json.dumps({"sasl.password": password}),
            AEP_CONNECTOR_OPS__HALT_LINGER_S="0",
        )

    def worker(self, env: dict[str, str], name: str) -> Any:
        return start_worker(env, self.tmp_path / f"{name}.log")

    def nothing_committed(self) -> bool:
        offsets = committed_offsets(self.broker.bootstrap, self.group, self.topic)
        return all(offset < 0 for offset in offsets.values())


@pytest.fixture
def setup(sasl_ssl_broker: SaslSslBroker, tmp_path: Path) -> Setup:
    bootstrap = sasl_ssl_broker.bootstrap
    topic = create_topic(bootstrap, unique_name("secure-orders"), partitions=2)
    dlq = create_topic(bootstrap, unique_name("secure-dlq"), partitions=1)
    mappings = tmp_path / "mappings"
    write_mapping(
        mappings,
        "orders",
        {
            "source": {"topics": [topic], "format": "json"},
            "target": {"datasetId": "ds-orders", "schemaRef": SCHEMA_REF},
            "mappings": [
                {"source": "id", "destination": "_id"},
                {"source": "n", "destination": "_acme.n"},
            ],
        },
    )
    return Setup(sasl_ssl_broker, topic, dlq, unique_name("secure-group"), mappings, tmp_path)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with start_emulator({"ims_org_id": "ACME@AdobeOrg"}, tmp_path) as running:
        yield running


def orders(count: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{n}".encode(), orjson.dumps({"id": f"id-{n}", "n": n})) for n in range(count)]


def test_worker_consumes_delivers_and_dead_letters_over_sasl_ssl(
    setup: Setup, emulator: RunningEmulator
) -> None:
    poison = [(b"bad-1", b'{"id": "broken", '), (b"bad-2", b"\xff\xfe not json")]
    produce(setup.broker.bootstrap, setup.topic, [*orders(150), *poison, *orders(300)[150:]])
    env = setup.env(emulator, setup.broker.password)
    with setup.worker(env, "worker") as worker:
        wait_until(drained(setup.broker.bootstrap, setup.group, setup.topic), 120, "drain", worker)
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    accepted = sorted(m["message"]["body"]["xdmEntity"]["_acme"]["n"] for m in emulator.messages())
    assert accepted == list(range(300))
    dead = consume_all(setup.broker.bootstrap, setup.dlq, 2, timeout_s=20)
    assert sorted(m.value() for m in dead) == sorted(value for _key, value in poison)
    for message in dead:
        headers = dict(message.headers())
        assert headers["aep.dlq.stage"] == b"decode"
    assert setup.broker.password not in worker.output()


def test_wrong_password_halts_with_exit_3_and_commits_nothing(
    setup: Setup, emulator: RunningEmulator
) -> None:
    produce(setup.broker.bootstrap, setup.topic, orders(20))
    wrong = "not-the-password"
    with setup.worker(setup.env(emulator, wrong), "wrong-password") as worker:
        status = worker.wait_exit(timeout_s=90)
        output = worker.output()
    assert status == 3, output[-3000:]
    halted = [line for line in output.splitlines() if '"halted: ' in line]
    assert len(halted) == 1, output[-3000:]
    assert "Kafka authentication failed" in halted[0]
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in halted[0]
    assert wrong not in output
    assert setup.nothing_committed()
    assert emulator.messages() == []


def test_broker_certificate_from_an_unknown_ca_halts(
    setup: Setup, emulator: RunningEmulator, tmp_path: Path
) -> None:
    produce(setup.broker.bootstrap, setup.topic, orders(5))
    other_ca = CertificateAuthority(tmp_path / "pki", "not-the-brokers").pem
    env = setup.env(emulator, setup.broker.password, **{"ssl.ca.location": str(other_ca)})
    with setup.worker(env, "unknown-ca") as worker:
        status = worker.wait_exit(timeout_s=90)
        output = worker.output()
    assert status == 3, output[-3000:]
    assert "Kafka TLS certificate failure" in output
    assert "certificate verify failed" in output
    assert setup.nothing_committed()
    assert emulator.messages() == []
