"""The resume state: what an interrupted ingest did, recorded atomically per collection."""

from __future__ import annotations

from pathlib import Path

from emulsion_cli.discovery import ImageFile
from emulsion_cli.resume import Ingested, Pending, ResumeState, file_id


def image(relative: str, sha: str) -> ImageFile:
    return ImageFile(Path("/g") / relative, relative, 10, "image/jpeg", sha)


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    state = ResumeState.for_collection("http://api", "c", tmp_path)
    state.record_upload("f1", "staging/A/x.jpg")
    state.record_pending("f2", Pending("job-1", 3, "y.jpg"))
    state.record_succeeded("f3", Ingested("z.jpg", "V-00001", "job-0"))
    state.save()

    again = ResumeState.for_collection("http://api", "c", tmp_path)

    assert again.uploads == {"f1": "staging/A/x.jpg"}
    assert again.pending == {"f2": Pending("job-1", 3, "y.jpg")}
    assert again.ingested == {"f3": Ingested("z.jpg", "V-00001", "job-0")}


def test_each_api_and_collection_has_its_own_state(tmp_path: Path) -> None:
    paths = {
        ResumeState.for_collection(api, collection, tmp_path).path
        for api in ("http://a", "http://b")
        for collection in ("c1", "c2")
    }
    assert len(paths) == 4


def test_an_item_moves_through_the_stages(tmp_path: Path) -> None:
    state = ResumeState(tmp_path / "s.json")
    state.record_upload("f", "staging/A/x.jpg")
    state.record_pending("f", Pending("job", 0, "x.jpg"))
    state.record_succeeded("f", Ingested("x.jpg", "V-00000", "job"))
    assert state.uploads == {}
    assert state.pending == {}
    assert "f" in state.ingested


def test_a_failed_item_is_sent_again_from_a_fresh_upload(tmp_path: Path) -> None:
    state = ResumeState(tmp_path / "s.json")
    state.record_upload("f", "staging/A/x.jpg")
    state.record_pending("f", Pending("job", 0, "x.jpg"))
    state.record_failed("f")
    assert (state.uploads, state.pending, state.ingested) == ({}, {}, {})


def test_a_corrupt_or_foreign_file_is_an_empty_state(tmp_path: Path) -> None:
    for content in (
        "{not json",
        '{"v": 99, "uploads": {"f": "k"}}',
        '{"v": 1, "pending": {"f": 3}}',
    ):
        path = tmp_path / "s.json"
        path.write_text(content)
        state = ResumeState.load(path)
        assert (state.uploads, state.pending, state.ingested) == ({}, {}, {})


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    state = ResumeState(tmp_path / "d" / "s.json")
    state.record_upload("f", "k")
    state.save()
    state.save()
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["s.json"]


def test_a_file_is_its_content_and_its_place() -> None:
    assert file_id(image("a.jpg", "1" * 64)) != file_id(image("b.jpg", "1" * 64))
    assert file_id(image("a.jpg", "1" * 64)) != file_id(image("a.jpg", "2" * 64))
    assert file_id(image("a.jpg", "1" * 64)) == file_id(image("a.jpg", "1" * 64))


def test_the_asset_name_an_upload_records_is_kept_and_forgotten_with_it(tmp_path: Path) -> None:
    state = ResumeState(tmp_path / "s.json")
    state.record_upload("f", "staging/A/file.jpg", "日本.jpg")
    state.record_upload("old", "staging/B/x.jpg")  # as recorded before names were kept
    state.save()

    again = ResumeState.load(state.path)

    assert again.upload_assets == {"f": "日本.jpg"}
    again.forget_upload("f")
    assert (again.uploads, again.upload_assets) == ({"old": "staging/B/x.jpg"}, {})


def test_a_backslash_is_flattened_like_a_slash_in_the_upload_name() -> None:
    # The API takes the base name after '/' or '\\' as the asset name.
    assert image("a/b\\c 日本.jpg", "s").upload_name == "a-b-c 日本.jpg"


def test_an_upload_in_flight_is_kept_until_it_is_answered(tmp_path: Path) -> None:
    """A run stopped mid-upload leaves its in-flight keys, so the next run can ask the API
    which reached the bucket instead of storing them twice."""
    state = ResumeState(tmp_path / "state.json")
    state.record_in_flight("a", "staging/01J00000000000000000000000/a.jpg", "a.jpg")
    state.record_in_flight("b", "staging/01J00000000000000000000001/b.jpg", "b.jpg")
    state.record_upload("b", "staging/01J00000000000000000000001/b.jpg", "b.jpg")
    state.save()

    again = ResumeState.load(state.path)
    assert again.in_flight == {"a": ("staging/01J00000000000000000000000/a.jpg", "a.jpg")}
    assert again.uploads == {"b": "staging/01J00000000000000000000001/b.jpg"}
