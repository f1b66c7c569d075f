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

Pure parts (:func:`consumer_targets`, :func:`compare_markers`, :func:`servers_to_stop`, :class:`ClusterLossReport`)
are kept apart from the acting ones (:func:`run_cluster_loss` and its steps). Nothing reported is a value: names,
counts, seconds and states.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain import wellknown as wk
from chamberlain.errors import ChamberlainError
from chamberlain.kube.api import CustomResource

if TYPE_CHECKING:
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.intent.model import Platform
    from chamberlain.kube.client import KubeClient
    from chamberlain.lab.lab import Lab
    from chamberlain.lab.servers import AuthorityFlavor, LabHost
    from chamberlain.service.context import LiveServers

Progress = Callable[[str], None]
ConsumerKey = tuple[str, str]  # (namespace, Secret name)

DRILL = "cluster-loss"
ACTOR_PREFIX = "drill"
#: What a cluster loss takes down, in stop order: the controllers that watch the API server first, then the API
#: server and its etcd, then the authority (in production it runs in the cluster, or is restarted with it).
CLUSTER_SERVERS = ("flux-kustomize-controller", "flux-source-controller", "external-secrets",
                   "kube-controller-manager", "kube-apiserver", "etcd")
EXTERNAL_SECRETS = CustomResource("external-secrets.io", "v1", "externalsecrets")
KICK_EVERY = 2.0  # seconds between force-syncs of the ExternalSecrets still waiting


class DrillError(ChamberlainError):
    """A drill step could not run; the message names objects and states, never a value."""


# ------------------------------------------------------------------------------------------------ pure


def consumer_targets(external_secrets: Iterable[Mapping[str, Any]]) -> list[ConsumerKey]:
    """The consumer Secret each ExternalSecret writes (``spec.target.name``, else the ExternalSecret's name),
    sorted and without duplicates."""
    out: set[ConsumerKey] = set()
    for es in external_secrets:
        meta, spec = es.get("metadata") or {}, es.get("spec") or {}
        ns, name = meta.get("namespace"), (spec.get("target") or {}).get("name") or meta.get("name")
        if ns and name:
            out.add((str(ns), str(name)))
    return sorted(out)


@dataclass(frozen=True)
class MarkerCheck:
    """Before and after, per consumer Secret (names only; markers are compared, never reported)."""

    secrets: int  # consumer Secrets that carried a marker before the loss
    matched: tuple[ConsumerKey, ...] = ()
    missing: tuple[ConsumerKey, ...] = ()  # no Secret, or no marker, afterwards
    changed: tuple[ConsumerKey, ...] = ()  # another marker afterwards: a value was regenerated or rotated
    unmarked: tuple[ConsumerKey, ...] = ()  # existed before without a marker: not chamberlain's to compare

    @property
    def ok(self) -> bool:
        return self.secrets > 0 and len(self.matched) == self.secrets

    def waiting(self) -> tuple[ConsumerKey, ...]:
        return self.missing + self.changed


def compare_markers(before: Mapping[ConsumerKey, str | None], after: Mapping[ConsumerKey, str | None]) -> MarkerCheck:
    """Which consumer Secrets came back with the marker they had (pure)."""
    marked = {k: v for k, v in before.items() if v}
    matched = tuple(sorted(k for k, v in marked.items() if after.get(k) == v))
    missing = tuple(sorted(k for k in marked if not after.get(k)))
    changed = tuple(sorted(k for k, v in marked.items() if after.get(k) and after.get(k) != v))
    unmarked = tuple(sorted(k for k, v in before.items() if not v))
    return MarkerCheck(len(marked), matched, missing, changed, unmarked)


def servers_to_stop(running: Iterable[str], authority: str) -> list[str]:
    """The servers a cluster loss stops, in order, among those ``running`` (pure)."""
    names = set(running)
    return [n for n in (*CLUSTER_SERVERS, authority) if n in names]


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        error = {} if self.error is None else {"error": self.error}
        return {"step": self.name, "ok": self.ok, "seconds": round(self.seconds, 2), "facts": self.facts, **error}


@dataclass
class ClusterLossReport:
    """The drill's result: ``ok`` only when every consumer Secret came back with its marker."""

    check: MarkerCheck | None = None
    rto_seconds: float | None = None
    steps: list[StepResult] = field(default_factory=list)
    world: dict[str, Any] = field(default_factory=dict)  # the demo world drilled on: lab and work dirs, how made
    authority: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.check is not None and self.check.ok and all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        c = self.check or MarkerCheck(0)

        def names(keys: Sequence[ConsumerKey]) -> list[str]:
            return [f"{ns}/{name}" for ns, name in keys]

        return {
            "ok": self.ok,
            "drill": DRILL,
            "secrets": c.secrets,
            "matched": len(c.matched),
            "rtoSeconds": None if self.rto_seconds is None else round(self.rto_seconds, 1),
            "missing": names(c.missing),
            "changed": names(c.changed),
            "authority": self.authority,
            "steps": [s.as_dict() for s in self.steps],
            **self.world,
        }


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


def snapshot(kube: KubeClient) -> dict[ConsumerKey, str | None]:
    """Every consumer Secret an ExternalSecret writes, with the version marker it carries now (None: no Secret or
    no marker). Annotations only: the data is never read."""
    out: dict[ConsumerKey, str | None] = {}
    for key in consumer_targets(kube.list_custom_objects(EXTERNAL_SECRETS)):
        annotations = kube.get_secret_annotations(*key)
        out[key] = None if annotations is None else annotations.get(wk.ANNOTATION_VERSION_MARKER)
    return out


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
    return {"authoritySealed": seal.sealed, "consumerSecretsLeft": sum(1 for v in snapshot(w.kube()).values() if v)}


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
    source = flux.wait_ready(kube, flux.SOURCE, kind="GitRepository", timeout=timeout)
    return {"decryption_key": state, "source": source.revision}


def _wait_flux(w: _World, timeout: float) -> dict[str, Any]:
    """Ask Flux to reconcile each Kustomization in dependency order and wait until each is Ready."""
    from chamberlain.demo.rotations import revalidate_stores
    from chamberlain.demo.walkthrough import kustomizations
    from chamberlain.gitops import flux

    kube = w.kube()
    stores = revalidate_stores(kube, w.run)  # validated again now that the authority answers
    ready = []
    for i, name in enumerate(kustomizations()):
        got = flux.wait_ready(kube, name, timeout=timeout) if i == 0 else None
        if got is None or got.ready is not True:
            flux.reconcile(kube, name, f"{w.run}/{i}", timeout=timeout)
            got = flux.wait_ready(kube, name, timeout=timeout)
        ready.append(f"Kustomization/{name}")
    return {"ready": ready, "stores_revalidated": stores}


def _wait_markers(w: _World, before: Mapping[ConsumerKey, str | None], timeout: float) -> MarkerCheck:
    """Until every consumer Secret carries its marker again (or ``timeout``): ESO is nudged with a force-sync of
    the ExternalSecrets still waiting, as ``chamberlain rotate`` nudges it."""
    kube = w.kube()
    deadline = time.monotonic() + timeout
    kicked_at = 0.0
    round_ = 0
    while True:
        after = {k: ((kube.get_secret_annotations(*k) or {}).get(wk.ANNOTATION_VERSION_MARKER)) for k in before}
        check = compare_markers(before, after)
        now = time.monotonic()
        if check.ok or check.changed or now > deadline:
            return check
        if now - kicked_at >= KICK_EVERY:
            round_ += 1
            for ns, name in check.missing:
                try:
                    kube.annotate_external_secret(ns, name, {wk.ESO_FORCE_SYNC: f"{w.run}-{round_}"})
                except ChamberlainError:
                    pass  # not applied yet by Flux: the next round tries again
            kicked_at = now
        time.sleep(0.25)


def _platform(w: _World) -> Platform:
    from chamberlain.service.repository import load_platform

    return load_platform(w.repo)[1]


def _shown(path: Path, repo: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


def _check_export(w: _World) -> dict[str, Any]:
    """Before anything is destroyed: the export file in Git must hold the shares the cluster's Secret holds, or
    the authority could not be unsealed after the loss. Refuses with what to run otherwise."""
    from chamberlain.authority.export import default_path, read_export, same_shares
    from chamberlain.authority.material import SealedStore

    path = default_path(w.repo)
    exported = read_export(path)
    stored = SealedStore(w.kube(), _platform(w).spec.controller.namespace).load()
    if stored is not None and stored.shares and not same_shares(exported, stored):
        raise DrillError(f"{path} holds other unseal shares than Secret {SealedStore(w.kube(), '-').name} (a rekey "
                         "not exported?); run `chamberlain authority export-shares` and commit it before drilling")
    return {"file": _shown(path, w.repo), "shares": len(exported.shares), "threshold": exported.threshold,
            "generation": exported.generation}


def _reestablish_authority(w: _World, options: ClusterLossOptions) -> dict[str, Any]:
    """The sealed shares from the export file in Git: the in-cluster Secret re-created from it, a new
    token-reviewer JWT for the new cluster, then ``authority init`` resumes with k custodians' identities: it
    unseals, authenticates (a temporary root token from the shares: the configurator's Kubernetes login cannot
    work before the reviewer JWT is replaced), re-configures, proves the orchestrator login and drops the token."""
    from chamberlain.authority.export import default_path, read_export
    from chamberlain.authority.material import SealedStore
    from chamberlain.demo.walkthrough import DEMO_CLUSTER, token_reviewer
    from chamberlain.service import authority as svc
    from chamberlain.service.context import Caller

    platform = _platform(w)
    path = default_path(w.repo)
    material = read_export(path)
    kube = w.kube()
    store = SealedStore(kube, platform.spec.controller.namespace)
    recreated = store.load() is None
    if recreated:
        store.save(material)
    keys = w.custodian_keys()[: max(material.threshold, 1)]
    reviewer = token_reviewer(kube, w.work / "reviewer.jwt")
    configure = svc.ConfigureOptions(audit_file=str(w.lab.authority.audit_log), token_reviewer_jwt_file=reviewer,
                                     replace_token_reviewer_jwt=True)
    request = svc.InitRequest(svc.Selection(w.repo, None, DEMO_CLUSTER, configure), w.work / "recovery",
                              identities=tuple(keys))
    caller = Caller(f"{ACTOR_PREFIX}:{options.user}", w.host.clock, w.run)
    result = svc.initialize(request, w.servers(), caller).report
    status = svc.status(w.repo, w.servers())
    if not status.ready:
        raise DrillError("the authority is not initialized and unsealed after re-establishing it")
    return {
        "unsealedFrom": _shown(path, w.repo),
        "unsealSecretRecreated": recreated,
        "custodians": [k.stem for k in keys],
        "unsealedNow": result.unsealed_now,
        "authenticatedAs": result.authenticated_as,
        "configureChanges": result.configure_changes,
        "verifiedRoles": result.verified_roles,
        "rootTokenRevoked": result.root_revoked,
    }


def _timed(name: str, step: Callable[[], dict[str, Any]], progress: Progress, debug: bool) -> StepResult:
    progress(f"[drill] {name}: starting")
    started = time.monotonic()
    try:
        facts = step()
    except ChamberlainError as exc:
        result = StepResult(name, False, time.monotonic() - started, error=str(exc))
    except Exception as exc:  # a foreign exception's text is unvetted: report only its type
        result = StepResult(name, False, time.monotonic() - started,
                            error=f"internal error ({type(exc).__name__}); rerun with CHAMBERLAIN_DEBUG=1")
        if debug:
            raise
    else:
        result = StepResult(name, True, time.monotonic() - started, facts)
    progress(f"[drill] {name}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f}s"
             + (f" ({result.error})" if result.error else ""))
    return result


def _make_world(options: ClusterLossOptions, host: LabHost, tools: Tools, progress: Progress
                ) -> tuple[Path, Path, StepResult]:
    """A fresh demo world: the lab up and the demo through handover (kept: the drill needs its servers)."""
    from chamberlain.demo.walkthrough import DemoOptions, Phase, run_demo

    lab_dir = options.lab_dir or Path(tempfile.mkdtemp(prefix="chamberlain-drill-"))
    started = time.monotonic()
    report = run_demo(DemoOptions(through=Phase.handover, lab_dir=lab_dir, port_offset=options.port_offset,
                                  authority=options.authority, keep=True, timeout=options.timeout,
                                  user=options.user, debug=options.debug), host, tools, progress)
    failed = next((p for p in report.phases if not p.ok), None)
    result = StepResult("demo", report.ok, time.monotonic() - started,
                        {"through": report.through, "phases": len(report.phases)},
                        None if failed is None else f"{failed.name}: {failed.error}")
    return lab_dir, Path(report.work_dir), result


def run_cluster_loss(options: ClusterLossOptions, host: LabHost, tools: Tools,
                     progress: Progress = lambda _m: None) -> ClusterLossReport:
    """Run the drill (making a demo world first when none is given); stop at the first failed step."""
    from chamberlain.lab import lab as lab_mod

    report = ClusterLossReport()
    made = options.work_dir is None
    lab_dir: Path | None = options.lab_dir
    try:
        if options.work_dir is None:
            lab_dir, work, demo = _make_world(options, host, tools, progress)
            report.steps.append(demo)
            if not demo.ok:
                return report
        else:
            work = options.work_dir
            lab_dir = options.lab_dir or work.parent
        if not (lab_dir / "lab.json").is_file() or not (work / "repo").is_dir():
            raise DrillError(f"{work}: not a demo working directory of the lab in {lab_dir} (run `chamberlain demo "
                             "--through handover --keep`, or the drill without --work-dir)")
        lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, host))
        report.world = {"labDir": str(lab_dir), "workDir": str(work), "worldMadeByDrill": made}
        _drill(_World(lab, work, host, progress), report, options, progress)
    finally:
        if made and lab_dir is not None and not options.keep:
            lab_mod.down(lab_dir, host, progress=progress)
            if options.lab_dir is None:
                lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, host)).postgres.purge()
                shutil.rmtree(lab_dir, ignore_errors=True)
    return report


def _drill(w: _World, report: ClusterLossReport, options: ClusterLossOptions, progress: Progress) -> None:
    before: dict[ConsumerKey, str | None] = {}
    timeout = options.timeout
    destroyed_at: float | None = None

    def snap() -> dict[str, Any]:
        before.update(snapshot(w.kube()))
        marked = sum(1 for v in before.values() if v)
        if not marked:
            raise DrillError("no consumer Secret carries a version marker: nothing to prove a rebuild against")
        exported = _check_export(w)  # refuse to destroy what could not be rebuilt
        return {"consumer_secrets": marked, "unmarked": len(before) - marked, "export": exported}

    def destroy() -> dict[str, Any]:
        nonlocal destroyed_at
        destroyed_at = time.monotonic()
        return _destroy(w)

    def authority() -> dict[str, Any]:
        facts = _reestablish_authority(w, options)
        report.authority = facts
        return facts

    matched_at: float | None = None

    def materialized() -> dict[str, Any]:
        nonlocal matched_at
        check = _wait_markers(w, before, timeout)
        matched_at = time.monotonic()
        report.check = check
        if not check.ok:
            raise DrillError(f"{len(check.matched)} of {check.secrets} consumer Secrets back with their marker "
                             f"(missing: {len(check.missing)}, changed: {len(check.changed)})")
        return {"matched": len(check.matched)}

    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("snapshot", snap),
        ("destroy", destroy),
        ("cluster-up", lambda: _cluster_up(w, timeout)),
        ("gitops-bootstrap", lambda: _gitops_bootstrap(w, timeout)),
        ("authority", authority),
        ("gitops-ready", lambda: _wait_flux(w, timeout)),
        ("materialized", materialized),
    ]
    try:
        for name, step in steps:
            result = _timed(name, step, progress, options.debug)
            report.steps.append(result)
            if not result.ok:
                break
        if report.check is None:  # stopped before the comparison: nothing matched, and nothing was compared
            report.check = MarkerCheck(sum(1 for v in before.values() if v))
        if destroyed_at is not None and matched_at is not None and report.ok:
            report.rto_seconds = matched_at - destroyed_at
    finally:
        w.reconnect()


__all__ = [
    "CLUSTER_SERVERS",
    "ClusterLossOptions",
    "ClusterLossReport",
    "DrillError",
    "MarkerCheck",
    "StepResult",
    "compare_markers",
    "consumer_targets",
    "run_cluster_loss",
    "servers_to_stop",
    "snapshot",
]
