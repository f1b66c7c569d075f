"""Proof 2: a TokenRequest ServiceAccount JWT logs in to Vault, which verifies it with a
TokenReview against the lab kube-apiserver; a namespace the role is not bound to is denied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hvac
import pytest

pytestmark = pytest.mark.lab


def test_service_account_login_and_namespace_binding(
    vault: Any,
    vault_kubernetes_auth: str,
    make_namespace: Callable[[str], str],
    make_service_account: Callable[[str, str], str],
    sa_token: Callable[..., str],
    lab: Any,
) -> None:
    allowed = make_namespace("auth-allowed")
    other = make_namespace("auth-other")
    make_service_account(allowed, "app")
    make_service_account(other, "app")
    vault.sys.create_or_update_policy(
        name="auth-allowed-read",
        policy='path "secret/data/auth-allowed/*" { capabilities = ["read"] }',
    )
    vault.write_data(
        f"auth/{vault_kubernetes_auth}/role/auth-allowed",
        data={
            "bound_service_account_names": ["app"],
            "bound_service_account_namespaces": [allowed],
            "audience": "vault",
            "token_policies": ["auth-allowed-read"],
            "token_ttl": "10m",
        },
    )
    vault.secrets.kv.v2.create_or_update_secret(
        path="auth-allowed/config", secret={"greeting": "hello"}, mount_point="secret"
    )

    client = hvac.Client(url=vault.url, verify=str(lab.ca_file))
    login = client.auth.kubernetes.login(
        role="auth-allowed", jwt=sa_token(allowed, "app", audiences=["vault"]), mount_point=vault_kubernetes_auth
    )
    auth = login["auth"]
    assert auth["metadata"]["service_account_namespace"] == allowed
    assert auth["metadata"]["service_account_name"] == "app"
    assert "auth-allowed-read" in auth["policies"]
    got = client.secrets.kv.v2.read_secret_version(
        path="auth-allowed/config", mount_point="secret", raise_on_deleted_version=True
    )
    assert got["data"]["data"] == {"greeting": "hello"}
    # Least privilege: the policy grants nothing elsewhere.
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.kv.v2.read_secret_version(
            path="proof/elsewhere", mount_point="secret", raise_on_deleted_version=True
        )

    denied = hvac.Client(url=vault.url, verify=str(lab.ca_file))
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)) as exc_info:
        denied.auth.kubernetes.login(
            role="auth-allowed",
            jwt=sa_token(other, "app", audiences=["vault"]),
            mount_point=vault_kubernetes_auth,
        )
    assert "namespace" in str(exc_info.value).lower()

    # A token for the wrong audience is refused too (TokenReview checks it).
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
        denied.auth.kubernetes.login(
            role="auth-allowed",
            jwt=sa_token(allowed, "app", audiences=["not-vault"]),
            mount_point=vault_kubernetes_auth,
        )
