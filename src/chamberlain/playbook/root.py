"""What a retired root of trust still opens: the values to rotate after ``chamberlain root rotate``.

Pure. ``sops updatekeys`` re-wraps each bootstrap file's data key to the new recipients, but Git history keeps the
old ciphertexts with that same data key wrapped to the old root: whoever holds the old identity opens every value
encrypted to it, today's files included until their values change. So every bootstrap secret whose file was
encrypted to the old recipient is exposed and must get a new value; the unseal shares sealed to the old root (no
custody declared) need a rekey, which ``root rotate`` runs. Names only, never values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chamberlain.intent.model import SecretIntent
from chamberlain.playbook.compromise import Affected, manual_step


@dataclass(frozen=True)
class BootstrapFile:
    """One bootstrap file as Git has it now: the intent it belongs to and the age recipients of its sops block."""

    intent: str
    rel: str
    recipients: frozenset[str]


def exposed(files: Iterable[BootstrapFile], old_recipient: str, intents: Mapping[str, SecretIntent]
            ) -> list[Affected]:
    """Every secret whose bootstrap file was encrypted to ``old_recipient``, in name order, with what rotates it."""
    why: dict[str, list[str]] = {}
    for f in files:
        if old_recipient in f.recipients:
            why.setdefault(f.intent, []).append(f"{f.rel} was encrypted to the old root (Git history keeps it)")
    return [Affected(name, tuple(why[name]), manual_step(intents[name]) if name in intents else "not an intent")
            for name in sorted(why)]


def replaced(recipients: Iterable[str], old: str, new: str) -> list[str]:
    """The root recipient list with ``old`` replaced by ``new`` in place (``new`` once; order kept)."""
    out: list[str] = []
    for r in recipients:
        r = new if r == old else r
        if r not in out:
            out.append(r)
    if new not in out:
        out.append(new)
    return out


__all__ = ["BootstrapFile", "exposed", "replaced"]
