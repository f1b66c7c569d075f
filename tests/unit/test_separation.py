"""Separation of duties in the authority, without servers: one Kubernetes auth mount per cluster, each configured
with its own cluster's API server and holding only its roles; the configurator bound to its own ServiceAccount;
per-cluster settings from the CLI; PKI annotations that would widen the orchestrator's grant refused at validate.
The real-server proofs are tests/lab/test_cluster_separation.py and tests/lab/test_least_privilege.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chamberlain.authority.configure import (
    BACKUP,
    CONFIGURATOR,
    KubernetesAuthSettings,
    Settings,
    desired_state,
    select,
)
from chamberlain.checks.registry import run_checks
from chamberlain.errors import UsageError
from chamberlain.intent.loader import load_repository
from chamberlain.kube.kubeconfig import KubeconfigSource
from chamberlain.render import naming, render_repository
from chamberlain.service import load_valid
from chamberlain.service.authority import ClusterAuth, ConfigureOptions, Selection
from chamberlain.service.authority import desired_state as service_desired_state
from tests.conftest import CORPUS, REPO_ROOT, run_cli

CA = "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n"
ACME = REPO_ROOT / "examples" / "acme"


def _bundle(root: Path = CORPUS / "base") -> dict[str, str]:
    tree = render_repository(load_valid(root))
    return {p[len("vault/"):]: tree[p] for p in tree.paths() if p.startswith("vault/")}


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"controller_namespace": "chamberlain-system", "controller_service_account": "chamberlain",
                            "runtime_mount": "secret", "audit_file": None}
    return Settings(**{**base, **kw})


def test_the_auth_mount_is_named_per_cluster_from_the_platforms_base() -> None:
    platform = load_valid(ACME).platform
    assert platform is not None
    assert naming.kubernetes_auth_mount(platform, "dev1") == "kubernetes-dev1"
    assert naming.cluster_of_auth_mount(platform, "kubernetes-prod-us1") == "prod-us1"
    assert naming.cluster_of_auth_mount(platform, "kubernetes") is None
    assert naming.orchestrator_cluster("chamberlain.prod-eu1.orchestrator") == "prod-eu1"
    assert naming.orchestrator_cluster(CONFIGURATOR) is None
    with pytest.raises(UsageError, match="pass --cluster"):
        naming.login_cluster(platform, None)
    with pytest.raises(UsageError, match="not a cluster"):
        naming.login_cluster(platform, "nope")


def test_each_mount_gets_its_own_clusters_api_server_and_only_its_roles() -> None:
    a = KubernetesAuthSettings("https://a:6443", CA.format("a"), reviewer_jwt="jwt-a", disable_local_ca_jwt=True,
                               issuer="https://issuer.a")
    b = KubernetesAuthSettings("https://b:6443", CA.format("b"))
    desired = desired_state(_bundle(), _settings(kubernetes_by_mount={"kubernetes-dev1": a, "kubernetes-prod-eu1": b}))
    assert desired.auth_config["kubernetes-dev1"].kubernetes_host == "https://a:6443"
    assert desired.auth_config["kubernetes-prod-eu1"].kubernetes_host == "https://b:6443"
    assert desired.reviewer_jwts == {"kubernetes-dev1": "jwt-a", "kubernetes-prod-eu1": None}
    # The issuer binds the mount to its cluster's tokens; without one the server's default (no check) stays.
    assert (desired.auth_config["kubernetes-dev1"].issuer, desired.auth_config["kubernetes-dev1"].disable_iss_validation
            ) == ("https://issuer.a", False)
    assert (desired.auth_config["kubernetes-prod-eu1"].issuer,
            desired.auth_config["kubernetes-prod-eu1"].disable_iss_validation) == ("", True)
    assert "jwt-a" not in repr(desired)
    for mount, name in desired.roles:
        cluster = mount.removeprefix("kubernetes-")
        assert name in (CONFIGURATOR, BACKUP) or f".{cluster}." in name, (mount, name)


def test_the_configurator_is_never_the_controllers_service_account() -> None:
    desired = desired_state(_bundle(), _settings())
    roles = [r for (_, name), r in desired.roles.items() if name == CONFIGURATOR]
    assert len(roles) == 2  # one per cluster's mount
    for role in roles:
        assert role.bound_service_account_names == ("chamberlain-configurator",)
        assert role.bound_service_account_namespaces == ("chamberlain-configurator",)


def test_the_backup_identity_reads_the_snapshot_and_the_ledger_only() -> None:
    desired = desired_state(_bundle(), _settings())
    roles = [r for (_, name), r in desired.roles.items() if name == BACKUP]
    assert len(roles) == 2  # one per cluster's mount
    for role in roles:
        assert role.bound_service_account_names == ("chamberlain-backup",)
        assert role.bound_service_account_namespaces == ("chamberlain-configurator",)
        assert role.token_policies == (BACKUP,)
    policy = desired.policies[BACKUP]
    assert '"sys/storage/raft/snapshot"' in policy and "snapshot-force" not in policy
    assert all(cap not in policy for cap in ('"sudo"', '"update"', '"create"', '"delete"'))
    with pytest.raises(UsageError, match="cannot be the controller's"):
        _settings(configurator_namespace="chamberlain-system", configurator_service_account="chamberlain")


def test_selecting_a_cluster_keeps_only_its_mount() -> None:
    selected = select(_bundle(), cluster="dev1")
    assert set(json.loads(selected["auth.json"])) == {"kubernetes-dev1"}
    assert not [p for p in selected if p.startswith("auth/kubernetes-prod-eu1/")]


def test_one_kubeconfig_configures_one_cluster_never_several(tmp_path: Path) -> None:
    repo = load_valid(ACME)
    platform = repo.platform
    assert platform is not None
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "clusters": [{"name": "c", "cluster": {"server": "https://a:6443", "certificate-authority-data": ""}}],
        "contexts": [{"name": "x", "context": {"cluster": "c"}}], "current-context": "x"}))
    ca = tmp_path / "ca.pem"
    ca.write_text(CA.format("a"))
    one = service_desired_state(repo, platform, Selection(ACME, cluster="dev1", configure=ConfigureOptions(
        kubernetes_host="https://a:6443", kubernetes_ca_file=ca)), None)
    assert set(one.auth_config) == {"kubernetes-dev1"}
    # Several clusters: the cluster-wide options would make one API server review every cluster's tokens.
    with pytest.raises(UsageError, match="describe one cluster"):
        service_desired_state(repo, platform, Selection(ACME, configure=ConfigureOptions(
            kubernetes_host="https://a:6443", kubernetes_ca_file=ca)), None)
    several = service_desired_state(repo, platform, Selection(ACME, configure=ConfigureOptions(clusters={
        "dev1": ClusterAuth(host="https://a:6443", ca_file=ca),
        "prod-eu1": ClusterAuth(host="https://b:6443", ca_file=ca)})), KubeconfigSource((kubeconfig,)))
    assert {m: c.kubernetes_host for m, c in several.auth_config.items()} == {
        "kubernetes-dev1": "https://a:6443", "kubernetes-prod-eu1": "https://b:6443"}  # prod-us1: not given
    with pytest.raises(UsageError, match="not a cluster of the Platform"):
        service_desired_state(repo, platform, Selection(ACME, configure=ConfigureOptions(clusters={
            "nope": ClusterAuth(host="https://a:6443", ca_file=ca)})), None)


def test_the_cli_refuses_a_malformed_per_cluster_option() -> None:
    result = run_cli("authority", "configure", str(ACME), "--dry-run", "--cluster-kubeconfig", "dev1")
    assert result.code == 2 and "expected CLUSTER=VALUE" in result.err


# ---------------------------------------------------------------------------------------------- PKI grants


def _pki_repo(tmp_path: Path, annotations: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", root)
    body = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in annotations.items())
    (root / "intents" / "cert.yaml").write_text(f"""apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata:
  name: web-cert
  annotations:
{body}
spec:
  owner: team-app
  purpose: TLS certificate of the app API
  classification: runtime
  environments: [dev]
  source:
    generate:
      tls.key: {{type: rsa}}
  rotation: {{policy: standard}}
""")
    return root


ROTATOR = {"chamberlain.dev/rotator": "x509-vault-pki"}


@pytest.mark.parametrize("annotations", [
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "*"}, id="wildcard-role"),
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "web+"}, id="glob-role"),
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "web", "chamberlain.dev/x509-pki-mount": "pki/*"},
                 id="wildcard-mount"),
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "web", "chamberlain.dev/x509-pki-mount": "sys"},
                 id="system-mount"),
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "web",
                  "chamberlain.dev/x509-pki-mount": "secret/data/prod/team-app"}, id="inside-the-runtime-mount"),
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "web", "chamberlain.dev/x509-pki-mount": "secret"},
                 id="the-runtime-mount"),
    pytest.param({**ROTATOR}, id="no-role"),
    pytest.param({"chamberlain.dev/x509-pki-role": "web/../x"}, id="annotation-without-rotator"),
    # red team: the transit mount's sign endpoint is the ledger's signing key of that environment (or the
    # configurator's): a grant there forges audit entries
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "chamberlain-ledger-_authority",
                  "chamberlain.dev/x509-pki-mount": "chamberlain-transit"}, id="the-transit-mount"),
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "chamberlain-ledger-prod",
                  "chamberlain.dev/x509-pki-mount": "chamberlain-transit/"}, id="the-transit-mount-slash"),
    # red team: ``$`` accepted a trailing newline, which then slipped past the KV and system-path checks
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "web", "chamberlain.dev/x509-pki-mount": "secret\n/"},
                 id="newline-after-a-kv-mount"),
    pytest.param({**ROTATOR, "chamberlain.dev/x509-pki-role": "web", "chamberlain.dev/x509-pki-mount": "pki-web\n/"},
                 id="newline-in-the-mount"),
])
def test_a_pki_annotation_that_would_widen_the_grant_fails_validate(tmp_path: Path,
                                                                     annotations: dict[str, str]) -> None:
    root = _pki_repo(tmp_path, annotations)
    found = [f for f in run_checks(load_repository(root)) if f.rule == "CH105"]
    assert len(found) == 1, found
    # The line of the offending annotation (the annotations key itself when the role is missing).
    bad = next((i for i, k in enumerate(annotations) if k != "chamberlain.dev/rotator" and k in found[0].message),
               None)
    assert found[0].file == "intents/cert.yaml" and found[0].line == (5 if bad is None else 6 + bad)
    assert "web-cert" in found[0].message
    result = run_cli("validate", str(root))
    assert result.code == 1 and "CH105" in result.out + result.err and "Traceback" not in result.err


def test_an_exact_pki_role_validates_and_grants_exactly_it(tmp_path: Path) -> None:
    root = _pki_repo(tmp_path, {**ROTATOR, "chamberlain.dev/x509-pki-role": "web",
                                "chamberlain.dev/x509-pki-mount": "pki-int"})
    assert not [f for f in run_checks(load_repository(root)) if f.rule == "CH105"]
    policy = _bundle(root)["policies/chamberlain.dev1.orchestrator.hcl"]
    grants = [line for line in policy.splitlines() if line.startswith('path "pki')]
    assert grants == ['path "pki-int/revoke" {', 'path "pki-int/sign/web" {']
    # what configure checks is a PKI engine before it grants sign there
    assert json.loads(_bundle(root)["pki.json"]) == {"mounts": ["pki-int"]}


# ---------------------------------------------------------------------------------------------- the lab


def test_a_two_cluster_lab_persists_and_names_its_second_cluster(tmp_path: Path) -> None:
    from chamberlain.lab import lab as lab_mod
    from tests.conftest import lab_host

    config = lab_mod.LabConfig(lab_dir=tmp_path, host=lab_host(), ports=lab_mod.Ports().shifted(-4950), clusters=2)
    (tmp_path / "lab.json").write_text(config.to_json())
    loaded = lab_mod.LabConfig.load(tmp_path, lab_host())
    assert loaded.clusters == 2 and loaded.ports == config.ports
    lab = lab_mod.Lab(loaded)
    assert lab.second is not None
    assert {"etcd-2", "kube-apiserver-2"} <= set(lab.servers())
    assert lab.second.kubeconfig == tmp_path / "cluster-2" / "kubeconfig"
    assert lab.second.apiserver.issuer != lab.apiserver.issuer
    assert lab.second.pki.sa_key != lab.pki.sa_key and lab.second.pki.ca.cert != lab.pki.ca.cert
    first = {lab.etcd.port, lab.etcd.peer_port, lab.apiserver.port}
    assert not first & {lab.second.etcd.port, lab.second.etcd.peer_port, lab.second.apiserver.port}
    assert lab_mod.Lab(lab_mod.LabConfig(lab_dir=tmp_path, host=lab_host())).second is None  # default: one cluster
    with pytest.raises(lab_mod.LabError, match="1 or 2 clusters"):
        lab_mod.LabConfig(lab_dir=tmp_path, host=lab_host(), clusters=3)
