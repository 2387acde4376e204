"""A camera photo ingested end to end (presigned form, IngestJob, processor, manifest):
the API shows what its Exif says, the name it was uploaded as, the upload's SHA-256 and
its placeholder; another tenant's token and a caller without one learn nothing of it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
from typing import Any
from urllib.parse import quote

import httpx
from PIL import Image, ImageDraw
from PIL.TiffImagePlugin import IFDRational

from emulsion_api.scopes import token_digest
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import LocalStack

NAME = "夕焼け Zoë.JPG"
COLLECTION = "camera-photos"


def camera_photo() -> bytes:
    """A sideways-stored 12:9 photo (orientation 6) as a camera writes it."""
    exif = Image.Exif()
    exif[0x010F] = "SONY"
    exif[0x0110] = "ILCE-7M4"
    exif[0x0112] = 6
    exif[0x013B] = "写真家 Zoë".encode()
    exif.get_ifd(0x8769).update(
        {
            0x9003: "2026:08:15 19:02:03",
            0x9011: "+02:00",
            0x829A: IFDRational(1, 125),
            0x829D: IFDRational(56, 10),
            0x8827: 800,
            0x920A: IFDRational(35, 1),
            0xA434: "FE 35mm F1.8",
        }
    )
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 21.0, 8.0)})
    seen = Image.new("RGB", (900, 1200), (240, 140, 40))
    ImageDraw.Draw(seen).rectangle((0, 800, 900, 1200), fill=(40, 40, 90))
    buffer = io.BytesIO()
    seen.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def ingest(api: httpx.Client, photo: bytes) -> str:
    """`photo` uploaded as NAME and ingested into COLLECTION; the ingest's status URL."""
    answer = api.post(
        "/v1/uploads",
        json={
            "collection": COLLECTION,
            "filename": NAME,
            "content_type": "image/jpeg",
            "size": len(photo),
        },
    )
    assert answer.status_code == 201, answer.text
    upload = answer.json()
    posted = httpx.post(
        upload["url"], data=upload["fields"], files={"file": ("f.jpg", photo)}, timeout=60
    )
    assert posted.status_code in (200, 201, 204), posted.text
    created = api.post(
        "/v1/ingests", json={"collection": COLLECTION, "items": [{"upload_key": upload["key"]}]}
    )
    assert created.status_code == 202, created.text
    status_url: str = created.json()["status_url"]

    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = api.get(status_url, params={"wait": 10}).json()
        return status if status["succeeded"] + status["failed"] == 1 else None

    status = wait_for("the photo's ingest", finished, timeout=300)
    assert status["succeeded"] == 1, status
    return status_url


def test_an_ingested_photo_shows_its_metadata_and_placeholder_to_its_tenant_only(
    system: LocalStack,
) -> None:
    photo = camera_photo()
    environment = system.client_environment()
    token, other = environment["EMULSION_TOKEN"], secrets.token_urlsafe(24)
    # An API beside the system's own, knowing a second tenant scoped to other collections.
    record = system.start_service(
        "api",
        {
            "EMULSION_API_TOKENS": f"{token},{other}",
            "EMULSION_API_TOKEN_SCOPES": json.dumps(
                {token_digest(token): ["*"], token_digest(other): ["elsewhere-*"]}
            ),
        },
    )
    url = LocalStack.service_url(record)
    path = f"/v1/assets/{COLLECTION}/{quote(NAME, safe='')}"
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as api:
        status_url = ingest(api, photo)
        asset = api.get(path)
        item = api.get(status_url).json()["items"][0]
        listed = api.get(f"/v1/assets/{COLLECTION}")
    assert asset.status_code == 200, asset.text
    body = asset.json()
    assert body["original"]["filename"] == NAME
    assert body["original"]["stored_filename"].isascii()
    assert body["original"]["sha256"] == hashlib.sha256(photo).hexdigest()
    assert (body["original"]["width"], body["original"]["height"]) == (900, 1200)
    metadata = body["metadata"]
    assert metadata["taken_at"] == "2026-08-15T19:02:03+02:00"
    assert (metadata["camera_make"], metadata["camera_model"]) == ("SONY", "ILCE-7M4")
    assert (metadata["lens"], metadata["iso"], metadata["aperture"]) == ("FE 35mm F1.8", 800, 5.6)
    assert (metadata["exposure_time"], metadata["focal_length"]) == (0.008, 35.0)
    assert (metadata["artist"], metadata["orientation"]) == ("写真家 Zoë", 6)
    assert round(metadata["gps"]["latitude"], 4) == 48.8583  # the default profile keeps GPS
    placeholder = body["placeholder"]
    assert len(base64.b64decode(placeholder["thumbhash"])) <= 25
    # The orange two thirds (240, 140, 40), give or take the JPEG's rounding.
    dominant = bytes.fromhex(placeholder["dominant_color"].removeprefix("#"))
    assert all(abs(a - b) <= 4 for a, b in zip(dominant, (240, 140, 40), strict=True))
    entry = next(item for item in listed.json()["items"] if item["asset"] == NAME)
    assert entry["placeholder"] == placeholder
    # The ingest's items carry it too: the upload page paints it under each thumbnail.
    assert item["placeholder"] == placeholder

    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {other}"}, timeout=60
    ) as tenant:
        theirs = tenant.get(path)
        their_list = tenant.get(f"/v1/assets/{COLLECTION}")
        nothing = tenant.get(f"/v1/assets/{COLLECTION}/{quote('no such.jpg', safe='')}")
    with httpx.Client(base_url=url, timeout=60) as anonymous:
        unauthenticated = anonymous.get(path)
    assert (theirs.status_code, their_list.status_code, nothing.status_code) == (404, 404, 404)
    assert theirs.json()["code"] == nothing.json()["code"] == "not_found"
    assert unauthenticated.status_code == 401
    for response in (theirs, their_list, unauthenticated):
        for secret in ("SONY", "写真家", placeholder["thumbhash"], body["original"]["sha256"]):
            assert secret not in response.text
