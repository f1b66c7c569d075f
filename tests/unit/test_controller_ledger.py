"""The controller's shared ledger: appends from worker threads chain without races, and a finalize resumed after
a crash still finds the entry an earlier process appended after the run's mark."""

from __future__ import annotations

import threading

from chamberlain.audit.ledger import Ledger, LedgerReader
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock
from chamberlain.controller.ledger import SharedLedger


def test_parallel_appends_chain_and_cost_two_writes_each() -> None:
    kv = FakeKV()
    shared = SharedLedger(kv, "secret", FakeClock())
    shared.append("rotation", actor="t", run="warm-up")
    before = dict(kv.calls)
    threads = [threading.Thread(target=lambda i=i: shared.append("rotation", actor="t", run=f"r{i}"))
               for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kv.calls["write"] - before.get("write", 0) == 80 and kv.calls["read"] == before.get("read", 0)
    verified = LedgerReader(kv, "secret").verify()
    assert verified.ok and verified.entries == 41


def test_an_entry_appended_by_a_crashed_process_after_the_mark_is_found_not_duplicated() -> None:
    kv = FakeKV()
    old_process = Ledger(kv, "secret", FakeClock())
    old_process.append("rotation", actor="t", run="other")
    mark = old_process.mark()
    crashed = old_process.append("rotation", actor="t", run="r-crashed")  # then the process died

    shared = SharedLedger(kv, "secret", FakeClock())
    shared.append("rotation", actor="t", run="new-process")  # the new leader appended since

    def ours(e: object) -> bool:
        return getattr(e, "run", None) == "r-crashed"

    found = shared.append("rotation", actor="t", run="r-crashed", after=mark, find=ours)
    assert found.seq == crashed.seq
    entries = LedgerReader(kv, "secret").entries()
    assert [e.run for e in entries].count("r-crashed") == 1 and LedgerReader(kv, "secret").verify().ok


def test_the_controllers_book_writes_one_signed_partition_per_environment() -> None:
    """In a cluster hosting two environments, each run appends to (environment, cluster), signed with that
    environment's key; each partition is its own serialized writer, and every chain verifies."""
    from chamberlain.audit.keys import PinnedKeys
    from chamberlain.audit.ledger import Partition, TransitSigner
    from chamberlain.authority.fake import FakeTransit
    from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key

    kv, transit = FakeKV(), FakeTransit()
    for env in ("dev", "preview"):
        transit.ensure_key(TRANSIT_MOUNT, ledger_key(env), "ed25519")
    book = SharedLedger(kv, "secret", FakeClock(), cluster="dev1", signer=TransitSigner(transit))
    dev = book.for_environment("dev")
    assert isinstance(dev, SharedLedger) and dev is book.for_environment("dev")
    threads = [threading.Thread(target=lambda i=i: book.for_environment(("dev", "preview")[i % 2]).append(
        "rotation", actor="t", run=f"r{i}")) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = LedgerReader(kv, "secret")
    assert reader.partitions() == [Partition("dev", "dev1"), Partition("preview", "dev1")]
    keys = PinnedKeys.from_transit({ledger_key(e): transit.public_keys(TRANSIT_MOUNT, ledger_key(e))
                                    for e in ("dev", "preview")})
    report = reader.verify(keys)
    assert report.ok and report.entries == 20, report.problems
