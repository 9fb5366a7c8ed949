"""What delivery receipts cost per acknowledged message, measured alone on a real broker.

    .venv/bin/python bench/receipts_bench.py [--messages 200000] [--rounds 3]

The worker's receipt path for `--messages` accepted messages, as the loop runs it: for each,
ReceiptWriter.send() (the receipt's JSON, the key's SHA-256, producer.produce()), and the
loop's poll() every 500 messages (a consume batch's results); then flush() until Kafka has
every receipt. Each round runs the three cases in turn (receipts off: only the tokens handed
back; on; required), so load elsewhere on the machine spreads over all of them.

Figures (CPU-µs per message, medians over the rounds):
- `loop`: CPU of this thread (time.thread_time): what the worker's main thread pays;
- `process`: CPU of the whole process (time.process_time), librdkafka's threads included
  (batching, lz4 compression, the requests to the broker).
The end-to-end figure with the worker is `bench/worker_bench.py --receipts on`.

The broker: KAFKA_BOOTSTRAP_SERVERS (loopback only) when set, else scripts/local-kafka.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from connector.delivery.batcher import OutboundMessage  # noqa: E402
from connector.delivery.outcome import Accepted  # noqa: E402
from connector.metrics import Metrics  # noqa: E402
from connector.offsets import PartitionState  # noqa: E402
from connector.receipts import ReceiptWriter  # noqa: E402
from connector.records import SourceRecord  # noqa: E402
from connector.settings import ReceiptSettings  # noqa: E402
from tests.support.kafka import (  # noqa: E402
    create_topic,
    local_service,
    unique_name,
    wait_for_broker,
)

POLL_EVERY = 500


@contextlib.contextmanager
def broker() -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    with (
        tempfile.TemporaryDirectory(prefix="receipts-bench-") as state,
        local_service("kafka", Path(state)) as bootstrap,
    ):
        wait_for_broker(bootstrap)
        yield bootstrap


def messages(count: int) -> list[tuple[OutboundMessage, Accepted]]:
    """Accepted messages as the worker holds them: 8 partitions, keys like the benchmark's."""
    states = [PartitionState(("web.commerce", p)) for p in range(8)]
    made = []
    for n in range(count):
        record = SourceRecord(
            "web.commerce", n % 8, n // 8, 1_714_560_000_000 + n, f"v-{n % 4096}".encode(), b"{}"
        )
        message = OutboundMessage(b"{}", record, states[n % 8], "web-commerce", "bench-conn")
        batch = n // 500
        made.append((message, Accepted(f"1714560{batch:06d}:{batch}", f"b{batch}:{n % 500}", n)))
    return made


def run_case(
    bootstrap: str, topic: str, case: str, work: list[tuple[OutboundMessage, Accepted]]
) -> tuple[float, float]:
    """(loop CPU s, process CPU s) for one case over `work`."""
    stop = threading.Event()
    writer: ReceiptWriter[int] | None = None
    if case != "off":
        settings = ReceiptSettings(topic=topic, required=case == "required")
        writer = ReceiptWriter({"bootstrap.servers": bootstrap}, settings, Metrics())
        writer.check_topic()  # connected before the clock starts
    finished = 0
    loop0, process0 = time.thread_time(), time.process_time()
    for index, (message, accepted) in enumerate(work):
        if writer is None:
            finished += 1  # the record finishes at once
        else:
            writer.send(message, accepted, index, stop)
        if index % POLL_EVERY == POLL_EVERY - 1 and writer is not None:
            finished += len(writer.poll())
    if writer is not None:
        while finished < len(work):
            finished += len(writer.flush(10.0))
    loop, process = time.thread_time() - loop0, time.process_time() - process0
    if writer is not None and writer.pending:
        raise SystemExit(f"{case}: {writer.pending} receipts not delivered")
    return loop, process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = messages(args.messages)
    cases = ("off", "on", "required")
    figures: dict[str, list[tuple[float, float]]] = {case: [] for case in cases}
    with broker() as bootstrap:
        topic = create_topic(bootstrap, unique_name("bench-receipts"), 8)
        for round_number in range(1, args.rounds + 1):
            for case in cases:
                loop, process = run_case(bootstrap, topic, case, work)
                figures[case].append((loop, process))
                print(
                    f"round {round_number} receipts {case}: "
                    f"loop {loop / args.messages * 1e6:.2f} CPU-µs/message, "
                    f"process {process / args.messages * 1e6:.2f} CPU-µs/message",
                    flush=True,
                )
    print(f"medians over {args.rounds} rounds of {args.messages:,} messages (CPU-µs/message):")
    for case in cases:
        loop = median(f[0] for f in figures[case]) / args.messages * 1e6
        process = median(f[1] for f in figures[case]) / args.messages * 1e6
        print(f"  receipts {case:8}  loop {loop:6.2f}   process {process:6.2f}")


if __name__ == "__main__":
    main()
