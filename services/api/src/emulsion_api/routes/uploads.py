"""`POST /v1/uploads`: presigned POST forms for direct uploads into the staging area."""

from __future__ import annotations

from fastapi import APIRouter, status

from emulsion_api import jobs
from emulsion_api.deps import PrincipalDep, ServicesDep
from emulsion_api.errors import ApiError, ErrorDetail, problems
from emulsion_api.models import (
    Present,
    PresentRequest,
    Upload,
    UploadBatch,
    UploadBatchRequest,
    UploadRequest,
)
from emulsion_api.store import Store
from emulsion_contracts import keys

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


def _check_sizes(files: list[UploadRequest], limit: int, single: bool) -> None:
    too_large = [
        ErrorDetail(
            field="body.size" if single else f"body.files.{index}.size",
            message=f"{file.size} bytes; limit {limit}",
        )
        for index, file in enumerate(files)
        if file.size > limit
    ]
    if too_large:
        raise ApiError(422, "file_too_large", f"files may be at most {limit} bytes", too_large)


def _presign(store: Store, file: UploadRequest) -> Upload:
    upload_id = keys.new_ulid()
    key = keys.staging_key(upload_id, file.filename)
    asset = jobs.default_asset(file.filename)
    form = store.presign_post(key, file.content_type, file.size, asset)
    return Upload(
        upload_id=upload_id,
        key=key,
        asset=asset,
        url=form.url,
        fields=form.fields,
        expires_at=form.expires_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Upload | UploadBatch,
    operation_id="createUploads",
    responses=problems(
        "unauthorized",
        "malformed_json",
        "body_too_large",
        "invalid_request",
        "too_many_items",
        "file_too_large",
        "internal",
    ),
)
async def create_uploads(
    body: UploadRequest | UploadBatchRequest, services: ServicesDep, caller: PrincipalDep
) -> Upload | UploadBatch:
    """One presigned POST per file, each for exactly one staging key, the declared type (an
    accepted format) and the declared size; `{files: [...]}` asks for many at once."""
    settings = services.settings
    files = body.files if isinstance(body, UploadBatchRequest) else [body]
    if len(files) > settings.max_upload_batch:
        raise ApiError(
            422, "too_many_items", f"{len(files)} files; at most {settings.max_upload_batch}"
        )
    _check_sizes(files, settings.upload_max_bytes, isinstance(body, UploadRequest))
    if isinstance(body, UploadRequest):
        return _presign(services.store, body)
    # Signing is CPU work (HMACs); thousands of forms must not stall the event loop.
    uploads = await services.store.run(lambda: [_presign(services.store, f) for f in files])
    return UploadBatch(uploads=uploads)


@router.post(
    "/present",
    response_model=Present,
    operation_id="uploadsPresent",
    responses=problems(
        "unauthorized",
        "malformed_json",
        "body_too_large",
        "invalid_request",
        "too_many_items",
        "unavailable",
        "internal",
    ),
)
async def uploads_present(
    body: PresentRequest, services: ServicesDep, caller: PrincipalDep
) -> Present:
    """Which of these staging keys hold an upload. A client resuming after a crash asks
    this for the uploads it had in flight: one that reached the store is not sent again."""
    limit = services.settings.max_upload_batch
    if len(body.keys) > limit:
        raise ApiError(422, "too_many_items", f"{len(body.keys)} keys; at most {limit}")
    missing = set(await services.store.missing(list(body.keys)))
    return Present(present=[key for key in body.keys if key not in missing])
