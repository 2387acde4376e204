"""What an item makes, as data: the keys it writes, the manifest it commits and the
result that reports it. Built from the item and its renderings alone (no I/O), so a
redelivery builds the same keys and manifest again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest, Original, PhotoMetadata, Placeholder
from emulsion_contracts.messages import (
    Derivative,
    FocalPoint,
    ItemResult,
    Rendering,
    StyleSpec,
    WorkItem,
)
from emulsion_contracts.profiles import Profile
from emulsion_processor import imaging, store
from emulsion_runtime import storage


def planned_keys(
    item: WorkItem, profile: Profile, styles: tuple[StyleSpec, ...]
) -> tuple[str, ...]:
    """Every key this item writes, known before any work: keys embed only the item's data."""
    original = keys.original_key(
        item.collection, item.asset, item.version, source_filename(item.source)
    )
    derivatives = (
        keys.rendering_key(item.collection, item.asset, item.version, style.name, output_format)
        for style in styles
        for output_format in style.output_formats(profile.format)
    )
    return tuple(sorted({original, *derivatives}))


def source_filename(source: str) -> str:
    return keys.safe_name(source.rsplit("/", 1)[-1])


def focal_point(item: WorkItem, read: store.Current | None) -> FocalPoint | None:
    """An upload's focal point: the item's, else the live manifest's (set through the API
    on the version this upload replaces: a new photo of the asset keeps it)."""
    if item.focal_point is not None:
        return item.focal_point
    if read is None or read.manifest is None:
        return None
    return read.manifest.focal_point


def build_manifest(
    item: WorkItem,
    rendered: imaging.Rendered,
    source_bytes: int,
    focal: FocalPoint | None = None,
    source: store.Downloaded | None = None,
) -> AssetManifest:
    """The upload's manifest; `source` (the downloaded upload) gives the name the client
    uploaded it as (recorded by its form) and the SHA-256 of its bytes."""
    filename = source_filename(item.source)
    original = Original(
        key=keys.original_key(item.collection, item.asset, item.version, filename),
        filename=filename,
        content_type=rendered.content_type,
        bytes=source_bytes,
        width=rendered.width,
        height=rendered.height,
        uploaded_name=uploaded_name(source),
        sha256=(source.sha256 or None) if source is not None else None,
    )
    derivatives = tuple(derivative(item, output) for output in rendered.styles)
    return manifest_at(
        item,
        original,
        derivatives,
        focal=focal,
        profile=item.profile,
        metadata=rendered.metadata,
        placeholder=rendered.placeholder,
    )


def uploaded_name(source: store.Downloaded | None) -> str | None:
    """The file name the upload's form recorded (Unicode, as the client gave it)."""
    if source is None:
        return None
    return storage.decode_filename(source.metadata.get(storage.UPLOAD_FILENAME_METADATA))


def manifest_at(
    item: WorkItem,
    original: Original,
    derivatives: tuple[Derivative, ...],
    *,
    focal: FocalPoint | None,
    profile: str | None,
    metadata: PhotoMetadata | None,
    placeholder: Placeholder | None,
) -> AssetManifest:
    """A manifest of the item's version, committed by this item (an upload's or a
    re-render's: they differ in the original, the derivatives and the profile)."""
    return AssetManifest(
        collection=item.collection,
        asset=item.asset,
        version=item.version,
        job=item.job,
        index=item.index,
        original=original,
        derivatives=derivatives,
        committed_at=datetime.now(UTC),
        focal_point=focal,
        profile=profile,
        metadata=metadata,
        placeholder=placeholder,
    )


def derivative(item: WorkItem, output: imaging.RenderedStyle) -> Derivative:
    """A style's manifest entry; a style with several formats lists each rendering."""
    renderings = tuple(
        Rendering(
            format=file.format,
            key=keys.rendering_key(
                item.collection, item.asset, item.version, output.style, file.format
            ),
            bytes=file.bytes,
            content_type=file.content_type,
        )
        for file in output.files
    )
    return Derivative(
        style=output.style,
        key=keys.derivative_key(
            item.collection, item.asset, item.version, output.style, output.extension
        ),
        width=output.width,
        height=output.height,
        bytes=output.bytes,
        content_type=output.content_type,
        renderings=renderings if len(renderings) > 1 else (),
    )


def renderings(
    rendered: imaging.Rendered, derivatives: tuple[Derivative, ...]
) -> Iterator[tuple[imaging.RenderedFile, Rendering]]:
    """Each rendered file with its manifest entry (whose key it is stored under)."""
    for output, entry in zip(rendered.styles, derivatives, strict=True):
        yield from zip(output.files, entry.all_renderings(), strict=True)


def finished(
    item: WorkItem, outcome: store.Outcome, manifest: AssetManifest | None, attempt: int
) -> ItemResult:
    """The succeeded result: this item's version is live (or lost, fairly, to a later one)."""
    if outcome is store.Outcome.STALE or manifest is None:
        live = manifest.version if manifest else "a later version"
        return ItemResult(
            job=item.job,
            index=item.index,
            outcome="succeeded",
            message=f"not made live: {live} of the asset is from a later job",
            collection=item.collection,
            asset=item.asset,
            version=item.version,
            committed=False,
            attempts=attempt,
            finished_at=datetime.now(UTC),
        )
    return ItemResult(
        job=item.job,
        index=item.index,
        outcome="succeeded",
        collection=item.collection,
        asset=item.asset,
        version=item.version,
        original=manifest.original.key,
        width=manifest.original.width,
        height=manifest.original.height,
        outputs=manifest.derivatives,
        committed=True,
        attempts=attempt,
        finished_at=datetime.now(UTC),
    )
