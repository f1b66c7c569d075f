"""examples/acme is the repository users meet first: it must be realistic, complete and clean."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from chamberlain.checks import run_checks
from chamberlain.intent.loader import Repository, load_repository
from chamberlain.intent.paths import effective_policy
from tests.conftest import host_settings

ROOT = Path(__file__).resolve().parents[2]
ACME = ROOT / "examples" / "acme"
IDENTITY = ROOT / "tests" / "fixtures" / "age" / "test-identity.txt"
TEST_RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"


@pytest.fixture(scope="module")
def repo() -> Repository:
    return load_repository(ACME)


def _sops_binary() -> Path | None:
    from chamberlain.lab import builds

    path = builds.binary(host_settings().lab_cache, "sops")
    return path if path.is_file() else None


def test_validates_clean(repo: Repository) -> None:
    assert run_checks(repo) == []


def test_shape(repo: Repository) -> None:
    platform = repo.platform
    assert platform is not None and platform.metadata.name == "acme"
    envs = platform.spec.environments
    assert len(envs) >= 3
    assert sum(e.ephemeral for e in envs) == 1
    assert len({c for e in envs for c in e.clusters}) >= 2
    assert platform.spec.root_of_trust.age_recipients == [TEST_RECIPIENT]
    intents = [i.obj for i in repo.intents]
    assert len(intents) >= 12
    assert {i.spec.classification for i in intents} == {"bootstrap", "runtime", "derived", "config"}
    assert len({i.spec.owner for i in intents}) >= 5
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    assert {p.spec.type for p in policies.values()} == {"static", "time-based", "event-based"}
    assert all(effective_policy(platform, policies, i) is not None for i in intents)
    assert any(i.spec.environments is None for i in intents)  # the default is exercised too
    ephemeral = next(e.name for e in envs if e.ephemeral)
    assert any(ephemeral in (i.spec.environments or []) for i in intents)


def test_postgres_target_with_admin_intent(repo: Repository) -> None:
    index = repo.intent_index()
    targeted = [i.obj for i in repo.intents if i.obj.spec.target is not None]
    assert targeted
    for intent in targeted:
        assert intent.spec.target is not None
        assert intent.spec.target.postgres.admin_intent in index


def test_publications_and_consumers(repo: Repository) -> None:
    intents = [i.obj for i in repo.intents]
    derived = [i for i in intents if i.spec.classification == "derived"]
    config = [i for i in intents if i.spec.classification == "config"]
    assert derived and config
    assert all(i.spec.source.publication is not None for i in derived + config)
    consumers = [c for i in intents for c in i.spec.consumers]
    assert any(c.keys and any(k != v for k, v in c.keys.items()) for c in consumers)  # key remapping
    assert {w.kind for c in consumers for w in c.restart} == {"Deployment", "StatefulSet", "DaemonSet"}
    # the derived credential reaches another namespace than its producer's, through Vault
    assert any(c.namespace != i.spec.source.publication.namespace for i in derived for c in i.spec.consumers
               if i.spec.source.publication is not None)


def test_workloads_consume_materialized_secrets_only(repo: Repository) -> None:
    bootstrap_names = set()
    for item in repo.intents:
        src = item.obj.spec.source.bootstrap
        if src is None:
            continue
        doc = next(d for f in repo.files if f.rel == src.file for d in f.documents)
        assert doc.name is not None
        bootstrap_names.add(doc.name)
    assert bootstrap_names
    workloads = [d for d in repo.manifests if d.kind in {"Deployment", "StatefulSet", "DaemonSet"}]
    assert len(workloads) >= 5
    for doc in workloads:
        text = yaml.safe_dump(doc.data)
        assert not any(name in text for name in bootstrap_names), doc.file


def _bootstrap_files(repo: Repository) -> list[tuple[str, str]]:
    return [
        (i.obj.metadata.name, i.obj.spec.source.bootstrap.file)
        for i in repo.intents
        if i.obj.spec.source.bootstrap is not None
    ]


def test_bootstrap_files_are_sops_encrypted_to_the_test_recipient(repo: Repository) -> None:
    files = _bootstrap_files(repo)
    assert len(files) >= 2
    for _, rel in files:
        f = repo.file(rel)
        assert f is not None and f.is_sops, rel
        (doc,) = f.documents
        sops = doc.data["sops"]
        assert [r["recipient"] for r in sops["age"]] == [TEST_RECIPIENT]
        assert sops["encrypted_regex"] == "^(data|stringData)$"
        assert sops["mac"].startswith("ENC[")
        body = doc.data.get("stringData") or doc.data.get("data")
        assert body and all(str(v).startswith("ENC[AES256_GCM,") for v in body.values())
        # kind, names and labels stay reviewable in plaintext
        assert doc.kind == "Secret"
        assert doc.data["metadata"]["labels"]["chamberlain.dev/class"] == "bootstrap"
    sops_config = yaml.safe_load((ACME / ".sops.yaml").read_text())
    (rule,) = sops_config["creation_rules"]
    assert rule["age"] == TEST_RECIPIENT


def test_bootstrap_files_decrypt_with_the_test_identity(repo: Repository) -> None:
    sops = _sops_binary()
    if sops is None:
        pytest.skip("sops binary not built (chamberlain lab build)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["SOPS_AGE_KEY_FILE"] = str(IDENTITY)
    for intent, rel in _bootstrap_files(repo):
        proc = subprocess.run([str(sops), "decrypt", str(ACME / rel)], capture_output=True, text=True,
                              env=env, check=False, timeout=60)
        assert proc.returncode == 0, f"{rel}: sops exit {proc.returncode}"  # never echo output: it is plaintext
        manifest = yaml.safe_load(proc.stdout)
        assert manifest["kind"] == "Secret"
        assert manifest["metadata"]["namespace"] == "chamberlain-bootstrap"
        assert manifest["metadata"]["labels"] == {
            "chamberlain.dev/class": "bootstrap", "chamberlain.dev/intent": intent,
        }
        values = manifest.get("stringData") or manifest.get("data")
        assert values and all(isinstance(v, str) and v and not v.startswith("ENC[") for v in values.values())


def test_no_plaintext_bootstrap_anywhere() -> None:
    for path in ACME.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".yml"}:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
            for d in docs:
                if d.get("kind") == "Secret":
                    assert "sops" in d, f"{path}: a Secret manifest in Git must be SOPS-encrypted"
