"""The runtime authority's seal life cycle (SPEC §3 phase 3, §6): init, unseal, rekey, status.

Init and rekey run as observe → decide → act, one step at a time: the pure deciders of
:mod:`chamberlain.authority.decide` pick the next step from the server's and the store's state (re-read before
every decision) and from what this run holds in memory; a small executor here does exactly that step, then the
loop observes again. Crash checkpoints (``init.*``, ``rekey.*``) sit after the steps that change something, so a
test can kill the process there and prove the next run converges.

Crash safety of init — the one step with no way back is "the server returned the shares, nothing stored them yet":
before ``sys/init`` the Secret is proven writable (a ``pending`` placeholder); right after, the encrypted shares go
to a local 0600 recovery file (ciphertext only), then to the Secret, and the recovery file is removed. Every later
step is resumable: a re-run unseals (with ``--identity``) if needed, authenticates as the configurator role or —
if the first run died before that role existed — with a temporary root token from the stored shares
(``sys/generate-root``), configures, records, verifies the orchestrator login, sweeps root tokens orphaned by the
crash and revokes its own. The root token is never written anywhere.

Custody (SPEC §6): with custodians declared, each share is sealed to one custodian (:class:`ShareCustody`), so
:func:`unseal` submits only the shares the identities given open and keeps the server's progress (custodians
unseal in turn), while generate-root and rekey need the threshold of shares in one run (k custodians' identities).

Auto-unseal (the Platform's ``authority.seal`` is not ``shamir``): the server unseals itself through its seal at
every start, so ``sys/init`` issues *recovery keys* instead of unseal shares. They are sealed to the custodians (or
the root recipients) and stored exactly like unseal shares, and serve where the shares would — generate-root (the
break-glass of a resumed init) and their own rekey — but never unseal. :func:`unseal` has nothing to do there, and
an auto-unsealed server that is sealed cannot reach its seal: no key of ours helps, the message says so.

Where the material lives and how it is sealed: :mod:`chamberlain.authority.material` (re-exported here).
Boundary: the server through :class:`~chamberlain.authority.vault.VaultClient`; Kubernetes through the structural
:class:`~chamberlain.authority.material.SecretAPI`; the ledger through an injected :data:`Recorder`. Time comes
from an injected clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyrage

from chamberlain.authority.decide import (
    InForce,
    InitObserved,
    InitStep,
    Layout,
    Material,
    RekeyObserved,
    RekeyStep,
    Session,
    next_init_step,
    next_rekey_step,
    share_layout,
)
from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable, NotInitialized, Unsupported
from chamberlain.authority.material import (
    LABELS,
    SECRET_NAME,
    SealedMaterial,
    SealedStore,
    SealError,
    SecretAPI,
    ShareCustody,
    load_identities,
    open_share,
    parse_recipients,
    read_recovery,
    recipients_fingerprint,
    recovery_file,
    save_with_retry,
    seal_share,
    write_recovery,
)
from chamberlain.authority.model import SealStatus
from chamberlain.authority.vault import VaultClient
from chamberlain.authority.vault.seal import Seal
from chamberlain.clock import Clock, rfc3339
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.faults import checkpoint

AuthorityEvent = Literal["authority-init", "authority-configure", "authority-rekey", "authority-unseal",
                         "authority-restore"]
Recorder = Callable[[AuthorityEvent, Mapping[str, str]], None]
"""Appends a ledger entry (the caller binds the ledger, actor and run); details never carry values."""

MAX_STEPS = 24  # an init takes at most 13 steps, a rekey 5; the bound only stops a decider that would loop


# ------------------------------------------------------------------------------------------------ unseal


@dataclass
class UnsealReport:
    was_sealed: bool
    submitted: int
    sealed: bool
    progress: int = 0  # the server's unseal progress after this run (0 once unsealed)
    threshold: int = 0
    custodians: list[str] = field(default_factory=list)  # whose shares this run submitted (custody only)
    auto_unseal: str = ""  # the server's auto-unseal seal (transit, awskms...): nothing for chamberlain to do


def seal_unreachable(address: str, seal_type: str) -> str:
    """Why an auto-unsealed server is sealed, and what to do (a message; names no value)."""
    return (f"{address}: sealed, and it unseals itself through its {seal_type} seal — so it cannot reach that seal "
            "(the unsealer or KMS is down, unreachable, or refuses its credentials). Recovery keys cannot unseal: "
            "restore access to the seal, then restart the server; its log names the seal error")


def auto_unseal_report(vault: VaultClient) -> UnsealReport | None:
    """With an auto-unseal seal, the unseal report (nothing to do) or :class:`SealError` when the server is sealed
    all the same; None for a Shamir seal (shares are needed)."""
    status = vault.seal.status()
    if not status.auto_unseal:
        return None
    if not status.initialized:
        raise NotInitialized(f"{vault.address}: not initialized; run `chamberlain authority init`")
    if status.sealed:
        raise SealError(seal_unreachable(vault.address, status.seal_type))
    return UnsealReport(False, 0, False, threshold=status.threshold, auto_unseal=status.seal_type)


def unseal_with(vault: VaultClient, shares: Sequence[str], *, reset: bool = True,
                partial: bool = False, wait: bool = True) -> UnsealReport:
    """Submit shares until unsealed; a no-op on an unsealed server.

    ``reset``: partial progress of unknown origin is reset first (someone else's wrong share would make our correct
    ones fail) — right when this run holds the threshold, wrong under custody, where the progress is the other
    custodians' shares. ``partial``: still sealed afterwards is a report (more custodians to come), not an error."""
    status = vault.seal.status()
    if not status.initialized:
        raise NotInitialized(f"{vault.address}: not initialized; run `chamberlain authority init`")
    if not status.sealed:
        return UnsealReport(False, 0, False, threshold=status.threshold)
    if status.progress and reset:
        vault.seal.reset_unseal()
    submitted = 0
    for share in shares:
        status = vault.seal.submit_unseal_key(share)
        submitted += 1
        if not status.sealed:
            break
    if status.sealed and status.threshold and submitted >= status.threshold and not status.progress:
        # A raft node that joins the cluster takes the shares, then stays sealed until its join completes (it
        # fetches the keyring from the leader): wait for that rather than call the shares wrong.
        status = _wait_unsealed(vault, status)
    if status.sealed:
        if partial:
            return UnsealReport(True, submitted, True, status.progress, status.threshold)
        raise SealError(f"still sealed after {submitted} shares (threshold {status.threshold}); the stored "
                        "material does not match this server")
    if wait:  # a raft node of several becomes a standby, or waits for a quorum: the caller waits for the cluster
        vault.seal.wait_active()
    return UnsealReport(True, submitted, False, 0, status.threshold)


def unseal(vault: VaultClient, store: SealedStore, identities: Sequence[pyrage.x25519.Identity], *,
           reset: bool = False, wait: bool = True) -> UnsealReport:
    """Unseal with the stored shares the identities open. Without custody one root identity opens them all and
    the threshold is submitted at once. With custody only this custodian's share(s) are submitted, on top of the
    progress the other custodians left (``reset`` discards that progress first); the report says how far it is.
    With an auto-unseal seal there is nothing to submit (see :func:`auto_unseal_report`)."""
    auto = auto_unseal_report(vault)
    if auto is not None:
        return auto
    status = vault.seal.status()
    if not status.initialized:
        raise NotInitialized(f"{vault.address}: not initialized; run `chamberlain authority init`")
    if not status.sealed:
        return UnsealReport(False, 0, False, threshold=status.threshold)
    material = store.load()
    if material is None or not material.shares:
        raise SealError(f"no sealed unseal material in Secret {store.ref}; was this Vault initialized by "
                        "`chamberlain authority init`?")
    return unseal_from(vault, material, f"Secret {store.ref}", identities, reset=reset, wait=wait)


def unseal_from(vault: VaultClient, material: SealedMaterial, source: str,
                identities: Sequence[pyrage.x25519.Identity], *, reset: bool = False,
                wait: bool = True) -> UnsealReport:
    """:func:`unseal` with material read elsewhere (``source`` names it in errors): the repository's export or a
    backup, when the Secret is gone."""
    status = vault.seal.status()
    if not status.initialized:
        raise NotInitialized(f"{vault.address}: not initialized; run `chamberlain authority init`")
    if not status.sealed:
        return UnsealReport(False, 0, False, threshold=status.threshold)
    if not material.holders:
        return unseal_with(vault, material.open(identities)[: max(material.threshold, 1)], wait=wait)
    opened = material.open_held(identities)
    if not opened:
        raise SealError(f"the identities given open none of the unseal shares in {source} (held by "
                        f"{', '.join(material.holders)}); each custodian passes their own identity")
    report = unseal_with(vault, [k for _, k in opened], reset=reset, partial=True, wait=wait)
    report.custodians = [material.holder(i) for i, _ in opened][: report.submitted]
    return report


@dataclass
class NodeUnseal:
    """One node of an HA authority after :func:`unseal_nodes`: its report, or why it was skipped."""

    address: str
    report: UnsealReport | None = None
    skipped: str = ""  # "unreachable", "not joined": nothing was submitted there


def unseal_nodes(nodes: Sequence[VaultClient], store: SealedStore, identities: Sequence[pyrage.x25519.Identity],
                 *, reset: bool = False, join_timeout: float = 20.0, active_timeout: float = 60.0) -> list[NodeUnseal]:
    """Unseal every raft node with the same shares (Shamir: each node's keyring needs them), in the order given
    (the node that founded the cluster first: the others join it once it is unsealed).

    No node is waited for on its own: after a full restart no single node has a quorum. A node not yet joined
    (uninitialized while another is initialized: its ``retry_join`` is still at work) is given ``join_timeout``;
    an unreachable node is skipped, so a lost node does not keep the others sealed. Then one active node is
    waited for, unless some node still waits for other custodians' shares."""
    results: list[NodeUnseal] = []
    for vault in nodes:
        try:
            status = vault.seal.status()
        except AuthorityError:
            results.append(NodeUnseal(vault.address, skipped="unreachable"))
            continue
        joining = not status.initialized and any(r.report is not None for r in results)
        if joining and not _wait_initialized(vault, join_timeout):
            results.append(NodeUnseal(vault.address, skipped="not joined"))
            continue
        results.append(NodeUnseal(vault.address, unseal(vault, store, identities, reset=reset, wait=False)))
    reports = [r.report for r in results if r.report is not None]
    if not reports:
        raise AuthorityError("no authority node answered: " + ", ".join(f"{r.address} ({r.skipped})" for r in results))
    if not any(r.sealed for r in reports):
        _wait_any_active([n for n, r in zip(nodes, results, strict=True) if r.report is not None], active_timeout)
    return results


def _wait_unsealed(vault: VaultClient, status: SealStatus, timeout: float = 30.0) -> SealStatus:
    clock = vault.clock
    deadline = clock.monotonic() + timeout
    while status.sealed and not status.progress and clock.monotonic() < deadline:
        clock.sleep(0.3)
        with contextlib.suppress(AuthorityError):
            status = vault.seal.status()
    return status


def _wait_initialized(vault: VaultClient, timeout: float) -> bool:
    clock = vault.clock
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline:
        with contextlib.suppress(AuthorityError):
            if vault.seal.status().initialized:
                return True
        clock.sleep(0.5)
    return False


def _wait_any_active(nodes: Sequence[VaultClient], timeout: float) -> None:
    clock = nodes[0].clock
    deadline = clock.monotonic() + timeout
    while True:
        for vault in nodes:
            with contextlib.suppress(AuthorityError):
                if vault.seal.health().active:
                    return
        if clock.monotonic() > deadline:
            raise AuthorityUnavailable(f"no node became active {timeout:.0f}s after unseal (a raft quorum needs "
                                       "a majority of the nodes unsealed)")
        clock.sleep(0.5)


# ------------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class MaterialStatus:
    secret: str
    exists: bool
    shares: int = 0
    threshold: int = 0
    generation: int = 0
    rekey_pending: bool = False
    recipients_sha256: str = ""
    custodians: list[str] = field(default_factory=list)  # holder of each share, in order (custody only)
    matches_platform: bool | None = None  # sealed to what the Platform declares now (None: not compared)
    recovery_keys: bool = False  # the shares are the recovery keys of an auto-unsealed server


@dataclass(frozen=True)
class AuthorityStatus:
    """Where the authority stands. ``root_token_revoked`` is known from our own record only (None: no record)."""

    address: str
    initialized: bool
    sealed: bool
    version: str
    storage: str
    threshold: int
    shares: int
    flavor: str
    material: MaterialStatus
    ha_enabled: bool | None = None
    root_token_revoked: bool | None = None
    root_token_revoked_at: str = ""
    seal_type: str = "shamir"  # the server's seal
    declared_seal: str = ""  # the Platform's authority.seal.type ("": not compared)

    @property
    def ready(self) -> bool:
        return self.initialized and not self.sealed

    @property
    def auto_unseal(self) -> bool:
        return self.seal_type not in ("", "shamir")

    @property
    def seal_matches_platform(self) -> bool | None:
        return None if not self.declared_seal else self.declared_seal == self.seal_type

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": self.address, "initialized": self.initialized, "sealed": self.sealed,
            "version": self.version, "flavor": self.flavor, "storage": self.storage, "threshold": self.threshold,
            "shares": self.shares, "sealed_material": dataclasses.asdict(self.material),
            "root_token_revoked": self.root_token_revoked,
            "seal": {"type": self.seal_type, "auto_unseal": self.auto_unseal,
                     **({"declared": self.declared_seal} if self.declared_seal else {})},
        }
        if self.ha_enabled is not None:
            out["ha_enabled"] = self.ha_enabled
        if self.root_token_revoked_at:
            out["root_token_revoked_at"] = self.root_token_revoked_at
        return out


def status(vault: VaultClient, store: SealedStore, expected: ShareCustody | None = None,
           declared_seal: str = "") -> AuthorityStatus:
    """Where the authority stands; with ``expected``, whether the stored shares are sealed as the Platform now
    declares (a changed custodian list says: rekey); with ``declared_seal``, whether the server's seal is the
    Platform's."""
    seal = vault.seal.status()
    ha: bool | None = None
    if seal.initialized and not seal.sealed:
        with contextlib.suppress(AuthorityError):
            ha = vault.seal.leader().ha_enabled
    m = store.load()
    material = MaterialStatus(store.ref, False) if m is None else MaterialStatus(
        store.ref, bool(m.shares), len(m.shares), m.threshold, m.generation, bool(m.next_shares), m.recipients,
        list(m.holders), None if expected is None or not m.shares else m.recipients == expected.fingerprint,
        m.recovery_keys)
    return AuthorityStatus(
        address=vault.address, initialized=seal.initialized, sealed=seal.sealed, version=seal.version,
        storage=seal.storage, threshold=seal.threshold, shares=seal.shares, flavor=str(seal.flavor),
        material=material, ha_enabled=ha, root_token_revoked=None if m is None else bool(m.root_revoked_at),
        root_token_revoked_at=m.root_revoked_at if m else "", seal_type=seal.seal_type,
        declared_seal=declared_seal,
    )


# --------------------------------------------------------------------------------------------------- init


@dataclass
class InitPlan:
    shares: int
    threshold: int
    recipients: Sequence[str]  # the root recipients (every share to each of them when no custodians)
    recovery_dir: Path
    custodians: Sequence[tuple[str, str]] = ()  # (name, age recipient): one share each, ``shares`` == their count
    seal: str = "shamir"  # the Platform's authority.seal.type: another means recovery keys instead of shares

    @property
    def auto_unseal(self) -> bool:
        return self.seal not in ("", "shamir")

    @property
    def custody(self) -> ShareCustody:
        return ShareCustody(tuple(self.recipients), tuple(self.custodians),
                            self.threshold if self.custodians else 0)


@dataclass
class InitReport:
    initialized_now: bool = False
    unsealed_now: bool = False
    authenticated_as: str = ""
    configure_changes: int = 0
    orphan_root_tokens_revoked: int = 0
    root_revoked: bool = False
    verified_roles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InitHooks:
    """What init calls out to: the configurator login, configuration, the orchestrator login check, the ledger."""

    login_configurator: Callable[[], VaultClient]
    configure: Callable[[VaultClient], int]
    verify: Callable[[], list[str]]
    recorder_for: Callable[[VaultClient], Recorder]


def sweep_root_tokens(vault: VaultClient, keep_accessor: str) -> int:
    """Revoke every root token except ``keep_accessor`` (root tokens orphaned by a crashed init)."""
    revoked = 0
    for accessor in vault.auth.list_accessors():
        if accessor == keep_accessor:
            continue
        info = vault.auth.lookup_accessor(accessor)
        if info is not None and "root" in info.policies:
            vault.auth.revoke_accessor(accessor)
            revoked += 1
    return revoked


def _material_state(m: SealedMaterial | None) -> Material:
    if m is None:
        return Material.ABSENT
    return Material.STORED if m.shares else Material.PENDING


class _InitRun:
    """One run of init: what it holds in memory, how it observes, and one method per step."""

    def __init__(self, vault: VaultClient, store: SealedStore, plan: InitPlan, hooks: InitHooks, clock: Clock,
                 identities: Sequence[pyrage.x25519.Identity] | None) -> None:
        self.vault, self.store, self.plan, self.hooks, self.clock = vault, store, plan, hooks, clock
        self.identities = identities
        self.custody = plan.custody
        self.custody.check()
        self.fingerprint = self.custody.fingerprint
        self.recovery = recovery_file(plan.recovery_dir, vault.address)
        self.report = InitReport()
        self.material: SealedMaterial | None = None
        self.keys: list[str] | None = None  # plaintext shares: memory only
        self.root: str | None = None  # this init's root token: memory only
        self.session = Session.NONE
        self.actor = vault
        self.login_refused = self.active = self.configured = self.verified = False
        self.generate_root_refused = False
        self.login_error = ""
        self._opened: tuple[tuple[str, ...], int] = ((), 0)  # (stored ciphertexts, how many the identities open)

    def opens(self) -> int:
        """How many stored shares the identities given open (cached per stored set)."""
        m = self.material
        if m is None or not m.shares or self.identities is None:
            return 0
        if self._opened[0] != m.shares:
            self._opened = (m.shares, len(m.open_held(self.identities)))
        return self._opened[1]

    def shortfall(self) -> str:
        m = self.material
        if self.identities is None or m is None or not m.shares or self.opens() >= max(m.threshold, 1):
            return ""
        return f"the identities given open {self.opens()} of the {m.threshold} shares needed"

    def observe(self) -> InitObserved:
        seal = self.vault.seal.status()
        self.material = self.store.load()
        m = self.material
        enough = m is not None and self.identities is not None and self.opens() >= max(m.threshold, 1)
        return InitObserved(
            initialized=seal.initialized, sealed=seal.sealed, material=_material_state(m),
            recovery_file=self.recovery.exists(), holds_shares=self.keys is not None,
            can_open=enough, identities_short=bool(self.shortfall()),
            holds_root=self.root is not None, session=self.session,
            login_refused=self.login_refused, active=self.active and not seal.sealed, configured=self.configured,
            init_recorded=bool(m and m.init_recorded), verified=self.verified,
            root_revoked=bool(m and m.root_revoked_at), generate_root_refused=self.generate_root_refused,
            auto_unseal=seal.auto_unseal,
        )

    def act(self, step: InitStep) -> None:
        actions: dict[InitStep, Callable[[], None]] = {
            InitStep.PREPARE_STORE: self._prepare_store, InitStep.INITIALIZE: self._initialize,
            InitStep.UPLOAD_RECOVERY: self._upload_recovery, InitStep.UNSEAL: self._unseal,
            InitStep.WAIT_ACTIVE: self._wait_active, InitStep.USE_ROOT: self._use_root, InitStep.LOGIN: self._login,
            InitStep.GENERATE_ROOT: self._generate_root, InitStep.CONFIGURE: self._configure,
            InitStep.RECORD: self._record, InitStep.VERIFY: self._verify, InitStep.SWEEP: self._sweep,
            InitStep.DROP: self._drop,
        }
        actions[step]()

    def _shares(self) -> list[str]:
        if self.keys is None:
            if self.material is None or self.identities is None:
                raise SealError("the shares are needed but no --identity was given")
            self.keys = [k for _, k in self.material.open_held(self.identities)]
        threshold = self.material.threshold if self.material else len(self.keys)
        return self.keys[: max(threshold, 1)]

    def _prepare_store(self) -> None:
        self.store.save(SealedMaterial((), self.plan.threshold, self.fingerprint, pending=True,
                                       vault_address=self.vault.address, holders=self.custody.holders,
                                       seal_type=self.plan.seal))

    def _initialize(self) -> None:
        checkpoint("init.before-init")
        if self.plan.auto_unseal:  # recovery keys, sealed and stored like shares; the server unseals itself
            result = self.vault.seal.initialize(self.plan.shares, self.plan.threshold, recovery=True)
        else:
            result = self.vault.seal.initialize(self.plan.shares, self.plan.threshold)
        sealed = SealedMaterial(self.custody.seal(result.keys), self.plan.threshold,
                                self.fingerprint, initialized_at=rfc3339(self.clock.now()),
                                vault_address=self.vault.address, holders=self.custody.holders,
                                seal_type=self.plan.seal)
        self.keys, self.root = list(result.keys), result.root_token
        del result
        write_recovery(self.recovery, sealed)  # ciphertext only; survives a failing Kubernetes write
        save_with_retry(self.store, sealed, self.recovery, self.clock)
        self.recovery.unlink(missing_ok=True)
        self.report.initialized_now = True
        checkpoint("init.after-store")

    def _upload_recovery(self) -> None:
        recovered = read_recovery(self.recovery)
        if recovered is None:
            raise SealError(f"{self.recovery}: the recovery file cannot be read; Vault at {self.vault.address} is "
                            f"initialized but Secret {self.store.ref} holds no unseal material")
        save_with_retry(self.store, recovered, self.recovery, self.clock)
        self.recovery.unlink(missing_ok=True)

    def _unseal(self) -> None:
        unseal_with(self.vault, self._shares())
        self.report.unsealed_now = self.active = True
        checkpoint("init.after-unseal")

    def _wait_active(self) -> None:
        try:
            self.vault.seal.wait_active()
        except AuthorityError:
            if self.plan.auto_unseal:
                raise SealError(seal_unreachable(self.vault.address, self.plan.seal)) from None
            raise
        self.active = True

    def _use_root(self) -> None:
        if self.root is None:
            raise SealError("no root token of this run to use")
        self.vault.use_token(self.root)
        self.root, self.session = None, Session.INIT_ROOT
        self.report.authenticated_as = "root token of this init"

    def _login(self) -> None:
        try:
            self.actor = self.hooks.login_configurator()
        except ChamberlainError as exc:
            self.login_refused = True  # the role may not exist yet: the decider chooses break-glass or stops
            self.login_error = type(exc).__name__
            return
        self.session = Session.CONFIGURATOR
        self.report.authenticated_as = "configurator (Kubernetes auth)"

    def _generate_root(self) -> None:
        try:
            root = self.vault.seal.generate_root(self._shares())
        except Unsupported:
            self.generate_root_refused = True  # the decider stops with what the operator can do
            return
        self.vault.use_token(root.token)
        self.actor, self.session = self.vault, Session.BREAK_GLASS
        self.report.authenticated_as = "temporary root token (generate-root)"

    def _configure(self) -> None:
        self.report.configure_changes = self.hooks.configure(self.actor)
        self.configured = True
        checkpoint("init.after-configure")

    def _record(self) -> None:
        m = self._stored()
        self.hooks.recorder_for(self.actor)("authority-init", {
            "shares": str(len(m.shares)), "threshold": str(m.threshold), "recipients_sha256": m.recipients,
            "initialized_at": m.initialized_at, "custodians": ",".join(m.holders)})
        self.store.save(dataclasses.replace(m, init_recorded=True))

    def _verify(self) -> None:
        self.report.verified_roles = self.hooks.verify()
        self.verified = True
        checkpoint("init.after-verify")

    def _sweep(self) -> None:
        me = self.actor.auth.lookup_self()
        self.report.orphan_root_tokens_revoked = sweep_root_tokens(self.actor, me.accessor)
        checkpoint("init.after-sweep")
        if "root" in me.policies:
            self.actor.auth.revoke_self()
            self.session = Session.DROPPED
        self.store.save(dataclasses.replace(self._stored(), root_revoked_at=rfc3339(self.clock.now())))

    def _drop(self) -> None:
        self.actor.auth.revoke_self()  # a break-glass token of this run: never keep it
        self.session = Session.DROPPED

    def _stored(self) -> SealedMaterial:
        if self.material is None:
            raise SealError(f"Secret {self.store.ref} vanished during init")
        return self.material


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
    if plan.custodians and plan.shares != len(plan.custodians):
        raise UsageError(f"{plan.shares} shares for {len(plan.custodians)} custodians: each holds exactly one")
    found = vault.seal.status()
    if found.auto_unseal != plan.auto_unseal:
        raise SealError(f"the Platform declares authority.seal {plan.seal!r} but the authority at {vault.address} "
                        f"runs the {found.seal_type} seal: declare the server's seal in the Platform (or configure "
                        "the server's seal stanza) before init. Nothing was changed")
    run = _InitRun(vault, store, plan, InitHooks(login_configurator, configure, verify, recorder_for), clock,
                   identities)
    for _ in range(MAX_STEPS):
        decision = next_init_step(run.observe())
        if decision.step is InitStep.DONE:
            run.report.root_revoked = True
            return run.report
        if decision.step is InitStep.BLOCKED:
            causes = [f"login: {run.login_error}" if run.login_error else "", run.shortfall()]
            cause = "".join(f" ({c})" for c in causes if c)
            raise SealError(f"Vault at {vault.address} (Secret {store.ref}): {decision.why}{cause}")
        run.act(decision.step)
    raise SealError(f"init did not finish within {MAX_STEPS} steps; re-run it")


# -------------------------------------------------------------------------------------------------- rekey


@dataclass
class RekeyReport:
    shares: int
    threshold: int
    generation: int
    resumed: bool = False
    key_term: int = 0
    recovery_keys: bool = False  # the recovery keys of an auto-unsealed server were rekeyed


def _probe_shares(seal: Seal, keys: Sequence[str], threshold: int) -> bool:
    """Whether ``keys`` are the shares in force: start a throw-away rekey, submit them, cancel it."""
    with contextlib.suppress(AuthorityError):
        seal.cancel_rekey()
    seal.start_rekey(max(len(keys), 1), max(threshold, 1))
    nonce = seal.rekey_progress().nonce
    try:
        return any(seal.rekey_submit(key, nonce) is not None for key in keys[:threshold])
    except AuthorityError:
        return False
    finally:
        with contextlib.suppress(AuthorityError):
            seal.cancel_rekey_verify()
        with contextlib.suppress(AuthorityError):
            seal.cancel_rekey()


class _RekeyRun:
    """One run of rekey: what it holds in memory, how it observes, and one method per step."""

    def __init__(self, vault: VaultClient, store: SealedStore, identities: Sequence[pyrage.x25519.Identity],
                 custody: ShareCustody, login_configurator: Callable[[], VaultClient],
                 recorder_for: Callable[[VaultClient], Recorder], clock: Clock, *, recovery: bool = False) -> None:
        self.vault, self.store, self.identities, self.custody = vault, store, identities, custody
        self.recovery = recovery  # the recovery keys of an auto-unsealed server, not unseal shares
        self.login_configurator, self.recorder_for, self.clock = login_configurator, recorder_for, clock
        self.material: SealedMaterial | None = None
        self.new_keys: list[str] | None = None  # plaintext shares: memory only
        self.in_force = InForce.UNKNOWN
        self.rotated = self.recorded = self.abandoned = False
        self.shares = self.threshold = self.key_term = 0
        self.resumed: bool | None = None
        self.admin: VaultClient | None = None
        self.reason = ""  # why, for the ledger entry (a playbook's)

    def observe(self) -> RekeyObserved:
        seal = self.vault.seal.status()
        ready = seal.initialized and not seal.sealed
        self.material = self.store.load() if ready else None
        m = self.material
        next_stored = bool(m and m.next_shares)
        if self.resumed is None and m is not None:
            self.resumed = next_stored
        pending = next_stored and self.in_force is InForce.UNKNOWN and self.keys.rekey_verification().pending
        return RekeyObserved(ready=ready, material=bool(m and m.shares), next_stored=next_stored,
                             verification_pending=pending, in_force=self.in_force, rotated=self.rotated,
                             recorded=self.recorded, abandoned=self.abandoned)

    def settle(self, shares: int | None, threshold: int | None, first: RekeyStep) -> None:
        """The share count and threshold of the new set (the custodians' when declared, else the flags, default
        unchanged) and the quorum of old shares, all checked before anything changes."""
        m = self._stored()
        self.custody.check()
        c = self.custody
        layout = share_layout(Layout(len(c.custodians), c.threshold) if c.declared else None, shares, threshold,
                              Layout(len(m.shares), m.threshold))
        self.shares, self.threshold = layout.shares, layout.threshold
        if first is RekeyStep.START:
            self._old_keys()  # k custodians present, or refuse now

    def _old_keys(self) -> list[str]:
        m = self._stored()
        opened = m.open_held(self.identities)
        if len(opened) < max(m.threshold, 1):
            who = f" (held by {', '.join(m.holders)})" if m.holders else ""
            raise SealError(f"rekey needs {m.threshold} shares of the set in force{who}; the identities given open "
                            f"{len(opened)}: pass --identity once per custodian, {m.threshold} custodians in one "
                            "run. Nothing was changed")
        return [k for _, k in opened]

    def act(self, step: RekeyStep) -> None:
        actions: dict[RekeyStep, Callable[[], None]] = {
            RekeyStep.START: self._start, RekeyStep.VERIFY: self._verify, RekeyStep.PROBE: self._probe,
            RekeyStep.PROMOTE: self._promote, RekeyStep.ABANDON: self._abandon, RekeyStep.ROTATE: self._rotate,
            RekeyStep.RECORD: self._record,
        }
        actions[step]()

    def _stored(self) -> SealedMaterial:
        if self.material is None:
            raise SealError(f"no sealed unseal material in Secret {self.store.ref}")
        return self.material

    def _configurator(self) -> VaultClient:
        if self.admin is None:
            self.admin = self.login_configurator()
        return self.admin

    @property
    def sealer(self) -> VaultClient:
        """Who calls the rekey endpoints: nobody in particular where they need no token (Vault), the configurator
        where they do (OpenBao). The old shares are what authorizes a rekey either way."""
        return self._configurator() if self._area(self.vault).rekey_needs_token else self.vault

    def _area(self, client: VaultClient) -> Seal:
        return client.recovery if self.recovery else client.seal

    @property
    def keys(self) -> Seal:
        """The rekey endpoints of the unseal shares or of the recovery keys, called as :attr:`sealer`."""
        return self._area(self.sealer)

    def _next_keys(self) -> list[str]:
        if self.new_keys is None:
            m = self._stored()
            opened = m.open_held(self.identities, next_=True)
            if len(opened) < max(m.next_threshold, 1):
                raise SealError(f"a rekey stopped before its new shares were verified; that takes "
                                f"{m.next_threshold} of the new shares and the identities given open {len(opened)}: "
                                "re-run with the identities of that many custodians of the new set")
            self.new_keys = [k for _, k in opened]
        return self.new_keys

    def _start(self) -> None:
        m = self._stored()
        old = self._old_keys()
        seal = self.keys
        with contextlib.suppress(AuthorityError):
            seal.cancel_rekey()  # an abandoned attempt of unknown origin
        seal.start_rekey(self.shares, self.threshold)
        nonce = seal.rekey_progress().nonce
        result = None
        for key in old[: m.threshold]:
            result = seal.rekey_submit(key, nonce)
            if result is not None:
                break
        if result is None:
            raise SealError("rekey did not complete with the stored shares; they do not match this server")
        self.store.save(dataclasses.replace(m, next_shares=self.custody.seal(result.keys),
                                            next_threshold=self.threshold, next_holders=self.custody.holders))
        self.new_keys = list(result.keys)
        checkpoint("rekey.after-store-next")

    def _verify(self) -> None:
        seal = self.keys
        nonce = seal.rekey_verification().nonce
        keys = self._next_keys()[: self._stored().next_threshold]
        if not any(seal.rekey_verify(key, nonce) for key in keys):
            raise SealError("rekey verification did not complete with the new shares")
        self.in_force = InForce.NEW
        checkpoint("rekey.after-verify")

    def _probe(self) -> None:
        # No verification pending: either it completed before a crash (new shares in force) or the attempt was
        # lost with a restart (old ones still are). Ask the server which set works.
        new = _probe_shares(self.keys, self._next_keys(), self._stored().next_threshold)
        self.in_force = InForce.NEW if new else InForce.OLD
        checkpoint("rekey.after-verify")

    def _promote(self) -> None:
        m = self._stored()
        self.store.save(dataclasses.replace(
            m, shares=m.next_shares, threshold=m.next_threshold, next_shares=(), next_threshold=0,
            generation=m.generation + 1, rekeyed_at=rfc3339(self.clock.now()),
            recipients=self.custody.fingerprint, holders=m.next_holders, next_holders=()))

    def _abandon(self) -> None:
        self.store.save(dataclasses.replace(self._stored(), next_shares=(), next_threshold=0, next_holders=()))
        self.abandoned = True

    def _rotate(self) -> None:
        admin = self._configurator()
        admin.seal.rotate_encryption_key()
        self.key_term = admin.seal.key_status().term
        self.rotated = True

    def _record(self) -> None:
        m = self._stored()
        self.recorder_for(self._configurator())("authority-rekey", {
            "shares": str(len(m.shares)), "threshold": str(m.threshold), "generation": str(m.generation),
            "key_term": str(self.key_term), "recipients_sha256": m.recipients, "custodians": ",".join(m.holders),
            "keys": "recovery" if self.recovery else "unseal", **({"reason": self.reason} if self.reason else {})})
        self.recorded = True

    def report(self) -> RekeyReport:
        m = self._stored()
        return RekeyReport(len(m.shares), m.threshold, m.generation, bool(self.resumed), self.key_term,
                           self.recovery)


def rekey(
    vault: VaultClient,
    store: SealedStore,
    identities: Sequence[pyrage.x25519.Identity],
    recipients: Sequence[str] | ShareCustody,
    *,
    login_configurator: Callable[[], VaultClient],
    recorder_for: Callable[[VaultClient], Recorder],
    shares: int | None = None,
    clock: Clock,
    threshold: int | None = None,
    reason: str = "",
) -> RekeyReport:
    """New unseal shares (rekey with verification), re-encrypted to the recipients, then ``sys/rotate``. With an
    auto-unseal seal, the same for its recovery keys (their own rekey endpoints; k recovery keys authorize it).

    ``recipients``: the root recipients (every share to each), or a :class:`ShareCustody` — with custodians, one
    new share per custodian of the list given (a changed list in the Platform: rekey to it), the old shares
    opened with k custodians' identities.

    The new shares are stored (as ``next-share-*``) *before* they are verified; the server keeps the old shares in
    force until verification completes, so a crash anywhere leaves one set that works and the stored material
    says which: a re-run finishes a pending verification, or probes which set is in force and promotes it.
    """
    custody = recipients if isinstance(recipients, ShareCustody) else ShareCustody(tuple(recipients))
    found = vault.seal.status()
    stored = store.load()
    if found.initialized and stored is not None and stored.shares and stored.recovery_keys != found.auto_unseal:
        what = "recovery keys" if stored.recovery_keys else "unseal shares"
        raise SealError(f"Secret {store.ref} holds {what}, but the authority at {vault.address} runs the "
                        f"{found.seal_type} seal: its keys are not those; nothing was changed")
    run = _RekeyRun(vault, store, identities, custody, login_configurator, recorder_for, clock,
                    recovery=found.auto_unseal)
    run.reason = reason
    settled = False
    for _ in range(MAX_STEPS):
        decision = next_rekey_step(run.observe())
        if decision.step is RekeyStep.DONE:
            return run.report()
        if decision.step is RekeyStep.BLOCKED:
            raise SealError(f"Vault at {vault.address} (Secret {store.ref}): {decision.why}")
        if not settled:
            run.settle(shares, threshold, decision.step)
            settled = True
        run.act(decision.step)
    raise SealError(f"rekey did not finish within {MAX_STEPS} steps; re-run it")


__all__ = [
    "LABELS",
    "SECRET_NAME",
    "AuthorityEvent",
    "AuthorityStatus",
    "InitHooks",
    "InitPlan",
    "InitReport",
    "MaterialStatus",
    "NodeUnseal",
    "Recorder",
    "RekeyReport",
    "SealError",
    "SealedMaterial",
    "SealedStore",
    "SecretAPI",
    "ShareCustody",
    "UnsealReport",
    "auto_unseal_report",
    "initialize",
    "load_identities",
    "open_share",
    "parse_recipients",
    "recipients_fingerprint",
    "rekey",
    "seal_share",
    "seal_unreachable",
    "status",
    "sweep_root_tokens",
    "unseal",
    "unseal_from",
    "unseal_nodes",
    "unseal_with",
]
