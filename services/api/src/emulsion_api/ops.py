"""The ops port: Prometheus metrics, served apart from the public API.

`/metrics` on `EMULSION_METRICS_PORT`, so the public port (what an Ingress or a load
balancer exposes) never shows request counts, and a ServiceMonitor scrapes a port of
its own (named `metrics` in the chart). A thread of its own answers, so a scrape never
waits for the event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server


@dataclass(frozen=True)
class OpsServer:
    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(port: int, host: str = "0.0.0.0") -> OpsServer:  # noqa: S104 - a pod's port
    server, thread = start_http_server(port, host)
    return OpsServer(server, thread)
