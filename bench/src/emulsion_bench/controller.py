"""`make bench-controller`: the controller under thousands of IngestJobs.

On a stack of its own (never a `make up` one): starts the controller, creates many jobs
of one item and a few of many items, and runs a stand-in for the processors that takes
every work message and reports it done. It prints:

- create -> Queued latency (p50/p90/p99/max), measured from just before the create call
  to the first watch event showing phase Queued (so it includes watch delivery);
- create -> Succeeded for the large jobs, and the time until every job has finished;
- the controller's resident memory (RSS) sampled throughout: at start, peak, and at the
  end once the work is done (kopf has a reported leak in status patching; a growing
  end value would show it), against the performance targets' goal for a service (160 MB);
- the status patches the controller wrote (its own counter, from /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from emulsion_bench import procstat
from emulsion_bench.stats import percentile
from emulsion_bench.targets import SERVICE_RSS_MB
from emulsion_contracts import crd, keys, wire
from emulsion_contracts.messages import ItemResult, WorkItem
from emulsion_devstack.processes import ProcessRecord, free_port, wait_for
from emulsion_devstack.stack import Endpoints, LocalStack

NAMESPACE = "bench"
RSS_GOAL_MB = SERVICE_RSS_MB


@dataclass
class Timeline:
    """When each job was created, first seen Queued, and seen finished."""

    created: dict[str, float] = field(default_factory=dict)
    queued: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def see(self, name: str, phase: str | None, now: float) -> None:
        with self.lock:
            if phase and phase != crd.Phase.PENDING and name not in self.queued:
                self.queued[name] = now  # Queued, or already past it when first seen
            if phase and crd.Phase.parse(phase).finished and name not in self.finished:
                self.finished[name] = now


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[float] = []
        self.stopping = threading.Event()

    def read(self) -> float | None:
        return procstat.rss_mb(self.pid) or None

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            rss = self.read()
            if rss is not None:
                self.samples.append(rss)


def job_manifest(name: str, items: int) -> dict[str, Any]:
    upload = keys.new_ulid()
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "collection": "bench",
            "version": keys.new_ulid(),
            "items": [
                {"source": f"staging/bench/{upload}/img-{i}.jpg", "asset": f"img-{i}.jpg"}
                for i in range(items)
            ],
        },
    }


def watch_jobs(api_client: Any, timeline: Timeline, stopping: threading.Event) -> None:
    custom = client.CustomObjectsApi(api_client)
    resource_version = ""
    while not stopping.is_set():
        stream = watch.Watch()
        try:
            for event in stream.stream(
                custom.list_namespaced_custom_object,
                crd.GROUP,
                crd.VERSION,
                NAMESPACE,
                crd.PLURAL,
                resource_version=resource_version,
                timeout_seconds=30,
                allow_watch_bookmarks=True,
            ):
                body = event["object"]
                resource_version = body["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    phase = (body.get("status") or {}).get("phase")
                    timeline.see(body["metadata"]["name"], phase, time.monotonic())
                if stopping.is_set():
                    break
        except client.exceptions.ApiException as error:
            if error.status != 410:
                raise
            resource_version = ""  # expired: list again from now
        except Exception:
            if stopping.is_set():
                return  # the stack is going down under the watch
            raise


async def process_everything(endpoints: Endpoints, stopping: asyncio.Event) -> int:
    """Stands in for the processors: every work item succeeds at once."""
    connection = await endpoints.nats_connect("processor")
    js = connection.jetstream()
    subscriptions = [
        await js.pull_subscribe_bind(durable=durable, stream=wire.WORK_STREAM)
        for durable in wire.WORK_CONSUMERS.values()
    ]
    done = 0
    turn = 0
    try:
        while not stopping.is_set():
            # Both lanes, in turn (small jobs are interactive work).
            subscription = subscriptions[turn % len(subscriptions)]
            turn += 1
            try:
                batch = await subscription.fetch(500, timeout=0.25)
            except TimeoutError:
                continue
            results = []
            for msg in batch:
                work = WorkItem.model_validate_json(msg.data)
                result = ItemResult(
                    job=work.job,
                    index=work.index,
                    outcome="succeeded",
                    collection=work.collection,
                    asset=work.asset,
                    version=work.version,
                    committed=True,
                    finished_at=datetime.now(UTC),
                )
                results.append(
                    js.publish(
                        wire.events_subject(work.job.namespace, work.job.name),
                        result.to_bytes(),
                    )
                )
            await asyncio.gather(*results)
            await asyncio.gather(*(msg.ack() for msg in batch))
            done += len(batch)
    finally:
        await connection.close()
    return done


def latencies(timeline: Timeline, names: Iterable[str], stage: dict[str, float]) -> list[float]:
    return [stage[n] - timeline.created[n] for n in names if n in stage and n in timeline.created]


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: no data"
    return (
        f"{label}: n={len(values)} p50={percentile(values, 50):.2f}s "
        f"p90={percentile(values, 90):.2f}s p99={percentile(values, 99):.2f}s "
        f"max={max(values):.2f}s mean={statistics.fmean(values):.2f}s"
    )


def status_patches(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()  # noqa: S310
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("emulsion_controller_status_patches_total{")
    )


def wait_until(what: str, check: Callable[[], bool], deadline: float) -> bool:
    """Wait for `check` until `deadline`; on a timeout say so and go on to report."""
    try:
        wait_for(what, check, timeout=max(0.0, deadline - time.monotonic()))
    except AssertionError:
        print(f"!! gave up waiting for {what}", file=sys.stderr)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-controller-") as state:
        local = LocalStack(Path(state), say=lambda line: None)
        print("starting a stack of its own ...", flush=True)
        endpoints = local.up()
        try:
            return measure(args, local, endpoints)
        finally:
            local.down()


def measure(args: argparse.Namespace, local: LocalStack, endpoints: Endpoints) -> int:
    api_client = config.new_client_from_config(config_file=endpoints.kubeconfig)
    client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
    )
    metrics_port = free_port()
    controller: ProcessRecord = local.start_service(
        "controller", {"EMULSION_METRICS_PORT": str(metrics_port), "EMULSION_LOG_LEVEL": "WARNING"}
    )
    sampler = RssSampler(controller.pid)
    sampler.start()
    rss_start = sampler.read() or 0.0

    timeline = Timeline()
    stopping = threading.Event()
    watcher = threading.Thread(
        target=watch_jobs, args=(api_client, timeline, stopping), daemon=True
    )
    watcher.start()

    processing = asyncio.Event()
    loop = asyncio.new_event_loop()
    processor = threading.Thread(
        target=lambda: loop.run_until_complete(process_everything(endpoints, processing)),
        daemon=True,
    )
    processor.start()

    small = [f"one-{i:05d}" for i in range(args.small_jobs)]
    large = [f"many-{i}" for i in range(args.large_jobs)]
    manifests = [(name, job_manifest(name, 1)) for name in small]
    # The large jobs go out among the small ones, as they would arrive in life.
    step = len(small) // (len(large) + 1)
    for position, name in enumerate(large):
        entry = (name, job_manifest(name, args.large_items))
        manifests.insert((position + 1) * step + position, entry)

    custom = client.CustomObjectsApi(api_client)

    def create(entry: tuple[str, dict[str, Any]]) -> None:
        name, manifest = entry
        timeline.created[name] = time.monotonic()
        custom.create_namespaced_custom_object(
            crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, manifest
        )

    total = len(manifests)
    print(
        f"creating {len(small)} jobs of 1 item and {len(large)} of {args.large_items} items "
        f"({len(small) + len(large) * args.large_items} items) ...",
        flush=True,
    )
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        list(pool.map(create, manifests))
    created_in = time.monotonic() - began
    deadline = began + args.timeout
    wait_until("every job to be Queued", lambda: len(timeline.queued) >= total, deadline)
    all_queued = time.monotonic() - began
    wait_until("every job to finish", lambda: len(timeline.finished) >= total, deadline)
    all_finished = time.monotonic() - began
    # Let a few more samples in after the work, to see whether memory goes back down.
    time.sleep(5)  # a measurement window, not a wait for a condition
    rss_end = sampler.read() or 0.0
    patches = status_patches(f"http://127.0.0.1:{metrics_port}/metrics")
    stopping.set()
    loop.call_soon_threadsafe(processing.set)
    processor.join(10)
    sampler.stopping.set()

    rss_peak = max(sampler.samples, default=rss_end)
    print()
    print(
        f"jobs: {total} created in {created_in:.1f}s ({total / created_in:.0f}/s with "
        f"{args.clients} clients)"
    )
    print(summary("create -> Queued, 1-item jobs", latencies(timeline, small, timeline.queued)))
    print(summary("create -> Queued, large jobs", latencies(timeline, large, timeline.queued)))
    print(summary("create -> finished, large jobs", latencies(timeline, large, timeline.finished)))
    print(f"all Queued after {all_queued:.1f}s; all finished after {all_finished:.1f}s")
    print(f"finished: {len(timeline.finished)}/{total}")
    print(
        f"controller RSS: start {rss_start:.0f} MB, peak {rss_peak:.0f} MB, end {rss_end:.0f} MB "
        f"(goal <= {RSS_GOAL_MB:.0f} MB: {'met' if rss_peak <= RSS_GOAL_MB else 'MISSED'})"
    )
    print(f"status patches written by the controller: {patches:.0f}")
    return 0 if len(timeline.finished) >= total else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-jobs", type=int, default=5000, help="jobs of one item")
    parser.add_argument("--large-jobs", type=int, default=5, help="jobs of many items")
    parser.add_argument("--large-items", type=int, default=1000, help="items per large job")
    parser.add_argument("--clients", type=int, default=8, help="concurrent create calls")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after (s)")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
