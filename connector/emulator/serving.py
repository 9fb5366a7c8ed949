"""Serving the emulator's application with bounded reads: no slow client can hold a connection.

aiohttp bounds idle keep-alive connections but not the time a client takes to send a request:
one that trickles its headers or its body a byte at a time would keep its connection (and, for a
body, a handler) forever. So each connection is wrapped in a `ConnectionGuard` that closes it
when a request head is not complete `header_timeout_s` after its first byte (or after the
connection opened), and `read_body` reads a body against `body_timeout_s`. The guard learns
where a request's head ends from `guard_middleware`, which runs when aiohttp hands the parsed
request to the application.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from connector.emulator.responses import error_response

SHUTDOWN_TIMEOUT_S = 5.0
"""How long SIGTERM waits for open requests (for example ones in injected latency)."""


class BodyTimeout(Exception):
    """The request body did not arrive within the body timeout."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"body: not received within {timeout_s:g} s")
        self.timeout_s = timeout_s


class ConnectionGuard(asyncio.Protocol):
    """aiohttp's protocol for one connection, plus a deadline for each request head.

    Everything is forwarded to the wrapped protocol. The deadline is armed when the connection
    opens and by the first byte after a request was handed over, and disarmed when the next
    request reaches the application; when it passes, the connection is closed.
    """

    def __init__(
        self,
        inner: asyncio.Protocol,
        header_timeout_s: float,
        on_timeout: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._header_timeout_s = header_timeout_s
        self._on_timeout = on_timeout
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = False

    # --- asyncio.Protocol, forwarded ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._in_request and self._deadline is None:
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._transport = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # --- request boundaries, told by guard_middleware ----------------------------------------

    def request_started(self) -> None:
        self._in_request = True
        self._disarm()

    def request_finished(self) -> None:
        # The next request's first byte arms the deadline; idle time is aiohttp's keep-alive.
        self._in_request = False

    # --- the deadline ------------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            self._on_timeout()
            self._transport.close()


def guard_of(request: web.BaseRequest) -> ConnectionGuard | None:
    """The guard of the request's connection (none under another server, e.g. a test client)."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, ConnectionGuard) else None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard_middleware(on_body_timeout: Callable[[], None]) -> Middleware:
    """Marks request boundaries for the connection's guard, and answers a body that did not
    arrive in time with 408 and a closed connection."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = guard_of(request)
        if guard is not None:
            guard.request_started()
        try:
            return await handler(request)
        except BodyTimeout as exc:
            on_body_timeout()
            return await _answer_and_close(request, exc)
        finally:
            if guard is not None:
                guard.request_finished()

    return middleware


async def _answer_and_close(request: web.Request, exc: BodyTimeout) -> web.StreamResponse:
    """A 408 sent at once, then the connection closed: the rest of the body is not waited for."""
    response = error_response(408, str(exc), headers={"Connection": "close"})
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed `limit` bytes.

    A declared Content-Length over the limit is refused without reading; a chunked body is read
    only up to one byte past the limit. Raises BodyTimeout when the body is not whole within
    `timeout_s`.
    """
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(timeout_s) from None
    return b"".join(chunks)


def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    header_timeout_s: float,
    idle_timeout_s: float,
    on_header_timeout: Callable[[], None],
) -> None:
    """Run until SIGINT or SIGTERM. Access logging is off: it would cost speed and say nothing
    the stats endpoint does not."""
    asyncio.run(
        _serve(app, host, port, header_timeout_s, idle_timeout_s, on_header_timeout),
    )


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    header_timeout_s: float,
    idle_timeout_s: float,
    on_header_timeout: Callable[[], None],
) -> None:
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=idle_timeout_s,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        server = runner.server
        assert server is not None  # set by setup()
        loop = asyncio.get_running_loop()

        def guarded() -> ConnectionGuard:
            return ConnectionGuard(server(), header_timeout_s, on_header_timeout)

        listener = await loop.create_server(guarded, host, port, reuse_address=True)
        print(f"aep-connector emulator listening on http://{host}:{port}", file=sys.stderr)
        sys.stderr.flush()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        listener.close()
    finally:
        # Runs the application's on_shutdown (stalled requests are released), waits at most
        # SHUTDOWN_TIMEOUT_S for open requests, then its on_cleanup.
        await runner.cleanup()
