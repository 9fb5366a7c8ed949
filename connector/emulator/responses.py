"""The emulator's JSON answers, shared by the request handlers and the connection guard."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

JSON = "application/json"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON, headers=headers)


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> web.Response:
    """The emulator's JSON error body: status, reason phrase and a message naming the check."""
    body = {"status": status, "title": HTTPStatus(status).phrase, "message": message, **extra}
    return json_response(body, status, headers)
