import random
import re

import pytest

from emulsion_contracts import keys


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("IMG_0001.JPG", "IMG_0001.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\holiday photo (1).jpeg", "holiday-photo-1.jpeg"),
        (".htaccess", "htaccess"),
        ("..", "file"),
        ("", "file"),
        ("Ünïcödé – straße.png", "Unicode-strae.png"),
        ("a..b...c.jpg", "a.b.c.jpg"),
        ("x.tar.gz", "x.tar.gz"),
        ("name.with-a-very-long-extension-indeed", "name.with-a-very-long-extension-indeed"),
        ("photo.jpg\x00.exe", "photo.jpg.exe"),
        ("日本語.jpg", "file.jpg"),
    ],
)
def test_safe_name_examples(filename: str, expected: str) -> None:
    assert keys.safe_name(filename) == expected


def test_safe_name_always_yields_a_valid_bounded_name() -> None:
    alphabet = 'aZ09._-/\\ \x00\n:*?"<>|%$~éß日\u202e'
    generator = random.Random(20261123)
    for _ in range(5000):
        name = "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 300)))
        safe = keys.safe_name(name)
        assert re.fullmatch(keys.NAME_PATTERN, safe), (name, safe)
        assert ".." not in safe and "/" not in safe
        assert len(safe) <= keys.SAFE_NAME_MAX


def test_long_names_keep_their_extension() -> None:
    safe = keys.safe_name("a" * 500 + ".jpeg")
    assert len(safe) == keys.SAFE_NAME_MAX
    assert safe.endswith(".jpeg")


def test_ulids_sort_by_time_and_are_unique() -> None:
    early = keys.new_ulid(now=1_700_000_000.000)
    later = keys.new_ulid(now=1_700_000_000.001)
    assert early < later
    assert re.fullmatch(keys.ULID_PATTERN, early)
    assert len({keys.new_ulid() for _ in range(1000)}) == 1000


def test_layout_builds_the_documented_keys() -> None:
    version = keys.version_id("01JDZ8Q6W1B2C3D4E5F6G7H8J9", 7)
    assert version == "01JDZ8Q6W1B2C3D4E5F6G7H8J9-00007"
    assert (
        keys.original_key("gallery-42", "IMG_0001.jpg", version, "IMG_0001.jpg")
        == f"originals/gallery-42/IMG_0001.jpg/{version}/IMG_0001.jpg"
    )
    assert (
        keys.derivative_key("gallery-42", "IMG_0001.jpg", version, "thumb", "jpg")
        == f"derivatives/gallery-42/IMG_0001.jpg/{version}/thumb.jpg"
    )
    assert keys.manifest_key("gallery-42", "IMG_0001.jpg") == "assets/gallery-42/IMG_0001.jpg.json"
    staging = keys.staging_key("01JDZ8Q6W1B2C3D4E5F6G7H8J9", "../My Photo.JPG")
    assert staging == "staging/01JDZ8Q6W1B2C3D4E5F6G7H8J9/My-Photo.jpg"
    assert keys.check_staging_key(staging) == staging


def test_versions_of_one_job_order_by_index_and_jobs_by_time() -> None:
    first, second = keys.new_ulid(now=1.0), keys.new_ulid(now=2.0)
    assert keys.version_id(first, 9) < keys.version_id(first, 10) < keys.version_id(second, 0)


@pytest.mark.parametrize("bad", ["..", "a/b", "", ".hidden", "x" * 101, "a..b", "sp ace"])
def test_hostile_asset_and_collection_names_are_refused(bad: str) -> None:
    with pytest.raises(keys.InvalidKey):
        keys.check_name("asset", bad)
    with pytest.raises(keys.InvalidKey):
        keys.manifest_key(bad, "ok.jpg")


@pytest.mark.parametrize(
    "bad",
    [
        "staging/../originals/x",
        "originals/c/a/v/x",
        "staging/01JDZ8Q6W1B2C3D4E5F6G7H8J9/",
        "staging/not-a-ulid/x.jpg",
        "staging/01JDZ8Q6W1B2C3D4E5F6G7H8J9/a/b.jpg",
    ],
)
def test_only_staging_keys_pass_the_staging_check(bad: str) -> None:
    with pytest.raises(keys.InvalidKey):
        keys.check_staging_key(bad)


def test_parse_key_inverts_the_builders() -> None:
    version = keys.version_id(keys.new_ulid(), 3)
    original = keys.original_key("c1", "a.jpg", version, "a.jpg")
    derivative = keys.derivative_key("c1", "a.jpg", version, "large", "webp")
    parsed = keys.parse_key(original)
    assert parsed == keys.ParsedKey("originals", "c1", "a.jpg", version, name="a.jpg")
    assert keys.parse_key(derivative) == keys.ParsedKey(
        "derivatives", "c1", "a.jpg", version, name="large.webp"
    )
    assert keys.parse_key(keys.manifest_key("c1", "a.jpg")) == keys.ParsedKey(
        "assets", "c1", "a.jpg"
    )
    for outside in ["other/x", "originals/c1/a.jpg/notaversion/a.jpg", "assets/c1/../x.json"]:
        assert keys.parse_key(outside) is None
