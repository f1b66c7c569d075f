"""The seal life cycle of the server (``sys/seal-status``, ``sys/health``, ``sys/leader``, ``sys/init``,
``sys/unseal``, rekey with verification, ``sys/generate-root``, ``sys/key-status``, ``sys/rotate``).

Belongs here: :class:`Seal`, one method per operation, typed answers (:class:`~chamberlain.authority.model.SealStatus`,
:class:`~chamberlain.authority.model.Health`...). Unseal shares and root tokens travel only in value objects whose
repr hides them. Which endpoints a rekey uses depends on the flavour (:mod:`.flavor`).

Not here: deciding when to init, unseal or rekey, or where the shares are kept (:mod:`chamberlain.authority.lifecycle`).
"""

from __future__ import annotations

import base64
from typing import Any

from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable, InvalidRequest, NotFound
from chamberlain.authority.model import (
    HaStatus,
    Health,
    InitResult,
    KeyStatus,
    RekeyProgress,
    RekeyResult,
    RekeyVerification,
    RootToken,
    SealStatus,
)
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area
from chamberlain.authority.vault.flavor import RECOVERY_REKEY_PATHS, REKEY_PATHS, RekeyPaths, flavor_of


def _progress(d: dict[str, Any]) -> RekeyProgress:
    return RekeyProgress(bool(d.get("started")), str(d.get("nonce") or ""), int(d.get("progress") or 0),
                         int(d.get("required") or 0), bool(d.get("verification_required")))


class Seal(Area):
    # -- state (unauthenticated)

    def status(self) -> SealStatus:
        d = body.data(self._c.call("read seal status", lambda h: h.sys.read_seal_status()))
        return SealStatus(
            initialized=bool(d.get("initialized")), sealed=bool(d.get("sealed")), threshold=int(d.get("t") or 0),
            shares=int(d.get("n") or 0), progress=int(d.get("progress") or 0), version=str(d.get("version") or ""),
            storage=str(d.get("storage_type") or ""), cluster_name=str(d.get("cluster_name") or ""),
            flavor=flavor_of(d), cluster_id=str(d.get("cluster_id") or ""),
            seal_type=str(d.get("type") or "shamir"), recovery_seal=bool(d.get("recovery_seal")),
        )

    def health(self) -> Health:
        """``sys/health`` with every state answering 200, so sealed/standby/uninitialized can be read."""
        d = body.data(self._c.call("read health", lambda h: h.sys.read_health_status(
            method="GET", standby_ok=True, active_code=200, standby_code=200, sealed_code=200, uninit_code=200,
            performance_standby_code=200, dr_secondary_code=200)))
        return Health(initialized=bool(d.get("initialized")), sealed=bool(d.get("sealed")),
                      standby=bool(d.get("standby")), version=str(d.get("version") or ""),
                      cluster_name=str(d.get("cluster_name") or ""), flavor=flavor_of(d),
                      cluster_id=str(d.get("cluster_id") or ""))

    def leader(self) -> HaStatus:
        d = body.data(self._c.call("read leader status", lambda h: h.sys.read_leader_status()))
        return HaStatus(bool(d.get("ha_enabled")), bool(d.get("is_self")), str(d.get("leader_address") or ""))

    def wait_active(self, timeout: float = 60.0, interval: float = 0.5) -> None:
        """Wait until the server is unsealed and active (raft elects itself a few seconds after unseal)."""
        clock = self._c.clock
        deadline = clock.monotonic() + timeout
        while True:
            try:
                if self.health().active:
                    return
            except AuthorityUnavailable:
                pass
            if clock.monotonic() > deadline:
                raise AuthorityUnavailable(f"{self._c.address}: not active {timeout:.0f}s after unseal")
            clock.sleep(interval)

    # -- init and unseal

    def initialize(self, shares: int, threshold: int, *, recovery: bool = False) -> InitResult:
        """``sys/init``: unseal shares, or with ``recovery`` (an auto-unseal seal) recovery keys, which the server
        returns instead (it unseals itself; the recovery keys authorize generate-root and their own rekey)."""
        if not recovery:
            d = self._c.call("initialize", lambda h: h.sys.initialize(secret_shares=shares,
                                                                      secret_threshold=threshold))
            return InitResult(tuple(str(k) for k in d["keys"]), str(d["root_token"]))
        d = self._c.call("initialize (recovery keys)", lambda h: h.sys.initialize(
            recovery_shares=shares, recovery_threshold=threshold))
        return InitResult(tuple(str(k) for k in d["recovery_keys"]), str(d["root_token"]))

    def submit_unseal_key(self, key: str) -> SealStatus:
        self._c.call("submit unseal share", lambda h: h.sys.submit_unseal_key(key=key))
        return self.status()

    def reset_unseal(self) -> None:
        self._c.call("reset unseal progress", lambda h: h.sys.submit_unseal_key(reset=True))

    # -- rekey with verification (the endpoints depend on the flavour)

    def _rekey(self, what: str, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return body.data(self._c.call(what, lambda h: getattr(h.adapter, method)(f"/v1/{path}", json=payload),
                                      safe_detail=True))

    @property
    def _paths(self) -> RekeyPaths:
        return REKEY_PATHS[self._c.flavor]

    @property
    def rekey_needs_token(self) -> bool:
        """Whether this server's rekey endpoints need a token (OpenBao's ``sys/rotate/root/*``) or none (Vault's)."""
        return self._paths.authenticated

    def rekey_progress(self) -> RekeyProgress:
        return _progress(self._rekey("read rekey progress", "get", self._paths.init))

    def start_rekey(self, shares: int, threshold: int) -> RekeyProgress:
        return _progress(self._rekey("start rekey", "put", self._paths.init, {
            "secret_shares": shares, "secret_threshold": threshold, "require_verification": True}))

    def cancel_rekey(self) -> None:
        self._rekey("cancel rekey", "delete", self._paths.init)

    def rekey_submit(self, key: str, nonce: str) -> RekeyResult | None:
        """Submit one old share; the result once the threshold is reached (None before)."""
        d = self._rekey("submit rekey share", "put", self._paths.update, {"key": key, "nonce": nonce})
        if not d.get("complete"):
            return None
        return RekeyResult(tuple(str(k) for k in d["keys"]), str(d.get("verification_nonce") or ""))

    def rekey_verification(self) -> RekeyVerification:
        """The pending rekey verification; an empty one when none is pending."""
        try:
            d = self._rekey("read rekey verification", "get", self._paths.verify)
        except (InvalidRequest, NotFound):
            return RekeyVerification()
        return RekeyVerification(str(d.get("nonce") or ""), int(d.get("progress") or 0))

    def cancel_rekey_verify(self) -> None:
        self._rekey("cancel rekey verification", "delete", self._paths.verify)

    def rekey_verify(self, key: str, nonce: str) -> bool:
        """Submit one new share to the verification; True once the new shares are in force."""
        return bool(self._rekey("verify rekey share", "put", self._paths.verify, {"key": key, "nonce": nonce})
                    .get("complete"))

    # -- keys and root tokens

    def key_status(self) -> KeyStatus:
        d = body.data(self._c.call("read key status", lambda h: h.read("sys/key-status")))
        return KeyStatus(int(d.get("term") or 0), str(d.get("install_time") or ""))

    def rotate_encryption_key(self) -> None:
        self._c.call("rotate the encryption key (sys/rotate)", lambda h: h.sys.rotate_encryption_key())

    def generate_root(self, keys: list[str]) -> RootToken:
        """Break-glass: a new root token from ``keys`` (unseal shares) via ``sys/generate-root`` with a one-time
        pad; any previous attempt is cancelled first. The caller must revoke the token when done."""
        self._c.call("cancel root generation", lambda h: h.sys.cancel_root_generation())
        start = self._c.call("start root generation", lambda h: h.sys.start_root_token_generation())
        otp, nonce = str(start["otp"]), str(start["nonce"])
        encoded = ""
        for key in keys:
            d = self._c.call("submit root generation share",
                             lambda h, k=key: h.sys.generate_root(key=k, nonce=nonce))  # type: ignore[misc]
            if d.get("complete"):
                encoded = str(d["encoded_token"])
                break
        if not encoded:
            self._c.call("cancel root generation", lambda h: h.sys.cancel_root_generation())
            raise AuthorityError("generate-root: not enough valid shares to reach the threshold")
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
        return RootToken(bytes(a ^ b for a, b in zip(raw, otp.encode(), strict=False)).decode())


class RecoveryKeys(Seal):
    """The rekey operations of :class:`Seal` on the *recovery* keys of an auto-unsealed server (``client.recovery``):
    same calls, the recovery endpoints (:data:`~chamberlain.authority.vault.flavor.RECOVERY_REKEY_PATHS`)."""

    @property
    def _paths(self) -> RekeyPaths:
        return RECOVERY_REKEY_PATHS[self._c.flavor]


__all__ = ["RecoveryKeys", "Seal"]
