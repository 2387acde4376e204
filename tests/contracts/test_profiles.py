import re
from pathlib import Path

import pytest

from emulsion_contracts.profiles import DEFAULT_PROFILE, load_profiles


def test_default_profile_is_the_seed_style_set() -> None:
    assert [(s.name, s.width, s.height, s.fit) for s in DEFAULT_PROFILE.styles] == [
        ("large", 800, 800, "fit"),
        ("medium", 300, 300, "fit"),
        ("thumb", 100, 100, "crop"),
        ("tiny", 50, 50, "crop"),
        ("really_tiny", 25, 25, "crop"),
    ]


def test_the_default_profile_writes_one_jpeg_per_style_and_crops_at_the_centre() -> None:
    """Without a profile of the operator's, nothing changes: no AVIF or WebP rendering, no
    other quality, no gravity; its styles are sent as a processor that knows neither
    formats nor gravity reads them."""
    default = load_profiles(None)["default"]
    assert default == DEFAULT_PROFILE
    assert (default.format, default.quality) == ("jpeg", 82)
    for style in default.styles:
        assert style.output_formats(default.format) == ("jpeg",)
        assert style.quality_for("jpeg", default.quality) == 82
        assert (style.format, style.formats, style.qualities, style.gravity) == (None,) * 4
        assert set(style.model_dump(exclude_none=True)) == {
            "name",
            "width",
            "height",
            "fit",
            "watermark",
        }


def test_profiles_file_adds_named_profiles(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "- name: web\n"
        "  format: webp\n"
        "  quality: 75\n"
        "  styles: [{name: hero, width: 1600, height: 900, fit: crop, watermark: true}]\n"
        "  watermark: {text: '(c) Studio', opacity: 0.3}\n"
    )
    profiles = load_profiles(path)
    assert set(profiles) == {"default", "web"}
    assert profiles["web"].styles[0].watermark
    assert profiles["web"].watermark is not None
    assert profiles["web"].watermark.text == "(c) Studio"


def test_profiles_file_with_unknown_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text("- name: web\n  styles: []\n  colour: red\n")
    with pytest.raises(ValueError, match="colour"):
        load_profiles(path)


def test_a_profile_strips_nothing_from_the_original_by_default(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text("- name: web\n  styles: [{name: hero, width: 10, height: 10}]\n")
    assert load_profiles(path)["web"].original.strip == ()
    assert DEFAULT_PROFILE.original.strip == ()


def test_a_profile_names_the_metadata_to_strip_from_the_original(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "- name: public\n"
        "  styles: [{name: hero, width: 10, height: 10}]\n"
        "  original: {strip: [gps, xmp, iptc, MakerNote, BodySerialNumber]}\n"
    )
    assert load_profiles(path)["public"].original.strip == (
        "gps",
        "xmp",
        "iptc",
        "MakerNote",
        "BodySerialNumber",
    )


@pytest.mark.parametrize(
    ("strip", "says"),
    [
        ("[gps, GPSInfo]", "'GPSInfo' is not strippable metadata; known: gps, iptc, xmp"),
        ("[Orientation]", "must keep its orientation"),
        ("[exif]", "the whole Exif block holds the orientation"),
        ("[gps, gps]", "names repeat"),
    ],
)
def test_an_unknown_or_unsafe_strip_name_is_refused_at_load(
    tmp_path: Path, strip: str, says: str
) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        f"- name: public\n  styles: [{{name: a, width: 1, height: 1}}]\n"
        f"  original: {{strip: {strip}}}\n"
    )
    with pytest.raises(ValueError, match=re.escape(says)):
        load_profiles(path)
