"""``dev=True``: a convenience authority (OpenBao or Vault, as the lab tests run) that is initialized and
unsealed, with its root token only in a 0600 file (never in the log)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from chamberlain.lab.pki import ensure_pki
from chamberlain.lab.servers import Authority
from tests.conftest import lab_authority, lab_host, unbuilt

pytestmark = pytest.mark.lab


@pytest.fixture
def dev_vault(tmp_path: Path) -> Iterator[Authority]:
    flavor = lab_authority()
    if flavor == "vault" and unbuilt(["vault"]):
        pytest.skip("vault not built")
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000"))
    port = 28200 + offset + 10
    host = lab_host()
    server = Authority(tmp_path, host, port, port + 1, ensure_pki(tmp_path, host.clock), dev=True, flavor=flavor)
    proc = server.start()
    try:
        server.wait(proc, timeout=60)
        yield server
    finally:
        server.stop()


def test_dev_vault_is_ready_and_keeps_its_token_out_of_logs(dev_vault: Authority) -> None:
    health = dev_vault.health()
    assert health.healthy and health.detail == "initialized, unsealed"
    token_file = dev_vault.root_token_file
    assert token_file.stat().st_mode & 0o077 == 0
    token = token_file.read_text(encoding="utf-8").strip()
    client = hvac.Client(url=dev_vault.address, token=token)
    assert client.is_authenticated()
    client.secrets.kv.v2.create_or_update_secret(path="dev-proof", secret={"k": "v"}, mount_point="secret")
    info = dev_vault.running()
    assert info is not None
    log = info.log.read_text(encoding="utf-8")
    assert token not in log
    assert info.log.stat().st_mode & 0o077 == 0
