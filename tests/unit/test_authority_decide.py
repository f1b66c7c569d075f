"""The pure deciders of ``authority init`` and ``authority rekey``: one row per observed state, the step it must
lead to. The executors and their crash checkpoints are proven in ``test_authority_lifecycle.py`` (fakes) and
``tests/lab/test_authority_lifecycle.py`` (real servers)."""

from __future__ import annotations

import dataclasses

import pytest

from chamberlain.authority.decide import (
    InForce,
    InitObserved,
    InitStep,
    Material,
    RekeyObserved,
    RekeyStep,
    Session,
    next_init_step,
    next_rekey_step,
)

# A server that is initialized, unsealed, active; the material stored; this run authenticated as the configurator
# and done with nothing yet. Rows below change what matters for them.
READY = InitObserved(
    initialized=True, sealed=False, material=Material.STORED, recovery_file=False, holds_shares=False,
    can_open=False, holds_root=False, session=Session.CONFIGURATOR, login_refused=False, active=True,
    configured=False, init_recorded=False, verified=False, root_revoked=False,
)
FRESH = dataclasses.replace(READY, initialized=False, sealed=True, material=Material.ABSENT, active=False,
                            session=Session.NONE)
DONE_BEFORE = dataclasses.replace(READY, configured=True, init_recorded=True, verified=True, root_revoked=True)


def _init(base: InitObserved, **changes: object) -> InitObserved:
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


INIT_TABLE = [
    # before sys/init
    pytest.param(FRESH, InitStep.PREPARE_STORE, id="empty-server-no-secret:prepare-store"),
    pytest.param(_init(FRESH, material=Material.PENDING), InitStep.INITIALIZE, id="placeholder-written:initialize"),
    pytest.param(_init(FRESH, material=Material.STORED), InitStep.BLOCKED, id="stale-material-wiped-server:blocked"),
    # initialized, material not stored
    pytest.param(_init(READY, material=Material.PENDING, sealed=True, recovery_file=True), InitStep.UPLOAD_RECOVERY,
                 id="secret-write-failed-recovery-file:upload"),
    pytest.param(_init(READY, material=Material.ABSENT, recovery_file=True), InitStep.UPLOAD_RECOVERY,
                 id="no-secret-recovery-file:upload"),
    pytest.param(_init(READY, material=Material.ABSENT), InitStep.BLOCKED, id="someone-elses-server:blocked"),
    # sealed
    pytest.param(_init(READY, sealed=True, holds_shares=True, session=Session.NONE), InitStep.UNSEAL,
                 id="sealed-shares-from-init:unseal"),
    pytest.param(_init(READY, sealed=True, can_open=True, session=Session.NONE), InitStep.UNSEAL,
                 id="sealed-identity-given:unseal"),
    pytest.param(_init(READY, sealed=True, session=Session.NONE), InitStep.BLOCKED, id="sealed-no-identity:blocked"),
    pytest.param(_init(READY, active=False, session=Session.NONE), InitStep.WAIT_ACTIVE,
                 id="unsealed-not-confirmed-active:wait"),
    # authenticating
    pytest.param(_init(READY, session=Session.NONE, holds_root=True), InitStep.USE_ROOT, id="init-root-held:use-it"),
    pytest.param(_init(READY, session=Session.NONE), InitStep.LOGIN, id="no-token:login-as-configurator"),
    pytest.param(_init(READY, session=Session.NONE, login_refused=True, can_open=True), InitStep.GENERATE_ROOT,
                 id="configurator-refused-identity-given:generate-root"),
    pytest.param(_init(READY, session=Session.NONE, login_refused=True, holds_shares=True), InitStep.GENERATE_ROOT,
                 id="configurator-refused-shares-held:generate-root"),
    pytest.param(_init(READY, session=Session.NONE, login_refused=True), InitStep.BLOCKED,
                 id="configurator-refused-no-identity:blocked"),
    pytest.param(_init(READY, session=Session.NONE, login_refused=True, can_open=True, generate_root_refused=True),
                 InitStep.BLOCKED, id="configurator-refused-generate-root-refused:blocked"),
    # authenticated: configure, record, verify, sweep
    pytest.param(READY, InitStep.CONFIGURE, id="authenticated:configure"),
    pytest.param(_init(READY, configured=True), InitStep.RECORD, id="configured-not-recorded:record"),
    pytest.param(_init(READY, configured=True, init_recorded=True), InitStep.VERIFY, id="recorded:verify"),
    pytest.param(_init(READY, configured=True, init_recorded=True, verified=True), InitStep.SWEEP,
                 id="verified-root-not-revoked:sweep"),
    pytest.param(_init(READY, session=Session.INIT_ROOT, configured=True, init_recorded=True, verified=True),
                 InitStep.SWEEP, id="init-root-session:sweep-revokes-it"),
    pytest.param(DONE_BEFORE, InitStep.DONE, id="configurator-everything-done:done"),
    pytest.param(_init(DONE_BEFORE, session=Session.BREAK_GLASS), InitStep.DROP,
                 id="break-glass-root-already-revoked:drop-ours"),
    pytest.param(_init(READY, session=Session.DROPPED, configured=True, init_recorded=True, verified=True),
                 InitStep.DONE, id="own-root-revoked-by-sweep:done"),
]


@pytest.mark.parametrize(("observed", "expected"), INIT_TABLE)
def test_next_init_step(observed: InitObserved, expected: InitStep) -> None:
    decision = next_init_step(observed)
    assert decision.step is expected
    assert decision.why


def test_init_messages_say_what_to_do() -> None:
    assert "move that Secret away" in next_init_step(_init(FRESH, material=Material.STORED)).why
    assert "--identity" in next_init_step(_init(READY, sealed=True, session=Session.NONE)).why
    assert "--identity" in next_init_step(_init(READY, session=Session.NONE, login_refused=True)).why
    refused = _init(READY, session=Session.NONE, login_refused=True, can_open=True, generate_root_refused=True)
    assert "disable_unauthed_generate_root_endpoints = false" in next_init_step(refused).why


def test_a_sealed_server_is_unsealed_before_anything_else_even_mid_run() -> None:
    # A restart between two steps of one run: whatever was done, the next step is to unseal again.
    mid = _init(READY, sealed=True, can_open=True, configured=True, active=True)
    assert next_init_step(mid).step is InitStep.UNSEAL


# ------------------------------------------------------------------------------------------------ rekey

START = RekeyObserved(ready=True, material=True, next_stored=False, verification_pending=False,
                      in_force=InForce.UNKNOWN, rotated=False, recorded=False, abandoned=False)


def _rekey(**changes: object) -> RekeyObserved:
    return dataclasses.replace(START, **changes)  # type: ignore[arg-type]


REKEY_TABLE = [
    pytest.param(_rekey(ready=False), RekeyStep.BLOCKED, id="sealed-or-uninitialized:blocked"),
    pytest.param(_rekey(material=False), RekeyStep.BLOCKED, id="no-material:blocked"),
    pytest.param(START, RekeyStep.START, id="nothing-pending:start"),
    pytest.param(_rekey(next_stored=True, verification_pending=True), RekeyStep.VERIFY,
                 id="new-shares-stored-verification-pending:verify"),
    pytest.param(_rekey(next_stored=True), RekeyStep.PROBE, id="new-shares-stored-verification-lost:probe"),
    pytest.param(_rekey(next_stored=True, in_force=InForce.NEW), RekeyStep.PROMOTE, id="new-in-force:promote"),
    pytest.param(_rekey(next_stored=True, in_force=InForce.OLD), RekeyStep.ABANDON, id="old-in-force:abandon"),
    pytest.param(_rekey(abandoned=True), RekeyStep.BLOCKED, id="abandoned:blocked-run-again"),
    pytest.param(_rekey(in_force=InForce.NEW), RekeyStep.ROTATE, id="promoted:rotate-encryption-key"),
    pytest.param(_rekey(in_force=InForce.NEW, rotated=True), RekeyStep.RECORD, id="rotated:record"),
    pytest.param(_rekey(in_force=InForce.NEW, rotated=True, recorded=True), RekeyStep.DONE, id="recorded:done"),
]


@pytest.mark.parametrize(("observed", "expected"), REKEY_TABLE)
def test_next_rekey_step(observed: RekeyObserved, expected: RekeyStep) -> None:
    decision = next_rekey_step(observed)
    assert decision.step is expected
    assert decision.why


def test_rekey_messages_say_what_to_do() -> None:
    assert "unsealed" in next_rekey_step(_rekey(ready=False)).why
    assert "run rekey again" in next_rekey_step(_rekey(abandoned=True)).why
