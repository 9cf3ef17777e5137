"""A tiny HTTP health endpoint: GET /health -> 200 when serving, 503 otherwise."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve_health(
    port: int, status: Callable[[], tuple[bool, dict[str, Any]]]
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; `status` returns (healthy, details)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") not in ("/health", ""):
                self.send_error(404)
                return
            healthy, details = status()
            body = json.dumps({"healthy": healthy, **details}).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
