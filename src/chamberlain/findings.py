"""Findings and the catalogue of rules that produce them.

A *rule* is a stable id (``CH021``), a short slug, the invariant it protects and a description. A *finding* is
one violation: rule, file, line (where known) and a message. Messages name things, never secret values.

This module is pure data; the checks themselves live in :mod:`chamberlain.checks`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Rule:
    id: str
    slug: str
    invariant: str
    description: str
    severity: Severity = "error"


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int | None
    rule: str
    message: str
    column: int | None = field(default=None, compare=False)
    object: str | None = field(default=None, compare=False)
    # What the finding is about inside its object (a key, an environment), when the object alone does not say:
    # with rule, file, line and object it identifies the finding across runs (SARIF fingerprints), never the message.
    subject: str | None = field(default=None, compare=False)

    @property
    def rule_info(self) -> Rule:
        return RULES[self.rule]

    @property
    def severity(self) -> Severity:
        return RULES[self.rule].severity

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.file, self.line or 0, self.rule, self.message)


INV1 = "Inv. 1: Git is sufficient for reconstruction"
INV2 = "Inv. 2: bootstrap secrets are temporary, encrypted scaffolding"
INV3 = "Inv. 3: rotation never requires a Git change"
INV4 = "Inv. 4: one authority per secret; transfers are explicit"
INV6 = "Inv. 6: no hidden control planes"
INV7 = "Inv. 7: internal secrets traverse Vault"
INV8 = "Inv. 8: configuration is kept apart from secrets"
ROT = "Rotation invariants: policy is declared and evaluable"
LEAST = "Security model: least privilege scoped by namespace and path"
CUSTODY = "Security model: each unseal share to exactly one custodian, k of them needed"
TLS = "Security model: secrets and tokens cross the network only over verified TLS"
TENANCY = "Tenancy: an intent reaches only what its owner holds, never the platform's own secrets"

# A table, not code: one rule per row, alike on purpose (the duplicate finder pairs its rows).
_RULES = [
    Rule("CH001", "yaml-syntax", INV1, "A YAML file cannot be parsed (syntax error, not UTF-8)."),
    Rule("CH002", "resource-limit", INV1,
         "A file is too large, too deeply nested, or expands through aliases (YAML bomb); it is not trusted."),
    Rule("CH003", "schema", INV1, "An intent object does not match the schema (unknown field, wrong type, "
         "missing field, bad enum value)."),
    Rule("CH004", "owner-purpose", INV1, "A SecretIntent must say who owns it and why it exists."),
    Rule("CH005", "duration", ROT, "A duration is malformed; use a number with s, m, h, d or w."),
    Rule("CH006", "name", LEAST,
         "A name is not DNS-1123 or could escape its Vault path or Kubernetes scope."),
    Rule("CH007", "platform-count", INV1, "An intent repository has exactly one Platform."),
    Rule("CH008", "duplicate-object", INV4, "Two objects of the same kind share a name."),
    Rule("CH009", "publication-keys-undeclared", INV1,
         "A consumer maps keys of a publication that declares none (source.publication.keys), so the keys it "
         "names cannot be checked.", "warning"),
    Rule("CH010", "unknown-environment", INV1, "An intent names an environment the Platform does not declare."),
    Rule("CH011", "unknown-policy", ROT, "A rotation policy reference does not resolve."),
    Rule("CH012", "restart-kind", INV1, "A consumer restart names a kind other than Deployment, StatefulSet or "
         "DaemonSet."),
    Rule("CH013", "rotate-before-ttl", ROT, "rotateBefore must be shorter than ttl, or rotation is always due."),
    Rule("CH014", "unknown-intent", INV1, "A reference to another SecretIntent does not resolve."),
    Rule("CH015", "classification-source", INV4,
         "classification and source disagree (bootstrap needs source.bootstrap, runtime needs "
         "source.generate or source.existingSecret, derived/config need source.publication)."),
    Rule("CH016", "unknown-cluster", INV1,
         "spec.gitops names a cluster that no environment of the Platform declares."),
    Rule("CH017", "gitops-recipient-is-root", INV2,
         "A GitOps decryption recipient is one of the root recipients: the in-cluster key would open unseal "
         "shares; give each cluster's GitOps controller a key of its own."),
    Rule("CH018", "gitops-recipient-missing", INV2,
         "The Platform declares GitOps decryption recipients, but not for a cluster that applies bootstrap files: "
         "its GitOps controller would need the offline root identity in-cluster.", severity="warning"),
    Rule("CH019", "unknown-consumer-key", INV1,
         "A consumer's keys map names a key its intent's source does not have; the ExternalSecret could never "
         "be fulfilled."),
    Rule("CH020", "literal-secret", INV1, "A literal secret value is in intent or in a plaintext Secret manifest; "
         "Git holds intent, never runtime values."),
    Rule("CH021", "bootstrap-plaintext", INV2, "A bootstrap file is not SOPS-encrypted."),
    Rule("CH022", "bootstrap-recipients", INV2,
         "A SOPS file is not encrypted to exactly the Platform's age recipients."),
    Rule("CH023", "sops-structure", INV2,
         "A SOPS file has an unencrypted value, no MAC, or malformed SOPS metadata."),
    Rule("CH024", "credential-in-repo", INV1,
         "A high-entropy or credential-looking string is in the repository."),
    Rule("CH025", "bootstrap-file", INV2,
         "A bootstrap file is missing, escapes the repository, or is not a single Kubernetes Secret."),
    Rule("CH026", "retired-unknown-environment", INV2,
         "source.bootstrap.retiredIn names an environment the intent does not exist in."),
    Rule("CH027", "retired-without-fingerprint", INV2,
         "source.bootstrap.retiredIn without retiredFingerprint: a later change of the file cannot be detected.",
         "warning"),
    Rule("CH028", "bootstrap-changed-after-retirement", INV4,
         "A bootstrap file changed after its retirement; an upstream-issued value goes through "
         "`chamberlain import NAME`, never back through Git."),
    Rule("CH029", "retirement-misplaced", INV2,
         "retiredIn/retiredFingerprint outside spec.source.bootstrap: only a bootstrap file is retired."),
    Rule("CH030", "workload-uses-bootstrap", INV2,
         "A workload mounts or references a bootstrap Secret directly; bootstrap secrets are never consumed "
         "by applications."),
    Rule("CH040", "mirror-annotation", INV7,
         "A mirror/reflector/replicator annotation copies a Secret across namespaces."),
    Rule("CH041", "eso-kubernetes-provider", INV7,
         "An ESO SecretStore/ClusterSecretStore uses the kubernetes provider to copy Secrets across namespaces."),
    Rule("CH070", "protected-consumer", TENANCY,
         "A consumer or bootstrap Secret lands in a protected namespace (chamberlain's, kube-*, the authority's, "
         "ESO's), on a Secret a platform component owns, or on a bootstrap Secret: ESO would take it over."),
    Rule("CH071", "protected-publication", TENANCY,
         "A publication reads a Secret from a protected namespace, one a platform component owns (a GitOps "
         "credential, a database superuser), or a bootstrap Secret: anyone consuming the intent would read it."),
    Rule("CH072", "superuser-target-role", TENANCY,
         "A rotation's target role is a superuser or reserved role, the admin itself, or another admin intent's "
         "user: rotating it would take the database over."),
    Rule("CH073", "postgres-tls-disabled", TLS,
         "target.postgres.tls.mode is disable: passwords cross the network in clear (lab only).", "warning"),
    Rule("CH074", "rotate-annotation-in-git", INV3,
         "The rotate annotation is committed in Git; GitOps would re-apply it after every rotation."),
    Rule("CH075", "restart-not-consumer", TENANCY,
         "A restart target's manifest in the repository does not reference the consumer Secret that restarts it: "
         "restarts happen only where the intent is consumed."),
    Rule("CH076", "insecure-authority-address", TLS,
         "The authority address is http:// to a host that is not loopback, or carries user information."),
    Rule("CH077", "ttl-below-floor", ROT,
         "A rotation ttl (or ttl - rotateBefore) is below the Platform's limits.minimumTtl, or below 1m when "
         "none is declared."),
    Rule("CH078", "duplicate-target", INV4,
         "Two intents rotate the same database role on the same host and port: two authorities for one "
         "credential."),
    Rule("CH079", "short-ttl", ROT,
         "A rotation ttl below 1h while the Platform declares no limits.minimumTtl.", "warning"),
    Rule("CH080", "intent-outside-owner-paths", TENANCY,
         "With spec.tenancy: an intent's owner is not declared, or its file lies outside that owner's paths."),
    Rule("CH081", "namespace-not-held", TENANCY,
         "With spec.tenancy: a consumer, publication, restart or bootstrap Secret is in a namespace its owner "
         "does not hold and whose holder does not accept it (protected namespaces: platform owners only)."),
    Rule("CH082", "tenancy-declaration", TENANCY,
         "spec.tenancy is inconsistent: a namespace held twice, an unknown owner named, a built-in protected "
         "namespace held by a team."),
    Rule("CH083", "admin-not-granted", TENANCY,
         "An intent uses another owner's adminIntent that does not list its owner in spec.admin.grantedTo "
         "(enforced with spec.tenancy or a declared spec.admin, and always when the admin intent has consumers)."),
    Rule("CH084", "admin-target-not-declared", TENANCY,
         "An intent sends an admin credential to a host, port or role the admin intent's spec.admin.targets do "
         "not declare (or, with spec.tenancy, the admin intent declares no targets)."),
    Rule("CH085", "admin-undeclared", TENANCY,
         "Without spec.tenancy: an admin intent is used across owners without spec.admin.grantedTo, or declares "
         "no spec.admin.targets.", "warning"),
    Rule("CH050", "shared-mount", INV8, "Runtime, internal-data and internal-config mounts must all differ."),
    Rule("CH051", "config-on-data-mount", INV8,
         "A config intent carries sensitive material or lands on the internal-data mount (or the reverse)."),
    Rule("CH060", "duplicate-materialization", INV4,
         "Two intents materialize the same (namespace, Secret) in one cluster."),
    Rule("CH061", "duplicate-vault-path", INV4, "Two intents own the same Vault path."),
    Rule("CH090", "shares-not-in-custody", CUSTODY,
         "The Platform names several root recipients but no rootOfTrust.custody: every unseal share is sealed to "
         "every root recipient, so each root identity opens them all and the threshold means nothing.", "warning"),
    Rule("CH091", "custodian-key-in-cluster", CUSTODY,
         "A custodian's age recipient is a GitOps decryption recipient: the in-cluster key would open an unseal "
         "share."),
    Rule("CH092", "custody-threshold-one", CUSTODY,
         "Custody with several custodians and threshold 1: any single custodian unseals (and Vault/OpenBao "
         "refuse the layout)."),
    Rule("CH100", "duplicate-key", INV1,
         "A YAML mapping repeats a key; YAML keeps only the last, so a reviewer reads something else than is used."),
    Rule("CH101", "sops-plaintext-rule", INV2,
         "A bootstrap SOPS file leaves values in plaintext by rule (unencrypted_suffix/regex, a narrowed "
         "encrypted_suffix/regex, a key ending in _unencrypted)."),
    Rule("CH102", "credential-in-metadata", INV1,
         "An annotation, label or purpose of a chamberlain object looks like a credential; render copies it into "
         "every cluster."),
    Rule("CH103", "unrenderable", INV1, "An intent render would refuse (a reserved key, x509-vault-pki "
                                        "annotations without a valid role or mount)."),
    Rule("CH104", "rendered-impostor", INV1,
         "A document annotated as render output is not a copy of a source object: it would escape validation."),
    Rule("CH105", "pki-grant", LEAST,
         "PKI annotations name a malformed or wildcard mount/role, a system path, or a mount inside chamberlain's "
         "KV mounts: the orchestrator's sign/revoke grant would reach beyond one PKI role."),
    Rule("CH106", "hidden-intent", INV1,
         "A chamberlain object GitOps would apply but validate does not read as intent: in a JSON file, a List's "
         "items, a template, render output, an ignored file, behind a symbolic link out of the repository, or a "
         "kustomize patch changing more than its environments and metadata."),
    Rule("CH107", "eso-borrowed-identity", INV7,
         "An ESO ClusterSecretStore in the repository logs in as one of chamberlain's identities (a chamberlain.* "
         "Vault role, a chamberlain-* ServiceAccount): every namespace reads what that identity may read."),
    Rule("CH108", "unseal-share-not-sealed", CUSTODY,
         "A share in the unseal-share export (kind UnsealShares) is not armored age ciphertext: Git would hold a "
         "plaintext (or unreadable) unseal share."),
    Rule("CH109", "unseal-export-malformed", CUSTODY,
         "The unseal-share export is malformed (a missing field, a threshold above the share count, a holder "
         "twice): a restore could not use it."),
    Rule("CH110", "unseal-share-extra-reader", CUSTODY,
         "A custodian's share in the unseal-share export opens for more than that custodian (not exactly one "
         "X25519 recipient stanza)."),
    Rule("CH111", "unseal-export-stale", CUSTODY,
         "The unseal-share export is sealed to another custody than the Platform declares, or a second export "
         "names the same authority: refresh it with `chamberlain authority export-shares`.", "warning"),
    Rule("CH115", "template-syntax", INV1,
         "A consumer template does not parse (a brace not doubled, a reference that is not {intent.key}, a control "
         "character), or its literal text carries a credential: Git holds references, never values."),
    Rule("CH116", "template-unknown-reference", INV1,
         "A consumer template names an intent that is not declared, or a key its source does not have (or does not "
         "declare: a publication without keys); the ExternalSecret could never be fulfilled."),
    Rule("CH117", "template-not-granted", TENANCY,
         "A consumer template reads another intent that does not declare the consumer's namespace among its own "
         "consumers: only an intent's own declaration lets its value reach a namespace."),
    Rule("CH118", "template-placement", INV1,
         "A consumer template reads an intent that is not placed in every environment the consumer is: ESO would "
         "find no value there."),
    Rule("CH119", "property-name", INV1,
         "A key of a secret's value is another spelling of a conventional property name (user for username, url "
         "for uri, ...) and spec.propertyNames does not declare it.", "warning"),
    Rule("CH120", "existing-secret-keys", INV4,
         "source.existingSecret declares no keys (only the listed keys leave the Secret), or two intents import "
         "the same Secret (its adopt marker names one intent)."),
    Rule("CH121", "existing-secret-tenancy", TENANCY,
         "source.existingSecret reads a protected namespace or a platform component's Secret, or (with "
         "spec.tenancy) a namespace its owner does not hold."),
    Rule("CH122", "existing-secret-regenerated", INV4,
         "An imported value (source.existingSecret) is never regenerated, but its effective rotation policy is "
         "not static."),
    Rule("CH112", "publication-without-keys", INV7,
         "A publication (source.publication) declares no keys: its PushSecret pushes every key of the producer's "
         "Secret, also keys nobody declared (SPEC §5a: only declared keys leave the producer namespace).",
         "warning"),
    Rule("CH125", "publishing-not-accepted", TENANCY,
         "A publication takes a Secret out of a namespace whose holder accepts the intent's owner in acceptsFrom "
         "(writing consumer Secrets there) but not in acceptsPublishingFrom: a guest accepted to deliver a value "
         "could carry any of the host's Secrets away. Declare the grant on the holder.", "warning"),
    Rule("CH126", "credential-in-history", INV1,
         "A credential was committed to Git history (validate --history), perhaps removed since: every clone keeps "
         "the commit, so rotate it; removing it from Git does not un-leak it."),
    Rule("CH127", "scan-incomplete", INV1,
         "A file was skipped or only partly scanned for credentials (undecodable text, over the size limit); the "
         "reason is given.", "warning"),
    Rule("CH128", "random-looking-string", INV1,
         "A long random-looking string with nothing around it that names a credential (no known provider format, "
         "no password/token/key name): often an id, a digest or ciphertext, sometimes a key. Not blocking; check it, "
         "then accept it in the baseline or mark it 'chamberlain:allow CH128'.", "warning"),
    Rule("CH129", "unshowable-path", TENANCY,
         "A file holding chamberlain objects has a control character, a line separator or a bidirectional override "
         "in its path: owner paths, review and the rendered CODEOWNERS cannot show or match it as it is (a newline "
         "there would forge CODEOWNERS lines)."),
    Rule("CH130", "apiversion-near-miss", INV1,
         "A document looks meant for chamberlain (its apiVersion group is a misspelling of chamberlain.dev, or its "
         "kind is SecretIntent) but its apiVersion is not chamberlain's: it is not read as intent, so nothing checks, "
         "renders or rotates it.", "warning"),
    Rule("CH131", "pki-role-owner", TENANCY,
         "With spec.tenancy, an x509-vault-pki intent names a PKI role its owner is not given (pkiRoles): a role "
         "decides which names a certificate may carry, so another team's role would sign certificates for that "
         "team's names.", "warning"),
    Rule("CH132", "policy-in-team-paths", TENANCY,
         "With spec.tenancy, a RotationPolicy is written in the paths of an owner that is not a platform owner: "
         "the platform owners review the policies every intent may name, and a new one there is first reviewed by "
         "that team.", "warning"),
    Rule("CH113", "same-namespace-distribution", INV7,
         "A derived or config intent has a consumer in its producer namespace: the producer's Secret is already "
         "there (SPEC §5a: a secret used only in its own namespace gets no distribution)."),
]

RULES: dict[str, Rule] = {}
for _rule in _RULES:
    if _rule.id in RULES:  # pragma: no cover - a programming error, caught at import
        raise RuntimeError(f"duplicate rule id {_rule.id}")
    RULES[_rule.id] = _rule


def blocking(findings: Iterable[Finding], *, strict: bool = False) -> list[Finding]:
    """The findings that stop a command: errors, and with ``strict`` warnings too (SPEC §10: a new rule starts as
    a warning, printed but never failing a command on its own)."""
    return [f for f in findings if strict or f.severity == "error"]
