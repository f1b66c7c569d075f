"""Every name chamberlain writes onto someone else's objects, spelled once: the custom_metadata keys on secrets in
the authority, and the labels and annotations on Kubernetes objects.

These names are a contract with running systems (a secret handed over today is read by next year's release, a
consumer Secret's annotation is what ESO templates), so they live in one module and every reader and writer
imports them from here. Pure data: no functions beyond spelling a key that takes a parameter.

Custom metadata (on KV v2 secrets in the runtime mount) answers SPEC §5's audit questions next to the secret:
who owns it since when (``authority``, ``origin``, ``handed-over-at``, ``created-at``), which policy is in force
(``policy.*``), which version chamberlain wrote (``value-marker``, ``value-version``) and how the last rotation
went (``last-*``, ``held``). Labels and annotations use the ``chamberlain.dev/`` prefix, except the well-known
``app.kubernetes.io/managed-by`` and the names other projects own (ESO's ``force-sync``, Argo CD's sync waves).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "chamberlain.dev/"

# --------------------------------------------------------------------------------------------------- custom_metadata

AUTHORITY: Final = "authority"  # "vault": the authority holds this secret (the handover's commit point)
AUTHORITY_VAULT: Final = "vault"
INTENT: Final = "intent"
ENVIRONMENT: Final = "environment"
ORIGIN: Final = "origin"  # "bootstrap" (handed over) or "generated" (created in the authority)
HANDED_OVER_AT: Final = "handed-over-at"
SOURCE: Final = "source"  # <namespace>/<name> of the bootstrap Secret that was handed over
SOURCE_CLUSTER: Final = "source-cluster"
ORIGIN_ADOPTED: Final = "adopted"  # origin of a value imported from an existing Secret (source.existingSecret)
ADOPTED_AT: Final = "adopted-at"
VALUE_MARKER: Final = "value-marker"  # non-reversible marker of the version chamberlain wrote
VALUE_VERSION: Final = "value-version"
LEDGER_SEQ: Final = "ledger-seq"  # the ledger entry recording the transfer (or creation)
LEDGER_AFTER: Final = "ledger-after"  # provision: a seq its ledger entry comes after (bounds a resumed search)
CREATED_BY: Final = "created-by"
CREATED_BY_CHAMBERLAIN: Final = "chamberlain"
CREATED_AT: Final = "created-at"
RETIRED_PREFIX: Final = "retired."  # retired.<cluster> = ledger seq of that cluster's retirement entry
# handover-seq.<cluster> = ledger seq of that cluster's handover entry when its retirement was deferred (GitOps
# still applied the bootstrap Secret); the retirement then gets its own entry
HANDOVER_SEQ_PREFIX: Final = "handover-seq."
POLICY_PREFIX: Final = "policy."  # policy.type, policy.ttl, ...: the rotation policy in force
POLICY_NAME: Final = POLICY_PREFIX + "name"  # the RotationPolicy's name, or "inline"
POLICY_TYPE: Final = POLICY_PREFIX + "type"
POLICY_TTL: Final = POLICY_PREFIX + "ttl"
POLICY_ROTATE_BEFORE: Final = POLICY_PREFIX + "rotate-before"
POLICY_MAX_OVERLAP: Final = POLICY_PREFIX + "max-overlap"
POLICY_REVOKE_OLD: Final = POLICY_PREFIX + "revoke-old"
POLICY_FAILURE_STRATEGY: Final = POLICY_PREFIX + "failure-strategy"
LAST_ROTATED: Final = "last-rotated"
LAST_RUN: Final = "last-run"
LAST_REASON: Final = "last-reason"
LAST_RESULT: Final = "last-result"  # <run id>:ok|failed
HELD: Final = "held"  # "true" while a failed rotation waits for `chamberlain rotate --release`
HELD_RUN: Final = "held-run"
# consecutive runs that ended without success ("0" after a success) and when the last of them ended: the time
# trigger backs off from these (rotation.policy.failure_backoff), and the first failure of a streak alerts
FAILED_RUNS: Final = "failed-runs"
LAST_FAILED: Final = "last-failed"
# decommissioning (spec.retire): the soft-delete chamberlain did, and which of its versions to restore on undo
DECOMMISSIONED_AT: Final = "decommissioned-at"  # when the data was soft-deleted ("-" after an undo)
DECOMMISSIONED_VERSIONS: Final = "decommissioned-versions"  # comma-separated versions it soft-deleted
DECOMMISSIONED_FOR: Final = "decommissioned-for"  # the spec.retire.after day it was done for
DECOMMISSION_UNDONE_FOR: Final = "decommission-undone-for"  # the day an undo was for: not soft-deleted again
DECOMMISSION_SEQ: Final = "decommission-seq"  # the ledger entry recording the soft-delete
# the end of the undo window promised at the soft-delete: a later, shorter undoWindow in Git cannot shorten it, and
# a retirement whose spec.retire (or intent) left Git is still finished (or undone) from it
DECOMMISSION_UNDO_UNTIL: Final = "decommission-undo-until"


def part_marker_annotation(intent: str) -> str:
    """The annotation of a templated consumer Secret that carries ``intent``'s version marker."""
    return ANNOTATION_PART_MARKER_PREFIX + intent


def retired_key(cluster: str) -> str:
    """Several clusters of one environment may share a path; each retires its own bootstrap Secret."""
    return f"{RETIRED_PREFIX}{cluster}"


def handover_seq_key(cluster: str) -> str:
    return f"{HANDOVER_SEQ_PREFIX}{cluster}"


# The file `chamberlain render` keeps in the root of its output: the files it owns, one per line. The loader takes a
# directory holding it for rendered output (never read as intent, reported as excluded).
RENDER_MARKER: Final = ".chamberlain-render"

# --------------------------------------------------------------------------------------------------- labels

MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGER: Final = "chamberlain"
LABEL_INTENT: Final = PREFIX + "intent"
LABEL_CLASS: Final = PREFIX + "class"
LABEL_OWNER: Final = PREFIX + "owner"
LABEL_ENVIRONMENT: Final = PREFIX + "environment"
LABEL_ROLE: Final = PREFIX + "role"  # reader | publisher | orchestrator | unseal-material
LABEL_SECRET: Final = PREFIX + "secret"
LABEL_DEMO: Final = PREFIX + "demo"

# --------------------------------------------------------------------------------------------------- annotations

# on rendered objects
ANNOTATION_RENDERED: Final = PREFIX + "rendered"  # "true" on the intents as `chamberlain render` writes them
ANNOTATION_VAULT_PATH: Final = PREFIX + "vault-path"
ANNOTATION_PURPOSE: Final = PREFIX + "purpose"
# on consumer Secrets (templated by ESO from the secret's value-marker)
ANNOTATION_VERSION_MARKER: Final = PREFIX + "version-marker"
# on templated consumer Secrets: one annotation per part, <prefix><intent> = that intent's value-marker (the
# intent name is a DNS label, so it fits the 63-character name part of an annotation key)
ANNOTATION_PART_MARKER_PREFIX: Final = "parts." + PREFIX
# on an existing Secret: "import my value into this intent" (source.existingSecret; set by a person, never by us)
ANNOTATION_ADOPT: Final = PREFIX + "adopt"
# on retired bootstrap Secrets
ANNOTATION_CONSUMED: Final = PREFIX + "consumed"
ANNOTATION_AUTHORITY: Final = PREFIX + "authority"
ANNOTATION_HANDED_OVER_TO: Final = PREFIX + "handed-over-to"
# on workloads' pod templates (a rollout restart)
ANNOTATION_RESTARTED_AT: Final = PREFIX + "restartedAt"
ANNOTATION_RESTART_BATCH: Final = PREFIX + "restart-batch"
# on SecretIntents: the annotation trigger
ANNOTATION_ROTATE: Final = PREFIX + "rotate"
# on SecretIntents: rotator selection and its settings
ANNOTATION_ROTATOR: Final = PREFIX + "rotator"
ANNOTATION_X509_DNS_NAMES: Final = PREFIX + "x509-dns-names"
ANNOTATION_X509_PKI_MOUNT: Final = PREFIX + "x509-pki-mount"
ANNOTATION_X509_PKI_ROLE: Final = PREFIX + "x509-pki-role"
ANNOTATION_X509_TTL: Final = PREFIX + "x509-ttl"
# on the unseal-material Secret
ANNOTATION_SEAL_STATE: Final = PREFIX + "state"  # pending (placeholder, before init) | sealed (holds the shares)
ANNOTATION_UNSEAL_SHARES: Final = PREFIX + "unseal-shares"
ANNOTATION_UNSEAL_THRESHOLD: Final = PREFIX + "unseal-threshold"
ANNOTATION_RECIPIENTS: Final = PREFIX + "recipients-sha256"
ANNOTATION_INITIALIZED_AT: Final = PREFIX + "initialized-at"
ANNOTATION_ROOT_REVOKED_AT: Final = PREFIX + "root-token-revoked-at"
ANNOTATION_KEY_GENERATION: Final = PREFIX + "key-generation"
ANNOTATION_REKEYED_AT: Final = PREFIX + "rekeyed-at"
ANNOTATION_NEXT_THRESHOLD: Final = PREFIX + "next-unseal-threshold"
ANNOTATION_INIT_RECORDED: Final = PREFIX + "init-recorded"
ANNOTATION_VAULT_ADDRESS: Final = PREFIX + "vault-address"
# the demo's own marks on lab objects
ANNOTATION_DEMO_REVALIDATE: Final = PREFIX + "demo-revalidate"

# --------------------------------------------------------------------------------------------------- the authority

# The file audit device chamberlain manages (Vault: enabled through sys/audit) or expects declared in the server's
# configuration file (OpenBao); the lab declares it under the same name.
AUDIT_DEVICE_PATH: Final = "chamberlain-file"
AUDIT_DEVICE_DESCRIPTION: Final = "chamberlain: file audit device"

# --------------------------------------------------------------------------------------------------- other projects'

ESO_FORCE_SYNC: Final = "force-sync"  # ESO reconciles an ExternalSecret whose annotations changed
# ESO's PushSecret (Vault provider) marks what it pushed with this custom_metadata entry and refuses to push over a
# secret that lacks it: chamberlain never creates an internal path, and keeps the entry when it merges metadata.
ESO_PUSH_MANAGED_BY: Final = "managed-by"
ESO_PUSH_MANAGER: Final = "external-secrets"
ARGOCD_SYNC_WAVE: Final = "argocd.argoproj.io/sync-wave"
ARGOCD_SYNC_OPTIONS: Final = "argocd.argoproj.io/sync-options"
ARGOCD_PRUNE_FALSE: Final = "Prune=false"
ARGOCD_COMPARE_OPTIONS: Final = "argocd.argoproj.io/compare-options"
ARGOCD_IGNORE_EXTRANEOUS: Final = "IgnoreExtraneous"
ARGOCD_TRACKING_ID: Final = "argocd.argoproj.io/tracking-id"  # <app>:<group>/<kind>:<namespace>/<name>
ARGOCD_INSTANCE_LABEL: Final = "app.kubernetes.io/instance"  # Argo CD's label tracking: the application's name
FLUX_NAME_LABEL: Final = "kustomize.toolkit.fluxcd.io/name"  # the Flux Kustomization that applied the object
FLUX_NAMESPACE_LABEL: Final = "kustomize.toolkit.fluxcd.io/namespace"
FLUX_RECONCILE: Final = "kustomize.toolkit.fluxcd.io/reconcile"  # "disabled": Flux never applies it again
FLUX_PRUNE: Final = "kustomize.toolkit.fluxcd.io/prune"  # "disabled": Flux never garbage-collects it
FLUX_DISABLED: Final = "disabled"
# stakater Reloader: rolls a workload when a Secret it reads changes. On a restart target it would roll the workload a
# second time after chamberlain's restart, so propagation leaves such a workload to Reloader (and plan reports it).
RELOADER_AUTO: Final = "reloader.stakater.com/auto"  # "true": any Secret or ConfigMap the pod spec references
RELOADER_SECRET_AUTO: Final = "secret.reloader.stakater.com/auto"  # noqa: S105 - "true": any Secret it references
RELOADER_SECRET_RELOAD: Final = "secret.reloader.stakater.com/reload"  # noqa: S105 - comma-separated Secret names
RELOADER_SEARCH: Final = "reloader.stakater.com/search"  # "true": Secrets annotated with RELOADER_MATCH
RELOADER_MATCH: Final = "reloader.stakater.com/match"  # "true" on a Secret that search-mode workloads follow

# ------------------------------------------------------------------------------------------- platform namespaces

# Namespaces of Kubernetes itself and of the platform components chamberlain works with. Which of them are
# protected, and when, is decided in chamberlain.intent.tenancy (the Secrets those components own are listed there).
SYSTEM_NAMESPACES: Final = ("kube-system", "kube-public", "kube-node-lease")
ESO_NAMESPACES: Final = ("external-secrets", "external-secrets-system")
GITOPS_NAMESPACES: Final = ("flux-system", "argocd")
# Namespaces of the cluster's issuers of identity (a CA key there mints certificates for anything).
ISSUER_NAMESPACES: Final = ("cert-manager", "istio-system", "linkerd")
