"""The browser uploader in real Chromium against the real system: a gallery dropped on
the page uploads straight to the object store, is processed, and shows up as upright
thumbnails; a reload mid-way resumes without uploading or ingesting anything twice;
a wrong token and a collection outside the token's scopes are refused in words.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Page, expect

from emulsion_bench import page as uploader
from emulsion_contracts import crd, keys
from emulsion_devstack.processes import wait_for
from tests import jobview, phone_photos

from .conftest import TENANT_PREFIX, TENANT_TOKEN, WebSystem

SCREENSHOT = uploader.REPO_ROOT / "docs" / "web-uploader.png"
GALLERY = 60


def collection_jobs(system: WebSystem, collection: str) -> list[dict[str, Any]]:
    listed = system.kube().list_namespaced_custom_object(
        crd.GROUP, crd.VERSION, "default", crd.PLURAL
    )
    ours = {
        job["metadata"]["name"]: job
        for job in listed["items"]
        if job["spec"]["collection"] == collection
    }
    # With their items read from the list each job names (tests/jobview.py).
    return list(jobview.resolve(system.endpoints.nats_settings(), ours).values())


def new_collection(prefix: str = "web") -> str:
    return f"{prefix}-{keys.new_ulid().lower()[-10:]}"


def counting_uploads(page: Page, system: WebSystem) -> uploader.UploadCounter:
    counter = uploader.UploadCounter(system.endpoints.s3_endpoint_url)
    page.on("requestfinished", counter.on_finished)
    return counter


def uploaded_times(system: WebSystem, sources: list[str]) -> set[int]:
    """How many times each of these staging keys was written, as a set of counts."""
    written = uploader.object_versions(system.s3(), system.endpoints.bucket, "staging/")
    return {written[source] for source in sources}


def wait_until_processed(page: Page, expected: int, timeout: float = 180.0) -> dict[str, Any]:
    return wait_for(
        "every photo processed on the page",
        lambda: (
            (state := uploader.processing(page))["finished"]
            and state["total"] == expected
            and state
        ),
        timeout,
    )


def test_a_dropped_gallery_uploads_processes_and_shows_upright_thumbnails(
    page: Page, web_system: WebSystem, tmp_path: Path
) -> None:
    photos = uploader.make_photos(tmp_path / "gallery", GALLERY)
    collection = new_collection()
    uploads = counting_uploads(page, web_system)
    assert uploader.serious_accessibility_violations(page) == []

    uploader.sign_in(page, web_system.admin_token)
    uploader.choose_collection(page, collection)
    uploader.drop_files(page, photos.files)

    wait_for("every upload at 100 %", lambda: uploader.uploaded_percent(page) == 100, 120)
    state = wait_until_processed(page, GALLERY)
    assert state["done"] == GALLERY
    expect(page.locator("#thumbs img")).to_have_count(GALLERY - 1)
    failure = page.locator("#failures li")
    expect(failure).to_have_count(1)
    expect(failure).to_have_attribute("data-asset", photos.corrupt or "")
    expect(failure).to_contain_text("not a picture")
    portrait = page.locator(f'#thumbs img[data-asset="{photos.portrait}"]')
    portrait.scroll_into_view_if_needed()
    wait_for(
        "the portrait's thumbnail loaded",
        lambda: portrait.evaluate("i => i.complete && i.naturalWidth > 0"),
    )
    assert uploader.is_upright_portrait(portrait.screenshot())
    # Each thumbnail is laid over its placeholder: the dominant colour and the ThumbHash
    # drawn into a data URL, painted while the thumbnail loads.
    assert re.fullmatch(r"#[0-9a-f]{6}", portrait.get_attribute("data-placeholder") or "")
    assert portrait.evaluate("i => getComputedStyle(i).backgroundImage").startswith(
        'url("data:image/png'
    )
    # What the page shows is what the cluster has: the same jobs, counts and items.
    jobs = collection_jobs(web_system, collection)
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(
        page.locator("#jobs li").evaluate_all("rows => rows.map(r => r.dataset.job)")
    )
    assert sum(len(j["spec"]["items"]) for j in jobs) == GALLERY
    assert sum(j["status"]["succeeded"] for j in jobs) == GALLERY - 1
    assert sum(j["status"]["failed"] for j in jobs) == 1
    for job in jobs:
        row = page.locator(f'#jobs li[data-job="{job["metadata"]["name"]}"]')
        done = job["status"]["succeeded"] + job["status"]["failed"]
        expect(row).to_contain_text(f"{done} of {len(job['spec']['items'])} processed")
    sources = [item["source"] for job in jobs for item in job["spec"]["items"]]
    assert uploads.succeeded == GALLERY
    assert uploaded_times(web_system, sources) == {1}
    assert uploader.serious_accessibility_violations(page) == []
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_a_reload_mid_upload_resumes_without_uploading_or_ingesting_twice(
    page: Page, web_system: WebSystem, tmp_path: Path
) -> None:
    count = 30
    photos = uploader.make_photos(tmp_path / "gallery", count, corrupt=False)
    collection = new_collection()
    uploads = counting_uploads(page, web_system)
    network = page.context.new_cdp_session(page)
    # Slow uploads (about 3 photos a second), so the reload lands in the middle.
    network.send("Network.enable")
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 150_000},
    )
    uploader.sign_in(page, web_system.admin_token)
    uploader.choose_collection(page, collection)
    uploader.drop_files(page, photos.files)
    wait_for("a third of the uploads", lambda: uploader.uploaded_files(page) >= count // 3, 60)
    wait_for("a job started from the first batch", lambda: page.locator("#jobs li").count() > 0, 60)

    before_reload = uploader.uploaded_files(page)
    page.reload()
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    assert count // 3 <= before_reload < count, "the reload came in the middle"
    expect(page.locator("#upload-step")).to_be_visible()
    wait_until_processed(page, count)
    expect(page.locator("#thumbs img")).to_have_count(count)
    jobs = collection_jobs(web_system, collection)
    sources = [item["source"] for job in jobs for item in job["spec"]["items"]]
    assert uploaded_times(web_system, sources) == {1}, "no photo uploaded twice"
    # A POST that reached the store as the page went away has no answer in the browser;
    # the store's versions above are the count that matters.
    assert uploads.succeeded <= count
    assets = [item["asset"] for job in jobs for item in job["spec"]["items"]]
    assert len(sources) == count and len(set(sources)) == count, "no upload ingested twice"
    assert sorted(assets) == sorted(path.name for path in photos.files)


def test_a_wrong_token_is_told_in_words(page: Page) -> None:
    uploader.sign_in(page, "not-the-token")

    expect(page.get_by_role("alert").first).to_contain_text("This token was not accepted")
    expect(page.locator("#collection-step")).to_be_hidden()


def test_a_collection_outside_the_tokens_scopes_is_refused(page: Page) -> None:
    uploader.sign_in(page, TENANT_TOKEN)
    expect(page.locator("#collection-help")).to_contain_text(f"{TENANT_PREFIX}")

    uploader.choose_collection(page, "someone-else")

    expect(page.locator("#collection-error")).to_contain_text(
        "may not upload to the collection \u201csomeone-else\u201d"
    )
    expect(page.locator("#upload-step")).to_be_hidden()
    uploader.choose_collection(page, f"{TENANT_PREFIX}photos")
    expect(page.locator("#upload-step")).to_be_visible()


def test_iphone_heics_and_an_avif_are_accepted_processed_and_shown_upright(
    page: Page, web_system: WebSystem, tmp_path: Path
) -> None:
    # Chromium on Linux shows no HEIC and gives such a file no type: the page names it
    # by its extension, and the processor reads the bytes.
    directory = tmp_path / "phone"
    directory.mkdir()
    upright = Image.new("RGB", (600, 800), uploader.BOTTOM_COLOUR)
    upright.paste(uploader.TOP_COLOUR, (0, 0, 600, 400))
    portrait = directory / "IMG_4001.HEIC"
    # Stored sideways with an iPhone's transform and EXIF orientation 6.
    portrait.write_bytes(phone_photos.heic(upright.rotate(90, expand=True), orientation=6))
    landscape = directory / "IMG_4002.heic"
    landscape.write_bytes(phone_photos.heic(phone_photos.marked(800, 600)))
    avif = directory / "IMG_4003.avif"
    avif.write_bytes(phone_photos.avif(phone_photos.marked(800, 600)))
    files = [portrait, landscape, avif]

    uploader.sign_in(page, web_system.admin_token)
    uploader.choose_collection(page, new_collection())
    uploader.drop_files(page, files)

    wait_for("every upload at 100 %", lambda: uploader.uploaded_percent(page) == 100, 120)
    state = wait_until_processed(page, len(files))
    assert state["done"] == len(files)
    expect(page.locator("#thumbs img")).to_have_count(len(files))
    expect(page.locator("#failures li")).to_have_count(0)
    thumbnail = page.locator(f'#thumbs img[data-asset="{portrait.name}"]')
    thumbnail.scroll_into_view_if_needed()
    wait_for(
        "the HEIC portrait's thumbnail loaded",
        lambda: thumbnail.evaluate("i => i.complete && i.naturalWidth > 0"),
    )
    assert uploader.is_upright_portrait(thumbnail.screenshot())
