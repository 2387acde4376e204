"""Fixtures for the real local stack, started through the same module as `make up`.

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
