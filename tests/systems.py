"""A whole system of a test module's own: the servers and the four services, started
through the same `LocalStack` as `make up`, for the suites whose processor must not take
other tests' work items from a shared stream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import Endpoints, LocalStack


@contextmanager
def own_system(directory: Path, **environment: str) -> Iterator[tuple[LocalStack, Endpoints]]:
    """The system, its state in `directory`, its services started with `environment` set
    (in this process too, while the system runs, as the services inherit it); every
    process it started is stopped at the end."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        stack = LocalStack(directory, services=tuple(SERVICES), say=lambda _: None)
        try:
            yield stack, stack.up()
        finally:
            stack.down()


def endpoints_of(stack: LocalStack) -> Endpoints:
    """The endpoints of `stack`, which must be running."""
    endpoints = stack.running()
    assert endpoints is not None, f"the stack in {stack.state_dir} is not running"
    return endpoints
