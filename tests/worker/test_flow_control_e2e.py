"""Flow control end to end: real broker, the emulator over HTTP, the worker as a real process.

Adaptive concurrency: the limit climbs against a healthy emulator, falls on 429 bursts and on
delayed answers, and climbs back when they end. Rate limits: the emulator never receives more
than the configured messages per second, consumption pauses meanwhile, and nothing is lost.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import create_topic, produce, unique_name
from tests.support.report import measurement
from tests.support.worker import RunningWorker, drained, wait_until, write_mapping
from tests.worker.test_worker_e2e import (
    EMULATOR_BASE,
    Scenario,
    check_entities,
    order,
    orders_mapping,
)

pytestmark = pytest.mark.integration

CONNECTION = "conn-1"  # tests.support.worker.worker_env's connection


@pytest.fixture
def flow(kafka_bootstrap: str, tmp_path: Path) -> Scenario:
    topic = create_topic(kafka_bootstrap, unique_name("flow"), partitions=4)
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    return Scenario(kafka_bootstrap, topic, dlq, unique_name("group"), tmp_path / "m", tmp_path)


def samples(worker: RunningWorker) -> dict[str, float]:
    """The worker's /metrics as {name{label=value,...}: value}."""
    text = worker.get("/metrics").text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def total_of(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(name + "{"))


def limit(worker: RunningWorker) -> float:
    try:
        return samples(worker).get(f"aep_connector_concurrency_limit{{connection={CONNECTION}}}", 0)
    except httpx.HTTPError:
        return 0.0  # the ops server is not up yet


def decreases(worker: RunningWorker, reason: str) -> float:
    key = f"aep_connector_concurrency_decreases_total{{connection={CONNECTION},reason={reason}}}"
    return samples(worker).get(key, 0.0)


# ---------------------------------------------------------------------------- adaptive concurrency


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """A healthy emulator with a round trip like the real API's (tens of milliseconds)."""
    with start_emulator({**EMULATOR_BASE, "faults": {"latency_ms": 40}}, tmp_path) as running:
        yield running


def test_the_adaptive_limit_falls_on_429_bursts_and_delays_and_recovers(
    flow: Scenario, slow_emulator: RunningEmulator
) -> None:
    emulator = slow_emulator
    # Phases are counted in round trips, not records: a few hundred requests of 5 records
    # see them through (on a loaded machine as well), and what is left drains fast at the end.
    total = 6000
    produce(flow.bootstrap, flow.topic, (order(n) for n in range(total)))
    path = write_mapping(flow.mappings_dir, "orders", orders_mapping(flow.topic))
    cap = 8
    env = flow.env(
        emulator,
        AEP_CONNECTOR_BATCHING__ADAPTIVE_CONCURRENCY="true",
        AEP_CONNECTOR_BATCHING__ORDERING="none",  # one lane: all 8 slots can be used
        AEP_CONNECTOR_BATCHING__MAX_IN_FLIGHT_REQUESTS=str(cap),
        AEP_CONNECTOR_BATCHING__MAX_RECORDS="5",  # many small requests: a long run
        AEP_CONNECTOR_BATCHING__LINGER_MS="5",
    )
    healthy = {"latency_ms": 40}
    near_cap = cap - 2  # round trips on a busy machine are noisy: the limit saws below the cap
    seen: dict[str, float] = {}
    with flow.worker(env) as worker:
        # 1. A healthy API: from 1, the limit climbs near the cap.
        wait_until(lambda: limit(worker) >= near_cap, 60, "the limit to climb", worker)
        seen["climbed"] = limit(worker)
        # 2. A burst of 429s: the limit falls multiplicatively.
        emulator.set_faults({**healthy, "p429": 0.7, "seed": 3})
        wait_until(lambda: limit(worker) <= 2, 30, "the limit to fall on 429s", worker)
        seen["throttled"] = limit(worker)
        assert decreases(worker, "backpressure") >= 3
        # 3. The burst ends: the limit climbs back.
        emulator.set_faults(healthy)
        wait_until(lambda: limit(worker) >= near_cap, 60, "the limit to recover", worker)
        seen["recovered"] = limit(worker)
        # 4. Answers suddenly ten times slower (the API queues): the round trip spikes.
        rtt_before = decreases(worker, "rtt")
        emulator.set_faults({**healthy, "sequence": ["delay:400"] * 40})
        wait_until(
            lambda: decreases(worker, "rtt") > rtt_before, 30, "a decrease on delays", worker
        )
        emulator.set_faults(healthy)
        wait_until(lambda: limit(worker) >= near_cap, 60, "the limit to recover again", worker)
        assert emulator.stats()["messages_accepted"] < total, "drained before the last phase"
        emulator.clear_faults()  # the rest at loopback speed
        flow.wait_drained(worker)
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    measurement("flow: adaptive limit (cap 8): climbed, under 429s, recovered", str(seen))
    counts = check_entities(path, emulator.messages())
    assert len(counts) == total
    assert emulator.stats()["requests_by_status"].get("429", 0) > 0
    assert flow.dead_letters(0) == []


# ---------------------------------------------------------------------------- rate limits

RATE = 300  # messages per second
BURST_S = 0.2
BUFFERED = 200  # batching.max_buffered_records
CONSUMED_AT_ONCE = 50  # kafka.consume_batch_size


@pytest.fixture
def limited_emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """The API's own limit, a fifth above the worker's: a worker without a limit of its own
    runs into 429s at once."""
    config: dict[str, Any] = {
        **EMULATOR_BASE,
        "connections": {CONNECTION: {"rate_limit": {"messages_per_s": RATE * 1.2}}},
    }
    with start_emulator(config, tmp_path) as running:
        yield running


def test_a_message_rate_limit_holds_pauses_consumption_and_loses_nothing(
    flow: Scenario, limited_emulator: RunningEmulator
) -> None:
    emulator = limited_emulator
    total = 2000
    produce(flow.bootstrap, flow.topic, (order(n) for n in range(total)))
    path = write_mapping(flow.mappings_dir, "orders", orders_mapping(flow.topic))
    env = flow.env(
        emulator,
        AEP_CONNECTOR_BATCHING__MAX_MESSAGES_PER_S=str(RATE),
        AEP_CONNECTOR_BATCHING__RATE_LIMIT_BURST_S=str(BURST_S),
        AEP_CONNECTOR_BATCHING__MAX_RECORDS="30",
        AEP_CONNECTOR_BATCHING__MAX_BUFFERED_RECORDS=str(BUFFERED),
        AEP_CONNECTOR_KAFKA__CONSUME_BATCH_SIZE=str(CONSUMED_AT_ONCE),
    )
    ahead = paused = 0.0  # the most consumed but not accepted, the most partitions paused
    is_drained = drained(flow.bootstrap, flow.group, flow.topic)
    with flow.worker(env) as worker:
        deadline = time.monotonic() + 60
        while not is_drained():
            assert worker.alive(), worker.output()[-4000:]
            assert time.monotonic() < deadline, "not drained within 60 s"
            with contextlib.suppress(httpx.HTTPError):  # the ops server may not be up yet
                metrics = samples(worker)
                consumed = total_of(metrics, "aep_connector_records_consumed_total")
                accepted = total_of(metrics, "aep_connector_records_accepted_total")
                ahead = max(ahead, consumed - accepted)
                paused = max(paused, total_of(metrics, "aep_connector_paused_partitions"))
            time.sleep(0.1)
        metrics = samples(worker)
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    accepted = emulator.messages()
    counts = check_entities(path, accepted)
    assert len(counts) == total, "records were lost"
    assert max(counts.values()) == 1
    assert flow.dead_letters(0) == []
    assert emulator.stats()["requests_by_status"].get("429", 0) == 0

    # The rate at the API: no window carries more than the burst plus the rate (10 % slack
    # for requests that arrive closer together than they were sent).
    times = sorted(m["receivedTimeMs"] / 1000 for m in accepted)
    burst = RATE * BURST_S
    worst = 0.0
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            span = times[j] - start
            if span > 2.0:
                break
            worst = max(worst, (j - i + 1) - (burst + RATE * span))
    assert worst <= 0.1 * RATE, f"a window carried {worst:.0f} messages over the budget"
    overall = (total - burst) / (times[-1] - times[0])
    assert overall <= RATE * 1.1
    measurement("flow: message rate limit 300/s", f"{overall:.0f} messages/s at the emulator")

    # Consumption paused rather than buffering: the records consumed ran ahead of those
    # accepted by no more than the buffer's bound and one consume() call; without pausing all
    # 2000 would have been consumed within the first second.
    assert paused == 4
    assert 0 < ahead <= BUFFERED + CONSUMED_AT_ONCE

    # The waiting shows in the metrics: past the burst, nearly every request waited its turn,
    # and some request was waiting for most of the run's (total − burst) / rate seconds.
    waits = metrics[f"aep_connector_rate_limit_waits_total{{connection={CONNECTION}}}"]
    wait_seconds = metrics[
        f"aep_connector_rate_limit_wait_seconds_total{{connection={CONNECTION}}}"
    ]
    requests = emulator.stats()["requests_total"]
    assert waits >= requests / 2
    assert wait_seconds >= 0.5 * (total - burst) / RATE
    measurement(
        "flow: rate-limit waits",
        f"{waits:.0f} of {requests} requests waited, {wait_seconds:.1f} s in all",
    )
