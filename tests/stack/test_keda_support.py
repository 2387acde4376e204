"""What the node's KEDA setup rests on, as pure logic: the JSON patch that applies KEDA's
CRD patches (keda.py), and certificates that can both serve and authenticate (KEDA's
operator-adapter gRPC is mutual TLS with one pair each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from emulsion_devstack import keda, pki


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        ([{"op": "add", "path": "/a/b", "value": 1}], {"a": {"b": 1, "x": [1, 2]}}),
        ([{"op": "add", "path": "/a/x/-", "value": 3}], {"a": {"x": [1, 2, 3]}}),
        ([{"op": "add", "path": "/a/x/0", "value": 0}], {"a": {"x": [0, 1, 2]}}),
        ([{"op": "remove", "path": "/a/x"}], {"a": {}}),
        ([{"op": "remove", "path": "/a/x/1"}], {"a": {"x": [1]}}),
    ],
)
def test_json_patch_adds_and_removes(
    operations: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    document = {"a": {"x": [1, 2]}}
    assert keda.json_patch(document, operations) == expected
    assert document == {"a": {"x": [1, 2]}}


def test_json_patch_refuses_what_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="replace"):
        keda.json_patch({"a": 1}, [{"op": "replace", "path": "/a", "value": 2}])


@pytest.mark.parametrize(
    ("server_names", "client_too", "usages"),
    [
        ((), False, {ExtendedKeyUsageOID.CLIENT_AUTH}),
        (("127.0.0.1",), False, {ExtendedKeyUsageOID.SERVER_AUTH}),
        (
            ("127.0.0.1",),
            True,
            {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
        ),
    ],
)
def test_issued_certificates_serve_authenticate_or_both(
    tmp_path: Path, server_names: tuple[str, ...], client_too: bool, usages: set[Any]
) -> None:
    pki.make_apiserver_pki(tmp_path)
    cert_path, _ = pki.issue_certificate(
        tmp_path, "subject", "subject", server_names=server_names, client_too=client_too
    )
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
