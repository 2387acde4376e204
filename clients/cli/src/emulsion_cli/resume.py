"""What an interrupted `emulsion ingest` already did, so a re-run does not do it again.

Why a state file on the client: the API cannot answer "is this file already in the
collection?" — the asset manifest records the original's name and size, not its content
hash, and two different photos can share both. The CLI is the only party that knows
which local file (path + content hash) became which asset version, so it writes that
down, per API and collection, under the user's cache directory.

Three stages are recorded, each as soon as it happens:

- `uploads`: file → staging key, once the presigned POST succeeded. A re-run notifies
  with the same keys instead of uploading again, so its request body is identical and
  the API's Idempotency-Key replay returns the job an interrupted notify created.
- `pending`: file → (job, index, asset), once the API accepted the ingest. A re-run
  follows that job instead of sending the file again.
- `ingested`: file → (asset, version), once the item succeeded. A re-run skips the file
  if `GET /v1/assets/<c>/<a>` still shows that version live (deleted or superseded
  since: it is ingested again).

A lost or stale state file costs a re-upload, never a lost or duplicated asset: the
asset name is the same, so the new version simply supersedes the old one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from emulsion_cli.discovery import ImageFile

STATE_VERSION: Final = 1


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emulsion"


def file_id(image: ImageFile) -> str:
    """A file is its content and its place: renaming it or changing it makes a new one."""
    return f"{image.sha256}:{image.relative}"


@dataclass(frozen=True)
class Pending:
    job: str
    job_index: int
    asset: str


@dataclass(frozen=True)
class Ingested:
    asset: str
    version: str | None
    job: str


@dataclass
class ResumeState:
    path: Path
    uploads: dict[str, str] = field(default_factory=dict)
    # The asset name each upload records (what the API named it at presign time); a state
    # written before names were recorded has none, and the API then uses its own record.
    upload_assets: dict[str, str] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    ingested: dict[str, Ingested] = field(default_factory=dict)
    # Uploads sent but not yet answered: a run stopped then may have stored them anyway,
    # so the next run asks the API which of these keys exist before uploading again.
    in_flight: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def for_collection(cls, api_url: str, collection: str, root: Path | None = None) -> ResumeState:
        scope = hashlib.sha256(f"{api_url}\0{collection}".encode()).hexdigest()[:32]
        return cls.load((root or cache_root() / "ingest") / f"{scope}.json")

    @classmethod
    def load(cls, path: Path) -> ResumeState:
        """The recorded state, or an empty one when there is none or it is unreadable
        (a corrupt file only costs re-uploads; see the module docstring)."""
        try:
            raw: Any = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path)
        if not isinstance(raw, dict) or raw.get("v") != STATE_VERSION:
            return cls(path)
        try:
            return cls(
                path,
                uploads={str(k): str(v) for k, v in raw.get("uploads", {}).items()},
                upload_assets={str(k): str(v) for k, v in raw.get("upload_assets", {}).items()},
                pending={str(k): Pending(**v) for k, v in raw.get("pending", {}).items()},
                ingested={str(k): Ingested(**v) for k, v in raw.get("ingested", {}).items()},
                in_flight={
                    str(k): (str(v[0]), str(v[1])) for k, v in raw.get("in_flight", {}).items()
                },
            )
        except (TypeError, AttributeError):
            return cls(path)

    def save(self) -> None:
        """Atomically: a crash mid-write leaves the previous state, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "v": STATE_VERSION,
            "uploads": self.uploads,
            "upload_assets": self.upload_assets,
            "pending": {k: asdict(v) for k, v in self.pending.items()},
            "ingested": {k: asdict(v) for k, v in self.ingested.items()},
            "in_flight": {k: list(v) for k, v in self.in_flight.items()},
        }
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w") as stream:
                json.dump(document, stream)
            Path(temporary).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise

    def record_in_flight(self, fid: str, key: str, asset: str) -> None:
        self.in_flight[fid] = (key, asset)

    def record_upload(self, fid: str, key: str, asset: str | None = None) -> None:
        self.in_flight.pop(fid, None)
        self.uploads[fid] = key
        if asset is not None:
            self.upload_assets[fid] = asset

    def record_pending(self, fid: str, pending: Pending) -> None:
        self.pending[fid] = pending

    def record_succeeded(self, fid: str, ingested: Ingested) -> None:
        self.ingested[fid] = ingested
        self.pending.pop(fid, None)
        self.forget_upload(fid)

    def record_failed(self, fid: str) -> None:
        """A failed item is sent again next time, from a fresh upload: the staging object
        may already be gone, and the failure may have been a bad upload."""
        self.pending.pop(fid, None)
        self.forget_upload(fid)

    def forget_ingested(self, fid: str) -> None:
        self.ingested.pop(fid, None)

    def forget_upload(self, fid: str) -> None:
        self.uploads.pop(fid, None)
        self.upload_assets.pop(fid, None)
