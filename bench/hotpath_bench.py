"""The worker's main thread per record, in one process, against the same work done by hand.

    .venv/bin/python bench/hotpath_bench.py [--records 30000] [--rounds 3] \\
        [--variants full,twin,no-validate,plain-decode,bare] [--profile]

The end-to-end benchmark (bench/worker_bench.py) is the measure that counts, but on a shared
machine its figures move with the load; this one isolates the record path so that a change to
it shows, and says what each stage costs *in place*, among everything else the loop does (a
stage costs more there than in a tight loop of its own: caches). Both sides read the same
confluent_kafka.Message objects, built in memory from the end-to-end benchmark's web-commerce
records (`--records` over 8 partitions), from a consumer that hands them out in per-partition
runs, as librdkafka does:

- **the worker**: the real loop (`Worker.run`, after `settle_collector()` as connector/runner.py
  does): intake, process (decode, compiled mapping, XDM validation, envelope), batches, dispatcher,
  results, offset tracker, commits, metrics. The API is an httpx MockTransport answering every
  request with one result per message; the dead-letter producer is a stub (nothing is
  dead-lettered). The figure is the main thread's CPU (`time.thread_time`) from its first
  record to the commit that completes every partition, per record; the request threads are
  not in it (bench/worker_bench.py counts them).
- **variants** of the worker, each with one part of the record's path replaced, so that the
  difference from `full` is what that part costs in place:
  `twin` (the hand-written twin instead of the compiled mapping; no field warnings),
  `no-validate` (no XDM validation), `plain-decode` (orjson.loads without the decoder's limit
  checks), `bare` (all three: what is left is the worker's own machinery around the floor's
  work).
- **the floor**: bench/floor_bench.py's loop on the same messages (orjson, the twin, the
  envelope, request framing), without the consumer.

Rounds take turns between the variants and the floor; the best round of each counts (the
least disturbed by the rest of the machine). `--profile` prints pyinstrument's view of one
`full` round (wall-clock samples of the main thread: proportions, not CPU).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
from confluent_kafka import Message, TopicPartition

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.floor_bench import FRAMING, MAPPING  # noqa: E402
from bench.twins.web_commerce import map_record  # noqa: E402
from bench.worker_bench import make_record, mapping_copy, templates  # noqa: E402
from connector.allocator import settle_collector  # noqa: E402
from connector.deadletter import DeadLetterWriter  # noqa: E402
from connector.mapping import (  # noqa: E402
    CompiledMapping,
    MapResult,
    TargetDefaults,
    load_mapping_file,
)
from connector.metrics import Metrics  # noqa: E402
from connector.records import SourceRecord  # noqa: E402
from connector.settings import Settings  # noqa: E402
from connector.worker import LetterToken, Worker  # noqa: E402

TOPIC = "hotpath"
PARTITIONS = 8
RUN = 500  # messages of one partition in a row, as a fetch response brings them
VARIANTS = ("full", "twin", "no-validate", "plain-decode", "bare")


def build_messages(count: int, size: int) -> list[Message]:
    """The benchmark's records as consumed messages, in per-partition runs."""
    rng = random.Random(20240501)
    bases = templates()
    per_partition: list[list[Message]] = [[] for _ in range(PARTITIONS)]
    for index in range(count):
        partition = index % PARTITIONS
        value = make_record(bases[index % len(bases)], index, size, rng)
        offset = len(per_partition[partition])
        per_partition[partition].append(
            Message(
                topic=TOPIC,
                partition=partition,
                offset=offset,
                key=f"v-{index % 4096}".encode(),
                value=value,
                timestamp=(1, 1_714_560_000_000 + index),
            )
        )
    ordered: list[Message] = []
    for start in range(0, max(len(p) for p in per_partition), RUN):
        for messages in per_partition:
            ordered.extend(messages[start : start + RUN])
    return ordered


class ReplayConsumer:
    """Hands out the messages in order; assigns every partition on the first consume() and
    serves commit callbacks inside consume(), as librdkafka does."""

    def __init__(self, config: dict[str, Any], messages: list[Message]) -> None:
        self.on_commit: Callable[[Any, list[TopicPartition]], None] = config["on_commit"]
        self._messages = messages
        self._next = 0
        self._on_assign: Any = None
        self._pending_commits: list[list[TopicPartition]] = []
        self.committed: dict[tuple[str, int], int] = {}
        self.first_record_cpu: float | None = None

    def subscribe(self, topics: list[str], on_assign: Any = None, **_callbacks: Any) -> None:
        self._on_assign = on_assign

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        if self._on_assign is not None:
            assign, self._on_assign = self._on_assign, None
            assign(self, [TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        while self._pending_commits:
            self.on_commit(None, self._pending_commits.pop(0))
        batch = self._messages[self._next : self._next + num_messages]
        self._next += len(batch)
        if not batch:
            time.sleep(min(timeout, 0.001))
        elif self.first_record_cpu is None:
            self.first_record_cpu = time.thread_time()
        return batch

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> Any:
        done = [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in offsets]
        for tp in done:
            self.committed[(tp.topic, tp.partition)] = tp.offset
        if asynchronous:
            self._pending_commits.append(done)
            return None
        return done

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, -1001) for tp in partitions]

    def get_watermark_offsets(self, partition: TopicPartition, **_kwargs: Any) -> tuple[int, int]:
        return 0, -1

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]

    def pause(self, partitions: list[TopicPartition]) -> None:
        pass

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass

    def seek(self, partition: TopicPartition) -> None:
        pass

    def close(self) -> None:
        pass


class StubProducer:
    """The dead-letter producer: the topic exists; nothing is produced in this benchmark."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={"dlq": SimpleNamespace(error=None)})

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0

    def produce(self, *_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("nothing is dead-lettered in this benchmark")


def accept_all(request: httpx.Request) -> httpx.Response:
    count = request.content.count(b'{"header":')
    answer = {"batchId": "b", "responses": [{"xactionId": f"b:{i}"} for i in range(count)]}
    return httpx.Response(207, content=orjson.dumps(answer))


class TwinMapping:
    """The compiled mapping with its `apply` done by the hand-written twin (variant `twin`)."""

    def __init__(self, compiled: CompiledMapping) -> None:
        self.name = compiled.name
        self.validator = compiled.validator
        self.envelope = compiled.envelope
        self.encode = compiled.encode
        self.raw_flow_id = compiled.raw_flow_id

    def apply(self, value: Any, meta: SourceRecord) -> MapResult:
        return MapResult(map_record(value, meta), [])


def worker_round(messages: list[Message], work: Path, variant: str, profile: bool = False) -> float:
    """Main-thread CPU-µs per record of one worker over `messages`."""
    mapping_file = mapping_copy(work / "mappings", TOPIC)
    mappings = [load_mapping_file(mapping_file, TargetDefaults("hot-conn", "HOT@AdobeOrg"))]
    settings = Settings(
        kafka={"bootstrap_servers": "unused:9092", "group_id": "hot", "commit_interval_ms": 250},
        platform={"base_url": "http://api.invalid", "sandbox_name": "hot"},
    )
    ends: dict[int, int] = {}
    for message in messages:
        ends[message.partition()] = message.offset() + 1
    consumers: list[ReplayConsumer] = []

    def consumer_factory(config: dict[str, Any]) -> ReplayConsumer:
        consumers.append(ReplayConsumer(config, messages))
        return consumers[0]

    metrics = Metrics()
    worker = Worker(
        settings,
        mappings,
        metrics,
        consumer_factory=consumer_factory,  # type: ignore[arg-type]
        dead_letters=DeadLetterWriter[LetterToken]({}, "dlq", metrics, lambda _c: StubProducer()),
        http=httpx.Client(transport=httpx.MockTransport(accept_all)),
    )
    route = worker.intake._routes.get(TOPIC)  # built now, changed below for the variant
    if variant in ("plain-decode", "bare"):
        route.decoder = orjson.loads
    for target in route.targets:
        if variant in ("twin", "bare"):
            target.mapping = TwinMapping(target.mapping)  # type: ignore[assignment]
        if variant in ("no-validate", "bare"):
            target.mapping.validator = None
    consumer = consumers[0]
    done_cpu: list[float] = []

    def drained() -> bool:
        return all(consumer.committed.get((TOPIC, p)) == end for p, end in ends.items())

    on_commit = consumer.on_commit

    def on_commit_then_check(error: Any, partitions: list[TopicPartition]) -> None:
        on_commit(error, partitions)
        if not done_cpu and drained():
            done_cpu.append(time.thread_time())
            worker.stop_requested.set()

    consumer.on_commit = on_commit_then_check
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    threshold = gc.get_threshold()
    settle_collector()
    try:
        status = worker.run()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(color=False, processor_options={"filter_threshold": 0.005}))
    if status != 0 or not done_cpu or consumer.first_record_cpu is None:
        raise SystemExit(f"worker round failed: status {status}")
    return (done_cpu[0] - consumer.first_record_cpu) / len(messages) * 1e6


def floor_round(messages: list[Message], max_request_bytes: int = 1_000_000) -> float:
    """Thread CPU-µs per record of floor_bench.py's loop over `messages`."""
    mapping = load_mapping_file(MAPPING, TargetDefaults("floor", "FLOOR@AdobeOrg"))
    envelope = mapping.envelope
    bodies: list[bytes] = []
    size = FRAMING
    requests = 0
    started = time.thread_time()
    for start in range(0, len(messages), 1000):
        now_ms = time.time_ns() // 1_000_000
        for message in messages[start : start + 1000]:
            if message.error() is not None:
                continue
            value = orjson.loads(message.value())
            meta = SourceRecord(TOPIC, message.partition(), message.offset(), None, None, None)
            entity = map_record(value, meta)
            if entity is None:
                continue
            body = envelope(entity, now_ms)
            if size + len(body) + 1 > max_request_bytes and bodies:
                request = b'{"messages":[' + b",".join(bodies) + b"]}"
                requests += len(request) > 0
                bodies, size = [], FRAMING
            bodies.append(body)
            size += len(body) + 1
    return (time.thread_time() - started) / len(messages) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--record-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--variants",
        default="full",
        help=f"Comma-separated, of {', '.join(VARIANTS)} (default: full).",
    )
    parser.add_argument("--profile", action="store_true", help="Profile one `full` round.")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    messages = build_messages(args.records, args.record_size)
    with tempfile.TemporaryDirectory(prefix="hotpath-") as work:
        if args.profile:
            worker_round(messages, Path(work), "full", profile=True)
            return
        figures: dict[str, list[float]] = {name: [] for name in [*variants, "floor"]}
        for _ in range(args.rounds):
            for variant in variants:
                figures[variant].append(worker_round(messages, Path(work), variant))
            figures["floor"].append(floor_round(messages))
            print("round: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in figures.items()))
    floor = min(figures["floor"])
    print(f"best of {args.rounds} rounds, main-thread CPU-µs per record (ratio to the floor):")
    for name, values in figures.items():
        print(f"  {name:13s} {min(values):6.1f}  ({min(values) / floor:.2f})")


if __name__ == "__main__":
    main()
