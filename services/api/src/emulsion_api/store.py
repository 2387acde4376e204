"""The API's object-store calls: presign, HEAD, read manifests and conditionally tombstone them.

The API never reads or writes image bytes; clients upload and download directly with
the URLs made here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from emulsion_api.errors import ApiError
from emulsion_api.settings import ApiSettings
from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_runtime import storage
from emulsion_runtime.blocking import Blocking

# The API's reads hand out the contracts' type; views name it through this module.
from emulsion_runtime.storage import StoredManifest as StoredManifest

log = logging.getLogger(__name__)

T = TypeVar("T")

# From this many keys on, listing the staging range beats one HEAD per key.
LIST_FROM_KEYS = 20
# A range holding more than this many pages of foreign uploads goes unchecked (see `missing`).
LIST_MAX_PAGES = 10
LIST_PAGE_KEYS = 1000

# The upload's asset name, stored with the object (percent-encoded like a key segment).
ASSET_METADATA = "asset"
ASSET_METADATA_FIELD = f"x-amz-meta-{ASSET_METADATA}"
COLLECTION_METADATA_FIELD = f"x-amz-meta-{storage.UPLOAD_COLLECTION_METADATA}"
OWNER_METADATA_FIELD = f"x-amz-meta-{storage.UPLOAD_OWNER_METADATA}"
FILENAME_METADATA_FIELD = f"x-amz-meta-{storage.UPLOAD_FILENAME_METADATA}"


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]
    expires_at: datetime


def _unavailable(error: Exception) -> ApiError:
    log.warning("object store call failed: %s", error)
    return ApiError(503, "unavailable", "the object store is unavailable")


class Store:
    def __init__(
        self,
        s3: Any,
        settings: ApiSettings,
        blocking: Blocking,
        *,
        list_pages: int = LIST_MAX_PAGES,
        page_keys: int = LIST_PAGE_KEYS,
    ) -> None:
        self._s3 = s3
        self._bucket = settings.bucket
        self._settings = settings
        self._blocking = blocking
        self._list_pages = list_pages
        self._page_keys = page_keys

    async def run(self, function: Callable[[], T]) -> T:
        """Run CPU-heavy signing work (many presigned forms) off the event loop."""
        return await self._blocking.run(function)

    def presign_post(
        self,
        key: str,
        content_type: str,
        size: int,
        asset: str,
        *,
        collection: str,
        owner: str,
        filename: str | None = None,
    ) -> PresignedPost:
        """A form for exactly `key`, `content_type` and a file of exactly `size` bytes, which
        records `asset` (the name an ingest defaults to), the `collection` it is for and its
        `owner` (the caller's identity) with the object. S3 enforces every condition, so a
        client cannot store a larger file or another type than it declared, nor record
        another collection or owner. `filename`, the client's own file name, is recorded
        too (percent-encoded): the processor writes it into the manifest as uploaded.
        """
        expiry = self._settings.upload_expiry_seconds
        expires_at = datetime.now(UTC) + timedelta(seconds=expiry)
        # The whole name, without loss, in ASCII (as metadata values must be).
        recorded = keys.encoded_name(asset)
        fields = {
            "Content-Type": content_type,
            ASSET_METADATA_FIELD: recorded,
            COLLECTION_METADATA_FIELD: keys.check_collection(collection),
            OWNER_METADATA_FIELD: owner,
        }
        encoded = storage.encode_filename(filename) if filename else ""
        if encoded:
            fields[FILENAME_METADATA_FIELD] = encoded
        form = self._s3.generate_presigned_post(
            Bucket=self._bucket,
            Key=key,
            Fields=fields,
            Conditions=[
                ["content-length-range", size, size],
                *({name: value} for name, value in fields.items()),
            ],
            ExpiresIn=expiry,
        )
        return PresignedPost(form["url"], dict(form["fields"]), expires_at)

    async def recorded_assets(self, staging_keys: list[str]) -> dict[str, str]:
        """The asset names recorded with these uploads by their presigned forms, by key;
        a key that is missing or was put without a (valid) name is left out."""

        async def one(key: str) -> str | None:
            head = await self._head(key)
            if head is None:
                return None
            recorded = (head.get("Metadata") or {}).get(ASSET_METADATA)
            try:
                return keys.asset_name(recorded) if recorded else None
            except keys.InvalidKey:
                return None

        names = await asyncio.gather(*(one(key) for key in staging_keys))
        return {key: name for key, name in zip(staging_keys, names, strict=True) if name}

    def download_url(self, key: str) -> str:
        base = self._settings.public_base_url
        if base:
            return f"{base.rstrip('/')}/{quote(key)}"
        url: str = self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=self._settings.download_expiry_seconds,
        )
        return url

    async def _head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD, or None if it is not in the bucket."""
        try:
            head: dict[str, Any] = await self._blocking.run(
                self._s3.head_object, Bucket=self._bucket, Key=key
            )
        except ClientError as error:
            if storage.is_missing(error):
                return None
            raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error
        return head

    async def exists(self, key: str) -> bool:
        return await self._head(key) is not None

    async def missing(self, keys_to_check: list[str]) -> list[str]:
        """The keys among `keys_to_check` known not to hold an upload an ingest may take:
        not in the bucket, or claimed (`keys.claim_key`: a job promoted it already).

        Keys must be of the current layout (the caller has refused the others). A few keys
        are checked with HEADs (the key and its claim), run concurrently. A gallery's
        uploads were presigned together, and staging keys are their collection's prefix and
        a ULID, so they sit side by side in key order: a few listings of that key range
        (which show the claims too) answer for thousands of keys. A large request whose
        range is crowded with other uploads is not checked key by key (thousands of HEADs
        would hold the answer for seconds): its items are accepted, and an item whose
        upload is missing or claimed fails in the processor (`SourceMissing`,
        `UploadAlreadyIngested`).
        """
        by_collection: dict[str, list[str]] = {}
        for key in keys_to_check:
            collection = keys.staging_collection(key)
            if collection is None:
                raise ValueError(f"{key!r} is not a staging key of the current layout")
            by_collection.setdefault(collection, []).append(key)
        answers = await asyncio.gather(
            *(self._missing_in(collection, group) for collection, group in by_collection.items())
        )
        gone = set().union(*answers)
        return [key for key in keys_to_check if key in gone]

    async def _missing_in(self, collection: str, keys_to_check: list[str]) -> set[str]:
        if len(keys_to_check) >= LIST_FROM_KEYS:
            listed = await self._blocking.run(
                self._listed_between, collection, min(keys_to_check), max(keys_to_check)
            )
            if listed is None:
                log.info(
                    "%d uploads in a crowded key range: left to the processor to find",
                    len(keys_to_check),
                )
                return set()
            return {
                key for key in keys_to_check if key not in listed or keys.claim_key(key) in listed
            }
        found = await asyncio.gather(
            *(self.exists(key) for key in keys_to_check),
            *(self.exists(keys.claim_key(key)) for key in keys_to_check),
        )
        present, claimed = found[: len(keys_to_check)], found[len(keys_to_check) :]
        return {
            key
            for key, there, taken in zip(keys_to_check, present, claimed, strict=True)
            if not there or taken
        }

    def _listed_between(self, collection: str, first: str, last: str) -> set[str] | None:
        """Every key of `collection`'s uploads from `first`'s upload folder to `last`, or
        None past the most pages to list."""
        listed: set[str] = set()
        # StartAfter is exclusive; the folder without its '/' sorts just before everything
        # in it, the claim marker (which sorts before the file) included.
        arguments: dict[str, Any] = {
            "Bucket": self._bucket,
            "Prefix": keys.staging_prefix(collection),
            "StartAfter": keys.upload_prefix(first)[:-1],
            "MaxKeys": self._page_keys,
        }
        try:
            for _ in range(self._list_pages):
                page = self._s3.list_objects_v2(**arguments)
                names = [str(entry["Key"]) for entry in page.get("Contents", [])]
                listed.update(names)
                if not page.get("IsTruncated") or (names and names[-1] >= last):
                    return listed
                arguments["ContinuationToken"] = page["NextContinuationToken"]
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error
        return None

    async def list_manifests(self, collection: str) -> list[ListedManifest]:
        """Every manifest key of `collection` (live and tombstones) with its write time.

        One listing call per 1,000 assets: the order the API pages in (newest first) is
        not the store's key order, so the whole collection is listed and each page read
        from it.
        """
        try:
            return await self._blocking.run(_list_manifests, self._s3, self._bucket, collection)
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error

    async def list_taken(
        self, collection: str, after: str | None, most: int
    ) -> tuple[list[IndexEntry], bool]:
        """Up to `most` keys of `collection`'s capture-order index after `after` (a key;
        None: from the start), in key order (capture order), and whether more follow.

        One listing call of `most` keys: a page of the taken_at order costs what it shows
        (and what stale entries it passes over), never a listing of the whole collection.
        """
        try:
            return await self._blocking.run(
                _list_taken, self._s3, self._bucket, collection, after, most
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable(error) from error

    async def read_manifest(
        self, collection: str, asset: str, *, tombstones: bool = False
    ) -> StoredManifest | None:
        """The asset's manifest; None when there is none, or when it is a tombstone
        unless `tombstones` (a list of deleted assets shows them)."""
        found = await self.read_manifest_at(keys.manifest_key(collection, asset), True)
        legacy = keys.encoded_name(asset)
        if found is None and legacy != keys.asset_segment(asset):
            # Written before key segments were bounded: an S3 store took the name's whole
            # encoding (up to 600 bytes). Asked only for such names, and only on a miss.
            found = await self.read_manifest_at(keys.segment_manifest_key(collection, legacy), True)
        if found is None or (found.manifest.is_tombstone and not tombstones):
            return None
        return found

    async def read_manifest_at(self, key: str, tombstones: bool = False) -> StoredManifest | None:
        """The manifest at `key` (as listed), like `read_manifest`."""
        try:
            read = await self._blocking.run(storage.read_manifest, self._s3, self._bucket, key)
        except ClientError as error:
            if storage.is_key_refused(error):
                return None  # a key the store refuses holds nothing (MinIO: over 255 bytes)
            raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error
        if read is None:
            return None
        if read.invalid is not None:
            raise read.invalid  # not a manifest the API can show: a server error
        stored = read.stored()
        if stored is None or (stored.manifest.is_tombstone and not tombstones):
            # Deleted: nothing is live, and the tombstone is shown only when asked for.
            return None
        return stored

    async def delete_manifest(self, stored: StoredManifest, version: str) -> bool:
        """Replace the manifest by a tombstone only if it is still the one read; False if
        it changed since (or is gone).

        `version` is minted from the shared clock for this delete, so the tombstone's
        version is later than any version ingested before the delete, so
        an older item still queued or retried cannot commit over it and bring the asset
        back; a newer ingest replaces it. The write carries If-Match on the ETag read,
        which the store enforces on PUT (MinIO too), so a processor committing a new
        version in between keeps its commit (we answer 409).
        """
        manifest = stored.manifest
        key = keys.manifest_key(manifest.collection, manifest.asset)
        tombstone = AssetManifest.tombstone(
            manifest.collection, manifest.asset, datetime.now(UTC), version
        )
        try:
            await self._blocking.run(
                self._s3.put_object,
                Bucket=self._bucket,
                Key=key,
                Body=tombstone.to_bytes(),
                ContentType="application/json",
                CacheControl="no-cache",
                IfMatch=stored.etag,
            )
        except ClientError as error:
            if storage.is_conflict(error) or storage.is_missing(error):
                return False
            raise _unavailable(error) from error
        except BotoCoreError as error:
            raise _unavailable(error) from error
        return True

    async def ready(self) -> bool:
        # A one-key listing of the manifests rather than HeadBucket: that needs ListBucket
        # on the whole bucket, more than the API's least policy (storage_access) grants.
        try:
            await self._blocking.run(
                self._s3.list_objects_v2, Bucket=self._bucket, Prefix=keys.MANIFESTS, MaxKeys=1
            )
        except (ClientError, BotoCoreError):
            return False
        return True


@dataclass(frozen=True)
class ListedManifest:
    """A manifest key as listed: when it was last written, and the asset segment it names
    (a shortened one does not hold the name; the manifest does)."""

    key: str
    segment: str
    modified: datetime


def _list_manifests(s3: Any, bucket: str, collection: str) -> list[ListedManifest]:
    prefix = f"{keys.MANIFESTS}{keys.check_collection(collection)}/"
    listed: list[ListedManifest] = []
    arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = s3.list_objects_v2(**arguments)
        for entry in page.get("Contents", []):
            key = str(entry["Key"])
            parsed = keys.parse_key(key)
            # Anything else under the prefix is not a manifest of this layout; never shown.
            if parsed is not None and parsed.area == "assets" and parsed.segment is not None:
                listed.append(ListedManifest(key, parsed.segment, entry["LastModified"]))
        if not page.get("IsTruncated"):
            return listed
        arguments["ContinuationToken"] = page["NextContinuationToken"]


@dataclass(frozen=True)
class IndexEntry:
    """A key of the capture-order index as listed (`keys.taken_key`): `segment` and
    `version` name the asset version it was written for; `manifest_key` is that asset's
    manifest. `valid` is False for a key under the prefix that is not an entry."""

    key: str
    segment: str = ""
    version: str = ""
    manifest_key: str = ""

    @property
    def valid(self) -> bool:
        return bool(self.manifest_key)


def _list_taken(
    s3: Any, bucket: str, collection: str, after: str | None, most: int
) -> tuple[list[IndexEntry], bool]:
    arguments: dict[str, Any] = {
        "Bucket": bucket,
        "Prefix": keys.taken_prefix(collection),
        "MaxKeys": most,
    }
    if after is not None:
        arguments["StartAfter"] = after
    page = s3.list_objects_v2(**arguments)
    listed: list[IndexEntry] = []
    for entry in page.get("Contents", []):
        key = str(entry["Key"])
        parsed = keys.parse_key(key)
        if (
            parsed is None
            or parsed.area != "taken"
            or parsed.collection != collection
            or parsed.segment is None
            or parsed.version is None
        ):
            listed.append(IndexEntry(key))  # passed over, never shown
            continue
        manifest = keys.segment_manifest_key(collection, parsed.segment)
        listed.append(IndexEntry(key, parsed.segment, parsed.version, manifest))
    return listed, bool(page.get("IsTruncated"))
