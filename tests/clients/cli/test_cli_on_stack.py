"""`emulsion` against the real API, controller and processor on the real stack: ingest,
resume without re-uploading, Ctrl-C, per-item failures, the other commands, and the
one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from emulsion_cli.discovery import discover
from emulsion_cli.errors import (
    EXIT_API,
    EXIT_INTERRUPTED,
    EXIT_ITEMS_FAILED,
    EXIT_TERMINATED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from emulsion_cli.gallery import GalleryParams, ensure_gallery, plan
from emulsion_cli.resume import ResumeState, file_id
from emulsion_devstack.processes import free_port

from .conftest import Cli


def small_gallery(root: Path, count: int, seed: int) -> tuple[Path, list[str]]:
    params = GalleryParams(count=count, seed=seed, min_megapixels=0.3, max_megapixels=1.2)
    return ensure_gallery(params, root, workers=1), [spec.name for spec in plan(params)]


def ingest_json(cli: Cli, directory: Path, collection: str, *extra: str) -> tuple[int, Any, str]:
    done = cli.run("ingest", str(directory), "--collection", collection, "--json", *extra)
    try:
        summary = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"no JSON summary (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.returncode, summary, done.stderr


def test_ingest_a_gallery_then_a_rerun_uploads_nothing(
    cli: Cli, tmp_path: Path, staging_count: Callable[[], int]
) -> None:
    photos, names = small_gallery(tmp_path, 5, seed=11)
    (photos / "notes.txt").write_text("not a photo")
    (photos / "fake.jpg").write_text("a text file with an image's name")
    before = staging_count()

    code, summary, stderr = ingest_json(cli, photos, "cli-gallery")

    assert code == 0, stderr
    assert (summary["found"], summary["succeeded"], summary["failed"]) == (5, 5, [])
    assert summary["uploaded_files"] == 5
    assert summary["uploaded_bytes"] == sum((photos / n).stat().st_size for n in names)
    assert {s["file"] for s in summary["not_images"]} == {"notes.txt", "fake.jpg"}
    assert len(summary["jobs"]) == 1
    assert staging_count() == before + 5

    status = cli.run("status", summary["jobs"][0], "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["phase"] == "Succeeded"

    got = cli.run("get", "cli-gallery", names[0], "--json")
    assert got.returncode == 0, got.stderr
    asset = json.loads(got.stdout)
    assert asset["outputs"]
    smallest = min(asset["outputs"], key=lambda output: output["bytes"])
    fetched = httpx.get(smallest["url"], timeout=30)
    assert fetched.status_code == 200
    derivative = tmp_path / "derivative"
    derivative.write_bytes(fetched.content)
    with Image.open(derivative) as image:
        assert image.size == (smallest["width"], smallest["height"])

    code, again, stderr = ingest_json(cli, photos, "cli-gallery")

    assert code == 0, stderr
    assert (again["already_ingested"], again["uploaded_files"], again["items"]) == (5, 0, 0)
    assert staging_count() == before + 5


def test_photos_whose_safe_names_clash_stay_distinct_assets_and_a_rerun_uploads_nothing(
    cli: Cli, tmp_path: Path, staging_count: Callable[[], int]
) -> None:
    """日本.jpg and 中国.jpg were once both the asset 'file.jpg', each ingest
    superseded the other, and every rerun uploaded the loser again."""
    photos, names = small_gallery(tmp_path / "gallery", 5, seed=18)
    unicode = tmp_path / "unicode"
    unicode.mkdir()
    renamed = ["日本.jpg", "中国.jpg", "Фото 1.jpg", "photo 1.JPG", "photo 1.jpg"]
    for source, name in zip(names, renamed, strict=True):
        (unicode / name).write_bytes((photos / source).read_bytes())
    before = staging_count()

    code, summary, stderr = ingest_json(cli, unicode, "cli-unicode")

    assert code == 0, stderr
    assert (summary["succeeded"], summary["failed"]) == (5, [])
    versions = set()
    for name in renamed:
        got = cli.run("get", "cli-unicode", name, "--json")  # percent-encoded in the URL
        assert got.returncode == 0, (name, got.stderr)
        asset = json.loads(got.stdout)
        assert asset["asset"] == name
        versions.add(asset["version"])
    assert len(versions) == 5  # five live assets, none superseded by another

    code, again, stderr = ingest_json(cli, unicode, "cli-unicode")

    assert code == 0, stderr
    assert (again["already_ingested"], again["uploaded_files"], again["items"]) == (5, 0, 0)
    assert staging_count() == before + 5


def _state_uploads(cache: Path) -> int:
    total = 0
    for path in (cache / "emulsion" / "ingest").glob("*.json"):
        try:
            state = json.loads(path.read_text())
        except ValueError:
            continue  # being replaced right now; the next poll reads it
        total += len(state["uploads"]) + len(state["pending"]) + len(state["ingested"])
    return total


def test_ctrl_c_then_rerun_uploads_each_file_once(
    cli: Cli, tmp_path: Path, staging_count: Callable[[], int]
) -> None:
    photos, names = small_gallery(tmp_path, 8, seed=12)
    before = staging_count()
    process = cli.start(
        "ingest", str(photos), "--collection", "cli-resume", "--concurrency", "1", "--json"
    )
    deadline = time.monotonic() + 60
    while _state_uploads(cli.cache) == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no upload was recorded within 60 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr
    interrupted = json.loads(stdout)
    assert interrupted["uploaded_files"] >= 1

    code, summary, stderr = ingest_json(cli, photos, "cli-resume")

    assert code == 0, stderr
    assert summary["failed"] == []
    assert summary["succeeded"] + summary["already_ingested"] == len(names)
    # Every file reached the staging area exactly once, over both runs.
    assert staging_count() == before + len(names)
    # With --concurrency 1 at most one upload was on its way when the signal came. If it
    # reached the bucket though its answer never came, the rerun finds it there and reuses
    # it (resume's in-flight uploads): neither run counts it as its upload.
    unanswered = len(names) - interrupted["uploaded_files"] - summary["uploaded_files"]
    assert unanswered in (0, 1), (interrupted, summary)
    assert summary["reused_uploads"] >= unanswered


def test_a_corrupt_image_fails_its_item_and_the_exit_code(cli: Cli, tmp_path: Path) -> None:
    photos, names = small_gallery(tmp_path, 2, seed=13)
    # JPEG magic bytes, so the client sends it; the processor cannot decode it.
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 500)
    # A hostile name beside it: markup, a newline, non-ASCII; it is ingested like any other.
    hostile = "[red]Ünï\ncode.jpg"
    (photos / hostile).write_bytes((photos / names[0]).read_bytes())

    code, summary, stderr = ingest_json(cli, photos, "cli-corrupt")

    assert code == EXIT_ITEMS_FAILED, stderr
    assert summary["succeeded"] == len(names) + 1
    [failure] = summary["failed"]
    assert failure["file"] == "broken.jpg"
    assert failure["reason"]


def test_delete_an_asset(cli: Cli, tmp_path: Path) -> None:
    photos, names = small_gallery(tmp_path, 1, seed=14)
    code, _, stderr = ingest_json(cli, photos, "cli-delete")
    assert code == 0, stderr

    deleted = cli.run("delete", "cli-delete", names[0])

    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted cli-delete/{names[0]}" in deleted.stdout
    gone = cli.run("get", "cli-delete", names[0])
    assert gone.returncode == EXIT_API
    assert "404 not_found" in gone.stderr


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_unreachable_api(cli: Cli) -> None:
    # Two tries, not five: a retry of a dead API still happens, without 8 s of backoff.
    done = cli.run(
        "status", "x", EMULSION_API_URL=f"http://127.0.0.1:{free_port()}", EMULSION_RETRIES="2"
    )
    assert done.returncode == EXIT_UNREACHABLE
    assert "cannot reach the Emulsion API" in one_line(done.stderr)


def test_wrong_token(cli: Cli) -> None:
    done = cli.run("status", "x", EMULSION_TOKEN="wrong")
    assert done.returncode == EXIT_API
    assert "token was refused" in one_line(done.stderr)


def test_api_errors_are_one_line_with_their_code(cli: Cli, tmp_path: Path) -> None:
    missing = cli.run("status", "no-such-job")
    assert missing.returncode == EXIT_API
    assert "404 not_found" in one_line(missing.stderr)

    photos, _ = small_gallery(tmp_path, 1, seed=15)
    unknown = cli.run("ingest", str(photos), "--collection", "c", "--profile", "nope")
    assert unknown.returncode == EXIT_API
    assert "unknown_profile" in unknown.stderr.strip().splitlines()[-1]


def test_bad_arguments_fail_before_anything_is_uploaded(
    cli: Cli, tmp_path: Path, staging_count: Callable[[], int]
) -> None:
    before = staging_count()
    bad = cli.run("ingest", str(tmp_path), "--collection", "../etc")
    assert bad.returncode == EXIT_USAGE
    assert "collection '../etc'" in one_line(bad.stderr)
    unset = cli.run("status", "x", EMULSION_API_URL="", EMULSION_TOKEN="")
    assert unset.returncode == EXIT_USAGE
    assert "not set" in one_line(unset.stderr)
    assert staging_count() == before


def test_the_console_script_and_the_module_agree(cli: Cli) -> None:
    as_module = subprocess.run(
        ["python", "-m", "emulsion_cli", "--help"], capture_output=True, text=True, check=False
    )
    assert as_module.returncode == 0
    assert "ingest" in as_module.stdout


def _state(cli: Cli, collection: str) -> ResumeState:
    return ResumeState.for_collection(
        cli.services.api_url, collection, cli.cache / "emulsion" / "ingest"
    )


@pytest.mark.parametrize("layout", ["current", "legacy"])
def test_expired_uploads_from_an_earlier_run_are_uploaded_again(
    cli: Cli, tmp_path: Path, layout: str
) -> None:
    """Also a resume state written before keys named their collection (`legacy`): the API
    answers its keys as missing, and the files are uploaded again."""
    photos, names = small_gallery(tmp_path, 2, seed=16)
    collection = f"cli-expired-{layout}"
    state = _state(cli, collection)
    for image in discover(photos).images:
        # As if an earlier run had uploaded it and the staging object had since expired.
        key = (
            f"staging/{collection}/{'0' * 26}/{image.upload_name}"
            if layout == "current"
            else f"staging/{'0' * 26}/{image.upload_name}"
        )
        state.record_upload(file_id(image), key)
    state.save()

    code, summary, stderr = ingest_json(cli, photos, collection)

    assert code == 0, stderr
    assert "expired" in stderr
    assert (summary["succeeded"], summary["uploaded_files"]) == (len(names), len(names))


def test_a_lost_state_file_costs_a_reupload_never_a_refusal(cli: Cli, tmp_path: Path) -> None:
    photos, names = small_gallery(tmp_path, 2, seed=17)
    code, first, stderr = ingest_json(cli, photos, "cli-lost-state")
    assert code == 0, stderr
    _state(cli, "cli-lost-state").path.unlink()

    # Same files, so the same Idempotency-Key, but other staging keys: the API refuses the
    # key as reused; the CLI makes one that covers the keys and ingests a new version.
    code, second, stderr = ingest_json(cli, photos, "cli-lost-state")

    assert code == 0, stderr
    assert (second["succeeded"], second["uploaded_files"]) == (len(names), len(names))
    assert second["jobs"] != first["jobs"]


def test_dry_run_uploads_nothing_and_lists_what_would_be(
    cli: Cli, tmp_path: Path, staging_count: Callable[[], int]
) -> None:
    photos, names = small_gallery(tmp_path, 3, seed=19)
    raw = photos / "raw"
    raw.mkdir()
    (raw / "IMG_9.jpg").write_bytes((photos / names[0]).read_bytes())
    before = staging_count()

    done = cli.run(
        "ingest", str(photos), "-c", "cli-dry", "--exclude", "raw/**", "--dry-run", "-o", "json"
    )

    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert sorted(f["file"] for f in plan["files"]) == sorted(names)
    assert {f["action"] for f in plan["files"]} == {"upload and ingest"}
    assert plan["to_upload"] == len(names)
    assert staging_count() == before


def test_include_and_exclude_choose_the_files(cli: Cli, tmp_path: Path) -> None:
    photos, names = small_gallery(tmp_path, 3, seed=20)
    keep = photos / "keep"
    keep.mkdir()
    (keep / "a.jpg").write_bytes((photos / names[0]).read_bytes())
    (keep / "b.png").write_bytes(b"not read: excluded by --include")

    code, summary, stderr = ingest_json(
        cli, photos, "cli-patterns", "--include", "keep/*", "--exclude", "*.png"
    )

    assert code == 0, stderr
    assert (summary["found"], summary["succeeded"], summary["excluded"]) == (1, 1, len(names) + 1)
    assert cli.run("get", "cli-patterns", "keep-a.jpg").returncode == 0


def test_no_wait_returns_the_jobs_and_status_watch_follows_them(cli: Cli, tmp_path: Path) -> None:
    photos, names = small_gallery(tmp_path, 3, seed=21)

    code, summary, stderr = ingest_json(cli, photos, "cli-no-wait", "--no-wait")

    assert code == 0, stderr
    assert summary["items"] == len(names)
    assert summary["succeeded"] == 0  # not followed
    [job] = summary["jobs"]
    assert f"emulsion status {job} --watch" in stderr

    watched = cli.run("status", job, "--watch", "-o", "json")

    assert watched.returncode == 0, watched.stderr
    updates = [json.loads(line) for line in watched.stdout.splitlines()]
    assert updates, "no status was printed"
    assert updates[-1]["finished"] is True
    assert updates[-1]["succeeded"] == len(names)
    done = [u["succeeded"] + u["failed"] for u in updates]
    assert done == sorted(done)

    yaml_status = cli.run("status", job, "-o", "yaml")
    assert yaml_status.returncode == 0, yaml_status.stderr
    assert "phase: Succeeded" in yaml_status.stdout


def test_progress_is_plain_lines_when_not_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    photos, names = small_gallery(tmp_path, 3, seed=22)

    done = cli.run(
        "ingest", str(photos), "-c", "cli-lines", "-o", "json", "--progress-interval", "0.2"
    )

    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("upload ")]
    assert lines, done.stderr
    final = lines[-1]
    assert final.startswith(f"upload {len(names)}/{len(names)} files, ")
    assert " MB/s, ETA " in final
    assert f"process {len(names)}/{len(names)} images, " in final
    assert "\x1b" not in done.stderr and "\r" not in done.stderr  # no cursor tricks in a log


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, EXIT_INTERRUPTED)]
)
def test_a_signal_mid_upload_stops_within_seconds_and_says_how_to_resume(
    cli: Cli, tmp_path: Path, signum: int, exit_code: int
) -> None:
    photos, names = small_gallery(tmp_path, 8, seed=23)
    process = cli.start("ingest", str(photos), "-c", "cli-stop", "--concurrency", "1", "-o", "json")
    deadline = time.monotonic() + 60
    while _state_uploads(cli.cache) == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no upload was recorded within 60 s"
        time.sleep(0.01)
    signalled = time.monotonic()
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    stopped_after = time.monotonic() - signalled

    assert process.returncode == exit_code, stderr
    assert stopped_after < 5, f"took {stopped_after:.1f} s to stop"
    assert "Run the same command again to resume: emulsion ingest" in stderr
    interrupted = json.loads(stdout)  # what was done, for scripts too
    assert 1 <= interrupted["uploaded_files"] <= len(names)


def test_ls_and_jobs_page_through_the_list_api(cli: Cli, tmp_path: Path) -> None:
    photos, names = small_gallery(tmp_path, 3, seed=15)
    code, _, stderr = ingest_json(cli, photos, "cli-list")
    assert code == 0, stderr

    listed = cli.run("ls", "cli-list", "--page-size", "1", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(entry["asset"] for entry in json.loads(listed.stdout)) == sorted(names)

    assert cli.run("delete", "cli-list", names[0]).returncode == 0
    live = json.loads(cli.run("ls", "cli-list", "-o", "json").stdout)
    deleted = json.loads(cli.run("ls", "cli-list", "--state", "deleted", "-o", "json").stdout)
    assert sorted(entry["asset"] for entry in live) == sorted(names[1:])
    assert [entry["asset"] for entry in deleted] == [names[0]]

    jobs = cli.run("jobs", "-c", "cli-list", "--page-size", "1", "-o", "json")
    assert jobs.returncode == 0, jobs.stderr
    listed_jobs = json.loads(jobs.stdout)
    assert listed_jobs
    assert all(job["collection"] == "cli-list" for job in listed_jobs), listed_jobs
