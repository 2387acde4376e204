"""ASGI middleware: Prometheus request metrics and the request body size limit.

Plain ASGI (not BaseHTTPMiddleware) so streaming responses, such as server-sent
events, pass through untouched and the hot path stays cheap.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulsion_api.errors import PROBLEM_MEDIA_TYPE, problem

REQUESTS = Counter(
    "emulsion_api_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "emulsion_api_request_duration_seconds",
    "Time to the end of the response, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.02, 0.041, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def _route(scope: Scope) -> str:
    # The template ("/v1/ingests/{name}"), never the raw path: names would explode cardinality.
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            labels = (scope["method"], _route(scope), str(status))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Refuses bodies over `limit` bytes with 413, by Content-Length or while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit, str(scope.get("path", "")))
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Raised inside the route's body read; the error handlers answer 413.
                    raise HTTPException(413, f"the request body is over {self.limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


async def _too_large(send: Send, limit: int, path: str) -> None:
    found = problem(413, "body_too_large", f"the request body is over {limit} bytes", path)
    # `limit` is for per-token limits only; other problems go without it (errors.py).
    body = found.model_dump_json(exclude={"limit"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
