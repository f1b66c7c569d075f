"""The in-cluster controller: the long-running orchestrator and event system (SPEC §4 components 5 and 6).

Belongs here: leader election on a Lease (``leader``), the loop that turns trigger requests into durable rotation
runs and drives them in batches (``loop``), RotationRun objects and Events (``resources``), Prometheus metrics
(``metrics``), structured JSON logs (``logs``), and running it all with the webhook endpoint (``app``). Not here:
deciding whether a secret is due (``rotation.policy``), the steps of a rotation (``rotation.workflow``), the
triggers themselves (``triggers``), or building clients (the CLI and the demo do that).
"""

from chamberlain.controller.app import ControllerApp, LeaderOnlyWebhook
from chamberlain.controller.leader import Decision, LeaderElector, decide
from chamberlain.controller.loop import Controller, Scope, schedule_of, scope_of
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.resources import RunPublisher

__all__ = [
    "Controller",
    "ControllerApp",
    "ControllerMetrics",
    "Decision",
    "LeaderElector",
    "LeaderOnlyWebhook",
    "RunPublisher",
    "Scope",
    "decide",
    "schedule_of",
    "scope_of",
]
