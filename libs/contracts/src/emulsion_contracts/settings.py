"""Settings read from the environment, shared by every service; each service extends them.

Missing required values stop the process at start-up with one message naming every
missing variable, instead of failing later on first use.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(SystemExit):
    """Raised (and exits) when the environment lacks or mangles a setting."""


class EmulsionSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # The NATS server (or cluster) with JetStream, e.g. nats://nats:4222.
    nats_url: str = Field(validation_alias="NATS_URL")
    # The bucket of staging uploads, originals, derivatives and manifests.
    bucket: str = Field(validation_alias="EMULSION_BUCKET")
    # Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID, ..., or a role);
    # only the endpoint is ours to set, for MinIO and other S3-compatible stores.
    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    )
    # Region of the bucket (and of the presigned URLs).
    s3_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    # DEBUG, INFO, WARNING or ERROR; logs are JSON lines on stderr.
    log_level: str = Field(default="INFO", validation_alias="EMULSION_LOG_LEVEL")
    # How long a superseded or deleted object stays readable (CDNs, in-flight readers).
    gc_grace_seconds: float = Field(
        default=300.0, ge=0, validation_alias="EMULSION_GC_GRACE_SECONDS"
    )
    # Where /healthz, /readyz and /metrics are served (the API serves them on its own port).
    http_port: int = Field(default=8080, ge=0, le=65535, validation_alias="EMULSION_HTTP_PORT")
    # A YAML list of profiles (named style sets) beyond the built-in "default".
    profiles_file: str | None = Field(default=None, validation_alias="EMULSION_PROFILES_FILE")


class JetStreamSettings(BaseSettings):
    """How the streams and KV buckets are created when missing (every service may create them).

    Replicas apply only to what a service creates: an existing stream or bucket keeps its
    replicas (a service start never lowers an operator's R3), and is raised to this
    number if it has fewer. 1 for a single NATS server; 3 for a cluster.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # Replicas of the streams and KV buckets a service creates (never lowered).
    replicas: int = Field(default=1, ge=1, le=5, validation_alias="EMULSION_JETSTREAM_REPLICAS")


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Read `cls` from the environment, or exit with a message that names each problem."""
    try:
        return cls()
    except ValidationError as error:
        # Fields are read by their environment names, so `loc` already names the variable.
        problems = [
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}"
            for issue in error.errors()
        ]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
