"""Benchmark: an observed external rotation, producer change -> all N consumer Secrets updated, through the real ESO.

For each size N (default 1, 10, 50): one config intent published by a PushSecret from the producer namespace
``bench-producer`` into ``platform-config``, with N consumers spread over up to ten namespaces (each namespace's
consumers restart one Deployment). The controller runs as ``chamberlain controller run`` runs it (``wire``: its
loop on a thread, a tick every ``--interval`` s, the PushSecret watch). A sample: at t0 the test (standing in for the
operator) replaces the producer Secret; the clock stops when a metadata-only watch saw every one of the N consumer
Secrets carry the marker the controller recorded for the new version. So the number includes ESO's push (the
PushSecret refreshes every ``--push-refresh`` s: ESO does not watch the producer Secret), the controller's debounce
(a push counts once no further push came for ``rotation.external.DEFAULT_QUIET`` s), the marker, the force-syncs and
ESO's re-syncs.

The floor, measured in the same run and interleaved: the same change to a second producer Secret whose intent the
controller does not follow; at the first new authority version (polled every 20 ms) a marker is written and the N
ExternalSecrets are force-synced directly, stopped by the same watch. That is what ESO itself needs: the push plus
N re-syncs, with no debounce.

The PushSecrets and ExternalSecrets are exactly as ``chamberlain.render.eso`` renders them, except the auth blocks
(token auth with the dev root token: the lab has no kubelet, and Vault auth is not what is measured) and the push
refresh interval.

Usage:
    /work/venv/bin/python benchmarks/bench_external_rotation.py                  # N = 1, 10, 50; 10 samples each
    /work/venv/bin/python benchmarks/bench_external_rotation.py --sizes 1,3 -n 2 -o json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kubernetes

import _lab_env as le
from _figures import figure, growth
from chamberlain import wellknown as wk
from chamberlain.intent.paths import VaultPath
from chamberlain.render import eso, naming
from chamberlain.render.topology import Publish, Read, build_topology
from chamberlain.rotation import external as ext
from chamberlain.service import load_valid

PRODUCER_NS = "bench-producer"
CONFIG_MOUNT = "platform-config"
CONSUMER_NAMESPACES = 10


def intent_yaml(name: str, consumers: int) -> str:
    lines = ["apiVersion: chamberlain.dev/v1alpha1", "kind: SecretIntent", f"metadata: {{name: {name}}}", "spec:",
             "  owner: team-search", f"  purpose: Benchmark endpoint {name}", "  classification: config",
             f"  source: {{publication: {{namespace: {PRODUCER_NS}, secretName: {name}, keys: [url]}}}}",
             "  rotation: {type: event-based, failureStrategy: alert}", "  consumers:"]
    for i in range(consumers):
        ns = f"bench-{i % CONSUMER_NAMESPACES:02d}"
        lines += [f"    - namespace: {ns}", f"      secretName: {name}-c{i:03d}", "      keys: {SEARCH_URL: url}",
                  f"      restart: [{{kind: Deployment, name: {name}-app}}]"]
    return "\n".join(lines) + "\n"


def write_repository(root: Path, address: str, sizes: list[int]) -> None:
    (root / "intents").mkdir(parents=True)
    (root / "platform.yaml").write_text(le.PLATFORM.format(env=le.ENV, cluster=le.CLUSTER, address=address,
                                                           mount=le.MOUNT, recipient=le.RECIPIENT))
    docs = [intent_yaml(f"{kind}-{n:03d}", n) for n in sizes for kind in ("ext", "floor")]
    (root / "intents" / "external.yaml").write_text("---\n".join(docs))


def _token_auth(manifest: dict[str, Any], ca_pem: str) -> dict[str, Any]:
    import base64

    vault = manifest["spec"]["provider"]["vault"]
    vault["auth"] = {"tokenSecretRef": {"name": le.TOKEN_SECRET, "key": "token"}}
    vault["caBundle"] = base64.b64encode(ca_pem.encode()).decode()
    manifest["metadata"]["annotations"] = {}
    return manifest


class Setup:
    """The world of this benchmark: repository, Vault mount, stores, PushSecrets, ExternalSecrets, Deployments."""

    def __init__(self, handle: le.LabHandle, sizes: list[int], push_refresh: str) -> None:
        self.handle, self.sizes = handle, sizes
        self.workdir = Path(tempfile.mkdtemp(prefix="chamberlain-bench-ext-"))
        write_repository(self.workdir / "repo", handle.vault_addr, sizes)
        self.repo = load_valid(self.workdir / "repo")
        platform = self.repo.platform
        assert platform is not None
        self.platform = platform
        intents = {i.obj.metadata.name: i.obj for i in self.repo.intents}
        self.intents = intents
        self.kube = handle.kube()
        self.api = handle.api_client()
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        client = handle.hvac()
        if f"{CONFIG_MOUNT}/" not in client.sys.list_mounted_secrets_engines()["data"]:
            client.sys.enable_secrets_engine("kv", path=CONFIG_MOUNT, options={"version": "2"})
        self.hvac = client
        unit = next(u for u in build_topology(platform, [p.obj for p in self.repo.policies],
                                              list(intents.values())).units
                    if u.environment == le.ENV and u.cluster == le.CLUSTER)
        self.reads: dict[str, list[Read]] = {}
        for reads in unit.reads.values():
            for r in reads:
                self.reads.setdefault(r.intent.metadata.name, []).append(r)
        self.publishes: dict[str, Publish] = {p.intent.metadata.name: p for ps in unit.publishes.values() for p in ps}
        self.push_refresh = push_refresh

    def vault_path(self, name: str) -> VaultPath:
        return self.publishes[name].vault

    def consumers(self, name: str) -> list[tuple[str, str]]:
        return [(r.consumer.namespace, r.consumer.secret_name) for r in self.reads[name]]

    def apply(self) -> None:
        started = time.monotonic()
        namespaces = {PRODUCER_NS} | {r.consumer.namespace for rs in self.reads.values() for r in rs}
        for ns in sorted(namespaces):
            self.kube.ensure_namespace(ns)
            if self.kube.get_secret(ns, le.TOKEN_SECRET) is None:
                self.kube.create_secret(ns, le.TOKEN_SECRET, {"token": self.handle.root_token})
        for ns in sorted(namespaces - {PRODUCER_NS}):
            store = eso.secret_store(self.platform, name=naming.reader_store(le.ENV, CONFIG_MOUNT), ns=ns,
                                     mount=CONFIG_MOUNT, cluster=le.CLUSTER,
                                     role=naming.reader_policy(le.ENV, le.CLUSTER, ns),
                                     account=naming.reader_service_account(le.ENV), labels=naming.common_labels())
            self.kube.apply_manifest(_token_auth(store, self.handle.ca_pem), le.FIELD_MANAGER)
        for name, pub in sorted(self.publishes.items()):
            # the producer's first value, so the first push happens before anything is measured
            self.set_producer(name, f"https://{name}.bench.example/{secrets.token_hex(4)}")
            account = naming.publisher_name(le.ENV, name)
            store = eso.secret_store(self.platform, name=account, ns=PRODUCER_NS, mount=CONFIG_MOUNT,
                                     cluster=le.CLUSTER, role="unused", account=account,
                                     labels=naming.common_labels())
            self.kube.apply_manifest(_token_auth(store, self.handle.ca_pem), le.FIELD_MANAGER)
            push = eso.push_secret(pub, le.ENV, account, naming.common_labels())
            push["spec"]["refreshInterval"] = self.push_refresh
            push["metadata"]["annotations"] = {}
            self.kube.apply_manifest(push, le.FIELD_MANAGER)
        for name, reads in sorted(self.reads.items()):
            for ns in sorted({r.consumer.namespace for r in reads}):
                self.kube.apply_manifest(le._deployment(ns, f"{name}-app"), le.FIELD_MANAGER)
            for r in reads:
                self.kube.apply_manifest(eso.external_secret(r, le.ENV, version_marker=True), le.FIELD_MANAGER)
        le.log(f"applied {len(self.publishes)} PushSecrets and {sum(len(r) for r in self.reads.values())} "
               f"ExternalSecrets in {time.monotonic() - started:.1f}s")

    def set_producer(self, name: str, url: str) -> None:
        body = {"metadata": {"name": name, "namespace": PRODUCER_NS}, "stringData": {"url": url}}
        try:
            self.core.replace_namespaced_secret(name, PRODUCER_NS, body)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_secret(PRODUCER_NS, body)

    def version(self, name: str) -> int:
        v = self.vault_path(name)
        try:
            meta = self.hvac.secrets.kv.v2.read_secret_metadata(path=v.path, mount_point=v.mount)
        except Exception:  # not pushed yet
            return 0
        return int(meta["data"]["current_version"])

    def custom_metadata(self, name: str) -> dict[str, str]:
        v = self.vault_path(name)
        meta = self.hvac.secrets.kv.v2.read_secret_metadata(path=v.path, mount_point=v.mount)
        return dict(meta["data"].get("custom_metadata") or {})

    def close(self) -> None:
        self.kube.close()
        self.api.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def floor_sample(s: Setup, watch: le.SecretWatch, name: str, timeout: float) -> float:
    """The producer changes; at the first new version, a marker and raw force-syncs of every consumer."""
    before = s.version(name)
    t0 = time.monotonic()
    s.set_producer(name, f"https://{name}.bench.example/{secrets.token_hex(4)}")
    while s.version(name) <= before:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"floor: ESO did not push {name} within {timeout:.0f}s")
        time.sleep(0.02)
    v = s.vault_path(name)
    marker = f"floor-{secrets.token_hex(8)}"
    s.hvac.secrets.kv.v2.update_metadata(path=v.path, mount_point=v.mount, custom_metadata={
        ext.ESO_MANAGED_BY: ext.ESO_MANAGER, wk.VALUE_MARKER: marker})
    token = f"floor-{secrets.token_hex(6)}"
    for ns, secret in s.consumers(name):
        s.custom.patch_namespaced_custom_object("external-secrets.io", "v1", ns, "externalsecrets", secret,
                                                {"metadata": {"annotations": {wk.ESO_FORCE_SYNC: token}}})
    expected = {c: marker for c in s.consumers(name)}
    got = watch.wait(expected, timeout)
    if len(got) != len(expected):
        raise SystemExit(f"floor: {len(expected) - len(got)} consumers of {name} never carried the marker")
    return max(got.values()) - t0


def controller_sample(s: Setup, watch: le.SecretWatch, wiring: le.Wiring, name: str, timeout: float
                      ) -> dict[str, float]:
    done_before = len(wiring.log.times("external rotation done", secret=name))
    t0 = time.monotonic()
    s.set_producer(name, f"https://{name}.bench.example/{secrets.token_hex(4)}")
    deadline = t0 + timeout
    while len(wiring.log.times("external rotation done", secret=name)) == done_before:
        if time.monotonic() > deadline:
            raise SystemExit(f"controller: no external rotation of {name} within {timeout:.0f}s "
                             f"(warnings: {wiring.log.warnings()[-3:]})")
        time.sleep(0.01)
    marker = s.custom_metadata(name).get(wk.VALUE_MARKER, "")
    expected = {c: marker for c in s.consumers(name)}
    got = watch.wait(expected, 30)
    if len(got) != len(expected):
        raise SystemExit(f"controller: {len(expected) - len(got)} consumers of {name} never carried its marker")
    observed = wiring.log.times("external rotation observed", secret=name)
    done = wiring.log.times("external rotation done", secret=name)
    return {"latency": max(got.values()) - t0, "to_observed": observed[-1] - t0,
            "observed_to_consumers": max(got.values()) - observed[-1], "to_done": done[-1] - t0}


def measure(handle: le.LabHandle, sizes: list[int], n: int, warmup: int, interval: float,
            push_refresh: str) -> dict[str, Any]:
    s = Setup(handle, sizes, push_refresh)
    watch = le.SecretWatch(s.api)
    watch.start()
    world = le.World(handle, s.repo, le.scope_of(s.platform, {}, le.ENV, le.CLUSTER), [], s.kube, handle.vault(),
                     s.api)
    le.install_intents(world)
    s.apply()
    followed = {k: v for k, v in s.intents.items() if k.startswith("ext-")}
    scope = le.scope_of(s.platform, followed, le.ENV, le.CLUSTER)
    wiring = le.make_controller(world, scope, evaluate_every=5.0)
    stop = threading.Event()
    loop = threading.Thread(target=wiring.controller.serve, args=(stop, interval), name="controller", daemon=True)
    results: dict[str, Any] = {}
    timeout = 120.0
    try:
        loop.start()
        for size in sizes:  # the first version of each: a baseline the controller follows without a restart
            name = f"ext-{size:03d}"
            deadline = time.monotonic() + timeout
            while not wiring.log.times("external rotation done", secret=name):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the first version of {name} was not followed within {timeout:.0f}s "
                                     f"(warnings: {wiring.log.warnings()[-3:]})")
                time.sleep(0.05)
            while s.version(f"floor-{size:03d}") == 0:
                time.sleep(0.05)
        for size in sizes:
            rows: list[dict[str, float]] = []
            floor: list[float] = []
            for i in range(warmup + n):
                row = controller_sample(s, watch, wiring, f"ext-{size:03d}", timeout)
                f = floor_sample(s, watch, f"floor-{size:03d}", timeout)
                if i >= warmup:
                    rows.append(row)
                    floor.append(f)
                le.log(f"N={size} {'warm-up' if i < warmup else f'{i + 1 - warmup}/{n}'}: controller "
                       f"{row['latency']:.3f}s (push+debounce {row['to_observed']:.3f}, then consumers "
                       f"{row['observed_to_consumers']:.3f}), floor {f:.3f}s")
            c, fl = le.summary([r["latency"] for r in rows]), le.summary(floor)
            results[str(size)] = {
                "consumers": size, "samples": n, "controller": c, "floor": fl,
                "ratio": {"p50": c["p50"] / fl["p50"], "p95": c["p95"] / fl["p95"]},
                "breakdown_p50": {k: le.summary([r[k] for r in rows])["p50"]
                                  for k in ("to_observed", "observed_to_consumers", "to_done")},
            }
        # Created at generation 1, not restarted for the first version, then once per rotation (the debounce and
        # the restart wave: N consumers in a namespace, one Deployment, one roll per rotation).
        restarts: dict[str, dict[str, Any]] = {}
        apps = kubernetes.client.AppsV1Api(s.api)
        for size in sizes:
            name = f"ext-{size:03d}"
            gens = [apps.read_namespaced_deployment(f"{name}-app", ns).metadata.generation
                    for ns in sorted({ns for ns, _ in s.consumers(name)})]
            restarts[name] = {"generations": sorted(set(gens)), "expected": 1 + warmup + n,
                              "once_per_rotation": set(gens) == {1 + warmup + n}}
    finally:
        stop.set()
        loop.join(30)
        watch.stop()
        s.close()
    return {"sizes": results, "interval": interval, "push_refresh": push_refresh, "quiet": ext.DEFAULT_QUIET,
            "warmup": warmup, "deployment_generations": restarts, "eso": le.eso_concurrency()}


def table(r: dict[str, Any]) -> str:
    head = f"{'N consumers':>11} {'p50 s':>7} {'p95 s':>7} {'floor p50':>9} {'floor p95':>9} {'ratio p50':>9} " \
           f"{'ratio p95':>9} {'push+debounce p50':>17}"
    lines = [head, "-" * len(head)]
    for row in r["sizes"].values():
        c, f = row["controller"], row["floor"]
        lines.append(f"{row['consumers']:>11} {c['p50']:>7.3f} {c['p95']:>7.3f} {f['p50']:>9.3f} {f['p95']:>9.3f} "
                     f"{row['ratio']['p50']:>9.2f} {row['ratio']['p95']:>9.2f} "
                     f"{row['breakdown_p50']['to_observed']:>17.3f}")
    lines.append(f"producer change -> every consumer Secret updated; tick every {r['interval']:g} s, PushSecret "
                 f"refresh {r['push_refresh']}, debounce {r['quiet']:g} s; {r['eso']}; load average "
                 f"{r.get('loadavg')} on {le.cpu_count()} CPUs")
    gens = r["deployment_generations"]
    ok = all(g["once_per_rotation"] for g in gens.values())
    lines.append(f"each workload restarted once per rotation: {'yes' if ok else 'NO'} (Deployment generations "
                 + ", ".join(f"{k}: {g['generations']} expected {g['expected']}" for k, g in gens.items()) + ")")
    return "\n".join(lines)


def figures(r: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The summary rows and the growth curve over consumer counts for benchmarks/run."""
    rows = sorted(r["sizes"].values(), key=lambda row: row["consumers"])
    once = all(g["once_per_rotation"] for g in r["deployment_generations"].values())
    figs = [figure("external", f"producer change -> {row['consumers']} consumers updated, p95", goal=
                   "each workload restarted once per rotation", measured=round(row["controller"]["p95"], 3),
                   unit="s", floor=round(row["floor"]["p95"], 3), floor_name="raw PushSecret + force-syncs p95",
                   met=once) for row in rows]
    curve = [growth("external", "producer change -> consumers p50", "s", [row["consumers"] for row in rows],
                    [row["controller"]["p50"] for row in rows])] if len(rows) > 1 else []
    return {"figures": figs, "growth": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50", help="consumer counts, comma-separated")
    parser.add_argument("-n", "--samples", type=int, default=10, help="measured rotations per size")
    parser.add_argument("--warmup", type=int, default=1, help="rotations per size before measuring")
    parser.add_argument("--interval", type=float, default=1.0, help="controller tick interval (CLI default 1 s)")
    parser.add_argument("--push-refresh", default="1s", help="the PushSecrets' refreshInterval (rendered: 1m)")
    parser.add_argument("--lab-dir", type=Path, help="reuse the dev lab running there (left running)")
    parser.add_argument("--port-offset", type=int, default=3500, help="port offset of the lab this starts")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    with le.running_lab(args.lab_dir, args.port_offset) as handle:
        result = measure(handle, sizes, args.samples, args.warmup, args.interval, args.push_refresh)
        result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if args.output == "json":
        json.dump({"cpus": le.cpu_count(), **result, **figures(result)}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(table(result))
    return 0 if all(g["once_per_rotation"] for g in result["deployment_generations"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
