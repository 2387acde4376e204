"""`make bench-processor`: the processor on the real local stack against the pure-Pillow limit.

Three figures, all measured in the same run on the same machine:

1. The pure-Pillow limit: `imaging.render` (decode + the default styles) over the
   generated 12 MP JPEGs on every core, in a process pool, reading from and writing to
   memory-backed files: no S3, no NATS.
2. The processor, once per executor (threads, then processes), as a real
   `python -m emulsion_processor` process behind the `processors` durable on a fresh
   local stack: the same images staged in MinIO, published as work items, timed from the
   first publish to the last result on the events stream. Its ratio to (1) is the goal
   (>= 0.85).
3. Peak RSS (VmHWM) of each processor process after it made the styles of one 50 MP,
   ~30 MB JPEG (goal <= 250 MB per worker process).

The machine may be shared, so wall-clock figures move with everyone else's load. Each
processor run is therefore paired with a limit run just before it, and CPU seconds per
image are printed too: the limit's render CPU against everything the processor costs
the machine (its own process tree plus MinIO and the NATS server). Their quotient is the
ratio a dedicated machine would show when both are CPU-bound, and does not depend on
the load others put on the machine.

The images are generated from fixed seeds, so every run measures the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from emulsion_bench import inputs, procstat
from emulsion_bench.limit import measure as measure_limit
from emulsion_bench.limit import memory_dir
from emulsion_contracts import keys, wire, worksigning
from emulsion_contracts.messages import ItemResult, JobRef, WorkItem
from emulsion_devstack.processes import ProcessRecord, stop
from emulsion_devstack.stack import Endpoints, LocalStack, s3_client
from emulsion_runtime import storage, telemetry

MB = 1024 * 1024
TWELVE_MP = (4000, 3000)
FIFTY_MP = (8660, 5774)
NAMESPACE = "bench"


# -- deterministic images ---------------------------------------------------------------------


def photo_like(size: tuple[int, int], seed: int, detail: int) -> Image.Image:
    """Smooth colour fields with grain: JPEG sizes like a camera's, from a fixed seed.

    `detail` is how many times finer than the colour fields the grain is; more detail
    means more bytes per pixel after JPEG compression.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible images, not secrets
    width, height = size
    fields = (max(1, width // 40), max(1, height // 40))
    base = Image.frombytes("RGB", fields, rng.randbytes(fields[0] * fields[1] * 3))
    image = base.resize(size, Image.Resampling.BICUBIC)
    grain_size = (max(1, width * detail // 40), max(1, height * detail // 40))
    grain = Image.frombytes("RGB", grain_size, rng.randbytes(grain_size[0] * grain_size[1] * 3))
    return Image.blend(image, grain.resize(size, Image.Resampling.BILINEAR), 0.25)


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def generate_gallery(directory: Path, distinct: int) -> list[Path]:
    paths = []
    for seed in range(distinct):
        path = directory / f"IMG_{seed:04d}.jpg"
        path.write_bytes(jpeg_bytes(photo_like(TWELVE_MP, seed, detail=10), 90))
        paths.append(path)
    return paths


def generate_large(directory: Path) -> Path:
    path = directory / "LARGE_50MP.jpg"
    path.write_bytes(jpeg_bytes(photo_like(FIFTY_MP, 1_000, detail=30), 95))
    return path


# -- the processor on the real stack -------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    executor: str
    images: int
    seconds: float
    failed: int
    # CPU seconds per image: the processor's process tree, MinIO, the NATS server.
    cpu_processor: float
    cpu_minio: float
    cpu_nats: float

    @property
    def per_second(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_per_image(self) -> float:
        return self.cpu_processor + self.cpu_minio + self.cpu_nats


@contextmanager
def processor(stack: LocalStack, executor: str, concurrency: int) -> Iterator[ProcessRecord]:
    record = stack.start_service(
        "processor",
        {
            "EMULSION_EXECUTOR": executor,
            "EMULSION_CONCURRENCY": str(concurrency),
            "EMULSION_LOG_LEVEL": "WARNING",
            "OTEL_SDK_DISABLED": "true",
        },
    )
    try:
        yield record
    finally:
        stop(record)


def stage_all(s3: Any, bucket: str, sources: list[Path], collection: str = "bench") -> list[str]:
    """Each file as an upload presigned for `collection` leaves it (its key, its metadata)."""
    staged = []
    for path in sources:
        key = keys.staging_key(collection, keys.new_ulid(), path.name)
        s3.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs={
                "ContentType": "image/jpeg",
                "Metadata": {storage.UPLOAD_COLLECTION_METADATA: collection},
            },
        )
        staged.append(key)
    return staged


def restage(s3: Any, bucket: str, staged: list[str], collection: str) -> list[str]:
    """Fresh uploads of `collection` with the bytes of `staged` (server-side copies): an
    upload is promoted once, so every run needs its own."""
    fresh = []
    for key in staged:
        copy = keys.staging_key(collection, keys.new_ulid(), key.rsplit("/", 1)[-1])
        s3.copy_object(
            Bucket=bucket,
            Key=copy,
            CopySource={"Bucket": bucket, "Key": key},
            MetadataDirective="REPLACE",
            ContentType="image/jpeg",
            Metadata={storage.UPLOAD_COLLECTION_METADATA: collection},
        )
        fresh.append(copy)
    return fresh


def job_items(collection: str, staged: list[str]) -> list[WorkItem]:
    ulid = keys.new_ulid()
    job = JobRef(namespace=NAMESPACE, name=f"bench-{ulid.lower()}", uid=ulid)
    return [
        WorkItem(
            job=job,
            index=index,
            source=source,
            collection=collection,
            asset=f"IMG_{index:05d}.jpg",
            version=keys.version_id(ulid, index),
        )
        for index, source in enumerate(staged)
    ]


async def process_all(
    endpoints: Endpoints, items: list[WorkItem]
) -> tuple[float, list[ItemResult]]:
    """Publish `items` as the controller does (signed); seconds until every result is in."""
    key = endpoints.work_signing_key()
    # The admin: it publishes work as the controller and reads results as the controller's
    # durable would, in one client.
    connection = await endpoints.nats_connect()
    try:
        js = connection.jetstream()
        job = items[0].job
        results: list[ItemResult] = []
        done = asyncio.Event()

        async def collect(msg: Any) -> None:
            parsed = ItemResult.from_bytes(msg.data)
            assert isinstance(parsed, ItemResult)
            results.append(parsed)
            if len(results) == len(items):
                done.set()

        await connection.subscribe(wire.events_subject(job.namespace, job.name), cb=collect)
        started = time.perf_counter()
        subject = wire.work_subject(job.namespace, job.name)
        for item in items:
            body = item.to_bytes()
            headers = telemetry.inject({wire.HEADER_MSG_ID: wire.work_msg_id(job.uid, item.index)})
            await js.publish(
                subject, body, headers=worksigning.signed_headers(key, subject, body, headers)
            )
        await asyncio.wait_for(done.wait(), timeout=60 + 10 * len(items))
        return time.perf_counter() - started, results
    finally:
        await connection.drain()


def measure_processor(
    stack: LocalStack, endpoints: Endpoints, staged: list[str], executor: str, concurrency: int
) -> Run:
    servers = {record.name: record.pid for record in stack.processes()}
    s3 = s3_client(endpoints)
    warm, bench = f"warm-{executor}", f"bench-{executor}"
    warm_sources = restage(s3, endpoints.bucket, staged[: 2 * concurrency], warm)
    sources = restage(s3, endpoints.bucket, staged, bench)
    with processor(stack, executor, concurrency) as record:
        # Untimed first items: pool start-up, first connections, lazy imports.
        warm_up = job_items(warm, warm_sources)
        asyncio.run(process_all(endpoints, warm_up))
        items = job_items(bench, sources)

        meter = procstat.PhaseMeter(
            {"processor": record.pid, "minio": servers["minio"], "nats": servers["nats-server"]}
        )
        meter.start()
        seconds, results = asyncio.run(process_all(endpoints, items))
        spent = procstat.cpu_per_item(meter.stop(), len(items))
    failed = sum(1 for result in results if result.outcome != "succeeded")
    return Run(
        executor, len(items), seconds, failed, spent["processor"], spent["minio"], spent["nats"]
    )


def peak_rss(stack: LocalStack, endpoints: Endpoints, staged: str, executor: str) -> list[float]:
    """VmHWM in MB (10^6 bytes) of the processor and its workers after one large item."""
    collection = f"bench-rss-{executor}"
    items = job_items(
        collection, restage(s3_client(endpoints), endpoints.bucket, [staged], collection)
    )
    with processor(stack, executor, 1) as record:
        _, results = asyncio.run(process_all(endpoints, items))
        if results[0].outcome != "succeeded":
            raise SystemExit(f"the 50 MP item failed: {results[0].reason}: {results[0].message}")
        pids = [record.pid, *procstat.descendants(record.pid)]
        return [procstat.peak_rss_mb(pid) for pid in pids]


# -- the report -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=40, help="12 MP items per measurement")
    parser.add_argument("--distinct", type=int, default=8, help="distinct generated images")
    parser.add_argument("--concurrency", type=int, default=len(os.sched_getaffinity(0)))
    arguments = parser.parse_args()
    cores = len(os.sched_getaffinity(0))

    work = Path(tempfile.mkdtemp(prefix="bench-processor-", dir=memory_dir()))
    stack = LocalStack(work / "stack", say=lambda line: None)
    try:
        print(f"generating {arguments.distinct} distinct 12 MP JPEGs and one 50 MP JPEG ...")
        gallery = generate_gallery(work, arguments.distinct)
        sources = [gallery[i % len(gallery)] for i in range(arguments.images)]
        large = generate_large(work)
        mean_size = sum(path.stat().st_size for path in gallery) / len(gallery)
        print(f"  12 MP: {TWELVE_MP[0]}x{TWELVE_MP[1]}, mean {mean_size / MB:.1f} MB")
        print(f"  50 MP: {FIFTY_MP[0]}x{FIFTY_MP[1]}, {large.stat().st_size / MB:.1f} MB")

        print("starting the local stack ...")
        endpoints = stack.up()
        s3 = s3_client(endpoints)
        staged = stage_all(s3, endpoints.bucket, gallery)
        staged_items = [staged[i % len(staged)] for i in range(arguments.images)]
        print(
            f"{arguments.images} items per run; limit: {cores} processes, no I/O; "
            f"processor: concurrency {arguments.concurrency}"
        )
        ratios = {}
        for executor in ("thread", "process"):
            inputs.warm(sources)
            limit = measure_limit(sources, cores)
            run = measure_processor(stack, endpoints, staged_items, executor, arguments.concurrency)
            ratios[executor] = limit.cpu_per_image / run.cpu_per_image
            print(
                f"  limit            {limit.images_per_second:6.2f} images/s   "
                f"CPU {limit.cpu_per_image * 1000:4.0f} ms/image"
            )
            print(
                f"  {executor:<8} executor {run.per_second:6.2f} images/s   "
                f"CPU {run.cpu_per_image * 1000:4.0f} ms/image "
                f"(processor {run.cpu_processor * 1000:.0f}, minio {run.cpu_minio * 1000:.0f}, "
                f"nats {run.cpu_nats * 1000:.0f}); {run.failed} failed"
            )
            print(
                f"    ratio to the limit: wall clock "
                f"{run.per_second / limit.images_per_second:.2f}, "
                f"CPU {ratios[executor]:.2f}"
            )
        print(f"  more images per CPU second here: {max(ratios, key=lambda e: ratios[e])}")

        staged_large = stage_all(s3, endpoints.bucket, [large])[0]
        for executor in ("thread", "process"):
            marks = peak_rss(stack, endpoints, staged_large, executor)
            listed = ", ".join(f"{mark:.0f} MB" for mark in marks)
            print(f"peak RSS, 50 MP JPEG, {executor} executor (processor, then workers): {listed}")
        print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    finally:
        stack.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
