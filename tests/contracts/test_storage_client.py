"""The S3 client every service builds: the per-call work it is configured to skip."""

from __future__ import annotations

from typing import Any

import pytest

from emulsion_contracts import storage
from emulsion_contracts.settings import S3Settings


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
