"""Separation of duties across clusters and identities, on real servers: ``lab up --clusters 2`` (two
kube-apiservers, each with its own CA, service-account signing key and issuer) and one OpenBao configured by
``chamberlain authority configure`` from the acme bundle, with lab cluster 1 as ``dev1`` and lab cluster 2 as
``prod-eu1`` (``--cluster-kubeconfig`` per cluster).

What it proves:
- one Kubernetes auth mount per cluster, configured with that cluster's API server, CA and service-account issuer,
  holding only that cluster's roles (a mount told another cluster's issuer refuses genuine tokens);
- a ServiceAccount token of cluster A logs in to its own roles, and to no role of cluster B, neither through B's
  mount nor through A's mount (which holds none of B's roles);
- the controller's ServiceAccount cannot log in as the configurator (in either cluster), the configurator's own
  ServiceAccount can, and the orchestrator gets 403 on ``sys/`` paths, policy writes, auth configuration and audit.

Runs its own lab on ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 1100.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chamberlain.clock import SystemClock
from chamberlain.lab import builds, procs
from chamberlain.lab import lab as lab_mod

pytestmark = [pytest.mark.lab]

pytest.importorskip("hvac")
pytest.importorskip("kubernetes")

from chamberlain.authority.errors import AuthorityError, Forbidden  # noqa: E402
from chamberlain.authority.vault import VaultClient, client_with_token, login_kubernetes  # noqa: E402
from chamberlain.kube.client import KubeClient  # noqa: E402
from tests.conftest import lab_authority, lab_host, run_cli, unbuilt  # noqa: E402

ACME = Path(__file__).resolve().parents[2] / "examples" / "acme"
A, B = "dev1", "prod-eu1"  # lab cluster 1, lab cluster 2
MOUNT = {A: "kubernetes-dev1", B: "kubernetes-prod-eu1"}
CONTROLLER = ("chamberlain-system", "chamberlain")
CONFIGURATOR_SA = ("chamberlain-configurator", "chamberlain-configurator")
CONFIGURATOR = "chamberlain.authority.configurator"
BACKUP = "chamberlain.authority.backup"  # `chamberlain backup`'s identity, like the configurator in every mount
REVIEWER = ("vault-system", "vault-auth")
# An ESO reader identity that exists in both clusters under the same names: only the mount tells them apart.
READER_A = ("payments", "chamberlain-dev-reader", "chamberlain.dev.dev1.payments.reader")


def orchestrator(cluster: str) -> str:
    return f"chamberlain.{cluster}.orchestrator"


@dataclass
class Env:
    lab: lab_mod.Lab
    kube: dict[str, KubeClient]
    root: VaultClient
    work: Path

    def token(self, cluster: str, namespace: str, account: str) -> str:
        return self.kube[cluster].service_account_token(namespace, account, ["vault"])

    def login(self, mount: str, role: str, jwt: str) -> VaultClient:
        return login_kubernetes(self.lab.authority.address, self.lab.pki.ca.cert, mount, role, jwt,
                                clock=SystemClock())


def _reviewer(kube: KubeClient, path: Path) -> Path:
    """A ServiceAccount with system:auth-delegator in that cluster, whose token OpenBao (outside the cluster)
    presents to that cluster's TokenReview API."""
    kube.ensure_namespace(REVIEWER[0])
    kube.ensure_service_account(*REVIEWER)
    kube.apply_manifest({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "vault-auth-delegator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": REVIEWER[1], "namespace": REVIEWER[0]}],
    }, "chamberlain-test")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(kube.service_account_token(*REVIEWER, [], 3600))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    missing = unbuilt(["etcd", "kube-apiserver"])
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    work = tmp_path_factory.mktemp("clusters")
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 1100
    config = lab_mod.LabConfig(lab_dir=work / "lab", host=lab_host(), ports=lab_mod.Ports().shifted(offset),
                               dev=True, authority=lab_authority(), clusters=2)
    pids: dict[str, int] = {}
    kubes: dict[str, KubeClient] = {}
    try:
        report = lab_mod.up(config, progress=lambda _m: None)
        assert report["clusters"] == 2 and lab_mod.healthy(report), report
        lab = lab_mod.Lab(config)
        assert lab.second is not None
        pids = {n: info.pid for n, s in lab.servers().items() if (info := s.running()) is not None}
        kubes = {A: KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock()),
                 B: KubeClient.from_kubeconfig(lab.second.kubeconfig, clock=SystemClock())}
        for cluster, kube in kubes.items():
            for ns, account in (CONTROLLER, CONFIGURATOR_SA, READER_A[:2]):
                kube.ensure_namespace(ns)
                kube.ensure_service_account(ns, account)
            _reviewer(kube, work / f"reviewer-{cluster}.jwt")
        root_token = lab.authority.root_token_file.read_text(encoding="utf-8").strip()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("VAULT_TOKEN", root_token)  # break-glass: the first configuration of a dev-mode server
            result = run_cli(
                "authority", "configure", str(ACME), "--vault-addr", lab.authority.address,
                "--vault-cacert", str(lab.pki.ca.cert), "--kubeconfig", str(lab.kubeconfig), "--audit-file", "",
                "--vault-token-env", "VAULT_TOKEN",
                "--cluster-kubeconfig", f"{A}={lab.kubeconfig}", "--cluster-kubeconfig", f"{B}={lab.second.kubeconfig}",
                "--cluster-token-reviewer-jwt-file", f"{A}={work / f'reviewer-{A}.jwt'}",
                "--cluster-token-reviewer-jwt-file", f"{B}={work / f'reviewer-{B}.jwt'}",
                "--cluster-kubernetes-issuer", f"{A}={lab.apiserver.issuer}",
                "--cluster-kubernetes-issuer", f"{B}={lab.second.apiserver.issuer}", "-o", "json")
        assert result.code == 0, result.err
        assert root_token not in result.out + result.err
        assert json.loads(result.out)["summary"]["conflict"] == 0
        root = client_with_token(lab.authority.address, lab.pki.ca.cert, root_token, clock=SystemClock())
        yield Env(lab, kubes, root, work)
    finally:
        for kube in kubes.values():
            kube.close()
        lab_mod.down(config.lab_dir, lab_host(), progress=lambda _m: None)
        lab_mod.Lab(lab_mod.LabConfig.load(config.lab_dir, lab_host())).postgres.purge()
    leftovers = {name: procs.group_members(pid) for name, pid in pids.items()}
    assert not any(leftovers.values()), f"lab processes left behind: {leftovers}"


def _refused(action: Callable[[], object]) -> str:
    with pytest.raises(AuthorityError) as info:
        action()
    text = str(info.value)
    assert any(code in text for code in ("403", "400")), text
    return text


def _denied(action: Callable[[], object]) -> None:
    with pytest.raises(Forbidden) as info:
        action()
    assert "403" in str(info.value)


# ------------------------------------------------------------------------------------ one mount per cluster


def test_each_cluster_has_its_own_mount_bound_to_its_api_server_and_ca(env: Env) -> None:
    assert env.lab.second is not None
    auth = env.root.auth.list_mounts()
    assert {MOUNT[A], MOUNT[B]} <= set(auth)
    assert "kubernetes" not in auth  # no shared mount
    config_a, config_b = (env.root.auth.read_kubernetes_config(MOUNT[c]) for c in (A, B))
    assert config_a is not None and config_b is not None
    assert config_a.kubernetes_host == env.lab.apiserver.address
    assert config_b.kubernetes_host == env.lab.second.apiserver.address
    assert config_a.kubernetes_ca_cert == env.lab.pki.ca_pem.strip()
    assert config_b.kubernetes_ca_cert == env.lab.second.pki.ca_pem.strip()
    assert config_a.kubernetes_ca_cert != config_b.kubernetes_ca_cert  # each cluster its own CA
    assert (config_a.issuer, config_a.disable_iss_validation) == (env.lab.apiserver.issuer, False)
    assert (config_b.issuer, config_b.disable_iss_validation) == (env.lab.second.apiserver.issuer, False)
    roles_a, roles_b = (set(env.root.auth.list_roles(MOUNT[c])) for c in (A, B))
    assert orchestrator(A) in roles_a and orchestrator(B) not in roles_a
    assert orchestrator(B) in roles_b and orchestrator(A) not in roles_b
    # Every role of a mount but the configurator's and the backup's names that mount's cluster.
    for cluster, roles in ((A, roles_a), (B, roles_b)):
        assert all(f".{cluster}." in r or r in (CONFIGURATOR, BACKUP) for r in roles), roles


def test_a_token_logs_in_to_its_own_cluster(env: Env) -> None:
    for cluster in (A, B):
        client = env.login(MOUNT[cluster], orchestrator(cluster), env.token(cluster, *CONTROLLER))
        assert client.session_ttl and client.session_ttl > 0
    reader = env.login(MOUNT[A], READER_A[2], env.token(A, *READER_A[:2]))
    assert reader.session_ttl


@pytest.mark.parametrize(("source", "target"), [(A, B), (B, A)])
def test_a_token_of_one_cluster_logs_in_to_no_role_of_the_other(env: Env, source: str, target: str) -> None:
    jwts = {"controller": env.token(source, *CONTROLLER), "configurator": env.token(source, *CONFIGURATOR_SA),
            "reader": env.token(source, *READER_A[:2])}
    target_roles = sorted(env.root.auth.list_roles(MOUNT[target]))
    assert target_roles
    for role in target_roles:
        for jwt in jwts.values():
            # Through the other cluster's mount: its API server does not accept the token (other signing key).
            _refused(lambda role=role, jwt=jwt: env.login(MOUNT[target], role, jwt))
            # Through its own cluster's mount, named at the other's roles: that mount holds none of them (or, for the
            # configurator, only its own cluster's, bound to the configurator's ServiceAccount).
            if not (role == CONFIGURATOR and jwt == jwts["configurator"]):
                _refused(lambda role=role, jwt=jwt: env.login(MOUNT[source], role, jwt))


def test_a_mount_refuses_tokens_of_another_issuer(env: Env) -> None:
    """The issuer binding on its own: A's mount told B's issuer refuses A's (genuine) tokens; restored, accepts."""
    assert env.lab.second is not None
    mount = MOUNT[A]
    original = env.root.auth.read_kubernetes_config(mount)
    assert original is not None
    reviewer = (env.work / f"reviewer-{A}.jwt").read_text(encoding="ascii")
    try:
        env.root.auth.write_kubernetes_config(
            mount, dataclasses.replace(original, issuer=env.lab.second.apiserver.issuer), reviewer)
        _refused(lambda: env.login(mount, orchestrator(A), env.token(A, *CONTROLLER)))
    finally:
        env.root.auth.write_kubernetes_config(mount, original, reviewer)
    assert env.login(mount, orchestrator(A), env.token(A, *CONTROLLER)).session_ttl


# ------------------------------------------------------------------------------------ separation of duties


@pytest.mark.parametrize("cluster", [A, B])
def test_the_controller_identity_cannot_log_in_as_the_configurator(env: Env, cluster: str) -> None:
    _refused(lambda: env.login(MOUNT[cluster], CONFIGURATOR, env.token(cluster, *CONTROLLER)))
    _refused(lambda: env.login(MOUNT[cluster], CONFIGURATOR, env.token(cluster, *READER_A[:2])))
    client = env.login(MOUNT[cluster], CONFIGURATOR, env.token(cluster, *CONFIGURATOR_SA))
    assert client.logical.read("sys/policies/acl/" + orchestrator(cluster)) is not None


@pytest.mark.parametrize("action", [
    pytest.param(lambda c: c.logical.read("sys/mounts"), id="read-sys-mounts"),
    pytest.param(lambda c: c.logical.read("sys/auth"), id="read-sys-auth"),
    pytest.param(lambda c: c.logical.write("sys/policies/acl/chamberlain.authority.configurator",
                                           {"policy": 'path "*" {capabilities=["sudo"]}'}), id="write-policy"),
    pytest.param(lambda c: c.logical.write(f"auth/{MOUNT[A]}/config", {"kubernetes_host": "https://evil:6443"}),
                 id="write-auth-config"),
    pytest.param(lambda c: c.logical.write(f"auth/{MOUNT[A]}/role/{CONFIGURATOR}",
                                           {"bound_service_account_names": ["chamberlain"],
                                            "bound_service_account_namespaces": ["chamberlain-system"],
                                            "token_policies": [CONFIGURATOR]}), id="rebind-configurator"),
    pytest.param(lambda c: c.logical.write(f"auth/{MOUNT[B]}/role/x", {"token_policies": ["default"]}),
                 id="write-other-cluster-role"),
    pytest.param(lambda c: c.logical.write("sys/auth/evil", {"type": "userpass"}), id="enable-auth"),
    pytest.param(lambda c: c.logical.read("sys/audit"), id="read-audit"),
    pytest.param(lambda c: c.logical.write("sys/audit/evil", {"type": "file", "options": {"file_path": "/tmp/x"}}),
                 id="enable-audit"),
])
def test_the_orchestrator_is_refused_configuration(env: Env, action: Callable[[VaultClient], object]) -> None:
    client = env.login(MOUNT[A], orchestrator(A), env.token(A, *CONTROLLER))
    _denied(lambda: action(client))
