"""Where a `crop` style cuts: the pure placement of its window, and the image analyses
that choose it (`center`, `smart`, `faces`, or the asset's focal point).

`imaging.plan` sizes every crop window centred, from sizes alone; this module only moves
that window along the axis it cuts, never changes its size, so a style's output is
exactly its size whatever the gravity. Every placement is "put the window's centre as
near to a point as the image allows" (`box_around`): a focal point is that point, `faces`
the centre of the faces found, `smart` the centre of the best window by detail.

The analyses run once per render on the decoded base (the upright, sRGB image every
style is made from), reduced first: what they find is a fraction of the image, good for
every frame of the cascade. Faces need OpenCV (`opencv-python-headless`, the Haar
cascade it ships), imported only when a style asks for faces; OpenCV only ever sees
decoded pixels, never a file, so it adds no decoder to the attack surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from PIL import Image, ImageChops, ImageFilter

from emulsion_contracts.messages import FocalPoint, Gravity

if TYPE_CHECKING:
    from collections.abc import Sequence

Box = tuple[int, int, int, int]
# The long side the detail map is measured at: a 64x48 map of a 4:3 photo. Finer maps
# cost more and move the window by less than a thumbnail's pixel.
SMART_SIDE: Final = 96
# How many positions along the cut axis `smart` compares (a window moves in 1/256 steps).
SMART_BINS: Final = 256
# `smart` moves off the centre only for a window this much richer than the centred one:
# a flat or evenly busy picture keeps today's centred crop.
SMART_MARGIN: Final = 1.10
# The long side faces are looked for at. A face of 1/16 of it (20 px) is still found;
# the Haar cascade's time grows with the area (measured: 44 ms at 256, 87 ms at 384).
FACES_SIDE: Final = 320
FACE_MIN_PIXELS: Final = 20
FACE_CASCADE: Final = "haarcascade_frontalface_default.xml"


def box_around(width: int, height: int, box: Box, centre_x: float, centre_y: float) -> Box:
    """`box` (a window of a `width`x`height` frame) moved so its centre is as near to the
    point (`centre_x`, `centre_y`, fractions of the frame) as the frame allows.

    Integer pixels, the same size as `box`, inside the frame. The point is inside the
    result whenever the window is at least a pixel: rounding moves the window by at most
    half a pixel from the point, and clamping only towards it.
    """
    left, top, right, bottom = box
    new_left, new_right = _place(width, right - left, centre_x)
    new_top, new_bottom = _place(height, bottom - top, centre_y)
    return new_left, new_top, new_right, new_bottom


def _place(length: int, window: int, centre: float) -> tuple[int, int]:
    """The start and end of a `window` on a line of `length`, centred near `centre`."""
    ideal = centre * length - window / 2
    start = min(max(math.floor(ideal + 0.5), 0), length - window)
    return start, start + window


def focal_box(width: int, height: int, box: Box, point: FocalPoint) -> Box:
    return box_around(width, height, box, point.x, point.y)


# -- smart: the window with the most detail ---------------------------------------------


def detail_map(image: Image.Image) -> Image.Image:
    """An 8-bit map of where `image` has detail: edges (the subject is usually the sharp
    part) plus colour saturation (skin, clothes and flowers against sky, sand and walls),
    at most `SMART_SIDE` pixels on its long side."""
    small = image.convert("RGB")
    small.thumbnail((SMART_SIDE, SMART_SIDE), Image.Resampling.BOX, reducing_gap=None)
    edges = small.convert("L").filter(ImageFilter.FIND_EDGES)
    saturation = small.convert("HSV").getchannel("S")
    # FIND_EDGES answers the frame's border with the border itself; it is no subject.
    edges = ImageChops.multiply(edges, _inner_mask(edges.size))
    return ImageChops.add(edges, saturation, scale=2.0)


def _inner_mask(size: tuple[int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    if size[0] > 2 and size[1] > 2:
        mask.paste(255, (1, 1, size[0] - 1, size[1] - 1))
    return mask


def smart_centre(detail: Image.Image, fraction: float, horizontal: bool) -> float:
    """Where the centre of the richest window of `fraction` of the image goes, along the
    cut axis (`horizontal`: the window moves left and right), as a fraction of it."""
    size = (SMART_BINS, 1) if horizontal else (1, SMART_BINS)
    profile = list(detail.resize(size, Image.Resampling.BOX).tobytes())  # mode L: a byte each
    return richest_window(profile, fraction)


def richest_window(profile: Sequence[float], fraction: float) -> float:
    """The centre (a fraction of the line) of the window of `fraction` of the line with
    the most `profile` in it; the centred window unless another beats it by the margin."""
    bins = len(profile)
    window = min(bins, max(1, round(fraction * bins)))
    sums = [0.0]
    for value in profile:
        sums.append(sums[-1] + value)
    middle = (bins - window) // 2
    centred = sums[middle + window] - sums[middle]
    best, best_start = centred, middle
    for start in range(bins - window + 1):
        total = sums[start + window] - sums[start]
        if total > best or (total == best and abs(start - middle) < abs(best_start - middle)):
            best, best_start = total, start
    if best <= centred * SMART_MARGIN:
        return 0.5
    return (best_start + window / 2) / bins


# -- faces -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Face:
    """A face found, as fractions of the image (left, top, right, bottom)."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def area(self) -> float:
        return (self.right - self.left) * (self.bottom - self.top)


def find_faces(image: Image.Image) -> tuple[Face, ...]:
    """Frontal faces in `image` (OpenCV's Haar cascade over a reduced grey copy)."""
    cv2, numpy = _opencv()
    small = image.convert("L")
    small.thumbnail((FACES_SIDE, FACES_SIDE), Image.Resampling.BOX, reducing_gap=None)
    found = _cascade(cv2).detectMultiScale(
        numpy.asarray(small),
        scaleFactor=1.1,
        minNeighbors=5,
        minSize=(FACE_MIN_PIXELS, FACE_MIN_PIXELS),
    )
    width, height = small.size
    return tuple(
        Face(x / width, y / height, (x + w) / width, (y + h) / height)
        for x, y, w, h in (tuple(int(v) for v in row) for row in found)
    )


def faces_centre(
    faces: Sequence[Face], fraction_x: float, fraction_y: float
) -> tuple[float, float]:
    """The point to centre a window of (`fraction_x`, `fraction_y`) of the image on: the
    middle of all the faces if they fit in it together, else of the largest face."""
    left = min(face.left for face in faces)
    top = min(face.top for face in faces)
    right = max(face.right for face in faces)
    bottom = max(face.bottom for face in faces)
    if right - left > fraction_x or bottom - top > fraction_y:
        largest = max(faces, key=lambda face: face.area)
        left, top, right, bottom = largest.left, largest.top, largest.right, largest.bottom
    return (left + right) / 2, (top + bottom) / 2


_CASCADES: dict[str, Any] = {}


def _opencv() -> tuple[Any, Any]:
    try:
        import cv2
        import numpy
    except ImportError as error:  # pragma: no cover - the image always has it
        raise RuntimeError(f"gravity 'faces' needs opencv-python-headless: {error}") from None
    return cv2, numpy


def cascade_file() -> str:
    """The Haar cascade file inside the opencv-python-headless wheel."""
    cv2, _ = _opencv()
    return str(cv2.data.haarcascades) + FACE_CASCADE


def _cascade(cv2: Any) -> Any:
    cascade = _CASCADES.get(FACE_CASCADE)
    if cascade is None:
        # One thread: the render pool already runs one render per core.
        cv2.setNumThreads(1)
        cascade = cv2.CascadeClassifier(cascade_file())
        if cascade.empty():
            raise RuntimeError(f"OpenCV's {FACE_CASCADE} did not load")
        _CASCADES[FACE_CASCADE] = cascade
    return cascade


# -- one render's placements -------------------------------------------------------------


@dataclass(slots=True)
class Subject:
    """What one image's crops keep: its focal point, or what its analyses found (each run
    at most once, on the base image, and only when a style's gravity needs it)."""

    base: Image.Image
    focal_point: FocalPoint | None = None
    _detail: Image.Image | None = field(default=None, init=False)
    _faces: tuple[Face, ...] | None = field(default=None, init=False)

    def place(self, frame: tuple[int, int], box: Box, gravity: Gravity | None) -> Box:
        """The crop window `box` of a full `frame` (same picture as the base, any scale),
        moved where `gravity` (or the focal point, which wins) wants it."""
        width, height = frame
        if self.focal_point is not None:
            return focal_box(width, height, box, self.focal_point)
        if gravity is None or gravity == "center":
            return box
        left, top, right, bottom = box
        fraction_x, fraction_y = (right - left) / width, (bottom - top) / height
        if gravity == "faces":
            faces = self.faces()
            if faces:
                return box_around(width, height, box, *faces_centre(faces, fraction_x, fraction_y))
        # smart, and faces where none was found
        if right - left < width:
            return box_around(
                width, height, box, smart_centre(self.detail(), fraction_x, True), 0.5
            )
        if bottom - top < height:
            return box_around(
                width, height, box, 0.5, smart_centre(self.detail(), fraction_y, False)
            )
        return box

    def detail(self) -> Image.Image:
        if self._detail is None:
            self._detail = detail_map(self.base)
        return self._detail

    def faces(self) -> tuple[Face, ...]:
        if self._faces is None:
            self._faces = find_faces(self.base)
        return self._faces
