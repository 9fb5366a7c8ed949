"""The chaos harness: one scenario's topics, emulator, worker processes and the watch that
checks the invariants while it runs.

    with ChaosRun(bootstrap, tmp_path, "kill-9 loop") as run:
        run.produce(4000)
        run.start_workers(3)
        ...                      # kill, restart, scale, break the API or the broker
        run.wait_drained()
        run.finish()             # SIGTERM every worker, then check and print the figures

The watch samples the group's committed offsets every WATCH_INTERVAL_S and checks each sample
against what was finished at that moment (tests/chaos/ledger.py says how). It reads accepted
messages from the emulator's record file and dead letters from the dead-letter topic as they
arrive, and samples the workers' resident memory.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from tests.chaos.ledger import ORIGIN_HEADER, Expected, Ledger, Letter, Outcome, Summary
from tests.chaos.scale import Scale, current
from tests.support.emulator import RunningEmulator, free_port, start_emulator
from tests.support.kafka import TOPIC_CONFIG, create_topic, end_offsets, unique_name
from tests.support.report import measurement
from tests.support.worker import RunningWorker, start_worker, worker_env, write_mapping

WATCH_INTERVAL_S = 0.25
#: An emulator started again while three workers retry flat out on a 2-core machine shared
#: with other work took longer than start_emulator's default 20 s to answer.
EMULATOR_START_TIMEOUT_S = 90.0
PARTITIONS = 6
TOO_LARGE_PAD = 1_100_000  # bytes: the envelope exceeds the API's 1 MB request limit
TOO_LARGE_EVERY = 1000 if current().records < 20_000 else 10_000

SCHEMA_REF = {
    "id": "https://ns.adobe.com/acme/schemas/chaos",
    "contentType": "application/vnd.adobe.xed-full+json;version=1",
}

#: `_id` is the record's own coordinates, so every acceptance is traced to one Kafka record.
CHAOS_MAPPING: dict[str, Any] = {
    "target": {"datasetId": "ds-chaos", "schemaRef": SCHEMA_REF, "sourceName": "chaos"},
    "strict": True,
    "mappings": [
        {
            "sourceType": "EXPRESSION",
            "source": 'concat(_kafka.topic, "/", _kafka.partition, "/", _kafka.offset)',
            "destination": "_id",
        },
        {"sourceType": "EXPRESSION", "source": "to_integer(n) + 0", "destination": "_acme.n"},
        {"source": "pad", "destination": "_acme.pad"},
        {"source": "flag", "destination": "_acme.flag"},
    ],
}

#: The emulator rejects (400 per message) entities carrying this flag: the "api" poison.
REJECT_RULE = {"pointer": "/body/xdmEntity/_acme/flag", "equals": "reject", "message": "chaos"}

#: Worker settings every scenario shares: a killed member leaves the group after 6 s (the
#: smallest session timeout the settings allow), members hear of a rebalance within half a
#: second (librdkafka's heartbeat is 3 s by default: every join or leave would wait for it),
#: small batches make many requests, and SIGTERM has a short bound so that stopping is quick.
WORKER_SETTINGS = {
    "AEP_CONNECTOR_KAFKA__SESSION_TIMEOUT_MS": "6000",
    "AEP_CONNECTOR_KAFKA__PROPERTIES": '{"heartbeat.interval.ms": "500"}',
    "AEP_CONNECTOR_BATCHING__MAX_RECORDS": "100",
    "AEP_CONNECTOR_OPS__SHUTDOWN_TIMEOUT_S": "5",
    "AEP_CONNECTOR_OPS__HALT_LINGER_S": "0",
}

Headers = list[tuple[str, bytes]]


def good(n: int) -> Outcome:
    return "accept"


POISON_AT: dict[int, Outcome] = {7: "decode", 19: "map", 33: "api"}  # n % 50 → outcome


def poison_mix(n: int) -> Outcome:
    """About 6 % bad records of four kinds among good ones, at fixed positions; records over
    1 MB are rarer (every TOO_LARGE_EVERY-th), or the full scale would move gigabytes."""
    if n % TOO_LARGE_EVERY == TOO_LARGE_EVERY // 2:
        return "validate"
    return POISON_AT.get(n % 50, "accept")


def chaos_record(n: int, outcome: Outcome, pad: int = 0) -> tuple[bytes, bytes, Headers]:
    """Record number `n`, built to meet `outcome`."""
    key = f"k{n}".encode()
    value: bytes
    if outcome == "accept":
        value = orjson.dumps({"n": n, "pad": "x" * pad} if pad else {"n": n})
    elif outcome == "decode":
        value = b'{"n": %d, "broken' % n
    elif outcome == "map":
        value = orjson.dumps({"n": f"not-a-number-{n}"})
    elif outcome == "validate":
        value = orjson.dumps({"n": n, "pad": "y" * TOO_LARGE_PAD})
    else:
        value = orjson.dumps({"n": n, "flag": "reject"})
    return key, value, [(ORIGIN_HEADER, key)]


class Watch(threading.Thread):
    """Samples committed offsets, accepted messages, dead letters and worker memory."""

    def __init__(self, run: ChaosRun) -> None:
        super().__init__(name="chaos-watch", daemon=True)
        self._run = run
        self._halt = threading.Event()
        self._tail = b""
        self._file_offset = 0
        self._dead_position = 0
        self.failed_samples = 0
        self.last_committed: dict[int, int] = {}
        self.peak_rss_kb = 0
        self.rss_timeline: list[tuple[float, int]] = []  # (monotonic, largest worker RSS)
        self.error: BaseException | None = None

    def run(self) -> None:
        run = self._run
        with (
            closing(_consumer(run.bootstrap, run.group)) as offsets,
            closing(_consumer(run.bootstrap, unique_name("chaos-dlq-reader"))) as letters,
        ):
            letters.assign([TopicPartition(run.dlq, 0, OFFSET_BEGINNING)])
            try:
                while not self._halt.is_set():
                    self._sample(offsets, letters)
                    self._halt.wait(WATCH_INTERVAL_S)
                self._sample(offsets, letters)  # the final one, after the workers stopped
            except BaseException as exc:  # reported by stop(): a silent watch checks nothing
                self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=120)
        if self.error is not None:
            raise AssertionError(f"the chaos watch failed: {self.error!r}") from self.error

    def _sample(self, offsets: Consumer, letters: Consumer) -> None:
        run = self._run
        self._sample_rss()
        partitions = [TopicPartition(run.topic, p) for p in range(run.partitions)]
        try:
            committed = offsets.committed(partitions, timeout=5)
        except KafkaException:
            self.failed_samples += 1  # the broker is away (a restart scenario)
            return
        at_ms = time.time_ns() // 1_000_000
        self._read_accepted()
        if not self._read_letters(letters):
            self.failed_samples += 1
            return
        positions = {tp.partition: tp.offset for tp in committed}
        self.last_committed = positions
        run.ledger.check_commits(run.topic, positions, at_ms)

    def _read_accepted(self) -> None:
        path = self._run.record_file
        if not path.exists():
            return
        with path.open("rb") as handle:
            handle.seek(self._file_offset)
            data = handle.read()
        self._file_offset += len(data)
        *lines, self._tail = (self._tail + data).split(b"\n")
        for line in lines:
            if line:
                self._run.ledger.accept(orjson.loads(line))

    def _read_letters(self, reader: Consumer) -> bool:
        """Read the dead-letter topic up to its current end; False when the broker is away."""
        try:
            _low, high = reader.get_watermark_offsets(TopicPartition(self._run.dlq, 0), timeout=5)
        except KafkaException:
            return False
        deadline = time.monotonic() + 30
        while self._dead_position < high and time.monotonic() < deadline:
            for message in reader.consume(1000, 0.2):
                if message.error() is not None:
                    continue
                kind, stamp = message.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    raise AssertionError("the dead-letter topic must use LogAppendTime")
                self._run.ledger.dead_letter(
                    Letter(stamp, message.key(), message.value(), tuple(message.headers() or ()))
                )
                self._dead_position = message.offset() + 1
        return self._dead_position >= high

    def _sample_rss(self) -> None:
        largest = 0
        for pid in self._run.worker_pids():
            largest = max(largest, rss_kb(pid))
        if largest:
            self.peak_rss_kb = max(self.peak_rss_kb, largest)
            self.rss_timeline.append((time.monotonic(), largest))


def rss_kb(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def closing(consumer: Consumer) -> Iterator[Consumer]:
    try:
        yield consumer
    finally:
        consumer.close()


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )


def create_dead_letter_topic(bootstrap: str) -> str:
    """A dead-letter topic stamped by the broker: a letter's timestamp is when it was
    confirmed, which the commit check needs."""
    name = unique_name("chaos-dlq")
    config = {**TOPIC_CONFIG, "message.timestamp.type": "LogAppendTime"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, 1, 1, config=config)], operation_timeout=30)
    futures[name].result(timeout=60)
    return name


class ChaosRun:
    """One scenario: topic, dead-letter topic, group, emulator, workers, watch and ledger."""

    def __init__(
        self,
        bootstrap: str,
        tmp_path: Path,
        scenario: str,
        *,
        partitions: int = PARTITIONS,
        emulator_config: dict[str, Any] | None = None,
        worker_settings: dict[str, str] | None = None,
        scale: Scale | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.tmp_path = tmp_path
        self.scenario = scenario
        self.scale = scale or current()
        self.partitions = partitions
        self.topic = create_topic(bootstrap, unique_name("chaos"), partitions=partitions)
        self.dlq = create_dead_letter_topic(bootstrap)
        self.group = unique_name("chaos-group")
        self.ledger = Ledger()
        self.record_file = tmp_path / "accepted.jsonl"
        self.emulator_config: dict[str, Any] = {
            "ims_org_id": "ACME@AdobeOrg",
            "reject": [REJECT_RULE],
            "record_file": str(self.record_file),
            "max_stored_messages": 0,  # the record file is read instead
            **(emulator_config or {}),
        }
        self.mappings_dir = tmp_path / "mappings"
        write_mapping(
            self.mappings_dir,
            "chaos",
            {"source": {"topics": [self.topic], "format": "json"}, **CHAOS_MAPPING},
        )
        self._worker_settings = {**WORKER_SETTINGS, **(worker_settings or {})}
        self._stack = ExitStack()
        self._emulator_stack: ExitStack | None = None
        self._emulator_port: int | None = None
        self.emulator: RunningEmulator | None = None
        self.workers: list[RunningWorker] = []
        self._let_go: set[int] = set()  # pids the scenario killed or stopped on purpose
        self._started = 0
        self._next_n = 0
        self.exit_times: list[float] = []
        self.started_at = time.monotonic()
        self.watch = Watch(self)
        self._http = httpx.Client(timeout=5)
        self._stack.callback(self._http.close)

    # ------------------------------------------------------------------ lifetime

    def __enter__(self) -> ChaosRun:
        self.start_emulator()
        self._stack.callback(self.stop_emulator)
        self.watch.start()
        self._stack.callback(self._stop_watch_quietly)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()  # workers still running are killed, then the emulator stops

    def _stop_watch_quietly(self) -> None:
        if self.watch.is_alive():
            with contextlib.suppress(AssertionError):
                self.watch.stop()

    # ------------------------------------------------------------------ the emulator

    def start_emulator(self) -> RunningEmulator:
        """Start the emulator (again on the same port, so running workers find it)."""
        stack = ExitStack()
        self.emulator = stack.enter_context(
            start_emulator(
                self.emulator_config,
                self.tmp_path,
                port=self._emulator_port,
                startup_timeout_s=EMULATOR_START_TIMEOUT_S,
            )
        )
        self._emulator_port = int(self.emulator.url.rsplit(":", 1)[1])
        self._emulator_stack = stack
        return self.emulator

    def stop_emulator(self) -> None:
        """The API goes away: connections are refused until start_emulator()."""
        if self._emulator_stack is not None:
            self._emulator_stack.close()
            self._emulator_stack = None

    @property
    def api(self) -> RunningEmulator:
        assert self.emulator is not None, "the emulator is stopped"
        return self.emulator

    # ------------------------------------------------------------------ records

    def produce(
        self,
        count: int,
        outcome_of: Callable[[int], Outcome] = good,
        pad: int = 0,
        over_s: float = 0.0,
    ) -> None:
        """Produce `count` records (numbered on from earlier calls), spread over `over_s`
        seconds; returns once the broker has acknowledged them all."""
        numbers = range(self._next_n, self._next_n + count)
        self._next_n += count
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.max.bytes": 5 * 1024 * 1024,
            }
        )
        failures: list[str] = []
        started = time.monotonic()
        for index, n in enumerate(numbers):
            outcome = outcome_of(n)
            key, value, headers = chaos_record(n, outcome, pad)
            expected = Expected(outcome, n, key, value if outcome != "accept" else b"")
            self._produce_one(producer, key, value, headers, expected, failures)
            if over_s and index % 50 == 49:
                ahead = started + over_s * (index + 1) / count - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # the feed's pace (poll() would return at the next event)
        remaining = producer.flush(120)
        assert remaining == 0, f"{remaining} records were not delivered"
        assert not failures, f"producing failed: {failures[:3]}"

    def start_feeding(self, count: int, over_s: float, **kwargs: Any) -> threading.Thread:
        """produce() in the background; join the thread before wait_drained()."""
        thread = threading.Thread(
            target=self.produce, args=(count,), kwargs={"over_s": over_s, **kwargs}, daemon=True
        )
        thread.start()
        return thread

    def _produce_one(
        self,
        producer: Producer,
        key: bytes,
        value: bytes,
        headers: Headers,
        expected: Expected,
        failures: list[str],
    ) -> None:
        ledger = self.ledger

        def delivered(error: object, message: Any) -> None:
            if error is not None:
                failures.append(str(error))
                return
            ledger.produced_record(
                (message.topic(), message.partition(), message.offset()), expected
            )

        while True:
            try:
                producer.produce(
                    self.topic, key=key, value=value, headers=headers, on_delivery=delivered
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)

    # ------------------------------------------------------------------ workers

    def worker_env(self, **extra: str) -> dict[str, str]:
        env = worker_env(self.bootstrap, self.group, self.api.url, self.mappings_dir, self.dlq)
        return {
            **env,
            **self._worker_settings,
            "AEP_CONNECTOR_OPS__PORT": str(free_port()),
            # Log lines reach the file at once: a worker killed with SIGKILL keeps its last ones.
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def start_workers(self, count: int, **extra: str) -> list[RunningWorker]:
        started = []
        for _ in range(count):
            self._started += 1
            log_file = self.tmp_path / f"worker-{self._started}.log"
            worker = self._stack.enter_context(start_worker(self.worker_env(**extra), log_file))
            self.workers.append(worker)
            started.append(worker)
        return started

    def alive(self) -> list[RunningWorker]:
        return [w for w in self.workers if w.alive()]

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process.returncode is None]

    def exited_on_their_own(self) -> list[RunningWorker]:
        """Workers that ended without the scenario stopping them: a halt or a crash."""
        return [
            w
            for w in self.workers
            if w.process.poll() is not None and w.process.pid not in self._let_go
        ]

    def kill(self, worker: RunningWorker) -> None:
        self._let_go.add(worker.process.pid)
        worker.signal(signal.SIGKILL)
        worker.process.wait(timeout=30)

    def terminate(self, worker: RunningWorker, timeout_s: float = 60.0) -> float:
        """SIGTERM; returns the seconds until the process exited (status 0 required)."""
        started = time.monotonic()
        self._let_go.add(worker.process.pid)
        worker.signal(signal.SIGTERM)
        status = worker.wait_exit(timeout_s)
        took = time.monotonic() - started
        self.exit_times.append(took)
        assert status == 0, f"worker exited with {status} after SIGTERM:\n{worker.output()[-3000:]}"
        return took

    def terminate_all(self, workers: Iterable[RunningWorker] | None = None) -> list[float]:
        """SIGTERM the workers at once (as a scale-in does); returns the seconds each took to
        exit (status 0 required)."""
        chosen = [w for w in (workers if workers is not None else self.workers) if w.alive()]
        started = time.monotonic()
        for worker in chosen:
            self._let_go.add(worker.process.pid)
            worker.signal(signal.SIGTERM)
        exits: list[float] = []
        pending = {id(w): w for w in chosen}
        while pending:
            for key, worker in list(pending.items()):
                if worker.process.poll() is None:
                    if time.monotonic() - started > 60:
                        worker.wait_exit(0)  # kills it and fails, with its log
                    continue
                exits.append(time.monotonic() - started)
                del pending[key]
                status = worker.process.returncode
                assert status == 0, f"worker exited with {status}:\n{worker.output()[-3000:]}"
            time.sleep(0.02)
        self.exit_times.extend(exits)
        return exits

    def metric(self, worker: RunningWorker, name: str) -> float | None:
        """A metric of a running worker, summed over its labels (None while the worker's ops
        server does not answer yet)."""
        try:
            text = self._http.get(worker.ops_url + "/metrics").text
        except httpx.TransportError:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def have_partitions(self, workers: Iterable[RunningWorker]) -> bool:
        """Whether each of `workers` has joined the group and owns a partition."""
        return all((self.metric(w, "aep_connector_assigned_partitions") or 0) > 0 for w in workers)

    # ------------------------------------------------------------------ waiting

    def wait_drained(self, timeout_s: float | None = None) -> None:
        """Until the committed offsets reach the end of every partition (workers running)."""
        ends = self.end_offsets()
        timeout_s = timeout_s or self.scale.drain_timeout_s
        self.wait_for(lambda: self.watch.last_committed == ends, timeout_s, "the drain")

    def end_offsets(self, timeout_s: float = 120.0) -> dict[int, int]:
        """The topic's end offsets, once its partitions have leaders again (a broker that was
        just started answers before it leads them)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return end_offsets(self.bootstrap, self.topic)
            except KafkaException:  # e.g. NOT_LEADER_FOR_PARTITION, not flagged retriable
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            ahead = self.ledger.commit_ahead
            if ahead:  # found while running: no need to wait for the end to say so
                raise AssertionError(f"commits ran ahead: {ahead[:5]}\n{self.logs()}")
            ended = self.exited_on_their_own()
            if ended:
                statuses = ", ".join(f"pid {w.process.pid}: {w.process.returncode}" for w in ended)
                raise AssertionError(
                    f"a worker exited on its own ({statuses}) while waiting for {what}\n"
                    f"{self.logs()}"
                )
            if self.watch.error is not None:
                self.watch.stop()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s:.0f} s waiting for {what}; committed "
                    f"{self.watch.last_committed}\n{self.logs()}"
                )
            time.sleep(0.1)

    def wait_for_some(
        self, find: Callable[[], list[RunningWorker]], timeout_s: float, what: str
    ) -> list[RunningWorker]:
        """Until find() returns some workers; returns them."""
        found: list[RunningWorker] = []

        def check() -> bool:
            found[:] = find()
            return bool(found)

        self.wait_for(check, timeout_s, what)
        return found

    def logs(self, tail: int = 2500) -> str:
        return "\n".join(
            f"--- worker {i} (pid {w.process.pid}, status {w.process.returncode}):\n"
            + w.output()[-tail:]
            for i, w in enumerate(self.workers, 1)
        )

    # ------------------------------------------------------------------ the end

    def finish(self, **figures: str) -> Summary:
        """SIGTERM every worker, take the last sample, print the figures, check the invariants:
        nothing lost, every outcome right, no commit ever ahead, committed == end offsets."""
        ended = self.exited_on_their_own()  # before terminate_all, which only sees the living
        self.terminate_all()
        self.watch.stop()
        summary = self.ledger.summary()
        ends = self.end_offsets()
        committed = self.watch.last_committed
        self._report(summary, figures)
        context = f"\n{self.logs()}"
        assert not ended, (
            "workers exited on their own (halt or crash): "
            + ", ".join(f"pid {w.process.pid} status {w.process.returncode}" for w in ended)
            + context
        )
        assert summary.lost == 0, f"{summary.lost} records lost{context}"
        assert not summary.commit_ahead, f"commits ran ahead: {summary.commit_ahead[:5]}{context}"
        assert not summary.wrong_outcome, f"wrong outcomes: {summary.wrong_outcome[:5]}"
        assert not summary.unknown, f"untraceable results: {summary.unknown[:5]}"
        assert summary.produced == sum(ends.values()), "not every produced record was seen"
        assert committed == ends, f"committed {committed} != end offsets {ends}"
        return summary

    def _report(self, summary: Summary, figures: dict[str, str]) -> None:
        parts = [
            f"{summary.produced:,} records ({summary.accepted:,} accepted, "
            f"{summary.dead_lettered:,} dead-lettered)",
            f"lost {summary.lost}",
            f"duplicates {summary.duplicates}",
            f"commit samples {summary.commit_samples} (ahead {len(summary.commit_ahead)})",
        ]
        if self.exit_times:
            parts.append(
                f"SIGTERM to exit max {max(self.exit_times):.2f} s ({len(self.exit_times)} exits)"
            )
        if self.watch.peak_rss_kb:
            parts.append(f"peak worker RSS {self.watch.peak_rss_kb / 1024:.0f} MB")
        parts += [f"{name.replace('_', ' ')} {value}" for name, value in figures.items()]
        parts.append(f"{time.monotonic() - self.started_at:.0f} s")
        measurement(f"chaos {self.scale.name}: {self.scenario}", "; ".join(parts))
