"""An in-memory stand-in for :class:`~chamberlain.authority.vault.VaultClient` (seal life cycle + configuration)
for the authority unit tests (no tests here; named ``test_*`` to sit with them). Real-server behaviour is
proven in ``tests/lab/test_authority_lifecycle.py``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from chamberlain.authority.errors import AuthorityError, Forbidden
from chamberlain.authority.fake import FakeKV
from chamberlain.authority.vault import InitResult, InvalidRequest, NotInitialized, SealStatus, TokenInfo


class FakeVault:
    def __init__(self) -> None:
        self.address = "https://vault.test:8200"
        self.initialized = False
        self.sealed = True
        self.keys: list[str] = []
        self.threshold = 0
        self.progress: list[str] = []
        self.tokens: dict[str, TokenInfo] = {}  # token -> info
        self.token: str | None = None
        self.init_calls = 0
        self.mounts: dict[str, dict[str, Any]] = {"cubbyhole": {"type": "cubbyhole"}, "sys": {"type": "system"}}
        self.kv_config: dict[str, dict[str, Any]] = {}
        self.auth: dict[str, dict[str, Any]] = {"token": {"type": "token"}}
        self.paths: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, str] = {"default": "# default\n"}
        self.audit: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.kv = FakeKV()

    # -- seal life cycle
    def seal_status(self) -> SealStatus:
        return SealStatus(self.initialized, self.sealed, self.threshold, len(self.keys), len(self.progress), "1.21.0")

    def initialize(self, shares: int, threshold: int) -> InitResult:
        if self.initialized:
            raise InvalidRequest("already initialized")
        self.init_calls += 1
        self.initialized, self.threshold = True, threshold
        self.keys = [secrets.token_hex(33) for _ in range(shares)]
        root = "hvs." + secrets.token_hex(12)
        self.tokens[root] = TokenInfo("acc-" + root[-6:], ("root",), 0, False)
        return InitResult(tuple(self.keys), root)

    def submit_unseal_key(self, key: str) -> SealStatus:
        if not self.initialized:
            raise NotInitialized("not initialized")
        if key not in self.progress:
            self.progress.append(key)
        if len(self.progress) >= self.threshold:
            if set(self.progress) <= set(self.keys):
                self.sealed = False
            self.progress = []
        return self.seal_status()

    def reset_unseal(self) -> None:
        self.progress = []

    def ha_status(self) -> dict[str, Any]:
        return {"ha_enabled": True, "is_self": True}

    def wait_active(self) -> None:
        assert not self.sealed

    def restart(self) -> None:
        self.sealed, self.token = True, None

    # -- tokens
    def use_token(self, token: str) -> None:
        self.token = token

    def _me(self) -> TokenInfo:
        if self.token not in self.tokens:
            raise Forbidden("permission denied (403)")
        return self.tokens[self.token]

    def lookup_self(self) -> TokenInfo:
        return self._me()

    def revoke_self(self) -> None:
        self._me()
        del self.tokens[self.token]  # type: ignore[arg-type]
        self.token = None

    def list_token_accessors(self) -> list[str]:
        self._me()
        return [t.accessor for t in self.tokens.values()]

    def lookup_accessor(self, accessor: str) -> TokenInfo | None:
        return next((t for t in self.tokens.values() if t.accessor == accessor), None)

    def revoke_accessor(self, accessor: str) -> None:
        for token, info in list(self.tokens.items()):
            if info.accessor == accessor:
                del self.tokens[token]

    def generate_root(self, keys: list[str]) -> str:
        if not set(keys[: self.threshold]) <= set(self.keys) or len(keys) < self.threshold:
            raise AuthorityError("generate-root: not enough valid shares")
        root = "hvs." + secrets.token_hex(12)
        self.tokens[root] = TokenInfo("acc-" + root[-6:], ("root",), 0, False)
        return root

    def login_configurator(self) -> FakeVault:
        if "auth/kubernetes/role/chamberlain.authority.configurator" not in self.paths:
            raise Forbidden("login: role not found (403)")
        token = "hvs.cfg" + secrets.token_hex(8)
        self.tokens[token] = TokenInfo("acc-" + token[-6:], ("chamberlain.authority.configurator",), 900, True)
        self.token = token
        return self

    # -- configuration (ConfigAPI)
    def list_secret_mounts(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.mounts.items()}

    def enable_secret_mount(self, path: str, type_: str, description: str, options: Mapping[str, str]) -> None:
        self.writes += 1
        self.mounts[path] = {"type": type_, "description": description, "options": dict(options)}
        self.kv_config[path] = {"max_versions": 0, "cas_required": False, "delete_version_after": "0s"}

    def tune_mount_description(self, path: str, description: str) -> None:
        self.writes += 1
        self.mounts[path]["description"] = description

    def read_kv_config(self, mount: str) -> dict[str, Any]:
        return dict(self.kv_config.get(mount, {}))

    def configure_kv(self, mount: str, config: Mapping[str, Any]) -> None:
        self.writes += 1
        self.kv_config.setdefault(mount, {}).update(config)

    def list_auth_mounts(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.auth.items()}

    def enable_auth_mount(self, path: str, type_: str, description: str) -> None:
        self.writes += 1
        self.auth[path] = {"type": type_, "description": description}

    def read_path(self, path: str) -> dict[str, Any] | None:
        body = self.paths.get(path)
        if body is None:
            return None
        # Vault answers role reads with durations in seconds and with the reviewer JWT only as a flag.
        out = {k: (3600 if v == "1h" else 600 if v == "10m" else 1800 if v == "30m" else 900 if v == "15m"
                   else 14400 if v == "4h" else v) for k, v in body.items() if k != "token_reviewer_jwt"}
        if path.endswith("/config"):
            out["token_reviewer_jwt_set"] = "token_reviewer_jwt" in body
        return out

    def write_path(self, path: str, body: Mapping[str, Any]) -> None:
        self.writes += 1
        self.paths[path] = dict(body)

    def delete_path(self, path: str) -> None:
        self.writes += 1
        self.paths.pop(path, None)

    def list_path(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted(p[len(prefix):] for p in self.paths if p.startswith(prefix) and "/" not in p[len(prefix):])

    def list_policies(self) -> list[str]:
        return sorted([*self.policies, "root"])

    def read_policy(self, name: str) -> str | None:
        return self.policies.get(name)

    def write_policy(self, name: str, text: str) -> None:
        self.writes += 1
        self.policies[name] = text

    def delete_policy(self, name: str) -> None:
        self.writes += 1
        self.policies.pop(name, None)

    def list_audit_devices(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.audit.items()}

    def enable_audit_device(self, path: str, type_: str, description: str, options: Mapping[str, str]) -> None:
        self.writes += 1
        self.audit[path] = {"type": type_, "description": description, "options": dict(options)}

    def disable_audit_device(self, path: str) -> None:
        self.writes += 1
        self.audit.pop(path, None)
