"""The API as a process: it refuses to start misconfigured, and drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulsion_devstack.processes import log_tail
from emulsion_devstack.stack import Endpoints, LocalStack
from tests.settings_checks import refused_start

from .conftest import ApiProcess, metrics_url_of, new_collection, wait_for

SHUTDOWN_GRACE = 1
# Under the default grace of 10 s, over the configured one plus a loaded machine's exit.
EXITED_WITHIN = 7.0


# Integration, not `make unit`: starts the API as a process per setting (see tests/conftest.py).
@pytest.mark.integration
def test_missing_settings_stop_the_process_naming_each_variable() -> None:
    stderr = refused_start(
        "emulsion_api", {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    )
    assert "NATS_URL" in stderr and "EMULSION_BUCKET" in stderr


def test_no_token_configured_stops_the_process(stack: Endpoints) -> None:
    environment = {**os.environ, **stack.environment(), "EMULSION_API_TOKENS": " , "}
    assert "no bearer token configured" in refused_start("emulsion_api", environment)


def test_sigterm_ends_open_streams_and_exits(
    stack: Endpoints, stack_state_dir: Path, stage: Any
) -> None:
    # A shutdown grace of a second, not the default 10 s: past it the stream is cut.
    record = LocalStack(stack_state_dir, say=lambda line: None).start_service(
        "api", {"EMULSION_SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE)}
    )
    url = LocalStack.service_url(record)
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    collection = new_collection()
    body = {"collection": collection, "items": [{"upload_key": stage(1, collection)[0]}]}
    name = httpx.post(f"{url}/v1/ingests", json=body, headers=headers).json()["name"]
    ended = threading.Event()

    def follow() -> None:
        # Read until the server closes the stream, however it closes it (an end of
        # chunked encoding, or a cut connection once the shutdown grace has passed).
        try:
            with httpx.stream(
                "GET", f"{url}/v1/ingests/{name}/events", headers=headers, timeout=60
            ) as stream:
                for _ in stream.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        finally:
            ended.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    metrics_url = metrics_url_of(record)
    wait_for("the event stream to open", lambda: "Pending" in _events_sent(metrics_url))

    os.killpg(record.pid, signal.SIGTERM)
    signalled = time.monotonic()

    wait_for("the process to exit", lambda: not record.alive(), timeout=30)
    # Well before the default grace (10 s): the configured one ended the wait.
    assert time.monotonic() - signalled < EXITED_WITHIN
    assert ended.wait(timeout=5), "the open event stream was not closed"
    assert "Application shutdown complete" in log_tail(record.log, 40)


def _events_sent(metrics_url: str) -> str:
    # The stream's first event is written once the request has been routed and counted
    # as in flight; /metrics shows the open watch that follows it.
    metrics = httpx.get(metrics_url).text
    return "Pending" if "emulsion_api_open_watches 1.0" in metrics else ""


def test_an_idle_connection_outlives_the_clients_idle_timeout(api_process: ApiProcess) -> None:
    """httpx drops idle connections after 5 s, uvicorn's default closed them after 5 s too:
    a request sent on a connection just as the server closed it failed with a reset (seen
    as ReadError by the notify bench). The server now keeps them longer than its clients."""
    url = httpx.URL(api_process.url)
    request = f"GET /healthz HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode()
    with socket.create_connection((url.host, url.port or 80), timeout=10) as connection:
        connection.sendall(request)
        assert _response(connection).startswith(b"HTTP/1.1 200")
        # The idle time under test, past httpx's keep-alive expiry (not a wait for a state).
        time.sleep(6)
        connection.sendall(request)
        assert _response(connection).startswith(b"HTTP/1.1 200")


def _response(connection: socket.socket) -> bytes:
    """One response with a Content-Length body, read whole; b"" if the server closed."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            return received
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return received
