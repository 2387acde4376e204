"""Placeholders: a ThumbHash decoded back looks like the photo (its average colour, its
shape, its transparency), the dominant colour is the photo's most common one, and the
render makes both from a frame it already has."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from emulsion_contracts.messages import StyleSpec
from emulsion_processor import imaging, placeholder


def decoded(image: Image.Image) -> np.ndarray:
    made = placeholder.of(image)
    return placeholder.decode(base64.b64decode(made.thumbhash))


def average(rgba: np.ndarray) -> np.ndarray:
    mean: np.ndarray = rgba[..., :3].reshape(-1, 3).astype(float).mean(axis=0)
    return mean


def photo(width: int, height: int) -> Image.Image:
    """Sky over grass, a red house: the colours of a photo, not of a test card."""
    image = Image.new("RGB", (width, height), (110, 160, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height * 2 // 3, width, height), fill=(60, 140, 50))
    draw.rectangle((width // 3, height // 3, width // 2, height * 3 // 4), fill=(190, 40, 30))
    return image


@pytest.mark.parametrize("size", [(400, 300), (300, 400), (100, 100), (1000, 40), (7, 90)])
def test_the_decoded_placeholder_has_the_photos_average_colour_and_shape(
    size: tuple[int, int],
) -> None:
    image = photo(*size)
    preview = decoded(image)
    expected = average(np.asarray(placeholder.reduced(image).convert("RGBA")))
    assert np.abs(average(preview) - expected).max() < 12
    height, width = preview.shape[:2]
    assert max(width, height) == 32
    # ThumbHash keeps the aspect ratio roughly (its coefficient grid's, up to 7:1).
    ratio = size[0] / size[1]
    assert (width > height) == (ratio > 1) or width == height or 0.8 < ratio < 1.25


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    st.integers(1, 100),
    st.integers(1, 100),
)
def test_a_flat_colour_comes_back_as_itself(
    colour: tuple[int, int, int], width: int, height: int
) -> None:
    image = Image.new("RGB", (width, height), colour)
    preview = decoded(image)
    # Quantised to 6 bits of luminance and of each chroma channel: a few levels off.
    assert np.abs(preview[..., :3].astype(int) - np.array(colour)).max() <= 8
    assert (preview[..., 3] == 255).all()
    assert placeholder.of(image).dominant_color == "#{:02x}{:02x}{:02x}".format(*colour)


def test_transparency_is_kept() -> None:
    image = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((20, 20, 60, 60), fill=(250, 200, 0, 255))
    hash_bytes = base64.b64decode(placeholder.of(image).thumbhash)
    assert hash_bytes[2] & 0x80  # the alpha flag
    preview = placeholder.decode(hash_bytes)
    assert preview[0, 0, 3] < 60 and preview[16, 16, 3] > 200
    # The dominant colour is of the opaque pixels, not of the transparent background.
    assert placeholder.of(image).dominant_color == "#fac800"


def test_the_dominant_colour_is_the_most_common_not_the_average() -> None:
    image = Image.new("RGB", (90, 60), (200, 30, 30))
    ImageDraw.Draw(image).rectangle((0, 0, 39, 59), fill=(20, 120, 20))
    assert placeholder.of(image).dominant_color == "#c81e1e"


def test_the_hash_is_small_and_every_frame_size_encodes() -> None:
    for size in [(1, 1), (100, 1), (1, 100), (100, 100), (5000, 3000)]:
        made = placeholder.of(Image.new("L", size, 128))
        assert len(base64.b64decode(made.thumbhash)) <= 25
    with pytest.raises(ValueError, match="100x100"):
        placeholder.encode(np.zeros((101, 10, 4), dtype=np.uint8))


def test_the_render_makes_it_from_an_upright_frame(tmp_path: Path) -> None:
    # Stored sideways with orientation 6: the placeholder is of the photo as seen (tall).
    seen = photo(300, 400)
    source = tmp_path / "IMG.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    seen.transpose(Image.Transpose.ROTATE_90).save(source, "JPEG", quality=90, exif=exif)
    out = tmp_path / "out"
    out.mkdir()
    styles = (
        StyleSpec(name="thumb", width=100, height=100, fit="crop"),
        StyleSpec(name="large", width=200, height=200, fit="fit", watermark=True),
    )
    rendered = imaging.render(imaging.RenderJob(source=source, out_dir=out, styles=styles))
    assert rendered.placeholder is not None
    preview = placeholder.decode(base64.b64decode(rendered.placeholder.thumbhash))
    assert preview.shape[0] > preview.shape[1]
    assert np.abs(average(preview) - average(np.asarray(seen.convert("RGBA")))).max() < 12
    assert any(timing.name == "placeholder" for timing in rendered.timings)
