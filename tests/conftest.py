"""Fixtures for the real local stack, started through the same module as `make up`, and
the one place tests are marked by what they need (`make unit`, `make integration`).

One stack serves the whole session (starting kube-apiserver costs seconds); it runs in
its own state directory, so a developer's `make up` stack is never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulsion_devstack.stack import Endpoints, LocalStack, s3_client

TESTS = Path(__file__).resolve().parent

# Folders whose every test is a suite of its own, with budgets of their own (issue 13).
SUITES = {"faults": "faults", "web": "web", "cluster": "cluster"}
# Folders that need real servers or the stack's binaries even where a test does not ask
# for the session's `stack`: stacks of their own (e2e, stack), helm and kubectl (charts).
INTEGRATION_FOLDERS = frozenset({"charts", "e2e", "stack", *SUITES})
# A test whose fixtures reach one of these runs against the real stack.
STACK_FIXTURES = frozenset({"stack", "stack_state_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what it needs: `unit` (pure logic, seconds), `integration`
    (the real stack or its binaries), and the folder suites `faults`, `web`, `cluster`."""
    for item in items:
        # A test outside tests/ (a pytest session a test runs in a temporary folder with
        # this conftest) has no folder suite; its fixtures still decide unit or not.
        inside = item.path.is_relative_to(TESTS)
        folder = item.path.relative_to(TESTS).parts[0] if inside else ""
        if folder in SUITES:
            item.add_marker(SUITES[folder])
        needs_stack = not STACK_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
        if folder in INTEGRATION_FOLDERS or needs_stack:
            item.add_marker("integration")
        else:
            item.add_marker("unit")


@pytest.fixture(scope="session")
def stack_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def stack(stack_state_dir: Path) -> Iterator[Endpoints]:
    local = LocalStack(stack_state_dir, say=lambda line: None)
    try:
        yield local.up()
    finally:
        local.down()


@pytest.fixture(scope="session")
def kube(stack: Endpoints) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=stack.kubeconfig)


@pytest.fixture(scope="session")
def s3(stack: Endpoints) -> Any:
    return s3_client(stack)


@pytest.fixture
def run() -> Any:
    """Run a coroutine to completion; the tests stay synchronous and need no plugin."""

    def runner(coroutine: Any) -> Any:
        return asyncio.run(coroutine)

    return runner
