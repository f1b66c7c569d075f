"""What a controller driven by the cluster does for each secret besides rotating it: a generated secret with no
value in the authority yet gets its initial value, and a policy changed in Git is brought into force.

The loop's time trigger reads the placed secrets' metadata anyway (a new or changed one at once, the others round
robin at a bounded rate: :mod:`.freshness`); it hands each reading to :meth:`IntentReconciler.settle`, so steady
state needs nobody and costs no extra reads. The decisions are pure (:func:`provision_unit`,
:func:`policy_drift`); acting is the audited workflows every operator runs:

- ``provision``: :func:`chamberlain.provision.workflow.run_provision` (check-and-set create, metadata, a
  ``value-created`` ledger entry) — as ``chamberlain provision`` does, as the orchestrator;
- ``policy apply``: :func:`chamberlain.rotation.policy_sync.apply` (the ``policy.*`` custom_metadata and a
  ``policy-change`` ledger entry).

Both write only the runtime mount of the controller's own environment and its ledger, which the orchestrator's
Vault policy already allows (it rotates there); nothing here needs more. A failure is logged and tried again at the
next evaluation; an outage of the authority stops the tick like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from chamberlain.audit.ledger import Ledger
from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable
from chamberlain.authority.kv import KV, SecretMetadata
from chamberlain.clock import Clock
from chamberlain.controller.collaborators import Logger, Silent
from chamberlain.controller.scope import Scope
from chamberlain.errors import ChamberlainError
from chamberlain.intent.paths import effective_policy
from chamberlain.provision.workflow import ProvisionUnit, run_provision
from chamberlain.rotation import manual as rm
from chamberlain.rotation import policy_sync
from chamberlain.rotation.policy import drift
from chamberlain.values.markers import LegacyMarkers, Markers


def provision_unit(scope: Scope, placed: rm.Placed, meta: SecretMetadata | None) -> ProvisionUnit | None:
    """The unit to provision when ``placed`` is a generated secret with no value in the authority (pure)."""
    generators = placed.intent.spec.source.generate
    if generators is None or (meta is not None and meta.current_version > 0):
        return None
    resolved = effective_policy(scope.platform, dict(scope.policies), placed.intent)
    return ProvisionUnit(intent=placed.name, environment=placed.environment, vault=placed.vault,
                         generators=dict(generators), policy_name=resolved[0] if resolved else None,
                         policy=resolved[1] if resolved else None)


def policy_drift(scope: Scope, placed: rm.Placed, meta: SecretMetadata) -> policy_sync.PolicyDrift | None:
    """The policy fields where Git (the intent in the cluster) and the secret's metadata differ (pure). A reference
    to a policy the cluster lacks is no drift: validation rejected that intent already."""
    resolved = effective_policy(scope.platform, dict(scope.policies), placed.intent)
    if resolved is None:
        return None
    fields = drift(resolved[0], resolved[1], meta.custom)
    if not fields:
        return None
    return policy_sync.PolicyDrift(placed.name, placed.vault, resolved[0], resolved[1], tuple(fields))


@dataclass
class IntentReconciler:
    """Initial values and policy changes of the scope's secrets, as the orchestrator, through the one ledger."""

    kv: KV
    ledger: Ledger
    clock: Clock
    actor: str
    new_run_id: Callable[[], str] | None = None  # the run id the ledger entries name (None: "controller")
    markers: Markers = field(default_factory=LegacyMarkers)
    log: Logger = field(default_factory=Silent)
    provisioned: int = 0
    policy_changes: int = 0

    def _run_id(self) -> str:
        return self.new_run_id() if self.new_run_id is not None else "controller"

    def settle(self, scope: Scope, placed: rm.Placed, meta: SecretMetadata | None) -> SecretMetadata | None:
        """Provision ``placed`` or bring its policy into force when needed; the metadata after that (or ``meta``).
        :class:`AuthorityUnavailable` propagates (the tick stops); any other failure is logged, retried later."""
        try:
            unit = provision_unit(scope, placed, meta)
            if unit is not None:
                return self._provision(unit)
            if meta is None:
                return None
            found = policy_drift(scope, placed, meta)
            if found is not None:
                policy_sync.apply(self.kv, self.ledger, [found], actor=self.actor, run=self._run_id(),
                                  reason="policy changed in the cluster's SecretIntent")
                self.policy_changes += 1
                self.log.info("policy brought into force", secret=placed.name,
                              fields=[f.field for f in found.fields])
                return self.kv.read_metadata(placed.vault.mount, placed.vault.path)
        except AuthorityUnavailable:
            raise
        except (AuthorityError, ChamberlainError) as exc:
            self.log.warning("cannot settle a secret of the scope", secret=placed.name, error=type(exc).__name__,
                             detail=str(exc)[:200])
        return meta

    def _provision(self, unit: ProvisionUnit) -> SecretMetadata | None:
        outcome = run_provision([unit], self.kv, self.ledger, actor=self.actor, run=self._run_id(),
                                clock=self.clock, markers=self.markers)[0]
        if outcome.result == "created":
            self.provisioned += 1
        self.log.info("initial value provisioned", secret=unit.intent, path=unit.vault.full,
                      result=outcome.result, ledger_seq=outcome.ledger_seq)
        return self.kv.read_metadata(unit.vault.mount, unit.vault.path)


__all__ = ["IntentReconciler", "policy_drift", "provision_unit"]
