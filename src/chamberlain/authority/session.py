"""How a command gets an authenticated client of the runtime authority: connection options, the Kubernetes
cluster facts Vault's Kubernetes auth needs, and logins as chamberlain's own identities.

Identities (SPEC §6, one per component, no shared credentials): the *orchestrator* of a cluster (role
``chamberlain.<cluster>.orchestrator``, KV life cycle), bound to the controller ServiceAccount, and the
*configurator* (role ``chamberlain.authority.configurator``, Vault configuration), bound to a ServiceAccount of its
own in a namespace no workload runs in (:func:`chamberlain.render.naming.configurator_namespace`): a human or CI
mints its token, the controller's identity can never log in as it. Each login goes to the Kubernetes auth mount of
the cluster the token belongs to (:func:`chamberlain.render.naming.kubernetes_auth_mount`) with a fresh,
short-lived TokenRequest token with the ``vault`` audience. A static token is accepted only where a human passes
it on purpose (break-glass: a file, stdin, or a variable named with ``--vault-token-env``; never argv, never an
ambient ``VAULT_TOKEN``).

Boundary: Kubernetes is reached through the structural :class:`TokenSource` (the Kube protocol satisfies it), and
a kubeconfig's cluster facts come in as a function (:func:`chamberlain.kube.kubeconfig.cluster_endpoint`), so
this module does not import the Kubernetes adapter. The clock comes with the :class:`Connection`: the entry point
that builds one passes its clock (sessions renew on it). No secret is logged or put into an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from chamberlain.authority.configure import CONFIGURATOR, VAULT_AUDIENCE, KubernetesAuthSettings
from chamberlain.authority.kv import KV
from chamberlain.authority.vault import VaultClient, client_with_token, login_kubernetes, unauthenticated
from chamberlain.clock import Clock
from chamberlain.errors import UsageError
from chamberlain.intent.model import Platform

LOGIN_JWT_SECONDS = 600  # the login JWT is used once, at login; it need not outlive it by much


class TokenSource(Protocol):
    def service_account_token(self, namespace: str, name: str, audiences: list[str], seconds: int = 600) -> str: ...


@dataclass(frozen=True)
class Connection:
    """Where the authority is, and the clock its sessions run on. ``address`` defaults to the Platform's
    ``spec.authority.address``."""

    address: str
    ca_file: Path | None = None
    token: str | None = field(default=None, repr=False)
    clock: Clock = field(kw_only=True, repr=False)

    @classmethod
    def resolve(cls, platform: Platform, address: str | None, ca_file: Path | None,
                token: str | None = None, *, clock: Clock) -> Connection:
        if ca_file is not None and not ca_file.is_file():
            raise UsageError(f"{ca_file}: no such CA file (--vault-cacert / VAULT_CACERT)")
        if address:  # empty: not given (an exported but empty VAULT_ADDR), the Platform's address is used
            _check_address(address)
        return cls((address or platform.spec.authority.address).rstrip("/"), ca_file, token or None, clock=clock)

    def anonymous(self) -> VaultClient:
        return unauthenticated(self.address, self.ca_file, clock=self.clock)


_USERINFO = re.compile(r"(?<=://)[^/?#]*@|^[^/?#]*@")


def _check_address(addresses: str) -> None:
    """A usage error for an address no request could go to (else it would read as "Vault unreachable"); each node
    of an HA authority's comma-separated list is checked."""
    for address in addresses.split(","):
        try:
            parts = urlsplit(address.strip())
            port_ok = parts.port is None or parts.port > 0  # .port raises ValueError past 65535 or when not a number
        except ValueError:
            port_ok = False
        if not (port_ok and parts.scheme in ("http", "https") and parts.hostname):
            shown = _USERINFO.sub("***@", address.strip()[:200])  # a user and password in the URL are never printed
            raise UsageError(f"--vault-addr / VAULT_ADDR {shown!r}: not an http:// or https:// URL with a host "
                             "(and a port from 1 to 65535)")


def _jwt_source(kube: TokenSource, namespace: str, account: str) -> Any:
    return lambda: kube.service_account_token(namespace, account, [VAULT_AUDIENCE], LOGIN_JWT_SECONDS)


def login_as(conn: Connection, platform: Platform, kube: TokenSource, role: str, mount: str) -> VaultClient:
    """Log in through the Kubernetes auth mount ``mount`` (the controller's cluster's: see
    :func:`chamberlain.render.naming.kubernetes_auth_mount`) as ``role`` with the controller ServiceAccount's
    token."""
    ns, account = platform.spec.controller.namespace, platform.spec.controller.service_account
    return login_kubernetes(conn.address, conn.ca_file, mount, role, _jwt_source(kube, ns, account), clock=conn.clock)


# A token travels in an HTTP header: printable ASCII, no space (a Vault token, or a JWT's base64url and dots).
_TOKEN = re.compile(r"[\x21-\x7e]+")


def checked_token(token: str, where: str) -> str:
    """``token`` when it can be one token; a clear error naming ``where`` it came from (never the content)."""
    if not _TOKEN.fullmatch(token):
        raise UsageError(f"{where}: does not hold one token (printable ASCII characters, no space or line break "
                         "inside)")
    return token


def read_token_file(path: Path, what: str = "token file") -> str:
    """A token from a file (stripped); a clear error naming the file, never its content."""
    try:
        token = path.read_bytes().decode("utf-8").strip()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: the {what} is not text") from None
    if not token:
        raise UsageError(f"{path}: the {what} is empty")
    return checked_token(token, f"{path}: the {what}")


def login_with_file(conn: Connection, role: str, mount: str, token_file: Path) -> VaultClient:
    """Log in as ``role`` with the ServiceAccount token in ``token_file``: how the controller logs in from a pod
    (a projected token with the ``vault`` audience, which needs no right to mint tokens), or from a host process
    whose kubeconfig holds that ServiceAccount's token. Read again at every login: projected tokens rotate."""
    return login_kubernetes(conn.address, conn.ca_file, mount, role,
                            lambda: read_token_file(token_file, "login token file"), clock=conn.clock)


@dataclass(frozen=True)
class ConfiguratorIdentity:
    """Where the configurator logs in: its cluster's auth mount and its own ServiceAccount (never the
    controller's)."""

    mount: str
    namespace: str
    service_account: str


def configurator(conn: Connection, kube: TokenSource, identity: ConfiguratorIdentity) -> VaultClient:
    """The identity that configures Vault: an explicit token when one was given, else the configurator role with a
    token of the configurator's own ServiceAccount, minted with the caller's Kubernetes credentials (a human or CI
    allowed to create tokens for it)."""
    if conn.token:
        return client_with_token(conn.address, conn.ca_file, conn.token, clock=conn.clock)
    jwt = _jwt_source(kube, identity.namespace, identity.service_account)
    return login_kubernetes(conn.address, conn.ca_file, identity.mount, CONFIGURATOR, jwt, clock=conn.clock)


def orchestrator_kv(conn: Connection, platform: Platform, kube: TokenSource, role: str, mount: str) -> KV:
    """The KV the orchestrator works with (``role`` is ``chamberlain.<cluster>.orchestrator``, ``mount`` that
    cluster's Kubernetes auth mount)."""
    return login_as(conn, platform, kube, role, mount).kv


# -------------------------------------------------------------------------------------- Kubernetes facts


def kubernetes_auth_settings(
    endpoint: Callable[[], tuple[str, str]] | None,
    host: str | None = None,
    ca_file: Path | None = None,
    reviewer_jwt_file: Path | None = None,
    issuer: str | None = None,
) -> KubernetesAuthSettings | None:
    """Kubernetes auth settings from explicit options, falling back to ``endpoint`` (the API server URL and CA
    PEM of a kubeconfig's context, read only when an option leaves one out); None when neither says."""
    kc_host: str | None = None
    kc_ca: str | None = None
    if endpoint is not None and (host is None or ca_file is None):
        kc_host, kc_ca = endpoint()
    final_host = host or kc_host
    if ca_file is not None:
        try:
            ca: str | None = ca_file.read_text(encoding="utf-8")
        except OSError:
            raise UsageError(f"{ca_file}: cannot read --kubernetes-ca-file") from None
    else:
        ca = kc_ca
    if not final_host or not ca:
        return None
    reviewer = None
    if reviewer_jwt_file is not None:
        try:
            reviewer = reviewer_jwt_file.read_text(encoding="utf-8").strip()
        except OSError:
            raise UsageError(f"{reviewer_jwt_file}: cannot read --token-reviewer-jwt-file") from None
    # With a reviewer JWT Vault runs outside the cluster: it must not look for a pod token of its own.
    return KubernetesAuthSettings(final_host, ca, reviewer, disable_local_ca_jwt=reviewer is not None,
                                  issuer=issuer or None)
