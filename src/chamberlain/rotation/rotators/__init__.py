"""Rotators: how one secret gets a new value (SPEC §5 "Flow").

The public surface of the package. :mod:`.base` holds the contract (the :class:`Rotator` protocol, the
:class:`RotationContext` handed in, the :class:`PendingVersion` handed back, typed retryable/permanent errors);
:mod:`.registry` loads rotators from the entry-point group ``chamberlain.rotators`` and picks one per intent.
Built-ins: ``random``, ``keypair``, ``generated`` (:mod:`.generated`), ``x509`` (:mod:`.x509`) and ``postgres``
(:mod:`.postgres`, the only module here that talks to a server). Boundary: rotators act on values and targets;
persisting versions, promoting, retrying and auditing belong to the durable workflow that calls them.
"""

from chamberlain.rotation.rotators.base import (
    CredentialTestFailed,
    DuplicateRotator,
    PendingVersion,
    RotationContext,
    Rotator,
    RotatorConfigError,
    RotatorError,
    TargetRejected,
    TargetUnavailable,
    UnknownRotator,
)
from chamberlain.rotation.rotators.registry import GROUP, Registry, rotator_name_for

__all__ = [
    "GROUP",
    "CredentialTestFailed",
    "DuplicateRotator",
    "PendingVersion",
    "Registry",
    "RotationContext",
    "Rotator",
    "RotatorConfigError",
    "RotatorError",
    "TargetRejected",
    "TargetUnavailable",
    "UnknownRotator",
    "rotator_name_for",
]
