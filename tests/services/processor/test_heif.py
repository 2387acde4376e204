"""HEIC/HEIF and AVIF through the image pipeline, on files made with real encoders.

Orientation is checked on a picture with a blue block in its top-left corner as meant to
be seen: whatever the file stores and however it says to turn it, every derivative must
show the block top-left, turned once.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from emulsion_contracts.messages import StyleSpec
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_contracts.reasons import FailureReason
from emulsion_processor import heif, imaging
from emulsion_processor.errors import ItemRejected
from tests import phone_photos as photos

FIT = (StyleSpec(name="fit", width=4000, height=4000),)


def job(
    tmp_path: Path, data: bytes, styles: tuple[StyleSpec, ...] = FIT, **options: Any
) -> imaging.RenderJob:
    source = tmp_path / "source"
    source.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return imaging.RenderJob(source=source, out_dir=out, styles=styles, **options)


def render(tmp_path: Path, data: bytes, **options: Any) -> imaging.Rendered:
    return imaging.render(job(tmp_path, data, **options))


def output(rendered: imaging.Rendered, style: str = "fit") -> Image.Image:
    path = next(s.path for s in rendered.styles if s.style == style)
    with Image.open(path) as image:
        return image.convert("RGB")


def rejected(tmp_path: Path, data: bytes, **options: Any) -> ItemRejected:
    with pytest.raises(ItemRejected) as caught:
        render(tmp_path, data, **options)
    return caught.value


def close(actual: Any, expected: Any, tolerance: int = 12) -> bool:
    """Two RGB pixels within `tolerance` per channel (lossy codecs move colours a little)."""
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def shows_block_top_left(image: Image.Image) -> bool:
    width, height = image.size
    corners = {
        "top-left": image.getpixel((1, 1)),
        "top-right": image.getpixel((width - 2, 1)),
        "bottom-left": image.getpixel((1, height - 2)),
        "bottom-right": image.getpixel((width - 2, height - 2)),
    }
    blue = [name for name, pixel in corners.items() if close(pixel, photos.BLUE, 40)]
    return blue == ["top-left"]


# -- orientation -----------------------------------------------------------------------------

# A marked photo of even sides stored turned by an EXIF orientation, as the tests draw it.
TURNED_PHOTOS = {
    "width": st.integers(24, 120).map(lambda n: n * 2),
    "height": st.integers(24, 120).map(lambda n: n * 2),
    "orientation": st.integers(1, 8),
}
# Each example renders into the test's one tmp_path.
RENDERS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}


@settings(max_examples=24, **RENDERS)
@given(**TURNED_PHOTOS)
def test_an_iphone_style_heic_is_turned_once_by_its_transform_and_exif(
    tmp_path: Path, width: int, height: int, orientation: int
) -> None:
    # Like an iPhone's: the transform (irot/imir) and the same EXIF orientation.
    seen = photos.marked(width, height)
    data = photos.heic(photos.stored_for(seen, orientation), orientation=orientation)
    rendered = render(tmp_path, data)
    assert (rendered.format, rendered.content_type) == ("HEIF", "image/heic")
    assert (rendered.width, rendered.height) == (width, height)
    result = output(rendered)
    assert result.size == (width, height)
    assert shows_block_top_left(result), orientation


@settings(max_examples=16, **RENDERS)
@given(**TURNED_PHOTOS)
def test_an_avif_is_turned_once_by_its_transform(
    tmp_path: Path, width: int, height: int, orientation: int
) -> None:
    seen = photos.marked(width, height)
    rendered = render(
        tmp_path, photos.avif(photos.stored_for(seen, orientation), orientation=orientation)
    )
    assert (rendered.format, rendered.content_type) == ("AVIF", "image/avif")
    assert (rendered.width, rendered.height) == (width, height)
    assert shows_block_top_left(output(rendered)), orientation


def _set_exif_orientation(data: bytes, orientation: int) -> bytes:
    """The file with its EXIF orientation value rewritten in place (big-endian TIFF)."""
    entry = data.index(b"\x01\x12\x00\x03\x00\x00\x00\x01")  # tag 274, SHORT, count 1
    value = entry + 8
    return data[:value] + orientation.to_bytes(2, "big") + data[value + 2 :]


def test_a_heif_transform_is_honoured_when_the_exif_says_nothing(tmp_path: Path) -> None:
    seen = photos.marked(120, 80)
    data = _set_exif_orientation(photos.heic(photos.stored_for(seen, 6), orientation=6), 1)
    result = output(render(tmp_path, data))
    assert result.size == (120, 80)
    assert shows_block_top_left(result)


def test_an_exif_orientation_without_a_transform_is_not_applied(tmp_path: Path) -> None:
    # HEIF and MIAF make the transforms normative and Exif only descriptive, and browsers
    # and Apple's readers show such a file unturned: the derivatives match what they show.
    seen = photos.marked(120, 80)
    data = _set_exif_orientation(photos.heic(seen, orientation=1), 6)
    result = output(render(tmp_path, data))
    assert result.size == (120, 80)
    assert shows_block_top_left(result)


def test_a_grid_heic_like_an_iphones_decodes_whole(tmp_path: Path) -> None:
    seen = photos.marked(1200, 900)
    data = photos.heic(photos.stored_for(seen, 6), orientation=6, tile_size=512)
    rendered = render(tmp_path, data, styles=DEFAULT_PROFILE.styles)
    assert (rendered.width, rendered.height) == (1200, 900)
    assert shows_block_top_left(output(rendered, "large"))


# -- depth, colour, several images ----------------------------------------------------------------


@pytest.mark.parametrize("bits", [10, 12])
def test_a_high_depth_heic_becomes_8_bit_with_its_colours(tmp_path: Path, bits: int) -> None:
    data = photos.heic_high_depth(photos.marked(96, 64), bits)
    with Image.open(io.BytesIO(data)) as image:
        assert image.info["bit_depth"] == bits
    result = output(render(tmp_path, data))
    assert result.mode == "RGB"
    assert close(result.getpixel((90, 60)), photos.RED)
    assert shows_block_top_left(result)


@pytest.mark.parametrize("bits", [10, 12])
def test_a_high_depth_avif_becomes_8_bit_with_its_colours(tmp_path: Path, bits: int) -> None:
    result = output(render(tmp_path, photos.avif_high_depth(photos.marked(96, 64), bits)))
    assert result.mode == "RGB"
    assert close(result.getpixel((90, 60)), photos.RED)
    assert shows_block_top_left(result)


@pytest.mark.parametrize("encode", [photos.heic, photos.avif])
def test_a_display_p3_photo_is_converted_to_srgb(tmp_path: Path, encode: Any) -> None:
    icc = photos.display_p3_icc()
    colour = (200, 100, 50)
    data = encode(Image.new("RGB", (64, 64), colour), icc=icc)
    converted = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), colour),
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
    )
    assert converted is not None
    expected = converted.getpixel((0, 0))
    assert not close(expected, colour, 8)  # the conversion is visible
    assert close(output(render(tmp_path, data)).getpixel((32, 32)), expected, 6)


@pytest.mark.parametrize(("primaries", "transfer", "converted"), [(12, 13, True), (1, 13, False)])
def test_a_heic_in_p3_by_code_points_is_converted_too(
    tmp_path: Path, primaries: int, transfer: int, converted: bool
) -> None:
    # No ICC profile: the colours are H.273 code points (P3 primaries, sRGB's curve).
    colour = (200, 100, 50)
    data = photos.heic_nclx(Image.new("RGB", (64, 64), colour), primaries, transfer)
    with Image.open(io.BytesIO(data)) as image:
        assert "icc_profile" not in image.info
        assert image.info["nclx_profile"]["color_primaries"] == primaries
    # The test's own Display P3 profile (built with numpy) says where the colour goes.
    as_p3 = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), colour),
        ImageCms.ImageCmsProfile(io.BytesIO(photos.display_p3_icc())),
        ImageCms.createProfile("sRGB"),
    )
    assert as_p3 is not None
    expected = as_p3.getpixel((0, 0)) if converted else colour
    assert close(output(render(tmp_path, data)).getpixel((32, 32)), expected, 6)


def test_a_multi_image_heic_shows_its_primary_image_not_the_first(tmp_path: Path) -> None:
    first = Image.new("RGB", (64, 48), (0, 200, 0))
    primary = photos.marked(80, 120)
    rendered = render(tmp_path, photos.multi_image_heic([first, primary], primary=1))
    assert (rendered.width, rendered.height, rendered.frames) == (80, 120, 2)
    assert shows_block_top_left(output(rendered))


def test_an_embedded_thumbnail_is_never_used_instead_of_the_image(tmp_path: Path) -> None:
    data = photos.heic(photos.marked(640, 480), thumbnail=160)
    rendered = render(tmp_path, data, styles=(StyleSpec(name="fit", width=200, height=200),))
    assert (rendered.width, rendered.height) == (640, 480)
    with Image.open(tmp_path / "source") as image:
        assert image.info.get("thumbnails") == []  # not even read
        assert image.info.get("depth_images") == []


# -- animation and limits ------------------------------------------------------------------------


def test_an_animated_avif_shows_its_first_frame(tmp_path: Path) -> None:
    data = photos.animated_avif([(230, 20, 20), (20, 20, 230), (20, 230, 20)])
    rendered = render(tmp_path, data)
    assert rendered.frames == 3
    assert close(output(rendered).getpixel((10, 10)), (230, 20, 20))


def test_an_animated_avif_over_the_frame_limit_is_refused(tmp_path: Path) -> None:
    data = photos.animated_avif([(230, 20, 20), (20, 20, 230), (20, 230, 20)])
    problem = rejected(tmp_path, data, max_frames=2)
    assert problem.reason is FailureReason.TOO_MANY_FRAMES


@pytest.mark.parametrize("encode", [photos.heic, photos.avif])
def test_the_pixel_limit_holds(tmp_path: Path, encode: Any) -> None:
    problem = rejected(tmp_path, encode(photos.marked(200, 100)), max_pixels=200 * 100 - 1)
    assert problem.reason is FailureReason.DECOMPRESSION_BOMB


# -- damaged files -------------------------------------------------------------------------------


def test_a_heic_that_libheif_cannot_open_fails_as_corrupt_with_its_reason(tmp_path: Path) -> None:
    data = photos.heic(photos.marked(64, 48))
    problem = rejected(tmp_path, data[:40] + b"\xa5" * 200)  # ftyp intact, boxes garbage
    assert problem.reason is FailureReason.CORRUPT_IMAGE
    assert problem.message.startswith("the HEIC/HEIF file cannot be read (")
    assert "cannot identify" not in problem.message


def test_a_heic_with_damaged_image_data_fails_permanently(tmp_path: Path) -> None:
    data = bytearray(photos.heic(photos.marked(320, 240)))
    mdat = data.index(b"mdat") + 4
    data[mdat + 8 :] = b"\x00" * (len(data) - mdat - 8)  # headers intact, HEVC data zeroed
    problem = rejected(tmp_path, bytes(data))
    assert problem.reason is FailureReason.CORRUPT_IMAGE
    assert problem.message.startswith("cannot decode the image (Decoder plugin generated an error")


def test_a_truncated_heic_fails_permanently(tmp_path: Path) -> None:
    data = photos.heic(photos.marked(320, 240))
    problem = rejected(tmp_path, data[: len(data) // 2])
    assert problem.reason is FailureReason.TRUNCATED
    assert "end of file" in problem.message


@pytest.mark.parametrize(("brand", "name"), [(b"jxl ", "jxl"), (b"isom", "isom"), (b"crx ", "crx")])
def test_other_iso_media_is_unsupported_not_corrupt(
    tmp_path: Path, brand: bytes, name: str
) -> None:
    data = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"\x00" * 40
    problem = rejected(tmp_path, data)
    assert problem.reason is FailureReason.UNSUPPORTED_FORMAT
    assert name in problem.message


# -- memory: the estimate against the measured peak -----------------------------------

# The largest image the pixel limit allows (89,478,485 pixels: Pillow's own limit).
LARGEST_SIDE = 9459
assert LARGEST_SIDE**2 <= imaging.PILLOW_MAX_PIXELS < (LARGEST_SIDE + 1) ** 2

_MEASURE = """
import json, sys
from pathlib import Path
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_processor import imaging
source, out = Path(sys.argv[1]), Path(sys.argv[2])
job = imaging.RenderJob(source=source, out_dir=out, styles=DEFAULT_PROFILE.styles)
estimate = imaging.decode_cost(job)
def status(field):
    with open("/proc/self/status") as lines:
        return next(int(l.split()[1]) * 1024 for l in lines if l.startswith(field + ":"))
before = status("VmRSS")
rendered = imaging.render(job)
peak = status("VmHWM")
print(json.dumps({"estimate": estimate, "before": before, "peak": peak, "width": rendered.width}))
"""


def measured_render(source: Path, out: Path) -> dict[str, int]:
    """Render `source` in a fresh interpreter: its peak RSS is this render's, nothing else's.

    VmHWM, not ru_maxrss: Linux carries the parent's high-water mark over `exec` into
    ru_maxrss, and this test's parent has just held the whole picture.
    """
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures: dict[str, int] = json.loads(result.stdout)
    return figures


# Each case renders the largest allowed image in a process of its own to measure its peak
# (10-18 s): no server, but not pure logic in seconds either.
@pytest.mark.integration
@pytest.mark.parametrize(
    ("kind", "bits", "p3"),
    [("heic", 8, True), ("heic", 10, False), ("heic", 10, True), ("avif", 10, False)],
)
def test_the_largest_allowed_heic_renders_within_its_estimate(
    tmp_path: Path, kind: str, bits: int, p3: bool
) -> None:
    # A gradient encodes fast (x265 ultrafast, iPhone-like 512-pixel grid); the decoder's
    # memory depends on the size and depth, not the content.
    side = LARGEST_SIDE
    gradient = Image.linear_gradient("L").resize((side, side))
    picture = Image.merge(
        "RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90), gradient)
    )
    # An iPhone's Display P3 profile makes libheif take 10 bits to 8 through 16-bit RGB
    # (the worst case measured), and the render convert to sRGB (another full copy).
    icc = photos.display_p3_icc() if p3 else None
    if kind == "avif":
        data = photos.avif_high_depth(picture, bits)  # 4:4:4, the decoder's worst case
    elif bits == 8:
        data = photos.heic(picture, orientation=6, icc=icc, quality=30, tile_size=512)
    else:
        data = photos.heic_high_depth(picture, bits, tile_size=512, icc=icc)
    del picture, gradient
    source = tmp_path / f"largest.{kind}"
    source.write_bytes(data)
    figures = measured_render(source, tmp_path / "out")
    used = figures["peak"] - figures["before"]
    assert figures["width"] == side
    # Never under (admission would let two in that do not fit), and not wildly over
    # (the largest would then wait alone for memory it does not need).
    assert used <= figures["estimate"] < 2.5 * used, figures


def test_an_avif_costs_its_decoders_worst_case_and_a_heic_its_depth(tmp_path: Path) -> None:
    image = photos.marked(640, 480)
    decoded = imaging.stored_bytes("RGB", 640, 480)
    heic8 = imaging.decode_cost(job(tmp_path, photos.heic(image)))
    heic10 = imaging.decode_cost(job(tmp_path, photos.heic_high_depth(image)))
    avif8 = imaging.decode_cost(job(tmp_path, photos.avif(image)))
    assert heic8 >= decoded * imaging.PEAK_OVER_DECODED
    assert heic10 >= heic8
    # Pillow's AVIF reader tells no depth: 16-bit 4:4:4 planes and two handovers.
    assert avif8 >= decoded + 640 * 480 * (6 + 8)
    with Image.open(io.BytesIO(photos.heic_high_depth(image))) as opened:
        # 4:2:0 planes in 16 bits, libheif's 16-bit RGBA step and its 8-bit handover.
        assert heif.decoder_bytes(opened, 0) == 640 * 480 * (2 * 1.5 + 8 + 4)
