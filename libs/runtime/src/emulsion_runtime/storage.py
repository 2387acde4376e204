"""Object storage as every service reads it: the client, what an S3 error means, manifests.

Each service's own `store.py` keeps only its policy on top of this (the processor's
conditional commit, the janitor's guarded deletes, the API's presigned forms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import ValidationError

from emulsion_contracts.manifest import AssetManifest
from emulsion_runtime.settings import S3Settings

# The key (or bucket) is not there: S3 answers with the code, MinIO and HEAD with the status.
MISSING_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})
# A conditional write or delete lost: 412, the ETag moved (If-Match) or the key appeared
# (If-None-Match); 409, a concurrent conditional write to the same key is in progress.
CONFLICT_CODES: Final = frozenset(
    {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}
)

# The store refuses the key itself (its length or characters): the same key is refused
# for ever, so waiting is no use. MinIO says XMinioInvalidObjectName (a segment over 255
# bytes, a key over 1,024, characters it does not take); S3 says KeyTooLongError.
KEY_REFUSED_CODES: Final = frozenset({"XMinioInvalidObjectName", "KeyTooLongError"})
# Codes that refuse some argument; a refusal of the key when its message names the key.
_ARGUMENT_CODES: Final = frozenset({"InvalidArgument", "InvalidRequest"})
_KEY_WORDS: Final = ("key", "object name", "object-name", "objectname")

USER_AGENT: Final = "emulsion"

# An upload's object metadata, bound into its presigned form (the browser cannot change
# them): the collection it was presigned for, and who asked (the first 16 hex digits of
# the token's SHA-256). S3 returns them without the `x-amz-meta-` prefix.
UPLOAD_COLLECTION_METADATA: Final = "emulsion-collection"
UPLOAD_OWNER_METADATA: Final = "emulsion-owner"
# The file name the client gave (its base name, Unicode as given), percent-encoded UTF-8
# (metadata values are ASCII), at most UPLOAD_FILENAME_ENCODED_MAX characters so the
# object's metadata stays well inside S3's 2 KB.
UPLOAD_FILENAME_METADATA: Final = "emulsion-filename"
UPLOAD_FILENAME_ENCODED_MAX: Final = 1024


def encode_filename(filename: str) -> str:
    """The base name of `filename` as an ASCII metadata value (`decode_filename` undoes it);
    a name too long to encode whole is cut at a character."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    parts: list[str] = []
    length = 0
    for char in base:
        part = quote(char, safe="")
        if length + len(part) > UPLOAD_FILENAME_ENCODED_MAX:
            break
        parts.append(part)
        length += len(part)
    return "".join(parts)


def decode_filename(value: str | None) -> str | None:
    """The file name an upload's metadata records, or None when absent or not one."""
    if not value or len(value) > UPLOAD_FILENAME_ENCODED_MAX:
        return None
    try:
        name = unquote(value, errors="strict")
    except UnicodeDecodeError:
        return None
    if not name or "/" in name or any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        return None
    return name


def s3_client(
    settings: S3Settings, *, max_pool_connections: int = 10, **client_arguments: Any
) -> Any:
    """A boto3 S3 client; path-style addressing so MinIO and other S3-compatibles work.

    Credentials come from boto3's own chain unless given in `client_arguments`. A client
    shared by many threads needs `max_pool_connections` of at least the thread count, or
    connections beyond the pool are opened and thrown away on every call.
    """
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=max_pool_connections,
            # Checksums only where S3 requires them (as before botocore 1.36): the flexible
            # CRC of every PUT and GET costs both sides CPU, and TLS plus Content-MD5 where
            # required already cover the bytes in transit.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # botocore rebuilds its default User-Agent twice per request (~0.4 ms of CPU
            # each time); a fixed one is joined, not rebuilt.
            user_agent=USER_AGENT,
            # The calls are fixed in code and their shapes tested; the server still
            # refuses a bad one. Validating every call's parameters client-side costs
            # ~0.2 ms of CPU each.
            parameter_validation=False,
        ),
        **client_arguments,
    )


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def is_missing(error: ClientError) -> bool:
    """The object (or bucket) the call named does not exist."""
    return error_code(error) in MISSING_CODES


def is_key_refused(error: ClientError) -> bool:
    """The store refused the object's key (too long, a segment too long, characters it does
    not allow): a permanent failure of whatever wanted that key, never an outage."""
    code = error_code(error)
    if code in KEY_REFUSED_CODES:
        return True
    if code not in _ARGUMENT_CODES:
        return False
    details = error.response.get("Error", {})
    said = f"{details.get('ArgumentName', '')} {details.get('Message', '')}".lower()
    return any(word in said for word in _KEY_WORDS)


def is_conflict(error: ClientError) -> bool:
    """A conditional write or delete found the object changed (or changing)."""
    return error_code(error) in CONFLICT_CODES


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A parsed manifest with the ETag a conditional write or delete must match."""

    manifest: AssetManifest
    etag: str


@dataclass(frozen=True, slots=True)
class ManifestRead:
    """What is stored at a manifest key: parsed, or (`manifest=None`) with the reason it
    does not parse (written by hand, or by a future schema); the ETag in either case, so
    a writer can replace even an unparsable manifest knowingly."""

    manifest: AssetManifest | None
    etag: str
    invalid: ValidationError | None = None

    def stored(self) -> StoredManifest | None:
        return None if self.manifest is None else StoredManifest(self.manifest, self.etag)


def read_manifest(s3: Any, bucket: str, key: str) -> ManifestRead | None:
    """The manifest object at `key`, or None if there is none; blocking.

    A tombstone is returned like any manifest (`is_tombstone`): what it means is each
    caller's policy. Errors other than a missing key are raised as boto3 raised them.
    """
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if is_missing(error):
            return None
        raise
    with response["Body"] as body:
        data = body.read()
    etag = str(response["ETag"])
    try:
        return ManifestRead(AssetManifest.from_bytes(data), etag)
    except ValidationError as error:
        return ManifestRead(None, etag, error)
