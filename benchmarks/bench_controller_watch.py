"""Benchmark P5 (and P3 at scale): the controller in watch mode with many SecretIntents stored in the lab's real
kube-apiserver, side by side with ESO's own controller holding as many ExternalSecrets.

What runs: ``chamberlain controller run --from-cluster`` (the in-cluster mode: Platform, RotationPolicies and
SecretIntents watched in the controller namespace), in a child process started from this script only so two
counters can be added around it (nothing else changes): every HTTP request its Kubernetes client sends (method,
resource, watch or not) and every authority login. The controller logs in as the lab cluster's orchestrator through
OpenBao's Kubernetes auth (a TokenRequest-minted ServiceAccount token, as ``controller run`` does with
``--kubeconfig``), with a short token TTL (``--token-ttl``; max TTL 3x) so renewals and re-logins happen within the
window.

Per size (``-n 1000,5000,10000``; SecretIntents added to the same namespace size after size, created in parallel,
with each secret's first version and chamberlain's metadata seeded in OpenBao so nothing is provisioned):

- **start-up**: child spawned -> the first status of every SecretIntent written (``chamberlain_status_writes``);
- **peak RSS**: ``VmHWM`` of the child (/proc/<pid>/status) after the window: start-up included;
- **API requests/s**: requests sent during a steady-state window (``--window`` s) after start-up, divided by it
  (a watch counts once, when it is opened);
- **logins**: authority logins over the child's life, against the token lifetime (max TTL).

At the largest size, ESO (the lab's ``external-secrets`` process) gets as many ExternalSecrets (rendered by
chamberlain's renderer, one per intent, reading the seeded values), and once they are synced it is measured the
same way: ``VmHWM`` of its process, and its requests/s over the same window length, from its own client-side
request counter (client-go's ``rest_client_requests_total`` on its /metrics) — the same thing the child counts for
chamberlain: HTTP requests sent to the API server, a watch once. (Server-side attribution is not available in the
lab: kube-apiserver runs without API priority and fairness or an audit log, and ESO uses the lab admin's
credentials like everything else.) Then P3: ``--p3`` rotations triggered by the rotate annotation on a
SecretIntent, each timed from the annotation PATCH to a metadata-only watch seeing the consumer Secret carry a new
version marker (the controller, OpenBao and ESO all at the largest size). As in ``bench_propagation``, one run at a
time at a random point of the loop's cycle (a trigger that arrives while another run waits for ESO waits for that
run's tick), each followed by the floor: a value written to OpenBao directly and a raw force-sync of an
ExternalSecret no intent declares, timed by the same watch.

Usage:
    benchmarks/bench_controller_watch.py --smoke -o json                   # 50 intents, 10 s window: seconds
    benchmarks/bench_controller_watch.py -n 1000,5000,10000 -o json          # full (seeding 10k: minutes)
    benchmarks/bench_controller_watch.py --lab-dir /tmp/lab                  # reuse a running dev lab
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

GOAL_RSS_MIB = 128.0
GOAL_REQ_S = 1.0
GOAL_P3_P95 = 0.2
NAMESPACES = 10
PER_WORKLOAD = 10
TEMPLATE = "tplxq-0000"
TEMPLATE_NS = "bench-00"
TEMPLATE_APP = "tplxq-app-000"
RE_API = re.compile(r"^/apis?/(?:(?P<group>[^/]+)/)?(?P<version>v[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/"
                    r"(?P<resource>[^/?]+)(?:/(?P<name>[^/?]+))?(?:/(?P<sub>[^/?]+))?")


# ------------------------------------------------------------------------------------------- the child process


def _child(counts_file: Path, cli_args: list[str]) -> int:
    """``chamberlain controller run`` with two counters around it (written to ``counts_file`` every second)."""
    import kubernetes.client.rest as rest

    from chamberlain.authority.vault import auth as vault_auth

    lock = threading.Lock()
    requests: Counter[str] = Counter()
    logins = [0]

    original = rest.RESTClientObject.request

    def counted(self: Any, method: str, url: str, *args: Any, **kw: Any) -> Any:
        path = url.split("://", 1)[-1].split("/", 1)[-1]
        m = RE_API.match("/" + path)
        resource = m.group("resource") if m else path.split("?")[0][:40]
        if m and m.group("sub"):
            resource += "/" + m.group("sub")
        watch = "watch=true" in url or "watch=True" in url
        with lock:
            requests[f"{'WATCH' if watch else method} {resource}"] += 1
        return original(self, method, url, *args, **kw)  # type: ignore[no-untyped-call]

    rest.RESTClientObject.request = counted  # type: ignore[method-assign]
    login = vault_auth.Auth.kubernetes_login

    def counted_login(self: Any, *args: Any, **kw: Any) -> Any:  # the first login and every re-login
        with lock:
            logins[0] += 1
        return login(self, *args, **kw)

    vault_auth.Auth.kubernetes_login = counted_login  # type: ignore[method-assign]
    from chamberlain.kube import client as kube_client

    patch_status = kube_client.KubeClient.patch_custom_object_status
    patched = [0]

    def counted_status(self: Any, resource: Any, *args: Any, **kw: Any) -> Any:  # accepted SecretIntent statuses
        out = patch_status(self, resource, *args, **kw)
        if resource.plural == "secretintents":
            with lock:
                patched[0] += 1
        return out

    kube_client.KubeClient.patch_custom_object_status = counted_status  # type: ignore[method-assign]
    from chamberlain.controller import loop as controller_loop

    complete = controller_loop.Controller._complete
    finished = [0]

    def counted_complete(self: Any, a: Any) -> None:  # finished runs, for P3 (a /metrics scrape costs ~1 s at 10k)
        complete(self, a)
        with lock:
            finished[0] += 1

    controller_loop.Controller._complete = counted_complete  # type: ignore[method-assign]

    def dump() -> None:
        while True:
            with lock:
                data = {"requests": dict(requests), "logins": logins[0], "status_patched": patched[0],
                        "finished": finished[0], "at": time.monotonic()}
            tmp = counts_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(counts_file)
            time.sleep(0.5)

    threading.Thread(target=dump, daemon=True).start()
    from chamberlain.cli.main import main as cli_main

    sys.argv = ["chamberlain", *cli_args]
    try:
        cli_main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# ------------------------------------------------------------------------------------------- helpers


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _parallel(fn: Any, items: list[Any], workers: int = 16) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fn, items):
            pass


# ------------------------------------------------------------------------------------------- the world


class _Template:
    """One intent rendered by chamberlain from a one-intent repository: its SecretIntent and ExternalSecret as
    JSON, filled per index (name, consumer namespace, workload) to make thousands without loading thousands."""

    def __init__(self, handle: Any, workdir: Path) -> None:
        import _lab_env as le
        from chamberlain.render import eso
        from chamberlain.render.layout import intent_manifest
        from chamberlain.render.topology import build_topology
        from chamberlain.service import load_valid

        self.le = le
        root = workdir / "template"
        le.write_repository(root, handle.vault_addr, [le.Shape(1, per_workload=1, namespaces=1, prefix="tplxq")])
        repo = load_valid(root)
        assert repo.platform is not None
        self.platform = repo.platform
        self.ns = self.platform.spec.controller.namespace
        self.account = self.platform.spec.controller.service_account
        intent = repo.intents[0].obj
        self.scope = le.scope_of(self.platform, {intent.metadata.name: intent}, le.ENV, le.CLUSTER)
        placed = self.scope.placed[TEMPLATE]
        self.vault_path = placed.vault.path
        self.intent_json = json.dumps(intent_manifest(intent, self.ns))
        unit = next(u for u in build_topology(self.platform, [p.obj for p in repo.policies], [intent]).units
                    if u.environment == le.ENV and u.cluster == le.CLUSTER)
        [read] = unit.reads[TEMPLATE_NS]
        self.external_json = json.dumps(eso.external_secret(read, le.ENV, version_marker=True))
        self.platform_manifest = intent_manifest(self.platform, self.ns)
        self.policy_manifests = [intent_manifest(p.obj, self.ns) for p in repo.policies]
        from chamberlain.handover import metadata as md
        from chamberlain.intent.paths import effective_policy

        resolved = effective_policy(self.platform, {p.obj.metadata.name: p.obj for p in repo.policies}, intent)
        self.policy_custom = md.policy_metadata(resolved[0] if resolved else None, resolved[1] if resolved else None)

    def fill(self, text: str, i: int) -> dict[str, Any]:
        out = (text.replace(TEMPLATE_APP, World.workload(i)).replace(TEMPLATE, World.name(i))
               .replace(TEMPLATE_NS, World.namespace(i)))
        result: dict[str, Any] = json.loads(out)
        return result

    def path(self, i: int) -> str:
        return self.vault_path.replace(TEMPLATE_NS, World.namespace(i)).replace(TEMPLATE, World.name(i))


class World(_Template):
    """The lab, the template intent and what was seeded."""

    def __init__(self, handle: Any, workdir: Path, token_ttl: int) -> None:
        import kubernetes

        from chamberlain.render import naming

        super().__init__(handle, workdir)
        le = self.le
        self.handle, self.workdir, self.token_ttl = handle, workdir, token_ttl
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(handle.kubeconfig),  # type: ignore[no-untyped-call]
                                           client_configuration=cfg)
        cfg.connection_pool_maxsize = 32
        self.api = kubernetes.client.ApiClient(cfg)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.kube = handle.kube()
        self.vault = handle.vault()
        self.auth_mount = naming.kubernetes_auth_mount(self.platform, le.CLUSTER)
        self.role = naming.orchestrator_policy(le.CLUSTER)
        self.seeded = 0
        self.external = self.external_before = 0

    # ---------------------------------------------------------------- names

    @staticmethod
    def name(i: int) -> str:
        return f"s-{i:05d}"

    @staticmethod
    def namespace(i: int) -> str:
        return f"bench-{i % NAMESPACES:02d}"

    @staticmethod
    def workload(i: int) -> str:
        return f"app-{i // PER_WORKLOAD:04d}"

    # ---------------------------------------------------------------- set-up

    def prepare(self) -> None:
        """CRDs, the controller namespace and ServiceAccount, the Platform and policies, and OpenBao's Kubernetes
        auth for the orchestrator role (what ``authority configure`` sets up, with a wide policy: not measured)."""
        from chamberlain.render.crds import crd, crd_kinds

        for kind in crd_kinds():
            manifest = crd(kind)
            self.kube.apply_manifest(manifest, self.le.FIELD_MANAGER)
            self.kube.wait_crd_established(manifest["metadata"]["name"])
        self.kube.ensure_namespace(self.ns)
        self.kube.ensure_service_account(self.ns, self.account)
        for manifest in [self.platform_manifest, *self.policy_manifests]:
            self.kube.apply_manifest(manifest, self.le.FIELD_MANAGER)
        for i in range(NAMESPACES):
            self.kube.ensure_namespace(self.namespace(i))
        self._auth()

    def _auth(self) -> None:
        import kubernetes

        client = self.handle.hvac()
        reviewer_ns = "vault-system"
        self.kube.ensure_namespace(reviewer_ns)
        self.kube.ensure_service_account(reviewer_ns, "vault-auth")
        rbac = kubernetes.client.RbacAuthorizationV1Api(self.api)
        binding: Any = {"metadata": {"name": "bench-vault-auth-delegator"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "system:auth-delegator"},
                   "subjects": [{"kind": "ServiceAccount", "name": "vault-auth", "namespace": reviewer_ns}]}
        try:
            rbac.create_cluster_role_binding(binding)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        mount = self.auth_mount
        if f"{mount}/" not in client.sys.list_auth_methods()["data"]:
            client.sys.enable_auth_method("kubernetes", path=mount)
        reviewer = self.kube.service_account_token(reviewer_ns, "vault-auth", [], 24 * 3600)
        client.write_data(f"auth/{mount}/config", data={
            "kubernetes_host": self.handle_apiserver(), "kubernetes_ca_cert": self.handle.ca_pem,
            "token_reviewer_jwt": reviewer, "disable_local_ca_jwt": True})
        client.sys.create_or_update_policy("bench-orchestrator", 'path "*" { capabilities = ["create", "read", '
                                           '"update", "patch", "delete", "list", "sudo"] }')
        client.write_data(f"auth/{mount}/role/{self.role}", data={
            "bound_service_account_names": [self.account], "bound_service_account_namespaces": [self.ns],
            "audience": "vault", "token_policies": ["bench-orchestrator"], "token_ttl": self.token_ttl,
            "token_max_ttl": 3 * self.token_ttl})

    def handle_apiserver(self) -> str:
        cfg = json.loads(Path(self.handle.kubeconfig).read_text())
        return str(cfg["clusters"][0]["cluster"]["server"])

    def seed(self, n: int) -> dict[str, float]:
        """Intents [seeded, n): their first version and metadata in OpenBao, and the SecretIntent objects."""
        from chamberlain import wellknown as wk
        from chamberlain.values.markers import version_marker

        todo = list(range(self.seeded, n))
        if not todo:
            return {"vault_s": 0.0, "intents_s": 0.0}
        mount = self.le.MOUNT
        kv = self.vault.kv
        created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())

        def vault_one(i: int) -> None:
            path = self.path(i)
            values = {"username": "svc_user", "password": f"bench-{i}-0123456789abcdef0123456789"}
            meta = kv.read_metadata(mount, path)
            if meta is not None and meta.current_version > 0:
                return
            version = kv.write(mount, path, values, cas=0)
            kv.update_custom_metadata(mount, path, {
                wk.AUTHORITY: wk.AUTHORITY_VAULT, wk.CREATED_BY: wk.CREATED_BY_CHAMBERLAIN, wk.CREATED_AT: created,
                wk.INTENT: self.name(i), wk.ENVIRONMENT: self.le.ENV, wk.ORIGIN: "generated",
                wk.VALUE_VERSION: str(version), wk.VALUE_MARKER: version_marker(f"{mount}/{path}", values),
                **self.policy_custom})

        import kubernetes

        def intent_one(i: int) -> None:
            body = self.fill(self.intent_json, i)
            try:
                self.custom.create_namespaced_custom_object("chamberlain.dev", "v1alpha1", self.ns, "secretintents",
                                                            body)
            except kubernetes.client.ApiException as exc:
                if exc.status != 409:
                    raise

        started = time.monotonic()
        _parallel(vault_one, todo)
        vault_s = time.monotonic() - started
        started = time.monotonic()
        _parallel(intent_one, todo)
        intents_s = time.monotonic() - started
        self.seeded = n
        self.le.log(f"seeded {len(todo)} secrets in OpenBao in {vault_s:.1f}s and created {len(todo)} SecretIntents "
                    f"in {intents_s:.1f}s (16 threads)")
        return {"vault_s": round(vault_s, 2), "intents_s": round(intents_s, 2)}

    def externals(self, n: int) -> float:
        """SecretStores (token auth) and an ExternalSecret per intent [external, n), rendered by chamberlain."""
        import kubernetes

        le = self.le
        for i in range(NAMESPACES):
            ns = self.namespace(i)
            if self.kube.get_secret(ns, le.TOKEN_SECRET) is None:
                self.kube.create_secret(ns, le.TOKEN_SECRET, {"token": self.handle.root_token})
            self.kube.apply_manifest(le._store_manifest(self.platform, ns, self.handle.ca_pem), le.FIELD_MANAGER)

        def one(i: int) -> None:
            body = self.fill(self.external_json, i)
            try:
                self.custom.create_namespaced_custom_object("external-secrets.io", "v1", self.namespace(i),
                                                            "externalsecrets", body)
            except kubernetes.client.ApiException as exc:
                if exc.status != 409:
                    raise

        started = time.monotonic()
        self.external_before = self.external
        _parallel(one, list(range(self.external, n)))
        self.external = n
        return time.monotonic() - started

    def deployments(self, indices: list[int]) -> None:
        for i in indices:
            self.kube.apply_manifest(self.le._deployment(self.namespace(i), self.workload(i)), self.le.FIELD_MANAGER)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]
        self.kube.close()


# ------------------------------------------------------------------------------------------- chamberlain


class Child:
    """The controller child process and its counters."""

    def __init__(self, world: World, workdir: Path, identity: str) -> None:
        import socket

        self.counts = workdir / f"{identity}.counts.json"
        self.log = workdir / f"{identity}.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        le = world.le
        args = ["controller", "run", "--from-cluster", "-e", le.ENV, "--cluster", le.CLUSTER,
                "--namespace", world.ns, "--identity", identity, "--kubeconfig", str(world.handle.kubeconfig),
                "--vault-addr", world.handle.vault_addr, "--metrics-address", f"127.0.0.1:{self.port}",
                "--log-level", "warning"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_", "KUBECONFIG"))}
        env["PYTHONPATH"] = str(ROOT / "src")
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--child", str(self.counts), "--", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                start_new_session=True)

    def read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.counts.read_text())
            return data
        except (OSError, ValueError):
            return {"requests": {}, "logins": 0}

    def metric(self, name: str, **labels: str) -> float:
        try:
            return _metric_sum(_metrics(f"http://127.0.0.1:{self.port}/metrics"), name, **labels)
        except OSError:
            return 0.0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def peak_mib(self) -> float:
        return (_status_kib(self.proc.pid, "VmHWM") or 0) / 1024

    def rss_mib(self) -> float:
        return (_status_kib(self.proc.pid, "VmRSS") or 0) / 1024

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def measure_chamberlain(world: World, n: int, window: float, workdir: Path, timeout: float,
                        scrape_every: float = 15.0, statused: int = 0) -> tuple[Child, dict[str, Any]]:
    """Start the controller over n intents; start-up until every intent has its first status; a steady window.
    ``statused``: intents that already have theirs (a smaller size's controller wrote them, and an unchanged status
    is not written again), so start-up waits for the other ``n - statused``.
    Progress is read from the child's own counter, and /metrics is scraped every ``scrape_every`` seconds, as a
    Prometheus would: at 10k intents one scrape renders about 50k per-secret samples (4 MiB of text, about 20 MiB
    allocated while it runs), so scraping it twice a second for progress made the peak and start-up the bench's."""
    le = world.le
    child = Child(world, workdir, f"bench-{n}")
    deadline = child.started + timeout
    patched = 0.0
    scraped = child.started
    while True:
        if not child.alive():
            raise SystemExit(f"the controller exited ({child.proc.returncode}):\n{child.tail()}")
        patched = float(child.read().get("status_patched", 0))
        if time.monotonic() - scraped >= scrape_every:
            child.metric("chamberlain_status_writes_total", result="patched")
            scraped = time.monotonic()
        if patched >= n - statused:
            break
        if time.monotonic() > deadline:
            child.stop()
            raise SystemExit(f"start-up: {patched:.0f}/{n - statused} statuses after {timeout:.0f}s\n{child.tail()}")
        time.sleep(0.5)
    startup = time.monotonic() - child.started
    le.log(f"{n} intents: controller up in {startup:.1f}s (every status written), RSS {child.rss_mib():.1f} MiB")
    time.sleep(min(5.0, window / 4))  # the last statuses' watch events, the first Lease renewals
    before, at = child.read(), time.monotonic()
    vault_before = child.metric("chamberlain_vault_requests_total")  # the authority: the time trigger's reads
    while time.monotonic() - at < window:  # the steady window, scraped as a Prometheus would
        time.sleep(max(0.0, min(scrape_every, window - (time.monotonic() - at))))
        if time.monotonic() - at < window:
            child.metric("chamberlain_status_writes_total", result="patched")
    after, end = child.read(), time.monotonic()
    vault = child.metric("chamberlain_vault_requests_total") - vault_before
    delta = Counter(after["requests"])
    delta.subtract(before["requests"])
    made = {k: v for k, v in sorted(delta.items()) if v}
    result = {
        "n": n, "startup_s": round(startup, 2), "window_s": round(end - at, 1),
        "requests": sum(made.values()), "req_per_s": round(sum(made.values()) / (end - at), 3),
        "by_request": made, "startup_requests": sum(before["requests"].values()),
        "startup_by_request": dict(sorted(before["requests"].items())),
        "vault_requests": int(vault), "vault_req_per_s": round(vault / (end - at), 2),
        "logins": after["logins"], "lifetime_s": round(end - child.started, 1),
        "token_max_ttl_s": 3 * world.token_ttl, "rss_mib": round(child.rss_mib(), 1), "scrape_every_s": scrape_every,
        "peak_rss_mib": round(child.peak_mib(), 1), "load": _load(),
    }
    le.log(f"{n} intents: {result['req_per_s']} API requests/s over {result['window_s']}s ({made}), "
           f"{result['vault_req_per_s']} authority requests/s; peak RSS "
           f"{result['peak_rss_mib']} MiB; {result['logins']} logins in {result['lifetime_s']}s")
    return child, result


# ------------------------------------------------------------------------------------------- ESO


def eso_process(world: World) -> tuple[int, str]:
    from chamberlain.lab import lab as lab_mod

    cfg = lab_mod.LabConfig.load(world.handle.lab_dir, world.le.lab_host())
    running = lab_mod.Lab(cfg)
    info = running.eso.running()
    if info is None:
        raise SystemExit("the lab's external-secrets is not running")
    return info.pid, running.eso.address


def measure_eso(world: World, n: int, window: float, timeout: float) -> dict[str, Any]:
    """n ExternalSecrets (one per intent) until ESO synced them all; then ESO's RSS and requests/s."""
    from chamberlain import wellknown as wk

    le = world.le
    pid, metrics = eso_process(world)
    watch = le.SecretWatch(world.api)
    watch.start()
    baseline = _metric_sum(_metrics(metrics), "rest_client_requests_total")
    try:
        created = world.externals(n)
        le.log(f"created {n} ExternalSecrets in {created:.1f}s")
        started = time.monotonic()
        while True:
            with watch._cond:
                have = sum(1 for (ns, name), marker in watch.current.items() if marker and name.startswith("s-"))
            if have >= n:
                break
            if time.monotonic() - started > timeout:
                raise SystemExit(f"ESO synced {have}/{n} Secrets within {timeout:.0f}s")
            time.sleep(1.0)
        synced = time.monotonic() - started
        le.log(f"ESO materialized {n} Secrets in {synced:.1f}s")
        del wk
    finally:
        watch.stop()
    time.sleep(min(5.0, window / 4))
    first = _metric_sum(_metrics(metrics), "rest_client_requests_total")
    per_sync = (first - baseline) / max(n - world.external_before, 1)
    at = time.monotonic()
    time.sleep(window)
    last = _metric_sum(_metrics(metrics), "rest_client_requests_total")
    end = time.monotonic()
    result = {"n": n, "sync_s": round(synced, 1), "window_s": round(end - at, 1), "requests": last - first,
              "req_per_s": round((last - first) / (end - at), 3), "total_requests": last,
              "peak_rss_mib": round((_status_kib(pid, "VmHWM") or 0) / 1024, 1),
              "rss_mib": round((_status_kib(pid, "VmRSS") or 0) / 1024, 1), "load": _load(),
              "method": "client-go rest_client_requests_total on ESO's /metrics",
              "requests_per_sync": round(per_sync, 2),
              # every ExternalSecret is synced again each refreshInterval (1h as rendered): a window right after
              # the first sync sees none of it, so the long-run rate is what a sync costs, n times an hour
              "refresh_req_per_s": round(per_sync * n / 3600.0, 3)}
    le.log(f"ESO with {n} ExternalSecrets: {result['req_per_s']} requests/s, peak RSS {result['peak_rss_mib']} MiB")
    return result


# ------------------------------------------------------------------------------------------- P3


def measure_p3(world: World, child: Child, count: int, timeout: float = 60.0, seed: int = 16) -> dict[str, Any]:
    """``count`` rotations triggered by the rotate annotation, one at a time as ``bench_propagation`` runs them:
    each waits until the previous run finished, then for a random point of the loop's 1 s cycle; PATCH -> the
    consumer Secret carries a new marker. After each, the floor on the same lab: a value and marker written to
    OpenBao directly and a raw force-sync of an ExternalSecret no intent declares, timed by the same watch."""
    import random

    from chamberlain import wellknown as wk
    from chamberlain.values.markers import version_marker

    le = world.le
    rng = random.Random(seed)
    indices = list(range(count))
    world.deployments(indices)
    floors = _floor_externals(world, count)
    watch = le.SecretWatch(world.api)
    watch.start()
    samples: list[float] = []
    floor: list[float] = []
    overlapping: list[float] = []
    try:
        _wait_seen(watch, [f[0] for f in floors], timeout)
        for k, i in enumerate(indices):
            _wait_finished(child, k, timeout)
            time.sleep(rng.uniform(0.0, 1.0))
            samples.append(_trigger(world, watch, child, i, f"bench p3 {i}", timeout))
            (fns, fname), path, version = floors[k]
            values = {"username": "svc_user", "password": f"floor-{k}-{rng.getrandbits(64):016x}"}
            marker = version_marker(f"{le.MOUNT}/{path}", values)
            world.vault.kv.write(le.MOUNT, path, values, cas=version)
            world.vault.kv.update_custom_metadata(le.MOUNT, path, {wk.VALUE_MARKER: marker})
            values.clear()
            t0 = time.monotonic()
            world.custom.patch_namespaced_custom_object(
                "external-secrets.io", "v1", fns, "externalsecrets", fname,
                {"metadata": {"annotations": {wk.ESO_FORCE_SYNC: f"floor-{k}"}}})
            got = watch.wait({(fns, fname): marker}, timeout)
            if not got:
                raise SystemExit(f"P3 floor: {fns}/{fname} did not carry the new marker within {timeout:.0f}s")
            floor.append(got[(fns, fname)] - t0)
            le.log(f"P3 {len(samples)}/{count}: {samples[-1]:.3f}s (floor {floor[-1]:.3f}s)")
        # Then triggers 0.3 s after the previous Secret changed, while that run still finishes (its propagation
        # check, restart, ledger): what a stream of triggers meets. Not P3's definition; reported beside it.
        _wait_finished(child, count, timeout)
        for i in indices:
            time.sleep(0.3)
            overlapping.append(_trigger(world, watch, child, i, f"bench p3 overlapping {i}", timeout))
            le.log(f"P3 overlapping {len(overlapping)}/{count}: {overlapping[-1]:.3f}s")
    finally:
        watch.stop()

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50": round(_percentile(values, 0.5), 3), "p95": round(_percentile(values, 0.95), 3),
                "max": round(max(values), 3)}

    return {"rotations": len(samples), **summary(samples), "samples": samples, "floor": summary(floor),
            "floor_samples": floor, "overlapping": summary(overlapping), "overlapping_samples": overlapping,
            "load": _load()}


def _floor_externals(world: World, count: int) -> list[tuple[tuple[str, str], str, int]]:
    """``count`` ExternalSecrets of the same shape whose paths no SecretIntent declares (the controller never
    looks at them), each with a first value in OpenBao: ((namespace, name), Vault path, its version)."""
    from chamberlain import wellknown as wk
    from chamberlain.values.markers import version_marker

    le = world.le
    out = []
    for k in range(count):
        i = 90_000 + k  # beyond any size seeded
        path = world.path(i)
        values = {"username": "svc_user", "password": f"floor-{k}-first"}
        version = world.vault.kv.write(le.MOUNT, path, values, cas=0)
        world.vault.kv.update_custom_metadata(le.MOUNT, path, {
            wk.VALUE_MARKER: version_marker(f"{le.MOUNT}/{path}", values), **world.policy_custom})
        body = world.fill(world.external_json, i)
        world.custom.create_namespaced_custom_object("external-secrets.io", "v1", world.namespace(i),
                                                     "externalsecrets", body)
        out.append(((world.namespace(i), world.name(i)), path, version))
    return out


def _wait_seen(watch: Any, keys: list[tuple[str, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with watch._cond:
        while any(not watch.current.get(key) for key in keys):
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"P3 floor: ESO did not materialize the floor's Secrets within {timeout:.0f}s")
            watch._cond.wait(min(left, 0.5))


def _wait_finished(child: Child, finished: int, timeout: float) -> None:
    """Until the controller finished ``finished`` runs (the child's count, not /metrics: at 10k intents a scrape
    costs the controller about a second of CPU): the next trigger meets an idle loop."""
    deadline = time.monotonic() + timeout
    while int(child.read().get("finished", 0)) < finished:
        if time.monotonic() > deadline:
            raise SystemExit(f"P3: run {finished} did not finish within {timeout:.0f}s\n{child.tail()}")
        time.sleep(0.05)


def _trigger(world: World, watch: Any, child: Child, i: int, reason: str, timeout: float) -> float:
    """The rotate annotation on intent ``i``; seconds until the watch sees its consumer Secret with a new marker."""
    from chamberlain import wellknown as wk

    key = (world.namespace(i), world.name(i))
    with watch._cond:
        old = watch.current.get(key, "")
    t0 = time.monotonic()
    world.custom.patch_namespaced_custom_object(
        "chamberlain.dev", "v1alpha1", world.ns, "secretintents", world.name(i),
        {"metadata": {"annotations": {wk.ANNOTATION_ROTATE: reason}}})
    return _changed(watch, key, old, t0 + timeout, child) - t0


def _changed(watch: Any, key: tuple[str, str], old: str, deadline: float, child: Child) -> float:
    """The monotonic time the watch first saw ``key`` with a marker other than ``old``."""
    with watch._cond:
        while True:
            marker = watch.current.get(key, "")
            if marker and marker != old:
                seen: float = watch.first_seen[(*key, marker)]
                return seen
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"P3: {key} did not change within the timeout\n{child.tail()}")
            watch._cond.wait(min(left, 0.5))


# ------------------------------------------------------------------------------------------- without a lab


def _snapshot() -> Any:
    """A tracemalloc snapshot of what the controller holds, the fakes' own allocations left out."""
    import tracemalloc

    return tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "*/kube/fake.py", all_frames=True),
        tracemalloc.Filter(False, "*/authority/fake.py", all_frames=True)])


def _attribution(since: Any, top: int = 25) -> dict[str, Any]:
    """What the controller holds (tracemalloc), and what it gained since the snapshot ``since`` (the steady
    window's start: a creep shows there, by line)."""
    snap = _snapshot()

    def short(name: str) -> str:
        for marker in ("site-packages/", "/src/", "/lib/python3"):
            if marker in name:
                return name.split(marker, 1)[1]
        return name

    total = sum(st.size for st in snap.statistics("filename"))
    return {"held_mib": round(total / 2**20, 1),
            "by_file": [{"where": short(st.traceback[0].filename), "mib": round(st.size / 2**20, 2)}
                        for st in snap.statistics("filename")[:top]],
            "by_line": [{"where": f"{short(st.traceback[0].filename)}:{st.traceback[0].lineno}",
                         "mib": round(st.size / 2**20, 2), "blocks": st.count}
                        for st in snap.statistics("lineno")[:top]],
            "window_growth_mib": round((total - sum(st.size for st in since.statistics("filename"))) / 2**20, 2),
            "window_growth_by_line": [{"where": f"{short(d.traceback[0].filename)}:{d.traceback[0].lineno}",
                                       "kib": round(d.size_diff / 2**10, 1), "blocks": d.count_diff}
                                      for d in snap.compare_to(since, "lineno")[:top]]}


def measure_fake(n: int, window: int, warmup: int = 30, trace: bool = False) -> dict[str, Any]:
    """The same controller (``wire`` with the watched SecretIntents, as ``run_from_cluster``) in this process over
    a FakeKube counting every call and a FakeKV, on a simulated clock: a tick per simulated second, the reflectors
    stepped before each tick (what their threads would have seen). What it gives: the requests the controller
    sends per second of steady state, at any size, in seconds of real time; not its memory (the fakes live in the
    process; bench_controller_memory.py attributes that) and not the server's behaviour."""
    from datetime import UTC, datetime

    sys.path.insert(0, str(ROOT / "src"))
    import bisect

    import _lab_env as le
    from chamberlain import wellknown as wk
    from chamberlain.authority.fake import FakeKV, FakeTransit
    from chamberlain.clock import FakeClock
    from chamberlain.controller.app import wire
    from chamberlain.controller.source import RESOURCES, ClusterSource
    from chamberlain.controller.watched import IntentObjects
    from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key, marker_key
    from chamberlain.kube.api import WatchEvent
    from chamberlain.kube.fake import FakeKube
    from chamberlain.values.markers import version_marker

    class Counting(FakeKube):
        """FakeKube counting calls; its change log is kept per kind, so a watch finds its events by bisection (the
        plain fake scans every change of every kind at each watch: quadratic over a long simulated window)."""

        PREFIXES = ("get_", "list_", "create_", "replace_", "patch_", "delete_", "annotate_", "watch_")

        def __init__(self) -> None:
            super().__init__()
            self.record_changes = False
            self.calls: Counter[str] = Counter()
            self.log: dict[tuple[str, ...], tuple[list[int], list[WatchEvent]]] = {}
            self.last_rv = 0

        def _changed(self, kind: Any, key: tuple[str, str, str, str, str], obj: Any) -> None:
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                rvs, events = self.log.setdefault(key[:4], ([], []))
                rv = int(obj["metadata"]["resourceVersion"])
                rvs.append(rv)
                events.append(WatchEvent(kind, {"metadata": dict(obj.get("metadata") or {}),
                                                **{k: v for k, v in obj.items() if k != "metadata"}}))
                self.last_rv = max(self.last_rv, rv)

        def _last_version(self) -> int:
            return self.last_rv

        def watch_custom_objects(self, resource: Any, namespace: str, resource_version: str, timeout_seconds: int,
                                 label: str | None = None) -> Any:
            self.calls["watch_custom_objects"] += 1
            rvs, events = self.log.get((resource.group, resource.version, resource.plural, namespace), ([], []))
            start = bisect.bisect_right(rvs, int(resource_version or 0))
            return iter([e for e in events[start:]
                         if label is None or label in ((e.object.get("metadata") or {}).get("labels") or {})])

        def __getattribute__(self, name: str) -> Any:
            attr = super().__getattribute__(name)
            if callable(attr) and name.startswith(Counting.PREFIXES):
                super().__getattribute__("calls")[name] += 1
            return attr

    class Session:
        def __init__(self, kv: Any) -> None:
            self.kv, self.session_generation, self.transit = kv, 0, FakeTransit()
            for env in (le.ENV, "_authority"):
                self.transit.ensure_key(TRANSIT_MOUNT, ledger_key(env), "ed25519")
            self.transit.ensure_key(TRANSIT_MOUNT, marker_key(le.ENV))

        def ensure_fresh(self) -> None:
            return None

    handle = le.LabHandle(Path("."), "https://vault.invalid:8200", Path("kubeconfig"), "", "")
    with tempfile.TemporaryDirectory(prefix="chamberlain-bench-watch-fake-") as tmp:
        template = _Template(handle, Path(tmp))
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    kube, kv = Counting(), FakeKV()
    kube.add_custom_object(RESOURCES["Platform"], template.platform_manifest)
    for m in template.policy_manifests:
        kube.add_custom_object(RESOURCES["RotationPolicy"], m)
    created = clock.now().isoformat()
    started = time.monotonic()
    for i in range(n):
        kube.add_custom_object(RESOURCES["SecretIntent"], template.fill(template.intent_json, i))
        path = template.path(i)
        values = {"username": "svc_user", "password": f"bench-{i}-0123456789abcdef0123456789"}
        version = kv.write(le.MOUNT, path, values, cas=0)
        kv.update_custom_metadata(le.MOUNT, path, {
            wk.AUTHORITY: wk.AUTHORITY_VAULT, wk.CREATED_BY: wk.CREATED_BY_CHAMBERLAIN, wk.CREATED_AT: created,
            wk.INTENT: World.name(i), wk.ENVIRONMENT: le.ENV, wk.ORIGIN: "generated", wk.VALUE_VERSION: str(version),
            wk.VALUE_MARKER: version_marker(f"{le.MOUNT}/{path}", values), **template.policy_custom})
    seeded = time.monotonic() - started
    objects = IntentObjects()
    if trace:
        import tracemalloc

        tracemalloc.start(6)  # frames enough to leave out whatever the fakes allocate (their store, copies)
    started = time.monotonic()
    source = ClusterSource(kube, template.ns, le.ENV, le.CLUSTER, clock, sinks={"SecretIntent": [objects]})
    built = source.sync(timeout=60)
    assert built.scope is not None and len(built.scope.placed) == n, (len(built.scope.placed) if built.scope else 0)
    controller = wire(built.scope, Session(kv), kube, clock, identity="bench", objects=objects)  # type: ignore[arg-type]

    def second() -> None:
        for r in source.reflectors.values():
            r.watch() if r.resource_version is not None else r.list()
        controller.tick()
        clock.advance(1)

    try:
        for _ in range(warmup):
            second()
        startup = time.monotonic() - started
        steady = _snapshot() if trace else None
        before = Counter(kube.calls)
        real = time.monotonic()
        for _ in range(window):
            second()
        real = time.monotonic() - real
    finally:
        stop = getattr(controller.parts.requests, "stop", None)
        if stop is not None:
            stop()
    held = _attribution(steady) if trace else None
    delta = Counter(kube.calls)
    delta.subtract(before)
    made = {k: v for k, v in sorted(delta.items()) if v and not k.startswith("watch_")}
    watches = sum(v for k, v in delta.items() if k.startswith("watch_"))
    return {"n": n, "seed_s": round(seeded, 1), "startup_s": round(startup, 1), "window_s": window,
            "real_s": round(real, 1), "requests": sum(made.values()),
            "req_per_s": round(sum(made.values()) / window, 3), "by_request": made,
            "watch_calls_note": f"{watches} watch calls in the fake (it ends each watch at once; the server holds "
                                "one open for ~240 s): not counted",
            "startup_by_request": {k: v for k, v in sorted(before.items()) if v}, "load": _load(),
            "tracemalloc": held}


# ------------------------------------------------------------------------------------------- report


def report(sizes: list[int], runs: list[dict[str, Any]], eso: dict[str, Any] | None, p3: dict[str, Any] | None,
           seeding: list[dict[str, Any]], smoke: bool) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from _figures import figure, growth

    top = runs[-1]
    full = not smoke and top["n"] >= 10_000
    max_login = 1 + int(top["lifetime_s"] // top["token_max_ttl_s"])
    figures = [
        figure("P5", f"controller peak RSS, {top['n']} intents (watch mode)", goal=f"<= {GOAL_RSS_MIB:.0f} MiB",
               measured=top["peak_rss_mib"], unit="MiB", floor=eso["peak_rss_mib"] if eso else None,
               floor_name="ESO controller, same count of ExternalSecrets" if eso else None,
               met=(top["peak_rss_mib"] <= GOAL_RSS_MIB) if full else None,
               note="VmHWM of `controller run --from-cluster`, start-up included; ratio = chamberlain / ESO"),
        figure("P5", f"controller API requests/s, {top['n']} intents, steady state",
               goal=f"<= {GOAL_REQ_S:g} /s", measured=top["req_per_s"], unit="req/s",
               floor=max(eso["req_per_s"], eso["refresh_req_per_s"]) if eso else None,
               floor_name="ESO controller, same count of ExternalSecrets (window, or its 1h refresh if more)"
               if eso else None,
               met=(top["req_per_s"] <= GOAL_REQ_S) if full else None,
               note=f"client-side count over {top['window_s']}s: " + ", ".join(
                   f"{k} {v}" for k, v in top["by_request"].items())),
        figure("P5", "authority logins per token lifetime", goal="<= 1 per token lifetime",
               measured=top["logins"], unit="logins", met=top["logins"] <= max_login,
               note=f"{top['logins']} logins in {top['lifetime_s']}s with a max TTL of {top['token_max_ttl_s']}s "
                    f"(at most {max_login} allowed)"),
        figure("P5", f"controller requests/s to the authority, {top['n']} intents, steady state", goal="(none)",
               measured=top.get("vault_req_per_s"), unit="req/s",
               note=f"chamberlain_vault_requests_total over {top['window_s']}s: the time trigger's metadata reads "
                    "(--metadata-reads-per-second, 20 by default) and token renewals"),
    ]
    if p3 is not None:
        figures.append(figure("P3", f"trigger -> consumer Secret p95, {top['n']} intents loaded",
                              goal=f"<= {GOAL_P3_P95:g} s", measured=p3["p95"], unit="s",
                              floor=p3["floor"]["p95"],
                              floor_name="raw: value written to OpenBao, ESO force-synced, same lab (p95)",
                              met=(p3["p95"] <= GOAL_P3_P95) if full else None,
                              note=f"rotate annotation PATCH -> Secret watch, one run at a time; {p3['rotations']} "
                                   f"rotations, p50 {p3['p50']}s, max {p3['max']}s; floor p50 "
                                   f"{p3['floor']['p50']}s; triggers 0.3 s after the previous Secret changed: p95 "
                                   f"{p3['overlapping']['p95']}s, p50 {p3['overlapping']['p50']}s"))
    series = [growth("P5", "controller peak RSS", "MiB", [r["n"] for r in runs], [r["peak_rss_mib"] for r in runs]),
              growth("P5", "controller start-up", "s", [r["n"] for r in runs], [r["startup_s"] for r in runs])]
    return {"figures": figures, "growth": series if len(runs) > 1 else [], "sizes": sizes, "chamberlain": runs,
            "eso": eso, "p3": p3, "seeding": seeding, "load": _load(), "cpus": os.cpu_count(),
            "goal": {"rss_mib": GOAL_RSS_MIB, "req_per_s": GOAL_REQ_S, "p3_p95_s": GOAL_P3_P95}}


def report_fake(runs: list[dict[str, Any]], smoke: bool) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from _figures import figure, growth

    top = runs[-1]
    full = not smoke and top["n"] >= 10_000
    figures = [figure(
        "P5", f"controller API requests/s, {top['n']} intents, steady state (fake cluster)",
        goal=f"<= {GOAL_REQ_S:g} /s", measured=top["req_per_s"], unit="req/s",
        met=(top["req_per_s"] <= GOAL_REQ_S) if full else None,
        note=f"--fake: FakeKube counting calls over {top['window_s']} simulated s (no lab); " + ", ".join(
            f"{k} {v}" for k, v in top["by_request"].items()))]
    series = [growth("P5", "controller start-up (fake cluster)", "s", [r["n"] for r in runs],
                     [r["startup_s"] for r in runs])] if len(runs) > 1 else []
    return {"figures": figures, "growth": series, "fake": runs, "load": _load(), "cpus": os.cpu_count(),
            "goal": {"req_per_s": GOAL_REQ_S}}


def table(r: dict[str, Any]) -> str:
    if "fake" in r:
        lines = [f"{'intents':>8} {'start-up s':>10} {'req/s':>7}  requests in the window (fake cluster)"]
        lines += [f"{c['n']:>8} {c['startup_s']:>10.1f} {c['req_per_s']:>7.3f}  {c['by_request']}" for c in r["fake"]]
        lines += [f"{f['id']} {f['name']}: {f['measured']} {f['unit']} (met {f['met']}; load {f['load']})"
                  for f in r["figures"]]
        return "\n".join(lines)
    lines = [f"{'intents':>8} {'start-up s':>10} {'peak MiB':>9} {'req/s':>7} {'logins':>6}  requests in the window"]
    for c in r["chamberlain"]:
        lines.append(f"{c['n']:>8} {c['startup_s']:>10.1f} {c['peak_rss_mib']:>9.1f} {c['req_per_s']:>7.3f} "
                     f"{c['logins']:>6}  {c['by_request']}")
    if r["eso"]:
        e = r["eso"]
        lines.append(f"ESO with {e['n']} ExternalSecrets: peak {e['peak_rss_mib']} MiB, {e['req_per_s']} req/s "
                     f"in the window, {e['requests_per_sync']} requests per sync = {e['refresh_req_per_s']} req/s "
                     f"over its 1h refresh (synced in {e['sync_s']}s)")
    for f in r["figures"]:
        lines.append(f"{f['id']} {f['name']}: {f['measured']} {f['unit']} (goal {f['goal']}; ratio {f['ratio']}; "
                     f"met {f['met']}; load {f['load']})")
    for g in r["growth"]:
        lines.append(f"growth {g['series']}: {g['values']} at {g['sizes']}, per item {g['per_item_growth']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child(Path(argv[1]), argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--sizes", default="1000,5000,10000", help="comma-separated SecretIntent counts")
    parser.add_argument("--window", type=float, default=120.0, help="steady-state window, seconds")
    parser.add_argument("--p3", type=int, default=30, help="P3 rotations at the largest size (0: none)")
    parser.add_argument("--token-ttl", type=int, default=60, help="the controller's authority token TTL (max 3x)")
    parser.add_argument("--no-eso", action="store_true", help="skip ESO (and P3, which needs ESO)")
    parser.add_argument("--smoke", action="store_true", help="50 intents, a 10 s window, 3 P3 rotations")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for start-up and ESO's sync")
    parser.add_argument("--trace", action="store_true", help="--fake: what the controller holds (tracemalloc)")
    parser.add_argument("--fake", action="store_true",
                        help="no lab: the request count over a FakeKube on a simulated clock (--window simulated s)")
    parser.add_argument("--scrape-every", type=float, default=15.0,
                        help="seconds between two scrapes of the controller's /metrics (a Prometheus stand-in)")
    parser.add_argument("--lab-dir", type=Path, help="reuse the dev lab running there (left running)")
    parser.add_argument("--port-offset", type=int, default=-5950, help="port offset of the lab this starts")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.window, args.p3 = "50", 10.0, min(args.p3, 3)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT / "src"))
    if args.fake:
        window = int(args.window) if args.window != 120.0 else 420  # a consumer-look period (300 s) included
        result = report_fake([measure_fake(n, window, trace=args.trace) for n in sizes], args.smoke)
        if args.output == "json":
            json.dump(result, sys.stdout, indent=2, sort_keys=True)
            sys.stdout.write("\n")
        else:
            print(table(result))
        return 0 if all(f["met"] is not False for f in result["figures"]) else 1
    import _lab_env as le

    runs: list[dict[str, Any]] = []
    seeding: list[dict[str, Any]] = []
    eso: dict[str, Any] | None = None
    p3: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="chamberlain-bench-watch-") as tmp, \
            le.running_lab(args.lab_dir, args.port_offset) as handle:
        workdir = Path(tmp)
        world = World(handle, workdir, args.token_ttl)
        try:
            world.prepare()
            statused = 0  # intents whose status an earlier size's controller wrote
            for n in sizes:
                seeding.append({"n": n, **world.seed(n)})
                last = n == sizes[-1]
                if last and not args.no_eso:
                    eso = measure_eso(world, n, args.window, args.timeout)
                child, result = measure_chamberlain(world, n, args.window, workdir, args.timeout,
                                                    args.scrape_every, statused)
                statused = n
                try:
                    if last and not args.no_eso and args.p3:
                        p3 = measure_p3(world, child, args.p3)
                        result["peak_rss_mib_after_p3"] = round(child.peak_mib(), 1)
                finally:
                    child.stop()
                runs.append(result)
        finally:
            world.close()
    out = report(sizes, runs, eso, p3, seeding, args.smoke)
    if args.output == "json":
        json.dump(out, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(table(out))
    met = [f["met"] for f in out["figures"] if f["met"] is not None]
    return 0 if all(met) else 1


if __name__ == "__main__":
    raise SystemExit(main())
