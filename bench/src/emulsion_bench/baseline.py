"""The synchronous baseline the seeds start from, as a plain FastAPI service.

`POST /process {"key": ...}` does inside the request what the seeds' web tier did:
download the whole object into memory, decode it at full size, make every style
from the full image, upload each one, and only then answer. The styles are the
default profile's, so only the architecture differs from Emulsion's processor (which
streams to disk, reduces on load and cascades small styles from the largest).

Run as `python -m emulsion_bench.baseline --port N` with the stack's S3 variables.
"""

from __future__ import annotations

import argparse
import io
import os
from typing import Any

import uvicorn
from fastapi import FastAPI
from PIL import Image, ImageOps
from pydantic import BaseModel

from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_contracts.settings import S3Settings, load_settings
from emulsion_contracts.storage import s3_client


class ProcessRequest(BaseModel):
    key: str


class Processed(BaseModel):
    key: str
    styles: dict[str, list[int]]


def make_styles(source: bytes) -> dict[str, tuple[bytes, tuple[int, int]]]:
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(source)))
    image = image.convert("RGB")
    outputs: dict[str, tuple[bytes, tuple[int, int]]] = {}
    for style in DEFAULT_PROFILE.styles:
        size = (style.width, style.height)
        styled = (
            ImageOps.fit(image, size, Image.Resampling.LANCZOS)
            if style.fit == "crop"
            else ImageOps.contain(image, size, Image.Resampling.LANCZOS)
        )
        buffer = io.BytesIO()
        styled.save(buffer, "JPEG", quality=DEFAULT_PROFILE.quality)
        outputs[style.name] = (buffer.getvalue(), styled.size)
    return outputs


def create_app(settings: S3Settings) -> FastAPI:
    app = FastAPI(title="synchronous baseline")
    s3: Any = s3_client(settings)

    # A plain `def` endpoint: FastAPI runs it in its thread pool, as a Rails
    # controller action runs in a web worker, blocking that worker for the request.
    @app.post("/process")
    def process(request: ProcessRequest) -> Processed:
        source = s3.get_object(Bucket=settings.bucket, Key=request.key)["Body"].read()
        styles = make_styles(source)
        for name, (body, _) in styles.items():
            s3.put_object(
                Bucket=settings.bucket,
                Key=f"baseline/{request.key}/{name}.jpg",
                Body=body,
                ContentType="image/jpeg",
            )
        return Processed(
            key=request.key, styles={name: list(size) for name, (_, size) in styles.items()}
        )

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
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
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
