"""The upgrade planner (pure) and the marker re-key over a fake KV and a fake transit HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import pytest

from chamberlain.authority.kv import SecretMetadata, SecretVersion
from chamberlain.intent.paths import VaultPath
from chamberlain.upgrade.markers import rekey
from chamberlain.upgrade.plan import LEGACY_CONFIGURATOR, Observed, next_step, outstanding, plan
from chamberlain.values.markers import same_version, version_marker

OLD = Observed(
    cluster="dev1",
    configuration_changes=("policy chamberlain.authority.configurator: change",),
    configurator_account=False,
    configurator_login=False,
    legacy_roles=(LEGACY_CONFIGURATOR, "chamberlain.dev1.orchestrator", "chamberlain.dev.reader.web"),
    stores_on_legacy=("web/chamberlain-dev-secret",),
    v1_markers=("secret/dev/team-web/session",),
    old_head=(13, "a" * 64),
    unlinked_partitions=("dev/dev1", "_authority/configurator"),
)
DONE = Observed(cluster="dev1")


def states(o: Observed) -> dict[str, str]:
    return {s.id: s.state for s in plan(o)}


@pytest.mark.parametrize(("observed", "expected"), [
    pytest.param(OLD, {"authority-configuration": "needed", "configurator-account": "needed",
                       "legacy-configurator-role": "waiting", "markers": "needed", "ledger-link": "needed",
                       "legacy-roles": "waiting"}, id="fresh-v0.4.0-installation"),
    pytest.param(Observed(cluster="dev1", legacy_roles=(LEGACY_CONFIGURATOR, "chamberlain.dev1.orchestrator")),
                 {"legacy-configurator-role": "needed", "legacy-roles": "needed"},
                 id="new-configurator-proven-and-stores-moved"),
    pytest.param(DONE, {}, id="upgraded"),
    pytest.param(Observed(cluster="dev1", custody_declared=True, custody_in_force=False, custodians=("a", "b")),
                 {"custody": "manual"}, id="custody-without-identities-is-manual"),
    pytest.param(Observed(cluster="dev1", custody_declared=True, custody_in_force=False, custodians=("a", "b"),
                          identities_given=True), {"custody": "needed"}, id="custody-with-identities-rekeys"),
    pytest.param(Observed(cluster="dev1", old_head=(3, "b" * 64)), {}, id="old-ledger-already-linked"),
])
def test_states(observed: Observed, expected: dict[str, str]) -> None:
    got = states(observed)
    assert {k: v for k, v in got.items() if v != "done"} == expected


def test_order_and_next_step() -> None:
    steps = plan(OLD)
    assert [s.id for s in steps] == ["authority-configuration", "configurator-account", "legacy-configurator-role",
                                     "markers", "ledger-link", "legacy-roles", "custody"]
    step = next_step(steps)
    assert step is not None and step.id == "authority-configuration"
    assert next_step(plan(DONE)) is None and outstanding(plan(DONE)) == []


def test_waiting_steps_say_why_and_name_the_stores() -> None:
    by_id = {s.id: s for s in plan(OLD)}
    assert "waiting for Git re-render" in by_id["legacy-roles"].changes
    assert by_id["legacy-roles"].items == ("web/chamberlain-dev-secret",)
    assert "logs in at its cluster's mount" in by_id["legacy-configurator-role"].changes
    assert by_id["markers"].items == ("secret/dev/team-web/session",)


# ------------------------------------------------------------------------------------------------ markers


class FakeKV:
    def __init__(self) -> None:
        self.versions: dict[str, list[dict[str, str]]] = {}
        self.custom: dict[str, dict[str, str]] = {}
        self.metadata_writes = 0

    def read(self, mount: str, path: str, version: int | None = None) -> SecretVersion | None:
        vs = self.versions.get(f"{mount}/{path}")
        if not vs:
            return None
        n = version or len(vs)
        return SecretVersion(n, vs[n - 1]) if 0 < n <= len(vs) else None

    def read_metadata(self, mount: str, path: str) -> SecretMetadata | None:
        key = f"{mount}/{path}"
        if key not in self.versions:
            return None
        n = len(self.versions[key])
        return SecretMetadata(n, 1, dict.fromkeys(range(1, n + 1), False), dict(self.custom.get(key, {})))

    def update_custom_metadata(self, mount: str, path: str, custom: Mapping[str, str]) -> None:
        self.metadata_writes += 1
        self.custom.setdefault(f"{mount}/{path}", {}).update(custom)


class FakeHmac:
    def hmac(self, mount: str, name: str, data: bytes) -> str:
        digest = hmac.new(f"{mount}/{name}".encode(), data, hashlib.sha256).digest()
        return "vault:v1:" + base64.b64encode(digest).decode()


def _seed(kv: FakeKV, vault: VaultPath, data: dict[str, str], *, marker: str | None = None) -> None:
    kv.versions[vault.full] = [{"password": "old"}, data]
    kv.custom[vault.full] = {"value-marker": marker or version_marker(vault.full, data), "value-version": "2"}


def test_rekey_keeps_consumers_current_and_is_idempotent() -> None:
    kv, vault = FakeKV(), VaultPath("secret", "dev/team-web/session")
    _seed(kv, vault, {"password": "s3cret-value"})
    v1 = kv.custom[vault.full]["value-marker"]
    assert rekey(kv, FakeHmac(), vault) == "rekeyed"  # type: ignore[arg-type]
    custom = kv.custom[vault.full]
    assert custom["value-marker"].startswith("v2:") and custom["value-marker-v1"] == v1
    assert custom["value-marker-v1-version"] == "2"
    assert same_version(v1, custom)  # a consumer still annotated with the v1 marker is current: no restart
    assert not any("s3cret" in v for v in custom.values())
    assert rekey(kv, FakeHmac(), vault) == "current"  # type: ignore[arg-type]
    assert kv.metadata_writes == 1
    assert len(kv.versions[vault.full]) == 2  # no value version written


def test_rekey_leaves_a_marker_that_is_not_its_versions() -> None:
    kv, vault = FakeKV(), VaultPath("secret", "dev/team-web/session")
    _seed(kv, vault, {"password": "x"}, marker=version_marker("secret/elsewhere", {"password": "x"}))
    assert rekey(kv, FakeHmac(), vault) == "inconsistent"  # type: ignore[arg-type]
    assert kv.metadata_writes == 0
    assert rekey(kv, FakeHmac(), VaultPath("secret", "dev/none")) == "absent"  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ the grant


def test_the_configurator_may_only_remove_roles_on_the_shared_mount_during_the_upgrade() -> None:
    from chamberlain.authority.configure import configurator_policy

    plain = configurator_policy(["secret"], ["kubernetes-dev1"], "secret")
    assert 'path "auth/kubernetes/role/*"' not in plain  # a new installation never gets it
    upgrading = configurator_policy(["secret"], ["kubernetes-dev1"], "secret", legacy_auth_mounts=["kubernetes"])
    block = upgrading.split('path "auth/kubernetes/role/*" {', 1)[1].split("}", 1)[0]
    assert '"delete"' in block and '"create"' not in block and '"update"' not in block
    assert 'path "sys/auth/kubernetes"' not in upgrading and 'path "auth/kubernetes/config"' not in upgrading
