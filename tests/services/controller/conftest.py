"""Fixtures for the controller's tests: the controller as a real process, a stand-in for
the processors (it consumes the real work stream and publishes real item results), and
ways to look at jobs, the streams and the apiserver's audit log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from emulsion_contracts import crd, keys, natsauth, wire
from emulsion_contracts.jobrecords import OutcomeRecord
from emulsion_contracts.messages import ItemResult, WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.processes import ProcessRecord, free_port, stop, stop_all
from emulsion_devstack.processes import wait_for as wait_for
from emulsion_devstack.processes import wait_for_async as wait_for_async
from emulsion_devstack.stack import Endpoints, LocalStack
from emulsion_runtime import telemetry
from emulsion_runtime.records_store import JobRecords

# Each controller started gets a higher peering priority than the one before, so a
# killed controller's leftover peering record (alive for its lifetime) never pauses it.
_priorities = itertools.count(100)
FAST = {"EMULSION_STATUS_INTERVAL_SECONDS": "1", "EMULSION_TTL_SWEEP_SECONDS": "0.5"}


@dataclass
class Controllers:
    """Starts controller processes on the session's stack; stops them after each test."""

    local: LocalStack
    namespace: str
    running: list[ProcessRecord] = field(default_factory=list)

    def start(self, environment: dict[str, str] | None = None) -> ProcessRecord:
        record = self.local.start_service(
            "controller",
            {
                **FAST,
                # The test's own namespace: IngestJobs other tests left on the shared stack
                # (in any order, under pytest-xdist) are not this controller's to dispatch.
                "EMULSION_NAMESPACES": self.namespace,
                "EMULSION_CONTROLLER_PRIORITY": str(next(_priorities)),
                **(environment or {}),
            },
        )
        self.running.append(record)
        return record

    def kill(self, record: ProcessRecord) -> None:
        """SIGKILL: no cleanup handler, no drain, as when a node dies."""
        os.killpg(record.pid, signal.SIGKILL)
        wait_for("the controller to die", lambda: not record.alive(), 15)
        stop(record)  # reaps it
        self.running.remove(record)

    @staticmethod
    def priority() -> dict[str, str]:
        """A peering priority above every controller started so far."""
        return {"EMULSION_CONTROLLER_PRIORITY": str(next(_priorities))}

    @staticmethod
    def liveness_url(record: ProcessRecord) -> str:
        return LocalStack.service_url(record) + "/healthz"

    @staticmethod
    def readiness_url(record: ProcessRecord) -> str:
        return metrics_url(record) + "/readyz"

    http_status = staticmethod(lambda url: http_status(url))
    metric = staticmethod(lambda record, name: metric(record, name))

    def stop(self, record: ProcessRecord) -> None:
        """SIGTERM, as Kubernetes ends a pod: the controller leaves its peering on the way."""
        stop(record)
        self.running.remove(record)

    def stop_all(self) -> None:
        # At once, one grace for all: each controller takes seconds to leave.
        stop_all(self.running)
        self.running.clear()


@pytest.fixture
def controllers(stack: Endpoints, stack_state_dir: Path, jobs: Jobs) -> Iterator[Controllers]:
    started = Controllers(LocalStack(stack_state_dir, say=lambda line: None), jobs.namespace)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def controller(controllers: Controllers) -> ProcessRecord:
    return controllers.start()


@dataclass
class Jobs:
    """IngestJobs in a namespace of this test's own."""

    stack: Endpoints
    kube: Any
    namespace: str

    @property
    def api(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.kube)

    def manifest(
        self,
        name: str,
        items: int,
        *,
        version: bool = True,
        ttl: int | None = None,
        collection: str = "gallery",
        finalizer: bool = False,
    ) -> dict[str, Any]:
        upload = keys.new_ulid()
        spec: dict[str, Any] = {
            "collection": collection,
            "items": [
                {"source": f"staging/{collection}/{upload}/img-{i}.jpg", "asset": f"img-{i}.jpg"}
                for i in range(items)
            ],
        }
        if version:
            spec["version"] = keys.new_ulid()
        if ttl is not None:
            spec["ttlSecondsAfterFinished"] = ttl
        return {
            "apiVersion": crd.API_VERSION,
            "kind": crd.KIND,
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                # As the API creates jobs: the controller's finalizer already in place.
                "finalizers": [crd.FINALIZER] if finalizer else [],
            },
            "spec": spec,
        }

    def create(self, name: str, items: int, **options: Any) -> dict[str, Any]:
        manifest = self.manifest(name, items, **options)
        body = self.api.create_namespaced_custom_object(
            crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, manifest
        )
        return cast(dict[str, Any], body)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(ensure_binary("kubectl")), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "KUBECONFIG": self.stack.kubeconfig},
            check=False,
        )
        if done.returncode:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            body = self.api.get_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], body)

    def outcomes(self, name: str) -> OutcomeRecord:
        """The job's outcome record (which items finished), as the API reads it."""
        body = self.get(name)
        assert body is not None, f"job {name} does not exist"
        uid = body["metadata"]["uid"]

        async def read() -> OutcomeRecord | None:
            connection = await self.stack.nats_connect(natsauth.API_IDENTITY)
            try:
                kv = await connection.jetstream().key_value(wire.RECORDS_BUCKET)
                record, _ = await JobRecords(kv).outcomes(self.namespace, name, uid)
                return record
            finally:
                await connection.close()

        # Its own loop on its own thread: callable from a test's coroutine too.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            record = pool.submit(asyncio.run, read()).result(30)
        assert record is not None, f"job {name} has no outcome record"
        return record

    def status(self, name: str) -> dict[str, Any]:
        body = self.get(name)
        assert body is not None, f"job {name} does not exist"
        return dict(body.get("status") or {})

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(
            crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, name
        )

    def wait_phase(self, name: str, *phases: crd.Phase, timeout: float = 60.0) -> dict[str, Any]:
        wanted = {str(p) for p in phases}
        status: dict[str, Any] = wait_for(
            f"{name} to reach {sorted(wanted)}",
            lambda: s if (s := self.status(name)).get("phase") in wanted else None,
            timeout,
        )
        return status

    def audit_status_writes(self, name: str) -> list[dict[str, Any]]:
        """Every attempt to write this job's status, as the apiserver's audit log has them."""
        return self.audit_writes(name, subresource="status")

    def audit_writes(self, name: str, subresource: str | None) -> list[dict[str, Any]]:
        """Every attempt to write this job (`subresource` None: the object itself)."""
        writes = []
        for line in Path(self.stack.audit_log).read_text().splitlines():
            entry = json.loads(line)
            ref = entry.get("objectRef") or {}
            if (
                entry.get("stage") == "ResponseComplete"
                and ref.get("resource") == crd.PLURAL
                and ref.get("subresource") == subresource
                and ref.get("namespace") == self.namespace
                and ref.get("name") == name
                and entry.get("verb") in ("patch", "update")
                and "dryRun=" not in str(entry.get("requestURI"))
            ):
                writes.append(entry)
        return writes

    def status_writes(self, name: str) -> list[dict[str, Any]]:
        """Successful writes of this job's status."""
        return [
            entry
            for entry in self.audit_status_writes(name)
            if (entry.get("responseStatus") or {}).get("code") == 200
        ]


@pytest.fixture
def jobs(stack: Endpoints, kube: Any) -> Iterator[Jobs]:
    namespace = f"ctl-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    yield Jobs(stack, kube, namespace)
    core.delete_namespace(namespace)


Outcome = Callable[[WorkItem], str | None]


def succeed(work: WorkItem) -> str | None:
    return None


@dataclass
class Processor:
    """Stands in for the processors: takes work from the real work stream and reports.

    `outcome(work)` returns None for success, a failure reason, "hold" to keep the
    message in the stream (nak with a long delay) without reporting anything, or "drop"
    to take the work (ack it) and never report its result, as a processor that crashed
    between acknowledging and publishing would.
    """

    js: JetStreamContext
    outcome: Outcome = succeed
    processed: Counter[tuple[str, int]] = field(default_factory=Counter)
    held: list[Any] = field(default_factory=list)
    dropped: Counter[tuple[str, int]] = field(default_factory=Counter)

    async def run(self, stopping: asyncio.Event) -> None:
        subscriptions = [
            await self.js.pull_subscribe_bind(durable=durable, stream=wire.WORK_STREAM)
            for durable in wire.WORK_CONSUMERS.values()
        ]
        while not stopping.is_set():
            for subscription in subscriptions:  # both lanes, in turn
                try:
                    batch = await subscription.fetch(100, timeout=0.1)
                except TimeoutError:
                    continue
                for msg in batch:
                    await self.handle(msg)

    async def handle(self, msg: Any) -> None:
        work = WorkItem.model_validate_json(msg.data)
        reason = self.outcome(work)
        if reason == "hold":
            self.held.append(msg)
            await msg.nak(delay=3600)
            return
        if reason == "drop":
            self.dropped[(work.job.uid, work.index)] += 1
            await msg.ack()
            return
        self.processed[(work.job.uid, work.index)] += 1
        await self.report(work, reason, msg.headers)
        await msg.ack()

    def result(self, work: WorkItem, reason: str | None) -> ItemResult:
        """What this processor reports for `work`."""
        return result_for(work, reason)

    async def report(
        self, work: WorkItem, reason: str | None, headers: dict[str, str] | None
    ) -> int:
        result = self.result(work, reason)
        carrier = {k: v for k, v in (headers or {}).items() if k in ("traceparent", "tracestate")}
        ack = await self.js.publish(
            wire.events_subject(work.job.namespace, work.job.name),
            result.to_bytes(),
            headers=telemetry.inject(carrier),
        )
        return int(ack.seq)


def result_for(work: WorkItem, reason: str | None) -> ItemResult:
    return ItemResult(
        job=work.job,
        index=work.index,
        outcome="failed" if reason else "succeeded",
        reason=FailureReason(reason) if reason else None,
        message=f"simulated {reason}" if reason else None,
        collection=work.collection,
        asset=work.asset,
        version=work.version,
        committed=reason is None,
        finished_at=datetime.now(UTC),
    )


@dataclass
class Streams:
    """The stack's JetStream, as the tests see it."""

    stack: Endpoints
    wait_for = staticmethod(wait_for)
    wait_for_async = staticmethod(wait_for_async)
    result_for = staticmethod(result_for)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[JetStreamContext]:
        connection = await self.stack.nats_connect()
        try:
            yield connection.jetstream()
        finally:
            # Not drain(): with a stopped pull subscription it waits out its whole 30 s
            # timeout. Flushing sends every ack and publish still buffered.
            await connection.flush()
            await connection.close()

    @asynccontextmanager
    async def processing(self, outcome: Outcome = succeed) -> AsyncIterator[Processor]:
        """A Processor running in the background for the duration of the block."""
        async with self.session() as js:
            processor = Processor(js, outcome)
            stopping = asyncio.Event()
            task = asyncio.create_task(processor.run(stopping))
            try:
                yield processor
            finally:
                stopping.set()
                await task

    @staticmethod
    async def queued_on(js: JetStreamContext, namespace: str, name: str) -> int:
        subject = wire.job_work_subjects(namespace, name)  # either lane
        info = await js.stream_info(wire.WORK_STREAM, subjects_filter=subject)
        return int(sum((info.state.subjects or {}).values()))

    @staticmethod
    async def read_queue(js: JetStreamContext, namespace: str, name: str) -> list[Any]:
        """Every message still queued for a job (either lane), read without consuming it."""
        subject = wire.job_work_subjects(namespace, name)
        found: list[Any] = []
        sequence = 0
        while True:
            try:
                msg = await js.get_msg(wire.WORK_STREAM, sequence + 1, subject=subject, next=True)
            except NotFoundError:
                return found
            found.append(msg)
            sequence = int(msg.seq or 0)


@pytest.fixture
def streams(stack: Endpoints, run: Any) -> Streams:
    """Also empties the work queue and the results: the streams are shared by the session's
    tests, and whatever an earlier test (of any folder, in any order) left there would be
    delivered to this test's controller."""
    streams = Streams(stack)

    async def purge() -> None:
        async with streams.session() as js:
            await js.purge_stream(wire.WORK_STREAM)
            await js.purge_stream(wire.EVENTS_STREAM)

    run(purge())
    return streams


@dataclass(frozen=True)
class ProxiedRequest:
    at: float
    method: str
    path: str
    status: int


class ApiProxy:
    """A reverse proxy in front of the stack's apiserver that can be told to answer 503.

    The controller under test is given a kubeconfig pointing here (plain HTTP, no
    credentials); the proxy calls the real apiserver with the stack's admin certificate.
    Every request is recorded, so a test can count what the controller asked for.
    """

    def __init__(self, stack: Endpoints, directory: Path) -> None:
        import base64
        import ssl
        import threading

        import yaml

        config = yaml.safe_load(Path(stack.kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.upstream = str(cluster["server"]).rstrip("/")
        for name, data in (
            ("ca.crt", cluster["certificate-authority-data"]),
            ("client.crt", user["client-certificate-data"]),
            ("client.key", user["client-key-data"]),
        ):
            (directory / name).write_bytes(base64.b64decode(data))
        self._tls = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        self._tls.load_cert_chain(directory / "client.crt", directory / "client.key")
        self.failing: Callable[[str, str], bool] | None = None
        self.requests: list[ProxiedRequest] = []
        self.port = free_port()
        self.kubeconfig = str(directory / "proxied-kubeconfig")
        Path(self.kubeconfig).write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                    ],
                    "users": [{"name": "proxy", "user": {}}],
                    "contexts": [
                        {"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}
                    ],
                    "current-context": "proxy",
                }
            )
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def fail_with_503(self, when: Callable[[str, str], bool]) -> None:
        """From now on, answer 503 to every request `when(method, path)` holds for."""
        self.failing = when

    def recover(self) -> None:
        self.failing = None

    def requested(self, since: float, until: float, match: Callable[[ProxiedRequest], bool]) -> int:
        return sum(1 for r in list(self.requests) if since <= r.at <= until and match(r))

    async def _start(self) -> None:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._tls),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Watches stream for minutes: closing waits for them only briefly.
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        failing = self.failing
        if failing is not None and failing(request.method, request.path):
            self.requests.append(
                ProxiedRequest(time.monotonic(), request.method, request.path, 503)
            )
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": "the test's proxy is answering 503",
                    "reason": "ServiceUnavailable",
                    "code": 503,
                },
                status=503,
            )
        hop = {"host", "content-length", "transfer-encoding", "connection"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
            # The kubernetes client may send a body without a Content-Type, which the
            # apiserver takes as JSON; aiohttp would otherwise call it octet-stream.
            skip_auto_headers=("Content-Type",),
        ) as upstream:
            self.requests.append(
                ProxiedRequest(time.monotonic(), request.method, request.path, upstream.status)
            )
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in hop},
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._session.close()
            # Streams the runner let go of unfinished (watches) end here, not at exit.
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def api_proxy(stack: Endpoints, tmp_path: Path) -> Iterator[ApiProxy]:
    proxy = ApiProxy(stack, tmp_path)
    try:
        yield proxy
    finally:
        proxy.close()


def metrics_url(record: ProcessRecord) -> str:
    """The controller's own HTTP server (/readyz, /metrics), on EMULSION_METRICS_PORT."""
    environment = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
    port = next(v for v in environment if v.startswith(b"EMULSION_METRICS_PORT="))
    return f"http://127.0.0.1:{port.split(b'=', 1)[1].decode()}"


def http_status(url: str) -> int | None:
    """The status `url` answers with; None when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def metric(record: ProcessRecord, name: str) -> float | None:
    """One sample of the controller's /metrics (the first line that starts with `name`)."""
    import urllib.request

    with urllib.request.urlopen(metrics_url(record) + "/metrics", timeout=3) as response:  # noqa: S310
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None
