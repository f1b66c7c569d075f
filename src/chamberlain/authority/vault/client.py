"""The client core of the authority adapter: the connection, the session (login, renewal, re-login) and the areas.

Belongs here: :class:`VaultClient`, which owns the hvac client, the injected :class:`~chamberlain.clock.Clock`
and the token, and exposes one object per Vault area (``kv``, ``seal``, ``auth``, ``policies``, ``audit``,
``mounts``, ``pki``, ``transit``, ``logical``, ``raft``); the construction helpers :func:`client_with_token`,
:func:`unauthenticated` and :func:`login_kubernetes`. Every request of every area goes through :meth:`VaultClient.call`
(the error boundary of :mod:`.boundary`).

Sessions: a token obtained by Kubernetes login knows its TTL; :meth:`VaultClient.ensure_fresh` renews it once half
of its TTL has passed on the clock's monotonic timer (and logs in again only when renewal is impossible), so a
long-running controller does not log in on every call.

Not here: what each area does (its own module), where OpenBao differs (:mod:`.flavor`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests
from requests.adapters import HTTPAdapter

from chamberlain.authority.errors import Forbidden, InvalidRequest
from chamberlain.authority.model import Flavor, Login, TokenInfo
from chamberlain.authority.vault.audit import Audit
from chamberlain.authority.vault.auth import Auth
from chamberlain.authority.vault.boundary import call
from chamberlain.authority.vault.failover import FailoverPolicy, may_fail_over, parse_addresses
from chamberlain.authority.vault.kv import VaultKV
from chamberlain.authority.vault.logical import Logical
from chamberlain.authority.vault.mounts import Mounts
from chamberlain.authority.vault.pki import Pki
from chamberlain.authority.vault.policy import Policies
from chamberlain.authority.vault.raft import Raft
from chamberlain.authority.vault.seal import RecoveryKeys, Seal
from chamberlain.authority.vault.transit import Transit
from chamberlain.clock import Clock

T = TypeVar("T")

DEFAULT_TIMEOUT = 30
POOL_SIZE = 32  # kept-alive connections per host: at least the most workers that share one client


@dataclass
class _Session:
    """How the current token was obtained, so it can be renewed (or obtained again) before it expires."""

    ttl: int  # seconds, as granted; 0 = does not expire (root)
    renewable: bool
    obtained: float  # the clock's monotonic time when granted
    relogin: Callable[[], Login] | None = None


class VaultClient:
    """An hvac client, its session and its areas. Use ``client.kv``, ``client.seal``, ``client.auth``..."""

    def __init__(self, client: Any, clock: Clock, addresses: tuple[str, ...] = (),
                 failover: FailoverPolicy | None = None) -> None:
        self._hvac = client
        self.clock = clock
        #: Every node of an HA authority (``--vault-addr A,B,C``); requests fail over between them
        #: (:mod:`.failover`). One address (or a load balancer's): no failover, as before.
        self.addresses: tuple[str, ...] = addresses or (str(client.url),)
        self.failover = failover or FailoverPolicy()
        self.failovers = 0  # how many times a request moved to another node (benchmarks and tests read it)
        self._session: _Session | None = None
        self._generation = 0  # bumped on every login, renewal or re-login (the controller counts them)
        self._flavor: Flavor | None = None
        self.kv = VaultKV(self)
        self.seal = Seal(self)
        self.recovery = RecoveryKeys(self)  # rekey of an auto-unsealed server's recovery keys
        self.auth = Auth(self)
        self.policies = Policies(self)
        self.audit = Audit(self)
        self.mounts = Mounts(self)
        self.pki = Pki(self)
        self.transit = Transit(self)
        self.logical = Logical(self)
        self.raft = Raft(self)

    @classmethod
    def connect(cls, address: str, ca_file: Path | str | None = None, token: str | None = None,
                timeout: int = DEFAULT_TIMEOUT, *, clock: Clock) -> VaultClient:
        addresses = parse_addresses(address)
        verify: bool | str = str(ca_file) if ca_file else True
        # Only what chamberlain was given reaches the server: hvac would otherwise send VAULT_TOKEN or
        # ~/.vault-token (even on an "anonymous" client) and VAULT_CLIENT_CERT, and requests would add netrc
        # credentials, environment proxies and CA bundles.
        session = requests.Session()
        session.trust_env = False
        # Workers share one client (provisioning runs them in parallel): keep a connection per worker alive
        # instead of urllib3's default 10, past which each request would pay a new TLS handshake.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # hvac prefers a given session's own verify (always truthy) over its verify argument: set it here.
        session.verify = verify
        return cls(hvac.Client(url=addresses[0], token=token or "", cert="", verify=verify, timeout=timeout,
                               session=session), clock, addresses)

    def __repr__(self) -> str:
        return f"VaultClient({self.address})"

    # -- the boundary, for the areas

    def call(self, what: str, fn: Callable[[Any], T], *, safe_detail: bool = False, fresh: bool = False) -> T:
        """``fn(hvac_client)`` behind the error boundary; ``fresh`` renews the session first when it is due."""
        if fresh:
            self.ensure_fresh()
        tried: list[tuple[str, BaseException]] = []  # each node asked and what it raised: the error names them

        def on_node(h: Any) -> T:
            try:
                return fn(h)
            except (hvac.exceptions.VaultError, requests.exceptions.RequestException, OSError) as exc:
                tried.append((self.address, exc))
                raise

        if len(self.addresses) < 2:
            return call(what, lambda: on_node(self._hvac), safe_detail=safe_detail, tried=tried)
        return call(what, lambda: self._on_some_node(on_node), safe_detail=safe_detail, tried=tried)

    def _on_some_node(self, fn: Callable[[Any], T]) -> T:
        """``fn`` on the current node; when that node surely did not apply it (down, sealed, a standby without an
        active node to forward to), on the next one, round after round within the policy's bounds. The client
        stays on the node that answered, so later requests start there. The last error is raised as it was."""
        policy, clock = self.failover, self.clock
        deadline = clock.monotonic() + policy.budget
        failed_in_round, round_ = 0, 0
        while True:
            try:
                return fn(self._hvac)
            except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
                if not may_fail_over(exc, str(self._hvac.url)):
                    raise
                failed_in_round += 1
                if failed_in_round >= len(self.addresses):  # every node refused: wait for an election
                    pause = policy.pause_after(round_)
                    round_ += 1
                    if round_ >= policy.rounds or clock.monotonic() + pause > deadline:
                        raise
                    failed_in_round = 0
                    clock.sleep(pause)
                self._next_node()

    def _next_node(self) -> None:
        current = str(self._hvac.url)
        index = self.addresses.index(current) if current in self.addresses else -1
        self._hvac.url = self.addresses[(index + 1) % len(self.addresses)]
        self.failovers += 1

    @property
    def address(self) -> str:
        return str(self._hvac.url)

    @property
    def flavor(self) -> Flavor:
        """Vault or OpenBao, read once from the unauthenticated seal status."""
        if self._flavor is None:
            self._flavor = self.seal.status().flavor
        return self._flavor

    # -- tokens and sessions

    @property
    def has_token(self) -> bool:
        return bool(self._hvac.token)

    def use_token(self, token: str) -> None:
        """Authenticate with a token that is not renewed (root, break-glass, a lab token)."""
        self._hvac.token = token
        self._session = _Session(0, False, self.clock.monotonic())

    def forget_token(self) -> None:
        self._hvac.token = None
        self._session = None

    def login_kubernetes(self, mount: str, role: str, jwt_source: Callable[[], str]) -> TokenInfo:
        """Log in with a ServiceAccount JWT; ``jwt_source`` is called again if the session must be re-created."""

        def login() -> Login:
            return self.auth.kubernetes_login(mount, role, jwt_source())

        self._install(login(), login)
        return self.auth.lookup_self()

    def _install(self, login: Login, relogin: Callable[[], Login] | None) -> None:
        self._hvac.token = login.token
        self._session = _Session(login.ttl, login.renewable, self.clock.monotonic(), relogin)
        self._generation += 1

    def ensure_fresh(self) -> None:
        """Renew the token when half its TTL has passed; log in again when it cannot be renewed."""
        s = self._session
        if s is None or s.ttl <= 0 or self.clock.monotonic() - s.obtained < s.ttl / 2:
            return
        if s.renewable:
            try:
                renewed = self.auth.renew_self()
            except (Forbidden, InvalidRequest):
                renewed = None
            # Renewal stops extending at the role's max TTL: then a fresh login is the only way forward.
            if renewed is not None and renewed.ttl > s.ttl / 4:
                self._session = _Session(renewed.ttl, renewed.renewable, self.clock.monotonic(), s.relogin)
                self._generation += 1
                return
        if s.relogin is not None:
            self._install(s.relogin(), s.relogin)

    @property
    def session_generation(self) -> int:
        """How many times a token was obtained or renewed: a controller logs in once, then only renews."""
        return self._generation

    @property
    def session_ttl(self) -> int | None:
        return self._session.ttl if self._session else None


# ------------------------------------------------------------------------------------------- construction


def client_with_token(address: str, ca_file: Path | str | None, token: str, *, clock: Clock) -> VaultClient:
    client = VaultClient.connect(address, ca_file, token, clock=clock)
    client.use_token(token)
    return client


def unauthenticated(address: str, ca_file: Path | str | None, *, clock: Clock) -> VaultClient:
    return VaultClient.connect(address, ca_file, clock=clock)


def login_kubernetes(address: str, ca_file: Path | str | None, mount: str, role: str,
                     jwt: str | Callable[[], str], *, clock: Clock) -> VaultClient:
    """A client logged in through Kubernetes auth. Pass a callable for ``jwt`` so the session can log in again
    when its token reaches its max TTL (a fresh TokenRequest each time)."""
    client = VaultClient.connect(address, ca_file, clock=clock)
    source: Callable[[], str] = jwt if callable(jwt) else (lambda: jwt)
    client.login_kubernetes(mount, role, source)
    return client


__all__ = ["DEFAULT_TIMEOUT", "VaultClient", "client_with_token", "login_kubernetes", "unauthenticated"]
