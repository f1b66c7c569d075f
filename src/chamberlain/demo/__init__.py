"""``chamberlain demo``: the life cycle, Phase 0 to handover, on the lab of real servers.

Belongs here: driving the real workflows in order on a throw-away copy of an intent repository — root of trust,
bootstrap re-encryption and validation, render + the lab's GitOps stand-in, authority init (unseal and configure
included), initial values, handover, ledger verification — and measuring each phase. Not here: any workflow logic
of its own (every step calls the package that owns it), printing (the CLI), or rotation (a later issue).

Nothing the demo reports can be a secret: phases report counts, names, versions and paths.
"""

from chamberlain.demo.walkthrough import (
    DEMO_CLUSTER,
    DEMO_ENVIRONMENT,
    DemoError,
    DemoOptions,
    DemoReport,
    Phase,
    PhaseResult,
    default_previous_identity,
    default_source_repo,
    run_demo,
)

__all__ = [
    "DEMO_CLUSTER",
    "DEMO_ENVIRONMENT",
    "DemoError",
    "DemoOptions",
    "DemoReport",
    "Phase",
    "PhaseResult",
    "default_previous_identity",
    "default_source_repo",
    "run_demo",
]
