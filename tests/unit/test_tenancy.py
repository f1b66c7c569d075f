"""Tenancy (issue 11): the pure rules (paths, protected namespaces, platform-owned Secrets, superuser roles, the
authority address), the fully declared example, the inventory's cross-owner edges and the CODEOWNERS fragment.
Each rule's bad-input case is in tests/corpus/bad/CH07x-CH08x; the attacker's repositories in tests/repos/tenancy."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from chamberlain.checks import run_checks
from chamberlain.intent.loader import load_repository
from chamberlain.intent.tenancy import (
    authority_namespace,
    glob_match,
    insecure_authority,
    path_matches,
    platform_secret,
    superuser_role,
)
from chamberlain.inventory import build_inventory, to_dict, to_markdown, to_text
from chamberlain.render import render_repository
from chamberlain.render.codeowners import FILENAME, codeowners
from tests.conftest import EXAMPLES, run_cli

TENANCY = EXAMPLES / "acme-tenancy"


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("intents/team-web/**", "intents/team-web/a.yaml", True),
    ("intents/team-web/**", "intents/team-web/sub/a.yaml", True),
    ("intents/team-web/**", "intents/team-webx/a.yaml", False),
    ("intents/team-web", "intents/team-web/a.yaml", True),  # a directory covers what is below it
    ("intents/team-web/", "intents/team-web/a.yaml", True),
    ("/intents/team-web/**", "intents/team-web/a.yaml", True),  # anchored as in CODEOWNERS
    ("intents/web.yaml", "intents/web.yaml", True),
    ("intents/web.yaml", "intents/web.yaml.bak", False),
    ("intents/*.yaml", "intents/web.yaml", True),
    ("intents/*.yaml", "intents/sub/web.yaml", False),  # '*' stays within a segment
    ("**/web.yaml", "a/b/c/web.yaml", True),
    ("teams/*-web/**", "teams/team-web/x.yaml", True),
    ("teams/*-web/**", "teams/team-data/x.yaml", False),
    ("a/**/b/**/c.yaml", "a/x/b/y/z/c.yaml", True),
    ("a/**/b/**/c.yaml", "a/x/y/c.yaml", False),
])
def test_path_matches(pattern: str, path: str, expected: bool) -> None:
    assert path_matches(pattern, path) is expected


def test_globs_stay_linear_on_hostile_input() -> None:
    started = time.monotonic()
    assert not glob_match("*a" * 200 + "*b", "a" * 100_000)
    assert not path_matches("/".join(["**"] * 200) + "/x", "/".join(["a"] * 2000))
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(("address", "namespace"), [
    ("https://vault.vault.svc:8200", "vault"),
    ("https://openbao.secrets.svc.cluster.local:8200", "secrets"),
    ("https://vault.example.com", None),
    ("https://127.0.0.1:8200", None),
])
def test_authority_namespace(address: str, namespace: str | None) -> None:
    assert authority_namespace(address) == namespace


@pytest.mark.parametrize(("address", "refused"), [
    ("https://vault.vault.svc:8200", False),
    ("http://127.0.0.1:8200", False),
    ("http://127.5.0.1:8200", False),
    ("http://[::1]:8200", False),
    ("http://localhost:8200", False),
    ("http://vault.vault.svc:8200", True),
    ("http://localhost.attacker.example:8200", True),
    ("http://127.0.0.1@vault.attacker.example:8200", True),
    ("https://user@vault.example.com", True),
])
def test_insecure_authority(address: str, refused: bool) -> None:
    assert (insecure_authority(address) is not None) is refused


@pytest.mark.parametrize(("namespace", "name", "owned"), [
    ("chamberlain-system", "chamberlain-unseal", True),
    ("web", "chamberlain-orchestrator", True),
    ("flux-system", "sops-age", True),
    ("flux-system", "flux-system", True),
    ("argocd", "argocd-secret", True),
    ("argocd", "argocd-initial-admin-secret", True),
    ("argocd", "repo-1234", True),
    ("argocd", "cluster-prod", True),
    ("argocd", "argocd-webhook", False),  # examples/acme writes it (team-platform)
    ("web", "repo-cache", False),  # repo-* is Argo CD's only in its namespace
    ("external-secrets", "external-secrets-webhook", True),
    ("databases", "orders-db-superuser", True),
    ("databases", "postgres.orders.credentials.postgresql.acid.zalan.do", True),
    ("web", "default-token-x7k2q", True),
    ("web", "storefront-session", False),
])
def test_platform_secret(namespace: str, name: str, owned: bool) -> None:
    assert (platform_secret(namespace, name) is not None) is owned


@pytest.mark.parametrize(("role", "refused"), [
    ("postgres", True), ("Postgres", True), ("rdsadmin", True), ("cloudsqladmin", True), ("azure_superuser", True),
    ("supabase_admin", True), ("pg_read_all_data", True), ("payments", False), ("reporting_ro", False),
])
def test_superuser_role(role: str, refused: bool) -> None:
    assert (superuser_role(role) is not None) is refused


def test_the_declared_example_is_clean_even_strict() -> None:
    assert run_checks(load_repository(TENANCY)) == []
    result = run_cli("validate", str(TENANCY), "--strict")
    assert result.code == 0, result.out + result.err


def test_tenancy_turns_on_enforcement(tmp_path: Path) -> None:
    """The same intent outside its owner's paths: no finding without spec.tenancy, an error with it."""
    repo = tmp_path / "repo"
    shutil.copytree(TENANCY, repo)
    moved = repo / "intents" / "team-web" / "secrets.yaml"
    moved.rename(repo / "intents" / "web.yaml")
    rules = {f.rule for f in run_checks(load_repository(repo)) if f.severity == "error"}
    assert rules == {"CH080"}
    platform = repo / "platform.yaml"
    text = platform.read_text()
    platform.write_text(text[: text.index("  tenancy:")])
    assert {f.rule for f in run_checks(load_repository(repo)) if f.severity == "error"} == set()


def test_inventory_lists_every_cross_owner_edge() -> None:
    inventory = build_inventory(load_repository(TENANCY))
    lines = {e.line() for e in inventory.edges}
    assert "payments-db (team-payments) uses admin intent pg-payments-admin of team-data" in lines
    assert "registry-pull (team-platform) writes consumer Secret payments/registry-pull of team-payments" in lines
    assert "orders-db-app (team-orders) publishes Secret databases/orders-db-app of team-data" in lines
    data = to_dict(inventory)["crossOwnerEdges"]
    assert {"intent": "search-endpoint", "owner": "team-search", "kind": "consumer", "other": "team-web",
            "what": "web/search-endpoint"} in data
    assert "Cross-owner edges" in to_text(inventory)
    assert "## Cross-owner edges" in to_markdown(inventory)
    # Without tenancy the admin edge is still shown (owners compare), namespace edges need the declaration.
    acme = build_inventory(load_repository(EXAMPLES / "acme"))
    assert [e.kind for e in acme.edges] == ["admin"]


def test_codeowners_fragment() -> None:
    repo = load_repository(TENANCY)
    text = codeowners(repo)
    assert text is not None
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    prefix = "/" if repo.git_root is None else f"/{TENANCY.relative_to(repo.git_root).as_posix()}/"
    assert f"{prefix}intents/team-web/** @acme/web" in lines
    assert f"{prefix}intents/team-search/** @acme/platform" in lines  # no reviewers: the platform's
    # The Platform and the policies come last, so a broader team pattern never takes their review away.
    assert lines[-2:] == [f"{prefix}platform.yaml @acme/platform", f"{prefix}policies/rotation.yaml @acme/platform"]
    # the repository's baseline accepts findings for every command: the platform reviews it, present or not
    assert f"{prefix}.chamberlain-baseline @acme/platform" in lines
    tree = render_repository(repo)
    assert tree[FILENAME] == text == codeowners(load_repository(TENANCY))  # deterministic
    assert FILENAME not in render_repository(load_repository(EXAMPLES / "acme"))  # no tenancy, no fragment


POLICY = ("apiVersion: chamberlain.dev/v1alpha1\nkind: RotationPolicy\nmetadata: {name: web-quarterly}\n"
          "spec: {type: time-based, ttl: 90d, rotateBefore: 7d, revokeOld: true, maxOverlap: 1h, "
          "failureStrategy: retry}\n")


def test_a_file_name_cannot_forge_codeowners_lines(tmp_path: Path) -> None:
    """Red team: a team wrote a policy file whose name held newlines; the rendered CODEOWNERS then carried
    ``* @mallory`` after every owner's section, handing every team's paths to one reviewer."""
    repo = tmp_path / "repo"
    shutil.copytree(TENANCY, repo, ignore=shutil.ignore_patterns(".git"))
    (repo / "intents" / "team-web" / "policy\n* @mallory\n#.yaml").write_text(POLICY)
    found = [f for f in run_checks(load_repository(repo)) if f.rule == "CH129"]
    assert len(found) == 1 and found[0].severity == "error"
    assert "\n" not in found[0].file and found[0].file.startswith("intents/team-web/policy")
    text = codeowners(load_repository(repo))
    assert text is not None
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert not [line for line in rules if not line.startswith("/")]  # every rule is a path of the repository
    forged = [line for line in rules if "mallory" in line]
    assert len(forged) == 1 and forged[0].endswith(" @acme/platform") and "\\ @mallory" in forged[0], forged
    result = run_cli("validate", str(repo))
    assert result.code == 1 and "CH129" in result.out and "Traceback" not in result.err
    assert "\n* @mallory" not in result.out + result.err  # the name is shown escaped, never raw


def test_codeowners_names_a_file_with_spaces_or_glob_characters_literally(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(TENANCY, repo, ignore=shutil.ignore_patterns(".git"))
    (repo / "policies" / "more policies*.yaml").write_text(POLICY)
    assert [f for f in run_checks(load_repository(repo)) if f.severity == "error"] == []
    text = codeowners(load_repository(repo))
    assert text is not None
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert any(line.endswith("policies/more\\ policies\\*.yaml @acme/platform") for line in lines), lines


def test_the_ttl_floor_is_the_platforms_above_an_absolute_one(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(TENANCY, repo)
    platform = repo / "platform.yaml"
    policies = repo / "policies" / "rotation.yaml"
    policies.write_text(policies.read_text().replace("ttl: 1h\n  rotateBefore: 10m", "ttl: 20s\n  rotateBefore: 10s"))

    def ttl_rules() -> list[tuple[str, str]]:
        return sorted((f.rule, f.severity) for f in run_checks(load_repository(repo)) if f.rule in ("CH077", "CH079"))

    assert ttl_rules() == [("CH077", "error")]  # 10 s between rotations, under the declared 30m
    platform.write_text(platform.read_text().replace("minimumTtl: 30m", "minimumTtl: 10s"))
    assert ttl_rules() == []  # the lab's declaration
    platform.write_text(platform.read_text().replace("minimumTtl: 10s", "minimumTtl: 1s"))
    policies.write_text(policies.read_text().replace("ttl: 20s\n  rotateBefore: 10s", "ttl: 5s\n  rotateBefore: 1s"))
    assert ttl_rules() == [("CH077", "error")]  # never under 10 s, whatever is declared
    platform.write_text(platform.read_text().replace("  limits: {minimumTtl: 1s}", "  limits: {}"))
    policies.write_text(policies.read_text().replace("ttl: 5s\n  rotateBefore: 1s", "ttl: 50m\n  rotateBefore: 1m"))
    assert ttl_rules() == [("CH079", "warning")]  # no declaration: under an hour is a warning


def _web_cert(role: str, mount: str = "pki") -> str:
    return f"""apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata:
  name: web-tls
  annotations:
    chamberlain.dev/rotator: x509-vault-pki
    chamberlain.dev/x509-pki-mount: {mount}
    chamberlain.dev/x509-pki-role: {role}
    chamberlain.dev/x509-dns-names: payments.example.com
spec:
  owner: team-web
  purpose: TLS key of the storefront
  classification: runtime
  environments: [dev]
  source: {{generate: {{tls.key: {{type: ecdsa}}}}}}
  consumers: [{{namespace: web, secretName: web-tls}}]
"""


@pytest.mark.parametrize(("granted", "role", "found"), [
    (None, "payments-mtls", True),             # red team: another team's role signs my certificate for its names
    ("[pki/web-*]", "payments-mtls", True),
    ("[pki/web-*]", "web-tls", False),
    ("[pki-int/web-tls]", "web-tls", True),    # same role name, other mount
    ("['*/web-tls']", "web-tls", False),
])
def test_a_pki_role_must_be_given_to_the_intents_owner(tmp_path: Path, granted: str | None, role: str,
                                                       found: bool) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(TENANCY, repo, ignore=shutil.ignore_patterns(".git"))
    (repo / "intents" / "team-web" / "tls.yaml").write_text(_web_cert(role))
    if granted is not None:
        platform = repo / "platform.yaml"
        text = platform.read_text()
        anchor = '        reviewers: ["@acme/web"]\n'
        assert anchor in text
        platform.write_text(text.replace(anchor, anchor + f"        pkiRoles: {granted}\n", 1))
    findings = run_checks(load_repository(repo))
    ch131 = [f for f in findings if f.rule == "CH131"]
    assert [f for f in findings if f.severity == "error"] == []  # a new rule: a warning until --strict
    assert bool(ch131) is found, ch131
    if found:
        assert ch131[0].severity == "warning" and ch131[0].file == "intents/team-web/tls.yaml"
        assert ch131[0].line == 8
        assert run_cli("validate", str(repo)).code == 0
        assert run_cli("validate", str(repo), "--strict").code == 1


def test_a_policy_in_a_teams_paths_is_a_warning(tmp_path: Path) -> None:
    """Review: a new RotationPolicy in a team's directory was first reviewed by that team alone."""
    repo = tmp_path / "repo"
    shutil.copytree(TENANCY, repo, ignore=shutil.ignore_patterns(".git"))
    (repo / "intents" / "team-web" / "policy.yaml").write_text(POLICY)
    (repo / "policies" / "more.yaml").write_text(POLICY.replace("web-quarterly", "platform-quarterly"))
    findings = run_checks(load_repository(repo))
    found = [f for f in findings if f.rule == "CH132"]
    assert [(f.file, f.severity) for f in found] == [("intents/team-web/policy.yaml", "warning")]
    assert "team-web" in found[0].message
    assert [f for f in findings if f.severity == "error"] == []
    assert run_cli("validate", str(repo)).code == 0 and run_cli("validate", str(repo), "--strict").code == 1
