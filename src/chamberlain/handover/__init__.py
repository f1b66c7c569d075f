"""Explicit, audited authority handover: a bootstrap Secret's value becomes a Vault-owned runtime secret (SPEC §5).

Belongs here: selecting what a run hands over (``units``), the pure step decision over observed state
(``decide``), the custom_metadata vocabulary written on runtime secrets (``metadata``) and the workflow that
observes and acts one idempotent step at a time (``workflow``). Does not belong here: server clients (the
workflow depends on the ``KV`` and ``Kube`` protocols only), decrypting SOPS files (the in-cluster decryption
layer materializes bootstrap Secrets; the handover reads them from the cluster), or the CLI.
"""

from chamberlain.handover.decide import Bootstrap, Decision, Observed, Step, VaultValue, next_step
from chamberlain.handover.units import HandoverUnit, handover_units, select_cluster
from chamberlain.handover.workflow import (
    HandoverError,
    HandoverReport,
    RunContext,
    UnitOutcome,
    hand_over,
    retirement_undone,
    run_handover,
)

__all__ = [
    "Bootstrap",
    "Decision",
    "HandoverError",
    "HandoverReport",
    "HandoverUnit",
    "Observed",
    "RunContext",
    "Step",
    "UnitOutcome",
    "VaultValue",
    "hand_over",
    "handover_units",
    "next_step",
    "retirement_undone",
    "run_handover",
    "select_cluster",
]
