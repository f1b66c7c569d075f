"""CH019: a consumer key that names no key of its source is rejected with a did-you-mean; CH009 (a warning, SPEC
§10) when a publication declares no keys, so the mapping cannot be checked yet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chamberlain.checks.references import did_you_mean, source_keys
from chamberlain.intent.model import SecretIntent
from tests.conftest import CORPUS, run_cli


def intent(source: dict[str, object], annotations: dict[str, str] | None = None) -> SecretIntent:
    return SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent",
        "metadata": {"name": "x", "annotations": annotations or {}},
        "spec": {"owner": "t", "purpose": "p", "classification": "runtime", "source": source},
    })


@pytest.mark.parametrize(("source", "annotations", "expected"), [
    pytest.param({"generate": {"password": {"type": "password"}}}, None, {"password"}, id="password"),
    pytest.param({"generate": {"signing": {"type": "ed25519"}}}, None, {"signing", "signing.pub"}, id="keypair"),
    pytest.param({"generate": {"tls.key": {"type": "ecdsa"}}}, {"chamberlain.dev/rotator": "x509"},
                 {"tls.key", "tls.key.pub", "tls.crt"}, id="x509"),
    pytest.param({"generate": {"k": {"type": "rsa"}}}, {"chamberlain.dev/rotator": "x509-vault-pki"},
                 {"k", "k.pub", "k.crt", "ca.crt"}, id="x509-vault-pki"),
    pytest.param({"generate": {"k": {"type": "token"}}}, {"chamberlain.dev/rotator": "acme-plugin"}, None,
                 id="plugin-unknown"),
    pytest.param({"publication": {"namespace": "db", "secretName": "s", "keys": ["host", "port"]}}, None,
                 {"host", "port"}, id="publication-declared"),
    pytest.param({"publication": {"namespace": "db", "secretName": "s"}}, None, None, id="publication-undeclared"),
    pytest.param({"bootstrap": {"file": "b.yaml"}}, None, {"username", "password"}, id="bootstrap"),
])
def test_source_keys(source: dict[str, object], annotations: dict[str, str] | None,
                     expected: set[str] | None) -> None:
    it = intent(source, annotations)
    got = source_keys(it, {id(it): frozenset({"username", "password"})})  # a bootstrap file's keys, by intent
    assert got == (frozenset(expected) if expected is not None else None)


def test_did_you_mean() -> None:
    assert did_you_mean("pasword", frozenset({"password", "username"})) == " (did you mean 'password'?)"
    assert did_you_mean("zzz", frozenset({"password"})) == ""


def _with_intent(tmp_path: Path, text: str) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    (repo / "intents" / "extra.yaml").write_text(text)
    return repo


HEADER = ("apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: {name: extra}\nspec:\n"
          "  owner: team-app\n  purpose: test\n")


def test_a_mistyped_key_fails_validate_with_a_suggestion_and_no_value(tmp_path: Path) -> None:
    repo = _with_intent(tmp_path, HEADER + "  classification: runtime\n  source:\n    generate:\n"
                        "      signing: {type: ed25519}\n  rotation: {type: static}\n  consumers:\n"
                        "    - namespace: app\n      secretName: extra\n"
                        "      keys: {tls.key: signing, tls.pub: signing.pub, ca: signin.pub}\n")
    result = run_cli("validate", str(repo), "-o", "json")
    assert result.code == 1
    findings = [f for f in json.loads(result.out)["results"] if f["rule"] == "CH019"]
    assert [(f["file"], f["line"]) for f in findings] == [("intents/extra.yaml", 15)]
    assert "did you mean 'signing.pub'?" in findings[0]["message"]


def test_a_bootstrap_consumer_is_checked_against_the_keys_of_its_file(tmp_path: Path) -> None:
    case = CORPUS / "bad" / "CH030-env-secret-key-ref"
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    shutil.copytree(case / "intents", repo / "intents", dirs_exist_ok=True)
    shutil.copytree(case / "bootstrap", repo / "bootstrap")
    text = (repo / "intents" / "bootstrap.yaml").read_text()
    plain = "    - {namespace: notifications, secretName: smtp-relay}"
    assert plain in text
    mapped = "    - {namespace: notifications, secretName: smtp-relay, keys: {SMTP_PASS: %s}}"
    (repo / "intents" / "bootstrap.yaml").write_text(text.replace(plain, mapped % "password"))
    keys = json.loads(run_cli("validate", str(repo), "-o", "json").out)
    assert not [f for f in keys["results"] if f["rule"] == "CH019"]
    (repo / "intents" / "bootstrap.yaml").write_text(text.replace(plain, mapped % "passwd"))
    report = json.loads(run_cli("validate", str(repo), "-o", "json").out)
    found = [f for f in report["results"] if f["rule"] == "CH019"]
    assert found and "bootstrap source" in found[0]["message"]


def test_an_undeclared_publication_is_a_warning_only(tmp_path: Path) -> None:
    repo = _with_intent(tmp_path, HEADER + "  classification: config\n  source:\n"
                        "    publication: {namespace: broker, secretName: endpoint}\n  rotation: {type: static}\n"
                        "  consumers:\n    - namespace: app\n      secretName: endpoint\n      keys: {URL: url}\n")
    lenient = run_cli("validate", str(repo))
    assert lenient.code == 0 and "CH009" in lenient.out
    assert run_cli("validate", str(repo), "--strict").code == 1
