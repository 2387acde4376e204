"""Putting work into the stack as a client does: upload to staging, POST /v1/ingests, wait."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_contracts import crd, keys
from emulsion_runtime import storage
from emulsion_runtime.settings import NatsSettings
from tests import jobview

# Small photos keep each case quick on two cores; the soak uses full-size ones.
SMALL = {"min_megapixels": 0.2, "max_megapixels": 0.8}
IMAGE_SUFFIXES = (".jpg", ".png", ".webp")


@dataclass(frozen=True)
class Client:
    api_url: str
    token: str
    s3: Any
    bucket: str
    kube: Any  # a kubernetes ApiClient
    nats: NatsSettings  # the stack's admin, to read jobs' item lists and outcome records
    namespace: str = "default"


def gallery(root: Path, count: int, seed: int) -> list[Path]:
    directory = ensure_gallery(GalleryParams(count=count, seed=seed, **SMALL), root=root)
    return sorted(p for p in directory.iterdir() if p.suffix in IMAGE_SUFFIXES)[:count]


def big_image(path: Path, width: int = 4000, height: int = 3000, seed: int = 7) -> Path:
    """A photo-sized JPEG of noise: megabytes to move, a second or more to render."""
    if not path.exists():
        noise = random.Random(seed).randbytes(width * height * 3 // 16)
        small = Image.frombytes(
            "RGB", (width // 4, height // 4), noise[: (width // 4) * (height // 4) * 3]
        )
        small.resize((width, height), Image.Resampling.BICUBIC).save(path, quality=95)
    return path


def upload(client: Client, collection: str, files: Sequence[Path]) -> list[str]:
    """Put each file in `collection`'s staging area as a presigned POST for it would (its
    key, the collection its form records); the staging keys."""
    staged = []
    for path in files:
        key = keys.staging_key(collection, keys.new_ulid(), path.name)
        client.s3.put_object(
            Bucket=client.bucket,
            Key=key,
            Body=path.read_bytes(),
            Metadata={storage.UPLOAD_COLLECTION_METADATA: collection},
        )
        staged.append(key)
    return staged


def ingest(
    client: Client, collection: str, staged: Sequence[str], assets: Sequence[str] | None = None
) -> list[str]:
    """Announce the uploads in one request; the IngestJobs made."""
    names = assets or [key.rsplit("/", 1)[1] for key in staged]
    body = {
        "collection": collection,
        "items": [
            {"upload_key": key, "asset": name} for key, name in zip(staged, names, strict=True)
        ],
    }
    response = httpx.post(
        f"{client.api_url}/v1/ingests",
        json=body,
        headers={"Authorization": f"Bearer {client.token}"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    jobs: list[str] = response.json()["jobs"]
    return jobs


def read_job(client: Client, name: str) -> dict[str, Any]:
    from kubernetes import client as kube_client

    api = kube_client.CustomObjectsApi(client.kube)
    body = api.get_namespaced_custom_object(
        crd.GROUP, crd.VERSION, client.namespace, crd.PLURAL, name, _request_timeout=10
    )
    assert isinstance(body, dict)
    return body


FINISHED_PHASES = frozenset({"Succeeded", "PartiallyFailed", "Failed"})


def finished_items(job: dict[str, Any]) -> int:
    return jobview.finished(job)[0]


def is_done(job: dict[str, Any]) -> bool:
    return (job.get("status") or {}).get("phase") in FINISHED_PHASES


def wait_done(client: Client, jobs: Sequence[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Poll until every job has finished, then read each with its items and outcome sets
    (tests/jobview.py); fail at `timeout` naming the unfinished ones."""
    deadline = time.monotonic() + timeout
    last: dict[str, dict[str, Any]] = {}
    while True:
        for name in jobs:
            try:
                last[name] = read_job(client, name)
            except Exception as error:  # the apiserver may be the fault under test
                last.setdefault(name, {"error": str(error)})
        if all(is_done(job) for job in last.values()) and len(last) == len(jobs):
            return jobview.resolve(client.nats, last)
        if time.monotonic() > deadline:
            progress = {name: "{}/{}".format(*jobview.finished(job)) for name, job in last.items()}
            raise AssertionError(f"jobs not finished after {timeout:.0f}s: {progress}")
        time.sleep(0.5)
