"""The authority life-cycle decisions: given what is observed now, which single step of ``authority init`` or
``authority rekey`` comes next (pure, no I/O).

Init takes the server from any state to initialized, unsealed, configured and root-token-free:

===============  ===========================================================================================
prepare-store    write the ``pending`` placeholder Secret: proves the store is writable before the point of no
                 return
initialize       ``sys/init``; the shares sealed to the root of trust, kept in a local recovery file (ciphertext)
                 until they are stored in the Secret
upload-recovery  a previous run's recovery file into the Secret (its Kubernetes write had failed)
unseal           submit the shares (held from init, or opened from the Secret with the identity)
wait-active      an unsealed server that has not yet confirmed it is active (raft elects itself)
use-root         authenticate with this run's init root token
login            authenticate as the configurator role (Kubernetes auth)
generate-root    break-glass: a temporary root token from the shares, when the configurator cannot log in yet
configure        converge the configuration
record           the ``authority-init`` ledger entry, once
verify           prove the orchestrator login
sweep            revoke root tokens orphaned by a crash, then our own root token; note the revocation
drop             revoke this run's break-glass root token (root was revoked by an earlier run)
===============  ===========================================================================================

Rekey issues new unseal shares with verification, so at every instant one set works and the stored material says
which: ``start`` (new shares stored as ``next-share-*``), ``verify`` (or ``probe`` after a restart lost the
verification), ``promote`` (or ``abandon``), ``rotate`` (``sys/rotate``), ``record``.

``blocked`` stops with a message that says what to do; ``done`` means nothing is left. The inputs are the server's
and the store's state, re-read before every decision, plus what this run holds in memory (shares, a token), never
a value: messages name states.

Custody (SPEC §6): :func:`share_layout` decides the share count and threshold (the Platform's custodians, not the
command-line flags, when it declares them), and the deciders count the shares the identities given open against
the threshold: with one share per custodian, unseal progresses per custodian while generate-root and rekey need k
custodians' identities in one run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from chamberlain.errors import UsageError

# ------------------------------------------------------------------------------------------------ custody


@dataclass(frozen=True)
class Layout:
    """How many unseal shares, and how many of them unseal."""

    shares: int
    threshold: int


DEFAULT_LAYOUT = Layout(5, 3)


def share_layout(custody: Layout | None, shares: int | None, threshold: int | None, default: Layout) -> Layout:
    """The share count and threshold of a new share set.

    ``custody`` (one share per custodian, the Platform's threshold) decides when declared: a flag that says
    otherwise is refused, so the command line cannot lower the Platform's threshold. Without custody the flags
    decide, each defaulting to ``default`` (5 and 3 at init, the current set at rekey)."""
    if custody is not None:
        for flag, given, declared in (("--shares", shares, custody.shares),
                                      ("--threshold", threshold, custody.threshold)):
            if given is not None and given != declared:
                raise UsageError(f"{flag} {given} contradicts the Platform's rootOfTrust.custody ({custody.shares} "
                                 f"custodians, threshold {custody.threshold}): with custody declared the Platform "
                                 f"decides; drop {flag} or change the Platform")
        return custody
    out = Layout(default.shares if shares is None else shares, default.threshold if threshold is None else threshold)
    if not 1 <= out.threshold <= out.shares:
        raise UsageError(f"--threshold must be between 1 and --shares ({out.shares}), got {out.threshold}")
    return out


@dataclass(frozen=True)
class UnsealOutcome:
    """What an unseal run did, in custodian terms (names, counts; never a share)."""

    submitted: tuple[str, ...]  # holders whose shares this run submitted
    progress: int  # the server's progress after them (0 once unsealed)
    threshold: int
    sealed: bool


def unseal_message(o: UnsealOutcome) -> str:
    """What to tell the custodian who just ran unseal."""
    who = ", ".join(o.submitted) or "no share"
    if not o.sealed:
        return f"unsealed (this run submitted: {who})"
    missing = max(o.threshold - o.progress, 1)
    return (f"still sealed: {o.progress} of {o.threshold} shares submitted (this run: {who}); {missing} more "
            f"custodian{'s' if missing > 1 else ''} must run `chamberlain authority unseal --identity FILE`")


class Material(StrEnum):
    """The unseal material in the Kubernetes Secret."""

    ABSENT = "absent"  # no Secret
    PENDING = "pending"  # the placeholder written before init: no shares yet
    STORED = "stored"  # sealed shares


class Session(StrEnum):
    """How this run is authenticated."""

    NONE = "none"
    INIT_ROOT = "init-root"  # the root token this run's sys/init returned
    CONFIGURATOR = "configurator"
    BREAK_GLASS = "break-glass"  # a root token from generate-root
    DROPPED = "dropped"  # our root token is revoked: nothing is left to do with it


class InitStep(StrEnum):
    PREPARE_STORE = "prepare-store"
    INITIALIZE = "initialize"
    UPLOAD_RECOVERY = "upload-recovery"
    UNSEAL = "unseal"
    WAIT_ACTIVE = "wait-active"
    USE_ROOT = "use-root"
    LOGIN = "login"
    GENERATE_ROOT = "generate-root"
    CONFIGURE = "configure"
    RECORD = "record"
    VERIFY = "verify"
    SWEEP = "sweep"
    DROP = "drop"
    DONE = "done"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class InitObserved:
    initialized: bool
    sealed: bool
    material: Material
    recovery_file: bool  # a local recovery copy of the encrypted shares exists
    holds_shares: bool  # this run holds the plaintext shares (from its own sys/init)
    can_open: bool  # the identities given open at least the threshold of the stored shares
    holds_root: bool  # this run's sys/init root token, not yet in use
    session: Session
    login_refused: bool  # the configurator login was tried in this run and refused
    active: bool  # the server confirmed in this run that it is unsealed and active
    configured: bool  # configure ran in this run
    init_recorded: bool  # the authority-init ledger entry exists (noted on the material)
    verified: bool  # the orchestrator login was proven in this run
    root_revoked: bool  # the material notes that the root token was revoked
    generate_root_refused: bool = False  # the server refused generate-root in this run (OpenBao's default)
    identities_short: bool = False  # identities were given but open fewer shares than the threshold (custody)
    auto_unseal: bool = False  # the server has an auto-unseal seal: it unseals itself, the shares are recovery keys


StepT = TypeVar("StepT", "InitStep", "RekeyStep")


@dataclass(frozen=True)
class Decision(Generic[StepT]):
    """The step to take next and why (names states, never values)."""

    step: StepT
    why: str


def next_init_step(s: InitObserved) -> Decision[InitStep]:
    """The one init step to take next."""
    if not s.initialized:
        return _before_init(s)
    if s.material is not Material.STORED:
        if s.recovery_file:
            return Decision(InitStep.UPLOAD_RECOVERY, "initialized; a previous run's encrypted shares wait in "
                                                      "the recovery file")
        return Decision(InitStep.BLOCKED, "initialized, but the unseal Secret holds no unseal material "
                                          "(initialized by someone else, or the material is lost)")
    if s.sealed and s.auto_unseal:
        return Decision(InitStep.WAIT_ACTIVE, "sealed; it unseals itself through its seal (recovery keys cannot)")
    if s.sealed:
        if s.holds_shares or s.can_open:
            return Decision(InitStep.UNSEAL, "sealed; the shares are at hand")
        if s.identities_short:
            return Decision(InitStep.BLOCKED, "sealed; the identities given open fewer shares than the threshold — "
                                              "each custodian runs `chamberlain authority unseal --identity FILE` "
                                              "in turn, then re-run init")
        return Decision(InitStep.BLOCKED, "sealed; pass --identity FILE (or run `chamberlain authority "
                                          "unseal`) to resume")
    if not s.active:
        return Decision(InitStep.WAIT_ACTIVE, "unsealed; wait until it is active")
    if s.session is Session.NONE:
        return _authenticate(s)
    return _authenticated(s)


def _before_init(s: InitObserved) -> Decision[InitStep]:
    if s.material is Material.STORED:
        return Decision(InitStep.BLOCKED, "not initialized, but the unseal Secret holds unseal material (of a "
                                          "server whose storage was wiped?); move that Secret away first")
    if s.material is Material.ABSENT:
        return Decision(InitStep.PREPARE_STORE, "prove the unseal Secret can be written before init")
    return Decision(InitStep.INITIALIZE, "not initialized; the store is writable")


def _authenticate(s: InitObserved) -> Decision[InitStep]:
    if s.holds_root:
        return Decision(InitStep.USE_ROOT, "this run initialized the server and holds its root token")
    if not s.login_refused:
        return Decision(InitStep.LOGIN, "log in as the configurator role")
    if (s.holds_shares or s.can_open) and s.generate_root_refused:
        return Decision(InitStep.BLOCKED, "cannot log in as the configurator role yet (the first run stopped before "
                                          "configuring it) and the server refuses unauthenticated generate-root "
                                          "(OpenBao's default from 2.5.3) — set disable_unauthed_generate_root_"
                                          "endpoints = false on its listener, restart it, re-run with --identity, "
                                          "then remove the setting again")
    if s.holds_shares or s.can_open:
        return Decision(InitStep.GENERATE_ROOT, "the configurator cannot log in yet; a temporary root token "
                                                "from the stored shares")
    if s.identities_short:
        return Decision(InitStep.BLOCKED, "cannot log in as the configurator role yet, and generate-root needs "
                                          "the threshold of shares: the identities given open fewer — pass "
                                          "--identity once per custodian, k custodians in one run")
    return Decision(InitStep.BLOCKED, "cannot log in as the configurator role yet (the first run stopped before "
                                      "configuring it) — pass --identity FILE to resume with a temporary root "
                                      "token from the stored shares")


def _authenticated(s: InitObserved) -> Decision[InitStep]:
    if s.session is Session.DROPPED:
        return Decision(InitStep.DONE, "initialized, configured, verified; root token revoked")
    if not s.configured:
        return Decision(InitStep.CONFIGURE, "converge the configuration")
    if not s.init_recorded:
        return Decision(InitStep.RECORD, "the ledger has no authority-init entry yet")
    if not s.verified:
        return Decision(InitStep.VERIFY, "prove the orchestrator login")
    if not s.root_revoked:
        return Decision(InitStep.SWEEP, "revoke every root token, ours last")
    if s.session is Session.BREAK_GLASS:
        return Decision(InitStep.DROP, "revoke this run's break-glass root token")
    return Decision(InitStep.DONE, "initialized, configured, verified; root token revoked")


# ------------------------------------------------------------------------------------------------ rekey


class RekeyStep(StrEnum):
    START = "start"
    VERIFY = "verify"
    PROBE = "probe"
    PROMOTE = "promote"
    ABANDON = "abandon"
    ROTATE = "rotate"
    RECORD = "record"
    DONE = "done"
    BLOCKED = "blocked"


class InForce(StrEnum):
    """Which share set the server holds, as far as this run knows."""

    UNKNOWN = "unknown"
    NEW = "new"
    OLD = "old"


@dataclass(frozen=True)
class RekeyObserved:
    ready: bool  # initialized and unsealed
    material: bool  # shares are stored
    next_stored: bool  # new shares are stored beside them (a rekey whose promotion is not done)
    verification_pending: bool  # the server waits for the new shares to verify them
    in_force: InForce
    rotated: bool  # sys/rotate done in this run
    recorded: bool  # the authority-rekey ledger entry written in this run
    abandoned: bool  # this run found the old shares still in force and dropped the new ones


def next_rekey_step(s: RekeyObserved) -> Decision[RekeyStep]:
    """The one rekey step to take next."""
    if not s.ready:
        return Decision(RekeyStep.BLOCKED, "must be initialized and unsealed to rekey")
    if not s.material:
        return Decision(RekeyStep.BLOCKED, "no sealed unseal material in the unseal Secret")
    if s.abandoned:
        return Decision(RekeyStep.BLOCKED, "the previous rekey did not take effect; the old shares are still "
                                           "in force — run rekey again")
    if s.next_stored:
        if s.in_force is InForce.NEW:
            return Decision(RekeyStep.PROMOTE, "the new shares are in force; store them as the shares")
        if s.in_force is InForce.OLD:
            return Decision(RekeyStep.ABANDON, "the old shares are still in force; forget the new ones")
        if s.verification_pending:
            return Decision(RekeyStep.VERIFY, "the new shares are stored; verify them")
        return Decision(RekeyStep.PROBE, "new shares are stored but no verification is pending; ask the "
                                         "server which set is in force")
    if s.in_force is not InForce.NEW:
        return Decision(RekeyStep.START, "issue new shares")
    if not s.rotated:
        return Decision(RekeyStep.ROTATE, "new shares in force; rotate the encryption key")
    if not s.recorded:
        return Decision(RekeyStep.RECORD, "record the rekey in the ledger")
    return Decision(RekeyStep.DONE, "rekeyed")


INIT_TERMINAL = frozenset({InitStep.DONE, InitStep.BLOCKED})
REKEY_TERMINAL = frozenset({RekeyStep.DONE, RekeyStep.BLOCKED})

__all__ = [
    "DEFAULT_LAYOUT",
    "INIT_TERMINAL",
    "REKEY_TERMINAL",
    "Decision",
    "InForce",
    "InitObserved",
    "InitStep",
    "Layout",
    "Material",
    "RekeyObserved",
    "RekeyStep",
    "Session",
    "UnsealOutcome",
    "next_init_step",
    "next_rekey_step",
    "share_layout",
    "unseal_message",
]
