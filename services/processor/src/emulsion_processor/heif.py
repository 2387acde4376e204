"""HEIF (HEIC) and AVIF: the decoder Pillow lacks, and what these formats need beyond
Pillow's others. Pure like `imaging`: nothing here does I/O beyond reading the file given.

Pillow reads AVIF itself (libavif with dav1d); HEIF is pillow-heif's (libheif with
libde265), registered on import. Where they differ from JPEG, PNG, WebP and GIF:

- Orientation. In a HEIF container the image's own transforms (`irot`, `imir`) are
  normative and an EXIF orientation only describes them (HEIF and MIAF say so; Apple's
  readers, browsers and libheif follow the transforms). Both readers turn the image once,
  by the transforms: libheif applies them while decoding and pillow-heif then sets the
  EXIF orientation to 1, so `normalise`'s `exif_transpose` does not turn an iPhone photo
  (which carries both) a second time; Pillow's AVIF reader applies nothing and writes the
  transforms into the EXIF orientation instead, replacing whatever the EXIF said, which
  `exif_transpose` then applies once.
- Depth and colour. 10- and 12-bit images are decoded to 8 bits per channel by the
  readers themselves (libheif's `convert_hdr_to_8bit`, libavif's 8-bit RGB output); a
  wide-gamut ICC profile (Display P3 on every iPhone photo) is then converted to sRGB by
  `imaging.normalise`, as for any other format.
- Several images. pillow-heif opens the file's primary image; thumbnails, depth maps and
  auxiliary images (alpha is not one: it is decoded with its image) are never read.
  `n_frames` counts the top-level images, so the frame limit holds for bursts too.
- Memory. HEVC and AV1 have no reduced decode like JPEG's DCT scaling (pillow-heif's
  `draft` only swaps in an embedded thumbnail, turned off here: an iPhone's is 320 px,
  too small for any large style, and the estimate must not depend on it), so the whole
  image is decoded, and the decoder holds its own planes at the coded bit depth besides
  the 8-bit result Pillow keeps: see `decoder_bytes`.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Final

import pillow_heif
from PIL import Image

# Thumbnails, depth and auxiliary images are never wanted: not reading them saves their
# memory and keeps `draft` from decoding a thumbnail instead of the image.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

CONTAINER_FORMATS: Final = ("AVIF", "HEIF")
# ISO base media `ftyp` major brands of still images and image sequences.
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_HEIC_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
)
_HEIF_BRANDS: Final = frozenset({b"mif1", b"msf1"}) | _HEIC_BRANDS
# The decoders' working memory besides the 8-bit image Pillow keeps: the coded planes
# (libde265 and dav1d keep 10- and 12-bit samples in 16 bits) and the interleaved 8-bit
# pixels handed over, 4 bytes a pixel at most (RGBA); libavif's go through a bytes copy
# in Pillow's reader, so AVIF hands over twice.
_SAMPLE_BYTES_HIGH: Final = 2
_HANDOVER: Final[dict[str, int]] = {"HEIF": 4, "AVIF": 8}
# libheif takes a 10/12-bit image to 8 bits through 16-bit interleaved RGB(A) when the
# photo carries an ICC profile (measured: a 9459² 10-bit HEIC with a Display P3 profile
# peaks at 1,283 MiB while decoding, 736 MiB without): counted for every deep HEIF.
_HIGH_DEPTH_INTERMEDIATE: Final = 8
# Chroma planes per luma sample: 4:2:0 carries two quarter planes, 4:2:2 two halves.
_CHROMA_SHARE: Final[dict[str, float]] = {"420": 0.5, "422": 1.0, "444": 2.0, "400": 0.0}


def brand(head: bytes) -> bytes | None:
    """The `ftyp` major brand of an ISO base media file (HEIF, AVIF, MP4...), or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return head[8:12]
    return None


def named_container(head: bytes) -> str | None:
    """ "HEIC/HEIF" or "AVIF" when the first bytes say so (by major brand), else None."""
    major = brand(head)
    if major in _AVIF_BRANDS:
        return "AVIF"
    if major in _HEIF_BRANDS:
        return "HEIC/HEIF"
    return None


def unreadable_reason(path: Path) -> str:
    """Why libheif cannot open `path`, in its own words (Pillow only says "cannot identify")."""
    try:
        pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
    except Exception as error:  # libheif's errors come as several types
        return f"{type(error).__name__}: {error}"
    return "no decoder could read it"


def select_first_image(image: Image.Image) -> None:
    """Show the first frame of an animation; a HEIF file's primary image is already open.

    HEIF's "frames" are the file's top-level images in storage order, and the primary
    one (the photo a viewer shows) need not be the first.
    """
    if image.format != "HEIF":
        image.seek(0)


def content_type(image: Image.Image) -> str:
    """The source's content type: for HEIF the reader's own (image/heic when HEVC-coded)."""
    custom = getattr(image, "custom_mimetype", None)
    if isinstance(custom, str) and custom:
        return custom
    return Image.MIME.get(image.format or "", "application/octet-stream")


def after_decode(image: Image.Image) -> None:
    """Once the pixels are out: free what the decoder keeps, and name the colours.

    libavif's decoder holds the coded planes (up to 6 bytes a pixel) until the image is
    closed, for seeking to other frames, which Emulsion never does; it is dropped.
    (libheif's are freed by pillow-heif's `load`.) A HEIF photo may give its colours as
    code points (an `nclx` box) instead of an ICC profile; Display P3 given so gets the
    Display P3 profile, which `normalise` then converts to sRGB like an embedded one.
    """
    if image.format == "AVIF":
        image._decoder = None  # type: ignore[attr-defined]
    if image.format == "HEIF" and "icc_profile" not in image.info:
        nclx = image.info.get("nclx_profile") or {}
        if (
            nclx.get("color_primaries") == _P3_PRIMARIES_CODE
            and nclx.get("transfer_characteristics") in _SRGB_LIKE_TRANSFERS
        ):
            image.info["icc_profile"] = DISPLAY_P3_ICC


# ITU-T H.273 code points: colour primaries 12 is P3 with a D65 white ("Display P3");
# transfer 13 is sRGB's curve, and 1, 6, 14, 15 (BT.709/601/2020 SDR) are close enough
# to it that P3 photos written with them are meant to look the same. PQ and HLG (HDR)
# would need tone mapping, which is not done: such photos are shown as their 8-bit values.
_P3_PRIMARIES_CODE: Final = 12
_SRGB_LIKE_TRANSFERS: Final = frozenset({1, 6, 13, 14, 15})


# -- a Display P3 ICC profile, built once: Pillow ships only sRGB ---------------------------

_Matrix = tuple[tuple[float, ...], ...]
_D50: Final = (0.9642, 1.0, 0.8249)
_BRADFORD: Final[_Matrix] = (
    (0.8951, 0.2664, -0.1614),
    (-0.7502, 1.7135, 0.0367),
    (0.0389, -0.0685, 1.0296),
)


def _xyz(x: float, y: float) -> tuple[float, float, float]:
    return (x / y, 1.0, (1 - x - y) / y)


def _multiply(a: _Matrix, b: _Matrix) -> _Matrix:
    return tuple(
        tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3)
    )


def _apply(m: _Matrix, v: tuple[float, ...]) -> tuple[float, ...]:
    return (
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    )


def _inverse(m: _Matrix) -> _Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return (
        ((e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
        ((f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
        ((d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det),
    )


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: tuple[float, ...]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def matrix_shaper_icc(
    name: str, primaries: tuple[tuple[float, float], ...], white: tuple[float, float]
) -> bytes:
    """An ICC v2 RGB display profile: these primaries and white, sRGB's transfer curve,
    its colorants adapted to D50 with Bradford (as ICC requires)."""
    columns = [_xyz(*xy) for xy in primaries]
    m = tuple(tuple(columns[j][i] for j in range(3)) for i in range(3))
    white_xyz = _xyz(*white)
    scale = _apply(_inverse(m), white_xyz)
    to_xyz = tuple(tuple(m[i][j] * scale[j] for j in range(3)) for i in range(3))
    cone_white, cone_d50 = _apply(_BRADFORD, white_xyz), _apply(_BRADFORD, _D50)
    diagonal = tuple(
        tuple(cone_d50[i] / cone_white[i] if i == j else 0.0 for j in range(3)) for i in range(3)
    )
    adapt = _multiply(_inverse(_BRADFORD), _multiply(diagonal, _BRADFORD))
    colorants = _multiply(adapt, to_xyz)
    # sRGB's curve as a parametric curve (type 3): Y = (aX+b)^g above d, cX below.
    curve = (
        b"para\0\0\0\0"
        + struct.pack(">HH", 3, 0)
        + b"".join(_s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    )
    text = name.encode("ascii")
    description = (
        b"desc\0\0\0\0" + struct.pack(">I", len(text) + 1) + text + b"\0" + bytes(4 + 2 + 1 + 67)
    )
    tags = [
        (b"desc", description),
        (b"wtpt", _xyz_tag(_D50)),
        (b"rXYZ", _xyz_tag(tuple(row[0] for row in colorants))),
        (b"gXYZ", _xyz_tag(tuple(row[1] for row in colorants))),
        (b"bXYZ", _xyz_tag(tuple(row[2] for row in colorants))),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0no copyright, use freely\0"),
    ]
    table_end = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        table += signature + struct.pack(">II", table_end + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    header = (
        struct.pack(">I", table_end + len(body))
        + bytes(4)
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + bytes(4)
        + b"".join(_s15(v) for v in _D50)
        + bytes(48)
    )
    return header + struct.pack(">I", len(tags)) + table + body


DISPLAY_P3_ICC: Final = matrix_shaper_icc(
    "Display P3 (Emulsion)", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), (0.3127, 0.3290)
)


def decoder_bytes(image: Image.Image, file_bytes: int) -> int:
    """The memory a HEIF or AVIF decoder takes while it decodes, besides the image Pillow
    keeps (0 for other formats); all of it is freed once the image is decoded.

    From the headers alone: the coded planes at their bit depth, the interleaved 8-bit
    pixels handed to Pillow, and the file, which both readers hold while they decode.
    Pillow's AVIF reader tells neither depth nor chroma, so the worst case (12-bit 4:4:4)
    is taken for AVIF.
    """
    if image.format not in CONTAINER_FORMATS:
        return 0
    width, height = image.size
    intermediate = 0
    if image.format == "HEIF":
        deep = int(image.info.get("bit_depth", 8)) > 8
        sample = _SAMPLE_BYTES_HIGH if deep else 1
        chroma = _CHROMA_SHARE.get(str(image.info.get("chroma", "444")), 2.0)
        intermediate = _HIGH_DEPTH_INTERMEDIATE if deep else 0
    else:
        sample, chroma = _SAMPLE_BYTES_HIGH, 2.0
    planes = int(width * height * sample * (1 + chroma))
    handover = width * height * (_HANDOVER[image.format] + intermediate)
    return planes + handover + file_bytes
