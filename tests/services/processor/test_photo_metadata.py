"""A photo's own metadata, read while it is rendered: camera-like JPEGs with real Exif
blocks (Pillow's writer: orientation, time offsets, a Unicode artist, GPS), photos with
none, HEIC and AVIF with an Exif item, and hostile values, which are left out, never a
failure."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from emulsion_contracts.manifest import TEXT_MAX, PhotoMetadata
from emulsion_contracts.messages import StyleSpec
from emulsion_contracts.profiles import OriginalPolicy, Profile
from emulsion_processor import imaging, photo_metadata
from emulsion_processor.worker import recorded_metadata
from tests import phone_photos as photos

STYLES = (
    StyleSpec(name="thumb", width=64, height=64, fit="crop"),
    StyleSpec(name="large", width=320, height=320, fit="fit"),
)
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
ARTIST = "写真家 Zoë"


def camera_exif() -> Image.Exif:
    """What a camera writes: IFD0, the Exif IFD with time, offset and exposure, GPS."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    exif[0x0112] = 6
    exif[0x0132] = "2026:05:05 09:00:00"
    exif[0x013B] = ARTIST.encode()  # UTF-8 in an ASCII field, as phones and Lightroom do
    exif[0x8298] = "© 2026 Zoë".encode()
    sub = exif.get_ifd(EXIF_IFD)
    sub.update(
        {
            0x9003: "2026:05:04 13:14:15",
            0x9011: "+09:00",
            0x9291: "25",
            0x829A: IFDRational(1, 250),
            0x829D: IFDRational(28, 10),
            0x8827: 400,
            0x920A: IFDRational(50, 1),
            0xA433: "Canon",
            0xA434: "RF50mm F1.8 STM",
        }
    )
    exif.get_ifd(GPS_IFD).update(
        {
            1: "N",
            2: (IFDRational(35), IFDRational(40), IFDRational(61, 2)),
            3: "W",
            4: (IFDRational(139), IFDRational(45), IFDRational(0)),
            5: b"\x00",
            6: IFDRational(81, 2),
        }
    )
    return exif


def camera_jpeg(
    tmp_path: Path, exif: Image.Exif | None, size: tuple[int, int] = (400, 300)
) -> Path:
    """A photo stored sideways (orientation 6 shows it as `size`), with `exif`."""
    seen = photos.marked(*size)
    stored = photos.stored_for(seen, 6) if exif is not None and exif.get(0x0112) == 6 else seen
    path = tmp_path / "IMG_0001.jpg"
    options = {"exif": exif} if exif is not None else {}
    stored.save(path, "JPEG", quality=90, **options)
    return path


def render(path: Path, tmp_path: Path, **job: Any) -> imaging.Rendered:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return imaging.render(imaging.RenderJob(source=path, out_dir=out, styles=STYLES, **job))


def test_a_camera_jpeg_says_when_where_and_with_what(tmp_path: Path) -> None:
    rendered = render(camera_jpeg(tmp_path, camera_exif()), tmp_path, keep_gps=True)
    metadata = rendered.metadata
    assert metadata is not None
    assert metadata.taken_at == datetime(
        2026, 5, 4, 13, 14, 15, 250_000, tzinfo=timezone(timedelta(hours=9))
    )
    assert (metadata.camera_make, metadata.camera_model) == ("Canon", "Canon EOS R5")
    assert metadata.lens == "Canon RF50mm F1.8 STM"  # LensMake, as the model lacks it
    assert (metadata.iso, metadata.exposure_time, metadata.aperture) == (400, 0.004, 2.8)
    assert metadata.focal_length == 50.0
    assert metadata.artist == ARTIST
    assert metadata.copyright == "© 2026 Zoë"
    assert metadata.orientation == 6
    assert (rendered.width, rendered.height) == (400, 300)  # upright, as the orientation says
    assert metadata.gps is not None
    assert metadata.gps.latitude == pytest.approx(35 + 40 / 60 + 30.5 / 3600)
    assert metadata.gps.longitude == -139.75
    assert metadata.gps.altitude == 40.5


def test_gps_is_recorded_only_when_the_profile_keeps_it(tmp_path: Path) -> None:
    path = camera_jpeg(tmp_path, camera_exif())
    stripping = Profile(name="p", styles=STYLES, original=OriginalPolicy(strip=("gps",)))
    keeping = Profile(name="k", styles=STYLES)
    withheld = render(path, tmp_path, **recorded_metadata(stripping)).metadata
    kept = render(path, tmp_path, **recorded_metadata(keeping)).metadata
    assert withheld is not None and withheld.gps is None and withheld.camera_make == "Canon"
    assert kept is not None and kept.gps is not None


def test_exif_tags_the_profile_strips_are_not_recorded_either(tmp_path: Path) -> None:
    path = camera_jpeg(tmp_path, camera_exif())
    profile = Profile(
        name="p", styles=STYLES, original=OriginalPolicy(strip=("Artist", "DateTimeOriginal"))
    )
    metadata = render(path, tmp_path, **recorded_metadata(profile)).metadata
    assert metadata is not None
    assert metadata.artist is None
    # Without DateTimeOriginal, the file's other time (IFD0 DateTime) is what is left.
    assert metadata.taken_at == datetime(2026, 5, 5, 9, 0, 0)
    assert metadata.copyright == "© 2026 Zoë"


def test_a_photo_without_exif_has_no_metadata_but_a_placeholder(tmp_path: Path) -> None:
    rendered = render(camera_jpeg(tmp_path, None), tmp_path, keep_gps=True)
    assert rendered.metadata is None
    assert rendered.placeholder is not None


def test_a_time_without_an_offset_stays_local_and_naive() -> None:
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[0x9003] = "2026:05:04 13:14:15"
    metadata = photo_metadata.read(reload(exif), gps=True)
    assert metadata is not None and metadata.taken_at == datetime(2026, 5, 4, 13, 14, 15)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (ARTIST.encode(), ARTIST),
        ("Zoë".encode("latin-1"), "Zoë"),  # not UTF-8: read as Latin-1
        (b"  Jane\x00garbage after the NUL", "Jane"),
        (b"\x00\x00\x00", None),
        (b"tab\tand\nnewline", "tab and newline"),
    ],
)
def test_text_is_unicode_as_the_file_has_it(raw: bytes, expected: str | None) -> None:
    exif = Image.Exif()
    exif[0x013B] = raw
    metadata = photo_metadata.read(reload(exif), gps=True)
    assert (metadata.artist if metadata else None) == expected


def test_windows_author_is_the_artist_when_there_is_no_artist() -> None:
    exif = Image.Exif()
    exif[0x9C9D] = (ARTIST + "\x00").encode("utf-16-le")
    metadata = photo_metadata.read(reload(exif), gps=True)
    assert metadata is not None and metadata.artist == ARTIST


@pytest.mark.parametrize(
    "sub",
    [
        {0x9003: "0000:00:00 00:00:00"},
        {0x9003: "    :  :     :  :  "},
        {0x9003: "2026:02:31 10:00:00"},
        {0x829A: IFDRational(1, 0)},
        {0x829D: IFDRational(0, 1)},
        {0x8827: 0},
        {0x920A: IFDRational(-5, 1)},
    ],
)
def test_nonsense_is_left_out(sub: dict[int, Any]) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Nikon"
    exif.get_ifd(EXIF_IFD).update(sub)
    assert photo_metadata.read(reload(exif), gps=True) == PhotoMetadata(camera_make="Nikon")


@pytest.mark.parametrize("make", ["heic", "avif"])
def test_heic_and_avif_exif_items_are_read(tmp_path: Path, make: str) -> None:
    buffer = io.BytesIO()
    picture = photos.marked(256, 192)
    # Without an orientation: Pillow's AVIF writer moves it into the container and writes
    # the rest of the block again, with its text as ASCII (the file would hold "???").
    camera = camera_exif()
    del camera[0x0112]
    exif = camera.tobytes()
    if make == "heic":
        picture.save(buffer, "HEIF", exif=exif, quality=80)
    else:
        picture.save(buffer, "AVIF", exif=exif, speed=10)
    path = tmp_path / f"IMG_0001.{make}"
    path.write_bytes(buffer.getvalue())
    metadata = render(path, tmp_path).metadata
    assert metadata is not None
    assert (metadata.camera_model, metadata.artist, metadata.iso) == ("Canon EOS R5", ARTIST, 400)
    assert metadata.taken_at is not None and metadata.taken_at.utcoffset() == timedelta(hours=9)
    assert metadata.gps is None  # the job did not keep GPS


def reload(exif: Image.Exif) -> Image.Exif:
    """`exif` as a reader meets it: written out and parsed back."""
    loaded = Image.Exif()
    loaded.load(exif.tobytes())
    return loaded


# -- hostile values ----------------------------------------------------------------------

TAGS = {
    "ifd0": [0x010F, 0x0110, 0x0112, 0x0132, 0x013B, 0x8298, 0x9C9D],
    "sub": [0x829A, 0x829D, 0x8827, 0x9003, 0x9010, 0x9011, 0x9291, 0x920A, 0xA433, 0xA434],
    "gps": [1, 2, 3, 4, 5, 6],
}
values = st.one_of(
    st.text(max_size=2000),
    st.binary(max_size=2000),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.builds(
        IFDRational,
        st.integers(min_value=0, max_value=2**31 - 1),
        st.integers(min_value=0, max_value=2**31 - 1),
    ),
    st.tuples(*[st.integers(min_value=0, max_value=2**16 - 1)] * 3),
    st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e9),
)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's, on a wrong count of values
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ifd0=st.dictionaries(st.sampled_from(TAGS["ifd0"]), values, max_size=5),
    sub=st.dictionaries(st.sampled_from(TAGS["sub"]), values, max_size=6),
    gps=st.dictionaries(st.sampled_from(TAGS["gps"]), values, max_size=6),
)
def test_random_values_never_fail_and_stay_bounded(
    ifd0: dict[int, Any], sub: dict[int, Any], gps: dict[int, Any]
) -> None:
    exif = Image.Exif()
    exif.update(ifd0)
    exif.get_ifd(EXIF_IFD).update(sub)
    exif.get_ifd(GPS_IFD).update(gps)
    try:
        written = exif.tobytes()
    except Exception:  # Pillow's writer refuses some of these: nothing to read then
        return
    loaded = Image.Exif()
    loaded.load(written)
    metadata = photo_metadata.read(loaded, gps=True)
    assert_sane(metadata)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4000))
def test_a_garbage_exif_block_is_no_metadata_not_an_error(block: bytes) -> None:
    exif = Image.Exif()
    try:
        exif.load(b"Exif\x00\x00" + block)
    except Exception:  # Pillow refuses it while loading: the render would say so itself
        return
    assert_sane(photo_metadata.read(exif, gps=True))


def assert_sane(metadata: PhotoMetadata | None) -> None:
    if metadata is None:
        return
    assert not metadata.empty
    for name in ("camera_make", "camera_model", "lens", "artist", "copyright"):
        text = getattr(metadata, name)
        assert text is None or (0 < len(text) <= TEXT_MAX and text == text.strip())
    # The manifest takes it: every bound of the contract holds.
    assert PhotoMetadata.model_validate_json(metadata.model_dump_json()) == metadata


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's, on the garbage
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=3000), st.booleans())
def test_a_jpeg_with_a_garbage_exif_segment_still_renders(
    tmp_path: Path, block: bytes, tiff_header: bool
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), (10, 20, 30)).save(buffer, "JPEG")
    data = buffer.getvalue()
    payload = b"Exif\x00\x00" + (b"MM\x00*\x00\x00\x00\x08" if tiff_header else b"") + block
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    path = tmp_path / "garbage.jpg"
    path.write_bytes(data[:2] + segment + data[2:])
    rendered = render(path, tmp_path, keep_gps=True)
    assert rendered.placeholder is not None
    assert_sane(rendered.metadata)
