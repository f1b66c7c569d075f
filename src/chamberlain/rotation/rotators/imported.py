"""Values issued upstream (RFC 6.5.2): a provider issued a new SMTP password or registry token for a secret that
started as bootstrap, and ``chamberlain import`` brings it into the authority through the rotation workflow.

:class:`ImportedRotator` is the rotator of such a run: ``create_pending`` returns the value the user supplied
instead of drawing one; the workflow stages it in the authority before any other step, so a crash resumes from
Vault, never from the file. It has no target (the provider already holds the value; ``set_at_target`` does
nothing), ``test`` checks the key set, and ``revoke_old`` does nothing (the provider revokes its old credential;
the run records ``revokeOld: false``). It is not in the entry-point registry: it is built per import, holding that
import's value, and the workflow gives every other executor of an import run one that holds none
(:func:`~chamberlain.rotation.workflow.rotator_for`).

:func:`parse_values` reads what the user supplied (pure): a YAML/JSON mapping of key to string covering exactly
the secret's keys, or, for one key, the raw bytes. Errors name the source, the line and the key, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import yaml

from chamberlain.errors import UsageError
from chamberlain.rotation.rotators.base import PendingVersion, RotationContext, RotatorConfigError

NAME = "imported"
MAX_IMPORT_BYTES = 64 * 1024  # far above any password, token, docker config or certificate chain
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_STR = "tag:yaml.org,2002:str"

try:  # the C loader when present, as the intent loader uses it
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


class ValueRefused(UsageError):
    """The supplied value cannot be imported as it is; nothing was changed. Says where and why, never what."""


class ImportedRotator:
    """The rotator of an import run. ``values``: the complete new version (every key of the secret), or None for
    an executor that did not receive it (then a run not yet staged fails, never invents a value)."""

    name = NAME

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values) if values is not None else None

    def __repr__(self) -> str:
        return f"ImportedRotator(values={'<hidden>' if self.values is not None else None})"

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        if self.values is None:
            raise RotatorConfigError(f"{ctx.name}: this import run was interrupted before its value was staged; "
                                     "nothing changed; run `chamberlain import` again")
        want, got = set(ctx.current), set(self.values)
        if got != want:
            raise RotatorConfigError(f"{ctx.name}: the secret's keys changed since the import was checked "
                                     f"(now {', '.join(sorted(want))}); run `chamberlain import` again")
        rotated = frozenset(k for k in got if self.values[k] != ctx.current.get(k))
        if not rotated:
            raise RotatorConfigError(f"{ctx.name}: the imported value equals the current version")
        return PendingVersion(data=dict(self.values), rotated=rotated, notes={"origin": "upstream"})

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        """Nothing to do: the provider issued the value, so it already accepts it."""

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        missing = sorted(set(ctx.current) - set(pending.data))
        if missing:
            raise RotatorConfigError(f"{ctx.name}: the staged version lacks keys {missing}")

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        """Nothing chamberlain can revoke: the provider revokes the credential it replaced."""


# --------------------------------------------------------------------------------------------------- parsing


def parse_values(raw: bytes, *, source: str, keys: Sequence[str], current: Mapping[str, str] | None = None,
                 key: str | None = None) -> dict[str, str]:
    """The complete new version from what the user supplied (pure). ``keys``: the secret's keys (of its current
    version in the authority). With ``key``, ``raw`` is that one key's value (UTF-8; one trailing line ending is
    dropped, as editors and ``echo`` add one) and the other keys keep their ``current`` values; without it, ``raw``
    is a YAML or JSON mapping of exactly ``keys`` to non-empty strings. :class:`ValueRefused` otherwise."""
    if not raw:
        raise ValueRefused(f"{source}: empty; nothing to import")
    if len(raw) > MAX_IMPORT_BYTES:
        raise ValueRefused(f"{source}: larger than {MAX_IMPORT_BYTES // 1024} KiB; that is not a credential")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueRefused(f"{source}: not UTF-8 (byte {exc.start}); values are text") from None
    if key is not None:
        return _one_key(text, source, keys, current or {}, key)
    values = _mapping(text, source)
    missing, extra = sorted(set(keys) - set(values)), sorted(set(values) - set(keys))
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(extra)}"] if extra else [])
        raise ValueRefused(f"{source}: the keys must be exactly the secret's ({', '.join(sorted(keys))}): "
                           f"{'; '.join(parts)}; or pass --key K with the raw value of one key")
    return values


def _one_key(text: str, source: str, keys: Sequence[str], current: Mapping[str, str], key: str) -> dict[str, str]:
    if key not in keys:
        raise ValueRefused(f"--key {key}: not a key of the secret ({', '.join(sorted(keys))})")
    value = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not value:
        raise ValueRefused(f"{source}: empty value for {key}; nothing to import")
    return {**{k: current[k] for k in keys if k in current}, key: value}


def _mapping(text: str, source: str) -> dict[str, str]:
    """A flat mapping of key to string from YAML/JSON text. Refuses aliases (an alias bomb, or one value silently
    reused for two keys), tags other than plain strings (``yes``, ``0123`` or ``1e3`` must be quoted) and
    duplicate keys. Messages carry lines and key names only: a YAML error's own text can quote the input."""
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise ValueRefused(f"{source}:{line}: YAML anchors and aliases are not allowed here")
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ValueRefused(f"{source}{where}: not valid YAML or JSON (details withheld: they may quote the value)"
                           ) from None
    except yaml.YAMLError:
        raise ValueRefused(f"{source}: not valid YAML or JSON") from None
    if not isinstance(node, yaml.MappingNode):
        raise ValueRefused(f"{source}: not a mapping of key to value; write `KEY: value` lines, or pass --key K "
                           "with the raw value of one key")
    values: dict[str, str] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR else None
        if not isinstance(name, str) or not _KEY.fullmatch(name):
            raise ValueRefused(f"{source}:{line}: a key is not a Kubernetes Secret key name")
        if name in values:
            raise ValueRefused(f"{source}:{line}: key {name} appears twice")
        if not isinstance(value_node, yaml.ScalarNode) or value_node.tag != _STR:
            raise ValueRefused(f"{source}:{line}: key {name}: the value is not a string (quote it)")
        if not value_node.value:
            raise ValueRefused(f"{source}:{line}: key {name}: empty value")
        values[name] = value_node.value
    if not values:
        raise ValueRefused(f"{source}: an empty mapping; nothing to import")
    return values


__all__ = ["MAX_IMPORT_BYTES", "NAME", "ImportedRotator", "ValueRefused", "parse_values"]
