"""A delete wins over everything accepted before it, whatever the API replicas' clocks.

A real skewed clock: one API process runs under Debian's `faketime` three minutes ahead
of the others (beyond the two minutes of skew between replicas it must survive). It accepts an
ingest while no processor runs, so the job stays queued; the normal API then deletes the
asset; only then do processors run. Before versions came from the shared clock
(emulsion_runtime.clock), the queued job's version was three minutes "later" than
the delete's tombstone and the photo came back. Now the asset stays deleted, and an
upload made after the delete (on the slow replica) still wins.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from PIL import Image

from emulsion_contracts import keys, wire
from emulsion_contracts.manifest import AssetManifest
from emulsion_devstack.processes import ProcessRecord, log_tail, stop, wait_for
from emulsion_devstack.stack import Endpoints, LocalStack
from emulsion_runtime import clock
from tests.uploading import uploaded

SKEW_SECONDS = 180
FINISHED = ("Succeeded", "PartiallyFailed", "Failed")


@dataclass
class System:
    local: LocalStack
    namespace: str
    token: str
    normal: str  # the API on the host's clock
    fast: str  # the API SKEW_SECONDS ahead
    records: list[ProcessRecord]

    def api(self, url: str) -> httpx.Client:
        return httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def start_processor(self) -> ProcessRecord:
        record = self.local.start_service("processor")
        self.records.append(record)
        return record


def faketime() -> str:
    found = shutil.which("faketime") or "/usr/bin/faketime"
    if not Path(found).exists():
        pytest.fail("faketime is missing: `make faketime` installs Debian's package")
    return found


@pytest.fixture(scope="module")
def system(stack: Endpoints, stack_state_dir: Path, kube: Any) -> Iterator[System]:
    namespace = f"skew-{uuid.uuid4().hex[:8]}"
    core: Any = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": namespace}})
    local = LocalStack(stack_state_dir, say=lambda line: None)
    records: list[ProcessRecord] = []
    try:
        records.append(
            local.start_service(
                "controller",
                {
                    "EMULSION_NAMESPACES": namespace,
                    "EMULSION_STATUS_INTERVAL_SECONDS": "0.5",
                    # A peering of its own: no other test's controller (or its leftover
                    # record) on this stack can pause this one.
                    "EMULSION_CONTROLLER_PEERING": namespace,
                },
            )
        )
        api = {"EMULSION_NAMESPACE": namespace}
        normal = local.start_service("api", api)
        fast = local.start_service(
            "api", api, command_prefix=(faketime(), "-f", f"+{SKEW_SECONDS}")
        )
        records += [normal, fast]
        yield System(
            local,
            namespace,
            stack.api_token,
            LocalStack.service_url(normal),
            LocalStack.service_url(fast),
            records,
        )
    finally:
        for record in reversed(records):
            stop(record)
            print(f"--- {record.name} {record.pid}\n{log_tail(record.log, lines=15)}")


def upload(api: httpx.Client, data: bytes, collection: str) -> str:
    """Presign on the API and POST the form to the store, as the CLI does."""
    return str(uploaded(api, collection, "IMG_0001.jpg", data)["key"])


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def ingest(api: httpx.Client, collection: str, key: str, asset: str) -> str:
    accepted = api.post(
        "/v1/ingests",
        json={"collection": collection, "items": [{"upload_key": key, "asset": asset}]},
    )
    assert accepted.status_code == 202, accepted.text
    [job] = accepted.json()["jobs"]
    assert isinstance(job, str)
    return job


def status(api: httpx.Client, job: str) -> dict[str, Any]:
    found = api.get(f"/v1/ingests/{job}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def until_phase(api: httpx.Client, job: str, phases: tuple[str, ...]) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = status(api, job)
        return found if found["phase"] in phases else None

    return wait_for(f"{job} in {phases}", reached, timeout=120)


def tombstone(s3: Any, bucket: str, collection: str, asset: str) -> AssetManifest:
    body = s3.get_object(Bucket=bucket, Key=keys.manifest_key(collection, asset))["Body"].read()
    return AssetManifest.from_bytes(body)


def test_a_delete_wins_over_a_queued_ingest_from_a_replica_minutes_ahead(
    system: System, stack: Endpoints, s3: Any
) -> None:
    collection, asset = f"skew-{uuid.uuid4().hex[:8]}", "IMG_0001.jpg"
    normal, fast = system.api(system.normal), system.api(system.fast)

    # The fast replica really is ahead: its own Date header says so.
    ahead = parsedate_to_datetime(fast.get("/healthz").headers["date"]).timestamp() - time.time()
    assert ahead > SKEW_SECONDS - 30, ahead

    # The asset is live (made with a processor running).
    processor = system.start_processor()
    first = ingest(normal, collection, upload(normal, jpeg((10, 120, 10)), collection), asset)
    assert until_phase(normal, first, FINISHED)["phase"] == "Succeeded"
    stop(processor)

    # The fast replica accepts a new version; no processor runs, so it waits in the queue.
    queued = ingest(fast, collection, upload(normal, jpeg((200, 0, 0)), collection), asset)
    waiting = until_phase(normal, queued, ("Queued",))
    queued_version = waiting["version"]
    # Its version's time part is from the fast replica's clock: minutes in the future.
    assert keys.ulid_millis(queued_version) > (time.time() + SKEW_SECONDS - 30) * 1000

    # The normal replica deletes the asset after that ingest was accepted.
    deleted = normal.delete(f"/v1/assets/{collection}/{asset}")
    assert deleted.status_code == 202, deleted.text
    mark = tombstone(s3, stack.bucket, collection, asset)
    assert mark.is_tombstone
    # The tombstone was minted after the queued job's version, though on a slower clock.
    assert mark.version > keys.version_id(queued_version, 0)

    # Now the processors run: the queued item finds the tombstone and loses to it.
    system.start_processor()
    done = until_phase(normal, queued, FINISHED)
    assert done["phase"] == "Succeeded"
    [item] = status(normal, queued)["items"]
    assert (item["state"], item["live"]) == ("succeeded", False)
    assert normal.get(f"/v1/assets/{collection}/{asset}").status_code == 404
    assert fast.get(f"/v1/assets/{collection}/{asset}").status_code == 404
    assert tombstone(s3, stack.bucket, collection, asset).version == mark.version

    # An upload after the delete, accepted by the replica whose clock is behind the
    # shared one, is newer than the tombstone and brings the asset back as itself.
    reborn = ingest(normal, collection, upload(normal, jpeg((0, 0, 220)), collection), asset)
    assert until_phase(normal, reborn, FINISHED)["phase"] == "Succeeded"
    live = normal.get(f"/v1/assets/{collection}/{asset}")
    assert live.status_code == 200, live.text
    [made] = status(normal, reborn)["items"]
    assert live.json()["version"] == made["version"] > mark.version


def test_concurrent_minters_on_skewed_clocks_get_unique_versions_in_minting_order(
    stack: Endpoints,
) -> None:
    """The real bucket's compare-and-set: 8 minters whose clocks differ by up to three
    minutes mint 25 versions each at once. Every version is unique, and each one sorts
    after every version whose mint had completed before its own began."""

    async def run() -> list[tuple[float, float, str]]:
        connection = await stack.nats_connect()
        try:
            kv = await connection.jetstream().key_value(wire.CLOCK_BUCKET)

            async def minter(skew: float) -> list[tuple[float, float, str]]:
                minted = []
                for _ in range(25):
                    began = time.monotonic()
                    [version] = await clock.mint_versions(kv, 1, now=lambda: time.time() + skew)
                    minted.append((began, time.monotonic(), version))
                return minted

            skews = [0.0, SKEW_SECONDS, -SKEW_SECONDS, 30.0, -1.5, 90.0, 0.001, -60.0]
            everyone = await asyncio.gather(*(minter(skew) for skew in skews))
            return [mint for mints in everyone for mint in mints]
        finally:
            await connection.drain()

    mints = asyncio.run(run())
    assert len({version for *_, version in mints}) == len(mints) == 200
    for began, _, version in mints:
        earlier = [v for _, ended, v in mints if ended < began]
        assert all(version > other for other in earlier)
