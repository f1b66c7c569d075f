"""The in-cluster controller: the long-running orchestrator and event system (SPEC §4 components 5 and 6).

Belongs here: the loop that turns trigger requests into durable rotation runs and drives them in batches
(``loop``), in three parts — its frozen configuration (``config``), its collaborators built once (``collaborators``)
and the tick's mutable state with its lock discipline (``state``) — plus what it acts on (``scope``; built from the
cluster's watched intents by ``source``, whose new secrets and changed policies ``reconcile`` settles), the restart
wave a batch shares (``batch``), what a controller does for an environment another cluster rotates (``follow``: restart
its own consumers and acknowledge), the process's one ledger writer (``ledger``), leader election on a Lease
(``leader``), RotationRun objects and Events (``resources``), their bounded history (``history``), SecretIntent
status and Events on the SecretIntent (``status``), Prometheus metrics (``metrics``), structured JSON
logs (``logs``), and running it all with the webhook endpoint (``app``: ``wire`` builds the three parts). Not here:
deciding whether a secret is due (``rotation.policy``), the steps of a rotation and their decisions
(``rotation.workflow``), the triggers themselves (``triggers``), or building clients
(:mod:`chamberlain.service.controller` does that for the CLI and the demo).
"""

from chamberlain.controller.app import ControllerApp, ControllerWebhook
from chamberlain.controller.collaborators import Collaborators
from chamberlain.controller.config import ControllerConfig
from chamberlain.controller.leader import Decision, LeaderElector, decide
from chamberlain.controller.loop import Controller
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.resources import RunPublisher
from chamberlain.controller.scope import Scope, schedule_of, scope_of

__all__ = [
    "Collaborators",
    "Controller",
    "ControllerApp",
    "ControllerConfig",
    "ControllerMetrics",
    "ControllerWebhook",
    "Decision",
    "LeaderElector",
    "RunPublisher",
    "Scope",
    "decide",
    "schedule_of",
    "scope_of",
]
