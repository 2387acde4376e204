"""The S3 client every service uses, configured from `EmulsionSettings`."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from emulsion_contracts.settings import EmulsionSettings


def s3_client(
    settings: EmulsionSettings, *, max_pool_connections: int = 10, **client_arguments: Any
) -> Any:
    """A boto3 S3 client; path-style addressing so MinIO and other S3-compatibles work.

    Credentials come from boto3's own chain unless given in `client_arguments`. A client
    shared by many threads needs `max_pool_connections` of at least the thread count, or
    connections beyond the pool are opened and thrown away on every call.
    """
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=max_pool_connections,
        ),
        **client_arguments,
    )
