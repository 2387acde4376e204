"""The image pipeline on generated images: exact sizes, orientation, colour, limits, bad input."""

from __future__ import annotations

import errno
import io
import math
import struct
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from emulsion_contracts.messages import StyleSpec
from emulsion_contracts.profiles import DEFAULT_PROFILE, Watermark
from emulsion_contracts.reasons import FailureReason
from emulsion_processor import imaging
from emulsion_processor.reasons import ItemRejected, TransientTrouble

RED = (255, 0, 0)
BLUE = (0, 0, 255)
DEFAULT_SIZES_3_2 = {
    "large": (800, 533),
    "medium": (300, 200),
    "thumb": (100, 100),
    "tiny": (50, 50),
    "really_tiny": (25, 25),
}


def render(
    tmp_path: Path,
    data: bytes,
    *,
    name: str = "source",
    styles: tuple[StyleSpec, ...] = DEFAULT_PROFILE.styles,
    **options: Any,
) -> imaging.Rendered:
    source = tmp_path / name
    source.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    job = imaging.RenderJob(source=source, out_dir=out, styles=styles, **options)
    return imaging.render(job)


def rejected(tmp_path: Path, data: bytes, **options: Any) -> ItemRejected:
    with pytest.raises(ItemRejected) as caught:
        render(tmp_path, data, **options)
    return caught.value


def encoded(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def sizes(rendered: imaging.Rendered) -> dict[str, tuple[int, int]]:
    found = {}
    for output in rendered.styles:
        with Image.open(output.path) as image:
            assert image.size == (output.width, output.height)
            found[output.style] = image.size
    return found


def opened(rendered: imaging.Rendered, style: str) -> Image.Image:
    output = next(o for o in rendered.styles if o.style == style)
    image = Image.open(output.path)
    image.load()
    return image


def close(pixel: object, expected: tuple[int, ...], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


# -- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "width", "height", "expected"),
    [
        (StyleSpec(name="s", width=800, height=800), 4000, 3000, (800, 600)),
        (StyleSpec(name="s", width=800, height=800), 3000, 4000, (600, 800)),
        (StyleSpec(name="s", width=800, height=800), 640, 480, (640, 480)),  # never enlarged
        (StyleSpec(name="s", width=300, height=300), 4000, 1, (300, 1)),  # never zero
        (StyleSpec(name="s", width=100, height=100, fit="crop"), 4000, 3000, (100, 100)),
        (StyleSpec(name="s", width=100, height=100, fit="crop"), 20, 10, (100, 100)),
    ],
)
def test_target_size(style: StyleSpec, width: int, height: int, expected: tuple[int, int]) -> None:
    assert imaging.target_size(style, width, height) == expected


def test_a_12_megapixel_jpeg_gets_the_seed_styles_at_exact_sizes(tmp_path: Path) -> None:
    data = encoded(Image.linear_gradient("L").resize((4032, 3024)).convert("RGB"), "JPEG")
    rendered = render(tmp_path, data)
    assert (rendered.width, rendered.height, rendered.format) == (4032, 3024, "JPEG")
    assert sizes(rendered) == {
        "large": (800, 600),
        "medium": (300, 225),
        "thumb": (100, 100),
        "tiny": (50, 50),
        "really_tiny": (25, 25),
    }
    assert all(o.content_type == "image/jpeg" and o.extension == "jpg" for o in rendered.styles)
    assert rendered.timings[0].name == "decode"


def displayed_with_red_corner(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 4, height // 4))
    return image


# The stored image that EXIF orientation N turns into the displayed one (the inverse of
# the transform a viewer applies).
STORED_FOR = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    displayed = displayed_with_red_corner(1800, 1200)
    method = STORED_FOR[orientation]
    stored = displayed if method is None else displayed.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    rendered = render(tmp_path, encoded(stored, "JPEG", exif=exif, quality=95))
    assert (rendered.width, rendered.height) == (1800, 1200)
    assert sizes(rendered) == DEFAULT_SIZES_3_2
    large = opened(rendered, "large")
    assert close(large.getpixel((5, 5)), RED)
    assert close(large.getpixel((795, 528)), BLUE)
    assert close(opened(rendered, "thumb").getpixel((2, 2)), RED)
    assert not large.getexif()


def test_cmyk_jpeg_becomes_srgb(tmp_path: Path) -> None:
    data = encoded(Image.new("CMYK", (1200, 900), (0, 255, 255, 0)), "JPEG", quality=95)
    rendered = render(tmp_path, data)
    assert sizes(rendered)["large"] == (800, 600)
    large = opened(rendered, "large")
    assert large.mode == "RGB"
    assert close(large.getpixel((400, 300)), RED)


def test_cmyk_jpeg_with_an_icc_profile_is_converted_through_it(tmp_path: Path) -> None:
    # A non-sRGB RGB profile (LAB's D50 white is not sRGB's): its pixels go through LittleCMS.
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    icc = profile.tobytes()
    data = encoded(Image.new("RGB", (900, 600), RED), "JPEG", quality=95, icc_profile=icc)
    rendered = render(tmp_path, data)
    large = opened(rendered, "large")
    assert "icc_profile" not in large.info
    assert close(large.getpixel((10, 10)), RED)


def test_sixteen_bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    data = encoded(Image.new("I;16", (640, 480), 40000), "PNG")
    rendered = render(tmp_path, data)
    assert sizes(rendered) == {
        "large": (640, 480),
        "medium": (300, 225),
        "thumb": (100, 100),
        "tiny": (50, 50),
        "really_tiny": (25, 25),
    }
    large = opened(rendered, "large")
    assert large.mode == "L"
    value = large.getpixel((320, 240))
    assert isinstance(value, int)
    assert abs(value - 40000 // 256) <= 3


def palette_with_transparent_half() -> Image.Image:
    image = Image.new("P", (600, 400), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (300, 0, 600, 400))
    image.info["transparency"] = 1
    return image


def test_palette_png_keeps_its_transparency_as_png(tmp_path: Path) -> None:
    rendered = render(tmp_path, encoded(palette_with_transparent_half(), "PNG"), format="png")
    assert sizes(rendered) == {
        "large": (600, 400),
        "medium": (300, 200),
        "thumb": (100, 100),
        "tiny": (50, 50),
        "really_tiny": (25, 25),
    }
    large = opened(rendered, "large")
    assert large.mode == "RGBA"
    assert close(large.getpixel((10, 10)), (255, 0, 0, 255))
    pixel = large.getpixel((590, 390))
    assert isinstance(pixel, tuple)
    assert pixel[3] == 0
    assert all(o.content_type == "image/png" for o in rendered.styles)


def test_transparency_is_flattened_onto_white_for_jpeg(tmp_path: Path) -> None:
    rendered = render(tmp_path, encoded(palette_with_transparent_half(), "PNG"))
    large = opened(rendered, "large")
    assert large.mode == "RGB"
    assert close(large.getpixel((10, 10)), RED)
    assert close(large.getpixel((590, 390)), (255, 255, 255))


def test_grayscale_jpeg_stays_grayscale(tmp_path: Path) -> None:
    data = encoded(Image.new("L", (1000, 500), 77), "JPEG")
    rendered = render(tmp_path, data)
    assert sizes(rendered)["large"] == (800, 400)
    assert sizes(rendered)["medium"] == (300, 150)
    assert opened(rendered, "large").mode == "L"


def animated_gif(frames: int, size: tuple[int, int] = (200, 100)) -> bytes:
    colours = [RED, BLUE, (0, 255, 0)]
    images = [Image.new("RGB", size, colours[i % 3]) for i in range(frames)]
    return encoded(images[0], "GIF", save_all=True, append_images=images[1:], duration=50)


def test_animated_gif_uses_its_first_frame(tmp_path: Path) -> None:
    rendered = render(tmp_path, animated_gif(3))
    assert rendered.frames == 3
    assert rendered.format == "GIF"
    assert sizes(rendered) == {
        "large": (200, 100),
        "medium": (200, 100),
        "thumb": (100, 100),
        "tiny": (50, 50),
        "really_tiny": (25, 25),
    }
    assert close(opened(rendered, "large").getpixel((100, 50)), RED)


def test_webp_is_accepted_and_can_be_the_output_format(tmp_path: Path) -> None:
    data = encoded(Image.new("RGB", (900, 300), BLUE), "WEBP")
    styles = (StyleSpec(name="large", width=300, height=300, format="webp", quality=70),)
    rendered = render(tmp_path, data, styles=styles)
    assert sizes(rendered) == {"large": (300, 100)}
    assert rendered.styles[0].content_type == "image/webp"
    assert rendered.styles[0].path.name == "large.webp"


def test_metadata_is_stripped_from_derivatives(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCamera"  # Make
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret</x:xmpmeta>'
    data = encoded(
        Image.new("RGB", (1000, 1000), BLUE), "JPEG", exif=exif, xmp=xmp, comment=b"secret"
    )
    rendered = render(tmp_path, data)
    for output in rendered.styles:
        raw = output.path.read_bytes()
        assert b"SecretCamera" not in raw
        assert b"secret" not in raw
        with Image.open(output.path) as image:
            assert not image.getexif()
            assert "exif" not in image.info


@pytest.mark.parametrize("source_format", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("output", ["jpeg", "png", "webp"])
def test_no_derivative_of_any_format_carries_gps_or_other_metadata(
    tmp_path: Path, source_format: str, output: str
) -> None:
    # docs/images.md promises "derivatives: no metadata at all" whatever a profile strips
    # from the original: every source container, every output encoder.
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: applied to the pixels, then gone
    exif[0x010F] = "SecretCamera"  # Make
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(
        Image.new("RGB", (400, 300), BLUE),
        source_format,
        exif=exif,
        icc_profile=icc,
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret</x:xmpmeta>',
    )
    styles = (StyleSpec(name="large", width=200, height=200, format=output),)  # type: ignore[arg-type]
    (style,) = render(tmp_path, data, styles=styles).styles
    raw = style.path.read_bytes()
    assert b"SecretCamera" not in raw and b"secret" not in raw
    with Image.open(style.path) as image:
        image.load()
        assert image.size == (150, 200)  # upright
        assert not image.getexif()
        assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp"} & set(image.info)


def test_watermark_marks_only_the_chosen_styles(tmp_path: Path) -> None:
    data = encoded(Image.new("RGB", (1000, 1000), (0, 0, 0)), "PNG")
    styles = (
        StyleSpec(name="marked", width=400, height=400, format="png", watermark=True),
        StyleSpec(name="plain", width=400, height=400, format="png"),
    )
    mark = Watermark(text="EMULSION", position="center", opacity=1.0)
    rendered = render(tmp_path, data, styles=styles, watermark=mark)
    marked = opened(rendered, "marked").convert("L")
    plain = opened(rendered, "plain").convert("L")
    assert marked.size == plain.size == (400, 400)
    brightest = marked.getextrema()[1]
    assert isinstance(brightest, int) and brightest > 200  # white text on black
    assert plain.getextrema() == (0, 0)


def test_image_watermark_is_blended_in(tmp_path: Path) -> None:
    data = encoded(Image.new("RGB", (800, 800), (0, 0, 0)), "PNG")
    mark_path = tmp_path / "mark.png"
    Image.new("RGBA", (100, 100), (255, 255, 255, 255)).save(mark_path)
    styles = (StyleSpec(name="marked", width=400, height=400, format="png", watermark=True),)
    mark = Watermark(image_key="assets/mark.png", position="bottom-right", opacity=0.5)
    rendered = render(tmp_path, data, styles=styles, watermark=mark, watermark_image=mark_path)
    marked = opened(rendered, "marked").convert("L")
    corner = marked.getpixel((380, 380))
    assert isinstance(corner, int)
    assert 100 < corner < 160  # half-opaque white on black
    assert marked.getpixel((10, 10)) == 0


# -- refused input ----------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_huge_dimensions_in_a_tiny_png_are_a_decompression_bomb(tmp_path: Path) -> None:
    data = png_header_only(100_000, 100_000)
    assert len(data) < 200
    problem = rejected(tmp_path, data)
    assert problem.reason is FailureReason.DECOMPRESSION_BOMB
    assert "10000000000 pixels" in problem.message


def test_the_pixel_limit_is_configurable(tmp_path: Path) -> None:
    data = encoded(Image.new("RGB", (1000, 1000)), "JPEG")
    assert rejected(tmp_path, data, max_pixels=999_999).reason is FailureReason.DECOMPRESSION_BOMB
    assert render(tmp_path, data, max_pixels=1_000_000).width == 1000


def test_huge_gif_canvas_is_a_decompression_bomb(tmp_path: Path) -> None:
    gif = (
        b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00"
        b",\x00\x00\x00\x00" + struct.pack("<HH", 65535, 65535) + b"\x00\x02\x02D\x01\x00;"
    )
    assert rejected(tmp_path, gif).reason is FailureReason.DECOMPRESSION_BOMB


def test_too_many_frames(tmp_path: Path) -> None:
    problem = rejected(tmp_path, animated_gif(5), max_frames=4)
    assert problem.reason is FailureReason.TOO_MANY_FRAMES
    assert "5 frames" in problem.message


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = encoded(Image.effect_noise((1200, 800), 64).convert("RGB"), "JPEG")
    assert rejected(tmp_path, data[: len(data) * 2 // 3]).reason is FailureReason.TRUNCATED


def test_text_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    problem = rejected(tmp_path, b"hello, I am a text file\n" * 20, name="photo.jpg")
    assert problem.reason is FailureReason.NOT_AN_IMAGE


def test_zero_bytes(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"").reason is FailureReason.EMPTY_FILE


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "EPS"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "PSD"),
        (b"SIMPLE  =                    T" + b" " * 50, "FITS"),
    ],
)
def test_formats_outside_the_allow_list_are_unsupported(
    tmp_path: Path, data: bytes, name: str
) -> None:
    problem = rejected(tmp_path, data)
    assert problem.reason is FailureReason.UNSUPPORTED_FORMAT
    assert name in problem.message


def test_a_real_tiff_is_unsupported(tmp_path: Path) -> None:
    problem = rejected(tmp_path, encoded(Image.new("RGB", (10, 10)), "TIFF"))
    assert problem.reason is FailureReason.UNSUPPORTED_FORMAT


def test_rejections_survive_pickling_for_process_pools() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(ItemRejected(FailureReason.TRUNCATED, "ends early")))  # noqa: S301 - our own bytes
    assert (copy.reason, copy.message) == (FailureReason.TRUNCATED, "ends early")


# -- crop geometry ---------------------------------------------------------------------------


def test_a_3700x2400_rgba_png_gets_every_crop_style(tmp_path: Path) -> None:
    # A real wallpaper's size: the centre-crop box once came out at -1.4e-14 in floats.
    data = encoded(Image.new("RGBA", (3700, 2400), (10, 120, 200, 255)), "PNG")
    rendered = render(tmp_path, data)
    assert sizes(rendered) == {
        "large": (800, 519),
        "medium": (300, 195),
        "thumb": (100, 100),
        "tiny": (50, 50),
        "really_tiny": (25, 25),
    }


BUILT_IN_STYLES = tuple(DEFAULT_PROFILE.styles)  # every style of every built-in profile
any_style = st.builds(
    StyleSpec,
    name=st.just("s"),
    width=st.integers(1, 8192),
    height=st.integers(1, 8192),
    fit=st.sampled_from(["fit", "crop"]),
)


def named(styles: list[StyleSpec]) -> tuple[StyleSpec, ...]:
    return tuple(s.model_copy(update={"name": f"s{i}"}) for i, s in enumerate(styles))


style_sets = st.one_of(
    st.just(BUILT_IN_STYLES), st.lists(any_style, min_size=1, max_size=6).map(named)
)
side = st.integers(1, 20_000)
# Real images are rendered, so their styles stay small enough to encode quickly.
small_style_sets = st.one_of(
    st.just(BUILT_IN_STYLES),
    st.lists(
        st.builds(
            StyleSpec,
            name=st.just("s"),
            width=st.integers(1, 500),
            height=st.integers(1, 500),
            fit=st.sampled_from(["fit", "crop"]),
        ),
        min_size=1,
        max_size=4,
    ).map(named),
)


def expected_size(style: StyleSpec, width: int, height: int) -> tuple[int, int]:
    """The size by exact rationals, independently of the code under test."""
    if style.fit == "crop":
        return style.width, style.height
    scale = min(Fraction(1), Fraction(style.width, width), Fraction(style.height, height))

    def rounded(value: Fraction) -> int:
        return max(1, math.floor(value + Fraction(1, 2)))

    return rounded(width * scale), rounded(height * scale)


@st.composite
def images_and_decodes(draw: st.DrawFn) -> tuple[int, int, tuple[int, int]]:
    """A full size and the size a decode of it may have (JPEG draft: 1/1 to 1/8, or anything)."""
    width, height = draw(side), draw(side)
    reduced = draw(
        st.one_of(
            st.sampled_from([1, 2, 4, 8]).map(
                lambda f: (max(1, -(-width // f)), max(1, -(-height // f)))
            ),
            st.tuples(st.integers(1, width), st.integers(1, height)),
        )
    )
    return width, height, reduced


# A thousand examples (three thousand took a sixth of `make unit`): sizes, decodes and
# style sets are drawn alike, and Hypothesis keeps any failure it finds to replay first.
@given(images_and_decodes(), style_sets)
@settings(max_examples=1000, deadline=None)
def test_the_plan_makes_every_style_at_its_exact_size_from_a_box_inside_its_source(
    image: tuple[int, int, tuple[int, int]], styles: tuple[StyleSpec, ...]
) -> None:
    width, height, base = image
    steps = imaging.plan(styles, width, height, base)
    assert sorted(step.style.name for step in steps) == sorted(s.name for s in styles)
    frames = [base]
    for index, step in enumerate(steps):
        assert step.size == expected_size(step.style, width, height)
        assert imaging.target_size(step.style, width, height) == step.size
        assert 0 <= step.source <= index
        source_width, source_height = frames[step.source]
        assert source_width > 0 and source_height > 0  # never cut from a cut frame
        if step.box is None:
            assert step.style.fit == "fit"
        else:
            left, top, right, bottom = step.box
            assert all(isinstance(v, int) for v in step.box)
            assert 0 <= left < right <= source_width
            assert 0 <= top < bottom <= source_height
            # The box has the output's aspect, to within a pixel, and is centred.
            box_width, box_height = right - left, bottom - top
            out_width, out_height = step.size
            assert box_width == source_width or box_height == source_height
            skew = abs(box_width * out_height - box_height * out_width)
            assert skew <= max(out_width, out_height)
            assert abs(left - (source_width - right)) <= 1
            assert abs(top - (source_height - bottom)) <= 1
        frames.append(step.size if step.style.fit == "fit" else (0, 0))


IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "La", "RGBa")
# The format that stores each mode as it is (None: no accepted format does; such images
# are rendered from memory instead).
STORED_AS = {
    "1": "PNG",
    "L": "PNG",
    "LA": "PNG",
    "P": "PNG",
    "RGB": "PNG",
    "RGBA": "PNG",
    "CMYK": "JPEG",
    "I;16": "PNG",
}


@given(
    st.integers(1, 400),
    st.integers(1, 400),
    st.sampled_from(IMAGE_MODES),
    small_style_sets,
)
@settings(max_examples=150, deadline=None)
def test_real_images_of_every_mode_and_size_get_every_style_at_its_exact_size(
    tmp_path_factory: pytest.TempPathFactory,
    width: int,
    height: int,
    mode: str,
    styles: tuple[StyleSpec, ...],
) -> None:
    image = Image.new(mode, (width, height))
    expected = {s.name: expected_size(s, width, height) for s in styles}
    base = imaging.normalise(image)
    made = {s.name: styled.size for s, styled in imaging.cascade(base, styles, width, height)}
    assert made == expected
    stored_as = STORED_AS.get(mode)
    if stored_as is not None:
        tmp_path = tmp_path_factory.mktemp("mode")
        assert sizes(render(tmp_path, encoded(image, stored_as), styles=styles)) == expected


def test_a_deterministic_render_error_is_a_render_failure_not_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*arguments: object) -> None:
        raise ValueError("box offset can't be negative")

    monkeypatch.setattr(imaging, "plan", broken)
    problem = rejected(tmp_path, encoded(Image.new("RGB", (40, 30)), "PNG"))
    assert problem.reason is FailureReason.RENDER_FAILED
    assert "ValueError: box offset can't be negative" in problem.message


def test_a_pillow_oserror_without_an_errno_is_a_render_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot_write(*arguments: object) -> None:
        raise OSError("cannot write mode RGBA as JPEG")

    monkeypatch.setattr(imaging, "encode", cannot_write)
    problem = rejected(tmp_path, encoded(Image.new("RGB", (40, 30)), "PNG"))
    assert problem.reason is FailureReason.RENDER_FAILED


def test_a_full_scratch_disk_while_rendering_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*arguments: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imaging, "encode", disk_full)
    with pytest.raises(TransientTrouble, match="No space left"):
        render(tmp_path, encoded(Image.new("RGB", (40, 30)), "PNG"))


def test_scratch_files_vanishing_while_rendering_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A force-deleted pod's ephemeral volume is removed while its process still runs:
    # the item must go back to another pod, not fail as if the image were bad.
    def volume_gone(image: object, path: Path, *arguments: object) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    monkeypatch.setattr(imaging, "encode", volume_gone)
    with pytest.raises(TransientTrouble, match="No such file"):
        render(tmp_path, encoded(Image.new("RGB", (40, 30)), "PNG"))
