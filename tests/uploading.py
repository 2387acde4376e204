"""One file uploaded as the CLI and the uploader page upload it: presigned on the API
(`POST /v1/uploads`), then the form POSTed to the store."""

from __future__ import annotations

from typing import Any

import httpx


def presign(api: httpx.Client, collection: str, filename: str, size: int) -> dict[str, Any]:
    """The API's presigned form for one JPEG of `size` bytes (201 asserted)."""
    response = api.post(
        "/v1/uploads",
        json={
            "collection": collection,
            "filename": filename,
            "content_type": "image/jpeg",
            "size": size,
        },
    )
    assert response.status_code == 201, response.text
    form: dict[str, Any] = response.json()
    return form


def post_form(form: dict[str, Any], data: bytes) -> httpx.Response:
    """The file POSTed to the store with the presigned form's fields."""
    return httpx.post(
        form["url"], data=form["fields"], files={"file": ("f.jpg", data, "image/jpeg")}, timeout=60
    )


def uploaded(api: httpx.Client, collection: str, filename: str, data: bytes) -> dict[str, Any]:
    """`data` uploaded as `filename` (the store answers 200 or 204); the presigned form
    (its `key` is the staging key)."""
    form = presign(api, collection, filename, len(data))
    posted = post_form(form, data)
    assert posted.status_code in (200, 204), posted.text
    return form
