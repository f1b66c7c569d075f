"""The PKI mount and role an intent's annotations name (``x509-vault-pki``): parsed and checked once, for the
rotator that signs there, the renderer that grants the orchestrator exactly ``<mount>/sign/<role>`` and
``<mount>/revoke``, and validate (CH105), which refuses a reference that would widen that grant. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chamberlain import wellknown as wk
from chamberlain.intent.paths import TRANSIT_MOUNT

ROTATOR_NAME = "x509-vault-pki"
DEFAULT_MOUNT = "pki"

# Both end up in Vault paths and in rendered HCL policies: plain path segments only, no wildcard, no quote.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_MOUNT = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
_ROLE = re.compile(_SEGMENT)
_SYSTEM_PATHS = frozenset({"sys", "auth", "identity", "cubbyhole"})


class PkiRefError(ValueError):
    """The annotations do not name a usable PKI mount and role. The message names annotations, never values of
    secrets (annotation values are public)."""


@dataclass(frozen=True)
class PkiRef:
    """Where an intent's certificates are signed: ``<mount>/sign/<role>``; revoked at ``<mount>/revoke``."""

    mount: str
    role: str

    @property
    def sign_path(self) -> str:
        return f"{self.mount}/sign/{self.role}"

    @property
    def revoke_path(self) -> str:
        return f"{self.mount}/revoke"


def uses_vault_pki(annotations: Mapping[str, str]) -> bool:
    return annotations.get(wk.ANNOTATION_ROTATOR) == ROTATOR_NAME


def names_pki(annotations: Mapping[str, str]) -> bool:
    """Whether the annotations select the Vault PKI rotator or name a PKI mount or role."""
    return uses_vault_pki(annotations) or any(
        k in annotations for k in (wk.ANNOTATION_X509_PKI_MOUNT, wk.ANNOTATION_X509_PKI_ROLE))


def check_grant(ref: PkiRef, kv_mounts: Iterable[str]) -> None:
    """Refuse a PKI reference whose grant would land inside one of chamberlain's own mounts: ``update`` on
    ``<mount>/sign/<role>`` with ``mount = secret/data/prod/team`` is a write to another team's secret, and with
    the transit mount it is a signature with a ledger key (``chamberlain-transit/sign/chamberlain-ledger-prod``:
    forged audit entries of another environment), not a certificate."""
    if ref.mount == TRANSIT_MOUNT or ref.mount.startswith(TRANSIT_MOUNT + "/"):
        raise PkiRefError(f"annotation {wk.ANNOTATION_X509_PKI_MOUNT}: {ref.mount!r} is chamberlain's transit "
                          "mount (the ledger's signing keys and the version markers' keys), not a PKI mount: the "
                          "sign grant would let the orchestrator sign with those keys")
    for kv in kv_mounts:
        kv = kv.strip("/")
        if ref.mount == kv or ref.mount.startswith(kv + "/"):
            raise PkiRefError(f"annotation {wk.ANNOTATION_X509_PKI_MOUNT}: {ref.mount!r} is chamberlain's KV mount "
                              f"{kv!r}, not a PKI mount: the sign and revoke grants would be writes into it")


def pki_ref(annotations: Mapping[str, str]) -> PkiRef:
    """The mount (default ``pki``) and the role (required) named by an intent's annotations."""
    mount = annotations.get(wk.ANNOTATION_X509_PKI_MOUNT, "").strip().strip("/") or DEFAULT_MOUNT
    role = annotations.get(wk.ANNOTATION_X509_PKI_ROLE, "").strip()
    if not role:
        raise PkiRefError(f"annotation {wk.ANNOTATION_X509_PKI_ROLE} is required by the {ROTATOR_NAME} rotator")
    # fullmatch: ``$`` would let a trailing newline through, into the rendered HCL and past the checks below
    if not _MOUNT.fullmatch(mount):
        raise PkiRefError(f"annotation {wk.ANNOTATION_X509_PKI_MOUNT}: {mount!r} is not a Vault mount path")
    if mount.split("/", 1)[0].lower() in _SYSTEM_PATHS:
        # The orchestrator's policy grants update on <mount>/sign/<role> and <mount>/revoke: under sys/, auth/ or
        # identity/ that would be a grant on the server's own API, not on a PKI engine.
        raise PkiRefError(f"annotation {wk.ANNOTATION_X509_PKI_MOUNT}: {mount!r} is a system path, not a PKI mount")
    if not _ROLE.fullmatch(role):
        raise PkiRefError(f"annotation {wk.ANNOTATION_X509_PKI_ROLE}: {role!r} is not a Vault PKI role name")
    return PkiRef(mount, role)
