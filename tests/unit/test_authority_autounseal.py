"""Auto-unseal with fakes (issue 13 item 3): the Platform's ``authority.seal``, init issuing recovery keys sealed to
the custodians like unseal shares, a restart that needs nobody, ``unseal`` with nothing to do, a seal the server
cannot reach, a seal that is not the Platform's, and the lab's unsealer configuration (without running it).
tests/lab/test_authority_autounseal.py proves the same against the real OpenBao servers and kube-apiserver."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pydantic
import pyrage
import pytest

from chamberlain.authority import lifecycle
from chamberlain.authority.decide import InitStep, next_init_step
from chamberlain.authority.lifecycle import InitPlan, SealError, ShareCustody
from chamberlain.authority.material import ANNOTATION_SEAL_TYPE
from chamberlain.authority.model import Flavor
from chamberlain.authority.vault.flavor import RECOVERY_REKEY_PATHS
from chamberlain.clock import FakeClock
from chamberlain.intent.model import Authority
from chamberlain.lab import lab as lab_mod
from chamberlain.lab.servers import LabError, LabHost
from tests.unit.test_authority_decide import READY
from tests.unit.test_authority_lifecycle import NS, RECIPIENT, World

NAMES = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def people() -> dict[str, pyrage.x25519.Identity]:
    return {n: pyrage.x25519.Identity.generate() for n in NAMES}


def _init(world: World, people: dict[str, Any], seal: str = "transit") -> lifecycle.InitReport:
    custody = ShareCustody((RECIPIENT,), tuple((n, str(people[n].to_public())) for n in NAMES), 2)
    return lifecycle.initialize(
        world.vault,  # type: ignore[arg-type]
        world.store(), InitPlan(3, 2, [RECIPIENT], world.tmp / "recovery", custody.custodians, seal=seal),
        login_configurator=world.vault.login_configurator,  # type: ignore[arg-type]
        configure=world.configure, verify=lambda: ["chamberlain.dev1.orchestrator"],
        recorder_for=world.recorder_for, clock=FakeClock())


@pytest.fixture
def transit(tmp_path: Path) -> World:
    world = World(tmp_path)
    world.vault.seal_type = "transit"
    return world


# ------------------------------------------------------------------------------------------------ the Platform


def test_the_seal_is_shamir_unless_declared_and_unknown_types_are_refused() -> None:
    plain = Authority.model_validate({"address": "https://vault:8200"})
    assert plain.seal.type == "shamir" and not plain.seal.auto_unseal
    for kind in ("transit", "awskms", "gcpckms", "azurekeyvault", "pkcs11"):
        assert Authority.model_validate({"address": "https://vault:8200", "seal": {"type": kind}}).seal.auto_unseal
    with pytest.raises(pydantic.ValidationError, match=r"seal\.type"):
        Authority.model_validate({"address": "https://vault:8200", "seal": {"type": "static"}})
    with pytest.raises(pydantic.ValidationError, match="keyName"):  # the seal's settings live on the server
        Authority.model_validate({"address": "https://vault:8200", "seal": {"type": "transit", "keyName": "k"}})


# ------------------------------------------------------------------------------------------------ decisions


def test_a_sealed_auto_unsealed_server_is_waited_for_never_fed_shares() -> None:
    sealed = dataclasses.replace(READY, sealed=True, active=False, holds_shares=True, can_open=True,
                                 auto_unseal=True)
    assert next_init_step(sealed).step is InitStep.WAIT_ACTIVE
    assert next_init_step(dataclasses.replace(sealed, auto_unseal=False)).step is InitStep.UNSEAL


# ------------------------------------------------------------------------------------------------ life cycle


def test_init_stores_recovery_keys_one_per_custodian_and_restarts_need_nobody(
        transit: World, people: dict[str, Any]) -> None:
    report = _init(transit, people)
    assert report.initialized_now and report.root_revoked and not report.unsealed_now  # it unsealed itself
    material = transit.store().load()
    assert material is not None and material.recovery_keys and material.seal_type == "transit"
    assert material.holders == NAMES and material.threshold == 2
    secret = transit.kube.get_secret(NS, lifecycle.SECRET_NAME)
    assert secret is not None and secret.annotations[ANNOTATION_SEAL_TYPE] == "transit"
    # Each recovery key opens for its custodian only, and is one of the server's.
    for index, name in enumerate(NAMES):
        opened = material.open_held([people[name]])
        assert [i for i, _ in opened] == [index] and opened[0][1] in transit.vault.keys
    transit.vault.restart()
    assert not transit.vault.sealed  # nobody acted
    result = lifecycle.unseal(transit.vault, transit.store(), [])  # type: ignore[arg-type]
    assert result.auto_unseal == "transit" and result.submitted == 0 and not result.sealed
    status = lifecycle.status(transit.vault, transit.store(), declared_seal="transit")  # type: ignore[arg-type]
    assert status.ready and status.auto_unseal and status.material.recovery_keys
    assert status.seal_matches_platform is True
    assert status.as_dict()["seal"] == {"type": "transit", "auto_unseal": True, "declared": "transit"}


def test_a_server_that_cannot_reach_its_seal_is_reported_with_what_to_do(
        transit: World, people: dict[str, Any]) -> None:
    _init(transit, people)
    transit.vault.seal_reachable = False
    transit.vault.restart()
    with pytest.raises(SealError, match="cannot reach that seal") as caught:
        lifecycle.unseal(transit.vault, transit.store(), [])  # type: ignore[arg-type]
    assert "Recovery keys cannot unseal" in str(caught.value)
    status = lifecycle.status(transit.vault, transit.store())  # type: ignore[arg-type]
    assert status.sealed and status.auto_unseal and not status.ready


def test_init_of_a_server_that_cannot_reach_its_seal_stops_with_the_seal_named(
        transit: World, people: dict[str, Any]) -> None:
    transit.vault.seal_reachable = False
    with pytest.raises(SealError, match="unseals itself through its transit seal"):
        _init(transit, people)
    material = transit.store().load()
    assert material is not None and material.recovery_keys  # the keys were stored before the wait


@pytest.mark.parametrize(("server", "declared"), [("shamir", "transit"), ("transit", "shamir")],
                         ids=["platform-says-transit", "platform-says-shamir"])
def test_a_seal_that_is_not_the_platforms_is_refused_before_anything_changes(
        tmp_path: Path, people: dict[str, Any], server: str, declared: str) -> None:
    world = World(tmp_path)
    world.vault.seal_type = server
    with pytest.raises(SealError, match="Nothing was changed"):
        _init(world, people, seal=declared)
    assert world.store().load() is None and not world.vault.initialized


def _rekey(world: World, people: dict[str, Any], *who: str) -> lifecycle.RekeyReport:
    custody = ShareCustody((RECIPIENT,), tuple((n, str(people[n].to_public())) for n in NAMES), 2)
    return lifecycle.rekey(world.vault, world.store(), [people[n] for n in who], custody,  # type: ignore[arg-type]
                           login_configurator=world.vault.login_configurator,  # type: ignore[arg-type]
                           recorder_for=world.recorder_for, clock=FakeClock())


def test_recovery_keys_are_rekeyed_by_k_custodians(transit: World, people: dict[str, Any]) -> None:
    _init(transit, people)
    old = transit.vault.keys
    with pytest.raises(SealError, match="rekey needs 2 shares"):
        _rekey(transit, people, "alice")
    report = _rekey(transit, people, "alice", "bob")
    assert report.recovery_keys and report.generation == 2 and report.shares == 3
    material = transit.store().load()
    assert material is not None and material.recovery_keys and material.holders == NAMES
    assert not set(transit.vault.keys) & set(old)
    assert [k for _, k in material.open_held([people["carol"]])] == [transit.vault.keys[2]]
    assert transit.events[-1] == ("authority-rekey", {**transit.events[-1][1], "keys": "recovery"})


def test_recovery_keys_have_their_own_rekey_endpoints() -> None:
    openbao = RECOVERY_REKEY_PATHS[Flavor.OPENBAO]
    assert (openbao.init, openbao.verify, openbao.authenticated) == (
        "sys/rotate/recovery/init", "sys/rotate/recovery/verify", True)
    assert RECOVERY_REKEY_PATHS[Flavor.VAULT].update == "sys/rekey-recovery-key/update"


def test_stored_keys_of_the_other_kind_are_refused(tmp_path: Path, people: dict[str, Any]) -> None:
    world = World(tmp_path)
    _init(world, people, seal="shamir")
    world.vault.seal_type = "transit"  # e.g. migrated by hand: the stored shares are not its recovery keys
    with pytest.raises(SealError, match="holds unseal shares"):
        _rekey(world, people, "alice", "bob")


# ------------------------------------------------------------------------------------------------ the lab


def _config(tmp_path: Path, **kw: Any) -> lab_mod.LabConfig:
    host = LabHost(tmp_path / "cache", {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, FakeClock())
    return lab_mod.LabConfig(lab_dir=tmp_path / "lab", host=host, **kw)


def test_auto_unseal_is_persisted_and_adds_the_unsealer_before_the_authority(tmp_path: Path) -> None:
    config = _config(tmp_path, auto_unseal=True)
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "lab.json").write_text(config.to_json(), encoding="utf-8")
    assert lab_mod.LabConfig.load(tmp_path / "lab", config.host).auto_unseal
    names = list(lab_mod.Lab(config).servers())
    assert names.index("unsealer") == names.index("openbao") - 1
    assert "unsealer" not in lab_mod.Lab(_config(tmp_path)).servers()
    with pytest.raises(LabError, match="server mode"):
        _config(tmp_path, auto_unseal=True, dev=True)


def test_the_authority_seal_stanza_names_the_key_and_the_token_stays_out_of_the_file(tmp_path: Path) -> None:
    lab = lab_mod.Lab(_config(tmp_path, auto_unseal=True))
    seal = lab.authority.seal
    assert seal is not None and lab.unsealer is not None
    stanza = seal.stanza()["transit"]
    assert stanza["address"] == lab.unsealer.address and stanza["key_name"] == "chamberlain-autounseal"
    assert stanza["mount_path"] == "transit/" and "token" not in stanza
    seal.token_file.parent.mkdir(parents=True)
    seal.token_file.write_text("s.unit-test-seal-token\n", encoding="utf-8")
    spawned: dict[str, Any] = {}
    lab.authority._spawn = lambda argv, env=None, **_: spawned.update(argv=argv, env=env)  # type: ignore[method-assign]
    lab.authority.start()  # writes the configuration, then "spawns" (recorded above)
    config = json.loads((lab.authority.dir / "config.json").read_text(encoding="utf-8"))
    assert config["seal"] == seal.stanza()
    assert "unit-test-seal-token" not in json.dumps(config)
    assert spawned["env"]["VAULT_TOKEN"] == "s.unit-test-seal-token"
    assert "s.unit-test-seal-token" in lab.authority.secret_values()  # masked from any log tail
