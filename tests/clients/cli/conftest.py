"""Fixtures for the CLI's integration tests: the API, controller and processor as real
processes on the real stack (started as `make up` starts them), and a way to run the
`emulsion` console script against them with its own cache directory."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulsion_devstack.stack import Endpoints, LocalStack

EMULSION = shutil.which("emulsion") or "emulsion"


@dataclass(frozen=True)
class Services:
    api_url: str
    token: str


@pytest.fixture(scope="session")
def services(stack: Endpoints, stack_state_dir: Path) -> Services:
    local = LocalStack(stack_state_dir, say=lambda line: None)
    # The stack's `down` stops these with the servers.
    local.start_service("controller")
    local.start_service("processor")
    api = local.start_service("api")
    return Services(f"http://127.0.0.1:{_http_port(api.pid)}", stack.api_token)


def _http_port(pid: int) -> str:
    # `start_service` chooses the port (and waits on it) but returns only the process
    # record, so the port is read back from the process's own environment.
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    variables = dict(entry.decode().split("=", 1) for entry in environ if b"=" in entry)
    return variables["EMULSION_HTTP_PORT"]


@dataclass(frozen=True)
class Cli:
    services: Services
    cache: Path

    def environment(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            "EMULSION_API_URL": self.services.api_url,
            "EMULSION_TOKEN": self.services.token,
            "XDG_CACHE_HOME": str(self.cache),
            "COLUMNS": "200",
            **overrides,
        }

    def run(self, *arguments: str, timeout: float = 240, **overrides: str) -> Any:
        return subprocess.run(
            [EMULSION, *arguments],
            env=self.environment(**overrides),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *arguments: str, **overrides: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [EMULSION, *arguments],
            env=self.environment(**overrides),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(services: Services, tmp_path: Path) -> Cli:
    return Cli(services, tmp_path / "cache")


@pytest.fixture
def staging_count(s3: Any, stack: Endpoints) -> Callable[[], int]:
    def count() -> int:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="staging/")
        return sum(page.get("KeyCount", 0) for page in pages)

    return count
