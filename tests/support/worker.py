"""The worker as a real process (`python -m connector run`), for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.kafka import committed_offsets, end_offsets

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_mapping(directory: Path, name: str, spec: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **spec}, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class RunningWorker:
    process: subprocess.Popen[bytes]
    log_file: Path
    ops_url: str

    def output(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def wait_exit(self, timeout_s: float = 60.0) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"worker did not exit within {timeout_s} s:\n{self.output()[-4000:]}"
            ) from None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.ops_url + path, timeout=5)


def worker_env(
    bootstrap: str,
    group: str,
    emulator_url: str,
    mappings_dir: Path,
    dlq_topic: str,
    **extra: str,
) -> dict[str, str]:
    """The environment of a worker process: settings as AEP_CONNECTOR_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    settings = {
        "AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "AEP_CONNECTOR_KAFKA__GROUP_ID": group,
        "AEP_CONNECTOR_KAFKA__COMMIT_INTERVAL_MS": "500",
        "AEP_CONNECTOR_PLATFORM__BASE_URL": emulator_url,
        "AEP_CONNECTOR_PLATFORM__CONNECTION_ID": "conn-1",
        "AEP_CONNECTOR_PLATFORM__SANDBOX_NAME": "dev",
        "AEP_CONNECTOR_PLATFORM__IMS_ORG_ID": "ACME@AdobeOrg",
        "AEP_CONNECTOR_MAPPINGS_DIR": str(mappings_dir),
        "AEP_CONNECTOR_DEAD_LETTER__TOPIC": dlq_topic,
        "AEP_CONNECTOR_OPS__PORT": str(free_port()),
        "AEP_CONNECTOR_OPS__HOST": "127.0.0.1",
        "AEP_CONNECTOR_RETRY__INITIAL_BACKOFF_MS": "20",
        "AEP_CONNECTOR_RETRY__MAX_BACKOFF_MS": "500",
        "AEP_CONNECTOR_RETRY__MAX_RETRY_AFTER_S": "2",
    }
    return {**base, **settings, **extra}


@contextmanager
def start_worker(env: dict[str, str], log_file: Path) -> Iterator[RunningWorker]:
    """Run the worker until the block ends (then SIGKILL it if it is still running)."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = RunningWorker(process, log_file, f"http://127.0.0.1:{env['AEP_CONNECTOR_OPS__PORT']}")
    try:
        yield worker
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, worker: RunningWorker | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if worker is not None and not worker.alive():
            raise AssertionError(
                f"worker exited ({worker.process.returncode}) while waiting for {what}:\n"
                + worker.output()[-4000:]
            )
        if time.monotonic() > deadline:
            tail = worker.output()[-4000:] if worker else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{tail}")
        time.sleep(0.1)


def drained(bootstrap: str, group: str, topic: str) -> Callable[[], bool]:
    """True once the group's committed offsets reach the end of every partition."""
    ends = end_offsets(bootstrap, topic)

    def check() -> bool:
        return committed_offsets(bootstrap, group, topic) == ends

    return check
