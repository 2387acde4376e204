"""A focal-point re-render's pure parts: whose original it may read, when the version it
was asked for is still live, and the manifest it commits (the original and the fitted
styles kept, the crops new). The whole path runs on the real stack in
tests/security/test_focal_point.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from emulsion_contracts import keys
from emulsion_contracts.formats import OutputFormat
from emulsion_contracts.manifest import AssetManifest, Original
from emulsion_contracts.messages import Derivative, FocalPoint, JobRef, StyleSpec, WorkItem
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_contracts.reasons import FailureReason
from emulsion_processor import imaging, outcomes, rerender, store
from emulsion_processor.errors import ItemRejected

JOB = JobRef(namespace="default", name="j", uid="u")
# The live version, an upload accepted after it, and the re-render accepted after both.
LIVE_VERSION = keys.version_id(keys.new_ulid(millis=1_800_000_000_000), 0)
UPLOAD_VERSION = keys.version_id(keys.new_ulid(millis=1_800_000_001_000), 0)
NEW_VERSION = keys.version_id(keys.new_ulid(millis=1_800_000_002_000), 0)
ORIGINAL = keys.original_key("c", "Café.jpg", LIVE_VERSION, "Cafe.jpg")


def live_manifest(focal: FocalPoint | None = None) -> AssetManifest:
    return AssetManifest(
        collection="c",
        asset="Café.jpg",
        version=LIVE_VERSION,
        job=JOB,
        index=0,
        original=Original(
            key=ORIGINAL,
            filename="Cafe.jpg",
            content_type="image/jpeg",
            bytes=10,
            width=900,
            height=300,
        ),
        derivatives=tuple(
            Derivative(
                style=style.name,
                key=keys.derivative_key("c", "Café.jpg", LIVE_VERSION, style.name, "jpg"),
                width=style.width,
                height=style.height,
                bytes=1,
                content_type="image/jpeg",
            )
            for style in DEFAULT_PROFILE.styles
        ),
        committed_at=datetime.now(UTC),
        focal_point=focal,
        profile="default",
    )


def item(source: str = ORIGINAL, asset: str = "Café.jpg", collection: str = "c") -> WorkItem:
    return WorkItem(
        job=JOB,
        index=0,
        source=source,
        collection=collection,
        asset=asset,
        version=NEW_VERSION,
        focal_point=FocalPoint(x=0.9, y=0.5),
    )


def test_a_work_item_re_renders_when_its_source_is_an_original() -> None:
    assert item().rerender
    upload = keys.staging_key("c", keys.new_ulid(), "x.jpg")
    assert not item(source=upload).rerender
    with pytest.raises(ValidationError):
        item(source="originals/c/x.jpg")  # not the layout of an original


@pytest.mark.parametrize(("collection", "asset"), [("other", "Café.jpg"), ("c", "Other.jpg")])
def test_only_an_original_of_the_items_own_asset_may_be_read(collection: str, asset: str) -> None:
    rerender.check_source(item())
    with pytest.raises(ItemRejected) as refused:
        rerender.check_source(item(collection=collection, asset=asset))
    assert refused.value.reason is FailureReason.UPLOAD_NOT_IN_COLLECTION


def test_the_version_asked_for_must_still_be_live() -> None:
    live = live_manifest()
    assert rerender.live_manifest(store.Current(live, '"e"'), item()) == live
    assert rerender.live_manifest(None, item()) is None
    tombstone = AssetManifest.tombstone("c", "Café.jpg", datetime.now(UTC))
    assert rerender.live_manifest(store.Current(tombstone, '"e"'), item()) is None
    newer = live.model_copy(
        update={
            "original_or_none": live.original.model_copy(
                update={"key": keys.original_key("c", "Café.jpg", UPLOAD_VERSION, "Cafe.jpg")}
            )
        }
    )
    assert rerender.live_manifest(store.Current(newer, '"e"'), item()) is None


def rendered_crops(tmp_path: Path) -> tuple[Derivative, ...]:
    """The crop styles' manifest entries as the worker makes them from a render; `thumb`
    in two formats (AVIF with a JPEG fallback), the others in one."""
    crops = rerender.crop_styles(DEFAULT_PROFILE.styles)
    assert [s.name for s in crops] == ["thumb", "tiny", "really_tiny"]
    outputs = []
    for style in crops:
        formats: tuple[OutputFormat, ...] = ("avif", "jpeg") if style.name == "thumb" else ("jpeg",)
        files = tuple(
            imaging.RenderedFile(
                output_format,
                tmp_path / f"{style.name}.{output_format}",
                "jpg" if output_format == "jpeg" else output_format,
                f"image/{output_format}",
                2,
            )
            for output_format in formats
        )
        first = files[0]
        outputs.append(
            imaging.RenderedStyle(
                style.name,
                first.path,
                first.extension,
                first.content_type,
                style.width,
                style.height,
                first.bytes,
                files,
            )
        )
    return tuple(outcomes.derivative(item(), output) for output in outputs)


def test_the_new_manifest_keeps_the_original_and_the_fitted_styles_and_replaces_the_crops(
    tmp_path: Path,
) -> None:
    live = live_manifest()
    made = rerender.build_manifest(item(), live, rendered_crops(tmp_path))
    assert made.version == NEW_VERSION
    assert made.original == live.original
    assert made.focal_point == FocalPoint(x=0.9, y=0.5)
    assert [d.style for d in made.derivatives] == [d.style for d in live.derivatives]
    old = {d.style: d.key for d in live.derivatives}
    new = {d.style: d.key for d in made.derivatives}
    assert {s for s in new if new[s] == old[s]} == {"large", "medium"}
    assert all(NEW_VERSION in new[s] for s in ("thumb", "tiny", "really_tiny"))
    [thumb] = [d for d in made.derivatives if d.style == "thumb"]
    assert [r.format for r in thumb.all_renderings()] == ["avif", "jpeg"]
    assert all(NEW_VERSION in r.key for r in thumb.all_renderings())
    # What goes to the janitor: exactly the old crops.
    assert live.live_keys() - made.live_keys() == {
        old["thumb"],
        old["tiny"],
        old["really_tiny"],
    }


def test_an_upload_keeps_the_live_focal_point_unless_its_item_has_one() -> None:
    upload = keys.staging_key("c", keys.new_ulid(), "x.jpg")
    plain = item(source=upload).model_copy(update={"focal_point": None})
    point = FocalPoint(x=0.1, y=0.2)
    assert outcomes.focal_point(plain, store.Current(live_manifest(point), '"e"')) == point
    assert outcomes.focal_point(plain, None) is None
    own = item(source=upload)
    assert outcomes.focal_point(own, store.Current(live_manifest(point), '"e"')) == own.focal_point


def test_gravity_is_for_crops_only() -> None:
    StyleSpec(name="a", width=1, height=1, fit="crop", gravity="faces")
    with pytest.raises(ValidationError, match="gravity applies to fit 'crop' only"):
        StyleSpec(name="a", width=1, height=1, gravity="smart")
    # Unset, it is not written: a processor that predates gravity reads the style.
    assert "gravity" not in StyleSpec(name="a", width=1, height=1).model_dump(exclude_none=True)
