"""The ``x509`` rotator: a fresh private key and a self-signed certificate for it, on every rotation.

Selection (the intent model has no x509 generator): an intent opts in with the annotation
``chamberlain.dev/rotator: x509`` and declares its private key with a keypair generator (``ed25519``, ``ecdsa``,
``rsa``). For each keypair key ``K`` the pending version carries ``K`` (PKCS#8 PEM), ``K.pub`` and the certificate
under ``<stem>.crt`` — ``tls.key`` → ``tls.crt``, the layout of a ``kubernetes.io/tls`` Secret; any other ``K`` →
``K.crt``. Subject CN is the intent name; ``chamberlain.dev/x509-dns-names`` (comma-separated) adds DNS SANs.
The certificate is valid from ``now - 5 min`` (clock skew) for the policy's ``ttl``, or 90 days without one.
Boundary: pure generation with ``cryptography`` and the injected ``ctx.now``; no I/O. A Vault-PKI-issued variant
would be another rotator registered beside this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from chamberlain.rotation.rotators.base import PendingVersion, RotationContext, RotatorConfigError, carry_over
from chamberlain.rotation.rotators.generated import KEYPAIR_TYPES, fixed_names, fresh_values, generators_of

ROTATOR_ANNOTATION = "chamberlain.dev/rotator"
DNS_NAMES_ANNOTATION = "chamberlain.dev/x509-dns-names"
DEFAULT_VALIDITY = timedelta(days=90)
CLOCK_SKEW = timedelta(minutes=5)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def certificate_key(key: str) -> str:
    """Where the certificate for private key ``key`` is stored."""
    return f"{key[: -len('.key')]}.crt" if key.endswith(".key") and len(key) > len(".key") else f"{key}.crt"


def validity(ctx: RotationContext) -> tuple[datetime, datetime]:
    lifetime = ctx.policy.ttl if ctx.policy is not None and ctx.policy.ttl is not None else DEFAULT_VALIDITY
    return ctx.now - CLOCK_SKEW, ctx.now + lifetime


def self_signed(
    private_pem: str, common_name: str, dns_names: list[str], not_before: datetime, not_after: datetime
) -> str:
    """A self-signed end-entity certificate (PEM) for the private key ``private_pem``."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise RotatorConfigError("x509: unsupported private key type")  # pragma: no cover - generators forbid it
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    # Ed25519 signs without a separate digest; the others use SHA-256.
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


class X509SelfSignedRotator:
    name = "x509"

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        generators = generators_of(ctx)
        fresh = fresh_values(generators, KEYPAIR_TYPES)
        key_names = [k for k, g in generators.items() if isinstance(g, KEYPAIR_TYPES)]
        if not key_names:
            raise RotatorConfigError(f"{ctx.name}: the x509 rotator needs a keypair generator for the private key")
        annotations = ctx.intent.metadata.annotations
        dns_names = [n.strip() for n in annotations.get(DNS_NAMES_ANNOTATION, "").split(",") if n.strip()]
        not_before, not_after = validity(ctx)
        for key in sorted(key_names):
            fresh[certificate_key(key)] = self_signed(fresh[key], ctx.name, dns_names, not_before, not_after)
        return carry_over({**fixed_names(ctx, generators), **ctx.current}, fresh)

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Nothing to do: a self-signed certificate needs no issuer and no target."""

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Each certificate matches its private key and is valid at ``ctx.now``."""
        for key, spec in generators_of(ctx).items():
            if not isinstance(spec, KEYPAIR_TYPES):
                continue
            cert_pem = pending.data.get(certificate_key(key))
            private_pem = pending.data.get(key)
            if cert_pem is None or private_pem is None:
                raise RotatorConfigError(f"{ctx.name}: pending version lacks {key!r} or its certificate")
            cert = x509.load_pem_x509_certificate(cert_pem.encode())
            private = serialization.load_pem_private_key(private_pem.encode(), password=None)
            spki = serialization.PublicFormat.SubjectPublicKeyInfo
            if cert.public_key().public_bytes(serialization.Encoding.DER, spki) != private.public_key().public_bytes(
                serialization.Encoding.DER, spki
            ):
                raise RotatorConfigError(f"{ctx.name}: certificate for {key!r} does not match its private key")
            if not cert.not_valid_before_utc <= ctx.now <= cert.not_valid_after_utc:
                raise RotatorConfigError(f"{ctx.name}: certificate for {key!r} is not valid now")

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        """Nothing to revoke: a self-signed certificate has no CRL; it expires by itself."""
