"""A photo's placeholder: its ThumbHash and its dominant colour, from a frame the render
already holds. Pure, like `imaging`.

ThumbHash (Evan Wallace's format, https://evanw.github.io/thumbhash/) packs a blurred
~32 px preview into about 25 bytes: the average colour and a few DCT coefficients of
luminance, two chroma channels and alpha, plus the aspect ratio, so a page paints a
preview of the right shape (and transparency) before the image arrives. `encode` and
`decode` follow the reference implementation's arithmetic (its `Math.round` is half up),
vectorised: the DCT is two matrix products per channel. Only coefficients that are float
noise (a flat image's) may come out in other nibbles than the reference's; their scale
rounds to 0, so they decode to nothing either way.

The dominant colour is the most common colour of the opaque pixels, at 3 bits a channel
(512 bins; the colour given is the mean of the pixels in the fullest bin): an average
would be a grey nobody sees in a photo of a red car on green grass.
"""

from __future__ import annotations

import base64
import functools
import math
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from emulsion_contracts.manifest import Placeholder

# ThumbHash is encoded from at most 100x100 pixels: more adds time, not information.
MAX_SIDE: Final = 100
# The most coefficients a channel has along one side (luminance's 7).
MIN_SIDE: Final = 7
_BIN_BITS: Final = 3
_OPAQUE: Final = 128

Floats = npt.NDArray[np.float64]


def of(frame: Image.Image) -> Placeholder:
    """The placeholder of `frame` (L, RGB or RGBA, any size; upright, in sRGB)."""
    small = reduced(frame)
    rgba = np.asarray(small.convert("RGBA"), dtype=np.uint8)
    return Placeholder(
        thumbhash=base64.b64encode(encode(rgba)).decode("ascii"),
        dominant_color=dominant_color(rgba),
    )


def reduced(frame: Image.Image) -> Image.Image:
    """`frame` fitted into MAX_SIDE x MAX_SIDE (box filter: every pixel counts once), and
    at least MIN_SIDE on each side: with fewer pixels than a channel has coefficients the
    cosines alias (a 1x1 image would come back striped). A thinner frame is stretched,
    beyond the 7:1 that ThumbHash's aspect ratio tells apart anyway."""
    width, height = frame.size
    scale = min(1.0, MAX_SIDE / max(width, height))
    size = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))
    if size == frame.size:
        return frame
    return frame.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


def _round(value: float) -> int:
    """JavaScript's Math.round (half up), which the format is defined with."""
    return math.floor(value + 0.5)


def _order(nx: int, ny: int) -> list[tuple[int, int]]:
    """The (cx, cy) of a channel's coefficients in the hash's order, DC first."""
    return [(cx, cy) for cy in range(ny) for cx in range(nx) if cx * ny < nx * (ny - cy)]


# (r, g, b) to ThumbHash's channels: luminance (r + g + b) / 3, yellow-blue
# (r + g) / 2 - b, red-green r - g.
_TO_LPQ: Final = np.array([[1 / 3, 0.5, 1.0], [1 / 3, 0.5, -1.0], [1 / 3, -1.0, 0.0]])


@functools.cache
def _basis(count: int, size: int) -> Floats:
    """cos(pi / size * c * (x + 0.5)) for c < count (rows) and x < size (columns)."""
    c = np.arange(count, dtype=np.float64)[:, None]
    x = np.arange(size, dtype=np.float64)[None, :] + 0.5
    result: Floats = np.cos(math.pi / size * c * x)
    result.flags.writeable = False  # cached: shared by every call
    return result


def encode(rgba: npt.NDArray[np.uint8]) -> bytes:
    """The ThumbHash of an RGBA image (height x width x 4, at most 100x100)."""
    h, w = rgba.shape[:2]
    if w > MAX_SIDE or h > MAX_SIDE:
        raise ValueError(f"{w}x{h} does not fit in {MAX_SIDE}x{MAX_SIDE}")
    has_alpha = bool((rgba[..., 3] != 255).any())
    pixels: Floats = rgba[..., :3].astype(np.float64) / 255
    if has_alpha:
        alpha = rgba[..., 3].astype(np.float64) / 255
        total_alpha = float(alpha.sum())
        weights = alpha[..., None]
        average = (pixels * weights).sum(axis=(0, 1)) / total_alpha if total_alpha else 0.0
        # Composite atop the average colour.
        pixels = average * (1 - weights) + pixels * weights
    l_limit = 5 if has_alpha else 7
    lx = max(1, _round(l_limit * w / max(w, h)))
    ly = max(1, _round(l_limit * h / max(w, h)))
    lpq = pixels @ _TO_LPQ
    l_channel, p_channel, q_channel = lpq[..., 0], lpq[..., 1], lpq[..., 2]

    def channel(values: Floats, nx: int, ny: int) -> tuple[float, list[float], float]:
        # F[cy, cx] = sum over y, x of values * fx[cx, x] * fy[cy, y], over w * h
        factors = _basis(ny, h) @ values @ _basis(nx, w).T / (w * h)
        order = _order(nx, ny)
        dc = float(factors[0, 0])
        ac = [float(factors[cy, cx]) for cx, cy in order[1:]]
        scale = max((abs(f) for f in ac), default=0.0)
        if scale:
            ac = [0.5 + 0.5 / scale * f for f in ac]
        return dc, ac, scale

    l_dc, l_ac, l_scale = channel(l_channel, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = channel(p_channel, 3, 3)
    q_dc, q_ac, q_scale = channel(q_channel, 3, 3)
    is_landscape = w > h
    header24 = (
        _round(63 * l_dc)
        | (_round(31.5 + 31.5 * p_dc) << 6)
        | (_round(31.5 + 31.5 * q_dc) << 12)
        | (_round(31 * l_scale) << 18)
        | (int(has_alpha) << 23)
    )
    header16 = (
        (ly if is_landscape else lx)
        | (_round(63 * p_scale) << 3)
        | (_round(63 * q_scale) << 9)
        | (int(is_landscape) << 15)
    )
    head = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    channels = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = channel(rgba[..., 3].astype(np.float64) / 255, 5, 5)
        head.append(_round(15 * a_dc) | (_round(15 * a_scale) << 4))
        channels.append(a_ac)
    factors = [f for ac in channels for f in ac]
    body = bytearray((len(factors) + 1) // 2)
    for index, factor in enumerate(factors):
        body[index >> 1] |= _round(15 * factor) << ((index & 1) << 2)
    return bytes(head) + bytes(body)


def decode(thumbhash: bytes) -> npt.NDArray[np.uint8]:
    """The preview a ThumbHash stands for: RGBA, height x width x 4, 32 px on its long side."""
    header24 = thumbhash[0] | (thumbhash[1] << 8) | (thumbhash[2] << 16)
    header16 = thumbhash[3] | (thumbhash[4] << 8)
    l_dc = (header24 & 63) / 63
    p_dc = ((header24 >> 6) & 63) / 31.5 - 1
    q_dc = ((header24 >> 12) & 63) / 31.5 - 1
    l_scale = ((header24 >> 18) & 31) / 31
    has_alpha = bool(header24 >> 23)
    p_scale = ((header16 >> 3) & 63) / 63
    q_scale = ((header16 >> 9) & 63) / 63
    is_landscape = bool(header16 >> 15)
    lx = max(3, (5 if has_alpha else 7) if is_landscape else header16 & 7)
    ly = max(3, header16 & 7 if is_landscape else (5 if has_alpha else 7))
    a_dc = (thumbhash[5] & 15) / 15 if has_alpha else 1.0
    a_scale = (thumbhash[5] >> 4) / 15
    start = 6 if has_alpha else 5
    index = 0

    def channel(nx: int, ny: int, scale: float) -> Floats:
        nonlocal index
        factors = np.zeros((ny, nx))
        for cx, cy in _order(nx, ny)[1:]:
            nibble = (thumbhash[start + (index >> 1)] >> ((index & 1) << 2)) & 15
            factors[cy, cx] = (nibble / 7.5 - 1) * scale
            index += 1
        return factors

    l_ac = channel(lx, ly, l_scale)
    p_ac = channel(3, 3, p_scale * 1.25)
    q_ac = channel(3, 3, q_scale * 1.25)
    a_ac = channel(5, 5, a_scale) if has_alpha else None
    ratio = aspect_ratio(thumbhash)
    w = _round(32 if ratio > 1 else 32 * ratio)
    h = _round(32 / ratio if ratio > 1 else 32)

    def image(dc: float, ac: Floats) -> Floats:
        ny, nx = ac.shape
        result: Floats = dc + 2 * (_basis(ny, h).T @ ac @ _basis(nx, w))
        return result

    lum = image(l_dc, l_ac)
    p = image(p_dc, p_ac)
    q = image(q_dc, q_ac)
    a = image(a_dc, a_ac) if a_ac is not None else np.ones((h, w))
    b = lum - 2 / 3 * p
    r = (3 * lum - b + q) / 2
    g = r - q
    stacked = np.stack([r, g, b, a], axis=-1)
    result: npt.NDArray[np.uint8] = (np.clip(stacked, 0, 1) * 255).astype(np.uint8)
    return result


def aspect_ratio(thumbhash: bytes) -> float:
    """The approximate width / height a ThumbHash keeps."""
    has_alpha = thumbhash[2] & 0x80
    is_landscape = thumbhash[4] & 0x80
    lx = (5 if has_alpha else 7) if is_landscape else thumbhash[3] & 7
    ly = thumbhash[3] & 7 if is_landscape else (5 if has_alpha else 7)
    return lx / ly


def dominant_color(rgba: npt.NDArray[np.uint8]) -> str:
    """The most common colour of the opaque pixels (all of them if none is), as #rrggbb."""
    pixels = rgba.reshape(-1, 4)
    opaque = pixels[:, 3] >= _OPAQUE
    chosen = pixels[:, :3] if opaque.all() or not opaque.any() else pixels[opaque, :3]
    top = (chosen >> (8 - _BIN_BITS)).astype(np.uint16)
    bins = (top[:, 0] << (2 * _BIN_BITS)) | (top[:, 1] << _BIN_BITS) | top[:, 2]
    counts = np.bincount(bins, minlength=1 << (3 * _BIN_BITS))
    fullest = int(counts.argmax())
    mean = chosen[bins == fullest].mean(axis=0)
    red, green, blue = (_round(float(value)) for value in mean)
    return f"#{red:02x}{green:02x}{blue:02x}"
