"""The inventory as data: one entry per SecretIntent, answering what exists, who owns it, who depends on it and
when it rotates (SPEC §1, §10 ``chamberlain inventory``).

Boundary: a pure function of a loaded :class:`~chamberlain.intent.loader.Repository`. It reads intent only — no
Vault, no cluster, no clock — so "when does it rotate" is the declared policy, not a date. Values never appear:
an entry names keys and generator kinds, never what they hold. References that do not resolve (unknown policy,
unknown environment) are kept visible as ``None``/absent rather than guessed; the checker reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from chamberlain.intent.durations import format_duration
from chamberlain.intent.loader import Loaded, Repository, gc_paused
from chamberlain.intent.model import Consumer as ConsumerSpec
from chamberlain.intent.model import Platform, RotationPolicy, RotationPolicySpec, SecretIntent
from chamberlain.intent.paths import effective_policy, intent_environments, placements
from chamberlain.intent.tenancy import Edge, cross_owner_edges

SourceKind = Literal["generate", "bootstrap", "publication", "existingSecret"]


@dataclass(frozen=True, order=True)
class EnvironmentInfo:
    """An environment of the Platform and the clusters that execute it."""

    name: str
    clusters: tuple[str, ...]
    ephemeral: bool


@dataclass(frozen=True, order=True)
class Location:
    """Where one secret lives in one cluster of one environment: its KV v2 path (``mount/path``)."""

    environment: str
    cluster: str
    vault_path: str


@dataclass(frozen=True, order=True)
class Workload:
    """A workload rolled out after the secret changes. ``namespace`` is its consumer's namespace."""

    namespace: str
    kind: str
    name: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Consumer:
    """One materialized Kubernetes Secret. ``keys`` maps Secret key -> intent key; ``None`` means every key of
    the intent as-is."""

    namespace: str
    secret_name: str
    keys: tuple[tuple[str, str], ...] | None
    restart: tuple[Workload, ...]

    @property
    def key_summary(self) -> str:
        if self.keys is None:
            return "all keys as-is"
        return ", ".join(k if k == v else f"{k} \u2190 {v}" for k, v in self.keys)


@dataclass(frozen=True)
class Rotation:
    """The policy a secret starts with (SPEC §5). ``policy`` is the RotationPolicy name, or ``inline``."""

    policy: str
    type: str
    ttl: str | None
    rotate_before: str | None
    revoke_old: bool
    max_overlap: str | None
    failure_strategy: str

    @property
    def schedule(self) -> str:
        """When it rotates, in a few words."""
        if self.type == "static":
            return "manual only"
        if self.type == "event-based":
            return "on event"
        when = f"every {self.ttl}"
        return f"{when}, {self.rotate_before} early" if self.rotate_before else when

    @property
    def short(self) -> str:
        """A table cell: the lifetime, ``event`` or ``manual``."""
        return {"static": "manual", "event-based": "event"}.get(self.type, f"every {self.ttl}")

    @property
    def summary(self) -> str:
        """One human line: when it rotates and what happens on failure."""
        return f"{self.schedule}; on failure {self.failure_strategy}"


@dataclass(frozen=True)
class Source:
    """How the value comes into being. ``detail`` names a file or a producer, never a value."""

    kind: SourceKind
    keys: tuple[str, ...] | None  # the intent's keys where intent declares them
    detail: str
    generators: tuple[tuple[str, str], ...] = ()  # key -> generator type (generate only)


@dataclass(frozen=True)
class Target:
    """The system the secret authenticates to; rotation sets the new value there first."""

    kind: str
    endpoint: str
    principal: str
    admin_intent: str | None
    detail: tuple[tuple[str, str], ...] = ()

    @property
    def summary(self) -> str:
        return f"{self.kind} {self.principal}@{self.endpoint}"


@dataclass(frozen=True)
class Entry:
    """Everything intent says about one secret."""

    name: str
    owner: str
    purpose: str
    classification: str
    environments: tuple[str, ...]
    locations: tuple[Location, ...]
    consumers: tuple[Consumer, ...]
    rotation: Rotation | None
    source: Source
    target: Target | None
    file: str
    line: int  # first line of the YAML document (its ``---`` separator, if any)

    @property
    def workloads(self) -> tuple[Workload, ...]:
        return tuple(sorted({w for c in self.consumers for w in c.restart}))

    @property
    def vault_paths(self) -> tuple[str, ...]:
        return tuple(sorted({loc.vault_path for loc in self.locations}))


@dataclass(frozen=True)
class Inventory:
    """All entries, sorted by name, plus the Platform context they live in."""

    platform: str | None
    environments: tuple[EnvironmentInfo, ...]
    entries: tuple[Entry, ...] = field(default_factory=tuple)
    # Every cross-owner edge (a consumer or publication in another owner's namespace, an admin intent of another
    # owner): explicit in Git, listed here (issue 11). Namespace edges need spec.tenancy.
    edges: tuple[Edge, ...] = field(default_factory=tuple)

    def by_name(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.name == name), None)

    def owners(self) -> dict[str, tuple[Entry, ...]]:
        grouped: dict[str, list[Entry]] = {}
        for e in self.entries:
            grouped.setdefault(e.owner, []).append(e)
        return {owner: tuple(grouped[owner]) for owner in sorted(grouped)}

    def classification_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("bootstrap", "runtime", "derived", "config"), 0)
        for e in self.entries:
            counts[e.classification] = counts.get(e.classification, 0) + 1
        return counts


# ------------------------------------------------------------------------------------------------ building


def build_inventory(repo: Repository) -> Inventory:
    """The inventory of a loaded repository. Works on a repository with findings too: whatever loaded is shown."""
    with gc_paused():  # a bulk build of acyclic objects: collections during it made 10k intents cost 2x per item
        return _build(repo)


def _build(repo: Repository) -> Inventory:
    platform = repo.platform
    policies: dict[str, RotationPolicy] = {name: p.obj for name, p in repo.policy_index().items()}
    environments = (
        tuple(EnvironmentInfo(e.name, tuple(e.clusters), e.ephemeral) for e in platform.spec.environments)
        if platform is not None
        else ()
    )
    # Duplicate names are a finding elsewhere; the inventory shows the first one, as every other index does.
    entries = [_entry(item, platform, policies) for item in repo.intent_index().values()]
    entries.sort(key=lambda e: e.name)
    return Inventory(
        platform=platform.metadata.name if platform is not None else None,
        environments=environments,
        entries=tuple(entries),
        edges=tuple(sorted(set(cross_owner_edges(platform, (i.obj for i in repo.intent_index().values())))))
        if platform is not None else (),
    )


def _entry(item: Loaded[SecretIntent], platform: Platform | None, policies: dict[str, RotationPolicy]) -> Entry:
    intent = item.obj
    spec = intent.spec
    if platform is not None:
        envs = tuple(e.name for e in intent_environments(platform, intent))
        locations = tuple(Location(p.environment, p.cluster, p.vault.full) for p in placements(platform, intent))
        resolved = effective_policy(platform, policies, intent)
    else:
        envs = tuple(spec.environments or ())
        locations = ()
        resolved = None
    return Entry(
        name=intent.metadata.name,
        owner=spec.owner,
        purpose=spec.purpose,
        classification=spec.classification,
        environments=envs,
        locations=locations,
        consumers=tuple(_consumer(c) for c in spec.consumers),
        rotation=_rotation(*resolved) if resolved is not None else None,
        source=_source(intent),
        target=_target(intent),
        file=item.file,
        # The document's first line, not ``item.line``: that one composes the YAML node tree on demand, which
        # costs as much as loading the document again — too much for a listing of every intent.
        line=item.doc.start_line,
    )


def _source(intent: SecretIntent) -> Source:
    src = intent.spec.source
    if src.bootstrap is not None:
        detail = f"{src.bootstrap.file} (after handover: {src.bootstrap.after_handover})"
        # The keys of a bootstrap Secret sit inside the encrypted file; the inventory does not decrypt.
        return Source("bootstrap", None, detail)
    if (pub := src.publication) is not None:
        keys = tuple(sorted(pub.keys)) if pub.keys is not None else None
        return Source("publication", keys, f"PushSecret from {pub.namespace}/{pub.secret_name}")
    if (old := src.existing_secret) is not None:
        keys = tuple(sorted(old.keys)) if old.keys is not None else None
        return Source("existingSecret", keys, f"imported once from {old.namespace}/{old.secret_name}")
    gens = tuple(sorted((key, gen.type) for key, gen in (src.generate or {}).items()))  # exactly one source
    return Source("generate", tuple(k for k, _ in gens), "generated by chamberlain in Vault", gens)


def _consumer(c: ConsumerSpec) -> Consumer:
    keys = tuple(sorted(c.keys.items())) if c.keys is not None else None
    restart = tuple(sorted(Workload(c.namespace, w.kind, w.name) for w in c.restart))
    return Consumer(c.namespace, c.secret_name, keys, restart)


def _rotation(name: str, spec: RotationPolicySpec) -> Rotation:
    def fmt(value: timedelta | None) -> str | None:
        if value is None:
            return None
        # Authors write 90d, not 12w6d; whole days read best as days, anything finer keeps the canonical form.
        seconds = int(value.total_seconds())
        return f"{seconds // 86400}d" if seconds and seconds % 86400 == 0 else format_duration(value)

    return Rotation(
        policy=name,
        type=spec.type,
        ttl=fmt(spec.ttl),
        rotate_before=fmt(spec.rotate_before),
        revoke_old=spec.revoke_old,
        max_overlap=fmt(spec.max_overlap),
        failure_strategy=spec.failure_strategy,
    )


def _target(intent: SecretIntent) -> Target | None:
    target = intent.spec.target
    if target is None:
        return None
    pg = target.postgres
    return Target(
        kind="postgres",
        endpoint=f"{pg.host}:{pg.port}",
        principal=pg.role,
        admin_intent=pg.admin_intent,
        detail=(("database", pg.database), ("strategy", pg.strategy)),
    )
