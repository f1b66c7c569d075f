"""Helpers of ``tests/lab/test_controller.py``: the lab world after the demo's handover, and the controller as a
real process.

:func:`build_world` runs the demo's phases through handover on a copy of examples/acme whose secrets under test
carry short policies, points the rendered SecretStores of the consumer namespaces at the lab's loopback Vault (the
rendered ones name the in-cluster address), creates the declared workloads (objects only: the lab has no kubelet)
and waits until the real ESO materialized every consumer Secret with the current marker.

:class:`ControllerProc` is ``python -m chamberlain.cli.main controller run`` in a subprocess, its JSON log lines
(stderr) in a file, stopped with SIGTERM (graceful) or SIGKILL. Webhook and metrics listen on ports the kernel
picks; their URLs are read from the ``controller started`` log line. :class:`Partition` is a loopback TCP
forwarder in front of Vault that a test cuts and heals at an exact moment.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerEntry, LedgerReader
from chamberlain.authority.kv import KV, SecretMetadata
from chamberlain.authority.session import Connection, login_as, orchestrator_kv
from chamberlain.clock import SystemClock
from chamberlain.intent.paths import VaultPath
from chamberlain.kube.client import KubeClient
from chamberlain.lab import lab as lab_mod
from chamberlain.render.naming import kubernetes_auth_mount, orchestrator_policy
from chamberlain.rotation import run as runs
from chamberlain.rotation.run import RotationRun
from chamberlain.service import load_valid
from chamberlain.triggers.webhook import WebhookKey, sign
from chamberlain.values.markers import TransitMarkers
from tests.conftest import EXAMPLES, REPO_ROOT, host_tools, lab_authority, lab_host
from tests.lab import rollouts

MOUNT = "secret"
CLUSTER, ENVIRONMENT = "dev1", "dev"
CONTROLLER_NS = "chamberlain-system"
ESO_GROUP = "external-secrets.io"
STORE = "chamberlain-dev-secret"


@dataclass(frozen=True)
class Target:
    """A secret under test: its intent, Vault path, consumer Secrets and the Deployments they restart."""

    name: str
    path: str
    consumers: tuple[tuple[str, str], ...]  # (namespace, Secret)
    workloads: tuple[tuple[str, str, str], ...]  # (kind, namespace, name) of the declared restarts
    file: str  # intents/<file> in the repository
    policy: str  # the inline rotation policy written into the copy

    @property
    def vault(self) -> VaultPath:
        return VaultPath(MOUNT, self.path)

    @property
    def full(self) -> str:
        return self.vault.full


# The secrets whose policies the copy rewrites. Event-based ones never fire on the timer, so only the test's own
# trigger rotates them; the short time-based one is out of scope of the "quiet" repository most tests give the
# controller.
GRAFANA = Target("grafana-admin", "dev/team-observability/grafana-admin", (("monitoring", "grafana-admin"),),
                 (("Deployment", "monitoring", "grafana"),), "observability.yaml",
                 "{type: event-based, revokeOld: true, maxOverlap: 1s, failureStrategy: retry}")
TICKING = Target("storefront-session", "dev/team-web/storefront-session", (("web", "storefront-session"),),
                 (("Deployment", "web", "storefront"),), "web.yaml",
                 "{type: time-based, ttl: 20s, rotateBefore: 10s, revokeOld: true, maxOverlap: 1s, "
                 "failureStrategy: retry}")
SHIPPER = Target("log-shipper-token", "dev/team-observability/log-shipper-token",
                 (("logging", "log-shipper"), ("logging", "loki-gateway-tokens")),
                 (("DaemonSet", "logging", "fluent-bit"), ("Deployment", "logging", "loki-gateway")),
                 "observability.yaml",
                 "{type: event-based, revokeOld: true, maxOverlap: 8s, failureStrategy: retry}")
HOOK = Target("argocd-webhook", "dev/team-platform/argocd-webhook", (("argocd", "argocd-webhook"),),
              (("Deployment", "argocd", "argocd-server"),), "platform.yaml",
              "{type: event-based, revokeOld: true, maxOverlap: 8s, failureStrategy: hold}")
TARGETS = (GRAFANA, TICKING, SHIPPER, HOOK)


# --------------------------------------------------------------------------------------------- source repository


def _set_policy(text: str, intent: str, policy: str) -> str:
    """Replace the ``rotation:`` of ``intent``'s document (an inline mapping, a block, or none) with ``policy``."""
    docs = text.split("\n---\n")
    for i, doc in enumerate(docs):
        if f"metadata: {{name: {intent}}}" not in doc:
            continue
        lines = doc.split("\n")
        out: list[str] = []
        skipping = False
        for line in lines:
            if skipping:
                if line.startswith("    ") or line.strip().startswith("#"):
                    continue
                skipping = False
            if line.startswith("  rotation:"):
                skipping = line.strip() == "rotation:"
                continue
            out.append(line)
        at = next(n for n, line in enumerate(out) if line.startswith("  consumers:"))
        out.insert(at, f"  rotation: {policy}")
        docs[i] = "\n".join(out)
        return "\n---\n".join(docs)
    raise AssertionError(f"intent {intent} not found")


def source_repo(dst: Path) -> Path:
    """examples/acme with the short policies of :data:`TARGETS`."""
    shutil.copytree(EXAMPLES / "acme", dst)
    platform = dst / "platform.yaml"  # the 20 s ttl is below validate's default floor (CH077): the lab declares one;
    # the tests trigger one secret again and again: a 1 s rate limit
    platform.write_text(platform.read_text().rstrip("\n") + "\n  limits: {minimumTtl: 10s, triggerInterval: 1s}\n")
    for t in TARGETS:
        f = dst / "intents" / t.file
        f.write_text(_set_policy(f.read_text(), t.name, t.policy))
    return dst


def outside_runtime_mount(repo: Path) -> set[str]:
    """Intents placed in dev/dev1 whose Vault path is not in the runtime mount (derived and config secrets in the
    internal mounts, where the orchestrator may read metadata only)."""
    from chamberlain.controller.loop import scope_of

    loaded = load_valid(repo)
    assert loaded.platform is not None
    runtime = loaded.platform.spec.authority.mounts.runtime
    scope = scope_of(loaded.platform, {i.obj.metadata.name: i.obj for i in loaded.intents}, ENVIRONMENT, CLUSTER)
    return {name for name, p in scope.placed.items() if p.vault.mount != runtime}


def scoped_repo(repo: Path, dst: Path, drop: Iterable[str]) -> Path:
    """A copy of the demo's repository without the intents ``drop``: a controller given it leaves them alone."""
    shutil.copytree(repo, dst)
    names = set(drop)
    for f in sorted((dst / "intents").glob("*.yaml")):
        docs = f.read_text().split("\n---\n")
        kept = [d for d in docs if not any(f"metadata: {{name: {n}}}" in d for n in names)]
        if not kept:
            f.unlink()
        elif len(kept) != len(docs):
            f.write_text("\n---\n".join(kept))
    loaded = load_valid(dst)
    assert not names & {i.obj.metadata.name for i in loaded.intents}
    return dst


# --------------------------------------------------------------------------------------------- world


@dataclass
class World:
    lab: lab_mod.Lab
    repo: Path  # the demo's repository copy (every intent)
    timed: Path  # without the intents outside the runtime mount (see test_controller's scope test)
    quiet: Path  # also without the short time-based intent
    work: Path  # the demo's work dir (offline root identity, ...)
    base: Path  # scratch space of the test module
    kube: KubeClient
    api: Any  # kubernetes ApiClient
    key_file: Path
    key: bytes = field(repr=False)
    _kv: KV | None = None
    controllers: list[ControllerProc] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list, repr=False)  # every CLI output, for the leak test
    canaries: set[str] = field(default_factory=set, repr=False)  # every value seen (old versions are pruned)

    @property
    def platform(self) -> Any:
        platform = load_valid(self.repo).platform
        assert platform is not None
        return platform

    def login(self) -> Any:
        """A fresh orchestrator session (a VaultClient), as ``chamberlain controller run`` logs in."""
        conn = Connection(self.lab.authority.address, self.lab.pki.ca.cert, clock=SystemClock())
        return login_as(conn, self.platform, self.kube, orchestrator_policy(CLUSTER),
                        kubernetes_auth_mount(self.platform, CLUSTER))

    @property
    def kv(self) -> KV:
        if self._kv is None:
            conn = Connection(self.lab.authority.address, self.lab.pki.ca.cert, clock=SystemClock())
            self._kv = orchestrator_kv(conn, self.platform, self.kube, orchestrator_policy(CLUSTER),
                                       kubernetes_auth_mount(self.platform, CLUSTER))
        return self._kv

    def relogin(self) -> None:
        self._kv = None

    def vault_args(self) -> list[str]:
        return ["-e", ENVIRONMENT, "--cluster", CLUSTER, "--vault-addr", self.lab.authority.address,
                "--vault-cacert", str(self.lab.pki.ca.cert), "--kubeconfig", str(self.lab.kubeconfig)]

    # ----------------------------------------------------------------------------------- Vault state

    def meta(self, t: Target) -> SecretMetadata:
        got = self.kv.read_metadata(MOUNT, t.path)
        assert got is not None, t.full
        return got

    def version(self, t: Target) -> int:
        return self.meta(t).current_version

    def run_record(self, t: Target) -> RotationRun | None:
        return runs.load(self.kv, t.vault)

    def ledger(self) -> Ledger:
        return LedgerReader(self.kv, MOUNT)

    def rotations(self, t: Target) -> list[LedgerEntry]:
        return [e for e in self.ledger().for_secret(t.name) if e.event == "rotation"]

    def latest_marker(self, t: Target) -> str:
        """The marker of the latest version's data as it is in Vault now (not as recorded)."""
        got = self.kv.read(MOUNT, t.path)
        assert got is not None
        # Keyed by the authority (issue 11): only an orchestrator of the environment can compute it.
        return TransitMarkers(self.login().transit).of(VaultPath(MOUNT, t.path), got.data)

    def values(self, t: Target) -> list[str]:
        """Every value of every version of ``t`` still kept (the mount prunes old versions), plus every value
        remembered earlier: the canaries of the leak test."""
        out: list[str] = []
        for v in range(1, self.version(t) + 1):
            got = self.kv.read(MOUNT, t.path, v)
            if got is not None:
                out.extend(got.data.values())
        self.canaries.update(out)
        return sorted(self.canaries)

    def remember(self, t: Target) -> None:
        """Keep the current values of ``t`` for the leak test, before later versions push them out."""
        got = self.kv.read(MOUNT, t.path)
        if got is not None:
            self.canaries.update(got.data.values())

    # ----------------------------------------------------------------------------------- Kubernetes state

    def consumer_markers(self, t: Target) -> list[str | None]:
        out = []
        for ns, name in t.consumers:
            ann = self.kube.get_secret_annotations(ns, name)
            out.append(None if ann is None else ann.get(wk.ANNOTATION_VERSION_MARKER))
        return out

    def workload(self, kind: str, ns: str, name: str) -> tuple[int, dict[str, str]]:
        """(metadata.generation, pod template annotations) of a Deployment or DaemonSet."""
        apps = kubernetes.client.AppsV1Api(self.api)
        read = apps.read_namespaced_deployment if kind == "Deployment" else apps.read_namespaced_daemon_set
        obj: Any = read(name, ns)
        return int(obj.metadata.generation or 0), dict(obj.spec.template.metadata.annotations or {})

    def generations(self, t: Target) -> dict[tuple[str, str, str], tuple[int, int]]:
        """Per declared workload: (metadata.generation, rollout revision) once kube-controller-manager caught up.
        A restart is proven by both moving together: the pod-template patch *and* the new ReplicaSet (Deployment)
        or ControllerRevision (DaemonSet) it produced."""
        out = {}
        for wl in t.workloads:
            r = rollouts.rollout(self.api, *wl)
            out[wl] = (r.generation, r.revision)
        return out

    def restart_batches(self, t: Target) -> set[str | None]:
        """The restart batch tokens on the workloads' pod templates *and* on the revisions their controllers
        rolled out last (one set: a revision left behind by its template shows as a second token)."""
        tokens = {self.workload(*wl)[1].get(wk.ANNOTATION_RESTART_BATCH) for wl in t.workloads}
        for wl in t.workloads:
            tokens.add(rollouts.rollout(self.api, *wl).template_annotations.get(wk.ANNOTATION_RESTART_BATCH))
        return tokens

    def custom(self) -> Any:
        return kubernetes.client.CustomObjectsApi(self.api)

    # ----------------------------------------------------------------------------------- controllers

    def start_controller(self, identity: str, *, repo: Path | None = None, crash_at: str | None = None,
                         lease_seconds: int = 4, interval: float = 0.5, evaluate_every: float = 1.0,
                         token_file: Path | None = None, vault_addr: str | None = None,
                         extra: Iterable[str] = (), wait_leader: bool = True,
                         keep_runs: int = 1000) -> ControllerProc:
        """``keep_runs``: most tests look RotationRun objects up by run id, so history pruning keeps them all."""
        log = self.base / "logs" / f"{identity}-{len(self.controllers)}.log"
        log.parent.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "chamberlain.cli.main", "controller", "run", str(repo or self.quiet),
                "-e", ENVIRONMENT, "--cluster", CLUSTER, "--vault-addr", vault_addr or self.lab.authority.address,
                "--vault-cacert", str(self.lab.pki.ca.cert), "--kubeconfig", str(self.lab.kubeconfig),
                "--interval", str(interval), "--evaluate-every", str(evaluate_every),
                "--lease-seconds", str(lease_seconds), "--identity", identity, "--webhook-port", "0",
                "--keep-runs", str(keep_runs),
                "--webhook-key-file", str(self.key_file), "--metrics-port", "0", "--propagation-timeout", "30",
                *(["--vault-token-file", str(token_file)] if token_file is not None else []), *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_", "KUBECONFIG"))}
        if crash_at is not None:
            env["CHAMBERLAIN_CRASH_AT"] = crash_at
        with log.open("wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                                    env=env, cwd=REPO_ROOT, start_new_session=True)
        c = ControllerProc(identity, proc, log, crash_at)
        self.controllers.append(c)
        c.wait_started()
        if wait_leader:
            c.wait_leader()
        return c

    def stop(self, c: ControllerProc) -> None:
        """Graceful stop (SIGTERM): keep its metrics page for the leak test first; it must exit 0."""
        if not c.alive:
            return
        with contextlib.suppress(OSError):
            self.outputs.append(get_text(c.metrics_url))
        code = c.terminate()
        assert code == 0, f"controller {c.identity} exited with {code} after SIGTERM:\n{c.text()[-2000:]}"

    def stop_all(self) -> None:
        for c in self.controllers:
            if c.alive:
                c.kill()

    # ----------------------------------------------------------------------------------- outages

    def stop_vault(self) -> None:
        assert self.lab.authority.stop(), "the lab Vault was not running"

    def start_vault(self) -> None:
        """Start the raft Vault again (it comes back sealed) and unseal it the way an operator does: `chamberlain
        authority unseal` with two of the demo's three custodians' identities (threshold 2) and the sealed shares
        in the cluster."""
        proc = self.lab.authority.start()
        self.lab.authority.wait(proc)
        custodians = self.work / "custodians"
        got = self.cli("authority", "unseal", str(self.repo), "--identity", str(custodians / "alice.agekey"),
                       "--identity", str(custodians / "bob.agekey"),
                       "--vault-addr", self.lab.authority.address, "--vault-cacert", str(self.lab.pki.ca.cert),
                       "--kubeconfig", str(self.lab.kubeconfig))
        assert got.returncode == 0, got.stdout + got.stderr

        def active() -> bool:
            try:
                health = self.lab.authority.sys_health()
            except (OSError, ValueError):
                return False
            return not health.get("sealed") and not health.get("standby")

        wait_for(active, 60, "Vault active after unseal")
        wait_for(lambda: _answers(self), 60, "Vault answers the orchestrator again")

    def kill_apiserver(self) -> None:
        """The kube-apiserver dies (SIGKILL: a graceful stop waits ~20 s for its watchers); etcd stays up."""
        from chamberlain.lab import procs

        assert procs.stop(self.lab.config.lab_dir, self.lab.apiserver.name, sig=signal.SIGKILL)

    def start_apiserver(self) -> None:
        proc = self.lab.apiserver.start()
        self.lab.apiserver.wait(proc)

    def stop_eso(self) -> None:
        """ESO dies: force-syncs are recorded on the ExternalSecrets, and no consumer Secret moves."""
        from chamberlain.lab import procs

        assert procs.stop(self.lab.config.lab_dir, self.lab.eso.name, sig=signal.SIGKILL)

    def start_eso(self) -> None:
        proc = self.lab.eso.start()
        self.lab.eso.wait(proc)

    # ----------------------------------------------------------------------------------- triggers

    def webhook(self, c: ControllerProc, secret: str, reason: str = "webhook test",
                request_id: str | None = None) -> tuple[int, dict[str, Any]]:
        doc = {"secret": secret, "reason": reason, **({"id": request_id} if request_id else {})}
        body = json.dumps(doc).encode()
        return post(c.webhook_url, body, sign(body, WebhookKey(self.key), datetime.now(UTC)))

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_", "KUBECONFIG"))}
        got = subprocess.run([sys.executable, "-m", "chamberlain.cli.main", *args], capture_output=True,
                             text=True, env=env, cwd=REPO_ROOT, timeout=timeout, check=False)
        self.outputs.append(got.stdout + got.stderr)
        return got

    # ----------------------------------------------------------------------------------- waiting

    def wait_run_done(self, t: Target, *, run_id: str | None = None, not_run: str | None = None,
                      timeout: float = 60) -> RotationRun:
        """The run record of ``t`` once it is finished and ledgered: run ``run_id`` if given, else any run but
        ``not_run``."""

        def done() -> RotationRun | None:
            r = self.run_record(t)
            if r is None or not r.finished or r.ledger_seq is None:
                return None
            if (run_id is not None and r.run_id != run_id) or r.run_id == not_run:
                return None
            self.remember(t)
            return r

        got: RotationRun = wait_for(done, timeout, f"a finished, ledgered run of {t.name}")
        return got

    def assert_converged(self, t: Target, version: int) -> None:
        """Vault at ``version``; recorded marker = marker of the data in Vault = every consumer's annotation."""
        self.remember(t)
        meta = self.meta(t)
        assert meta.current_version == version, (t.name, meta.current_version, version)
        marker = meta.custom[wk.VALUE_MARKER]
        assert self.latest_marker(t) == marker, f"{t.name}: the latest version is not the recorded one"
        assert meta.custom["value-version"] == str(version)

        def synced() -> bool:
            return all(m == marker for m in self.consumer_markers(t))

        wait_for(synced, 30, f"{t.name}: every consumer carries the marker of v{version}")


def _answers(w: World) -> bool:
    try:
        w.kv.read_metadata(MOUNT, GRAFANA.path)
    except Exception:
        w.relogin()
        return False
    return True


def advanced(gens: Mapping[tuple[str, str, str], tuple[int, int]], n: int) -> dict[tuple[str, str, str],
                                                                                 tuple[int, int]]:
    """``gens`` (from :meth:`World.generations`) after ``n`` restarts: generation and revision each ``n`` on."""
    return {wl: (g + n, r + n) for wl, (g, r) in gens.items()}


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def probe(proc: ControllerProc, path: str) -> tuple[int, dict[str, Any]]:
    """``/healthz`` or ``/readyz`` of a running controller: (HTTP status, its JSON body)."""
    url = proc.metrics_url.removesuffix("/metrics") + path
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


# --------------------------------------------------------------------------------------------- controller process


@dataclass
class ControllerProc:
    identity: str
    proc: subprocess.Popen[bytes]
    log: Path
    crash_at: str | None = None
    _started: dict[str, Any] | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [d for d in self.lines() if d.get("event") == name
                and all(d.get(k) == v for k, v in match.items())]

    def wait_started(self, timeout: float = 60) -> None:
        def started() -> dict[str, Any] | None:
            if not self.alive:
                raise AssertionError(f"controller {self.identity} exited with {self.proc.returncode} before it "
                                     f"started:\n{self.text()[-3000:]}")
            got = self.events("controller started")
            return got[0] if got else None

        self._started = wait_for(started, timeout, f"controller {self.identity} started")

    @property
    def webhook_url(self) -> str:
        assert self._started is not None
        return str(self._started["webhook"])

    @property
    def metrics_url(self) -> str:
        assert self._started is not None
        return str(self._started["metrics"])

    @property
    def leader(self) -> bool:
        got = self.events("leadership")
        return bool(got) and bool(got[-1].get("leader"))

    def wait_leader(self, timeout: float = 30) -> None:
        def lead() -> bool:
            if not self.alive:
                raise AssertionError(f"controller {self.identity} exited with {self.proc.returncode}:\n"
                                     f"{self.text()[-3000:]}")
            return self.leader

        wait_for(lead, timeout, f"controller {self.identity} leads")

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"controller {self.identity} did not exit within {timeout:.0f}s:\n"
                                 f"{self.text()[-3000:]}") from None

    def terminate(self, timeout: float = 30) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):  # every thread's stack into its log (the controller's SIGUSR1)
                self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            self.kill()
            raise AssertionError(f"controller {self.identity} ignored SIGTERM for {timeout:.0f}s; the end of its "
                                 f"log, with every thread's stack:\n{self.text()[-8000:]}") from None

    def kill(self) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(30)

    def warnings(self) -> list[dict[str, Any]]:
        return [d for d in self.lines() if d.get("level") == "warning"]


# --------------------------------------------------------------------------------------------- partition


class Partition:
    """A TCP forwarder on loopback in front of the lab Vault that a test cuts (a network partition: connections
    refused, open ones reset) and heals at an exact moment — a stopped Vault comes back only after a start and an
    unseal, too slowly to pick the controller tick it returns on. TLS passes through untouched (the lab
    certificate names 127.0.0.1). ``delay``: seconds each chunk sent towards Vault waits (a slow link)."""

    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._serve(self._server)

    @property
    def address(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _serve(self, server: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for a, b, delay in ((client, upstream, self.delay), (upstream, client, 0.0)):
                threading.Thread(target=self._pump, args=(a, b, delay), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while data := src.recv(65536):
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _close(sock)
            with self._lock:
                self._conns -= {src, dst}

    def cut(self) -> None:
        _close(self._server)
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            _close(sock)

    def heal(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._serve(self._server)

    def close(self) -> None:
        self.cut()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept/recv on it
    sock.close()


# --------------------------------------------------------------------------------------------- setup


def point_store_at_lab(w: World, namespace: str) -> None:
    """The rendered SecretStore names the in-cluster Vault; the lab's listens on loopback with the lab CA."""
    w.custom().patch_namespaced_custom_object(ESO_GROUP, "v1", namespace, "secretstores", STORE, {"spec": {
        "provider": {"vault": {"server": w.lab.authority.address,
                               "caBundle": base64.b64encode(w.lab.pki.ca_pem.encode()).decode()}}}})


def create_workload(w: World, kind: str, namespace: str, name: str) -> None:
    """The workload object only (the lab has no kubelet, nothing runs)."""
    apps = kubernetes.client.AppsV1Api(w.api)
    spec: Any = {"selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [{"name": name, "image": "example.invalid/x:1"}]}}}
    try:
        if kind == "Deployment":
            body: Any = {"metadata": {"name": name}, "spec": {"replicas": 1, **spec}}
            apps.create_namespaced_deployment(namespace, body)
        else:
            assert kind == "DaemonSet", kind
            body = {"metadata": {"name": name}, "spec": spec}
            apps.create_namespaced_daemon_set(namespace, body)
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise


def materialize(w: World, targets: Iterable[Target]) -> None:
    """Stores at the lab Vault, workloads created, every consumer Secret synced with the current marker."""
    targets = list(targets)
    for ns in sorted({ns for t in targets for ns, _ in t.consumers}):
        point_store_at_lab(w, ns)
    for t in targets:
        for kind, ns, name in t.workloads:
            create_workload(w, kind, ns, name)

    def synced() -> bool:
        ok = True
        for t in targets:
            marker = w.meta(t).custom[wk.VALUE_MARKER]
            for (ns, name), got in zip(t.consumers, w.consumer_markers(t), strict=True):
                if got != marker:
                    ok = False
                    w.kube.annotate_external_secret(ns, name, {"force-sync": str(time.monotonic())})
        return ok

    wait_for(synced, 120, "every consumer Secret materialized by ESO with the current marker", every=1.0)


def build_world(base: Path, offset: int) -> World:
    from chamberlain.demo.walkthrough import DemoOptions, Phase, run_demo

    lab_dir = base / "lab"
    report = run_demo(DemoOptions(through=Phase.handover, lab_dir=lab_dir, port_offset=offset, keep=True,
                                  authority=lab_authority(),
                                  source_repo=source_repo(base / "source")), lab_host(), host_tools())
    assert report.ok, [p.as_dict() for p in report.phases if not p.ok]
    lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host()))
    work = Path(report.work_dir)
    repo = work / "repo"
    kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    api = kubernetes.config.new_client_from_config(config_file=str(lab.kubeconfig))  # type: ignore[no-untyped-call]
    key = os.urandom(32).hex().encode()
    key_file = base / "webhook.key"
    key_file.write_bytes(key + b"\n")
    key_file.chmod(0o600)
    internal = outside_runtime_mount(repo)
    w = World(lab, repo, scoped_repo(repo, base / "timed", internal),
              scoped_repo(repo, base / "quiet", internal | {TICKING.name}), work, base, kube, api, key_file, key)
    materialize(w, TARGETS)
    return w


def teardown_world(lab_dir: Path) -> dict[str, int]:
    """Stop the lab of ``lab_dir`` (and purge its PostgreSQL); returns the pids of the servers that ran."""
    if not (lab_dir / "lab.json").exists():
        return {}
    lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host()))
    pids = {n: info.pid for n, s in lab.servers().items() if (info := s.running()) is not None}
    lab_mod.down(lab_dir, lab_host(), progress=lambda _m: None)
    lab.postgres.purge()
    return pids
