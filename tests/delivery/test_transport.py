"""The API client's TLS and proxy against real local servers: a CA bundle, a client certificate,
verification off, a proxy with credentials; and certificate failures told apart from other
transport failures, halting the sender after a bound instead of being retried forever."""

from __future__ import annotations

import base64
import random
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from connector.delivery.auth import TokenProvider
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.batcher import Batch, OutboundMessage
from connector.delivery.sender import ApiHealth, Sender, Ticket
from connector.delivery.transport import (
    CERTIFICATE_ATTEMPTS,
    CertificateError,
    build_http_client,
    certificate_error,
)
from connector.errors import RetryableError
from connector.metrics import Metrics
from connector.offsets import PartitionState
from connector.records import SourceRecord
from connector.settings import AuthSettings, PlatformSettings, TransportSettings
from tests.support.tls import CertificateAuthority, Issued, https_server, server_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("pki")
    api_ca = CertificateAuthority(directory, "api")
    client_ca = CertificateAuthority(directory, "clients")
    return {
        "api_ca": api_ca.pem,
        "other_ca": CertificateAuthority(directory, "other").pem,
        "server": api_ca.issue("server"),
        "expired": api_ca.issue("expired", expired=True),
        "client_ca": client_ca.pem,
        "client": client_ca.issue("client", client=True, key_password="key-pass"),
    }


def platform(**transport: Any) -> PlatformSettings:
    return PlatformSettings(transport=TransportSettings(**transport))


def get(settings: PlatformSettings, url: str) -> httpx.Response:
    with build_http_client(settings, 1) as client:
        return client.get(url)


def failure(settings: PlatformSettings, url: str) -> httpx.HTTPError:
    with pytest.raises(httpx.HTTPError) as caught:
        get(settings, url)
    return caught.value


@pytest.fixture
def api(pki: dict[str, Any]) -> Iterator[str]:
    with https_server(server_context(pki["server"])) as url:
        yield url


# ---------------------------------------------------------------------------- TLS settings


def test_server_signed_by_an_unknown_ca_is_a_certificate_error(api: str) -> None:
    error = certificate_error(failure(platform(), api), "the API")
    assert isinstance(error, CertificateError)
    assert isinstance(error, RetryableError)  # retried like a transport error, within a bound
    assert "certificate" in str(error)
    assert "ca_bundle" in str(error)


def test_ca_bundle_makes_the_server_trusted(pki: dict[str, Any], api: str) -> None:
    assert get(platform(ca_bundle=pki["api_ca"]), api).status_code == 200


def test_ca_bundle_replaces_the_default_bundle(pki: dict[str, Any]) -> None:
    """Another CA's bundle does not trust the API (the bundle is not added to the default)."""
    with https_server(server_context(pki["server"])) as url:
        error = failure(platform(ca_bundle=pki["other_ca"]), url)
    assert isinstance(certificate_error(error, "the API"), CertificateError)


def test_expired_certificate_is_a_certificate_error(pki: dict[str, Any]) -> None:
    with https_server(server_context(pki["expired"])) as url:
        error = certificate_error(failure(platform(ca_bundle=pki["api_ca"]), url), "the API")
    assert isinstance(error, CertificateError)
    assert "expired" in str(error)


def test_verification_off_accepts_any_certificate(api: str) -> None:
    assert get(platform(verify_certificates=False), api).status_code == 200


def test_client_certificate_with_an_encrypted_key(pki: dict[str, Any]) -> None:
    client: Issued = pki["client"]
    context = server_context(pki["server"], client_ca=pki["client_ca"])
    with https_server(context) as url:
        without = certificate_error(failure(platform(ca_bundle=pki["api_ca"]), url), "the API")
        with_certificate = platform(
            ca_bundle=pki["api_ca"],
            client_certificate=client.certificate,
            client_key=client.key,
            client_key_password="key-pass",
        )
        assert get(with_certificate, url).status_code == 200
    assert isinstance(without, CertificateError), "a server refusing us is a certificate error"


def test_wrong_key_password_fails_when_the_client_is_built(pki: dict[str, Any]) -> None:
    client: Issued = pki["client"]
    settings = platform(
        client_certificate=client.certificate, client_key=client.key, client_key_password="nope"
    )
    with pytest.raises(ssl.SSLError):
        build_http_client(settings, 1)


# ---------------------------------------------------------------------------- other failures


def test_refused_connection_is_not_a_certificate_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(platform(), f"https://127.0.0.1:{port}/")
    assert certificate_error(error, "the API") is None


def test_tls_to_a_plain_http_server_is_not_a_certificate_error() -> None:
    with https_server(None) as url:
        error = failure(platform(), url.replace("http://", "https://"))
    assert certificate_error(error, "the API") is None


# ---------------------------------------------------------------------------- proxy


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback HTTP proxy stand-in that records each request head and answers 200."""
    heads: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)

    def serve() -> None:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                data += chunk
            heads.append(data.split(b"\r\n\r\n")[0])
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", heads
    finally:
        thread.join(10)
        server.close()


def test_requests_go_through_the_proxy_with_its_credentials(
    proxy: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    url, heads = proxy
    settings = platform(proxy_url=url, proxy_credentials="svc:pr0xy-pass")
    assert get(settings, "http://api.test/collection").status_code == 200
    (head,) = heads
    assert head.startswith(b"GET http://api.test/collection HTTP/1.1")
    expected = base64.b64encode(b"svc:pr0xy-pass")
    assert b"Proxy-Authorization: Basic " + expected in head.replace(b"proxy-", b"Proxy-")


# ---------------------------------------------------------------------------- the sender


def one_message_batch() -> Batch:
    body = orjson.dumps({"n": 1})
    state = PartitionState(("t", 0))
    message = OutboundMessage(body, SourceRecord("t", 0, 0, None, None, body), state, "m", "c")
    return Batch(("c",), "c", 0.0, [message])


def test_sender_halts_after_a_bound_on_certificate_failures(api: str) -> None:
    settings = PlatformSettings(base_url=api, sandbox_name="dev")
    metrics = Metrics()
    http = build_http_client(settings, 1)
    clock = lambda: 0.0  # noqa: E731
    sender = Sender(
        http,
        settings,
        TokenProvider(AuthSettings(), http, clock, metrics),
        BackoffPolicy(initial_s=0.0001, max_s=0.001, max_retry_after_s=0.001),
        metrics,
        ApiHealth(clock),
        rng=random.Random(0),
    )
    ticket = Ticket()
    give_up = threading.Timer(20, ticket.cancel)  # retried for ever: unfinished, no halt
    give_up.start()
    try:
        result = sender.deliver(one_message_batch(), ticket)
    finally:
        give_up.cancel()
        http.close()
    assert "TLS certificate failure talking to the API" in (result.halt or "")
    retries = metrics.retries.labels("certificate")._value.get()
    assert retries == CERTIFICATE_ATTEMPTS - 1
    assert metrics.retries.labels("transport")._value.get() == 0


def test_token_endpoint_certificate_failure_is_reported_as_such(api: str) -> None:
    settings = PlatformSettings(base_url=api)
    auth = AuthSettings(client_id="id", client_secret="s3cret", token_url=api + "/ims/token")
    with build_http_client(settings, 1) as http:
        tokens = TokenProvider(auth, http, lambda: 0.0, Metrics())
        with pytest.raises(CertificateError, match="the token endpoint"):
            tokens.headers()


def test_ca_bundle_file_is_named_when_missing(tmp_path: Path) -> None:
    from connector.preflight import client_problems
    from connector.settings import Settings

    missing = tmp_path / "ca.pem"
    settings = Settings(platform=platform(ca_bundle=missing))
    problems = client_problems(settings)
    assert problems == [
        f"platform.transport: the API client cannot be built: ca_bundle {missing} is not a "
        "readable file"
    ]
