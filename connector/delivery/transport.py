"""The HTTP client for the Platform API and the token endpoint, and what its failures mean.

TLS (a CA bundle, a client certificate, verification) and the proxy come from
`platform.transport`. A transport error is a RetryableError like any connection problem, except
when the TLS handshake failed on a certificate: retrying does not change a certificate, so such
failures are a CertificateError (its own retry reason) and halt the worker after
CERTIFICATE_ATTEMPTS tries, as other deployment errors do.
"""

from __future__ import annotations

import ssl

import httpx

from connector.errors import RetryableError
from connector.settings import PlatformSettings

#: Tries of one request before a certificate failure halts: a couple of retries ride out a
#: load balancer that briefly serves a wrong certificate during a rollout, no more.
CERTIFICATE_ATTEMPTS = 3

#: OpenSSL reasons (alerts from the server included) that are about a certificate.
_CERTIFICATE_REASONS = ("CERTIFICATE", "UNKNOWN_CA", "BAD_CERT", "CERT_")

#: SSLErrors that are a connection cut or torn down, not a certificate.
_NOT_CERTIFICATE = (ssl.SSLEOFError, ssl.SSLSyscallError, ssl.SSLZeroReturnError)


def release(response: httpx.Response) -> httpx.Response:
    """`response`, no longer in a reference cycle: httpx 0.28 wraps a response's stream in an
    object that points back at the response, so a read response, its request and the request's
    body (up to 1 MB) were freed only by the cyclic collector's next pass, not when the last
    reference went (httpx issue 3733). Call it once the body is read (`Client.post` reads it);
    `content` and everything else of the response stay as they were."""
    response.stream = _EMPTY_STREAM
    return response


_EMPTY_STREAM = httpx.ByteStream(b"")


class CertificateError(RetryableError):
    """The TLS handshake failed on a certificate: the API's (not trusted, expired, wrong
    host) or ours (refused by the server)."""

    reason = "certificate"


def build_http_client(platform: PlatformSettings, max_connections: int) -> httpx.Client:
    """The client every request to the API and the token endpoint goes through.

    Raises OSError or ssl.SSLError when a certificate or key file cannot be loaded.
    """
    settings = platform.transport
    verify = tls_context(platform) if settings.verify_certificates else False
    proxy = None
    if settings.proxy_url is not None:
        auth = None
        if settings.proxy_credentials is not None:
            user, _, password = settings.proxy_credentials.get_secret_value().partition(":")
            auth = (user, password)
        # An https:// proxy is verified like the API (a TLS-inspecting proxy's CA is in the
        # same bundle); httpx refuses a context for an http:// one.
        https_proxy = settings.proxy_url.startswith("https://")
        context = verify if https_proxy and isinstance(verify, ssl.SSLContext) else None
        proxy = httpx.Proxy(settings.proxy_url, auth=auth, ssl_context=context)
    return httpx.Client(
        verify=verify,
        proxy=proxy,
        timeout=httpx.Timeout(platform.request_timeout_s, connect=platform.connect_timeout_s),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )


def tls_context(platform: PlatformSettings) -> ssl.SSLContext:
    """Verification against the CA bundle (else httpx's default: SSL_CERT_FILE, SSL_CERT_DIR
    or certifi's bundle), with the client certificate when one is configured."""
    settings = platform.transport
    if settings.ca_bundle is not None:
        context = ssl.create_default_context(cafile=str(settings.ca_bundle))
    else:
        context = httpx.create_ssl_context()
    if settings.client_certificate is not None:
        password = settings.client_key_password
        context.load_cert_chain(
            str(settings.client_certificate),
            str(settings.client_key) if settings.client_key is not None else None,
            password.get_secret_value() if password is not None else None,
        )
    return context


def certificate_problem(exc: BaseException) -> str | None:
    """What was wrong with a certificate behind a transport error, or None when the error is
    not about a certificate (refused, reset, timed out, ...)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError) and not isinstance(current, _NOT_CERTIFICATE):
            reason = current.reason or ""
            if any(part in reason for part in _CERTIFICATE_REASONS):
                return reason.lower().replace("_", " ")
        current = current.__cause__ or current.__context__
    return None


def certificate_error(exc: httpx.HTTPError, target: str) -> CertificateError | None:
    """A CertificateError when `exc` (a request to `target` that got no answer) failed on a
    certificate; None for any other transport failure."""
    problem = certificate_problem(exc)
    if problem is None:
        return None
    return CertificateError(
        f"TLS certificate failure talking to {target}: {problem} (check "
        "platform.transport: ca_bundle, client_certificate, client_key, proxy_url)"
    )
