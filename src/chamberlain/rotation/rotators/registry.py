"""The rotator registry: rotators by name, loaded from the Python entry-point group ``chamberlain.rotators``.

A plug-in distribution adds a rotator by declaring ``[project.entry-points."chamberlain.rotators"] NAME =
"module:Factory"``; the factory is called without arguments and must return a :class:`Rotator` whose ``name`` is
``NAME``. Two entries under one name make loading fail loudly (:class:`DuplicateRotator`, naming both sources):
picking one silently would let installation order decide how secrets rotate.

Stale metadata: an editable install made before chamberlain declared its built-ins has no such entry points. Any
built-in that chamberlain's own distribution does not declare is added from :data:`BUILTINS`, and still takes part
in the duplicate check, so the result is the same with fresh or stale metadata.

Plug-ins are imported and checked when the registry loads, so a broken one fails the start. chamberlain's own
built-ins are imported on first use: the certificate rotators import cryptography's native module, about 8 MiB of
the controller's resident memory, which a fleet without certificates never needs.

:func:`rotator_name_for` is the pure choice of a rotator for an intent. Boundary: no rotation step runs here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import import_module, metadata
from threading import Lock
from typing import Protocol

from chamberlain import wellknown as wk
from chamberlain.intent.model import KEYPAIR_GENERATORS, FixedNameGenerator, SecretIntent
from chamberlain.rotation.rotators.base import DuplicateRotator, Rotator, RotatorConfigError, UnknownRotator

GROUP = "chamberlain.rotators"
DISTRIBUTION = "chamberlain"
FALLBACK = f"{DISTRIBUTION} (built-in fallback)"

# The built-ins, exactly as pyproject.toml declares them in [project.entry-points."chamberlain.rotators"].
BUILTINS: Mapping[str, str] = {
    "random": "chamberlain.rotation.rotators.generated:RandomRotator",
    "keypair": "chamberlain.rotation.rotators.generated:KeypairRotator",
    "generated": "chamberlain.rotation.rotators.generated:GeneratedRotator",
    "x509": "chamberlain.rotation.rotators.x509:X509SelfSignedRotator",
    "x509-vault-pki": "chamberlain.rotation.rotators.x509:X509VaultPkiRotator",
    "postgres": "chamberlain.rotation.rotators.postgres:PostgresRotator",
}


class _Dist(Protocol):
    @property
    def name(self) -> str: ...


class EntryPointLike(Protocol):
    """What the registry reads of an ``importlib.metadata.EntryPoint`` (so tests can hand in plain objects)."""

    @property
    def name(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def dist(self) -> _Dist | None: ...


@dataclass(frozen=True)
class Entry:
    """One declared rotator: its name, where it is loaded from, and which distribution declared it."""

    name: str
    value: str  # "module:attr"
    source: str  # distribution name, or "chamberlain (built-in fallback)"

    def load(self) -> Callable[[], Rotator]:
        module, _, attr = self.value.partition(":")
        obj: object = import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise RotatorConfigError(f"rotator {self.name!r} from {self.source}: {self.value} is not callable")
        return obj


def declared_entries(eps: Iterable[EntryPointLike] | None = None) -> list[Entry]:
    """Entries of the group, plus the built-ins chamberlain's own (possibly stale) metadata does not declare."""
    found: list[EntryPointLike] = list(metadata.entry_points(group=GROUP)) if eps is None else list(eps)
    entries = [Entry(ep.name, ep.value, ep.dist.name if ep.dist is not None else "unknown") for ep in found]
    own = {e.name for e in entries if e.source == DISTRIBUTION}
    entries += [Entry(n, v, FALLBACK) for n, v in BUILTINS.items() if n not in own]
    return entries


def check_unique(entries: Iterable[Entry]) -> dict[str, Entry]:
    by_name: dict[str, Entry] = {}
    for entry in entries:
        seen = by_name.get(entry.name)
        if seen is not None:
            raise DuplicateRotator(
                f"rotator {entry.name!r} is registered twice: {seen.value} ({seen.source}) and "
                f"{entry.value} ({entry.source}); uninstall one of them"
            )
        by_name[entry.name] = entry
    return by_name


class Registry:
    """Rotators by name, each built once; lookups of unknown names fail with the names that do exist."""

    def __init__(self, rotators: Mapping[str, Rotator], builtins: Mapping[str, Entry] | None = None) -> None:
        self._rotators = dict(rotators)
        self._builtins = {n: e for n, e in (builtins or {}).items() if n not in self._rotators}  # built on first use
        self._lock = Lock()

    @classmethod
    def load(cls, eps: Iterable[EntryPointLike] | None = None) -> Registry:
        rotators: dict[str, Rotator] = {}
        builtins: dict[str, Entry] = {}
        for name, entry in check_unique(declared_entries(eps)).items():
            if entry.source in (DISTRIBUTION, FALLBACK) and BUILTINS.get(name) == entry.value:
                builtins[name] = entry
            else:
                rotators[name] = _built(name, entry)
        return cls(rotators, builtins)

    def names(self) -> list[str]:
        return sorted(self._rotators.keys() | self._builtins.keys())

    def get(self, name: str) -> Rotator:
        found = self._rotators.get(name)
        if found is not None:
            return found
        with self._lock:  # rotations run on several threads: one import and one instance per name
            if name not in self._rotators and name in self._builtins:
                self._rotators[name] = _built(name, self._builtins[name])
            try:
                return self._rotators[name]
            except KeyError:
                raise UnknownRotator(f"no rotator named {name!r}; known: {', '.join(self.names())}") from None

    def for_intent(self, intent: SecretIntent) -> Rotator:
        return self.get(rotator_name_for(intent))


def _built(name: str, entry: Entry) -> Rotator:
    try:
        rotator = entry.load()()
    except RotatorConfigError:
        raise
    except Exception as exc:  # a broken install (a native module that cannot load): a refusal, not a crash
        raise RotatorConfigError(f"rotator {name!r} from {entry.source} cannot be loaded ({type(exc).__name__})") \
            from exc
    if not isinstance(rotator, Rotator) or rotator.name != name:
        raise RotatorConfigError(f"rotator {name!r} from {entry.source} is not a Rotator named {name!r}")
    return rotator


def rotator_name_for(intent: SecretIntent) -> str:
    """Which rotator rotates ``intent`` (pure).

    An explicit ``chamberlain.dev/rotator`` annotation wins (this is how ``x509``, ``x509-vault-pki`` or a plug-in
    is chosen); a ``target.postgres`` means ``postgres``; otherwise ``keypair`` if every rotating key is a keypair,
    ``random`` if none is, ``generated`` for a mix.
    """
    chosen = intent.metadata.annotations.get(wk.ANNOTATION_ROTATOR)
    if chosen:
        return chosen
    if intent.spec.target is not None:
        return "postgres"
    generate = intent.spec.source.generate or {}
    rotating = [g for g in generate.values() if not isinstance(g, FixedNameGenerator)]
    keypairs = [g for g in rotating if isinstance(g, KEYPAIR_GENERATORS)]
    if rotating and len(keypairs) == len(rotating):
        return "keypair"
    return "generated" if keypairs else "random"
