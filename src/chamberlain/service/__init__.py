"""The use cases: what one command, one demo phase or the controller's entry point asks chamberlain to do.

Belongs here: one module per use-case area, each function taking plain typed inputs (paths, names, a request
dataclass, the :class:`~chamberlain.service.context.Servers` to reach Vault and Kubernetes through, a
:class:`~chamberlain.clock.Clock`) and returning a typed result with ``as_dict()``, never printing:

- :mod:`.repository` — validate, render, inventory, and loading a repository for the others (validate first);
- :mod:`.context` — connection options, the servers a use case talks to, who acts (actor, run id, clock);
- :mod:`.authority` — init, unseal, configure, plan, rekey, status of the runtime authority;
- :mod:`.handover` — provisioning generated values and handing bootstrap secrets over;
- :mod:`.rotation` — rotate, roll back, release, and the status of every secret;
- :mod:`.policy` — the rotation policy in force against Git's: plan, apply;
- :mod:`.audit` — one secret's provenance, and the ledger's integrity;
- :mod:`.controller` — the scope, the running controller, and a signed webhook request;
- :mod:`.gitops` — the lab's GitOps stand-in.

The command line (:mod:`chamberlain.cli`) and the demo (:mod:`chamberlain.demo`) sit on top and call these; the
core packages below do the work. Not here: option parsing, printing, exit codes (the CLI), decisions of their own
(each use case sequences the core: load and validate, observe, decide, act).

Importing this package stays cheap (server clients are imported when a use case opens them), so ``chamberlain
validate`` never pays for them.
"""

from chamberlain.checks.gate import InvalidRepository, Validation, validate_repository
from chamberlain.service.repository import RenderOutcome, load_valid

__all__ = ["InvalidRepository", "RenderOutcome", "Validation", "load_valid", "validate_repository"]
