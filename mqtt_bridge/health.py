"""A tiny HTTP endpoint: GET /health -> 200 when serving, 503 otherwise (JSON);
GET /metrics -> the Prometheus text of the service's registry."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry

from iot_common.metrics import CONTENT_TYPE, render


def serve_health(
    port: int,
    status: Callable[[], tuple[bool, dict[str, Any]]],
    metrics: CollectorRegistry | None = None,
    host: str = "127.0.0.1",
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; `status` returns (healthy, details)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/metrics" and metrics is not None:
                self._reply(200, CONTENT_TYPE, render(metrics))
                return
            if path not in ("/health", ""):
                self.send_error(404)
                return
            healthy, details = status()
            body = json.dumps({"healthy": healthy, **details}).encode()
            self._reply(200 if healthy else 503, "application/json", body)

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
