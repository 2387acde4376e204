"""Each service's own MinIO user, holding only its least S3 policy.

The policies are `emulsion_contracts.storage_access`'s, rendered for the stack's bucket;
the users are made with MinIO's admin API (the `minio` package's MinioAdmin: no `mc`
binary to build or pin). A service started on the stack gets its own credentials in
place of the root user's (`environment`); clients, tests and the bootstrap keep the
root user. Each secret is derived from the root secret and the service's name, so the
stack's state needs no new field and a restarted service gets the same one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from emulsion_contracts import storage_access

if TYPE_CHECKING:
    from emulsion_devstack.endpoints import Endpoints

COMPONENTS = tuple(storage_access.ACCESS)


def access_key(component: str) -> str:
    return f"emulsion-{component}"


def secret_key(endpoints: Endpoints, component: str) -> str:
    digest = hmac.new(endpoints.s3_secret_key.encode(), component.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def policy_name(component: str) -> str:
    return f"emulsion-{component}"


def environment(endpoints: Endpoints, component: str) -> dict[str, str]:
    """The S3 credentials `component` runs with: its own user's, or none at all for a
    service that never touches S3 (the controller), in place of the root user's."""
    if component not in storage_access.ACCESS:
        return {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    return {
        "AWS_ACCESS_KEY_ID": access_key(component),
        "AWS_SECRET_ACCESS_KEY": secret_key(endpoints, component),
    }


def create(endpoints: Endpoints) -> None:
    """Make (or remake: every call is idempotent) each service's policy and user."""
    from minio import MinioAdmin
    from minio.credentials.providers import StaticProvider

    url = urlsplit(endpoints.s3_endpoint_url)
    admin = MinioAdmin(
        endpoint=url.netloc,
        credentials=StaticProvider(endpoints.s3_access_key, endpoints.s3_secret_key),
        secure=url.scheme == "https",
    )
    for component in COMPONENTS:
        name = policy_name(component)
        # Any bucket: tests make buckets of their own (the janitor's) beside the stack's;
        # what a policy is about is the key areas.
        admin.policy_add(name, policy=storage_access.policy(component, "*"))
        admin.user_add(access_key(component), secret_key(endpoints, component))
        try:
            admin.attach_policy([name], user=access_key(component))
        except Exception as error:
            # Attaching a policy the user already has is an error in MinIO's admin API;
            # on a stack brought up again with the same users, that is the expected case.
            if "already" not in str(error).lower():
                raise
