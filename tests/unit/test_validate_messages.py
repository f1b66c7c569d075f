"""What validate says is true, found by a new user: a misspelt apiVersion is no silent "ok" (CH130), a reference to
an object that is declared but invalid says so instead of "not declared", an empty Platform file is blamed itself,
and a tab in YAML indentation is named, with its column."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from chamberlain.checks.structure import near_miss_group
from tests.conftest import CORPUS, run_cli

INTENT = """apiVersion: {api}
kind: {kind}
metadata: {{name: extra}}
spec:
  owner: team-x
  purpose: A test secret
  classification: runtime
  source:
    generate:
      token: {{type: token}}
  rotation: {{policy: standard}}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", root)
    return root


def _validate(root: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = run_cli("validate", str(root), "-o", "json", "--no-cache", *args)
    assert "Traceback" not in result.out + result.err
    return result.code, json.loads(result.out)["results"]


def _wide(root: Path) -> str:
    result = run_cli("validate", str(root), "-o", "wide", "--no-cache")
    assert "Traceback" not in result.out + result.err
    return result.out


# ------------------------------------------------------------------------------------------------ CH130


@pytest.mark.parametrize("api", ["chamberlian.dev/v1alpha1", "chamberlain.io/v1alpha1", "Chamberlain.dev/v1alpha1",
                                 "CHAMBERLAIN.DEV/v1alpha1", "chamberlain.dev", "chamberlin.dev/v1alpha1",
                                 "chamberlain.dve/v1alpha1", "chamberlain/v1alpha1"])
@pytest.mark.parametrize("kind", ["SecretIntent", "Platform", "RotationPolicy"])
def test_a_misspelt_chamberlain_group_is_a_warning_naming_file_line_and_the_expected_api(
    repo: Path, api: str, kind: str,
) -> None:
    (repo / "intents" / "extra.yaml").write_text("# a comment first\n" + INTENT.format(api=api, kind=kind))
    code, found = _validate(repo)
    assert code == 0  # a warning: a new rule never fails a command without --strict
    ch130 = [f for f in found if f["rule"] == "CH130"]
    assert [(f["file"], f["line"], f["severity"]) for f in ch130] == [("intents/extra.yaml", 2, "warning")]
    assert repr(api) in ch130[0]["message"] and "write apiVersion: chamberlain.dev/v1alpha1" in ch130[0]["message"]
    assert _validate(repo, "--strict")[0] == 1


def test_a_secret_intent_under_any_other_group_is_a_warning(repo: Path) -> None:
    (repo / "intents" / "extra.yaml").write_text(INTENT.format(api="secrets.example.com/v1", kind="SecretIntent"))
    _, found = _validate(repo)
    assert [f["message"] for f in found if f["rule"] == "CH130"] == [
        "'SecretIntent'/'extra': apiVersion 'secrets.example.com/v1' is not chamberlain's "
        "(chamberlain.dev/v1alpha1); the document is not read as intent, so nothing validates, renders or rotates "
        "it: write apiVersion: chamberlain.dev/v1alpha1"]


@pytest.mark.parametrize("api", ["example.com/v1", "v1", "platform.example.io/v1alpha1", "apps/v1",
                                 "chamberlain-ops.example.com/v1"])
@pytest.mark.parametrize("kind", ["Platform", "RotationPolicy", "UnsealShares"])
def test_other_tools_kinds_named_like_chamberlains_are_no_finding(repo: Path, api: str, kind: str) -> None:
    # A monorepo holds other tools' manifests; Platform and RotationPolicy are common kind names.
    (repo / "infra.yaml").write_text(f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: theirs}}\nspec: {{a: 1}}\n")
    code, found = _validate(repo)
    assert code == 0 and found == []


def test_the_near_miss_test_is_linear_on_a_huge_apiversion() -> None:
    start = time.process_time()
    for _ in range(100):
        assert not near_miss_group("chamberlain" * 100_000 + ".dev/v1")
        assert not near_miss_group("x" * 1_000_000)
    assert time.process_time() - start < 2  # one split, then at most a few dozen characters compared


# ------------------------------------------------------------------------------------------------ follow-ons


def test_a_reference_to_an_invalid_policy_says_it_is_declared_but_invalid(repo: Path) -> None:
    platform = repo / "platform.yaml"
    platform.write_text(platform.read_text().replace("ttl: 90d", "ttl: 90days"))
    code, found = _validate(repo)
    assert code == 1  # the policy's own CH005 still fails the repository
    assert any(f["rule"] == "CH005" and f["file"] == "platform.yaml" for f in found)
    messages = [f["message"] for f in found if f["rule"] == "CH011"]
    assert messages and all("'standard' is declared in platform.yaml:15 but invalid" in m for m in messages)
    assert not any("not declared" in m for m in messages)


def test_a_reference_to_an_invalid_intent_says_it_is_declared_but_invalid(repo: Path) -> None:
    intents = repo / "intents" / "app.yaml"
    intents.write_text(intents.read_text().replace("{name: pg-admin}", "{name: pg-admin}\nbogus: 1"))
    code, found = _validate(repo)
    assert code == 1
    assert [f["message"] for f in found if f["rule"] == "CH014"] == [
        "SecretIntent/app-db: adminIntent 'pg-admin' is declared in intents/app.yaml:22 but invalid (see the "
        "findings there)"]


def test_a_reference_to_an_object_under_a_misspelt_group_says_where_it_is(repo: Path) -> None:
    intents = repo / "intents" / "app.yaml"
    admin = "apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: {name: pg-admin}"
    intents.write_text(intents.read_text().replace(admin, admin.replace("chamberlain.dev", "chamberlian.dev")))
    code, found = _validate(repo)
    assert code == 1  # the reference fails, so the CH130 warning is not all there is
    assert [f["message"] for f in found if f["rule"] == "CH014"] == [
        "SecretIntent/app-db: adminIntent 'pg-admin' is declared in intents/app.yaml:22 with apiVersion "
        "'chamberlian.dev/v1alpha1', so it is not read as intent (CH130)"]


def test_a_reference_to_a_missing_intent_still_says_not_declared(repo: Path) -> None:
    intents = repo / "intents" / "app.yaml"
    intents.write_text(intents.read_text().replace("adminIntent: pg-admin", "adminIntent: pg-nobody"))
    _, found = _validate(repo)
    assert [f["message"] for f in found if f["rule"] == "CH014"] == [
        "SecretIntent/app-db: adminIntent 'pg-nobody' is not a declared SecretIntent"]


@pytest.mark.parametrize(("text", "why"), [
    ("", "this file is empty"),
    ("# to do\n", "this file holds no YAML document"),
    ("a: [1\n", "this file could not be read as YAML (see the finding there)"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "this file holds no chamberlain Platform"),
])
def test_no_platform_blames_the_platform_file(repo: Path, text: str, why: str) -> None:
    (repo / "platform.yaml").write_text(text)
    code, found = _validate(repo)
    assert code == 1
    assert [(f["file"], f["message"]) for f in found if f["rule"] == "CH007"] == [
        ("platform.yaml", f"no Platform found: {why}; an intent repository declares exactly one")]


def test_an_invalid_platform_is_blamed_where_it_is_declared(repo: Path) -> None:
    platform = repo / "platform.yaml"
    platform.write_text(platform.read_text().replace("metadata: {name: corpus}", "metadata: {name: corpus}\nbogus: 1"))
    code, found = _validate(repo)
    assert code == 1
    assert [(f["file"], f["line"], f["message"]) for f in found if f["rule"] == "CH007"] == [
        ("platform.yaml", 1, "Platform/corpus is declared here but invalid (see the findings there), so the "
                             "repository has no valid Platform; an intent repository declares exactly one")]


def test_a_misspelt_platform_is_blamed_where_it_is_declared(repo: Path) -> None:
    platform = repo / "platform.yaml"
    platform.write_text(platform.read_text().replace("chamberlain.dev/v1alpha1\nkind: Platform",
                                                     "chamberlian.dev/v1alpha1\nkind: Platform"))
    _, found = _validate(repo)
    assert [(f["file"], f["line"]) for f in found if f["rule"] in ("CH007", "CH130")] == [
        ("platform.yaml", 1), ("platform.yaml", 1)]


# ------------------------------------------------------------------------------------------------ CH001 and tabs


def test_a_tab_in_indentation_is_named_with_its_column(repo: Path) -> None:
    intents = repo / "intents" / "app.yaml"
    lines = intents.read_text().splitlines(keepends=True)
    assert lines[4] == "  owner: team-app\n"
    lines[4] = "\towner: team-app\n"
    intents.write_text("".join(lines))
    code, found = _validate(repo)
    assert code == 1
    assert [(f["file"], f["line"], f["message"]) for f in found if f["rule"] == "CH001"] == [
        ("intents/app.yaml", 5, "YAML syntax error: a tab character at column 1: YAML indentation uses spaces, not "
                                "tabs (found character that cannot start any token)")]
    assert "intents/app.yaml:5:1: error CH001" in _wide(repo)


def test_a_tab_after_spaces_gives_its_own_column(repo: Path) -> None:
    intents = repo / "intents" / "app.yaml"
    intents.write_text(intents.read_text().replace("  purpose: Postgres", " \tpurpose: Postgres"))
    _, found = _validate(repo)
    assert [(f["line"], "a tab character at column 2" in f["message"]) for f in found if f["rule"] == "CH001"] == [
        (6, True)]
    assert "intents/app.yaml:6:2: error CH001" in _wide(repo)


def test_other_syntax_errors_carry_the_column_too(repo: Path) -> None:
    (repo / "intents" / "broken.yaml").write_text("apiVersion: chamberlain.dev/v1alpha1\nkind: [SecretIntent\n")
    _, found = _validate(repo)
    assert [f["message"] for f in found if f["rule"] == "CH001"] == [
        "YAML syntax error: did not find expected ',' or ']'"]
    assert "intents/broken.yaml:3:1: error CH001" in _wide(repo)
    sarif = json.loads(run_cli("validate", str(repo), "-o", "sarif", "--no-cache").out)
    regions = [r["locations"][0]["physicalLocation"]["region"] for r in sarif["runs"][0]["results"]
               if r["ruleId"] == "CH001"]
    assert regions == [{"startLine": 3, "startColumn": 1}]
