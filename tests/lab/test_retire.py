"""Decommissioning against the real authority (the lab's OpenBao/Vault, KV v2 with check-and-set required as
configure sets it): the soft-delete on the day hides every version, the undo restores them, the purge after the
undo window leaves no metadata, also when Git dropped the retirement after the soft-delete (finished from the
mark); the signed ledger holds each step; the removed-intent scan of ``plan`` sees live
data without an intent and ignores retired data. The clock is a fake one (days pass in a second); the server is
real."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import hvac
import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerReader, TransitSigner
from chamberlain.authority.vault import client_with_token
from chamberlain.clock import FakeClock, SystemClock
from chamberlain.intent.model import Retire
from chamberlain.intent.paths import VaultPath
from chamberlain.lifecycle import retire as lr

pytestmark = pytest.mark.lab

MOUNT = "retire-kv"
DAY = date(2026, 3, 1)


@pytest.fixture(scope="module")
def kv_client(vault: Any, vault_info: Any) -> Any:
    if f"{MOUNT}/" not in vault.sys.list_mounted_secrets_engines()["data"]:
        vault.sys.enable_secrets_engine("kv", path=MOUNT, options={"version": "2"})
    deadline = time.monotonic() + 30
    while True:  # a new KV v2 mount answers "upgrading" for a moment
        try:
            vault.secrets.kv.v2.configure(mount_point=MOUNT, cas_required=True, max_versions=10)
            break
        except hvac.exceptions.InvalidRequest:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    # the client judges deletion times by the server's real clock; the decisions run on the fake one
    return client_with_token(vault_info.address, vault_info.ca_file, vault_info.root_token, clock=SystemClock())


def test_soft_delete_undo_purge_on_the_real_authority(kv_client: Any) -> None:
    kv = kv_client.kv
    path = VaultPath(MOUNT, "prod/team-a/legacy-token")
    for n in range(2):
        kv.write(MOUNT, path.path, {"token": f"lab-value-{n}"}, cas=n)
    kv.update_custom_metadata(MOUNT, path.path, {wk.INTENT: "legacy-token"})
    clock = FakeClock(datetime(2026, 2, 28, tzinfo=UTC))
    ledger = Ledger(kv, MOUNT, clock, cluster="prod1", signer=TransitSigner(kv_client.transit))
    target = lr.RetireTarget("legacy-token", "prod", path, Retire(after=DAY, undo_window=timedelta(days=7)))

    def run() -> lr.Run:
        return lr.Run(kv, ledger, "lab-test", "run-lab", clock)

    assert lr.apply(target, run()).state is lr.Step.SCHEDULED
    assert lr.orphans(kv, MOUNT, ["prod"], set()) == [lr.Orphan(path.full, "legacy-token", 2)]  # live, undeclared

    clock.advance(86400)
    out = lr.apply(target, run())
    assert out.steps == ["mark", "delete", "ledger"] and out.state is lr.Step.WAITING
    assert kv.read(MOUNT, path.path).deleted and kv.read(MOUNT, path.path, version=1).deleted
    assert lr.orphans(kv, MOUNT, ["prod"], set()) == []  # retired data is not a removed intent

    assert lr.undo(target, run()).restored == (1, 2)
    assert kv.read(MOUNT, path.path).data == {"token": "lab-value-1"}

    again = lr.RetireTarget(target.intent, target.environment, path, Retire(after=date(2026, 3, 2),
                                                                           undo_window=timedelta(days=7)))
    clock.advance(86400)
    assert lr.apply(again, run()).state is lr.Step.WAITING
    # spec.retire leaves Git before the purge: plan sees it, and retire finishes it from the mark (stored window)
    (left,) = lr.stranded(kv, MOUNT, ["prod"], set(), set())
    assert left.intent == "legacy-token" and left.undo_until == clock.now() + timedelta(days=7)
    (from_mark,) = lr.stranded_targets(kv, MOUNT, ["prod"], set())
    clock.advance(7 * 86400 - 1)
    assert lr.apply(from_mark, run()).state is lr.Step.WAITING
    clock.advance(1)
    assert lr.apply(from_mark, run()).steps == ["purge"]
    assert kv.read_metadata(MOUNT, path.path) is None  # every version and the metadata
    events = [e.event for e in LedgerReader(kv, MOUNT).entries() if e.secret == "legacy-token"]
    assert events == ["decommission", "decommission-undo", "decommission", "decommission-purge"]
