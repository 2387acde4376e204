"""The one oracle every fault case ends with.

1. Every item of every job has exactly one outcome in status: the succeeded and failed
   index sets are disjoint and together cover 0..total-1.
2. A succeeded item's asset has a manifest that names its version (or a later one, from a
   later job), and every style that manifest lists is readable in S3.
3. No key a manifest referenced was deleted while it was live or within the grace after
   it was superseded: `KeyWatch` records every manifest version seen during the run and
   checks, on each pass, that the keys it must still protect exist.
4. After the janitor's grace and a sweep (`emulsion_janitor --sweep-once`), no orphan key
   remains: nothing under originals/ or derivatives/ of the case's collections that no
   live manifest references, and none of the jobs' staging uploads.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image

from emulsion_contracts import indexes, keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.profiles import DEFAULT_PROFILE
from tests.faults.workload import Client, wait_done

POLL_SECONDS = 0.5


@dataclass
class SeenVersion:
    collection: str
    asset: str
    version: str
    keys: frozenset[str]
    # When a later version replaced it: that version's committed_at (the contract's
    # `superseded_at`); the janitor's grace runs from then.
    superseded_at: datetime | None = None


@dataclass
class KeyWatch:
    """Snapshots manifests and keys of some collections until stopped; records violations."""

    client: Client
    collections: Sequence[str]
    grace: float
    versions: dict[tuple[str, str, str], SeenVersion] = field(default_factory=dict)
    current: dict[tuple[str, str], str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    passes: int = 0
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> KeyWatch:
        self._thread = threading.Thread(target=self._run, daemon=True, name="key-watch")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stopping.is_set():
            # S3 or the apiserver may be the fault under test: the next pass tries again.
            with contextlib.suppress(Exception):
                self.check_once()
            self._stopping.wait(POLL_SECONDS)

    def check_once(self) -> None:
        # Manifests first, then keys: a key listed after its manifest was read must exist.
        for collection in self.collections:
            for manifest in self._manifests(collection):
                self._saw(manifest)
        existing = set()
        for collection in self.collections:
            for prefix in (keys.ORIGINALS, keys.DERIVATIVES):
                existing |= set(list_keys(self.client, f"{prefix}{collection}/"))
        # A key missing from the listing was deleted before the listing ended, i.e. now.
        listed = datetime.now(UTC)
        for seen in list(self.versions.values()):
            if seen.superseded_at is not None and listed >= seen.superseded_at + self.grace_delta:
                continue  # its grace is over: the janitor may take it
            for key in seen.keys - existing:
                violation = f"{key} of {seen.asset} {seen.version} was deleted while protected"
                if violation not in self.violations:
                    self.violations.append(violation)
        self.passes += 1

    def _manifests(self, collection: str) -> Iterable[AssetManifest]:
        for key in list_keys(self.client, f"{keys.MANIFESTS}{collection}/"):
            try:
                body = self.client.s3.get_object(Bucket=self.client.bucket, Key=key)["Body"]
            except self.client.s3.exceptions.NoSuchKey:
                continue  # deleted between list and get
            yield AssetManifest.model_validate_json(body.read())

    @property
    def grace_delta(self) -> timedelta:
        return timedelta(seconds=self.grace)

    def _saw(self, manifest: AssetManifest) -> None:
        asset_id = (manifest.collection, manifest.asset)
        seen_id = (*asset_id, manifest.version)
        if seen_id not in self.versions:
            self.versions[seen_id] = SeenVersion(
                manifest.collection, manifest.asset, manifest.version, manifest.live_keys()
            )
        previous = self.current.get(asset_id)
        if previous is not None and previous != manifest.version:
            older = self.versions[(*asset_id, previous)]
            if older.superseded_at is None:
                older.superseded_at = manifest.committed_at
        self.current[asset_id] = manifest.version


def list_keys(client: Client, prefix: str) -> list[str]:
    found: list[str] = []
    paginator = client.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=client.bucket, Prefix=prefix):
        found.extend(entry["Key"] for entry in page.get("Contents", ()))
    return found


def read_manifest(client: Client, collection: str, asset: str) -> AssetManifest | None:
    try:
        body = client.s3.get_object(Bucket=client.bucket, Key=keys.manifest_key(collection, asset))[
            "Body"
        ]
    except client.s3.exceptions.NoSuchKey:
        return None
    return AssetManifest.model_validate_json(body.read())


def is_tombstone(manifest: AssetManifest) -> bool:
    # A deleted asset's manifest is a tombstone (deleted_at set): a delete owns it (contract 2).
    return getattr(manifest, "deleted_at", None) is not None


def check_outcomes(jobs: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for name, job in jobs.items():
        total = len(job["spec"]["items"])
        status = job.get("status") or {}
        succeeded = indexes.expand(status.get("succeededIndexes"))
        failed = indexes.expand(status.get("failedIndexes"))
        if succeeded & failed:
            problems.append(f"{name}: items {sorted(succeeded & failed)} both succeeded and failed")
        if succeeded | failed != set(range(total)):
            missing = sorted(set(range(total)) - succeeded - failed)
            stray = sorted((succeeded | failed) - set(range(total)))
            problems.append(f"{name}: items without an outcome {missing}, stray {stray}")
    return problems


def check_succeeded(client: Client, jobs: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    styles = {style.name for style in DEFAULT_PROFILE.styles}
    for name, job in jobs.items():
        status = job.get("status") or {}
        version = str(job["spec"].get("version") or status.get("version"))
        collection = job["spec"]["collection"]
        for index in sorted(indexes.expand(status.get("succeededIndexes"))):
            asset = job["spec"]["items"][index]["asset"]
            item_version = keys.version_id(version, index)
            manifest = read_manifest(client, collection, asset)
            if manifest is None or manifest.version < item_version:
                problems.append(f"{name}[{index}] succeeded but {asset} has no manifest for it")
                continue
            if manifest.version > item_version or is_tombstone(manifest):
                continue  # a later job (or a delete) owns the asset now
            if {d.style for d in manifest.derivatives} != styles:
                problems.append(f"{name}[{index}] {asset}: styles {manifest.derivatives}")
            for key in sorted(manifest.live_keys()):
                problems.extend(_unreadable(client, key, f"{name}[{index}]"))
            # Written before the commit and never collected while live: capture order has it.
            entry = manifest.taken_key()
            if entry is not None and not _exists(client, entry):
                problems.append(f"{name}[{index}] {asset}: no capture-order index entry {entry}")
    return problems


def _exists(client: Client, key: str) -> bool:
    try:
        client.s3.head_object(Bucket=client.bucket, Key=key)
    except client.s3.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def _unreadable(client: Client, key: str, item: str) -> list[str]:
    try:
        data = client.s3.get_object(Bucket=client.bucket, Key=key)["Body"].read()
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as error:
        return [f"{item}: {key} is not readable: {type(error).__name__}: {error}"]
    return []


def sweep_once(environment: dict[str, str], grace: float) -> dict[str, Any]:
    """One safety-net sweep by the real janitor, with the case's grace for every rule."""
    result = subprocess.run(
        [sys.executable, "-m", "emulsion_janitor", "--sweep-once"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            **environment,
            "EMULSION_GC_GRACE_SECONDS": str(grace),
            "EMULSION_JANITOR_ORPHAN_SECONDS": str(grace),
            "EMULSION_UPLOAD_TTL_SECONDS": str(grace),
            "EMULSION_HTTP_PORT": "0",
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def orphans(
    client: Client, collections: Sequence[str], jobs: dict[str, dict[str, Any]]
) -> list[str]:
    live: set[str] = set()
    found: list[str] = []
    for collection in collections:
        for key in list_keys(client, f"{keys.MANIFESTS}{collection}/"):
            body = client.s3.get_object(Bucket=client.bucket, Key=key)["Body"].read()
            live |= AssetManifest.model_validate_json(body).live_keys()
        for prefix in (keys.ORIGINALS, keys.DERIVATIVES):
            found += [k for k in list_keys(client, f"{prefix}{collection}/") if k not in live]
    for job in jobs.values():
        for item in job["spec"]["items"]:
            found += [k for k in list_keys(client, item["source"]) if k == item["source"]]
    return found


@dataclass
class Case:
    """One fault case: its collections, its jobs, and the watch that runs through it."""

    client: Client
    environment: dict[str, str]  # how a client (and `--sweep-once`) reaches the stack
    grace: float
    collections: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    watch: KeyWatch | None = None

    def watching(self, *collections: str) -> Case:
        self.collections.extend(collections)
        self.watch = KeyWatch(self.client, list(self.collections), self.grace).start()
        return self


@dataclass
class Findings:
    """What the oracle found, by rule; empty lists everywhere is a pass."""

    jobs: dict[str, dict[str, Any]]
    outcomes: list[str]  # items with no outcome, or two
    failed: list[str]  # items that ended failed
    unreadable: list[str]  # succeeded items whose manifest or styles are not there
    live_deleted: list[str]  # keys deleted while a manifest referenced them (or in grace)
    orphans: list[str]  # keys left after the grace and a sweep
    sweep: dict[str, Any]
    seconds: float

    @property
    def items(self) -> int:
        return sum(len(job["spec"]["items"]) for job in self.jobs.values())

    @property
    def lost(self) -> int:
        """Items the system lost: no outcome, or succeeded without what success means."""
        return len(self.outcomes) + len(self.unreadable)

    def problems(self, all_succeed: bool) -> list[str]:
        failed = self.failed if all_succeed else []
        return [
            *self.outcomes,
            *failed,
            *self.unreadable,
            *self.live_deleted,
            *(f"orphan after grace and a sweep: {key}" for key in self.orphans),
        ]


def assess(case: Case, timeout: float) -> Findings:
    """Wait (up to `timeout`) for every job to end, then judge it by every rule."""
    assert case.watch is not None, "start the case's KeyWatch before the fault"
    began = time.monotonic()
    jobs = wait_done(case.client, case.jobs, timeout)
    outcomes = check_outcomes(jobs)
    unreadable = check_succeeded(case.client, jobs)
    failed = [
        f"{name}[{failure['index']}] failed: {failure['reason']}: {failure.get('message')}"
        for name, job in jobs.items()
        for failure in (job.get("status") or {}).get("failures") or ()
    ]
    # Keep watching through the janitor's grace after the last commit (the rule is about
    # that window, so the wait is the check), then sweep once.
    passes = case.watch.passes
    threading.Event().wait(case.grace + 1.0)
    case.watch.stop()
    assert case.watch.passes > passes, "the key watch stopped checking"
    sweep = sweep_once(case.environment, case.grace)
    return Findings(
        jobs=jobs,
        outcomes=outcomes,
        failed=failed,
        unreadable=unreadable,
        live_deleted=list(case.watch.violations),
        orphans=orphans(case.client, case.collections, jobs),
        sweep=sweep,
        seconds=time.monotonic() - began,
    )


def verify(case: Case, timeout: float, all_succeed: bool) -> Findings:
    """The oracle every fault case ends with; see the module's docstring.

    `all_succeed`: the fault touched no item's data (a crash, an outage), so every item
    must have succeeded, not merely ended.
    """
    findings = assess(case, timeout)
    problems = findings.problems(all_succeed)
    assert not problems, (
        f"oracle found {len(problems)} problems (sweep: {findings.sweep}, "
        f"{findings.seconds:.0f}s):\n  " + "\n  ".join(problems[:50])
    )
    return findings
