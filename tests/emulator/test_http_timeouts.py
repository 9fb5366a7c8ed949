"""Slow clients cannot hold a connection: request heads and bodies must arrive in time.

Raw sockets play the slow client, trickling bytes so that a timeout reset by activity would never
fire. The emulator under test has short timeouts: 1 s for a head, 1 s for a body, 3 s idle.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from tests.emulator.conftest import event
from tests.support.emulator import RunningEmulator, start_emulator

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 3.0
GIVE_UP_S = 8.0  # far beyond the timeouts: a connection still open then is held for good


@pytest.fixture(scope="module")
def slow_guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    config = {
        "header_timeout_s": HEADER_TIMEOUT_S,
        "body_timeout_s": BODY_TIMEOUT_S,
        "idle_timeout_s": IDLE_TIMEOUT_S,
    }
    with start_emulator(config, tmp_path_factory.mktemp("timeouts")) as emulator:
        yield emulator


@pytest.fixture
def emulator(slow_guarded: RunningEmulator) -> RunningEmulator:
    slow_guarded.reset()
    return slow_guarded


def connect(emulator: RunningEmulator) -> socket.socket:
    host, port = emulator.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.settimeout(0.2)
    return sock


def trickle_until_closed(sock: socket.socket, drip: bytes | None) -> tuple[float, bytes]:
    """Send one byte of `drip` every 0.2 s (nothing when None) until the server closes the
    connection or answers; returns (seconds taken, bytes received until the close)."""
    started = time.monotonic()
    received = b""
    position = 0
    while time.monotonic() - started < GIVE_UP_S:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if drip is not None and not received:
                try:
                    sock.send(drip[position % len(drip) : position % len(drip) + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - started, received
                position += 1
            continue
        except ConnectionResetError:
            return time.monotonic() - started, received
        if not data:
            return time.monotonic() - started, received
        received += data
    raise AssertionError(f"the connection was still open after {GIVE_UP_S} s")


def test_a_connection_that_sends_nothing_is_closed(emulator: RunningEmulator) -> None:
    with connect(emulator) as sock:
        taken, received = trickle_until_closed(sock, None)
    assert received == b""
    assert taken >= HEADER_TIMEOUT_S * 0.9
    assert emulator.stats()["header_timeouts"] == 1


def test_a_head_trickled_byte_by_byte_is_cut_off(emulator: RunningEmulator) -> None:
    with connect(emulator) as sock:
        sock.sendall(b"POST /collection/batch/c HTTP/1.1\r\nHost: emulator\r\n")
        taken, received = trickle_until_closed(sock, b"X-Slow: still coming\r\n")
    assert received == b""
    assert taken >= HEADER_TIMEOUT_S * 0.9
    assert emulator.stats()["header_timeouts"] == 1


def request_head(
    length: int, path: bytes = b"/collection/batch/c", content_type: bytes = b"application/json"
) -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: emulator\r\n"
        b"Content-Type: " + content_type + b"\r\nx-sandbox-name: prod\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n\r\n"
    )


SLOW_BODIES = [
    (b"/collection/batch/c", b"application/json", orjson.dumps({"messages": [event("slow")]})),
    (b"/collection/c", b"application/json", orjson.dumps(event("slow"))),
    (b"/__emulator/faults", b"application/json", b'{"sequence": ["503", "503", "503"]}'),
    (
        b"/ims/token/v3",
        b"application/x-www-form-urlencoded",
        b"grant_type=client_credentials&client_id=a&client_secret=b",
    ),
]


@pytest.mark.parametrize(("path", "content_type", "body"), SLOW_BODIES)
def test_a_body_trickled_byte_by_byte_is_answered_408_and_cut_off(
    emulator: RunningEmulator, path: bytes, content_type: bytes, body: bytes
) -> None:
    with connect(emulator) as sock:
        sock.sendall(request_head(len(body), path, content_type) + body[:10])
        taken, received = trickle_until_closed(sock, body[10:-1])  # never the last byte
    assert taken >= BODY_TIMEOUT_S * 0.9
    # The 408 is sent before the close; a drip racing the close may reset it away.
    assert received == b"" or received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    if received:
        answer = orjson.loads(received.split(b"\r\n\r\n", 1)[1])
        assert answer["message"] == f"body: not received within {BODY_TIMEOUT_S:g} s"
    stats = emulator.stats()
    assert (stats["body_timeouts"], stats["messages_accepted"]) == (1, 0)


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response with a Content-Length body."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest


def test_a_prompt_client_keeps_its_connection_between_requests(
    emulator: RunningEmulator,
) -> None:
    """Idle time between requests is the idle timeout's, not the head's."""
    body = orjson.dumps({"messages": [event("prompt")]})
    with connect(emulator) as sock:
        sock.sendall(request_head(len(body)) + body)
        assert read_response(sock).startswith(b"HTTP/1.1 207")
        time.sleep(HEADER_TIMEOUT_S * 1.5)  # longer than a head may take, idle in between
        sock.sendall(request_head(len(body)) + body)
        assert read_response(sock).startswith(b"HTTP/1.1 207")
        sock.settimeout(0.2)
        taken, received = trickle_until_closed(sock, None)
    assert received == b""
    assert taken >= IDLE_TIMEOUT_S * 0.9
    stats = emulator.stats()
    assert (stats["messages_accepted"], stats["header_timeouts"]) == (2, 0)
