"""A small real HTTP server on 127.0.0.1 for the CLI's client-side logic (paging, retries,
exit codes) where the real API has no way to produce the case: a throttling answer with
`Retry-After`, an arbitrary page size, a list endpoint another branch adds."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Reply]


@dataclass
class Stub:
    url: str
    requests: list[Request]


@contextmanager
def serve(route: Route) -> Iterator[Stub]:
    requests: list[Request] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            parts = urlsplit(self.path)
            request = Request(
                self.command,
                parts.path,
                {k: v[-1] for k, v in parse_qs(parts.query).items()},
                {k.lower(): v for k, v in self.headers.items()},
            )
            requests.append(request)
            reply = route(request)
            payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Stub(f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def paged(items: list[dict[str, Any]], max_page: int = 1000) -> Route:
    """A list endpoint over `items`: `limit` and an opaque `cursor` (the next offset)."""

    def route(request: Request) -> Reply:
        limit = min(int(request.query.get("limit", "100")), max_page)
        start = int(request.query.get("cursor", "0").removeprefix("c"))
        page = items[start : start + limit]
        following = start + len(page)
        cursor = f"c{following}" if following < len(items) else None
        return Reply(body={"items": page, "next_cursor": cursor})

    return route
