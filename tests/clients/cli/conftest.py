"""Fixtures for the CLI's integration tests: the API, controller and processor as real
processes on the real stack (started as `make up` starts them), and a way to run the
`emulsion` console script against them with its own cache directory."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulsion_contracts.keys import parse_key
from emulsion_devstack.processes import stop_all
from emulsion_devstack.stack import Endpoints, LocalStack
from tests.sigint import sigint_default

EMULSION = shutil.which("emulsion") or "emulsion"


@dataclass(frozen=True)
class Services:
    api_url: str
    token: str


# Module scope: a controller and a processor left running would consume the work and
# results that later test modules sharing this stack publish and expect to see.
@pytest.fixture(scope="module")
def services(stack: Endpoints, stack_state_dir: Path) -> Iterator[Services]:
    local = LocalStack(stack_state_dir, say=lambda line: None)
    # The controller serves the API's namespace only: IngestJobs other tests left in theirs
    # (their controllers gone) are not this module's to dispatch.
    records = [
        local.start_service("controller", {"EMULSION_NAMESPACES": "default"}),
        local.start_service("processor"),
        local.start_service("api", {"EMULSION_NAMESPACE": "default"}),
    ]
    try:
        yield Services(LocalStack.service_url(records[-1]), stack.api_token)
    finally:
        # At once, one grace for all: each service takes seconds to drain and leave.
        stop_all(records)


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
        """The CLI in the background, to be interrupted: SIGINT at its default."""
        return subprocess.Popen(
            [EMULSION, *arguments],
            env=self.environment(**overrides),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=sigint_default,
        )


@pytest.fixture
def cli(services: Services, tmp_path: Path) -> Cli:
    return Cli(services, tmp_path / "cache")


@pytest.fixture
def staging_count(s3: Any, stack: Endpoints) -> Callable[[], int]:
    """How many uploads staging/ holds (not the claim markers promotion leaves beside them)."""

    def count() -> int:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="staging/")
        listed = (parse_key(entry["Key"]) for page in pages for entry in page.get("Contents", []))
        return sum(1 for parsed in listed if parsed is None or not parsed.claim)

    return count
