"""What the demo's rotation phases need beyond the packages that own each step: the demo's settings in the
repository copy, workloads and ESO materialization in the lab, the real controller run in process, and the lab
PostgreSQL prepared for the alternating rotation.

Belongs here: glue for the lab only. Every rotation runs through :class:`chamberlain.controller.Controller` (the
same loop ``chamberlain controller run`` drives, on a thread via :class:`~chamberlain.controller.ControllerApp`,
with its webhook endpoint and ``/metrics``), the real ESO and the real PostgreSQL. Nothing here decides or does a
rotation step.

The repository copy is adjusted so the rotations finish inside the demo (each change is reported by the ``root``
phase): the Platform names the lab Vault (loopback address and the lab CA, so ESO's SecretStores reach it); the
short-ttl secret (``grafana-admin``) gets ``ttl 40s, rotateBefore 30s`` so its policy in force, written at
provisioning, makes it due about 10 s later; the webhook secret (``log-shipper-token``) and ``payments-db`` get a
2 s ``maxOverlap`` so the revoke step runs within the demo; ``payments-db`` targets the lab PostgreSQL with the
``alternating`` strategy.

The time trigger evaluates every second while the demo waits for the timed rotation, then every 30 s (the
controller's default): with a 40 s ttl, ``grafana-admin`` would otherwise rotate again every 10 s while the other
phases run. Every run's propagation time and restarted workloads come from the controller's own ``run finished``
log event (the demo's logger records it).

Value hygiene: values read here (the PostgreSQL credentials, the consumer Secret the login loop reads) stay in
memory for one call; errors name users, paths and SQLSTATEs, never a value. PostgreSQL passwords are sent as
SCRAM verifiers computed client side, as the ``postgres`` rotator does.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain import wellknown as wk
from chamberlain.clock import Clock
from chamberlain.demo.walkthrough import DemoError
from chamberlain.kube.api import CustomResource

if TYPE_CHECKING:
    import psycopg
    from ruamel.yaml.comments import CommentedMap

    from chamberlain.authority.kv import KV
    from chamberlain.controller import ControllerApp
    from chamberlain.controller.loop import Controller, Scope
    from chamberlain.intent.model import Platform, SecretIntent
    from chamberlain.kube.client import KubeClient
    from chamberlain.rotation.run import RotationRun
    from chamberlain.service.context import ConnectionOptions, LiveServers
    from chamberlain.triggers import WebhookKey

Progress = Callable[[str], None]

SHORT_TTL_SECRET = "grafana-admin"  # noqa: S105 - an intent name
WEBHOOK_SECRET = "log-shipper-token"  # noqa: S105 - an intent name
POSTGRES_SECRET = "payments-db"  # noqa: S105 - an intent name
POSTGRES_ADMIN = "pg-payments-admin"  # its admin intent
POSTGRES_ROLE = "payments"
LAB_MINIMUM_TTL = "10s"  # the short-ttl secret rotates every 10 s (ttl 40s - rotateBefore 30s)
SHORT_TTL_POLICY = {"type": "time-based", "ttl": "40s", "rotateBefore": "30s", "revokeOld": True,
                    "maxOverlap": "2s", "failureStrategy": "retry"}
QUICK_REVOKE_POLICY = {"type": "time-based", "ttl": "90d", "rotateBefore": "7d", "revokeOld": True,
                       "maxOverlap": "2s", "failureStrategy": "retry"}
WORKLOAD_IMAGE = "example.invalid/x:1"
ESO_GROUP, ESO_VERSION = "external-secrets.io", "v1"
SECRET_STORES = CustomResource(ESO_GROUP, ESO_VERSION, "secretstores")

LOOP_INTERVAL = 0.5  # seconds between controller ticks
EVALUATE_WHILE_WAITING = 1.0  # time-trigger evaluations while the demo waits for the timed rotation
EVALUATE_AFTERWARDS = 30.0  # the controller's default cadence
POLL = 0.25  # the controller's poll of consumer Secrets while a rotation propagates
PROPAGATION_TIMEOUT = 60.0


# --------------------------------------------------------------------------------------------------- repository


def _edit_document(repo_dir: Path, kind: str, name: str | None, edit: Callable[[CommentedMap], None]) -> str:
    """Round-trip edit of one document of the repository copy (comments and format kept); returns its file."""
    from ruamel.yaml.comments import CommentedMap

    from chamberlain import yamledit
    from chamberlain.intent.loader import load_repository

    repo = load_repository(repo_dir)
    for f in repo.files:
        if f.text is None:
            continue
        for d in f.documents:
            meta = d.data.get("metadata") if isinstance(d.data, dict) else None
            if d.kind != kind or (name is not None and (not isinstance(meta, dict) or meta.get("name") != name)):
                continue
            yaml, doc = yamledit.load(f.text[d.start_index:d.end_index])
            if not isinstance(doc, CommentedMap) or not isinstance(doc.get("spec"), CommentedMap):
                raise DemoError(f"{f.rel}: {kind} {name or ''} has no spec mapping")
            edit(doc["spec"])
            f.path.write_text(f.text[:d.start_index] + yamledit.dump(yaml, doc) + f.text[d.end_index:],
                              encoding="utf-8")
            return f.rel
    raise DemoError(f"{repo_dir}: no {kind} {name or ''} to adjust for the demo")


def _flow(values: Mapping[str, Any]) -> CommentedMap:
    from ruamel.yaml.comments import CommentedMap

    m = CommentedMap(values)
    m.fa.set_flow_style()
    return m


def _mapping(parent: CommentedMap, key: str) -> CommentedMap:
    from ruamel.yaml.comments import CommentedMap

    child = parent.get(key)
    if not isinstance(child, CommentedMap):
        raise DemoError(f"spec.{key} is not a mapping")
    return child


def declare_custody(repo_dir: Path, custodians: Mapping[str, str], threshold: int) -> str:
    """``rootOfTrust.custody`` in the repository copy's Platform: one unseal share per custodian (name -> public
    age recipient), ``threshold`` of them to unseal; returns the file changed."""
    from ruamel.yaml.comments import CommentedMap

    def custody(spec: CommentedMap) -> None:
        _mapping(spec, "rootOfTrust")["custody"] = CommentedMap(
            threshold=threshold,
            custodians=[_flow({"name": n, "ageRecipient": r}) for n, r in custodians.items()])

    return _edit_document(repo_dir, "Platform", None, custody)


def adjust_repository(repo_dir: Path, *, vault_address: str, ca_pem: str, postgres_port: int,
                      rotations: bool) -> list[str]:
    """The demo's settings in the repository copy (see the module docstring); returns what changed, per file."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    def authority(spec: CommentedMap) -> None:
        auth = _mapping(spec, "authority")
        auth["address"] = vault_address
        auth["caBundle"] = LiteralScalarString(ca_pem if ca_pem.endswith("\n") else ca_pem + "\n")

    changes = [f"{_edit_document(repo_dir, 'Platform', None, authority)}: spec.authority address and caBundle "
               "of the lab Vault"]
    if not rotations:
        return changes

    def short_ttl(spec: CommentedMap) -> None:
        spec["rotation"] = _flow(SHORT_TTL_POLICY)

    def quick_revoke(spec: CommentedMap) -> None:
        rotation = spec.get("rotation")
        if isinstance(rotation, dict) and "policy" not in rotation:  # an inline policy: keep it, shorten overlap
            rotation["revokeOld"] = True
            rotation["maxOverlap"] = QUICK_REVOKE_POLICY["maxOverlap"]
        else:
            spec["rotation"] = _flow(QUICK_REVOKE_POLICY)

    def postgres(spec: CommentedMap) -> None:
        target = _mapping(_mapping(spec, "target"), "postgres")
        target["host"] = "127.0.0.1"
        target["port"] = postgres_port
        target["strategy"] = "alternating"
        target["tls"] = _flow({"mode": "disable"})  # the lab PostgreSQL speaks plain text: an explicit opt-out
        spec["rotation"] = _flow(QUICK_REVOKE_POLICY)

    def floor(spec: CommentedMap) -> None:
        # The Platform's ttl floor (CH077): without one, validate refuses a ttl under a minute.
        spec["limits"] = _flow({**(spec.get("limits") or {}), "minimumTtl": LAB_MINIMUM_TTL})

    def admin_target(spec: CommentedMap) -> None:
        # The admin credential may be sent only to declared targets (CH084): the lab PostgreSQL is one.
        admin = spec.get("admin")
        if not isinstance(admin, dict):
            return
        admin["targets"] = [*admin.get("targets", []),
                            _flow({"host": "127.0.0.1", "port": postgres_port,
                                   "roles": [POSTGRES_ROLE, POSTGRES_ROLE + "_alt"]})]

    changes.append(f"{_edit_document(repo_dir, 'Platform', None, floor)}: spec.limits.minimumTtl "
                   f"{LAB_MINIMUM_TTL} (the demo's short ttl)")
    changes.append(f"{_edit_document(repo_dir, 'SecretIntent', POSTGRES_ADMIN, admin_target)}: {POSTGRES_ADMIN} "
                   f"may be sent to the lab PostgreSQL (127.0.0.1:{postgres_port})")
    changes.append(f"{_edit_document(repo_dir, 'SecretIntent', SHORT_TTL_SECRET, short_ttl)}: "
                   f"{SHORT_TTL_SECRET} rotation ttl 40s, rotateBefore 30s, maxOverlap 2s")
    changes.append(f"{_edit_document(repo_dir, 'SecretIntent', WEBHOOK_SECRET, quick_revoke)}: "
                   f"{WEBHOOK_SECRET} rotation maxOverlap 2s")
    changes.append(f"{_edit_document(repo_dir, 'SecretIntent', POSTGRES_SECRET, postgres)}: "
                   f"{POSTGRES_SECRET} target.postgres on the lab PostgreSQL (127.0.0.1:{postgres_port}), "
                   "tls disabled, strategy alternating, maxOverlap 2s")
    return changes


# --------------------------------------------------------------------------------------------------- lab objects


def revalidate_stores(kube: KubeClient, stamp: str) -> int:
    """Touch every ESO SecretStore so ESO validates it again now that Vault answers (instead of waiting out the
    backoff it built up while Vault was still uninitialized); returns how many."""
    stores = kube.list_custom_objects(SECRET_STORES)
    for store in stores:
        meta = store.get("metadata") or {}
        kube.patch_custom_object_annotations(SECRET_STORES, str(meta["namespace"]),
                                             str(meta["name"]), {wk.ANNOTATION_DEMO_REVALIDATE: stamp})
    return len(stores)


def workload_manifest(kind: str, namespace: str, name: str) -> dict[str, Any]:
    """A minimal Deployment/StatefulSet/DaemonSet: the lab has no kubelet, so only the object exists, which is all
    a restart (a pod-template annotation) needs."""
    labels = {"app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels},
                     "spec": {"containers": [{"name": "app", "image": WORKLOAD_IMAGE}]}},
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": {**labels, wk.LABEL_DEMO: "workload"}},
            "spec": spec}


def materialize(kube: KubeClient, markers: Mapping[tuple[str, str], str], timeout: float,
                stamp: str) -> float:
    """Force ESO to sync every consumer Secret until each carries its version marker (annotations only, never the
    data); returns the seconds it took."""

    started = time.monotonic()
    pending = dict(markers)
    kicked_at: float | None = None
    round_ = 0
    while pending:
        now = time.monotonic()
        if kicked_at is None or now - kicked_at >= 2.0:
            round_ += 1
            for ns, name in sorted(pending):
                kube.annotate_external_secret(ns, name, {wk.ESO_FORCE_SYNC: f"{stamp}-{round_}"})
            kicked_at = now
        for key in sorted(pending):
            annotations = kube.get_secret_annotations(*key)
            if annotations is not None and annotations.get(wk.ANNOTATION_VERSION_MARKER) == pending[key]:
                del pending[key]
        if not pending:
            break
        if now - started > timeout:
            late = ", ".join(f"{ns}/{name}" for ns, name in sorted(pending))
            raise DemoError(f"ESO did not materialize {late} with the current version marker within {timeout:.0f}s")
        time.sleep(0.25)
    return time.monotonic() - started


# --------------------------------------------------------------------------------------------------- controller


@dataclass(frozen=True)
class RunFacts:
    propagation_seconds: float | None
    restarted: tuple[str, ...]


class DemoLog:
    """The controller's logger in the demo: a progress line for what a reader follows, and each finished run's
    propagation time and restarted workloads (from the controller's ``run finished`` event). Only names, ids,
    stages and our own value-free error messages are printed."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._runs: dict[str, RunFacts] = {}

    def info(self, event: str, **kw: Any) -> None:
        secret, run = kw.get("secret", "?"), kw.get("run", "?")
        if event == "run finished":
            seconds = kw.get("propagation_seconds")
            facts = RunFacts(float(seconds) if isinstance(seconds, int | float) else None,
                             tuple(str(w) for w in kw.get("restarted") or ()))
            with self._lock:
                self._runs[str(run)] = facts
            self._progress(f"[controller] {secret}: run {run} {kw.get('stage')}, version {kw.get('version')}"
                           + (f", propagated in {facts.propagation_seconds:.2f}s"
                              if facts.propagation_seconds is not None else "")
                           + (f", restarted {', '.join(facts.restarted)}" if facts.restarted else ""))
        elif event == "run started":
            self._progress(f"[controller] {secret}: run {run} started ({kw.get('trigger')} trigger)")
        elif event == "rotation requested":
            self._progress(f"[controller] {secret}: {kw.get('trigger')} trigger requested a rotation")

    def warning(self, event: str, **kw: Any) -> None:
        shown = {k: kw[k] for k in ("secret", "run", "trigger", "stage", "error", "detail") if k in kw}
        self._progress(f"[controller] warning: {event}" + "".join(f"; {k}={v}" for k, v in shown.items()))

    def facts(self, run_id: str) -> RunFacts | None:
        with self._lock:
            return self._runs.get(run_id)


class _ProgressHandler(logging.Handler):
    """The triggers' own warnings (``webhook: rejected request (missing)``) as progress lines while the controller
    runs, instead of bare lines on stderr. Their messages carry outcomes and names, never a key or a body."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.WARNING)
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self._progress(f"[controller] {record.getMessage()}")


TRIGGER_LOGGER = "chamberlain.triggers"


def _webhook_key(work: Path) -> tuple[Path, WebhookKey]:
    """A random HMAC key in a 0600 file of the work directory (never printed)."""
    from chamberlain.triggers import load_key

    path = work / "webhook.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return path, load_key(path, {})  # the file is given: no environment is consulted


@dataclass
class RunningController:
    """The controller of the demo's cluster, running on a thread with its webhook endpoint and /metrics."""

    app: ControllerApp
    controller: Controller
    servers: LiveServers  # the controller's own clients, closed when it stops
    log: DemoLog
    key: WebhookKey = field(repr=False)
    key_file: Path
    log_handler: logging.Handler | None = None
    stopped: bool = False

    @property
    def webhook_url(self) -> str:
        if self.app.webhook is None:  # pragma: no cover - the demo always starts the webhook
            raise DemoError("the controller has no webhook endpoint")
        return self.app.webhook.url

    def facts(self) -> dict[str, Any]:
        return {
            "secrets_in_scope": len(self.controller.scope.placed),
            "tick_seconds": LOOP_INTERVAL,
            "webhook": self.webhook_url,
            "webhook_key_file": str(self.key_file),
            "metrics": self.app.metrics_url,
            "leader_election": True,
            "run_objects": True,
        }

    def alive(self) -> bool:
        return any(t.name == "chamberlain-controller" and t.is_alive() for t in threading.enumerate())

    def wait_run(self, secret: str, trigger: str, since: int, timeout: float) -> RotationRun:
        """The first run of ``secret`` by ``trigger`` that finished after ``since`` finished runs; it must have
        succeeded."""
        deadline = time.monotonic() + timeout
        while True:
            for run in list(self.controller.finished[since:]):
                if run.secret == secret and run.trigger == trigger:
                    if not run.succeeded:
                        raise DemoError(f"{secret}: run {run.run_id} ended {run.stage}: {run.last_error or '-'}")
                    return run
            if not self.alive():
                raise DemoError("the controller loop stopped unexpectedly")
            if time.monotonic() > deadline:
                active = self.controller.active.get(secret)
                where = (f"; run {active.run.run_id} is at {active.run.stage}"
                         + (f" ({active.run.last_error})" if active.run.last_error else "")
                         if active is not None else "; no run is active")
                if self.controller.outages:
                    where += f"; the authority failed the last {self.controller.outages} ticks"
                raise DemoError(f"{secret}: no {trigger}-triggered rotation finished within {timeout:.0f}s{where}")
            time.sleep(0.1)

    def row(self, run: RotationRun) -> dict[str, Any]:
        """The report's row of one rotation. Never a value: runs hold none."""
        facts = self.log.facts(run.run_id)
        seconds = facts.propagation_seconds if facts is not None else None
        return {
            "secret": run.secret,
            "path": run.vault.full,
            "trigger": run.trigger,
            "run": run.run_id,
            "stage": run.stage,
            "ok": run.succeeded,
            "previousVersion": run.previous_version,
            "version": run.current_version,
            "propagationSeconds": None if seconds is None else round(seconds, 3),
            "workloadsRestarted": list(facts.restarted) if facts is not None else [],
            "runSeconds": (round((run.finished_at - run.started_at).total_seconds(), 2)
                           if run.finished_at is not None else None),
            "ledgerSeq": run.ledger_seq,
        }

    def metrics_rotations(self) -> int | None:
        """Finished rotations as the controller's /metrics endpoint counts them (None when unreachable)."""
        url = self.app.metrics_url
        if url is None:
            return None
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own loopback endpoint
                text = resp.read().decode()
        except OSError:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith("chamberlain_rotations_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def stop(self) -> dict[str, Any]:
        if self.stopped:
            return {}
        started = time.monotonic()
        counted = self.metrics_rotations()
        try:
            self.app.stop(timeout=30.0)
        finally:
            self.stopped = True
            self.servers.close()
            if self.log_handler is not None:
                logging.getLogger(TRIGGER_LOGGER).removeHandler(self.log_handler)
        publisher = self.controller.parts.publisher
        return {"controller_stopped_in_seconds": round(time.monotonic() - started, 2),
                "rotations_counted_by_metrics": counted,
                "runs_finished_by_controller": len(self.controller.finished),
                "run_object_publish_failures": publisher.failures if publisher is not None else None}


@dataclass(frozen=True)
class ChartIdentity:
    """The chart ServiceAccount's credentials as a host process holds them (the lab has no kubelet to run the
    pod): a kubeconfig with a TokenRequest token of that account, and the same token for the authority login.
    Files only (0600), never a value in a field that is printed."""

    service_account: str  # namespace/name
    kubeconfig: Path
    token_file: Path
    lease_name: str
    values: Mapping[str, Any]  # the chart values render wrote for the cluster
    connection: ConnectionOptions

    def denied_matrix(self, clock: Clock) -> dict[str, Any]:
        """The negative RBAC matrix, asked of the real API server with this identity's own token."""
        from chamberlain.install import rbac_matrix
        from chamberlain.kube.client import KubeClient

        kube = KubeClient.from_kubeconfig(self.kubeconfig, clock=clock)
        try:
            matrix = rbac_matrix(kube, self.values)
        finally:
            kube.close()
        return {**matrix.as_dict(), "serviceAccount": self.service_account}  # namespace/name


# A TokenRequest's lifetime: the demo's controller runs for minutes; the lab's API server caps nothing below this.
CHART_TOKEN_SECONDS = 2 * 3600


def as_chart_service_account(kube: KubeClient, lab: Any, repo: Any, cluster: str, environment: str, directory: Path,
                             connection: ConnectionOptions) -> ChartIdentity:
    """Credentials of the chart's ServiceAccount for ``cluster``: a token for both audiences it is presented to
    (the API server's issuer, and ``vault`` for the authority's Kubernetes auth), written with a kubeconfig that
    uses it. The controller started with them has exactly the RBAC render wrote (and Flux applied)."""
    import json
    from dataclasses import replace

    from chamberlain.authority.configure import VAULT_AUDIENCE
    from chamberlain.install import lease_name, token_kubeconfig
    from chamberlain.render import render_repository

    platform = repo.platform
    ns, sa = platform.spec.controller.namespace, platform.spec.controller.service_account
    values = json.loads(render_repository(repo)[f"clusters/{cluster}/chart-values.json"])
    token = kube.service_account_token(ns, sa, [lab.apiserver.issuer, VAULT_AUDIENCE], CHART_TOKEN_SECONDS)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    kubeconfig, token_file = directory / "kubeconfig", directory / "token"
    for path, text in ((kubeconfig, json.dumps(token_kubeconfig(lab.apiserver.address, lab.pki.ca.cert, token))),
                       (token_file, token)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    return ChartIdentity(f"{ns}/{sa}", kubeconfig, token_file, lease_name(environment, cluster), values,
                         replace(connection, kubeconfig=kubeconfig, login_token_file=token_file))


def start_controller(scope: Scope, connection: ConnectionOptions, *, work: Path, clock: Clock,
                     progress: Progress, lease_name: str | None = None) -> RunningController:
    """Start the controller of ``scope`` as ``chamberlain controller run`` does (:func:`chamberlain.service.
    controller.start`), in process: its own Kubernetes client, a Kubernetes login as the cluster's orchestrator
    (renewed, never one login per tick), the time, annotation, webhook and manual triggers, leader election and
    RotationRun objects; the webhook and ``/metrics`` on free loopback ports."""
    from chamberlain.service.context import LiveServers
    from chamberlain.service.controller import ControllerOptions, start

    servers = LiveServers(connection, clock)
    handler = _ProgressHandler(progress)
    try:
        log = DemoLog(progress)
        key_file, key = _webhook_key(work)
        options = ControllerOptions(
            identity=f"demo-{socket.gethostname()}-{os.getpid()}", interval=LOOP_INTERVAL, lease_name=lease_name,
            evaluate_every=EVALUATE_WHILE_WAITING, propagation_timeout=PROPAGATION_TIMEOUT, poll=POLL,
            metrics_address=("127.0.0.1", 0), webhook_address=("127.0.0.1", 0), webhook_key=key)
        logging.getLogger(TRIGGER_LOGGER).addHandler(handler)
        app = start(scope, servers, clock, options, log=log)
    except BaseException:
        logging.getLogger(TRIGGER_LOGGER).removeHandler(handler)
        servers.close()
        raise
    return RunningController(app, app.controller, servers, log, key, key_file, handler)


# --------------------------------------------------------------------------------------------------- postgres


@dataclass(frozen=True)
class Login:
    user: str
    password: str = field(repr=False)


def login_of(values: Mapping[str, str], what: str) -> Login:
    user = values.get("username") or values.get("user")
    password = values.get("password")
    if not user or not password:
        raise DemoError(f"{what}: the secret in Vault has no username/password keys")
    return Login(user, password)


def _scram(conn: psycopg.Connection[Any], login: Login) -> str:
    return bytes(conn.pgconn.encrypt_password(login.password.encode(), login.user.encode(),
                                              b"scram-sha-256")).decode()


def _set_role(conn: psycopg.Connection[Any], login: Login, options: str) -> str:
    from psycopg import sql

    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login.user,)).fetchone() is not None
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} WITH " + options + " PASSWORD {}").format(
        sql.Identifier(login.user), sql.Literal(_scram(conn, login))))
    return "updated" if exists else "created"


def prepare_postgres(superuser_dsn: str, host: str, port: int, database: str, admin: Login,
                     app: Login) -> dict[str, str]:
    """What the alternating rotator expects at the target: the admin role (CREATEROLE) with its password from
    Vault, the database, and the application role with its current password from Vault — created by the admin so
    the admin may manage it. Returns what was done per role (no value)."""
    import psycopg
    from psycopg import sql

    done: dict[str, str] = {}
    try:
        with psycopg.connect(superuser_dsn, autocommit=True, connect_timeout=5) as su:
            done[admin.user] = _set_role(su, admin, "LOGIN CREATEROLE")
            if su.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
                su.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                done[f"database {database}"] = "created"
        with psycopg.connect(host=host, port=port, dbname="postgres", user=admin.user, password=admin.password,
                             autocommit=True, connect_timeout=5) as adm:
            done[app.user] = _set_role(adm, app, "LOGIN")
    except psycopg.Error as exc:
        # psycopg's text may quote a statement: only the class and SQLSTATE leave this function.
        raise DemoError(f"preparing the lab PostgreSQL failed ({type(exc).__name__}, sqlstate "
                        f"{exc.sqlstate or 'none'})") from None
    return done


def can_login(host: str, port: int, database: str, login: Login) -> bool:
    import psycopg

    try:
        with psycopg.connect(host=host, port=port, dbname=database, user=login.user, password=login.password,
                             connect_timeout=5) as conn:
            row = conn.execute("SELECT session_user").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] == login.user


class LoginLoop(threading.Thread):
    """A consumer of ``payments-db``: logs in over and over with the credential in its Kubernetes Secret (what
    the workloads read, materialized by ESO) and counts failed logins. Failures are kept as class and SQLSTATE."""

    def __init__(self, read: Callable[[], Login | None], host: str, port: int, database: str) -> None:
        super().__init__(name="chamberlain-demo-login-loop", daemon=True)
        self._read, self._host, self._port, self._database = read, host, port, database
        self._halt = threading.Event()
        self.attempts = 0
        self.failures: list[str] = []
        self.read_errors = 0
        self.users: list[str] = []  # in the order they were first seen (names, not secrets)

    def run(self) -> None:
        import psycopg

        from chamberlain.kube.api import KubeError

        while not self._halt.is_set():
            try:
                login = self._read()
            except KubeError:
                self.read_errors += 1
                login = None
            if login is not None:
                self.attempts += 1
                try:
                    with psycopg.connect(host=self._host, port=self._port, dbname=self._database, user=login.user,
                                         password=login.password, connect_timeout=5) as conn:
                        conn.execute("SELECT session_user").fetchone()
                    if login.user not in self.users:
                        self.users.append(login.user)
                except psycopg.Error as exc:
                    self.failures.append(f"{login.user}: {type(exc).__name__} {exc.sqlstate or ''}".strip())
            self._halt.wait(0.02)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


def consumer_login_reader(kube: KubeClient, intent: SecretIntent) -> Callable[[], Login | None]:
    """Reads the first consumer Secret of ``intent`` and maps its keys back to the intent's username/password."""
    consumer = intent.spec.consumers[0]
    mapping = consumer.keys or {}
    back = {v: k for k, v in mapping.items()}  # intent key -> key in the Kubernetes Secret
    user_key, password_key = back.get("username", "username"), back.get("password", "password")

    def read() -> Login | None:
        secret = kube.get_secret(consumer.namespace, consumer.secret_name)
        if secret is None:
            return None
        user, password = secret.data.get(user_key), secret.data.get(password_key)
        return Login(user, password) if user and password else None

    return read


def read_values(kv: KV, platform: Platform, intent: SecretIntent, environment: str, cluster: str,
                version: int | None = None) -> Mapping[str, str]:
    from chamberlain.intent.paths import vault_path

    path = vault_path(platform, intent, environment, cluster)
    got = kv.read(path.mount, path.path, version)
    if got is None:
        raise DemoError(f"{path}: not in Vault")
    return got.data


__all__ = [
    "POSTGRES_SECRET",
    "SHORT_TTL_SECRET",
    "WEBHOOK_SECRET",
    "DemoLog",
    "LoginLoop",
    "RunningController",
    "adjust_repository",
    "can_login",
    "consumer_login_reader",
    "materialize",
    "prepare_postgres",
    "read_values",
    "revalidate_stores",
    "start_controller",
    "workload_manifest",
]
