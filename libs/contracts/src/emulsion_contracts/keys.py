"""The object-key layout (docs/architecture.md, "Key layout"), and the only place keys are
built or parsed.

    staging/<collection>/<upload-id>/<safe-name>
    staging/<collection>/<upload-id>/.claim
    originals/<collection>/<asset-segment>/<version>/<safe-name>
    derivatives/<collection>/<asset-segment>/<version>/<style>.<ext>   (one per format)
    assets/<collection>/<asset-segment>.json
    taken/<collection>/<taken-at>/<asset-segment>/<version>           (capture-order index)

User-supplied names reach a key only through `safe_name` (filenames, lossy: they sit under
a unique upload id or version), after matching `COLLECTION_PATTERN` (collections), or
through `asset_segment` (asset names: Unicode, percent-encoded, so two names never share
keys). No key can escape its prefix.

Every store must accept every key built here, whatever the name: MinIO refuses an object
name with a segment over 255 bytes (`XMinioInvalidObjectName`) and S3 a key over 1,024.
So an asset segment is at most `ASSET_SEGMENT_MAX` bytes: the name's whole encoding when
it fits (what every key was before, so nothing stored moves), otherwise a readable prefix
of it cut at a character boundary, then "~" and a hash of the whole name. "~" is never in
a whole encoding (it would be "%7E"), so the two forms cannot meet.

A staging key names the collection its upload was presigned for, so an ingest into another
collection can refuse it by its key alone; `.claim` beside it marks an upload a job has
promoted (the processor writes it once, with If-None-Match). The older layout
`staging/<upload-id>/<safe-name>` (no collection) is still parsed, as `legacy`, so the
janitor sweeps what was uploaded before; nothing ingests it.

The capture-order index is one empty object per committed version, named so that the
store's key order is the order `GET /v1/assets/<collection>?order=taken_at` pages in:
`<taken-at>` is the capture time in UTC (`YYYYMMDDTHHMMSS.ffffffZ`; a time without a zone
is read as if it were UTC) or `~` for a photo without one, which sorts after every time;
ties go by asset segment, then version. An entry is current only while its version is
the asset's live one (the reader checks the manifest); the janitor collects the others
like any superseded version's keys.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

STAGING: Final = "staging/"
ORIGINALS: Final = "originals/"
DERIVATIVES: Final = "derivatives/"
MANIFESTS: Final = "assets/"
TAKEN: Final = "taken/"
PREFIXES: Final = (STAGING, ORIGINALS, DERIVATIVES, MANIFESTS, TAKEN)
# The capture-order index's time segment for a photo without a capture time: "~" sorts
# after every digit, so such assets come after every dated one.
UNTIMED: Final = "~"
TAKEN_TIME_PATTERN: Final = r"(?:[0-9]{8}T[0-9]{6}\.[0-9]{6}Z|~)"

SAFE_NAME_MAX: Final = 100
# An asset name is bounded in characters and in UTF-8 bytes alike.
ASSET_NAME_MAX: Final = 200
# The longest key segment any store accepts (MinIO: 255 bytes); S3 has no segment limit.
STORE_SEGMENT_MAX: Final = 255
MANIFEST_SUFFIX: Final = ".json"
# An asset segment, so that even the manifest's "<segment>.json" fits in one store segment.
ASSET_SEGMENT_MAX: Final = STORE_SEGMENT_MAX - len(MANIFEST_SUFFIX)
# The whole encoding of the longest name (every byte may become "%XX"): the longest
# segment keys written before the limit above may carry, which `parse_key` still reads.
ENCODED_NAME_MAX: Final = 3 * ASSET_NAME_MAX
# A shortened segment ends in "~" and this many hex digits of the name's SHA-256: 128 bits,
# so two long names sharing a segment is as likely as a SHA-256 collision of that width.
SEGMENT_HASH_HEX: Final = 32
SEGMENT_HASH_MARK: Final = "~"
READABLE_PREFIX_MAX: Final = ASSET_SEGMENT_MAX - len(SEGMENT_HASH_MARK) - SEGMENT_HASH_HEX
# S3's limit on a key, in UTF-8 bytes; every key built here stays well under it.
S3_KEY_MAX: Final = 1024
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
STAGING_KEY_PATTERN: Final = rf"staging/{COLLECTION_PATTERN}/{ULID_PATTERN}/{NAME_PATTERN}"
STAGING_KEY_MAX: Final = len(STAGING) + COLLECTION_MAX + 1 + 26 + 1 + SAFE_NAME_MAX
# Before uploads named their collection; parsed (the janitor sweeps them), never ingested.
LEGACY_STAGING_KEY_PATTERN: Final = rf"staging/{ULID_PATTERN}/{NAME_PATTERN}"
# Either layout: what a client may name (an old key is then answered as a missing upload).
ANY_STAGING_KEY_PATTERN: Final = rf"staging/(?:{COLLECTION_PATTERN}/)?{ULID_PATTERN}/{NAME_PATTERN}"
# A stored original, as a re-render's source names it (the segment is checked in full by
# `is_original_of`; the pattern only bounds its characters).
ORIGINAL_KEY_PATTERN: Final = (
    rf"originals/{COLLECTION_PATTERN}/[A-Za-z0-9_.~%-]{{1,{ASSET_SEGMENT_MAX}}}"
    rf"/{VERSION_PATTERN}/{NAME_PATTERN}"
)
ORIGINAL_KEY_MAX: Final = (
    len("originals/") + COLLECTION_MAX + 1 + ASSET_SEGMENT_MAX + 1 + 32 + 1 + SAFE_NAME_MAX
)
# What an IngestJob item or work message may read: an upload, or (a re-render) the
# asset's stored original.
SOURCE_KEY_PATTERN: Final = rf"(?:{STAGING_KEY_PATTERN}|{ORIGINAL_KEY_PATTERN})"
SOURCE_KEY_MAX: Final = max(STAGING_KEY_MAX, ORIGINAL_KEY_MAX)
# The claim marker's file part: a leading dot, so no safe name (and no upload) is ever it.
CLAIM_NAME: Final = ".claim"

_NAME_RE: Final = re.compile(NAME_PATTERN)
_COLLECTION_RE: Final = re.compile(COLLECTION_PATTERN)
_STYLE_RE: Final = re.compile(STYLE_PATTERN)
_VERSION_RE: Final = re.compile(VERSION_PATTERN)
_ULID_RE: Final = re.compile(ULID_PATTERN)
_STAGING_RE: Final = re.compile(STAGING_KEY_PATTERN)
_TAKEN_TIME_RE: Final = re.compile(TAKEN_TIME_PATTERN)
_ANY_STAGING_RE: Final = re.compile(ANY_STAGING_KEY_PATTERN)
_UNSAFE_RUN: Final = re.compile(r"[^A-Za-z0-9._-]+")
_DOT_RUN: Final = re.compile(r"\.{2,}")
_DASH_RUN: Final = re.compile(r"-{2,}")
_EXTENSION_RE: Final = re.compile(rf"[a-z0-9]{{1,{EXTENSION_MAX}}}")
# The bytes an asset segment keeps as they are; every other byte is "%XX" (upper-case hex).
_SEGMENT_KEPT: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-."
)
_SEGMENT_RE: Final = re.compile(r"(?:[A-Za-z0-9_.-]|%[0-9A-F]{2})+")
_SHORTENED_RE: Final = re.compile(
    rf"((?:[A-Za-z0-9_.-]|%[0-9A-F]{{2}})+){re.escape(SEGMENT_HASH_MARK)}([0-9a-f]{{{SEGMENT_HASH_HEX}}})"
)
# Control, format, surrogate, private-use and unassigned code points: invisible or
# ambiguous in a name, and never needed to tell two photos apart.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# The asset rule as far as the apiserver's RE2 patterns can say it (the IngestJob CRD):
# no separators, control/format/surrogate/private-use characters, nor whitespace at
# either end. It accepts every valid name; the CRD adds "not '.' or '..'" as a CEL rule.
_NOT_IN_NAME: Final = r"/\\\p{Cc}\p{Cf}\p{Co}\p{Cs}"
ASSET_NAME_SCHEMA_PATTERN: Final = (
    rf"^[^{_NOT_IN_NAME}\s](?:[^{_NOT_IN_NAME}]*[^{_NOT_IN_NAME}\s])?$"
)


class InvalidKey(ValueError):
    """A name or key that does not follow the layout; the message says which rule."""


def new_ulid(now: float | None = None, *, millis: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, so string order is time order.

    `millis` gives the time part exactly (the shared clock's versions, emulsion_contracts.
    clock); a float of seconds could round it down by one.
    """
    if millis is None:
        millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def ulid_millis(ulid: str) -> int:
    """The millisecond time part of a ULID (its first 10 characters)."""
    value = 0
    for character in ulid[:10].upper():
        value = value * 32 + _CROCKFORD.index(character)
    return value


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
    """Validate a safe name (the file part of a key) against NAME_PATTERN."""
    return _check_safe(kind, value, _NAME_RE, SAFE_NAME_MAX)


def _check_safe(kind: str, value: str, pattern: re.Pattern[str], most: int) -> str:
    """`value`, a safe segment of up to `most` characters that `pattern` matches whole and
    that holds no '..'; else InvalidKey naming `kind`."""
    if not pattern.fullmatch(value) or ".." in value:
        raise InvalidKey(
            f"{kind} {value!r} must be 1-{most} characters of letters, digits, "
            "'.', '_' or '-', start with a letter or digit, and contain no '..'"
        )
    return value


def check_asset_name(value: str) -> str:
    """Validate an asset name (contract 1): the user's own name, Unicode NFC, 1-200
    characters and at most 200 UTF-8 bytes, no control/format/unassigned characters, no
    '/' or '\\', not "." or "..", no leading or trailing whitespace."""
    problem = _asset_name_problem(value)
    if problem:
        raise InvalidKey(f"asset {value[: ASSET_NAME_MAX + 1]!r} {problem}")
    return value


def _asset_name_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > ASSET_NAME_MAX or len(value.encode("utf-8", "surrogatepass")) > ASSET_NAME_MAX:
        return f"must be at most {ASSET_NAME_MAX} characters and {ASSET_NAME_MAX} bytes of UTF-8"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    if "/" in value or "\\" in value:
        return "must not contain '/' or '\\'"
    if value != value.strip():
        return "must not begin or end with whitespace"
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in value):
        return "must not contain control, format, private-use or unassigned characters"
    if not unicodedata.is_normalized("NFC", value):
        return "must be in Unicode normal form NFC"
    return None


def encoded_name(name: str) -> str:
    """`name` encoded without loss into ASCII: its UTF-8 bytes percent-encoded, keeping only
    A-Z a-z 0-9 '_' '-' '.' (a leading '.' is encoded too, so it is never '.', '..' or
    hidden), upper-case hex. Up to `ENCODED_NAME_MAX` bytes; `asset_name` decodes it."""
    check_asset_name(name)
    return "".join(_encoded_characters(name))


def _encoded_characters(name: str) -> list[str]:
    """The encoding of each character of `name` in turn (so a cut between two items never
    splits a character or a "%XX")."""
    encoded: list[str] = []
    for position, char in enumerate(name):
        encoded.append(
            "".join(
                chr(byte)
                if byte in _SEGMENT_KEPT and not (position == 0 and byte == 0x2E)
                else f"%{byte:02X}"
                for byte in char.encode("utf-8")
            )
        )
    return encoded


def asset_segment(name: str) -> str:
    """The one key segment naming asset `name`, at most `ASSET_SEGMENT_MAX` bytes.

    The whole `encoded_name` when it fits (the segment every key had before the limit, so
    nothing stored moves); else its longest prefix of whole characters that leaves room
    for "~" and 32 hex digits of SHA-256 over the name's UTF-8. Two names never share a
    segment: whole encodings are injective and carry no "~"; shortened ones differ in the
    hash unless SHA-256 collides."""
    characters = _encoded_characters(check_asset_name(name))
    whole = "".join(characters)
    if len(whole) <= ASSET_SEGMENT_MAX:
        return whole
    prefix, used = [], 0
    for encoded in characters:
        if used + len(encoded) > READABLE_PREFIX_MAX:
            break
        prefix.append(encoded)
        used += len(encoded)
    return "".join(prefix) + SEGMENT_HASH_MARK + _name_hash(name)


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:SEGMENT_HASH_HEX]


def is_segment_of(segment: str, name: str) -> bool:
    """Whether `segment` names asset `name`: its segment now, or the whole encoding that
    keys written before the segment limit carry (up to `ENCODED_NAME_MAX` bytes)."""
    try:
        return segment in (asset_segment(name), encoded_name(name))
    except InvalidKey:
        return False


def asset_name(segment: str) -> str:
    """The asset name an `encoded_name` (a whole-encoding segment) decodes to; raises
    InvalidKey unless `segment` is exactly what `encoded_name` makes of a valid name (so
    key <-> name is a bijection). A shortened segment does not hold the whole name: the
    asset's manifest does."""
    name = _decoded_segment(segment)
    if name is None:
        raise InvalidKey(f"{segment[: ENCODED_NAME_MAX + 1]!r} is not an encoded asset name")
    return name


def _decoded_segment(segment: str) -> str | None:
    if len(segment) > ENCODED_NAME_MAX or not _SEGMENT_RE.fullmatch(segment):
        return None
    try:
        name = urllib.parse.unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _asset_name_problem(name) or encoded_name(name) != segment:
        return None
    return name


def _valid_segment(segment: str) -> bool:
    """A segment some name has (or had, before the limit): a whole encoding, or a
    shortened one whose readable part is whole characters of a name's beginning."""
    if _decoded_segment(segment) is not None:
        return True
    shortened = _SHORTENED_RE.fullmatch(segment)
    if shortened is None or len(segment) > ASSET_SEGMENT_MAX:
        return False
    readable = shortened.group(1)
    # Only a name whose whole encoding does not fit is shortened, and then the prefix is
    # as long as whole characters allow: a multi-byte character is at most 12 bytes.
    if len(readable) <= READABLE_PREFIX_MAX - 12:
        return False
    try:
        beginning = urllib.parse.unquote_to_bytes(readable).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return (
        "/" not in beginning
        and "\\" not in beginning
        and not beginning[0].isspace()
        and not any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in beginning)
        and "".join(_encoded_characters(beginning)) == readable
    )


def check_collection(value: str) -> str:
    return _check_safe("collection", value, _COLLECTION_RE, COLLECTION_MAX)


def check_style(value: str) -> str:
    if not _STYLE_RE.fullmatch(value):
        raise InvalidKey(f"style {value!r} must match {STYLE_PATTERN}")
    return value


def check_staging_key(key: str) -> str:
    """A staging key of the current layout, `staging/<collection>/<upload-id>/<safe-name>`."""
    if not _STAGING_RE.fullmatch(key) or ".." in key:
        raise InvalidKey(
            f"{key!r} is not a staging key (staging/<collection>/<upload-id>/<safe-name>)"
        )
    return key


def check_any_staging_key(key: str) -> str:
    """A staging key of either layout: the form of what a client may name in a request."""
    if not _ANY_STAGING_RE.fullmatch(key) or ".." in key:
        raise InvalidKey(
            f"{key!r} is not a staging key (staging/<collection>/<upload-id>/<safe-name>)"
        )
    return key


def staging_collection(key: str) -> str | None:
    """The collection an upload key of the current layout was presigned for; None for
    anything else (a legacy key, a claim marker, a key outside staging/)."""
    parsed = parse_key(key)
    if parsed is None or parsed.area != "staging" or parsed.legacy or parsed.claim:
        return None
    return parsed.collection


def staging_prefix(collection: str) -> str:
    """Where every upload presigned for `collection` lives: `staging/<collection>/`."""
    return f"{STAGING}{check_collection(collection)}/"


def upload_prefix(key: str) -> str:
    """`staging/<collection>/<upload-id>/`: the upload's own folder (its file and claim)."""
    check_staging_key(key)
    return key.rsplit("/", 1)[0] + "/"


def claim_key(key: str) -> str:
    """The claim marker of the upload at `key`: `staging/<collection>/<upload-id>/.claim`."""
    return upload_prefix(key) + CLAIM_NAME


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


def is_original_of(key: str, collection: str, asset: str) -> bool:
    """Whether `key` is a stored original of `asset` in `collection` (any version)."""
    parsed = parse_key(key)
    return (
        parsed is not None
        and parsed.area == "originals"
        and parsed.collection == collection
        and parsed.segment is not None
        and is_segment_of(parsed.segment, asset)
    )


def staging_key(collection: str, upload_id: str, filename: str) -> str:
    """Where an upload of `filename` for `collection` goes."""
    if not _ULID_RE.fullmatch(upload_id):
        raise InvalidKey(f"upload id {upload_id!r} is not a ULID")
    return f"{staging_prefix(collection)}{upload_id}/{safe_name(filename)}"


def version_prefix(
    area: Literal["originals", "derivatives"], collection: str, asset: str, version: str
) -> str:
    check_collection(collection)
    segment = asset_segment(asset)
    if not _VERSION_RE.fullmatch(version):
        raise InvalidKey(f"version {version!r} does not match {VERSION_PATTERN}")
    return f"{area}/{collection}/{segment}/{version}/"


def original_key(collection: str, asset: str, version: str, name: str) -> str:
    """The original of `asset` (a name); `name` is the file part, a safe name."""
    return version_prefix("originals", collection, asset, version) + check_name("name", name)


def derivative_key(collection: str, asset: str, version: str, style: str, extension: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{1,10}", extension):
        raise InvalidKey(f"extension {extension!r} must be 1-10 lower-case letters or digits")
    return version_prefix("derivatives", collection, asset, version) + (
        f"{check_style(style)}.{extension}"
    )


# The file extension of each output format: a style's renderings differ only in it
# (`<style>.avif`, `<style>.webp`, `<style>.jpg`), so a single-format style's key is what
# it always was.
FORMAT_EXTENSIONS: Final[dict[str, str]] = {
    "jpeg": "jpg",
    "png": "png",
    "webp": "webp",
    "avif": "avif",
}
EXTENSION_FORMATS: Final = {extension: name for name, extension in FORMAT_EXTENSIONS.items()}


def rendering_key(collection: str, asset: str, version: str, style: str, output_format: str) -> str:
    """The key of `style` of `asset`'s `version` encoded as `output_format` (one rendering)."""
    extension = FORMAT_EXTENSIONS.get(output_format)
    if extension is None:
        raise InvalidKey(f"format {output_format!r} is not one of {sorted(FORMAT_EXTENSIONS)}")
    return derivative_key(collection, asset, version, style, extension)


def manifest_key(collection: str, asset: str) -> str:
    return segment_manifest_key(collection, asset_segment(asset))


def segment_manifest_key(collection: str, segment: str) -> str:
    """The manifest key of the asset whose key segment is `segment` (a parsed key's): the
    way from a version's keys to the name, when the segment is shortened."""
    if not _valid_segment(segment):
        raise InvalidKey(f"{segment[: ENCODED_NAME_MAX + 1]!r} is not an asset segment")
    return f"{MANIFESTS}{check_collection(collection)}/{segment}{MANIFEST_SUFFIX}"


def taken_time(taken_at: datetime | None) -> str:
    """The index's time segment for a capture time: UTC to the microsecond, fixed width
    (so string order is time order); `UNTIMED` for none. A naive time (no offset in the
    file) is taken as UTC; an aware one that UTC cannot hold (year 1 or 9999 at the edge)
    counts as none."""
    if taken_at is None:
        return UNTIMED
    if taken_at.tzinfo is not None:
        try:
            taken_at = taken_at.astimezone(UTC)
        except (OverflowError, ValueError):
            return UNTIMED
    return (
        f"{taken_at.year:04d}{taken_at.month:02d}{taken_at.day:02d}T"
        f"{taken_at.hour:02d}{taken_at.minute:02d}{taken_at.second:02d}."
        f"{taken_at.microsecond:06d}Z"
    )


def taken_prefix(collection: str) -> str:
    """Where `collection`'s capture-order index lives: `taken/<collection>/`."""
    return f"{TAKEN}{check_collection(collection)}/"


def taken_key(collection: str, asset: str, version: str, taken_at: datetime | None) -> str:
    """The capture-order index entry of `asset`'s `version`, taken at `taken_at`."""
    if not _VERSION_RE.fullmatch(version):
        raise InvalidKey(f"version {version!r} does not match {VERSION_PATTERN}")
    return f"{taken_prefix(collection)}{taken_time(taken_at)}/{asset_segment(asset)}/{version}"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A key taken apart; `asset` is the decoded asset NAME, not its key segment, or None
    when the segment is shortened (the name is then in the manifest at
    `segment_manifest_key(collection, segment)`). `segment` identifies the asset always.

    Under staging/: `legacy` marks the old layout (no collection), `claim` an upload's
    claim marker (`name` is then None). Under taken/ (the capture-order index), `taken`
    is the entry's time segment (`taken_time`).
    """

    area: Literal["staging", "originals", "derivatives", "assets", "taken"]
    collection: str | None = None
    asset: str | None = None
    version: str | None = None
    upload_id: str | None = None
    name: str | None = None
    legacy: bool = False
    claim: bool = False
    segment: str | None = None
    taken: str | None = None


def parse_key(key: str) -> ParsedKey | None:
    """The inverse of the builders above; None for anything outside the layout."""
    parts = key.split("/")
    match parts:
        case ["staging", collection, upload_id, name] if _valid_collection(
            collection
        ) and _ULID_RE.fullmatch(upload_id):
            if name == CLAIM_NAME:
                return ParsedKey("staging", collection, upload_id=upload_id, claim=True)
            if _valid_name(name):
                return ParsedKey("staging", collection, upload_id=upload_id, name=name)
        case ["staging", upload_id, name] if _ULID_RE.fullmatch(upload_id) and _valid_name(name):
            return ParsedKey("staging", upload_id=upload_id, name=name, legacy=True)
        case [("originals" | "derivatives") as area, collection, segment, version, name] if (
            _valid_collection(collection)
            and _VERSION_RE.fullmatch(version)
            and _valid_name(name)
            and _valid_segment(segment)
        ):
            return ParsedKey(
                area, collection, _decoded_segment(segment), version, name=name, segment=segment
            )
        case ["assets", collection, manifest] if (
            _valid_collection(collection)
            and manifest.endswith(MANIFEST_SUFFIX)
            and _valid_segment(segment := manifest.removesuffix(MANIFEST_SUFFIX))
        ):
            return ParsedKey("assets", collection, _decoded_segment(segment), segment=segment)
        case ["taken", collection, when, segment, version] if (
            _valid_collection(collection)
            and _TAKEN_TIME_RE.fullmatch(when)
            and _VERSION_RE.fullmatch(version)
            and _valid_segment(segment)
        ):
            return ParsedKey(
                "taken",
                collection,
                _decoded_segment(segment),
                version,
                segment=segment,
                taken=when,
            )
    return None


def _valid_name(value: str) -> bool:
    return bool(_NAME_RE.fullmatch(value)) and ".." not in value


def _valid_collection(value: str) -> bool:
    return bool(_COLLECTION_RE.fullmatch(value)) and ".." not in value
