"""The asset manifest, `assets/<collection>/<asset>.json`: the single source of truth for live.

Processors commit it with conditional writes; the API reads and deletes it; the janitor
re-reads it before deleting anything, and never deletes a key listed in `live_keys`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from emulsion_contracts.messages import Collection, Derivative, JobRef, Name, VersionId


class Original(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str
    filename: str
    content_type: str
    bytes: int
    width: int
    height: int


class AssetManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    collection: Collection
    asset: Name
    version: VersionId
    job: JobRef
    index: int
    original: Original
    derivatives: tuple[Derivative, ...]
    committed_at: datetime

    def live_keys(self) -> frozenset[str]:
        return frozenset({self.original.key, *(d.key for d in self.derivatives)})

    def supersedes(self, other: AssetManifest) -> bool:
        """True when this version is later than `other` (version ids sort by creation)."""
        return self.version > other.version

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> AssetManifest:
        return cls.model_validate_json(data)
