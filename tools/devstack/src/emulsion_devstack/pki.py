"""Certificates and keys for the local kube-apiserver, made fresh at every start.

One throw-away CA signs the serving certificate (127.0.0.1, localhost) and an admin
client certificate in `system:masters`, which RBAC lets do anything, as envtest does.
The CA's key is kept beside it (`ca.key`, mode 0600) so the real node (node.py) can
issue its components' own identities from the same CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True)
class ApiserverPki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> x509.CertificateBuilder:
    """A certificate of `key` for `subject` from `issuer`, valid from `now` for VALIDITY."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
    )


def _leaf(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    usages: list[x509.ObjectIdentifier],
    names: list[x509.GeneralName],
) -> x509.CertificateBuilder:
    """A leaf (no CA) for these extended key usages, naming `names` (when any)."""
    builder = (
        _builder(subject, issuer, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, name: x509.Name, now: dt.datetime
) -> x509.Certificate:
    """A self-signed CA certificate that may sign leaf certificates only (path length 0)."""
    return (
        _builder(name, name, key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def make_apiserver_pki(directory: Path) -> ApiserverPki:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate small clock skew

    ca_key = _key()
    ca_name = _name("emulsion-local-ca")
    ca = _ca_certificate(ca_key, ca_name, now)

    def issue(
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        names: list[x509.GeneralName] | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        builder = _leaf(subject, ca_name, key, now, [usage], names or [])
        return builder.sign(ca_key, hashes.SHA256()), key

    serving, serving_key = issue(
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
        ],
    )
    admin, admin_key = issue(
        _name("emulsion-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    service_account_key = _key()

    pki = ApiserverPki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )
    _write_cert(pki.ca_cert, ca)
    _write_key(directory / "ca.key", ca_key)
    _write_cert(pki.serving_cert, serving)
    _write_key(pki.serving_key, serving_key)
    _write_cert(pki.admin_cert, admin)
    _write_key(pki.admin_key, admin_key)
    _write_key(pki.service_account_key, service_account_key)
    pki.service_account_pub.write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def issue_certificate(
    directory: Path,
    name: str,
    common_name: str,
    *,
    organization: str | None = None,
    server_names: tuple[str, ...] = (),
    client_too: bool = False,
) -> tuple[Path, Path]:
    """Issue `<name>.crt`/`<name>.key` in `directory` from the CA there (`ca.crt`,
    `ca.key`): a client certificate, or a serving one when `server_names` (IPs or DNS
    names) are given; `client_too` makes a serving certificate a client one as well
    (for mutual TLS with one key pair). Returns (certificate, key)."""
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    try:
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{directory / 'ca.key'} is missing: the stack was started by an older "
            "emulsion_devstack; restart it (make down && make up)"
        ) from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{directory / 'ca.key'} is not an EC key")
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    key = _key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names else []
    if client_too or not server_names:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = _leaf(
        _name(common_name, organization),
        ca_cert.subject,
        key,
        now,
        usages,
        [_general_name(n) for n in server_names],
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))
    _write_key(key_path, key)
    return cert_path, key_path


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def make_ca(directory: Path, common_name: str) -> Path:
    """A fresh CA of its own in `directory` (`ca.crt`, `ca.key` mode 0600), for
    `issue_certificate`; e.g. NATS's, apart from the apiserver's. Returns `ca.crt`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    key = _key()
    name = _name(common_name)
    cert = _ca_certificate(key, name, now)
    _write_cert(directory / "ca.crt", cert)
    _write_key(directory / "ca.key", key)
    return directory / "ca.crt"


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    cert: Path,
    key: Path,
    *,
    cluster: str,
    user: str,
    namespace: str | None = None,
) -> None:
    """A kubeconfig (mode 0600) for `server` with the CA and the client pair embedded;
    its one context is named after `cluster`."""

    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    context = {"cluster": cluster, "user": user}
    if namespace is not None:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": cluster,
                        "cluster": {"server": server, "certificate-authority-data": b64(ca)},
                    }
                ],
                "users": [
                    {
                        "name": user,
                        "user": {
                            "client-certificate-data": b64(cert),
                            "client-key-data": b64(key),
                        },
                    }
                ],
                "contexts": [{"name": cluster, "context": context}],
                "current-context": cluster,
            }
        )
    )
    path.chmod(0o600)
