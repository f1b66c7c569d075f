"""Backup, restore and ``chamberlain drill authority-loss`` against the real lab (the session's demo world: OpenBao
with raft storage and custody of three, kube-apiserver, the real ESO).

Named to run after ``test_rotate`` and ``test_import``, which share the world: the drill destroys the authority's
data and restores it from a backup taken a moment before, so the world works afterwards (every value, version,
policy and login as it was; only tokens issued after the backup are gone).

- a backup taken with the least-privilege backup identity; a tampered copy, a truncated copy and the wrong identity
  are refused by ``chamberlain restore`` (exit 1, the file named) while the authority keeps serving unchanged;
  ``--dry-run`` of the sound backup onto the same authority says "rollback";
- the drill: every consumer Secret carries the same version marker after the restore (``matched == secrets``),
  no value regenerated, the ledger verifies across the restore; no value in any output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.lab.demo_lab import World, materialize

pytestmark = [pytest.mark.lab, pytest.mark.drill]

pytest.importorskip("hvac")
pytest.importorskip("kubernetes")

NS, SECRET, WORKLOAD = "monitoring", "grafana-admin", "grafana"
MOUNT, PATH = "secret", "dev/team-observability/grafana-admin"


def _identities(w: World) -> list[str]:
    """The threshold of the demo's custodians whose identities open a share in force (an earlier test of the
    shared world may have replaced a custodian)."""
    from chamberlain.authority.material import SealedStore, load_identities

    material = SealedStore(w.kube, "chamberlain-system").load()
    assert material is not None
    keys = [k for k in sorted((w.repo.parent / "custodians").glob("*.agekey"))
            if material.open_held(load_identities(k))]
    assert len(keys) >= material.threshold
    return [arg for k in keys[: material.threshold] for arg in ("--identity", str(k))]


def _values(w: World) -> list[str]:
    """Every value of the consumer's secret, to prove none leaks into an output."""
    version = w.kv.read(MOUNT, PATH)
    assert version is not None
    return [str(v) for v in version.data.values() if len(str(v)) >= 8]


def test_backup_then_refusals_leave_the_authority_untouched(demo_world: World, tmp_path: Path) -> None:
    w = demo_world
    materialize(w, NS, SECRET, WORKLOAD, MOUNT, PATH)
    conn = ["--vault-addr", w.lab.authority.address, "--vault-cacert", str(w.lab.pki.ca.cert), "--kubeconfig",
            str(w.lab.kubeconfig), "--cluster", "dev1"]
    out = tmp_path / "backup"
    made = run_cli("backup", str(w.repo), "--out", str(out), *conn, "-o", "json")
    assert made.code == 0, made.err
    report = json.loads(made.out)
    assert report["takenAs"].startswith("chamberlain.authority.backup")
    assert report["unsealShares"]["holders"] == ["alice", "bob", "carol"]
    before = w.kv.read_metadata(MOUNT, PATH)

    damaged = {
        "tampered": lambda d: (d / "snapshot.age").write_bytes(bytes(b ^ 1 for b in (d / "snapshot.age").read_bytes())),
        "truncated": lambda d: (d / "snapshot.age").write_bytes((d / "snapshot.age").read_bytes()[:500]),
    }
    for name, damage in damaged.items():
        copy = tmp_path / name
        shutil.copytree(out, copy)
        damage(copy)
        refused = run_cli("restore", str(w.repo), "--from", str(copy), *_identities(w), "--force", *conn)
        assert refused.code == 1, (name, refused.err)
        assert str(copy / "snapshot.age") in refused.err and "Traceback" not in refused.err
    stranger = tmp_path / "stranger.agekey"
    import pyrage

    stranger.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    wrong = run_cli("restore", str(w.repo), "--from", str(out), "--identity", str(stranger), *conn)
    assert wrong.code == 1 and "cannot decrypt" in wrong.err
    checked = run_cli("restore", str(w.repo), "--from", str(out), *_identities(w), "--dry-run", *conn, "-o", "json")
    assert checked.code == 0, checked.err
    assert json.loads(checked.out)["mode"].startswith("checked (rollback")
    after = w.kv.read_metadata(MOUNT, PATH)
    assert before is not None and after is not None
    assert (after.current_version, dict(after.custom)) == (before.current_version, dict(before.custom))
    outputs = made.out + made.err + checked.out + wrong.err
    assert not any(v in outputs for v in _values(w))
    assert not any(v.encode() in p.read_bytes() for v in _values(w) for p in out.iterdir())


def test_drill_authority_loss_restores_everything_and_the_ledger_verifies(demo_world: World) -> None:
    w = demo_world
    result = run_cli("drill", "authority-loss", "--lab-dir", str(w.lab.config.lab_dir), "--repo", str(w.repo),
                     *_identities(w), "-o", "json")
    report = json.loads(result.out)
    assert result.code == 0, (report, result.err)
    assert report["ok"] and report["secrets"] >= 1 and report["matched"] == report["secrets"]
    assert report["regenerated"] == 0 and report["ledgerVerified"] is True
    print(f"\n[drill] authority-loss: {report['matched']}/{report['secrets']} matched, RTO {report['rtoSeconds']}s")
    assert not any(v in result.out + result.err for v in _values(w))
    # the world still works: the orchestrator reads, ESO keeps the consumer in sync
    assert materialize(w, NS, SECRET, WORKLOAD, MOUNT, PATH)
