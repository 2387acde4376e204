"""Driving the browser uploader in Debian's Chromium with Playwright, for the tests and
`make bench-web`: photos made for the purpose, a browser on a fresh profile, the page's
steps (sign in, choose a collection, drop files) and what it shows.
"""

from __future__ import annotations

import io
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from PIL import Image
from playwright.sync_api import BrowserContext, Page, Request, sync_playwright

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
CHROMIUM: Final = Path("/usr/bin/chromium")
AXE: Final = REPO_ROOT / "clients" / "web" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The portrait's halves, top and bottom as a person should see them.
TOP_COLOUR: Final = (220, 30, 30)
BOTTOM_COLOUR: Final = (30, 30, 220)
EXIF_ORIENTATION: Final = 0x0112


def ensure_built() -> None:
    """The bundle and the browser, each installed once (`make web`, `make browser`)."""
    subprocess.run(["make", "--no-print-directory", "web", "browser"], cwd=REPO_ROOT, check=True)


# -- photos ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Photos:
    directory: Path
    files: list[Path]
    portrait: str
    png: str
    corrupt: str | None


def make_photos(directory: Path, count: int, *, corrupt: bool = True) -> Photos:
    """`count` files of 800x600: JPEGs of distinct colours, a PNG, a portrait stored
    sideways with an EXIF orientation, and (optionally) a JPEG name over bytes that are
    no image."""
    directory.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    portrait = directory / "portrait.jpg"
    upright = Image.new("RGB", (600, 800), BOTTOM_COLOUR)
    upright.paste(TOP_COLOUR, (0, 0, 600, 400))
    # Stored turned a quarter to the left; orientation 6 tells a viewer to turn it right.
    stored = upright.rotate(90, expand=True)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    stored.save(portrait, "JPEG", quality=90, exif=exif.tobytes())
    files.append(portrait)
    png = directory / "diagram.png"
    Image.new("RGB", (800, 600), (40, 160, 90)).save(png, "PNG")
    files.append(png)
    broken = directory / "broken.jpg" if corrupt else None
    if broken is not None:
        broken.write_bytes(b"this is not a photo, only text named .jpg\n" * 200)
        files.append(broken)
    index = 0
    while len(files) < count:
        path = directory / f"IMG_{index:04d}.jpg"
        colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
        image = Image.new("RGB", (800, 600), colour)
        image.paste((255 - colour[0], 128, colour[2]), (100, 100, 300, 250))
        image.save(path, "JPEG", quality=85)
        files.append(path)
        index += 1
    return Photos(directory, files, portrait.name, png.name, broken.name if broken else None)


def is_upright_portrait(png: bytes) -> bool:
    """The rendered thumbnail (a square crop of the portrait's middle) is red across its
    top and blue across its bottom: turned as the EXIF orientation says. Unturned, the
    halves would lie side by side."""
    with Image.open(io.BytesIO(png)) as shot:
        image = shot.convert("RGB")
    bounds = image.point(lambda v: 255 if v < 200 else 0).convert("L").getbbox()
    if bounds is None:
        return False
    left, top, right, bottom = bounds
    width, height = right - left, bottom - top
    columns = (left + width // 4, left + width // 2, left + 3 * width // 4)
    upper = [image.getpixel((x, top + height // 4)) for x in columns]
    lower = [image.getpixel((x, top + 3 * height // 4)) for x in columns]
    return all(_near(p, TOP_COLOUR) for p in upper) and all(_near(p, BOTTOM_COLOUR) for p in lower)


def _near(pixel: Any, colour: tuple[int, int, int]) -> bool:
    return all(abs(int(a) - b) < 60 for a, b in zip(pixel, colour, strict=False))


# -- the browser -------------------------------------------------------------------------


@dataclass
class UploadCounter:
    """Successful POSTs from the page to the object store. (Chromium does not hand a
    form's file body to Playwright, so which key each wrote is counted on the store's
    side: `object_versions`.)"""

    store_url: str
    succeeded: int = 0

    def on_finished(self, request: Request) -> None:
        if request.method != "POST" or not request.url.startswith(self.store_url):
            return
        response = request.response()
        if response is not None and response.ok:
            self.succeeded += 1


def object_versions(s3: Any, bucket: str, prefix: str) -> Counter[str]:
    """How many times each key under `prefix` was written (the bucket is versioned)."""
    written: Counter[str] = Counter()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            written[version["Key"]] += 1
    return written


@contextmanager
def browser(profile: Path) -> Iterator[BrowserContext]:
    """Debian's Chromium on a fresh profile (never Playwright's own download)."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def sign_in(page: Page, token: str) -> None:
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def choose_collection(page: Page, collection: str) -> None:
    page.get_by_label("Upload into the collection").fill(collection)
    page.get_by_role("button", name="Choose").click()


def drop_files(page: Page, files: list[Path]) -> None:
    # The Dashboard's own file input: what its "browse files" and a drop both feed.
    page.locator(
        "input.uppy-Dashboard-input[type=file]:not([webkitdirectory])"
    ).first.set_input_files([str(path) for path in files])


def uploaded_percent(page: Page) -> int:
    return int(page.locator("#upload-summary").get_attribute("data-percent") or 0)


def uploaded_files(page: Page) -> int:
    return int(page.locator("#upload-summary").get_attribute("data-uploaded") or 0)


def processing(page: Page) -> dict[str, Any]:
    """The page's processing totals, read at one moment (one evaluation)."""
    state: dict[str, Any] = page.locator("#process-summary").evaluate(
        "e => ({done: Number(e.dataset.done || 0), total: Number(e.dataset.total || 0),"
        " finished: e.dataset.finished === 'true'})"
    )
    return state


def serious_accessibility_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's findings of serious or critical impact on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [v for v in violations if v["impact"] in ("serious", "critical")]
