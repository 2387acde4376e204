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


def release_decoder(image: Image.Image) -> None:
    """Drop what an AVIF reader keeps after decoding: libavif's decoder holds the coded
    planes (up to 6 bytes a pixel) until the image is closed, for seeking to other
    frames, which Emulsion never does. (libheif's are freed by pillow-heif's `load`.)"""
    if image.format == "AVIF":
        image._decoder = None  # type: ignore[attr-defined]


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
    if image.format == "HEIF":
        sample = _SAMPLE_BYTES_HIGH if int(image.info.get("bit_depth", 8)) > 8 else 1
        chroma = _CHROMA_SHARE.get(str(image.info.get("chroma", "444")), 2.0)
    else:
        sample, chroma = _SAMPLE_BYTES_HIGH, 2.0
    planes = int(width * height * sample * (1 + chroma))
    return planes + width * height * _HANDOVER[image.format] + file_bytes
