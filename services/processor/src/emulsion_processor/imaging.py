"""The image pipeline, free of I/O beyond the scratch files it is given.

A source file goes in; the styles come out as files next to it, with their exact sizes.
The work is ordered for speed: JPEGs are decoded at the smallest DCT scale that still
serves the most demanding style (`draft`), and each smaller style is cut from the
smallest full-frame result already made instead of from the decoded source ("cascade").

Every function here is a plain function over picklable values, so `render` runs the
same on a thread or in a worker process.
"""

from __future__ import annotations

import errno
import io
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from PIL import Image, ImageCms, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from emulsion_contracts.formats import (
    ACCEPTED_FORMATS,
    ACCEPTED_IN_WORDS,
    AVIF_SPEED,
    OUTPUT_CONTENT_TYPES,
    OutputFormat,
)
from emulsion_contracts.keys import FORMAT_EXTENSIONS
from emulsion_contracts.manifest import PhotoMetadata, Placeholder
from emulsion_contracts.messages import FocalPoint, StyleSpec
from emulsion_contracts.profiles import Watermark
from emulsion_contracts.reasons import FailureReason
from emulsion_processor import gravity, heif, photo_metadata, placeholder
from emulsion_processor.errors import ItemRejected, TransientTrouble

# Only formats a browser shows or a phone takes; everything else (EPS/PDF run
# interpreters, PSD/FITS/TIFF are large attack surfaces) is refused before any decoder
# sees it. Tried in this order (AVIF before HEIF: an AVIF file is a HEIF container too).
ALLOWED_FORMATS: Final = tuple(ACCEPTED_FORMATS)
EXTENSIONS: Final[dict[str, str]] = FORMAT_EXTENSIONS
CONTENT_TYPES: Final[dict[str, str]] = OUTPUT_CONTENT_TYPES
_PIL_FORMATS: Final[dict[str, str]] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}
# Known formats outside the allow-list, recognised so the reason says "unsupported"
# rather than "not an image": (magic bytes, offset, name).
_DISALLOWED_SIGNATURES: Final = (
    (b"%PDF", 0, "PDF"),
    (b"%!PS", 0, "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"8BPS", 0, "PSD"),
    (b"SIMPLE  =", 0, "FITS"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"qoif", 0, "QOI"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
)
_BMP_HEADER_SIZES: Final = (12, 40, 52, 56, 64, 108, 124)
_RESAMPLE: Final = Image.Resampling.LANCZOS
# Resize in two steps (a fast box reduction, then Lanczos) when shrinking by more than
# this factor: visually the same, several times faster on large reductions.
_REDUCING_GAP: Final = 3.0
_SRGB: Final = ImageCms.createProfile("sRGB")
_MAX_WATERMARK_PIXELS: Final = 4_000_000
# Pillow's own decompression-bomb threshold (89.5 MP); our limit never exceeds it.
PILLOW_MAX_PIXELS: Final = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
# A render's peak memory over the decoded image it starts from: the decode, the sRGB /
# mode conversion, Pillow's premultiplied copy for resizing with alpha, and the first
# resized frame. Measured with `ru_maxrss` on 4000² PNGs: RGBA 3.4x, RGB 2.4x, L 2.7x.
PEAK_OVER_DECODED: Final = 3.5
# libavif's encoder (aom, speed 9, one thread) beyond the frame it encodes, measured with
# `ru_maxrss` on RGB squares of 100 to 2400 pixels: 8.5 MB, then about 22 bytes a pixel
# (21.6 MB at 800, 65 MB at 1600, 135 MB at 2400). JPEG, PNG and WebP take under 1 MB.
AVIF_ENCODER_FIXED: Final = 12 * 2**20
AVIF_ENCODER_PER_PIXEL: Final = 24
# Bytes per pixel as Pillow stores each mode (RGB takes four, like RGBA).
_STORED_BYTES: Final[dict[str, int]] = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}
# Errors of the scratch volume or the machine, not of the image: worth trying again.
# (Pillow raises OSError without an errno for its own refusals, which are not.)
# ENOENT/ESTALE: the processor made every scratch path itself, so one vanishing means
# the volume went away (a force-deleted pod's ephemeral volume is removed while its
# process still runs), never that the image is bad.
_TRANSIENT_ERRNOS: Final = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.ENOMEM,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOENT,
        errno.ESTALE,
    }
)


@dataclass(frozen=True, slots=True)
class RenderJob:
    source: Path
    out_dir: Path
    styles: tuple[StyleSpec, ...]
    format: OutputFormat = "jpeg"
    quality: int = 82
    max_pixels: int = PILLOW_MAX_PIXELS
    max_frames: int = 300
    watermark: Watermark | None = None
    watermark_image: Path | None = None
    # The asset's focal point: every crop style keeps it (see gravity.py).
    focal_point: FocalPoint | None = None
    # What of the photo's metadata may be recorded: what the profile strips from the
    # original (GPS, Exif tags by number) is not recorded either.
    keep_gps: bool = False
    withheld_tags: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Timing:
    """A stage measured where it ran (maybe another process), turned into a span later."""

    name: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class RenderedFile:
    """One encoding of a style (a style with several `formats` has one per format)."""

    format: OutputFormat
    path: Path
    extension: str
    content_type: str
    bytes: int


@dataclass(frozen=True, slots=True)
class RenderedStyle:
    """A style as written; `path`, `extension`, `content_type` and `bytes` are its first
    file's, `files` all of them in the style's order."""

    style: str
    path: Path
    extension: str
    content_type: str
    width: int
    height: int
    bytes: int
    files: tuple[RenderedFile, ...] = ()


@dataclass(frozen=True, slots=True)
class Rendered:
    format: str
    content_type: str
    width: int
    height: int
    frames: int
    styles: tuple[RenderedStyle, ...]
    timings: tuple[Timing, ...] = field(default=())
    # What the source's Exif says (None: nothing usable), and the placeholder.
    metadata: PhotoMetadata | None = None
    placeholder: Placeholder | None = None


def render(job: RenderJob) -> Rendered:
    """Validate, decode, and write every style of `job` into `job.out_dir`.

    Every failure leaves as one of two kinds: `ItemRejected` (the item fails now, with its
    reason) or `TransientTrouble` (the scratch disk or memory, not the image). Rendering
    is deterministic, so any other error would only recur on a retry: it is a
    `RenderFailed` rejection, never minutes of retries.
    """
    try:
        return _render(job)
    except (ItemRejected, TransientTrouble):
        raise
    except OSError as error:
        if error.errno in _TRANSIENT_ERRNOS:
            raise TransientTrouble(f"scratch I/O failed while rendering: {error}") from None
        raise ItemRejected(FailureReason.RENDER_FAILED, _describe(error)) from None
    except MemoryError:
        raise TransientTrouble("out of memory while rendering") from None
    except Exception as error:
        raise ItemRejected(FailureReason.RENDER_FAILED, _describe(error)) from None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _render(job: RenderJob) -> Rendered:
    timings: list[Timing] = []
    image, frames = open_checked(job.source, job.max_pixels, job.max_frames)
    # Closed on every path: an animation keeps its file open until then.
    with image:
        with _timed(timings, "decode"):
            source_format = image.format or "?"
            # HEIF's is image/heic for HEVC inside, image/heif otherwise.
            content_type = heif.content_type(image)
            width, height = oriented_size(image)
            scale = max(required_scale(style, width, height) for style in job.styles)
            base = normalise(load_reduced(image, scale))
        with _timed(timings, "metadata"):
            # The Exif parsed with the header; the decoded image still holds it.
            metadata = photo_metadata.read(
                image.getexif(), gps=job.keep_gps, withheld=job.withheld_tags
            )
        watermark_image = _load_watermark_image(job.watermark_image)
        outputs = []
        preview = base
        for style, styled in cascade(base, job.styles, width, height, job.focal_point):
            if style.fit == "fit" and _serves_preview(styled, preview):
                preview = styled  # unwatermarked, the whole frame, and smaller
            with _timed(timings, f"style {style.name}"):
                if style.watermark and job.watermark is not None:
                    styled = apply_watermark(styled, job.watermark, watermark_image)
                outputs.append(_write_style(styled, style, job))
        with _timed(timings, "placeholder"):
            made = placeholder.of(preview)
    return Rendered(
        format=source_format,
        content_type=content_type,
        width=width,
        height=height,
        frames=frames,
        styles=tuple(outputs),
        timings=tuple(timings),
        metadata=metadata,
        placeholder=made,
    )


def _serves_preview(frame: Image.Image, current: Image.Image) -> bool:
    """Whether `frame` is a smaller whole frame than `current` that still fills the
    placeholder's box (fewer pixels to reduce, the same preview)."""
    return (
        frame.width * frame.height < current.width * current.height
        and max(frame.size) >= placeholder.MAX_SIDE
    )


@contextmanager
def _timed(timings: list[Timing], name: str) -> Iterator[None]:
    start = time.time_ns()
    try:
        yield
    finally:
        timings.append(Timing(name, start, time.time_ns()))


# -- validation and decoding ------------------------------------------------------------


def open_checked(path: Path, max_pixels: int, max_frames: int) -> tuple[Image.Image, int]:
    """Open `path` lazily (headers only) and refuse anything that must not be decoded."""
    size = path.stat().st_size
    if size == 0:
        raise ItemRejected(FailureReason.EMPTY_FILE, "the source file is empty (0 bytes)")
    try:
        image = Image.open(path, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as error:
        raise ItemRejected(FailureReason.DECOMPRESSION_BOMB, str(error)) from None
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError) as error:
        container = heif.named_container(_head(path))
        if container is not None:
            # Says HEIC or AVIF, but libheif/libavif cannot read it: a damaged file, not
            # a format to refuse (and not worth a retry: it is the same file next time).
            raise ItemRejected(
                FailureReason.CORRUPT_IMAGE,
                f"the {container} file cannot be read ({heif.unreadable_reason(path)})",
            ) from None
        other = disallowed_format(path)
        if other is not None:
            raise ItemRejected(
                FailureReason.UNSUPPORTED_FORMAT,
                f"{other} is not accepted; send {ACCEPTED_IN_WORDS}",
            ) from None
        raise ItemRejected(
            FailureReason.NOT_AN_IMAGE, f"not a {ACCEPTED_IN_WORDS} image ({error})"
        ) from None
    try:
        frames = _check_limits(image, max_pixels, max_frames)
    except BaseException:
        image.close()
        raise
    return image, frames


def _check_limits(image: Image.Image, max_pixels: int, max_frames: int) -> int:
    width, height = image.size
    if width * height > max_pixels:
        raise ItemRejected(
            FailureReason.DECOMPRESSION_BOMB,
            f"{width}x{height} is {width * height:,} pixels; the limit is {max_pixels:,}",
        )
    try:
        frames = int(getattr(image, "n_frames", 1))
    except (OSError, EOFError, SyntaxError, ValueError) as error:
        raise ItemRejected(FailureReason.CORRUPT_IMAGE, f"cannot count frames: {error}") from None
    if frames > max_frames:
        raise ItemRejected(
            FailureReason.TOO_MANY_FRAMES, f"{frames} frames; the limit is {max_frames}"
        )
    if frames > 1:
        heif.select_first_image(image)  # derivatives show the first frame
    return frames


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(32)


def disallowed_format(path: Path) -> str | None:
    """The name of a known image format outside the allow-list that `path` starts with."""
    head = _head(path)
    major = heif.brand(head)
    if major is not None and heif.named_container(head) is None:
        # The same container holds JPEG XL, camera raws (crx) and video (isom, mp42, qt).
        return f"ISO media of brand {major.decode('latin-1').strip()!r}"
    for magic, offset, name in _DISALLOWED_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def stored_bytes(mode: str, width: int, height: int) -> int:
    """The memory Pillow takes for a decoded `mode` image of `width`x`height`."""
    return width * height * _STORED_BYTES.get(mode, 4)


def decode_cost(job: RenderJob) -> int:
    """The peak memory rendering `job` will take, from the source's header alone.

    Validates like `render` (so a bad file fails here, before it waits for memory),
    applies the same JPEG draft reduction, and adds the styles' own frames and, for HEIF
    and AVIF (decoded whole, never reduced), the decoder's own memory.
    """
    image, _ = open_checked(job.source, job.max_pixels, job.max_frames)
    with image:
        decoder = heif.decoder_bytes(image, job.source.stat().st_size)
        # Not `oriented_size`: reading a PNG's EXIF decodes the whole image, and the
        # orientation changes no area that matters here.
        width, height = image.size
        scale = max(required_scale(style, width, height) for style in job.styles)
        draft(image, scale)  # headers only: sets the reduced size without decoding
        decoded = stored_bytes(image.mode, *image.size)
    steps = plan(job.styles, width, height, (width, height))
    frames = sum(
        2 * stored_bytes("RGBA", *step.size)  # the frame and its encoder's copy
        for step in steps
    )
    # A HEIF/AVIF decoder's memory is gone before the render's own peak (normalising,
    # resizing) starts; whichever of the two is larger is the peak. The encoders' own
    # memory (libavif's) comes on top of the frames they encode.
    peak = max(int(decoded * PEAK_OVER_DECODED), decoded + decoder)
    return peak + frames + encoders_cost(steps, job.format)


def draft(image: Image.Image, scale: float) -> None:
    """For a JPEG, decode at the smallest DCT scale that keeps `scale` of the full size."""
    if image.format == "JPEG" and scale < 1:
        width, height = image.size
        image.draft(
            image.mode, (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
        )


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """The size as the image is meant to be seen, after its EXIF orientation."""
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def load_reduced(image: Image.Image, scale: float) -> Image.Image:
    """Decode, at the smallest JPEG DCT scale that keeps `scale` of the full size."""
    draft(image, scale)
    try:
        image.load()
        heif.after_decode(image)
    except Image.DecompressionBombError as error:
        raise ItemRejected(FailureReason.DECOMPRESSION_BOMB, str(error)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        text = str(error).strip()
        # libheif says "Unexpected end of file" where Pillow's decoders say "truncated".
        if any(w in text.lower() for w in ("truncated", "end of file")) or isinstance(
            error, EOFError
        ):
            raise ItemRejected(
                FailureReason.TRUNCATED, f"the image data ends early ({text})"
            ) from None
        raise ItemRejected(
            FailureReason.CORRUPT_IMAGE, f"cannot decode the image ({text})"
        ) from None
    return image


def normalise(image: Image.Image) -> Image.Image:
    """Upright, in sRGB, as L, RGB or RGBA, with no metadata left to leak into outputs."""
    upright = ImageOps.exif_transpose(image)
    converted = _to_srgb(upright)
    converted.info = {}
    return converted


def _to_srgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _sixteen_bit_to_l(image)
    if mode == "1":
        return image.convert("L")
    if mode == "La":
        image, mode = image.convert("LA"), "LA"  # Pillow converts premultiplied L only to LA
    if mode in ("P", "PA", "LA", "RGBa"):
        has_alpha = mode != "P" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    elif mode not in ("L", "RGB", "RGBA", "CMYK"):
        image = image.convert("RGB")
        mode = "RGB"
    if icc and mode in ("RGB", "RGBA", "CMYK") and not _is_srgb(icc):
        converted = _icc_to_srgb(image, icc)
        if converted is not None:
            return converted
    if mode == "CMYK":
        return image.convert("RGB")
    return image


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    # Convert's own path from 32-bit integer to L clips instead of scaling 16-bit values.
    wide = image.convert("I") if image.mode != "F" else image
    return wide.point(lambda value: value * (1 / 256)).convert("L")


def _is_srgb(icc: bytes) -> bool:
    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except (ImageCms.PyCMSError, OSError, TypeError):
        return False
    return "srgb" in description.lower()


def _icc_to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source_profile, _SRGB, outputMode=output_mode)
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError):
        return None  # a broken embedded profile is ignored, as browsers do
    return converted


# -- styles -------------------------------------------------------------------------------


def target_size(style: StyleSpec, width: int, height: int) -> tuple[int, int]:
    """The exact output size of `style` for a `width`x`height` image.

    `fit` shrinks to fit inside the box and never enlarges (Paperclip's "800x800>");
    `crop` fills the box exactly, cutting the overflow from the centre ("100x100#").
    Integer arithmetic only: a size must not depend on how a float rounds.
    """
    if style.fit == "crop":
        return style.width, style.height
    if width <= style.width and height <= style.height:
        return width, height
    if width * style.height >= height * style.width:  # the width meets the box first
        return style.width, max(1, _round_ratio(height * style.width, width))
    return max(1, _round_ratio(width * style.height, height)), style.height


def _round_ratio(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, exactly."""
    return (2 * numerator + denominator) // (2 * denominator)


def _ceil_ratio(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def required_scale(style: StyleSpec, width: int, height: int) -> float:
    """How much of the full resolution `style` needs (1 or more: all of it).

    Only used to choose a decode scale and an order, never a size or a box.
    """
    if style.fit == "crop":
        return max(style.width / width, style.height / height)
    return min(1.0, style.width / width, style.height / height)


def needed_source(style: StyleSpec, width: int, height: int) -> tuple[int, int]:
    """The smallest full frame of the `width`x`height` image that serves `style` unenlarged."""
    if style.fit == "fit":
        if width <= style.width and height <= style.height:
            return width, height
        if width * style.height >= height * style.width:
            return style.width, max(1, _ceil_ratio(height * style.width, width))
        return max(1, _ceil_ratio(width * style.height, height)), style.height
    if style.width * height >= style.height * width:  # the width must be filled
        return style.width, max(1, _ceil_ratio(height * style.width, width))
    return max(1, _ceil_ratio(width * style.height, height)), style.height


def crop_box(width: int, height: int, out_width: int, out_height: int) -> tuple[int, int, int, int]:
    """The centred box of a `width`x`height` image with the aspect of `out_width`x`out_height`.

    In whole pixels, inside the image and never empty: Pillow refuses a box that reaches
    outside by even -1.4e-14, which float arithmetic produced for a 3700x2400 image.
    """
    if width * out_height >= height * out_width:  # wider than the output: cut the sides
        crop_height = height
        crop_width = min(width, max(1, _round_ratio(height * out_width, out_height)))
    else:
        crop_width = width
        crop_height = min(height, max(1, _round_ratio(width * out_height, out_width)))
    left = (width - crop_width) // 2
    top = (height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


@dataclass(frozen=True, slots=True)
class Step:
    """Make one style from frame `source` (0: the decoded base; n: the frame step n-1 made).

    `box` is the part of the source to use (None: all of it); `size` is the output's size.
    """

    style: StyleSpec
    source: int
    box: tuple[int, int, int, int] | None
    size: tuple[int, int]


def plan(
    styles: tuple[StyleSpec, ...], width: int, height: int, base: tuple[int, int]
) -> tuple[Step, ...]:
    """Each style, made from the smallest full frame already made that can serve it.

    `width`/`height` are the full oriented size and `base` the decoded (maybe reduced)
    one; sizes come from the full size, so a reduced decode never changes an output's
    dimensions. Pure arithmetic on sizes, so it can be checked over every size there is.
    """
    frames = [base]
    steps = []
    order = sorted(styles, key=lambda s: required_scale(s, width, height), reverse=True)
    for style in order:
        need_width, need_height = needed_source(style, width, height)
        candidates = [
            index
            for index, (frame_width, frame_height) in enumerate(frames)
            if frame_width >= need_width and frame_height >= need_height
        ]
        source = min(candidates, key=lambda index: frames[index][0]) if candidates else 0
        source_width, source_height = frames[source]
        if style.fit == "crop":
            box = crop_box(source_width, source_height, style.width, style.height)
            steps.append(Step(style, source, box, (style.width, style.height)))
            frames.append((0, 0))  # a cut frame serves no other style
        else:
            size = target_size(style, width, height)
            steps.append(Step(style, source, None, size))
            frames.append(size)
    return tuple(steps)


def cascade(
    base: Image.Image,
    styles: tuple[StyleSpec, ...],
    width: int,
    height: int,
    focal_point: FocalPoint | None = None,
) -> Iterator[tuple[StyleSpec, Image.Image]]:
    """Each style of `plan`, made; a crop's window placed by its gravity."""
    frames = [base]
    subject = gravity.Subject(base, focal_point)
    for step in plan(styles, width, height, base.size):
        source = frames[step.source]
        box = step.box
        if box is not None:
            box = subject.place(source.size, box, step.style.gravity)
        if box is None and source.size == step.size:
            styled = source
        else:
            styled = source.resize(step.size, _RESAMPLE, box=box, reducing_gap=_REDUCING_GAP)
        frames.append(styled)
        yield step.style, styled


# -- watermark and encoding ------------------------------------------------------------------


def _load_watermark_image(path: Path | None) -> Image.Image | None:
    if path is None:
        return None
    with Image.open(path, formats=("PNG",)) as mark:
        if mark.width * mark.height > _MAX_WATERMARK_PIXELS:
            raise ValueError(f"watermark image {mark.width}x{mark.height} is too large")
        return mark.convert("RGBA")


def apply_watermark(
    image: Image.Image, watermark: Watermark, mark_image: Image.Image | None
) -> Image.Image:
    """`image` with the watermark blended in; `image` itself is left alone (it may be cascaded)."""
    canvas = image.convert("RGBA")
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    margin = max(2, min(canvas.size) // 40)
    if mark_image is not None:
        mark = ImageOps.contain(mark_image, (max(1, canvas.width // 4), max(1, canvas.height // 4)))
        alpha = mark.getchannel("A").point(lambda value: round(value * watermark.opacity))
        mark.putalpha(alpha)
        overlay.paste(mark, _place(watermark.position, canvas.size, mark.size, margin))
    if watermark.text:
        font = ImageFont.load_default(size=max(8, canvas.height // 16))
        draw = ImageDraw.Draw(overlay)
        left, top, right, bottom = draw.textbbox((0, 0), watermark.text, font=font)
        text_size = (math.ceil(right - left), math.ceil(bottom - top))
        x, y = _place(watermark.position, canvas.size, text_size, margin)
        fill = (255, 255, 255, round(255 * watermark.opacity))
        draw.text((x - left, y - top), watermark.text, font=font, fill=fill)
    blended = Image.alpha_composite(canvas, overlay)
    return blended if image.mode == "RGBA" else blended.convert(image.mode)


def _place(
    position: str, canvas: tuple[int, int], item: tuple[int, int], margin: int
) -> tuple[int, int]:
    free_x, free_y = canvas[0] - item[0], canvas[1] - item[1]
    x = {"left": margin, "right": free_x - margin}.get(position.rpartition("-")[2], free_x // 2)
    y = {"top": margin, "bottom": free_y - margin}.get(position.partition("-")[0], free_y // 2)
    return max(0, x), max(0, y)


def _write_style(image: Image.Image, style: StyleSpec, job: RenderJob) -> RenderedStyle:
    """Encode `image` in every format of `style`, the same pixels for each."""
    files = tuple(
        _write_file(
            image,
            style.name,
            output_format,
            style.quality_for(output_format, job.quality),
            job.out_dir,
        )
        for output_format in style.output_formats(job.format)
    )
    first = files[0]
    return RenderedStyle(
        style=style.name,
        path=first.path,
        extension=first.extension,
        content_type=first.content_type,
        width=image.width,
        height=image.height,
        bytes=first.bytes,
        files=files,
    )


def _write_file(
    image: Image.Image, style: str, output_format: OutputFormat, quality: int, out_dir: Path
) -> RenderedFile:
    extension = EXTENSIONS[output_format]
    path = out_dir / f"{style}.{extension}"
    encode(image, path, output_format, quality)
    return RenderedFile(
        format=output_format,
        path=path,
        extension=extension,
        content_type=CONTENT_TYPES[output_format],
        bytes=path.stat().st_size,
    )


def encoders_cost(steps: tuple[Step, ...], default_format: OutputFormat) -> int:
    """The memory the encoders take beyond the frames (`decode_cost` counts those): AVIF's
    alone is large, and styles are encoded one at a time, so the largest AVIF style's."""
    avif = [
        step.size[0] * step.size[1]
        for step in steps
        if "avif" in step.style.output_formats(default_format)
    ]
    return AVIF_ENCODER_FIXED + AVIF_ENCODER_PER_PIXEL * max(avif) if avif else 0


def encode(image: Image.Image, path: Path, output_format: OutputFormat, quality: int) -> None:
    """Write `image` with no metadata: nothing from the source (EXIF, GPS, XMP, ICC) is kept."""
    if output_format == "jpeg" and image.mode == "RGBA":
        # JPEG has no alpha: flatten onto white, as a browser shows a transparent PNG.
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    image.save(path, _PIL_FORMATS[output_format], **encoder_options(output_format, quality))


def encoder_options(output_format: OutputFormat, quality: int) -> dict[str, object]:
    """Pillow's save options for `output_format` at `quality` (the bench uses them too)."""
    options: dict[str, object] = {}
    if output_format in ("jpeg", "webp", "avif"):
        options["quality"] = quality
    if output_format == "webp":
        options["method"] = 4
    if output_format == "png":
        options["compress_level"] = 6
    if output_format == "avif":
        # One thread: a processor already renders as many items at once as it has cores,
        # and libavif's own threads would only fight them (the bench measures CPU alike).
        options["speed"] = AVIF_SPEED
        options["max_threads"] = 1
    return options
