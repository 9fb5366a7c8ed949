"""Who may use the control API: loopback clients always; others only with the control token.

The emulator under test listens on this machine's non-loopback address and is called there, so
the requests come from a non-loopback peer. Every other test calls 127.0.0.1 (a loopback peer)
without a token, which shows the other half.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from connector.emulator.config import CONTROL_TOKEN_ENV
from tests.emulator.conftest import HEADERS, emulator_at, event, non_loopback_address

pytestmark = pytest.mark.integration

TOKEN = "a-long-random-control-token"
CONTROL_CALLS = [
    ("GET", "/__emulator/messages", None),
    ("GET", "/__emulator/stats", None),
    ("GET", "/__emulator/faults", None),
    ("POST", "/__emulator/faults", b'{"p503": 1}'),
    ("DELETE", "/__emulator/faults", None),
    ("POST", "/__emulator/reject", b"[]"),
    ("POST", "/__emulator/clock", b'{"advance_s": 1}'),
    ("POST", "/__emulator/reset", None),
]


@pytest.fixture(scope="module")
def address() -> str:
    found = non_loopback_address()
    if found is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call the emulator on")
    return found


@pytest.fixture(scope="module")
def open_url(address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """No control token configured."""
    with emulator_at(address, {}, tmp_path_factory.mktemp("control-open")) as url:
        yield url


@pytest.fixture(scope="module")
def token_url(address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """control_token configured in the file."""
    config = {"control_token": TOKEN}
    with emulator_at(address, config, tmp_path_factory.mktemp("control-token")) as url:
        yield url


def call(
    url: str, method: str, path: str, body: bytes | None, token: str | None = None
) -> httpx.Response:
    headers = {"X-Emulator-Token": token} if token is not None else {}
    return httpx.request(method, f"{url}{path}", content=body, headers=headers, timeout=10)


@pytest.mark.parametrize(("method", "path", "body"), CONTROL_CALLS)
def test_without_a_token_non_loopback_clients_are_refused(
    open_url: str, method: str, path: str, body: bytes | None
) -> None:
    response = call(open_url, method, path, body, token="anything")
    assert response.status_code == 403
    assert response.json()["message"] == (
        "control API: only loopback clients may use it unless a control token is configured "
        f"(control_token, or the {CONTROL_TOKEN_ENV} environment variable)"
    )


def test_refusals_change_nothing_and_the_ingestion_api_is_served(open_url: str) -> None:
    body = orjson.dumps({"messages": [event("a")]})
    response = httpx.post(f"{open_url}/collection/batch/c", content=body, headers=HEADERS)
    assert response.status_code == 207
    assert call(open_url, "POST", "/__emulator/faults", b'{"p503": 1}').status_code == 403
    again = httpx.post(f"{open_url}/collection/batch/c", content=body, headers=HEADERS)
    assert again.status_code == 207  # the fault plan was not set


def test_the_health_check_is_open_to_all(open_url: str) -> None:
    response = call(open_url, "GET", "/__emulator/health", None)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(("method", "path", "body"), CONTROL_CALLS)
def test_with_a_token_non_loopback_clients_must_send_it(
    token_url: str, method: str, path: str, body: bytes | None
) -> None:
    missing = call(token_url, method, path, body)
    assert missing.status_code == 401
    assert missing.json()["message"] == "header X-Emulator-Token: required for the control API"
    wrong = call(token_url, method, path, body, token=TOKEN + "x")
    assert wrong.status_code == 403
    assert wrong.json()["message"] == "header X-Emulator-Token: not valid"
    assert call(token_url, method, path, body, token=TOKEN).status_code == 200


def test_refusals_are_counted(token_url: str) -> None:
    call(token_url, "POST", "/__emulator/reset", None, token=TOKEN)
    call(token_url, "GET", "/__emulator/stats", None)
    call(token_url, "GET", "/__emulator/stats", None, token="no")
    stats = call(token_url, "GET", "/__emulator/stats", None, token=TOKEN).json()
    assert stats["control_refused"] == 2


def test_the_token_can_come_from_the_environment(address: str, tmp_path: Path) -> None:
    env = {CONTROL_TOKEN_ENV: TOKEN}
    with emulator_at(address, {}, tmp_path, env=env) as url:
        assert call(url, "GET", "/__emulator/stats", None).status_code == 401
        assert call(url, "GET", "/__emulator/stats", None, token=TOKEN).status_code == 200
