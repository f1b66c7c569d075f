"""Proof 1: KV v2 on the real authority (OpenBao or Vault, as the lab tests run): write, read, check-and-set,
metadata, versions."""

from __future__ import annotations

from typing import Any

import hvac
import pytest

from tests.conftest import lab_authority

pytestmark = pytest.mark.lab

MOUNT = "secret"


def test_kv2_write_read_cas_metadata_and_history(vault: Any) -> None:
    kv = vault.secrets.kv.v2
    path = "proof/kv-life-cycle"
    first = kv.create_or_update_secret(path=path, secret={"password": "v1-value"}, cas=0, mount_point=MOUNT)
    assert first["data"]["version"] == 1

    read = kv.read_secret_version(path=path, mount_point=MOUNT, raise_on_deleted_version=True)
    assert read["data"]["data"] == {"password": "v1-value"}
    assert read["data"]["metadata"]["version"] == 1

    # cas=0 means "only if absent": the second create must be refused.
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        kv.create_or_update_secret(path=path, secret={"password": "racer"}, cas=0, mount_point=MOUNT)
    second = kv.create_or_update_secret(path=path, secret={"password": "v2-value"}, cas=1, mount_point=MOUNT)
    assert second["data"]["version"] == 2
    # A writer holding a stale version loses.
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        kv.create_or_update_secret(path=path, secret={"password": "stale"}, cas=1, mount_point=MOUNT)

    kv.update_metadata(
        path=path,
        mount_point=MOUNT,
        max_versions=5,
        cas_required=True,
        custom_metadata={"owner": "team-payments", "rotation_type": "time-based"},
    )
    meta = kv.read_secret_metadata(path=path, mount_point=MOUNT)["data"]
    assert meta["custom_metadata"] == {"owner": "team-payments", "rotation_type": "time-based"}
    assert meta["max_versions"] == 5
    assert meta["cas_required"] is True
    assert meta["current_version"] == 2
    assert sorted(meta["versions"]) == ["1", "2"]

    # With cas_required, a write without cas is refused by the server.
    with pytest.raises(hvac.exceptions.InvalidRequest):
        kv.create_or_update_secret(path=path, secret={"password": "no-cas"}, mount_point=MOUNT)

    old = kv.read_secret_version(path=path, version=1, mount_point=MOUNT, raise_on_deleted_version=True)
    assert old["data"]["data"] == {"password": "v1-value"}
    latest = kv.read_secret_version(path=path, mount_point=MOUNT, raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"password": "v2-value"}


def test_typed_adapter_destroys_versions_on_vault(vault: Any, vault_info: Any) -> None:
    """KV destroy through ``chamberlain.authority.vault`` (what rotation will call after a promote): the data of the
    destroyed version is gone for good, its metadata says destroyed, the current version is untouched."""
    from chamberlain.authority.model import Flavor
    from chamberlain.authority.vault import client_with_token
    from chamberlain.clock import SystemClock

    client = client_with_token(vault_info.address, vault_info.ca_file, vault_info.root_token, clock=SystemClock())
    assert client.flavor is Flavor(lab_authority())
    kv, path = client.kv, "proof/kv-destroy"
    assert kv.write(MOUNT, path, {"password": "staged-v1"}, cas=0) == 1
    assert kv.write(MOUNT, path, {"password": "promoted-v2"}, cas=1) == 2
    kv.destroy(MOUNT, path, [1])
    gone = kv.read(MOUNT, path, version=1)
    assert gone is not None and gone.deleted and dict(gone.data) == {}
    raw = vault.secrets.kv.v2.read_secret_metadata(path=path, mount_point=MOUNT)["data"]["versions"]
    assert raw["1"]["destroyed"] is True and raw["2"]["destroyed"] is False
    meta = kv.read_metadata(MOUNT, path)
    assert meta is not None and meta.destroyed == frozenset({1}) and meta.versions == {1: True, 2: False}
    current = kv.read(MOUNT, path)
    assert current is not None and current.version == 2 and current.data == {"password": "promoted-v2"}
    kv.destroy(MOUNT, path, [1])  # again: harmless
