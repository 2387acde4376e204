"""Fixtures for the controller's tests: the controller as a real process, a stand-in for
the processors (it consumes the real work stream and publishes real item results), and
ways to look at jobs, the streams and the apiserver's audit log.
"""

from __future__ import annotations

import asyncio
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

import nats
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from emulsion_contracts import crd, keys, messaging, telemetry
from emulsion_contracts.messages import ItemResult, WorkItem
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.processes import ProcessRecord, stop
from emulsion_devstack.processes import wait_for as wait_for
from emulsion_devstack.stack import Endpoints, LocalStack

# Each controller started gets a higher peering priority than the one before, so a
# killed controller's leftover peering record (alive for its lifetime) never pauses it.
_priorities = itertools.count(100)
FAST = {"EMULSION_STATUS_INTERVAL_SECONDS": "1", "EMULSION_TTL_SWEEP_SECONDS": "0.5"}


async def wait_for_async(what: str, check: Callable[[], Any], within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


@dataclass
class Controllers:
    """Starts controller processes on the session's stack; stops them after each test."""

    local: LocalStack
    running: list[ProcessRecord] = field(default_factory=list)

    def start(self, environment: dict[str, str] | None = None) -> ProcessRecord:
        record = self.local.start_service(
            "controller",
            {**FAST, "EMULSION_CONTROLLER_PRIORITY": str(next(_priorities)), **(environment or {})},
        )
        self.running.append(record)
        return record

    def kill(self, record: ProcessRecord) -> None:
        """SIGKILL: no cleanup handler, no drain, as when a node dies."""
        os.killpg(record.pid, signal.SIGKILL)
        wait_for("the controller to die", lambda: not record.alive(), 15)
        stop(record)  # reaps it
        self.running.remove(record)

    def stop_all(self) -> None:
        for record in self.running:
            stop(record)
        self.running.clear()


@pytest.fixture
def controllers(stack: Endpoints, stack_state_dir: Path) -> Iterator[Controllers]:
    started = Controllers(LocalStack(stack_state_dir, say=lambda line: None))
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
    ) -> dict[str, Any]:
        upload = keys.new_ulid()
        spec: dict[str, Any] = {
            "collection": collection,
            "items": [
                {"source": f"staging/{upload}/img-{i}.jpg", "asset": f"img-{i}.jpg"}
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
            "metadata": {"name": name, "namespace": self.namespace},
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
        writes = []
        for line in Path(self.stack.audit_log).read_text().splitlines():
            entry = json.loads(line)
            ref = entry.get("objectRef") or {}
            if (
                entry.get("stage") == "ResponseComplete"
                and ref.get("resource") == crd.PLURAL
                and ref.get("subresource") == "status"
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

    `outcome(work)` returns None for success, a failure reason, or "hold" to keep the
    message in the stream (nak with a long delay) without reporting anything.
    """

    js: JetStreamContext
    outcome: Outcome = succeed
    processed: Counter[tuple[str, int]] = field(default_factory=Counter)
    held: list[Any] = field(default_factory=list)

    async def run(self, stopping: asyncio.Event) -> None:
        subscription = await self.js.pull_subscribe_bind(
            durable=messaging.PROCESSORS, stream=messaging.WORK_STREAM
        )
        while not stopping.is_set():
            try:
                batch = await subscription.fetch(100, timeout=0.2)
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
        self.processed[(work.job.uid, work.index)] += 1
        await self.report(work, reason, msg.headers)
        await msg.ack()

    async def report(
        self, work: WorkItem, reason: str | None, headers: dict[str, str] | None
    ) -> int:
        result = result_for(work, reason)
        carrier = {k: v for k, v in (headers or {}).items() if k in ("traceparent", "tracestate")}
        ack = await self.js.publish(
            messaging.events_subject(work.job.namespace, work.job.name),
            result.to_bytes(),
            headers=telemetry.inject(carrier),
        )
        return int(ack.seq)


def result_for(work: WorkItem, reason: str | None) -> ItemResult:
    return ItemResult(
        job=work.job,
        index=work.index,
        outcome="failed" if reason else "succeeded",
        reason=reason,
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
        connection = await nats.connect(self.stack.nats_url)
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
        subject = messaging.work_subject(namespace, name)
        info = await js.stream_info(messaging.WORK_STREAM, subjects_filter=subject)
        return int(sum((info.state.subjects or {}).values()))

    @staticmethod
    async def read_queue(js: JetStreamContext, namespace: str, name: str) -> list[Any]:
        """Every message still queued for a job, read without consuming it."""
        subject = messaging.work_subject(namespace, name)
        found: list[Any] = []
        sequence = 0
        while True:
            try:
                msg = await js.get_msg(
                    messaging.WORK_STREAM, sequence + 1, subject=subject, next=True
                )
            except NotFoundError:
                return found
            found.append(msg)
            sequence = int(msg.seq or 0)


@pytest.fixture
def streams(stack: Endpoints, run: Any) -> Streams:
    """Also empties the work queue: the stream is shared by the session's tests."""
    streams = Streams(stack)

    async def purge() -> None:
        async with streams.session() as js:
            await js.purge_stream(messaging.WORK_STREAM)

    run(purge())
    return streams
