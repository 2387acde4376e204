"""`make bench-web`: upload throughput from the browser page vs the CLI, same files.

Starts a stack of its own (the servers, the controller, the processor and the API), makes
a gallery (cached per user), then uploads it twice into two fresh collections: once by
dropping it on the page in Debian's headless Chromium, once with `emulsion ingest`. Each
side's upload time runs from the first presign to the last object stored (the page:
from the drop until its total reaches 100 %; the CLI: its own `upload_seconds`).
Both on the same machine and the same MinIO, so the difference is the client's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from emulsion_bench import page as uploader
from emulsion_bench.cli import ingest_command
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import LocalStack


def page_upload(api_url: str, token: str, files: list[Path], collection: str) -> float:
    with tempfile.TemporaryDirectory() as profile, uploader.browser(Path(profile)) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(f"{api_url}/upload")
        uploader.sign_in(page, token)
        uploader.choose_collection(page, collection)
        started = time.monotonic()
        uploader.drop_files(page, files)
        wait_for("the page's uploads", lambda: uploader.uploaded_percent(page) == 100, 600)
        seconds = time.monotonic() - started
        wait_for("the page's jobs", lambda: uploader.processing(page)["finished"], 600)
        return seconds


def cli_upload(stack: LocalStack, directory: Path, collection: str) -> float:
    result = subprocess.run(
        ingest_command(directory, collection),
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **stack.client_environment()},
        check=True,
    )
    return float(json.loads(result.stdout)["upload_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="photos in the gallery")
    parser.add_argument("--max-megapixels", type=float, default=4.0)
    arguments = parser.parse_args()
    uploader.ensure_built()
    directory = ensure_gallery(
        GalleryParams(
            count=arguments.count, min_megapixels=1.0, max_megapixels=arguments.max_megapixels
        )
    )
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in {".jpg", ".png", ".webp"})
    total = sum(p.stat().st_size for p in files)
    with tempfile.TemporaryDirectory() as state:
        stack = LocalStack(
            Path(state), services=("controller", "processor", "api"), say=lambda line: None
        )
        try:
            endpoints = stack.up()
            api_url = stack.client_environment()["EMULSION_API_URL"]
            page_seconds = page_upload(api_url, endpoints.api_token, files, "bench-web-page")
            cli_seconds = cli_upload(stack, directory, "bench-web-cli")
        finally:
            stack.down()
    print(f"{len(files)} photos, {total / 1e6:.1f} MB, one MinIO on 127.0.0.1")
    print(f"{'client':<10} {'upload s':>9} {'MB/s':>8} {'photos/s':>9}")
    for name, seconds in (("page", page_seconds), ("cli", cli_seconds)):
        print(
            f"{name:<10} {seconds:>9.2f} {total / 1e6 / seconds:>8.1f} {len(files) / seconds:>9.1f}"
        )


if __name__ == "__main__":
    main()
