"""The demo gallery: deterministic by seed, the promised mix of sizes, orientations and
formats, cached, and regenerated when a previous generation was interrupted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from emulsion_cli.gallery import MARKER, GalleryParams, ensure_gallery, gallery_dir, plan

SMALL = GalleryParams(count=6, seed=7, min_megapixels=0.2, max_megapixels=0.6)


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != MARKER}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = ensure_gallery(SMALL, tmp_path / "one", workers=1)
    second = ensure_gallery(SMALL, tmp_path / "two", workers=2)
    assert contents(first) == contents(second)
    assert len(contents(first)) == SMALL.count


def test_another_seed_another_gallery(tmp_path: Path) -> None:
    other = GalleryParams(count=6, seed=8, min_megapixels=0.2, max_megapixels=0.6)
    assert gallery_dir(other, tmp_path) != gallery_dir(SMALL, tmp_path)
    assert plan(other) != plan(SMALL)


def test_the_default_mix_of_sizes_orientations_and_formats() -> None:
    specs = plan(GalleryParams(count=300, seed=1361))
    assert all(1.9 <= s.megapixels <= 24.2 for s in specs)
    assert max(s.megapixels for s in specs) > 15
    assert {s.format for s in specs} == {"JPEG", "PNG", "WEBP"}
    assert sum(s.format != "JPEG" for s in specs) < len(specs) * 0.25
    orientations = {s.orientation for s in specs}
    assert {1, 6, 8} <= orientations
    upright_portraits = [s for s in specs if s.orientation == 1 and s.height > s.width]
    assert upright_portraits
    assert len({s.name for s in specs}) == len(specs)


def test_files_are_what_the_plan_says(tmp_path: Path) -> None:
    params = GalleryParams(count=12, seed=3, min_megapixels=0.2, max_megapixels=0.5)
    directory = ensure_gallery(params, tmp_path, workers=1)
    for spec in plan(params):
        with Image.open(directory / spec.name) as image:
            assert image.format == spec.format
            assert image.size == (spec.width, spec.height)
            if spec.format == "JPEG":
                assert image.getexif().get(0x0112) == spec.orientation
    # Grain makes it compress like a photo, not like a flat drawing.
    jpegs = [s for s in plan(params) if s.format == "JPEG"]
    assert all((directory / s.name).stat().st_size > s.width * s.height * 0.1 for s in jpegs)


def test_a_complete_gallery_is_reused(tmp_path: Path) -> None:
    directory = ensure_gallery(SMALL, tmp_path, workers=1)
    stamps = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
    assert ensure_gallery(SMALL, tmp_path, workers=1) == directory
    assert {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} == stamps


def test_an_interrupted_generation_starts_over(tmp_path: Path) -> None:
    directory = gallery_dir(SMALL, tmp_path)
    directory.mkdir(parents=True)
    (directory / "IMG_0001.jpg").write_bytes(b"half a file")
    ensure_gallery(SMALL, tmp_path, workers=1)
    with Image.open(directory / plan(SMALL)[0].name) as image:
        image.verify()
    assert (directory / MARKER).exists()
    assert {p.name for p in directory.iterdir()} == {MARKER, *(s.name for s in plan(SMALL))}


def test_two_runs_at_once_both_get_one_complete_gallery(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        made = list(pool.map(lambda _: ensure_gallery(SMALL, tmp_path, workers=1), range(2)))
    directory = gallery_dir(SMALL, tmp_path)
    assert made == [directory, directory]
    assert {p.name for p in directory.iterdir()} == {MARKER, *(s.name for s in plan(SMALL))}
    assert list(directory.parent.iterdir()) == [directory]
