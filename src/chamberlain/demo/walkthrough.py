"""The demo's phases: each one calls the use case its command calls (:mod:`chamberlain.service`: validate, render,
authority init, provision, handover, audit verify, the controller's entry point; the root of trust and each
cluster's GitOps key through :mod:`chamberlain.root`; Git -> cluster through the lab's real Flux with
:mod:`chamberlain.gitops`), times it and reports non-secret facts. The phases reach the lab's servers through the same
connection options a user passes (the lab Vault's address and CA, the lab kubeconfig), and act as ``demo:<user>``
with one run id.

Lab policy (documented in the README): the demo needs a Vault that was never initialized, because Phase 3 is
the point of the walkthrough. By default it therefore starts a fresh lab in a new temporary directory and removes
it afterwards. ``--lab-dir D`` uses D instead; if the lab in D already has an initialized Vault (a previous demo
kept with ``--keep``), the demo stops at the ``lab`` phase and says so rather than guessing which root of trust
that Vault belongs to. ``--keep`` leaves the lab running and keeps the working directory (repository copy,
identity, rendered output) so the walkthrough can be continued by hand.

Scope: one environment and cluster (``dev``/``dev1``): Flux applies that cluster's ``flux/dev1`` tree from the lab's
Git server, the authority is configured for that cluster only (one per cluster), and provisioning and handover cover
``dev``. Handover meets a Flux that still applies the bootstrap Secrets: it writes their retirement into the copy,
the demo commits the re-rendered tree, Flux reconciles, and the next handover retires them; forced rounds of
reconciles then count retired Secrets that came back (the report's ``gitops`` object).

After the handover the demo creates the declared workloads (objects only: the lab has no kubelet; the lab's
kube-controller-manager gives them ReplicaSets and ControllerRevisions), waits until ESO
materialized every consumer Secret with its current version marker, then starts the real controller in process
(:mod:`.rotations`) and proves three rotations through it and the real ESO, with restarts: a time-triggered one
(a 40 s ttl), a signed webhook, and a manual request for the alternating two-user PostgreSQL rotation of
``payments-db`` against the lab's PostgreSQL while a client keeps logging in. The controller is stopped before the
ledger is verified.

Custody (SPEC §6): the demo creates one age identity per custodian in its work dir (``custodians/NAME.agekey``,
outside the repository copy) and declares them with threshold 2 in the Platform, so ``authority init`` seals each
unseal share to one custodian; the report proves each custodian opens exactly one share and the GitOps key none.

The repository copy gets a new root of trust (``root init``); the previous root — the identity the example's
bootstrap files were encrypted to (the repository's test identity) — opens them once so ``sops updatekeys`` can
add the new recipient, exactly as a user moving to a new root would do.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.clock import Clock
from chamberlain.errors import ChamberlainError
from chamberlain.service.context import Caller, ConnectionOptions, LiveServers

if TYPE_CHECKING:
    from chamberlain.authority.kv import KV
    from chamberlain.bootstrap.tools import Tools
    from chamberlain.demo.rotations import ChartIdentity, Login, LoginLoop, RunningController
    from chamberlain.intent.loader import Repository
    from chamberlain.intent.model import Platform, PostgresTarget, SecretIntent
    from chamberlain.kube.client import KubeClient
    from chamberlain.lab.lab import Lab
    from chamberlain.lab.servers import AuthorityFlavor, LabHost
    from chamberlain.rotation.run import RotationRun

Progress = Callable[[str], None]

DEMO_ENVIRONMENT = "dev"
DEMO_CLUSTER = "dev1"
SHARES, THRESHOLD = 3, 2  # the Platform's custody: one share per custodian, 2 of them unseal
CUSTODIANS = ("alice", "bob", "carol")
ACTOR_PREFIX = "demo"
FIELD_MANAGER = "chamberlain-demo"
REVIEWER_NAMESPACE, REVIEWER_ACCOUNT = "vault-system", "vault-auth"
REVIEWER_SECONDS = 24 * 3600  # Vault keeps this JWT to review logins for the lifetime of the lab


class Phase(StrEnum):
    """The phases ``--through`` can stop after, in order."""

    root = "root"
    bootstrap = "bootstrap"
    gitops = "gitops"
    authority = "authority"
    provision = "provision"
    handover = "handover"
    workloads = "workloads"
    rotation_time = "rotation-time"
    rotation_webhook = "rotation-webhook"
    rotation_postgres = "rotation-postgres"


ROTATION_PHASES = (Phase.rotation_time, Phase.rotation_webhook, Phase.rotation_postgres)


class DemoError(ChamberlainError):
    """A demo phase could not run; the message is ours and never carries a value."""


def _checkout() -> Path:
    return Path(__file__).resolve().parents[3]


def default_source_repo() -> Path:
    """examples/acme of the source checkout the package runs from."""
    return _checkout() / "examples" / "acme"


def default_previous_identity() -> Path:
    """The identity examples/acme's bootstrap files are encrypted to (a test fixture, never a real root)."""
    return _checkout() / "tests" / "fixtures" / "age" / "test-identity.txt"


@dataclass(frozen=True)
class DemoOptions:
    through: Phase = Phase.rotation_postgres
    lab_dir: Path | None = None  # None: a fresh temporary directory, removed afterwards unless keep
    port_offset: int = 0
    authority: AuthorityFlavor = "openbao"
    keep: bool = False
    source_repo: Path = field(default_factory=default_source_repo)
    previous_identity: Path = field(default_factory=default_previous_identity)
    timeout: float = 180.0
    user: str = "unknown"  # who runs the demo, for the ledger's actor (the CLI passes the login name)
    debug: bool = False  # let an unexpected error's traceback through (the CLI passes CHAMBERLAIN_DEBUG)


@dataclass
class PhaseResult:
    name: str
    ok: bool
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        error = {} if self.error is None else {"error": self.error}
        return {"phase": self.name, "ok": self.ok, "seconds": round(self.seconds, 2), "facts": self.facts, **error}


@dataclass
class DemoReport:
    through: str
    phases: list[PhaseResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rotations: list[dict[str, Any]] = field(default_factory=list)  # one row per rotation phase, no value
    total_seconds: float = 0.0
    # From "lab running, Vault empty" (start of Phase 0) to "Vault authoritative" (authority phase done).
    authoritative_after_seconds: float | None = None
    lab_dir: str = ""
    work_dir: str = ""
    kept: bool = False
    gitops: dict[str, Any] | None = None  # {"controller", "reconciles", "resurrectedAfterHandover"}
    controller: dict[str, Any] | None = None  # {"rbac", "serviceAccount", "deniedChecks", "deniedOk"}

    @property
    def ok(self) -> bool:
        return bool(self.phases) and all(p.ok for p in self.phases) and not self.skipped

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "through": self.through,
            "scope": {"environment": DEMO_ENVIRONMENT, "cluster": DEMO_CLUSTER},
            "phases": [p.as_dict() for p in self.phases],
            "skipped": self.skipped,
            "rotations": self.rotations,
            "gitops": self.gitops,
            "controller": self.controller,
            "total_seconds": round(self.total_seconds, 2),
            "authoritative_after_seconds": (None if self.authoritative_after_seconds is None
                                            else round(self.authoritative_after_seconds, 2)),
            "lab_dir": self.lab_dir,
            "work_dir": self.work_dir,
            "kept": self.kept,
        }


# ------------------------------------------------------------------------------------------------ state


@dataclass
class _State:
    """What later phases need from earlier ones (paths, clients). Holds no secret value, only clients."""

    options: DemoOptions
    work: Path
    host: LabHost  # the machine the lab runs on (build cache, environment, clock)
    tools: Tools  # sops and age-keygen, and the environment they start from
    progress: Progress
    run: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:12]}")
    lab: Lab | None = None
    servers: LiveServers | None = None  # the lab's Vault and cluster, as a user's connection options name them
    recipient: str = ""
    gitops_keys: dict[str, Path] = field(default_factory=dict)  # cluster -> its in-cluster age identity (a file)
    custodian_keys: dict[str, Path] = field(default_factory=dict)  # custodian -> their age identity (a file)
    reconciles: int = 0  # Flux reconciles the demo requested and saw handled
    published: int = 0  # commits the demo pushed to the lab's Git repository
    gitops_report: dict[str, Any] | None = None  # the report's top-level ``gitops`` object
    controller_report: dict[str, Any] | None = None  # the report's top-level ``controller`` object
    running: RunningController | None = None
    controller_identity: ChartIdentity | None = None  # the chart ServiceAccount's credentials the controller uses
    _kv: KV | None = None

    @property
    def clock(self) -> Clock:
        return self.host.clock

    @property
    def rotations(self) -> bool:
        """Whether any rotation phase is wanted (the repository copy then gets the demo's rotation settings)."""
        order = list(Phase)
        return order.index(self.options.through) >= order.index(ROTATION_PHASES[0])

    @property
    def repo_dir(self) -> Path:
        return self.work / "repo"

    @property
    def identity(self) -> Path:
        # Outside the repository copy, as root init demands: the offline root never lives in Git.
        return self.work / "offline" / "root.agekey"

    @property
    def caller(self) -> Caller:
        """The demo acts as ``demo:<user>``, one run id for every phase's ledger entries."""
        return Caller(f"{ACTOR_PREFIX}:{self.options.user}", self.clock, self.run)

    def need_lab(self) -> Lab:
        if self.lab is None:  # pragma: no cover - the lab phase always runs first
            raise DemoError("the lab is not up")
        return self.lab

    def connection(self) -> ConnectionOptions:
        """The lab's Vault on loopback with the lab CA (the root phase puts the same into the copy's Platform),
        and the lab's kubeconfig."""
        lab = self.need_lab()
        return ConnectionOptions(vault_addr=lab.authority.address, vault_cacert=lab.pki.ca.cert,
                                 kubeconfig=lab.kubeconfig)

    def need_servers(self) -> LiveServers:
        if self.servers is None:
            self.servers = LiveServers(self.connection(), self.clock)
        return self.servers

    def need_kube(self) -> KubeClient:
        return self.need_servers().kube()

    def repository(self) -> Repository:
        from chamberlain.service.repository import load_valid

        return load_valid(self.repo_dir)

    def platform(self) -> Platform:
        platform = self.repository().platform
        if platform is None:  # pragma: no cover - load_valid guarantees exactly one
            raise DemoError("the repository has no Platform")
        return platform

    def kv(self) -> KV:
        """The orchestrator's KV for the demo's own reads (one login, kept for the rotation phases): its own
        least-privilege identity, as the in-cluster controller logs in."""
        if self._kv is None:
            self._kv = self.need_servers().orchestrator(self.platform(), DEMO_CLUSTER).kv
        return self._kv

    def controller(self) -> tuple[RunningController, bool]:
        """The running controller, started on first use; (controller, started now)."""
        if self.running is not None:
            return self.running, False
        from chamberlain.controller.loop import scope_of
        from chamberlain.demo.rotations import as_chart_service_account, start_controller

        repo = self.repository()
        scope = scope_of(self.platform(), {i.obj.metadata.name: i.obj for i in repo.intents}, DEMO_ENVIRONMENT,
                         DEMO_CLUSTER)
        # The controller runs as the chart's ServiceAccount, under the RBAC render wrote (Flux applied it): its
        # kubeconfig holds a TokenRequest token of that account, and it logs in to the authority with it.
        identity = as_chart_service_account(self.need_kube(), self.need_lab(), repo, DEMO_CLUSTER,
                                            DEMO_ENVIRONMENT, self.work / "controller-identity",
                                            self.connection())
        self.controller_identity = identity
        self.running = start_controller(scope, identity.connection, work=self.work, clock=self.clock,
                                        progress=self.progress, lease_name=identity.lease_name)
        return self.running, True

    def stop_controller(self) -> dict[str, Any]:
        if self.running is None:
            return {}
        facts = self.running.stop()
        if self.controller_identity is not None and self.controller_report is None:
            # What the chart's RBAC refuses the controller, asked of the real API server with its own token.
            self.controller_report = self.controller_identity.denied_matrix(self.clock)
        return facts


# ------------------------------------------------------------------------------------------------ phases


def _lab_phase(s: _State, lab_dir: Path) -> dict[str, Any]:
    from chamberlain.authority.vault import unauthenticated
    from chamberlain.lab import lab as lab_mod

    config = lab_mod.LabConfig(lab_dir=lab_dir, host=s.host, ports=lab_mod.Ports().shifted(s.options.port_offset),
                               dev=False, authority=s.options.authority)
    report = lab_mod.up(config, progress=s.progress, timeout=s.options.timeout)
    s.lab = lab_mod.Lab(config)
    seal = unauthenticated(s.lab.authority.address, s.lab.pki.ca.cert, clock=s.clock).seal.status()
    if seal.initialized:
        raise DemoError(f"the {s.lab.authority.name} of the lab in {lab_dir} is already initialized (a kept demo?); "
                        "the demo starts from an empty authority: run it without --lab-dir (a fresh lab), or "
                        f"`chamberlain lab down --lab-dir {lab_dir}` and remove that directory")
    return {
        "lab_dir": str(lab_dir),
        "port_offset": s.options.port_offset,
        "authority": s.lab.authority.name,
        "authority_address": s.lab.authority.address,
        "kubeconfig": str(s.lab.kubeconfig),
        "versions": {name: c.get("version", "") for name, c in report["components"].items()},
    }


def _root_phase(s: _State) -> dict[str, Any]:
    from chamberlain.demo.rotations import adjust_repository, declare_custody
    from chamberlain.root.identity import ensure_identity
    from chamberlain.service import root

    if not s.options.source_repo.is_dir():
        raise DemoError(f"{s.options.source_repo}: no such intent repository")
    # A copy: the demo never edits the repository it was given.
    shutil.copytree(s.options.source_repo, s.repo_dir)
    result = root.init(repo=s.repo_dir, identity_file=s.identity, config_dir=s.work, tools=s.tools)
    ident, update = result.identity, result.update
    if update is None:  # pragma: no cover - init with a repository always updates it
        raise DemoError(f"{s.repo_dir}: the repository was not updated")
    s.recipient = ident.recipient
    # Each cluster's GitOps controller gets an age key of its own (never the root's): bootstrap files are encrypted
    # to the root plus it, unseal shares to the root only.
    platform_clusters = sorted({c for env in _raw_platform(s.repo_dir).spec.environments for c in env.clusters})
    gitops_recipients = {}
    for cluster in platform_clusters:
        key = root.gitops_key(repo=s.repo_dir, cluster=cluster, identity_file=s.work / "gitops" / f"{cluster}.agekey",
                              tools=s.tools)
        s.gitops_keys[cluster] = key.identity.path
        gitops_recipients[cluster] = key.identity.recipient  # public
    # The unseal shares' custodians, each with an offline identity of their own (here: files in the work dir).
    custodians = {}
    for name in CUSTODIANS:
        made = ensure_identity(s.work / "custodians" / f"{name}.agekey", s.repo_dir, tools=s.tools)
        s.custodian_keys[name] = made.path
        custodians[name] = made.recipient  # public
    declare_custody(s.repo_dir, custodians, THRESHOLD)
    lab = s.need_lab()
    demo_settings = adjust_repository(s.repo_dir, vault_address=lab.authority.address, ca_pem=lab.pki.ca_pem,
                                      postgres_port=lab.postgres.port, rotations=s.rotations)
    return {
        "repo_copy": str(s.repo_dir),
        "identity_file": str(ident.path),
        "identity_created": ident.created,
        "recipient": ident.recipient,  # public by definition
        "recipients": len(update.recipients),
        "gitops_recipients": gitops_recipients,
        "custodians": custodians,
        "demo_settings": demo_settings,
    }


def _bootstrap_phase(s: _State) -> dict[str, Any]:
    from chamberlain.service import repository, root

    if not s.options.previous_identity.is_file():
        raise DemoError(f"{s.options.previous_identity}: no previous root identity to re-encrypt with")
    # sops updatekeys with the previous root: each file's data key re-wrapped to the new recipient set, reading
    # the creation rules root init just wrote; the plaintext never touches the disk.
    stale = root.reencrypt(s.repo_dir, s.recipient, previous_identity=s.options.previous_identity, tools=s.tools)
    result = repository.validate(s.repo_dir)
    if result.findings:
        rules = sorted({f.rule for f in result.findings})
        raise DemoError(f"validate: {len(result.findings)} findings ({', '.join(rules)})")
    return {
        "re_encrypted": stale,
        "findings": 0,
        "intents": len(result.repo.intents),
        "files_checked": len(result.repo.files),
    }


def _raw_platform(repo_dir: Path) -> Platform:
    from chamberlain.intent.loader import load_repository

    platform = load_repository(repo_dir).platform
    if platform is None:
        raise DemoError(f"{repo_dir}: the repository needs exactly one Platform")
    return platform


def _publish(s: _State, message: str) -> str:
    """Render the repository copy into a fresh directory and make the lab's Git repository hold exactly that tree
    (what a user does with ``chamberlain render`` and ``git push``); the commit Flux will apply."""
    from chamberlain.gitops.git import publish_tree
    from chamberlain.service import repository

    s.published += 1
    out = s.work / f"rendered-{s.published}"
    rendered = repository.render(s.repo_dir, out, strict=True)
    if not rendered.rendered:
        rules = sorted({f.rule for f in rendered.findings})
        raise DemoError(f"render: {len(rendered.findings)} findings ({', '.join(rules)})")
    return publish_tree(out, s.need_lab().git.repo_url(), message, base_env=s.tools.env).commit


def _kustomizations(s: _State) -> list[str]:
    return kustomizations()


def kustomizations() -> list[str]:
    """The demo cluster's Kustomizations in dependency order (the root first)."""
    from chamberlain.gitops import flux
    from chamberlain.render.flux import CLUSTER, CRDS, bootstrap_name, env_name

    return [flux.ROOT, CRDS, CLUSTER, bootstrap_name(DEMO_ENVIRONMENT), env_name(DEMO_ENVIRONMENT)]


def _reconcile(s: _State, names: list[str]) -> list[Any]:
    """``flux reconcile source git`` then each Kustomization, waiting until Flux handled each request."""
    from chamberlain.gitops import flux

    token = f"{s.clock.now().isoformat()}/{s.reconciles}"  # unique per request, as Flux compares it verbatim
    done = flux.reconcile_all(s.need_kube(), names, token, timeout=s.options.timeout)
    s.reconciles += len(done)
    return done


def _gitops_phase(s: _State) -> dict[str, Any]:
    """Git → cluster through the real Flux: the rendered tree committed to the lab's Git repository, the cluster's
    own age key in flux-system/sops-age, the Git source and root Kustomization applied; then Flux applies CRDs →
    cluster → bootstrap (decrypting in-cluster). The environment's stores wait for the authority (next phase)."""
    from chamberlain.gitops import flux
    from chamberlain.render.flux import CLUSTER, CRDS, bootstrap_name

    lab, kube = s.need_lab(), s.need_kube()
    commit = _publish(s, "chamberlain render: the demo's intent repository")
    key = s.gitops_keys[DEMO_CLUSTER].read_text(encoding="utf-8")  # secret: goes to the API server only
    key_state = flux.bootstrap(kube, lab.git.repo_url(), DEMO_CLUSTER, key, gitops_path=s.platform().spec.gitops.path)
    del key
    ready = [flux.wait_ready(kube, flux.SOURCE, kind="GitRepository", commit=commit, timeout=s.options.timeout)]
    for name in (flux.ROOT, CRDS, CLUSTER, bootstrap_name(DEMO_ENVIRONMENT)):
        ready.append(flux.wait_ready(kube, name, commit=commit, timeout=s.options.timeout))
    applied = [u for u in _units(s) if kube.get_secret(u.namespace, u.name) is not None]
    return {
        "controller": "flux",
        "repository": lab.git.repo_url(),
        "commit": commit,
        "decryption_key": key_state,
        "ready": [f"{r.kind}/{r.name}" for r in ready],
        "bootstrap_secrets_applied": len(applied),
    }


def _units(s: _State) -> list[Any]:
    from chamberlain.handover import handover_units

    return handover_units(s.repository(), DEMO_ENVIRONMENT, DEMO_CLUSTER)


def _token_reviewer(s: _State) -> Path:
    return token_reviewer(s.need_kube(), s.work / "reviewer.jwt")


def token_reviewer(kube: KubeClient, path: Path) -> Path:
    """Vault runs outside the lab cluster, so it reviews login tokens with a ServiceAccount of its own that holds
    ``system:auth-delegator`` (what the Vault Helm chart sets up in a real cluster). Its token goes into a 0600
    file for ``--token-reviewer-jwt-file``, as the README's step-by-step walkthrough has a user do. A cluster rebuilt
    empty needs it again: the old token names a ServiceAccount that no longer exists."""
    kube.ensure_namespace(REVIEWER_NAMESPACE)
    kube.ensure_service_account(REVIEWER_NAMESPACE, REVIEWER_ACCOUNT)
    kube.apply_manifest({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "vault-auth-delegator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": REVIEWER_ACCOUNT, "namespace": REVIEWER_NAMESPACE}],
    }, FIELD_MANAGER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(kube.service_account_token(REVIEWER_NAMESPACE, REVIEWER_ACCOUNT, [], REVIEWER_SECONDS))
    return path


def _authority_phase(s: _State) -> dict[str, Any]:
    """``chamberlain authority init`` for the demo's cluster: 3 shares and threshold 2, as the Platform's custody
    declares (no share-count flags)."""
    from chamberlain.demo.rotations import revalidate_stores
    from chamberlain.service import authority

    configure = authority.ConfigureOptions(
        # A file audit device on the lab host, so the no-leak test can read what Vault audited.
        audit_file=str(s.need_lab().authority.audit_log),
        token_reviewer_jwt_file=_token_reviewer(s))
    request = authority.InitRequest(authority.Selection(s.repo_dir, None, DEMO_CLUSTER, configure),
                                    s.work / "recovery")
    report = authority.initialize(request, s.need_servers(), s.caller).report
    status = authority.status(s.repo_dir, s.need_servers())
    if not status.ready or not report.root_revoked:
        raise DemoError("Vault is not initialized, unsealed and root-token-free after init")
    revalidated = revalidate_stores(s.need_kube(), s.run)
    # Flux retries the environment (its stores not Ready while the authority was empty); ask now rather than wait.
    from chamberlain.gitops import flux
    from chamberlain.render.flux import env_name

    _reconcile(s, [env_name(DEMO_ENVIRONMENT)])
    env_ready = flux.wait_ready(s.need_kube(), env_name(DEMO_ENVIRONMENT), timeout=s.options.timeout)
    return {
        "vault_version": status.version,
        "storage": status.storage,
        "initialized_now": report.initialized_now,
        "unsealed_now": report.unsealed_now,
        "shares": status.material.shares,
        "threshold": status.material.threshold,
        "share_holders": status.material.custodians,
        "one_share_per_custodian": _one_share_each(s),
        "unseal_secret": status.material.secret,
        "configure_changes": report.configure_changes,
        "verified_roles": report.verified_roles,
        "root_token_revoked": report.root_revoked,
        "eso_stores_revalidated": revalidated,
        "gitops_environment_ready": env_ready.ready is True,
        "gitops_key_opens_unseal_share": _gitops_key_opens_share(s),
    }


def _one_share_each(s: _State) -> bool:
    """Whether each custodian's identity opens exactly their own share and no other."""
    from chamberlain.authority.material import SealedStore, load_identities

    material = SealedStore(s.need_kube(), s.platform().spec.controller.namespace).load()
    if material is None or not material.shares:
        raise DemoError("no unseal material stored after init")
    if sorted(material.holders) != sorted(CUSTODIANS):
        return False
    return all([i for i, _ in material.open_held(load_identities(s.custodian_keys[name]))]
               == [material.holders.index(name)] for name in CUSTODIANS)


def _gitops_key_opens_share(s: _State) -> bool:
    """Whether the cluster's GitOps key can open any stored unseal share (it must not: shares are sealed to the
    root recipients or the custodians only)."""
    from chamberlain.authority.material import SealedStore, load_identities

    material = SealedStore(s.need_kube(), s.platform().spec.controller.namespace).load()
    if material is None or not material.shares:
        raise DemoError("no unseal material stored after init")
    return bool(material.open_held(load_identities(s.gitops_keys[DEMO_CLUSTER])))


def _tally(results: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        out[r] = out.get(r, 0) + 1
    return dict(sorted(out.items()))


def _provision_phase(s: _State) -> dict[str, Any]:
    """``chamberlain provision`` for the demo's environment, as the cluster's orchestrator."""
    from chamberlain.service.handover import provision

    outcomes = provision(s.repo_dir, s.need_servers(), s.caller, environment=DEMO_ENVIRONMENT,
                         cluster=DEMO_CLUSTER).outcomes
    results = [o.result for o in outcomes]
    if any(r not in ("created", "exists") for r in results):  # pragma: no cover - run_provision raises instead
        raise DemoError(f"provision: unexpected results {sorted(set(results))}")
    return {"values": len(outcomes), "results": _tally(list(results)),
            "paths": sorted(o.unit.vault.full for o in outcomes)}


def _handover_phase(s: _State) -> dict[str, Any]:
    """``chamberlain handover`` for the demo's environment and cluster, against a real Flux. Flux still applies the
    bootstrap Secrets, so the first run hands the values over but retires nothing: it writes the retirement into the
    repository copy (``retiredIn``). The demo commits the re-rendered tree, Flux reconciles it away, and the second
    run retires each Secret per its ``afterHandover``. Then it forces rounds of reconciles and counts retired
    Secrets that came back (``gitops.resurrectedAfterHandover``, which must be 0)."""
    from chamberlain.service.handover import handover

    def run(reason: str) -> list[dict[str, Any]]:
        result = handover(s.repo_dir, s.need_servers(), s.caller, environment=DEMO_ENVIRONMENT,
                          cluster=DEMO_CLUSTER, reason=reason)
        rows: list[dict[str, Any]] = result.as_dict()["handovers"]
        if not result.ok:
            bad = [f"{r['intent']}: {r['result']}" for r in rows if r["result"] in ("conflict", "blocked")]
            raise DemoError(f"handover: {'; '.join(bad)}")
        return rows

    first = run("demo: Phase 3 handover")
    awaiting = [r for r in first if r["result"] == "awaiting-retirement"]
    commit = ""
    if awaiting:
        from chamberlain.gitops import flux
        from chamberlain.render.flux import bootstrap_name

        commit = _publish(s, f"Retire {len(awaiting)} bootstrap file(s) in {DEMO_ENVIRONMENT} after handover")
        _reconcile(s, [_kustomizations(s)[0], bootstrap_name(DEMO_ENVIRONMENT)])
        flux.wait_ready(s.need_kube(), bootstrap_name(DEMO_ENVIRONMENT), commit=commit, timeout=s.options.timeout)
    second = run("demo: Phase 3 handover, retirement committed") if awaiting else first
    retired = [r for r in second if r["result"] in ("handed-over", "already-handed-over")]
    rounds, resurrected = _resurrection_rounds(s)
    s.gitops_report = {"controller": "flux", "reconciles": s.reconciles, "resurrectedAfterHandover": resurrected}
    return {
        "secrets": len(second),
        "first_run": _tally([str(r["result"]) for r in first]),
        "results": _tally([str(r["result"]) for r in second]),
        "retirement_commit": commit,
        "retired": len(retired),
        "reconcile_rounds_after": rounds,
        "handed_over": sorted(f"{r['source']} -> {r['path']}" for r in second),
    }


RECONCILE_ROUNDS = 3


def _resurrection_rounds(s: _State) -> tuple[int, int]:
    """Force rounds of reconciles of every Kustomization and count the retired bootstrap Secrets that came back
    after any round (recreated, refilled or re-owned)."""
    from chamberlain.handover import retirement_undone
    from chamberlain.handover.gitops import applied_by

    kube = s.need_kube()
    back: set[str] = set()
    for _ in range(RECONCILE_ROUNDS):
        _reconcile(s, _kustomizations(s))
        for unit in _units(s):
            secret = kube.get_secret(unit.namespace, unit.name)
            applied = secret is not None and applied_by(kube, unit.namespace, unit.name, secret.labels,
                                                         secret.annotations).applies
            if retirement_undone(unit.after_handover, secret, applied):
                back.add(unit.source)
    return RECONCILE_ROUNDS, len(back)


def _workloads_phase(s: _State) -> dict[str, Any]:
    """The declared workloads of every consumer in dev/dev1 (objects only), and every consumer Secret of a value
    Vault holds materialized by ESO with its current version marker."""
    from chamberlain import wellknown as wk
    from chamberlain.controller.loop import scope_of
    from chamberlain.demo.rotations import materialize, workload_manifest

    repo = s.repository()
    platform = s.platform()
    scope = scope_of(platform, {i.obj.metadata.name: i.obj for i in repo.intents}, DEMO_ENVIRONMENT, DEMO_CLUSTER)
    kube = s.need_kube()
    workloads = sorted({(w.kind, c.namespace, w.name) for p in scope.placed.values()
                        for c in p.intent.spec.consumers for w in c.restart})
    outcomes: list[str] = []
    for namespace in sorted({ns for _, ns, _ in workloads}):
        kube.ensure_namespace(namespace)
    for kind, namespace, name in workloads:
        outcomes.append(kube.apply_manifest(workload_manifest(kind, namespace, name), FIELD_MANAGER))
    kinds: dict[str, int] = {}
    for kind, _, _ in workloads:
        kinds[kind] = kinds.get(kind, 0) + 1

    kv = s.kv()
    markers: dict[tuple[str, str], str] = {}
    elsewhere: list[str] = []
    for name, placed in sorted(scope.placed.items()):
        if not placed.intent.spec.consumers:
            continue
        if placed.intent.spec.classification not in ("runtime", "bootstrap"):
            elsewhere.append(name)  # derived/config: published by their producer, which the lab does not run
            continue
        meta = kv.read_metadata(placed.vault.mount, placed.vault.path)
        marker = meta.custom.get(wk.VALUE_MARKER) if meta is not None else None
        if not marker:
            raise DemoError(f"{placed.vault.full}: no value or version marker in Vault after provisioning/handover")
        for consumer in placed.intent.spec.consumers:
            markers[(consumer.namespace, consumer.secret_name)] = marker
    seconds = materialize(kube, markers, timeout=min(s.options.timeout, 90.0), stamp=s.run)
    return {
        "workloads": dict(sorted(kinds.items())),
        "workloads_created": outcomes.count("created"),
        "image": "example.invalid/x:1 (objects only: the lab runs no kubelet)",
        "consumer_secrets_in_sync": len(markers),
        "materialized_in_seconds": round(seconds, 2),
        "published_by_producers": elsewhere,
    }


def _rotation_time_phase(s: _State) -> dict[str, Any]:
    """Wait for the controller's time trigger to rotate the short-ttl secret."""
    from chamberlain import wellknown as wk
    from chamberlain.demo import rotations as r
    from chamberlain.rotation.manual import last_changed
    from chamberlain.rotation.policy import from_metadata, renewal_time

    running, started = s.controller()
    placed = running.controller.scope.placed.get(r.SHORT_TTL_SECRET)
    if placed is None:
        raise DemoError(f"{r.SHORT_TTL_SECRET}: not placed in {DEMO_ENVIRONMENT}/{DEMO_CLUSTER}")
    meta = s.kv().read_metadata(placed.vault.mount, placed.vault.path)
    custom = meta.custom if meta is not None else {}
    policy, since = from_metadata(custom), last_changed(custom)
    due_at = renewal_time(since, policy) if policy is not None and since is not None else None
    if due_at is None:
        raise DemoError(f"{placed.vault.full}: no time-based policy in force to trigger on")
    due_in = (due_at - s.clock.now()).total_seconds()
    run = running.wait_run(r.SHORT_TTL_SECRET, "time", 0, timeout=max(due_in, 0.0) + 60.0)
    # One timed rotation is the proof; the 40 s ttl must not keep rotating the secret while later phases run.
    running.controller.set_evaluate_every(r.EVALUATE_AFTERWARDS)
    facts: dict[str, Any] = {
        "rotation": running.row(run),
        "policy_in_force": f"{policy.type if policy else '-'}, ttl {custom.get(wk.POLICY_TTL, '-')}, rotateBefore "
                           f"{custom.get(wk.POLICY_ROTATE_BEFORE, '-')}, maxOverlap "
                           f"{custom.get(wk.POLICY_MAX_OVERLAP, '-')}",
        "due_in_seconds_at_phase_start": round(due_in, 1),
        "time_trigger_every_seconds": f"{r.EVALUATE_WHILE_WAITING:g} while waiting, then {r.EVALUATE_AFTERWARDS:g}",
    }
    if started:
        facts["controller"] = running.facts()
    return facts


def _rotation_webhook_phase(s: _State) -> dict[str, Any]:
    """An unsigned request is refused; a signed one to the controller's webhook (what ``chamberlain controller
    webhook`` sends) rotates the secret."""
    from chamberlain.demo import rotations as r
    from chamberlain.service.controller import post_webhook, request_rotation

    running, started = s.controller()
    since = len(running.controller.finished)
    body = json.dumps({"secret": r.WEBHOOK_SECRET, "reason": "demo: unsigned"}).encode()
    unsigned = post_webhook(running.webhook_url, body, {"Content-Type": "application/json"}).status
    if unsigned != 401:
        raise DemoError(f"the webhook answered {unsigned} to an unsigned request (expected 401)")
    # 202: persisted by a replica that does not lead yet, run once it does; a 503 (busy) is retried for a while.
    signed = request_rotation(running.webhook_url, running.key, r.WEBHOOK_SECRET, "demo: signed webhook", s.clock,
                              request_id=f"{s.run}-webhook", retry_unavailable=15.0)
    answer = signed.json()
    if signed.status not in (200, 202):
        raise DemoError(f"the webhook answered {signed.status} to a signed request: {answer.get('error', '-')}")
    run = running.wait_run(r.WEBHOOK_SECRET, "webhook", since, timeout=60.0)
    facts: dict[str, Any] = {
        "rotation": running.row(run),
        "webhook": running.webhook_url,
        "unsigned_request": unsigned,
        "signed_request": signed.status,
        "request": answer.get("request"),
        "outcome": answer.get("outcome"),
    }
    if started:
        facts["controller"] = running.facts()
    return facts


def _postgres_target(s: _State) -> tuple[SecretIntent, PostgresTarget, SecretIntent]:
    """The PostgreSQL intent of the repository copy, its target and its admin intent."""
    from chamberlain.demo import rotations as r

    intents = {i.obj.metadata.name: i.obj for i in s.repository().intents}
    intent = intents.get(r.POSTGRES_SECRET)
    if intent is None or intent.spec.target is None or not intent.spec.consumers:
        raise DemoError(f"{r.POSTGRES_SECRET}: no target.postgres or no consumer in the repository copy")
    target = intent.spec.target.postgres
    admin = intents.get(target.admin_intent)
    if admin is None:
        raise DemoError(f"{r.POSTGRES_SECRET}: adminIntent {target.admin_intent} is not in the repository")
    return intent, target, admin


def _login(s: _State, intent: SecretIntent, version: int | None = None) -> Login:
    from chamberlain.demo import rotations as r

    values = r.read_values(s.kv(), s.platform(), intent, DEMO_ENVIRONMENT, DEMO_CLUSTER, version)
    return r.login_of(values, intent.metadata.name)


def _rotate_while_logging_in(s: _State, loop: LoginLoop) -> RotationRun:
    """Request the rotation manually once the client's login loop runs on the old credential, and wait until the
    controller finished it."""
    from chamberlain.demo import rotations as r
    from chamberlain.triggers import manual

    running, _ = s.controller()
    since = len(running.controller.finished)
    deadline = time.monotonic() + 15.0
    while loop.attempts < 5:  # the client runs on the old credential before the rotation starts
        if time.monotonic() > deadline or not loop.is_alive():
            raise DemoError(f"the login loop could not log in with the {r.POSTGRES_SECRET} consumer Secret")
        time.sleep(0.05)
    running.controller.request(manual(r.POSTGRES_SECRET, "demo: alternating PostgreSQL rotation", s.clock.now()))
    run = running.wait_run(r.POSTGRES_SECRET, "manual", since, timeout=60.0)
    time.sleep(0.3)  # a few logins after the revoke, with the credential consumers now hold
    return run


def _rotation_postgres_phase(s: _State) -> dict[str, Any]:
    """The alternating two-user rotation of payments-db on the lab PostgreSQL, requested manually, while a
    client keeps logging in with the credential its Kubernetes Secret holds."""
    from chamberlain.demo import rotations as r
    from chamberlain.kube.client import KubeClient

    lab = s.need_lab()
    intent, target, admin_intent = _postgres_target(s)
    app = _login(s, intent)
    prepared = r.prepare_postgres(lab.postgres.dsn(), target.host, target.port, target.database,
                                  _login(s, admin_intent), app)
    if not r.can_login(target.host, target.port, target.database, app):
        raise DemoError(f"{r.POSTGRES_SECRET}: the provisioned credential does not log in after preparation")
    running, started = s.controller()
    reader_kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=s.clock)  # the login loop thread's own client
    loop = r.LoginLoop(r.consumer_login_reader(reader_kube, intent), target.host, target.port, target.database)
    loop.start()
    try:
        run = _rotate_while_logging_in(s, loop)
    finally:
        loop.stop()
        reader_kube.close()
    new, old = _login(s, intent, run.current_version), _login(s, intent, run.previous_version)
    new_works = r.can_login(target.host, target.port, target.database, new)
    old_rejected = not r.can_login(target.host, target.port, target.database, old)
    if loop.failures:
        raise DemoError(f"the login loop saw {len(loop.failures)} failed logins during the rotation "
                        f"(first: {loop.failures[0]})")
    if not new_works:
        raise DemoError(f"{r.POSTGRES_SECRET}: the new credential does not log in")
    facts: dict[str, Any] = {
        "rotation": running.row(run),
        "postgres": f"{target.host}:{target.port}/{target.database}",
        "strategy": target.strategy,
        "prepared": prepared,
        "users": f"{old.user} -> {new.user}",
        "new_credential_logs_in": new_works,
        "old_credential_rejected_after_revoke": old_rejected,
        "client_logins": loop.attempts,
        "client_failed_logins": len(loop.failures),
        "client_users_seen": list(loop.users),
    }
    if started:
        facts["controller"] = running.facts()
    return facts


def _audit_phase(s: _State) -> dict[str, Any]:
    """``chamberlain audit pin`` and ``audit verify``, as the cluster's orchestrator."""
    from chamberlain.service import audit

    # The controller stops first (gracefully: between run steps, the Lease released), so the ledger is verified at rest.
    stopped = s.stop_controller()
    # `audit pin` first: the public keys go into the repository (Git), and verify checks signatures against them.
    audit.pin(s.repo_dir, s.need_servers(), cluster=DEMO_CLUSTER)
    result = audit.verify(s.repo_dir, s.need_servers(), cluster=DEMO_CLUSTER)
    if not result.ok:
        raise DemoError(f"audit verify: {len(result.problems)} problems in the ledger")
    return {"entries": result.entries, "warnings": len(result.warnings), **stopped}


_PHASES: dict[Phase, Callable[[_State], dict[str, Any]]] = {
    Phase.root: _root_phase,
    Phase.bootstrap: _bootstrap_phase,
    Phase.gitops: _gitops_phase,
    Phase.authority: _authority_phase,
    Phase.provision: _provision_phase,
    Phase.handover: _handover_phase,
    Phase.workloads: _workloads_phase,
    Phase.rotation_time: _rotation_time_phase,
    Phase.rotation_webhook: _rotation_webhook_phase,
    Phase.rotation_postgres: _rotation_postgres_phase,
}


# ------------------------------------------------------------------------------------------------ driver


def _timed(name: str, step: Callable[[], dict[str, Any]], progress: Progress, debug: bool) -> PhaseResult:
    progress(f"[demo] {name}: starting")
    started = time.monotonic()
    try:
        facts = step()
    except ChamberlainError as exc:
        # Our errors are written to be shown: they name files, paths and states, never values.
        result = PhaseResult(name, False, time.monotonic() - started, error=str(exc))
    except Exception as exc:  # a foreign exception's text is unvetted: report only its type
        result = PhaseResult(name, False, time.monotonic() - started,
                             error=f"internal error ({type(exc).__name__}); rerun with CHAMBERLAIN_DEBUG=1")
        if debug:
            raise
    else:
        result = PhaseResult(name, True, time.monotonic() - started, facts)
    progress(f"[demo] {name}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f}s"
             + (f" ({result.error})" if result.error else ""))
    return result


def run_demo(options: DemoOptions, host: LabHost, tools: Tools, progress: Progress = lambda _m: None) -> DemoReport:
    """Run the lab phase, then every phase up to ``options.through``, then verify the ledger; stop at the
    first failure. Tears the lab down at the end unless ``options.keep``. The lab runs on ``host`` (whose clock
    is the demo's), ``sops`` and ``age-keygen`` come from ``tools``."""
    from chamberlain.lab import lab as lab_mod

    started = time.monotonic()
    fresh = options.lab_dir is None
    lab_dir = options.lab_dir if options.lab_dir is not None else Path(tempfile.mkdtemp(prefix="chamberlain-demo-"))
    lab_dir.mkdir(parents=True, exist_ok=True)
    # A new working directory inside the lab directory on every run (0700 from mkdtemp): repository copy,
    # identity, rendered output. Never reused, so a failed earlier run cannot leave half a repository behind.
    work = Path(tempfile.mkdtemp(prefix="demo-", dir=lab_dir))
    state = _State(options, work, host, tools, progress)
    wanted = list(Phase)[: list(Phase).index(options.through) + 1]
    report = DemoReport(through=options.through.value, lab_dir=str(lab_dir), work_dir=str(work), kept=options.keep)
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [("lab", lambda: _lab_phase(state, lab_dir))]
    steps += [(p.value, lambda p=p: _PHASES[p](state)) for p in wanted]  # type: ignore[misc]
    if Phase.authority in wanted:
        steps.append(("audit", lambda: _audit_phase(state)))
    phase0_started: float | None = None
    try:
        for i, (name, step) in enumerate(steps):
            if name == Phase.root.value:
                phase0_started = time.monotonic()
            result = _timed(name, step, progress, options.debug)
            row = result.facts.pop("rotation", None)
            if row is not None:
                report.rotations.append({"phase": name, **row})
            report.phases.append(result)
            if name == Phase.authority.value and result.ok and phase0_started is not None:
                report.authoritative_after_seconds = time.monotonic() - phase0_started
            if not result.ok:
                report.skipped = [n for n, _ in steps[i + 1:]]
                break
    finally:
        try:
            state.stop_controller()  # before the lab goes down: the loop must not outlive its servers
        except Exception as exc:  # teardown goes on; the type is enough to report
            progress(f"[demo] stopping the controller failed ({type(exc).__name__})")
        if state.servers is not None:
            state.servers.close()
        if not options.keep:
            lab_mod.down(lab_dir, host, progress=progress)
            if fresh:
                # Ours alone: the temporary lab (with the demo's work directory inside) goes entirely.
                if state.lab is not None:
                    state.lab.postgres.purge()
                shutil.rmtree(lab_dir, ignore_errors=True)
            else:
                shutil.rmtree(work, ignore_errors=True)
        report.total_seconds = time.monotonic() - started
        report.gitops = state.gitops_report
        report.controller = state.controller_report
    return report
