"""A small certificate authority for `brook dev --secure`, tests and benchmarks (issue 11).

    ca = CertAuthority.create("Brook dev CA")
    node = ca.issue("node-1")                   # CN=node-1 -> principal node:1 (DEFAULT rule)
    alice = ca.issue("alice", server=False)     # CN=alice  -> principal user:alice
    paths = node.write(directory, "node-1")     # node-1.crt, node-1.key (0600)

Leaf certificates are ECDSA P-256, signed with SHA-256, with the subject
`CN=<name>,O=Brook` (as RFC 4514 writes it; the principal mapping rules see this string),
extended key usage serverAuth + clientAuth (a process serves and dials with one pair), and
SANs `localhost`, `127.0.0.1`, `::1` plus any given: clients check the dialed host
against them. Each issue gets a new random serial, so a rotation is visible on the wire.

Not for production CAs: keys are written unencrypted (mode 0600) and nothing is revoked.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_SANS = ("localhost", "127.0.0.1", "::1")
# Validity of what `brook dev --secure` and tests issue (a dev cluster is rebuilt often).
LEAF_DAYS = 30
CA_DAYS = 365
# Backdated a little: a clock a few seconds behind must not see "not yet valid".
BACKDATE = datetime.timedelta(minutes=5)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(name: str) -> x509.GeneralName:
    if name.startswith(("spiffe://", "URI:")):
        return x509.UniformResourceIdentifier(name.removeprefix("URI:"))
    if name.startswith("email:"):
        return x509.RFC822Name(name.removeprefix("email:"))
    try:
        return x509.IPAddress(ipaddress.ip_address(name.removeprefix("IP:")))
    except ValueError:
        return x509.DNSName(name.removeprefix("DNS:"))


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate and its key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes
    serial: int
    common_name: str

    def write(self, directory: str | Path, name: str) -> tuple[Path, Path]:
        """Writes `<name>.crt` and `<name>.key` (0600) atomically; returns their paths."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
        _write_private(key_path, self.key_pem)
        _write_public(cert_path, self.cert_pem)
        return cert_path, key_path


class CertAuthority:
    """A self-signed CA that issues leaf certificates."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, common_name: str = "Brook dev CA", days: int = CA_DAYS) -> CertAuthority:
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Brook"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=days))
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: str | Path, key_path: str | Path) -> CertAuthority:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: expected an EC private key")
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: str | Path, name: str = "ca") -> tuple[Path, Path]:
        """Writes `<name>.crt` and `<name>.key` (0600); returns their paths."""
        return IssuedCert(self.cert_pem, _key_pem(self.key), self.cert.serial_number,
                          "").write(directory, name)  # fmt: skip

    def issue(
        self,
        common_name: str,
        *,
        sans: Sequence[str] = LOCAL_SANS,
        extra_sans: Sequence[str] = (),
        days: int = LEAF_DAYS,
        server: bool = True,
        client: bool = True,
        organization: str = "Brook",
    ) -> IssuedCert:
        """A leaf for `common_name`; SANs are DNS names, IPs, `URI:...`/`spiffe://...` or
        `email:...`. `server`/`client` choose the extended key usages."""
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        attributes = []
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        names = [*sans, *extra_sans]
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(n) for n in names]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        return IssuedCert(
            cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), serial, common_name
        )


def serial_of(cert_pem: bytes) -> int:
    """The serial number of a PEM certificate (the first one of a chain)."""
    return x509.load_pem_x509_certificate(cert_pem).serial_number
