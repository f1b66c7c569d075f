"""Session fixtures for tests against the real lab servers (marker ``lab``).

One lab per test session, in a temporary directory and on ports shifted away from
the default lab's (``CHAMBERLAIN_LAB_TEST_PORT_OFFSET``, default 1000), so a
developer's own ``chamberlain lab up`` is never touched. Vault runs in server mode
(raft + TLS) and is initialized here with a single key share, kept in memory only.
Teardown stops every server and checks that no process of the lab is left.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chamberlain.lab import builds, procs
from chamberlain.lab import lab as lab_mod
from tests.conftest import host_settings, lab_authority, lab_host, unbuilt

hvac = pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Drills (marker ``drill``) destroy and rebuild the shared ``demo_world``: they run after every other test,
    whatever their file is called (a stable sort keeps every other order as collected)."""
    items.sort(key=lambda item: item.get_closest_marker("drill") is not None)


def _binaries_missing() -> list[str]:
    missing = unbuilt()
    if builds.postgres_bindir() is None:
        missing.append("postgres")
    return missing


@dataclass
class RunningLab:
    lab: lab_mod.Lab
    status: dict[str, Any]
    pids: dict[str, int]

    @property
    def kubeconfig(self) -> Path:
        return self.lab.kubeconfig

    @property
    def ca_pem(self) -> str:
        return self.lab.pki.ca_pem

    @property
    def ca_file(self) -> Path:
        return self.lab.pki.ca.cert


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    missing = _binaries_missing()
    if missing:
        msg = f"lab binaries missing ({', '.join(missing)}); run `python -m chamberlain.lab build`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000"))
    config = lab_mod.LabConfig(lab_dir=tmp_path_factory.mktemp("lab"), host=lab_host(),
                               ports=lab_mod.Ports().shifted(offset), dev=False,
                               authority=lab_authority())
    started = time.monotonic()
    pids: dict[str, int] = {}
    try:
        report = lab_mod.up(config)
        print(f"\n[lab] started in {time.monotonic() - started:.1f}s")
        running = lab_mod.Lab(config)
        for name, server in running.servers().items():
            info = server.running()
            assert info is not None, f"{name} is not running after up()"
            pids[name] = info.pid
        yield RunningLab(lab=running, status=report, pids=pids)
    finally:
        # Tests may restart a server on purpose; check the processes that run now, not the first ones.
        for name, server in lab_mod.Lab(config).servers().items():
            info = server.running()
            if info is not None:
                pids[name] = info.pid
        lab_mod.down(config.lab_dir, lab_host())
        lab_mod.Lab(config).postgres.purge()
    leftovers = {name: procs.group_members(pid) for name, pid in pids.items()}
    assert not any(leftovers.values()), f"lab processes left behind: {leftovers}"


# ------------------------------------------------------------------------- kube


@pytest.fixture(scope="session")
def kubeconfig(lab: RunningLab) -> Path:
    return lab.kubeconfig


@pytest.fixture(scope="session")
def k8s(lab: RunningLab) -> Any:
    """A ``kubernetes.client.ApiClient`` authenticated as the lab admin."""
    client = kubernetes.config.new_client_from_config(config_file=str(lab.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def make_namespace(k8s: Any) -> Callable[[str], str]:
    """Create a namespace (idempotent). kube-controller-manager finalizes deleted namespaces, but that takes a
    while, so tests use unique names rather than deleting and re-creating one."""
    core = kubernetes.client.CoreV1Api(k8s)

    def make(name: str) -> str:
        try:
            core.create_namespace(kubernetes.client.V1Namespace(metadata={"name": name}))
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        return name

    return make


@pytest.fixture(scope="session")
def make_service_account(k8s: Any) -> Callable[[str, str], str]:
    core = kubernetes.client.CoreV1Api(k8s)

    def make(namespace: str, name: str) -> str:
        try:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        return name

    return make


@pytest.fixture(scope="session")
def sa_token(k8s: Any) -> Callable[..., str]:
    """A ServiceAccount JWT from the TokenRequest API (bound and short-lived, as a pod would get it)."""
    core = kubernetes.client.CoreV1Api(k8s)

    def token(namespace: str, name: str, audiences: list[str] | None = None, seconds: int = 600) -> str:
        body = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=seconds)
        )
        resp = core.create_namespaced_service_account_token(name, namespace, body)
        return str(resp.status.token)

    return token


# ------------------------------------------------------------------------ vault


@dataclass
class VaultInfo:
    address: str
    ca_file: Path
    root_token: str
    unseal_keys: tuple[str, ...] = ()  # in memory only: lets a test seal Vault and unseal it again


@pytest.fixture(scope="session")
def vault_info(lab: RunningLab) -> VaultInfo:
    """Initialize (1 share) and unseal the lab's Vault; nothing is written to disk."""
    vault = lab.lab.authority
    client = hvac.Client(url=vault.address, verify=str(lab.ca_file))
    if not client.sys.is_initialized():
        result = client.sys.initialize(secret_shares=1, secret_threshold=1)
        keys, root = result["keys"], result["root_token"]
        client.sys.submit_unseal_keys(keys)
    else:  # pragma: no cover - a fresh lab is never initialized
        pytest.fail("the test lab's Vault was already initialized by someone else")
    client.token = root
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = vault.sys_health()
        if not health.get("sealed") and not health.get("standby"):
            try:
                client.sys.list_mounted_secrets_engines()
                break
            except hvac.exceptions.VaultError:
                pass
        time.sleep(0.5)
    else:
        pytest.fail("Vault did not become active after unseal")
    if "secret/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    ensure_ledger_keys(client)
    return VaultInfo(address=vault.address, ca_file=lab.ca_file, root_token=root, unseal_keys=tuple(keys))


LEDGER_ENVIRONMENTS = ("_authority", "dev", "prod", "preview", "staging")


def ensure_ledger_keys(client: Any, environments: tuple[str, ...] = LEDGER_ENVIRONMENTS) -> None:
    """What ``authority configure`` creates for the signed ledger (issue 11), for tests that set Vault up with the
    root token instead: the transit mount, each environment's ed25519 ledger key and its marker HMAC key."""
    from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key, marker_key

    if f"{TRANSIT_MOUNT}/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
    for env in environments:
        client.secrets.transit.create_key(name=ledger_key(env), key_type="ed25519", mount_point=TRANSIT_MOUNT)
        client.secrets.transit.create_key(name=marker_key(env), mount_point=TRANSIT_MOUNT)


@pytest.fixture(scope="session")
def vault(vault_info: VaultInfo) -> Any:
    """An ``hvac.Client`` with the root token against the initialized, unsealed lab Vault."""
    client = hvac.Client(url=vault_info.address, token=vault_info.root_token, verify=str(vault_info.ca_file))
    assert client.is_authenticated()
    return client


@pytest.fixture(scope="session")
def vault_kubernetes_auth(
    vault: Any,
    lab: RunningLab,
    make_namespace: Callable[[str], str],
    make_service_account: Callable[[str, str], str],
    k8s: Any,
    sa_token: Callable[..., str],
) -> str:
    """Kubernetes auth at ``kubernetes/``: Vault reviews login JWTs with a reviewer SA's token."""
    ns = make_namespace("vault-system")
    make_service_account(ns, "vault-auth")
    rbac = kubernetes.client.RbacAuthorizationV1Api(k8s)
    binding = {
        "metadata": {"name": "vault-auth-delegator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "vault-auth", "namespace": ns}],
    }
    try:
        rbac.create_cluster_role_binding(binding)
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    if "kubernetes/" not in vault.sys.list_auth_methods()["data"]:
        vault.sys.enable_auth_method("kubernetes", path="kubernetes")
    vault.write_data(
        "auth/kubernetes/config",
        data={
            "kubernetes_host": lab.lab.apiserver.address,
            "kubernetes_ca_cert": lab.ca_pem,
            "token_reviewer_jwt": sa_token(ns, "vault-auth", seconds=24 * 3600),
            "disable_local_ca_jwt": True,
        },
    )
    return "kubernetes"


# --------------------------------------------------------------------- postgres


@pytest.fixture(scope="session")
def postgres_dsn(lab: RunningLab) -> str:
    """libpq DSN of the lab PostgreSQL superuser."""
    return lab.lab.postgres.dsn()


# -------------------------------------------------------------------- sops/age


@pytest.fixture(scope="session")
def sops_bin() -> Path:
    if unbuilt(["sops", "age"]):
        pytest.skip("sops/age not built; run `python -m chamberlain.lab build sops age`")
    return builds.binary(host_settings().lab_cache, "sops")


@pytest.fixture
def age_identity(tmp_path: Path, sops_bin: Path) -> tuple[Path, str]:
    """A fresh age identity file (0600) and its public recipient."""
    key = tmp_path / "age.key"
    keygen = str(builds.binary(host_settings().lab_cache, "age-keygen"))
    subprocess.run([keygen, "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run([keygen, "-y", str(key)], check=True, capture_output=True, text=True).stdout.strip()
    return key, recipient


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The lab after the demo's phases through handover, shared by ``test_rotate`` and ``test_import``."""
    from tests.lab import demo_lab

    yield from demo_lab.start(tmp_path_factory.mktemp("demo-world"))
