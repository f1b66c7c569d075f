"""Decommissioning (spec.retire) with a fake KV v2 (FakeKV, in memory) and a fake clock: the pure step table, the
soft-delete / undo / purge workflow with its ledger entries, resumption after a crash at each step, the removed
intent check of ``plan``, and the ``Retiring`` status condition and its Events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerReader
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock
from chamberlain.controller import status as st
from chamberlain.intent.model import Retire, SecretIntent
from chamberlain.intent.paths import VaultPath
from chamberlain.lifecycle import retire as lr
from chamberlain.lifecycle.retire import Observed, Step, next_step

DAY = date(2026, 3, 1)
AT = datetime(2026, 3, 1, tzinfo=UTC)
RETIRE = Retire(after=DAY, undo_window=timedelta(days=7), reason="replaced by payments-db-v2")
PATH = VaultPath("secret", "prod/team-payments/legacy-token")
T = lr.RetireTarget("legacy-token", "prod", PATH, RETIRE)
MARKED = AT + timedelta(hours=1)


@pytest.mark.parametrize(("observed", "now", "step"), [
    pytest.param(Observed(exists=False), AT, Step.NONE, id="nothing-in-the-authority"),
    pytest.param(Observed(exists=True, live=(1, 2)), AT - timedelta(seconds=1), Step.SCHEDULED, id="before-the-day"),
    pytest.param(Observed(exists=True, live=(1, 2)), AT, Step.MARK, id="on-the-day-mark-first"),
    pytest.param(Observed(exists=True, live=(1, 2), marked_at=MARKED, marked_versions=(1, 2)), AT, Step.DELETE,
                 id="marked-then-soft-delete"),
    pytest.param(Observed(exists=True, marked_at=MARKED, marked_versions=(1, 2)), AT, Step.LEDGER,
                 id="soft-deleted-then-ledger"),
    pytest.param(Observed(exists=True, marked_at=MARKED, marked_versions=(1, 2), ledgered=True),
                 MARKED + timedelta(days=7) - timedelta(seconds=1), Step.WAITING, id="undo-window-open"),
    pytest.param(Observed(exists=True, marked_at=MARKED, marked_versions=(1, 2), ledgered=True),
                 MARKED + timedelta(days=7), Step.PURGE, id="undo-window-closed-purge"),
    pytest.param(Observed(exists=True, live=(1, 2), undone_for="2026-03-01"), AT + timedelta(days=30), Step.UNDONE,
                 id="undone-for-this-day-stays"),
    pytest.param(Observed(exists=True, live=(1, 2), undone_for="2026-02-01"), AT, Step.MARK,
                 id="undone-for-another-day-retires-again"),
])
def test_next_step(observed: Observed, now: datetime, step: Step) -> None:
    assert next_step(RETIRE, observed, now) is step


def _seed(kv: FakeKV, versions: int = 2) -> None:
    for n in range(versions):
        kv.write(PATH.mount, PATH.path, {"token": f"value-{n}"}, cas=n)
    kv.update_custom_metadata(PATH.mount, PATH.path, {wk.INTENT: "legacy-token", wk.AUTHORITY: wk.AUTHORITY_VAULT})


def _run(kv: FakeKV, clock: FakeClock, *, dry_run: bool = False) -> lr.Run:
    return lr.Run(kv, Ledger(kv, "secret", clock, cluster="prod1"), "test", "run-1", clock, dry_run)


def _events(kv: FakeKV) -> list[str]:
    return [e.event for e in LedgerReader(kv, "secret").entries()]


def test_soft_delete_on_the_day_undo_then_purge_after_the_window() -> None:
    kv, clock = FakeKV(), FakeClock(AT - timedelta(days=1))
    _seed(kv)
    out = lr.apply(T, _run(kv, clock))
    assert out.state is Step.SCHEDULED and out.steps == [] and kv.read(PATH.mount, PATH.path).data  # type: ignore[union-attr]

    clock.advance(86400 + 60)
    assert lr.apply(T, _run(kv, clock, dry_run=True)).steps == ["mark"]  # a dry run writes nothing
    assert not kv.read_metadata(PATH.mount, PATH.path).custom.get(wk.DECOMMISSIONED_AT)  # type: ignore[union-attr]
    out = lr.apply(T, _run(kv, clock))
    assert out.state is Step.WAITING and out.steps == ["mark", "delete", "ledger"]
    assert out.undo_until == clock.now() + timedelta(days=7)
    assert kv.read(PATH.mount, PATH.path).deleted  # type: ignore[union-attr]
    assert _events(kv) == ["decommission"]
    entry = LedgerReader(kv, "secret").entries()[0]
    assert entry.details["versions"] == "1,2" and entry.reason == "replaced by payments-db-v2"
    assert lr.apply(T, _run(kv, clock)).steps == []  # idempotent

    undone = lr.undo(T, _run(kv, clock))
    assert undone.restored == (1, 2) and kv.read(PATH.mount, PATH.path).data == {"token": "value-1"}  # type: ignore[union-attr]
    assert lr.undo(T, _run(kv, clock)).already
    assert lr.apply(T, _run(kv, clock)).state is Step.UNDONE  # Git must name another day
    assert _events(kv) == ["decommission", "decommission-undo"]

    later = T.__class__(T.intent, T.environment, T.vault, Retire(after=date(2026, 3, 5),
                                                                 undo_window=timedelta(days=7)))
    clock.advance(5 * 86400)
    assert lr.apply(later, _run(kv, clock)).state is Step.WAITING
    clock.advance(7 * 86400)
    out = lr.apply(later, _run(kv, clock))
    assert out.steps == ["purge"] and out.state is Step.NONE
    assert kv.read_metadata(PATH.mount, PATH.path) is None  # every version and the metadata
    assert _events(kv) == ["decommission", "decommission-undo", "decommission", "decommission-purge"]
    with pytest.raises(Exception, match="nothing at"):
        lr.undo(later, _run(kv, clock))


def test_undo_refused_after_the_window_and_when_nothing_was_soft_deleted() -> None:
    kv, clock = FakeKV(), FakeClock(AT)
    _seed(kv)
    with pytest.raises(Exception, match="not soft-deleted"):
        lr.undo(T, _run(kv, clock))
    lr.apply(T, _run(kv, clock))
    clock.advance(7 * 86400)
    with pytest.raises(Exception, match="undo window closed"):
        lr.undo(T, _run(kv, clock))


class Crash(BaseException):
    pass


@pytest.mark.parametrize("point", ["retire.mark", "retire.delete", "retire.ledger", "retire.purge"])
def test_a_crash_at_any_step_resumes_without_a_second_entry(point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kv, clock = FakeKV(), FakeClock(AT)
    _seed(kv)
    crashed = []

    def checkpoint(name: str) -> None:
        if name == point and not crashed:
            crashed.append(name)
            raise Crash(name)

    monkeypatch.setattr(lr, "checkpoint", checkpoint)
    if point == "retire.purge":
        lr.apply(T, _run(kv, clock))
        clock.advance(8 * 86400)
    with pytest.raises(Crash):
        lr.apply(T, _run(kv, clock))
    lr.apply(T, _run(kv, clock))
    if point == "retire.purge":
        assert _events(kv) == ["decommission", "decommission-purge"]
        assert kv.read_metadata(PATH.mount, PATH.path) is None
    else:
        assert _events(kv) == ["decommission"]
        assert kv.read(PATH.mount, PATH.path).deleted  # type: ignore[union-attr]


def test_orphans_are_live_undeclared_runtime_data_only() -> None:
    kv = FakeKV()
    for path in ("prod/team-a/kept", "prod/team-a/removed", "prod/team-b/retired", "dev/team-a/removed"):
        kv.write("secret", path, {"k": "v"}, cas=0)
        kv.update_custom_metadata("secret", path, {wk.INTENT: path.rsplit("/", 1)[1]})
    kv.update_custom_metadata("secret", "prod/team-b/retired", {wk.DECOMMISSIONED_AT: "2026-03-01T00:00:00Z"})
    kv.write("secret", "_chamberlain/ledger/prod/prod1/000000000001", {"e": "x"}, cas=0)
    found = lr.orphans(kv, "secret", ["prod"], {"secret/prod/team-a/kept"})
    assert [o.path for o in found] == ["secret/prod/team-a/removed"]
    assert "spec.retire" in found[0].line() and "removed-intent" in found[0].line()


def _facts(**kw: object) -> st.IntentFacts:
    base: dict[str, object] = {"name": "legacy-token", "exists": True, "current_version": 2, "retire": RETIRE}
    return st.IntentFacts(**(base | kw))  # type: ignore[arg-type]


def test_status_warns_until_the_day_then_reports_the_soft_delete() -> None:
    before = st.compute_status(_facts(), AT - timedelta(days=3))
    retiring = st.condition(before, "Retiring")
    assert retiring["status"] == "True" and retiring["reason"] == lr.SCHEDULED and "in 3 days" in retiring["message"]
    assert before["phase"] == st.READY  # still in use until the day
    notices = st.transitions(None, before)
    assert [n.reason for n in notices] == [lr.SCHEDULED]
    assert st.transitions(before, st.compute_status(_facts(), AT - timedelta(days=2), previous=before["conditions"])
                          ) == []  # once per transition

    gone = st.compute_status(_facts(decommissioned_at=MARKED), AT + timedelta(days=1), previous=before["conditions"])
    assert gone["phase"] == st.RETIRED and st.condition(gone, "Ready")["status"] == "False"
    assert st.condition(gone, "Retiring")["reason"] == lr.SOFT_DELETED
    assert [n.reason for n in st.transitions(before, gone)] == [lr.SOFT_DELETED]

    purged = st.compute_status(_facts(exists=False, current_version=None), AT + timedelta(days=30))
    assert purged["phase"] == st.RETIRED and st.condition(purged, "Retiring")["reason"] == lr.PURGED

    plain = st.compute_status(_facts(retire=None), AT)
    assert st.condition(plain, "Retiring") == {} and len(plain["conditions"]) == 4  # others unchanged


def test_retire_in_the_intent_format() -> None:
    intent = SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": "legacy-token"},
        "spec": {"owner": "team-a", "purpose": "old", "classification": "runtime",
                 "source": {"generate": {"token": {"type": "token"}}},
                 "retire": {"after": "2026-03-01", "undoWindow": "7d"}}})
    assert intent.spec.retire == Retire(after=DAY, undo_window=timedelta(days=7))
    with pytest.raises(ValueError, match="after"):
        Retire.model_validate({"after": "next week"})


@pytest.mark.parametrize("window", ["0s", "1h", "23h59m"])
def test_an_undo_window_shorter_than_a_day_is_refused(window: str) -> None:
    """With 0s, one retire run would soft-delete and purge at once: no undo at all."""
    with pytest.raises(ValueError, match="undoWindow must be at least 1d"):
        Retire.model_validate({"after": "2026-03-01", "undoWindow": window})
    assert Retire.model_validate({"after": "2026-03-01", "undoWindow": "1d"}).undo_window == timedelta(days=1)


# ------------------------------------------------------- the mark is the commitment (fakes: FakeKV, FakeClock)


def _window(days: int, after: date = DAY) -> lr.RetireTarget:
    return lr.RetireTarget(T.intent, T.environment, T.vault, Retire(after=after, undo_window=timedelta(days=days)))


def test_the_undo_window_promised_at_the_soft_delete_is_stored_and_never_shortened() -> None:
    kv, clock = FakeKV(), FakeClock(MARKED)
    _seed(kv)
    promised = lr.apply(T, _run(kv, clock)).undo_until
    assert promised == MARKED + timedelta(days=7)
    custom = kv.read_metadata(PATH.mount, PATH.path).custom  # type: ignore[union-attr]
    assert custom[wk.DECOMMISSION_UNDO_UNTIL] == "2026-03-08T01:00:00Z"

    clock.advance(3 * 86400)  # Git shortens undoWindow to 1d after the soft-delete: the stored 7d still holds
    out = lr.apply(_window(1), _run(kv, clock))
    assert out.state is Step.WAITING and out.undo_until == promised
    assert lr.status_of(_window(1).retire, MARKED, "", clock.now(), promised)[1].endswith(
        "until 2026-03-08T01:00:00Z, purged after")
    assert lr.apply(_window(10), _run(kv, clock)).undo_until == MARKED + timedelta(days=10)  # longer: later wins
    assert lr.undo(_window(1), _run(kv, clock)).restored == (1, 2)  # an undo inside the promised window
    assert kv.read_metadata(PATH.mount, PATH.path).custom[wk.DECOMMISSION_UNDO_UNTIL] == lr.CLEARED  # type: ignore[union-attr]


def test_shortened_window_purges_at_the_promised_end_not_before() -> None:
    kv, clock = FakeKV(), FakeClock(MARKED)
    _seed(kv)
    lr.apply(T, _run(kv, clock))
    clock.advance(7 * 86400 - 1)
    assert lr.apply(_window(1), _run(kv, clock)).state is Step.WAITING
    clock.advance(1)
    assert lr.apply(_window(1), _run(kv, clock)).steps == ["purge"]


def _soft_delete(kv: FakeKV, clock: FakeClock, path: str, intent: str, days: int = 7) -> lr.RetireTarget:
    """Soft-delete ``path`` as `chamberlain retire` did while Git still declared its spec.retire."""
    vault = VaultPath("secret", path)
    for n in range(2):
        kv.write(vault.mount, vault.path, {"token": f"value-{n}"}, cas=n)
    kv.update_custom_metadata(vault.mount, vault.path, {wk.INTENT: intent})
    t = lr.RetireTarget(intent, path.split("/", 1)[0], vault, Retire(after=DAY, undo_window=timedelta(days=days)))
    assert lr.apply(t, _run(kv, clock)).state is Step.WAITING
    return t


def test_a_retirement_removed_from_git_is_reported_and_finished_from_its_mark() -> None:
    kv, clock = FakeKV(), FakeClock(MARKED)
    _soft_delete(kv, clock, "prod/team-a/dropped-retire", "dropped-retire")  # intent kept, spec.retire removed
    _soft_delete(kv, clock, "prod/team-a/dropped-intent", "dropped-intent", days=3)  # whole intent removed
    _soft_delete(kv, clock, "prod/team-a/still-retiring", "still-retiring")  # Git still retires it
    kv.write("secret", "prod/team-a/live", {"k": "v"}, cas=0)  # plain data: not a retirement
    retiring = {"secret/prod/team-a/still-retiring"}
    declared = retiring | {"secret/prod/team-a/dropped-retire", "secret/prod/team-a/live"}

    found = lr.stranded(kv, "secret", ["prod"], retiring, declared)
    assert [(s.intent, s.intent_in_git, s.undo_until) for s in found] == [
        ("dropped-intent", False, MARKED + timedelta(days=3)), ("dropped-retire", True, MARKED + timedelta(days=7))]
    text = found[1].line()
    assert "retire-removed" in text and "--undo dropped-retire" in text and "spec.retire: {after: 2026-03-01}" in text
    assert "spec.retire was removed" in text and "intent was removed" in found[0].line()
    assert lr.orphans(kv, "secret", ["prod"], declared) == []  # soft-deleted data is no removed-intent error

    targets = lr.stranded_targets(kv, "secret", ["prod"], retiring)
    assert [(t.intent, t.from_marker, t.retire.after, t.retire.undo_window) for t in targets] == [
        ("dropped-intent", True, DAY, timedelta(days=3)), ("dropped-retire", True, DAY, timedelta(days=7))]
    clock.advance(3 * 86400)
    outcomes = [lr.apply(t, _run(kv, clock)) for t in targets]
    assert [(o.state, o.steps) for o in outcomes] == [(Step.NONE, ["purge"]), (Step.WAITING, [])]
    assert outcomes[1].as_dict()["fromMarker"] is True
    assert kv.read_metadata("secret", "prod/team-a/dropped-intent") is None
    purge = [e for e in LedgerReader(kv, "secret").entries() if e.event == "decommission-purge"]
    assert purge[0].secret == "dropped-intent" and purge[0].details["declared"].startswith("marker only")

    undone = lr.undo(targets[1], _run(kv, clock))  # undo decided from the mark too
    assert undone.restored == (1, 2) and not kv.read("secret", "prod/team-a/dropped-retire").deleted  # type: ignore[union-attr]
    assert lr.stranded(kv, "secret", ["prod"], retiring, declared) == []
    again = lr.stranded_targets(kv, "secret", ["prod"], retiring, undone=True)
    assert [t.intent for t in again] == ["dropped-retire"] and lr.undo(again[0], _run(kv, clock)).already


def test_a_mark_made_before_undo_until_was_stored_uses_the_default_window() -> None:
    kv, clock = FakeKV(), FakeClock(MARKED)
    _soft_delete(kv, clock, "prod/team-a/old-mark", "old-mark")
    kv.update_custom_metadata("secret", "prod/team-a/old-mark", {wk.DECOMMISSION_UNDO_UNTIL: lr.CLEARED})
    (t,) = lr.stranded_targets(kv, "secret", ["prod"], set())
    assert t.retire.undo_window == timedelta(days=30)
    clock.advance(29 * 86400)
    assert lr.apply(t, _run(kv, clock)).state is Step.WAITING


# ------------------------------------------- the use cases (service.lifecycle) over FakeServers and examples/acme


def test_retire_undo_and_plan_decide_from_the_mark_when_git_no_longer_retires() -> None:
    from chamberlain.errors import UsageError
    from chamberlain.service import lifecycle
    from chamberlain.service.context import Caller
    from chamberlain.service.repository import load_platform
    from tests.unit.test_service import ACME, FakeServers

    servers, clock = FakeServers(), FakeClock(MARKED)
    caller = Caller("test:someone", clock, "run-test")
    # payments-db is in acme without spec.retire; gone-token is in no intent at all: both were soft-deleted while
    # Git still retired them
    _soft_delete(servers.kv, clock, "dev/team-payments/payments-db", "payments-db")
    _soft_delete(servers.kv, clock, "dev/team-a/gone-token", "gone-token", days=2)

    repo, platform = load_platform(ACME)
    found = lifecycle.orphans(repo, platform, "dev", "dev1", servers)
    assert found.unchecked is None and found.orphans == []
    assert [(s.intent, s.intent_in_git) for s in found.stranded] == [("gone-token", False), ("payments-db", True)]

    with pytest.raises(UsageError, match=r"declares no spec\.retire and no data carries a decommissioning mark"):
        lifecycle.undo(ACME, "grafana-admin", servers, caller, environment="dev", cluster="dev1")
    with pytest.raises(UsageError, match="no such SecretIntent"):
        lifecycle.undo(ACME, "never-existed", servers, caller, environment="dev", cluster="dev1")

    (restored,) = lifecycle.undo(ACME, "payments-db", servers, caller, environment="dev", cluster="dev1")
    assert restored.restored == (1, 2) and restored.target.from_marker
    (again,) = lifecycle.undo(ACME, "payments-db", servers, caller, environment="dev", cluster="dev1")
    assert again.already

    clock.advance(2 * 86400)
    result = lifecycle.retire(ACME, servers, caller, environment="dev", cluster="dev1")
    assert [(o.target.intent, o.steps) for o in result.outcomes] == [("gone-token", ["purge"])]
    assert servers.kv.read_metadata("secret", "dev/team-a/gone-token") is None
    assert lifecycle.orphans(repo, platform, "dev", "dev1", servers).stranded == []


def test_the_status_condition_promises_the_stored_window() -> None:
    promised = MARKED + timedelta(days=7)
    gone = st.compute_status(_facts(retire=Retire(after=DAY, undo_window=timedelta(days=1)), decommissioned_at=MARKED,
                                    decommission_undo_until=promised), AT + timedelta(days=2))
    assert "until 2026-03-08T01:00:00Z" in st.condition(gone, "Retiring")["message"]
