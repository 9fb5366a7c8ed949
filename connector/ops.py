"""The operations endpoint on the ops port: /metrics, /healthz (liveness), /readyz (readiness).

Runs in a daemon thread with the standard library's HTTP server: a handful of requests a
minute from Prometheus and the kubelet need nothing more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connector.metrics import Metrics

Probe = Callable[[], tuple[bool, str]]


class OpsServer:
    def __init__(
        self, host: str, port: int, metrics: Metrics, liveness: Probe, readiness: Probe
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    outer._answer(self, 200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                elif self.path in ("/healthz", "/readyz"):
                    ok, why = (liveness if self.path == "/healthz" else readiness)()
                    outer._answer(self, 200 if ok else 503, why.encode() + b"\n", "text/plain")
                else:
                    outer._answer(self, 404, b"not found\n", "text/plain")

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would drown the logs

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
