"""Benchmark and check: a batch rotation through the controller while the raft leader of a three-node OpenBao is
killed (SIGKILL), against one without failover, on the same HA lab.

What runs: the three authority nodes of ``chamberlain lab up --ha`` (raft, TLS from the lab CA), etcd, the
kube-apiserver and the real ESO (only what the batch needs: no Flux, PostgreSQL or controller-manager). Node 1 is
initialized (one share, memory only), nodes 2 and 3 join it by ``retry_join`` and are unsealed with
chamberlain's own :func:`chamberlain.authority.lifecycle.unseal_nodes`, autopilot promotes them to voters. The
controller is wired as ``chamberlain controller run`` wires it, with a client given all three addresses (what
``--vault-addr A,B,C`` builds): it fails over on its own.

ESO's SecretStore points at node 3, and node 3 is never the one killed (it is stepped down first if it leads): ESO
takes one address, so production points it at a load balancer (or a Service) over the nodes; here a fixed survivor
keeps ESO out of what is measured.

Batches of N manual rotations, each queued at once: ``--warmup`` unmeasured ones (the first batch on a fresh lab
is slower whatever happens in it), the baseline, then one during which the leader is killed as soon as the first
run has started. A probe writes every 50 ms through its own all-node client: its longest write is the gap a client
sees while the cluster elects a new leader. Per batch: every run's seconds from "all queued" to "run finished", p50/p95,
the batch total. After the failover batch it checks, and exits 1 if any fails: every run succeeded (nothing
lost), each secret moved by exactly one version and its ``value-version`` names that version (no version marked
current twice, no double promote), one ``rotation`` ledger entry per run, the ledger verifies, and ESO delivered
every new marker.

Usage:
    python benchmarks/bench_failover.py                      # 40 secrets per batch; a table
    python benchmarks/bench_failover.py --secrets 6 -o json  # smoke size (tests/lab/test_benchmarks_smoke.py)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hvac

import _lab_env as le
from _figures import figure
from chamberlain import wellknown as wk
from chamberlain.audit.keys import PinnedKeys
from chamberlain.audit.ledger import LedgerReader
from chamberlain.authority.lifecycle import unseal_with
from chamberlain.authority.vault import VaultClient, client_with_token, unauthenticated
from chamberlain.clock import SystemClock
from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key
from chamberlain.lab import lab as lab_mod
from chamberlain.lab import procs
from chamberlain.lab.pki import ensure_pki
from chamberlain.lab.servers import Authority, install_crds
from chamberlain.triggers import manual

ESO_NODE = 2  # index of the node ESO reads from (node 3): never killed
# The lab Platform's limits.triggerInterval (_lab_env): a manual trigger within it of the secret's last run start
# is refused, and a batch right after a fast one would then never finish.
TRIGGER_INTERVAL_S = 1.0


@dataclass
class HaHandle(le.LabHandle):
    """The benchmark's lab handle for an HA authority: ``vault_addr`` is ESO's node (the Platform's address), the
    controller's client gets every node."""

    addresses: list[str] = field(default_factory=list)
    ca_file: Path = Path()
    nodes: list[Authority] = field(default_factory=list)

    def vault(self) -> VaultClient:
        return client_with_token(",".join(self.addresses), self.ca_file, self.root_token, clock=SystemClock())

    def hvac(self) -> Any:
        return hvac.Client(url=self.vault_addr, token=self.root_token, verify=str(self.ca_file))

    def leader(self) -> int:
        """Index of the active node (waits for one)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for i, node in enumerate(self.nodes):
                try:
                    if Authority.raft_role(node.sys_health()) == "leader":
                        return i
                except (OSError, ValueError):
                    pass
            time.sleep(0.2)
        raise SystemExit("no active authority node within 60 s")


def _voters(client: Any) -> int:
    servers = client.adapter.get("/v1/sys/storage/raft/configuration")["data"]["config"]["servers"]
    return sum(1 for s in servers if s["voter"])


def _form_cluster(nodes: list[Authority], ca: Path) -> tuple[str, list[str]]:
    """Init node 1 (one share, memory only), unseal it, let 2 and 3 join, unseal them, wait for three voters."""
    first = hvac.Client(url=nodes[0].address, verify=str(ca))
    result = first.sys.initialize(secret_shares=1, secret_threshold=1)
    keys, root = list(result["keys"]), str(result["root_token"])
    clock = SystemClock()
    clients = [unauthenticated(n.address, ca, clock=clock) for n in nodes]
    unseal_with(clients[0], keys)  # waits until active
    first.token = root
    # Autopilot promotes a joined node to voter after it is stable for server_stabilization_time (10 s default).
    first.adapter.post("/v1/sys/storage/raft/autopilot/configuration", json={"server_stabilization_time": "1s"})
    for client in clients[1:]:
        deadline = time.monotonic() + 30
        while not client.seal.status().initialized:  # retry_join runs every few seconds
            if time.monotonic() > deadline:
                raise SystemExit(f"{client.address} did not join the raft cluster within 30 s")
            time.sleep(0.3)
        unseal_with(client, keys, wait=False)
    first.sys.enable_secrets_engine("kv", path=le.MOUNT, options={"version": "2"})
    le.ensure_transit_keys(first)
    return root, keys


@contextmanager
def ha_lab(port_offset: int) -> Iterator[tuple[HaHandle, list[str]]]:
    """A fresh HA lab with only the servers a batch needs, stopped and purged on exit whatever happens."""
    host = le.lab_host()
    directory = Path(tempfile.mkdtemp(prefix="chamberlain-bench-ha-"))
    config = lab_mod.LabConfig(lab_dir=directory, host=host, ports=lab_mod.Ports().shifted(port_offset), ha=True)
    (directory / "lab.json").write_text(config.to_json(), encoding="utf-8")  # so `down` finds every node
    lab = lab_mod.Lab(config)
    try:
        started = time.monotonic()
        pki = ensure_pki(directory, host.clock)
        etcd = lab.etcd.start()
        node_procs = [n.start() for n in lab.authority_nodes]
        lab.etcd.wait(etcd)
        api = lab.apiserver.start()
        lab.apiserver.write_kubeconfig()
        lab.apiserver.wait(api)
        install_crds(lab.apiserver, lab.eso.crd_files(), "External Secrets", lambda m: None)
        eso = lab.eso.start()
        for node, proc in zip(lab.authority_nodes, node_procs, strict=True):
            node.wait(proc)
        root, keys = _form_cluster(lab.authority_nodes, pki.ca.cert)
        lab.eso.wait(eso)
        le.log(f"HA lab up and the raft cluster formed in {time.monotonic() - started:.1f}s ({directory})")
        handle = HaHandle(directory, lab.authority_nodes[ESO_NODE].address, lab.kubeconfig, pki.ca_pem, root,
                          addresses=lab.authority_addresses, ca_file=pki.ca.cert, nodes=lab.authority_nodes)
        yield handle, keys
    finally:
        le.log("taking the lab down")
        lab_mod.down(directory, host, progress=lambda m: None, purge=True)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_voters(handle: HaHandle) -> None:
    """Three raft voters (autopilot promotes joined nodes ~10 s after they join): before that, killing the leader
    leaves no quorum. Waited for just before the kill, so the set-up and the baseline overlap it."""
    client = handle.hvac()
    deadline = time.monotonic() + 60
    while _voters(client) < len(handle.nodes):
        if time.monotonic() > deadline:
            raise SystemExit("the joined nodes were not promoted to raft voters within 60 s")
        time.sleep(0.5)


def _keep_eso_node_alive(handle: HaHandle) -> int:
    """The leader, after making sure it is not ESO's node (asking that node to step down if it leads)."""
    leader = handle.leader()
    if leader == ESO_NODE:
        client = hvac.Client(url=handle.nodes[ESO_NODE].address, token=handle.root_token, verify=str(handle.ca_file))
        client.sys.step_down()
        time.sleep(1)
        leader = handle.leader()
    return leader


def batch(world: le.World, watch: le.SecretWatch, names: list[str], *, kill: int | None, interval: float,
          timeout: float) -> dict[str, Any]:
    """One batch through a fresh controller; with ``kill``, that node is SIGKILLed once the first run started."""
    wiring = le.make_controller(world, world.scope)
    controller = wiring.controller
    controller.tick()  # warm-up: adoption, first evaluation (not the batch)
    before = {n: world.vault.kv.read_metadata(le.MOUNT, world.path(n)) for n in names}
    time.sleep(TRIGGER_INTERVAL_S + 0.25)  # past the rate limit of the previous batch's runs (not timed)
    now = datetime.now(UTC)
    for n in names:
        controller.request(manual(n, "bench failover", now))
    t0 = time.monotonic()
    killed_at: list[float] = []
    stop = threading.Event()

    def killer() -> None:
        assert kill is not None
        while not stop.is_set() and not wiring.log.times("run started"):
            time.sleep(0.01)
        if stop.is_set():
            return
        info = procs.read(world.handle.lab_dir, world.handle.nodes[kill].name)  # type: ignore[attr-defined]
        if info is not None:
            os.kill(info.pid, signal.SIGKILL)
            killed_at.append(time.monotonic() - t0)

    stalls: list[float] = []

    def probe() -> None:
        """A small write every 50 ms through a client given every node: the longest one is the failover gap."""
        client = world.handle.vault()
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                client.kv.write(le.MOUNT, "_bench/failover-probe", {"n": str(i)}, cas=i)
                i += 1
            except Exception:  # unanswered (it may have been applied): read where it stands and go on
                try:
                    meta = client.kv.read_metadata(le.MOUNT, "_bench/failover-probe")
                    i = meta.current_version if meta else 0
                except Exception:  # the next write reports the stall
                    pass
            stalls.append(time.monotonic() - started)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True) if kill is not None else None
    if thread is not None:
        thread.start()
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        while True:
            controller.tick()
            if len(controller.finished) >= len(names) and not controller.active:
                break
            if time.monotonic() - t0 > timeout:
                for t, e, kw in wiring.log.lines:
                    le.log(f"{t - t0:8.2f} {e} {kw}")
                raise SystemExit(f"{len(controller.finished)} of {len(names)} runs finished after {timeout:.0f}s "
                                 f"(warnings: {wiring.log.warnings()[-3:]})")
            time.sleep(controller.pause(interval))
    finally:
        stop.set()
        if thread is not None:
            thread.join(5)
        prober.join(35)
    total = time.monotonic() - t0
    runs = controller.finished[-len(names):]
    per_run = [max(wiring.log.times("run finished", run=r.run_id)) - t0 for r in runs]
    expected = {world.consumer(r.secret): r.pending_marker or "" for r in runs}
    seen = watch.wait(expected, 60)
    return {
        "total": round(total, 2), "runs": len(runs), "failed": sum(1 for r in runs if not r.succeeded),
        "failures": sorted({f"{r.stage}: {r.last_error}" for r in runs if not r.succeeded})[:5],
        "retried": sum(1 for r in runs if r.attempts),
        "seconds": le.summary(per_run) if per_run else {}, "killed_at": killed_at[0] if killed_at else None,
        "longest_write_seconds": round(max(stalls), 2) if stalls else None,
        # The controller's own client (TimedKV -> VaultKV -> VaultClient): how many requests moved to another node.
        "failovers": int(getattr(getattr(getattr(wiring.kv, "inner", None), "_c", None), "failovers", 0)),
        "synced": len(seen), "run_ids": {r.secret: r.run_id for r in runs},
        "before": {n: (m.current_version if m else 0) for n, m in before.items()},
        "warnings": [f"{e}: {kw}" for e, kw in wiring.log.warnings()[:5]],
    }


def check(world: le.World, result: dict[str, Any]) -> list[str]:
    """What must hold after a batch: nothing lost, one version per run, one ledger entry per run, ledger intact."""
    problems: list[str] = []
    if result["failed"]:
        problems.append(f"{result['failed']} runs failed: {result['failures']}")
    if result["synced"] != result["runs"]:
        problems.append(f"ESO delivered {result['synced']} of {result['runs']} new markers")
    kv = world.vault.kv
    reader = LedgerReader(kv, le.MOUNT)
    for name, version in result["before"].items():
        meta = kv.read_metadata(le.MOUNT, world.path(name))
        if meta is None or meta.current_version != version + 1:
            problems.append(f"{name}: version {meta.current_version if meta else None}, expected {version + 1}")
        elif meta.custom.get(wk.VALUE_VERSION) != str(version + 1):
            problems.append(f"{name}: value-version {meta.custom.get(wk.VALUE_VERSION)} is not current")
        run_id = result["run_ids"].get(name)
        entries = [e for e in reader.for_secret(name) if e.event == "rotation" and e.run == run_id]
        if len(entries) != 1:
            problems.append(f"{name}: {len(entries)} rotation ledger entries for run {run_id}")
    # What `chamberlain audit verify` checks: every hash chain, and every signature against the ledger keys (read
    # here from transit, as `chamberlain audit pin` would pin them).
    raw = {ledger_key(env): world.vault.transit.public_keys(TRANSIT_MOUNT, ledger_key(env))
           for env in ("_authority", le.ENV)}
    verdict = reader.verify(PinnedKeys.from_transit(raw))
    if not verdict.ok:
        problems.append(f"the ledger does not verify: {verdict.problems[:3]}")
    return problems


def measure(args: argparse.Namespace) -> dict[str, Any]:
    shape = le.Shape(args.secrets, per_workload=args.per_workload, namespaces=args.namespaces,
                     prefix=f"f{secrets.token_hex(2)}")
    names = [shape.name(i) for i in range(args.secrets)]
    with ha_lab(args.port_offset) as (handle, _keys):
        workdir = Path(tempfile.mkdtemp(prefix="chamberlain-bench-failover-"))
        try:
            world = le.build_world(handle, workdir, [shape], timeout=args.timeout)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        watch = le.SecretWatch(world.api)
        watch.start()
        try:
            _keep_eso_node_alive(handle)
            for i in range(args.warmup):  # the first batch on a fresh lab is slower whatever happens in it
                le.log(f"warm-up batch {i + 1}: {len(names)} rotations, not measured")
                batch(world, watch, names, kill=None, interval=args.interval, timeout=args.timeout)
            le.log(f"baseline: {len(names)} rotations, no failover")
            baseline = batch(world, watch, names, kill=None, interval=args.interval, timeout=args.timeout)
            baseline_problems = check(world, baseline)
            _wait_voters(handle)
            leader = _keep_eso_node_alive(handle)
            le.log(f"failover: {len(names)} rotations, killing the leader ({handle.nodes[leader].name}) mid-batch")
            failover = batch(world, watch, names, kill=leader, interval=args.interval, timeout=args.timeout)
            failover["killed"] = handle.nodes[leader].name
            failover["new_leader"] = handle.nodes[handle.leader()].name
            problems = check(world, failover)
        finally:
            watch.stop()
            world.close()
    extra = failover["seconds"]["p95"] - baseline["seconds"]["p95"]
    return {"secrets": args.secrets, "baseline": baseline, "failover": failover,
            "extra_p95_seconds": round(extra, 2), "problems": baseline_problems + problems,
            "ok": not (baseline_problems or problems)}


def table(r: dict[str, Any]) -> str:
    b, f = r["baseline"], r["failover"]
    lines = [f"{r['secrets']} rotations per batch through the controller; 3 OpenBao nodes (raft), client on all "
             f"three; {le.cpu_count()} CPUs", "",
             f"{'':<34} {'p50 s':>8} {'p95 s':>8} {'max s':>8} {'total s':>8}"]
    for label, x in (("without failover", b), ("leader killed mid-batch", f)):
        s = x["seconds"]
        lines.append(f"{label:<34} {s['p50']:>8.2f} {s['p95']:>8.2f} {s['max']:>8.2f} {x['total']:>8.2f}")
    lines += ["", f"longest single write (a probe every 50 ms): {b['longest_write_seconds']:.2f} s without "
              f"failover, {f['longest_write_seconds']:.2f} s across it",
              f"extra delay at p95: {r['extra_p95_seconds']:.2f} s; killed {f['killed']} at "
              f"{f['killed_at']:.2f} s, new leader {f['new_leader']}; requests failed over: {f['failovers']}; "
              f"runs retried: {f['retried']}"]
    lines.extend(f"warning: {w}" for w in f["warnings"])
    lines.extend(f"PROBLEM: {p}" for p in r["problems"])
    lines.append("failover: ok (nothing lost, one version per run, ledger verifies)" if r["ok"]
                 else "failover: FAILED")
    return "\n".join(lines)


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary row for benchmarks/run: the p95 across the failover against the same batch without one."""
    b, f = r["baseline"], r["failover"]
    return [figure("failover", f"{r['secrets']} rotations, raft leader killed mid-batch: p95",
                   goal="nothing lost; delay = the election", measured=round(f["seconds"]["p95"], 2), unit="s",
                   floor=round(b["seconds"]["p95"], 2), floor_name="same batch, no failover", met=bool(r["ok"]),
                   note=f"+{r['extra_p95_seconds']:.2f} s at p95; longest write {f['longest_write_seconds']:.2f} s")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=40)
    parser.add_argument("--per-workload", type=int, default=5, help="secrets feeding each workload")
    parser.add_argument("--namespaces", type=int, default=2, help="consumer namespaces (one SecretStore each)")
    parser.add_argument("--interval", type=float, default=1.0, help="controller tick interval (CLI default 1 s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds per phase")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured batches before the baseline")
    parser.add_argument("--port-offset", type=int, default=4100, help="port offset of the lab this starts")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    result = measure(args)
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if args.output == "json":
        for key in ("baseline", "failover"):
            result[key].pop("run_ids", None)
            result[key].pop("before", None)
        json.dump({"cpus": le.cpu_count(), **result, "figures": figures(result), "growth": []}, sys.stdout,
                  indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(table(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
