"""Reading the API's answer to one request (a batch, or a raw payload's single-message request):
pure logic, decided in this one place.

`classify` returns one entry per message (Accepted, with the API's identifiers of the message;
a DeadLetter = rejected; TRANSIENT = this message failed transiently and is sent again) or raises
the error class that says what to do with the whole request (see connector.errors).
"""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import NamedTuple

import orjson

from connector.errors import (
    AuthenticationError,
    DeadLetter,
    HaltError,
    RetryableError,
    SplitRequest,
    Unacknowledged,
)

API_MESSAGE_LIMIT = 500  # characters of the API's message kept in logs and dead-letter headers


class Transient(Enum):
    """A 207 entry carrying 408, 429 or 5xx: that message is retried, never dead-lettered."""

    TRANSIENT = "transient"


TRANSIENT = Transient.TRANSIENT


class Accepted(NamedTuple):
    """An accepted message and how the Platform names it: the answer's batchId and the entry's
    xactionId (None where the answer leaves one out), and when the answer was read (epoch ms,
    the worker's clock). Delivery receipts carry them (connector/receipts.py).

    A named tuple, immutable like a frozen dataclass and built in a third of the time: one is
    built for every accepted message."""

    batch_id: str | None
    xaction_id: str | None
    at_ms: int


Outcome = DeadLetter | Transient | Accepted


def rejection(status: int, message: str) -> DeadLetter:
    """The dead letter of a message the API refused."""
    return DeadLetter(
        "api",
        "api_rejected",
        f"API rejected the message ({status}): {message}",
        status=status,
        api_message=message,
    )


class AllAccepted(NamedTuple):
    """A batch answer whose every entry is the usual `{"xactionId": "…"}`: the request's
    outcome as a whole, each message's Accepted built only when asked for (delivery receipts
    want them; without receipts, building hundreds per request was most of reading it)."""

    batch_id: str | None
    xaction_ids: list[str]
    at_ms: int

    def outcomes(self) -> list[Accepted]:
        batch_id, at_ms = self.batch_id, self.at_ms
        return [Accepted(batch_id, xaction_id, at_ms) for xaction_id in self.xaction_ids]


def classify(
    status: int, body: bytes, retry_after: str | None, count: int, now_epoch_s: float
) -> list[Outcome]:
    """Per-message outcomes of a batch request of `count` messages, or raise what to do."""
    answer = classify_batch(status, body, retry_after, count, now_epoch_s)
    if isinstance(answer, AllAccepted):
        outcomes: list[Outcome] = [*answer.outcomes()]
        return outcomes
    return answer


def classify_batch(
    status: int, body: bytes, retry_after: str | None, count: int, now_epoch_s: float
) -> AllAccepted | list[Outcome]:
    """`classify`, with an answer that accepts every message as plainly as the API usually
    does kept whole (AllAccepted)."""
    if 200 <= status < 300:
        return _per_message(status, body, count, int(now_epoch_s * 1000))
    message = api_message(body)
    if _transient(status):
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
        return [rejection(status, message or f"HTTP {status}")]
    if status == 404:
        raise HaltError(f"API answered 404 (unknown connection/inlet?): {message}")
    if status == 501:
        raise HaltError(f"API answered 501 (not supported here; check the endpoint): {message}")
    raise HaltError(f"API answered unexpected status {status}: {message}")


def classify_single(
    status: int, body: bytes, retry_after: str | None, now_epoch_s: float
) -> list[Outcome]:
    """The outcome of a single-message request (a raw payload), or raise what to do. A 2xx
    acknowledges the message only with the answer's `xactionId`, for the reason given at
    `_per_message`; everything else reads as for a batch of one (400 and 413: rejected)."""
    if 200 <= status < 300:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or not answer.get("xactionId"):
            raise Unacknowledged(f"API answered {status} without an xactionId", status=status)
        xaction_id = answer["xactionId"]
        return [
            Accepted(
                None,
                xaction_id if isinstance(xaction_id, str) else str(xaction_id),
                int(now_epoch_s * 1000),
            )
        ]
    return classify(status, body, retry_after, 1, now_epoch_s)


def _per_message(status: int, body: bytes, count: int, now_ms: int) -> AllAccepted | list[Outcome]:
    """Only one result per message, in request order, acknowledges anything: a success status
    alone may come from a proxy or a wrong base URL, and sending again risks duplicates, never
    loss."""
    try:
        parsed = orjson.loads(body)
        responses = parsed["responses"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise Unacknowledged(
            f"API answered {status} without per-message results ({type(exc).__name__})",
            status=status,
        ) from None
    if not isinstance(responses, list) or len(responses) != count:
        size = len(responses) if isinstance(responses, list) else "no"
        raise Unacknowledged(
            f"API answered {status} with {size} results for {count} messages", status=status
        )
    batch_id = parsed.get("batchId") if isinstance(parsed, dict) else None
    if not isinstance(batch_id, str):
        batch_id = None
    # The usual answer: every entry {"xactionId": "…"}, read without the general reading below.
    xaction_ids: list[str] = []
    for entry in responses:
        if type(entry) is dict and len(entry) == 1:
            xaction_id = entry.get("xactionId")
            if type(xaction_id) is str:
                xaction_ids.append(xaction_id)
                continue
        break
    else:
        return AllAccepted(batch_id, xaction_ids, now_ms)
    outcomes: list[Outcome] = [Accepted(batch_id, x, now_ms) for x in xaction_ids]
    outcomes += [_entry(entry, batch_id, now_ms) for entry in responses[len(xaction_ids) :]]
    return outcomes


def _entry(entry: object, batch_id: str | None, now_ms: int) -> Outcome:
    """Documented `statusCode`, observed `status`, with or without an xactionId: all count."""
    if not isinstance(entry, dict):
        return rejection(400, f"unreadable response entry: {str(entry)[:100]}")
    code = entry.get("statusCode", entry.get("status"))
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and code >= 400:
        if _transient(code):
            return TRANSIENT
        text = entry.get("message") or entry.get("title") or entry.get("detail") or ""
        return rejection(code, str(text)[:API_MESSAGE_LIMIT] or f"HTTP {code}")
    xaction_id = entry.get("xactionId")
    return Accepted(batch_id, xaction_id if isinstance(xaction_id, str) else None, now_ms)


def _transient(status: int) -> bool:
    return status in (408, 429) or (status >= 500 and status != 501)


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
    """Retry-After as seconds from now: delta-seconds or an HTTP date.

    None when absent or unusable, so the backoff policy decides: zero, negative, not a number,
    infinite, or a date already past would otherwise turn backoff into a tight retry loop.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now_epoch_s
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds
