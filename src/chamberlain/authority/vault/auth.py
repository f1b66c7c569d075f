"""Auth methods and tokens: the token store (lookup, renew, revoke, accessors), Kubernetes login, auth mounts
(``sys/auth``), the Kubernetes auth configuration and its roles.

Belongs here: :class:`Auth`, with typed answers (:class:`~chamberlain.authority.model.TokenInfo`,
:class:`~chamberlain.authority.model.AuthMountInfo`, :class:`~chamberlain.authority.model.KubernetesAuthConfig`,
:class:`~chamberlain.authority.model.KubernetesRole`). A login returns a
:class:`~chamberlain.authority.model.Login` whose token is hidden from repr; the client core installs it.

Not here: when to renew or log in again (the session in :mod:`.client`), which roles should exist
(:mod:`chamberlain.authority.configure`).
"""

from __future__ import annotations

from typing import Any

from chamberlain.authority.errors import Forbidden, InvalidRequest, NotFound
from chamberlain.authority.model import AuthMountInfo, KubernetesAuthConfig, KubernetesRole, Login, TokenInfo
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area


def _login(resp: Any) -> Login:
    auth = (resp or {}).get("auth") or {}
    return Login(str(auth.get("client_token") or ""), int(auth.get("lease_duration") or 0),
                 bool(auth.get("renewable")))


class Auth(Area):
    # -- tokens

    def lookup_self(self) -> TokenInfo:
        return TokenInfo.from_api(body.data(self._c.call("token lookup-self", lambda h: h.auth.token.lookup_self())))

    def renew_self(self) -> Login:
        """Renew the current token; the answer's token field is empty (the token itself does not change)."""
        renewed = _login(self._c.call("renew token", lambda h: h.auth.token.renew_self()))
        return Login("", renewed.ttl, renewed.renewable)

    def revoke_self(self) -> None:
        self._c.call("token revoke-self", lambda h: h.auth.token.revoke_self())
        self._c.forget_token()

    def list_accessors(self) -> list[str]:
        return body.keys(self._c.call("list token accessors", lambda h: h.list("auth/token/accessors")))

    def lookup_accessor(self, accessor: str, attempts: int = 4, interval: float = 0.25) -> TokenInfo | None:
        """The token behind ``accessor``; None once it is revoked or expired. A token revoked between the listing
        and the lookup, or revoking itself at that very moment, answers 403 (OpenBao 2.7 and Vault 1.21 alike; ESO
        revokes its token after each reconcile): gone from the list, it is gone; still listed, asked again shortly
        it answers "invalid accessor". A 403 for an accessor that stays listed is a real denial: raised."""
        for attempt in range(attempts):
            try:
                resp = self._c.call("token lookup-accessor", lambda h: h.auth.token.lookup_accessor(accessor))
            except (InvalidRequest, NotFound):
                return None  # revoked or expired meanwhile
            except Forbidden:
                if accessor not in self.list_accessors():
                    return None
                if attempt + 1 == attempts:
                    raise
                self._c.clock.sleep(interval)
                continue
            return TokenInfo.from_api(body.data(resp))
        return None  # pragma: no cover - the loop returns or raises

    def revoke_accessor(self, accessor: str) -> None:
        try:
            self._c.call("token revoke-accessor", lambda h: h.auth.token.revoke_accessor(accessor))
        except (InvalidRequest, NotFound):
            return

    # -- Kubernetes login

    def kubernetes_login(self, mount: str, role: str, jwt: str) -> Login:
        """Exchange a ServiceAccount JWT for a token (not installed: see ``VaultClient.login_kubernetes``)."""
        return _login(self._c.call(
            f"login at auth/{mount} as role {role}",
            lambda h: h.auth.kubernetes.login(role=role, jwt=jwt, use_token=False, mount_point=mount),
            safe_detail=True))

    # -- auth mounts

    def list_mounts(self) -> dict[str, AuthMountInfo]:
        resp = self._c.call("list auth methods", lambda h: h.sys.list_auth_methods())
        return {path: AuthMountInfo.from_api(info) for path, info in body.listing(resp).items()}

    def enable(self, path: str, method: AuthMountInfo) -> None:
        self._c.call(f"enable auth method at {path}/", lambda h: h.sys.enable_auth_method(
            method_type=method.type, path=path, description=method.description), safe_detail=True)

    # -- Kubernetes auth configuration and roles

    def read_kubernetes_config(self, mount: str) -> KubernetesAuthConfig | None:
        raw = self._c.logical.read(f"auth/{mount}/config")
        return KubernetesAuthConfig.from_api(raw.data) if raw is not None and raw.data else None

    def write_kubernetes_config(self, mount: str, config: KubernetesAuthConfig, reviewer_jwt: str | None) -> None:
        """Write the configuration; ``reviewer_jwt`` (a credential) is sent only when given."""
        payload: dict[str, Any] = {"kubernetes_host": config.kubernetes_host,
                                   "kubernetes_ca_cert": config.kubernetes_ca_cert,
                                   "disable_local_ca_jwt": config.disable_local_ca_jwt,
                                   "issuer": config.issuer,
                                   "disable_iss_validation": config.disable_iss_validation}
        if reviewer_jwt is not None:
            payload["token_reviewer_jwt"] = reviewer_jwt
        self._c.logical.write(f"auth/{mount}/config", payload)

    def list_roles(self, mount: str) -> list[str]:
        return self._c.logical.list(f"auth/{mount}/role")

    def read_role(self, mount: str, name: str) -> KubernetesRole | None:
        raw = self._c.logical.read(f"auth/{mount}/role/{name}")
        return KubernetesRole.from_api(raw.data) if raw is not None else None

    def write_role(self, mount: str, name: str, role: KubernetesRole) -> None:
        self._c.logical.write(f"auth/{mount}/role/{name}", role.as_body())

    def delete_role(self, mount: str, name: str) -> None:
        self._c.logical.delete(f"auth/{mount}/role/{name}")


__all__ = ["Auth"]
