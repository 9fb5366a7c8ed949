"""Real Kafka and schema-registry services for the integration tests, and small helpers.

Where a service comes from, first match wins:
1. an address in the environment (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL);
2. testcontainers, when a Docker engine answers;
3. `scripts/local-kafka`, which runs the real broker and registry from Maven Central jars.
If none works the tests fail with a message saying what to install; they never skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_KAFKA = REPO_ROOT / "scripts" / "local-kafka"
REGISTRY_IMAGE = "apicurio/apicurio-registry:3.3.3"

INSTALL_HINT = (
    "Integration tests need a real Kafka broker and schema registry. Install Java 17+ and "
    "Apache Maven so that scripts/local-kafka can run them, or run a Docker engine, or set "
    "KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL."
)


class ServiceUnavailable(Exception):
    """No way to get the service; the message says what to install."""


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@contextmanager
def local_service(name: str, state_dir: Path) -> Iterator[str]:
    """Start one service with scripts/local-kafka in `state_dir`; stop it on exit."""
    with local_service_addresses(name, state_dir) as addresses:
        yield next(iter(addresses.values()))


@contextmanager
def local_service_addresses(name: str, state_dir: Path, *options: str) -> Iterator[dict[str, str]]:
    """Start one service with scripts/local-kafka (and `options`); yield every address it
    printed; stop it on exit."""
    addresses = _start_local_service(name, state_dir, *options)
    try:
        yield addresses
    finally:
        stop_local_service(name, state_dir)


def start_local_service(name: str, state_dir: Path) -> str:
    """Start (or start again: a broker keeps its ports and data) one service in `state_dir`
    with scripts/local-kafka; returns its address once it answers."""
    return next(iter(_start_local_service(name, state_dir).values()))


def stop_local_service(name: str, state_dir: Path) -> None:
    """Stop a service started by start_local_service (SIGTERM: a clean shutdown)."""
    subprocess.run(_local_kafka(name, state_dir, "stop"), capture_output=True, check=False)


def _start_local_service(name: str, state_dir: Path, *options: str) -> dict[str, str]:
    result = subprocess.run(
        [*_local_kafka(name, state_dir, "start"), *options, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceUnavailable(f"{INSTALL_HINT}\nscripts/local-kafka said:\n{result.stderr}")
    sys.stderr.write(result.stderr)
    addresses: dict[str, str] = json.loads(result.stdout)
    return addresses


def _local_kafka(name: str, state_dir: Path, action: str) -> list[str]:
    return [sys.executable, str(LOCAL_KAFKA), action, "--only", name, "--state-dir", str(state_dir)]


@contextmanager
def kafka_service(state_dir: Path) -> Iterator[str]:
    """A bootstrap address of a real broker, for the whole test session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with local_service("kafka", state_dir) as bootstrap:
        wait_for_broker(bootstrap)
        yield bootstrap


@contextmanager
def registry_service(state_dir: Path) -> Iterator[str]:
    """A Confluent-compatible schema registry URL, for the whole test session."""
    given = os.environ.get("SCHEMA_REGISTRY_URL")
    if given:
        yield given
        return
    if docker_available():
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        with DockerContainer(REGISTRY_IMAGE).with_exposed_ports(8080) as container:
            wait_for_logs(container, "Installed features", timeout=120)
            host, port = container.get_container_host_ip(), container.get_exposed_port(8080)
            yield f"http://{host}:{port}/apis/ccompat/v7"
        return
    with local_service("registry", state_dir) as url:
        yield url


@dataclass(frozen=True)
class SaslSslBroker:
    """A broker with a SASL_SSL listener (SCRAM-SHA-512) beside a PLAINTEXT one, and a user.

    Tests set up topics and check offsets over `bootstrap` (PLAINTEXT); the worker under test
    connects to `sasl_bootstrap` only, verifying the broker against `ca_location`.
    """

    bootstrap: str
    sasl_bootstrap: str
    ca_location: str
    username: str
    password: str

    def client_properties(self) -> dict[str, str]:
        """librdkafka properties for the SASL_SSL listener, all but the password."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": self.username,
            "ssl.ca.location": self.ca_location,
        }


@contextmanager
def sasl_ssl_kafka_service(state_dir: Path) -> Iterator[SaslSslBroker]:
    """A broker with a SASL_SSL listener for the whole test session: the one described by
    KAFKA_SASL_SSL_BOOTSTRAP_SERVERS, KAFKA_BOOTSTRAP_SERVERS, KAFKA_SSL_CA_LOCATION,
    KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD when set, else its own from
    `scripts/local-kafka --sasl-ssl` (a user with a password made up here)."""
    given = os.environ.get("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS")
    if given:
        yield SaslSslBroker(
            os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            given,
            os.environ["KAFKA_SSL_CA_LOCATION"],
            os.environ["KAFKA_SASL_USERNAME"],
            os.environ["KAFKA_SASL_PASSWORD"],
        )
        return
    username, password = "aep-connector-test", secrets.token_hex(12)
    options = ["--sasl-ssl", "--scram-user", f"{username}:{password}"]
    with local_service_addresses("kafka", state_dir, *options) as addresses:
        broker = SaslSslBroker(
            addresses["KAFKA_BOOTSTRAP_SERVERS"],
            addresses["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"],
            addresses["KAFKA_SSL_CA_LOCATION"],
            username,
            password,
        )
        wait_for_broker(broker.bootstrap)
        wait_for_broker(
            broker.sasl_bootstrap,
            config={**broker.client_properties(), "sasl.password": password},
        )
        yield broker


def wait_for_broker(
    bootstrap: str, timeout_s: float = 60.0, config: dict[str, str] | None = None
) -> None:
    """Wait until the broker serves metadata (its port may answer a little earlier)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(config or {})})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceUnavailable(f"broker at {bootstrap} did not answer: {exc}") from exc


def unique_name(prefix: str) -> str:
    """Topic and group names unique per test, so tests never see each other's data."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


#: Topics in tests accept records up to 5 MB, so that "too large for the API" can be produced.
TOPIC_CONFIG = {"max.message.bytes": str(5 * 1024 * 1024)}


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=TOPIC_CONFIG)
    futures = admin.create_topics([topic], operation_timeout=30)
    futures[name].result(timeout=60)
    # Creation is acknowledged before every partition has a leader; wait for the leaders.
    for _ in range(100):
        metadata = admin.list_topics(name, timeout=10).topics[name]
        leaders = [p.leader for p in metadata.partitions.values()]
        if metadata.error is None and len(leaders) == partitions and min(leaders) >= 0:
            return name
        admin.poll(0.1)
    raise AssertionError(f"topic {name} has no leaders for all {partitions} partitions")


Headers = list[tuple[str, bytes]]
Record = tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, Headers]


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[Record],
    partition: int | None = None,
) -> int:
    """Produce (key, value[, headers]) records and wait until every one is acknowledged."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": True,
            "message.max.bytes": 5 * 1024 * 1024,
        }
    )
    failures: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    count = 0
    for record in records:
        key, value = record[0], record[1]
        headers = record[2] if len(record) == 3 else None  # type: ignore[misc]
        kwargs: dict[str, object] = {"key": key, "value": value, "on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = headers
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records were not delivered"
    assert not failures, f"delivery failed: {failures[:3]}"
    return count


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The high watermark of every partition of `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("probe")})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        result = {}
        for partition in metadata.partitions:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )
            result[partition] = high
        return result
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (-1001 when none is committed)."""
    import time

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        for attempt in range(50):
            try:
                committed = consumer.committed(partitions, timeout=10)
                return {tp.partition: tp.offset for tp in committed}
            except KafkaException as exc:
                # The group coordinator may still be loading right after the broker started.
                if not exc.args[0].retriable() and "coordinator" not in str(exc).lower():
                    raise
                if attempt == 49:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")
    finally:
        consumer.close()


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[object]:
    """Read `expected` records of `topic` from the beginning (no group commits)."""
    import time

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[object] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is None:
                    messages.append(message)
        return messages
    finally:
        consumer.close()
