"""Shared set-up of the lab benchmarks (bench_propagation, bench_batch_rotation): a lab, a synthetic intent
repository, its consumers rendered by chamberlain and materialized by the real ESO, and a metadata-only watch on
the consumer Secrets that timestamps every marker change.

Not a benchmark itself (the leading underscore keeps it out of ``bench_*``). What it builds:

* a lab in dev mode (``chamberlain lab up --dev``) on ports shifted by ``--port-offset`` in a temporary directory,
  taken down again (``lab down --purge``) at the end; or an already running lab given with ``--lab-dir``, which
  is reused and left running;
* a repository: one Platform (environment ``bench``, cluster ``lab``, the lab Vault as authority, runtime mount
  ``secret``), one time-based policy (90 d, so the time trigger never fires during a run), and runtime intents
  ``s-NNNN`` (``source.generate``: a fixed user name and a 32-character password), each with one consumer
  Secret of the same name that restarts one Deployment; ``per_workload`` consecutive intents feed the same
  Deployment; workloads are spread over ``namespaces`` namespaces;
* per consumer namespace a SecretStore exactly as :func:`chamberlain.render.eso.secret_store` renders it, except
  for the auth block (token auth through a Secret holding the dev root token: the lab has no kubelet, and
  Kubernetes auth is not what is measured) and ExternalSecrets exactly as
  :func:`chamberlain.render.eso.external_secret` renders them (``version_marker=True``: the
  ``_chamberlain-custom-metadata`` entry with ``metadataPolicy: Fetch`` and the ``chamberlain.dev/version-marker``
  template annotation); Deployments as plain objects (nothing runs them: a restart is a pod-template patch);
* Vault: each secret's first version and the custom_metadata the provision workflow's *record* step writes
  (``authority``, ``created-by``, ``created-at``, ``value-marker``, ``value-version``, ``policy.*``), without the
  ledger step (its per-secret ledger scan would make seeding 500 secrets quadratic, and seeding is not measured).

The root token is read from the lab's 0600 file and never printed.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import hvac  # noqa: E402
import kubernetes  # noqa: E402

from chamberlain import wellknown as wk  # noqa: E402
from chamberlain.authority.kv import MetadataPatch, update_metadata, write_and_custom  # noqa: E402
from chamberlain.authority.vault import VaultClient, client_with_token  # noqa: E402
from chamberlain.clock import SystemClock  # noqa: E402
from chamberlain.controller.loop import Scope, scope_of  # noqa: E402
from chamberlain.handover import metadata as md  # noqa: E402
from chamberlain.intent.loader import Repository  # noqa: E402
from chamberlain.intent.paths import (  # noqa: E402
    LEDGER_HEAD,
    LEDGER_PREFIX,
    PENDING_PREFIX,
    RUNS_PREFIX,
    effective_policy,
)
from chamberlain.kube.client import KubeClient  # noqa: E402
from chamberlain.lab import lab as lab_mod  # noqa: E402
from chamberlain.render import eso, naming  # noqa: E402
from chamberlain.render.topology import build_topology  # noqa: E402
from chamberlain.service import load_valid  # noqa: E402
from chamberlain.settings import Settings  # noqa: E402
from chamberlain.values.generate import generate_values  # noqa: E402
from chamberlain.values.markers import version_marker  # noqa: E402

ENV = "bench"
CLUSTER = "lab"
MOUNT = "secret"
TOKEN_SECRET = "bench-vault-token"
FIELD_MANAGER = "chamberlain-bench"
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
PARTIAL_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------ the lab


@dataclass
class LabHandle:
    lab_dir: Path
    vault_addr: str
    kubeconfig: Path
    ca_pem: str
    root_token: str = field(repr=False)

    def vault(self) -> VaultClient:
        return client_with_token(self.vault_addr, None, self.root_token, clock=SystemClock())

    def hvac(self) -> Any:
        return hvac.Client(url=self.vault_addr, token=self.root_token)

    def kube(self) -> KubeClient:
        return KubeClient.from_kubeconfig(self.kubeconfig, clock=SystemClock())

    def api_client(self) -> Any:
        return kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig))


def lab_host() -> lab_mod.LabHost:
    """The machine the lab runs on, from this process's environment (a benchmark is an entry point)."""
    return lab_mod.LabHost.from_settings(Settings.from_environ(os.environ, Path.home()), SystemClock())


def ensure_transit_keys(client: Any) -> None:
    """What ``authority configure`` creates for the signed ledger and keyed markers, done here with the dev
    server's root token: the transit mount, the ledger's ed25519 keys and the environment's marker HMAC key.
    Creating an existing key is a no-op, so a reused lab is fine."""
    from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key, marker_key

    if f"{TRANSIT_MOUNT}/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
    for env in ("_authority", ENV):
        client.secrets.transit.create_key(name=ledger_key(env), key_type="ed25519", mount_point=TRANSIT_MOUNT)
    client.secrets.transit.create_key(name=marker_key(ENV), mount_point=TRANSIT_MOUNT)


@contextmanager
def running_lab(lab_dir: Path | None, port_offset: int) -> Iterator[LabHandle]:
    """A lab in dev mode: the one running in ``lab_dir`` (reused, left running), else a fresh one on shifted
    ports in a temporary directory, stopped and purged on exit whatever happens."""
    host = lab_host()
    own = lab_dir is None or not lab_mod.healthy(lab_mod.status(lab_dir, host))
    directory = lab_dir or Path(tempfile.mkdtemp(prefix="chamberlain-bench-lab-"))
    try:
        if own:
            log(f"starting a lab in {directory} (port offset {port_offset})")
            started = time.monotonic()
            config = lab_mod.LabConfig(lab_dir=directory, host=host, ports=lab_mod.Ports().shifted(port_offset),
                                       dev=True)
            lab_mod.up(config, progress=lambda m: None)
            log(f"lab up in {time.monotonic() - started:.1f}s")
        cfg = lab_mod.LabConfig.load(directory, host)
        if not cfg.dev:
            raise SystemExit(f"{directory}: the benchmarks need a lab in dev mode (lab up --dev)")
        running = lab_mod.Lab(cfg)
        token = running.authority.root_token_file.read_text(encoding="utf-8").strip()
        handle = LabHandle(directory, running.authority.address, running.kubeconfig, running.pki.ca_pem, token)
        ensure_transit_keys(handle.hvac())
        yield handle
    finally:
        if own:
            log("taking the lab down")
            lab_mod.down(directory, host, progress=lambda m: None, purge=True)
            shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- repository

PLATFORM = """\
apiVersion: chamberlain.dev/v1alpha1
kind: Platform
metadata: {{name: bench}}
spec:
  environments:
    - {{name: {env}, clusters: [{cluster}]}}
  authority:
    address: {address}
    mounts: {{runtime: {mount}, internalData: platform-data, internalConfig: platform-config}}
  rootOfTrust:
    ageRecipients: [{recipient}]
  defaults: {{rotationPolicy: standard}}
  # the benchmarks rotate a few secrets round-robin, back to back: a trigger rate limit of 1 s, not the default 1m
  limits: {{triggerInterval: 1s}}
---
apiVersion: chamberlain.dev/v1alpha1
kind: RotationPolicy
metadata: {{name: standard}}
spec: {{type: time-based, ttl: 90d, rotateBefore: 7d, maxOverlap: 1h, revokeOld: false, failureStrategy: retry}}
"""


@dataclass(frozen=True)
class Shape:
    secrets: int
    per_workload: int = 10
    namespaces: int = 10
    prefix: str = "s"

    def name(self, i: int) -> str:
        return f"{self.prefix}-{i:04d}"

    def workload(self, i: int) -> tuple[str, str]:
        w = i // self.per_workload
        return f"bench-{w % self.namespaces:02d}", f"{self.prefix}-app-{w:03d}"


def write_repository(root: Path, address: str, shapes: list[Shape]) -> None:
    (root / "intents").mkdir(parents=True)
    (root / "platform.yaml").write_text(PLATFORM.format(env=ENV, cluster=CLUSTER, address=address, mount=MOUNT,
                                                        recipient=RECIPIENT))
    for shape in shapes:
        docs = []
        for i in range(shape.secrets):
            ns, workload = shape.workload(i)
            docs.append(
                "apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\n"
                f"metadata: {{name: {shape.name(i)}}}\nspec:\n  owner: team-{i % 7}\n"
                f"  purpose: Benchmark credential {i}\n  classification: runtime\n"
                "  source:\n    generate:\n"
                "      username: {type: fixed-name, name: svc_user}\n"
                "      password: {type: password, length: 32}\n"
                "  rotation: {policy: standard}\n"
                f"  consumers:\n    - namespace: {ns}\n      secretName: {shape.name(i)}\n"
                f"      restart: [{{kind: Deployment, name: {workload}}}]\n"
            )
        (root / "intents" / f"{shape.prefix}.yaml").write_text("---\n".join(docs))


@dataclass
class World:
    """Everything set up: the repository, the controller's scope, the consumers, the clients."""

    handle: LabHandle
    repo: Repository
    scope: Scope
    shapes: list[Shape]
    kube: KubeClient
    vault: VaultClient
    api: Any  # kubernetes ApiClient (plain client, for the floors and the watch)
    markers: dict[str, str] = field(default_factory=dict)  # intent -> current value-marker

    def path(self, secret: str) -> str:
        return self.scope.placed[secret].vault.path

    def custom(self, secret: str) -> dict[str, str]:
        """The secret's custom_metadata as Vault holds it now."""
        meta = self.vault.kv.read_metadata(MOUNT, self.path(secret))
        return dict(meta.custom) if meta is not None else {}

    def consumer(self, secret: str) -> tuple[str, str]:
        c = self.scope.placed[secret].intent.spec.consumers[0]
        return c.namespace, c.secret_name

    def workloads(self) -> list[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for p in self.scope.placed.values():
            for c in p.intent.spec.consumers:
                out.update((c.namespace, w.name) for w in c.restart)
        return sorted(out)

    def close(self) -> None:
        self.kube.close()
        self.api.close()


def _store_manifest(world_platform: Any, ns: str, ca_pem: str) -> dict[str, Any]:
    store = eso.secret_store(
        world_platform, name=naming.reader_store(ENV, MOUNT), ns=ns, mount=MOUNT, cluster=CLUSTER,
        role=naming.reader_policy(ENV, CLUSTER, ns), account=naming.reader_service_account(ENV),
        labels={**naming.common_labels(), wk.LABEL_ENVIRONMENT: ENV, wk.LABEL_ROLE: naming.READER_ROLE},
    )
    vault = store["spec"]["provider"]["vault"]
    # The one deviation from the renderer: token auth (the dev root token in a Secret) instead of Kubernetes auth.
    vault["auth"] = {"tokenSecretRef": {"name": TOKEN_SECRET, "key": "token"}}
    vault["caBundle"] = base64.b64encode(ca_pem.encode()).decode()  # unused over http, kept as rendered for https
    store["metadata"]["annotations"] = {}
    return store


def _deployment(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]}}},
    }


SEED_THREADS = 8  # seeding and applying thousands of objects one request after the other is set-up time wasted


def parallel(fn: Any, items: Sequence[Any], threads: int = SEED_THREADS) -> list[Any]:
    """``fn`` over ``items`` on a few threads (Vault and the API server serve requests in parallel); results in
    order; the first error is raised. The first item goes alone (a client's first call of a kind discovers it)."""
    from concurrent.futures import ThreadPoolExecutor

    if not items:
        return []
    first = fn(items[0])
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-setup") as pool:
        return [first, *pool.map(fn, items[1:])]


def seed(kv: Any, scope: Scope, repo: Repository, names: list[str]) -> dict[str, str]:
    """First version + the provision workflow's record-step metadata for each secret (two requests each, on a few
    threads: linear in the number of secrets); returns the markers."""
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    now = datetime.now(UTC).isoformat(timespec="seconds")

    def one(name: str) -> str:
        placed = scope.placed[name]
        generators = placed.intent.spec.source.generate
        assert generators is not None
        values = generate_values(generators)
        version = kv.write(placed.vault.mount, placed.vault.path, values, cas=0)
        marker = version_marker(placed.vault.full, values)
        resolved = effective_policy(scope.platform, policies, placed.intent)
        kv.update_custom_metadata(placed.vault.mount, placed.vault.path, {
            wk.AUTHORITY: wk.AUTHORITY_VAULT, wk.CREATED_BY: wk.CREATED_BY_CHAMBERLAIN, wk.CREATED_AT: now,
            wk.INTENT: name, wk.ENVIRONMENT: placed.environment, wk.ORIGIN: "generated",
            wk.VALUE_VERSION: str(version), wk.VALUE_MARKER: marker,
            **md.policy_metadata(resolved[0] if resolved else None, resolved[1] if resolved else None),
        })
        values.clear()
        return marker

    return dict(zip(names, parallel(one, names), strict=True))


def build_world(handle: LabHandle, workdir: Path, shapes: list[Shape], *, timeout: float = 600.0) -> World:
    """Repository, Vault seed, SecretStores, ExternalSecrets, Deployments; returns once ESO materialized every
    consumer Secret with its first marker."""
    root = workdir / "repo"
    write_repository(root, handle.vault_addr, shapes)
    repo = load_valid(root)
    platform = repo.platform
    assert platform is not None
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    scope = scope_of(platform, intents, ENV, CLUSTER)
    world = World(handle, repo, scope, shapes, handle.kube(), handle.vault(), handle.api_client())
    started = time.monotonic()
    world.markers = seed(world.vault.kv, scope, repo, sorted(scope.placed))
    log(f"seeded {len(world.markers)} secrets in Vault in {time.monotonic() - started:.1f}s")

    unit = next(u for u in build_topology(platform, [p.obj for p in repo.policies], list(intents.values())).units
                if u.environment == ENV and u.cluster == CLUSTER)
    started = time.monotonic()
    watch = SecretWatch(world.api)
    watch.start()
    try:
        for ns in sorted(unit.reads):
            world.kube.ensure_namespace(ns)
            if world.kube.get_secret(ns, TOKEN_SECRET) is None:
                world.kube.create_secret(ns, TOKEN_SECRET, {"token": handle.root_token})
            world.kube.apply_manifest(_store_manifest(platform, ns, handle.ca_pem), FIELD_MANAGER)
        parallel(lambda w: world.kube.apply_manifest(_deployment(*w), FIELD_MANAGER), world.workloads())
        install_intents(world)
        applied = time.monotonic()
        manifests = [eso.external_secret(read, ENV, version_marker=True) for _ns, reads in sorted(unit.reads.items())
                     for read in sorted(reads, key=lambda r: r.consumer.secret_name)]
        parallel(lambda m: world.kube.apply_manifest(m, FIELD_MANAGER), manifests)
        log(f"applied {len(intents)} SecretIntents, {sum(len(r) for r in unit.reads.values())} ExternalSecrets, "
            f"{len(unit.reads)} SecretStores and {len(world.workloads())} Deployments in "
            f"{time.monotonic() - started:.1f}s")
        expected = {world.consumer(n): m for n, m in world.markers.items()}
        seen = watch.wait(expected, timeout)
        missing = sorted(set(expected) - set(seen))
        if missing:
            raise SystemExit(f"ESO did not materialize {len(missing)} consumer Secrets within {timeout:.0f}s "
                             f"(first: {missing[:3]})")
        log(f"ESO materialized {len(expected)} Secrets in {max(seen.values()) - applied:.1f}s after the last "
            "ExternalSecret was applied")
    finally:
        watch.stop()
    return world


# ------------------------------------------------------------------------------------------------- the watch


class SecretWatch:
    """A metadata-only watch (``PartialObjectMetadata``: no value crosses the wire) on every Secret carrying the
    ``chamberlain.dev/intent`` label, in every namespace. Records the monotonic time at which each (namespace,
    name) was first seen with each version-marker value."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self._cond = threading.Condition()
        self.first_seen: dict[tuple[str, str, str], float] = {}  # (ns, name, marker) -> monotonic
        self.current: dict[tuple[str, str], str] = {}
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-secret-watch", daemon=True)
        self._resp: Any = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise SystemExit("the Secret watch did not start")

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:
                resp.release_conn()
        self._thread.join(5)

    def _record(self, obj: Mapping[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        marker = str((meta.get("annotations") or {}).get(wk.ANNOTATION_VERSION_MARKER, ""))
        with self._cond:
            self.current[key] = marker
            self.first_seen.setdefault((*key, marker), now)
            self._cond.notify_all()

    def _run(self) -> None:
        core = kubernetes.client.CoreV1Api(self._api)
        selector = wk.LABEL_INTENT
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    resp = core.list_secret_for_all_namespaces(label_selector=selector, _preload_content=False,
                                                               _headers={"Accept": PARTIAL_METADATA_LIST})
                    listing = json.loads(resp.data)  # type: ignore[attr-defined]
                    now = time.monotonic()
                    for item in listing.get("items") or []:
                        self._record(item, now)
                    rv = listing["metadata"]["resourceVersion"]
                    self._ready.set()
                self._resp = core.list_secret_for_all_namespaces(
                    label_selector=selector, watch=True, resource_version=rv, allow_watch_bookmarks=True,
                    timeout_seconds=300, _preload_content=False, _headers={"Accept": PARTIAL_METADATA})
                buf = b""
                for chunk in self._resp.stream(4096, decode_content=True):
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if not line.strip():
                            continue
                        now = time.monotonic()
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            rv = ""  # expired resourceVersion: list again
                            break
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self.events += 1
                            self._record(obj, now)
                    if self._stop.is_set():
                        return
            except Exception:
                if self._stop.is_set():
                    return
                time.sleep(0.2)

    def seen(self, key: tuple[str, str], marker: str) -> float | None:
        with self._cond:
            return self.first_seen.get((*key, marker))

    def wait(self, expected: Mapping[tuple[str, str], str], timeout: float) -> dict[tuple[str, str], float]:
        """Block until every key carries its expected marker (or ``timeout``); the first time each was seen."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = {k: self.first_seen[(*k, m)] for k, m in expected.items() if (*k, m) in self.first_seen}
                left = deadline - time.monotonic()
                if len(got) == len(expected) or left <= 0:
                    return got
                self._cond.wait(min(left, 1.0))


# ------------------------------------------------------------------------------------------------ controller


class EventLog:
    """The controller's :class:`~chamberlain.controller.loop.Logger`, keeping (monotonic time, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def info(self, event: str, **kw: Any) -> None:
        with self._lock:
            self.lines.append((time.monotonic(), event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.info(event, level="warning", **kw)

    def times(self, event: str, **match: Any) -> list[float]:
        with self._lock:
            return [t for t, e, kw in self.lines if e == event and all(kw.get(k) == v for k, v in match.items())]

    def first_per_run(self, event: str, stages: Collection[str]) -> list[float]:
        """Per run, the first time ``event`` was logged at one of ``stages`` (the restart step saves the step
        after it: its run shows up at ``done`` or ``revoke-wait``, and again at ``done`` once finalized)."""
        first: dict[Any, float] = {}
        with self._lock:
            for t, e, kw in self.lines:
                if e == event and kw.get("stage") in stages:
                    first.setdefault(kw.get("run"), t)
        return list(first.values())

    def warnings(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(e, kw) for _, e, kw in self.lines if kw.get("level") == "warning"]


def _path_class(path: str) -> str:
    for prefix, label in ((LEDGER_HEAD, "ledger head"), (LEDGER_PREFIX, "ledger entries"),
                          (RUNS_PREFIX, "run record"), (PENDING_PREFIX, "staging")):
        if path.startswith(prefix):
            return label
    return "secret"


class TimedKV:
    """The controller's KV, counted and timed per (operation, what the path is): where the Vault time goes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[tuple[str, str]] = Counter()
        self.seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self._lock = threading.Lock()

    def _timed(self, op: str, path: str, fn: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            key = (op, _path_class(path))
            with self._lock:
                self.calls[key] += 1
                self.seconds[key] += time.perf_counter() - started

    def read(self, mount: str, path: str, version: int | None = None) -> Any:
        return self._timed("read", path, lambda: self.inner.read(mount, path, version))

    def write(self, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        return int(self._timed("write", path, lambda: self.inner.write(mount, path, data, cas)))

    def write_reporting_custom(self, mount: str, path: str, data: Mapping[str, str],
                               cas: int) -> tuple[int, Mapping[str, str] | None]:
        result: tuple[int, Mapping[str, str] | None] = self._timed(
            "write", path, lambda: write_and_custom(self.inner, mount, path, data, cas))
        return result

    def read_metadata(self, mount: str, path: str) -> Any:
        return self._timed("read_metadata", path, lambda: self.inner.read_metadata(mount, path))

    def update_custom_metadata(self, mount: str, path: str, custom: Mapping[str, str]) -> None:
        self._timed("update_custom_metadata", path, lambda: self.inner.update_custom_metadata(mount, path, custom))

    def patch_custom_metadata(self, mount: str, path: str, update: Mapping[str, str],
                              known: Mapping[str, str]) -> None:
        """Keeps the PATCH of the KV it wraps (a wrapper without it would turn every patch into read + write)."""
        operation = "patch_custom_metadata" if isinstance(self.inner, MetadataPatch) else "update_custom_metadata"
        self._timed(operation, path, lambda: update_metadata(self.inner, mount, path, update, known))

    def list(self, mount: str, prefix: str) -> list[str]:
        return list(self._timed("list", prefix, lambda: self.inner.list(mount, prefix)))

    def destroy(self, mount: str, path: str, versions: Sequence[int]) -> None:
        self._timed("destroy", path, lambda: self.inner.destroy(mount, path, versions))

    def table(self) -> builtins.list[dict[str, Any]]:
        with self._lock:
            return [{"operation": op, "path": cls, "calls": n, "seconds": round(self.seconds[(op, cls)], 3)}
                    for (op, cls), n in sorted(self.calls.items(), key=lambda kv: -self.seconds[kv[0]])]


class TimedKube:
    """The controller's KubeClient, counting and timing every call by method name."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return attr(*args, **kw)
            finally:
                with self._lock:
                    self.calls[name] += 1
                    self.seconds[name] += time.perf_counter() - started

        return call

    def table(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"operation": op, "calls": n, "seconds": round(self.seconds[op], 3)}
                    for op, n in sorted(self.calls.items(), key=lambda kv: -self.seconds[kv[0]])]


@dataclass
class Wiring:
    controller: Any
    kv: TimedKV
    kube: TimedKube
    log: EventLog
    notes: list[str]


def install_intents(world: World) -> None:
    """chamberlain's CRDs, and every SecretIntent as a custom resource in the controller namespace (what the
    annotation trigger lists each tick)."""
    from chamberlain.render.crds import crd, crd_kinds
    from chamberlain.render.layout import intent_manifest

    platform = world.scope.platform
    ns = platform.spec.controller.namespace
    for kind in crd_kinds():
        manifest = crd(kind)
        world.kube.apply_manifest(manifest, FIELD_MANAGER)
        world.kube.wait_crd_established(manifest["metadata"]["name"])
    world.kube.ensure_namespace(ns)
    parallel(lambda loaded: world.kube.apply_manifest(intent_manifest(loaded.obj, ns), FIELD_MANAGER),
             world.repo.intents)


class _Session:
    """A VaultClient seen through the benchmark's TimedKV (what ``controller.app.wire`` takes as its session)."""

    def __init__(self, client: VaultClient, kv: Any) -> None:
        self._client, self._kv = client, kv

    @property
    def kv(self) -> Any:
        return self._kv

    @property
    def session_generation(self) -> int:
        return int(self._client.session_generation)

    @property
    def transit(self) -> Any:
        return self._client.transit

    def ensure_fresh(self) -> None:
        self._client.ensure_fresh()

    @property
    def pki(self) -> Any:
        return self._client.pki


def make_controller(world: World, scope: Scope, *, propagation_timeout: float = 120.0,
                    evaluate_every: float = 30.0, identity: str | None = None, **options: Any) -> Wiring:
    """The Controller as ``chamberlain controller run --vault-token-file`` builds it: through
    ``chamberlain.controller.app.wire``, as the CLI does.
    SystemClock, the default poll. Vault and Kubernetes are wrapped (TimedKV, TimedKube) so the benchmark can
    say where the time goes. ``options``: further ControllerConfig fields (``keep_finished`` for a batch larger than
    the 1,000 finished runs a controller remembers by default)."""
    from chamberlain.clock import SystemClock
    from chamberlain.controller.app import wire

    client = world.handle.vault()
    timed_kv = TimedKV(client.kv)
    kube = TimedKube(world.handle.kube())
    clock = SystemClock()
    log = EventLog()
    identity = identity or f"bench-{os.getpid()}"  # two controllers of one benchmark need two
    # ``wire`` is what ``controller run`` calls.
    controller = wire(scope, _Session(client, timed_kv), kube, clock, identity=identity, log=log,
                      propagation_timeout=propagation_timeout, evaluate_every=evaluate_every, **options)
    return Wiring(controller, timed_kv, kube, log, ["wired by chamberlain.controller.app.wire"])


# ------------------------------------------------------------------------------------------------- helpers


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": float(len(values)), "p50": statistics.median(values), "p95": percentile(values, 0.95),
            "max": max(values), "min": min(values)}


def eso_concurrency() -> str:
    """ESO's ``--concurrent`` and ``--client-qps`` as the lab starts it (unset: ESO's defaults, 1 and 50)."""
    from chamberlain.lab import servers

    source = Path(servers.__file__).read_text(encoding="utf-8")
    out = []
    for flag, default in (("--concurrent", "1 reconcile at a time"), ("--client-qps", "50 API requests/s")):
        lines = [ln.strip().strip('",') for ln in source.splitlines() if flag in ln]
        out.append(lines[0] if lines else f"{flag} unset (ESO default: {default})")
    return "ESO " + ", ".join(out)


def eso_flags(lab_dir: Path) -> dict[str, str]:
    """The flags the lab's ESO process runs with now (``--concurrent``, ``--client-qps``, ...), from its command
    line; empty when it is not running."""
    info = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host())).eso.running()
    if info is None:
        return {}
    try:
        argv = Path(f"/proc/{info.pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return {}
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def cpu_seconds(lab_dir: Path) -> dict[str, float]:
    """CPU seconds (user + system) each lab process has used so far, and this process (a benchmark runs the
    controller in it). Two snapshots around a phase say which process the machine's CPUs worked for."""
    lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host()))
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, server in lab.servers().items():
        info = server.running()
        if info is None:
            continue
        try:  # fields after the command's closing parenthesis; utime and stime are the 12th and 13th of them
            fields = Path(f"/proc/{info.pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except (OSError, UnicodeDecodeError):
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    own = os.times()
    out["benchmark process (controller, watch)"] = own.user + own.system
    return out


def cpu_used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Per process, the CPU seconds between two :func:`cpu_seconds` snapshots, the busiest first."""
    used = {name: round(after[name] - before.get(name, 0.0), 1) for name in after}
    return dict(sorted(used.items(), key=lambda item: -item[1]))


def restart_eso(lab_dir: Path, concurrent: int | None) -> None:
    """Restart the lab's ESO with ``--concurrent=N`` (None: as the lab starts it), waiting until it is healthy. The
    floor and the controller then run against the same ESO."""
    eso_server = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host())).eso
    spawn = eso_server._spawn

    def with_concurrency(argv: list[str], env: Any = None, **kw: Any) -> Any:
        if concurrent is not None:
            argv = [a for a in argv if not a.startswith("--concurrent=")] + [f"--concurrent={concurrent}"]
        return spawn(argv, env, **kw)

    eso_server._spawn = with_concurrency  # type: ignore[method-assign]
    eso_server.stop()
    eso_server.wait(eso_server.start())
    log(f"ESO restarted with {eso_flags(lab_dir)}")


def cpu_count() -> int:
    return os.cpu_count() or 1


__all__ = ["CLUSTER", "ENV", "MOUNT", "EventLog", "LabHandle", "SecretWatch", "Shape", "TimedKV", "TimedKube",
           "Wiring", "World", "build_world", "cpu_count", "cpu_seconds", "cpu_used", "eso_concurrency", "eso_flags",
           "log", "make_controller", "parallel", "percentile", "restart_eso", "running_lab", "scope_of", "seed",
           "summary"]
