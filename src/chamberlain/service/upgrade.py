"""``chamberlain upgrade plan|apply``: observe an installation of the previous release, plan the steps
(:mod:`chamberlain.upgrade.plan`, pure), and run the needed ones in order, re-observing after each.

One cluster per run (a kubeconfig reaches one cluster: its SecretStores, its ServiceAccounts, its auth mount).
Identities: the configurator logs in as this release's (its own ServiceAccount at its cluster's mount) and, on an
installation not yet upgraded, falls back to the previous release's (the configurator role on the shared mount,
bound to the controller's ServiceAccount) — the only identity such an installation has besides a break-glass token
(``--vault-token-file``/``--vault-token-env``, never argv). The orchestrator steps (markers, ledger links of the
environments' partitions) log in the same way as the cluster's orchestrator.

Every step is recorded in the ledger (event ``upgrade``, details ``step`` and counts; never a value) before it acts,
in the partition of the identity that acts: a crash between the record and the act leaves an entry and a step that
the next apply plans again (write-ahead: no act without its entry). The authority configuration step is recorded
after it ran, by ``authority-configure`` and an ``upgrade`` entry: before it, no ledger key exists to sign with.
Crash points: ``upgrade.after-<step>`` after each step and ``upgrade.markers.after-first``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import ChamberlainError
from chamberlain.faults import checkpoint
from chamberlain.service.authority import Selection, desired_state
from chamberlain.service.repository import load_platform
from chamberlain.upgrade.plan import (
    LEGACY_CONFIGURATOR,
    ROLE_PREFIX,
    Observed,
    Step,
    StepId,
    next_step,
    outstanding,
    plan,
)

if TYPE_CHECKING:
    from chamberlain.authority.configure import Desired
    from chamberlain.authority.vault import VaultClient
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform
    from chamberlain.rotation.manual import Placed
    from chamberlain.service.context import Caller, Servers

MAX_RUNS_PER_STEP = 2  # the configuration runs twice (the clean-up grant is dropped at the end); others once


class UpgradeStuck(ChamberlainError):
    """A step was still needed after it ran (e.g. a v1 marker that does not match its version's data)."""


@dataclass(frozen=True)
class UpgradeRequest:
    target: Selection
    identities: tuple[Path, ...] = ()  # age identities for the custody rekey (k custodians' files)


@dataclass
class UpgradeResult:
    cluster: str
    steps: list[Step]  # the plan (after an apply: the plan that remains)
    applied: list[dict[str, str]] = field(default_factory=list)  # one row per step run: id and outcome

    @property
    def complete(self) -> bool:
        return not outstanding(self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "complete": self.complete, "steps": [s.as_dict() for s in self.steps],
                "applied": self.applied}


@dataclass
class _Run:
    """One invocation: what was loaded, the clients once logged in (each login at most once per run)."""

    request: UpgradeRequest
    servers: Servers
    repo: Repository
    platform: Platform
    cluster: str
    environments: list[str]
    _configurator: VaultClient | None = None
    configurator_login: bool = False  # whether this release's configurator identity logged in
    _orchestrator: VaultClient | None = None

    @property
    def legacy_mount(self) -> str:
        return self.platform.spec.authority.kubernetes_auth_mount

    @property
    def runtime(self) -> str:
        return self.platform.spec.authority.mounts.runtime

    def configurator(self, *, fresh: bool = False) -> VaultClient:
        """This release's configurator; on an installation not yet upgraded, the previous release's."""
        if self._configurator is None or fresh:
            from chamberlain.authority import session

            try:
                self._configurator = self.servers.configurator(self.platform, self.cluster)
                self.configurator_login = True
            except ChamberlainError:
                self.configurator_login = False
                if self.servers.connection(self.platform).token:
                    raise
                spec = self.platform.spec
                identity = session.ConfiguratorIdentity(self.legacy_mount, spec.controller.namespace,
                                                        spec.controller.service_account)
                self._configurator = session.configurator(self.servers.connection(self.platform),
                                                          self.servers.kube(), identity)
        return self._configurator

    def orchestrator(self, *, fresh: bool = False) -> VaultClient:
        """The cluster's orchestrator at its own mount; before the configuration step, at the shared mount."""
        if self._orchestrator is None or fresh:
            from chamberlain.authority import session
            from chamberlain.render.naming import orchestrator_policy

            try:
                self._orchestrator = self.servers.orchestrator(self.platform, self.cluster)
            except ChamberlainError:
                if self.servers.connection(self.platform).token:
                    raise
                self._orchestrator = session.login_as(self.servers.connection(self.platform), self.platform,
                                                      self.servers.kube(), orchestrator_policy(self.cluster),
                                                      self.legacy_mount)
        return self._orchestrator

    def placed(self) -> list[Placed]:
        from chamberlain.service.rotation import placed_in

        seen: set[str] = set()
        out = []
        for p in placed_in(self.repo, self.platform, self.cluster, self.environments):
            if p.vault.full not in seen:  # a runtime path is shared by the clusters of its environment
                seen.add(p.vault.full)
                out.append(p)
        return out

    def partitions(self) -> list[tuple[str, str]]:
        from chamberlain.intent.paths import AUTHORITY_PARTITION

        return [(env, self.cluster) for env in self.environments] + [AUTHORITY_PARTITION]


def _open(request: UpgradeRequest, servers: Servers) -> _Run:
    from chamberlain.handover import select_cluster

    repo, platform = load_platform(request.target.root)
    servers.connection(platform)  # a bad CA file is a usage error before anything is read
    cluster, envs = select_cluster(platform, request.target.environment, request.target.cluster)
    return _Run(request, servers, repo, platform, cluster, envs)


# ------------------------------------------------------------------------------------------------ observe


def _legacy_roles(run: _Run, client: VaultClient) -> tuple[str, ...]:
    from chamberlain.authority.errors import Forbidden

    mounts = {m.strip("/") for m in client.auth.list_mounts()}
    if run.legacy_mount not in mounts:
        return ()
    try:
        roles = client.auth.list_roles(run.legacy_mount)
    except Forbidden:
        # This release's configurator may list the shared mount only while chamberlain's roles remain there (the
        # grant is dropped once they are gone): refused means none is left.
        return ()
    return tuple(sorted(r for r in roles if r.startswith(ROLE_PREFIX) and _of_cluster(r, run.cluster)))


def _of_cluster(role: str, cluster: str) -> bool:
    """The shared mount served every cluster: only this cluster's roles (``chamberlain.<cluster>.orchestrator``,
    ``chamberlain.<env>.<cluster>.<...>``) and the configurator's are this run's to remove; another cluster's
    stores may still log in with theirs until that cluster is upgraded."""
    parts = role.split(".")
    return role == LEGACY_CONFIGURATOR or cluster in parts[1:3]


def _desired(run: _Run, legacy_roles: tuple[str, ...]) -> Desired:
    return desired_state(run.repo, run.platform, run.request.target, run.servers.kubeconfig,
                         legacy_auth_mounts=(run.legacy_mount,) if legacy_roles else ())


def _configuration_changes(client: VaultClient, desired: Desired) -> tuple[str, ...]:
    from chamberlain.authority.configure import CONFIGURATOR, observe
    from chamberlain.authority.configure import plan as configure_plan
    from chamberlain.authority.errors import Forbidden

    if client.policies.read(CONFIGURATOR) != desired.policies[CONFIGURATOR]:
        # The previous release's configurator policy cannot read this release's mounts: its own policy is the
        # first change, and what follows is seen once it is in force.
        return (f"policy {CONFIGURATOR}: change (first: it grants the rest)",)
    try:
        return tuple(c.line() for c in configure_plan(desired, observe(client, desired), prune=False))
    except Forbidden:
        return ("configuration: not readable with this identity yet",)


def _stores_on(run: _Run) -> tuple[str, ...]:
    from chamberlain.kube.api import CustomResource

    kube = run.servers.kube()
    found = []
    for plural in ("secretstores", "clustersecretstores"):
        for obj in kube.list_custom_objects(CustomResource("external-secrets.io", "v1", plural)):
            auth = (((obj.get("spec") or {}).get("provider") or {}).get("vault") or {}).get("auth") or {}
            if (auth.get("kubernetes") or {}).get("mountPath") == run.legacy_mount:
                meta = obj.get("metadata") or {}
                found.append("/".join(p for p in (meta.get("namespace"), meta.get("name")) if p))
    return tuple(sorted(found))


def _v1_markers(run: _Run) -> tuple[str, ...]:
    from chamberlain.upgrade.markers import is_legacy

    kv = run.orchestrator().kv
    out = []
    for p in run.placed():
        meta = kv.read_metadata(p.vault.mount, p.vault.path)
        if meta is not None and is_legacy(dict(meta.custom)):
            out.append(p.vault.full)
    return tuple(out)


def _old_head(run: _Run) -> tuple[int, str] | None:
    from chamberlain.authority.errors import Forbidden
    from chamberlain.intent.paths import LEDGER_HEAD

    for client in (run.configurator, run.orchestrator):
        try:
            head = client().kv.read(run.runtime, LEDGER_HEAD)
        except Forbidden:
            continue
        if head is None:
            return None
        seq, digest = head.data.get("seq", ""), head.data.get("hash", "")
        if seq.isdigit() and len(seq) <= 12 and len(digest) == 64:
            return int(seq), digest
        return None
    return None


def _link_details(head: tuple[int, str]) -> dict[str, str]:
    return {"step": "ledger-link", "old-layout-seq": str(head[0]), "old-layout-hash": head[1]}


def _unlinked(run: _Run, head: tuple[int, str] | None) -> tuple[str, ...]:
    from chamberlain.audit.ledger import LedgerReader, Partition
    from chamberlain.authority.errors import Forbidden

    if head is None:
        return ()
    want = _link_details(head)
    try:  # every chain, read once (entries name their partition)
        entries = LedgerReader(run.configurator().kv, run.runtime).entries()
    except Forbidden:  # the previous release's configurator cannot read the new partitions: none is linked
        entries = []
    linked = {e.partition for e in entries if e.event == "upgrade" and e.details == want}
    return tuple(p.name for p in (Partition(*pc) for pc in run.partitions()) if p.name not in linked)


def _custody(run: _Run) -> tuple[bool, bool, tuple[str, ...]]:
    from chamberlain.authority import lifecycle
    from chamberlain.service.authority import share_custody

    custody = share_custody(run.platform)
    if not custody.declared:
        return False, True, ()
    store = lifecycle.SealedStore(run.servers.kube(), run.platform.spec.controller.namespace)
    material = lifecycle.status(run.servers.anonymous(run.platform), store, custody).material
    in_force = bool(material.custodians) and material.matches_platform is not False
    return True, in_force, tuple(name for name, _ in custody.custodians)


def _account_exists(run: _Run) -> bool:
    from chamberlain.kube.api import KubeNotFound
    from chamberlain.render import naming

    try:  # a TokenRequest is not stored: asking for one reads whether the ServiceAccount exists, changing nothing
        run.servers.kube().service_account_token(naming.configurator_namespace(run.platform),
                                                 naming.configurator_service_account(run.platform), ["vault"], 600)
    except KubeNotFound:
        return False
    return True


def observe(run: _Run) -> Observed:
    client = run.configurator(fresh=True)
    legacy = _legacy_roles(run, client)
    declared, in_force, custodians = _custody(run)
    head = _old_head(run)
    return Observed(
        cluster=run.cluster,
        configuration_changes=_configuration_changes(client, _desired(run, legacy)),
        configurator_account=_account_exists(run),
        configurator_login=run.configurator_login or bool(run.servers.connection(run.platform).token),
        legacy_mount=run.legacy_mount,
        legacy_roles=legacy,
        stores_on_legacy=_stores_on(run) if legacy else (),
        v1_markers=_v1_markers(run),
        old_head=head,
        unlinked_partitions=_unlinked(run, head),
        custody_declared=declared,
        custody_in_force=in_force,
        custodians=custodians,
        identities_given=bool(run.request.identities),
    )


# ------------------------------------------------------------------------------------------------ steps


def _record(run: _Run, caller: Caller, details: Mapping[str, str], *, partition: tuple[str, str] | None = None,
            client: VaultClient | None = None) -> None:
    """One ``upgrade`` entry, signed, in ``partition`` (default: the configurator's) by the identity that acts."""
    from chamberlain.audit.ledger import AUTHORITY, Ledger, Partition, TransitSigner

    part = AUTHORITY if partition is None else Partition(*partition)
    who = client or (run.configurator() if partition is None else run.orchestrator())
    Ledger(who.kv, run.runtime, caller.clock, partition=part, signer=TransitSigner(who.transit)).append(
        "upgrade", actor=caller.actor, run=caller.run, details=details)


def _configuration(run: _Run, caller: Caller) -> str:
    from chamberlain.authority.configure import CONFIGURATOR
    from chamberlain.service.authority import _converge, _recorder

    client = run.configurator(fresh=True)
    legacy = _legacy_roles(run, client)
    desired = _desired(run, legacy)
    first = client.policies.read(CONFIGURATOR) != desired.policies[CONFIGURATOR]
    if first:
        # The previous release's configurator policy does not reach this release's mounts; it may write ACL
        # policies, and a token's policies are evaluated by name at each request: its own policy goes first.
        client.policies.write(CONFIGURATOR, desired.policies[CONFIGURATOR])
    result = _converge(client, desired, prune=False, dry_run=False, record=_recorder(run.platform, caller)(client),
                       details={"upgrade": "true"})
    applied = len(result.changes) + int(first)
    _record(run, caller, {"step": "authority-configuration", "changes": str(applied),
                          "legacy-grant": str(bool(legacy)).lower()})
    run._orchestrator = None  # its role and policy may have just moved to the cluster's own mount
    return f"{applied} change(s) applied" + (" (the configurator's own policy first)" if first else "")


def _account(run: _Run, caller: Caller) -> str:
    from chamberlain.render import naming

    ns, sa = naming.configurator_namespace(run.platform), naming.configurator_service_account(run.platform)
    _record(run, caller, {"step": "configurator-account", "serviceAccount": f"{ns}/{sa}"})
    kube = run.servers.kube()
    kube.ensure_namespace(ns)
    kube.ensure_service_account(ns, sa)
    return f"{ns}/{sa} ensured"


def _legacy_configurator(run: _Run, caller: Caller) -> str:
    client = run.configurator()
    _record(run, caller, {"step": "legacy-configurator-role", "mount": run.legacy_mount, "role": LEGACY_CONFIGURATOR})
    client.auth.delete_role(run.legacy_mount, LEGACY_CONFIGURATOR)
    run._configurator = None  # log in again next time: as this release's configurator from now on
    return f"auth/{run.legacy_mount}/role/{LEGACY_CONFIGURATOR} deleted"


def _markers(run: _Run, caller: Caller, paths: tuple[str, ...]) -> str:
    from chamberlain.upgrade.markers import rekey

    client = run.orchestrator(fresh=True)
    wanted = set(paths)
    by_env: dict[str, list[Placed]] = {}
    for p in run.placed():
        if p.vault.full in wanted:
            by_env.setdefault(p.environment, []).append(p)
    outcomes: Counter[str] = Counter()
    for env, placed in sorted(by_env.items()):
        _record(run, caller, {"step": "markers", "secrets": str(len(placed))}, partition=(env, run.cluster),
                client=client)
        for p in placed:
            outcomes[rekey(client.kv, client.transit, p.vault)] += 1
            checkpoint("upgrade.markers.after-first")
    if outcomes["inconsistent"]:
        raise UpgradeStuck(f"{outcomes['inconsistent']} secret(s) carry a v1 marker that is not the one of their "
                           "value-version's data (left as they are; `chamberlain rotate` them, then apply again)")
    return ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))


def _link(run: _Run, caller: Caller, head: tuple[int, str], partitions: tuple[str, ...]) -> str:
    from chamberlain.intent.paths import AUTHORITY_PARTITION

    for name in partitions:
        env, _, cluster = name.partition("/")
        configurator = (env, cluster) == AUTHORITY_PARTITION
        _record(run, caller, _link_details(head), partition=(env, cluster),
                client=run.configurator() if configurator else run.orchestrator())
    return f"{len(partitions)} partition(s) linked to the old layout's seq {head[0]}"


def _legacy_roles_step(run: _Run, caller: Caller, roles: tuple[str, ...]) -> str:
    client = run.configurator()
    names = [r for r in roles if r != LEGACY_CONFIGURATOR]
    _record(run, caller, {"step": "legacy-roles", "mount": run.legacy_mount, "roles": str(len(names))})
    for name in names:
        client.auth.delete_role(run.legacy_mount, name)
    return f"{len(names)} role(s) deleted on {run.legacy_mount}"


def _custody_step(run: _Run, caller: Caller) -> str:
    from chamberlain.service.authority import rekey

    _record(run, caller, {"step": "custody", "custodians": str(len(run.platform.spec.root_of_trust.custody.custodians)
                                                              if run.platform.spec.root_of_trust.custody else 0)})
    result = rekey(run.request.target.root, run.request.identities, run.servers, caller, cluster=run.cluster)
    return f"rekeyed: {result.report.shares} share(s), threshold {result.report.threshold}"


def _execute(run: _Run, caller: Caller, step: Step, observed: Observed) -> str:
    if step.id == "authority-configuration":
        return _configuration(run, caller)
    if step.id == "configurator-account":
        return _account(run, caller)
    if step.id == "legacy-configurator-role":
        return _legacy_configurator(run, caller)
    if step.id == "markers":
        return _markers(run, caller, observed.v1_markers)
    if step.id == "ledger-link":
        assert observed.old_head is not None  # planned only with an old head
        return _link(run, caller, observed.old_head, observed.unlinked_partitions)
    if step.id == "legacy-roles":
        return _legacy_roles_step(run, caller, observed.legacy_roles)
    return _custody_step(run, caller)


# ------------------------------------------------------------------------------------------------ use cases


def plan_upgrade(request: UpgradeRequest, servers: Servers) -> UpgradeResult:
    """Every step and its state; changes nothing."""
    run = _open(request, servers)
    return UpgradeResult(run.cluster, plan(observe(run)))


def apply_upgrade(request: UpgradeRequest, servers: Servers, caller: Caller) -> UpgradeResult:
    """Run the needed steps in order, re-observing after each (so a resumed run starts where the last one
    stopped); what stays outstanding (waiting on Git, left to custodians) is in the result."""
    run = _open(request, servers)
    runs: Counter[StepId] = Counter()
    applied: list[dict[str, str]] = []
    while True:
        observed = observe(run)
        steps = plan(observed)
        step = next_step(steps)
        if step is None:
            return UpgradeResult(run.cluster, steps, applied)
        runs[step.id] += 1
        if runs[step.id] > MAX_RUNS_PER_STEP:
            raise UpgradeStuck(f"upgrade step {step.id} is still needed after it ran: {step.changes}")
        applied.append({"step": step.id, "outcome": _execute(run, caller, step, observed)})
        checkpoint(f"upgrade.after-{step.id}")


__all__ = ["UpgradeRequest", "UpgradeResult", "UpgradeStuck", "apply_upgrade", "observe", "plan_upgrade"]
