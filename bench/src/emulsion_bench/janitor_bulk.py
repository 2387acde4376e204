"""A bucket of many keys laid out as Emulsion writes them, and a sweep over it measured.

Shared by the bounded-memory test and `make bench-janitor` (emulsion_bench.janitor), so both
measure the same thing: the Python heap's peak (tracemalloc) and the wall time of one sweep.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import tarfile
import time
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emulsion_contracts import keys, wire
from emulsion_contracts.manifest import AssetManifest, Original
from emulsion_contracts.messages import Derivative, JobRef
from emulsion_devstack.stack import Endpoints, s3_client
from emulsion_janitor.deleter import Deleter
from emulsion_janitor.leases import KvLeases
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.sweep import Sweeper, SweepReport

STYLES = ("large", "medium", "thumb", "tiny")
OBJECTS_PER_ARCHIVE = 2000
WRITERS = 4


@dataclass(frozen=True)
class Population:
    """What `populate` wrote: how many keys a sweep must delete and how many it must keep."""

    bucket: str
    doomed: int
    kept: int
    leased_uploads: tuple[str, ...]

    @property
    def total(self) -> int:
        return self.doomed + self.kept


@dataclass(frozen=True)
class Measurement:
    report: SweepReport
    peak_bytes: int
    seconds: float

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def _version_keys(collection: str, asset: str, version: str, styles: tuple[str, ...]) -> list[str]:
    return [
        keys.original_key(collection, asset, version, asset),
        *(keys.derivative_key(collection, asset, version, style, "jpg") for style in styles),
    ]


def placeholder_derivative(style: str, key: str) -> Derivative:
    """One JPEG derivative whose sizes are placeholders (1 byte, 1x1)."""
    return Derivative(style=style, key=key, width=1, height=1, bytes=1, content_type="image/jpeg")


def placeholder_manifest(
    collection: str,
    asset: str,
    version: str,
    original: str,
    derivatives: Iterable[Derivative],
    committed_at: datetime,
    *,
    content_type: str = "image/jpeg",
    job: str = "job",
) -> AssetManifest:
    """A committed manifest whose sizes are placeholders (1 byte, 1x1): the janitor reads
    only its keys and its commit time."""
    return AssetManifest(
        collection=collection,
        asset=asset,
        version=version,
        job=JobRef(namespace="default", name=job, uid=str(uuid.uuid4())),
        index=0,
        original=Original(
            key=original, filename=asset, content_type=content_type, bytes=1, width=1, height=1
        ),
        derivatives=tuple(derivatives),
        committed_at=committed_at,
    )


def _manifest(collection: str, asset: str, version: str, styles: tuple[str, ...]) -> bytes:
    original, *derivatives = _version_keys(collection, asset, version, styles)
    return placeholder_manifest(
        collection,
        asset,
        version,
        original,
        (placeholder_derivative(s, k) for s, k in zip(styles, derivatives, strict=True)),
        datetime.now(UTC),
        job="bulk",
    ).to_bytes()


def _objects(
    assets: int, upload_ids: list[str], styles: tuple[str, ...]
) -> Iterator[tuple[str, bytes]]:
    collection = f"bulk-{uuid.uuid4().hex[:8]}"
    for n in range(assets):
        asset = f"IMG_{n:05d}.jpg"
        superseded = keys.version_id(keys.new_ulid(time.time() - 60), 0)
        live = keys.version_id(keys.new_ulid(), 0)
        for key in (
            *_version_keys(collection, asset, superseded, styles),
            *_version_keys(collection, asset, live, styles),
        ):
            yield key, b"x"
        yield keys.manifest_key(collection, asset), _manifest(collection, asset, live, styles)
    for n, upload_id in enumerate(upload_ids):
        yield keys.staging_key("bench", upload_id, f"IMG_{n:05d}.jpg"), b"x"


def populate(
    stack: Endpoints,
    bucket: str,
    assets: int,
    uploads: int,
    leased: int,
    styles: tuple[str, ...] = STYLES,
) -> Population:
    """`assets` assets with a live and a superseded version (an original and `styles`
    each), and `uploads` staging uploads of which the first `leased` are leased to a
    running job (the rest are abandoned)."""
    s3 = s3_client(stack)
    s3.create_bucket(Bucket=bucket)
    upload_ids = [keys.new_ulid() for _ in range(uploads)]
    objects = _objects(assets, upload_ids, styles)
    with ThreadPoolExecutor(WRITERS) as pool:
        for _ in pool.map(lambda chunk: _put_extracted(s3, bucket, chunk), _chunks(objects)):
            pass
    leased_uploads = tuple(upload_ids[:leased])
    _set_leases(stack, leased_uploads, held=True)
    return Population(
        bucket,
        doomed=assets * (1 + len(styles)) + uploads - leased,
        kept=assets * (2 + len(styles)) + leased,
        leased_uploads=leased_uploads,
    )


def _chunks(objects: Iterator[tuple[str, bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    while chunk := list(itertools.islice(objects, OBJECTS_PER_ARCHIVE)):
        yield chunk


def _put_extracted(s3: Any, bucket: str, objects: list[tuple[str, bytes]]) -> None:
    """Many small objects in one request: MinIO unpacks a tar uploaded with this metadata
    (its "snowball" extension), which is several times faster than a PUT per object."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for key, body in objects:
            entry = tarfile.TarInfo(key)
            entry.size = len(body)
            tar.addfile(entry, io.BytesIO(body))
    s3.put_object(
        Bucket=bucket,
        Key=f"bulk-{uuid.uuid4().hex}.tar",
        Body=archive.getvalue(),
        Metadata={"snowball-auto-extract": "true"},
    )


def _set_leases(stack: Endpoints, uploads: tuple[str, ...], *, held: bool) -> None:
    async def main() -> None:
        connection = await stack.nats_connect("controller")
        try:
            kv = await connection.jetstream().key_value(wire.STAGING_LEASES_BUCKET)
            for upload in uploads:
                await (kv.put(upload, b"bulk") if held else kv.delete(upload))
        finally:
            await connection.drain()

    asyncio.run(main())


def release(stack: Endpoints, population: Population) -> None:
    _set_leases(stack, population.leased_uploads, held=False)


def settings_for(stack: Endpoints, bucket: str) -> JanitorSettings:
    return JanitorSettings(
        **stack.nats_fields("janitor"),
        bucket=bucket,
        s3_endpoint_url=stack.s3_endpoint_url,
        gc_grace_seconds=0.0,
        upload_ttl=0.0,
        orphan_age=0.0,
    )


async def measured_sweep(
    stack: Endpoints, s3: Any, settings: JanitorSettings, *, trace_memory: bool = True
) -> Measurement:
    """One sweep and its wall time; with `trace_memory`, also the Python heap's peak from
    the first listing to the last delete (tracing slows the sweep down several times)."""
    connection = await stack.nats_connect("janitor")
    try:
        leases = await KvLeases.bind(connection.jetstream())
        sweeper = Sweeper(s3, Deleter(s3, leases, settings, "sweep"), settings)
        if trace_memory:
            tracemalloc.start()
        began = time.perf_counter()
        try:
            report = await sweeper.sweep()
            seconds = time.perf_counter() - began
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await connection.drain()
    return Measurement(report, peak if trace_memory else 0, seconds)


def count(s3: Any, bucket: str) -> int:
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        total += len(page.get("Contents", ()))
    return total


@dataclass(frozen=True)
class Photos:
    """A bucket of stored photos (an original and a manifest each, the live version `v0`)
    and the uploads of the last upload TTL in staging/ (fresh, so none is due yet)."""

    bucket: str
    collection: str
    photos: int
    uploads: int
    v0: str

    @property
    def keys(self) -> int:
        return 2 * self.photos + self.uploads

    def asset(self, n: int) -> str:
        return f"IMG_{n:06d}.jpg"


def _photo_objects(photos: Photos) -> Iterator[tuple[str, bytes]]:
    for n in range(photos.photos):
        asset = photos.asset(n)
        yield keys.original_key(photos.collection, asset, photos.v0, asset), b"x"
        yield (
            keys.manifest_key(photos.collection, asset),
            _manifest(photos.collection, asset, photos.v0, ()),
        )
    for n in range(photos.uploads):
        yield keys.staging_key(photos.collection, keys.new_ulid(), f"IMG_{n:06d}.jpg"), b"x"


def populate_photos(stack: Endpoints, bucket: str, photos: int, uploads: int) -> Photos:
    """`photos` stored photos and `uploads` fresh staging uploads, written as tar archives
    MinIO extracts (a few thousand objects per request), so 200,000 photos take minutes."""
    s3 = s3_client(stack)
    s3.create_bucket(Bucket=bucket)
    made = Photos(
        bucket,
        f"bulk-{uuid.uuid4().hex[:8]}",
        photos,
        uploads,
        keys.version_id(keys.new_ulid(time.time() - 3600), 0),
    )
    with ThreadPoolExecutor(WRITERS) as pool:
        for _ in pool.map(
            lambda chunk: _put_extracted(s3, bucket, chunk), _chunks(_photo_objects(made))
        ):
            pass
    return made


def supersede(s3: Any, photos: Photos, first: int, count: int) -> list[tuple[str, str, str]]:
    """An hour's re-ingests, as the processor writes them: a new version's original and a
    manifest pointing at it, for `count` photos from `first`. Returns (asset, old key,
    new version) for each: the GC requests the processor would publish."""
    version = keys.version_id(keys.new_ulid(), 0)
    made: list[tuple[str, str, str]] = []

    def one(n: int) -> tuple[str, str, str]:
        asset = photos.asset(n)
        s3.put_object(
            Bucket=photos.bucket,
            Key=keys.original_key(photos.collection, asset, version, asset),
            Body=b"x",
        )
        s3.put_object(
            Bucket=photos.bucket,
            Key=keys.manifest_key(photos.collection, asset),
            Body=_manifest(photos.collection, asset, version, ()),
        )
        return asset, keys.original_key(photos.collection, asset, photos.v0, asset), version

    with ThreadPoolExecutor(16) as pool:
        made.extend(pool.map(one, range(first, first + count)))
    return made
