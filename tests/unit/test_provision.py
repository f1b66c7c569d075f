"""Initial runtime values with a fake Vault: created once with check-and-set, recorded with the policy in force,
ledgered once, never overwritten — across crashes at every step and races with other writers."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.keys import PinnedKeys
from chamberlain.audit.ledger import Ledger, LedgerReader, TransitSigner
from chamberlain.authority.errors import AuthorityUnavailable
from chamberlain.authority.fake import FakeKV, FakeTransit
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.intent.loader import Repository
from chamberlain.intent.model import AnyGenerator, PasswordGenerator
from chamberlain.intent.paths import TRANSIT_MOUNT, VaultPath, ledger_key
from chamberlain.provision import ProvisionError, ProvisionUnit, Step, next_step, provision_units, run_provision
from chamberlain.provision import workflow as wf
from chamberlain.provision.workflow import Observed
from chamberlain.service import load_valid
from tests.conftest import EXAMPLES

CANARY = "canary-Pv7Yq3Mx8Rb2Lk5Wd0Hn"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
POINTS = ["provision.create", "provision.record", "provision.ledger"]


class Crash(BaseException):
    pass


@pytest.fixture(scope="module")
def repo() -> Repository:
    return load_valid(EXAMPLES / "acme")


@pytest.fixture
def canary_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every generated value is the canary, so a leak anywhere is caught by a plain substring scan."""
    monkeypatch.setattr(wf, "generate_values", lambda generators: {k: f"{CANARY}-{k}" for k in generators})


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wf, "checkpoint", lambda point: None)


def run(units: list[ProvisionUnit], kv: FakeKV, run_id: str = "run-1") -> list[wf.ProvisionOutcome]:
    return run_provision(units, kv, Ledger(kv, "secret", clock=FakeClock(T0)), actor="test", run=run_id,
                         clock=FakeClock(T0))


def scan(kv: FakeKV, *texts: object) -> None:
    blobs = [e.model_dump_json() for e in LedgerReader(kv, "secret").entries()]
    blobs += [json.dumps(s.custom) for s in kv._store.values()]
    blobs += [str(t) for t in texts]
    for blob in blobs:
        assert CANARY not in blob


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(Observed(False, False, False, False), Step.CREATE, id="absent->create"),
        pytest.param(Observed(True, False, False, False), Step.RECORD, id="unrecorded->record"),
        pytest.param(Observed(True, True, True, False), Step.LEDGER, id="recorded->ledger"),
        pytest.param(Observed(True, True, True, True), Step.DONE, id="ledgered->done"),
        pytest.param(Observed(True, True, False, False), Step.DONE, id="someone-elses-record->done"),
    ],
)
def test_next_step(state: Observed, expected: Step) -> None:
    assert next_step(state) is expected


def test_units_one_per_generated_intent_and_environment(repo: Repository) -> None:
    units = provision_units(repo)
    paths = [u.vault.full for u in units]
    assert len(paths) == len(set(paths))
    webhook = [u for u in units if u.intent == "argocd-webhook"]
    assert sorted(u.environment for u in webhook) == ["dev", "prod"]
    assert all(u.generators for u in units)
    assert {u.environment for u in provision_units(repo, "dev")} == {"dev"}


def test_creates_records_and_ledgers(repo: Repository, canary_values: None, quiet: None) -> None:
    kv = FakeKV()
    units = provision_units(repo, "dev")
    outcomes = run(units, kv)
    assert [o.result for o in outcomes] == ["created"] * len(units)
    ledger = LedgerReader(kv, "secret")
    assert ledger.verify().ok
    for unit, outcome in zip(units, outcomes, strict=True):
        current = kv.read(unit.vault.mount, unit.vault.path)
        assert current is not None and current.version == 1
        assert set(current.data) == set(unit.generators)
        custom = kv.read_metadata(unit.vault.mount, unit.vault.path).custom  # type: ignore[union-attr]
        assert custom[wk.AUTHORITY] == "vault" and custom[wk.CREATED_BY] == "chamberlain"
        assert custom[wk.INTENT] == unit.intent and custom[wk.CREATED_AT] == "2026-01-02T03:04:05Z"
        assert custom["policy.name"] == unit.policy_name and custom["policy.type"]
        entries = [e for e in ledger.for_secret(unit.intent) if e.event == "value-created"]
        assert len(entries) == 1 and entries[0].details["origin"] == "created"
        assert custom[wk.LEDGER_SEQ] == str(entries[0].seq) == str(outcome.ledger_seq)
    scan(kv, *(o.as_dict() for o in outcomes))


def test_real_generators_produce_values(repo: Repository, quiet: None) -> None:
    kv = FakeKV()
    unit = next(u for u in provision_units(repo, "dev") if u.intent == "argocd-webhook")
    run([unit], kv)
    current = kv.read(unit.vault.mount, unit.vault.path)
    assert current is not None and len(current.data["hmac"]) == 64  # 32 bytes, hex


def test_rerun_is_a_noop(repo: Repository, canary_values: None, quiet: None) -> None:
    kv = FakeKV()
    units = provision_units(repo, "dev")
    run(units, kv)
    calls = dict(kv.calls)
    again = run(units, kv, "run-2")
    assert {o.result for o in again} == {"exists"} and all(o.steps == [] for o in again)
    assert {op: n - calls.get(op, 0) for op, n in kv.calls.items() if n != calls.get(op, 0)} == {
        "read_metadata": len(units)}, "one metadata read per secret, nothing else"


def test_existing_values_are_left_untouched(repo: Repository, canary_values: None, quiet: None) -> None:
    kv = FakeKV()
    unit = provision_units(repo, "dev")[0]
    kv.write(unit.vault.mount, unit.vault.path, {"theirs": "x"}, cas=0)
    kv.update_custom_metadata(unit.vault.mount, unit.vault.path, {"authority": "vault", "created-by": "rotation"})
    [outcome] = run([unit], kv)
    assert outcome.result == "exists"
    current = kv.read(unit.vault.mount, unit.vault.path)
    assert current is not None and dict(current.data) == {"theirs": "x"} and current.version == 1
    assert LedgerReader(kv, "secret").entries() == []


def test_losing_the_create_race_keeps_the_winners_value(repo: Repository, canary_values: None, quiet: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    kv = FakeKV()
    unit = provision_units(repo, "dev")[0]
    real_write = kv.write

    def racing_write(mount: str, path: str, data: dict[str, str], cas: int) -> int:
        if path == unit.vault.path and kv.read(mount, path) is None:
            real_write(mount, path, {"winner": "w"}, cas=0)  # another writer gets there first
        return real_write(mount, path, data, cas)

    monkeypatch.setattr(kv, "write", racing_write)
    [outcome] = run([unit], kv)
    current = kv.read(unit.vault.mount, unit.vault.path)
    assert current is not None and dict(current.data) == {"winner": "w"} and current.version == 1
    assert outcome.result == "exists"
    assert LedgerReader(kv, "secret").entries()[0].details["origin"] == "found"


@pytest.mark.parametrize("point", POINTS)
def test_crash_at_every_step_then_rerun_converges(repo: Repository, canary_values: None, point: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    kv = FakeKV()
    unit = provision_units(repo, "dev")[0]

    def checkpoint(name: str) -> None:
        if name == point:
            raise Crash(name)

    monkeypatch.setattr(wf, "checkpoint", checkpoint)
    with pytest.raises(Crash):
        run([unit], kv)
    monkeypatch.setattr(wf, "checkpoint", lambda name: None)
    run([unit], kv, "run-2")
    current = kv.read(unit.vault.mount, unit.vault.path)
    assert current is not None and current.version == 1, "the value is never regenerated"
    ledger = LedgerReader(kv, "secret")
    assert len([e for e in ledger.entries() if e.event == "value-created"]) == 1
    assert ledger.verify().ok
    custom = kv.read_metadata(unit.vault.mount, unit.vault.path).custom  # type: ignore[union-attr]
    assert custom[wk.AUTHORITY] == "vault" and custom[wk.LEDGER_SEQ] == "1"
    scan(kv)


def test_metadata_without_a_version_counts_against_the_key_limit(repo: Repository, canary_values: None,
                                                                  quiet: None) -> None:
    """KV v2 keeps metadata with no version (`kv metadata put`): the create's check-and-set 0 succeeds over it, and
    the record's PATCH (which the servers merge without counting keys) is checked against the map the create's
    write answered, never an empty one."""
    from chamberlain.authority.fake import _Secret

    kv = FakeKV()
    unit = provision_units(repo, "dev")[0]
    kv._store[(unit.vault.mount, unit.vault.path)] = _Secret(custom={f"team.k{i}": "v" for i in range(60)})
    with pytest.raises(ProvisionError, match="cannot record the new secret"):
        run([unit], kv)
    assert len(kv._store[(unit.vault.mount, unit.vault.path)].custom) == 60, "nothing recorded past the limit"


def test_vault_down_is_a_clean_error(repo: Repository, canary_values: None, quiet: None) -> None:
    kv = FakeKV()
    kv.down = True
    with pytest.raises(ProvisionError, match="re-run to resume") as err:
        run(provision_units(repo, "dev")[:1], kv)
    assert CANARY not in str(err.value)


def test_dry_run_changes_nothing(repo: Repository, canary_values: None, quiet: None) -> None:
    kv = FakeKV()
    outcomes = run_provision(provision_units(repo, "dev"), kv, Ledger(kv, "secret", FakeClock(T0)), actor="t", run="r",
                             clock=FakeClock(T0),
                             dry_run=True)
    assert {o.result for o in outcomes} == {"planned"}
    assert outcomes[0].steps == ["create", "record", "ledger"]
    assert kv.calls["write"] == 0


# ------------------------------------------------------------------ issue 16: many secrets at once


def synthetic(n: int, environment: str = "dev") -> list[ProvisionUnit]:
    generators: dict[str, AnyGenerator] = {"password": PasswordGenerator(type="password", length=16)}
    return [ProvisionUnit(f"s{i:04d}", environment, VaultPath("secret", f"{environment}/team/s{i:04d}"),
                          generators, None, None) for i in range(n)]


def signed_book(kv: FakeKV, transit: FakeTransit) -> Ledger:
    return Ledger(kv, "secret", FakeClock(T0), signer=TransitSigner(transit), cluster="dev1")


@pytest.fixture
def transit() -> FakeTransit:
    t = FakeTransit()
    t.ensure_key(TRANSIT_MOUNT, ledger_key("dev"), "ed25519")
    return t


def test_parallel_run_creates_each_once_and_the_chain_verifies(canary_values: None, quiet: None,
                                                               transit: FakeTransit) -> None:
    kv = FakeKV()
    units = synthetic(150)
    outcomes = run_provision(units, kv, signed_book(kv, transit), actor="t", run="r", clock=FakeClock(T0),
                             workers=6)
    assert [o.unit for o in outcomes] == units, "outcomes in the order of the units"
    assert {o.result for o in outcomes} == {"created"} and all(o.steps == ["create", "record", "ledger"]
                                                               for o in outcomes)
    reader = LedgerReader(kv, "secret")
    keys = PinnedKeys.from_transit({ledger_key("dev"): transit.public_keys(TRANSIT_MOUNT, ledger_key("dev"))})
    report = reader.verify(keys)
    assert report.ok and report.entries == 150 and not report.warnings, report.problems
    by_secret = {e.secret: e for e in reader.entries()}
    for unit, outcome in zip(units, outcomes, strict=True):
        custom = kv.read_metadata("secret", unit.vault.path).custom  # type: ignore[union-attr]
        assert custom[wk.LEDGER_SEQ] == str(by_secret[unit.intent].seq) == str(outcome.ledger_seq)
        assert int(custom[wk.LEDGER_AFTER]) < by_secret[unit.intent].seq
    assert kv.calls["write"] < 150 * 3, "entries went in groups: fewer head writes than entries"
    again = run_provision(units, kv, signed_book(kv, transit), actor="t", run="r2", clock=FakeClock(T0), workers=6)
    assert {o.result for o in again} == {"exists"}
    scan(kv, *(o.as_dict() for o in outcomes))


def test_requests_per_new_secret(canary_values: None, quiet: None, transit: FakeTransit) -> None:
    """One metadata read, the value, two metadata PATCHes, the entry, the head (read once, written once)."""
    kv = FakeKV()
    [outcome] = run_provision(synthetic(1), kv, signed_book(kv, transit), actor="t", run="r", clock=FakeClock(T0))
    assert outcome.result == "created"
    assert dict(kv.calls) == {"read_metadata": 1, "write": 3, "patch_custom_metadata": 2, "read": 1}
    assert transit.calls["sign"] == 1


def test_a_folder_of_new_secrets_is_listed_once_instead_of_read_per_secret(canary_values: None, quiet: None,
                                                                          transit: FakeTransit) -> None:
    """A cold run over many secrets of one folder: one listing, no metadata read per secret; a rerun reads each
    (the listing names them) and writes nothing."""
    kv = FakeKV()
    units = synthetic(40)
    run_provision(units, kv, signed_book(kv, transit), actor="t", run="r", clock=FakeClock(T0), workers=4)
    assert kv.calls["list"] == 1 and kv.calls["read_metadata"] == 0
    writes = kv.calls["write"] + kv.calls["patch_custom_metadata"]
    again = run_provision(units, kv, signed_book(kv, transit), actor="t", run="r2", clock=FakeClock(T0), workers=4)
    assert {o.result for o in again} == {"exists"}
    assert kv.calls["write"] + kv.calls["patch_custom_metadata"] == writes, "a rerun writes nothing"
    assert kv.calls["read_metadata"] == 40


def test_a_value_written_after_the_listing_stands(canary_values: None, quiet: None, transit: FakeTransit,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing is a snapshot: another writer creating a listed-absent secret before this run's create wins the
    check-and-set 0, and its value is adopted, as without a listing."""
    kv = FakeKV()
    units = synthetic(8)
    late = units[5]
    real_list = kv.list

    def list_then_race(mount: str, prefix: str) -> list[str]:
        listed = real_list(mount, prefix)
        kv.write(mount, late.vault.path, {"winner": "w"}, cas=0)
        return listed

    monkeypatch.setattr(kv, "list", list_then_race)
    outcomes = run_provision(units, kv, signed_book(kv, transit), actor="t", run="r", clock=FakeClock(T0), workers=3)
    by_unit = {o.unit.intent: o for o in outcomes}
    assert by_unit[late.intent].result == "exists"
    current = kv.read("secret", late.vault.path)
    assert current is not None and dict(current.data) == {"winner": "w"} and current.version == 1
    assert sum(o.result == "created" for o in outcomes) == 7


def test_a_folder_that_cannot_be_listed_is_read_per_secret(canary_values: None, quiet: None,
                                                           transit: FakeTransit,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from chamberlain.authority.errors import Forbidden

    kv = FakeKV()
    units = synthetic(6)

    def refused(mount: str, prefix: str) -> list[str]:
        raise Forbidden(f"list {mount}/{prefix}")

    monkeypatch.setattr(kv, "list", refused)
    outcomes = run_provision(units, kv, signed_book(kv, transit), actor="t", run="r", clock=FakeClock(T0), workers=2)
    assert {o.result for o in outcomes} == {"created"} and kv.calls["read_metadata"] == 6


def test_resume_looks_only_after_the_mark(canary_values: None, monkeypatch: pytest.MonkeyPatch,
                                         transit: FakeTransit) -> None:
    kv = FakeKV()
    units = synthetic(30)
    book = signed_book(kv, transit)
    run_provision(units[:20], kv, book, actor="t", run="r", clock=FakeClock(T0))
    crashed = units[25]

    def checkpoint(name: str) -> None:
        if name == "provision.ledger":
            raise Crash(name)

    monkeypatch.setattr(wf, "checkpoint", checkpoint)
    with pytest.raises(Crash):
        run_provision([crashed], kv, signed_book(kv, transit), actor="t", run="r2", clock=FakeClock(T0))
    monkeypatch.setattr(wf, "checkpoint", lambda name: None)
    before = dict(kv.calls)
    [outcome] = run_provision([crashed], kv, signed_book(kv, transit), actor="t", run="r3", clock=FakeClock(T0))
    assert outcome.result == "exists" and outcome.steps == ["ledger"] and outcome.ledger_seq == 21
    assert kv.calls["list"] == before.get("list", 0), "no walk over the whole ledger"
    assert kv.calls["read"] - before.get("read", 0) == 1, "one slot read: the entry right after the mark"
    assert len(LedgerReader(kv, "secret").entries()) == 21


def test_a_record_without_a_mark_is_looked_up_in_the_whole_ledger(canary_values: None, quiet: None,
                                                                  transit: FakeTransit) -> None:
    kv = FakeKV()
    [unit] = synthetic(1)
    run_provision([unit], kv, signed_book(kv, transit), actor="t", run="r", clock=FakeClock(T0))
    # As an earlier release left it after a crash between the ledger entry and its note: no mark, no seq.
    secret = kv._store[("secret", unit.vault.path)]
    secret.custom = {k: v for k, v in secret.custom.items() if k not in (wk.LEDGER_AFTER, wk.LEDGER_SEQ)}
    [outcome] = run_provision([unit], kv, signed_book(kv, transit), actor="t", run="r2", clock=FakeClock(T0))
    assert outcome.steps == ["ledger"] and outcome.ledger_seq == 1
    assert len(LedgerReader(kv, "secret").entries()) == 1


def test_a_failure_stops_new_units_and_a_rerun_converges(canary_values: None, quiet: None,
                                                         transit: FakeTransit) -> None:
    kv = FakeKV()
    units = synthetic(60)
    real_write = kv.write
    failed = units[10].vault.path

    def flaky(mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        if path == failed:
            raise AuthorityUnavailable("fake: connection reset")
        return real_write(mount, path, data, cas)

    kv.write = flaky  # type: ignore[method-assign]
    with pytest.raises(ProvisionError, match=r"s0010 .* stopped at step create: .*re-run to resume"):
        run_provision(units, kv, signed_book(kv, transit), actor="t", run="r", clock=FakeClock(T0), workers=4)
    started = sum(kv.read_metadata("secret", u.vault.path) is not None for u in units)
    assert started < len(units), "units not started when the failure came stay untouched"
    kv.write = real_write  # type: ignore[method-assign]
    again = run_provision(units, kv, signed_book(kv, transit), actor="t", run="r2", clock=FakeClock(T0), workers=4)
    assert all(o.ledger_seq for o in again)
    reader = LedgerReader(kv, "secret")
    assert reader.verify().ok and sorted(e.secret or "" for e in reader.entries()) == [u.intent for u in units]


@pytest.mark.parametrize("point", POINTS)
def test_parallel_crash_then_rerun_converges(canary_values: None, point: str, monkeypatch: pytest.MonkeyPatch,
                                             transit: FakeTransit) -> None:
    kv = FakeKV()
    units = synthetic(40)
    seen = 0
    lock = threading.Lock()

    def checkpoint(name: str) -> None:
        nonlocal seen
        if name == point:
            with lock:
                seen += 1
                if seen == 15:
                    raise Crash(name)

    monkeypatch.setattr(wf, "checkpoint", checkpoint)
    with pytest.raises(Crash):
        run_provision(units, kv, signed_book(kv, transit), actor="t", run="r", clock=FakeClock(T0), workers=5)
    monkeypatch.setattr(wf, "checkpoint", lambda name: None)
    run_provision(units, kv, signed_book(kv, transit), actor="t", run="r2", clock=FakeClock(T0), workers=5)
    reader = LedgerReader(kv, "secret")
    assert reader.verify().ok
    assert sorted(e.secret or "" for e in reader.entries()) == [u.intent for u in units], "one entry each"
    for unit in units:
        current = kv.read("secret", unit.vault.path)
        assert current is not None and current.version == 1, "no value is ever regenerated"


def test_workers_must_be_positive() -> None:
    with pytest.raises(UsageError):
        run_provision([], FakeKV(), Ledger(FakeKV(), "secret", FakeClock(T0)), actor="t", run="r",
                      clock=FakeClock(T0), workers=0)
