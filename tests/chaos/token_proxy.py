"""An identity service that fails on demand: it stands between the worker and the emulator's
token endpoint and forwards, answers 503, drops the connection, or hangs.

The emulator's fault plan applies to its token endpoint only together with the collection
endpoints (`include_token_endpoint`), and an injected fault comes before the bearer check, so
it cannot make the token endpoint fail while the API answers "token no good". This proxy
can: the worker's platform.auth.token_url points at it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx

Mode = Literal["forward", "503", "drop", "hang"]


class TokenProxy:
    def __init__(self, upstream: str, hang_s: float = 5.0) -> None:
        self.upstream = upstream
        self.hang_s = hang_s
        self.mode: Mode = "forward"
        self.requests: Counter[str] = Counter()  # by how they were answered
        self._http = httpx.Client(timeout=10)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode = proxy.mode
                proxy.requests[mode] += 1
                if mode == "drop":
                    self.close_connection = True
                    return  # no answer at all: the client sees the connection close
                if mode == "hang":
                    time.sleep(proxy.hang_s)
                    mode = "503"
                if mode == "503":
                    self._answer(503, b'{"error":"temporarily_unavailable"}')
                    return
                answer = proxy._http.post(
                    proxy.upstream,
                    content=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                )
                self._answer(answer.status_code, answer.content)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/ims/token/v3"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TokenProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
