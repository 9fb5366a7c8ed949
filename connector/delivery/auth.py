"""OAuth server-to-server tokens (client credentials): fetched once, cached, renewed before
they expire and once more when the API says a token is no good."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import orjson

from connector.delivery.outcome import api_message
from connector.delivery.transport import certificate_error, release
from connector.errors import HaltError, RetryableError
from connector.metrics import Metrics
from connector.settings import AuthSettings


class TokenProvider:
    """Thread-safe: every sender thread asks it for the Authorization header."""

    def __init__(
        self,
        settings: AuthSettings,
        http: httpx.Client,
        clock: Callable[[], float],
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def headers(self) -> dict[str, str]:
        """The Authorization header, with a token fetched or renewed if needed."""
        if not self.enabled:
            return {}
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch("expiry" if self._token else "start")
            return {"Authorization": f"Bearer {self._token}"}

    def renew_after_rejection(self, rejected: dict[str, str]) -> None:
        """The API refused `rejected` (401/403): fetch a new token unless another thread did."""
        with self._lock:
            if rejected.get("Authorization") == f"Bearer {self._token}":
                self._fetch("rejected")

    def _fetch(self, reason: str) -> None:
        settings = self._settings
        assert settings.client_id is not None
        assert settings.client_secret is not None
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
            "scope": ",".join(settings.scopes),
        }
        try:
            response = release(self._http.post(settings.token_url, data=form))
        except httpx.HTTPError as exc:
            raise certificate_error(exc, "the token endpoint") or RetryableError(
                f"token endpoint unreachable: {type(exc).__name__}"
            ) from None
        if response.status_code in (400, 401, 403):
            raise HaltError(
                f"token endpoint refused the client credentials ({response.status_code}): "
                f"{api_message(response.content)}"
            )
        if response.status_code != 200:
            raise RetryableError(
                f"token endpoint answered {response.status_code}", status=response.status_code
            )
        try:
            answer = orjson.loads(response.content)
            token = str(answer["access_token"])
            lifetime = float(answer.get("expires_in", 86399))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise RetryableError("token endpoint answered 200 without a usable token") from None
        # Renew ahead of expiry: the configured margin, but never more than a fifth of the
        # lifetime (short-lived tokens would otherwise be renewed on every request).
        margin = min(settings.refresh_margin_s, lifetime / 5)
        self._token = token
        self._renew_at = self._clock() + lifetime - margin
        self._metrics.token_renewals.labels(reason).inc()
