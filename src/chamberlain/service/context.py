"""How a use case reaches its servers, and who it acts as.

Belongs here: :class:`ConnectionOptions` (what a user names: the Vault address and CA, a token file or a
break-glass token, kubeconfig files and a context), the :class:`Servers` protocol every use case opens its clients
through, :class:`LiveServers` (the real clients, opened on first use and closed together), and :class:`Caller` (the
actor, the run id and the clock a use case records in the ledger). Tests pass a fake :class:`Servers` over ``FakeKV``,
``FakeKube`` and a fake Vault, so no use case needs a server to be tested.

Identities (SPEC §6): without a token file, a use case logs in through Vault's Kubernetes auth as the orchestrator
of the selected cluster (``chamberlain.<cluster>.orchestrator``) or as the configurator, each with a fresh
short-lived ServiceAccount token (:mod:`chamberlain.authority.session`). A token is only ever read from a file the
user names, or handed over by the entry point from stdin or an environment variable the user *names*
(``--vault-token-env``); never from argv, never from an ambient ``VAULT_TOKEN``; it never enters a message.

Not here: option parsing (the CLI turns flags into :class:`ConnectionOptions`), any use case.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from chamberlain.clock import Clock
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.kube.api import (
    Kube,
    KubeApply,
    KubeCustomObjects,
    KubeLeases,
    KubeNamespaces,
    KubePropagation,
    KubeRunObjects,
    KubeTakeover,
    KubeWatch,
)
from chamberlain.kube.kubeconfig import KubeconfigSource

if TYPE_CHECKING:
    from chamberlain.authority.session import Connection
    from chamberlain.authority.vault import VaultClient
    from chamberlain.intent.model import Platform
    from chamberlain.kube.client import KubeClient


def new_run_id() -> str:
    """A fresh id for one run of a command, recorded with every ledger entry it writes."""
    return f"run-{uuid.uuid4().hex[:12]}"


def workstation_actor(kind: str, user: str) -> str:
    """Who acts from a workstation, for the ledger: ``<kind>:<user>`` (``cli:alice``, ``demo:alice``). A
    workstation is never an anonymous control plane (Inv. 6); the entry point knows the user's login name."""
    return f"{kind}:{user}"


@dataclass(frozen=True)
class Caller:
    """Who acts, as which run, on which clock: what every ledger entry of one invocation carries."""

    actor: str
    clock: Clock
    run: str = field(default_factory=new_run_id)


@dataclass(frozen=True)
class ConnectionOptions:
    """Where the authority and the cluster are, and how to authenticate; ``None`` means the default (the
    Platform's ``spec.authority.address``, no CA bundle, a Kubernetes login, the in-cluster or default
    kubeconfig)."""

    vault_addr: str | None = None
    vault_cacert: Path | None = None
    vault_token_file: Path | None = None
    vault_token: str | None = field(default=None, repr=False)  # read by the entry point (stdin, a named variable)
    kubeconfig: Path | tuple[Path, ...] | None = None  # several files merge like KUBECONFIG (the first wins)
    context: str | None = None  # a context of that kubeconfig (None: its current-context)
    # The ServiceAccount token the orchestrator logs in with (in a pod: a projected token with the `vault`
    # audience, re-read at each login because the kubelet rotates it). None: mint one with a TokenRequest.
    login_token_file: Path | None = None

    @property
    def kubeconfig_source(self) -> KubeconfigSource | None:
        """The kubeconfig files and context named (None: in-cluster in a pod, else ``~/.kube/config``)."""
        return KubeconfigSource.of(self.kubeconfig, self.context)


class ClusterAPI(Kube, KubeApply, KubePropagation, KubeCustomObjects, KubeLeases, KubeRunObjects, KubeWatch,
                 KubeNamespaces, KubeTakeover, Protocol):
    """Everything the use cases need from Kubernetes (the real client and ``FakeKube`` have all of it)."""


class Servers(Protocol):
    """The clients a use case works through. Each method opens (or logs in) when called; nothing is opened for a
    use case that fails before it needs a server."""

    @property
    def kubeconfig(self) -> KubeconfigSource | None:
        """The kubeconfig (files and context) the user named (None: in-cluster or the default), for the cluster
        facts Vault's Kubernetes auth needs."""
        ...

    def kube(self) -> ClusterAPI: ...

    def connection(self, platform: Platform) -> Connection:
        """Where the authority is (address, CA file, any break-glass token)."""
        ...

    def anonymous(self, platform: Platform) -> VaultClient:
        """An unauthenticated client: seal status, init, unseal."""
        ...

    def configurator(self, platform: Platform, cluster: str | None = None) -> VaultClient:
        """The identity that configures the authority, through the auth mount of ``cluster`` (default: the
        Platform's only cluster), or the break-glass token."""
        ...

    def login(self, platform: Platform, role: str) -> VaultClient:
        """A Kubernetes-auth login as the orchestrator ``role`` (``chamberlain.<cluster>.orchestrator``) with the
        controller ServiceAccount's token, at that cluster's auth mount."""
        ...

    def orchestrator(self, platform: Platform, cluster: str | None) -> VaultClient:
        """The runtime authority as the orchestrator of ``cluster``, or as the token of a token file."""
        ...


class LiveServers:
    """The real clients for :class:`ConnectionOptions`: the Kubernetes client is opened once, on first use, and
    closed by :meth:`close` (or leaving the ``with`` block); each Vault session is a new login."""

    def __init__(self, options: ConnectionOptions, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self._kube: KubeClient | None = None

    def __enter__(self) -> LiveServers:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def kubeconfig(self) -> KubeconfigSource | None:
        return self.options.kubeconfig_source

    def close(self) -> None:
        if self._kube is not None:
            self._kube.close()
            self._kube = None

    def kube(self) -> KubeClient:
        if self._kube is None:
            from chamberlain.kube.client import KubeClient

            source = self.options.kubeconfig_source
            try:
                self._kube = KubeClient.from_kubeconfig(source.files if source else None,
                                                        source.context if source else None, clock=self.clock)
            except ChamberlainError:  # an unknown context, a missing file: the message names them
                raise
            except Exception as exc:  # the client's config loader raises its own types; the text may name files
                raise UsageError(f"cannot load a kubeconfig ({type(exc).__name__}); pass --kubeconfig") from None
        return self._kube

    def connection(self, platform: Platform) -> Connection:
        from chamberlain.authority.session import Connection, read_token_file

        o = self.options
        conn = Connection.resolve(platform, o.vault_addr, o.vault_cacert, o.vault_token, clock=self.clock)
        if conn.token is None and o.vault_token_file is not None:  # read once the CA file is known to exist
            conn = replace(conn, token=read_token_file(o.vault_token_file))
        return conn

    def anonymous(self, platform: Platform) -> VaultClient:
        return self.connection(platform).anonymous()

    def configurator(self, platform: Platform, cluster: str | None = None) -> VaultClient:
        from chamberlain.authority import session
        from chamberlain.render import naming

        conn = self.connection(platform)
        if conn.token:  # break-glass: a token a human passed on purpose; no Kubernetes login, no cluster
            from chamberlain.authority.vault import client_with_token

            return client_with_token(conn.address, conn.ca_file, conn.token, clock=self.clock)
        identity = session.ConfiguratorIdentity(
            naming.kubernetes_auth_mount(platform, naming.login_cluster(platform, cluster)),
            naming.configurator_namespace(platform), naming.configurator_service_account(platform))
        return session.configurator(conn, self.kube(), identity)

    def login(self, platform: Platform, role: str) -> VaultClient:
        from chamberlain.authority.session import login_as, login_with_file
        from chamberlain.render import naming

        cluster = naming.login_cluster(platform, naming.orchestrator_cluster(role))
        mount = naming.kubernetes_auth_mount(platform, cluster)
        if self.options.login_token_file is not None:
            return login_with_file(self.connection(platform), role, mount, self.options.login_token_file)
        return login_as(self.connection(platform), platform, self.kube(), role, mount)

    def orchestrator(self, platform: Platform, cluster: str | None) -> VaultClient:
        from chamberlain.authority.vault import client_with_token

        conn = self.connection(platform)
        token = conn.token
        if token:
            return client_with_token(conn.address, conn.ca_file, token, clock=self.clock)
        if cluster is None:
            raise UsageError("pass --vault-token-file (a file holding a Vault token; '-' for stdin) or "
                             "--vault-token-env NAME, or --cluster and --kubeconfig to log in as that cluster's "
                             "orchestrator")
        from chamberlain.render.naming import orchestrator_policy

        return self.login(platform, orchestrator_policy(cluster))


__all__ = [
    "Caller",
    "ClusterAPI",
    "ConnectionOptions",
    "LiveServers",
    "Servers",
    "new_run_id",
    "workstation_actor",
]
