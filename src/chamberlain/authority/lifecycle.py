"""The runtime authority's seal life cycle (SPEC §3 phase 3, §6): init, unseal, rekey, status — and where the
unseal material lives.

Unseal material: Vault's Shamir shares never leave the process in plaintext. Each share is encrypted with age
(pyrage, in process) to the Platform's ``rootOfTrust.ageRecipients`` the moment ``sys/init`` (or a rekey) returns
it, and the ciphertexts are stored as the Kubernetes Secret ``<controller namespace>/chamberlain-unseal``
(``share-1..N``, armored age) with non-secret annotations (threshold, share count, recipients fingerprint, dates,
whether the root token was revoked). Opening them takes an offline identity (``--identity FILE``).

Crash safety of init — the one step with no way back is "Vault returned the shares, nothing stored them yet":
before calling ``sys/init`` we prove the Secret can be written (a ``pending`` placeholder is created) and parse
the recipients; right after, the encrypted shares go first to a local 0600 recovery file (ciphertext only), then
to the Secret, and the recovery file is removed. Every later step is resumable: a re-run finds Vault initialized
and the material stored, unseals (with ``--identity``) if needed, and authenticates as the configurator role, or
— if the first run died before that role existed — obtains a temporary root token from the stored shares
(``sys/generate-root``). It then sweeps root tokens orphaned by the crash, configures, verifies the orchestrator
login and revokes its own root token. The root token is never written anywhere.

Boundary: Vault is reached through :class:`~chamberlain.authority.vault.VaultClient`; Kubernetes through the
structural :class:`SecretAPI` (the :class:`~chamberlain.kube.api.Kube` protocol satisfies it, so this layer does
not import the Kubernetes adapter); the ledger through an injected :data:`Recorder`. Time comes from an injected
clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pyrage

from chamberlain import wellknown as wk
from chamberlain.authority.errors import AuthorityError, Forbidden, InvalidRequest, NotInitialized
from chamberlain.authority.vault import SealStatus, VaultClient
from chamberlain.clock import Clock, rfc3339
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.faults import checkpoint

SECRET_NAME = "chamberlain-unseal"  # noqa: S105 - a Secret name, not a credential
LABELS = {wk.MANAGED_BY: wk.MANAGER, wk.LABEL_ROLE: "unseal-material"}

AuthorityEvent = Literal["authority-init", "authority-configure", "authority-rekey", "authority-unseal"]
Recorder = Callable[[AuthorityEvent, Mapping[str, str]], None]
"""Appends a ledger entry (the caller binds the ledger, actor and run); details never carry values."""


class SealError(ChamberlainError):
    """The unseal material is missing, stale, or cannot be opened; the message says what to do."""


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


def recipients_fingerprint(recipients: Sequence[str]) -> str:
    return hashlib.sha256(",".join(sorted(recipients)).encode()).hexdigest()[:16]


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

    def open(self, identities: Sequence[pyrage.x25519.Identity], *, next_: bool = False) -> list[str]:
        return [open_share(c, identities) for c in (self.next_shares if next_ else self.shares)]


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
        }
        annotations.update({k: v for k, v in optional.items() if v})
        if self._current is None:
            self._kube.ensure_namespace(self.namespace)
            self._current = self._kube.create_secret(self.namespace, self.name, data, LABELS, annotations)
        else:
            updated = dataclasses.replace(self._current, data=data, annotations=annotations, labels=LABELS)
            self._current = self._kube.update_secret(updated)


# ------------------------------------------------------------------------------------------------ recovery


def recovery_file(directory: Path, vault_address: str) -> Path:
    return directory / f"unseal-recovery-{hashlib.sha256(vault_address.encode()).hexdigest()[:12]}.json"


def _write_recovery(path: Path, m: SealedMaterial) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"shares": list(m.shares), "threshold": m.threshold, "recipients": m.recipients,
                       "initialized_at": m.initialized_at, "vault_address": m.vault_address})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())


def _read_recovery(path: Path) -> SealedMaterial | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return SealedMaterial(tuple(d["shares"]), int(d["threshold"]), str(d["recipients"]),
                          initialized_at=str(d.get("initialized_at", "")),
                          vault_address=str(d.get("vault_address", "")))


# ------------------------------------------------------------------------------------------------ unseal


@dataclass
class UnsealReport:
    was_sealed: bool
    submitted: int
    sealed: bool


def unseal_with(vault: VaultClient, shares: Sequence[str]) -> UnsealReport:
    """Submit shares until unsealed; a no-op on an unsealed server. Partial progress of unknown origin is reset
    first (someone else's wrong share would make our correct ones fail)."""
    status = vault.seal_status()
    if not status.initialized:
        raise NotInitialized(f"{vault.address}: not initialized; run `chamberlain authority init`")
    if not status.sealed:
        return UnsealReport(False, 0, False)
    if status.progress:
        vault.reset_unseal()
    submitted = 0
    for share in shares:
        status = vault.submit_unseal_key(share)
        submitted += 1
        if not status.sealed:
            break
    if status.sealed:
        raise SealError(f"still sealed after {submitted} shares (threshold {status.threshold}); the stored "
                        "material does not match this server")
    vault.wait_active()
    return UnsealReport(True, submitted, False)


def unseal(vault: VaultClient, store: SealedStore, identities: Sequence[pyrage.x25519.Identity]) -> UnsealReport:
    status = vault.seal_status()
    if not status.initialized:
        raise NotInitialized(f"{vault.address}: not initialized; run `chamberlain authority init`")
    if not status.sealed:
        return UnsealReport(False, 0, False)
    material = store.load()
    if material is None or not material.shares:
        raise SealError(f"no sealed unseal material in Secret {store.ref}; was this Vault initialized by "
                        "`chamberlain authority init`?")
    return unseal_with(vault, material.open(identities)[: max(material.threshold, 1)])


# ------------------------------------------------------------------------------------------------- status


def status(vault: VaultClient, store: SealedStore) -> dict[str, Any]:
    seal: SealStatus = vault.seal_status()
    out: dict[str, Any] = {
        "address": vault.address,
        "initialized": seal.initialized,
        "sealed": seal.sealed,
        "version": seal.version,
        "storage": seal.storage,
        "threshold": seal.threshold,
        "shares": seal.shares,
    }
    if seal.initialized and not seal.sealed:
        with contextlib.suppress(AuthorityError):
            out["ha_enabled"] = vault.ha_status()["ha_enabled"]
    material = store.load()
    out["sealed_material"] = {
        "secret": store.ref,
        "exists": material is not None and bool(material.shares),
        "shares": len(material.shares) if material else 0,
        "threshold": material.threshold if material else 0,
        "generation": material.generation if material else 0,
        "rekey_pending": bool(material and material.next_shares),
        "recipients_sha256": material.recipients if material else "",
    }
    # Knowable from our own record: init writes the revocation time once it revoked the root token.
    out["root_token_revoked"] = bool(material and material.root_revoked_at) if material else None
    if material and material.root_revoked_at:
        out["root_token_revoked_at"] = material.root_revoked_at
    return out


# --------------------------------------------------------------------------------------------------- init


@dataclass
class InitPlan:
    shares: int
    threshold: int
    recipients: Sequence[str]
    recovery_dir: Path


@dataclass
class InitReport:
    initialized_now: bool = False
    unsealed_now: bool = False
    authenticated_as: str = ""
    configure_changes: int = 0
    orphan_root_tokens_revoked: int = 0
    root_revoked: bool = False
    verified_roles: list[str] = field(default_factory=list)


def sweep_root_tokens(vault: VaultClient, keep_accessor: str) -> int:
    """Revoke every root token except ``keep_accessor`` (root tokens orphaned by a crashed init)."""
    revoked = 0
    for accessor in vault.list_token_accessors():
        if accessor == keep_accessor:
            continue
        info = vault.lookup_accessor(accessor)
        if info is not None and "root" in info.policies:
            vault.revoke_accessor(accessor)
            revoked += 1
    return revoked


def initialize(
    vault: VaultClient,
    store: SealedStore,
    plan: InitPlan,
    *,
    login_configurator: Callable[[], VaultClient],
    configure: Callable[[VaultClient], int],
    verify: Callable[[], list[str]],
    recorder_for: Callable[[VaultClient], Recorder],
    clock: Clock,
    identities: Sequence[pyrage.x25519.Identity] | None = None,
) -> InitReport:
    """Bring the authority from any state to initialized, unsealed, configured, with the root token revoked.

    ``login_configurator`` logs in as the configurator role; ``configure`` converges the configuration and
    returns the number of changes; ``verify`` logs in as the orchestrator(s) and returns the roles proven;
    ``recorder_for`` binds the ledger to an authenticated client.
    """
    if not 1 <= plan.threshold <= plan.shares:
        raise UsageError(f"--threshold must be between 1 and --shares ({plan.shares}), got {plan.threshold}")
    report = InitReport()
    recipients = parse_recipients(plan.recipients)
    fingerprint = recipients_fingerprint(plan.recipients)
    recovery = recovery_file(plan.recovery_dir, vault.address)
    seal = vault.seal_status()
    material = store.load()
    keys: list[str] | None = None
    token: str | None = None
    if not seal.initialized:
        if material is not None and material.shares:
            raise SealError(f"Vault at {vault.address} is not initialized, but Secret {store.ref} holds unseal "
                            "material (of a Vault whose storage was wiped?); move that Secret away first")
        if material is None:
            # Prove the store is writable before the point of no return.
            store.save(SealedMaterial((), plan.threshold, fingerprint, pending=True, vault_address=vault.address))
        checkpoint("init.before-init")
        result = vault.initialize(plan.shares, plan.threshold)
        sealed = SealedMaterial(tuple(seal_share(k, recipients) for k in result.keys), plan.threshold,
                                fingerprint, initialized_at=rfc3339(clock.now()), vault_address=vault.address)
        keys, token = list(result.keys), result.root_token
        del result
        _write_recovery(recovery, sealed)  # ciphertext only; survives a failing Kubernetes write
        _save_with_retry(store, sealed, recovery, clock)
        recovery.unlink(missing_ok=True)
        material = store.load()
        report.initialized_now = True
        checkpoint("init.after-store")
    else:
        if material is None or not material.shares:
            recovered = _read_recovery(recovery)
            if recovered is None:
                raise SealError(f"Vault at {vault.address} is initialized but Secret {store.ref} holds no unseal "
                                "material (initialized by someone else, or the material is lost)")
            _save_with_retry(store, recovered, recovery, clock)
            recovery.unlink(missing_ok=True)
            material = store.load()
    assert material is not None
    if vault.seal_status().sealed:
        if keys is None:
            if identities is None:
                raise SealError(f"Vault at {vault.address} is sealed; pass --identity FILE (or run `chamberlain "
                                "authority unseal`) to resume")
            keys = material.open(identities)
        unseal_with(vault, keys[: material.threshold])
        report.unsealed_now = True
        checkpoint("init.after-unseal")
    else:
        vault.wait_active()

    # Authenticate: the fresh root token, else the configurator identity, else break-glass generate-root.
    actor = vault
    if token is not None:
        vault.use_token(token)
        report.authenticated_as = "root token of this init"
    else:
        try:
            actor = login_configurator()
            report.authenticated_as = "configurator (Kubernetes auth)"
        except (Forbidden, InvalidRequest, ChamberlainError) as exc:
            if identities is None:
                raise SealError("cannot log in as the configurator role yet (the first run stopped before "
                                "configuring it) — pass --identity FILE to resume with a temporary root token "
                                f"from the stored shares ({type(exc).__name__})") from None
            keys = keys or material.open(identities)
            vault.use_token(vault.generate_root(keys[: material.threshold]))
            report.authenticated_as = "temporary root token (generate-root)"
    report.configure_changes = configure(actor)
    checkpoint("init.after-configure")
    record = recorder_for(actor)
    if not material.init_recorded:
        record("authority-init", {"shares": str(len(material.shares)), "threshold": str(material.threshold),
                                  "recipients_sha256": material.recipients,
                                  "initialized_at": material.initialized_at})
        material = dataclasses.replace(material, init_recorded=True)
        store.save(material)
    report.verified_roles = verify()
    checkpoint("init.after-verify")
    if not material.root_revoked_at:
        me = actor.lookup_self()
        report.orphan_root_tokens_revoked = sweep_root_tokens(actor, me.accessor)
        checkpoint("init.after-sweep")
        if "root" in me.policies:
            actor.revoke_self()
        material = dataclasses.replace(material, root_revoked_at=rfc3339(clock.now()))
        store.save(material)
    elif actor is vault and token is None:
        actor.revoke_self()  # a break-glass token of this run: never keep it
    report.root_revoked = True
    return report


def _save_with_retry(store: SealedStore, m: SealedMaterial, recovery: Path, clock: Clock, attempts: int = 5) -> None:
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


# -------------------------------------------------------------------------------------------------- rekey


@dataclass
class RekeyReport:
    shares: int
    threshold: int
    generation: int
    resumed: bool = False
    key_term: int = 0


def _probe_shares(vault: VaultClient, keys: Sequence[str], threshold: int) -> bool:
    """Whether ``keys`` are the shares in force: start a throw-away rekey, submit them, cancel it."""
    with contextlib.suppress(AuthorityError):
        vault.cancel_rekey()
    vault.start_rekey(max(len(keys), 1), max(threshold, 1))
    nonce = vault.rekey_progress().nonce
    try:
        return any(vault.rekey_submit(key, nonce) is not None for key in keys[:threshold])
    except (InvalidRequest, AuthorityError):
        return False
    finally:
        with contextlib.suppress(AuthorityError):
            vault.cancel_rekey_verify()
        with contextlib.suppress(AuthorityError):
            vault.cancel_rekey()


def rekey(
    vault: VaultClient,
    store: SealedStore,
    identities: Sequence[pyrage.x25519.Identity],
    recipients: Sequence[str],
    *,
    login_configurator: Callable[[], VaultClient],
    recorder_for: Callable[[VaultClient], Recorder],
    shares: int | None = None,
    clock: Clock,
    threshold: int | None = None,
) -> RekeyReport:
    """New unseal shares (rekey with verification), re-encrypted to the recipients, then ``sys/rotate``.

    The new shares are stored (as ``next-share-*``) *before* they are verified; Vault keeps the old shares in
    force until verification completes, so a crash anywhere leaves one set that works and the stored material
    says which: a re-run finishes a pending verification, or probes which set is in force and promotes it.
    """
    seal = vault.seal_status()
    if not seal.initialized or seal.sealed:
        raise SealError(f"Vault at {vault.address} must be initialized and unsealed to rekey")
    material = store.load()
    if material is None or not material.shares:
        raise SealError(f"no sealed unseal material in Secret {store.ref}")
    recips = parse_recipients(recipients)
    n = shares or len(material.shares)
    t = threshold or material.threshold
    if not 1 <= t <= n:
        raise UsageError(f"--threshold must be between 1 and --shares ({n}), got {t}")
    resumed = bool(material.next_shares)
    if not material.next_shares:
        old = material.open(identities)
        with contextlib.suppress(AuthorityError):
            vault.cancel_rekey()  # an abandoned attempt of unknown origin
        vault.start_rekey(n, t)
        nonce = vault.rekey_progress().nonce
        result = None
        for key in old[: material.threshold]:
            result = vault.rekey_submit(key, nonce)
            if result is not None:
                break
        if result is None:
            raise SealError("rekey did not complete with the stored shares; they do not match this server")
        material = dataclasses.replace(material, next_shares=tuple(seal_share(k, recips) for k in result.keys),
                                       next_threshold=t)
        store.save(material)
        new_keys = list(result.keys)
        verify_nonce = result.verification_nonce
        checkpoint("rekey.after-store-next")
    else:
        new_keys = material.open(identities, next_=True)
        verify_nonce, _ = vault.rekey_verify_status()
    if verify_nonce:
        done = False
        for key in new_keys[: material.next_threshold]:
            if vault.rekey_verify(key, verify_nonce):
                done = True
                break
        if not done:
            raise SealError("rekey verification did not complete with the new shares")
        in_force = True
    else:
        # No verification pending: either it completed before a crash (new shares in force) or the attempt was
        # lost with a restart (old ones still are). Ask Vault which set works.
        in_force = _probe_shares(vault, new_keys, material.next_threshold)
    checkpoint("rekey.after-verify")
    if in_force:
        material = dataclasses.replace(material, shares=material.next_shares, threshold=material.next_threshold,
                                       next_shares=(), next_threshold=0, generation=material.generation + 1,
                                       rekeyed_at=rfc3339(clock.now()), recipients=recipients_fingerprint(recipients))
    else:
        material = dataclasses.replace(material, next_shares=(), next_threshold=0)
    store.save(material)
    if not in_force:
        raise SealError("the previous rekey did not take effect; the old shares are still in force — run rekey "
                        "again")
    admin = login_configurator()
    admin.rotate_encryption_key()
    term = int(admin.key_status()["term"])
    recorder_for(admin)("authority-rekey", {"shares": str(len(material.shares)), "threshold": str(material.threshold),
                                            "generation": str(material.generation), "key_term": str(term),
                                            "recipients_sha256": material.recipients})
    return RekeyReport(len(material.shares), material.threshold, material.generation, resumed, term)
