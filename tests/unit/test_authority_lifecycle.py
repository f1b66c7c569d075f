"""The seal life cycle with fakes: init (and its resume paths), unseal, status, rekey guards, age sealing, and the
error mapping of the hvac adapter. The lab test proves the same against a real Vault and kube-apiserver."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hvac.exceptions
import pyrage
import pytest
import requests

from chamberlain import wellknown as wk
from chamberlain.authority import errors, lifecycle
from chamberlain.authority.configure import CONFIGURATOR
from chamberlain.authority.errors import NotInitialized, Unauthenticated
from chamberlain.authority.lifecycle import InitPlan, SealedStore, SealError
from chamberlain.authority.model import KubernetesRole, Login
from chamberlain.authority.session import kubernetes_auth_settings
from chamberlain.authority.vault import VaultClient, map_error
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.kube.api import KubeUnavailable
from chamberlain.kube.fake import FakeKube
from chamberlain.kube.kubeconfig import KubeconfigSource, cluster_endpoint
from tests.unit.test_authority_fakes import FakeVault

REPO_ROOT = Path(__file__).resolve().parents[2]
IDENTITY = REPO_ROOT / "tests" / "fixtures" / "age" / "test-identity.txt"
RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
NS = "chamberlain-system"


class World:
    def __init__(self, tmp: Path) -> None:
        self.vault = FakeVault()
        self.kube = FakeKube()
        self.tmp = tmp
        self.events: list[tuple[str, dict[str, str]]] = []
        self.configured = 0

    def store(self) -> SealedStore:
        return SealedStore(self.kube, NS)

    def configure(self, client: Any) -> int:
        self.configured += 1
        client.auth.lookup_self()  # must be authenticated
        if "auth/kubernetes-dev1/role/" + CONFIGURATOR in client.paths:
            return 0
        client.auth.write_role("kubernetes-dev1", CONFIGURATOR, KubernetesRole(token_policies=(CONFIGURATOR,)))
        return 1

    def recorder_for(self, client: Any) -> Any:
        def record(event: str, details: Mapping[str, str]) -> None:
            client.auth.lookup_self()
            self.events.append((event, dict(details)))
        return record

    def init(self, identities: Any = None, shares: int = 3, threshold: int = 2) -> lifecycle.InitReport:
        return lifecycle.initialize(
            self.vault,  # type: ignore[arg-type]
            self.store(), InitPlan(shares, threshold, [RECIPIENT], self.tmp / "recovery"),
            login_configurator=self.vault.login_configurator,  # type: ignore[arg-type]
            configure=self.configure, verify=lambda: ["chamberlain.dev1.orchestrator"],
            recorder_for=self.recorder_for, identities=identities, clock=FakeClock())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _identities() -> list[pyrage.x25519.Identity]:
    return lifecycle.load_identities(IDENTITY)


# ------------------------------------------------------------------------------------------------ age


def test_shares_are_sealed_to_the_recipients_and_open_with_the_identity() -> None:
    ct = lifecycle.seal_share("abc123", lifecycle.parse_recipients([RECIPIENT]))
    assert ct.startswith("-----BEGIN AGE ENCRYPTED FILE-----") and "abc123" not in ct
    assert lifecycle.open_share(ct, _identities()) == "abc123"


def test_a_foreign_identity_cannot_open_and_the_error_says_why() -> None:
    ct = lifecycle.seal_share("abc123", lifecycle.parse_recipients([RECIPIENT]))
    with pytest.raises(SealError, match="recipients") as exc:
        lifecycle.open_share(ct, [pyrage.x25519.Identity.generate()])
    assert "abc123" not in str(exc.value)


@pytest.mark.parametrize("bad", [[], ["age1nope"], ["ssh-ed25519 AAAA"]], ids=["none", "malformed", "ssh"])
def test_bad_recipients_are_usage_errors(bad: list[str]) -> None:
    with pytest.raises(UsageError):
        lifecycle.parse_recipients(bad)


def test_identity_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        lifecycle.load_identities(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(UsageError, match="no AGE-SECRET-KEY"):
        lifecycle.load_identities(empty)


# ------------------------------------------------------------------------------------------------ init


def test_init_seals_shares_into_the_secret_and_revokes_root(world: World) -> None:
    report = world.init()
    assert report.initialized_now and report.unsealed_now and report.root_revoked
    assert world.vault.init_calls == 1 and not world.vault.sealed
    material = world.store().load()
    assert material is not None and len(material.shares) == 3 and material.threshold == 2
    assert material.open(_identities()) == world.vault.keys
    assert material.root_revoked_at and material.init_recorded
    secret = world.kube.secrets[(NS, lifecycle.SECRET_NAME)]
    assert not any(k in v for k in world.vault.keys for v in secret.data.values())
    assert secret.annotations[wk.ANNOTATION_UNSEAL_SHARES] == "3"
    assert secret.annotations[wk.ANNOTATION_RECIPIENTS] == lifecycle.recipients_fingerprint([RECIPIENT])
    assert not [t for t in world.vault.tokens.values() if "root" in t.policies]
    assert [e for e, _ in world.events] == ["authority-init"]
    assert not (world.tmp / "recovery").exists() or not list((world.tmp / "recovery").iterdir())


def test_init_rerun_does_not_reinitialize(world: World) -> None:
    world.init()
    report = world.init()
    assert not report.initialized_now and world.vault.init_calls == 1
    assert report.authenticated_as.startswith("configurator")
    assert [e for e, _ in world.events] == ["authority-init"]


def test_init_rejects_threshold_above_shares(world: World) -> None:
    with pytest.raises(UsageError, match="threshold"):
        world.init(shares=2, threshold=3)
    assert world.vault.init_calls == 0


def test_stale_material_on_an_uninitialized_vault_is_refused(world: World) -> None:
    world.init()
    world.vault = FakeVault()  # storage wiped
    with pytest.raises(SealError, match="move that Secret away"):
        world.init()
    assert world.vault.init_calls == 0


def test_unwritable_store_fails_before_init(world: World) -> None:
    world.kube.down = True
    with pytest.raises(KubeUnavailable):
        world.init()
    assert world.vault.init_calls == 0


def test_store_failure_after_init_keeps_an_encrypted_recovery_copy(world: World) -> None:
    original = world.kube.update_secret

    def failing(secret: Any) -> Any:
        raise KubeUnavailable("API server answered 503")

    world.kube.update_secret = failing  # type: ignore[method-assign]
    with pytest.raises(SealError, match="re-run"):
        world.init()
    files = list((world.tmp / "recovery").iterdir())
    assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
    text = files[0].read_text()
    assert not any(k in text for k in world.vault.keys)
    world.kube.update_secret = original  # type: ignore[method-assign]
    report = world.init(identities=_identities())
    assert not report.initialized_now and world.vault.init_calls == 1
    assert world.store().load().open(_identities()) == world.vault.keys  # type: ignore[union-attr]
    assert not files[0].exists()


def test_resume_when_sealed_needs_the_identity(world: World) -> None:
    world.init()
    world.vault.restart()
    with pytest.raises(SealError, match="--identity"):
        world.init()
    report = world.init(identities=_identities())
    assert report.unsealed_now and not world.vault.sealed


def test_resume_before_the_configurator_exists_uses_generate_root_and_revokes_it(world: World) -> None:
    # A first run that stored the shares and died: Vault sealed, root token lost, nothing configured.
    keys = list(world.vault.seal.initialize(3, 2).keys)
    recips = lifecycle.parse_recipients([RECIPIENT])
    world.store().save(lifecycle.SealedMaterial(tuple(lifecycle.seal_share(k, recips) for k in keys), 2,
                                                lifecycle.recipients_fingerprint([RECIPIENT])))
    with pytest.raises(SealError):
        world.init()
    report = world.init(identities=_identities())
    assert report.authenticated_as.startswith("temporary root token")
    assert report.orphan_root_tokens_revoked == 1  # the lost init token
    assert not [t for t in world.vault.tokens.values() if "root" in t.policies]
    assert world.vault.init_calls == 1


def test_unseal_is_a_noop_when_unsealed_and_works_after_restart(world: World) -> None:
    world.init()
    assert lifecycle.unseal(world.vault, world.store(), _identities()).was_sealed is False  # type: ignore[arg-type]
    world.vault.restart()
    world.vault.progress = ["leftover-from-someone-else"]
    report = lifecycle.unseal(world.vault, world.store(), _identities())  # type: ignore[arg-type]
    assert report.was_sealed and report.submitted == 2 and not world.vault.sealed


def test_unseal_without_material_or_init_is_a_clear_error(world: World) -> None:
    with pytest.raises(SealError, match="no sealed unseal material"):
        world.vault.initialized = True
        lifecycle.unseal(world.vault, world.store(), _identities())  # type: ignore[arg-type]
    world.vault.initialized = False
    world.store().save(lifecycle.SealedMaterial(("x",), 1, "f"))
    with pytest.raises(NotInitialized):
        lifecycle.unseal(world.vault, world.store(), _identities())  # type: ignore[arg-type]


def test_status_reports_material_and_root_revocation(world: World) -> None:
    before = lifecycle.status(world.vault, world.store()).as_dict()  # type: ignore[arg-type]
    assert before["initialized"] is False and before["sealed_material"]["exists"] is False
    world.init()
    after = lifecycle.status(world.vault, world.store()).as_dict()  # type: ignore[arg-type]
    assert after["initialized"] and not after["sealed"]
    assert after["sealed_material"]["shares"] == 3 and after["root_token_revoked"] is True


def test_rekey_requires_an_unsealed_server(world: World) -> None:
    world.init()
    world.vault.restart()
    with pytest.raises(SealError, match="unsealed"):
        lifecycle.rekey(world.vault, world.store(), _identities(), [RECIPIENT],  # type: ignore[arg-type]
                        login_configurator=world.vault.login_configurator,  # type: ignore[arg-type]
                        recorder_for=world.recorder_for, clock=FakeClock())


@pytest.mark.parametrize("needs_token", [False, True], ids=["vault-unauthenticated", "openbao-with-a-token"])
def test_rekey_calls_the_endpoints_as_the_server_requires(world: World, needs_token: bool) -> None:
    world.init()
    world.vault.token = None  # a fresh, anonymous process
    world.vault.rekey_needs_token = needs_token
    old, before = list(world.vault.keys), world.store().load()
    assert before is not None
    report = lifecycle.rekey(world.vault, world.store(), _identities(), [RECIPIENT],  # type: ignore[arg-type]
                             login_configurator=world.vault.login_configurator,  # type: ignore[arg-type]
                             recorder_for=world.recorder_for, clock=FakeClock())
    assert report.generation == before.generation + 1 and report.key_term == 2
    assert not set(world.vault.keys) & set(old)
    stored = world.store().load()
    assert stored is not None and stored.open(_identities()) == world.vault.keys
    # Vault: no token reaches the rekey endpoints; OpenBao: the configurator's, logged in before the first one.
    tokens = set(world.vault.rekey_calls)
    assert tokens == ({next(iter(tokens))} if needs_token else {None})
    assert needs_token is (None not in tokens)
    assert [e for e, _ in world.events].count("authority-rekey") == 1


# ------------------------------------------------------------------------------------------- hvac errors


@pytest.mark.parametrize(("exc", "expected"), [
    (hvac.exceptions.InvalidRequest(errors=["check-and-set parameter did not match the current version"]),
     errors.CasConflict),
    (hvac.exceptions.InvalidRequest(errors=["check-and-set parameter required for this call"]), errors.CasRequired),
    (hvac.exceptions.VaultDown(errors=["Vault is sealed"]), errors.Sealed),
    (hvac.exceptions.VaultNotInitialized(), NotInitialized),
    (hvac.exceptions.Forbidden(errors=["permission denied"]), errors.Forbidden),
    (hvac.exceptions.Unauthorized(), Unauthenticated),
    (hvac.exceptions.InvalidPath(), errors.NotFound),
    (hvac.exceptions.InternalServerError(), errors.AuthorityUnavailable),
    (hvac.exceptions.RateLimitExceeded(), errors.AuthorityUnavailable),
    (requests.exceptions.ConnectionError("refused"), errors.AuthorityUnavailable),
], ids=["cas", "cas-required", "sealed", "uninitialized", "forbidden", "unauthorized", "missing", "5xx", "429",
        "unreachable"])
def test_hvac_errors_map_once_to_typed_errors(exc: BaseException, expected: type[Exception]) -> None:
    mapped = map_error(exc, "write secret/dev/x")
    assert type(mapped) is expected
    assert str(mapped).startswith("write secret/dev/x")


@pytest.mark.parametrize("text", ['no handler for route "sealed-secrets/data/x"', "permission denied: unsealed",
                                  "sealed box"])
def test_only_the_sealed_answer_is_sealed(text: str) -> None:
    mapped = map_error(hvac.exceptions.InvalidPath(errors=[text]), "read x")
    assert not isinstance(mapped, errors.Sealed)
    assert isinstance(map_error(hvac.exceptions.InternalServerError(errors=["Vault is sealed"]), "read x"),
                      errors.Sealed)


def test_error_bodies_stay_out_of_messages_unless_safe() -> None:
    exc = hvac.exceptions.InvalidRequest(errors=["the value s3cr3t-VALUE is bad"])
    assert "s3cr3t" not in str(map_error(exc, "write secret/x"))
    assert "bad" in str(map_error(exc, "write policy p", safe_detail=True))


class _Token:
    def __init__(self) -> None:
        self.renewed = 0

    def renew_self(self) -> dict[str, Any]:
        self.renewed += 1
        return {"auth": {"lease_duration": 3600, "renewable": True}}


class _Hvac:
    def __init__(self) -> None:
        self.token: str | None = None
        self.url = "https://vault.test"
        self.auth = type("A", (), {})()
        self.auth.token = _Token()


def test_session_renews_at_half_ttl_instead_of_logging_in_again() -> None:
    clock = FakeClock()
    client = VaultClient(_Hvac(), clock)
    logins = []

    def relogin() -> Login:
        logins.append(1)
        return Login("t2", 3600, True)

    client.use_token("t1")
    client._session = type(client._session)(3600, True, clock.monotonic(), relogin)  # type: ignore[misc]
    client.ensure_fresh()
    assert client._hvac.auth.token.renewed == 0
    clock.advance(1900.0)
    client.ensure_fresh()
    assert client._hvac.auth.token.renewed == 1 and not logins
    assert client.session_ttl == 3600


# ---------------------------------------------------------------------------------------------- session


def test_kubeconfig_gives_host_and_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n")
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        '{"clusters": [{"name": "c", "cluster": {"server": "https://k:6443", "certificate-authority": "ca.crt"}}],'
        ' "contexts": [{"name": "x", "context": {"cluster": "c"}}], "current-context": "x"}')
    source = KubeconfigSource((kc,))
    assert cluster_endpoint(source) == ("https://k:6443", ca.read_text())
    jwt = tmp_path / "jwt"
    jwt.write_text("eyJ.reviewer\n")
    settings = kubernetes_auth_settings(lambda: cluster_endpoint(source), reviewer_jwt_file=jwt)
    assert settings is not None and settings.reviewer_jwt == "eyJ.reviewer" and settings.disable_local_ca_jwt
    assert kubernetes_auth_settings(None) is None


def test_checkpoint_exits_like_a_killed_process() -> None:
    # The entry point arms the crash point named by the environment; then the checkpoint ends the process.
    code = ("import os; from chamberlain.faults import arm, checkpoint; arm(os.environ.get('CHAMBERLAIN_CRASH_AT'));"
            " checkpoint('a'); checkpoint('b'); print('survived')")
    env = {**os.environ, "CHAMBERLAIN_CRASH_AT": "b"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 137 and "survived" not in proc.stdout
    env["CHAMBERLAIN_CRASH_AT"] = "zzz"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "survived" in proc.stdout


# -------------------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> Any:
    from chamberlain.cli.authority import authority_app
    from chamberlain.cli.main import app
    from tests.conftest import run_cli

    if not any(g.name == "authority" for g in app.registered_groups):
        app.add_typer(authority_app, name="authority")
    return run_cli(*args)


def test_cli_usage_errors_exit_2_before_touching_anything(tmp_path: Path) -> None:
    from tests.conftest import CORPUS

    result = _cli("authority", "init", "--shares", "2", "--threshold", "3", str(CORPUS / "base"))
    assert result.code == 2 and "--threshold" in result.err
    result = _cli("authority", "status", str(tmp_path / "missing"))
    assert result.code == 2 and "no such directory" in result.err


def test_cli_help_lists_every_command() -> None:
    result = _cli("authority", "--help")
    assert result.code == 0
    for command in ("init", "unseal", "configure", "plan", "rekey", "status"):
        assert command in result.out


@pytest.mark.parametrize(("answer", "number"), [
    ({"data": {"data": None, "metadata": {"version": 3, "destroyed": True, "deletion_time": ""}}}, [3]),
    ({"errors": []}, []),  # absent: no data
    (None, []),  # no JSON body at all
    ({"data": {"data": None, "metadata": {"version": 3, "destroyed": False}}}, []),
    ({"data": {"data": None, "metadata": {"version": True, "destroyed": True}}}, []),
    ({"data": {"data": None, "metadata": {"version": "3", "destroyed": True}}}, []),
    ({"data": "not an object"}, []),
    ({"data": {"metadata": ["not", "an", "object"]}}, []),
])
def test_a_404_names_a_destroyed_version_only_when_its_metadata_says_so(answer: Any, number: list[int]) -> None:
    from chamberlain.authority.vault.kv import _destroyed_version

    assert _destroyed_version(hvac.exceptions.InvalidPath(json=answer)) == number


def test_a_404_naming_another_version_than_the_one_read_is_not_believed() -> None:
    from chamberlain.authority.vault.kv import _destroyed_version

    answer = {"data": {"data": None, "metadata": {"destroyed": True, "version": 3}}}
    assert _destroyed_version(hvac.exceptions.InvalidPath(json=answer), 3) == [3]
    assert _destroyed_version(hvac.exceptions.InvalidPath(json=answer), 2) == []
    assert _destroyed_version(hvac.exceptions.InvalidPath(json=answer), None) == [3], "the latest: any number"
