"""Initial runtime values: secrets with a ``source.generate`` block are created in Vault, never in Git (SPEC §5).

Belongs here: selecting the runtime paths to fill, the pure step decision and the create → record → ledger
workflow over the ``KV`` protocol. Does not belong here: rotation (new versions of existing secrets), server
clients, the CLI.
"""

from chamberlain.provision.workflow import (
    ProvisionError,
    ProvisionOutcome,
    ProvisionUnit,
    Step,
    next_step,
    provision_units,
    run_provision,
)

__all__ = [
    "ProvisionError",
    "ProvisionOutcome",
    "ProvisionUnit",
    "Step",
    "next_step",
    "provision_units",
    "run_provision",
]
