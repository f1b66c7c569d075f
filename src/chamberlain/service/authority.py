"""Phase 3, the runtime authority: init, unseal, configure, plan, rekey, status.

Each use case loads the intent repository (which must validate), renders the Vault bundle in memory, reaches the
servers through :class:`~chamberlain.service.context.Servers` and calls :mod:`chamberlain.authority.lifecycle` /
:mod:`chamberlain.authority.configure`. Every configuration change and life-cycle event is recorded in the ledger
as the :class:`~chamberlain.service.context.Caller`. Results carry counts, names and states; never a share, a token
or a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.kube.kubeconfig import KubeconfigSource, cluster_endpoint
from chamberlain.service.repository import load_platform, vault_bundle

if TYPE_CHECKING:
    from chamberlain.authority.configure import Change, Desired
    from chamberlain.authority.decide import Layout
    from chamberlain.authority.lifecycle import (
        AuthorityEvent,
        AuthorityStatus,
        InitReport,
        NodeUnseal,
        Recorder,
        RekeyReport,
        SealedMaterial,
        SealedStore,
        ShareCustody,
        UnsealReport,
    )
    from chamberlain.authority.vault import VaultClient
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform
    from chamberlain.lifecycle.retire import Orphan, Stranded
    from chamberlain.propagation.conflicts import Conflict
    from chamberlain.rotation.policy_sync import PolicyDrift
    from chamberlain.service.context import Caller, Servers


@dataclass(frozen=True)
class ClusterAuth:
    """Where one cluster's Kubernetes auth mount reviews tokens: its API server and CA (explicit, or from a
    kubeconfig of that cluster) and, for a Vault outside that cluster, a reviewer token of that cluster."""

    kubeconfig: Path | None = None
    host: str | None = None
    ca_file: Path | None = None
    token_reviewer_jwt_file: Path | None = None
    issuer: str | None = None  # its service-account issuer: the mount then refuses tokens of another


@dataclass(frozen=True)
class ConfigureOptions:
    """What the authority's configuration needs beyond the rendered bundle: its file audit device (``stdout``:
    Vault's log stream; empty: no audit device managed) and where each cluster's Kubernetes auth mount reviews
    tokens: ``clusters`` per cluster, else the ``kubernetes_*`` options, else the kubeconfig's cluster."""

    audit_file: str = "stdout"
    kubernetes_host: str | None = None
    kubernetes_ca_file: Path | None = None
    token_reviewer_jwt_file: Path | None = None
    clusters: Mapping[str, ClusterAuth] = field(default_factory=dict)
    kubernetes_issuer: str | None = None
    replace_token_reviewer_jwt: bool = False  # write the reviewer JWTs given even if one is set (a rebuilt cluster)


@dataclass(frozen=True)
class Selection:
    """The repository and the part of it a Vault serves (a Vault per cluster)."""

    root: Path
    environment: str | None = None
    cluster: str | None = None
    configure: ConfigureOptions = field(default_factory=ConfigureOptions)


@dataclass(frozen=True)
class InitRequest:
    """``shares``/``threshold``: None means the Platform's custody decides (one share per custodian, its threshold)
    or, without custody, 5 and 3; a value that contradicts a declared custody is refused."""

    target: Selection
    recovery_dir: Path  # where encrypted shares wait if the Kubernetes write fails
    shares: int | None = None
    threshold: int | None = None
    identities: tuple[Path, ...] = ()  # only needed to resume a run that stopped before it finished
    export: bool = False  # write the sealed shares to the repository's export file (refreshed anyway if it exists)


@dataclass
class InitResult:
    address: str
    secret: str  # namespace/name of the Secret holding the sealed shares
    report: InitReport
    export: ExportResult | None = None  # the export file written or refreshed
    secret_from_export: bool = False  # the Secret was missing and re-created from the export
    seal: str = "shamir"  # the Platform's seal: another one means the stored shares are recovery keys

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self.report) | {"secret": self.secret, "seal": self.seal,
                                     "keys": "unseal" if self.seal == "shamir" else "recovery"}
        if self.secret_from_export:
            out["secretFromExport"] = True
        return out | ({} if self.export is None else {"export": self.export.as_dict()})


@dataclass
class ExportResult:
    """The export file of the sealed shares (ciphertext only; which file, whether it changed, what it holds)."""

    file: str
    written: bool
    shares: int
    threshold: int
    generation: int
    holders: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UnsealResult:
    address: str
    report: UnsealReport
    #: With several addresses (an HA authority's nodes): each node's outcome; ``report`` is the first one's.
    nodes: list[NodeUnseal] = field(default_factory=list)
    secret_from_export: str = ""  # the export file the missing Secret was re-created from
    recorded: str = ""  # the ledger entry of that re-creation, or why it could not be written yet

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self.report)
        if self.secret_from_export:  # only when the Secret was re-created from the export
            out |= {"secretFromExport": self.secret_from_export, "recorded": self.recorded}
        if not out["auto_unseal"]:  # only an auto-unsealed server's answer names its seal
            del out["auto_unseal"]
        if self.nodes:
            out["nodes"] = [{"address": n.address, **({"skipped": n.skipped} if n.skipped else {}),
                             **(asdict(n.report) if n.report is not None else {})} for n in self.nodes]
        return out

    @property
    def message(self) -> str:
        from chamberlain.authority.decide import UnsealOutcome, unseal_message

        r = self.report
        if r.auto_unseal:
            return (f"nothing to do: it unseals itself through its {r.auto_unseal} seal (auto-unseal), and it is "
                    "unsealed")
        if self.nodes:
            unsealed = sum(1 for n in self.nodes if n.report is not None and not n.report.sealed)
            skipped = [f"{n.address} {n.skipped}" for n in self.nodes if n.skipped]
            return (f"{unsealed} of {len(self.nodes)} nodes unsealed"
                    + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
        if not r.was_sealed:
            return "already unsealed (no-op)"
        if not r.custodians:
            return f"unsealed with {r.submitted} shares"
        return unseal_message(UnsealOutcome(tuple(r.custodians), r.progress, r.threshold, r.sealed))


@dataclass
class ConfigureResult:
    changes: list[Change]
    dry_run: bool
    applied: int | None = None  # None on a dry run

    def as_dict(self) -> dict[str, Any]:
        from chamberlain.authority.configure import summarize

        applied = {} if self.applied is None else {"applied": self.applied}
        return {"changes": [c.as_dict() for c in self.changes], "summary": summarize(self.changes),
                "dry_run": self.dry_run, **applied}


@dataclass
class PlanResult:
    """``chamberlain plan``: the configuration diff, and the rotation-policy drift unless it was not requested or
    could not be checked (``drift_unchecked`` says why)."""

    changes: list[Change]
    drifts: list[PolicyDrift] = field(default_factory=list)
    drift_unchecked: str | None = None
    conflicts: list[Conflict] = field(default_factory=list)  # other owners in the cluster (see propagation)
    conflicts_unchecked: str | None = None
    # runtime data whose intent was removed from Git without spec.retire (chamberlain.lifecycle.retire)
    orphans: list[Orphan] = field(default_factory=list)
    orphans_unchecked: str | None = None
    # soft-deleted data whose spec.retire (or intent) left Git before the purge: warnings, `retire` finishes it
    stranded: list[Stranded] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        return not self.changes and not self.drifts and not self.conflicts and not self.orphans

    def as_dict(self) -> dict[str, Any]:
        return ConfigureResult(self.changes, dry_run=True).as_dict() | {
            "policyDrift": None if self.drift_unchecked else [d.as_dict() for d in self.drifts],
            "policyDriftUnchecked": self.drift_unchecked,
            "conflicts": None if self.conflicts_unchecked else [c.as_dict() for c in self.conflicts],
            "conflictsUnchecked": self.conflicts_unchecked,
            "removedIntents": None if self.orphans_unchecked else [o.as_dict() for o in self.orphans],
            "removedIntentsUnchecked": self.orphans_unchecked,
            "strandedRetirements": None if self.orphans_unchecked else [s.as_dict() for s in self.stranded],
        }


@dataclass
class RekeyResult:
    report: RekeyReport
    export: ExportResult | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self.report) | ({} if self.export is None else {"export": self.export.as_dict()})


# ------------------------------------------------------------------------------------------------ plumbing


def _endpoint(source: KubeconfigSource | None) -> Callable[[], tuple[str, str]] | None:
    """The API server URL and CA of a kubeconfig's context, read when asked (None: no kubeconfig named)."""
    if source is None:
        return None
    return lambda: cluster_endpoint(source)


def desired_state(repo: Repository, platform: Platform, target: Selection, kubeconfig: KubeconfigSource | None,
                  *, legacy_auth_mounts: Sequence[str] = ()) -> Desired:
    """The configuration the authority should have: the rendered bundle of the selected environment/cluster, the
    controller identity, the audit device and the Kubernetes auth settings (``legacy_auth_mounts``: see
    :class:`~chamberlain.authority.configure.Settings`, the upgrade's only)."""
    from chamberlain.authority.configure import KubernetesAuthSettings, Settings, desired_state, select
    from chamberlain.authority.session import kubernetes_auth_settings
    from chamberlain.render import naming

    spec = platform.spec
    if target.environment is not None and target.environment not in {e.name for e in spec.environments}:
        raise UsageError(f"--environment {target.environment}: not an environment of the Platform")
    if target.cluster is not None and target.cluster not in {c for e in spec.environments for c in e.clusters}:
        raise UsageError(f"--cluster {target.cluster}: not a cluster of the Platform")
    opts = target.configure
    unknown = sorted(set(opts.clusters) - set(naming.platform_clusters(platform)))
    if unknown:
        raise UsageError(f"Kubernetes auth settings for {', '.join(unknown)}: not a cluster of the Platform")
    by_mount: dict[str, KubernetesAuthSettings] = {}
    for cluster, auth in sorted(opts.clusters.items()):
        found = kubernetes_auth_settings(_endpoint(KubeconfigSource.of(auth.kubeconfig)), auth.host, auth.ca_file,
                                         auth.token_reviewer_jwt_file, auth.issuer)
        if found is None:
            raise UsageError(f"cluster {cluster}: its Kubernetes API server and CA are not known (give its kubeconfig, "
                             "or its API server URL and CA file)")
        by_mount[naming.kubernetes_auth_mount(platform, cluster)] = found
    # The cluster-wide options (and the kubeconfig) describe one cluster: they configure a mount only when one
    # cluster is selected. Applied to several, one cluster's API server would review tokens for another's roles.
    selected = [target.cluster] if target.cluster else sorted(
        {c for e in spec.environments if target.environment in (None, e.name) for c in e.clusters})
    fallback = None
    if len(selected) == 1:
        fallback = kubernetes_auth_settings(_endpoint(kubeconfig), opts.kubernetes_host, opts.kubernetes_ca_file,
                                            opts.token_reviewer_jwt_file, opts.kubernetes_issuer)
    elif opts.kubernetes_host or opts.kubernetes_ca_file or opts.token_reviewer_jwt_file or opts.kubernetes_issuer:
        raise UsageError(f"{len(selected)} clusters selected ({', '.join(selected)}): --kubernetes-host, "
                         "--kubernetes-ca-file, --kubernetes-issuer and --token-reviewer-jwt-file describe one "
                         "cluster; pass --cluster, or the --cluster-* forms (CLUSTER=VALUE) for each cluster")
    settings = Settings(
        controller_namespace=spec.controller.namespace,
        controller_service_account=spec.controller.service_account,
        runtime_mount=spec.authority.mounts.runtime,
        audit_file=opts.audit_file or None,
        kubernetes=fallback,
        kubernetes_by_mount=by_mount,
        configurator_namespace=naming.configurator_namespace(platform),
        configurator_service_account=naming.configurator_service_account(platform),
        legacy_auth_mounts=tuple(legacy_auth_mounts),
        replace_reviewer_jwt=opts.replace_token_reviewer_jwt,
    )
    return desired_state(select(vault_bundle(repo), target.environment, target.cluster), settings)


def _recorder(platform: Platform, caller: Caller) -> Callable[[VaultClient], Recorder]:
    """Ledger entries of authority events, written through whichever client is authenticated at that point."""
    from chamberlain.audit.ledger import AUTHORITY, Ledger, TransitSigner

    def bind(client: VaultClient) -> Recorder:
        # The configurator's own partition, signed with its key (created by configure before any record).
        ledger = Ledger(client.kv, platform.spec.authority.mounts.runtime, caller.clock, partition=AUTHORITY,
                        signer=TransitSigner(client.transit))

        def record(event: AuthorityEvent, details: Mapping[str, str]) -> None:
            # A playbook's reason is the entry's reason, not one of its details.
            rest = {k: v for k, v in details.items() if k != "reason"}
            ledger.append(event, actor=caller.actor, run=caller.run, reason=details.get("reason") or None,
                          details=rest)

        return record

    return bind


def recorder_for(platform: Platform, caller: Caller) -> Callable[[VaultClient], Recorder]:
    """Authority events in the configurator's ledger partition, as ``caller`` (backup/restore use it too)."""
    return _recorder(platform, caller)


def _converge(client: VaultClient, desired: Desired, *, prune: bool, dry_run: bool,
              record: Recorder | None, details: Mapping[str, str] | None = None) -> ConfigureResult:
    """Plan, and unless ``dry_run``, apply and record (``authority-configure``, with the change counts)."""
    from chamberlain.authority.configure import apply, observe, plan, summarize

    changes = plan(desired, observe(client, desired), prune=prune)
    if dry_run:
        return ConfigureResult(changes, dry_run=True)
    if not changes:
        return ConfigureResult(changes, dry_run=False, applied=0)
    result = apply(client, desired, changes)
    if record is not None and result.applied:
        record("authority-configure", {k: str(v) for k, v in summarize(changes).items()} | dict(details or {}))
    result.raise_undeclared()  # after the record: what was applied is in the ledger either way
    return ConfigureResult(changes, dry_run=False, applied=result.applied)


def _store(platform: Platform, servers: Servers) -> SealedStore:
    from chamberlain.authority.lifecycle import SealedStore

    return SealedStore(servers.kube(), platform.spec.controller.namespace)


# ------------------------------------------------------------------------------------------------ use cases


def initialize(request: InitRequest, servers: Servers, caller: Caller) -> InitResult:
    """Initialize the authority: shares sealed to the root of trust into a Kubernetes Secret, unseal, configure,
    verify the orchestrator login, revoke the root token. Safe to re-run; resumes after a crash."""
    from chamberlain.authority import lifecycle
    from chamberlain.authority.decide import DEFAULT_LAYOUT, share_layout

    if request.threshold is not None and request.shares is not None and request.threshold > request.shares:
        raise UsageError(f"--threshold ({request.threshold}) cannot exceed --shares ({request.shares})")
    repo, platform = load_platform(request.target.root)
    custody = share_custody(platform)
    layout = share_layout(_declared_layout(custody), request.shares, request.threshold, DEFAULT_LAYOUT)
    address = servers.connection(platform).address
    desired = desired_state(repo, platform, request.target, servers.kubeconfig)
    spec = platform.spec
    kube = servers.kube()
    kube.ensure_namespace(spec.controller.namespace)
    kube.ensure_service_account(spec.controller.namespace, spec.controller.service_account)
    # The configurator's own identity: a namespace no workload runs in, with one ServiceAccount whose tokens only
    # a human or CI (with the right to create them) mints. Never the controller's.
    from chamberlain.render import naming

    kube.ensure_namespace(naming.configurator_namespace(platform))
    kube.ensure_service_account(naming.configurator_namespace(platform), naming.configurator_service_account(platform))
    identities = _identities(request.identities) if request.identities else None
    recorder_for = _recorder(platform, caller)
    store = _store(platform, servers)
    # The cluster was lost with the Secret: the export in Git holds the same ciphertexts (recorded below).
    from_export = _secret_from_export(servers.anonymous(platform), store, request.target.root)

    def configure(client: VaultClient) -> int:
        return len(_converge(client, desired, prune=False, dry_run=False, record=recorder_for(client)).changes)

    def verify() -> list[str]:
        roles = sorted(name for (_, name) in desired.roles if name.endswith(".orchestrator"))
        for role in roles:
            servers.login(platform, role).auth.lookup_self()
        return roles

    with _seal_hint(platform):
        report = lifecycle.initialize(
            servers.anonymous(platform), store,
            lifecycle.InitPlan(layout.shares, layout.threshold, share_recipients(platform), request.recovery_dir,
                               custody.custodians, seal=platform.spec.authority.seal.type),
            login_configurator=lambda: servers.configurator(platform, request.target.cluster),
            configure=configure, verify=verify, recorder_for=recorder_for, identities=identities,
            clock=caller.clock,
        )
    if from_export is not None:
        recorder_for(servers.configurator(platform, request.target.cluster))("authority-restore", {
            "unseal_material": "secret re-created from the repository's export", "generation":
            str(from_export.generation), "shares": str(len(from_export.shares))})
    export = _refresh_export(platform, servers, request.target.root, create=request.export)
    return InitResult(address, f"{spec.controller.namespace}/{lifecycle.SECRET_NAME}", report, export,
                      from_export is not None, platform.spec.authority.seal.type)


def _secret_from_export(vault: VaultClient, store: SealedStore, root: Path) -> SealedMaterial | None:
    """When the authority is initialized but the Secret of sealed shares is gone (a lost cluster), re-create it from
    the repository's export; the material written, or None when nothing was done."""
    from chamberlain.authority.export import default_path, read_export
    from chamberlain.authority.lifecycle import check_fits

    path = default_path(root)
    if not path.exists() or store.load() is not None:
        return None
    status = vault.seal.status()
    if not status.initialized:
        return None
    material = read_export(path)
    check_fits(material, status, str(path), vault.address)  # never store another authority's shares
    store.save(material)
    return material


def _refresh_export(platform: Platform, servers: Servers, root: Path, *, create: bool,
                    out: Path | None = None) -> ExportResult | None:
    """Write the sealed shares in force to the export file: when asked (``create``), or when the file exists
    already (an export that lags a rekey could not unseal the authority after a cluster loss)."""
    from chamberlain.authority.export import default_path, write_export

    path = out or default_path(root)
    if not create and not path.exists():
        return None
    store = _store(platform, servers)
    m = store.load()
    if m is None or not m.shares or m.pending:
        raise UsageError(f"no sealed unseal shares in Secret {store.ref} to export; run `chamberlain authority "
                         "init` first")
    if not m.vault_address:
        m = replace(m, vault_address=servers.connection(platform).address)
    written = write_export(path, m)
    return ExportResult(str(path), written, len(m.shares), m.threshold, m.generation, list(m.holders))


def export_shares(root: Path, servers: Servers, *, out: Path | None = None) -> ExportResult:
    """``chamberlain authority export-shares``: the sealed shares in force (ciphertext, one custodian each) to the
    repository's export file (default ``authority/unseal-shares.yaml``), so a lost cluster's authority can be
    unsealed from Git."""
    _, platform = load_platform(root)
    result = _refresh_export(platform, servers, root, create=True, out=out)
    assert result is not None  # create=True always writes or raises
    return result


def share_recipients(platform: Platform) -> list[str]:
    """Who unseal shares are sealed to: the offline root only. The GitOps controllers' decryption keys
    (``spec.gitops.decryptionRecipients``) live in-cluster and open bootstrap files, never a share."""
    return list(platform.spec.root_of_trust.age_recipients)


def share_custody(platform: Platform) -> ShareCustody:
    """How shares are sealed: one per custodian of ``rootOfTrust.custody`` when declared (SPEC §6), else every
    share to every root recipient. Never to a GitOps decryption recipient."""
    from chamberlain.authority.lifecycle import ShareCustody

    trust = platform.spec.root_of_trust
    if trust.custody is None:
        return ShareCustody(tuple(share_recipients(platform)))
    return ShareCustody(tuple(share_recipients(platform)),
                        tuple((c.name, c.age_recipient) for c in trust.custody.custodians), trust.custody.threshold)


def _declared_layout(custody: ShareCustody) -> Layout | None:
    from chamberlain.authority.decide import Layout

    return Layout(len(custody.custodians), custody.threshold) if custody.declared else None


def _identities(paths: Sequence[Path]) -> list[Any]:
    """Every identity of every file (several custodians' files at once: their shares together)."""
    from chamberlain.authority import lifecycle

    if not paths:
        raise UsageError("pass --identity FILE (an age identity of the root of trust, or a custodian's)")
    return [i for p in paths for i in lifecycle.load_identities(p)]


def unseal(root: Path, identities: Sequence[Path], servers: Servers, *, reset: bool = False,
           caller: Caller | None = None, cluster: str | None = None) -> UnsealResult:
    """Unseal with the shares sealed in the Kubernetes Secret that the age identities open (a no-op when unsealed).
    Under custody each custodian runs it with their own identity; the server keeps the progress between runs.
    Without the Secret (a lost cluster), with the repository's export, then the Secret is re-created."""
    from chamberlain.authority import lifecycle
    from chamberlain.authority.export import DEFAULT_PATH, default_path, read_export

    _, platform = load_platform(root)
    vault = servers.anonymous(platform)
    with _seal_hint(platform):
        auto = lifecycle.auto_unseal_report(vault)  # an auto-unseal seal: nothing to do, no identity needed
    if auto is not None:
        return UnsealResult(vault.address, auto)
    opened = _identities(identities)
    store = _store(platform, servers)
    if len(vault.addresses) > 1 and store.load() is not None:  # an HA authority: every node needs the shares
        from chamberlain.authority.vault import unauthenticated

        conn = servers.connection(platform)
        nodes = [unauthenticated(a, conn.ca_file, clock=conn.clock) for a in vault.addresses]
        outcome = lifecycle.unseal_nodes(nodes, store, opened, reset=reset)
        first = next(n for n in outcome if n.report is not None)
        assert first.report is not None
        return UnsealResult(first.address, first.report, outcome)
    export = default_path(root)
    if store.load() is not None or not export.exists():
        return UnsealResult(vault.address, lifecycle.unseal(vault, store, opened, reset=reset))
    # The cluster (and the Secret with it) was lost: unseal from the export in Git, record that in the ledger,
    # then re-create the Secret, in that order (no unrecorded write).
    material = read_export(export)
    report = lifecycle.unseal_from(vault, material, DEFAULT_PATH, opened, reset=reset)
    result = UnsealResult(vault.address, report, secret_from_export=DEFAULT_PATH)
    if report.sealed:
        result.recorded = "not yet: the Secret is re-created once the threshold of custodians has unsealed"
        return result
    if caller is None:
        raise UsageError("re-creating the Secret of sealed shares needs a caller for its ledger entry")
    try:
        client = servers.configurator(platform, cluster)
        recorder_for(platform, caller)(client)("authority-restore", {
            "unseal_material": f"secret re-created from the repository's export ({DEFAULT_PATH})",
            "generation": str(material.generation), "shares": str(len(material.shares))})
    except ChamberlainError as exc:  # e.g. the new cluster's Kubernetes auth is not configured yet
        raise ChamberlainError(f"unsealed from {DEFAULT_PATH}, but Secret {store.ref} was not re-created: its "
                               f"ledger entry could not be written ({exc}); fix that and re-run, or run "
                               "`chamberlain authority init`, which configures the authority first") from None
    store.save(material)
    result.recorded = "authority-restore"
    return result


def configure(target: Selection, servers: Servers, caller: Caller, *, prune: bool = False,
              dry_run: bool = False) -> ConfigureResult:
    """Converge the authority's mounts, Kubernetes auth, roles, policies and audit device to the bundle."""
    repo, platform = load_platform(target.root)
    servers.connection(platform)  # a bad CA file is a usage error before anything is read
    desired = desired_state(repo, platform, target, servers.kubeconfig)
    client = servers.configurator(platform, target.cluster)
    return _converge(client, desired, prune=prune, dry_run=dry_run, record=_recorder(platform, caller)(client),
                     details={"prune": str(prune).lower()})


def plan(target: Selection, servers: Servers, *, prune: bool = False, policies: bool = True) -> PlanResult:
    """What :func:`configure` would change and, with ``policies``, where the rotation policy in force differs from
    Git's; changes nothing. The drift needs the orchestrator (or the break-glass token): when that fails, the
    configuration plan still stands and the result says why the drift is unchecked."""
    from chamberlain.service.policy import drift

    repo, platform = load_platform(target.root)
    servers.connection(platform)
    desired = desired_state(repo, platform, target, servers.kubeconfig)
    client = servers.configurator(platform, target.cluster)
    changes = _converge(client, desired, prune=prune, dry_run=True, record=None).changes
    found, unchecked = conflicts(repo, platform, target, servers)
    result = PlanResult(changes, conflicts=found, conflicts_unchecked=unchecked)
    from chamberlain.service.lifecycle import orphans

    removed = orphans(repo, platform, target.environment, target.cluster, servers)
    result.orphans, result.stranded, result.orphans_unchecked = removed.orphans, removed.stranded, removed.unchecked
    if not policies:
        result.drift_unchecked = "not requested"
        return result
    try:
        _, result.drifts = drift(repo, platform, target.environment, target.cluster, servers)
    except ChamberlainError as exc:  # e.g. no orchestrator login from here; our messages carry no value
        result.drift_unchecked = str(exc)
    return result


def conflicts(repo: Repository, platform: Platform, target: Selection, servers: Servers
              ) -> tuple[list[Conflict], str | None]:
    """Other owners of what chamberlain renders onto the selected cluster: ExternalSecrets it did not render that
    write its consumer Secrets, and Reloader annotations on its restart targets. (conflicts, None), or ([], why
    they could not be checked): one kubeconfig reaches one cluster, so several clusters need ``--cluster``."""
    from chamberlain.propagation.conflicts import expected_consumers, observe
    from chamberlain.render.topology import build_topology

    clusters = sorted({c for e in platform.spec.environments if target.environment in (None, e.name)
                       for c in e.clusters})
    cluster = target.cluster or (clusters[0] if len(clusters) == 1 else None)
    if cluster is None:
        return [], f"pass --cluster (one of {', '.join(clusters)}): conflicts are read from that cluster"
    topo = build_topology(platform, [p.obj for p in repo.policy_index().values()],
                          [i.obj for i in repo.intent_index().values()])
    try:
        return observe(servers.kube(), expected_consumers(topo, cluster, target.environment)), None
    except ChamberlainError as exc:  # the cluster cannot be read from here; the plan still stands
        return [], str(exc)


def rekey(root: Path, identities: Sequence[Path], servers: Servers, caller: Caller, *, shares: int | None = None,
          threshold: int | None = None, cluster: str | None = None, reason: str = "",
          export: bool = False) -> RekeyResult:
    """New unseal shares sealed as the Platform declares (one per custodian, or to the root recipients), the
    Secret replaced, the encryption key rotated. Takes the threshold of the shares in force: under custody, k
    custodians' identities. With custody newly declared or its custodian list changed, this is the move to it."""
    from chamberlain.authority import lifecycle

    _, platform = load_platform(root)
    custody = share_custody(platform)
    declared = _declared_layout(custody)
    if declared is not None:  # contradicting flags are refused before anything is read from the servers
        from chamberlain.authority.decide import share_layout

        share_layout(declared, shares, threshold, declared)
    report = lifecycle.rekey(
        servers.anonymous(platform), _store(platform, servers), _identities(identities), custody,
        login_configurator=lambda: servers.configurator(platform, cluster),
        recorder_for=_recorder(platform, caller), shares=shares, threshold=threshold, clock=caller.clock,
        reason=reason,
    )
    return RekeyResult(report, _refresh_export(platform, servers, root, create=export))


def status(root: Path, servers: Servers) -> AuthorityStatus:
    """Initialized, sealed, version, HA, the sealed material, the root token."""
    from chamberlain.authority import lifecycle

    _, platform = load_platform(root)
    with _seal_hint(platform):
        return lifecycle.status(servers.anonymous(platform), _store(platform, servers), share_custody(platform),
                                platform.spec.authority.seal.type)


@contextmanager
def _seal_hint(platform: Platform) -> Iterator[None]:
    """An unreachable authority whose Platform declares an auto-unseal seal: say that a server which cannot reach
    its seal at start-up does not start (OpenBao and Vault exit), so the seal is the first thing to check."""
    from chamberlain.authority.errors import AuthorityUnavailable

    seal = platform.spec.authority.seal
    try:
        yield
    except AuthorityUnavailable as exc:
        if not seal.auto_unseal:
            raise
        raise AuthorityUnavailable(f"{exc}; the Platform declares the {seal.type} seal (auto-unseal): a server that "
                                   f"cannot reach its seal when it starts exits, so check the unsealer or KMS and "
                                   "the server's log, then start it again") from None


__all__ = [
    "ClusterAuth",
    "ConfigureOptions",
    "ConfigureResult",
    "ExportResult",
    "InitRequest",
    "InitResult",
    "PlanResult",
    "RekeyResult",
    "Selection",
    "UnsealResult",
    "configure",
    "conflicts",
    "desired_state",
    "export_shares",
    "initialize",
    "plan",
    "recorder_for",
    "rekey",
    "status",
    "unseal",
]
