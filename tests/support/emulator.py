"""The Platform API emulator as a real process, for integration tests.

    with start_emulator({"connections": {"c1": {}}}, tmp_path) as emulator:
        httpx.post(emulator.batch_url("c1"), ...)
        assert emulator.stats()["messages_accepted"] == 3

The emulator runs as `python -m connector emulator` on a free loopback port, with the given
configuration written to a YAML file; it is waited for by polling its health endpoint and is
terminated on exit. Relative paths in the configuration (schemas, record_file) are resolved
against the directory of that YAML file, so pass absolute paths.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROL = "/__emulator"


class EmulatorStartError(RuntimeError):
    """The emulator process exited or did not answer; the message carries its output."""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningEmulator:
    """A started emulator: its base URL and small wrappers around its control API."""

    url: str
    process: subprocess.Popen[bytes]
    config_file: Path
    log_file: Path
    client: httpx.Client = field(repr=False)

    def collection_url(self, connection_id: str) -> str:
        """POST one message here."""
        return f"{self.url}/collection/{connection_id}"

    def batch_url(self, connection_id: str) -> str:
        """POST {"messages": [...]} here."""
        return f"{self.url}/collection/batch/{connection_id}"

    @property
    def token_url(self) -> str:
        """The IMS token endpoint (form-encoded client credentials)."""
        return f"{self.url}/ims/token/v3"

    def messages(
        self, connection: str | None = None, dataset: str | None = None
    ) -> list[dict[str, Any]]:
        """Accepted messages, oldest first: each {connectionId, xactionId, receivedTimeMs,
        datasetId, message}."""
        params = {k: v for k, v in (("connection", connection), ("dataset", dataset)) if v}
        response = self._control("GET", "/messages", params=params)
        return [orjson.loads(line) for line in response.content.splitlines() if line]

    def stats(self) -> dict[str, Any]:
        """Counters: requests_by_status, messages_accepted/rejected, bytes_received, …"""
        result: dict[str, Any] = self._control("GET", "/stats").json()
        return result

    def set_faults(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the fault plan, e.g. {"sequence": ["503", "ok"]} or {"p503": 0.2, "seed": 1}."""
        result: dict[str, Any] = self._control("POST", "/faults", json=spec).json()
        return result

    def faults(self) -> dict[str, Any]:
        """The fault plan in force and what is left of its sequence."""
        result: dict[str, Any] = self._control("GET", "/faults").json()
        return result

    def clear_faults(self) -> None:
        """No more faults; stalled requests carry on."""
        self._control("DELETE", "/faults")

    def set_reject(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """Reject messages by value, e.g. [{"pointer": "/body/xdmEntity/_id", "equals": "x"}]."""
        self._control("POST", "/reject", json=list(rules))

    def clear_reject(self) -> None:
        self._control("DELETE", "/reject")

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward: tokens expire, rate-limit buckets refill."""
        self._control("POST", "/clock", json={"advance_s": seconds})

    def reset(self) -> None:
        """Forget messages and stats; faults, reject rules, rate limits back to the config's."""
        self._control("POST", "/reset")

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout_s: float = 10.0,
        what: str = "condition",
    ) -> None:
        """Poll stats() until predicate(stats) is true; fail after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self.stats()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.01)

    def output(self) -> str:
        """What the process wrote to stdout and stderr so far."""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def _control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, f"{self.url}{CONTROL}{path}", **kwargs)
        if response.status_code >= 400:
            raise AssertionError(
                f"{method} {CONTROL}{path} answered {response.status_code}: {response.text}"
            )
        return response


@contextmanager
def start_emulator(
    config: Mapping[str, Any] | None = None,
    tmp_path: Path | None = None,
    *,
    startup_timeout_s: float = 20.0,
    port: int | None = None,
) -> Iterator[RunningEmulator]:
    """Run the emulator with `config` until the block exits. Raises EmulatorStartError when it
    does not come up (for example an invalid configuration: the error shows its output).
    `port` starts it on that port (to start one again where its clients expect it)."""
    with ExitStack() as stack:
        if tmp_path is None:
            tmp_path = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config_file = tmp_path / f"emulator-{time.monotonic_ns()}.yaml"
        config_file.write_text(yaml.safe_dump(dict(config or {})), encoding="utf-8")
        log_file = config_file.with_suffix(".log")
        client = stack.enter_context(httpx.Client(timeout=10))
        for attempt in range(3):
            chosen = port or free_port()
            process = _spawn(chosen, config_file, log_file)
            stack.callback(_stop, process)
            url = f"http://127.0.0.1:{chosen}"
            try:
                _wait_until_up(url, process, client, log_file, startup_timeout_s)
            except EmulatorStartError as exc:
                # Another process may have taken the port between probe and bind: try another
                # (or, for a fixed port, wait for the previous holder to let it go).
                if "address already in use" in str(exc).lower() and attempt < 2:
                    if port is not None:
                        time.sleep(1.0)
                    continue
                raise
            yield RunningEmulator(url, process, config_file, log_file, client)
            return


def _spawn(port: int, config_file: Path, log_file: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "connector", "emulator", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--config", str(config_file)]
    with log_file.open("wb") as log:
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def _wait_until_up(
    url: str,
    process: subprocess.Popen[bytes],
    client: httpx.Client,
    log_file: Path,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            output = log_file.read_text(encoding="utf-8", errors="replace")
            raise EmulatorStartError(
                f"the emulator exited with status {process.returncode}:\n{output}"
            )
        try:
            if client.get(f"{url}{CONTROL}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise EmulatorStartError(f"the emulator did not answer on {url} within {timeout_s} s")
        time.sleep(0.02)  # poll interval while waiting for the health check to pass


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
