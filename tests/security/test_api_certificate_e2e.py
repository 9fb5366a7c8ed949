"""The worker as a process against an API whose certificate it does not trust: the failure is
logged as a certificate failure (not a transport retry), and the worker halts after a bound
(exit 3), committing nothing. (tests/delivery/test_transport.py has the CA bundle, the client
certificate and the proxy against the same kind of local server.)"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from connector.delivery.transport import CERTIFICATE_ATTEMPTS
from tests.support.kafka import committed_offsets, create_topic, produce, unique_name
from tests.support.tls import CertificateAuthority, https_server, server_context
from tests.support.worker import start_worker, worker_env, write_mapping

pytestmark = pytest.mark.integration


def test_untrusted_api_certificate_halts_after_a_bound(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique_name("tls-orders"))
    dlq = create_topic(kafka_bootstrap, unique_name("tls-dlq"))
    group = unique_name("tls-group")
    produce(
        kafka_bootstrap,
        topic,
        [(None, orjson.dumps({"id": f"id-{n}"})) for n in range(10)],
    )
    mappings = tmp_path / "mappings"
    write_mapping(
        mappings,
        "orders",
        {
            "source": {"topics": [topic], "format": "json"},
            "target": {"datasetId": "ds", "schemaRef": {"id": "https://ns.adobe.com/a/s"}},
            "mappings": [{"source": "id", "destination": "_id"}],
        },
    )
    api_ca = CertificateAuthority(tmp_path / "pki", "api")
    with https_server(server_context(api_ca.issue("server"))) as url:
        env = worker_env(
            kafka_bootstrap, group, url, mappings, dlq, AEP_CONNECTOR_OPS__HALT_LINGER_S="0"
        )
        with start_worker(env, tmp_path / "worker.log") as worker:
            status = worker.wait_exit(timeout_s=90)
            output = worker.output()
    assert status == 3, output[-3000:]
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    retries = [entry for entry in logs if entry["msg"] == "retrying request"]
    assert [entry["reason"] for entry in retries] == ["certificate"] * (CERTIFICATE_ATTEMPTS - 1)
    (halt,) = [entry for entry in logs if entry["msg"].startswith("halted: ")]
    assert "TLS certificate failure talking to the API" in halt["reason"]
    assert "certificate verify failed" in halt["reason"]
    assert all(offset < 0 for offset in committed_offsets(kafka_bootstrap, group, topic).values())
