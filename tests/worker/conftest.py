"""The worker end-to-end tests' shared fixture: fresh topics and a group on the session broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.kafka import create_topic, unique_name
from tests.worker.test_worker_e2e import Scenario


@pytest.fixture
def scenario(kafka_bootstrap: str, tmp_path: Path) -> Scenario:
    topic = create_topic(kafka_bootstrap, unique_name("orders"), partitions=4)
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    return Scenario(kafka_bootstrap, topic, dlq, unique_name("group"), tmp_path / "m", tmp_path)
