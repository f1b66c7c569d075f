"""The controller's shared ledger: appends from worker threads chain without races, and a finalize resumed after
a crash still finds the entry an earlier process appended after the run's mark."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

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


# ------------------------------------------------------------------------------------------------ group commit

class SlowKV(FakeKV):
    """Each write takes a millisecond (a real authority takes several): appends from worker threads overlap."""

    def write(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.001)
        return super().write(*args, **kwargs)


class CountingSigner:
    def __init__(self, signer: Any) -> None:
        self.signer, self.requests = signer, 0

    def sign(self, key: str, message: bytes) -> str:
        self.requests += 1
        return str(self.signer.sign(key, message))

    def sign_many(self, key: str, messages: list[bytes]) -> list[str]:
        self.requests += 1
        return list(self.signer.sign_many(key, messages))


def signed_book(kv: FakeKV) -> tuple[SharedLedger, CountingSigner, Any]:
    from chamberlain.audit.ledger import TransitSigner
    from chamberlain.authority.fake import FakeTransit
    from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key

    transit = FakeTransit()
    transit.ensure_key(TRANSIT_MOUNT, ledger_key("dev"), "ed25519")
    signer = CountingSigner(TransitSigner(transit))
    return SharedLedger(kv, "secret", FakeClock(), cluster="dev1", signer=signer), signer, transit


def verified(kv: FakeKV, transit: Any) -> Any:
    from chamberlain.audit.keys import PinnedKeys
    from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key

    keys = PinnedKeys.from_transit({ledger_key("dev"): transit.public_keys(TRANSIT_MOUNT, ledger_key("dev"))})
    return LedgerReader(kv, "secret").verify(keys)


def test_appends_that_wait_for_the_writer_are_committed_together_and_the_chain_verifies() -> None:
    kv = SlowKV()
    book, signer, transit = signed_book(kv)
    dev = book.for_environment("dev")
    dev.append("rotation", actor="t", run="warm-up")
    writes, requests = kv.calls["write"], signer.requests
    entries: dict[str, int] = {}

    def worker(w: int) -> None:
        for i in range(15):
            entries[f"r{w}-{i}"] = dev.append("rotation", actor="t", run=f"r{w}-{i}").seq

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = verified(kv, transit)
    assert report.ok and report.entries == 121, report.problems
    assert sorted(entries.values()) == list(range(2, 122)), "each append got its own entry, in one chain"
    heads = kv.calls["write"] - writes - 120
    assert heads < 60 and signer.requests - requests < 60, (heads, signer.requests - requests)


def test_a_group_meeting_another_writers_entry_walks_past_it_and_finds_its_own_earlier_attempt() -> None:
    """Grouped appends chain after this process's tail; another replica appended there meanwhile (and a crashed
    attempt of one of the group's runs sits after its mark): each is found or chained after, nothing twice."""
    from chamberlain.audit.ledger import make_draft
    from chamberlain.controller.ledger import _Waiting

    kv = FakeKV()
    shared = SharedLedger(kv, "secret", FakeClock())
    shared.append("rotation", actor="t", run="first")
    mark = shared.mark()
    other = Ledger(kv, "secret", FakeClock())
    other.append("rotation", actor="other-replica", run="theirs")
    crashed = other.append("rotation", actor="t", run="r-crashed")  # an earlier attempt, by a crashed leader

    def ours(e: object) -> bool:
        return getattr(e, "run", None) == "r-crashed"

    group = [_Waiting(make_draft("rotation", actor="t", run="r-new"), None, None),
             _Waiting(make_draft("rotation", actor="t", run="r-crashed"), mark, ours),
             _Waiting(make_draft("rotation", actor="t", run="r-last"), None, None)]
    with shared._lock:
        shared._commit(group)
    results = [w.result() for w in group]
    assert results[1].seq == crashed.seq, "found, not appended again"
    runs = [e.run for e in LedgerReader(kv, "secret").entries()]
    assert runs.count("r-crashed") == 1 and runs.count("r-new") == 1 and runs.count("r-last") == 1, runs
    assert LedgerReader(kv, "secret").verify().ok


def test_a_failed_group_commit_fails_every_waiter_and_the_retry_finds_what_was_written() -> None:
    from chamberlain.audit.ledger import make_draft
    from chamberlain.authority.errors import AuthorityUnavailable
    from chamberlain.controller.ledger import _Waiting

    class FlakyKV(FakeKV):
        fail_at: int | None = None

        def write(self, *args: Any, **kwargs: Any) -> Any:
            if self.fail_at is not None and self.calls["write"] >= self.fail_at:
                self.fail_at = None
                raise AuthorityUnavailable("authority unreachable")
            return super().write(*args, **kwargs)

    kv = FlakyKV()
    shared = SharedLedger(kv, "secret", FakeClock())
    shared.append("rotation", actor="t", run="first")
    mark = shared.mark()
    kv.fail_at = kv.calls["write"] + 1  # the second entry of the group fails: the first is written, no head

    def run_is(name: str) -> Any:
        return lambda e: getattr(e, "run", None) == name

    group = [_Waiting(make_draft("rotation", actor="t", run=f"g{i}"), mark, run_is(f"g{i}")) for i in range(3)]
    with shared._lock:
        shared._commit(group)
    for w in group:
        with pytest.raises(AuthorityUnavailable):
            w.result()
    again = [shared.append("rotation", actor="t", run=f"g{i}", after=mark, find=run_is(f"g{i}")) for i in range(3)]
    runs = [e.run for e in LedgerReader(kv, "secret").entries()]
    assert runs == ["first", "g0", "g1", "g2"], runs
    assert again[0].seq == 2 and LedgerReader(kv, "secret").verify().ok



def test_a_run_retried_in_a_group_after_another_group_failed_is_not_appended_twice() -> None:
    """R's entry is written, then its run record write fails (R will retry). During the outage a group of two
    fails before writing anything. R's retry, grouped with another run, must find its entry, not append a second
    one (review finding: the failed group left the remembered tail in place, so the retry chained there unchecked)."""
    from chamberlain.audit.ledger import make_draft
    from chamberlain.controller.ledger import _Waiting

    kv = FakeKV()
    shared = SharedLedger(kv, "secret", FakeClock())
    shared.append("rotation", actor="t", run="warm-up")
    mark = shared.mark()

    def ours(e: object) -> bool:
        return getattr(e, "run", None) == "R"

    first = shared.append("rotation", actor="t", run="R", after=mark, find=ours)
    write = kv.write

    def down(*_: Any, **__: Any) -> Any:
        raise ConnectionError("authority down")

    kv.write = down  # type: ignore[method-assign]
    failed = [_Waiting(make_draft("rotation", actor="t", run=f"x{i}"), None, None) for i in range(2)]
    with shared._lock:
        shared._commit(failed)
    assert all(w.settled for w in failed)
    kv.write = write  # type: ignore[method-assign]
    retry = [_Waiting(make_draft("rotation", actor="t", run="R"), mark, ours),
             _Waiting(make_draft("rotation", actor="t", run="y"), None, None)]
    with shared._lock:
        shared._commit(retry)
    assert retry[0].result().seq == first.seq
    runs = [e.run for e in LedgerReader(kv, "secret").entries()]
    assert runs.count("R") == 1 and runs.count("y") == 1 and LedgerReader(kv, "secret").verify().ok, runs


def test_a_mark_is_answered_while_a_group_commit_is_in_flight_and_the_entry_still_chains_after_it() -> None:
    kv = FakeKV()
    shared = SharedLedger(kv, "secret", FakeClock())
    shared.append("rotation", actor="t", run="warm-up")
    committing = threading.Event()
    release = threading.Event()

    def slow_commit() -> None:
        with shared._lock:  # what a group commit holds while it signs and writes
            committing.set()
            release.wait(5)

    writer = threading.Thread(target=slow_commit)
    writer.start()
    assert committing.wait(5)
    started = time.monotonic()
    mark = shared.mark()
    assert time.monotonic() - started < 0.5, "a run's restart step does not wait for the other runs' commit"
    release.set()
    writer.join()
    assert mark.seq == 1
    shared.append("rotation", actor="t", run="other")  # the ledger moves on past the mark
    entry = shared.append("rotation", actor="t", run="mine", after=mark,
                          find=lambda e: getattr(e, "run", None) == "mine")
    again = shared.append("rotation", actor="t", run="mine", after=mark,
                          find=lambda e: getattr(e, "run", None) == "mine")
    assert entry.seq == again.seq == 3, "found after the older mark, never appended twice"
    assert LedgerReader(kv, "secret").verify().ok
