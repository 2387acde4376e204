"""HEIC and AVIF files made with real encoders, as phones and browsers write them.

HEIC: pillow-heif's libheif with x265 (what the processor reads with libde265). AVIF:
Pillow's libavif with aom, and imagecodecs' libavif for 10/12-bit AVIF (Pillow writes 8
bits only). Given an EXIF orientation, pillow-heif writes it as the container's own
transform (`irot`/`imir`) and keeps the EXIF tag too, exactly as an iPhone does.
"""

from __future__ import annotations

import io
import math
import struct

import imagecodecs
import numpy as np
import pillow_heif
from PIL import Image, ImageDraw

pillow_heif.register_heif_opener()

RED = (220, 30, 30)
BLUE = (20, 40, 230)
# exif_transpose's operation for each orientation, and the one that undoes it.
_SHOWN: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_UNDO = {**_SHOWN, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def marked(width: int, height: int) -> Image.Image:
    """A red picture as it is meant to be seen, with a blue block in its top-left corner."""
    image = Image.new("RGB", (width, height), RED)
    ImageDraw.Draw(image).rectangle((0, 0, width // 3, height // 3), fill=BLUE)
    return image


def stored_for(seen: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores so that `orientation` shows them as `seen`."""
    undo = _UNDO[orientation]
    return seen if undo is None else seen.transpose(undo)


def exif_with(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15 Pro"
    return exif.tobytes()


def heic(
    image: Image.Image,
    *,
    orientation: int | None = None,
    icc: bytes | None = None,
    quality: int = 85,
    tile_size: int = 0,
    thumbnail: int | None = None,
) -> bytes:
    options: dict[str, object] = {"quality": quality, "enc_params": {"preset": "ultrafast"}}
    if orientation is not None:
        options["exif"] = exif_with(orientation)
    if icc is not None:
        options["icc_profile"] = icc
    if tile_size:
        options["tile_size"] = tile_size
    if thumbnail:
        options["thumbnails"] = [thumbnail]
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", **options)
    return buffer.getvalue()


def heic_nclx(image: Image.Image, primaries: int, transfer: int) -> bytes:
    """A HEIC whose colours are given as H.273 code points (an `nclx` box), no ICC profile,
    as Android phones and many converters write them."""
    buffer = io.BytesIO()
    image.save(
        buffer,
        "HEIF",
        quality=90,
        color_primaries=primaries,
        transfer_characteristics=transfer,
        matrix_coefficients=6,
        full_range_flag=1,
        enc_params={"preset": "ultrafast"},
    )
    return buffer.getvalue()


def heic_high_depth(
    image: Image.Image, bits: int = 10, tile_size: int = 0, icc: bytes | None = None
) -> bytes:
    """A 10- or 12-bit HEIC of `image` (its 8-bit values scaled to the full 16-bit range)."""
    wide = np.asarray(image.convert("RGB"), dtype=np.uint16) * 257
    heif = pillow_heif.from_bytes(mode="RGB;16", size=image.size, data=wide.tobytes())
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": 85, "enc_params": {"preset": "ultrafast"}}
    if tile_size:
        options["tile_size"] = tile_size
    if icc is not None:
        options["icc_profile"] = icc
    # pillow-heif takes the depth of 16-bit data from a global option only.
    saved = pillow_heif.options.SAVE_HDR_TO_12_BIT
    pillow_heif.options.SAVE_HDR_TO_12_BIT = bits == 12
    try:
        heif.save(buffer, **options)
    finally:
        pillow_heif.options.SAVE_HDR_TO_12_BIT = saved
    return buffer.getvalue()


def multi_image_heic(images: list[Image.Image], primary: int) -> bytes:
    """One HEIF file holding several top-level images, `primary` the one to show."""
    heif = pillow_heif.from_pillow(images[0])
    for image in images[1:]:
        heif.add_from_pillow(image)
    buffer = io.BytesIO()
    heif.save(buffer, quality=85, primary_index=primary, enc_params={"preset": "ultrafast"})
    return buffer.getvalue()


def avif(image: Image.Image, *, orientation: int | None = None, icc: bytes | None = None) -> bytes:
    options: dict[str, object] = {}
    if orientation is not None:
        options["exif"] = exif_with(orientation)
    if icc is not None:
        options["icc_profile"] = icc
    buffer = io.BytesIO()
    image.save(buffer, "AVIF", quality=80, speed=10, **options)
    return buffer.getvalue()


def avif_high_depth(image: Image.Image, bits: int = 10) -> bytes:
    """A 10- or 12-bit AVIF (libavif through imagecodecs) of `image`."""
    scale = (1 << bits) - 1
    wide = np.rint(np.asarray(image.convert("RGB"), dtype=np.float64) * scale / 255)
    data = bytes(
        imagecodecs.avif_encode(wide.astype(np.uint16), level=80, speed=10, bitspersample=bits)
    )
    return data


def animated_avif(colours: list[tuple[int, int, int]], size: tuple[int, int] = (64, 48)) -> bytes:
    frames = [Image.new("RGB", size, colour) for colour in colours]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "AVIF", save_all=True, append_images=frames[1:], duration=100, quality=80, speed=10
    )
    return buffer.getvalue()


# -- a Display P3 ICC profile, made here: neither Pillow nor Debian's base ships one ----------

# Display P3: DCI-P3 primaries, D65 white, the sRGB transfer curve (Apple's definition).
_P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
_D65 = (0.3127, 0.3290)
_D50_XYZ = (0.9642, 1.0, 0.8249)
_BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
)


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _tag_xyz(xyz: np.ndarray | tuple[float, ...]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(float(v)) for v in xyz)


def display_p3_icc() -> bytes:
    """A v2 matrix/TRC ICC profile of Display P3, as LittleCMS reads it."""
    primaries = np.stack([_xyz(xy) for xy in _P3_PRIMARIES], axis=1)
    white = _xyz(_D65)
    to_xyz = primaries * np.linalg.solve(primaries, white)  # columns: R, G, B at D65
    cone_src, cone_dst = _BRADFORD @ white, _BRADFORD @ np.array(_D50_XYZ)
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(cone_dst / cone_src) @ _BRADFORD
    colorants = adapt @ to_xyz
    curve = [
        ((i / 1023) / 12.92 if i / 1023 <= 0.04045 else ((i / 1023 + 0.055) / 1.055) ** 2.4)
        for i in range(1024)
    ]
    trc = (
        b"curv\0\0\0\0"
        + struct.pack(">I", 1024)
        + b"".join(struct.pack(">H", min(65535, math.floor(v * 65535 + 0.5))) for v in curve)
    )
    text = b"Display P3 (test)"
    desc = (
        b"desc\0\0\0\0"
        + struct.pack(">I", len(text) + 1)
        + text
        + b"\0"
        + b"\0" * 4  # no Unicode description
        + b"\0" * 2  # no ScriptCode description
        + b"\0"
        + b"\0" * 67
    )
    tags = [
        (b"desc", desc),
        (b"wtpt", _tag_xyz(_D50_XYZ)),
        (b"rXYZ", _tag_xyz(colorants[:, 0])),
        (b"gXYZ", _tag_xyz(colorants[:, 1])),
        (b"bXYZ", _tag_xyz(colorants[:, 2])),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
        (b"cprt", b"text\0\0\0\0public domain\0"),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, body = b"", b""
    for signature, data in tags:
        padded = data + b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += padded
    size = 128 + table_size + len(body)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + b"\0\0\0\0"
        + b"".join(_s15(v) for v in _D50_XYZ)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body
