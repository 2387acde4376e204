"""Where crops cut: placement as properties over every size, `smart` on drawn detail,
`faces` on a real photograph (scikit-image's astronaut, a NASA portrait of Eileen
Collins shipped in its wheel), and whole renders with a focal point."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from emulsion_contracts.messages import FocalPoint, Gravity, StyleSpec
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_processor import gravity, imaging

fractions = st.floats(0, 1, allow_nan=False)
GRAVITIES: tuple[Gravity, ...] = ("center", "smart", "faces")
sides = st.integers(1, 12_000)
style_sides = st.integers(1, 8192)


def inside(point: float, start: int, end: int, length: int) -> bool:
    """Whether the fraction `point` of a line of `length` pixels lies in [start, end]."""
    return start <= point * length <= end


@given(sides, sides, style_sides, style_sides, fractions, fractions)
@settings(max_examples=3000, deadline=None)
def test_a_window_placed_on_any_point_keeps_its_size_stays_in_the_frame_and_holds_the_point(
    width: int, height: int, out_width: int, out_height: int, x: float, y: float
) -> None:
    centred = imaging.crop_box(width, height, out_width, out_height)
    left, top, right, bottom = gravity.box_around(width, height, centred, x, y)
    assert (right - left, bottom - top) == (centred[2] - centred[0], centred[3] - centred[1])
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    assert inside(x, left, right, width) and inside(y, top, bottom, height)


@st.composite
def images_and_decodes(draw: st.DrawFn) -> tuple[int, int, tuple[int, int]]:
    """A full oriented size and the (maybe reduced) size it was decoded at."""
    width, height = draw(st.integers(1, 9000)), draw(st.integers(1, 9000))
    denominator = draw(st.sampled_from((1, 2, 4, 8)))
    return width, height, (max(1, -(-width // denominator)), max(1, -(-height // denominator)))


crop_styles = st.lists(
    st.builds(
        StyleSpec,
        name=st.sampled_from(("a", "b", "c", "d")),
        width=st.integers(1, 2000),
        height=st.integers(1, 2000),
        fit=st.sampled_from(("fit", "crop")),
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda style: style.name,
).map(tuple)


@given(images_and_decodes(), crop_styles, fractions, fractions)
@settings(max_examples=1000, deadline=None)
def test_every_crop_of_the_plan_keeps_the_focal_point_and_the_style_size(
    image: tuple[int, int, tuple[int, int]],
    styles: tuple[StyleSpec, ...],
    x: float,
    y: float,
) -> None:
    width, height, base = image
    subject = gravity.Subject(Image.new("RGB", (1, 1)), FocalPoint(x=x, y=y))
    frames = [base]
    for step in imaging.plan(styles, width, height, base):
        source = frames[step.source]
        if step.box is None:
            frames.append(step.size)
            continue
        frames.append((0, 0))
        assert step.size == (step.style.width, step.style.height)
        left, top, right, bottom = subject.place(source, step.box, step.style.gravity)
        box_width, box_height = right - left, bottom - top
        assert (box_width, box_height) == (step.box[2] - step.box[0], step.box[3] - step.box[1])
        assert 0 <= left < right <= source[0] and 0 <= top < bottom <= source[1]
        assert inside(x, left, right, source[0]) and inside(y, top, bottom, source[1])


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=300), fractions)
@settings(max_examples=500, deadline=None)
def test_the_richest_window_is_a_whole_window_of_the_line(
    profile: list[float], fraction: float
) -> None:
    centre = gravity.richest_window(profile, fraction)
    window = min(len(profile), max(1, round(fraction * len(profile)))) / len(profile)
    assert window / 2 - 1e-9 <= centre <= 1 - window / 2 + 1e-9


def test_a_flat_or_evenly_busy_line_keeps_the_centre() -> None:
    assert gravity.richest_window([7.0] * 256, 0.3) == 0.5
    assert gravity.richest_window([0.0] * 256, 0.3) == 0.5
    assert gravity.richest_window([1.0, 0.0] * 128, 0.5) == 0.5


def detailed_at(size: tuple[int, int], area: tuple[int, int, int, int]) -> Image.Image:
    """A flat grey picture with a busy, coloured patch (the subject) in `area`."""
    image = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = area
    for offset in range(left, right, 6):
        draw.line((offset, top, offset, bottom), fill=(200, 30, 40), width=2)
    for offset in range(top, bottom, 6):
        draw.line((left, offset, right, offset), fill=(20, 160, 60), width=2)
    return image


@pytest.mark.parametrize(
    ("size", "subject"),
    [
        ((1200, 400), (40, 60, 300, 340)),  # a panorama, the subject at the left edge
        ((1200, 400), (900, 60, 1160, 340)),  # at the right edge
        ((400, 1200), (60, 20, 340, 280)),  # a portrait, the subject at the top
    ],
)
def test_smart_moves_the_window_onto_the_subject(
    size: tuple[int, int], subject: tuple[int, int, int, int]
) -> None:
    image = detailed_at(size, subject)
    centred = imaging.crop_box(*size, 100, 100)
    left, top, right, bottom = gravity.Subject(image).place(size, centred, "smart")
    assert left <= subject[0] and subject[2] <= right
    assert top <= subject[1] and subject[3] <= bottom


def test_smart_keeps_the_centre_of_a_flat_picture() -> None:
    image = Image.new("RGB", (900, 300), (90, 120, 200))
    centred = imaging.crop_box(900, 300, 100, 100)
    assert gravity.Subject(image).place((900, 300), centred, "smart") == centred


# -- faces, on a real photograph ------------------------------------------------------


def astronaut() -> Image.Image:
    """scikit-image's astronaut.png: a real 512x512 portrait (the face near the top)."""
    path = resources.files("skimage") / "data" / "astronaut.png"
    with resources.as_file(path) as real, Image.open(real) as image:
        return image.convert("RGB")


def faces_in(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Faces found at full resolution by the same cascade: the test's own yardstick."""
    cascade = cv2.CascadeClassifier(gravity.cascade_file())
    found = cascade.detectMultiScale(
        numpy.asarray(image.convert("L")), scaleFactor=1.1, minNeighbors=5, minSize=(20, 20)
    )
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in found]


# (how the photo is cut into an off-centre portrait or landscape, then scaled to)
OFF_CENTRE = {
    # A tall portrait with the face in its top quarter: a centred square cuts it off.
    "portrait": ((150, 0, 300, 512), (600, 2048)),
    # A wide frame with the face at its left edge.
    "landscape": ((150, 40, 512, 200), (1810, 800)),
    # The same wide frame mirrored: the face at the right edge.
    "mirrored": ((0, 40, 362, 200), (1810, 800)),
}


# The face in astronaut.png (the cascade's box at its full 512x512; eyes to chin).
ASTRONAUT_FACE = (177, 66, 272, 161)


def face_in_case(case: str) -> tuple[int, int, int, int]:
    """The astronaut's face box in the picture `off_centre(case)` makes."""
    (left, top, right, bottom), (width, height) = OFF_CENTRE[case]
    face = ASTRONAUT_FACE
    if case == "mirrored":
        face = (512 - face[2], face[1], 512 - face[0], face[3])
    scale_x, scale_y = width / (right - left), height / (bottom - top)
    return (
        round((face[0] - left) * scale_x),
        round((face[1] - top) * scale_y),
        round((face[2] - left) * scale_x),
        round((face[3] - top) * scale_y),
    )


def test_the_yardstick_finds_the_astronauts_face_where_the_tests_expect_it() -> None:
    assert faces_in(astronaut()) == [ASTRONAUT_FACE]


def off_centre(case: str) -> Image.Image:
    area, size = OFF_CENTRE[case]
    image = astronaut()
    if case == "mirrored":
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image.crop(area).resize(size, Image.Resampling.LANCZOS)


@pytest.mark.parametrize("case", sorted(OFF_CENTRE))
def test_faces_keeps_the_face_that_a_centred_crop_cuts(case: str) -> None:
    image = off_centre(case)
    face = face_in_case(case)
    centred = imaging.crop_box(*image.size, 100, 100)
    placed = gravity.Subject(image).place(image.size, centred, "faces")

    def contains(box: tuple[int, int, int, int]) -> bool:
        return box[0] <= face[0] and face[2] <= box[2] and box[1] <= face[1] and face[3] <= box[3]

    assert not contains(centred), "the case must be one the centre gets wrong"
    assert contains(placed)


@pytest.mark.parametrize("case", sorted(OFF_CENTRE))
def test_rendered_thumbnails_with_faces_gravity_show_the_face(tmp_path: Path, case: str) -> None:
    source = tmp_path / "photo.jpg"
    off_centre(case).save(source, "JPEG", quality=90)
    styles = (
        *(style for style in DEFAULT_PROFILE.styles if style.name != "thumb"),
        StyleSpec(name="thumb", width=160, height=160, fit="crop", gravity="faces"),
        StyleSpec(name="centred", width=160, height=160, fit="crop"),
    )
    out = tmp_path / "out"
    out.mkdir()
    rendered = imaging.render(imaging.RenderJob(source=source, out_dir=out, styles=styles))
    made = {output.style: output.path for output in rendered.styles}
    with Image.open(made["thumb"]) as thumb:
        assert thumb.size == (160, 160)
        assert len(faces_in(thumb)) == 1
    with Image.open(made["centred"]) as centred:
        assert faces_in(centred) == []


def test_faces_without_a_face_falls_back_to_smart() -> None:
    image = detailed_at((1200, 400), (40, 60, 300, 340))
    centred = imaging.crop_box(1200, 400, 100, 100)
    subject = gravity.Subject(image)
    assert subject.faces() == ()
    assert subject.place((1200, 400), centred, "faces") == subject.place(
        (1200, 400), centred, "smart"
    )


# -- focal point, through a whole render ----------------------------------------------------


@pytest.mark.parametrize("point", [(0.0, 0.0), (1.0, 1.0), (0.9, 0.1), (0.1, 0.8)])
def test_a_render_with_a_focal_point_crops_around_it(
    tmp_path: Path, point: tuple[float, float]
) -> None:
    # A red dot on blue at the focal point of a 3:1 panorama (and of its portrait turn).
    for size in ((1500, 500), (500, 1500)):
        image = Image.new("RGB", size, (0, 0, 255))
        x, y = round(point[0] * (size[0] - 1)), round(point[1] * (size[1] - 1))
        ImageDraw.Draw(image).ellipse((x - 40, y - 40, x + 40, y + 40), fill=(255, 0, 0))
        source = tmp_path / f"dot-{size[0]}.png"
        image.save(source)
        out = tmp_path / f"out-{size[0]}"
        out.mkdir()
        job = imaging.RenderJob(
            source=source,
            out_dir=out,
            styles=DEFAULT_PROFILE.styles,
            focal_point=FocalPoint(x=point[0], y=point[1]),
        )
        for output in imaging.render(job).styles:
            with Image.open(output.path) as made:
                if output.style in ("thumb", "tiny", "really_tiny"):
                    red, _, blue = made.convert("RGB").split()
                    reds = [r for r, b in zip(red.tobytes(), blue.tobytes(), strict=True) if r > b]
                    assert reds, f"{output.style} of {size} lost the focal point"


@given(
    st.integers(1, 600),
    st.integers(1, 600),
    st.sampled_from(GRAVITIES),
    st.one_of(st.none(), st.builds(FocalPoint, x=fractions, y=fractions)),
    st.integers(1, 300),
    st.integers(1, 300),
)
@settings(max_examples=120, deadline=None)
def test_real_renders_give_every_crop_exactly_its_size_whatever_the_gravity(
    tmp_path_factory: pytest.TempPathFactory,
    width: int,
    height: int,
    gravity_name: Gravity,
    focal: FocalPoint | None,
    crop_width: int,
    crop_height: int,
) -> None:
    directory = tmp_path_factory.mktemp("gravity")
    source = directory / "source.png"
    detailed_at((width, height), (0, 0, max(1, width // 3), max(1, height // 3))).save(source)
    styles = (
        StyleSpec(name="large", width=200, height=200),
        StyleSpec(
            name="crop", width=crop_width, height=crop_height, fit="crop", gravity=gravity_name
        ),
        StyleSpec(name="thumb", width=25, height=25, fit="crop", gravity=gravity_name),
    )
    rendered = imaging.render(
        imaging.RenderJob(source=source, out_dir=directory, styles=styles, focal_point=focal)
    )
    made = {output.style: output for output in rendered.styles}
    for style in styles[1:]:
        with Image.open(made[style.name].path) as image:
            assert image.size == (style.width, style.height)
