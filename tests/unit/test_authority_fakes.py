"""An in-memory stand-in for :class:`~chamberlain.authority.vault.VaultClient` (seal life cycle + configuration)
for the authority unit tests (no tests here; named ``test_*`` to sit with them). Real-server behaviour is
proven in ``tests/lab/test_authority_lifecycle.py`` and ``tests/lab/test_openbao_adapter.py``.

It has the client's areas (``seal``, ``auth``, ``mounts``, ``policies``, ``audit``, ``kv``). The configuration
areas are dicts of raw bodies as well (``vault.mounts["secret"] = {...}``), so a test can change the server behind
the adapter's back; they answer with the adapter's typed values, parsed as the real adapter parses them.
"""

from __future__ import annotations

import secrets
from typing import Any

from chamberlain.authority.errors import AuthorityError, Forbidden, InvalidRequest, NotInitialized
from chamberlain.authority.fake import FakeKV, FakeTransit
from chamberlain.authority.model import (
    AuditDevice,
    AuthMountInfo,
    HaStatus,
    InitResult,
    KeyStatus,
    KubernetesAuthConfig,
    KubernetesRole,
    KvConfig,
    MountInfo,
    RekeyProgress,
    RekeyResult,
    RekeyVerification,
    RootToken,
    SealStatus,
    TokenInfo,
)


class _Seal:
    def __init__(self, v: FakeVault) -> None:
        self.v = v

    def status(self) -> SealStatus:
        v = self.v
        return SealStatus(initialized=v.initialized, sealed=v.sealed, threshold=v.threshold, shares=len(v.keys),
                          progress=len(v.progress), version="1.21.0", seal_type=v.seal_type,
                          recovery_seal=v.seal_type != "shamir")

    def initialize(self, shares: int, threshold: int, *, recovery: bool = False) -> InitResult:
        v = self.v
        if v.initialized:
            raise InvalidRequest("already initialized")
        if recovery != (v.seal_type != "shamir"):  # as the real server: the wrong kind of keys is a 400
            raise InvalidRequest("initialize: wrong key kind for this seal (400)")
        v.init_calls += 1
        v.initialized, v.threshold = True, threshold
        v.keys = [secrets.token_hex(33) for _ in range(shares)]
        root = "hvs." + secrets.token_hex(12)
        v.tokens[root] = TokenInfo("acc-" + root[-6:], ("root",), 0, False)
        if recovery:  # an auto-unseal seal: the server unseals itself if it reaches its seal
            v.sealed = not v.seal_reachable
        return InitResult(tuple(v.keys), root)

    def submit_unseal_key(self, key: str) -> SealStatus:
        v = self.v
        if not v.initialized:
            raise NotInitialized("not initialized")
        if v.seal_type != "shamir":
            raise InvalidRequest("unseal: recovery keys cannot unseal (400)")
        if key not in v.progress:
            v.progress.append(key)
        if len(v.progress) >= v.threshold:
            if set(v.progress) <= set(v.keys):
                v.sealed = False
            v.progress = []
        return self.status()

    def reset_unseal(self) -> None:
        self.v.progress = []

    def leader(self) -> HaStatus:
        return HaStatus(True, True)

    def wait_active(self) -> None:
        if self.v.sealed:
            raise AuthorityError("sealed")

    def generate_root(self, keys: list[str]) -> RootToken:
        v = self.v
        if not set(keys[: v.threshold]) <= set(v.keys) or len(keys) < v.threshold:
            raise AuthorityError("generate-root: not enough valid shares")
        root = "hvs." + secrets.token_hex(12)
        v.tokens[root] = TokenInfo("acc-" + root[-6:], ("root",), 0, False)
        return RootToken(root)

    # -- rekey with verification: without a token (Vault) or only with one (OpenBao, ``rekey_needs_token``)

    @property
    def rekey_needs_token(self) -> bool:
        return self.v.rekey_needs_token

    def _guard(self) -> None:
        if self.v.rekey_needs_token and self.v.token is None:
            raise Forbidden("rekey: permission denied (403)")
        self.v.rekey_calls.append(self.v.token)

    def cancel_rekey(self) -> None:
        self._guard()
        self.v.rekey = {}

    def start_rekey(self, shares: int, threshold: int) -> RekeyProgress:
        self._guard()
        self.v.rekey = {"nonce": secrets.token_hex(4), "shares": shares, "threshold": threshold, "old": set()}
        return self.rekey_progress()

    def rekey_progress(self) -> RekeyProgress:
        self._guard()
        r = self.v.rekey
        return RekeyProgress(bool(r), r.get("nonce", ""), len(r.get("old", ())), self.v.threshold, True)

    def rekey_submit(self, key: str, nonce: str) -> RekeyResult | None:
        self._guard()
        r = self.v.rekey
        if nonce != r.get("nonce") or key not in self.v.keys:
            raise InvalidRequest("rekey: wrong nonce or share (400)")
        r["old"].add(key)
        if len(r["old"]) < self.v.threshold:
            return None
        r["new"] = [secrets.token_hex(33) for _ in range(r["shares"])]
        r["verify_nonce"], r["verified"] = secrets.token_hex(4), set()
        return RekeyResult(tuple(r["new"]), r["verify_nonce"])

    def rekey_verification(self) -> RekeyVerification:
        self._guard()
        return RekeyVerification(self.v.rekey.get("verify_nonce", ""), len(self.v.rekey.get("verified", ())))

    def cancel_rekey_verify(self) -> None:
        self._guard()
        self.v.rekey.pop("verify_nonce", None)

    def rekey_verify(self, key: str, nonce: str) -> bool:
        self._guard()
        r = self.v.rekey
        if nonce != r.get("verify_nonce") or key not in r["new"]:
            raise InvalidRequest("rekey verify: wrong nonce or share (400)")
        r["verified"].add(key)
        if len(r["verified"]) < r["threshold"]:
            return False
        self.v.keys, self.v.threshold, self.v.rekey = r["new"], r["threshold"], {}
        return True

    def rotate_encryption_key(self) -> None:
        if self.v.token is None:
            raise Forbidden("rotate: permission denied (403)")
        self.v.term += 1

    def key_status(self) -> KeyStatus:
        return KeyStatus(self.v.term)


class _Auth(dict[str, dict[str, Any]]):
    """Auth mounts by path (raw bodies); tokens and roles through the parent."""

    def __init__(self, v: FakeVault) -> None:
        super().__init__({"token": {"type": "token"}})
        self.v = v

    def _me(self) -> TokenInfo:
        if self.v.token not in self.v.tokens:
            raise Forbidden("permission denied (403)")
        return self.v.tokens[self.v.token]

    def lookup_self(self) -> TokenInfo:
        return self._me()

    def revoke_self(self) -> None:
        self._me()
        del self.v.tokens[self.v.token]  # type: ignore[arg-type]
        self.v.token = None

    def list_accessors(self) -> list[str]:
        self._me()
        return [t.accessor for t in self.v.tokens.values()]

    def lookup_accessor(self, accessor: str) -> TokenInfo | None:
        return next((t for t in self.v.tokens.values() if t.accessor == accessor), None)

    def revoke_accessor(self, accessor: str) -> None:
        for token, info in list(self.v.tokens.items()):
            if info.accessor == accessor:
                del self.v.tokens[token]

    def list_mounts(self) -> dict[str, AuthMountInfo]:
        return {k: AuthMountInfo.from_api(v) for k, v in self.items()}

    def enable(self, path: str, method: AuthMountInfo) -> None:
        self.v.writes += 1
        self[path] = {"type": method.type, "description": method.description,
                      "accessor": f"auth_{method.type}_{len(self) + 1:08x}"}  # random on a server; fixed here

    def read_kubernetes_config(self, mount: str) -> KubernetesAuthConfig | None:
        body = self.v.paths.get(f"auth/{mount}/config")
        if body is None:
            return None
        # The server answers with the reviewer JWT only as a flag.
        return KubernetesAuthConfig.from_api({**body, "token_reviewer_jwt_set": "token_reviewer_jwt" in body})

    def write_kubernetes_config(self, mount: str, config: KubernetesAuthConfig, reviewer_jwt: str | None) -> None:
        self.v.writes += 1
        body: dict[str, Any] = {"kubernetes_host": config.kubernetes_host,
                                "kubernetes_ca_cert": config.kubernetes_ca_cert,
                                "disable_local_ca_jwt": config.disable_local_ca_jwt,
                                "issuer": config.issuer, "disable_iss_validation": config.disable_iss_validation}
        if reviewer_jwt is not None:
            body["token_reviewer_jwt"] = reviewer_jwt
        self.v.paths[f"auth/{mount}/config"] = body

    def list_roles(self, mount: str) -> list[str]:
        prefix = f"auth/{mount}/role/"
        return sorted(p[len(prefix):] for p in self.v.paths if p.startswith(prefix))

    def read_role(self, mount: str, name: str) -> KubernetesRole | None:
        body = self.v.paths.get(f"auth/{mount}/role/{name}")
        return KubernetesRole.from_api(body) if body is not None else None

    def write_role(self, mount: str, name: str, role: KubernetesRole) -> None:
        self.v.writes += 1
        self.v.paths[f"auth/{mount}/role/{name}"] = role.as_body()

    def delete_role(self, mount: str, name: str) -> None:
        self.v.writes += 1
        self.v.paths.pop(f"auth/{mount}/role/{name}", None)


class _Mounts(dict[str, dict[str, Any]]):
    def __init__(self, v: FakeVault) -> None:
        super().__init__({"cubbyhole": {"type": "cubbyhole"}, "sys": {"type": "system"}})
        self.v = v

    def list(self) -> dict[str, MountInfo]:
        return {k: MountInfo.from_api(v) for k, v in self.items()}

    def enable(self, path: str, mount: MountInfo) -> None:
        self.v.writes += 1
        self[path] = {"type": mount.type, "description": mount.description, "options": dict(mount.options)}
        self.v.kv_config[path] = {"max_versions": 0, "cas_required": False, "delete_version_after": "0s"}

    def tune(self, path: str, description: str) -> None:
        self.v.writes += 1
        self[path]["description"] = description

    def read_kv_config(self, mount: str) -> KvConfig:
        return KvConfig.from_api(self.v.kv_config.get(mount, {}))

    def configure_kv(self, mount: str, config: KvConfig) -> None:
        self.v.writes += 1
        self.v.kv_config.setdefault(mount, {}).update(config.as_body())


class _Policies(dict[str, str]):
    def __init__(self, v: FakeVault) -> None:
        super().__init__({"default": "# default\n"})
        self.v = v

    def list(self) -> list[str]:
        return sorted([*self, "root"])

    def read(self, name: str) -> str | None:
        return self.get(name)

    def write(self, name: str, text: str) -> None:
        self.v.writes += 1
        self[name] = text

    def delete(self, name: str) -> None:
        self.v.writes += 1
        self.pop(name, None)


class _Audit(dict[str, dict[str, Any]]):
    def __init__(self, v: FakeVault) -> None:
        super().__init__()
        self.v = v
        self.declarative = False  # True: an OpenBao, whose audit devices come from its configuration file

    def list(self) -> dict[str, AuditDevice]:
        return {k: AuditDevice.from_api(v) for k, v in self.items()}

    def enable(self, path: str, device: AuditDevice) -> None:
        self.v.writes += 1
        self[path] = {"type": device.type, "description": device.description, "options": dict(device.options)}

    def disable(self, path: str) -> None:
        self.v.writes += 1
        self.pop(path, None)


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
        self.rekey_needs_token = False  # True: OpenBao's sys/rotate/root/*
        self.seal_type = "shamir"  # or an auto-unseal seal ("transit"...): keys are recovery keys
        self.seal_reachable = True  # auto-unseal: whether the server reaches its seal (else it stays sealed)
        self.rekey: dict[str, Any] = {}
        self.rekey_calls: list[str | None] = []  # the token each rekey request carried
        self.term = 1
        self.kv_config: dict[str, dict[str, Any]] = {}
        self.paths: dict[str, dict[str, Any]] = {}  # auth config and roles, raw bodies as written
        self.writes = 0
        self.kv = FakeKV()
        self.seal = _Seal(self)
        self.recovery = self.seal  # with an auto-unseal seal, ``keys`` are the recovery keys: same rekey
        self.auth = _Auth(self)
        self.mounts = _Mounts(self)
        self.policies = _Policies(self)
        self.audit = _Audit(self)
        self.transit = FakeTransit()

    def restart(self) -> None:
        self.sealed, self.token = True, None
        if self.seal_type != "shamir" and self.initialized and self.seal_reachable:
            self.sealed = False  # auto-unseal: nobody acts

    def use_token(self, token: str) -> None:
        self.token = token

    def login_configurator(self) -> FakeVault:
        if not any(p.startswith("auth/kubernetes-") and p.endswith("/role/chamberlain.authority.configurator")
                   for p in self.paths):
            raise Forbidden("login: role not found (403)")
        token = "hvs.cfg" + secrets.token_hex(8)
        self.tokens[token] = TokenInfo("acc-" + token[-6:], ("chamberlain.authority.configurator",), 900, True)
        self.token = token
        return self
