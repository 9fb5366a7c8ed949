"""Reading the API's answer to one batch request: pure logic, decided in this one place.

`classify` returns one entry per message (None = accepted, Rejection = rejected) or raises the
error class that says what to do with the whole request (see connector.errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import orjson

from connector.errors import (
    AuthenticationError,
    HaltError,
    RetryableError,
    SplitRequest,
)

API_MESSAGE_LIMIT = 500  # characters of the API's message kept in logs and dead-letter headers


@dataclass(frozen=True, slots=True)
class Rejection:
    """The API refused one message; it goes to the dead-letter topic with this reason."""

    status: int
    message: str


def classify(
    status: int, body: bytes, retry_after: str | None, count: int, now_epoch_s: float
) -> list[Rejection | None]:
    """Per-message outcomes of a batch request of `count` messages, or raise what to do."""
    if status == 207 or 200 <= status < 300:
        return _per_message(status, body, count)
    message = api_message(body)
    if status in (408, 429) or (status >= 500 and status != 501):
        raise RetryableError(
            f"API answered {status}: {message}",
            status=status,
            retry_after_s=parse_retry_after(retry_after, now_epoch_s),
        )
    if status in (401, 403):
        raise AuthenticationError(f"API answered {status}: {message}", status)
    if status in (400, 413, 422):
        if count > 1:
            # 413: too large. 400: some message spoils the whole request. Halves isolate it.
            raise SplitRequest(f"API answered {status} for {count} messages: {message}")
        return [Rejection(status, message or f"HTTP {status}")]
    if status == 404:
        raise HaltError(f"API answered 404 (unknown connection/inlet?): {message}")
    if status == 501:
        raise HaltError(f"API answered 501 (not supported here; check the endpoint): {message}")
    raise HaltError(f"API answered unexpected status {status}: {message}")


def _per_message(status: int, body: bytes, count: int) -> list[Rejection | None]:
    if status != 207:
        return [None] * count  # a plain 2xx acknowledges the whole request
    try:
        parsed = orjson.loads(body)
        responses = parsed["responses"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        # We cannot tell which messages were taken: sending again risks duplicates, never loss.
        raise RetryableError(f"unreadable 207 body ({exc})", status=status) from exc
    if not isinstance(responses, list) or len(responses) != count:
        size = len(responses) if isinstance(responses, list) else "no"
        raise RetryableError(f"207 with {size} responses for {count} messages", status=status)
    return [_entry(entry) for entry in responses]


def _entry(entry: object) -> Rejection | None:
    """Documented `statusCode`, observed `status`, with or without an xactionId: all count."""
    if not isinstance(entry, dict):
        return Rejection(400, f"unreadable response entry: {str(entry)[:100]}")
    code = entry.get("statusCode", entry.get("status"))
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and code >= 400:
        text = entry.get("message") or entry.get("title") or entry.get("detail") or ""
        return Rejection(code, str(text)[:API_MESSAGE_LIMIT] or f"HTTP {code}")
    return None


def api_message(body: bytes) -> str:
    """A short, single-line reason from an error body (JSON `message`/`title`, else text)."""
    if not body:
        return ""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:API_MESSAGE_LIMIT].decode("utf-8", errors="replace")
    else:
        if isinstance(parsed, dict):
            found = [parsed.get(k) for k in ("message", "title", "detail", "error_description")]
            text = next((str(v) for v in found if v), orjson.dumps(parsed).decode())
        else:
            text = str(parsed)
    return " ".join(text.split())[:API_MESSAGE_LIMIT]


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s)
