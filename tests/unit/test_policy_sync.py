"""Policy in force vs Git: drift is found per field, apply writes Git's policy (blanking fields Git dropped) with
one policy-change ledger entry each, and a second apply changes nothing."""

from __future__ import annotations

from datetime import timedelta

from chamberlain.audit.ledger import Ledger
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock
from chamberlain.handover import metadata as md
from chamberlain.intent.model import RotationPolicySpec
from chamberlain.rotation import policy_sync
from chamberlain.rotation.manual import place
from chamberlain.rotation.policy import from_metadata
from tests.unit.test_controller import MOUNT, PLATFORM, intent


def test_drift_apply_is_audited_and_idempotent() -> None:
    kv = FakeKV()
    it = intent("api-token", policy={"type": "static", "failureStrategy": "hold"})
    placed = place(PLATFORM, it, "dev", "dev1")
    kv.write(MOUNT, placed.vault.path, {"token": "x" * 20}, cas=0)
    old = RotationPolicySpec(type="time-based", ttl=timedelta(days=90), rotate_before=timedelta(days=7))
    kv.update_custom_metadata(MOUNT, placed.vault.path, md.policy_metadata("standard", old))
    drifts = policy_sync.plan(kv, PLATFORM, {}, [placed])
    assert [d.secret for d in drifts] == ["api-token"]
    fields = {f.field for f in drifts[0].fields}
    assert {"type", "ttl", "rotate-before", "failure-strategy"} <= fields
    ledger = Ledger(kv, MOUNT, FakeClock())
    assert policy_sync.apply(kv, ledger, drifts, actor="t", run="r1") == 1
    meta = kv.read_metadata(MOUNT, placed.vault.path)
    assert meta is not None
    in_force = from_metadata(meta.custom)
    assert in_force is not None and in_force.type == "static" and in_force.ttl is None
    [entry] = [e for e in ledger.entries() if e.event == "policy-change"]
    assert entry.secret == "api-token" and "time-based -> static" in entry.details["type"]
    assert policy_sync.plan(kv, PLATFORM, {}, [placed]) == []
    assert ledger.verify().ok
