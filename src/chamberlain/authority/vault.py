"""The runtime authority on hvac: the :class:`~chamberlain.authority.kv.KV` protocol and the ``sys/`` operations
chamberlain performs (init, unseal, rekey, generate-root, mounts, auth methods, policies, roles, audit devices).

The only module that imports hvac. Every call goes through :meth:`VaultClient._call`, which maps hvac exceptions
and transport errors to the typed errors of :mod:`chamberlain.authority.errors` once, here. Messages carry the
operation and HTTP status, never request or response bodies (which may hold secret data); for configuration
calls only, Vault's own short error text is kept because it names the bad field, never a value.

Secret material that crosses this boundary (unseal shares, root tokens, secret data) travels inside value objects
whose ``repr`` hides it.

Sessions: a token obtained by Kubernetes login knows its TTL; :meth:`VaultClient.ensure_fresh` renews it once
half of its TTL has passed (and logs in again only when renewal is impossible), so a long-running controller does
not log in on every call.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from chamberlain.authority.errors import (
    AuthorityError,
    AuthorityUnavailable,
    CasConflict,
    CasRequired,
    Forbidden,
    InvalidRequest,
    NotFound,
    NotInitialized,
    Sealed,
    Unauthenticated,
)
from chamberlain.authority.kv import SecretMetadata, SecretVersion, check_custom_metadata
from chamberlain.authority.pki import SignedCertificate

T = TypeVar("T")

DEFAULT_TIMEOUT = 30
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{40,}")  # a PEM/DER body a PKI error might quote


def _first_error(exc: hvac.exceptions.VaultError) -> str:
    errors = getattr(exc, "errors", None) or []
    text = str(errors[0]) if errors else ""
    return text.replace("\n", " ")[:200]


def map_error(exc: BaseException, what: str, *, safe_detail: bool = False) -> AuthorityError:
    """The typed error for an hvac/transport exception. ``safe_detail`` keeps Vault's short error text (only for
    configuration calls, whose errors name fields, never values)."""
    if isinstance(exc, hvac.exceptions.VaultError):
        text = _first_error(exc)
        detail = f": {text}" if safe_detail and text else ""
        if "check-and-set" in text and "required" in text:
            return CasRequired(f"{what}: the mount requires check-and-set (400)")
        if "check-and-set" in text:
            return CasConflict(f"{what}: check-and-set did not match the current version")
        if isinstance(exc, hvac.exceptions.VaultDown) or "sealed" in text.lower():
            return Sealed(f"{what}: Vault is sealed (503); run `chamberlain authority unseal`")
        if isinstance(exc, hvac.exceptions.VaultNotInitialized):
            return NotInitialized(f"{what}: Vault is not initialized (501); run `chamberlain authority init`")
        if isinstance(exc, hvac.exceptions.Unauthorized):
            return Unauthenticated(f"{what}: unauthenticated (401){detail}")
        if isinstance(exc, hvac.exceptions.Forbidden):
            return Forbidden(f"{what}: permission denied (403){detail}")
        if isinstance(exc, hvac.exceptions.InvalidPath):
            return NotFound(f"{what}: not found (404)")
        if isinstance(exc, hvac.exceptions.InvalidRequest):
            return InvalidRequest(f"{what}: rejected (400){detail}")
        if isinstance(exc, hvac.exceptions.RateLimitExceeded):
            return AuthorityUnavailable(f"{what}: rate limited (429)")
        if isinstance(exc, hvac.exceptions.InternalServerError | hvac.exceptions.BadGateway):
            return AuthorityUnavailable(f"{what}: server error (5xx)")
        return AuthorityError(f"{what}: Vault answered with an error ({type(exc).__name__}){detail}")
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        return AuthorityUnavailable(f"{what}: Vault unreachable ({type(exc).__name__})")
    return AuthorityError(f"{what}: unexpected {type(exc).__name__}")


# ------------------------------------------------------------------------------------------------ value types


@dataclass(frozen=True)
class SealStatus:
    initialized: bool
    sealed: bool
    threshold: int
    shares: int
    progress: int
    version: str
    storage: str = ""
    cluster_name: str = ""


@dataclass(frozen=True)
class InitResult:
    """What ``sys/init`` returns once, and never again. Both fields are secret."""

    keys: tuple[str, ...] = field(repr=False)
    root_token: str = field(repr=False)


@dataclass(frozen=True)
class RekeyProgress:
    started: bool
    nonce: str
    progress: int
    required: int
    verification_required: bool


@dataclass(frozen=True)
class RekeyResult:
    """The result of the last old share of a rekey: the new shares (secret), pending verification when asked."""

    keys: tuple[str, ...] = field(repr=False)
    verification_nonce: str = ""


@dataclass(frozen=True)
class TokenInfo:
    accessor: str
    policies: tuple[str, ...]
    ttl: int
    renewable: bool
    display_name: str = ""


# --------------------------------------------------------------------------------------------------- client


@dataclass
class _Session:
    """How the current token was obtained, so it can be renewed (or obtained again) before it expires."""

    ttl: int  # seconds, as granted; 0 = does not expire (root)
    renewable: bool
    obtained: float  # time.monotonic() when granted
    relogin: Callable[[], tuple[str, int, bool]] | None = None


class VaultClient:
    """An hvac client, its error boundary and its session. Use :attr:`kv` for KV v2, the methods for ``sys/``."""

    def __init__(self, client: Any, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._monotonic = monotonic
        self._session: _Session | None = None
        self._generation = 0  # bumped on every login, renewal or re-login (the controller counts them)
        self.kv = VaultKV(self)

    # -- construction

    @classmethod
    def connect(cls, address: str, ca_file: Path | str | None = None, token: str | None = None,
                timeout: int = DEFAULT_TIMEOUT) -> VaultClient:
        verify: bool | str = str(ca_file) if ca_file else True
        return cls(hvac.Client(url=address, token=token, verify=verify, timeout=timeout))

    @property
    def address(self) -> str:
        return str(self._client.url)

    @property
    def has_token(self) -> bool:
        return bool(self._client.token)

    def forget_token(self) -> None:
        self._client.token = None
        self._session = None

    # -- error boundary

    def _call(self, what: str, fn: Callable[[], T], *, safe_detail: bool = False) -> T:
        try:
            return fn()
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException, OSError) as exc:
            raise map_error(exc, what, safe_detail=safe_detail) from None

    # -- sessions

    def login_kubernetes(self, mount: str, role: str, jwt_source: Callable[[], str]) -> TokenInfo:
        """Log in with a ServiceAccount JWT; ``jwt_source`` is called again if the session must be re-created."""

        def login() -> tuple[str, int, bool]:
            jwt = jwt_source()
            resp = self._call(
                f"login at auth/{mount} as role {role}",
                lambda: self._client.auth.kubernetes.login(role=role, jwt=jwt, use_token=False, mount_point=mount),
                safe_detail=True,
            )
            auth = resp["auth"]
            return str(auth["client_token"]), int(auth.get("lease_duration") or 0), bool(auth.get("renewable"))

        token, ttl, renewable = login()
        self._client.token = token
        self._session = _Session(ttl, renewable, self._monotonic(), login)
        self._generation += 1
        return self.lookup_self()

    def ensure_fresh(self) -> None:
        """Renew the token when half its TTL has passed; log in again when it cannot be renewed."""
        s = self._session
        if s is None or s.ttl <= 0 or self._monotonic() - s.obtained < s.ttl / 2:
            return
        if s.renewable:
            try:
                resp = self._call("renew token", lambda: self._client.auth.token.renew_self())
                auth = resp["auth"]
                granted = int(auth.get("lease_duration") or 0)
                # Renewal stops extending at the role's max TTL: then a fresh login is the only way forward.
                if granted > s.ttl / 4:
                    self._session = _Session(granted, bool(auth.get("renewable")), self._monotonic(), s.relogin)
                    self._generation += 1
                    return
            except (Forbidden, InvalidRequest):
                pass
        if s.relogin is not None:
            token, ttl, renewable = s.relogin()
            self._client.token = token
            self._session = _Session(ttl, renewable, self._monotonic(), s.relogin)
            self._generation += 1

    @property
    def session_generation(self) -> int:
        """How many times a token was obtained or renewed: a controller logs in once, then only renews."""
        return self._generation

    @property
    def session_ttl(self) -> int | None:
        return self._session.ttl if self._session else None

    def lookup_self(self) -> TokenInfo:
        data = self._call("token lookup-self", lambda: self._client.auth.token.lookup_self())["data"]
        return _token_info(data)

    def revoke_self(self) -> None:
        self._call("token revoke-self", lambda: self._client.auth.token.revoke_self())
        self.forget_token()

    def list_token_accessors(self) -> list[str]:
        resp = self._call("list token accessors", lambda: self._client.list("auth/token/accessors"))
        return [str(a) for a in ((resp or {}).get("data") or {}).get("keys", [])]

    def lookup_accessor(self, accessor: str) -> TokenInfo | None:
        try:
            data = self._call("token lookup-accessor",
                              lambda: self._client.auth.token.lookup_accessor(accessor))["data"]
        except (InvalidRequest, NotFound):
            return None  # revoked or expired meanwhile
        return _token_info(data)

    def revoke_accessor(self, accessor: str) -> None:
        try:
            self._call("token revoke-accessor", lambda: self._client.auth.token.revoke_accessor(accessor))
        except (InvalidRequest, NotFound):
            return

    # -- seal life cycle (unauthenticated endpoints)

    def seal_status(self) -> SealStatus:
        d = self._call("read seal status", lambda: self._client.sys.read_seal_status())
        return SealStatus(
            initialized=bool(d.get("initialized")),
            sealed=bool(d.get("sealed")),
            threshold=int(d.get("t") or 0),
            shares=int(d.get("n") or 0),
            progress=int(d.get("progress") or 0),
            version=str(d.get("version") or ""),
            storage=str(d.get("storage_type") or ""),
            cluster_name=str(d.get("cluster_name") or ""),
        )

    def ha_status(self) -> dict[str, Any]:
        d = self._call("read leader status", lambda: self._client.sys.read_leader_status())
        return {"ha_enabled": bool(d.get("ha_enabled")), "is_self": bool(d.get("is_self"))}

    def health(self) -> dict[str, Any]:
        """``sys/health`` with every state answering 200, so sealed/standby/uninitialized can be read."""
        d = self._call("read health", lambda: self._client.sys.read_health_status(
            method="GET", standby_ok=True, active_code=200, standby_code=200, sealed_code=200, uninit_code=200,
            performance_standby_code=200, dr_secondary_code=200))
        return dict(d) if isinstance(d, dict) else {}

    def wait_active(self, timeout: float = 60.0, interval: float = 0.5) -> None:
        """Wait until the server is unsealed and active (raft elects itself a few seconds after unseal)."""
        deadline = self._monotonic() + timeout
        while True:
            try:
                h = self.health()
                if h.get("initialized") and not h.get("sealed") and not h.get("standby"):
                    return
            except AuthorityUnavailable:
                pass
            if self._monotonic() > deadline:
                raise AuthorityUnavailable(f"{self.address}: not active {timeout:.0f}s after unseal")
            time.sleep(interval)

    def initialize(self, shares: int, threshold: int) -> InitResult:
        d = self._call("initialize", lambda: self._client.sys.initialize(secret_shares=shares,
                                                                         secret_threshold=threshold))
        return InitResult(tuple(str(k) for k in d["keys"]), str(d["root_token"]))

    def submit_unseal_key(self, key: str) -> SealStatus:
        self._call("submit unseal share", lambda: self._client.sys.submit_unseal_key(key=key))
        return self.seal_status()

    def reset_unseal(self) -> None:
        self._call("reset unseal progress", lambda: self._client.sys.submit_unseal_key(reset=True))

    def rekey_progress(self) -> RekeyProgress:
        d = self._call("read rekey progress", lambda: self._client.sys.read_rekey_progress())
        return RekeyProgress(bool(d.get("started")), str(d.get("nonce") or ""), int(d.get("progress") or 0),
                             int(d.get("required") or 0), bool(d.get("verification_required")))

    def start_rekey(self, shares: int, threshold: int) -> RekeyProgress:
        d = self._call("start rekey", lambda: self._client.sys.start_rekey(
            secret_shares=shares, secret_threshold=threshold, require_verification=True), safe_detail=True)
        return RekeyProgress(bool(d.get("started")), str(d.get("nonce") or ""), int(d.get("progress") or 0),
                             int(d.get("required") or 0), bool(d.get("verification_required")))

    def cancel_rekey(self) -> None:
        self._call("cancel rekey", lambda: self._client.sys.cancel_rekey())

    def rekey_submit(self, key: str, nonce: str) -> RekeyResult | None:
        """Submit one old share; the result once the threshold is reached (None before)."""
        d = self._call("submit rekey share", lambda: self._client.sys.rekey(key=key, nonce=nonce), safe_detail=True)
        if not d.get("complete"):
            return None
        return RekeyResult(tuple(str(k) for k in d["keys"]), str(d.get("verification_nonce") or ""))

    def rekey_verify_status(self) -> tuple[str, int]:
        """(nonce, progress) of a pending rekey verification; ('', 0) when none is pending."""
        try:
            d = self._call("read rekey verification", lambda: self._client.sys.read_rekey_verify_progress())
        except (InvalidRequest, NotFound):
            return "", 0
        return str(d.get("nonce") or ""), int(d.get("progress") or 0)

    def cancel_rekey_verify(self) -> None:
        self._call("cancel rekey verification", lambda: self._client.sys.cancel_rekey_verify())

    def rekey_verify(self, key: str, nonce: str) -> bool:
        """Submit one new share to the verification; True once the new shares are in force."""
        d = self._call("verify rekey share", lambda: self._client.sys.rekey_verify(key=key, nonce=nonce),
                       safe_detail=True)
        return bool(d.get("complete"))

    def rotate_encryption_key(self) -> None:
        self._call("rotate the encryption key (sys/rotate)", lambda: self._client.sys.rotate_encryption_key())

    def key_status(self) -> dict[str, Any]:
        d = self._call("read key status", lambda: self._client.read("sys/key-status"))
        data = (d or {}).get("data") or d or {}
        return {"term": int(data.get("term") or 0), "install_time": str(data.get("install_time") or "")}

    def generate_root(self, keys: list[str]) -> str:
        """Break-glass: a new root token from ``keys`` (unseal shares) via ``sys/generate-root`` with a one-time
        pad; any previous attempt is cancelled first. The caller must revoke the token when done."""
        self._call("cancel root generation", lambda: self._client.sys.cancel_root_generation())
        start = self._call("start root generation", lambda: self._client.sys.start_root_token_generation())
        otp, nonce = str(start["otp"]), str(start["nonce"])
        encoded = ""
        for key in keys:
            d = self._call("submit root generation share",
                           lambda k=key: self._client.sys.generate_root(key=k, nonce=nonce))  # type: ignore[misc]
            if d.get("complete"):
                encoded = str(d["encoded_token"])
                break
        if not encoded:
            self._call("cancel root generation", lambda: self._client.sys.cancel_root_generation())
            raise AuthorityError("generate-root: not enough valid shares to reach the threshold")
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
        return bytes(a ^ b for a, b in zip(raw, otp.encode(), strict=False)).decode()

    def use_token(self, token: str) -> None:
        self._client.token = token
        self._session = _Session(0, False, self._monotonic())

    # -- configuration: mounts

    def list_secret_mounts(self) -> dict[str, dict[str, Any]]:
        d = self._call("list secret mounts", lambda: self._client.sys.list_mounted_secrets_engines())
        data = d.get("data", d)
        return {k.rstrip("/"): v for k, v in data.items() if isinstance(v, dict) and k.endswith("/")}

    def enable_secret_mount(self, path: str, type_: str, description: str, options: Mapping[str, str]) -> None:
        self._call(f"enable secrets engine at {path}/", lambda: self._client.sys.enable_secrets_engine(
            backend_type=type_, path=path, description=description, options=dict(options)), safe_detail=True)

    def tune_mount_description(self, path: str, description: str) -> None:
        self._call(f"tune {path}/", lambda: self._client.sys.tune_mount_configuration(
            path=path, description=description), safe_detail=True)

    def read_kv_config(self, mount: str) -> dict[str, Any]:
        d = self._call(f"read {mount}/config", lambda: self._client.secrets.kv.v2.read_configuration(
            mount_point=mount))
        return dict(d.get("data") or {})

    def configure_kv(self, mount: str, config: Mapping[str, Any]) -> None:
        self._call(f"write {mount}/config", lambda: self._client.secrets.kv.v2.configure(
            mount_point=mount, **dict(config)), safe_detail=True)

    def disable_secret_mount(self, path: str) -> None:
        self._call(f"disable secrets engine {path}/", lambda: self._client.sys.disable_secrets_engine(path=path))

    # -- configuration: auth methods and roles

    def list_auth_mounts(self) -> dict[str, dict[str, Any]]:
        d = self._call("list auth methods", lambda: self._client.sys.list_auth_methods())
        data = d.get("data", d)
        return {k.rstrip("/"): v for k, v in data.items() if isinstance(v, dict) and k.endswith("/")}

    def enable_auth_mount(self, path: str, type_: str, description: str) -> None:
        self._call(f"enable auth method at {path}/", lambda: self._client.sys.enable_auth_method(
            method_type=type_, path=path, description=description), safe_detail=True)

    def read_path(self, path: str) -> dict[str, Any] | None:
        try:
            d = self._call(f"read {path}", lambda: self._client.read(path))
        except NotFound:
            return None
        return dict((d or {}).get("data") or {}) if d else None

    def write_path(self, path: str, body: Mapping[str, Any]) -> None:
        self._call(f"write {path}", lambda: self._client.write_data(path, data=dict(body)), safe_detail=True)

    def delete_path(self, path: str) -> None:
        try:
            self._call(f"delete {path}", lambda: self._client.delete(path))
        except NotFound:
            return

    def list_path(self, path: str) -> list[str]:
        try:
            d = self._call(f"list {path}", lambda: self._client.list(path))
        except NotFound:
            return []
        return [str(k) for k in (((d or {}).get("data") or {}).get("keys") or [])]

    # -- configuration: policies

    def list_policies(self) -> list[str]:
        d = self._call("list ACL policies", lambda: self._client.sys.list_acl_policies())
        return [str(k) for k in (d.get("data") or d).get("keys", [])]

    def read_policy(self, name: str) -> str | None:
        try:
            d = self._call(f"read policy {name}", lambda: self._client.sys.read_acl_policy(name=name))
        except NotFound:
            return None
        return str((d.get("data") or d).get("policy") or "")

    def write_policy(self, name: str, text: str) -> None:
        self._call(f"write policy {name}", lambda: self._client.sys.create_or_update_acl_policy(
            name=name, policy=text), safe_detail=True)

    def delete_policy(self, name: str) -> None:
        self._call(f"delete policy {name}", lambda: self._client.sys.delete_acl_policy(name=name))

    # -- configuration: audit devices

    def list_audit_devices(self) -> dict[str, dict[str, Any]]:
        d = self._call("list audit devices", lambda: self._client.sys.list_enabled_audit_devices())
        data = d.get("data", d)
        return {k.rstrip("/"): v for k, v in data.items() if isinstance(v, dict) and k.endswith("/")}

    def enable_audit_device(self, path: str, type_: str, description: str, options: Mapping[str, str]) -> None:
        self._call(f"enable audit device {path}/", lambda: self._client.sys.enable_audit_device(
            device_type=type_, description=description, options=dict(options), path=path), safe_detail=True)

    def disable_audit_device(self, path: str) -> None:
        self._call(f"disable audit device {path}/", lambda: self._client.sys.disable_audit_device(path=path))

    # -- PKI (the x509-vault-pki rotator, through chamberlain.authority.pki.VaultCertificateIssuer)

    def pki_sign(self, mount: str, role: str, csr_pem: str, common_name: str, alt_names: Sequence[str],
                 ttl: str | None) -> SignedCertificate:
        """Sign ``csr_pem`` at ``<mount>/sign/<role>``. Only the CSR is sent; the private key never leaves the
        caller. Vault's short error text is kept (it names the CN or field the role refuses) unless it quotes a
        PEM body."""
        self.ensure_fresh()
        params: dict[str, Any] = {"format": "pem"}
        if alt_names:
            params["alt_names"] = ",".join(alt_names)
        if ttl:
            params["ttl"] = ttl
        what = f"sign a certificate at {mount}/sign/{role}"
        resp = self._pki_call(what, lambda: self._client.secrets.pki.sign_certificate(
            name=role, csr=csr_pem, common_name=common_name, extra_params=params, mount_point=mount))
        data = (resp or {}).get("data") or {}
        certificate, issuing_ca = data.get("certificate"), data.get("issuing_ca")
        if not isinstance(certificate, str) or not isinstance(issuing_ca, str):
            raise AuthorityError(f"{what}: the answer lacks the certificate or the issuing CA")
        chain = data.get("ca_chain") or []
        return SignedCertificate(
            certificate_pem=certificate,
            issuing_ca_pem=issuing_ca,
            chain_pem=tuple(str(c) for c in chain if isinstance(c, str)),
            serial=str(data.get("serial_number") or ""),
        )

    def pki_revoke(self, mount: str, serial: str) -> None:
        """Revoke the certificate ``serial`` (public) at ``<mount>/revoke``. Revoking it again is harmless."""
        self.ensure_fresh()
        self._pki_call(f"revoke certificate {serial} at {mount}/revoke",
                       lambda: self._client.secrets.pki.revoke_certificate(serial_number=serial, mount_point=mount))

    def _pki_call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return self._call(what, fn, safe_detail=True)
        except AuthorityError as exc:
            if "-----" in str(exc) or _BASE64_RUN.search(str(exc)):
                raise type(exc)(f"{what}: rejected by Vault (detail withheld: it quoted encoded data)") from None
            raise


def _token_info(data: Mapping[str, Any]) -> TokenInfo:
    return TokenInfo(
        accessor=str(data.get("accessor") or ""),
        policies=tuple(sorted(str(p) for p in (data.get("policies") or []))),
        ttl=int(data.get("ttl") or 0),
        renewable=bool(data.get("renewable")),
        display_name=str(data.get("display_name") or ""),
    )


# ---------------------------------------------------------------------------------------------------- KV v2


class VaultKV:
    """:class:`~chamberlain.authority.kv.KV` over Vault's KV v2 engine."""

    def __init__(self, client: VaultClient) -> None:
        self._c = client

    @property
    def _kv(self) -> Any:
        self._c.ensure_fresh()
        return self._c._client.secrets.kv.v2

    def read(self, mount: str, path: str, version: int | None = None) -> SecretVersion | None:
        try:
            resp = self._c._call(f"read {mount}/{path}", lambda: self._kv.read_secret_version(
                path=path, version=version, mount_point=mount, raise_on_deleted_version=False))
        except NotFound:
            return None
        body = resp.get("data") or {}
        meta = body.get("metadata") or {}
        data = body.get("data")
        deleted = bool(meta.get("deletion_time")) or bool(meta.get("destroyed"))
        if data is None and not deleted:
            return None
        return SecretVersion(int(meta.get("version") or 0), {str(k): str(v) for k, v in (data or {}).items()},
                             deleted=deleted)

    def write(self, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        resp = self._c._call(f"write {mount}/{path}", lambda: self._kv.create_or_update_secret(
            path=path, secret=dict(data), cas=cas, mount_point=mount))
        return int(((resp or {}).get("data") or {}).get("version") or 0)

    def read_metadata(self, mount: str, path: str) -> SecretMetadata | None:
        try:
            resp = self._c._call(f"read metadata of {mount}/{path}", lambda: self._kv.read_secret_metadata(
                path=path, mount_point=mount))
        except NotFound:
            return None
        d = resp.get("data") or {}
        versions = {
            int(n): bool(v.get("deletion_time")) or bool(v.get("destroyed"))
            for n, v in (d.get("versions") or {}).items()
        }
        return SecretMetadata(
            current_version=int(d.get("current_version") or 0),
            oldest_version=int(d.get("oldest_version") or 0),
            versions=versions,
            custom={str(k): str(v) for k, v in (d.get("custom_metadata") or {}).items()},
            cas_required=bool(d.get("cas_required")),
        )

    def update_custom_metadata(self, mount: str, path: str, custom: Mapping[str, str]) -> None:
        current = self.read_metadata(mount, path)
        if current is None:
            raise NotFound(f"{mount}/{path}: not found (404)")
        merged = {**current.custom, **custom}
        check_custom_metadata(merged)
        # Vault's metadata POST replaces custom_metadata as a whole, so send the merged map.
        self._c._call(f"update metadata of {mount}/{path}", lambda: self._kv.update_metadata(
            path=path, custom_metadata=merged, mount_point=mount))

    def list(self, mount: str, prefix: str) -> list[str]:
        try:
            resp = self._c._call(f"list {mount}/{prefix}", lambda: self._kv.list_secrets(
                path=prefix, mount_point=mount))
        except NotFound:
            return []
        return sorted(str(k) for k in ((resp or {}).get("data") or {}).get("keys", []))


# ------------------------------------------------------------------------------------------- entry points


def client_with_token(address: str, ca_file: Path | str | None, token: str) -> VaultClient:
    client = VaultClient.connect(address, ca_file, token)
    client.use_token(token)
    return client


def unauthenticated(address: str, ca_file: Path | str | None) -> VaultClient:
    return VaultClient.connect(address, ca_file)


def login_kubernetes(address: str, ca_file: Path | str | None, mount: str, role: str,
                     jwt: str | Callable[[], str]) -> VaultClient:
    """A client logged in through Kubernetes auth. Pass a callable for ``jwt`` so the session can log in again
    when its token reaches its max TTL (a fresh TokenRequest each time)."""
    client = VaultClient.connect(address, ca_file)
    source: Callable[[], str] = jwt if callable(jwt) else (lambda: jwt)
    client.login_kubernetes(mount, role, source)
    return client
