"""The S3 client every service builds: the per-call work it is configured to skip."""

from __future__ import annotations

from typing import Any, cast

import pytest

from emulsion_runtime import storage
from emulsion_runtime.settings import S3Settings


class ReachedTheWire(Exception):
    pass


def test_the_client_skips_flexible_checksums_and_per_call_rebuilds() -> None:
    settings = S3Settings(bucket="b", s3_endpoint_url="http://127.0.0.1:9", s3_region="us-east-1")
    client = storage.s3_client(
        settings, max_pool_connections=16, aws_access_key_id="k", aws_secret_access_key="s"
    )
    config = client.meta.config
    assert config.max_pool_connections == 16
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3 == {"addressing_style": "path"}
    sent: list[Any] = []

    def stop_before_sending(request: Any, **_: Any) -> None:
        sent.append(request)
        raise ReachedTheWire

    client.meta.events.register("before-send.s3.PutObject", stop_before_sending)
    # Parameters are not validated client-side (the server refuses a bad call), so even
    # a metadata value of the wrong type goes out; no checksum header goes with a PUT.
    with pytest.raises(ReachedTheWire):
        client.put_object(Bucket="b", Key="k", Body=b"x" * 100, ContentLanguage=7)
    (request,) = sent
    assert request.headers["User-Agent"].decode().startswith(f"{storage.USER_AGENT} ")
    assert not any(name.lower().startswith("x-amz-checksum") for name in request.headers)


def _client_error(code: str, message: str = "", argument: str | None = None) -> Any:
    from botocore.exceptions import ClientError

    error: dict[str, str] = {"Code": code, "Message": message}
    if argument is not None:
        error["ArgumentName"] = argument
    # Only the fields read here; botocore types the whole response.
    return ClientError(cast(Any, {"Error": error}), "PutObject")


@pytest.mark.parametrize(
    ("code", "message", "argument", "refused"),
    [
        # MinIO: a segment over 255 bytes, a key over 1,024, characters it does not take.
        ("XMinioInvalidObjectName", "Object name contains unsupported characters.", None, True),
        ("KeyTooLongError", "Your key is too long", None, True),
        ("InvalidArgument", "Object name cannot be longer than 1024 characters", None, True),
        ("InvalidArgument", "", "key", True),
        ("InvalidRequest", "The key is invalid", None, True),
        # Trouble that is not about the key stays what it was (an outage, a conflict...).
        ("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD", None, False),
        ("SlowDown", "Please reduce your request rate.", None, False),
        ("InternalError", "We encountered an internal error.", None, False),
        ("503", "", None, False),
        ("NoSuchKey", "The specified key does not exist.", None, False),
        ("PreconditionFailed", "", None, False),
        ("AccessDenied", "Access Denied.", None, False),
    ],
)
def test_a_store_refusing_the_key_is_told_from_an_outage(
    code: str, message: str, argument: str | None, refused: bool
) -> None:
    assert storage.is_key_refused(_client_error(code, message, argument)) is refused
