"""Vault's PKI secrets engine as chamberlain uses it: sign a CSR at ``<mount>/sign/<role>``, revoke by serial.

Belongs here: :class:`SignedCertificate` (what a signature returns: certificates and a serial, all public), the
names of the annotations that select a PKI mount and role for an intent (:func:`pki_ref`, shared by the rotator
that uses them and the renderer that grants the orchestrator exactly those two paths), and
:class:`VaultCertificateIssuer`, the adapter that gives a rotation the ``CertificateIssuer`` it needs over a
:class:`~chamberlain.authority.vault.VaultClient`.

Boundary: no hvac here (the rotation layer imports this module, and it must not reach a server client); the
adapter talks to anything with a ``pki`` area that signs and revokes (``VaultClient.pki``, behind its error
boundary). Private keys never cross this boundary: only a CSR goes to Vault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chamberlain.intent.pki import (
    DEFAULT_MOUNT,
    ROTATOR_NAME,
    PkiRef,
    PkiRefError,
    check_grant,
    names_pki,
    pki_ref,
    uses_vault_pki,
)


@dataclass(frozen=True)
class SignedCertificate:
    """What Vault returns for a signed CSR. Nothing here is secret; the PEM bodies are kept out of ``repr`` only
    to keep log lines short. ``serial`` is Vault's colon-separated hex form (``3a:0f:...``)."""

    certificate_pem: str = field(repr=False)
    issuing_ca_pem: str = field(repr=False)
    chain_pem: tuple[str, ...] = field(default=(), repr=False)
    serial: str = ""


class PkiArea(Protocol):
    """The two PKI operations of the client's PKI area (``VaultClient.pki``)."""

    def sign(self, mount: str, role: str, csr_pem: str, common_name: str, alt_names: Sequence[str],
             ttl: str | None) -> SignedCertificate: ...

    def revoke(self, mount: str, serial: str) -> None: ...


class PkiClient(Protocol):
    """A client with a PKI area (:class:`~chamberlain.authority.vault.VaultClient`)."""

    @property
    def pki(self) -> PkiArea: ...


class VaultCertificateIssuer:
    """The rotation layer's ``CertificateIssuer`` over a Vault client (errors are the client's typed
    :mod:`~chamberlain.authority.errors`; the rotator maps them to rotator errors)."""

    def __init__(self, client: PkiClient) -> None:
        self._client = client

    def sign(self, mount: str, role: str, csr_pem: str, common_name: str, alt_names: Sequence[str],
             ttl: str | None) -> SignedCertificate:
        return self._client.pki.sign(mount, role, csr_pem, common_name, alt_names, ttl)

    def revoke(self, mount: str, serial: str) -> None:
        self._client.pki.revoke(mount, serial)

    def __repr__(self) -> str:
        return "VaultCertificateIssuer()"


# Re-exported: the reference an intent's annotations make lives in chamberlain.intent.pki (validate needs it too).
__all__ = [
    "DEFAULT_MOUNT",
    "ROTATOR_NAME",
    "PkiArea",
    "PkiClient",
    "PkiRef",
    "PkiRefError",
    "SignedCertificate",
    "VaultCertificateIssuer",
    "check_grant",
    "names_pki",
    "pki_ref",
    "uses_vault_pki",
]
