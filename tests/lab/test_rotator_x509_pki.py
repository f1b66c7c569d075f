"""The ``x509-vault-pki`` rotator against the lab's real Vault PKI engine, no mocks.

A fresh PKI mount with a generated root and one role; the rotator runs through the real adapter
(``VaultClient`` + ``VaultCertificateIssuer``) with a token that holds exactly what the rendered orchestrator
policy grants for the intent (``update`` on ``<mount>/sign/<role>`` and ``<mount>/revoke``): two rotations,
``test`` against the CA Vault returned, ``revoke_old`` of the first certificate, which Vault then lists as revoked.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509

from chamberlain.authority.pki import VaultCertificateIssuer
from chamberlain.authority.vault import client_with_token
from chamberlain.clock import SystemClock
from chamberlain.intent.model import SecretIntent
from chamberlain.render.vault_bundle import _pki_blocks, _policy
from chamberlain.rotation.rotators import RotationContext, TargetRejected
from chamberlain.rotation.rotators.x509 import X509VaultPkiRotator, vault_serial
from tests.lab.conftest import VaultInfo

pytestmark = pytest.mark.lab

ROLE = "web"


def make_intent(mount: str, dns_names: str = "app.shop.svc") -> SecretIntent:
    return SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1",
        "kind": "SecretIntent",
        "metadata": {"name": "web-cert", "namespace": "shop", "annotations": {
            "chamberlain.dev/rotator": "x509-vault-pki",
            "chamberlain.dev/x509-pki-mount": mount,
            "chamberlain.dev/x509-pki-role": ROLE,
            "chamberlain.dev/x509-dns-names": dns_names,
            "chamberlain.dev/x509-ttl": "1h",
        }},
        "spec": {
            "owner": "shop",
            "purpose": "lab proof of the x509-vault-pki rotator",
            "classification": "runtime",
            "source": {"generate": {"tls.key": {"type": "ecdsa"}, "edge.key": {"type": "ed25519"}}},
        },
    })


@pytest.fixture(scope="module")
def pki_mount(vault: Any) -> str:
    mount = f"pki-{secrets.token_hex(4)}"
    vault.sys.enable_secrets_engine("pki", path=mount, config={"max_lease_ttl": "87600h"})
    vault.secrets.pki.generate_root(type="internal", common_name="chamberlain lab test root",
                                    extra_params={"ttl": "87600h"}, mount_point=mount)
    vault.secrets.pki.create_or_update_role(ROLE, extra_params={
        "allowed_domains": ["shop.svc"], "allow_subdomains": True, "max_ttl": "72h", "key_type": "any",
    }, mount_point=mount)
    return mount


@pytest.fixture(scope="module")
def orchestrator_token(vault: Any, pki_mount: str) -> str:
    """A token holding only the policy the renderer derives for this intent."""
    name = f"x509-pki-test-{pki_mount}"
    blocks = _pki_blocks([make_intent(pki_mount)], ["secret"])
    vault.sys.create_or_update_policy(name=name, policy=_policy("test", blocks))
    token = vault.auth.token.create(policies=[name], ttl="10m", no_default_policy=True)
    return str(token["auth"]["client_token"])


def revocation_time(vault: Any, mount: str, serial: str) -> int:
    return int(vault.read(f"{mount}/cert/{serial}")["data"]["revocation_time"])


def test_rotate_test_and_revoke_with_a_real_vault_pki(vault: Any, vault_info: VaultInfo, pki_mount: str,
                                                      orchestrator_token: str) -> None:
    client = client_with_token(vault_info.address, vault_info.ca_file, orchestrator_token, clock=SystemClock())
    issuer = VaultCertificateIssuer(client)
    intent = make_intent(pki_mount)
    rotator = X509VaultPkiRotator()

    def ctx(current: dict[str, str] | None = None) -> RotationContext:
        return RotationContext(intent, datetime.now(UTC), current=current or {}, pki=issuer)

    first = rotator.create_pending(ctx())
    rotator.test(ctx(), first)
    root = x509.load_pem_x509_certificate(vault.secrets.pki.read_ca_certificate(mount_point=pki_mount).encode())
    assert x509.load_pem_x509_certificates(first.data["ca.crt"].encode()) == [root]
    leaf = x509.load_pem_x509_certificates(first.data["tls.crt"].encode())
    assert len(leaf) == 1  # issued by the root itself: no intermediate to present
    assert leaf[0].subject.rfc4514_string() == "CN=app.shop.svc"
    lifetime = leaf[0].not_valid_after_utc - leaf[0].not_valid_before_utc
    assert 3600 <= lifetime.total_seconds() <= 3600 + 60  # x509-ttl 1h (+ Vault's not_before backdating)
    serials = {k: first.notes[f"serial.{k}"] for k in ("tls.crt", "edge.crt")}
    assert serials["tls.crt"] == vault_serial(leaf[0])

    second = rotator.create_pending(ctx(dict(first.data)))
    rotator.test(ctx(dict(first.data)), second)
    assert second.notes["serial.tls.crt"] != serials["tls.crt"]

    # After promotion (current = second) and the overlap: the first certificates are revoked, the new ones not.
    rotator.revoke_old(ctx(dict(second.data)), first.data)
    rotator.revoke_old(ctx(dict(second.data)), first.data)  # repeated after a crash: harmless
    for serial in serials.values():
        assert revocation_time(vault, pki_mount, serial) > 0
    for key in ("tls.crt", "edge.crt"):
        assert revocation_time(vault, pki_mount, second.notes[f"serial.{key}"]) == 0


def test_a_name_the_role_refuses_is_rejected_without_a_pem_in_the_message(
        vault_info: VaultInfo, pki_mount: str, orchestrator_token: str) -> None:
    client = client_with_token(vault_info.address, vault_info.ca_file, orchestrator_token, clock=SystemClock())
    intent = make_intent(pki_mount, dns_names="evil.example.com")
    ctx = RotationContext(intent, datetime.now(UTC), pki=VaultCertificateIssuer(client))
    with pytest.raises(TargetRejected, match=f"web-cert: sign a certificate at {pki_mount}/sign/{ROLE}") as caught:
        X509VaultPkiRotator().create_pending(ctx)
    assert "-----" not in str(caught.value)
    print(f"\n[x509-vault-pki] refused: {caught.value}")
