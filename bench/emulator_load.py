"""Load the emulator with batches of ~1 KB messages and print what it accepts per second.

    .venv/bin/python bench/emulator_load.py                 # starts its own emulator process
    .venv/bin/python bench/emulator_load.py --url http://127.0.0.1:8090

The run is bounded by `--messages` and `--max-seconds`, and only talks to loopback addresses.
When it starts the emulator itself it also reads the emulator's CPU time from /proc, which gives
messages per CPU-second of the (single-threaded) server: the "one core" figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CONNECTION_ID = "bench-connection"


def message(index: int, size: int) -> dict[str, object]:
    """An ExperienceEvent envelope padded to about `size` bytes of JSON."""
    schema_ref = {
        "id": "https://ns.adobe.com/bench/schemas/0123456789abcdef",
        "contentType": "application/vnd.adobe.xed-full+json;version=1",
    }
    envelope: dict[str, object] = {
        "header": {
            "schemaRef": schema_ref,
            "imsOrgId": "5C1328435BF324E90A49402A@AdobeOrg",
            "datasetId": "5da9452f7de80400007jc52a",
            "source": {"name": "emulator load"},
        },
        "body": {
            "xdmMeta": {"schemaRef": schema_ref},
            "xdmEntity": {
                "_id": str(uuid.UUID(int=index)),
                "timestamp": "2024-05-01T12:00:00Z",
                "eventType": "commerce.productViews",
                "identityMap": {"ECID": [{"id": f"{index:038d}", "primary": True}]},
                "productListItems": [{"SKU": f"SKU-{index % 97}", "quantity": 1}],
                "_bench": {"padding": ""},
            },
        },
    }
    pad = size - len(orjson.dumps(envelope))
    envelope["body"]["xdmEntity"]["_bench"]["padding"] = "x" * max(0, pad)  # type: ignore[index]
    return envelope


def batch_bodies(count: int, batch_size: int, message_bytes: int) -> list[bytes]:
    """`count` distinct request bodies, built before the clock starts."""
    return [
        orjson.dumps(
            {"messages": [message(b * batch_size + i, message_bytes) for i in range(batch_size)]}
        )
        for b in range(count)
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def emulator_process() -> Iterator[tuple[str, int]]:
    """Start `python -m connector emulator` on a free loopback port; yield (url, pid)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "emulator.yaml"
        config.write_text("max_stored_messages: 1000000\n", encoding="utf-8")
        command = [sys.executable, "-m", "connector", "emulator", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--config", str(config)]
        process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url, process)
            yield url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the emulator exited with status {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/__emulator/health", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"the emulator did not answer within {timeout_s} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_all(
    url: str, bodies: list[bytes], batches: int, concurrency: int, max_seconds: float
) -> tuple[int, int, float]:
    """Send `batches` requests from `concurrency` keep-alive connections.

    Returns (accepted messages, requests, elapsed seconds)."""
    endpoint = f"{url}/collection/batch/{CONNECTION_ID}"
    headers = {"Content-Type": "application/json", "x-sandbox-name": "prod"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    next_batch = 0
    accepted = 0
    deadline = time.monotonic() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_batch, accepted
        while next_batch < batches and time.monotonic() < deadline:
            body = bodies[next_batch % len(bodies)]
            next_batch += 1
            response = await client.post(endpoint, content=body, headers=headers)
            if response.status_code != 207:
                raise SystemExit(f"unexpected {response.status_code}: {response.text[:300]}")
            entries = orjson.loads(response.content)["responses"]
            accepted += sum(
                1 for entry in entries if "xactionId" in entry and "status" not in entry
            )

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await client.post(endpoint, content=bodies[0], headers=headers)  # warm up the connection
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return accepted, next_batch, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running emulator (loopback only); default: start one.")
    parser.add_argument("--messages", type=int, default=200_000, help="Messages to send.")
    parser.add_argument("--batch-size", type=int, default=500, help="Messages per request.")
    parser.add_argument("--message-bytes", type=int, default=1000, help="Size of one message.")
    parser.add_argument("--concurrency", type=int, default=4, help="Requests in flight.")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="Stop sending after this.")
    args = parser.parse_args()
    if args.url and urlsplit(args.url).hostname not in LOOPBACK:
        parser.error("--url must be a loopback address (127.0.0.1, localhost or ::1)")

    batches = max(1, args.messages // args.batch_size)
    bodies = batch_bodies(min(batches, 20), args.batch_size, args.message_bytes)
    average = len(bodies[0]) / args.batch_size
    print(f"{batches} requests of {args.batch_size} messages, {average:.0f} bytes a message")

    with contextlib.ExitStack() as stack:
        if args.url:
            url, pid = args.url.rstrip("/"), None
        else:
            url, pid = stack.enter_context(emulator_process())
        cpu_before = cpu_seconds(pid) if pid is not None else 0.0
        accepted, requests, elapsed = asyncio.run(
            send_all(url, bodies, batches, args.concurrency, args.max_seconds)
        )
        cpu_used = cpu_seconds(pid) - cpu_before if pid is not None else None

    print(f"accepted {accepted} messages in {requests} requests in {elapsed:.2f} s")
    print(f"{accepted / elapsed:,.0f} messages/s, {requests / elapsed:,.1f} requests/s")
    if cpu_used:
        print(
            f"emulator CPU {cpu_used:.2f} s ({cpu_used / elapsed:.0%} of one core): "
            f"{accepted / cpu_used:,.0f} messages per CPU-second"
        )


if __name__ == "__main__":
    main()
