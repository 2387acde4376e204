"""Fixtures for the real local stack, started through the same module as `make up`, and
the one place tests are marked by what they need (`make unit`, `make integration`).

One stack serves the whole session (starting kube-apiserver costs seconds); it runs in
its own state directory, so a developer's `make up` stack is never touched.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from kubernetes import client

from emulsion_devstack.stack import Endpoints, LocalStack, s3_client

# No wall-clock deadline on a property's examples: these tests judge behaviour, not speed,
# and a loaded two-core machine made a 200 ms deadline fail examples that were correct.
settings.register_profile("emulsion", deadline=None)
settings.load_profile("emulsion")

TESTS = Path(__file__).resolve().parent

# Folders whose every test is a suite of its own, with time budgets of their own.
SUITES = {"faults": "faults", "web": "web", "cluster": "cluster", "scaleout": "scaleout"}
# Folders that need real servers or the stack's binaries even where a test does not ask
# for the session's `stack`: stacks of their own (e2e, security, stack), helm and kubectl
# (charts).
INTEGRATION_FOLDERS = frozenset({"charts", "e2e", "security", "stack", *SUITES})
# A test whose fixtures reach one of these runs against the real stack, or (the silent
# apiserver) a server of the fixture's own: `integration` either way.
STACK_FIXTURES = frozenset({"stack", "stack_state_dir"})
SERVER_FIXTURES = frozenset({"silent_apiserver"})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under `make unit` (`-m unit` exactly) the integration-only folders are not
    collected at all: every test in them is marked `integration` below, so `-m unit`
    would deselect each one anyway, after every worker had imported its modules and their
    imports (Playwright, the stack's clients). Any other selection collects them as ever."""
    if config.getoption("markexpr", "") != "unit" or not collection_path.is_relative_to(TESTS):
        return None
    parts = collection_path.relative_to(TESTS).parts
    return True if parts and parts[0] in INTEGRATION_FOLDERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by what it needs: `unit` (pure logic, seconds), `integration`
    (the real stack or its binaries, or a server or process of the test's own), and the
    folder suites `faults`, `web`, `cluster`; on a pytest-xdist worker, also put the
    longest files first (see `_longest_first`)."""
    for item in items:
        # A test outside tests/ (a pytest session a test runs in a temporary folder with
        # this conftest) has no folder suite; its fixtures still decide unit or not.
        inside = item.path.is_relative_to(TESTS)
        folder = item.path.relative_to(TESTS).parts[0] if inside else ""
        if folder in SUITES:
            item.add_marker(SUITES[folder])
        fixtures = getattr(item, "fixturenames", ())
        needs_a_server = not (STACK_FIXTURES | SERVER_FIXTURES).isdisjoint(fixtures)
        # `unit` starts no server and no process: a test says `integration` itself when it
        # does (a stub HTTP server, the CLI or a Python child as a process, a tool's
        # command), the code under test's own process pool aside; such tests still run in
        # `make test`'s first stage and `make integration`, and `make unit` stays quick.
        said = item.get_closest_marker("integration") is not None
        if folder in INTEGRATION_FOLDERS or needs_a_server or said:
            item.add_marker("integration")
        else:
            item.add_marker("unit")
    if hasattr(config, "workerinput"):
        _longest_first(config, items)


# Under pytest-xdist (`make test`'s first stage, `--dist loadfile`) each file is a unit of
# work, handed to whichever worker runs short in the order the files were collected. By
# default xdist orders them by their number of tests, so the many quick pure-logic files
# went first and a file of one long test (a sweep of thousands of keys) last, to run alone
# on one worker while the other had nothing left. Longest first instead: by each file's
# seconds in the last run (in pytest's cache), and before any run, every file that needs
# the stack before the pure-logic ones.
FILE_SECONDS = "emulsion/file-seconds"
UNMEASURED_INTEGRATION_SECONDS = 10.0
# Folders whose files share a session-scoped system of their own (e2e: a second stack with
# the four services): one unit of work, so only one worker starts it.
ONE_UNIT_FOLDERS = ("tests/e2e/",)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("dist", "no") != "no":
        # The order `_longest_first` gave the collection is the order work is handed out.
        config.option.loadscopereorder = False


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _longest_first(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `config.cache` is missing altogether under `-p no:cacheprovider`.
    cache = getattr(config, "cache", None)
    measured: dict[str, float] = cache.get(FILE_SECONDS, {}) if cache else {}

    def seconds(item: pytest.Item) -> float:
        known = measured.get(_file_of(item.nodeid))
        if known is not None:
            return known
        return UNMEASURED_INTEGRATION_SECONDS if item.get_closest_marker("integration") else 0.0

    # Stable: each file's tests keep their order.
    items.sort(key=lambda item: -seconds(item))


_ran: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # On the controller this sees every worker's reports: setup, call and teardown.
    _ran[_file_of(report.nodeid)] = _ran.get(_file_of(report.nodeid), 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    cache = getattr(config, "cache", None)
    if cache is not None and _ran and not hasattr(config, "workerinput"):
        cache.set(FILE_SECONDS, {**cache.get(FILE_SECONDS, {}), **_ran})


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist", "no") != "loadfile":
        return None
    # pytest-xdist ships no type information.
    from xdist.scheduler import LoadFileScheduling  # type: ignore[import-untyped]

    class FoldersAsOneUnit(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = _file_of(nodeid)
            return next((f for f in ONE_UNIT_FOLDERS if path.startswith(f)), path)

    return FoldersAsOneUnit(config, log)


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


@pytest.fixture
def silent_apiserver() -> Iterator[client.Configuration]:
    """The client configuration of an apiserver that never answers: a TCP server that
    accepts every connection, reads what is sent, and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{listener.getsockname()[1]}")
    configuration.api_key = {"BearerToken": "Bearer token"}
    yield configuration
    closing.set()
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
    listener.close()
    for connection in accepted:
        connection.close()
    thread.join(5)
