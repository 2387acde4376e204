"""The IngestJob custom resource as code: its spec, its status, and Kubernetes time.

`crds/ingestjob.yaml` is the schema; tests/contracts/test_ingestjob.py ties these models
to it field by field (names, required-ness, enums). The API builds jobs with `IngestJob`;
the controller reads specs with `IngestJobSpec` and writes its status as `IngestJobStatus`;
the API reads that status back with the same model.

Reading a stored job never fails over what the apiserver already validated: every field
is constrained no more than the CRD constrains it. The one exception is deliberate: an
item's `source` and `asset` are the contract's `StagingKey` and `AssetName` only when the
item becomes a work message (`IngestJobSpec.work_item`), so a job the apiserver took but
the contracts refuse (a non-NFC or unassigned character, say) can still be read, counted
and failed with `InvalidSpec` instead of breaking every reader of it. A phase this reader
does not know is read as Pending (not finished, so nothing acts on it as ended) and logged.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from emulsion_contracts import crd, indexes, keys, wire
from emulsion_contracts.crd import ConditionType, Phase
from emulsion_contracts.messages import (
    DEFAULT_PROFILE_NAME,
    Collection,
    FocalPoint,
    JobRef,
    ReadReason,
    StyleSpec,
    WorkItem,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PROFILE_NAME",
    "PROFILE_PATTERN",
    "Condition",
    "ConditionStatus",
    "FailureCount",
    "IngestJob",
    "IngestJobSpec",
    "IngestJobStatus",
    "InvalidSpec",
    "ItemFailure",
    "ItemsRef",
    "JobItem",
    "JobOutline",
    "ObjectMeta",
    "SpecOutline",
    "fit_text",
    "format_time",
    "parse_time",
    "stored_text_bytes",
]

PROFILE_PATTERN: Final = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
MAX_STYLES: Final = 16
TTL_MAX_SECONDS: Final = 365 * 24 * 3600
# The longest status.failures[].message (and rejection message) the controller writes.
FAILURE_MESSAGE_MAX: Final = 256
# What one listed failure's message and asset may take as etcd stores them (Go escapes
# '<', '>', '&' as six bytes): five examples stay under 2 KB whatever the names.
EXAMPLE_TEXT_BYTES: Final = 128
# How many distinct reasons status.failureReasons counts (more than FailureReason has).
MAX_FAILURE_REASONS: Final = 32


# -- Sizes as stored -------------------------------------------------------------------

_GO_ESCAPED = re.compile("[<>&\u2028\u2029]")


def stored_text_bytes(text: str) -> int:
    """Bytes of `text` as a JSON string in etcd (Go's encoding/json), quotes included."""
    encoded = json.dumps(text, ensure_ascii=False)
    escaped = sum(6 - len(c.encode("utf-8")) for c in _GO_ESCAPED.findall(encoded))
    return len(encoded.encode("utf-8")) + escaped


def fit_text(text: str, limit: int) -> str:
    """The longest prefix of `text` that takes at most `limit` bytes as stored."""
    if stored_text_bytes(text) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if stored_text_bytes(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


# -- Kubernetes time -------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC to the second with a 'Z', as Kubernetes writes its own times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | datetime) -> datetime:
    """A Kubernetes time (RFC 3339; 'Z' or an offset) as an aware UTC datetime; a time
    without a zone is taken as UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


KubeTime = Annotated[
    datetime,
    BeforeValidator(parse_time),
    PlainSerializer(format_time, return_type=str),
]


# -- The parts -------------------------------------------------------------------------


class _KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python; fields we do not model are ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )

    def to_body(self) -> dict[str, Any]:
        """As the apiserver takes it: camelCase, times as Kubernetes writes them, no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class InvalidSpec(ValueError):
    """A spec no work message can carry; the message says where and why. Final: a spec is
    immutable, so no retry could ever dispatch it."""


Ulid = Annotated[str, StringConstraints(pattern=f"^{keys.ULID_PATTERN}$")]
ProfileName = Annotated[str, StringConstraints(max_length=63, pattern=PROFILE_PATTERN)]


class JobItem(_KubeModel):
    """One image: where its upload is, and the asset it becomes (see the module's note).

    A `source` under originals/ re-renders that asset's live version from its stored
    original (the API's focal point PATCH makes such jobs, of one item).
    """

    source: Annotated[str, Field(max_length=keys.SOURCE_KEY_MAX)]
    asset: Annotated[str, Field(max_length=keys.ASSET_NAME_MAX)]
    focal_point: FocalPoint | None = None


class ItemsRef(_KubeModel):
    """`spec.itemsRef`: where a job's items are kept outside etcd (an object of the object
    store EMULSION_INGESTS, see emulsion_contracts.jobrecords), how many, and the SHA-256
    of its exact bytes, so a reader knows it got what the API accepted."""

    name: Annotated[str, Field(min_length=3, max_length=317)]
    sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
    count: Annotated[int, Field(ge=1, le=crd.MAX_ITEMS)]


class SpecOutline(_KubeModel):
    """A spec without its inline items: all that watchers of every event need, read in
    microseconds however many items the job has (a full spec of 2,000 items takes ~1 ms)."""

    collection: Collection
    profile: ProfileName = DEFAULT_PROFILE_NAME
    # Styles to make instead of the profile's.
    styles: Annotated[tuple[StyleSpec, ...], Field(max_length=MAX_STYLES)] | None = None
    # Fixed at creation by the API; the controller picks one for jobs made without it.
    version: Ulid | None = None
    ttl_seconds_after_finished: Annotated[int, Field(ge=0, le=TTL_MAX_SECONDS)] | None = None
    # Where the items are when they are not inline (the API always writes this).
    items_ref: ItemsRef | None = None
    # The lane asked for; None lets the size decide (`lane`). The API sets `interactive`
    # only for a token allowed to; anyone may ask for `bulk`.
    priority: wire.Lane | None = None


class IngestJobSpec(SpecOutline):
    """Exactly one of `items` (inline: jobs written by hand with kubectl) and `itemsRef`
    (the API's: the job stays a few KB whatever its size); the CRD's CEL rule says so."""

    items: Annotated[tuple[JobItem, ...], Field(min_length=1, max_length=crd.MAX_ITEMS)] | None = (
        None
    )

    @model_validator(mode="after")
    def _one_item_source(self) -> Self:
        if (self.items is None) == (self.items_ref is None):
            raise ValueError("a spec has exactly one of items and itemsRef")
        return self

    @property
    def count(self) -> int:
        """The number of items, known without reading a referenced list."""
        if self.items is not None:
            return len(self.items)
        assert self.items_ref is not None
        return self.items_ref.count

    def lane(self, interactive_max_items: int) -> wire.Lane:
        """The lane this job's work waits in: the one asked for, else interactive for a
        job of at most `interactive_max_items` items (one photo, a handful) and bulk for
        anything larger, so a gallery never sits in front of a single upload."""
        if self.priority is not None:
            return self.priority
        return wire.Lane.INTERACTIVE if self.count <= interactive_max_items else wire.Lane.BULK

    def with_items(self, items: Sequence[JobItem]) -> IngestJobSpec:
        """This spec with its referenced items read in (see jobrecords.get_items)."""
        return self.model_copy(update={"items": tuple(items)})

    def loaded_items(self) -> tuple[JobItem, ...]:
        """The items, inline or read in; a referenced list not read yet is a bug."""
        if self.items is None:
            raise RuntimeError("the job's itemsRef was not read (IngestJobSpec.with_items)")
        return self.items

    def work_item(self, job: JobRef, index: int, version: str) -> WorkItem:
        """Item `index` as a work message of `version`; raises InvalidSpec."""
        item = self.loaded_items()[index]
        try:
            return WorkItem(
                job=job,
                index=index,
                source=item.source,
                collection=self.collection,
                asset=item.asset,
                version=keys.version_id(version, index),
                profile=self.profile,
                styles=self.styles or None,
                focal_point=item.focal_point,
            )
        except ValidationError as error:
            raise InvalidSpec(f"spec.items[{index}]: {describe(error)}") from error
        except keys.InvalidKey as error:
            raise InvalidSpec(f"spec.items[{index}]: {error}") from error

    def upload_ids(self) -> tuple[str, ...]:
        """The staging upload ids the job reads (the ULID segment of each source), once."""
        found: dict[str, None] = {}
        for item in self.loaded_items():
            parsed = keys.parse_key(item.source)
            if parsed is not None and parsed.upload_id:
                found[parsed.upload_id] = None
        return tuple(found)


def _read_phase(value: object) -> Phase:
    return Phase.parse(value)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_KubeModel):
    type: ConditionType
    status: ConditionStatus
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    # Moves only when `status` changes.
    last_transition_time: KubeTime
    reason: str
    message: str


class ItemFailure(_KubeModel):
    index: Annotated[int, Field(ge=0)]
    asset: str | None = None
    reason: ReadReason
    message: str | None = None


class FailureCount(_KubeModel):
    """How many items failed for one reason, and which (compressed index ranges): exact
    and mergeable (a union per reason), whereas the examples in `failures` are a sample."""

    reason: str
    count: Annotated[int, Field(ge=0)]
    indexes: str | None = None

    def index_set(self) -> set[int]:
        return indexes.expand(self.indexes)


def _first(limit: int) -> BeforeValidator:
    """Read at most `limit` entries: an older controller's longer list still reads."""

    def cut(value: object) -> object:
        return value[:limit] if isinstance(value, list | tuple) else value

    return BeforeValidator(cut)


class IngestJobStatus(_KubeModel):
    """What the controller writes (kopf keeps its own bookkeeping in `status.kopf`)."""

    observed_generation: int | None = None
    phase: Annotated[Phase, BeforeValidator(_read_phase)] = Phase.PENDING
    version: str | None = None
    total: Annotated[int, Field(ge=0)] | None = None
    succeeded: Annotated[int, Field(ge=0)] | None = None
    failed: Annotated[int, Field(ge=0)] | None = None
    progress: str | None = None
    # Compressed index ranges ("0-811,813"); see succeeded_set/failed_set.
    succeeded_indexes: str | None = None
    failed_indexes: str | None = None
    # The first failures, as examples (at most crd.MAX_FAILURES_LISTED).
    failures: Annotated[tuple[ItemFailure, ...], _first(crd.MAX_FAILURES_LISTED)] = ()
    # Every failed item counted by reason (bounded by the number of reasons).
    failure_reasons: Annotated[tuple[FailureCount, ...], _first(MAX_FAILURE_REASONS)] = ()
    started_at: KubeTime | None = None
    completed_at: KubeTime | None = None
    duration: str | None = None
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> IngestJobStatus:
        """The status of a job object (an empty one before the controller wrote any)."""
        return cls.model_validate(body.get("status") or {})

    def succeeded_set(self) -> set[int]:
        """Raises ValueError on a malformed range list (see indexes.expand)."""
        return indexes.expand(self.succeeded_indexes)

    def failed_set(self) -> set[int]:
        return indexes.expand(self.failed_indexes)

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


class ObjectMeta(_KubeModel):
    """The part of Kubernetes' ObjectMeta the services use."""

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: KubeTime | None = None
    deletion_timestamp: KubeTime | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    finalizers: tuple[str, ...] = ()


class JobOutline(_KubeModel):
    """A job object without its items (see SpecOutline)."""

    api_version: str = crd.API_VERSION
    kind: str = crd.KIND
    metadata: ObjectMeta
    spec: SpecOutline
    status: IngestJobStatus = IngestJobStatus()

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> Self:
        """A job object as the apiserver (or kopf) gives it; raises InvalidSpec only for
        an object the apiserver would not have stored (see the module's note)."""
        try:
            return cls.model_validate(dict(body))
        except ValidationError as error:
            raise InvalidSpec(describe(error)) from error

    @property
    def ref(self) -> JobRef:
        meta = self.metadata
        return JobRef(namespace=meta.namespace or "", name=meta.name, uid=meta.uid or "")

    @property
    def version(self) -> str | None:
        """The version id in effect: the spec's, or the one the controller picked."""
        return self.spec.version or self.status.version


class IngestJob(JobOutline):
    spec: IngestJobSpec

    def to_body(self) -> dict[str, Any]:
        """The object to create: everything but the status, which is the controller's."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"status"})


def describe(error: ValidationError, limit: int = 3) -> str:
    """A validation error as "spec.items[1].asset: why; ...", the way kubectl names fields."""

    def path(location: tuple[int | str, ...]) -> str:
        text = ""
        for part in location:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text

    problems = [f"{path(e['loc'])}: {e['msg']}" for e in error.errors()[:limit]]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
