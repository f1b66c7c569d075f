"""A second repository, written independently of acme and the corpus (tests/repos/unseen, company "globex"):
several clusters per environment, custom mounts, inline policies, omitted environments, .yml files, nested
directories. It must validate clean, inventory and render like the first one."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from chamberlain.checks import run_checks
from chamberlain.intent.loader import Repository, load_repository
from chamberlain.inventory import build_inventory, to_html, to_json

ROOT = Path(__file__).resolve().parents[2]
UNSEEN = ROOT / "tests" / "repos" / "unseen"


@pytest.fixture(scope="module")
def repo() -> Repository:
    return load_repository(UNSEEN)


def test_validates_clean(repo: Repository) -> None:
    # Written before CH112 (issue 14): its keyless publication stays valid and gets the rule's warning only.
    findings = run_checks(repo)
    assert [(f.rule, f.severity, f.object) for f in findings] == [
        ("CH112", "warning", "SecretIntent/rabbitmq-endpoint")]
    assert repo.platform is not None and repo.platform.metadata.name == "globex"
    assert len(repo.intents) >= 8


def test_inventory_follows_custom_mounts_and_defaults(repo: Repository) -> None:
    inv = build_inventory(repo)
    data = json.loads(to_json(inv))
    by_name = {s["name"]: s for s in data["secrets"]}
    # environments omitted -> every non-ephemeral environment, each on all its clusters
    superuser = by_name["keycloak-pg-superuser"]
    assert superuser["environments"] == ["staging", "prod"]
    assert len(superuser["vault"]) == 5
    assert all(v["path"].startswith("kv/") for v in superuser["vault"])
    redis = by_name["redis-cache-auth"]
    assert "internal-secrets/prod/prd-sin/cache/redis-cache-auth" in [v["path"] for v in redis["vault"]]
    flags = by_name["feature-flags-endpoint"]
    assert flags["vault"][0]["path"].startswith("internal-config/")
    assert flags["rotation"]["policy"] == "monthly"  # the Platform default
    assert flags["rotation"]["ttl"] == "30d"  # 4w2d, shown in days
    keycloak = by_name["keycloak-db"]
    assert keycloak["rotation"]["policy"] == "inline"
    assert keycloak["target"]["strategy"] == "alternating"
    seed = by_name["sandbox-seed-token"]
    assert [v["cluster"] for v in seed["vault"]] == ["sbx-1"]
    assert {w["kind"] for s in data["secrets"] for w in s["workloads"]} == {
        "Deployment", "StatefulSet", "DaemonSet",
    }
    page = to_html(inv)
    assert '"edge-proxy"' in page and '"keycloak"' in page  # in the data the page's graph is drawn from


def test_bootstrap_file_is_sops(repo: Repository) -> None:
    f = repo.file("bootstrap/ldap-bind.sops.yaml")
    assert f is not None and f.is_sops
    (doc,) = f.documents
    assert [r["recipient"] for r in doc.data["sops"]["age"]] == (
        repo.platform.spec.root_of_trust.age_recipients if repo.platform else []
    )


def _render_module() -> Any:
    try:
        module = importlib.import_module("chamberlain.render")
    except ImportError:
        pytest.skip("chamberlain.render is not available yet")
    if not hasattr(module, "render_repository") or not hasattr(module, "write_tree"):
        pytest.skip("chamberlain.render has no render_repository/write_tree yet")
    return module


def _tree_text(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_renders_deterministically(repo: Repository, tmp_path: Path) -> None:
    render = _render_module()
    first, second = tmp_path / "a", tmp_path / "b"
    render.write_tree(render.render_repository(repo), first)
    render.write_tree(render.render_repository(load_repository(UNSEEN)), second)
    files = _tree_text(first)
    assert files, "render wrote nothing"
    assert files == _tree_text(second)
    text = b"\n".join(files.values()).decode()
    # every consumer is materialized, and the custom mounts and clusters are followed
    for secret in ("keycloak-db", "keycloak-ldap", "checkout-callback-hmac", "redis-auth", "broker-endpoint",
                   "sftp-partner", "seed-token"):
        assert secret in text, secret
    for cluster in ("stg-a", "stg-b", "prd-fra", "prd-iad", "prd-sin", "sbx-1"):
        assert cluster in text, cluster
    assert "internal-secrets" in text and "internal-config" in text
    # the bootstrap Secret's ciphertext is only in the decryption layer's copies of the SOPS files
    assert not any("ENC[AES256_GCM" in body.decode() for rel, body in files.items() if "/bootstrap/" not in str(rel))
