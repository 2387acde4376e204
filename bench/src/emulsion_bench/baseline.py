"""The synchronous baselines, as one plain FastAPI service with two endpoints.

Both take the photo as the request body and answer only when it and every style are
stored, as the seeds' web tier did, so the client's upload is on the same clock as the
processing:

- `POST /naive/{name}`: the seeds' own way: decode at full size, make every style from
  the full image (LANCZOS), upload each one;
- `POST /fair/{name}`: the processor's own `imaging.render` (reduced JPEG decode, small
  styles cascaded from larger ones) inside the request, then the same uploads.

So naive vs fair measures the render, and fair vs Emulsion measures the architecture.
The styles are the default profile's. Both store the original as Emulsion does.

Run as `python -m emulsion_bench.baseline --port N` with the stack's S3 variables.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from PIL import Image, ImageOps
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from emulsion_bench.limit import memory_dir, render_default
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_runtime.settings import S3Settings, load_settings
from emulsion_runtime.storage import s3_client

MODES = ("naive", "fair")


class Processed(BaseModel):
    name: str
    styles: int


def naive_styles(source: bytes) -> dict[str, bytes]:
    """Every style from the full-size decode, as the seeds' Paperclip set was made."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(source)))
    image = image.convert("RGB")
    outputs: dict[str, bytes] = {}
    for style in DEFAULT_PROFILE.styles:
        size = (style.width, style.height)
        styled = (
            ImageOps.fit(image, size, Image.Resampling.LANCZOS)
            if style.fit == "crop"
            else ImageOps.contain(image, size, Image.Resampling.LANCZOS)
        )
        buffer = io.BytesIO()
        styled.save(buffer, "JPEG", quality=DEFAULT_PROFILE.quality)
        outputs[style.name] = buffer.getvalue()
    return outputs


def fair_styles(source: bytes) -> dict[str, bytes]:
    """The processor's own render (it reads a file and writes files, so give it some)."""
    work = Path(tempfile.mkdtemp(prefix="emulsion-fair-", dir=memory_dir()))
    try:
        original = work / "original"
        original.write_bytes(source)
        out_dir = work / "styles"
        out_dir.mkdir()
        render_default(original, out_dir)
        return {path.name: path.read_bytes() for path in sorted(out_dir.iterdir())}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def create_app(settings: S3Settings) -> FastAPI:
    app = FastAPI(title="synchronous baselines")
    # One connection per thread of the pool the work runs on.
    s3: Any = s3_client(settings, max_pool_connections=40)

    def store_and_render(mode: str, name: str, source: bytes) -> Processed:
        prefix = f"baseline-{mode}/{name}"
        s3.put_object(Bucket=settings.bucket, Key=f"{prefix}/original", Body=source)
        styles = naive_styles(source) if mode == "naive" else fair_styles(source)
        for style, body in styles.items():
            s3.put_object(
                Bucket=settings.bucket, Key=f"{prefix}/{style}", Body=body, ContentType="image/jpeg"
            )
        return Processed(name=name, styles=len(styles))

    # The work runs on the thread pool, blocking one worker thread for the whole request,
    # as a Rails action blocks its web worker.
    @app.post("/naive/{name}")
    async def naive(name: str, request: Request) -> Processed:
        return await run_in_threadpool(store_and_render, "naive", name, await request.body())

    @app.post("/fair/{name}")
    async def fair(name: str, request: Request) -> Processed:
        return await run_in_threadpool(store_and_render, "fair", name, await request.body())

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def app_from_environment() -> FastAPI:
    return create_app(load_settings(S3Settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    # One web process per core, as a web tier would be sized on this machine.
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    uvicorn.run(
        "emulsion_bench.baseline:app_from_environment",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
