"""Per-lab key material: a throw-away CA, server/client certificates, SA signing keys.

Boundary: generates files under ``<lab dir>/pki`` (private keys 0600) with the
``cryptography`` package and nothing else; it never starts a process. Each lab gets
its own CA, so nothing here is trusted outside that lab. Existing files are reused,
so ``lab up`` is idempotent and clients keep trusting a restarted lab. Validity periods
start at the time of the :class:`~chamberlain.clock.Clock` the caller passes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chamberlain.clock import Clock

_VALIDITY = dt.timedelta(days=365)
LOOPBACK_SANS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class LabPKI:
    """Paths of every file the lab servers and clients need."""

    dir: Path
    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    vault: CertPair
    sa_key: Path
    sa_pub: Path
    #: kube-controller-manager's client identity (the built-in RBAC names it) and its serving certificate.
    controller_manager: CertPair
    controller_manager_serving: CertPair

    @property
    def ca_pem(self) -> str:
        return self.ca.cert.read_text(encoding="ascii")


def _write_private(path: Path, data: bytes) -> None:
    # Create with 0600 from the start rather than chmod afterwards, so the key is
    # never world-readable even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


# The lab's own CA. The x509 rotator builds its certificates the same way with cryptography's builder, but
# the lab sits below the product's packages and shares no code with them.
def _ensure_ca(pair: CertPair, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if pair.cert.exists() and pair.key.exists():
        return x509.load_pem_x509_certificate(pair.cert.read_bytes()), _load_key(pair.key)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chamberlain-lab-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(pair.key, _key_pem(key))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _ensure_leaf(
    pair: CertPair,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    common_name: str,
    organizations: tuple[str, ...] = (),
    sans: tuple[str, ...] = (),
    server: bool,
    now: dt.datetime,
) -> None:
    if pair.cert.exists() and pair.key.exists():
        return
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(_san(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(pair.key, _key_pem(key))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def pki_paths(lab_dir: Path) -> LabPKI:
    """Where the lab's PKI files are (or will be); creates nothing."""
    d = lab_dir / "pki"
    return LabPKI(
        dir=d,
        ca=CertPair(d / "ca.crt", d / "ca.key"),
        apiserver=CertPair(d / "apiserver.crt", d / "apiserver.key"),
        admin=CertPair(d / "admin.crt", d / "admin.key"),
        vault=CertPair(d / "vault.crt", d / "vault.key"),
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
        controller_manager=CertPair(d / "controller-manager.crt", d / "controller-manager.key"),
        controller_manager_serving=CertPair(d / "controller-manager-serving.crt", d / "controller-manager-serving.key"),
    )


def ensure_pki(lab_dir: Path, clock: Clock) -> LabPKI:
    """Create (or reuse) the lab's PKI under ``lab_dir/pki`` and return its paths; new certificates are valid
    from ``clock.now()`` (less five minutes of skew) for a year."""
    pki = pki_paths(lab_dir)
    pki.dir.mkdir(parents=True, exist_ok=True)
    pki.dir.chmod(0o700)
    now = clock.now()
    ca = _ensure_ca(pki.ca, now)
    _ensure_leaf(
        pki.apiserver,
        ca,
        common_name="kube-apiserver",
        server=True,
        now=now,
        sans=(
            *LOOPBACK_SANS,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
    )
    # system:masters makes the lab admin a cluster-admin without any RBAC object.
    _ensure_leaf(
        pki.admin, ca, common_name="chamberlain-lab-admin", organizations=("system:masters",), server=False, now=now
    )
    _ensure_leaf(
        pki.vault, ca, common_name="vault", server=True, sans=(*LOOPBACK_SANS, "vault", "vault.vault.svc"), now=now
    )
    # The user the bootstrap RBAC of every cluster grants the controller-manager's rights to (as kubeadm does).
    _ensure_leaf(pki.controller_manager, ca, common_name="system:kube-controller-manager", server=False, now=now)
    _ensure_leaf(pki.controller_manager_serving, ca, common_name="kube-controller-manager", server=True,
                 sans=LOOPBACK_SANS, now=now)
    if not (pki.sa_key.exists() and pki.sa_pub.exists()):
        # RSA: the service-account signer's most widely supported algorithm (RS256).
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(pki.sa_key, _key_pem(sa))
        pki.sa_pub.write_bytes(
            sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return pki
