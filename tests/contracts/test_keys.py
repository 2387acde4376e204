import random
import re
import unicodedata
import urllib.parse
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    staging = keys.staging_key("gallery-42", "01JDZ8Q6W1B2C3D4E5F6G7H8J9", "../My Photo.JPG")
    assert staging == "staging/gallery-42/01JDZ8Q6W1B2C3D4E5F6G7H8J9/My-Photo.jpg"
    assert keys.check_staging_key(staging) == staging
    assert keys.claim_key(staging) == "staging/gallery-42/01JDZ8Q6W1B2C3D4E5F6G7H8J9/.claim"


def test_versions_of_one_job_order_by_index_and_jobs_by_time() -> None:
    first, second = keys.new_ulid(now=1.0), keys.new_ulid(now=2.0)
    assert keys.version_id(first, 9) < keys.version_id(first, 10) < keys.version_id(second, 0)


@pytest.mark.parametrize("bad", ["..", "a/b", "", ".hidden", "x" * 101, "a..b", "sp ace"])
def test_hostile_safe_names_and_collection_names_are_refused(bad: str) -> None:
    with pytest.raises(keys.InvalidKey):
        keys.check_name("name", bad)
    with pytest.raises(keys.InvalidKey):
        keys.manifest_key(bad, "ok.jpg")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        "a/b",
        "a\\b",
        "../x.jpg",
        " lead.jpg",
        "trail.jpg ",
        "\u3000wide space.jpg",
        "a\x00b.jpg",
        "tab\t.jpg",
        "zero\u200bwidth.jpg",  # Cf
        "bidi\u202e.jpg",  # Cf
        "private\ue000.jpg",  # Co
        "unassigned\U000e0fff.jpg",  # Cn
        "e\u0301.jpg",  # NFD, not NFC
        "x" * 201,
        "日" * 67,  # 67 characters but 201 bytes of UTF-8
    ],
)
def test_hostile_asset_names_are_refused(bad: str) -> None:
    with pytest.raises(keys.InvalidKey):
        keys.check_asset_name(bad)
    with pytest.raises(keys.InvalidKey):
        keys.manifest_key("c1", bad)


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("IMG_0001.jpg", "IMG_0001.jpg"),
        ("日本.jpg", "%E6%97%A5%E6%9C%AC.jpg"),
        ("photo 1.JPG", "photo%201.JPG"),
        (".hidden", "%2Ehidden"),
        ("a..b", "a..b"),
        ("100%.png", "100%25.png"),
        ("x" * 200, "x" * 200),
        # Exactly ASSET_SEGMENT_MAX bytes once encoded: the longest whole encoding kept.
        ("日" * 27 + "a" * 3 + ".jpg", "%E6%97%A5" * 27 + "a" * 3 + ".jpg"),
    ],
)
def test_asset_segments_percent_encode_the_utf8_bytes(name: str, segment: str) -> None:
    """A name whose encoding fits keeps exactly the segment it always had."""
    assert len(segment) <= keys.ASSET_SEGMENT_MAX
    assert keys.asset_segment(name) == segment == keys.encoded_name(name)
    assert keys.asset_name(segment) == name


@pytest.mark.parametrize(
    "segment",
    ["%e6%97%a5.jpg", "%41.jpg", ".hidden", "%2E", "%2E%2E", "a b", "%FF.jpg", "%C3", "a%2Fb", "%"],
)
def test_non_canonical_or_invalid_segments_are_not_names(segment: str) -> None:
    with pytest.raises(keys.InvalidKey):
        keys.asset_name(segment)
    assert keys.parse_key(f"assets/c1/{segment}.json") is None


def is_asset_name(text: str) -> bool:
    try:
        keys.check_asset_name(text)
    except keys.InvalidKey:
        return False
    return True


# Any Unicode text, NFC-normalised, that the asset rule accepts: the whole space of names.
# Built from allowed characters rather than filtered from all of them, since most random
# code points are unassigned and filtering them away trips Hypothesis's health check;
# the few left to the filter are names with whitespace at an end, "." and "..", and the
# rare NFC expansion past 200 bytes.
_name_characters = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn"), exclude_characters="/\\"
)
asset_names = (
    st.one_of(
        # Up to 200 bytes of any script (4 bytes at most per character) ...
        st.text(_name_characters, min_size=1, max_size=keys.ASSET_NAME_MAX // 4),
        # ... and names at the length limit, where the byte and character counts meet.
        st.text(
            st.characters(
                codec="ascii", categories=("L", "N", "P", "Zs"), exclude_characters="/\\"
            ),
            min_size=1,
            max_size=keys.ASSET_NAME_MAX,
        ),
    )
    .map(lambda text: unicodedata.normalize("NFC", text))
    .filter(is_asset_name)
)
versions = st.builds(
    keys.version_id,
    st.just("01JDZ8Q6W1B2C3D4E5F6G7H8J9"),
    st.integers(min_value=0, max_value=99_999),
)
longest_collection = "c" * keys.COLLECTION_MAX


# Names whose encoding is long: CJK (3 bytes, 9 encoded), '<' (1 byte, 3 encoded), emoji
# (4 bytes, 12 encoded) and mixes, up to the API's limits.
_long_alphabet = st.sampled_from(["日", "本", "<", "😀", "a", " ", "%", "é", ".", "~"])
long_names = (
    st.text(_long_alphabet, min_size=1, max_size=keys.ASSET_NAME_MAX)
    .map(lambda text: unicodedata.normalize("NFC", text))
    .filter(is_asset_name)
)
any_names = st.one_of(asset_names, long_names)


@given(any_names)
def test_encoded_names_round_trip(name: str) -> None:
    encoded = keys.encoded_name(name)
    assert keys.asset_name(encoded) == name
    assert re.fullmatch(r"(?:[A-Za-z0-9_.-]|%[0-9A-F]{2})+", encoded)
    assert len(encoded) <= keys.ENCODED_NAME_MAX


@given(any_names)
def test_asset_segments_fit_every_store_and_read_back(name: str) -> None:
    segment = keys.asset_segment(name)
    assert len(segment.encode()) <= keys.ASSET_SEGMENT_MAX
    assert len((segment + keys.MANIFEST_SUFFIX).encode()) <= keys.STORE_SEGMENT_MAX
    assert not segment.startswith(".")
    assert re.fullmatch(r"(?:[A-Za-z0-9_.~-]|%[0-9A-F]{2})+", segment)
    assert keys.is_segment_of(segment, name)
    encoded = keys.encoded_name(name)
    if len(encoded) <= keys.ASSET_SEGMENT_MAX:
        assert segment == encoded and keys.asset_name(segment) == name
    else:
        # The readable part is the encoding's longest beginning of whole characters that
        # leaves room for the hash; the name itself is in the manifest.
        readable, _, digest = segment.rpartition("~")
        assert encoded.startswith(readable) and len(digest) == keys.SEGMENT_HASH_HEX
        assert len(readable) > keys.READABLE_PREFIX_MAX - 12
        with pytest.raises(keys.InvalidKey):
            keys.asset_name(segment)


@given(st.lists(any_names, min_size=2, max_size=8, unique=True))
def test_different_names_never_share_a_segment_or_keys(names: list[str]) -> None:
    version = keys.version_id("01JDZ8Q6W1B2C3D4E5F6G7H8J9", 0)
    for build in (
        keys.asset_segment,
        lambda name: keys.manifest_key("c1", name),
        lambda name: keys.version_prefix("originals", "c1", name, version),
    ):
        assert len({build(name) for name in names}) == len(names)


# Names of the longest kind that share everything but their end: one shortened segment's
# readable part, so only the hash tells them apart.
@given(
    st.sampled_from(["日", "<", "😀", "a%"]),
    st.lists(st.sampled_from(["a", "b", "日", "<", "z.jpg", "😀"]), min_size=2, unique=True),
)
def test_names_that_share_a_long_beginning_keep_apart(repeated: str, ends: list[str]) -> None:
    room = keys.ASSET_NAME_MAX - 8
    beginning = repeated * (room // len(repeated.encode()))
    names = [beginning + end for end in ends]
    assert all(is_asset_name(name) for name in names)
    segments = {keys.asset_segment(name) for name in names}
    assert len(segments) == len(names)
    assert all(len(segment) <= keys.ASSET_SEGMENT_MAX for segment in segments)


@pytest.mark.parametrize(
    "name",
    [
        # The reported names: 37 characters (103 bytes, 301 encoded), 66 CJK characters
        # (198 bytes, 594 encoded), 150 '<' (450 encoded).
        "日本の美しい風景写真コレクション二千二十六年十二月七日撮影分その一.jpg",
        "写" * 66,
        "<" * 150,
        "😀" * 50,
    ],
)
def test_the_issues_names_get_segments_that_fit(name: str) -> None:
    version = keys.version_id("01JDZ8Q6W1B2C3D4E5F6G7H8J9", 0)
    key = keys.original_key("c1", name, version, "file.jpg")
    assert all(len(part.encode()) <= keys.STORE_SEGMENT_MAX for part in key.split("/"))
    parsed = keys.parse_key(key)
    assert parsed is not None and parsed.asset is None
    assert parsed.segment == keys.asset_segment(name)
    assert keys.segment_manifest_key("c1", parsed.segment) == keys.manifest_key("c1", name)
    readable = keys.asset_segment(name).rpartition("~")[0]
    assert urllib.parse.unquote(readable) == name[: len(urllib.parse.unquote(readable))]


@given(long_names)
def test_keys_written_before_the_limit_still_parse(name: str) -> None:
    """An old key carries the whole encoding (up to 600 bytes) as its segment: it still
    parses to its name, and the janitor finds its manifest by that segment."""
    version = keys.version_id("01JDZ8Q6W1B2C3D4E5F6G7H8J9", 0)
    encoded = keys.encoded_name(name)
    for key in (
        f"originals/c1/{encoded}/{version}/file.jpg",
        f"derivatives/c1/{encoded}/{version}/thumb.jpg",
        f"assets/c1/{encoded}.json",
    ):
        parsed = keys.parse_key(key)
        assert parsed is not None
        assert (parsed.asset, parsed.segment) == (name, encoded)
    assert keys.is_segment_of(encoded, name)
    assert keys.segment_manifest_key("c1", encoded) == f"assets/c1/{encoded}.json"


@pytest.mark.parametrize(
    "segment",
    [
        "a~" + "0" * 32,  # too short a readable part to have been shortened
        "a" * 210 + "~" + "0" * 31,
        "a" * 210 + "~" + "G" * 32,
        "a" * 210 + "%2F~" + "0" * 32,  # a '/' in the name
        "a" * 210 + "%E6~" + "0" * 32,  # half a character
        "a" * 216 + "~" + "0" * 33,
        "%20" + "a" * 210 + "~" + "0" * 32,  # whitespace at the start
    ],
)
def test_malformed_shortened_segments_are_not_keys(segment: str) -> None:
    assert keys.parse_key(f"assets/c1/{segment}.json") is None
    with pytest.raises(keys.InvalidKey):
        keys.segment_manifest_key("c1", segment)


@given(any_names, versions)
def test_every_key_stays_in_its_prefix_and_fits_s3(name: str, version: str) -> None:
    built = {
        "originals": keys.original_key(longest_collection, name, version, "n" * keys.SAFE_NAME_MAX),
        "derivatives": keys.derivative_key(
            longest_collection, name, version, "s" * 32, "e" * keys.EXTENSION_MAX
        ),
        "assets": keys.manifest_key(longest_collection, name),
    }
    for area, key in built.items():
        assert key.startswith(f"{area}/{longest_collection}/")
        assert ".." not in key.split("/") and "." not in key.split("/")
        assert len(key.encode()) <= keys.S3_KEY_MAX
        assert all(len(part.encode()) <= keys.STORE_SEGMENT_MAX for part in key.split("/"))
        parsed = keys.parse_key(key)
        assert parsed is not None
        assert (parsed.area, parsed.collection) == (area, longest_collection)
        assert parsed.segment == keys.asset_segment(name)
        assert parsed.asset in (name, None)
        assert (parsed.asset == name) == (keys.asset_segment(name) == keys.encoded_name(name))


@pytest.mark.parametrize(
    "bad",
    [
        "staging/../originals/x",
        "originals/c/a/v/x",
        "staging/01JDZ8Q6W1B2C3D4E5F6G7H8J9/",
        "staging/not-a-ulid/x.jpg",
        "staging/01JDZ8Q6W1B2C3D4E5F6G7H8J9/a/b.jpg",
        "staging/c1/01JDZ8Q6W1B2C3D4E5F6G7H8J9/.claim",
        "staging/c1/01JDZ8Q6W1B2C3D4E5F6G7H8J9/../x.jpg",
        "staging/../01JDZ8Q6W1B2C3D4E5F6G7H8J9/x.jpg",
        "staging/c1/not-a-ulid/x.jpg",
        "staging/c1/01JDZ8Q6W1B2C3D4E5F6G7H8J9/a/b.jpg",
    ],
)
def test_only_staging_keys_pass_the_staging_check(bad: str) -> None:
    with pytest.raises(keys.InvalidKey):
        keys.check_staging_key(bad)
    with pytest.raises(keys.InvalidKey):
        keys.check_any_staging_key(bad)
    assert keys.staging_collection(bad) is None


def test_the_legacy_layout_is_parsed_marked_and_never_a_current_key() -> None:
    legacy = "staging/01JDZ8Q6W1B2C3D4E5F6G7H8J9/IMG_1.jpg"
    assert keys.parse_key(legacy) == keys.ParsedKey(
        "staging", upload_id="01JDZ8Q6W1B2C3D4E5F6G7H8J9", name="IMG_1.jpg", legacy=True
    )
    assert keys.check_any_staging_key(legacy) == legacy
    assert keys.staging_collection(legacy) is None
    with pytest.raises(keys.InvalidKey):
        keys.check_staging_key(legacy)
    with pytest.raises(keys.InvalidKey):
        keys.claim_key(legacy)


collections = st.from_regex(keys.COLLECTION_PATTERN, fullmatch=True).filter(
    lambda name: ".." not in name
)
upload_ids = st.builds(keys.new_ulid, st.floats(min_value=0, max_value=2**40, allow_nan=False))


@given(collections, upload_ids, st.text(max_size=300))
def test_staging_keys_name_their_collection_and_parse_back(
    collection: str, upload_id: str, filename: str
) -> None:
    key = keys.staging_key(collection, upload_id, filename)
    assert key.startswith(keys.staging_prefix(collection))
    assert keys.check_staging_key(key) == keys.check_any_staging_key(key) == key
    assert len(key) <= keys.STAGING_KEY_MAX
    assert keys.parse_key(key) == keys.ParsedKey(
        "staging", collection, upload_id=upload_id, name=keys.safe_name(filename)
    )
    assert keys.staging_collection(key) == collection
    claim = keys.claim_key(key)
    assert claim.startswith(keys.upload_prefix(key)) and key.startswith(keys.upload_prefix(key))
    assert keys.parse_key(claim) == keys.ParsedKey(
        "staging", collection, upload_id=upload_id, claim=True
    )
    # A claim is never an upload key: no form can be presigned for it, nothing ingests it.
    assert keys.staging_collection(claim) is None
    with pytest.raises(keys.InvalidKey):
        keys.check_any_staging_key(claim)


@given(collections, collections, upload_ids, st.text(max_size=50))
def test_a_key_of_one_collection_is_never_inside_another(
    mine: str, other: str, upload_id: str, filename: str
) -> None:
    """`acme` must not cover `acme-corp`'s uploads: the prefix ends at its '/'."""
    key = keys.staging_key(other, upload_id, filename)
    assert key.startswith(keys.staging_prefix(mine)) == (mine == other)
    assert (keys.staging_collection(key) == mine) == (mine == other)


def test_parse_key_inverts_the_builders() -> None:
    version = keys.version_id(keys.new_ulid(), 3)
    original = keys.original_key("c1", "a.jpg", version, "a.jpg")
    derivative = keys.derivative_key("c1", "a.jpg", version, "large", "webp")
    parsed = keys.parse_key(original)
    assert parsed == keys.ParsedKey(
        "originals", "c1", "a.jpg", version, name="a.jpg", segment="a.jpg"
    )
    assert keys.parse_key(derivative) == keys.ParsedKey(
        "derivatives", "c1", "a.jpg", version, name="large.webp", segment="a.jpg"
    )
    assert keys.parse_key(keys.manifest_key("c1", "a.jpg")) == keys.ParsedKey(
        "assets", "c1", "a.jpg", segment="a.jpg"
    )
    for outside in ["other/x", "originals/c1/a.jpg/notaversion/a.jpg", "assets/c1/../x.json"]:
        assert keys.parse_key(outside) is None
    unicode = keys.original_key("c1", "日本.jpg", version, "file.jpg")
    assert unicode == f"originals/c1/%E6%97%A5%E6%9C%AC.jpg/{version}/file.jpg"
    assert keys.parse_key(unicode) == keys.ParsedKey(
        "originals", "c1", "日本.jpg", version, name="file.jpg", segment="%E6%97%A5%E6%9C%AC.jpg"
    )


def test_names_that_safe_name_folds_together_keep_apart() -> None:
    """日本.jpg and 中国.jpg once both had the keys of 'file.jpg'."""
    version = keys.version_id(keys.new_ulid(), 0)
    for first, second in [("日本.jpg", "中国.jpg"), ("photo 1.JPG", "photo 1.jpg")]:
        assert keys.manifest_key("c1", first) != keys.manifest_key("c1", second)
        assert keys.derivative_key("c1", first, version, "thumb", "jpg") != keys.derivative_key(
            "c1", second, version, "thumb", "jpg"
        )


# The capture-order index (`taken/`): the store's key order is capture order.
_times = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
    st.datetimes(
        min_value=datetime(1900, 1, 2),
        max_value=datetime(2099, 12, 31),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=9)), timezone(-timedelta(hours=5, minutes=30))]
        ),
    ),
)


def _utc(taken_at: datetime | None) -> datetime | None:
    if taken_at is None or taken_at.tzinfo is None:
        return taken_at
    return taken_at.astimezone(UTC).replace(tzinfo=None)


@given(
    st.lists(st.tuples(_times, st.sampled_from(["a.jpg", "B.jpg", "写真.JPG", "z"])), max_size=12)
)
def test_index_keys_sort_by_capture_time_in_utc_then_asset_and_untimed_last(
    entries: list[tuple[datetime | None, str]],
) -> None:
    version = keys.version_id(keys.new_ulid(), 0)
    built = [(keys.taken_key("c", asset, version, when), when, asset) for when, asset in entries]
    by_key = [(_utc(when), keys.asset_segment(asset)) for _, when, asset in sorted(built)]
    dated = [entry for entry in by_key if entry[0] is not None]
    assert dated == sorted(dated, key=lambda entry: (entry[0], entry[1]))
    assert [when for when, _ in by_key] == [
        *(w for w, _ in dated),
        *([None] * (len(by_key) - len(dated))),
    ]


@given(_times, st.sampled_from(["a.jpg", "写真.JPG", "x" * 200, "é" * 100]))
def test_index_keys_parse_back(when: datetime | None, asset: str) -> None:
    version = keys.version_id(keys.new_ulid(), 7)
    key = keys.taken_key("holiday-2026", asset, version, when)
    parsed = keys.parse_key(key)
    assert parsed is not None and parsed.area == "taken"
    assert (parsed.collection, parsed.segment, parsed.version) == (
        "holiday-2026",
        keys.asset_segment(asset),
        version,
    )
    assert parsed.taken == keys.taken_time(when)
    assert key.startswith(keys.taken_prefix("holiday-2026"))
    assert len(key.encode()) <= keys.S3_KEY_MAX
    assert all(len(part.encode()) <= keys.STORE_SEGMENT_MAX for part in key.split("/"))


def test_index_time_examples() -> None:
    assert keys.taken_time(None) == keys.UNTIMED
    offset = datetime(2026, 12, 7, 9, 30, tzinfo=timezone(timedelta(hours=9)))
    assert keys.taken_time(offset) == "20261207T003000.000000Z"
    assert keys.taken_time(datetime(2026, 12, 7, 0, 30)) == "20261207T003000.000000Z"
    # An aware time UTC cannot hold counts as none rather than failing the commit.
    assert keys.taken_time(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == keys.UNTIMED


@pytest.mark.parametrize(
    "key",
    [
        "taken/c/2026/a.jpg/01JDQ3G2M4P8R6T0V2X4Z6B8D0-00000",
        "taken/c/~/a.jpg/not-a-version",
        "taken/c/~/a.jpg",
        "taken/../~/a.jpg/01JDQ3G2M4P8R6T0V2X4Z6B8D0-00000",
        "taken/c/~/%2F/01JDQ3G2M4P8R6T0V2X4Z6B8D0-00000",
    ],
)
def test_keys_beside_the_index_layout_do_not_parse(key: str) -> None:
    assert keys.parse_key(key) is None
