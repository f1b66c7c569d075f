"""Custody with fakes (SPEC §6): the pure layout and decision functions, sealing one share per custodian, unseal
in turn, generate-root and rekey needing k custodians, and the validate rules CH090-CH092. The lab test
(tests/lab/test_authority_custody.py) proves the same against the real OpenBao and kube-apiserver."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from chamberlain.authority import lifecycle
from chamberlain.authority.decide import (
    DEFAULT_LAYOUT,
    InitObserved,
    InitStep,
    Layout,
    Material,
    Session,
    UnsealOutcome,
    next_init_step,
    share_layout,
    unseal_message,
)
from chamberlain.authority.lifecycle import InitPlan, SealError, ShareCustody
from chamberlain.checks.registry import run_checks
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.intent.loader import load_repository
from tests.conftest import CORPUS
from tests.unit.test_authority_lifecycle import IDENTITY, RECIPIENT, World

NAMES = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def people() -> dict[str, pyrage.x25519.Identity]:
    return {n: pyrage.x25519.Identity.generate() for n in (*NAMES, "dave", "gitops")}


def _custody(people: dict[str, Any], names: tuple[str, ...] = NAMES, threshold: int = 2) -> ShareCustody:
    return ShareCustody((RECIPIENT,), tuple((n, str(people[n].to_public())) for n in names), threshold)


# ------------------------------------------------------------------------------------------------ pure


def test_custody_decides_the_layout_and_contradicting_flags_are_refused() -> None:
    custody = Layout(3, 2)
    assert share_layout(custody, None, None, DEFAULT_LAYOUT) == custody
    assert share_layout(custody, 3, 2, DEFAULT_LAYOUT) == custody  # agreeing flags are fine
    with pytest.raises(UsageError, match=r"--threshold 1 contradicts the Platform's rootOfTrust.custody"):
        share_layout(custody, None, 1, DEFAULT_LAYOUT)
    with pytest.raises(UsageError, match=r"--shares 5 contradicts"):
        share_layout(custody, 5, None, DEFAULT_LAYOUT)


def test_without_custody_the_flags_decide_with_defaults() -> None:
    assert share_layout(None, None, None, DEFAULT_LAYOUT) == Layout(5, 3)
    assert share_layout(None, 3, None, Layout(3, 2)) == Layout(3, 2)
    with pytest.raises(UsageError, match="--threshold must be between 1 and --shares"):
        share_layout(None, 2, 3, DEFAULT_LAYOUT)


def test_unseal_message_says_how_many_custodians_are_still_needed() -> None:
    assert "1 more custodian must run" in unseal_message(UnsealOutcome(("alice",), 1, 2, True))
    assert "2 more custodians" in unseal_message(UnsealOutcome(("alice",), 1, 3, True))
    assert unseal_message(UnsealOutcome(("bob",), 0, 2, False)).startswith("unsealed")


def _observed(**kw: Any) -> InitObserved:
    base: dict[str, Any] = dict(
        initialized=True, sealed=False, material=Material.STORED, recovery_file=False, holds_shares=False,
        can_open=False, holds_root=False, session=Session.NONE, login_refused=False, active=True, configured=False,
        init_recorded=False, verified=False, root_revoked=False)
    return InitObserved(**(base | kw))


def test_init_blocks_when_the_identities_open_fewer_shares_than_the_threshold() -> None:
    sealed = next_init_step(_observed(sealed=True, identities_short=True))
    assert sealed.step is InitStep.BLOCKED and "each custodian runs" in sealed.why
    break_glass = next_init_step(_observed(login_refused=True, identities_short=True))
    assert break_glass.step is InitStep.BLOCKED and "k custodians in one run" in break_glass.why
    assert next_init_step(_observed(login_refused=True, can_open=True)).step is InitStep.GENERATE_ROOT


# ------------------------------------------------------------------------------------------------ sealing


def test_each_share_is_sealed_to_exactly_one_custodian(people: dict[str, Any]) -> None:
    custody = _custody(people)
    sealed = custody.seal(["k1", "k2", "k3"])
    material = lifecycle.SealedMaterial(sealed, 2, custody.fingerprint, holders=custody.holders)
    for i, name in enumerate(NAMES):
        assert material.open_held([people[name]]) == [(i, f"k{i + 1}")]
        assert material.holder(i) == name
    assert material.open_held([people["gitops"]]) == []
    assert material.open_held(lifecycle.load_identities(IDENTITY)) == []  # the root identity: no share
    with pytest.raises(SealError, match="each custodian holds exactly one share"):
        custody.seal(["k1", "k2"])


def test_the_fingerprint_changes_with_the_custodians_or_the_threshold(people: dict[str, Any]) -> None:
    base = _custody(people).fingerprint
    assert _custody(people, ("alice", "bob", "dave")).fingerprint != base
    assert _custody(people, threshold=3).fingerprint != base
    assert ShareCustody((RECIPIENT,)).fingerprint == lifecycle.recipients_fingerprint([RECIPIENT])


# ---------------------------------------------------------------------------------- life cycle with fakes


def _init(world: World, people: dict[str, Any], identities: Any = None) -> lifecycle.InitReport:
    custody = _custody(people)
    return lifecycle.initialize(
        world.vault,  # type: ignore[arg-type]
        world.store(), InitPlan(3, 2, [RECIPIENT], world.tmp / "recovery", custody.custodians),
        login_configurator=world.vault.login_configurator,  # type: ignore[arg-type]
        configure=world.configure, verify=lambda: ["chamberlain.dev1.orchestrator"],
        recorder_for=world.recorder_for, identities=identities, clock=FakeClock())


def _rekey(world: World, ids: list[Any], custody: ShareCustody, **kw: Any) -> lifecycle.RekeyReport:
    return lifecycle.rekey(world.vault, world.store(), ids, custody,  # type: ignore[arg-type]
                           login_configurator=world.vault.login_configurator,  # type: ignore[arg-type]
                           recorder_for=world.recorder_for, clock=FakeClock(), **kw)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_init_with_custody_stores_one_share_per_custodian(world: World, people: dict[str, Any]) -> None:
    _init(world, people)
    stored = world.store().load()
    assert stored is not None and stored.holders == NAMES and stored.threshold == 2
    assert [k for _, k in stored.open_held([people[n] for n in NAMES])] == world.vault.keys
    assert ("authority-init", "alice,bob,carol") in [(e, d.get("custodians")) for e, d in world.events]


def test_custodians_unseal_in_turn(world: World, people: dict[str, Any]) -> None:
    _init(world, people)
    world.vault.restart()
    store = world.store()
    first = lifecycle.unseal(world.vault, store, [people["alice"]])  # type: ignore[arg-type]
    assert first.sealed and first.progress == 1 and first.custodians == ["alice"]
    again = lifecycle.unseal(world.vault, store, [people["alice"]])  # type: ignore[arg-type]
    assert again.sealed and again.progress == 1  # the same share does not count twice
    with pytest.raises(SealError, match="open none of the unseal shares"):
        lifecycle.unseal(world.vault, store, [people["gitops"]])  # type: ignore[arg-type]
    done = lifecycle.unseal(world.vault, store, [people["carol"]])  # type: ignore[arg-type]
    assert not done.sealed and done.custodians == ["carol"] and not world.vault.sealed


def test_resume_needing_generate_root_takes_k_custodians(world: World, people: dict[str, Any]) -> None:
    # A first run that stored the shares and died before configuring: only generate-root can finish.
    custody = _custody(people)
    keys = list(world.vault.seal.initialize(3, 2).keys)
    world.store().save(lifecycle.SealedMaterial(custody.seal(keys), 2, custody.fingerprint, holders=custody.holders))
    with pytest.raises(SealError, match="open 1 of the 2 shares needed"):
        _init(world, people, identities=[people["bob"]])
    assert world.vault.sealed  # nothing was submitted
    report = _init(world, people, identities=[people["bob"], people["carol"]])
    assert report.authenticated_as.startswith("temporary root token")
    assert not [t for t in world.vault.tokens.values() if "root" in t.policies]


def test_rekey_needs_k_custodians_and_changes_nothing_with_fewer(world: World, people: dict[str, Any]) -> None:
    _init(world, people)
    before, old = world.store().load(), list(world.vault.keys)
    with pytest.raises(SealError, match=r"rekey needs 2 shares.*open 1.*Nothing was changed"):
        _rekey(world, [people["alice"]], _custody(people))
    assert world.store().load() == before and world.vault.keys == old and not world.vault.rekey
    with pytest.raises(UsageError, match="contradicts"):
        _rekey(world, [people["alice"], people["bob"]], _custody(people), threshold=3)
    report = _rekey(world, [people["alice"], people["bob"]], _custody(people, ("alice", "bob", "dave")))
    assert report.shares == 3 and report.threshold == 2
    stored = world.store().load()
    assert stored is not None and stored.holders == ("alice", "bob", "dave") and not stored.next_holders
    assert stored.recipients == _custody(people, ("alice", "bob", "dave")).fingerprint
    assert stored.open_held([people["dave"]]) == [(2, world.vault.keys[2])]
    assert stored.open_held([people["carol"]]) == []


def test_rekey_moves_root_sealed_shares_to_custody(world: World, people: dict[str, Any]) -> None:
    world.init()  # without custody: every share to the root recipient
    root = lifecycle.load_identities(IDENTITY)
    _rekey(world, root, _custody(people))
    stored = world.store().load()
    assert stored is not None and stored.holders == NAMES and stored.open_held(root) == []
    status = lifecycle.status(world.vault, world.store(), _custody(people))  # type: ignore[arg-type]
    assert status.material.matches_platform is True and status.material.custodians == list(NAMES)
    moved = lifecycle.status(world.vault, world.store(), _custody(people, threshold=3))  # type: ignore[arg-type]
    assert moved.material.matches_platform is False


# ------------------------------------------------------------------------------------------------ validate


def _repo(tmp_path: Path, people: dict[str, Any], custody: dict[str, Any] | None,
          recipients: list[str] | None = None, gitops: str | None = None) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", root)
    path = root / "platform.yaml"
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    spec = docs[0]["spec"]
    if recipients:
        spec["rootOfTrust"]["ageRecipients"] = recipients
    if custody is not None:
        spec["rootOfTrust"]["custody"] = custody
    if gitops:
        spec["gitops"] = {"decryptionRecipients": {"dev1": [gitops]}}
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return root


def _rules(root: Path) -> list[tuple[str, int | None]]:
    return [(f.rule, f.line) for f in run_checks(load_repository(root)) if f.rule.startswith("CH09")]


def _declared(people: dict[str, Any], threshold: int = 2) -> dict[str, Any]:
    return {"threshold": threshold,
            "custodians": [{"name": n, "ageRecipient": str(people[n].to_public())} for n in NAMES]}


def test_validate_custody_rules(tmp_path: Path, people: dict[str, Any]) -> None:
    assert _rules(_repo(tmp_path / "a", people, None)) == []  # one root identity: SPEC §6 allows it
    two = [RECIPIENT, str(people["dave"].to_public())]
    assert [r for r, _ in _rules(_repo(tmp_path / "b", people, None, two))] == ["CH090"]
    assert _rules(_repo(tmp_path / "c", people, _declared(people))) == []
    in_cluster = _rules(_repo(tmp_path / "d", people, _declared(people), gitops=str(people["bob"].to_public())))
    assert [r for r, _ in in_cluster] == ["CH091"] and in_cluster[0][1] is not None
    assert [r for r, _ in _rules(_repo(tmp_path / "e", people, _declared(people, 1)))] == ["CH092"]
    errors = [f for f in run_checks(load_repository(tmp_path / "d" / "repo")) if f.rule == "CH091"]
    assert errors[0].severity == "error" and "bob" in errors[0].message and "dev1" in errors[0].message
