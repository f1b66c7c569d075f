"""``chamberlain demo``: the life cycle, Phase 0 through handover to rotation, on the lab of real servers.

Belongs here: driving the real workflows in order on a throw-away copy of an intent repository — root of trust,
bootstrap re-encryption and validation, render + the lab's GitOps stand-in, authority init (unseal and configure
included), initial values, handover, the declared workloads and ESO materialization, rotations by the real
controller run in process (time trigger, signed webhook, manual; the last one the alternating PostgreSQL rotation),
ledger verification — and measuring each phase (``walkthrough``; lab glue of the rotation phases in
``rotations``). Not here: any workflow or rotation logic of its own (a phase calls the same
:mod:`chamberlain.service` use case as the command a user would type, and every rotation is the controller's,
started through the controller's entry point), or printing (the CLI).

Nothing the demo reports can be a secret: phases report counts, names, versions and paths.
"""

from chamberlain.demo.walkthrough import (
    DEMO_CLUSTER,
    DEMO_ENVIRONMENT,
    ROTATION_PHASES,
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
    "ROTATION_PHASES",
    "DemoError",
    "DemoOptions",
    "DemoReport",
    "Phase",
    "PhaseResult",
    "default_previous_identity",
    "default_source_repo",
    "run_demo",
]
