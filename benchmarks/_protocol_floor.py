"""P4's second floor: chamberlain's own rotation protocol replayed by plain clients (hvac, kubernetes), with no
chamberlain code in the timed part.

The naive floor (``bench_batch_rotation.floor``) makes the writes a rotation cannot do without: the new value and
its metadata, one force-sync per secret, one patch per workload. chamberlain makes many more requests per rotation,
and they are its guarantees: a crash-resume save of the run record at every persisted step (the draw's marker is
saved before its promote write, so a crash after the write is recognised), a hash-chained and signed ledger entry, a
RotationRun object and an Event a user can ``kubectl get``, a read of each consumer Secret to prove it carries the
new version. This floor sends exactly that list of requests (``bench_rotation_vault_calls.minimum()``, keep-old
and target-less, as the batch's rotations are, plus the Kubernetes calls the batch counts), with bodies of the same
size, and nothing else: no decisions, no models, no retries, no bookkeeping. It is scheduled as the controller
schedules them (``controller/loop.py``):

- eight workers take every run to *promoted* (its force-sync included), then poll each consumer Secret until it
  carries the new marker and save *propagated*, then roll the workloads (a read and a patch each, side by side),
  then end each run; the ledger entries go through one lane as group commits of whatever waits, as the shared
  ledger's do, while the other workers go on;
- the RotationRun object, its status and the Event are sent from background threads (two for the objects, one for
  Events, as ``controller.resources.BackgroundPublisher`` and ``controller.batch.BackgroundEvents``), and what is
  still queued when the last run ended is drained after the clock stops, as the benchmark does for the controller.
  The controller's Events at the end of a run (queued at the end of its tick) are not replayed.

It splits the ratio to the naive floor in two, both measured:

- protocol floor / naive floor: what the protocol's requests cost, made as cheaply as a client can;
- controller / protocol floor: what chamberlain's code adds around the same requests.

A read of a path that does not exist, or of a destroyed version, is one request here and in chamberlain's KV adapter
(which tells the two apart from the 404's body).

A generated value is kept in memory from the draw to the promote write (``workflow.pending_home``): the staging
path (its version read twice, its write and its destroy), which a rotator with a target or an import still goes
through, is not part of this batch's protocol since the fifteenth pass.

The run records and ledger chain it writes live under ``_chamberlain/bench-floor/`` (the
controller's own paths stay untouched); the real secrets get a new version each, as in the naive floor.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

import hvac
import hvac.exceptions
import kubernetes

import _lab_env as le
from chamberlain import wellknown as wk
from chamberlain.controller.resources import GROUP, KIND, PLURAL, VERSION
from chamberlain.intent.paths import LEDGER_KEY_PREFIX, TRANSIT_MOUNT, marker_key
from chamberlain.values.generate import generate_values

WORKERS = 8  # the controller's (chamberlain.controller.app.wire)
PREFIX = "_chamberlain/bench-floor"
FLOOR_LABEL = "bench.chamberlain.dev/floor"  # on the RotationRun objects this makes, removed after the run
BATCH_CHUNK = 1000  # secrets per batch record (about 300 KB)
LEASE_CHUNK = 25  # secrets per worker's lease record (chunk-leases)
POLL_FIRST, POLL_MAX = 0.05, 0.25  # propagation.sync.wait_in_sync's pauses between looks at a consumer Secret
# Parts of the protocol a variant may leave out (``--protocol-without``), to price a change before making it:
PARTS = {
    "run-saves": "the three intermediate run-record saves (tested, propagated, done); the lease and the "
                 "final save stay",
    "run-objects": "the RotationRun object and its status patch",
    "events": "the Event per run",
    "secret-reads": "the read of each consumer Secret (its marker)",
    # a design not built (benchmarks/README.md, twentieth pass): what a batch lease would save
    "run-records": "every per-secret run-record write (the lease, every save; the read at start stays, as "
                   "`chamberlain rotate` leases there); instead batch records (1,000 secrets each) leasing every "
                   "secret with its draw's marker, written after every draw and before any promote (a barrier), "
                   "after the propagate pass (the fence before restarts) and at the end",
    "chunk-leases": "as run-records, but pipelined: each worker leases a chunk of 25 secrets with one record "
                    "(after drawing them, before promoting them), and the fence and the end rewrite each chunk's "
                    "record",
    "ledger-entries": "the ledger entry per rotation; instead one entry per batch listing its rotations",
}


def _answer(resp: Any) -> Any:
    """The decoded answer of a call made with ``_preload_content=False`` (as chamberlain's kube client reads them:
    JSON, no models), its connection handed back to the pool only once the body is read."""
    try:
        return json.loads(resp.data)
    finally:
        resp.release_conn()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Clients(threading.local):
    """The hvac client the current task holds: one per worker (a requests Session is not meant to be shared across
    threads), made and connected before the clock starts, as the controller's are after its warm-up tick."""

    vault: hvac.Client


class ProtocolFloor:
    def __init__(self, world: le.World, watch: le.SecretWatch, names: list[str],
                 without: frozenset[str] = frozenset()) -> None:
        self.world, self.watch, self.names = world, watch, names
        unknown = without - PARTS.keys()
        if unknown:
            raise SystemExit(f"--protocol-without: unknown part(s) {sorted(unknown)}; known: {sorted(PARTS)}")
        self.without = without
        self.clients = _Clients()
        self.idle: queue.Queue[hvac.Client] = queue.Queue()
        for _ in range(WORKERS + 1):  # + the ledger lane's
            client = world.handle.hvac()
            client.sys.read_health_status(method="GET")  # the connection is open before the clock starts
            self.idle.put(client)
        self.custom_api = kubernetes.client.CustomObjectsApi(world.api)
        self.core = kubernetes.client.CoreV1Api(world.api)
        self.apps = kubernetes.client.AppsV1Api(world.api)
        self.token = secrets.token_hex(4)
        self.run_namespace = world.scope.platform.spec.controller.namespace
        self.revision: dict[str, int] = {}  # run record KV version per secret
        self.markers: dict[str, str] = {}  # promoted
        self.drawn: dict[str, str] = {}  # the draw's marker, before its promote
        self.previous: dict[str, int] = {}  # the version each promote writes over (CAS)
        self.ledger_seq, self.ledger_hash, self.head_version = 0, "0" * 64, 0
        self.lane = threading.Condition()
        self.lane_waiting: list[tuple[dict[str, Any], threading.Event]] = []
        self.lane_busy = False
        self.groups: list[int] = []  # entries per group commit
        self.objects = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-floor-objects")
        self.events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-floor-events")
        self.created: dict[str, Future[Any]] = {}
        self.published: list[Future[Any]] = []
        self.environment = world.path(names[0]).split("/", 1)[0]
        self.prepared: dict[str, dict[str, str]] = {}
        for n in names:  # values made up front, as the naive floor does: generating is not part of a floor
            generators = world.scope.placed[n].intent.spec.source.generate
            assert generators is not None
            self.prepared[n] = generate_values(generators)
        # The lab's first RotationRun create waits about 2 s in the API server (once per lab): paid here before the
        # clock starts. The floors run first, so the controller, which creates its objects in the background, never
        # meets it either.
        self.custom_api.create_namespaced_custom_object(GROUP, VERSION, self.run_namespace, PLURAL, self._manifest(
            self._run_name("warm-up"), names[0]))
        # a run record of the size chamberlain saves (its JSON body, about 1 KB), once per save
        self.record = json.dumps({"run_id": "x" * 26, "secret": "y" * 24, "stage": "pending", "padding": "z" * 900})

    # ------------------------------------------------------------------ raw calls

    def holding(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` run with one of the idle clients, given back after."""
        def task(arg: Any) -> Any:
            self.clients.vault = self.idle.get()
            try:
                return fn(arg)
            finally:
                self.idle.put(self.clients.vault)
        return task

    def _kv(self) -> Any:
        return self.clients.vault.secrets.kv.v2

    def _read(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self._kv().read_secret_version(path=path, mount_point=le.MOUNT,
                                                       raise_on_deleted_version=False))
        except hvac.exceptions.InvalidPath:
            return None

    def _meta(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self._kv().read_secret_metadata(path=path, mount_point=le.MOUNT))
        except hvac.exceptions.InvalidPath:
            return None

    def _write(self, path: str, data: dict[str, str], cas: int) -> int:
        answer = self._kv().create_or_update_secret(path=path, secret=data, cas=cas, mount_point=le.MOUNT)
        return int(answer["data"]["version"])

    def _patch(self, path: str, custom: dict[str, str]) -> None:
        self.clients.vault.adapter.request("PATCH", f"/v1/{le.MOUNT}/metadata/{path}",
                                           json={"custom_metadata": custom},
                                           headers={"Content-Type": "application/merge-patch+json"})

    def _hmac(self, data: bytes) -> str:
        answer = self.clients.vault.adapter.post(
            f"/v1/{TRANSIT_MOUNT}/hmac/{marker_key(self.environment)}/sha2-256",
            json={"input": base64.b64encode(data).decode()})
        return f"v2:{hashlib.sha256(str(answer['data']['hmac']).encode()).hexdigest()[:32]}"

    def _save(self, n: str, intermediate: bool = True) -> None:
        if self.without & {"run-records", "chunk-leases"} or (intermediate and "run-saves" in self.without):
            return
        path = f"{PREFIX}/runs/{self.token}/{self.world.path(n)}"
        self.revision[n] = self._write(path, {"run": self.record}, self.revision.get(n, 0))

    # ------------------------------------------------------------------ the protocol, step by step

    def open_and_promote(self, n: str) -> None:
        self.draw(n)
        self.promote(n)

    def draw(self, n: str) -> None:
        """Start to the draw's marker, saved (per secret, or by the batch record before any promote)."""
        path = self.world.path(n)
        # start: the lease. A batch lease still reads the secret's own record: `chamberlain rotate` leases there
        self._read(f"{PREFIX}/runs/{self.token}/{path}")
        meta = self._meta(path)
        assert meta is not None
        self._save(n, intermediate=False)  # pending: the lease
        current = self._read(path)  # the draw: the current values, the conflict check
        values = self.prepared[n]  # kept in memory until promote (a generated value: nothing is staged)
        self.drawn[n] = self._hmac(json.dumps(values, sort_keys=True).encode())
        self._save(n)  # tested, with the draw's marker
        self.previous[n] = int((current or {}).get("data", {}).get("metadata", {}).get("version") or
                               meta["data"]["current_version"])

    def promote(self, n: str) -> None:
        path = self.world.path(n)
        marker = self.drawn[n]
        version = self._write(path, self.prepared[n], self.previous[n])  # promote
        self._patch(path, {wk.VALUE_MARKER: marker, wk.VALUE_VERSION: str(version), wk.LAST_ROTATED: _now(),
                           wk.LAST_RUN: "x" * 26, wk.LAST_REASON: "manual: bench protocol floor"})
        self.markers[n] = marker  # promoted: saved with propagate's result (workflow.saved_with_the_next_step)
        ns, secret = self.world.consumer(n)
        self.custom_api.patch_namespaced_custom_object(  # the force-sync
            "external-secrets.io", "v1", ns, "externalsecrets", secret,
            {"metadata": {"annotations": {wk.ESO_FORCE_SYNC: f"floor-{self.token}-{n}"}}})
        if "run-objects" not in self.without:
            self.created[n] = self.objects.submit(self._create, n)
        if "events" not in self.without:
            self.published.append(self.events.submit(self._event, n))

    def _run_name(self, n: str) -> str:
        return f"floor-{self.token}-{n}"[:63]

    def _manifest(self, name: str, n: str) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                "metadata": {"name": name, "namespace": self.run_namespace,
                             "labels": {wk.LABEL_SECRET: n, FLOOR_LABEL: self.token}},
                "spec": {"secret": n, "path": f"{le.MOUNT}/{self.world.path(n)}", "trigger": "manual",
                         "reason": "bench protocol floor", "mode": "rotate"}}

    def _create(self, n: str) -> None:
        _answer(self.custom_api.create_namespaced_custom_object(
            GROUP, VERSION, self.run_namespace, PLURAL, self._manifest(self._run_name(n), n), _preload_content=False))

    def _status(self, n: str) -> None:
        self.created[n].result()
        conditions = [{"type": kind, "status": "False", "reason": "NotYet", "message": "",
                       "lastTransitionTime": _now()} for kind in ("Ready", "Promoted", "Propagated", "Retrying",
                                                                  "Failed", "Held")]
        # the run's final status, about 1.2 KB as the real one
        _answer(self.custom_api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.run_namespace, PLURAL, self._run_name(n),
            {"status": {"phase": "done", "runId": "x" * 26, "secret": n, "path": f"{le.MOUNT}/{self.world.path(n)}",
                        "trigger": "manual", "reason": "bench protocol floor", "mode": "rotate", "attempts": 0,
                        "startedAt": _now(), "conditions": conditions}},
            _preload_content=False))

    def _event(self, n: str) -> None:
        name = self._run_name(n)
        stamp = _now()
        _answer(self.core.create_namespaced_event(self.run_namespace, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": self.run_namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name,
                               "namespace": self.run_namespace},
            "reason": "RotationStarted", "message": f"rotation of {n} started (manual: bench protocol floor)",
            "type": "Normal", "eventTime": stamp, "reportingComponent": "chamberlain",
            "reportingInstance": "bench-floor", "action": "RotationStarted", "source": {"component": "chamberlain"},
            "firstTimestamp": stamp[:19] + "Z", "lastTimestamp": stamp[:19] + "Z"},
            _preload_content=False))

    def _marker_of(self, n: str) -> str | None:
        ns, secret = self.world.consumer(n)
        meta = _answer(self.core.read_namespaced_secret(
            secret, ns, _preload_content=False,
            _headers={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"})).get("metadata") or {}
        return (meta.get("annotations") or {}).get(wk.ANNOTATION_VERSION_MARKER)

    def propagated(self, n: str, timeout: float) -> None:
        """Look at the consumer Secret until it carries the new marker, as ``wait_in_sync`` does (without the
        reads: wait on the benchmark's watch, which makes no request)."""
        if "secret-reads" in self.without:
            if not self.watch.wait({self.world.consumer(n): self.markers[n]}, timeout):
                raise SystemExit(f"protocol floor: {n} not synced within {timeout:.0f}s")
        else:
            pause, deadline = POLL_FIRST, time.monotonic() + timeout
            while self._marker_of(n) != self.markers[n]:
                if time.monotonic() > deadline:
                    raise SystemExit(f"protocol floor: {n} not synced within {timeout:.0f}s")
                time.sleep(pause)
                pause = min(pause * 2, POLL_MAX)
        self._save(n)  # propagated (with the promote of a value kept in memory)

    def restart(self, workload: tuple[str, str]) -> None:
        """A read of the pod template, then the patch (``propagation.restart``)."""
        ns, name = workload
        _answer(self.apps.read_namespaced_deployment(name, ns, _preload_content=False))
        _answer(self.apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"metadata": {"annotations": {
            wk.ANNOTATION_RESTARTED_AT: _now(), wk.ANNOTATION_RESTART_BATCH: f"floor-{self.token}"}}}}},
            _preload_content=False))

    def finish(self, n: str) -> None:
        path = self.world.path(n)
        self._save(n)  # done (the restart step saves the step after it)
        self._meta(path)  # the map the PATCH's key count is checked against
        self._patch(path, {wk.LAST_RESULT: f"{'x' * 26}:ok", wk.FAILED_RUNS: "0"})
        if "ledger-entries" not in self.without:
            self.append({"event": "rotation", "secret": n, "path": path, "result": "ok", "actor": "bench-floor",
                         "details": {"run": "x" * 26, "trigger": "manual", "reason": "bench protocol floor",
                                     "from_version": "1", "to_version": "2",
                                     "marker": self.markers[n]}})
        self._save(n, intermediate=False)  # finalized: the ledger seq recorded
        if "run-objects" not in self.without:
            self.published.append(self.objects.submit(self._status, n))

    def append(self, draft: dict[str, Any]) -> None:
        """Through the one ledger lane: a worker that finds it free writes every entry waiting as one group."""
        done = threading.Event()
        with self.lane:
            self.lane_waiting.append((draft, done))
            while self.lane_busy and not done.is_set():
                self.lane.wait()
            if done.is_set():
                return
            self.lane_busy = True
            group, self.lane_waiting = self.lane_waiting, []
        try:
            self._commit([d for d, _ in group])
        finally:
            with self.lane:
                for _, flag in group:
                    flag.set()
                self.lane_busy = False
                self.lane.notify_all()

    def _commit(self, drafts: list[dict[str, Any]]) -> None:
        """One group commit: one signature request for the group, each entry created with CAS 0, the head once."""
        client = self.clients.vault
        self.groups.append(len(drafts))
        entries, hashes = [], []
        for d in drafts:
            self.ledger_seq += 1
            entry = {**d, "seq": self.ledger_seq, "prev": self.ledger_hash, "at": _now(),
                     "partition": f"{self.environment}/bench-floor"}
            self.ledger_hash = hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
            entries.append({**entry, "hash": self.ledger_hash})
            hashes.append(self.ledger_hash)
        answer = client.adapter.post(
            f"/v1/{TRANSIT_MOUNT}/sign/{LEDGER_KEY_PREFIX}{self.environment}",
            json={"batch_input": [{"input": base64.b64encode(h.encode()).decode()} for h in hashes]})
        signatures = [r["signature"] for r in answer["data"]["batch_results"]]
        for entry, sig in zip(entries, signatures, strict=True):
            self._write(f"{PREFIX}/ledger/{self.token}/{entry['seq']:012d}",
                        {"entry": json.dumps({**entry, "sig": sig}, sort_keys=True)}, 0)
        self.head_version = self._write(f"{PREFIX}/ledger/{self.token}/head",
                                        {"seq": str(self.ledger_seq), "hash": self.ledger_hash},
                                        self.head_version)


    def batch_record(self, stage: str, names: list[str] | None = None, size: int = BATCH_CHUNK) -> None:
        """The batch lease of the ``run-records`` and ``chunk-leases`` variants: what each secret's run record would
        say (its path, the draw's marker, the version its promote writes over, stage, attempts, error) for ``names``
        (every secret of the batch by default), in records of ``size`` secrets (a KV entry stays well under raft's
        1 MiB), each written with CAS."""
        names = self.names if names is None else names
        for i in range(0, len(names), size):
            part = names[i:i + size]
            body = json.dumps({"stage": stage, "runs": [
                {"secret": n, "run": "x" * 26, "path": f"{le.MOUNT}/{self.world.path(n)}",
                 "marker": self.drawn.get(n, ""), "previous_version": self.previous.get(n, 0), "stage": stage,
                 "attempts": 0, "failures_before": 0, "next_retry_at": None, "last_error": None}
                for n in part]})
            key = f"batch-{part[0]}"
            self.revision[key] = self._write(f"{PREFIX}/batches/{self.token}/{part[0]}", {"batch": body},
                                             self.revision.get(key, 0))

    def chunk(self, names: list[str]) -> None:
        """``chunk-leases``: a worker draws its chunk, writes the chunk's lease record with the draws' markers, then
        promotes the chunk (ESO syncs the first chunks while later ones still draw: no barrier)."""
        for n in names:
            self.draw(n)
        self.batch_record("tested", names, len(names))
        for n in names:
            self.promote(n)

    def batch_entry(self) -> None:
        """The ``ledger-entries`` variant: one entry for the batch, listing each rotation as the entries would."""
        self._commit([{"event": "rotation-batch", "actor": "bench-floor", "result": "ok", "details": {
            "run": "x" * 26, "trigger": "manual", "reason": "bench protocol floor", "rotations": [
                {"secret": n, "path": self.world.path(n), "from_version": "1", "to_version": "2",
                 "marker": self.markers[n]} for n in self.names]}}])


def _pool(f: ProtocolFloor, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="bench-floor") as pool:
        return list(pool.map(f.holding(fn), items))


def protocol_floor(world: le.World, watch: le.SecretWatch, names: list[str], timeout: float,
                   without: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Run the replay; seconds per phase and CPU-seconds per lab process, as ``bench_batch_rotation.floor``."""
    f = ProtocolFloor(world, watch, names, without)
    cpu0 = le.cpu_seconds(world.handle.lab_dir)
    batched, chunked = "run-records" in without, "chunk-leases" in without
    chunks = [names[i:i + LEASE_CHUNK] for i in range(0, len(names), LEASE_CHUNK)]
    t0 = time.monotonic()
    if batched:  # every draw, then the batch record with their markers, then every promote (a barrier)
        _pool(f, f.draw, names)
        f.holding(lambda _: f.batch_record("tested"))(None)
        _pool(f, f.promote, names)
    elif chunked:
        _pool(f, f.chunk, chunks)
    else:
        _pool(f, f.open_and_promote, names)
    t_promoted = time.monotonic()
    _pool(f, lambda n: f.propagated(n, timeout), names)
    if batched:
        f.holding(lambda _: f.batch_record("propagated"))(None)
    elif chunked:  # the fence before restarts: each chunk's record rewritten
        _pool(f, lambda c: f.batch_record("propagated", c, len(c)), chunks)
    t_propagated = time.monotonic()
    _pool(f, f.restart, world.workloads())
    t_restarted = time.monotonic()
    _pool(f, f.finish, names)
    if "ledger-entries" in without:
        f.holding(lambda _: f.batch_entry())(None)
    if batched:
        f.holding(lambda _: f.batch_record("done"))(None)
    elif chunked:
        _pool(f, lambda c: f.batch_record("done", c, len(c)), chunks)
    t_end = time.monotonic()
    cpu = le.cpu_used(cpu0, le.cpu_seconds(world.handle.lab_dir))
    wait(f.published)  # what the background threads still had queued, as the benchmark drains the controller's
    for done in f.published:
        done.result()
    t_drained = time.monotonic()
    f.objects.shutdown()
    f.events.shutdown()
    # not the controller's: out of its way (its trigger store and status read RotationRun objects)
    f.custom_api.delete_collection_namespaced_custom_object(GROUP, VERSION, f.run_namespace, PLURAL,
                                                            label_selector=f"{FLOOR_LABEL}={f.token}")
    return {"total": t_end - t0, "promoted": t_promoted - t0, "propagated": t_propagated - t_promoted,
            "restarted": t_restarted - t_propagated, "finished": t_end - t_restarted,
            "published_after": t_drained - t_end, "ledger_groups": len(f.groups),
            "cpu_seconds": cpu, "without": sorted(without)}
