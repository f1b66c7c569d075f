"""The controller's intents, read from the cluster: watches of Platform, RotationPolicy and SecretIntent objects
in the controller namespace, and the :class:`~.scope.Scope` they make.

Three parts, kept apart so each is tested on its own:

- :func:`parse` (pure): one object as the API server returns it → its model, or the schema findings that refuse
  it. Only the model is kept (no raw object, no text; ``kubectl``'s last-applied annotation is dropped), so 10k
  intents cost what their models cost.
- :func:`build_scope` (pure): the set of parsed objects → a :class:`Built`: the Scope of one environment and
  cluster and ``rejected``, the SecretIntents that fail validation, each with its findings (rule ids). The checks
  of ``chamberlain validate`` that apply to a set of models run (:data:`IN_CLUSTER_CHECKS`; the file, Git and
  manifest checks do not apply to objects in a cluster). An intent's error rejects that intent alone; intents that
  depend on a rejected one (its ``adminIntent``) are rejected in turn. Warnings reject nothing.
- :class:`Reflector` (one kind: list, then watch from the list's resourceVersion with bookmarks; a 410 Gone or a
  periodic resync lists again) and :class:`ClusterSource` (a reflector thread per kind; after changes settle it
  builds a new Scope and hands it to the controller, which swaps it in at its next tick).

Not here: acting on the scope (the loop), provisioning new secrets (:mod:`.reconcile`).
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from chamberlain import wellknown as wk
from chamberlain.checks.registry import load_checks
from chamberlain.checks.tenancy import owners_declared
from chamberlain.clock import Clock
from chamberlain.controller.collaborators import Logger, Silent
from chamberlain.controller.scope import Scope, published_here, scope_of
from chamberlain.errors import UsageError
from chamberlain.findings import RULES, Finding
from chamberlain.handover import select_cluster
from chamberlain.intent.loader import Document, Loaded, Repository, schema_findings
from chamberlain.intent.model import (
    GROUP,
    PLATFORMS,
    ROTATION_POLICIES,
    SECRET_INTENTS,
    VERSION,
    IntentObject,
    Platform,
    RotationPolicy,
    SecretIntent,
)
from chamberlain.kube.api import CustomResource, KubeError, KubeGone, KubeWatch

Kind = Literal["Platform", "RotationPolicy", "SecretIntent"]
KINDS: tuple[Kind, ...] = ("Platform", "RotationPolicy", "SecretIntent")
RESOURCES: dict[Kind, CustomResource] = {
    "Platform": CustomResource(GROUP, VERSION, PLATFORMS),
    "RotationPolicy": CustomResource(GROUP, VERSION, ROTATION_POLICIES),
    "SecretIntent": CustomResource(GROUP, VERSION, SECRET_INTENTS),
}
_MODELS: dict[Kind, type[Platform] | type[RotationPolicy] | type[SecretIntent]] = {
    "Platform": Platform, "RotationPolicy": RotationPolicy, "SecretIntent": SecretIntent}

# The checks of `chamberlain validate` that judge a set of models. Left out: those over files, Git, SOPS files,
# manifests and credential scans of file text (an object in the cluster has none of these; CI ran them on Git).
IN_CLUSTER_CHECKS = (
    "platform-count", "duplicate-objects", "unknown-environments", "policies", "intent-references",
    "classification-source", "shared-mounts", "config-on-data-mount", "single-authority", "protected-targets",
    "target-roles", "authority-address", "ttl-floor", "render-preflight", "pki-grant", "metadata-credentials",
    # Tenancy (CH080-085) with the Platform's spec.tenancy: an intent written into the cluster is held to the
    # same namespaces and admin grants as one in Git. CH080's path half needs a file: owners_declared replaces it.
    "tenancy-declaration", "namespace-holders", "admin-grants",
    "same-namespace-use",  # CH113 (§5a); CH112 is a warning about Git's declaration, left to CI
)
_COMPACT_PER_LIST = 50_000  # shared sub-models remembered between two lists, at most 8x this
# Annotations that are not intent: kubectl's copy of the whole object, and the rotate trigger's request and
# bookkeeping (the annotation trigger reads those itself; a manual rotation must not rebuild the scope).
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration", wk.ANNOTATION_ROTATE,
                                  wk.ANNOTATION_ROTATE + "-handled", wk.ANNOTATION_ROTATE + "-result"})


# ------------------------------------------------------------------------------------------------ parse (pure)


@dataclass(frozen=True, slots=True)  # one per SecretIntent held: no __dict__ each
class Parsed:
    """One object of the cluster: its model, or the findings that refused it (never both)."""

    kind: Kind
    name: str
    model: IntentObject | None
    findings: tuple[Finding, ...] = ()
    # what the model was parsed from: generation and a hash of the kept labels and annotations (not compared)
    identity: tuple[int, int] | None = field(default=None, compare=False)


def where(kind: Kind, name: str) -> str:
    """What findings name as their file: the object as ``kubectl get`` spells it (``secretintents/payments-db``)."""
    return f"{RESOURCES[kind].plural}/{name}"


def _intent_data(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS}
    kept = {k: meta[k] for k in ("name", "namespace", "labels") if k in meta}
    data = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    data["metadata"] = {**kept, **({"annotations": annotations} if annotations else {})}
    return data


def _identity(obj: Mapping[str, Any]) -> tuple[int, int] | None:
    """Generation and a hash of the kept metadata: the same pair means the same model (a CRD's generation moves
    with every spec change; labels and annotations do not move it). None without a generation."""
    meta = obj.get("metadata") or {}
    generation = meta.get("generation")
    if not isinstance(generation, int):
        return None
    annotations = meta.get("annotations") or {}
    kept = tuple(sorted((k, str(v)) for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS))
    labels = tuple(sorted((k, str(v)) for k, v in (meta.get("labels") or {}).items()))
    return generation, hash((kept, labels, str(meta.get("name")), str(meta.get("namespace"))))


def parse(kind: Kind, obj: Mapping[str, Any]) -> Parsed:
    """The model of one object as the API server returns it (status and server fields dropped), or the schema
    findings (CH003, CH005, CH006, ...) that refuse it."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    name = str(meta.get("name") or "") if isinstance(meta, Mapping) else ""
    try:
        data = _intent_data(obj)
        return Parsed(kind, name, _MODELS[kind].model_validate(data))
    except ValidationError as exc:
        doc = _document(kind, name, data)
        return Parsed(kind, name, None, tuple(dataclasses.replace(f, line=None) for f in schema_findings(doc, exc)))
    except Exception as exc:  # one raise would end the whole list: every object of the kind would go stale
        label = f"{kind}/{name}" if name else kind
        return Parsed(kind, name, None, (Finding(where(kind, name), None, "CH003", f"{label}: the object cannot "
                                                 f"be read ({type(exc).__name__})", object=label),))


def _document(kind: Kind, name: str, data: Any) -> Document:
    """A stand-in for the YAML document the checks point into: no text, so every finding's line is None."""
    return Document(where(kind, name), 0, data, 1, 1, 0, 0, _source="~")


M = TypeVar("M", bound=BaseModel)


# Immutable values compared by value; any other part by identity (so shared only once it is the same object).
# Not datetime, Decimal: equal values that dump differently (another zone, another precision). Floats by repr
# (0.0 == -0.0).
_SCALARS = (str, int, float, bool, type(None), bytes, datetime.timedelta)


def _ident(value: Any) -> Hashable:
    """What stands for ``value`` in a structural key: a scalar by type and value (``1``, ``1.0`` and ``True`` are
    equal in Python but dump differently), anything else by identity (it is already the one shared object)."""
    kind = type(value)
    if kind is float:
        return float, repr(value)
    return (kind, value) if kind in _SCALARS else id(value)


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and type(a) in _SCALARS and _ident(a) == _ident(b))


_END = object()


def _same_items(a: Iterable[Any], b: Iterable[Any]) -> bool:
    return all(_same(x, y) for x, y in itertools.zip_longest(a, b, fillvalue=_END))


class Compact:
    """Makes parsed models share what they have in common: a sub-model, dict, list or tuple equal to one already
    seen (the same source generator, rotation reference, labels, restart target in thousands of intents) is
    replaced by that one, strings are interned, and models with the same set of given fields share one
    ``__pydantic_fields_set__``. At 10k intents the models were the controller's largest holding (about 6 KiB
    each); nothing reads differently, because the models are frozen and nothing writes into their containers.

    Equality is structural and built here, not pydantic's ``__eq__``/``__hash__``: those ignore which fields were
    given (``exclude_unset`` dumps differ) and refuse models holding a dict. Parts are compared by identity once
    they are the shared ones, and the table keeps only a hash per part (a part unique to one intent costs an int,
    not a copy of its key); a hash that meets a different part is checked and simply not shared. The tables only
    point at what models hold; :meth:`clear` drops them (a full list starts afresh, so deleted intents' parts are
    not kept alive forever)."""

    def __init__(self) -> None:
        self._shared: dict[int, Any] = {}
        self._sets: dict[frozenset[str], set[str]] = {}

    def clear(self) -> None:
        self._shared.clear()
        self._sets.clear()

    def __len__(self) -> int:
        return len(self._shared)

    def model(self, m: M) -> M:
        """``m`` with its parts shared (``m`` itself, a whole object, is never replaced)."""
        return self._model(m, root=True)

    def _model(self, m: M, root: bool = False) -> M:
        fields = m.__dict__
        for key, value in fields.items():
            new = self._value(value)
            if new is not value:
                fields[key] = new  # frozen: nothing else writes a model's fields after validation
        given = frozenset(m.__pydantic_fields_set__)
        shared = self._sets.setdefault(given, m.__pydantic_fields_set__)
        if shared is not m.__pydantic_fields_set__:
            object.__setattr__(m, "__pydantic_fields_set__", shared)  # copied, never changed, by model_copy
        if root or not m.model_config.get("frozen") or m.__pydantic_extra__ or m.__pydantic_private__:
            return m
        slot = hash((type(m), given, tuple((k, _ident(v)) for k, v in fields.items())))
        held: Any = self._shared.setdefault(slot, m)
        if held is m or (type(held) is type(m) and held.__pydantic_fields_set__ is shared
                         and held.__dict__.keys() == fields.keys()
                         and _same_items(held.__dict__.values(), fields.values())):
            same: M = held
            return same
        return m

    def _container(self, kind: Any, value: Any, parts: Iterable[Any]) -> Any:
        """The shared container equal to ``value`` (a dict, list or tuple whose parts are already shared)."""
        items = tuple(parts)
        slot = hash((kind, tuple(_ident(p) for p in items)))
        held: Any = self._shared.setdefault(slot, value)
        if held is value:
            return value
        if type(held) is kind and len(held) == len(value):
            theirs = (p for kv in held.items() for p in kv) if kind is dict else iter(held)
            if _same_items(theirs, items):
                return held
        return value

    def _value(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return sys.intern(value)
        if kind in _SCALARS:
            return value
        if isinstance(value, BaseModel):
            return self._model(value)
        if kind is list:
            for i, item in enumerate(value):
                new = self._value(item)
                if new is not item:
                    value[i] = new
            return self._container(list, value, value)
        if kind is tuple:
            items = tuple(self._value(v) for v in value)
            return self._container(tuple, items, items)
        if kind is dict:
            out = {sys.intern(k) if type(k) is str else k: self._value(v) for k, v in value.items()}
            return self._container(dict, out, (p for kv in out.items() for p in kv))
        return value


# ------------------------------------------------------------------------------------------------ build (pure)


@dataclass(frozen=True)
class Built:
    """What the cluster's objects make: the Scope (None: no valid Platform, keep the previous one), the rejected
    SecretIntents (also ``scope.rejected``), and every other finding (Platform, policies, warnings)."""

    scope: Scope | None
    rejected: Mapping[str, tuple[Finding, ...]]
    problems: tuple[Finding, ...] = ()


def _check(platform: Parsed, policies: list[Parsed], intents: list[Parsed]) -> list[Finding]:
    def loaded(p: Parsed) -> Loaded[Any]:
        assert p.model is not None
        # CH102 scans labels, annotations and spec.purpose in the document's data: only those, and only while
        # the checks run (the other checks read the models).
        meta = p.model.metadata
        data: dict[str, Any] = {"kind": p.kind, "metadata": {"name": p.name, "labels": meta.labels,
                                                             "annotations": meta.annotations}}
        if isinstance(p.model, SecretIntent):
            data["spec"] = {"purpose": p.model.spec.purpose}
        return Loaded(p.model, _document(p.kind, p.name, data))

    every = [loaded(i) for i in intents]
    repo = Repository(Path("cluster"), platforms=[loaded(platform)], policies=[loaded(p) for p in policies],
                      intents=every)
    checks = {**load_checks(), "owners-declared": owners_declared}
    found: set[Finding] = set()
    for name in (*IN_CLUSTER_CHECKS, "owners-declared"):
        # CH102 scans the texts of one file (here: one object) at a time, so its scan text stays small
        for f in checks[name](repo):
            found.add(dataclasses.replace(f, line=None))
    return sorted(found, key=Finding.sort_key)


def build_scope(objects: Iterable[Parsed], environment: str | None, cluster: str | None) -> Built:
    """The Scope the cluster's objects make for ``environment``/``cluster`` (pure). :class:`UsageError` when the
    Platform does not place the controller (unknown cluster or environment, or several environments)."""
    by_kind: dict[Kind, list[Parsed]] = {k: [] for k in KINDS}
    for p in objects:
        by_kind[p.kind].append(p)
    problems: list[Finding] = [f for k in ("Platform", "RotationPolicy") for p in by_kind[k] for f in p.findings]
    rejected: dict[str, list[Finding]] = {p.name: list(p.findings) for p in by_kind["SecretIntent"] if p.findings}
    platforms = [p for p in by_kind["Platform"] if p.model is not None]
    if len(by_kind["Platform"]) != 1 or len(platforms) != 1:
        if len(by_kind["Platform"]) != 1:
            problems.append(Finding("platforms", None, "CH007", f"{len(by_kind['Platform'])} Platforms in the "
                                    "controller namespace; exactly one is needed"))
        return Built(None, _frozen(rejected), tuple(problems))
    policies = [p for p in by_kind["RotationPolicy"] if p.model is not None]
    valid = [p for p in by_kind["SecretIntent"] if p.model is not None]
    files = {where("SecretIntent", p.name): p.name for p in valid}
    policy_files = {where("RotationPolicy", p.name): p.name for p in policies}
    for _ in range(len(valid) + len(policies) + 1):  # until no new rejection: what names a rejected one fails too
        newly: dict[str, list[Finding]] = {}
        refused: set[str] = set()  # policies with an error (a ttl below the floor): left out, CH011 for users
        for f in _check(platforms[0], policies, valid):
            intent = files.get(f.file)
            if intent is not None and f.severity == "error":
                newly.setdefault(intent, []).append(f)
            elif intent is None or f.severity != "error":
                problems.append(f)
                if f.severity == "error" and f.file in policy_files:
                    refused.add(policy_files[f.file])
        policies = [p for p in policies if p.name not in refused]
        if not newly and not refused:
            break
        _reject_dependents(valid, newly)
        rejected.update(newly)
        valid = [p for p in valid if p.name not in newly]
    problems = sorted(set(problems), key=Finding.sort_key)
    # The Platform says where the controller logs in and who holds which namespace: one validate refuses places
    # nothing new (the current scope stays), as no Platform at all.
    platform_file = where("Platform", platforms[0].name)
    if any(f.file == platform_file and f.severity == "error" for f in problems):
        return Built(None, _frozen(rejected), tuple(problems))
    platform = platforms[0].model
    assert isinstance(platform, Platform)
    chosen, envs = select_cluster(platform, environment, cluster)
    if len(envs) != 1:
        raise UsageError(f"cluster {chosen} hosts environments {', '.join(envs)}; pass --environment")
    every = {p.name: p.model for p in valid if isinstance(p.model, SecretIntent)}
    placed = scope_of(platform, every, envs[0], chosen).placed
    kept = {name: every[name] for name in set(placed) | published_here(platform, every, envs[0], chosen)}
    for name in placed:  # the admin intents they name (rotation.manual.admin_source reads them)
        target = every[name].spec.target
        if target is not None and target.postgres.admin_intent in every:
            kept.setdefault(target.postgres.admin_intent, every[target.postgres.admin_intent])
    named = {p.name: p.model for p in policies if isinstance(p.model, RotationPolicy)}
    frozen = _frozen(rejected)
    # Every intent placed here is kept, so placing the kept ones again would give the same placements.
    return Built(Scope(platform, kept, envs[0], chosen, placed, named, frozen), frozen, tuple(problems))


def _reject_dependents(valid: list[Parsed], newly: dict[str, list[Finding]]) -> None:
    """Add to ``newly`` every intent whose ``adminIntent`` chain reaches one of it (CH014), in one walk: a pass of
    the checks per link would make a long chain cost minutes per build."""
    dependents: dict[str, list[str]] = {}
    for p in valid:
        target = p.model.spec.target if isinstance(p.model, SecretIntent) else None
        if target is not None:
            dependents.setdefault(target.postgres.admin_intent, []).append(p.name)
    todo = list(newly)
    while todo:
        admin = todo.pop()
        for name in dependents.get(admin, ()):
            if name not in newly:
                label = f"SecretIntent/{name}"
                newly[name] = [Finding(where("SecretIntent", name), None, "CH014", f"{label}: adminIntent "
                                       f"{admin!r} was rejected (see its status)", object=label)]
                todo.append(name)


def _frozen(rejected: Mapping[str, list[Finding]]) -> dict[str, tuple[Finding, ...]]:
    return {name: tuple(sorted(set(fs), key=Finding.sort_key)) for name, fs in sorted(rejected.items())}


def rule_ids(findings: Iterable[Finding]) -> list[str]:
    """The distinct rule ids of ``findings``, in order (what a condition message leads with)."""
    return list(dict.fromkeys(f.rule for f in findings if f.rule in RULES))


# ------------------------------------------------------------------------------------------------ watching


class ObjectSink(Protocol):
    """Told of every object a reflector lists or watches, raw (:mod:`.watched` keeps the little it needs)."""

    def seen(self, obj: Mapping[str, Any]) -> None: ...

    def gone(self, name: str) -> None: ...

    def listed(self, names: set[str]) -> None:
        """A list ended: every object not in ``names`` is gone."""
        ...


class Store:
    """The parsed objects of the three kinds, by name; ``generation`` moves on every change. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Kind, dict[str, Parsed]] = {k: {} for k in KINDS}
        self.generation = 0
        self.changed = threading.Event()

    def replace(self, kind: Kind, objects: Mapping[str, Parsed]) -> None:
        with self._lock:
            if objects != self._objects[kind]:
                self._objects[kind] = dict(objects)
                self._bump()

    def put(self, p: Parsed) -> None:
        with self._lock:
            if self._objects[p.kind].get(p.name) != p:
                self._objects[p.kind][p.name] = p
                self._bump()

    def delete(self, kind: Kind, name: str) -> None:
        with self._lock:
            if self._objects[kind].pop(name, None) is not None:
                self._bump()

    def get(self, kind: Kind, name: str) -> Parsed | None:
        with self._lock:
            return self._objects[kind].get(name)

    def snapshot(self) -> tuple[int, list[Parsed]]:
        with self._lock:
            return self.generation, [p for k in KINDS for p in self._objects[k].values()]

    def _bump(self) -> None:
        self.generation += 1
        self.changed.set()


class Reflector:
    """One kind in one namespace kept in a :class:`Store`: list, then watch from the list's resourceVersion
    (bookmarks move it on without an object); a 410 Gone, or ``resync`` seconds since the last list, lists again
    (a list replaces the kind's objects, so a deletion a watch missed is not kept forever)."""

    def __init__(self, kube: KubeWatch, kind: Kind, namespace: str, store: Store, clock: Clock, *,
                 resync: float | None = None, watch_seconds: int = 240, page_size: int = 100,
                 sinks: Sequence[ObjectSink] = ()) -> None:
        self.kube, self.kind, self.namespace, self.store, self.clock = kube, kind, namespace, store, clock
        self.resource = RESOURCES[kind]
        self.resync, self.watch_seconds, self.page_size = resync or None, watch_seconds, page_size
        self.sinks = list(sinks)  # told of every object listed or watched (the raw object, before parsing)
        self.resource_version: str | None = None  # None: list next
        self.listed_at: float | None = None
        self.compact = Compact()
        self.lists = self.relists_gone = 0

    @property
    def synced(self) -> bool:
        return self.listed_at is not None

    def step(self) -> None:
        """List when needed, else watch until the server ends the watch (or a resync is due)."""
        due = self.listed_at is None or (self.resync is not None
                                         and self.clock.monotonic() - self.listed_at >= self.resync)
        if self.resource_version is None or due:
            self.list()
            return
        self.watch()

    def list(self) -> None:
        """Page by page (each parsed, then dropped): the raw answer for 10k intents never sits in memory at once."""
        parsed: dict[str, Parsed] = {}
        page = ""
        self.compact.clear()
        while True:
            got = self.kube.list_custom_objects_versioned(self.resource, self.namespace, limit=self.page_size,
                                                          page=page)
            for obj in got.items:
                for sink in self.sinks:
                    sink.seen(obj)
                p = self._parse(obj)
                parsed[p.name] = p
            if not got.next_page:
                break
            page = got.next_page
        for sink in self.sinks:
            sink.listed(set(parsed))
        self.store.replace(self.kind, parsed)
        self.resource_version, self.listed_at = got.resource_version, self.clock.monotonic()
        self.lists += 1

    def _parse(self, obj: Mapping[str, Any]) -> Parsed:
        """:func:`parse`, or the object already held when only its status or resourceVersion moved (the status
        reporter's own patches: 10k validations for nothing). The spec's generation and the kept metadata say."""
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        held = self.store.get(self.kind, name)
        key = _identity(obj)
        if held is not None and held.identity is not None and held.identity == key:
            return held
        p = parse(self.kind, obj)
        if len(self.compact) > 8 * _COMPACT_PER_LIST:  # changes since the last list: start the tables afresh
            self.compact.clear()
        model = self.compact.model(p.model) if p.model is not None else None
        return Parsed(p.kind, sys.intern(p.name), model, p.findings, key)

    def watch(self) -> None:
        assert self.resource_version is not None
        seconds = self.watch_seconds
        if self.resync is not None:
            left = self.resync - (self.clock.monotonic() - (self.listed_at or 0.0))
            seconds = max(1, min(self.watch_seconds, int(left) + 1))
        try:
            for event in self.kube.watch_custom_objects(self.resource, self.namespace, self.resource_version,
                                                        seconds):
                if event.type == "DELETED":
                    for sink in self.sinks:
                        sink.gone(event.name)
                    self.store.delete(self.kind, event.name)
                elif event.type in ("ADDED", "MODIFIED"):
                    for sink in self.sinks:
                        sink.seen(event.object)
                    self.store.put(self._parse(event.object))
                if event.resource_version:
                    self.resource_version = event.resource_version
        except KubeGone:
            self.resource_version = None
            self.relists_gone += 1


OnBuilt = Callable[[Built], None]


@dataclass
class ClusterSource:
    """The controller's intents from its namespace: a reflector thread per kind, and a builder thread that, once
    changes have settled for ``settle`` seconds, builds the Scope and calls ``on_built`` (unless nothing changed).

    :meth:`start` returns once every kind has been listed and the first Scope is built (``first``)."""

    kube: KubeWatch
    namespace: str
    environment: str | None
    cluster: str | None
    clock: Clock
    on_built: OnBuilt | None = None
    log: Logger = field(default_factory=Silent)
    resync: float | None = None  # seconds between two lists of a kind (None: list only at start and on 410 Gone)
    settle: float = 1.0
    retry: float = 5.0  # seconds before a reflector tries again after an API error
    store: Store = field(default_factory=Store)
    reflectors: dict[Kind, Reflector] = field(default_factory=dict)
    last: Built | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    sinks: Mapping[Kind, Sequence[ObjectSink]] = field(default_factory=dict)  # told of each raw object
    _built_generation: int = -1
    _reflecting: bool = False

    def __post_init__(self) -> None:
        for kind in KINDS:
            self.reflectors.setdefault(kind, Reflector(self.kube, kind, self.namespace, self.store, self.clock,
                                                       resync=self.resync, sinks=self.sinks.get(kind, ())))

    # ------------------------------------------------------------------ one step each (tests drive these)

    def step(self, kind: Kind) -> bool:
        """One reflector step; False when the API refused or failed (logged with the verb and resource)."""
        r = self.reflectors[kind]
        try:
            r.step()
        except KubeError as exc:
            verb = "watch" if r.synced and r.resource_version is not None else "list"
            self.log.warning("cannot read the controller's intents", verb=verb,
                             resource=r.resource.describe(self.namespace), error=type(exc).__name__,
                             detail=str(exc)[:200])
            return False
        return True

    def build(self) -> Built | None:
        """Build from the store when it changed since the last build; None when nothing changed."""
        generation, objects = self.store.snapshot()
        if generation == self._built_generation:
            return None
        built = build_scope(objects, self.environment, self.cluster)
        self._built_generation = generation
        before = self.last.rejected if self.last is not None else {}
        self.last = built
        for name, findings in built.rejected.items():
            if before.get(name) == findings:
                continue  # said when it was first rejected (or its findings last changed)
            self.log.warning("intent rejected", secret=name, rules=rule_ids(findings),
                             detail=findings[0].message[:300] if findings else "")
        if built.scope is None:
            self.log.warning("no valid Platform in the controller namespace (see rules); keeping the current scope",
                             namespace=self.namespace, rules=rule_ids(built.problems))
        return built

    # ------------------------------------------------------------------ threads

    def start(self, timeout: float | None = None) -> Built:
        """:meth:`sync`, then :meth:`watch`."""
        built = self.sync(timeout)
        self.watch()
        return built

    def sync(self, timeout: float | None = None) -> Built:
        """List every kind (retrying while the API fails) and build the first Scope; waits for a valid Platform
        (GitOps may apply it after the controller starts) until ``timeout`` or stop."""
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            for kind in KINDS:
                if not self.reflectors[kind].synced:
                    self.step(kind)
            if all(r.synced for r in self.reflectors.values()):
                built = self.build()
                if built is not None and built.scope is not None:
                    break
                self.store.changed.clear()
                self._wait_change(deadline)
            elif self._expired(deadline) or self.stop_event.wait(self.retry):
                raise UsageError(f"the controller's intents in namespace {self.namespace} could not be read "
                                 "(see the log: verb and resource)")
        assert built.scope is not None
        return built

    def watch(self) -> None:
        """Start the reflector threads (each resumes from its list's resourceVersion: nothing since is missed) and
        the builder thread."""
        self._start_reflectors()
        t = threading.Thread(target=self._build_loop, name="chamberlain-intents", daemon=True)
        t.start()
        self._threads.append(t)

    def _expired(self, deadline: float | None) -> bool:
        return deadline is not None and self.clock.monotonic() >= deadline

    def _start_reflectors(self) -> None:
        if self._reflecting:
            return
        self._reflecting = True
        for kind in KINDS:
            t = threading.Thread(target=self._reflect, args=(kind,), name=f"chamberlain-watch-{kind}", daemon=True)
            t.start()
            self._threads.append(t)

    def _wait_change(self, deadline: float | None) -> None:
        """At start, without a valid Platform yet: the kinds are watched (GitOps may apply it later); back after a
        change, or after ``retry`` seconds (the caller builds again only if something changed)."""
        self._start_reflectors()
        if self.stop_event.is_set():
            raise UsageError("stopped before the controller's intents were read")
        if not self.store.changed.wait(self.retry) and self._expired(deadline):
            raise UsageError(f"no valid Platform in namespace {self.namespace}")

    def _reflect(self, kind: Kind) -> None:
        while not self.stop_event.is_set():
            try:
                ok = self.step(kind)
            except Exception as exc:  # a bug must not end the watch: the scope would go stale silently
                self.log.warning("watching the controller's intents failed (internal error)", kind=kind,
                                 error=type(exc).__name__)
                ok = False
            if not ok:
                self.stop_event.wait(self.retry)

    def _build_loop(self) -> None:
        while not self.stop_event.is_set():
            if not self.store.changed.wait(1.0):
                continue
            self.stop_event.wait(self.settle)  # a GitOps sync applies many objects at once: build once
            self.store.changed.clear()
            try:
                built = self.build()
            except UsageError as exc:  # the Platform no longer places this controller: keep the current scope
                self.log.warning("the new Platform does not place this controller; keeping the current scope",
                                 detail=str(exc)[:300])
                continue
            except Exception as exc:  # a bug must not end the thread: the current scope stays in force
                self.log.warning("building the scope failed (internal error)", error=type(exc).__name__)
                continue
            if built is not None and built.scope is not None and self.on_built is not None:
                self.on_built(built)

    def stop(self) -> None:
        """Stop building; reflector threads end after their watch (daemon threads: they never block exit)."""
        self.stop_event.set()


__all__ = [
    "IN_CLUSTER_CHECKS",
    "KINDS",
    "RESOURCES",
    "Built",
    "ClusterSource",
    "ObjectSink",
    "Parsed",
    "Reflector",
    "Store",
    "build_scope",
    "parse",
    "rule_ids",
    "where",
]
