"""Where the runtime authority's unseal material lives: age sealing to the offline root of trust, the Kubernetes
Secret that stores the sealed shares, and the local recovery file that bridges a failed Secret write.

Unseal material: the Shamir shares never leave the process in plaintext. Each share is encrypted with age (pyrage,
in process) the moment ``sys/init`` (or a rekey) returns it, as :class:`ShareCustody` says (SPEC §6): when the
Platform declares ``rootOfTrust.custody``, share *i* to custodian *i*'s recipient alone, so one identity opens one
share and the threshold means k people; without custody, every share to every ``rootOfTrust.ageRecipients`` (one
root identity opens them all). Never to the GitOps decryption recipients. The ciphertexts are stored as the
Kubernetes Secret ``<controller namespace>/chamberlain-unseal`` (``share-1..N``, armored age) with non-secret
annotations (threshold, share count, which custodian holds which share, a fingerprint of the custody or recipients,
dates, whether the root token was revoked, and the seal: with an auto-unseal seal the shares are the server's
*recovery* keys, sealed and stored exactly the same way). Opening them takes offline identities
(``--identity FILE``); a share the identities do not open is skipped, not an error. The recovery file holds the
same ciphertexts (0600) only while the Secret write has not succeeded.

Boundary: Kubernetes through the structural :class:`SecretAPI` (the :class:`~chamberlain.kube.api.Kube` protocol
satisfies it). Not here: the server (:mod:`chamberlain.authority.lifecycle` decides and acts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyrage

from chamberlain import wellknown as wk
from chamberlain.clock import Clock
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.intent.unseal_shares import custody_fingerprint
from chamberlain.intent.unseal_shares import recipients_fingerprint as recipients_fingerprint  # its old home


class SealError(ChamberlainError):
    """The unseal material is missing, stale, or cannot be opened; the message says what to do."""


SECRET_NAME = "chamberlain-unseal"  # noqa: S105 - a Secret name, not a credential
LABELS = {wk.MANAGED_BY: wk.MANAGER, wk.LABEL_ROLE: "unseal-material"}
# Which custodian holds share-1..N (comma-separated custodian names, in share order; absent without custody).
ANNOTATION_SHARE_HOLDERS = wk.PREFIX + "share-holders"
ANNOTATION_NEXT_SHARE_HOLDERS = wk.PREFIX + "next-share-holders"
# The seal of the server the shares belong to: absent or "shamir" (unseal shares), else an auto-unseal seal whose
# shares are recovery keys (generate-root and their own rekey; they never unseal).
ANNOTATION_SEAL_TYPE = wk.PREFIX + "seal-type"

# -------------------------------------------------------------------------------------------------- age


def parse_recipients(recipients: Sequence[str]) -> list[pyrage.x25519.Recipient]:
    if not recipients:
        raise UsageError("the Platform names no rootOfTrust.ageRecipients; the unseal shares need at least one")
    out = []
    for r in recipients:
        try:
            out.append(pyrage.x25519.Recipient.from_str(r))
        except pyrage.RecipientError:
            raise UsageError(f"not an age X25519 recipient: {r[:12]}…") from None
    return out


def seal_share(share: str, recipients: Sequence[pyrage.x25519.Recipient]) -> str:
    """Armored age ciphertext of one share (safe to store and print)."""
    return pyrage.encrypt(share.encode(), list(recipients), armored=True).decode()


def load_identities(path: Path) -> list[pyrage.x25519.Identity]:
    """The X25519 identities of an age identity file (comments and blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the identity file ({exc.strerror})") from None
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-"):
            try:
                identities.append(pyrage.x25519.Identity.from_str(line))
            except pyrage.IdentityError:
                raise UsageError(f"{path}: malformed age identity line") from None
    if not identities:
        raise UsageError(f"{path}: no AGE-SECRET-KEY identity in the file")
    return identities


def open_share(ciphertext: str, identities: Sequence[pyrage.x25519.Identity]) -> str:
    try:
        return pyrage.decrypt(ciphertext.encode(), list(identities)).decode()
    except pyrage.DecryptError:
        raise SealError("the identity cannot open the sealed unseal shares (is it one of the Platform's "
                        "rootOfTrust recipients?)") from None


def try_open(ciphertext: str, identities: Sequence[pyrage.x25519.Identity]) -> str | None:
    """The share if one of ``identities`` opens it, else None (another custodian's share)."""
    try:
        return pyrage.decrypt(ciphertext.encode(), list(identities)).decode()
    except pyrage.DecryptError:
        return None


# ------------------------------------------------------------------------------------------------ custody


@dataclass(frozen=True)
class ShareCustody:
    """Who the unseal shares are sealed to (SPEC §6).

    With ``custodians`` (the Platform's ``rootOfTrust.custody``): share *i* to custodian *i* alone, the share count
    is the number of custodians and ``threshold`` is theirs. Without: every share to every root recipient (one root
    identity opens all, the threshold protects nothing but is kept as today). The GitOps decryption recipients are
    never here: the service passes the root list only.
    """

    recipients: tuple[str, ...]  # rootOfTrust.ageRecipients
    custodians: tuple[tuple[str, str], ...] = ()  # (name, age recipient), in the Platform's order
    threshold: int = 0  # custody.threshold (0: no custody declared)

    @property
    def declared(self) -> bool:
        return bool(self.custodians)

    @property
    def holders(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.custodians)

    @property
    def fingerprint(self) -> str:
        """Names what the shares are sealed to: a changed custodian list (or threshold) is a changed fingerprint,
        i.e. the stored shares are due for a rekey. Without custody, the recipients' fingerprint as before."""
        return custody_fingerprint(self.recipients, self.custodians, self.threshold)

    def check(self) -> None:
        """Every recipient parses (a usage error before anything changes)."""
        if self.declared:
            parse_recipients([r for _, r in self.custodians])
        else:
            parse_recipients(self.recipients)

    def seal(self, keys: Sequence[str]) -> tuple[str, ...]:
        """The ciphertexts of ``keys``: one custodian each, or all root recipients each."""
        if not self.declared:
            everyone = parse_recipients(self.recipients)
            return tuple(seal_share(k, everyone) for k in keys)
        if len(keys) != len(self.custodians):
            raise SealError(f"{len(keys)} shares for {len(self.custodians)} custodians: each custodian holds "
                            "exactly one share")
        return tuple(seal_share(k, parse_recipients([r])) for k, (_, r) in zip(keys, self.custodians, strict=True))


# ---------------------------------------------------------------------------------------- sealed material


@dataclass(frozen=True)
class SealedMaterial:
    """The stored unseal material: ciphertexts (not secret, but pointless to print) and what is known about it."""

    shares: tuple[str, ...] = field(repr=False)
    threshold: int
    recipients: str  # fingerprint of the recipient list
    initialized_at: str = ""
    root_revoked_at: str = ""
    generation: int = 1
    rekeyed_at: str = ""
    next_shares: tuple[str, ...] = field(default=(), repr=False)  # a rekey whose verification is not done
    next_threshold: int = 0
    init_recorded: bool = False
    vault_address: str = ""
    pending: bool = False  # the placeholder written before init: proves the store is writable
    holders: tuple[str, ...] = ()  # custodian of share-1..N (empty: sealed to every root recipient)
    next_holders: tuple[str, ...] = ()
    seal_type: str = "shamir"  # another: the shares are the recovery keys of an auto-unsealed server

    @property
    def recovery_keys(self) -> bool:
        return self.seal_type not in ("", "shamir")

    def open(self, identities: Sequence[pyrage.x25519.Identity], *, next_: bool = False) -> list[str]:
        """Every share; :class:`SealError` if one of them does not open (material without custody)."""
        return [open_share(c, identities) for c in (self.next_shares if next_ else self.shares)]

    def open_held(self, identities: Sequence[pyrage.x25519.Identity], *, next_: bool = False
                  ) -> list[tuple[int, str]]:
        """(index, share) of the shares ``identities`` open, in share order; the others are skipped."""
        shares = self.next_shares if next_ else self.shares
        opened = ((i, try_open(c, identities)) for i, c in enumerate(shares))
        return [(i, k) for i, k in opened if k is not None]

    def holder(self, index: int, *, next_: bool = False) -> str:
        """Who holds share ``index`` (0-based): a custodian's name, or ``share-N`` without custody."""
        holders = self.next_holders if next_ else self.holders
        return holders[index] if index < len(holders) else f"share-{index + 1}"


class _StoredSecret(Protocol):
    @property
    def data(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...
    @property
    def resource_version(self) -> str: ...


class SecretAPI(Protocol):
    """The part of :class:`~chamberlain.kube.api.Kube` the sealed store needs (structural, see the docstring)."""

    def get_secret(self, namespace: str, name: str) -> Any: ...

    def create_secret(self, namespace: str, name: str, data: Mapping[str, str],
                      labels: Mapping[str, str] | None = None,
                      annotations: Mapping[str, str] | None = None) -> Any: ...

    def update_secret(self, secret: Any) -> Any: ...

    def ensure_namespace(self, name: str) -> None: ...


class SealedStore:
    """The unseal material as one Kubernetes Secret, written with resourceVersion preconditions."""

    def __init__(self, kube: SecretAPI, namespace: str, name: str = SECRET_NAME) -> None:
        self._kube = kube
        self.namespace = namespace
        self.name = name
        self._current: Any = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def load(self) -> SealedMaterial | None:
        secret: _StoredSecret | None = self._kube.get_secret(self.namespace, self.name)
        self._current = secret
        if secret is None:
            return None
        a, d = secret.annotations, secret.data

        def keys(prefix: str) -> tuple[str, ...]:
            n = sum(1 for k in d if k.startswith(prefix))
            return tuple(d[f"{prefix}{i}"] for i in range(1, n + 1) if f"{prefix}{i}" in d)

        return SealedMaterial(
            shares=keys("share-"),
            threshold=int(a.get(wk.ANNOTATION_UNSEAL_THRESHOLD) or 0),
            recipients=a.get(wk.ANNOTATION_RECIPIENTS, ""),
            initialized_at=a.get(wk.ANNOTATION_INITIALIZED_AT, ""),
            root_revoked_at=a.get(wk.ANNOTATION_ROOT_REVOKED_AT, ""),
            generation=int(a.get(wk.ANNOTATION_KEY_GENERATION) or 1),
            rekeyed_at=a.get(wk.ANNOTATION_REKEYED_AT, ""),
            next_shares=keys("next-share-"),
            next_threshold=int(a.get(wk.ANNOTATION_NEXT_THRESHOLD) or 0),
            init_recorded=a.get(wk.ANNOTATION_INIT_RECORDED) == "true",
            vault_address=a.get(wk.ANNOTATION_VAULT_ADDRESS, ""),
            pending=a.get(wk.ANNOTATION_SEAL_STATE) == "pending",
            holders=_names(a.get(ANNOTATION_SHARE_HOLDERS, "")),
            next_holders=_names(a.get(ANNOTATION_NEXT_SHARE_HOLDERS, "")),
            seal_type=a.get(ANNOTATION_SEAL_TYPE, "") or "shamir",
        )

    def save(self, m: SealedMaterial) -> None:
        data = {f"share-{i}": c for i, c in enumerate(m.shares, start=1)}
        data.update({f"next-share-{i}": c for i, c in enumerate(m.next_shares, start=1)})
        annotations = {
            wk.ANNOTATION_SEAL_STATE: "pending" if m.pending else "sealed",
            wk.ANNOTATION_UNSEAL_SHARES: str(len(m.shares)),
            wk.ANNOTATION_UNSEAL_THRESHOLD: str(m.threshold),
            wk.ANNOTATION_RECIPIENTS: m.recipients,
            wk.ANNOTATION_KEY_GENERATION: str(m.generation),
        }
        optional = {
            wk.ANNOTATION_INITIALIZED_AT: m.initialized_at,
            wk.ANNOTATION_ROOT_REVOKED_AT: m.root_revoked_at,
            wk.ANNOTATION_REKEYED_AT: m.rekeyed_at,
            wk.ANNOTATION_VAULT_ADDRESS: m.vault_address,
            wk.ANNOTATION_NEXT_THRESHOLD: str(m.next_threshold) if m.next_shares else "",
            wk.ANNOTATION_INIT_RECORDED: "true" if m.init_recorded else "",
            ANNOTATION_SHARE_HOLDERS: ",".join(m.holders),
            ANNOTATION_NEXT_SHARE_HOLDERS: ",".join(m.next_holders) if m.next_shares else "",
            ANNOTATION_SEAL_TYPE: m.seal_type if m.recovery_keys else "",
        }
        annotations.update({k: v for k, v in optional.items() if v})
        if self._current is None:
            self._kube.ensure_namespace(self.namespace)
            self._current = self._kube.create_secret(self.namespace, self.name, data, LABELS, annotations)
        else:
            updated = dataclasses.replace(self._current, data=data, annotations=annotations, labels=LABELS)
            self._current = self._kube.update_secret(updated)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n for n in text.split(",") if n)


# ------------------------------------------------------------------------------------------------ recovery


def recovery_file(directory: Path, vault_address: str) -> Path:
    return directory / f"unseal-recovery-{hashlib.sha256(vault_address.encode()).hexdigest()[:12]}.json"


def write_recovery(path: Path, m: SealedMaterial) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"shares": list(m.shares), "threshold": m.threshold, "recipients": m.recipients,
                       "initialized_at": m.initialized_at, "vault_address": m.vault_address,
                       "holders": list(m.holders), "seal_type": m.seal_type})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())


def read_recovery(path: Path) -> SealedMaterial | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return SealedMaterial(tuple(d["shares"]), int(d["threshold"]), str(d["recipients"]),
                          initialized_at=str(d.get("initialized_at", "")),
                          vault_address=str(d.get("vault_address", "")),
                          holders=tuple(str(h) for h in d.get("holders", [])),
                          seal_type=str(d.get("seal_type") or "shamir"))


def save_with_retry(store: SealedStore, m: SealedMaterial, recovery: Path, clock: Clock, attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            store.load()  # refresh the resourceVersion (the pending placeholder, or a partial earlier write)
            store.save(m)
            return
        except ChamberlainError as exc:
            if not exc.retryable or attempt == attempts - 1:
                raise SealError(f"Vault is initialized but the sealed shares could not be stored in Secret "
                                f"{store.ref} ({type(exc).__name__}); they are kept, encrypted, in {recovery}: "
                                "re-run the same command to upload them") from None
            clock.sleep(min(2**attempt, 8))
