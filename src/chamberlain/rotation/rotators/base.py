"""The rotator contract: the AWS-Secrets-Manager-shaped steps one rotation is made of, and their typed errors.

A rotation of one secret is ``create_pending`` → ``set_at_target`` → ``test`` → *promote* → (after ``maxOverlap``,
when ``revokeOld``) ``revoke_old``. A rotator implements the four steps that touch values or the target system;
*promote* (moving the ``current`` marker in Vault metadata) and every persistence are the durable workflow's job.
Boundary: a rotator never reads or writes Vault, never reads the wall clock (``ctx.now`` is injected) and never
puts a secret value into an exception, a log line or a ``repr``. Values it needs (the current version, an admin
credential) are handed in by the caller through :class:`RotationContext`.

Idempotency contract, step by step, so the workflow can repeat any step after a crash:

* ``create_pending`` has no side effects. It draws fresh values; the workflow persists the result (a new Vault
  version marked pending) and, on resume, reuses the persisted pending version instead of calling it again.
* ``set_at_target`` makes the target accept the pending credential. Repeating it with the same pending version
  leaves the target in the same state.
* ``test`` only observes (e.g. connects with the pending credential).
* ``revoke_old`` makes the previous credential unusable; repeating it is harmless, and it never touches the
  credential that is current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from chamberlain.authority.pki import SignedCertificate
from chamberlain.errors import ChamberlainError
from chamberlain.intent.model import RotationPolicySpec, SecretIntent

# --------------------------------------------------------------------------------------------------- errors


class RotatorError(ChamberlainError):
    """Base of every rotator error. ``retryable`` says whether the workflow may try the same step again later.

    Messages name the secret, the step and a reason (an SQLSTATE, an exception class), never a value.
    """


class RotatorConfigError(RotatorError):
    """The intent (or the values handed in) does not fit this rotator: permanent until the intent changes."""


class DuplicateRotator(RotatorError):
    """Two rotators were registered under one name. Raised at load time so no rotation runs with an ambiguity."""


class UnknownRotator(RotatorError):
    """No rotator is registered under the requested name."""


class TargetUnavailable(RotatorError):
    """The target system could not be reached or failed transiently (network, restart, lock timeout)."""

    retryable = True


class TargetRejected(RotatorError):
    """The target refused the change for a reason retrying will not fix (privilege, invalid object)."""


class CredentialTestFailed(RotatorError):
    """The pending credential did not work at the target. Retryable: ``set_at_target`` may be repeated first."""

    retryable = True


# --------------------------------------------------------------------------------------------------- data


class CertificateIssuer(Protocol):
    """A certificate authority a rotator may ask to sign a CSR (Vault PKI: ``<mount>/sign/<role>``) and to revoke a
    serial (``<mount>/revoke``). Handed in through :attr:`RotationContext.pki`, so a rotator still never holds a
    Vault client. Implemented by :class:`chamberlain.authority.pki.VaultCertificateIssuer`; errors are
    :class:`~chamberlain.authority.errors.AuthorityError`. Only CSRs and serials cross it, never a private key.
    """

    def sign(self, mount: str, role: str, csr_pem: str, common_name: str, alt_names: Sequence[str],
             ttl: str | None) -> SignedCertificate:
        """Sign ``csr_pem`` for ``common_name`` and DNS ``alt_names``; ``ttl`` (Vault duration) or the role's."""
        ...

    def revoke(self, mount: str, serial: str) -> None:
        """Revoke the certificate with ``serial``; revoking it again is harmless."""
        ...



@dataclass(frozen=True)
class RotationContext:
    """Everything a rotator step may look at. Secret values are excluded from ``repr`` so a logged context is safe.

    ``current`` holds the values of the version that is current when the step runs (before *promote* that is the
    previous version; at ``revoke_old`` time it is the newly promoted one). ``admin`` holds the values of the
    intent named by ``target.postgres.adminIntent``, read from Vault by the caller — a rotator never reads Vault.
    ``pki`` is the certificate authority of the ``x509-vault-pki`` rotator (``None`` where no one wired one).
    """

    intent: SecretIntent
    now: datetime
    current: Mapping[str, str] = field(default_factory=dict, repr=False)
    policy: RotationPolicySpec | None = None
    admin: Mapping[str, str] | None = field(default=None, repr=False)
    pki: CertificateIssuer | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.intent.name


@dataclass(frozen=True)
class PendingVersion:
    """What ``create_pending`` returns and the workflow persists as a new Vault version marked *pending*.

    ``data`` is the complete key set of the new version (unchanged keys carried over), so the workflow writes it
    as-is. ``rotated`` names the keys whose values changed. ``notes`` is non-secret information the workflow may
    record on the run or in metadata (e.g. which PostgreSQL user became current); never values.
    """

    data: Mapping[str, str] = field(repr=False)
    rotated: frozenset[str]
    notes: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- protocol


@runtime_checkable
class Rotator(Protocol):
    """One way of rotating a secret. Registered under ``name`` in the entry-point group ``chamberlain.rotators``."""

    name: str

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        """Fresh values for the rotating keys; fixed names stay. No side effects."""
        ...

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Make the target accept ``pending`` (a no-op for pure-random secrets). Idempotent."""
        ...

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Prove ``pending`` works; raise :class:`CredentialTestFailed` otherwise. Observes only."""
        ...

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        """Make ``previous`` (the values of the version before the current one) unusable. Idempotent."""
        ...


def has_target(rotator: object) -> bool:
    """Whether ``rotator`` sets its values anywhere but in Vault (a database, a CA). A rotator says it has none with
    a class attribute ``has_target = False`` (the generated rotators: ``set_at_target`` and ``revoke_old`` do
    nothing, ``test`` looks at the pending values only); the workflow then tests the pending version in the step
    that staged it, instead of two more persisted steps that would each read both versions again. Absent: a
    target, as every plug-in is assumed to have."""
    return getattr(rotator, "has_target", True) is not False


def draws_locally(rotator: object) -> bool:
    """Whether ``rotator``'s draw (``create_pending``) has no effect outside the process and can be made again: a
    target-less rotator that says so with a class attribute ``draws_locally = True`` (the generated rotators: a
    random or a key pair). The workflow then keeps the pending values in memory from the draw to the promote write
    that follows in the same call, instead of writing and destroying a staging copy; a crash in between loses a
    draw nobody saw, and the run draws again. Absent: the draw may issue or reserve something (a certificate from
    a CA), so it is staged and never made twice. Declared by the rotator's own class, not inherited: a subclass
    of a generated rotator may draw differently, and is staged until it says so itself."""
    return not has_target(rotator) and vars(type(rotator)).get("draws_locally", False) is True


def carry_over(current: Mapping[str, str], fresh: Mapping[str, str]) -> PendingVersion:
    """A pending version: ``current`` with ``fresh`` laid over it; ``rotated`` is the keys ``fresh`` provides."""
    data = dict(current)
    data.update(fresh)
    return PendingVersion(data=data, rotated=frozenset(fresh))
