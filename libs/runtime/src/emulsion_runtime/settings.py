"""Settings read from the environment, in parts; each service composes the parts it uses.

`ServiceSettings` holds what every service needs (logging, the health port); `NatsSettings`,
`S3Settings`, `KubeSettings` and `ProfilesSettings` are mixed in by the services that use
them, so a service never requires a variable it does not read (the controller starts
without any S3 variable). Missing required values stop the process at start-up with one
message naming every missing variable, instead of failing later on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from emulsion_contracts.worksigning import MIN_KEY_LENGTH


class SettingsError(SystemExit):
    """Raised (and exits) when the environment lacks or mangles a setting."""


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ServiceSettings(_Settings):
    """What every service reads."""

    # DEBUG, INFO, WARNING or ERROR; logs are JSON lines on stderr.
    log_level: str = Field(default="INFO", validation_alias="EMULSION_LOG_LEVEL")
    # Where /healthz, /readyz and /metrics are served (the API serves them on its own port).
    http_port: int = Field(default=8080, ge=0, le=65535, validation_alias="EMULSION_HTTP_PORT")


NATS_SCHEMES: Final = ("nats", "tls", "ws", "wss")


def split_servers(value: str) -> list[str]:
    """A comma-separated server list (nats-py takes one URL per entry of a list, and reads
    "nats://a:4222,nats://b:4222" given whole as one malformed URL)."""
    return [server.strip() for server in value.split(",") if server.strip()]


class NatsSettings(_Settings):
    """Where NATS is and who this service is there (emulsion_contracts.natsauth)."""

    # The NATS server with JetStream, e.g. nats://nats:4222 or tls://nats:4222; for a
    # cluster, its servers separated by commas (a client starts with any that answers).
    nats_url: str = Field(validation_alias="NATS_URL")
    # This service's NATS user (api, controller, processor or janitor); its permissions
    # are the table in emulsion_contracts.natsauth. Unset: connect without credentials.
    nats_user: str | None = Field(default=None, validation_alias="NATS_USER")
    # The user's password; NATS_PASSWORD_FILE (a mounted Secret) is read instead when set.
    nats_password: SecretStr | None = Field(default=None, validation_alias="NATS_PASSWORD")
    # A file holding the user's password (trailing whitespace ignored).
    nats_password_file: Path | None = Field(default=None, validation_alias="NATS_PASSWORD_FILE")
    # The CA that signed the NATS server's certificate: when set, TLS is used and the
    # server verified against this CA only.
    nats_ca_file: Path | None = Field(default=None, validation_alias="NATS_CA_FILE")

    @field_validator("nats_url")
    @classmethod
    def _server_list(cls, value: str) -> str:
        servers = split_servers(value)
        if not servers:
            raise ValueError("NATS_URL names no server")
        for server in servers:
            parsed = urlsplit(server if "://" in server else f"nats://{server}")
            if parsed.scheme not in NATS_SCHEMES or not parsed.hostname:
                raise ValueError(f"NATS_URL: {server!r} is not a nats://, tls://, ws:// URL")
        return value

    def servers(self) -> list[str]:
        """NATS_URL's servers, in order (nats-py's `servers`)."""
        return split_servers(self.nats_url)

    @model_validator(mode="after")
    def _credentials_complete(self) -> NatsSettings:
        has_password = self.nats_password is not None or self.nats_password_file is not None
        if self.nats_user and not has_password:
            raise ValueError("NATS_USER is set without NATS_PASSWORD or NATS_PASSWORD_FILE")
        if has_password and not self.nats_user:
            raise ValueError("a NATS password is set without NATS_USER")
        return self

    def password(self) -> str | None:
        """The password, read from NATS_PASSWORD_FILE at each call (a rotated Secret is
        picked up on the next connect), else NATS_PASSWORD."""
        if self.nats_password_file is not None:
            return self.nats_password_file.read_text().strip()
        return self.nats_password.get_secret_value() if self.nats_password else None


class S3Settings(_Settings):
    """The bucket, where it is, and how long what leaves it stays readable."""

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
    # How long a superseded or deleted object stays readable (CDNs, in-flight readers).
    gc_grace_seconds: float = Field(
        default=300.0, ge=0, validation_alias="EMULSION_GC_GRACE_SECONDS"
    )


class KubeSettings(_Settings):
    """The apiserver: in-cluster credentials in a pod, else this kubeconfig."""

    # A kubeconfig file; unset: the in-cluster credentials of a pod, else ~/.kube/config.
    kubeconfig: str | None = Field(default=None, validation_alias="KUBECONFIG")


class ProfilesSettings(_Settings):
    # A YAML list of profiles (named style sets) beyond the built-in "default".
    profiles_file: str | None = Field(default=None, validation_alias="EMULSION_PROFILES_FILE")


class JetStreamSettings(_Settings):
    """How the streams and KV buckets are created when missing (by the controller, the
    bootstrap identity of emulsion_contracts.natsauth).

    Replicas apply only to what a service creates: an existing stream or bucket keeps its
    replicas (a service start never lowers an operator's R3), and is raised to this
    number if it has fewer. 1 for a single NATS server; 3 for a cluster.
    """

    # Replicas of the streams and KV buckets the controller creates (never lowered).
    replicas: int = Field(default=1, ge=1, le=5, validation_alias="EMULSION_JETSTREAM_REPLICAS")
    # How long IngestJobs' item lists, outcomes, failures and summaries are kept
    # (emulsion_contracts.jobrecords): the API answers 410 with them for a job its TTL
    # removed, so this must outlive the longest job plus its ttlSecondsAfterFinished.
    records_retention_seconds: float = Field(
        default=7 * 24 * 3600,
        ge=2 * 24 * 3600,
        validation_alias="EMULSION_RECORDS_RETENTION_SECONDS",
    )


class WorkSigningSettings(_Settings):
    """The key that work messages are signed with (controller) and checked with (processor):
    one of the two variables is required, the key at least 32 characters, or the service
    refuses to start (a controller could not sign, a processor could trust nothing).
    """

    # A file holding the work-signing key (the chart mounts a Secret here); wins over
    # EMULSION_WORK_SIGNING_KEY. Surrounding whitespace is ignored.
    work_signing_key_file: str | None = Field(
        default=None, validation_alias="EMULSION_WORK_SIGNING_KEY_FILE"
    )
    # The work-signing key itself, for setups without a file.
    work_signing_key: str = Field(
        default="", validation_alias="EMULSION_WORK_SIGNING_KEY", repr=False
    )

    @model_validator(mode="after")
    def _key_is_usable(self) -> Self:
        self.signing_key()
        return self

    def signing_key(self) -> bytes:
        """The key as bytes; raises ValueError naming the variables when it is unusable."""
        names = "EMULSION_WORK_SIGNING_KEY_FILE or EMULSION_WORK_SIGNING_KEY"
        if self.work_signing_key_file:
            try:
                text = Path(self.work_signing_key_file).read_text()
            except OSError as error:
                raise ValueError(f"EMULSION_WORK_SIGNING_KEY_FILE: cannot read: {error}") from None
        else:
            text = self.work_signing_key
        key = text.strip()
        if not key:
            raise ValueError(f"{names}: no work-signing key configured")
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"{names}: the work-signing key must be at least {MIN_KEY_LENGTH} characters"
            )
        return key.encode()


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Read `cls` from the environment, or exit with a message that names each problem."""
    try:
        return cls()
    except ValidationError as error:
        # Fields are read by their environment names, so `loc` already names the variable.
        # A check across fields (a model validator) names its variables in its message.
        problems = [
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}"
            if issue["loc"]
            else str(issue["msg"]).removeprefix("Value error, ")
            for issue in error.errors()
        ]
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
