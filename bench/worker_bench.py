"""End-to-end benchmark of the worker: real broker, emulator process, web-commerce mapping.

    .venv/bin/python bench/worker_bench.py --output bench-result.json
    .venv/bin/python bench/worker_bench.py --records 200000 --record-size 1000 --partitions 8 \\
        --repeat 3 --output bench-result.json [--profile] [--keep] [--receipts on|required] \\
        [--env AEP_CONNECTOR_BATCHING__LINGER_MS=100 ...] \\
        [--emulator-config '{"faults": {"p503": 0.02, "retry_after_s": 1}}'] \\
        [--bad-every 200] [--scrape metrics-series.json] [--floor] [--single-cpu]

What it does, in order:
1. a broker: `KAFKA_BOOTSTRAP_SERVERS` when set (loopback only), else `scripts/local-kafka`
   with its own state directory (a temporary one, removed at the end);
2. a fresh topic of `--partitions` partitions, and `--records` JSON records of about
   `--record-size` bytes each, built from mappings/examples/web-commerce.input.jsonl with
   varied ids and values, produced round-robin over the partitions BEFORE the worker starts;
3. the emulator as a process (`python -m connector emulator`) on a loopback port;
4. a copy of mappings/examples/web-commerce.yaml reading the fresh topic, in a temporary
   mappings directory;
5. per run (`--repeat`), a new consumer group and `python -m connector run` as a subprocess
   with default settings except the addresses, `kafka.commit_interval_ms=250` and log level
   DEBUG (the worker logs each commit at DEBUG; nothing per record), until the group's committed
   offsets, as the worker logs them, reach the end of every partition; then SIGTERM.

Figures, per run (docs/performance.md says what each one means):
- records_per_s: records / (last commit − first poll), both from the worker's own log lines:
  "partitions assigned" (the first consume() call that returns records is the one that
  assigns) and the "committed" line whose offsets complete the topic. Wall clock, ms precision.
- cpu_us_per_record, cpu_s_per_million: user + system CPU of the worker process (all its
  threads: main loop, sender threads, librdkafka) from /proc/<pid>/stat, sampled when the
  worker logs "subscribed" (after imports and mapping compilation) and when the topic is
  drained; also split by thread (/proc/<pid>/task). startup_cpu_s is what came before.
  system_cpu_us_per_record (and by thread): the kernel's share of it (page faults, sends).
- peak_rss_mb: VmHWM of /proc/<pid>/status when the topic is drained; rss_at_subscribe_mb: VmRSS
  when the worker logs "subscribed" (imports, settings and mappings, before any record).
- requests, mean_request_bytes, mean_request_latency_ms: the worker's /metrics
  (aep_connector_request_bytes and aep_connector_request_latency_seconds sums and counts),
  cross-checked with the emulator's /__emulator/stats (requests, bytes received).
- machine: the whole machine's busy cores over the measured window (/proc/stat), with the
  worker's, the emulator's and the broker's share of it, so that load from anything else on
  the machine is visible.

`--receipts on|required` measures delivery receipts (docs/receipts.md): a receipts topic is
created, and each round runs the worker twice over the same records, receipts off then on
(`receipts.required` false or true), so that load elsewhere on the machine spreads over both.
The summary gives each case's figures and `receipts_cpu_us_per_record`: the median CPU-µs per
record with receipts minus without.

`--single-cpu` runs the worker with `ops.single_cpu` (its threads kept on one CPU) and the floor
on one CPU too (its thread and librdkafka's), so that the ratio compares like with like.

`--scrape FILE` reads the worker's /metrics once a second from start to drained (and a few
seconds after) and writes the series to FILE, for bench/dashboard_png.py to draw the Grafana
dashboard's panels from. `--emulator-config` merges settings into the emulator's configuration
(a fault plan, rate limits, reject rules: docs/emulator.md), so that retries show; `--bad-every N`
makes every Nth record undecodable, so that dead letters show (they are then expected: the run
checks accepted + dead-lettered = records).

Everything listens on and talks to loopback addresses only; every wait is bounded.
`--profile` runs the worker under pyinstrument (`python -m pyinstrument -m connector run`) and
writes the report next to the output file (FILE.profile.txt and FILE.profile.html); figures of a
profiled run carry the profiler's overhead and are marked as such.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the test-support helpers live in tests/support

from tests.support.emulator import RunningEmulator, start_emulator  # noqa: E402
from tests.support.kafka import (  # noqa: E402
    create_topic,
    local_service,
    unique_name,
    wait_for_broker,
)
from tests.support.worker import free_port  # noqa: E402

EXAMPLES = REPO_ROOT / "mappings" / "examples"
MAPPING = EXAMPLES / "web-commerce.yaml"
INPUT = EXAMPLES / "web-commerce.input.jsonl"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CONNECTION_ID = "bench-conn"
IMS_ORG = "BENCH@AdobeOrg"
DEFAULT_MAX_REQUEST_BYTES = 1_000_000  # batching.max_request_bytes's default
COMMIT_INTERVAL_MS = 250  # bounds the tail between the last acceptance and the last commit
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- records


def templates() -> list[dict[str, Any]]:
    """The example input's events; the heartbeat (which the mapping filters out) is left out,
    so every produced record becomes one message."""
    events = [orjson.loads(line) for line in INPUT.read_bytes().splitlines() if line.strip()]
    return [e for e in events if e.get("eventType") != "heartbeat"]


def make_record(template: dict[str, Any], index: int, size: int, rng: random.Random) -> bytes:
    """One event from `template` with its own ids, time and values, padded to about `size`
    bytes with a referrer URL (a field the mapping does not read, as real events carry)."""
    event = orjson.loads(orjson.dumps(template))  # a deep copy
    event["eventId"] = f"e-{index}"
    event["visitorId"] = f"v-{rng.randrange(1 << 20):05x}"
    if "ecid" in event:
        event["ecid"] = str(rng.randrange(10**37, 10**38))
    millis = 1_714_560_000_000 + index * 37
    seconds, ms = divmod(millis, 1000)
    event["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
    if isinstance(event.get("user"), dict):
        event["user"]["email"] = f" Customer{rng.randrange(100_000)}@Example.com "
    for item in event.get("items", []):
        if str(item.get("qty", "")).isdigit():
            item["qty"] = str(rng.randint(1, 5))
    device = event.get("device")
    if isinstance(device, dict) and isinstance(device.get("viewport"), dict):
        device["viewport"]["h"] = rng.choice([667, 799, 900, 1080])
    page = event.setdefault("page", {})
    page["referrer"] = ""
    missing = size - len(orjson.dumps(event)) - len("https://www.example.org/search?q=")
    page["referrer"] = "https://www.example.org/search?q=" + "".join(
        rng.choices("abcdefghijklmnopqrstuvwxyz+", k=max(0, missing))
    )
    return orjson.dumps(event)


#: What --bad-every puts in place of a record: not JSON, so it is dead-lettered at decoding.
BAD_RECORD = b"{not json"


def is_bad(index: int, bad_every: int) -> bool:
    return bad_every > 0 and index % bad_every == bad_every - 1


def produce_records(
    bootstrap: str, topic: str, count: int, size: int, partitions: int, bad_every: int = 0
) -> int:
    """Produce `count` records round-robin over the partitions (every `bad_every`th one
    undecodable, when given); returns their total bytes."""
    rng = random.Random(20240501)
    bases = templates()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
        }
    )
    failures: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    total = 0
    for index in range(count):
        value = make_record(bases[index % len(bases)], index, size, rng)
        if is_bad(index, bad_every):
            value = BAD_RECORD
        total += len(value)
        key = f"v-{index % 4096}".encode()
        while True:
            try:
                producer.produce(
                    topic, value, key, partition=index % partitions, on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.05)
        if index % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise SystemExit(f"producing failed: {remaining} undelivered, errors {failures[:3]}")
    return total


# ---------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def minor_faults(pid: int) -> int:
    """Page faults served without I/O: mostly fresh memory being touched for the first time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


def system_cpu_seconds(pid: int) -> float:
    """System (kernel) CPU of a process, all threads: page faults, socket sends, futexes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / CLOCK_TICKS


def thread_cpu_seconds(pid: int, system_only: bool = False) -> dict[str, float]:
    """CPU of the worker's threads by kind: the main thread (the record path), librdkafka's
    threads (named rdk:*), and the others alive (the ops server, requests in flight); with
    `system_only`, only their kernel time."""
    kinds = {"main": 0.0, "librdkafka": 0.0, "other": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        seconds = (int(fields[12]) + (0 if system_only else int(fields[11]))) / CLOCK_TICKS
        kind = (
            "main"
            if task.name == str(pid)
            else "librdkafka"
            if name.startswith("rdk:")
            else "other"
        )
        kinds[kind] += seconds
    return kinds


def status_kb(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status, e.g. VmHWM (peak resident set) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


# ---------------------------------------------------------------------------- the worker


def parse_ts(text: str) -> float:
    """The JSON log's `2024-05-01T12:34:56.789Z` as epoch seconds."""
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + int(text[20:23]) / 1e3


@dataclass
class LogWatch:
    """Reads the worker's JSON log as it grows: when it subscribed, when it got its partitions,
    and how far its commits have come."""

    path: Path
    offset: int = 0
    partial: bytes = b""
    subscribed: bool = False
    assigned_at: float | None = None
    committed: dict[int, int] = field(default_factory=dict)
    last_commit_at: float | None = None
    pauses: int = 0
    warnings: list[str] = field(default_factory=list)

    def read(self, topic: str) -> None:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line that is not the worker's (e.g. the profiler's)
            if not isinstance(entry, dict):
                continue
            message = entry.get("msg")
            if message == "subscribed":
                self.subscribed = True
            elif message == "partitions assigned" and self.assigned_at is None:
                self.assigned_at = parse_ts(entry["ts"])
            elif message == "committed":
                for name, offset in entry.get("offsets", {}).items():
                    committed_topic, _, partition = name.rpartition("/")
                    if committed_topic == topic:
                        self.committed[int(partition)] = offset
                        self.last_commit_at = parse_ts(entry["ts"])
            elif message == "consumption paused":
                self.pauses += 1
            elif entry.get("level") in ("warning", "error"):
                self.warnings.append(str(message))


def worker_env(
    bootstrap: str, group: str, emulator_url: str, mappings_dir: Path, dlq: str, ops_port: int
) -> dict[str, str]:
    """Default settings except where the services are and how often offsets are committed."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    return base | {
        "AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "AEP_CONNECTOR_KAFKA__GROUP_ID": group,
        "AEP_CONNECTOR_KAFKA__COMMIT_INTERVAL_MS": str(COMMIT_INTERVAL_MS),
        "AEP_CONNECTOR_PLATFORM__BASE_URL": emulator_url,
        "AEP_CONNECTOR_PLATFORM__CONNECTION_ID": CONNECTION_ID,
        "AEP_CONNECTOR_PLATFORM__SANDBOX_NAME": "bench",
        "AEP_CONNECTOR_PLATFORM__IMS_ORG_ID": IMS_ORG,
        "AEP_CONNECTOR_MAPPINGS_DIR": str(mappings_dir),
        "AEP_CONNECTOR_DEAD_LETTER__TOPIC": dlq,
        "AEP_CONNECTOR_OPS__HOST": "127.0.0.1",
        "AEP_CONNECTOR_OPS__PORT": str(ops_port),
        "AEP_CONNECTOR_OPS__LOG_LEVEL": "DEBUG",
        "AEP_CONNECTOR_OPS__LOG_FORMAT": "json",
    }


def scrape(ops_url: str) -> dict[str, float]:
    """The worker's /metrics as {sample name{labels}: value}."""
    text = httpx.get(f"{ops_url}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def total(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


#: Seconds between two scrapes of --scrape, and how long scraping goes on after the drain (so
#: the series show the rates falling to zero and the lag at zero).
SCRAPE_INTERVAL_S = 1.0
SCRAPE_TAIL_S = 5.0
#: Figures of a run written with its series (the picture's title says what the run was).
SCRAPE_FIGURES = ("records_per_s", "elapsed_s", "requests", "retries", "dead_lettered", "machine")


@dataclass
class Scraper:
    """The worker's /metrics once a second, as [{"t": seconds since start, "samples":
    [[name, {label: value}, value], …]}] (tests/support/promql.py reads them)."""

    ops_url: str
    started: float = field(default_factory=time.monotonic)
    next_at: float = 0.0
    series: list[dict[str, Any]] = field(default_factory=list)

    def maybe_scrape(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + SCRAPE_INTERVAL_S
        try:
            text = httpx.get(f"{self.ops_url}/metrics", timeout=10).text
        except httpx.HTTPError:
            return  # the ops server is not up yet
        samples = [
            [sample.name, sample.labels, sample.value]
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]
        self.series.append({"t": round(now - self.started, 3), "samples": samples})


@dataclass
class Services:
    bootstrap: str
    broker_pid: int | None
    emulator: RunningEmulator
    topic: str
    dlq: str
    mappings_dir: Path
    ends: dict[int, int]
    work_dir: Path
    receipts_topic: str | None = None


def receipt_settings(services: Services, case: str) -> dict[str, str]:
    """The worker's settings for a receipts case: off, on (not required) or required."""
    if case == "off" or services.receipts_topic is None:
        return {}
    return {
        "AEP_CONNECTOR_RECEIPTS__TOPIC": services.receipts_topic,
        "AEP_CONNECTOR_RECEIPTS__REQUIRED": "true" if case == "required" else "false",
    }


def run_once(
    services: Services, run: int, args: argparse.Namespace, receipts: str = "off"
) -> dict[str, Any]:
    """One worker process from start to drained; returns its figures."""
    emulator = services.emulator
    emulator.reset()
    group = unique_name("bench")
    ops_port = free_port()
    ops_url = f"http://127.0.0.1:{ops_port}"
    env = worker_env(
        services.bootstrap, group, emulator.url, services.mappings_dir, services.dlq, ops_port
    )
    env |= args.settings | receipt_settings(services, receipts)
    command = [sys.executable, "-m", "connector", "run"]
    name = f"run{run}" if receipts == "off" else f"run{run}-receipts-{receipts}"
    session = services.work_dir / f"{name}.pyisession"
    if args.profile:
        command = [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", str(session)]
        command += ["-m", "connector", "run"]
    log_path = services.work_dir / f"worker-{name}.log"
    log_path.touch()
    watch = LogWatch(log_path)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    pid = process.pid
    scraper = Scraper(ops_url) if args.scrape else None
    try:
        deadline = time.monotonic() + args.timeout
        cpu_at_subscribe: float | None = None
        rss_at_subscribe_kb = 0
        threads_at_subscribe: dict[str, float] = {}
        system_threads_at_subscribe: dict[str, float] = {}
        system_at_subscribe = 0.0
        faults_at_subscribe = 0
        window_start = 0.0
        machine_start = emulator_start = broker_start = None
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"the worker exited ({process.returncode}) early:\n{tail}")
            if time.monotonic() > deadline:
                raise SystemExit(f"not drained within {args.timeout} s (see {log_path})")
            watch.read(services.topic)
            if scraper is not None:
                scraper.maybe_scrape()
            if watch.subscribed and cpu_at_subscribe is None:
                cpu_at_subscribe = cpu_seconds(pid)
                threads_at_subscribe = thread_cpu_seconds(pid)
                system_threads_at_subscribe = thread_cpu_seconds(pid, system_only=True)
                system_at_subscribe = system_cpu_seconds(pid)
                faults_at_subscribe = minor_faults(pid)
                rss_at_subscribe_kb = status_kb(pid, "VmRSS")
                window_start = time.monotonic()
                machine_start = machine_cpu()
                emulator_start = cpu_seconds(emulator.process.pid)
                broker_start = cpu_seconds(services.broker_pid) if services.broker_pid else None
            if all(watch.committed.get(p) == end for p, end in services.ends.items()):
                break
            time.sleep(0.02)
        # Drained: sample before asking the worker to stop (shutdown is not part of the run).
        cpu_at_drain = cpu_seconds(pid)
        threads_at_drain = thread_cpu_seconds(pid)
        system_threads_at_drain = thread_cpu_seconds(pid, system_only=True)
        system_at_drain = system_cpu_seconds(pid)
        faults_at_drain = minor_faults(pid)
        window = time.monotonic() - window_start
        peak_rss_kb = status_kb(pid, "VmHWM")
        rss_kb = status_kb(pid, "VmRSS")
        machine_end = machine_cpu()
        emulator_cpu = cpu_seconds(emulator.process.pid) - (emulator_start or 0.0)
        broker_cpu = (
            cpu_seconds(services.broker_pid) - broker_start
            if services.broker_pid and broker_start is not None
            else None
        )
        loadavg = os.getloadavg()
        metrics = scrape(ops_url)
        stats = emulator.stats()
        if scraper is not None:
            tail_end = time.monotonic() + SCRAPE_TAIL_S
            while time.monotonic() < tail_end:
                scraper.maybe_scrape()
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        exit_status = process.wait(timeout=120 if args.profile else 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert cpu_at_subscribe is not None
    assert machine_start is not None
    assert watch.assigned_at is not None
    assert watch.last_commit_at is not None
    records = args.records
    elapsed = watch.last_commit_at - watch.assigned_at
    cpu_run = cpu_at_drain - cpu_at_subscribe
    machine_busy = machine_end[0] - machine_start[0]
    requests = metrics.get("aep_connector_request_bytes_count", 0.0)
    request_bytes = metrics.get("aep_connector_request_bytes_sum", 0.0)
    mean_request = request_bytes / requests if requests else 0.0
    accepted = int(total(metrics, "aep_connector_records_accepted_total"))
    by_thread = {
        kind: round((seconds - threads_at_subscribe.get(kind, 0.0)) / records * 1e6, 1)
        for kind, seconds in threads_at_drain.items()
    }
    # Request threads end with their request: their CPU is in the process's, not in a task.
    by_thread["ended (requests)"] = round(cpu_run / records * 1e6 - sum(by_thread.values()), 1)
    system_run = system_at_drain - system_at_subscribe
    system_by_thread = {
        kind: round((seconds - system_threads_at_subscribe.get(kind, 0.0)) / records * 1e6, 1)
        for kind, seconds in system_threads_at_drain.items()
    }
    system_by_thread["ended (requests)"] = round(
        system_run / records * 1e6 - sum(system_by_thread.values()), 1
    )
    figures: dict[str, Any] = {
        "run": run,
        "receipts": receipts,
        "profiled": bool(args.profile),
        "records": records,
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(records / elapsed),
        "cpu_s": round(cpu_run, 2),
        "cpu_s_per_million": round(cpu_run / records * 1e6, 1),
        "cpu_us_per_record": round(cpu_run / records * 1e6, 1),
        "startup_cpu_s": round(cpu_at_subscribe, 2),
        "cpu_us_per_record_by_thread": by_thread,
        "system_cpu_us_per_record": round(system_run / records * 1e6, 1),
        "system_cpu_us_per_record_by_thread": system_by_thread,
        "peak_rss_mb": round(peak_rss_kb / 1024, 1),
        "minor_faults_per_request": round((faults_at_drain - faults_at_subscribe) / requests)
        if requests
        else 0,
        "rss_at_subscribe_mb": round(rss_at_subscribe_kb / 1024, 1),
        "rss_at_drain_mb": round(rss_kb / 1024, 1),
        "requests": int(requests),
        "mean_request_bytes": round(mean_request),
        "mean_request_fill": round(mean_request / args.max_request_bytes, 3),
        "mean_records_per_request": round(accepted / requests, 1) if requests else 0.0,
        "mean_request_latency_ms": round(
            metrics.get("aep_connector_request_latency_seconds_sum", 0.0) / requests * 1000, 1
        )
        if requests
        else 0.0,
        "accepted": accepted,
        "dead_lettered": int(total(metrics, "aep_connector_records_dead_lettered_total")),
        # At drain; receipts that are not required may still be on their way then.
        "receipts_produced": int(total(metrics, "aep_connector_receipts_produced_total")),
        "receipts_failed": int(total(metrics, "aep_connector_receipts_failed_total")),
        "retries": int(total(metrics, "aep_connector_retries_total")),
        "backpressure_pauses": watch.pauses,
        "emulator": {
            "requests": stats["requests_total"],
            "requests_by_status": stats["requests_by_status"],
            "messages_accepted": stats["messages_accepted"],
            "messages_rejected": stats["messages_rejected"],
            "mean_request_bytes": round(stats["bytes_received"] / stats["requests_total"])
            if stats["requests_total"]
            else 0,
            "cpu_s": round(emulator_cpu, 2),
        },
        # Shares of the machine over the sampling window (worker subscribed → drained).
        "machine": {
            "cores": os.cpu_count(),
            "window_s": round(window, 2),
            "busy_cores": round(machine_busy / window, 2),
            "worker_cores": round(cpu_run / window, 2),
            "emulator_cores": round(emulator_cpu / window, 2),
            "broker_cores": round(broker_cpu / window, 2) if broker_cpu is not None else None,
            "other_cores": round(
                (machine_busy - cpu_run - emulator_cpu - (broker_cpu or 0.0)) / window, 2
            )
            if broker_cpu is not None
            else None,
            "loadavg_1m_at_end": round(loadavg[0], 2),
        },
        "worker_exit_status": exit_status,
        "worker_warnings": sorted(set(watch.warnings))[:10],
    }
    bad = sum(1 for index in range(records) if is_bad(index, args.bad_every))
    if accepted != records - bad or stats["messages_accepted"] < records - bad:
        figures["problem"] = (
            f"expected {records - bad} accepted messages; worker says {accepted}, "
            f"emulator says {stats['messages_accepted']}"
        )
    if figures["dead_lettered"] != bad:
        figures["problem"] = (
            f"expected {bad} dead letters, the worker counts {figures['dead_lettered']}"
        )
    if scraper is not None:
        figures["scrape"] = {"interval_s": SCRAPE_INTERVAL_S, "series": scraper.series}
    if args.profile:
        figures["profile"] = render_profile(session, args.output)
        figures["main_thread_stages"] = profile_stages(session)
    return figures


def set_floor(figures: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> None:
    """A run's floor is the mean of the floors measured just before and just after it: the
    speed of this machine's cores drifts by a third within minutes, and a floor taken on one
    side only would measure that drift too."""
    floor = round((before["cpu_us_per_record"] + after["cpu_us_per_record"]) / 2, 1)
    figures["floor_cpu_us_per_record"] = floor
    figures["cpu_ratio_to_floor"] = round(figures["cpu_us_per_record"] / floor, 2)


#: Where the main thread's time goes, by the file of the innermost frame of each sample (C
#: calls such as orjson's or librdkafka's count in the Python frame that made them).
STAGES = (
    ("decode", ("connector/source/decode", "connector/source/limits", "connector/source/avro")),
    ("map", ("connector/mapping/", "<mapping")),
    ("validate", ("connector/xdm/",)),
    ("envelope", ("connector/envelope",)),
    ("batch and dispatch", ("connector/delivery/",)),
    ("offsets and commits", ("connector/offsets",)),
    ("consume", ("connector/source/kafka", "confluent_kafka/")),
    ("take and process", ("connector/intake", "connector/process", "connector/records")),
    ("loop", ("connector/worker", "connector/source/flow", "connector/deadletter")),
    ("metrics", ("prometheus_client/",)),
)


def profile_stages(session_path: Path) -> dict[str, float]:
    """Share of the main loop's sampled time (under Worker._turn) per stage of the record's
    path. A frame's stage is its file's, else its caller's: C functions (orjson, librdkafka)
    count in the stage that called them."""
    from pyinstrument.session import Session

    totals: dict[str, float] = {}

    def stage_of(frame: Any, inherited: str) -> str:
        path = (frame.file_path or "").replace(os.sep, "/")
        if frame.function.startswith("Consumer."):  # librdkafka's consume, poll, commit
            return "consume"
        for name, marks in STAGES:
            if any(mark in path for mark in marks):
                return name
        if "threading" in path or "selectors" in path:
            return "waiting"
        return inherited

    def walk(frame: Any, inherited: str, in_loop: bool) -> None:
        in_loop = in_loop or (
            frame.function == "_turn" and "connector/worker" in (frame.file_path or "")
        )
        stage = stage_of(frame, inherited)
        if in_loop:
            totals[stage] = totals.get(stage, 0.0) + frame.total_self_time
        for child in frame.children:
            walk(child, stage, in_loop)

    root = Session.load(session_path).root_frame()
    if root is not None:
        walk(root, "other", False)
    busy = sum(v for k, v in totals.items() if k != "waiting") or 1.0
    return {k: round(v / busy, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def render_profile(session: Path, output: Path) -> dict[str, str]:
    """Text and HTML reports of the pyinstrument session, next to the output file."""
    reports = {}
    for renderer, suffix in (("text", ".profile.txt"), ("html", ".profile.html")):
        target = output.with_name(output.name + suffix)
        command = [sys.executable, "-m", "pyinstrument", "--load", str(session)]
        command += ["-r", renderer, "-o", str(target)]
        if renderer == "text":
            command += ["-p", "processor_options.filter_threshold=0.005", "--no-color"]
        subprocess.run(command, check=True, capture_output=True)
        reports[renderer] = str(target)
    return reports


# ---------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def broker(work_dir: Path) -> Iterator[tuple[str, int | None]]:
    """(bootstrap, broker pid or None): the given broker, or one of scripts/local-kafka."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        hosts = {urlsplit(f"//{entry.strip()}").hostname for entry in given.split(",")}
        if not hosts <= LOOPBACK:
            raise SystemExit("KAFKA_BOOTSTRAP_SERVERS must name loopback addresses only")
        yield given, None
        return
    state_dir = work_dir / "services"
    with local_service("kafka", state_dir) as bootstrap:
        wait_for_broker(bootstrap)
        info = json.loads((state_dir / "kafka" / "service.json").read_text())
        yield bootstrap, int(info["pid"])


def mapping_copy(directory: Path, topic: str, validate: bool = True) -> Path:
    """The example mapping, reading `topic` instead of web.commerce, with its XDM schema (or
    without its validate block)."""
    text = MAPPING.read_text(encoding="utf-8")
    original = "topics: [web.commerce]"
    if original not in text:
        raise SystemExit(f"{MAPPING} no longer says {original!r}; update the benchmark")
    directory.mkdir(parents=True, exist_ok=True)
    schema = MAPPING.with_name(MAPPING.stem + ".schema.json")
    if validate:
        shutil.copy(schema, directory / schema.name)
    else:
        block = "validate:\n  schema: web-commerce.schema.json\n"
        if block not in text:
            raise SystemExit(f"{MAPPING} has no {block!r}; update the benchmark")
        text = text.replace(block, "")
    target = directory / MAPPING.name
    target.write_text(text.replace(original, f"topics: [{topic}]"), encoding="utf-8")
    # The XDM schema its `validate` block names, beside it as in the examples.
    for schema in MAPPING.parent.glob(f"{MAPPING.stem}*.schema.json"):
        shutil.copyfile(schema, directory / schema.name)
    return target


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = (
        "records_per_s",
        "cpu_us_per_record",
        "cpu_s_per_million",
        "peak_rss_mb",
        "requests",
        "mean_request_bytes",
        "mean_request_fill",
    )
    if runs and all("cpu_ratio_to_floor" in r for r in runs):
        keys += ("floor_cpu_us_per_record", "cpu_ratio_to_floor")
    return {
        key: {
            "median": median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in keys
    }


def print_run(figures: dict[str, Any]) -> None:
    machine = figures["machine"]
    receipts = "" if figures["receipts"] == "off" else f" receipts {figures['receipts']}"
    print(
        f"run {figures['run']}{receipts}{' (profiled)' if figures['profiled'] else ''}: "
        f"{figures['records_per_s']:,} records/s ({figures['elapsed_s']} s), "
        f"{figures['cpu_us_per_record']} CPU-µs/record "
        f"(= CPU-s per million; startup {figures['startup_cpu_s']} s; by thread "
        f"{figures['cpu_us_per_record_by_thread']}), "
        f"peak RSS {figures['peak_rss_mb']} MB, {figures['requests']} requests of "
        f"{figures['mean_request_bytes']:,} B mean ({figures['mean_request_fill']:.0%} of max, "
        f"{figures['mean_records_per_request']} records, "
        f"{figures['mean_request_latency_ms']} ms), "
        f"machine busy {machine['busy_cores']} of {machine['cores']} cores "
        f"(worker {machine['worker_cores']}, emulator {machine['emulator_cores']}, "
        f"broker {machine['broker_cores']}, other {machine['other_cores']})",
        flush=True,
    )
    if "cpu_ratio_to_floor" in figures:
        print(f"  worker CPU per record / floor: {figures['cpu_ratio_to_floor']}", flush=True)
    if "main_thread_stages" in figures:
        print(f"  main thread by stage: {figures['main_thread_stages']}", flush=True)
    if "problem" in figures:
        print(f"  PROBLEM: {figures['problem']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="Records to produce.")
    parser.add_argument("--record-size", type=int, default=1000, help="Bytes of one record.")
    parser.add_argument("--partitions", type=int, default=8, help="Partitions of the topic.")
    parser.add_argument("--output", type=Path, required=True, help="JSON file for the figures.")
    parser.add_argument("--repeat", type=int, default=1, help="Worker runs over the same topic.")
    parser.add_argument("--profile", action="store_true", help="Run the worker under pyinstrument.")
    parser.add_argument("--keep", action="store_true", help="Keep the worker logs.")
    parser.add_argument(
        "--no-validate",
        action="store_true",
        help="Run the mapping without its validate block (local XDM validation off), to see "
        "what validation costs per record.",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="Measure the floor (bench/floor_bench.py) on the same topic before the first run "
        "and after every run; print each run's CPU per record as a ratio to the mean of the "
        "floors just before and just after it.",
    )
    parser.add_argument(
        "--single-cpu",
        action="store_true",
        help="Keep the worker's threads on one CPU (ops.single_cpu) and the floor's too, so "
        "that the ratio compares like with like.",
    )
    parser.add_argument("--timeout", type=float, default=600, help="Bound on one run, seconds.")
    parser.add_argument(
        "--receipts",
        choices=["on", "required"],
        help="Measure delivery receipts: each round runs the worker without, then with them.",
    )
    parser.add_argument(
        "--scrape",
        type=Path,
        help="Write the worker's /metrics, read once a second during each run, to this JSON "
        "file (bench/dashboard_png.py draws the dashboard's panels from it).",
    )
    parser.add_argument(
        "--emulator-config",
        type=json.loads,
        default={},
        metavar="JSON",
        help="Settings merged into the emulator's configuration, e.g. a fault plan: "
        '\'{"faults": {"p503": 0.02, "p429": 0.01, "retry_after_s": 1}}\'.',
    )
    parser.add_argument(
        "--bad-every",
        type=int,
        default=0,
        metavar="N",
        help="Make every Nth record undecodable (dead-lettered at decoding); 0: none.",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="AEP_CONNECTOR_NAME=VALUE",
        help="A setting for the worker (repeatable), e.g. "
        "AEP_CONNECTOR_BATCHING__LINGER_MS=100; recorded in the output.",
    )
    args = parser.parse_args()
    args.settings = {}
    for assignment in args.env:
        name, sep, value = assignment.partition("=")
        if not sep or not name.startswith("AEP_CONNECTOR_"):
            parser.error(f"--env {assignment!r}: expected AEP_CONNECTOR_NAME=VALUE")
        args.settings[name] = value
    if args.single_cpu:
        args.settings["AEP_CONNECTOR_OPS__SINGLE_CPU"] = "true"
    args.max_request_bytes = int(
        args.settings.get("AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES)
    )

    started = time.time()
    load_before = os.getloadavg()
    work_dir = Path(tempfile.mkdtemp(prefix="worker-bench-"))
    runs: list[dict[str, Any]] = []
    try:
        with broker(work_dir) as (bootstrap, broker_pid):
            topic = create_topic(bootstrap, unique_name("bench-web-commerce"), args.partitions)
            dlq = create_topic(bootstrap, unique_name("bench-dlq"), 1)
            receipts_topic = (
                create_topic(bootstrap, unique_name("bench-receipts"), args.partitions)
                if args.receipts
                else None
            )
            began = time.monotonic()
            produced_bytes = produce_records(
                bootstrap, topic, args.records, args.record_size, args.partitions, args.bad_every
            )
            produce_s = time.monotonic() - began
            print(
                f"produced {args.records:,} records of {produced_bytes / args.records:,.0f} B "
                f"mean over {args.partitions} partitions of {topic} in {produce_s:.1f} s",
                flush=True,
            )
            floors: list[dict[str, Any]] = []
            if args.floor:
                from bench.floor_bench import measure_floor
            ends = {p: args.records // args.partitions for p in range(args.partitions)}
            for p in range(args.records % args.partitions):
                ends[p] += 1
            mappings_dir = work_dir / "mappings"
            mapping_copy(mappings_dir, topic, validate=not args.no_validate)
            emulator_config = {"ims_org_id": IMS_ORG, "max_stored_messages": 1000}
            emulator_config |= args.emulator_config
            with start_emulator(emulator_config, work_dir) as emulator:
                services = Services(
                    bootstrap,
                    broker_pid,
                    emulator,
                    topic,
                    dlq,
                    mappings_dir,
                    ends,
                    work_dir,
                    receipts_topic,
                )
                cases = ["off", args.receipts] if args.receipts else ["off"]

                def floor_now() -> dict[str, Any]:
                    figures = measure_floor(
                        bootstrap,
                        topic,
                        args.records,
                        args.max_request_bytes,
                        single_cpu=args.single_cpu,
                    )
                    floors.append(figures)
                    print(
                        f"floor: {figures['cpu_us_per_record']} CPU-µs/record "
                        f"(consume, parse, hand-written map, envelope, framing)",
                        flush=True,
                    )
                    return figures

                # Floors between the rounds: each round's runs compare with the mean of the
                # floor before and the floor after them (set_floor).
                floor_before = floor_now() if args.floor else None
                for run in range(1, args.repeat + 1):
                    round_runs = [run_once(services, run, args, case) for case in cases]
                    if floor_before is not None:
                        floor_after = floor_now()
                        for figures in round_runs:
                            set_floor(figures, floor_before, floor_after)
                        floor_before = floor_after
                    for figures in round_runs:  # the cases take turns in each round
                        runs.append(figures)
                        print_run(figures)
    finally:
        if not args.profile and not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            print(f"worker logs and profiler sessions kept in {work_dir}")

    result = {
        "command": " ".join([".venv/bin/python", "bench/worker_bench.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "settings": {
            "records": args.records,
            "record_size": args.record_size,
            "mean_record_bytes": round(produced_bytes / args.records),
            "partitions": args.partitions,
            "max_request_bytes": args.max_request_bytes,
            "commit_interval_ms": COMMIT_INTERVAL_MS,
            "worker_env": args.settings,
            "receipts": args.receipts or "off",
            "mapping": str(MAPPING.relative_to(REPO_ROOT)),
            "validate": not args.no_validate,
            "emulator_config": args.emulator_config,
            "bad_every": args.bad_every,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(v, 2) for v in load_before],
        },
        "floors": floors,
        "runs": runs,
        "summary": summarize([r for r in runs if r["receipts"] == "off"]),
    }
    if args.receipts:
        with_receipts = [r for r in runs if r["receipts"] == args.receipts]
        result["summary_with_receipts"] = summarize(with_receipts)
        result["receipts_cpu_us_per_record"] = round(
            result["summary_with_receipts"]["cpu_us_per_record"]["median"]
            - result["summary"]["cpu_us_per_record"]["median"],
            1,
        )
    if args.scrape:
        series = [
            {"run": r["run"], **r.pop("scrape"), "figures": {k: r[k] for k in SCRAPE_FIGURES}}
            for r in runs
        ]
        scraped = {k: result[k] for k in ("command", "started", "git_commit", "settings")}
        scraped |= {"runs": series}
        args.scrape.write_text(json.dumps(scraped) + "\n", encoding="utf-8")
        print(f"metrics series written to {args.scrape}")
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["summary"], indent=2))
    if args.receipts:
        print(f"with receipts {args.receipts}:")
        print(json.dumps(result["summary_with_receipts"], indent=2))
        print(
            "receipts cost (median CPU-µs per record, with − without): "
            f"{result['receipts_cpu_us_per_record']}"
        )
    print(f"figures written to {args.output}")


if __name__ == "__main__":
    main()
