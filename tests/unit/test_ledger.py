"""The ledger against the in-memory KV: chaining, tamper detection, concurrent writers, no values."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chamberlain.audit.keys import PinnedKeys
from chamberlain.audit.keys import load as load_keys
from chamberlain.audit.ledger import (
    AUTHORITY,
    HEAD_PATH,
    LEDGER_PREFIX,
    Ledger,
    LedgerEntry,
    LedgerReader,
    Partition,
    TransitSigner,
    make_draft,
    signing_message,
)
from chamberlain.authority.errors import Forbidden
from chamberlain.authority.fake import FakeKV, FakeTransit
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key

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


# ------------------------------------------------------------------ issue 11: partitions, signatures, damage

DEV = Partition("dev", "dev1")


def signed(kv: FakeKV, transit: FakeTransit, partition: Partition = DEV) -> Ledger:
    return Ledger(kv, MOUNT, Clock(), partition=partition, signer=TransitSigner(transit))


def pinned(transit: FakeTransit, *envs: str) -> PinnedKeys:
    return PinnedKeys.from_transit({ledger_key(e): transit.public_keys(TRANSIT_MOUNT, ledger_key(e)) for e in envs})


@pytest.fixture
def transit() -> FakeTransit:
    t = FakeTransit()
    for env in ("dev", "prod", "_authority"):
        t.ensure_key(TRANSIT_MOUNT, ledger_key(env), "ed25519")
    return t


def _slot(partition: Partition, seq: int) -> str:
    return f"{partition.prefix}/{seq:012d}"


def test_signed_partitions_verify_against_pinned_keys(kv: FakeKV, transit: FakeTransit) -> None:
    for i in range(3):
        signed(kv, transit).append("rotation", actor="c", secret=f"s{i}")
    signed(kv, transit, Partition("prod", "prod-eu1")).append("rotation", actor="c", secret="p")
    signed(kv, transit, AUTHORITY).append("authority-configure", actor="admin")
    report = LedgerReader(kv, MOUNT).verify(pinned(transit, "dev", "prod", "_authority"))
    assert report.ok and report.entries == 5, report.problems
    assert report.partitions == ["_authority/configurator", "dev/dev1", "prod/prod-eu1"]
    assert all(e.sig.startswith("vault:v1:") for e in LedgerReader(kv, MOUNT).entries())


def test_a_forged_well_chained_entry_fails_verify_with_its_seq(kv: FakeKV, transit: FakeTransit) -> None:
    ledger = signed(kv, transit)
    ledger.append("rotation", actor="c", secret="a")
    tail = ledger.mark()
    forger_key = Ed25519PrivateKey.generate()  # anyone with KV write but without the transit key
    forged = LedgerEntry(event="handover", actor="c", secret="a", seq=tail.seq + 1, time="2026-01-01T00:00:00Z",
                         prev=tail.hash, partition=DEV.name)
    forged = forged.model_copy(update={"hash": forged.computed_hash()})
    sig = base64.b64encode(forger_key.sign(signing_message(DEV.name, forged.hash))).decode()
    forged = forged.model_copy(update={"sig": f"vault:v1:{sig}"})
    kv.write(MOUNT, _slot(DEV, 2), {"entry": forged.model_dump_json()}, cas=0)
    kv.write(MOUNT, f"{DEV.prefix}/head", {"seq": "2", "hash": forged.hash}, cas=1)
    keys = pinned(transit, "dev")
    assert LedgerReader(kv, MOUNT).verify().ok  # the hash chain alone cannot tell
    report = LedgerReader(kv, MOUNT).verify(keys)
    assert report.problems == ["partition dev/dev1: entry 2 has a bad signature: does not verify with the pinned key "
                               "chamberlain-ledger-dev version 1 (forged or altered)"]


def test_an_entry_signed_with_another_environments_key_or_moved_fails(kv: FakeKV, transit: FakeTransit) -> None:
    prod = signed(kv, transit, Partition("prod", "prod-eu1"))
    entry = prod.append("rotation", actor="c")
    # Copy prod's signed entry into dev's partition: its partition field no longer matches its place.
    kv.write(MOUNT, _slot(DEV, 1), {"entry": entry.model_dump_json()}, cas=0)
    report = LedgerReader(kv, MOUNT).verify(pinned(transit, "dev", "prod"))
    assert report.damaged == [("dev/dev1", 1, "names partition 'prod/prod-eu1', not 'dev/dev1'")]


def test_an_unsigned_or_unpinned_entry_is_a_problem(kv: FakeKV, transit: FakeTransit) -> None:
    Ledger(kv, MOUNT, Clock(), partition=DEV).append("rotation", actor="c")  # no signer
    assert "is not signed" in LedgerReader(kv, MOUNT).verify(pinned(transit, "dev")).problems[0]
    transit.rotate_key(TRANSIT_MOUNT, ledger_key("prod"))
    signed(kv, transit, Partition("prod", "p1")).append("rotation", actor="c")
    problems = LedgerReader(kv, MOUNT).verify(PinnedKeys({})).problems
    assert any("chamberlain-ledger-prod version 2, which is not pinned" in p for p in problems)


@pytest.mark.parametrize("garbage", [
    {"entry": "not json {"},
    {"entry": '{"seq": 2}'},
    {"other": "x"},
])
def test_a_garbage_slot_is_reported_and_appends_go_on(kv: FakeKV, transit: FakeTransit,
                                                      garbage: dict[str, str]) -> None:
    ledger = signed(kv, transit)
    ledger.append("rotation", actor="c", run="r1")
    kv.write(MOUNT, _slot(DEV, 2), garbage, cas=0)  # a writer (or an attacker) left garbage at the next seq
    after = signed(kv, transit).append("rotation", actor="c", run="r2")  # a fresh writer: reads the head
    assert after.seq == 3 and after.prev == ledger.entries()[0].hash  # chains to the last intact entry
    again = signed(kv, transit).append("rotation", actor="c", run="r3")
    assert again.seq == 4 and again.prev == after.hash
    report = LedgerReader(kv, MOUNT).verify(pinned(transit, "dev"))
    assert [(p, s) for p, s, _ in report.damaged] == [("dev/dev1", 2)]
    assert report.problems == [f"partition dev/dev1: entry 2 is damaged: {report.damaged[0][2]}"]
    assert "not json" not in report.damaged[0][2]  # evidence names the failure, never the content
    assert [e.run for e in LedgerReader(kv, MOUNT).entries()] == ["r1", "r2", "r3"]


def test_a_garbage_head_is_rebuilt_from_the_slots(kv: FakeKV, transit: FakeTransit) -> None:
    ledger = signed(kv, transit)
    ledger.append("rotation", actor="c")
    kv.write(MOUNT, _slot(DEV, 2), {"entry": "garbage"}, cas=0)
    kv.tamper(MOUNT, f"{DEV.prefix}/head", {"seq": "??"})
    assert any("head is damaged" in p for p in LedgerReader(kv, MOUNT).verify().problems)
    entry = signed(kv, transit).append("rotation", actor="c", run="next")
    assert entry.seq == 3 and entry.prev == ledger.entries()[0].hash
    report = LedgerReader(kv, MOUNT).verify(pinned(transit, "dev"))
    assert [s for _, s, _ in report.damaged] == [2] and not report.warnings


def test_crash_resume_finds_its_entry_past_a_damaged_slot(kv: FakeKV, transit: FakeTransit) -> None:
    ledger = signed(kv, transit)
    ledger.append("rotation", actor="c")
    mark = ledger.mark()
    kv.write(MOUNT, _slot(DEV, 2), {"entry": "garbage"}, cas=0)
    first = signed(kv, transit).append("rotation", actor="c", run="once", after=mark)
    again = signed(kv, transit).append("rotation", actor="c", run="once", after=mark,
                                       find=lambda e: e.run == "once")
    assert again == first and [e.run for e in LedgerReader(kv, MOUNT).entries()].count("once") == 1


def test_old_layout_entries_stay_readable_next_to_partitions(kv: FakeKV, transit: FakeTransit) -> None:
    fill(kv, 2)  # the previous release's one chain
    signed(kv, transit).append("rotation", actor="c", secret="new")
    reader = LedgerReader(kv, MOUNT)
    assert [e.secret for e in reader.entries()] == ["s0", "s1", "new"]
    assert reader.partitions() == [None, DEV]
    report = reader.verify(pinned(transit, "dev"))
    assert report.ok and report.entries == 3
    assert report.warnings == ["2 entries of the previous release's layout are unsigned (hash chain only); "
                               "`chamberlain upgrade` moves new entries to signed partitions"]


def test_a_book_hands_out_one_writer_per_environment(kv: FakeKV, transit: FakeTransit) -> None:
    book = Ledger(kv, MOUNT, Clock(), cluster="dev1", signer=TransitSigner(transit))
    with pytest.raises(TypeError):
        book.append("rotation", actor="c")  # every entry belongs to an environment's partition
    assert book.for_environment("dev") is book.for_environment("dev")
    book.for_environment("dev").append("rotation", actor="c")
    book.for_environment("prod").append("rotation", actor="c")
    assert LedgerReader(kv, MOUNT).partitions() == [DEV, Partition("prod", "dev1")]


def test_a_transit_key_of_another_environment_is_refused() -> None:
    transit = FakeTransit()
    transit.ensure_key(TRANSIT_MOUNT, ledger_key("prod"), "ed25519")
    transit.allowed = {("sign", TRANSIT_MOUNT, ledger_key("dev"))}  # a dev orchestrator's policy
    with pytest.raises(Forbidden):
        signed(FakeKV(), transit, Partition("prod", "dev1")).append("rotation", actor="c")


def test_pinned_keys_file_round_trips_and_refuses_bad_input(tmp_path: Path, transit: FakeTransit) -> None:
    keys = pinned(transit, "dev", "prod")
    path = tmp_path / "ledger-keys.yaml"
    path.write_text(keys.render())
    assert "-----BEGIN PUBLIC KEY-----" in path.read_text()
    assert load_keys(path).keys.keys() == keys.keys.keys()
    for text, message in [("a: &x 1\nb: *x\n", "anchors"), ("ledgerKeys: [1]\n", "expected a mapping"),
                          ("ledgerKeys:\n  k:\n    '1': nope\n", "not a PEM public key"), (": :\n  -", "not valid")]:
        path.write_text(text)
        with pytest.raises(UsageError, match=message):
            load_keys(path)


# ------------------------------------------------------------------ issue 16: group commit


class BatchingTransit(FakeTransit):
    """A transit engine that also signs a batch in one call (as the real one does with ``batch_input``)."""

    def sign_batch(self, mount: str, name: str, items: list[bytes]) -> list[str]:
        self.calls["sign_batch"] += 1
        signatures = [super(BatchingTransit, self).sign(mount, name, item) for item in items]
        self.calls["sign"] -= len(items)
        return signatures


def test_append_many_chains_signs_once_and_moves_the_head_once(kv: FakeKV) -> None:
    transit = BatchingTransit()
    transit.ensure_key(TRANSIT_MOUNT, ledger_key("dev"), "ed25519")
    ledger = signed(kv, transit)
    ledger.append("rotation", actor="c", secret="first")
    before = dict(kv.calls)
    drafts = [make_draft("value-created", actor="c", secret=f"s{i}", details={"i": str(i)}) for i in range(5)]
    entries = ledger.append_many(drafts)
    assert [e.seq for e in entries] == [2, 3, 4, 5, 6] and [e.secret for e in entries] == [f"s{i}" for i in range(5)]
    assert transit.calls["sign_batch"] == 1 and transit.calls["sign"] == 1  # the first entry's own signature
    assert kv.calls["write"] - before["write"] == 6, "five entries and one head write"
    assert kv.calls["read"] == before.get("read", 0), "the head this instance wrote is known: no read"
    report = LedgerReader(kv, MOUNT).verify(pinned(transit, "dev"))
    assert report.ok and report.entries == 6 and not report.warnings
    assert ledger.append("rotation", actor="c").seq == 7, "the next append chains after the group"


def test_append_many_walks_past_another_writer_mid_group(kv: FakeKV, transit: FakeTransit) -> None:
    ledger = signed(kv, transit)
    ledger.append("rotation", actor="c", secret="first")
    other = signed(kv, transit)
    real_write = kv.write
    taken = False

    def interleaving(mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        nonlocal taken
        if path == _slot(DEV, 3) and not taken:
            taken = True
            other.append("rotation", actor="other", secret="theirs")  # takes seq 3 while the group is under way
        return real_write(mount, path, data, cas)

    kv.write = interleaving  # type: ignore[method-assign]
    entries = ledger.append_many([make_draft("value-created", actor="c", secret=f"s{i}") for i in range(4)])
    kv.write = real_write  # type: ignore[method-assign]
    assert [e.seq for e in entries] == [2, 4, 5, 6]
    report = LedgerReader(kv, MOUNT).verify(pinned(transit, "dev"))
    assert report.ok, report.problems
    assert [e.secret for e in LedgerReader(kv, MOUNT).entries()] == ["first", "s0", "theirs", "s1", "s2", "s3"]


def test_append_many_of_nothing_writes_nothing(kv: FakeKV, transit: FakeTransit) -> None:
    assert signed(kv, transit).append_many([]) == [] and kv.calls["write"] == 0 and kv.calls["read"] == 0
