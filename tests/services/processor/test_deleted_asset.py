"""A deleted asset stays deleted (contract 2): the API's delete leaves a tombstone that an
older item, queued or retried, cannot commit over, while a newer ingest can.

The processor's worker and the API's own store code run against the real NATS and MinIO.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulsion_api.settings import ApiSettings
from emulsion_api.store import Store
from emulsion_contracts import keys, wire
from emulsion_contracts.messages import ItemResult
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_devstack.stack import Endpoints
from emulsion_processor import store
from emulsion_runtime.blocking import Blocking

from .conftest import Bus, in_process_worker, jpeg, object_keys, stage, work_item


@pytest.fixture
def api_store(s3: Any, stack: Endpoints) -> Iterator[Store]:
    settings = ApiSettings.model_validate(
        {"NATS_URL": stack.nats_url, "EMULSION_BUCKET": stack.bucket, "EMULSION_API_TOKENS": "t"}
    )
    blocking = Blocking(4, "test-io")
    yield Store(s3, settings, blocking)
    blocking.close()


def test_an_older_item_processed_after_the_delete_stays_dead_and_a_newer_ingest_lives(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path, api_store: Store
) -> None:
    v1 = work_item(stage(s3, stack.bucket, jpeg(800, 800)))
    v2 = work_item(
        stage(s3, stack.bucket, jpeg(700, 700), collection=v1.collection),
        asset=v1.asset,
        collection=v1.collection,
    )
    assert v2.version > v1.version
    manifest_key = keys.manifest_key(v1.collection, v1.asset)

    async def body(bus: Bus) -> tuple[ItemResult, ItemResult]:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            assert (await worker.process(v2, 1)).committed
            # DELETE /v1/assets/<collection>/<asset>, as the route does it.
            read = await api_store.read_manifest(v1.collection, v1.asset)
            assert read is not None and read.manifest.version == v2.version
            assert await api_store.delete_manifest(read, keys.new_ulid())
            assert await api_store.read_manifest(v1.collection, v1.asset) is None  # GET: 404

            # v1 was still queued (or is a retry): it must not bring the asset back.
            late = await worker.process(v1, 1)
            stale = await bus.gc_request("stale", wire.gc_msg_id("stale", v1.version))
            assert stale is not None
            prefix = f"{v1.collection}/{v1.asset}/{v1.version}"
            assert set(stale.keys) == {
                f"originals/{prefix}/IMG_0001.jpg",
                *(f"derivatives/{prefix}/{s.name}.jpg" for s in DEFAULT_PROFILE.styles),
            }

            # An ingest made after the delete is a new life of the asset.
            v3 = work_item(
                stage(s3, stack.bucket, jpeg(600, 600), collection=v1.collection),
                asset=v1.asset,
                collection=v1.collection,
            )
            reborn = await worker.process(v3, 1)
        return late, reborn

    late, reborn = with_bus(body)
    assert (late.outcome, late.committed) == ("succeeded", False)
    assert reborn.committed
    current = store.read_manifest(s3, stack.bucket, manifest_key)
    assert current is not None and current.manifest is not None
    assert not current.manifest.is_tombstone
    assert current.manifest.version == reborn.version
    assert (
        object_keys(s3, stack.bucket, f"derivatives/{v1.collection}/{v1.asset}/{v1.version}/") == []
    )
    assert len(
        object_keys(s3, stack.bucket, f"derivatives/{v1.collection}/{v1.asset}/{reborn.version}/")
    ) == len(DEFAULT_PROFILE.styles)


def test_a_tombstone_is_written_only_over_the_version_that_was_read(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path, api_store: Store, run: Any
) -> None:
    v1 = work_item(stage(s3, stack.bucket, jpeg(300, 300)))
    v2 = work_item(
        stage(s3, stack.bucket, jpeg(200, 200), collection=v1.collection),
        asset=v1.asset,
        collection=v1.collection,
    )

    async def body(bus: Bus) -> None:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            await worker.process(v1, 1)
            read = await api_store.read_manifest(v1.collection, v1.asset)
            assert read is not None
            await worker.process(v2, 1)  # goes live between the read and the delete
            assert not await api_store.delete_manifest(read, keys.new_ulid())
            current = await api_store.read_manifest(v1.collection, v1.asset)
            assert current is not None and current.manifest.version == v2.version
            assert await api_store.delete_manifest(current, keys.new_ulid())
            assert not await api_store.delete_manifest(
                current, keys.new_ulid()
            )  # deleted twice: no-op

    with_bus(body)
    tombstone = store.read_manifest(s3, stack.bucket, keys.manifest_key(v1.collection, v1.asset))
    assert tombstone is not None and tombstone.manifest is not None
    assert tombstone.manifest.is_tombstone and tombstone.manifest.version > v2.version
