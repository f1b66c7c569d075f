"""Bringing the policy in force in line with Git: the drift of each placed secret, and applying it as an audited
``policy-change`` event (SPEC §5: the policy lives with the secret; a Git change reaches it explicitly).

:func:`plan` reads metadata only; :func:`apply` merges the Git policy's ``policy.*`` keys into the secret's
custom_metadata (a field Git no longer sets is blanked: custom_metadata keys merge, they are never deleted) and
appends one ledger entry per secret naming the fields, old and new. Policy fields are configuration, not values.
Idempotent: a second apply finds no drift and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger
from chamberlain.authority.kv import KV
from chamberlain.handover import metadata as md
from chamberlain.intent.model import Platform, RotationPolicy, RotationPolicySpec
from chamberlain.intent.paths import VaultPath, effective_policy
from chamberlain.rotation.manual import Placed
from chamberlain.rotation.policy import FieldDrift, drift


@dataclass(frozen=True)
class PolicyDrift:
    secret: str
    vault: VaultPath
    git_name: str | None
    git: RotationPolicySpec | None
    fields: tuple[FieldDrift, ...]

    def as_dict(self) -> dict[str, object]:
        return {"secret": self.secret, "path": self.vault.full, "policy": self.git_name,
                "fields": [{"field": f.field, "git": f.in_git, "inForce": f.in_force} for f in self.fields]}


def plan(kv: KV, platform: Platform, policies: Mapping[str, RotationPolicy], placed: Sequence[Placed]
         ) -> list[PolicyDrift]:
    """Every placed secret whose policy in force differs from Git's (secrets not in Vault yet are skipped:
    provisioning writes their policy). Derived and config secrets are skipped too: their metadata in the internal
    mounts is ESO's (its PushSecret replaces custom_metadata with its ``managed-by`` marker on every push), and
    the orchestrator may only read it."""
    out = []
    for p in placed:
        if p.vault.mount != platform.spec.authority.mounts.runtime:
            continue
        meta = kv.read_metadata(p.vault.mount, p.vault.path)
        if meta is None:
            continue
        git = effective_policy(platform, dict(policies), p.intent)
        name, spec = (git[0], git[1]) if git else (None, None)
        fields = drift(name, spec, meta.custom)
        if fields:
            out.append(PolicyDrift(p.name, p.vault, name, spec, tuple(fields)))
    return out


def apply(kv: KV, ledger: Ledger, drifts: Sequence[PolicyDrift], *, actor: str, run: str,
          reason: str = "policy changed in Git") -> int:
    """Write Git's policy onto each drifted secret and ledger a ``policy-change``; returns how many changed."""
    changed = 0
    for d in drifts:
        mount, path = d.vault.mount, d.vault.path
        want = md.policy_metadata(d.git_name, d.git)
        update = {**{f"{wk.POLICY_PREFIX}{f.field}": "" for f in d.fields}, **want}
        meta = kv.read_metadata(mount, path)
        if meta is None:
            continue
        md.merged(meta.custom, update)  # Vault's limits, checked before the write
        kv.update_custom_metadata(mount, path, update)
        # Every chamberlain path starts with its environment (SPEC §9): the partition of that environment.
        partition = ledger.for_environment(d.vault.path.split("/", 1)[0])
        partition.append("policy-change", actor=actor, secret=d.secret, path=d.vault.full, run=run, reason=reason,
                         details={f"{f.field}": f"{f.in_force or '-'} -> {f.in_git or '-'}" for f in d.fields})
        changed += 1
    return changed


__all__ = ["PolicyDrift", "apply", "plan"]
