"""Styles with several output formats (`formats: [avif, webp, jpeg]`): each rendering
made from the same pixels, at the quality chosen by `make bench-formats`, with no
metadata; their keys and the manifest's list of them."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageCms
from pydantic import ValidationError

from emulsion_contracts import keys
from emulsion_contracts.formats import EQUAL_QUALITY, OUTPUT_CONTENT_TYPES, OutputFormat
from emulsion_contracts.messages import JobRef, StyleSpec, WorkItem
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_processor import imaging, outcomes

PIL_NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}
EVERY: tuple[OutputFormat, ...] = ("avif", "webp", "jpeg")


def photo(size: tuple[int, int] = (1200, 900), mode: str = "RGB") -> Image.Image:
    gradient = Image.linear_gradient("L").resize(size)
    if mode == "L":
        return gradient
    bands = [gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(90)]
    image = Image.merge("RGB", bands)
    if mode == "RGBA":
        image.putalpha(gradient.transpose(Image.Transpose.FLIP_TOP_BOTTOM))
    return image


def render(
    tmp_path: Path, image: Image.Image, styles: tuple[StyleSpec, ...], **exif: int
) -> imaging.Rendered:
    source = tmp_path / "source"
    options: dict[str, object] = {}
    if exif:
        tags = Image.Exif()
        for tag, value in exif.items():
            tags[{"orientation": 0x0112, "make": 0x010F}[tag]] = value
        options["exif"] = tags
    image.save(source, "PNG" if image.mode == "RGBA" else "JPEG", **options)
    out = tmp_path / "out"
    out.mkdir()
    return imaging.render(imaging.RenderJob(source=source, out_dir=out, styles=styles))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_every_format_of_a_style_is_written_in_order_at_the_same_size(
    tmp_path: Path, mode: str
) -> None:
    styles = (
        StyleSpec(name="large", width=800, height=800, formats=EVERY),
        StyleSpec(name="thumb", width=100, height=100, fit="crop", formats=("webp", "jpeg")),
        StyleSpec(name="tiny", width=50, height=50, fit="crop"),
    )
    rendered = render(tmp_path, photo(mode=mode), styles)
    made = {style.style: style for style in rendered.styles}
    assert [f.format for f in made["large"].files] == list(EVERY)
    assert [f.format for f in made["thumb"].files] == ["webp", "jpeg"]
    assert [f.format for f in made["tiny"].files] == ["jpeg"]
    for style in rendered.styles:
        first = style.files[0]
        assert (style.path, style.content_type, style.bytes) == (
            first.path,
            first.content_type,
            first.bytes,
        )
        for file in style.files:
            assert file.path.name == f"{style.style}.{keys.FORMAT_EXTENSIONS[file.format]}"
            assert file.content_type == OUTPUT_CONTENT_TYPES[file.format]
            assert file.bytes == file.path.stat().st_size
            with Image.open(file.path) as image:
                assert image.format == PIL_NAMES[file.format]
                assert image.size == (style.width, style.height)
                # JPEG has no alpha (flattened onto white); AVIF and WebP keep it.
                assert ("A" in image.mode) == (mode == "RGBA" and file.format != "jpeg")


def test_avif_and_webp_take_the_measured_equal_quality_unless_the_style_says(
    tmp_path: Path,
) -> None:
    default = StyleSpec(name="large", width=800, height=800, formats=("avif", "webp", "jpeg"))
    assert default.quality_for("avif", 82) == EQUAL_QUALITY["avif"]
    assert default.quality_for("webp", 82) == EQUAL_QUALITY["webp"]
    assert default.quality_for("jpeg", 82) == 82
    lower = default.model_copy(update={"qualities": {"avif": 20}, "quality": 90})
    assert lower.quality_for("avif", 82) == 20
    assert lower.quality_for("jpeg", 82) == 90
    # A single-format style keeps today's meaning: its quality whatever the format.
    assert StyleSpec(name="x", width=1, height=1, format="webp").quality_for("webp", 70) == 70
    bytes_at = {}
    for number, style in enumerate((default, lower)):
        directory = tmp_path / str(number)
        directory.mkdir()
        (made,) = render(directory, photo(), (style,)).styles
        bytes_at[style.qualities is None] = {f.format: f.bytes for f in made.files}
    assert bytes_at[False]["avif"] < bytes_at[True]["avif"]


@pytest.mark.parametrize(
    "bad",
    [
        {"format": "jpeg", "formats": ["avif", "jpeg"]},
        {"formats": ["avif", "avif"]},
        {"formats": []},
        {"formats": ["avif", "webp", "jpeg", "png", "jpeg"]},
        {"formats": ["avif", "jpeg"], "qualities": {"webp": 80}},
        {"formats": ["gif"]},
        {"qualities": {"avif": 50}},
    ],
)
def test_a_style_says_its_formats_one_way(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        StyleSpec.model_validate({"name": "s", "width": 10, "height": 10, **bad})


def test_no_rendering_carries_metadata(tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = tmp_path / "source.jpg"
    exif = Image.Exif()
    exif[0x010F] = "SecretCamera"
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)
    photo().save(source, "JPEG", exif=exif, icc_profile=icc, xmp=b"<x:xmpmeta>secret</x:xmpmeta>")
    out = tmp_path / "out"
    out.mkdir()
    styles = (StyleSpec(name="large", width=400, height=400, formats=EVERY),)
    rendered = imaging.render(imaging.RenderJob(source=source, out_dir=out, styles=styles))
    for file in rendered.styles[0].files:
        raw = file.path.read_bytes()
        assert b"SecretCamera" not in raw and b"secret" not in raw
        with Image.open(io.BytesIO(raw)) as image:
            assert not image.getexif()
            assert not image.info.get("xmp")


def item(styles: tuple[StyleSpec, ...]) -> WorkItem:
    return WorkItem(
        job=JobRef(namespace="default", name="j", uid="u"),
        index=4,
        source=f"staging/c1/{keys.new_ulid()}/IMG_1.jpg",
        collection="c1",
        asset="IMG 1.jpg",
        version=keys.version_id(keys.new_ulid(), 4),
        styles=styles,
    )


def test_every_rendering_has_a_planned_key_and_a_manifest_entry(tmp_path: Path) -> None:
    styles = (
        StyleSpec(name="large", width=800, height=800, formats=EVERY),
        StyleSpec(name="thumb", width=100, height=100, fit="crop"),
    )
    work = item(styles)
    rendered = render(tmp_path, photo(), styles)
    manifest = outcomes.build_manifest(work, rendered, 123)
    large, thumb = manifest.derivatives
    assert [r.format for r in large.renderings] == list(EVERY)
    assert large.key == large.renderings[0].key and large.content_type == "image/avif"
    assert thumb.renderings == () and thumb.key.endswith("/thumb.jpg")
    assert set(outcomes.planned_keys(work, DEFAULT_PROFILE, styles)) == manifest.live_keys()
    for rendering in large.renderings:
        parsed = keys.parse_key(rendering.key)
        assert parsed is not None
        assert (parsed.area, parsed.asset, parsed.name) == (
            "derivatives",
            "IMG 1.jpg",
            f"large.{keys.FORMAT_EXTENSIONS[rendering.format]}",
        )
    # A single-format style's entry is what it always was: no `renderings` in the bytes.
    assert b'"renderings"' not in thumb.model_dump_json().encode()
    assert manifest.from_bytes(manifest.to_bytes()) == manifest


def test_the_admission_counts_the_avif_encoder(tmp_path: Path) -> None:
    source = tmp_path / "source.jpg"
    photo((2400, 1800)).save(source, "JPEG")
    jpeg = (StyleSpec(name="large", width=1600, height=1600),)
    avif = (StyleSpec(name="large", width=1600, height=1600, formats=("avif", "jpeg")),)

    def cost(styles: tuple[StyleSpec, ...]) -> int:
        return imaging.decode_cost(
            imaging.RenderJob(source=source, out_dir=tmp_path, styles=styles)
        )

    extra = cost(avif) - cost(jpeg)
    assert extra == imaging.AVIF_ENCODER_FIXED + imaging.AVIF_ENCODER_PER_PIXEL * 1600 * 1200


# Integration, not `make unit`: measures a process of its own (see tests/conftest.py).
@pytest.mark.integration
def test_the_avif_encoder_takes_no_more_memory_than_the_admission_counts(
    tmp_path: Path,
) -> None:
    # Measured in a fresh process: the peak RSS an AVIF encode adds over the frame.
    script = f"""
import io, resource
from PIL import Image
from emulsion_processor import imaging
image = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
noise = Image.effect_noise((1600, 1200), 60)
image = Image.merge("RGB", [image.getchannel(0), noise, image.getchannel(2)])
image.save(io.BytesIO(), "JPEG")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
imaging.encode(image, __import__("pathlib").Path({str(tmp_path / "x.avif")!r}), "avif", 67)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    measured = int(result.stdout.strip())
    assert measured <= imaging.AVIF_ENCODER_FIXED + imaging.AVIF_ENCODER_PER_PIXEL * 1600 * 1200
