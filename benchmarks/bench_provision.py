"""Benchmark P2: cold provisioning of generated secrets into OpenBao with raft storage over TLS (issue 16).

For each size: a repository of N ``source.generate`` intents is provisioned through chamberlain's own path
(``provision_units`` + ``run_provision`` with a signed ledger book and keyed markers, as ``chamberlain provision``
does), with ``--workers`` units in flight. Then, in the same run and on the same server:

- a second, no-op run of the same units: it must make 0 writes (and no transit calls);
- the floor: raw HTTP (one ``requests`` session per thread, same TLS, same concurrency) making the same writes per
  secret with nothing between them: the value (CAS 0), its HMAC marker, the record PATCH, the ledger entry (CAS 0),
  the ledger-seq PATCH, plus as many batch signatures and head writes as chamberlain's group commits made. Its
  entries go to independent slots (no chain: the floor does not wait for an order);
- the chained floor: the same, with the ledger entries written one at a time, in order, by one lane (what any
  hash chain with one head must do). Chained minus free is what the chain costs at best; chamberlain's "ledger
  lane busy" is how long its group commits held the chain (sum over groups of ``append_many``);
- the chain alone: the lane's n entry writes (and its signatures and head writes) one after the other with nothing
  else running: when it approaches the free floor, no schedule of one chain per partition can meet the goal.

Every HTTP request is counted at the session (a response hook): reads (GET, LIST), KV writes (POST, PUT, PATCH,
DELETE on KV) and transit calls (HMAC, sign). The server runs on 127.0.0.1:28200+offset with its own CA.

Usage:
    python benchmarks/bench_provision.py                           # 200, 1000, 2000; a table
    python benchmarks/bench_provision.py -n 2000 -o json
    python benchmarks/bench_provision.py --smoke -o json           # 20 secrets, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import figure, growth, load_average  # noqa: E402
from _raft_bao import RaftBao, raft_bao  # noqa: E402
from chamberlain.audit.ledger import Ledger, LedgerReader, Partition, TransitSigner  # noqa: E402
from chamberlain.authority.counting import CountingKV  # noqa: E402
from chamberlain.authority.vault import client_with_token  # noqa: E402
from chamberlain.clock import SystemClock  # noqa: E402
from chamberlain.intent.loader import load_repository  # noqa: E402
from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key, marker_key  # noqa: E402
from chamberlain.provision import provision_units, run_provision  # noqa: E402
from chamberlain.provision.workflow import DEFAULT_WORKERS  # noqa: E402
from chamberlain.values.generate import generate_values  # noqa: E402
from chamberlain.values.markers import TransitMarkers  # noqa: E402

ENV = "bench"
CLUSTER = "lab"
MOUNT = "secret"
RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
GOAL_SIZE = 2000
GOAL_RATIO = 1.25
DEFAULT_PORT_OFFSET = -5700

PLATFORM = f"""\
apiVersion: chamberlain.dev/v1alpha1
kind: Platform
metadata: {{name: bench}}
spec:
  environments:
    - {{name: {ENV}, clusters: [{CLUSTER}]}}
  authority:
    address: https://127.0.0.1:8200
    mounts: {{runtime: {MOUNT}, internalData: platform-data, internalConfig: platform-config}}
  rootOfTrust:
    ageRecipients: [{RECIPIENT}]
  defaults: {{rotationPolicy: standard}}
---
apiVersion: chamberlain.dev/v1alpha1
kind: RotationPolicy
metadata: {{name: standard}}
spec: {{type: time-based, ttl: 90d, rotateBefore: 7d, maxOverlap: 1h, revokeOld: false, failureStrategy: retry}}
"""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def write_repository(root: Path, prefix: str, n: int) -> None:
    (root / "intents").mkdir(parents=True)
    (root / "platform.yaml").write_text(PLATFORM, encoding="utf-8")
    docs = [
        "apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\n"
        f"metadata: {{name: {prefix}-{i:05d}}}\nspec:\n  owner: team-{i % 7}\n"
        f"  purpose: Benchmark credential {i}\n  classification: runtime\n"
        "  source:\n    generate:\n"
        "      username: {type: fixed-name, name: svc_user}\n"
        "      password: {type: password, length: 32}\n"
        "  rotation: {policy: standard}\n"
        f"  consumers:\n    - namespace: bench-{i % 10}\n      secretName: {prefix}-{i:05d}\n"
        for i in range(n)
    ]
    for start in range(0, n, 100):
        (root / "intents" / f"{prefix}-{start // 100:04d}.yaml").write_text("---\n".join(docs[start:start + 100]),
                                                                            encoding="utf-8")


# ----------------------------------------------------------------------------------------- counting requests


_TRANSIT = ("/hmac/", "/sign/")


@dataclass
class Requests:
    """HTTP requests seen by a session hook, by class (never a path or a body)."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        method = (resp.request.method or "").upper()
        url = resp.request.url or ""
        kind = ("transit" if any(t in url for t in _TRANSIT) else
                "read" if method in ("GET", "LIST", "HEAD") else "write")
        with self.lock:
            self.counts[kind] += 1

    def take(self) -> Counter[str]:
        with self.lock:
            out = Counter(self.counts)
            self.counts.clear()
        return out


# ----------------------------------------------------------------------------------------- chamberlain's path


@dataclass
class LaneTimer:
    """Time the ledger's group commits held the chain (their append_many calls), and how many groups."""

    seconds: float = 0.0
    groups: int = 0
    entries: int = 0

    def wrap(self, ledger: Ledger) -> None:
        inner = ledger.append_many

        def timed(drafts: Any, after: Any = None) -> Any:
            start = time.perf_counter()
            try:
                return inner(drafts, after)
            finally:
                self.seconds += time.perf_counter() - start
                self.groups += 1
                self.entries += len(drafts)

        ledger.append_many = timed  # type: ignore[method-assign]


def provision_run(bao: RaftBao, units: list[Any], workers: int, counter: Requests,
                  lane: LaneTimer | None = None) -> tuple[float, list[Any], Counter[str]]:
    clock = SystemClock()
    client = client_with_token(bao.address, bao.ca_file, bao.root_token, clock=clock)
    client._hvac.adapter.session.hooks["response"].append(counter.hook)
    kv = CountingKV(client.kv)
    book = Ledger(kv, MOUNT, clock, signer=TransitSigner(client.transit), cluster=CLUSTER)
    if lane is not None:
        lane.wrap(book.for_environment(ENV))
    counter.take()
    start = time.perf_counter()
    outcomes = run_provision(units, kv, book, actor="bench", run=f"bench-{uuid.uuid4().hex[:8]}", clock=clock,
                             markers=TransitMarkers(client.transit), workers=workers)
    elapsed = time.perf_counter() - start
    return elapsed, outcomes, counter.take()


# ----------------------------------------------------------------------------------------------- the floors


@dataclass
class FloorPlan:
    n: int
    workers: int
    groups: int  # sign requests and head writes, as many as chamberlain's group commits made
    chained: bool
    chain_only: bool = False  # the lane alone: n entries one after the other, nothing else on the server


def floor_run(bao: RaftBao, prefix: str, units: list[Any], plan: FloorPlan, counter: Requests) -> float:
    """The same writes as chamberlain per secret, raw: see the module docstring."""
    local = threading.local()
    base = bao.address
    marker_path = f"{base}/v1/{TRANSIT_MOUNT}/hmac/{marker_key(ENV)}/sha2-256"
    sign_path = f"{base}/v1/{TRANSIT_MOUNT}/sign/{ledger_key(ENV)}"
    patch_headers = {"Content-Type": "application/merge-patch+json"}
    every = max(1, round(plan.n / max(1, plan.groups)))
    signature = "vault:v1:" + "A" * 86 + "=="

    def session() -> requests.Session:
        s: requests.Session | None = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
            s.trust_env = False
            s.verify = str(bao.ca_file)
            s.headers["X-Vault-Token"] = bao.root_token
            s.hooks["response"].append(counter.hook)
        return s

    def ok(resp: requests.Response) -> None:
        if resp.status_code >= 300:
            raise SystemExit(f"floor request refused: HTTP {resp.status_code}")

    def entry(i: int) -> str:
        return json.dumps({"event": "value-created", "result": "ok", "secret": f"{prefix}-{i:05d}",
                           "path": f"{MOUNT}/{prefix}/{i}", "actor": "bench", "run": "floor",
                           "reason": "initial value of a generated secret",
                           "details": {"environment": ENV, "origin": "created", "version": "1",
                                       "marker": "v2:" + "0" * 32, "policy": "standard"},
                           "seq": i + 1, "time": "2026-01-01T00:00:00Z", "prev": "0" * 64,
                           "partition": f"{ENV}/{CLUSTER}", "hash": "0" * 64, "sig": signature})

    def ledger_write(i: int) -> None:
        s = session()
        if i % every == 0:
            batch = [{"input": "Y2hhbWJlcmxhaW4="} for _ in range(min(every, plan.n - i))]
            ok(s.post(sign_path, json={"batch_input": batch}))
        ok(s.post(f"{base}/v1/{MOUNT}/data/floor-ledger/{prefix}/{i:012d}",
                  json={"options": {"cas": 0}, "data": {"entry": entry(i)}}))
        if i % every == every - 1 or i == plan.n - 1:
            ok(s.post(f"{base}/v1/{MOUNT}/data/floor-ledger/{prefix}/head",
                      json={"data": {"seq": str(i + 1), "hash": "0" * 64}}))

    def secret(i: int) -> None:
        s = session()
        unit = units[i]
        path = f"floor/{prefix}/{i}"
        values = generate_values(unit.generators)
        ok(s.post(f"{base}/v1/{MOUNT}/data/{path}", json={"options": {"cas": 0}, "data": values}))
        ok(s.post(marker_path, json={"input": "Zmxvb3I="}))
        record = {"authority": "vault", "created-by": "chamberlain", "created-at": "2026-01-01T00:00:00Z",
                  "intent": unit.intent, "environment": ENV, "origin": "generated", "value-version": "1",
                  "value-marker": "v2:" + "0" * 32, "ledger-after": str(i), "policy.name": "standard",
                  "policy.type": "time-based", "policy.revoke-old": "false", "policy.failure-strategy": "retry",
                  "policy.ttl": "90d", "policy.rotate-before": "7d", "policy.max-overlap": "1h"}
        ok(s.patch(f"{base}/v1/{MOUNT}/metadata/{path}", json={"custom_metadata": record}, headers=patch_headers))
        if not plan.chained:
            ledger_write(i)
        ok(s.patch(f"{base}/v1/{MOUNT}/metadata/{path}", json={"custom_metadata": {"ledger-seq": str(i + 1)}},
                   headers=patch_headers))

    def chain() -> None:
        for i in range(plan.n):
            ledger_write(i)

    counter.take()
    start = time.perf_counter()
    if plan.chain_only:
        chain()
        return time.perf_counter() - start
    # Chained: one of the threads is the lane (as in chamberlain, where a worker runs it), the others the rest.
    with ThreadPoolExecutor(plan.workers) as pool:
        lane = pool.submit(chain) if plan.chained else None
        list(pool.map(secret, range(plan.n)))
        if lane is not None:
            lane.result()
    return time.perf_counter() - start


# -------------------------------------------------------------------------------------------------- the run


def setup(bao: RaftBao) -> None:
    c = bao.hvac()
    c.sys.enable_secrets_engine("kv", path=MOUNT, options={"version": "2"})
    c.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
    c.secrets.transit.create_key(name=ledger_key(ENV), key_type="ed25519", mount_point=TRANSIT_MOUNT)
    c.secrets.transit.create_key(name=marker_key(ENV), mount_point=TRANSIT_MOUNT)
    deadline = time.monotonic() + 30
    while True:  # a new KV v2 mount answers "upgrading" for a moment
        try:
            c.secrets.kv.v2.read_secret_metadata(path="probe", mount_point=MOUNT)
        except Exception as exc:
            if "404" in type(exc).__name__ or type(exc).__name__ == "InvalidPath":
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextmanager
def units_for(n: int, prefix: str) -> Iterator[list[Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-provision-") as tmp:
        write_repository(Path(tmp), prefix, n)
        repo = load_repository(Path(tmp), git=None)
        units = provision_units(repo, ENV)
        if len(units) != n:
            raise SystemExit(f"expected {n} units, the repository gave {len(units)}")
        yield units


def measure(bao: RaftBao, n: int, workers: int, verify: bool) -> dict[str, Any]:
    prefix = f"p{n}-{uuid.uuid4().hex[:4]}"
    counter = Requests()
    with units_for(n, prefix) as units:
        lane = LaneTimer()
        cold, outcomes, cold_requests = provision_run(bao, units, workers, counter, lane)
        created = sum(o.result == "created" for o in outcomes)
        if created != n:
            raise SystemExit(f"cold run created {created} of {n}")
        load_cold = load_average()
        noop, again, noop_requests = provision_run(bao, units, workers, counter)
        if any(o.result != "exists" or o.steps for o in again):
            raise SystemExit("the second run did something")
        plan = FloorPlan(n, workers, lane.groups, chained=False)
        floor = floor_run(bao, prefix, units, plan, counter)
        floor_requests = counter.take()
        chained = floor_run(bao, prefix + "c", units, FloorPlan(n, workers, lane.groups, chained=True), counter)
        chain_only = floor_run(bao, prefix + "o", units, FloorPlan(n, workers, lane.groups, chained=True,
                                                                  chain_only=True), counter)
        counter.take()
    verified: bool | None = None
    if verify:
        client = client_with_token(bao.address, bao.ca_file, bao.root_token, clock=SystemClock())
        verified = LedgerReader(client.kv, MOUNT, Partition(ENV, CLUSTER)).verify().ok
    row = {
        "n": n, "workers": workers, "seconds": round(cold, 3), "per_secret_ms": round(cold / n * 1000, 3),
        "floor_seconds": round(floor, 3), "chained_floor_seconds": round(chained, 3),
        "chain_only_seconds": round(chain_only, 3),
        "ratio": round(cold / floor, 3), "ratio_chained": round(cold / chained, 3),
        "ledger_lane_seconds": round(lane.seconds, 3), "ledger_groups": lane.groups,
        "ledger_lane_share": round(lane.seconds / cold, 3),
        "requests": dict(cold_requests), "requests_per_secret": round(sum(cold_requests.values()) / n, 3),
        "floor_requests_per_secret": round(sum(floor_requests.values()) / n, 3),
        "noop_seconds": round(noop, 3), "noop_requests": dict(noop_requests),
        "noop_writes": noop_requests["write"] + noop_requests["transit"],
        "ledger_verified": verified, "load": load_cold,
    }
    log(f"n={n}: {cold:.2f} s ({row['per_secret_ms']} ms/secret), floor {floor:.2f} s (ratio {row['ratio']}), "
        f"chained floor {chained:.2f} s, the chain alone {chain_only:.2f} s, "
        f"ledger lane {lane.seconds:.2f} s in {lane.groups} groups, "
        f"{row['requests_per_secret']} requests/secret, no-op {noop:.2f} s with {row['noop_writes']} writes, "
        f"load {load_cold}")
    return row


def report(rows: list[dict[str, Any]], smoke: bool) -> dict[str, Any]:
    top = rows[-1]
    at_goal = top["n"] >= GOAL_SIZE and not smoke
    note = (f"{top['workers']} workers; ledger lane busy {top['ledger_lane_seconds']} s of {top['seconds']} s "
            f"({top['ledger_groups']} group commits, {top['ledger_lane_seconds'] / top['n'] * 1000:.1f} ms/entry); "
            f"raw floor with the same chain {top['chained_floor_seconds']} s; the chain alone (n entries in a row, "
            f"nothing else) {top['chain_only_seconds']} s; {top['requests_per_secret']} requests/secret (floor "
            f"{top['floor_requests_per_secret']})")
    if at_goal and top["ratio"] > GOAL_RATIO:
        note += (f". Missed by {(top['ratio'] / GOAL_RATIO - 1) * 100:.0f}%: the partition's one hash chain is the "
                 "critical path (one raft commit per entry, in order); closing it needs fewer chained writes per "
                 "secret (one entry per group commit, or a chain per writer): a ledger format decision")
    figures = [
        figure("P2", f"cold provisioning, {top['n']} secrets (raft + TLS)", goal=f"ratio <= {GOAL_RATIO}",
               measured=top["seconds"], unit="s", floor=top["floor_seconds"],
               floor_name="raw HTTP, same writes, same concurrency",
               met=(top["ratio"] <= GOAL_RATIO) if at_goal else None, note=note),
        figure("P2-noop", f"no-op re-run, {top['n']} secrets: writes", goal="0", measured=top["noop_writes"],
               unit="writes", met=top["noop_writes"] == 0, note=f"{top['noop_seconds']} s, "
               f"{sum(top['noop_requests'].values()) / top['n']:.2f} requests/secret (reads)"),
        figure("P2-requests", "requests per secret (cold)", goal="report", measured=top["requests_per_secret"],
               unit="requests", floor=top["floor_requests_per_secret"], floor_name="raw floor requests/secret",
               note=json.dumps(top["requests"], sort_keys=True)),
    ]
    for fig in figures:
        fig["load"] = top["load"]  # the load while the largest size ran, not at report time
    sizes = [r["n"] for r in rows]
    curves = [growth("P2", "cold provisioning", "s", sizes, [r["seconds"] for r in rows]),
              growth("P2", "raw floor", "s", sizes, [r["floor_seconds"] for r in rows])] if len(rows) > 1 else []
    return {"benchmark": "provision", "authority": "openbao raft+tls", "rows": rows, "figures": figures,
            "growth": curves}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--sizes", default="200,1000,2000", help="comma-separated secret counts")
    parser.add_argument("--smoke", action="store_true", help="20 secrets: seconds (CI keeps the script alive)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="units in flight (and floor threads)")
    parser.add_argument("--port-offset", type=int, default=DEFAULT_PORT_OFFSET,
                        help="the server listens on 28200 + offset")
    parser.add_argument("--no-verify", action="store_true", help="skip verifying the ledger after the runs")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    sizes = [20] if args.smoke else [int(x) for x in args.sizes.split(",") if x.strip()]
    rows = []
    with raft_bao(args.port_offset) as bao:
        setup(bao)
        for i, n in enumerate(sizes):
            rows.append(measure(bao, n, args.workers, verify=not args.no_verify and i == len(sizes) - 1))
        data_mb = round(bao.data_bytes() / 2**20, 1)
    out = report(rows, args.smoke)
    out["raft_data_mb"] = data_mb
    if args.output == "json":
        print(json.dumps(out, indent=2))
    else:
        show(out)
    return 0


def show(out: dict[str, Any]) -> None:
    cols: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
        ("n", lambda r: r["n"]), ("s", lambda r: r["seconds"]), ("floor s", lambda r: r["floor_seconds"]),
        ("ratio", lambda r: r["ratio"]), ("chained floor s", lambda r: r["chained_floor_seconds"]),
        ("chain alone s", lambda r: r["chain_only_seconds"]),
        ("ledger lane s", lambda r: r["ledger_lane_seconds"]), ("req/secret", lambda r: r["requests_per_secret"]),
        ("no-op s", lambda r: r["noop_seconds"]), ("no-op writes", lambda r: r["noop_writes"]),
        ("load", lambda r: r["load"][0]),
    ]
    print("  ".join(f"{c:>15}" for c, _ in cols))
    for r in out["rows"]:
        print("  ".join(f"{fn(r)!s:>15}" for _, fn in cols))
    for g in out["growth"]:
        print(f"growth {g['series']}: {g['per_item_growth']}")


if __name__ == "__main__":
    raise SystemExit(main())
