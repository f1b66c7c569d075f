"""The playbooks for when things go wrong, as use cases: compromise, a lost or replaced custodian, rotating the
root of trust, rotating a cluster's GitOps decryption key.

Each one plans first from Git (and, for custody, the sealed material's holder names) with the pure decisions of
:mod:`chamberlain.playbook`, so a dry run contacts nothing it does not have to; acting reuses the commands that
already exist — the durable rotation workflow (:func:`~chamberlain.service.rotation.rotate_many`), the custody
rekey (:func:`~chamberlain.service.authority.rekey`), ``sops updatekeys`` — and every act carries the reason into
the runs and the ledger. Results name secrets, files and custodians; never a value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import UsageError
from chamberlain.playbook.compromise import Affected, Scope, affected
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.intent.loader import Repository
    from chamberlain.playbook.custody import CustodyPlan
    from chamberlain.service.context import Caller, Servers
    from chamberlain.service.rotation import RotateResult


def _required_reason(reason: str) -> str:
    """The reason as the ledger, RotationRuns and logs take it: one printable line, bounded (no terminal escapes
    or forged log lines from a pasted incident text), as the triggers' reasons are."""
    from chamberlain.triggers.request import sanitize_reason

    if not reason.strip():
        raise UsageError("--reason is required (it is recorded on every run and in the ledger)")
    return sanitize_reason(reason)


# ------------------------------------------------------------------------------------------------ compromise


@dataclass
class CompromisePlan:
    scope: Scope
    environment: str
    cluster: str
    secrets: list[Affected]
    not_placed: list[str] = field(default_factory=list)  # exposed, but not in the selected environment/cluster

    def check_actionable(self) -> None:
        """Rotations act in one environment: several on the selected cluster need ``--environment``."""
        if self.environment == "*":
            raise UsageError(f"cluster {self.cluster} serves several environments: pass --environment to rotate "
                             "(--dry-run lists them all)")

    @property
    def to_rotate(self) -> list[str]:
        return [a.secret for a in self.secrets if a.automatic and a.secret not in self.not_placed]

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope.describe(), "environment": self.environment, "cluster": self.cluster,
                "secrets": [{**a.as_dict(), "placed": a.secret not in self.not_placed} for a in self.secrets],
                "toRotate": self.to_rotate,
                "manual": [a.secret for a in self.secrets if not a.automatic]}


def bootstrap_namespaces(repo: Repository) -> dict[str, set[str]]:
    """Per intent: the namespaces its bootstrap Secret manifests name (GitOps applies them there)."""
    from chamberlain.checks.sops import bootstrap_secrets

    out: dict[str, set[str]] = {}
    for s in bootstrap_secrets(repo):
        if s.namespace:
            out.setdefault(s.ref.intent.obj.metadata.name, set()).add(s.namespace)
    return out


def compromise_plan(root: Path, scope: Scope, *, environment: str | None = None, cluster: str | None = None
                    ) -> CompromisePlan:
    """What ``scope``'s compromise exposes (Git only: no server is contacted), and which of those secrets are
    placed in the selected environment and cluster."""
    from chamberlain.handover import select_cluster
    from chamberlain.intent.paths import placements

    repo, platform = load_platform(root)
    chosen, envs = select_cluster(platform, environment, cluster)
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    found = affected(platform, intents.values(), scope, bootstrap_namespaces(repo))
    if not found:
        raise UsageError(f"nothing is exposed by a compromise of {scope.describe()}: no intent has a consumer, a "
                         "producer or a bootstrap Secret there, nor an owner of that name")
    placed = {n for n, i in intents.items() for p in placements(platform, i) if p.cluster == chosen
              and p.environment in envs and (environment is None or p.environment == environment)}
    env = environment or (envs[0] if len(envs) == 1 else "*")
    return CompromisePlan(scope, env, chosen, found, [a.secret for a in found if a.secret not in placed])


def compromise_reason(scope: Scope, reason: str) -> str:
    return f"compromise of {scope.describe()}: {_required_reason(reason)}"


def compromise(root: Path, plan: CompromisePlan, reason: str, servers: Servers, caller: Caller, *,
               max_wait: float = 120.0, timeout: float = 120.0,
               on_stage: Callable[[str, str], None] | None = None) -> RotateResult:
    """Rotate every automatically rotatable exposed secret of ``plan``, admin credentials first, each run and
    ledger entry carrying ``compromise of SCOPE: REASON``. Not held back by the trigger rate limit."""
    from chamberlain.service.rotation import RotateRequest, RotateResult, rotate_many

    why = compromise_reason(plan.scope, reason)
    plan.check_actionable()
    names = plan.to_rotate
    if not names:
        return RotateResult(ok=True, cluster=plan.cluster, release=False)
    request = RotateRequest(root, reason=why, environment=plan.environment, cluster=plan.cluster,
                            max_wait=max_wait, timeout=timeout, on_stage=on_stage)
    return rotate_many(request, names, servers, caller, rate_limit=False)


# ------------------------------------------------------------------------------------- lost/replaced custodian


def custody_plan(root: Path, servers: Servers, *, lost: Sequence[str] = ()) -> CustodyPlan:
    """The rekey a custody change needs, read against the shares in force (the sealed material's holder names:
    no share is opened here)."""
    from chamberlain.authority.lifecycle import SealedStore
    from chamberlain.playbook import custody
    from chamberlain.service.authority import share_custody

    _, platform = load_platform(root)
    declared = share_custody(platform)
    stored = SealedStore(servers.kube(), platform.spec.controller.namespace).load()
    if stored is None or not stored.shares:
        raise UsageError("no sealed unseal material: run `chamberlain authority init` first")
    holders = tuple(stored.holder(i) for i in range(len(stored.shares)))
    threshold = declared.threshold if declared.declared else stored.threshold
    return custody.plan(holders, stored.threshold, declared.holders, threshold,
                        matches_platform=stored.recipients == declared.fingerprint, lost=lost)


def custody_rekey(root: Path, identities: Sequence[Path], reason: str, servers: Servers, caller: Caller, *,
                  lost: Sequence[str] = (), cluster: str | None = None) -> tuple[CustodyPlan, Any]:
    """Plan (refusing what a rekey cannot fix), then rekey to the declared custodians with ``reason`` recorded."""
    from chamberlain.service import authority

    why = _required_reason(reason)
    plan = custody_plan(root, servers, lost=lost)
    detail = f"custody playbook ({'lost: ' + ','.join(lost) if lost else 'custodian change'}): {why}"
    return plan, authority.rekey(root, identities, servers, caller, cluster=cluster, reason=detail)



# ------------------------------------------------------------------------------------------------ the ledger


def record_playbook(root: Path, servers: Servers, caller: Caller, playbook: str, reason: str,
                    details: dict[str, str], *, cluster: str | None = None) -> int:
    """One ``playbook`` ledger entry in the authority's partition, signed by the configurator: what was done, and
    why. Returns its sequence number."""
    from chamberlain.audit.ledger import AUTHORITY, Ledger, TransitSigner

    _, platform = load_platform(root)
    client = servers.configurator(platform, cluster)
    ledger = Ledger(client.kv, platform.spec.authority.mounts.runtime, caller.clock, partition=AUTHORITY,
                    signer=TransitSigner(client.transit))
    entry = ledger.append("playbook", actor=caller.actor, run=caller.run, reason=reason,
                          details={"playbook": playbook, **details})
    return entry.seq


# ------------------------------------------------------------------------------------- rotating a key in Git


@dataclass
class KeyRotation:
    """What ``root rotate`` or ``root gitops-key --rotate`` did: the new identity (path and public recipient
    only), the files re-encrypted, what the old key still opens through Git history, and what is left to do."""

    identity_file: str
    created: bool
    old_recipient: str
    new_recipient: str
    platform_file: str
    reencrypted: list[str]
    exposed: list[Affected]
    unseal_shares: str = ""  # root rotate: what happened to them
    in_cluster_key: str = ""  # gitops-key --rotate: created / updated / unchanged / retired-old / skipped
    ledger_seq: int | None = None
    rotations: list[dict[str, Any]] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)
    ok: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"identityFile": self.identity_file, "created": self.created, "oldRecipient": self.old_recipient,
                "newRecipient": self.new_recipient, "platformFile": self.platform_file,
                "reencrypted": self.reencrypted, "exposed": [a.as_dict() for a in self.exposed],
                "unsealShares": self.unseal_shares, "inClusterKey": self.in_cluster_key, "ledgerSeq": self.ledger_seq,
                "rotations": self.rotations, "todo": self.todo, "ok": self.ok}


def bootstrap_files(repo: Repository) -> list[Any]:
    """Every declared bootstrap file with the age recipients its sops block names now."""
    from chamberlain.checks.sops import bootstrap_refs
    from chamberlain.playbook.root import BootstrapFile

    out = []
    for ref in bootstrap_refs(repo):
        if ref.file is None or ref.rel is None:
            continue
        found: set[str] = set()
        for doc in ref.file.documents:
            meta = doc.data.get("sops") if doc.is_sops and isinstance(doc.data, dict) else None
            for entry in (meta or {}).get("age") or []:
                if isinstance(entry, dict) and isinstance(entry.get("recipient"), str):
                    found.add(entry["recipient"].strip())
        out.append(BootstrapFile(ref.intent.obj.metadata.name, ref.rel, frozenset(found)))
    return out


def _exposed(repo: Repository, old: str, new: str, only: set[str] | None = None) -> list[Affected]:
    """What ``old`` opened: files encrypted to it now, or to ``new`` (re-encrypted from it by an earlier,
    interrupted run of the same rotation: the new identity is brand new)."""
    from chamberlain.playbook.root import BootstrapFile, exposed

    files = [f for f in bootstrap_files(repo) if only is None or f.rel in only]
    widened = [BootstrapFile(f.intent, f.rel, f.recipients | ({old} if new in f.recipients else set()))
               for f in files]
    return exposed(widened, old, {i.obj.metadata.name: i.obj for i in repo.intents})


def _new_identity(path: Path, repo: Path, old: str, tools: Tools, **where: str) -> Any:
    from chamberlain.root import ensure_identity

    ident = ensure_identity(path, repo, tools=tools, **where)  # created once, 0600, never overwritten
    if ident.recipient == old:
        raise UsageError(f"{path}: is the key being rotated; give a path for the new identity")
    return ident


def _updatekeys(root: Path, stale: Sequence[str], identity: Path, tools: Tools) -> list[str]:
    from chamberlain.bootstrap.sops import Sops

    if not stale:
        return []
    sops = Sops.locate(tools)
    for rel in stale:
        sops.updatekeys(root, rel, identity_file=identity)
    return list(stale)


def root_rotate(root: Path, old_identity: Path, new_identity: Path, reason: str, tools: Tools, *,
                servers: Servers | None, caller: Caller | None, environment: str | None = None,
                cluster: str | None = None, rotate: bool = False) -> KeyRotation:
    """Rotate the root of trust: a new identity, the Platform and ``.sops.yaml`` moved to it, every bootstrap file
    re-encrypted (``sops updatekeys``, opened with the old identity), the unseal shares rekeyed to the new root
    when no custody is declared, and the exposed values listed (rotated where a rotator exists, with ``rotate``).
    Resumable: re-running with the same two identity files carries on where it stopped. ``servers`` None: Git
    only (the rekey and the ledger entry are left as to-dos)."""
    from chamberlain.intent.loader import load_repository
    from chamberlain.root import recipient_of
    from chamberlain.root.repo import rotate_root_recipient

    why = _required_reason(reason)
    load_platform(root)  # a repository that does not validate is refused before any key exists
    old = recipient_of(old_identity, tools)
    ident = _new_identity(new_identity, root, old, tools)
    update = rotate_root_recipient(root, old, ident.recipient)
    done = _updatekeys(root, update.stale_files, old_identity, tools)
    _repo, platform = load_platform(root)
    left = rotate_root_recipient(root, old, ident.recipient).stale_files
    if left:  # pragma: no cover - sops updatekeys succeeded but the file still names other recipients
        raise UsageError(f"still not encrypted to the new recipients: {', '.join(left)}")
    result = KeyRotation(str(ident.path), ident.created, old, ident.recipient, update.platform_file, done,
                         _exposed(load_repository(root), old, ident.recipient))
    custody = platform.spec.root_of_trust.custody
    if custody is not None:
        result.unseal_shares = "sealed to the custodians, not the root: unchanged"
    elif servers is None or caller is None:
        result.unseal_shares = "not rekeyed (offline): the old identity still opens them"
        result.todo.append(f"chamberlain authority rekey --identity {old_identity} {root}  (new shares sealed to "
                           "the new root; the old identity then opens none)")
    else:
        result.unseal_shares = _rekey_to_root(root, [old_identity, ident.path], why, servers, caller, cluster)
    _finish(result, root, "root-rotate", why, servers, caller, environment, cluster, rotate)
    result.todo.insert(0, f"commit {update.platform_file}, .sops.yaml and the re-encrypted files; keep "
                          f"{ident.path} offline; destroy {old_identity} once the commit is pushed")
    return result


def _rekey_to_root(root: Path, identities: list[Path], reason: str, servers: Servers, caller: Caller,
                   cluster: str | None) -> str:
    from chamberlain.authority.lifecycle import SealedStore
    from chamberlain.service import authority

    _, platform = load_platform(root)
    stored = SealedStore(servers.kube(), platform.spec.controller.namespace).load()
    if stored is None or not stored.shares:
        return "none stored (authority not initialized)"
    if stored.recipients == authority.share_custody(platform).fingerprint and not stored.next_shares:
        return "already sealed to the new root"
    report = authority.rekey(root, identities, servers, caller, cluster=cluster,
                             reason=f"root of trust rotated: {reason}").report
    return f"rekeyed to the new root (generation {report.generation}); the old identity opens none"


def _finish(result: KeyRotation, root: Path, playbook: str, reason: str, servers: Servers | None,
            caller: Caller | None, environment: str | None, cluster: str | None, rotate: bool) -> None:
    """Rotate what can be rotated (``rotate``), list what a person must do, and record the playbook."""
    automatic = [a.secret for a in result.exposed if a.automatic]
    for a in result.exposed:
        if not a.automatic:
            result.todo.append(f"{a.secret}: {a.manual}")
    if automatic and not rotate:
        result.todo.append(f"rotate {', '.join(automatic)}: re-run with --rotate (or `chamberlain rotate NAME`)")
    if servers is None or caller is None:
        result.todo.append("no ledger entry (offline): record this rotation in your change log")
        return
    if automatic and rotate:
        from chamberlain.service.rotation import RotateRequest, rotate_many

        request = RotateRequest(root, reason=f"{playbook}: {reason}", environment=environment, cluster=cluster)
        rotated = rotate_many(request, automatic, servers, caller, rate_limit=False)
        result.rotations, result.ok = rotated.rows, rotated.ok
    result.ledger_seq = record_playbook(root, servers, caller, playbook, reason, {
        "old_recipient": result.old_recipient, "new_recipient": result.new_recipient,
        "reencrypted": ",".join(result.reencrypted), "exposed": ",".join(a.secret for a in result.exposed),
        "unseal_shares": result.unseal_shares, "in_cluster_key": result.in_cluster_key}, cluster=cluster)


def gitops_key_rotate(root: Path, cluster: str, new_identity: Path, root_identity: Path, reason: str,
                      tools: Tools, *, servers: Servers | None, caller: Caller | None,
                      old_recipient: str | None = None, retire_old: bool = False, root_dir: Path | None = None
                      ) -> KeyRotation:
    """Rotate ``cluster``'s GitOps decryption key: a new identity, the Platform and ``.sops.yaml`` moved to it, the
    cluster's bootstrap files re-encrypted (opened with the root identity), and ``flux-system/sops-age`` given
    the new key while the old stays as ``previous.agekey`` (Flux reads every ``*.agekey``: it decrypts whichever
    commit it is on). ``retire_old``, once the commit is pushed and Flux reconciled it: drop the old key there."""
    from chamberlain.intent.loader import load_repository
    from chamberlain.root.repo import swap_decryption_recipient

    why = _required_reason(reason)
    _, platform = load_platform(root)
    declared = list(platform.spec.gitops.decryption_recipients.get(cluster, []))
    if not declared:
        raise UsageError(f"{cluster} has no GitOps decryption key declared: create one with "
                         f"`chamberlain root gitops-key {cluster} --identity-file FILE` (no --rotate)")
    if root_dir is not None and new_identity.resolve().is_relative_to(root_dir.resolve()):
        raise UsageError(f"{new_identity}: is in the root of trust's directory ({root_dir}); a cluster's key must be "
                         "a different file from the root identity")
    from chamberlain.root import recipient_of

    new_rec = recipient_of(new_identity, tools) if new_identity.is_file() else None
    if old_recipient is None:
        candidates = [r for r in declared if r != new_rec]
        if not candidates and new_rec in declared:
            candidates = [""]  # swapped by an earlier run (the --retire-old one): nothing left to swap in Git
        if len(candidates) != 1:
            raise UsageError(f"{cluster} declares {len(declared)} decryption recipients; name the one to retire "
                             "with --old-recipient")
        old_recipient = candidates[0]
    ident = _new_identity(new_identity, root, old_recipient, tools, what="a cluster's GitOps decryption key",
                          example=f"~/.config/chamberlain/gitops/{cluster}.agekey")
    update = swap_decryption_recipient(root, cluster, old_recipient, ident.recipient)
    done = _updatekeys(root, update.stale_files, root_identity, tools)
    result = KeyRotation(str(ident.path), ident.created, old_recipient, ident.recipient, update.platform_file, done,
                         _exposed(load_repository(root), old_recipient, ident.recipient))
    if servers is None:
        result.in_cluster_key = "skipped (offline)"
        result.todo.append(f"put {ident.path} into {cluster}'s flux-system/sops-age as identity.agekey (keep the old "
                           "key there until Flux applied the commit)")
    else:
        result.in_cluster_key = _in_cluster_key(servers, ident.path, retire_old)
    if not retire_old:
        result.todo.append("commit and push; once Flux applied it, run again with --retire-old to drop the old key "
                           "from flux-system/sops-age, then destroy the old identity file")
    _finish(result, root, "gitops-key-rotate", why, servers, caller, None, cluster, False)
    return result


PREVIOUS_KEY = "previous.agekey"


def _in_cluster_key(servers: Servers, identity_file: Path, retire_old: bool) -> str:
    """``flux-system/sops-age``: the new key as ``identity.agekey``, the one it replaces kept as
    ``previous.agekey`` until ``retire_old``. The identity goes to the API server and nowhere else."""
    import dataclasses

    from chamberlain.gitops.flux import AGE_KEY, NAMESPACE, install_decryption_key
    from chamberlain.render.flux import SOPS_AGE_SECRET

    kube = servers.kube()
    identity = identity_file.read_text(encoding="utf-8")
    existing = kube.get_secret(NAMESPACE, SOPS_AGE_SECRET)
    if existing is not None and existing.data.get(AGE_KEY) not in (None, identity):
        kube.update_secret(dataclasses.replace(existing, data={**existing.data, PREVIOUS_KEY: existing.data[AGE_KEY],
                                                                 AGE_KEY: identity}))
        done = "updated (old key kept as previous.agekey)"
    else:
        done = install_decryption_key(kube, identity)
    if retire_old:
        current = kube.get_secret(NAMESPACE, SOPS_AGE_SECRET)
        if current is not None and PREVIOUS_KEY in current.data:
            kube.update_secret(dataclasses.replace(current, data={k: v for k, v in current.data.items()
                                                                  if k != PREVIOUS_KEY}))
            done = "old key retired"
        elif done == "unchanged":
            done = "old key already retired"
    return done


__all__ = [
    "PREVIOUS_KEY",
    "CompromisePlan",
    "KeyRotation",
    "bootstrap_files",
    "bootstrap_namespaces",
    "compromise",
    "compromise_plan",
    "compromise_reason",
    "custody_plan",
    "custody_rekey",
    "gitops_key_rotate",
    "record_playbook",
    "root_rotate",
]
