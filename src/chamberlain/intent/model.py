"""Pydantic models of the intent kinds: Platform, RotationPolicy and SecretIntent (SPEC §9, a contract).

Field names are the camelCase names of the contract (via an alias generator); Python code uses snake_case.
Unknown fields are errors everywhere. The models check shape and local rules only; rules that need the whole
repository (unknown environments, duplicate paths, ...) live in :mod:`chamberlain.checks`.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)
from pydantic.alias_generators import to_camel

from chamberlain.intent.durations import Duration

API_VERSION = "chamberlain.dev/v1alpha1"  # the chamberlain.dev API, spelled here only (and in the Literals below)
GROUP = "chamberlain.dev"
VERSION = "v1alpha1"
# The plural resource names the API server serves the kinds under (the CRDs say the same).
PLATFORMS, ROTATION_POLICIES, SECRET_INTENTS = "platforms", "rotationpolicies", "secretintents"
ROTATION_RUNS, ROTATION_RUN_KIND = "rotationruns", "RotationRun"  # written by the controller only

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a regex, not a password

# A DNS-1123 label: safe as a Kubernetes name and as one Vault path segment (no '/', no '..').
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]
# Kubernetes object names such as Secrets and Deployments may be DNS-1123 subdomains.
DnsSubdomain = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
SecretKey = Annotated[str, StringConstraints(pattern=SECRET_KEY_PATTERN, max_length=253)]
NonEmptyText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1024)]


class Model(BaseModel):
    """Base of every intent model: camelCase on the wire, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


# Kubernetes' own syntax of label and annotation keys ([prefix/]name) and label values. An object that breaks it is
# refused by the API server, and with it the whole apply it is part of: one team's label would stop every team's
# intents of a cluster (the cluster's intents are applied together).
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_KEY_PREFIX = re.compile(DNS_SUBDOMAIN_PATTERN.strip("^$"))
MAX_ANNOTATIONS_BYTES = 256 * 1024  # the API server's limit on all annotations of an object together


def _key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _KEY_PREFIX.fullmatch(prefix)):
        return "its prefix before '/' is not a DNS subdomain (lowercase, at most 253 characters)"
    if not _QUALIFIED_NAME.fullmatch(name):
        return ("its name is not at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or "
                "digit")
    return None


class ObjectMeta(Model):
    """The part of Kubernetes ObjectMeta that intent files may carry."""

    # Fields the API server adds are tolerated so the controller can read the same objects back from a cluster.
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: DnsLabel
    namespace: DnsLabel | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kubernetes_would_accept(self) -> ObjectMeta:
        for key, value in self.labels.items():
            problem = _key_problem(key)
            if problem is not None:
                raise ValueError(f"label key {key!r} is not a Kubernetes label key: {problem}; the API server "
                                 "would refuse the object, and the cluster's apply with it")
            if not _LABEL_VALUE.fullmatch(value):
                raise ValueError(f"the value of label {key!r} is not a Kubernetes label value (empty, or at most 63 "
                                 "letters, digits, '-', '_' or '.', starting and ending with a letter or digit); "
                                 "the API server would refuse the object, and the cluster's apply with it")
        size = 0
        for key, value in self.annotations.items():
            problem = _key_problem(key.lower())  # the API server lowers annotation keys first: case does not matter
            if problem is not None:
                raise ValueError(f"annotation key {key!r} is not a Kubernetes annotation key: {problem}; the API "
                                 "server would refuse the object, and the cluster's apply with it")
            size += len(key.encode()) + len(value.encode())
        if size > MAX_ANNOTATIONS_BYTES:
            raise ValueError(f"the annotations hold {size} bytes, over Kubernetes' {MAX_ANNOTATIONS_BYTES} per object; "
                             "the API server would refuse the object, and the cluster's apply with it")
        return self


# --------------------------------------------------------------------------------------------------- Platform


class Environment(Model):
    name: DnsLabel
    clusters: list[DnsLabel] = Field(min_length=1)
    ephemeral: bool = False
    rotation_cluster: DnsLabel | None = Field(
        default=None, description="the cluster whose controller rotates the environment's runtime secrets (the "
                                  "others follow: they restart their own consumers); default: the first cluster")

    @model_validator(mode="after")
    def _rotation_cluster_is_listed(self) -> Environment:
        if self.rotation_cluster is not None and self.rotation_cluster not in self.clusters:
            raise ValueError(f"rotationCluster {self.rotation_cluster!r} is not one of the environment's clusters "
                             f"({', '.join(self.clusters)})")
        return self

    @property
    def rotating_cluster(self) -> str:
        """The cluster whose controller rotates this environment's runtime secrets."""
        return self.rotation_cluster or self.clusters[0]


class Mounts(Model):
    runtime: DnsLabel = "secret"
    internal_data: DnsLabel = "platform-data"
    internal_config: DnsLabel = "platform-config"


#: How the authority is unsealed: ``shamir`` (people with their shares, the default) or an auto-unseal seal, which
#: the authority's own server configuration declares (``seal "<type>" {...}``; chamberlain never writes it).
SealType = Literal["shamir", "transit", "awskms", "gcpckms", "azurekeyvault", "pkcs11"]
SEAL_TYPES: tuple[str, ...] = get_args(SealType)


class Seal(Model):
    """The authority's seal, as its server is configured. With an auto-unseal seal the server unseals itself at
    every start; ``authority init`` then issues *recovery* keys (sealed to the custodians like unseal shares),
    which generate-root and a recovery-key rekey need, and which can never unseal."""

    type: SealType = "shamir"

    @property
    def auto_unseal(self) -> bool:
        return self.type != "shamir"


class Authority(Model):
    address: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(:\d+)?/?$")]
    seal: Seal = Field(default_factory=Seal, description="how the authority is unsealed: shamir (default) or an "
                                                         "auto-unseal seal (transit, awskms, gcpckms, "
                                                         "azurekeyvault, pkcs11)")
    mounts: Mounts = Field(default_factory=Mounts)
    kubernetes_auth_mount: DnsLabel = Field(
        default="kubernetes", description="Vault auth mount of the Kubernetes auth method"
    )
    ca_bundle: Annotated[str, StringConstraints(pattern=r"^-----BEGIN CERTIFICATE-----")] | None = Field(
        default=None,
        description="PEM of the CA that signed the authority's TLS certificate (public); given to ESO's stores",
    )


AgeRecipient = Annotated[str, StringConstraints(pattern=r"^age1[0-9a-z]{50,}$")]
# Where a rendered tree sits inside the Git repository the GitOps controller reads: relative, no '..', no '//'.
_GIT_SEGMENT = r"[A-Za-z0-9_][-A-Za-z0-9_.]*"
GitPath = Annotated[str, StringConstraints(pattern=rf"^\.$|^(\./)?{_GIT_SEGMENT}(/{_GIT_SEGMENT})*/?$", max_length=512)]


class Custodian(Model):
    """A person (or a sealed envelope's keeper) who holds exactly one unseal share, encrypted to their recipient."""

    name: DnsLabel
    age_recipient: AgeRecipient


class Custody(Model):
    """Who holds the authority's unseal (or recovery) shares: one share per custodian, ``threshold`` of them
    unseal, generate a root token or rekey. Declared here, so the share count and threshold are not
    command-line flags (SPEC §6)."""

    threshold: int = Field(ge=1, le=16)
    custodians: list[Custodian] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _consistent(self) -> Custody:
        if self.threshold > len(self.custodians):
            raise ValueError(f"threshold {self.threshold} exceeds the {len(self.custodians)} custodians")
        names = [c.name for c in self.custodians]
        recipients = [c.age_recipient for c in self.custodians]
        if len(set(names)) != len(names):
            raise ValueError("custodian names must be unique")
        if len(set(recipients)) != len(recipients):
            raise ValueError("each custodian needs their own age recipient (one identity opening two shares "
                             "would lower the threshold)")
        return self


class RootOfTrust(Model):
    age_recipients: list[AgeRecipient] = Field(
        min_length=1, description="public age recipients only; identities never live in Git"
    )
    custody: Custody | None = Field(
        default=None, description="the custodians of the unseal shares and the threshold; each share is "
                                  "encrypted to exactly one custodian",
    )


class GitOps(Model):
    """How the GitOps controller (Flux, Argo CD) of each cluster reads the rendered output and decrypts bootstrap
    files. Its age keys are recipients of their own: they open bootstrap files, never an unseal share."""

    path: GitPath = Field(
        default=".", description="where the rendered tree is committed in the GitOps repository (Flux paths)"
    )
    decryption_recipients: dict[DnsLabel, list[AgeRecipient]] = Field(
        default_factory=dict,
        description="per cluster: the public age recipient(s) of the in-cluster key the GitOps controller "
        "decrypts bootstrap files with; bootstrap files are encrypted to the root recipients plus these",
    )


# A repository path pattern (relative to the intent root, '/'-separated, '*' within a segment, '**' across; no
# segment starts with '.', so no '..'). A leading '/' is accepted as in CODEOWNERS: patterns are always anchored at
# the intent root.
RepoPathPattern = Annotated[
    str, StringConstraints(pattern=r"^/?[A-Za-z0-9_*-][A-Za-z0-9_.*-]*(/[A-Za-z0-9_*-][A-Za-z0-9_.*-]*)*/?$",
                           max_length=512)
]
# A CODEOWNERS owner: @user, @org/team or an e-mail address.
# <mount>/<role> of a Vault PKI role; '*' matches within one segment, as in owners' paths.
PkiRolePattern = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_*-][A-Za-z0-9_.*-]*(/[A-Za-z0-9_*-][A-Za-z0-9_.*-]*)+$",
                           max_length=512)
]
Reviewer = Annotated[
    str, StringConstraints(pattern=r"^(@[A-Za-z0-9][-A-Za-z0-9_]*(/[-A-Za-z0-9_.]+)?|[^@\s]+@[^@\s]+)$",
                           max_length=256)
]


class Owner(Model):
    """A team: the namespaces it holds and the repository paths its intents may live in (Git review decides who
    writes there, so ``spec.owner`` is checked against the path, not trusted)."""

    name: DnsLabel
    namespaces: list[DnsLabel] = Field(default_factory=list, description="namespaces this owner holds")
    paths: list[RepoPathPattern] = Field(
        default_factory=list, description="repository paths (globs) where this owner's intents may be written")
    reviewers: list[Reviewer] = Field(default_factory=list, description="CODEOWNERS of those paths")
    accepts_from: list[DnsLabel] = Field(
        default_factory=list,
        description="owners whose intents may write consumer Secrets into this owner's namespaces (each such "
                    "cross-owner edge is explicit here and shown in the inventory)",
    )
    accepts_publishing_from: list[DnsLabel] = Field(
        default_factory=list,
        description="owners whose intents may publish (PushSecret) Secrets of this owner's namespaces into their "
                    "own path, e.g. the app team of a database operator running here; acceptsFrom alone lets "
                    "them write into the namespace, not carry its Secrets away (CH125)",
    )
    pki_roles: list[PkiRolePattern] = Field(
        default_factory=list,
        description="the Vault PKI roles (<mount>/<role>, '*' within a segment) this owner's x509-vault-pki "
                    "intents may have certificates signed with (CH131): a role decides which names a certificate "
                    "may carry, so another team's role would sign certificates for that team's names",
    )


class Tenancy(Model):
    """Which owner holds which namespaces and paths. Declaring it turns the tenancy warnings into errors."""

    platform_owners: list[DnsLabel] = Field(
        min_length=1, description="owners allowed to write into protected namespaces; they review the Platform")
    protected_namespaces: list[DnsLabel] = Field(
        default_factory=list,
        description="platform-only namespaces in addition to the built-in ones (kube-system, the controller's, "
                    "the GitOps controller's, the authority's, ESO's)",
    )
    owners: list[Owner] = Field(min_length=1)

    def owner(self, name: str) -> Owner | None:
        return next((o for o in self.owners if o.name == name), None)


class Limits(Model):
    """Platform-wide floors that no intent can go below."""

    minimum_ttl: Duration | None = Field(
        default=None, description="the shortest rotation ttl an intent may declare")
    trigger_interval: Duration | None = Field(
        default=None, description="the least time between two triggered rotations of one secret (webhook, "
                                  "annotation, manual); default 1m")


class PlatformDefaults(Model):
    rotation_policy: DnsLabel | None = None


class ControllerSettings(Model):
    """Where chamberlain's own orchestrator runs in each cluster."""

    namespace: DnsLabel = "chamberlain-system"
    service_account: DnsLabel = "chamberlain"


class PlatformSpec(Model):
    environments: list[Environment] = Field(min_length=1)
    authority: Authority
    root_of_trust: RootOfTrust
    defaults: PlatformDefaults = Field(default_factory=PlatformDefaults)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    gitops: GitOps = Field(default_factory=GitOps)
    tenancy: Tenancy | None = None
    limits: Limits = Field(default_factory=Limits)


class Platform(Model):
    api_version: Literal["chamberlain.dev/v1alpha1"]
    kind: Literal["Platform"]
    metadata: ObjectMeta
    spec: PlatformSpec

    def environment(self, name: str) -> Environment | None:
        return next((e for e in self.spec.environments if e.name == name), None)


# --------------------------------------------------------------------------------------------------- RotationPolicy

RotationType = Literal["static", "time-based", "event-based"]
FailureStrategy = Literal["retry", "alert", "hold"]


class RotationPolicySpec(Model):
    type: RotationType
    ttl: Duration | None = None
    rotate_before: Duration | None = None
    revoke_old: bool = True
    max_overlap: Duration | None = None
    failure_strategy: FailureStrategy = "retry"

    @model_validator(mode="after")
    def _time_based_needs_ttl(self) -> RotationPolicySpec:
        if self.type == "time-based" and self.ttl is None:
            raise ValueError("a time-based policy needs a ttl")
        return self


class RotationPolicy(Model):
    api_version: Literal["chamberlain.dev/v1alpha1"]
    kind: Literal["RotationPolicy"]
    metadata: ObjectMeta
    spec: RotationPolicySpec


# --------------------------------------------------------------------------------------------------- SecretIntent

Classification = Literal["bootstrap", "runtime", "derived", "config"]


class PasswordGenerator(Model):
    type: Literal["password"]
    length: int = Field(default=32, ge=8, le=1024)
    lowercase: bool = True
    uppercase: bool = True
    digits: bool = True
    symbols: bool = False
    min_each: int = Field(default=1, ge=0, le=64, description="minimum count from every enabled class")


class TokenGenerator(Model):
    type: Literal["token"]
    bytes: int = Field(default=32, ge=16, le=1024)
    encoding: Literal["hex", "base64url"] = "base64url"


class BytesGenerator(Model):
    type: Literal["bytes"]
    length: int = Field(default=32, ge=1, le=65536)
    encoding: Literal["base64", "hex"] = "base64"


class Ed25519Generator(Model):
    type: Literal["ed25519"]


class EcdsaGenerator(Model):
    type: Literal["ecdsa"]
    curve: Literal["P-256", "P-384", "P-521"] = "P-256"


class RsaGenerator(Model):
    type: Literal["rsa"]
    bits: Literal[2048, 3072, 4096] = 3072


class FixedNameGenerator(Model):
    """A declared, non-secret value such as a user name."""

    type: Literal["fixed-name"]
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.@-]{0,62}$")]


# The generator union, declared once: the values, the rotators and the loader's error messages all derive from it.
AnyGenerator = (
    PasswordGenerator | TokenGenerator | BytesGenerator | Ed25519Generator | EcdsaGenerator | RsaGenerator
    | FixedNameGenerator
)
Generator = Annotated[AnyGenerator, Field(discriminator="type")]
RANDOM_GENERATORS: tuple[type[AnyGenerator], ...] = (PasswordGenerator, TokenGenerator, BytesGenerator)
KEYPAIR_GENERATORS: tuple[type[AnyGenerator], ...] = (Ed25519Generator, EcdsaGenerator, RsaGenerator)
GENERATOR_TYPES: tuple[str, ...] = tuple(
    get_args(cls.model_fields["type"].annotation)[0] for cls in get_args(AnyGenerator)
)  # the ``type:`` names, in declaration order

AfterHandover = Literal["delete", "inert", "ignore"]


FINGERPRINT_PATTERN = r"^sha256:[0-9a-f]{64}$"


class BootstrapSource(Model):
    file: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    after_handover: AfterHandover = "delete"
    retired_in: list[DnsLabel] = Field(
        default_factory=list,
        description="environments whose GitOps no longer applies the bootstrap Secret: Git declares the "
                    "retirement, handover then consumes it (docs/design/gitops-retirement.md)",
    )
    retired_fingerprint: Annotated[str, StringConstraints(pattern=FINGERPRINT_PATTERN)] | None = Field(
        default=None,
        description="sha256 of the encrypted file without its sops block, when it was retired: a later edit of "
                    "the file is refused (an upstream-issued value goes through `chamberlain import`)",
    )


class PublicationSource(Model):
    namespace: DnsLabel = Field(description="the producer namespace, where the operator writes the Secret")
    secret_name: DnsSubdomain
    keys: list[SecretKey] | None = Field(default=None, description="keys to publish; default: all")




class ExistingSecretSource(Model):
    """A value that already lives in a cluster Secret, imported once into the intent's runtime path by
    ``chamberlain adopt verify`` (in memory, as a handover does: never through a file or the output). The Secret
    must carry the annotation ``chamberlain.dev/adopt: <intent-name>``; after the import the authority owns the
    value and it is never regenerated (docs/adoption-import.md)."""

    namespace: DnsLabel = Field(description="the namespace of the existing Secret")
    secret_name: DnsSubdomain
    keys: list[SecretKey] | None = Field(
        default=None, description="the keys to import (required, CH120): only these leave the Secret")


class Source(Model):
    """Exactly one of ``generate``, ``bootstrap``, ``publication`` or ``existingSecret``."""

    model_config = ConfigDict(
        **Model.model_config,
        json_schema_extra={
            "oneOf": [{"required": ["generate"]}, {"required": ["bootstrap"]}, {"required": ["publication"]},
                      {"required": ["existingSecret"]}]
        },
    )

    generate: dict[SecretKey, Generator] | None = Field(default=None, min_length=1)
    bootstrap: BootstrapSource | None = None
    publication: PublicationSource | None = None
    existing_secret: ExistingSecretSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        given = [n for n in ("generate", "bootstrap", "publication", "existing_secret")
                 if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "source needs exactly one of generate, bootstrap, publication or existingSecret"
                + (f" (got {', '.join(to_camel(g) for g in given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> Literal["generate", "bootstrap", "publication", "existingSecret"]:
        if self.generate is not None:
            return "generate"
        if self.bootstrap is not None:
            return "bootstrap"
        if self.existing_secret is not None:
            return "existingSecret"
        return "publication"


PemCertificates = Annotated[str, StringConstraints(pattern=r"^-----BEGIN CERTIFICATE-----", max_length=65536)]


class PostgresTls(Model):
    """How chamberlain's rotator connects to the database: ``verify-full`` (the default) checks the server's
    certificate and host name against ``caBundle`` (or the system trust store); ``disable`` is for the lab only and
    is reported by validate."""

    mode: Literal["verify-full", "disable"] = "verify-full"
    ca_bundle: PemCertificates | None = None


class PostgresTarget(Model):
    host: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.-]{1,253}$")]
    port: int = Field(default=5432, ge=1, le=65535)
    role: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    database: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")] = "postgres"
    admin_intent: DnsLabel
    strategy: Literal["single-user", "alternating"] = "single-user"
    tls: PostgresTls = Field(default_factory=PostgresTls)


class Target(Model):
    """The system a secret authenticates to; rotation sets the new value there first."""

    postgres: PostgresTarget


class RotationRef(Model):
    policy: DnsLabel


def _rotation_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "ref" if "policy" in value else "inline"
    return "ref" if isinstance(value, RotationRef) else "inline"


RotationSetting = Annotated[
    Annotated[RotationRef, Tag("ref")] | Annotated[RotationPolicySpec, Tag("inline")],
    Discriminator(_rotation_tag),
]

WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]


class WorkloadRef(Model):
    kind: WorkloadKind
    name: DnsSubdomain


# A templated consumer's value text (chamberlain.intent.templates parses it; validate reports CH115).
TemplateText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Consumer(Model):
    namespace: DnsLabel
    secret_name: DnsSubdomain
    keys: dict[SecretKey, SecretKey] | None = Field(
        default=None, description="key in the Kubernetes Secret -> key of the intent; default: all keys as-is"
    )
    template: dict[SecretKey, TemplateText] | None = Field(
        default=None, min_length=1,
        description="key in the Kubernetes Secret -> text with references {intent.key} to keys of this or other "
                    "intents (each must also declare this namespace as a consumer); instead of keys "
                    "(chamberlain.intent.templates)",
    )
    restart: list[WorkloadRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys_or_template(self) -> Consumer:
        if self.keys is not None and self.template is not None:
            raise ValueError("a consumer has keys or template, not both (a template can copy a key: "
                             "'{intent.key}')")
        return self


HostPattern = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.*-]{1,253}$")]
RolePattern = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_*][A-Za-z0-9_*]{0,62}$")]


class AdminTarget(Model):
    """Where an admin credential may be sent: host and port (globs with '*'), and the roles it may change."""

    host: HostPattern
    port: int = Field(default=5432, ge=1, le=65535)
    roles: list[RolePattern] = Field(min_length=1)


class AdminUse(Model):
    """Declared on an intent that holds an admin credential (named by other intents' ``target.*.adminIntent``):
    which owners may use it and which targets it may be sent to."""

    granted_to: list[DnsLabel] = Field(default_factory=list, description="owners other than this intent's own")
    targets: list[AdminTarget] = Field(default_factory=list)


MIN_UNDO_WINDOW = timedelta(days=1)


class Retire(Model):
    """Decommissioning declared in Git (issue 13): until ``after`` consumers are warned (status condition
    ``Retiring``, Events); from ``after`` (00:00 UTC of that day) ``chamberlain retire`` soft-deletes the data in
    the authority, undoable for ``undoWindow``; after that window it removes every version and the metadata."""

    after: date = Field(description="the day (UTC) the data is soft-deleted; consumers are warned until then")
    undo_window: Duration = Field(default=timedelta(days=30),
                                  description="how long `chamberlain retire --undo NAME` can restore the data")
    reason: NonEmptyText | None = Field(default=None, description="why it is retired (shown in Events, the ledger)")

    @model_validator(mode="after")
    def _undo_window_is_a_window(self) -> Retire:
        # undoWindow 0s (with a past `after`) made one `chamberlain retire` run soft-delete and purge at once:
        # the data gone for good, with no undo. A day at least, the granularity of `after`.
        if self.undo_window < MIN_UNDO_WINDOW:
            raise ValueError(f"undoWindow must be at least {MIN_UNDO_WINDOW.days}d (the time to notice and "
                             "`chamberlain retire --undo` a mistaken retirement)")
        return self


class SecretIntentSpec(Model):
    owner: DnsLabel
    purpose: NonEmptyText
    classification: Classification
    environments: list[DnsLabel] | None = Field(
        default=None, description="default: every non-ephemeral environment"
    )
    source: Source
    target: Target | None = None
    rotation: RotationSetting | None = None
    consumers: list[Consumer] = Field(default_factory=list)
    admin: AdminUse | None = None
    retire: Retire | None = Field(default=None, description="decommissioning: warn consumers until a day, then "
                                                            "soft-delete the data (docs/decommissioning.md)")
    property_names: dict[SecretKey, SecretKey] = Field(
        default_factory=dict,
        description="declared deviations from the property-name convention: key of this intent -> the "
                    "conventional name it stands for (or the key itself: not the conventional property) (CH119)",
    )


class SecretIntent(Model):
    api_version: Literal["chamberlain.dev/v1alpha1"]
    kind: Literal["SecretIntent"]
    metadata: ObjectMeta
    spec: SecretIntentSpec

    @property
    def name(self) -> str:
        return self.metadata.name


IntentObject = Platform | RotationPolicy | SecretIntent
KINDS: dict[str, type[Platform] | type[RotationPolicy] | type[SecretIntent]] = {
    "Platform": Platform,
    "RotationPolicy": RotationPolicy,
    "SecretIntent": SecretIntent,
}
