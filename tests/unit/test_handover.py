"""Handover with fakes: the pure step decision, every afterHandover mode against every Vault state, crashes at
every step boundary, outages, conflicts, Kubernetes races, Vault's metadata limits — and a canary value that must
never leave the two places it belongs (the bootstrap Secret and Vault's data)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger
from chamberlain.authority.fake import FakeKV, _Secret
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.handover import (
    Bootstrap,
    HandoverError,
    HandoverUnit,
    Observed,
    RunContext,
    Step,
    VaultValue,
    hand_over,
    handover_units,
    next_step,
    run_handover,
)
from chamberlain.handover import metadata as md
from chamberlain.handover import workflow as wf
from chamberlain.intent.loader import Repository
from chamberlain.kube.api import KubeSecret
from chamberlain.kube.fake import FakeKube
from chamberlain.service import load_valid
from tests.conftest import EXAMPLES

CANARY = "canary-Zq8Xv2Lr9Wm4Tn6Kp1Bs"
CANARY_DATA = {"username": "relay-user", "password": CANARY}
STEPS = ["handover.write", "handover.verify", "handover.record", "handover.consume", "handover.ledger",
         "handover.done"]
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Crash(BaseException):
    """Stands in for os._exit at a checkpoint: nothing after it runs, no handler catches it."""


@pytest.fixture(scope="module")
def repo() -> Repository:
    return load_valid(EXAMPLES / "acme")


@pytest.fixture(scope="module")
def units(repo: Repository) -> dict[str, HandoverUnit]:
    return {u.intent: u for u in handover_units(repo, cluster="dev1")}


@dataclasses.dataclass
class World:
    kv: FakeKV
    kube: FakeKube
    ledger: Ledger
    ctx: RunContext


def new_world() -> World:
    kv = FakeKV()
    return World(kv, FakeKube(), Ledger(kv, "secret", clock=FakeClock(T0)),
                 RunContext(actor="test", run="run-1", clock=FakeClock(T0)))


@pytest.fixture
def world() -> World:
    return new_world()


def materialize(kube: FakeKube, unit: HandoverUnit, data: dict[str, str] | None = None,
                type_: str = "Opaque", intent: str | None = None) -> KubeSecret:
    secret = kube.create_secret(
        unit.namespace, unit.name, CANARY_DATA if data is None else data,
        labels={"chamberlain.dev/class": "bootstrap", "chamberlain.dev/intent": intent or unit.intent},
    )
    if type_ != "Opaque":
        secret = dataclasses.replace(secret, type=type_)
        kube.secrets[(unit.namespace, unit.name)] = secret
    return secret


def with_mode(unit: HandoverUnit, mode: str) -> HandoverUnit:
    return dataclasses.replace(unit, after_handover=mode)  # type: ignore[arg-type]


def crash_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def checkpoint(point: str) -> None:
        if point == name:
            raise Crash(point)

    monkeypatch.setattr(wf, "checkpoint", checkpoint)


def no_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wf, "checkpoint", lambda point: None)


def assert_converged(w: World, unit: HandoverUnit, data: dict[str, str] = CANARY_DATA) -> None:
    current = w.kv.read(unit.vault.mount, unit.vault.path)
    assert current is not None and dict(current.data) == data and current.version == 1
    custom = w.kv.read_metadata(unit.vault.mount, unit.vault.path).custom  # type: ignore[union-attr]
    assert custom[wk.AUTHORITY] == "vault"
    assert custom[wk.SOURCE] == unit.source and custom[wk.SOURCE_CLUSTER] == unit.cluster
    assert custom[wk.INTENT] == unit.intent
    secret = w.kube.get_secret(unit.namespace, unit.name)
    if unit.after_handover == "delete":
        assert secret is None
    else:
        assert secret is not None and wk.ANNOTATION_CONSUMED in secret.annotations
        assert secret.annotations[wk.ANNOTATION_AUTHORITY] == "vault"
        if unit.after_handover == "inert":
            assert CANARY not in secret.data.values()
        else:
            assert dict(secret.data) == data
    entries = [e for e in w.ledger.for_secret(unit.intent) if e.event == "handover"]
    assert len(entries) == 1, "each secret is handed over exactly once"
    assert custom[wk.LEDGER_SEQ] == str(entries[0].seq) == custom[wk.retired_key(unit.cluster)]
    assert w.ledger.verify().ok


def authority(w: World, unit: HandoverUnit) -> str:
    """Who holds the secret now; raises if nobody or both do."""
    meta = w.kv.read_metadata(unit.vault.mount, unit.vault.path)
    vault = meta is not None and meta.custom.get(wk.AUTHORITY) == "vault"
    secret = w.kube.get_secret(unit.namespace, unit.name)
    bootstrap = secret is not None and wk.ANNOTATION_CONSUMED not in secret.annotations and bool(secret.data)
    if vault:
        return "vault"
    assert bootstrap, "neither Vault nor the bootstrap Secret holds the secret"
    return "bootstrap"


def scan_for_canary(w: World, *texts: object) -> None:
    blobs = [e.model_dump_json() for e in w.ledger.entries()]
    for (mount, path), stored in w.kv._store.items():
        blobs.append(json.dumps(stored.custom))
        blobs.append(f"{mount}/{path}")
    for secret in w.kube.secrets.values():
        blobs.append(json.dumps(dict(secret.annotations)))
        blobs.append(json.dumps(dict(secret.labels)))
        blobs.append(repr(secret))
    blobs.extend(str(t) for t in texts)
    for blob in blobs:
        assert CANARY not in blob


# ------------------------------------------------------------------------------------------------ decision


D = Observed


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(D(Bootstrap.PRESENT, VaultValue.ABSENT, False, False, False), Step.WRITE, id="fresh->write"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.EQUAL, False, False, False), Step.RECORD, id="equal->record"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.DIFFERENT, False, False, False), Step.CONFLICT,
                     id="different->conflict"),
        pytest.param(D(Bootstrap.ABSENT, VaultValue.ABSENT, False, False, False), Step.BLOCKED,
                     id="nothing-materialized->blocked"),
        pytest.param(D(Bootstrap.ABSENT, VaultValue.PRESENT, False, False, False), Step.BLOCKED,
                     id="unrecorded-vault-value->blocked"),
        pytest.param(D(Bootstrap.CONSUMED, VaultValue.PRESENT, False, False, False), Step.BLOCKED,
                     id="consumed-but-unrecorded->blocked"),
        pytest.param(D(Bootstrap.FOREIGN, VaultValue.ABSENT, False, False, False), Step.BLOCKED,
                     id="unlabelled-secret->blocked"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.EQUAL, True, True, False), Step.CONSUME,
                     id="recorded->consume"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.DIFFERENT, True, True, False), Step.CONSUME,
                     id="recorded-here-then-rotated->consume"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.DIFFERENT, True, False, False), Step.CONFLICT,
                     id="recorded-elsewhere-different->conflict"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.EQUAL, True, False, False), Step.CONSUME,
                     id="recorded-elsewhere-equal->consume"),
        pytest.param(D(Bootstrap.PRESENT, VaultValue.ABSENT, True, True, False), Step.BLOCKED,
                     id="recorded-without-value->blocked"),
        pytest.param(D(Bootstrap.ABSENT, VaultValue.PRESENT, True, True, False), Step.LEDGER,
                     id="deleted->ledger"),
        pytest.param(D(Bootstrap.CONSUMED, VaultValue.PRESENT, True, True, False), Step.LEDGER,
                     id="inert-or-ignored->ledger"),
        pytest.param(D(Bootstrap.ABSENT, VaultValue.PRESENT, True, True, True), Step.DONE, id="retired->done"),
        pytest.param(D(Bootstrap.CONSUMED, VaultValue.PRESENT, True, True, True), Step.DONE,
                     id="consumed-retired->done"),
    ],
)
def test_next_step(state: Observed, expected: Step) -> None:
    assert next_step(state).step is expected


# ------------------------------------------------------------------------------------------------ modes x Vault


MODES = ["delete", "inert", "ignore"]


@pytest.mark.parametrize("mode", MODES)
def test_hands_over_when_vault_is_absent(world: World, units: dict[str, HandoverUnit], mode: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    no_crash(monkeypatch)
    unit = with_mode(units["smtp-relay"], mode)
    materialize(world.kube, unit)
    outcome = hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert outcome.result == "handed-over"
    assert outcome.steps == ["write", "record", "consume", "ledger"]
    assert outcome.marker and outcome.marker.startswith("v1:")
    assert_converged(world, unit)
    custom = world.kv.read_metadata("secret", unit.vault.path).custom  # type: ignore[union-attr]
    assert custom["policy.name"] == "on-event" and custom["policy.type"] == "event-based"
    assert custom["policy.max-overlap"] == "1h" and custom["policy.failure-strategy"] == "alert"
    assert custom[wk.HANDED_OVER_AT] == "2026-01-02T03:04:05Z"
    entry = world.ledger.for_secret("smtp-relay")[0]
    assert (entry.actor, entry.run, entry.details["after-handover"]) == ("test", "run-1", mode)
    scan_for_canary(world, outcome.as_dict())


@pytest.mark.parametrize("mode", MODES)
def test_equal_value_in_vault_is_not_rewritten(world: World, units: dict[str, HandoverUnit], mode: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    no_crash(monkeypatch)
    unit = with_mode(units["smtp-relay"], mode)
    materialize(world.kube, unit)
    world.kv.write("secret", unit.vault.path, CANARY_DATA, cas=0)
    outcome = hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert outcome.steps == ["record", "consume", "ledger"]
    assert world.kv.calls["write"] == 1 + 2  # our setup + the ledger entry and its head, no data write
    assert_converged(world, unit)


@pytest.mark.parametrize("mode", MODES)
def test_different_value_in_vault_is_a_conflict_that_touches_nothing(
    world: World, units: dict[str, HandoverUnit], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_crash(monkeypatch)
    unit = with_mode(units["smtp-relay"], mode)
    before = materialize(world.kube, unit)
    world.kv.write("secret", unit.vault.path, {"password": "someone-else-" + CANARY}, cas=0)
    writes = world.kv.calls["write"]
    report = run_handover([unit], world.kv, world.kube, world.ledger, world.ctx)
    assert not report.ok
    outcome = report.outcomes[0]
    assert outcome.result == "conflict" and outcome.steps == []
    assert unit.vault.full in outcome.message and unit.source in outcome.message
    assert world.kube.get_secret(unit.namespace, unit.name) == before
    assert world.kv.calls["write"] == writes and world.kv.calls["update_custom_metadata"] == 0
    assert world.ledger.entries() == []
    scan_for_canary(world, outcome.as_dict(), outcome.message)


def test_rerun_is_a_noop(world: World, units: dict[str, HandoverUnit], monkeypatch: pytest.MonkeyPatch) -> None:
    no_crash(monkeypatch)
    unit = units["registry-pull"]
    materialize(world.kube, unit)
    hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    calls = dict(world.kv.calls)
    again = hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert again.result == "already-handed-over" and again.steps == []
    assert again.ledger_seq == 1
    for op in ("write", "update_custom_metadata"):
        assert world.kv.calls[op] == calls[op]
    assert_converged(world, unit)


def test_inert_keeps_typed_secrets_valid(world: World, units: dict[str, HandoverUnit],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    no_crash(monkeypatch)
    unit = units["registry-pull"]  # afterHandover: inert
    materialize(world.kube, unit, {".dockerconfigjson": '{"auths":{"r.example":{"auth":"' + CANARY + '"}}}'},
                type_="kubernetes.io/dockerconfigjson")
    hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    secret = world.kube.get_secret(unit.namespace, unit.name)
    assert secret is not None and secret.type == "kubernetes.io/dockerconfigjson"
    assert dict(secret.data) == {".dockerconfigjson": '{"auths":{}}'}
    assert secret.annotations[wk.ANNOTATION_HANDED_OVER_TO] == unit.vault.full
    scan_for_canary(world)


# ------------------------------------------------------------------------------------------------ crashes


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point", STEPS)
def test_crash_at_every_step_then_rerun_converges(
    world: World, units: dict[str, HandoverUnit], point: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = with_mode(units["smtp-relay"], mode)
    materialize(world.kube, unit)
    crash_at(monkeypatch, point)
    with pytest.raises(Crash):
        hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert authority(world, unit) == ("bootstrap" if point in STEPS[:2] else "vault")
    no_crash(monkeypatch)
    outcome = hand_over(unit, world.kv, world.kube, world.ledger,
                        dataclasses.replace(world.ctx, run="run-2"))
    assert outcome.result in ("handed-over", "already-handed-over")
    assert_converged(world, unit)
    scan_for_canary(world, outcome.as_dict())


def test_crash_after_ledger_append_does_not_double_the_entry(
    world: World, units: dict[str, HandoverUnit], monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = units["smtp-relay"]
    materialize(world.kube, unit)
    crash_at(monkeypatch, "handover.ledger")
    with pytest.raises(Crash):
        hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert len(world.ledger.entries()) == 1
    no_crash(monkeypatch)
    outcome = hand_over(unit, world.kv, world.kube, Ledger(world.kv, "secret", FakeClock(T0)), world.ctx)
    assert outcome.steps == ["ledger"] and outcome.ledger_seq == 1
    assert len(world.ledger.entries()) == 1


# ------------------------------------------------------------------------------------------------ failures


@pytest.mark.parametrize("point", ["handover.write", "handover.verify", "handover.record", "handover.consume"])
def test_vault_down_mid_handover_fails_cleanly_and_resumes(
    world: World, units: dict[str, HandoverUnit], point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = units["smtp-relay"]
    materialize(world.kube, unit)

    def checkpoint(name: str) -> None:
        if name == point:
            world.kv.down = True

    monkeypatch.setattr(wf, "checkpoint", checkpoint)
    with pytest.raises(HandoverError) as err:
        hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    message = str(err.value)
    assert "re-run" in message and CANARY not in message
    world.kv.down = False
    if point in ("handover.write", "handover.verify"):
        assert "stays the authority" in message
        assert authority(world, unit) == "bootstrap"
    no_crash(monkeypatch)
    hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert_converged(world, unit)


def test_kube_down_leaves_bootstrap_authoritative(world: World, units: dict[str, HandoverUnit],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    no_crash(monkeypatch)
    unit = units["smtp-relay"]
    materialize(world.kube, unit)
    world.kube.down = True
    with pytest.raises(HandoverError, match="stays the authority"):
        hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    world.kube.down = False
    assert world.kv.read_metadata("secret", unit.vault.path) is None


def test_secret_changed_before_consume_is_reobserved(world: World, units: dict[str, HandoverUnit],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A resourceVersion race: someone touches the bootstrap Secret between our read and our delete."""
    unit = units["smtp-relay"]
    materialize(world.kube, unit)

    no_crash(monkeypatch)
    deletes: list[str | None] = []
    real_delete = world.kube.delete_secret

    def delete(namespace: str, name: str, resource_version: str | None = None) -> None:
        deletes.append(resource_version)
        if len(deletes) == 1:  # someone else updates it right between our read and our delete
            current = world.kube.get_secret(namespace, name)
            assert current is not None
            world.kube.update_secret(dataclasses.replace(current, annotations={"touched": "yes"}))
        real_delete(namespace, name, resource_version)

    monkeypatch.setattr(world.kube, "delete_secret", delete)
    hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert len(deletes) == 2, "the stale delete was refused by its precondition, then retried after a re-read"
    assert_converged(world, unit)


def test_bootstrap_secret_changed_to_a_new_value_after_commit_is_still_retired(
    world: World, units: dict[str, HandoverUnit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the commit point Vault is the authority: a later edit of the bootstrap Secret does not flow back."""
    unit = units["smtp-relay"]
    materialize(world.kube, unit)
    crash_at(monkeypatch, "handover.record")
    with pytest.raises(Crash):
        hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    current = world.kube.get_secret(unit.namespace, unit.name)
    assert current is not None
    world.kube.update_secret(dataclasses.replace(current, data={"password": "edited"}))
    no_crash(monkeypatch)
    hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert_converged(world, unit)  # Vault keeps the handed-over value


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        pytest.param("missing", "not in the cluster", id="bootstrap-missing"),
        pytest.param("foreign", "not labelled", id="unlabelled-secret"),
        pytest.param("consumed-unrecorded", "marked consumed", id="consumed-without-record"),
    ],
)
def test_blocked_states_touch_nothing(world: World, units: dict[str, HandoverUnit], setup: str, why: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    no_crash(monkeypatch)
    unit = units["smtp-relay"]
    if setup == "foreign":
        materialize(world.kube, unit, intent="something-else")
    elif setup == "consumed-unrecorded":
        secret = materialize(world.kube, unit)
        world.kube.update_secret(dataclasses.replace(secret, annotations={wk.ANNOTATION_CONSUMED: "x"}))
    before = dict(world.kube.secrets)
    outcome = hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert outcome.result == "blocked" and why in outcome.message
    assert world.kube.secrets == before
    assert world.kv.calls["write"] == 0 and world.kv.calls["update_custom_metadata"] == 0


def test_metadata_limits_are_checked_before_anything_is_written(
    world: World, units: dict[str, HandoverUnit], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_crash(monkeypatch)
    unit = units["smtp-relay"]
    materialize(world.kube, unit)
    # Pre-existing metadata without a version (as `vault kv metadata put` leaves it) that fills 60 of 64 keys.
    world.kv._store[("secret", unit.vault.path)] = _Secret(custom={f"k{i}": "v" for i in range(60)})
    with pytest.raises(HandoverError, match=r"allows 64.*nothing was written"):
        hand_over(unit, world.kv, world.kube, world.ledger, world.ctx)
    assert world.kv.calls["write"] == 0
    assert authority(world, unit) == "bootstrap"


def test_metadata_fits_vault_limits_for_the_longest_names(units: dict[str, HandoverUnit]) -> None:
    unit = dataclasses.replace(units["smtp-relay"], intent="i" * 63, cluster="c" * 63, namespace="n" * 63,
                               name="s" * 253)
    record = wf.record_metadata(unit, T0.isoformat(), 1, "v1:" + "0" * 32)
    record[wk.retired_key(unit.cluster)] = "1"
    md.merged({}, record)  # raises when over a limit


# ------------------------------------------------------------------------------------------------ many clusters


def test_clusters_sharing_a_vault_path_each_retire_their_own_secret(
    world: World, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_crash(monkeypatch)
    eu = {u.intent: u for u in handover_units(repo, cluster="prod-eu1")}["smtp-relay"]
    us = {u.intent: u for u in handover_units(repo, cluster="prod-us1")}["smtp-relay"]
    assert eu.vault == us.vault
    kube_us = FakeKube()
    materialize(world.kube, eu)
    materialize(kube_us, us)
    first = hand_over(eu, world.kv, world.kube, world.ledger, world.ctx)
    second = hand_over(us, world.kv, kube_us, world.ledger, world.ctx)
    assert first.steps == ["write", "record", "consume", "ledger"]
    assert second.steps == ["consume", "ledger"]
    custom = world.kv.read_metadata("secret", eu.vault.path).custom  # type: ignore[union-attr]
    assert custom[wk.SOURCE_CLUSTER] == "prod-eu1"
    assert (custom["retired.prod-eu1"], custom["retired.prod-us1"], custom[wk.LEDGER_SEQ]) == ("1", "2", "1")
    assert kube_us.get_secret(us.namespace, us.name) is None
    assert world.ledger.verify().ok


def test_another_cluster_with_a_different_value_is_a_conflict(
    world: World, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_crash(monkeypatch)
    eu = {u.intent: u for u in handover_units(repo, cluster="prod-eu1")}["smtp-relay"]
    us = {u.intent: u for u in handover_units(repo, cluster="prod-us1")}["smtp-relay"]
    kube_us = FakeKube()
    materialize(world.kube, eu)
    materialize(kube_us, us, {"password": "different"})
    hand_over(eu, world.kv, world.kube, world.ledger, world.ctx)
    assert hand_over(us, world.kv, kube_us, world.ledger, world.ctx).result == "conflict"
    assert kube_us.get_secret(us.namespace, us.name) is not None


# ------------------------------------------------------------------------------------------------ dry run, selection


def test_dry_run_plans_and_changes_nothing(world: World, units: dict[str, HandoverUnit],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    no_crash(monkeypatch)
    unit = units["smtp-relay"]
    materialize(world.kube, unit)
    before = dict(world.kube.secrets)
    outcome = hand_over(unit, world.kv, world.kube, world.ledger, world.ctx, dry_run=True)
    assert outcome.result == "planned" and outcome.steps == ["write", "record", "consume", "ledger"]
    assert world.kube.secrets == before and world.kv.calls["write"] == 0


@pytest.mark.parametrize(
    ("environment", "cluster", "message"),
    [
        pytest.param(None, None, "pass --cluster", id="several-clusters"),
        pytest.param("prod", None, "pass --cluster", id="env-with-two-clusters"),
        pytest.param(None, "nowhere", "unknown cluster", id="unknown-cluster"),
        pytest.param("staging", "dev1", "unknown environment", id="unknown-environment"),
        pytest.param("prod", "dev1", "does not include", id="env-not-on-cluster"),
    ],
)
def test_selection_errors(repo: Repository, environment: str | None, cluster: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        handover_units(repo, environment, cluster)


def test_selection_covers_bootstrap_intents_of_the_cluster(repo: Repository) -> None:
    units = handover_units(repo, environment="dev", cluster="dev1")
    assert [(u.intent, u.vault.full, u.source, u.after_handover) for u in units] == [
        ("registry-pull", "secret/dev/team-platform/registry-pull", "chamberlain-bootstrap/bootstrap-registry-pull",
         "inert"),
        ("smtp-relay", "secret/dev/team-platform/smtp-relay", "chamberlain-bootstrap/bootstrap-smtp-relay",
         "delete"),
    ]
    assert handover_units(repo, cluster="dev1") == units  # preview on dev1 has no bootstrap intents
