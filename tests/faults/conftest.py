"""One real stack for the fault cases: the servers, the four services as processes, and a
proxy in front of every connection a case needs to cut at an exact frame.

The processor, controller and janitor reach NATS, S3 and the apiserver through `Proxy`s
(see proxy.py); the API goes direct. A killed process is started again by the stack with
the same environment, so it comes back through the same proxies. The processor's scratch
directory is a small tmpfs, so one case can fill it.

Timing settings are scaled down so each case runs in seconds: the janitor's grace, the
processor's retry delay and heartbeat. Each case names its own collection, so the oracle
judges only what the case did.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from emulsion_contracts import wire
from emulsion_devstack.stack import SERVERS, Endpoints, LocalStack
from tests.consumers import set_ack_wait
from tests.faults.oracle import Case
from tests.faults.proxy import Proxy
from tests.faults.workload import Client
from tests.systems import endpoints_of

GRACE_SECONDS = 4.0
# The work and result consumers' AckWait (30 s in production) shortened, so an item or a
# result held by a killed process comes back in seconds; heartbeats keep live work alive.
ACK_WAIT_SECONDS = 4.0
RETRY_DELAY_SECONDS = 1.0
HEARTBEAT_SECONDS = 1.0
FEED_HIGH_WATER = 6
SCRATCH_BYTES = 96 * 1024 * 1024
MIN_FREE_SCRATCH_BYTES = 4 * 1024 * 1024
PROXIED = ("processor", "controller", "janitor")
LOGS = Path(tempfile.gettempdir()) / "emulsion-faults-logs"
COMPLAINT = re.compile(r'"level": "(WARNING|ERROR|CRITICAL)"|Traceback')


@dataclass
class FaultStack:
    stack: LocalStack
    client: Client
    environment: dict[str, str]
    proxies: dict[str, dict[str, Proxy]]  # service -> {"nats", "s3", "kube"}
    scratch: Path

    def endpoints(self) -> Endpoints:
        return endpoints_of(self.stack)

    def proxy(self, service: str, server: str) -> Proxy:
        return self.proxies[service][server]

    def case(self) -> Case:
        return Case(self.client, self.environment, GRACE_SECONDS)

    def start(self, name: str) -> None:
        """Start a killed service again; a controller's start reconciles the consumers, so
        the suite's short AckWait is put back after it."""
        self.stack.start(name)
        if name == "controller":
            shorten_ack_wait(self.endpoints())

    def revive(self) -> list[str]:
        """What a kubelet does: start again every service that exited or whose liveness
        probe (`/healthz`) fails (none should). Returns their names."""
        revived = [name for name in ("api", *PROXIED) if not self.live(name)]
        for name in revived:
            self.stack.kill(name, signal.SIGKILL)
            self.start(name)
        return revived

    def live(self, name: str, attempts: int = 3) -> bool:
        record = self.stack.record(name)
        url = f"http://127.0.0.1:{record.env.get('EMULSION_HTTP_PORT')}/healthz"
        for _ in range(attempts):
            if not record.alive():
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return True
            threading.Event().wait(1.0)  # a probe's period
        return False

    def complaints(self, last: int = 25, width: int = 400) -> dict[str, str]:
        """The last warning, error and critical lines of each service's log."""
        found = {}
        for record in self.stack.processes():
            if record.name not in ("api", *PROXIED):
                continue
            with contextlib.suppress(OSError):
                lines = Path(record.log).read_text(errors="replace").splitlines()
                loud = [line[:width] for line in lines if COMPLAINT.search(line)]
                if loud:
                    found[record.name] = "\n".join(loud[-last:])
        return found

    def reset(self) -> None:
        """After a failed case: every service killed and started afresh, so the next case
        does not inherit a wedged process."""
        for name in ("api", *PROXIED):
            self.stack.kill(name, signal.SIGKILL)
            self.start(name)

    def disarm(self) -> None:
        for proxies in self.proxies.values():
            for proxy in proxies.values():
                proxy.disarm()


def shorten_ack_wait(endpoints: Endpoints) -> None:
    """The processors' and the controller's consumers with the suite's short AckWait (and
    the processors' backoff scaled to it); the next `ensure_jetstream` (a controller's
    start: only the bootstrap identity reconciles durables) puts them back."""
    durables = (*wire.WORK_CONSUMERS.values(), wire.CONTROLLER)
    asyncio.run(set_ack_wait(endpoints, durables, ACK_WAIT_SECONDS))


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def _mount_tmpfs(path: Path, size: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            "the disk-full case needs a small filesystem for the processor's scratch dir; "
            f"mounting a tmpfs at {path} failed (run the fault suite as root): {result.stderr}"
        )


@pytest.fixture(scope="session")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    root = tmp_path_factory.mktemp("faults")
    scratch = root / "scratch"
    _mount_tmpfs(scratch, SCRATCH_BYTES)
    # NATS without TLS (passwords and permissions as always): the proxies read and hold
    # NATS protocol lines (a work publish, an ack, the processors' heartbeats).
    stack = LocalStack(root / "state", say=lambda line: None, nats_tls=False)
    opened: list[Proxy] = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("EMULSION_GC_GRACE_SECONDS", str(GRACE_SECONDS))
            patch.setenv("EMULSION_RETRY_DELAY_SECONDS", str(RETRY_DELAY_SECONDS))
            patch.setenv("EMULSION_HEARTBEAT_SECONDS", str(HEARTBEAT_SECONDS))
            patch.setenv("EMULSION_DRAIN_SECONDS", "5")
            endpoints = stack.up()
            kubeconfig = yaml.safe_load(Path(endpoints.kubeconfig).read_text())
            proxies: dict[str, dict[str, Proxy]] = {}
            for service in PROXIED:
                proxies[service] = {
                    "nats": Proxy("127.0.0.1", _port(endpoints.nats_url), f"{service}-nats"),
                    "s3": Proxy("127.0.0.1", _port(endpoints.s3_endpoint_url), f"{service}-s3"),
                    "kube": Proxy("127.0.0.1", _port(endpoints.apiserver_url), f"{service}-kube"),
                }
                opened.extend(proxies[service].values())
            stack.start_service("api")
            for service in PROXIED:
                through = proxies[service]
                config = yaml.safe_load(yaml.safe_dump(kubeconfig))
                config["clusters"][0]["cluster"]["server"] = (
                    f"https://127.0.0.1:{through['kube'].port}"
                )
                proxied_kubeconfig = root / f"{service}.kubeconfig"
                proxied_kubeconfig.write_text(yaml.safe_dump(config))
                environment = {
                    "NATS_URL": f"nats://127.0.0.1:{through['nats'].port}",  # no TLS, above
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{through['s3'].port}",
                    "KUBECONFIG": str(proxied_kubeconfig),
                }
                if service == "controller":
                    # Bulk jobs (over 20 items) fed a few items at a time: a case's
                    # fault lands while the feeder still holds most of the job back.
                    environment["EMULSION_FEED_HIGH_WATER"] = str(FEED_HIGH_WATER)
                    environment["EMULSION_FEED_MIN_WINDOW"] = "2"
                if service == "processor":
                    environment["EMULSION_SCRATCH_DIR"] = str(scratch)
                    environment["EMULSION_MIN_FREE_SCRATCH_BYTES"] = str(MIN_FREE_SCRATCH_BYTES)
                stack.start_service(service, environment)
            api = stack.record("api")
            api_url = LocalStack.service_url(api)
            client = Client.of(endpoints, api_url)
            environment = {
                **endpoints.environment(),
                "EMULSION_API_URL": api_url,
            }
            shorten_ack_wait(endpoints)
            yield FaultStack(stack, client, environment, proxies, scratch)
    finally:
        # The services' logs outlive the stack, for whoever reads a failure.
        LOGS.mkdir(parents=True, exist_ok=True)
        for record in stack.processes():
            with contextlib.suppress(OSError):
                shutil.copy(record.log, LOGS)
        stack.down()
        for proxy in opened:
            with contextlib.suppress(Exception):
                proxy.close()
        subprocess.run(["umount", "-l", str(scratch)], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[FAILED] = report.failed
        stack = item.funcargs.get("fault") if hasattr(item, "funcargs") else None
        if report.failed and isinstance(stack, FaultStack):
            # What the services said goes into the failure itself: CI keeps the test
            # report, not the log files.
            for name, lines in stack.complaints().items():
                report.sections.append((f"{name}: its last warnings and errors", lines))


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def fault(faults: FaultStack, request: pytest.FixtureRequest) -> Iterator[FaultStack]:
    """The shared fault stack, with every service running and every proxy disarmed after."""
    yield faults
    faults.disarm()
    # A case that failed half-way may leave a process frozen, stopped, killed or wedged.
    for name in SERVERS:
        faults.stack.kill(name, signal.SIGCONT)
        faults.stack.start(name)
    if request.node.stash.get(FAILED, True):
        faults.reset()
    else:
        faults.revive()
