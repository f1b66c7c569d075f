"""The lab's servers: how each is configured, started, probed and stopped.

Boundary: one class per server, each knowing its own command line, files under the
lab directory and health/version probe. Ordering between servers, the lab's
persisted configuration and the public ``up``/``down``/``status`` live in
:mod:`.lab`. Every server listens on loopback only. What a server takes from the
machine (its binary in the build cache, the environment it starts from, the clock
its log is stamped with) comes in a :class:`LabHost` from the entry point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chamberlain import wellknown as wk
from chamberlain.clock import Clock
from chamberlain.errors import ChamberlainError, ToolMissing
from chamberlain.lab import builds, procs
from chamberlain.lab.pki import CertPair, LabPKI
from chamberlain.settings import Settings

Progress = Callable[[str], None]
HOST = "127.0.0.1"


class LabError(ChamberlainError):
    """A lab server could not be started or is not healthy (message is secret-free)."""


@dataclass(frozen=True)
class Health:
    healthy: bool
    address: str
    version: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"healthy": self.healthy, "address": self.address, "version": self.version}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class LabHost:
    """What the lab takes from the machine it runs on, handed down by the entry point.

    ``cache`` is the build cache (``Settings.lab_cache``), ``env`` the environment every child process of the lab
    starts from (``Settings.child_env``; a server keeps only a few of its variables, see :meth:`server_env`),
    ``clock`` stamps certificates and logs.
    """

    cache: Path
    env: Mapping[str, str] = field(repr=False, hash=False)  # a mapping: left out of the hash, kept in ==
    clock: Clock

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> LabHost:
        return cls(settings.lab_cache, settings.child_env, clock)

    def binary(self, name: str) -> Path:
        """The cached binary ``name`` (see :func:`.builds.binary`)."""
        return builds.binary(self.cache, name)

    def server_env(self) -> dict[str, str]:
        """A server's environment: a minimal one, so nothing of the caller's credentials (VAULT_TOKEN,
        KUBECONFIG, PG*) leaks into what it does."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
        return {k: self.env[k] for k in keep if k in self.env}


def _write_private_text(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _http_json(url: str, *, context: ssl.SSLContext | None = None, timeout: float = 3.0) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - lab URLs only
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
            body = resp.read()
            status = int(resp.status)
    except urllib.error.HTTPError as err:
        body = err.read()
        status = err.code
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body.decode("utf-8", errors="replace")


def _http_call(method: str, url: str, *, token: str = "", payload: dict[str, Any] | None = None,
               context: ssl.SSLContext | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    """One authority API call (lab set-up only); the status and the decoded body (never logged)."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if token:
        headers["X-Vault-Token"] = token
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - lab URLs only
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
            body, status = resp.read(), int(resp.status)
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    lab_dir: Path | None = None,
    proc: procs.ProcInfo | None = None,
    interval: float = 0.5,
    mask: tuple[str, ...] = (),
) -> None:
    """Poll ``check`` until true; fail early (with the log tail) if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        if proc is not None and lab_dir is not None and procs.read(lab_dir, proc.name) is None:
            raise LabError(f"{what}: process exited during start-up; log tail:\n{procs.log_tail(proc, mask=mask)}")
        time.sleep(interval)
    tail = f"; log tail:\n{procs.log_tail(proc, mask=mask)}" if proc else ""
    raise LabError(f"{what}: not ready after {timeout:.0f}s{tail}")


class Server:
    """Common shape of a lab server."""

    name: str = ""
    stop_signal: int = signal.SIGTERM

    def __init__(self, lab_dir: Path, host: LabHost) -> None:
        self.lab_dir = lab_dir
        self.host = host

    @property
    def dir(self) -> Path:
        return self.lab_dir / self.name

    @property
    def address(self) -> str:
        raise NotImplementedError

    def listens_on(self) -> tuple[int, ...]:
        """Every loopback port the server binds (``up`` checks that none is taken): by default its address's."""
        return (int(self.address.rsplit(":", 1)[1].split("/", 1)[0]),)

    def running(self) -> procs.ProcInfo | None:
        return procs.read(self.lab_dir, self.name)

    def stop(self) -> bool:
        return procs.stop(self.lab_dir, self.name, sig=self.stop_signal)

    def start(self) -> procs.ProcInfo:
        raise NotImplementedError

    def _spawn(
        self,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> procs.ProcInfo:
        """Start ``argv`` as this server's process, with ``env`` (default: :meth:`LabHost.server_env`)."""
        env = self.host.server_env() if env is None else env
        return procs.start(self.lab_dir, self.name, argv, env=env, clock=self.host.clock, cwd=cwd, user=user)

    def health(self) -> Health:
        raise NotImplementedError

    def wait(self, proc: procs.ProcInfo | None, timeout: float = 120) -> None:
        """Wait until healthy; ``proc`` (just started, or None) is watched for early exit."""
        wait_until(
            lambda: self.health().healthy,
            timeout=timeout,
            what=self.name,
            lab_dir=self.lab_dir,
            proc=proc,
            mask=self.secret_values(),
        )

    def secret_values(self) -> tuple[str, ...]:
        """Values to hide from any log excerpt this server's errors show."""
        return ()


# --------------------------------------------------------------------------- etcd


class Etcd(Server):
    name = "etcd"

    def __init__(self, lab_dir: Path, host: LabHost, port: int, peer_port: int) -> None:
        super().__init__(lab_dir, host)
        self.port = port
        self.peer_port = peer_port

    @property
    def address(self) -> str:
        # Plain HTTP on loopback: only the kube-apiserver of this lab talks to it.
        return f"http://{HOST}:{self.port}"

    def start(self) -> procs.ProcInfo:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        peer = f"http://{HOST}:{self.peer_port}"
        argv = [
            str(self.host.binary("etcd")),
            "--name=lab",
            f"--data-dir={data}",
            f"--listen-client-urls={self.address}",
            f"--advertise-client-urls={self.address}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}",
            "--initial-cluster-state=new",
            "--log-level=warn",
        ]
        return self._spawn(argv)

    def health(self) -> Health:
        version = ""
        try:
            _, ver = _http_json(f"{self.address}/version")
            version = str(ver.get("etcdserver", "")) if isinstance(ver, dict) else ""
            status, body = _http_json(f"{self.address}/health")
            ok = status == 200 and isinstance(body, dict) and body.get("health") == "true"
        except OSError as exc:
            return Health(False, self.address, version, f"unreachable: {exc}")
        return Health(ok, self.address, version)


# ------------------------------------------------------------------ kube-apiserver


#: Set to 1 in the environment of ``lab up`` (or a benchmark that starts its lab) to serve /debug/pprof on the
#: lab's kube-apiserver.
PROFILING_ENV = "CHAMBERLAIN_LAB_APISERVER_PROFILING"


class KubeAPIServer(Server):
    name = "kube-apiserver"

    #: Issuer written into ServiceAccount tokens of the lab's first cluster; OpenBao/Vault's kubernetes auth
    #: needs no issuer check, but tools that do validate it see a stable value. A second cluster has its own.
    issuer = "https://kubernetes.default.svc.cluster.local"

    def __init__(self, lab_dir: Path, host: LabHost, port: int, pki: LabPKI, etcd_url: str,
                 issuer: str | None = None) -> None:
        super().__init__(lab_dir, host)
        self.port = port
        self.pki = pki
        self.etcd_url = etcd_url
        if issuer is not None:
            self.issuer = issuer

    @property
    def address(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.lab_dir / "kubeconfig"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return ctx

    def argv(self) -> list[str]:
        return [
            str(self.host.binary("kube-apiserver")),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={self.port}",
            f"--tls-cert-file={self.pki.apiserver.cert}",
            f"--tls-private-key-file={self.pki.apiserver.key}",
            f"--client-ca-file={self.pki.ca.cert}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            f"--service-account-issuer={self.issuer}",
            f"--service-account-key-file={self.pki.sa_pub}",
            f"--service-account-signing-key-file={self.pki.sa_key}",
            # Only used to allocate ClusterIPs in etcd; no traffic ever goes there.
            "--service-cluster-ip-range=10.96.0.0/24",
            f"--cert-dir={self.dir}",
            # /debug/pprof for the lab admin, only when asked: benchmarks profile where the server's CPU goes
            # (benchmarks/README.md, "kube-apiserver's CPU").
            f"--profiling={'true' if self.host.env.get(PROFILING_ENV) == '1' else 'false'}",
            "--enable-priority-and-fairness=false",
            "--v=1",
        ]

    def start(self) -> procs.ProcInfo:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self._spawn(self.argv())

    def write_kubeconfig(self, path: Path | None = None, user: CertPair | None = None,
                         user_name: str = "chamberlain-lab-admin") -> Path:
        """A kubeconfig for this API server: the lab admin's at :attr:`kubeconfig` unless another client
        certificate (``user``, e.g. the controller-manager's) and ``path`` are given."""
        path = path or self.kubeconfig
        user = user or self.pki.admin
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "chamberlain-lab",
                    "cluster": {"server": self.address, "certificate-authority": str(self.pki.ca.cert)},
                }
            ],
            "users": [
                {
                    "name": user_name,
                    "user": {"client-certificate": str(user.cert), "client-key": str(user.key)},
                }
            ],
            "contexts": [{"name": "chamberlain-lab", "context": {"cluster": "chamberlain-lab", "user": user_name}}],
            "current-context": "chamberlain-lab",
        }
        # JSON is valid YAML, and keeps this module free of a YAML dependency.
        _write_private_text(path, json.dumps(config, indent=2) + "\n")
        return path

    def health(self) -> Health:
        try:
            ctx = self.ssl_context()
            status, _ = _http_json(f"{self.address}/readyz", context=ctx)
            _, ver = _http_json(f"{self.address}/version", context=ctx)
        except (OSError, ssl.SSLError) as exc:
            return Health(False, self.address, "", f"unreachable: {exc}")
        version = str(ver.get("gitVersion", "")) if isinstance(ver, dict) else ""
        return Health(status == 200, self.address, version, "" if status == 200 else f"/readyz {status}")

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(self.host.binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=self.host.env)
        if check and proc.returncode != 0:
            raise LabError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()[-2000:]}")
        return proc


def crd_files(cache: Path, component: str) -> list[Path]:
    """The CRD manifests a component's build copied into the cache (its ``crds`` asset)."""
    crds = builds.asset_dir(cache, component, "crds")
    return sorted(p for p in crds.glob("*.yaml") if p.name != "kustomization.yaml")


def install_crds(apiserver: KubeAPIServer, files: list[Path], what: str, progress: Progress) -> None:
    """Server-side apply ``files`` and wait until every CRD is Established."""
    if not files:
        raise LabError(f"no {what} CRDs in the build cache; run `python -m chamberlain.lab build`")
    progress(f"[lab] installing {len(files)} {what} CRDs (server-side apply)")
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=chamberlain-lab"]
    for f in files:
        args += ["-f", str(f)]
    apiserver.kubectl(*args)
    names = []
    for f in files:
        m = re.search(r"^  name: (\S+)$", f.read_text(encoding="utf-8"), re.M)
        if m:
            names.append(f"crd/{m.group(1)}")
    apiserver.kubectl("wait", "--for=condition=Established", "--timeout=120s", *names)


# --------------------------------------------------------------- OpenBao / Vault


AuthorityFlavor = Literal["openbao", "vault"]
AUTHORITY_FLAVORS: tuple[AuthorityFlavor, ...] = ("openbao", "vault")
#: The binary of each flavor, and the variable its dev mode reads the root token from.
_AUTHORITY_BINARY = {"openbao": ("bao", "BAO_DEV_ROOT_TOKEN_ID"), "vault": ("vault", "VAULT_DEV_ROOT_TOKEN_ID")}


@dataclass(frozen=True)
class TransitSeal:
    """The authority's ``seal "transit"`` stanza: auto-unseal through another authority's transit key (the lab's
    unsealer). The token is read from ``token_file`` when the authority starts and handed over in its environment
    (``VAULT_TOKEN``), never written into its configuration file."""

    address: str
    key_name: str
    mount_path: str
    token_file: Path
    ca_file: Path | None = None

    def stanza(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "key_name": self.key_name,
                               "mount_path": self.mount_path.rstrip("/") + "/"}
        if self.ca_file is not None:
            out["tls_ca_cert"] = str(self.ca_file)
        return {"transit": out}

    def token(self) -> str:
        try:
            return self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise LabError(f"the transit seal's token ({self.token_file}) is missing: start the unsealer first "
                           f"({exc.strerror})") from None


class Authority(Server):
    """The runtime authority: OpenBao (``bao``, the default) or HashiCorp Vault, same command line and HTTP API, in
    server or dev mode. Named after its flavor (``openbao`` or ``vault``: its status key and directory).

    Server mode: integrated raft storage and a TLS listener signed by the lab CA, left
    *uninitialized* (initialization is chamberlain's job, not the lab's).
    Dev mode: in-memory, initialized and unsealed, HTTP, with a random root token
    written to ``<flavor>/root-token`` (0600) and never printed.
    """

    def __init__(self, lab_dir: Path, host: LabHost, port: int, cluster_port: int, pki: LabPKI, *, dev: bool,
                 flavor: AuthorityFlavor = "openbao", node: int = 1, peers: tuple[str, ...] = (),
                 seal: TransitSeal | None = None) -> None:
        super().__init__(lab_dir, host)
        self.flavor = flavor
        # Node 1 keeps the flavor's name and directory, so a single-node lab is unchanged; ``lab up --ha`` adds
        # ``openbao-2`` and ``openbao-3``, each with its own raft data and audit log.
        self.node = node
        self.name = flavor if node == 1 else f"{flavor}-{node}"
        #: The API addresses of the other raft nodes (``lab up --ha``). Nodes 2 and up join them at start
        #: (``retry_join``); node 1 does not: chamberlain initializes it, so it founds the cluster.
        self.peers = peers
        self.port = port
        self.cluster_port = cluster_port
        self.pki = pki
        self.dev = dev
        self.seal = seal  # None: Shamir (chamberlain unseals); else it unseals itself at every start
        self.raft_performance_multiplier: int | None = None  # 1: raft's fastest election timing (one node)

    @property
    def address(self) -> str:
        scheme = "http" if self.dev else "https"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def root_token_file(self) -> Path:
        return self.dir / "root-token"

    @property
    def audit_log(self) -> Path:
        """The file audit device's log: declared in OpenBao's configuration (server mode), the path chamberlain
        enables on Vault (``--audit-file``). Raft nodes must declare the same audit options (a standby that
        differs refuses to become active), so every node of ``--ha`` names node 1's file: one trail across
        failovers, written by whichever node is active."""
        return self.lab_dir / self.flavor / "audit.log"

    def ssl_context(self) -> ssl.SSLContext | None:
        return None if self.dev else ssl.create_default_context(cafile=str(self.pki.ca.cert))

    def start(self) -> procs.ProcInfo:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        env = self.host.server_env()
        binary_name, token_variable = _AUTHORITY_BINARY[self.flavor]
        server_bin = str(self.host.binary(binary_name))
        if self.dev:
            # Vault refuses custom root token IDs carrying its own "hvs." prefix.
            token = "lab-" + secrets.token_hex(20)
            _write_private_text(self.root_token_file, token + "\n")
            # The token goes through the environment, not argv: argv is world-readable
            # in /proc, the environment is not.
            env[token_variable] = token
            argv = [
                server_bin,
                "server",
                "-dev",
                "-dev-no-store-token",
                f"-dev-listen-address={HOST}:{self.port}",
                "-log-level=warn",
            ]
        else:
            self.root_token_file.unlink(missing_ok=True)
            data = self.dir / "data"
            data.mkdir(parents=True, exist_ok=True)
            data.chmod(0o700)
            listener: dict[str, Any] = {
                "address": f"{HOST}:{self.port}",
                "cluster_address": f"{HOST}:{self.cluster_port}",
                "tls_cert_file": str(self.pki.vault.cert),
                "tls_key_file": str(self.pki.vault.key),
            }
            raft: dict[str, Any] = {"path": str(data), "node_id": f"lab-{self.node}"}
            if self.peers and self.node > 1:
                # Joins whichever peer leads once that one is initialized and unsealed; under Shamir the joined
                # node stays sealed until it is given the same unseal shares (`authority unseal` with every node).
                raft["retry_join"] = [{"leader_api_addr": peer, "leader_ca_cert_file": str(self.pki.ca.cert)}
                                      for peer in self.peers]
            if self.peers:
                # Raft's production timing (multiplier 5) takes ~10 s to notice a dead leader; the lab's loopback
                # cluster is as fast as the tightest setting allows.
                raft["performance_multiplier"] = 1
            config: dict[str, Any] = {
                "storage": {"raft": raft},
                "listener": [{"tcp": listener}],
                "api_addr": self.address,
                "cluster_addr": f"https://{HOST}:{self.cluster_port}",
                # mlock needs CAP_IPC_LOCK and is pointless for a throw-away lab.
                "disable_mlock": True,
                "ui": False,
                "log_level": "warn",
            }
            if self.peers and self.flavor == "openbao":
                # OpenBao's standbys serve reads from their own, lagging copy by default: a read after a write
                # (chamberlain's check-and-set life cycle) could see an older version. Forward everything instead.
                config["disable_standby_reads"] = True
            if self.flavor == "openbao":
                del config["disable_mlock"]  # OpenBao has no mlock to disable (it warns about the field)
                # chamberlain resumes an init that crashed before its configurator role existed with generate-root,
                # off by default from OpenBao 2.5.3: the lab turns it on, as an operator would for the init window.
                listener["disable_unauthed_generate_root_endpoints"] = False
                # OpenBao takes audit devices only from its configuration; chamberlain verifies this one exists.
                self.audit_log.parent.mkdir(parents=True, exist_ok=True)
                device = {"description": wk.AUDIT_DEVICE_DESCRIPTION, "options": {"file_path": str(self.audit_log)}}
                config["audit"] = [{"file": {wk.AUDIT_DEVICE_PATH: device}}]
            if self.raft_performance_multiplier is not None:
                config["storage"]["raft"]["performance_multiplier"] = self.raft_performance_multiplier
            if self.seal is not None:
                config["seal"] = self.seal.stanza()
                env["VAULT_TOKEN"] = self.seal.token()  # the environment, not argv or the file: see dev mode
            cfg = self.dir / "config.json"
            cfg.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            argv = [server_bin, "server", f"-config={cfg}"]
        return self._spawn(argv, env)

    def wait(self, proc: procs.ProcInfo | None, timeout: float = 120) -> None:
        try:
            super().wait(proc, timeout)
        finally:
            if self.dev and proc is not None:
                # Dev mode prints its root token and unseal key in a start-up banner,
                # once, before it answers: scrub the log now that it does (or failed).
                procs.redact_file(proc.log, mask=self.secret_values())

    def secret_values(self) -> tuple[str, ...]:
        out = []
        for path in (self.root_token_file, *((self.seal.token_file,) if self.seal is not None else ())):
            with contextlib.suppress(OSError):
                out.append(path.read_text(encoding="utf-8").strip())
        return tuple(v for v in out if v)

    def sys_health(self) -> dict[str, Any]:
        # The *code parameters make every state answer 200, so the body can be read.
        _, body = _http_json(
            f"{self.address}/v1/sys/health?standbyok=true&uninitcode=200&sealedcode=200"
            "&perfstandbyok=true&drsecondarycode=200",
            context=self.ssl_context(),
        )
        if not isinstance(body, dict):
            raise ValueError("unexpected /v1/sys/health answer")
        return body

    def health(self) -> Health:
        try:
            body = self.sys_health()
        except (OSError, ssl.SSLError, ValueError) as exc:
            return Health(False, self.address, "", f"unreachable: {exc}")
        initialized, sealed = bool(body.get("initialized")), bool(body.get("sealed"))
        state = "sealed" if sealed else "unsealed"
        detail = f"{'initialized' if initialized else 'uninitialized'}, {state}"
        # Dev mode must come up ready to use; server mode is healthy when it answers
        # (uninitialized and sealed is its expected resting state in the lab).
        ok = (initialized and not sealed) if self.dev else True
        if self.peers:
            detail += f", raft {self.raft_role(body)}"
        return Health(ok, self.address, "v" + str(body.get("version", "")).lstrip("v"), detail)

    @staticmethod
    def raft_role(health: Mapping[str, Any]) -> str:
        """``leader`` (the active node), ``follower`` (an unsealed standby) or ``sealed``/``uninitialized``: what
        ``sys/health`` tells without a token."""
        if not health.get("initialized"):
            return "uninitialized"
        if health.get("sealed"):
            return "sealed"
        return "follower" if health.get("standby") else "leader"


UNSEALER_KEY = "chamberlain-autounseal"
UNSEALER_MOUNT = "transit"
UNSEALER_POLICY = "chamberlain-autounseal"


class Unsealer(Authority):
    """A second, small authority (same flavor, server mode: raft + TLS) whose transit key auto-unseals the lab's
    authority (``lab up --auto-unseal``).

    It must survive restarts (an in-memory dev server would lose the key, and with it the authority), so it has
    Shamir storage of its own: the lab initializes it with one share, kept with its root token in
    ``unsealer/init.json`` (0600) — a lab shortcut; in production the unsealer is a cluster of its own, or a KMS.
    The lab unseals it at every start. The authority's seal gets a periodic orphan token whose policy allows
    encrypt and decrypt on that one key (and renewing itself), in ``unsealer/seal-token`` (0600).
    """

    def __init__(self, lab_dir: Path, host: LabHost, port: int, cluster_port: int, pki: LabPKI, *,
                 flavor: AuthorityFlavor = "openbao") -> None:
        super().__init__(lab_dir, host, port, cluster_port, pki, dev=False, flavor=flavor)
        self.name = "unsealer"
        self.raft_performance_multiplier = 1  # raft (OpenBao has no file storage), electing itself at once

    @property
    def init_file(self) -> Path:
        return self.dir / "init.json"

    @property
    def seal_token_file(self) -> Path:
        return self.dir / "seal-token"

    def transit_seal(self) -> TransitSeal:
        return TransitSeal(self.address, UNSEALER_KEY, UNSEALER_MOUNT, self.seal_token_file, self.pki.ca.cert)

    def secret_values(self) -> tuple[str, ...]:
        out: list[str] = []
        with contextlib.suppress(OSError, ValueError, KeyError):
            init = json.loads(self.init_file.read_text(encoding="utf-8"))
            out += [str(init["root_token"]), *(str(k) for k in init["keys"])]
        with contextlib.suppress(OSError):
            out.append(self.seal_token_file.read_text(encoding="utf-8").strip())
        return tuple(v for v in out if v)

    def health(self) -> Health:
        found = super().health()
        return dataclasses.replace(found, healthy=found.detail == "initialized, unsealed")

    def wait(self, proc: procs.ProcInfo | None, timeout: float = 120) -> None:
        """Wait until it answers, then initialize (once), unseal and provision the seal's key, policy and token."""
        wait_until(lambda: bool(self.sys_health()), timeout=timeout, what=self.name, lab_dir=self.lab_dir,
                   proc=proc, mask=self.secret_values(), interval=0.2)
        self.prepare(timeout)

    def _call(self, method: str, path: str, token: str = "", payload: dict[str, Any] | None = None,
              timeout: float = 15.0) -> Any:
        try:
            status, body = _http_call(method, f"{self.address}/v1/{path}", token=token, payload=payload,
                                      context=self.ssl_context(), timeout=timeout)
        except OSError as exc:
            raise LabError(f"unsealer: {method} {path}: {exc}") from None
        if status >= 400:
            errors = body.get("errors") if isinstance(body, dict) else None
            raise LabError(f"unsealer: {method} {path} answered {status}: {errors}")
        return body

    def prepare(self, timeout: float = 60) -> None:
        """Idempotent: initialized, unsealed, active, the transit key, the policy and a working seal token."""
        health = self.sys_health()
        if not health.get("initialized"):
            # Raft's first write and the key generation take seconds on a busy machine: a generous timeout, since
            # an init whose answer is lost leaves an unsealer nobody can unseal.
            init = self._call("PUT", "sys/init", payload={"secret_shares": 1, "secret_threshold": 1}, timeout=120)
            _write_private_text(self.init_file, json.dumps({"keys": init["keys"], "root_token": init["root_token"]}))
            self.seal_token_file.unlink(missing_ok=True)  # a token of an earlier, wiped unsealer
        try:
            init = json.loads(self.init_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise LabError(f"the unsealer is initialized but {self.init_file} is missing or unreadable: its key is "
                           "lost; `chamberlain lab down --purge` and bring the lab up again") from None
        if self.sys_health().get("sealed"):
            for key in init["keys"]:
                self._call("PUT", "sys/unseal", payload={"key": key})
        wait_until(lambda: bool((h := self.sys_health()).get("initialized")) and not h.get("sealed")
                   and not h.get("standby"), timeout=timeout, what=f"{self.name} active", mask=self.secret_values())
        root = str(init["root_token"])
        # Right after unseal the active node may still refuse writes briefly: retry the first one.
        wait_until(lambda: self._ensure_transit(root), timeout=timeout, what=f"{self.name} transit mount",
                   mask=self.secret_values())
        if not self._seal_token_works():
            policy = (f'path "{UNSEALER_MOUNT}/encrypt/{UNSEALER_KEY}" {{ capabilities = ["update"] }}\n'
                      f'path "{UNSEALER_MOUNT}/decrypt/{UNSEALER_KEY}" {{ capabilities = ["update"] }}\n'
                      'path "auth/token/renew-self" { capabilities = ["update"] }\n'
                      'path "auth/token/lookup-self" { capabilities = ["read"] }\n')
            self._call("PUT", f"sys/policies/acl/{UNSEALER_POLICY}", root, {"policy": policy})
            created = self._call("POST", "auth/token/create-orphan", root, {
                "policies": [UNSEALER_POLICY], "no_default_policy": True, "period": "768h",
                "display_name": "authority-seal"})
            _write_private_text(self.seal_token_file, str(created["auth"]["client_token"]) + "\n")

    def _ensure_transit(self, root: str) -> bool:
        """The transit mount and key exist (False: the server refused for now, e.g. still becoming active)."""
        try:
            mounts = self._call("GET", "sys/mounts", root)
            if f"{UNSEALER_MOUNT}/" not in (mounts.get("data") or mounts):
                self._call("POST", f"sys/mounts/{UNSEALER_MOUNT}", root, {"type": "transit"})
            status, _ = _http_call("GET", f"{self.address}/v1/{UNSEALER_MOUNT}/keys/{UNSEALER_KEY}", token=root,
                                   context=self.ssl_context())
            if status == 404:
                self._call("POST", f"{UNSEALER_MOUNT}/keys/{UNSEALER_KEY}", root, {"type": "aes256-gcm96"})
        except LabError:
            return False
        return True

    def _seal_token_works(self) -> bool:
        try:
            token = self.seal_token_file.read_text(encoding="utf-8").strip()
        except OSError:
            return False
        status, _ = _http_call("GET", f"{self.address}/v1/auth/token/lookup-self", token=token,
                               context=self.ssl_context())
        return status == 200


# --------------------------------------------------------------- External Secrets


class ExternalSecrets(Server):
    """The ESO controller, out of cluster, talking to the lab API server via KUBECONFIG.

    Only the main controller runs: no webhook and no cert-controller (CRD
    conversion is not needed while every object is written as the storage
    version). v0.16's controller has no health-probe endpoint, so health is judged
    by its metrics endpoint answering.
    """

    name = "external-secrets"

    def __init__(self, lab_dir: Path, host: LabHost, metrics_port: int, apiserver: KubeAPIServer) -> None:
        super().__init__(lab_dir, host)
        self.metrics_port = metrics_port
        self.apiserver = apiserver

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def crd_files(self) -> list[Path]:
        return crd_files(self.host.cache, "external-secrets")

    def install_crds(self, progress: Progress) -> None:
        install_crds(self.apiserver, self.crd_files(), "External Secrets", progress)

    def start(self) -> procs.ProcInfo:
        env = self.host.server_env()
        env["KUBECONFIG"] = str(self.apiserver.kubeconfig)
        argv = [
            str(self.host.binary("external-secrets")),
            f"--metrics-addr={HOST}:{self.metrics_port}",
            "--enable-leader-election=false",
            "--loglevel=info",
            "--zap-time-encoding=iso8601",
            # What a platform running hundreds of ExternalSecrets sets: ESO's defaults (one reconcile at a time,
            # 50 API requests/s) cap a batch at ~10 Secrets/s whoever drives it. A reconcile mostly waits on Vault
            # and the API server, so more reconciles at once than cores: at 16 (2 cores) ESO kept pace with a
            # stream of 200 force-syncs (0.3 s left to wait after the last, 2.3-6.5 s at 4).
            "--concurrent=16",
            "--client-qps=500",
            "--client-burst=1000",
        ]
        return self._spawn(argv, env)

    def health(self) -> Health:
        version = builds.COMPONENTS["external-secrets"].version
        if self.running() is None:
            return Health(False, self.address, version, "not running")
        try:
            req = urllib.request.Request(self.address)  # noqa: S310 - lab URL
            with urllib.request.urlopen(req, timeout=3) as resp:  # noqa: S310
                ok = resp.status == 200
        except OSError as exc:
            return Health(False, self.address, version, f"unreachable: {exc}")
        return Health(ok, self.address, version)


# ----------------------------------------------------------------------- postgres


class Postgres(Server):
    """PostgreSQL from Debian's package, run from a private data directory.

    PostgreSQL refuses to run as root; when the lab runs as root the server runs as
    the ``postgres`` system user and its data directory lives under
    ``/var/lib/chamberlain-lab/`` (the lab directory may sit under a 0700 home that
    user cannot enter). Only TCP on loopback, SCRAM passwords; the superuser
    password is generated once and kept in ``postgres/superuser-password`` (0600).
    """

    name = "postgres"
    # SIGINT is PostgreSQL's "fast shutdown": disconnect clients, stop promptly.
    stop_signal = signal.SIGINT
    superuser = "postgres"

    def __init__(self, lab_dir: Path, host: LabHost, port: int) -> None:
        super().__init__(lab_dir, host)
        self.port = port

    @property
    def address(self) -> str:
        return f"postgresql://{HOST}:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.dir / "superuser-password"

    @property
    def run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    @property
    def data_dir(self) -> Path:
        if self.run_as is None:
            return self.dir / "data"
        digest = hashlib.sha256(str(self.lab_dir.resolve()).encode()).hexdigest()[:12]
        return Path("/var/lib/chamberlain-lab") / digest / "pgdata"

    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for the superuser (contains the password)."""
        return f"host={HOST} port={self.port} dbname={dbname} user={self.superuser} password={self.password()}"

    def _ensure_user(self) -> None:
        if self.run_as is None:
            return
        try:
            pwd.getpwnam(self.run_as)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self.run_as],
                check=True,
                env=self.host.env,
            )

    def _init(self, bindir: Path) -> None:
        data = self.data_dir
        if (data / "PG_VERSION").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if not self.password_file.exists():
            _write_private_text(self.password_file, secrets.token_urlsafe(24) + "\n")
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        pwfile = data.parent / ".initdb-pw"
        _write_private_text(pwfile, self.password() + "\n")
        if self.run_as is not None:
            pw = pwd.getpwnam(self.run_as)
            for p in (data.parent, data, pwfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        try:
            proc = subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.superuser,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                user=self.run_as,
                env=self.host.server_env(),
                capture_output=True,
                text=True,
                check=False,
                cwd=data.parent,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise LabError(f"initdb failed: {proc.stderr.strip()[-1500:]}")

    def start(self) -> procs.ProcInfo:
        bindir = builds.postgres_bindir()
        if bindir is None:
            raise LabError("PostgreSQL is not installed; run `python -m chamberlain.lab build postgres`")
        self._ensure_user()
        self._init(bindir)
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={HOST}",
            # No unix socket: nothing outside the lab should reach it by accident, and the
            # default socket directory may be missing or owned by a system cluster.
            "-c",
            "unix_socket_directories=",
            "-c",
            "logging_collector=off",
            "-c",
            "fsync=off",  # a throw-away lab: speed over durability
        ]
        return self._spawn(argv, user=self.run_as, cwd=self.data_dir.parent)

    def _version(self) -> str:
        bindir = builds.postgres_bindir()
        if bindir is None:
            return ""
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False, env=self.host.env
        )
        m = re.search(r"(\d+(?:\.\d+)+)", out.stdout)
        return m.group(1) if m else ""

    def health(self) -> Health:
        version = self._version()
        bindir = builds.postgres_bindir()
        if bindir is None:
            return Health(False, self.address, version, "not installed")
        ready = bindir / "pg_isready"
        probe = (
            subprocess.run(
                [str(ready), "-h", HOST, "-p", str(self.port), "-t", "2"],
                capture_output=True,
                text=True,
                check=False,
                env=self.host.env,
            )
            if ready.exists()
            else None
        )
        ok = probe.returncode == 0 if probe is not None else port_open(self.port)
        return Health(ok, self.address, version, "" if ok else "not accepting connections")

    def purge(self) -> None:
        if self.run_as is not None and self.data_dir.parent.exists():
            shutil.rmtree(self.data_dir.parent)


# ------------------------------------------------------------ kube-controller-manager


class KubeControllerManager(Server):
    """The controllers a cluster runs beside its API server, so namespaces finalize, owned objects are collected
    and Deployments/StatefulSets/DaemonSets roll out (into ReplicaSets and ControllerRevisions: there is no
    kubelet, so no pod ever runs).

    It logs in as ``system:kube-controller-manager`` (its own client certificate) and gives each controller its
    own ServiceAccount, as kubeadm clusters do, so the built-in RBAC applies unchanged. It signs legacy
    ServiceAccount token Secrets with the API server's signing key and serves only ``/healthz`` (and metrics) on
    a loopback secure port with a lab certificate.
    """

    name = "kube-controller-manager"

    #: Only what the lab's tests and demo need: fewer controllers start faster and log less.
    controllers: tuple[str, ...] = (
        "namespace-controller",
        "garbage-collector-controller",
        "deployment-controller",
        "replicaset-controller",
        "statefulset-controller",
        "daemonset-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "root-ca-certificate-publisher-controller",
    )

    def __init__(self, lab_dir: Path, host: LabHost, port: int, pki: LabPKI, apiserver: KubeAPIServer) -> None:
        super().__init__(lab_dir, host)
        self.port = port
        self.pki = pki
        self.apiserver = apiserver

    @property
    def address(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def argv(self) -> list[str]:
        return [
            str(self.host.binary("kube-controller-manager")),
            f"--kubeconfig={self.kubeconfig}",
            f"--bind-address={HOST}",
            f"--secure-port={self.port}",
            f"--tls-cert-file={self.pki.controller_manager_serving.cert}",
            f"--tls-private-key-file={self.pki.controller_manager_serving.key}",
            f"--controllers={','.join(self.controllers)}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki.sa_key}",
            f"--root-ca-file={self.pki.ca.cert}",
            "--profiling=false",
            "--v=1",
        ]

    def start(self) -> procs.ProcInfo:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self.apiserver.write_kubeconfig(self.kubeconfig, self.pki.controller_manager, "system:kube-controller-manager")
        return self._spawn(self.argv())

    def health(self) -> Health:
        version = builds.KUBERNETES_VERSION
        try:
            ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
            status, body = _http_json(f"{self.address}/healthz", context=ctx)
        except (OSError, ssl.SSLError) as exc:
            return Health(False, self.address, version, f"unreachable: {exc}")
        ok = status == 200
        return Health(ok, self.address, version, "" if ok else f"/healthz {status}: {str(body)[:200]}")


# ---------------------------------------------------------------------- Flux


class FluxController(Server):
    """A Flux controller out of cluster, talking to the lab API server via KUBECONFIG (as the lab admin, like
    ESO): no leader election, no events receiver, metrics and health on loopback lab ports. Healthy when its
    ``/readyz`` answers 200."""

    binary_name = ""
    component = ""
    #: Flux's own namespace: where its controllers would run (they read it from RUNTIME_NAMESPACE).
    namespace = "flux-system"

    def __init__(self, lab_dir: Path, host: LabHost, metrics_port: int, health_port: int,
                 apiserver: KubeAPIServer) -> None:
        super().__init__(lab_dir, host)
        self.metrics_port = metrics_port
        self.health_port = health_port
        self.apiserver = apiserver

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.health_port}"

    def listens_on(self) -> tuple[int, ...]:
        return (self.health_port, self.metrics_port)

    def crd_files(self) -> list[Path]:
        return crd_files(self.host.cache, self.component)

    def extra_args(self) -> list[str]:
        return []

    def argv(self) -> list[str]:
        return [
            str(self.host.binary(self.binary_name)),
            f"--metrics-addr={HOST}:{self.metrics_port}",
            f"--health-addr={HOST}:{self.health_port}",
            "--enable-leader-election=false",
            "--log-level=info",
            *self.extra_args(),
        ]

    def start(self) -> procs.ProcInfo:
        self.dir.mkdir(parents=True, exist_ok=True)
        env = self.host.server_env()
        env["KUBECONFIG"] = str(self.apiserver.kubeconfig)
        env["RUNTIME_NAMESPACE"] = self.namespace
        return self._spawn(self.argv(), env)

    def health(self) -> Health:
        version = builds.COMPONENTS[self.component].version
        if self.running() is None:
            return Health(False, self.address, version, "not running")
        try:
            status, _ = _http_json(f"{self.address}/readyz")
        except OSError as exc:
            return Health(False, self.address, version, f"unreachable: {exc}")
        ok = status == 200
        return Health(ok, self.address, version, "" if ok else f"/readyz {status}")


class FluxSourceController(FluxController):
    """Flux's source-controller: clones the lab Git server and serves each revision as an artifact. Its artifact
    server listens on a loopback lab port and advertises that same address, so the URLs it writes into
    ``status.artifact.url`` are ones kustomize-controller (out of cluster too) can fetch."""

    name = "flux-source-controller"
    binary_name = "source-controller"
    component = "flux-source-controller"

    def __init__(self, lab_dir: Path, host: LabHost, metrics_port: int, health_port: int, storage_port: int,
                 apiserver: KubeAPIServer) -> None:
        super().__init__(lab_dir, host, metrics_port, health_port, apiserver)
        self.storage_port = storage_port

    def listens_on(self) -> tuple[int, ...]:
        return (*super().listens_on(), self.storage_port)

    @property
    def storage_address(self) -> str:
        return f"{HOST}:{self.storage_port}"

    @property
    def storage_path(self) -> Path:
        return self.dir / "storage"

    def start(self) -> procs.ProcInfo:
        self.storage_path.mkdir(parents=True, exist_ok=True)  # it refuses a storage path that does not exist
        return super().start()

    def extra_args(self) -> list[str]:
        return [
            f"--storage-path={self.storage_path}",
            f"--storage-addr={self.storage_address}",
            f"--storage-adv-addr={self.storage_address}",
        ]


class FluxKustomizeController(FluxController):
    """Flux's kustomize-controller: builds each Kustomization from source-controller's artifact (SOPS decryption
    included) and applies it server-side. Remote bases are refused: the lab reaches nothing beyond loopback."""

    name = "flux-kustomize-controller"
    binary_name = "kustomize-controller"
    component = "flux-kustomize-controller"

    def extra_args(self) -> list[str]:
        # dependsOn is re-checked every 30 s by default; the lab's ordered Kustomizations should not idle that long.
        # A Kustomization whose health checks wait (stores before the authority exists) holds a worker for up to its
        # timeout: more workers than the default 4 keep the others moving.
        return ["--no-remote-bases=true", "--requeue-dependency=5s", "--concurrent=10"]


# ------------------------------------------------------------------------ Git


class GitServer(Server):
    """The lab's Git repositories over smart HTTP (:mod:`.gitserver`: ``git http-backend`` behind a stdlib HTTP
    server), the remote Flux's source-controller clones. Bare repositories live in ``git/repos``; the lab creates
    :attr:`default_repo` (branch ``main``, pushes allowed) at start-up."""

    name = "git"
    default_repo = "lab"

    def __init__(self, lab_dir: Path, host: LabHost, port: int) -> None:
        super().__init__(lab_dir, host)
        self.port = port

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def root(self) -> Path:
        return self.dir / "repos"

    def repo_url(self, name: str | None = None) -> str:
        return f"{self.address}/{name or self.default_repo}.git"

    def git_binary(self) -> Path:
        found = shutil.which("git", path=self.host.env.get("PATH", os.defpath))
        if found is None:
            raise ToolMissing("git is not installed (the lab's Git server runs `git http-backend`): install git")
        return Path(found)

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run([str(self.git_binary()), *args], cwd=cwd, capture_output=True, text=True, check=False,
                              env={**self.host.server_env(), "GIT_CONFIG_NOSYSTEM": "1"})
        if proc.returncode != 0:
            raise LabError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()[-1000:]}")
        return proc.stdout

    def ensure_repo(self, name: str | None = None) -> Path:
        """The bare repository ``name`` (created empty, on ``main``, accepting pushes, if missing)."""
        repo = self.root / f"{name or self.default_repo}.git"
        if not (repo / "HEAD").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--bare", "--initial-branch=main", str(repo))
            self._git("config", "http.receivepack", "true", cwd=repo)
        return repo

    def start(self) -> procs.ProcInfo:
        self.ensure_repo()
        script = Path(__file__).with_name("gitserver.py")
        # -I: the server imports the standard library only and reads nothing of the environment.
        argv = [sys.executable, "-I", str(script), f"--root={self.root}", f"--port={self.port}",
                f"--host={HOST}", f"--git={self.git_binary()}"]
        return self._spawn(argv)

    def version(self) -> str:
        try:
            m = re.search(r"(\d+(?:\.\d+)+)", self._git("--version"))
        except (LabError, ToolMissing):
            return ""
        return m.group(1) if m else ""

    def health(self) -> Health:
        version = self.version()
        url = f"{self.repo_url()}/info/refs?service=git-upload-pack"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - lab URL
                ok = resp.status == 200
        except OSError as exc:
            return Health(False, self.address, version, f"unreachable: {exc}")
        return Health(ok, self.address, version)
