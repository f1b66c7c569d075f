"""No input makes the checker crash: oversized, binary, deep and self-referencing files each become a finding."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import CORPUS, run_cli


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", root)
    return root


def _validate(root: Path) -> list[dict[str, object]]:
    result = run_cli("validate", str(root), "-o", "json")
    assert "Traceback" not in result.out + result.err
    assert result.code == 1, result.err
    findings: list[dict[str, object]] = json.loads(result.out)["results"]
    return findings


def test_fifty_megabyte_yaml_is_refused_not_parsed(repo: Path) -> None:
    big = repo / "intents" / "huge.yaml"
    with big.open("w") as fh:
        line = "- " + "x" * 1000 + "\n"
        for _ in range(50 * 1024):
            fh.write(line)
    findings = _validate(repo)
    assert any(f["rule"] == "CH002" and f["file"] == "intents/huge.yaml" for f in findings)


def test_random_binary_with_yaml_suffix(repo: Path) -> None:
    (repo / "intents" / "noise.yaml").write_bytes(os.urandom(64 * 1024))
    findings = _validate(repo)
    assert any(f["rule"] in {"CH001", "CH002"} and f["file"] == "intents/noise.yaml" for f in findings)


def test_valid_utf8_garbage(repo: Path) -> None:
    (repo / "intents" / "junk.yaml").write_text("{{{: ]]] ::: \t- - ? !!python/object:os.system ['x']\n")
    findings = _validate(repo)
    assert any(f["rule"] == "CH001" for f in findings)


def test_python_tags_are_not_constructed(repo: Path) -> None:
    (repo / "intents" / "tag.yaml").write_text("a: !!python/object/apply:os.system ['true']\n")
    findings = _validate(repo)
    assert any(f["file"] == "intents/tag.yaml" for f in findings)


def test_deep_nesting_ten_thousand_levels(repo: Path) -> None:
    (repo / "intents" / "deep.yaml").write_text("[" * 10_000 + "]" * 10_000 + "\n")
    findings = _validate(repo)
    assert any(f["rule"] == "CH002" for f in findings)


def test_alias_cycle_through_merge_keys(repo: Path) -> None:
    (repo / "intents" / "merge.yaml").write_text("a: &a {x: 1}\nb: {<<: *a, y: 2}\nc: &c [*a, *a]\nd: [*c, *c]\n")
    # Harmless aliases are fine: the file is not an intent, so it just parses.
    result = run_cli("validate", str(repo))
    assert result.code == 0, result.out + result.err


def test_scalar_and_list_documents_are_ignored(repo: Path) -> None:
    (repo / "intents" / "list.yaml").write_text("- 1\n- 2\n---\njust a string\n---\n")
    result = run_cli("validate", str(repo))
    assert result.code == 0, result.out + result.err


def test_chamberlain_kind_that_is_not_a_mapping(repo: Path) -> None:
    (repo / "intents" / "weird.yaml").write_text(
        "apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: [a, b]\nspec: 3\n"
    )
    findings = _validate(repo)
    assert {f["rule"] for f in findings if f["file"] == "intents/weird.yaml"} <= {"CH003", "CH006"}
