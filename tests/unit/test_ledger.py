"""The ledger against the in-memory KV: chaining, tamper detection, concurrent writers, no values."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from chamberlain.audit.ledger import HEAD_PATH, LEDGER_PREFIX, Ledger, LedgerReader
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock

MOUNT = "secret"


class Clock(FakeClock):
    """Every reading is one second after the previous one."""

    def __init__(self) -> None:
        super().__init__(datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        self.advance(1)
        return self.t


@pytest.fixture
def kv() -> FakeKV:
    return FakeKV()


def fill(kv: FakeKV, n: int = 5) -> Ledger:
    ledger = Ledger(kv, MOUNT, clock=Clock())
    for i in range(n):
        ledger.append("handover", actor="test", secret=f"s{i}", path=f"secret/prod/team/s{i}", details={"i": str(i)})
    return ledger


def test_chain_verifies(kv: FakeKV) -> None:
    ledger = fill(kv)
    report = ledger.verify()
    assert report.ok and report.entries == 5 and not report.warnings
    entries = ledger.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert ledger.for_secret("s3")[0].details == {"i": "3"}


def test_edit_is_detected(kv: FakeKV) -> None:
    ledger = fill(kv)
    entry = ledger.entries()[2].model_copy(update={"reason": "forged"})
    kv.tamper(MOUNT, f"{LEDGER_PREFIX}/{3:012d}", {"entry": entry.model_dump_json()})
    assert any("edited" in p for p in ledger.verify().problems)


def test_deleted_middle_entry_is_detected(kv: FakeKV) -> None:
    fill(kv)
    kv.remove(MOUNT, f"{LEDGER_PREFIX}/{2:012d}")
    problems = LedgerReader(kv, MOUNT).verify().problems
    assert any("missing or out of order" in p for p in problems)


def test_deleted_tail_is_detected(kv: FakeKV) -> None:
    fill(kv)
    kv.remove(MOUNT, f"{LEDGER_PREFIX}/{5:012d}")
    assert any("deleted" in p for p in LedgerReader(kv, MOUNT).verify().problems)


def test_reordering_is_detected(kv: FakeKV) -> None:
    ledger = fill(kv)
    a = kv.read(MOUNT, f"{LEDGER_PREFIX}/{2:012d}")
    b = kv.read(MOUNT, f"{LEDGER_PREFIX}/{3:012d}")
    assert a and b
    kv.tamper(MOUNT, f"{LEDGER_PREFIX}/{2:012d}", b.data)
    kv.tamper(MOUNT, f"{LEDGER_PREFIX}/{3:012d}", a.data)
    assert not ledger.verify().ok


def test_two_writers_interleave_into_one_chain(kv: FakeKV) -> None:
    one, two = Ledger(kv, MOUNT, clock=Clock()), Ledger(kv, MOUNT, clock=Clock())
    for i in range(4):
        one.append("rotation", actor="one", secret=f"a{i}")
        two.append("rotation", actor="two", secret=f"b{i}")
    report = LedgerReader(kv, MOUNT).verify()
    assert report.ok and report.entries == 8


def test_lagging_head_is_a_warning_and_repaired(kv: FakeKV) -> None:
    ledger = fill(kv, 3)
    # Simulate a crash between writing entry 4 and moving the head.
    head = kv.read(MOUNT, HEAD_PATH)
    assert head is not None
    ledger.append("rotation", actor="x")
    kv.tamper(MOUNT, HEAD_PATH, head.data)
    report = LedgerReader(kv, MOUNT).verify()
    assert report.ok and report.warnings
    Ledger(kv, MOUNT, Clock()).append("rotation", actor="y")
    assert not LedgerReader(kv, MOUNT).verify().warnings
