"""The object-key layout of DESIGN.md, and the only place keys are built or parsed.

    staging/<upload-id>/<safe-name>
    originals/<collection>/<asset>/<version>/<safe-name>
    derivatives/<collection>/<asset>/<version>/<style>.<ext>
    assets/<collection>/<asset>.json

User-supplied names reach a key only through `safe_name` (filenames) or after matching
`NAME_PATTERN` (collections, assets), so no key can escape its prefix.
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

STAGING: Final = "staging/"
ORIGINALS: Final = "originals/"
DERIVATIVES: Final = "derivatives/"
MANIFESTS: Final = "assets/"
PREFIXES: Final = (STAGING, ORIGINALS, DERIVATIVES, MANIFESTS)

SAFE_NAME_MAX: Final = 100
COLLECTION_MAX: Final = 63
EXTENSION_MAX: Final = 10

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_PATTERN: Final = "[0-9A-HJKMNP-TV-Z]{26}"
# One leading alphanumeric, then a bounded run of [A-Za-z0-9._-]: no separators, no
# leading dot (hidden files, "." and ".."), nothing a shell or URL would reinterpret.
NAME_PATTERN: Final = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{SAFE_NAME_MAX - 1}}}"
COLLECTION_PATTERN: Final = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{COLLECTION_MAX - 1}}}"
STYLE_PATTERN: Final = "[a-z0-9][a-z0-9_-]{0,31}"
VERSION_PATTERN: Final = rf"{ULID_PATTERN}-[0-9]{{5}}"
STAGING_KEY_PATTERN: Final = rf"staging/{ULID_PATTERN}/{NAME_PATTERN}"
STAGING_KEY_MAX: Final = len(STAGING) + 26 + 1 + SAFE_NAME_MAX

_NAME_RE: Final = re.compile(NAME_PATTERN)
_COLLECTION_RE: Final = re.compile(COLLECTION_PATTERN)
_STYLE_RE: Final = re.compile(STYLE_PATTERN)
_VERSION_RE: Final = re.compile(VERSION_PATTERN)
_ULID_RE: Final = re.compile(ULID_PATTERN)
_STAGING_RE: Final = re.compile(STAGING_KEY_PATTERN)
_UNSAFE_RUN: Final = re.compile(r"[^A-Za-z0-9._-]+")
_DOT_RUN: Final = re.compile(r"\.{2,}")
_DASH_RUN: Final = re.compile(r"-{2,}")
_EXTENSION_RE: Final = re.compile(rf"[a-z0-9]{{1,{EXTENSION_MAX}}}")


class InvalidKey(ValueError):
    """A name or key that does not follow the layout; the message says which rule."""


def new_ulid(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, so string order is time order."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def safe_name(filename: str) -> str:
    """Turn any user-supplied filename into a name that is safe inside an object key.

    Keeps only the last path component (both separators), folds Unicode to ASCII,
    replaces every other character by '-', forbids leading dots and dot runs, keeps a
    short alphanumeric extension (lower-cased), and bounds the length. Never returns an empty name.
    """
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    extension = _ascii(extension).lower()
    if not dot or not stem.strip(".") or not _EXTENSION_RE.fullmatch(extension):
        stem, extension = base, ""
    stem = _clean(_ascii(stem))
    room = SAFE_NAME_MAX - (len(extension) + 1 if extension else 0)
    stem = stem[:room].rstrip("._-") or "file"
    return f"{stem}.{extension}" if extension else stem


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _clean(part: str) -> str:
    part = _UNSAFE_RUN.sub("-", part)
    part = _DOT_RUN.sub(".", part)
    part = _DASH_RUN.sub("-", part)
    return part.strip("._-")


def check_name(kind: str, value: str) -> str:
    """Validate an asset name (or a safe name) against NAME_PATTERN."""
    if not _NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidKey(
            f"{kind} {value!r} must be 1-{SAFE_NAME_MAX} characters of letters, digits, "
            "'.', '_' or '-', start with a letter or digit, and contain no '..'"
        )
    return value


def check_collection(value: str) -> str:
    if not _COLLECTION_RE.fullmatch(value) or ".." in value:
        raise InvalidKey(
            f"collection {value!r} must be 1-{COLLECTION_MAX} characters of letters, digits, "
            "'.', '_' or '-', start with a letter or digit, and contain no '..'"
        )
    return value


def check_style(value: str) -> str:
    if not _STYLE_RE.fullmatch(value):
        raise InvalidKey(f"style {value!r} must match {STYLE_PATTERN}")
    return value


def check_staging_key(key: str) -> str:
    if not _STAGING_RE.fullmatch(key) or ".." in key:
        raise InvalidKey(f"{key!r} is not a staging key (staging/<upload-id>/<safe-name>)")
    return key


def version_id(job_version: str, index: int) -> str:
    """The asset version an item writes: the job's ULID plus the item index.

    Fixed when the job is created, so a retried item writes the same keys; ordered
    like the jobs were created (ULIDs), so "later" between two uploads is defined.
    """
    if not _ULID_RE.fullmatch(job_version):
        raise InvalidKey(f"job version {job_version!r} is not a ULID")
    if not 0 <= index < 100_000:
        raise InvalidKey(f"item index {index} out of range")
    return f"{job_version}-{index:05d}"


def staging_key(upload_id: str, filename: str) -> str:
    if not _ULID_RE.fullmatch(upload_id):
        raise InvalidKey(f"upload id {upload_id!r} is not a ULID")
    return f"{STAGING}{upload_id}/{safe_name(filename)}"


def version_prefix(
    area: Literal["originals", "derivatives"], collection: str, asset: str, version: str
) -> str:
    check_collection(collection)
    check_name("asset", asset)
    if not _VERSION_RE.fullmatch(version):
        raise InvalidKey(f"version {version!r} does not match {VERSION_PATTERN}")
    return f"{area}/{collection}/{asset}/{version}/"


def original_key(collection: str, asset: str, version: str, name: str) -> str:
    return version_prefix("originals", collection, asset, version) + check_name("name", name)


def derivative_key(collection: str, asset: str, version: str, style: str, extension: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{1,10}", extension):
        raise InvalidKey(f"extension {extension!r} must be 1-10 lower-case letters or digits")
    return version_prefix("derivatives", collection, asset, version) + (
        f"{check_style(style)}.{extension}"
    )


def manifest_key(collection: str, asset: str) -> str:
    return f"{MANIFESTS}{check_collection(collection)}/{check_name('asset', asset)}.json"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    area: Literal["staging", "originals", "derivatives", "assets"]
    collection: str | None = None
    asset: str | None = None
    version: str | None = None
    upload_id: str | None = None
    name: str | None = None


def parse_key(key: str) -> ParsedKey | None:
    """The inverse of the builders above; None for anything outside the layout."""
    parts = key.split("/")
    match parts:
        case ["staging", upload_id, name] if _ULID_RE.fullmatch(upload_id) and _valid_name(name):
            return ParsedKey("staging", upload_id=upload_id, name=name)
        case [("originals" | "derivatives") as area, collection, asset, version, name] if (
            _valid_collection(collection)
            and _valid_name(asset)
            and _VERSION_RE.fullmatch(version)
            and _valid_name(name)
        ):
            return ParsedKey(area, collection, asset, version, name=name)
        case ["assets", collection, manifest] if (
            _valid_collection(collection)
            and manifest.endswith(".json")
            and _valid_name(manifest.removesuffix(".json"))
        ):
            return ParsedKey("assets", collection, manifest.removesuffix(".json"))
    return None


def _valid_name(value: str) -> bool:
    return bool(_NAME_RE.fullmatch(value)) and ".." not in value


def _valid_collection(value: str) -> bool:
    return bool(_COLLECTION_RE.fullmatch(value)) and ".." not in value
