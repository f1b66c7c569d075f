"""chamberlain: a GitOps-native, Vault-first secret life cycle for Kubernetes.

Public surface is deliberately small; everything else is an implementation detail.

Layers, top to bottom (enforced by import-linter, see ``.importlinter``; a module imports only from below it):

- ``chamberlain.cli``        — the thin typer front end: options in, one use case called, its result printed.
- ``chamberlain.demo``       — the life cycle on the lab, each phase calling the same use case as its command.
- ``chamberlain.service``    — the use cases (validate, render, authority init, handover, rotate, audit, the
  controller's entry point...), one module per area, shared by the CLI, the demo and the controller's entry point.
- ``chamberlain.controller`` — the long-running loop: leader Lease, batches, RotationRun objects, metrics.
- ``chamberlain.gitops``     — the lab's stand-in for Argo CD/Flux.
- ``chamberlain.triggers``   — time, signed webhook, annotation and manual triggers; one request queue.
- ``chamberlain.rotation`` / ``chamberlain.provision`` — the durable rotation workflow and rotators; initial
  values of generated secrets.
- ``chamberlain.propagation`` — force-refresh of ExternalSecrets, version markers, debounced restarts.
- ``chamberlain.handover``   — the explicit, audited hand-over of bootstrap secrets.
- ``chamberlain.render`` / ``inventory`` / ``reporting`` / ``audit`` / ``root`` — deterministic GitOps output,
  the inventory, finding reports, the hash-chained ledger, the offline root of trust.
- ``chamberlain.bootstrap``  — SOPS-encrypted bootstrap Secrets.
- ``chamberlain.checks`` / ``authority`` / ``values`` / ``kube`` — invariant checks (and the validate-before-use
  gate), the narrow Vault adapter, secure generators, the narrow Kubernetes adapter.
- ``chamberlain.intent``     — the intent model (Platform, RotationPolicy, SecretIntent), loading and paths.
- ``chamberlain.findings``   — the finding type and the rule catalogue.

Below the intent model: ``chamberlain.lab`` (the local lab of real servers; it knows nothing of intent) and the
shared vocabulary every layer may use — ``clock`` (the one Clock), ``wellknown`` (metadata keys, labels,
annotations), ``settings`` (the process environment, read by entry points only), ``faults`` (crash-test injection
points) and ``errors`` (the one error hierarchy).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
