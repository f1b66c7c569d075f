"""Rotators for values chamberlain generates itself and that authenticate to nothing: random and keypair.

``random`` redraws ``password``/``token``/``bytes`` keys, ``keypair`` redraws ``ed25519``/``ecdsa``/``rsa`` keys
(the private key under ``<key>`` and the public key under ``<key>.pub``, as :mod:`chamberlain.values.generate`
lays them out), ``generated`` redraws both kinds for intents that mix them. Keys of any other generator — above
all ``fixed-name`` — keep their current value. There is no target: ``set_at_target``, ``test`` and ``revoke_old``
are no-ops, because consumers read the new value through Vault → ESO and nothing else must accept it.
Boundary: pure value generation through :mod:`chamberlain.values.generate`; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamberlain.intent.model import KEYPAIR_GENERATORS, RANDOM_GENERATORS, AnyGenerator, FixedNameGenerator
from chamberlain.rotation.rotators.base import PendingVersion, RotationContext, RotatorConfigError, carry_over
from chamberlain.values.generate import values_of


def generators_of(ctx: RotationContext) -> Mapping[str, AnyGenerator]:
    """The intent's ``source.generate`` block; a rotator of generated values cannot work without one."""
    generate = ctx.intent.spec.source.generate
    if not generate:
        raise RotatorConfigError(
            f"{ctx.name}: source is {ctx.intent.spec.source.kind}, not generate; chamberlain cannot draw its values"
        )
    return generate


def fresh_values(generators: Mapping[str, AnyGenerator], handled: tuple[type, ...]) -> dict[str, str]:
    """New values for the keys whose generator type is in ``handled`` (keypairs add ``<key>.pub``)."""
    fresh: dict[str, str] = {}
    for key in sorted(generators):
        if isinstance(generators[key], handled):
            fresh.update(values_of(key, generators[key]))
    return fresh


def fixed_names(ctx: RotationContext, generators: Mapping[str, AnyGenerator]) -> dict[str, str]:
    """Declared names, so a pending version is complete even if ``current`` was never fully populated."""
    return {k: ctx.current.get(k, g.name) for k, g in generators.items() if isinstance(g, FixedNameGenerator)}


class GeneratedRotator:
    """Redraws every key whose generator type is in ``handles``; carries every other key over unchanged."""

    name = "generated"
    handles: tuple[type, ...] = RANDOM_GENERATORS + KEYPAIR_GENERATORS
    has_target = False  # nothing but Vault holds the value (rotators.base.has_target)
    draws_locally = True  # a draw is a random number: a lost one is drawn again (rotators.base.draws_locally)

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        generators = generators_of(ctx)
        fresh = fresh_values(generators, self.handles)
        if not fresh:
            # Rotating nothing would record a "successful" rotation that changed no value: a silent rotation.
            raise RotatorConfigError(f"{ctx.name}: rotator {self.name!r} has no key to rotate in this intent")
        return carry_over({**fixed_names(ctx, generators), **ctx.current}, fresh)

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Nothing to do: a generated value authenticates to nothing but its consumers."""

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Check the pending version is complete (every declared key present), the one thing that can be wrong."""
        missing = sorted(set(generators_of(ctx)) - set(pending.data))
        if missing:
            raise RotatorConfigError(f"{ctx.name}: pending version lacks keys {missing}")

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        """Nothing to revoke: the old value stops existing for consumers once ESO has synced the new version."""


class RandomRotator(GeneratedRotator):
    name = "random"
    handles = RANDOM_GENERATORS
    draws_locally = True  # declared per class (rotators.base.draws_locally)


class KeypairRotator(GeneratedRotator):
    name = "keypair"
    handles = KEYPAIR_GENERATORS
    draws_locally = True
