"""`emulsion ls` and `emulsion jobs` as a user runs them, against a real HTTP server on
127.0.0.1 that answers the list endpoints' shape ({items, next_cursor} with `limit`,
`cursor`, `state`, `collection`). The API's own list endpoints are built on another
branch in parallel; this pins the client's side of that contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulsion_cli.errors import EXIT_API, EXIT_OK, EXIT_UNREACHABLE
from emulsion_devstack.processes import free_port

from .stub import Reply, Request, paged, serve

# Each test runs the CLI as a process against a stub HTTP server: `integration`.
pytestmark = pytest.mark.integration

ASSETS = [
    {"collection": "c", "asset": f"IMG_{i:04}.jpg", "version": f"v{i}", "state": "live"}
    for i in range(23)
]
JOBS = [
    {"name": f"ingest-{i}", "collection": "c", "phase": "Succeeded", "succeeded": 2, "failed": 0,
     "total": 2, "progress": "2/2"}
    for i in range(7)
]  # fmt: skip


def run(
    url: str, *arguments: str, tmp_path: Path, **environment: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulsion_cli", *arguments],
        env={
            "EMULSION_API_URL": url,
            "EMULSION_TOKEN": "secret",
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "COLUMNS": "200",
            "PATH": "/usr/bin:/bin",
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def router(request: Request) -> Reply:
    if request.path == "/v1/assets/c":
        return paged(ASSETS)(request)
    if request.path == "/v1/ingests":
        return paged(JOBS)(request)
    return Reply(404, {"code": "not_found", "status": 404, "detail": f"no {request.path}"})


def test_ls_walks_every_page(tmp_path: Path) -> None:
    with serve(router) as stub:
        done = run(stub.url, "ls", "c", "--page-size", "5", "-o", "json", tmp_path=tmp_path)

    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout) == ASSETS
    cursors = [r.query.get("cursor") for r in stub.requests]
    assert cursors == [None, "c5", "c10", "c15", "c20"]
    assert all(r.headers["authorization"] == "Bearer secret" for r in stub.requests)


def test_ls_stops_at_the_limit_and_passes_the_state(tmp_path: Path) -> None:
    with serve(router) as stub:
        done = run(
            stub.url, "ls", "c", "--limit", "7", "--page-size", "5", "--state", "live",
            "-o", "yaml", tmp_path=tmp_path,
        )  # fmt: skip

    assert done.returncode == EXIT_OK, done.stderr
    assert yaml.safe_load(done.stdout) == ASSETS[:7]
    assert [(r.query["limit"], r.query["state"]) for r in stub.requests] == [
        ("5", "live"),
        ("2", "live"),
    ]


def test_ls_as_a_table(tmp_path: Path) -> None:
    with serve(router) as stub:
        done = run(stub.url, "ls", "c", tmp_path=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ASSET", "STATE", "VERSION"]
    assert lines[1].split() == ["IMG_0000.jpg", "live", "v0"]
    assert len(lines) == 1 + len(ASSETS)


def test_jobs_of_a_collection(tmp_path: Path) -> None:
    with serve(router) as stub:
        done = run(stub.url, "jobs", "-c", "c", "--page-size", "3", "-o", "json", tmp_path=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    assert [job["name"] for job in json.loads(done.stdout)] == [j["name"] for j in JOBS]
    assert {r.query["collection"] for r in stub.requests} == {"c"}
    assert len(stub.requests) == 3


def test_an_api_error_exits_3_and_unreachable_exits_4(tmp_path: Path) -> None:
    with serve(router) as stub:
        missing = run(stub.url, "ls", "other", tmp_path=tmp_path)
    assert missing.returncode == EXIT_API
    assert "404 not_found" in missing.stderr

    # Two tries, not five: a retry of a dead API still happens, without 8 s of backoff.
    gone = run(f"http://127.0.0.1:{free_port()}", "jobs", tmp_path=tmp_path, EMULSION_RETRIES="2")
    assert gone.returncode == EXIT_UNREACHABLE
    assert "cannot reach the Emulsion API" in gone.stderr


def test_a_page_of_the_wrong_shape_is_an_api_error(tmp_path: Path) -> None:
    def wrong(request: Request) -> Reply:
        body: Any = {"assets": []}
        return Reply(200, body)

    with serve(wrong) as stub:
        done = run(stub.url, "ls", "c", tmp_path=tmp_path)
    assert done.returncode == EXIT_API
    assert "is not a page" in done.stderr
