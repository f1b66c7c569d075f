"""The ``x509`` rotator: a fresh private key and a self-signed certificate for it, on every rotation.

Selection (the intent model has no x509 generator): an intent opts in with the annotation
``chamberlain.dev/rotator: x509`` and declares its private key with a keypair generator (``ed25519``, ``ecdsa``,
``rsa``). For each keypair key ``K`` the pending version carries ``K`` (PKCS#8 PEM), ``K.pub`` and the certificate
under ``<stem>.crt`` — ``tls.key`` → ``tls.crt``, the layout of a ``kubernetes.io/tls`` Secret; any other ``K`` →
``K.crt``. Subject CN is the intent name; ``chamberlain.dev/x509-dns-names`` (comma-separated) adds DNS SANs.
The certificate is valid from ``now - 5 min`` (clock skew) for the policy's ``ttl``, or 90 days without one.
Boundary: pure generation with ``cryptography`` and the injected ``ctx.now``; no I/O.

The ``x509-vault-pki`` rotator (:class:`X509VaultPkiRotator`) is the CA-issued variant: the key is still drawn
here and never leaves; a CSR is signed by a Vault PKI mount through the injected ``ctx.pki``
(:class:`~chamberlain.rotation.rotators.base.CertificateIssuer`). Annotations: ``chamberlain.dev/x509-pki-mount``
(default ``pki``), ``chamberlain.dev/x509-pki-role`` (required), ``chamberlain.dev/x509-dns-names`` and
``chamberlain.dev/x509-ttl`` (an intent duration such as ``30d``; default the policy's ``ttl``, else the role's).
Subject CN is the first DNS name, or the intent name without one. The pending version holds, per keypair key,
``<stem>.crt`` (the leaf followed by the intermediate CAs Vault returned: what a TLS server presents) and one
``ca.crt`` (the issuing CA and its parents: what a client trusts, and what ``test`` checks the leaf against).
Every certificate is public; its serial is recorded as the note ``serial.<stem>.crt``. ``revoke_old`` revokes the
previous certificate's serial at ``<mount>/revoke``.

Side effect of ``create_pending`` (unlike every other rotator): Vault issues a certificate. The workflow persists
the result and never calls it again for the same run, so a crash can at most leave one unused certificate that
nobody holds the key of; it expires by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from chamberlain import wellknown as wk
from chamberlain.authority.errors import AuthorityError
from chamberlain.authority.pki import ROTATOR_NAME as VAULT_PKI_ROTATOR
from chamberlain.authority.pki import PkiRef, PkiRefError, SignedCertificate, pki_ref
from chamberlain.intent.durations import DurationError, parse_duration
from chamberlain.intent.model import KEYPAIR_GENERATORS
from chamberlain.rotation.rotators.base import (
    CertificateIssuer,
    CredentialTestFailed,
    PendingVersion,
    RotationContext,
    RotatorConfigError,
    RotatorError,
    TargetRejected,
    TargetUnavailable,
    carry_over,
)
from chamberlain.rotation.rotators.generated import fixed_names, fresh_values, generators_of

DEFAULT_VALIDITY = timedelta(days=90)
CLOCK_SKEW = timedelta(minutes=5)
CA_KEY = "ca.crt"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def certificate_key(key: str) -> str:
    """Where the certificate for private key ``key`` is stored."""
    return f"{key[: -len('.key')]}.crt" if key.endswith(".key") and len(key) > len(".key") else f"{key}.crt"


def validity(ctx: RotationContext) -> tuple[datetime, datetime]:
    lifetime = ctx.policy.ttl if ctx.policy is not None and ctx.policy.ttl is not None else DEFAULT_VALIDITY
    return ctx.now - CLOCK_SKEW, ctx.now + lifetime


def dns_names_of(ctx: RotationContext) -> list[str]:
    annotations = ctx.intent.metadata.annotations
    return [n.strip() for n in annotations.get(wk.ANNOTATION_X509_DNS_NAMES, "").split(",") if n.strip()]


def keypair_keys(ctx: RotationContext, rotator: str) -> list[str]:
    """The intent's keypair keys (sorted); a certificate rotator without one has nothing to certify."""
    keys = sorted(k for k, g in generators_of(ctx).items() if isinstance(g, KEYPAIR_GENERATORS))
    if not keys:
        raise RotatorConfigError(f"{ctx.name}: the {rotator} rotator needs a keypair generator for the private key")
    return keys


def _private_key(private_pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise RotatorConfigError("x509: unsupported private key type")  # pragma: no cover - generators forbid it
    return key


def _algorithm(key: PrivateKey) -> hashes.SHA256 | None:
    # Ed25519 signs without a separate digest; the others use SHA-256.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _spki(public: object) -> bytes:
    encode = getattr(public, "public_bytes", None)
    if encode is None:  # pragma: no cover - every key type cryptography loads has it
        return b""
    return bytes(encode(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def self_signed(
    private_pem: str, common_name: str, dns_names: list[str], not_before: datetime, not_after: datetime
) -> str:
    """A self-signed end-entity certificate (PEM) for the private key ``private_pem``."""
    key = _private_key(private_pem)
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
    return builder.sign(key, _algorithm(key)).public_bytes(serialization.Encoding.PEM).decode()


class X509SelfSignedRotator:
    name = "x509"

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        key_names = keypair_keys(ctx, self.name)
        generators = generators_of(ctx)
        fresh = fresh_values(generators, KEYPAIR_GENERATORS)
        dns_names = dns_names_of(ctx)
        not_before, not_after = validity(ctx)
        for key in key_names:
            fresh[certificate_key(key)] = self_signed(fresh[key], ctx.name, dns_names, not_before, not_after)
        return carry_over({**fixed_names(ctx, generators), **ctx.current}, fresh)

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Nothing to do: a self-signed certificate needs no issuer and no target."""

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Each certificate matches its private key and is valid at ``ctx.now``."""
        for key, spec in generators_of(ctx).items():
            if not isinstance(spec, KEYPAIR_GENERATORS):
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


# --------------------------------------------------------------------------------------------------- Vault PKI


def csr_for(private_pem: str, common_name: str, dns_names: list[str]) -> str:
    """A PEM CSR for ``private_pem``: what is sent to the CA instead of the key."""
    key = _private_key(private_pem)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    return builder.sign(key, _algorithm(key)).public_bytes(serialization.Encoding.PEM).decode()


def vault_serial(cert: x509.Certificate) -> str:
    """A serial number as Vault writes it: colon-separated lower-case hex bytes (``3a:0f:...``)."""
    n = cert.serial_number
    return ":".join(f"{b:02x}" for b in n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big"))


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def bundles(signed: SignedCertificate) -> tuple[str, str]:
    """(``<stem>.crt``, ``ca.crt``): the leaf with the intermediate CAs, and the issuing CA with its parents."""
    leaf = x509.load_pem_x509_certificate(signed.certificate_pem.encode())
    cas: list[x509.Certificate] = []
    for pem in (signed.issuing_ca_pem, *signed.chain_pem):
        for cert in x509.load_pem_x509_certificates(pem.encode()):
            if cert not in cas:
                cas.append(cert)
    served = "".join(_pem(c) for c in [leaf, *(c for c in cas if not _self_issued(c))])
    return served, "".join(_pem(c) for c in cas)


def _first_cert(ctx: RotationContext, pem: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificates(pem.encode())[0]
    except (ValueError, IndexError):
        raise CredentialTestFailed(f"{ctx.name}: {what} is not a PEM certificate") from None


def _issuer(ctx: RotationContext) -> CertificateIssuer:
    if ctx.pki is None:
        raise RotatorConfigError(
            f"{ctx.name}: the {VAULT_PKI_ROTATOR} rotator needs a certificate issuer (Vault PKI), and none was "
            "wired into this rotation"
        )
    return ctx.pki


def _ref(ctx: RotationContext) -> PkiRef:
    try:
        return pki_ref(ctx.intent.metadata.annotations)
    except PkiRefError as exc:
        raise RotatorConfigError(f"{ctx.name}: {exc}") from None


def _ttl(ctx: RotationContext) -> str | None:
    text = ctx.intent.metadata.annotations.get(wk.ANNOTATION_X509_TTL, "").strip()
    if text:
        try:
            lifetime = parse_duration(text)
        except DurationError as exc:
            raise RotatorConfigError(f"{ctx.name}: annotation {wk.ANNOTATION_X509_TTL}: {exc}") from None
    elif ctx.policy is not None and ctx.policy.ttl is not None:
        lifetime = ctx.policy.ttl
    else:
        return None  # the role's default
    return f"{int(lifetime.total_seconds())}s"


def _target_error(ctx: RotationContext, exc: AuthorityError) -> RotatorError:
    """An authority error of the CA as a rotator error (the message names the operation and status only)."""
    kind = TargetUnavailable if exc.retryable else TargetRejected
    return kind(f"{ctx.name}: {exc}")


class X509VaultPkiRotator:
    """A fresh private key on every rotation, certified by a Vault PKI mount (see the module docstring)."""

    name = VAULT_PKI_ROTATOR

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        keys = keypair_keys(ctx, self.name)
        ref, ttl, issuer = _ref(ctx), _ttl(ctx), _issuer(ctx)
        generators = generators_of(ctx)
        fresh = fresh_values(generators, KEYPAIR_GENERATORS)
        dns_names = dns_names_of(ctx)
        common_name = dns_names[0] if dns_names else ctx.name
        notes = {"pki": ref.sign_path}
        for key in keys:
            csr = csr_for(fresh[key], common_name, dns_names)
            try:
                signed = issuer.sign(ref.mount, ref.role, csr, common_name, dns_names, ttl)
            except AuthorityError as exc:
                raise _target_error(ctx, exc) from None
            try:
                served, cas = bundles(signed)
            except ValueError:
                raise TargetRejected(f"{ctx.name}: {ref.sign_path} answered with no PEM certificate") from None
            cert_key = certificate_key(key)
            fresh[cert_key], fresh[CA_KEY] = served, cas
            leaf = x509.load_pem_x509_certificate(served.encode())
            notes[f"serial.{cert_key}"] = signed.serial or vault_serial(leaf)
        pending = carry_over({**fixed_names(ctx, generators), **ctx.current}, fresh)
        return PendingVersion(data=pending.data, rotated=pending.rotated, notes=notes)

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Nothing to do: Vault issued the certificate in ``create_pending``; consumers receive it through ESO."""

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Each certificate matches its private key, is signed by the issuing CA Vault returned (first of
        ``ca.crt``) and is valid at ``ctx.now``. Failures name the key, never a PEM body."""
        ca_pem = pending.data.get(CA_KEY)
        if ca_pem is None:
            raise CredentialTestFailed(f"{ctx.name}: pending version lacks {CA_KEY!r}")
        issuing_ca = _first_cert(ctx, ca_pem, repr(CA_KEY))
        for key in keypair_keys(ctx, self.name):
            cert_key = certificate_key(key)
            cert_pem, private_pem = pending.data.get(cert_key), pending.data.get(key)
            if cert_pem is None or private_pem is None:
                raise CredentialTestFailed(f"{ctx.name}: pending version lacks {key!r} or {cert_key!r}")
            cert = _first_cert(ctx, cert_pem, repr(cert_key))
            try:
                private = _private_key(private_pem)
            except (ValueError, TypeError):
                raise CredentialTestFailed(f"{ctx.name}: {key!r} is not a PEM private key") from None
            if _spki(cert.public_key()) != _spki(private.public_key()):
                raise CredentialTestFailed(f"{ctx.name}: certificate {cert_key!r} does not match its private key")
            try:
                cert.verify_directly_issued_by(issuing_ca)
            except (ValueError, TypeError, InvalidSignature):
                raise CredentialTestFailed(
                    f"{ctx.name}: certificate {cert_key!r} is not signed by the issuing CA in {CA_KEY!r}"
                ) from None
            if not cert.not_valid_before_utc <= ctx.now <= cert.not_valid_after_utc:
                raise CredentialTestFailed(f"{ctx.name}: certificate {cert_key!r} is not valid now")

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        """Revoke each previous certificate at ``<mount>/revoke`` by serial. Skipped: a key without a certificate,
        a self-issued one (from the ``x509`` rotator; no CA knows it) and one whose serial is current."""
        ref, issuer = _ref(ctx), _issuer(ctx)
        for key in keypair_keys(ctx, self.name):
            cert_key = certificate_key(key)
            old_pem = previous.get(cert_key)
            if not old_pem:
                continue
            try:
                old = x509.load_pem_x509_certificates(old_pem.encode())[0]
            except (ValueError, IndexError):
                raise RotatorConfigError(f"{ctx.name}: previous {cert_key!r} is not a PEM certificate") from None
            if _self_issued(old):
                continue
            serial = vault_serial(old)
            current_pem = ctx.current.get(cert_key)
            if current_pem:
                try:
                    if vault_serial(x509.load_pem_x509_certificates(current_pem.encode())[0]) == serial:
                        continue
                except (ValueError, IndexError):
                    pass
            try:
                issuer.revoke(ref.mount, serial)
            except AuthorityError as exc:
                raise _target_error(ctx, exc) from None
