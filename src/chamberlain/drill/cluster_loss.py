"""``chamberlain drill cluster-loss``: lose the lab's Kubernetes cluster and rebuild it from Git, the root of trust
and the authority's storage, then prove every consumer Secret came back with the version marker it had.

The loss: the kube-apiserver's etcd is stopped and its data directory deleted, with every controller that talks to
that API server; the authority is stopped too (sealed on restart), as an in-cluster authority would be, and its
only in-cluster copy of the sealed shares (the Secret ``chamberlain-unseal``) is gone with etcd.

The rebuild is the operator's runbook (README, "When things go wrong"), each step the code a person would run:

1. start an empty cluster (``lab up``: etcd, kube-apiserver, the CRDs, the controllers);
2. re-bootstrap Flux (:func:`chamberlain.gitops.flux.bootstrap`: the cluster's GitOps key, kept outside the
   repository, into ``flux-system/sops-age``; the Git source and root Kustomization);
3. re-establish the authority: the sealed shares come from the export file in Git, the in-cluster Secret is
   re-created from it, k custodians unseal, and ``authority init`` (resuming) re-configures what the authority knows
   of the new cluster (a new token-reviewer JWT: the old one names a ServiceAccount that no longer exists);
4. Flux applies the rendered tree, ESO materializes every consumer Secret from the authority.

Nothing is generated: values live in the authority's storage, which the cluster loss does not touch, so the
markers must match. RTO: from the first destructive step to the moment every marker matched.

The pure parts (:func:`servers_to_stop`, :func:`marked`, :func:`world_dirs`; the marker comparison and the report
are :mod:`chamberlain.drill.report`'s, shared with the authority-loss drill) are kept apart from the acting ones
(:func:`run_cluster_loss` and its steps). Nothing reported is a value: names, counts, seconds and states.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.drill.report import (
    DrillError,
    DrillReport,
    MarkerComparison,
    Markers,
    SecretRef,
    Step,
    compare_markers,
    consumer_secrets,
    snapshot_markers,
)
from chamberlain.errors import ChamberlainError

if TYPE_CHECKING:
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.intent.model import Platform
    from chamberlain.kube.client import KubeClient
    from chamberlain.lab.lab import Lab
    from chamberlain.lab.servers import AuthorityFlavor, LabHost
    from chamberlain.service.context import LiveServers

Progress = Callable[[str], None]

DRILL = "cluster-loss"
ACTOR_PREFIX = "drill"
#: What a cluster loss takes down, in stop order: the controllers that watch the API server first, then the API
#: server and its etcd, then the authority (in production it runs in the cluster, or is restarted with it).
CLUSTER_SERVERS = ("flux-kustomize-controller", "flux-source-controller", "external-secrets",
                   "kube-controller-manager", "kube-apiserver", "etcd")
KICK_EVERY = 2.0  # seconds between force-syncs of the ExternalSecrets still waiting


# ------------------------------------------------------------------------------------------------ pure


def servers_to_stop(running: Iterable[str], authority: str) -> list[str]:
    """The servers a cluster loss stops, in order, among those ``running`` (pure)."""
    names = set(running)
    return [n for n in (*CLUSTER_SERVERS, authority) if n in names]


def marked(markers: Mapping[SecretRef, str]) -> tuple[Markers, list[SecretRef]]:
    """(the consumer Secrets that carry a marker, those that do not). An unmarked one was never materialized from
    the authority (e.g. a derived value whose producer does not run): nothing to prove a rebuild against."""
    return ({k: v for k, v in markers.items() if v}, sorted(k for k, v in markers.items() if not v))


def world_dirs(lab_dir: Path | None, work_dir: Path | None) -> tuple[Path | None, Path | None]:
    """Which lab and demo working directory to drill on (pure): the work dir's lab is its parent by default (the
    demo makes its working directory inside the lab directory); no work dir means a fresh world is made."""
    if work_dir is not None and lab_dir is None:
        return work_dir.parent, work_dir
    return lab_dir, work_dir


# ------------------------------------------------------------------------------------------------ acting


@dataclass(frozen=True)
class ClusterLossOptions:
    """Which demo world to drill on. Without ``work_dir`` a fresh one is made: the lab brought up in ``lab_dir``
    (default: a new temporary directory) and the demo run through handover; it is torn down afterwards unless
    ``keep``. With ``work_dir`` (a kept demo's working directory) the lab is ``lab_dir``, by default its parent."""

    lab_dir: Path | None = None
    work_dir: Path | None = None
    port_offset: int = 0
    authority: AuthorityFlavor = "openbao"
    keep: bool = False
    timeout: float = 180.0
    user: str = "unknown"
    debug: bool = False


@dataclass
class _World:
    """A demo world as the demo lays out its working directory (no value held: paths and clients)."""

    lab: Lab
    work: Path
    host: LabHost
    progress: Progress
    run: str = field(default_factory=lambda: f"drill-{uuid.uuid4().hex[:12]}")
    _servers: LiveServers | None = None

    @property
    def repo(self) -> Path:
        return self.work / "repo"

    def gitops_key(self, cluster: str) -> Path:
        return self.work / "gitops" / f"{cluster}.agekey"

    def custodian_keys(self) -> list[Path]:
        """The custodians' identity files the demo made (each opens one share)."""
        from chamberlain.demo.walkthrough import CUSTODIANS

        return [p for name in CUSTODIANS if (p := self.work / "custodians" / f"{name}.agekey").is_file()]

    def servers(self) -> LiveServers:
        """The lab's authority and cluster as a user's connection options name them (re-made after a restart)."""
        from chamberlain.service.context import ConnectionOptions, LiveServers

        if self._servers is None:
            self._servers = LiveServers(ConnectionOptions(vault_addr=self.lab.authority.address,
                                                          vault_cacert=self.lab.pki.ca.cert,
                                                          kubeconfig=self.lab.kubeconfig), self.host.clock)
        return self._servers

    def kube(self) -> KubeClient:
        return self.servers().kube()

    def reconnect(self) -> None:
        if self._servers is not None:
            self._servers.close()
        self._servers = None


def _destroy(w: _World) -> dict[str, Any]:
    """Stop the cluster and the authority, delete etcd's data."""
    lab = w.lab
    servers = lab.servers()
    running = [n for n, s in servers.items() if s.running() is not None]
    stopped = []
    for name in servers_to_stop(running, lab.authority.name):
        if servers[name].stop():
            stopped.append(name)
    w.reconnect()
    data = lab.etcd.dir / "data"
    if not data.is_dir():
        raise DrillError(f"{data}: no etcd data directory to destroy")
    shutil.rmtree(data)
    return {"stopped": stopped, "etcdDataDeleted": str(data)}


def _cluster_up(w: _World, timeout: float) -> dict[str, Any]:
    from chamberlain.authority.vault import unauthenticated
    from chamberlain.lab import lab as lab_mod

    lab_mod.up(w.lab.config, progress=w.progress, timeout=timeout)
    seal = unauthenticated(w.lab.authority.address, w.lab.pki.ca.cert, clock=w.host.clock).seal.status()
    left = snapshot_markers(w.kube(), consumer_secrets(w.kube()))
    return {"authoritySealed": seal.sealed, "consumerSecretsLeft": sum(1 for v in left.values() if v)}


def _gitops_bootstrap(w: _World, timeout: float) -> dict[str, Any]:
    """The operator's Flux bootstrap of the new cluster, with the cluster's GitOps key kept outside the repo."""
    from chamberlain.demo.walkthrough import DEMO_CLUSTER
    from chamberlain.gitops import flux
    from chamberlain.service.repository import load_platform

    _, platform = load_platform(w.repo)
    key_file = w.gitops_key(DEMO_CLUSTER)
    if not key_file.is_file():
        raise DrillError(f"{key_file}: the cluster's GitOps key is missing; it is kept outside the repository and "
                         "is needed to re-bootstrap Flux")
    kube = w.kube()
    key = key_file.read_text(encoding="utf-8")  # secret: goes to the API server only
    state = flux.bootstrap(kube, w.lab.git.repo_url(), DEMO_CLUSTER, key, gitops_path=platform.spec.gitops.path)
    del key
    flux.wait_ready(kube, flux.SOURCE, kind="GitRepository", timeout=timeout)
    return {"decryptionKey": state, "repository": w.lab.git.repo_url()}


def _wait_flux(w: _World, timeout: float) -> dict[str, Any]:
    """Wait until Flux reports each Kustomization Ready, in dependency order. The root applies the others; each of
    those is asked to reconcile now (``flux reconcile``) rather than after the retry interval Flux waits while a
    dependency is not Ready yet."""
    from chamberlain.demo.walkthrough import kustomizations
    from chamberlain.gitops import flux

    kube = w.kube()
    root, *children = kustomizations()
    flux.wait_ready(kube, root, timeout=timeout)
    for i, name in enumerate(children):
        if flux.reconcile(kube, name, f"{w.run}/{i}", timeout=timeout).ready is not True:
            flux.wait_ready(kube, name, timeout=timeout)
    return {"ready": [f"Kustomization/{name}" for name in (root, *children)]}


def _wait_markers(w: _World, before: Markers, timeout: float) -> MarkerComparison:
    """Until every consumer Secret carries its marker again (or ``timeout``, or a marker changed): ESO is nudged
    with a force-sync of the ExternalSecrets still waiting, as ``chamberlain rotate`` nudges it."""
    from chamberlain import wellknown as wk

    kube = w.kube()
    deadline = time.monotonic() + timeout
    kicked_at, round_ = 0.0, 0
    while True:
        check = compare_markers(before, snapshot_markers(kube, sorted(before)))
        now = time.monotonic()
        if check.ok or check.changed or now > deadline:
            return check
        if now - kicked_at >= KICK_EVERY:
            round_ += 1
            for shown in check.missing:
                ns, _, name = shown.partition("/")
                with contextlib.suppress(ChamberlainError):  # not applied by Flux yet: the next round asks again
                    kube.annotate_external_secret(ns, name, {wk.ESO_FORCE_SYNC: f"{w.run}-{round_}"})
            kicked_at = now
        time.sleep(0.25)


def _platform(w: _World) -> Platform:
    from chamberlain.service.repository import load_platform

    return load_platform(w.repo)[1]


def _shown(path: Path, repo: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


def _check_export(w: _World) -> dict[str, Any]:
    """Before anything is destroyed: the export file in Git must hold the shares the cluster's Secret holds, or the
    authority could not be unsealed after the loss. A repository without the file gets it now (the routine
    ``authority export-shares`` step after init and every rekey); one whose file holds other shares is refused."""
    from chamberlain.authority.export import default_path, read_export, same_shares
    from chamberlain.authority.material import SealedStore
    from chamberlain.service.authority import export_shares

    path = default_path(w.repo)
    store = SealedStore(w.kube(), _platform(w).spec.controller.namespace)
    stored = store.load()
    if stored is None or not stored.shares:
        raise DrillError(f"Secret {store.ref} holds no sealed unseal shares: nothing the drill could rebuild from")
    written = not path.exists() and export_shares(w.repo, w.servers()).written
    exported = read_export(path)
    if not same_shares(exported, stored):
        raise DrillError(f"{path} holds other unseal shares than Secret {store.ref} (a rekey not exported?); run "
                         "`chamberlain authority export-shares` and commit the file before drilling")
    return {"file": _shown(path, w.repo), "writtenNow": written, "shares": len(exported.shares),
            "threshold": exported.threshold, "generation": exported.generation}


def _reestablish_authority(w: _World, options: ClusterLossOptions) -> dict[str, Any]:
    """A new token-reviewer JWT for the new cluster, then ``authority init`` resumes with k custodians' identities:
    it re-creates the in-cluster Secret of sealed shares from the export file in Git (and records that), unseals,
    authenticates (a temporary root token from the shares: no Kubernetes login works before the reviewer JWT is
    replaced), re-configures, proves the orchestrator login and revokes the token."""
    from chamberlain.authority.export import default_path, read_export
    from chamberlain.demo.walkthrough import DEMO_CLUSTER, token_reviewer
    from chamberlain.service import authority as svc
    from chamberlain.service.context import Caller

    path = default_path(w.repo)
    material = read_export(path)
    keys = w.custodian_keys()[: max(material.threshold, 1)]
    reviewer = token_reviewer(w.kube(), w.work / "reviewer.jwt")
    configure = svc.ConfigureOptions(audit_file=str(w.lab.authority.audit_log), token_reviewer_jwt_file=reviewer,
                                     replace_token_reviewer_jwt=True)
    request = svc.InitRequest(svc.Selection(w.repo, None, DEMO_CLUSTER, configure), w.work / "recovery",
                              identities=tuple(keys))
    caller = Caller(f"{ACTOR_PREFIX}:{options.user}", w.host.clock, w.run)
    done = svc.initialize(request, w.servers(), caller)
    result = done.report
    status = svc.status(w.repo, w.servers())
    if not status.ready:
        raise DrillError("the authority is not initialized and unsealed after re-establishing it")
    return {
        "unsealedFrom": _shown(path, w.repo),
        "unsealSecretRecreated": done.secret_from_export,
        "custodians": [k.stem for k in keys],
        "unsealedNow": result.unsealed_now,
        "authenticatedAs": result.authenticated_as,
        "configureChanges": result.configure_changes,
        "verifiedRoles": result.verified_roles,
        "rootTokenRevoked": result.root_revoked,
    }


def _verify_ledger(w: _World) -> dict[str, Any]:
    """``chamberlain audit verify`` after the rebuild: the ledger (in the authority's storage) is intact and the
    drill's own entries (the re-configuration) are signed like every other."""
    from chamberlain.demo.walkthrough import DEMO_CLUSTER
    from chamberlain.service import audit

    result = audit.verify(w.repo, w.servers(), cluster=DEMO_CLUSTER)
    if not result.ok:
        raise DrillError(f"audit verify: {len(result.problems)} problems in the ledger after the rebuild")
    return {"entries": result.entries}


def _make_world(options: ClusterLossOptions, lab_dir: Path, host: LabHost, tools: Tools, progress: Progress
                ) -> tuple[Path, Step, str | None]:
    """A fresh demo world: the lab up and the demo through handover (kept: the drill needs its servers)."""
    from chamberlain.demo.walkthrough import DemoOptions, Phase, run_demo

    started = time.monotonic()
    demo = run_demo(DemoOptions(through=Phase.handover, lab_dir=lab_dir, port_offset=options.port_offset,
                                authority=options.authority, keep=True, timeout=options.timeout,
                                user=options.user, debug=options.debug), host, tools, progress)
    failed = next((p for p in demo.phases if not p.ok), None)
    step = Step("demo", time.monotonic() - started, {"through": demo.through, "phases": len(demo.phases)})
    return Path(demo.work_dir), step, None if failed is None else f"demo phase {failed.name}: {failed.error}"


def run_cluster_loss(options: ClusterLossOptions, host: LabHost, tools: Tools,
                     progress: Progress = lambda _m: None) -> DrillReport:
    """Run the drill (making a demo world first when none is given); stop at the first failed step."""
    from chamberlain.lab import lab as lab_mod

    report = DrillReport(DRILL)
    lab_dir, work = world_dirs(options.lab_dir, options.work_dir)
    made = work is None
    fresh_dir = made and lab_dir is None
    if lab_dir is None:
        lab_dir = Path(tempfile.mkdtemp(prefix="chamberlain-drill-"))
    try:
        if work is None:
            work, step, error = _make_world(options, lab_dir, host, tools, progress)
            report.steps.append(step)
            if error is not None:
                report.error = error
                return report
        if not (lab_dir / "lab.json").is_file() or not (work / "repo").is_dir():
            raise DrillError(f"{work}: not a demo working directory of the lab in {lab_dir} (keep one with "
                             "`chamberlain demo --through handover --keep`, or run the drill without --work-dir)")
        report.facts.update({"labDir": str(lab_dir), "workDir": str(work), "worldMadeByDrill": made})
        lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, host))
        _drill(_World(lab, work, host, progress), report, options, progress)
    except ChamberlainError as exc:
        report.error = str(exc)
    finally:
        if made and not options.keep:
            lab_mod.down(lab_dir, host, progress=progress)
            if fresh_dir:
                lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, host)).postgres.purge()
                shutil.rmtree(lab_dir, ignore_errors=True)
    return report


def _drill(w: _World, report: DrillReport, options: ClusterLossOptions, progress: Progress) -> None:
    timeout = options.timeout
    before: Markers = {}
    destroyed_at: float | None = None
    matched_at: float | None = None

    def snap() -> dict[str, Any]:
        found, unmarked = marked(snapshot_markers(w.kube(), consumer_secrets(w.kube())))
        if not found:
            raise DrillError("no consumer Secret carries a version marker: nothing to prove a rebuild against")
        before.update(found)
        exported = _check_export(w)  # refuse to destroy what could not be rebuilt
        return {"consumerSecrets": len(found), "unmarked": len(unmarked), "export": exported}

    def destroy() -> dict[str, Any]:
        nonlocal destroyed_at
        destroyed_at = time.monotonic()
        return _destroy(w)

    def authority() -> dict[str, Any]:
        facts = _reestablish_authority(w, options)
        report.facts["authority"] = facts
        return {"unsealedFrom": facts["unsealedFrom"], "custodians": facts["custodians"]}

    def materialized() -> dict[str, Any]:
        nonlocal matched_at
        check = _wait_markers(w, before, timeout)
        matched_at = time.monotonic()
        report.comparison = check
        if not check.ok:
            raise DrillError(f"{check.matched} of {check.secrets} consumer Secrets back with their marker "
                             f"(missing: {len(check.missing)}, changed: {len(check.changed)})")
        return {"matched": check.matched}

    def ledger() -> dict[str, Any]:
        facts = _verify_ledger(w)
        report.ledger_verified = True
        return facts

    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("snapshot", snap),
        ("destroy", destroy),
        ("cluster-up", lambda: _cluster_up(w, timeout)),
        ("gitops-bootstrap", lambda: _gitops_bootstrap(w, timeout)),
        ("authority", authority),
        ("gitops-ready", lambda: _wait_flux(w, timeout)),
        ("materialized", materialized),
        ("ledger", ledger),
    ]
    try:
        for name, run in steps:
            progress(f"[drill] {name}: starting")
            started = time.monotonic()
            try:
                facts = run()
            except ChamberlainError as exc:
                report.steps.append(Step(name, time.monotonic() - started, {"failed": True}))
                report.error = f"{name}: {exc}"
                progress(f"[drill] {name}: FAILED ({exc})")
                break
            except Exception as exc:  # a foreign exception's text is unvetted: its type only
                if options.debug:
                    raise
                report.steps.append(Step(name, time.monotonic() - started, {"failed": True}))
                report.error = f"{name}: internal error ({type(exc).__name__}); rerun with CHAMBERLAIN_DEBUG=1"
                break
            report.steps.append(Step(name, time.monotonic() - started, facts))
            progress(f"[drill] {name}: ok in {time.monotonic() - started:.1f}s")
        if report.comparison is None:  # stopped before comparing: nothing matched, nothing was compared
            report.comparison = MarkerComparison(len(before), 0)
        if destroyed_at is not None and matched_at is not None and report.comparison.ok:
            report.rto_seconds = matched_at - destroyed_at
    finally:
        w.reconnect()


__all__ = [
    "CLUSTER_SERVERS",
    "DRILL",
    "ClusterLossOptions",
    "marked",
    "run_cluster_loss",
    "servers_to_stop",
    "world_dirs",
]
