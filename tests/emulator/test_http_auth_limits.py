"""The token endpoint, bearer checks and rate limits over HTTP."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.emulator.conftest import CLIENT_ID, CLIENT_SECRET, HEADERS, TOKEN_LIFETIME_S, event
from tests.support.emulator import RunningEmulator

pytestmark = pytest.mark.integration

SCOPE = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"


def token_request(
    http: httpx.Client, emulator: RunningEmulator, **overrides: str
) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": SCOPE,
        **overrides,
    }
    return http.post(emulator.token_url, data=form)


def get_token(http: httpx.Client, emulator: RunningEmulator) -> str:
    response = token_request(http, emulator)
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


def send(
    http: httpx.Client, emulator: RunningEmulator, connection: str, token: str | None = None
) -> httpx.Response:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = orjson.dumps({"messages": [event("a")]})
    return http.post(emulator.batch_url(connection), content=body, headers=headers)


def test_configured_credentials_get_a_bearer_token(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    response = token_request(http, emulator)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == TOKEN_LIFETIME_S
    assert len(body["access_token"]) >= 32
    assert get_token(http, emulator) != body["access_token"]


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "stranger"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"client_id": ""}, 400, "invalid_request"),
        ({"client_secret": ""}, 400, "invalid_request"),
    ],
)
def test_bad_token_requests_get_ims_errors(
    http: httpx.Client,
    emulator: RunningEmulator,
    overrides: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = token_request(http, emulator, **overrides)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    assert CLIENT_SECRET not in response.text


def test_the_token_request_must_be_form_encoded(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    response = http.post(
        emulator.token_url, json={"grant_type": "client_credentials", "client_id": CLIENT_ID}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_an_authenticated_connection_wants_a_bearer_token(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    missing = send(http, emulator, "auth")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert "bearer token is required" in missing.json()["message"]

    invalid = send(http, emulator, "auth", token="made-up")
    assert invalid.status_code == 403
    assert invalid.json()["message"] == "header Authorization: the bearer token is not valid"

    assert send(http, emulator, "auth", token=get_token(http, emulator)).status_code == 207
    assert send(http, emulator, "open").status_code == 207  # no authentication there
    assert emulator.stats()["requests_by_status"] == {"401": 1, "403": 1, "207": 2}


def test_an_expired_token_is_403_and_a_new_one_works(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    token = get_token(http, emulator)
    assert send(http, emulator, "auth", token).status_code == 207
    emulator.advance_clock(TOKEN_LIFETIME_S - 1)
    assert send(http, emulator, "auth", token).status_code == 207
    emulator.advance_clock(1)
    expired = send(http, emulator, "auth", token)
    assert expired.status_code == 403
    assert expired.json()["message"] == "header Authorization: the bearer token has expired"
    assert send(http, emulator, "auth", get_token(http, emulator)).status_code == 207
    assert emulator.stats()["tokens_issued"] == 2


def test_the_request_rate_limit_answers_429_with_retry_after(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    # "limited": 0.01 requests/s with a burst of 2, Retry-After 7.
    assert [send(http, emulator, "limited").status_code for _ in range(2)] == [207, 207]
    refused = send(http, emulator, "limited")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "7"
    assert refused.json()["message"] == "connection 'limited': rate limit exceeded"
    assert send(http, emulator, "open").status_code == 207  # other connections unaffected
    emulator.advance_clock(100)  # one token back
    assert send(http, emulator, "limited").status_code == 207
    assert send(http, emulator, "limited").status_code == 429


def test_the_message_rate_limit_counts_messages(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    # "limited-messages": 0.01 messages/s with a burst of 10, no Retry-After.
    def batch(size: int) -> int:
        body = orjson.dumps({"messages": [event(str(i)) for i in range(size)]})
        response = http.post(emulator.batch_url("limited-messages"), content=body, headers=HEADERS)
        if response.status_code == 429:
            assert "Retry-After" not in response.headers
        return response.status_code

    assert [batch(6), batch(6), batch(4), batch(1)] == [207, 429, 207, 429]
    assert emulator.stats()["messages_accepted"] == 10
    emulator.reset()  # buckets refill on reset
    assert batch(10) == 207
