"""chamberlain.safeyaml and the loader: alias cycles, alias bombs (count and size), duplicate keys, with lines."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest
import yaml

from chamberlain import safeyaml, yamledit
from chamberlain.bootstrap.manifest import prepare_secret
from chamberlain.bootstrap.sops import BootstrapError
from chamberlain.errors import UsageError
from chamberlain.intent.loader import load_repository


@pytest.mark.parametrize(
    "text",
    ["a: &a\n  b: *a\n", "&a [*a]\n", "a: &a\n  - *a\n", "x: &x {y: [1, {z: *x}]}\n",
     "base: &b\n  <<: *b\n"],
    ids=["mapping", "flow-sequence", "block-sequence", "deep", "merge-key"],
)
def test_alias_cycles_are_refused_at_the_anchor(text: str) -> None:
    with pytest.raises(safeyaml.YamlLimitError) as err:
        safeyaml.load(text)
    assert "cycle" in err.value.message and err.value.rule == "CH002"
    assert err.value.line == 1


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.process_time()
    with pytest.raises(safeyaml.YamlLimitError) as err:
        safeyaml.load(billion_laughs())
    assert "alias bomb" in err.value.message
    assert time.process_time() - started < 1.0


def test_expanded_size_is_bounded_not_only_the_node_count() -> None:
    # Few nodes, each a copy of one 100 KB scalar: 500 aliases would render to 50 MB.
    text = 'big: &big "' + "x" * 100_000 + '"\nmany: [' + ", ".join(["*big"] * 500) + "]\n"
    with pytest.raises(safeyaml.YamlLimitError, match="alias bomb"):
        safeyaml.load(text)
    assert safeyaml.load('big: &big "xx"\ntwo: [*big, *big]\n') == {"big": "xx", "two": ["xx", "xx"]}


def test_one_megabyte_of_aliases_is_checked_in_linear_time() -> None:
    # The shape that rendered to 900 MB: a megabyte of aliases to one mid-sized anchor.
    anchor = "a: &a [" + ", ".join(["word"] * 200) + "]\n"
    text = anchor + "b: [" + ", ".join(["*a"] * 250_000) + "]\n"
    assert len(text) > 1_000_000
    started = time.process_time()
    with pytest.raises(safeyaml.YamlLimitError):
        safeyaml.load(text)
    assert time.process_time() - started < 10.0


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: 1\nb: 2\na: 3\n", 3), ("top:\n  x: 1\n  y: 2\n  x: 1\n", 4), ("- {k: 1, k: 2}\n", 1)],
    ids=["top-level", "nested", "flow"],
)
def test_duplicate_keys_are_refused_with_their_line(text: str, line: int) -> None:
    for load in (safeyaml.load, safeyaml.check_text):
        with pytest.raises(safeyaml.YamlLimitError) as err:
            load(text)
        assert err.value.rule == "CH100" and err.value.line == line


def test_duplicate_keys_behind_an_anchor_are_refused_too() -> None:
    with pytest.raises(safeyaml.YamlLimitError, match="duplicate"):
        safeyaml.load("a: &a {k: 1, k: 2}\nb: *a\n")


def test_merge_keys_may_override_what_they_merge() -> None:
    assert safeyaml.load("base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  x: 3\n") == {
        "base": {"x": 1, "y": 2}, "child": {"x": 3, "y": 2}}


def test_int_and_string_keys_are_different_keys() -> None:
    assert safeyaml.load("1: a\n'1': b\n") == {1: "a", "1": "b"}


def test_limit_errors_are_yaml_errors_for_existing_handlers() -> None:
    with pytest.raises(yaml.YAMLError):
        safeyaml.load("a: 1\na: 2\n")
    assert safeyaml.load_all("a: 1\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]


def repo_with(tmp_path: Path, text: str) -> list[tuple[str, int | None, str]]:
    (tmp_path / "x.yaml").write_text(text)
    repo = load_repository(tmp_path, git=None)
    return [(f.file, f.line, f.rule) for f in repo.problems]


def test_the_loader_reports_line_numbers_in_later_documents(tmp_path: Path) -> None:
    text = "a: 1\n---\nb: 1\nc: &c\n  d: *c\n---\ne: 1\ne: 2\n"
    assert repo_with(tmp_path, text) == [("x.yaml", 4, "CH002"), ("x.yaml", 8, "CH100")]


def test_the_loader_refuses_duplicates_on_the_fast_path(tmp_path: Path) -> None:
    assert repo_with(tmp_path, "apiVersion: v1\nkind: ConfigMap\nkind: Secret\n") == [("x.yaml", 3, "CH100")]


def test_round_trip_editors_refuse_what_the_loader_refuses() -> None:
    with pytest.raises(UsageError, match="line 2: duplicate"):
        yamledit.load("a: 1\na: 2\n")
    with pytest.raises(UsageError, match="cycle"):
        yamledit.load("a: &a\n  b: *a\n")
    with pytest.raises(BootstrapError, match="duplicate"):
        prepare_secret("apiVersion: v1\nkind: Secret\nkind: Secret\n", "x", "secret.yaml")


def test_a_flood_of_tiny_documents_is_refused_not_parsed(tmp_path: Path) -> None:
    started = time.process_time()
    assert repo_with(tmp_path, "---\na: 1\n" * 30_000) == [("x.yaml", None, "CH002")]
    assert time.process_time() - started < 5.0


def test_an_impossible_date_is_reported_at_its_line(tmp_path: Path) -> None:
    """`spec.retire.after: 2026-13-45` was a bare ValueError: CH001 at the document's first line, no reason."""
    (tmp_path / "x.yaml").write_text("kind: SecretIntent\nspec:\n  retire: {after: 2026-13-45}\n")
    problems = load_repository(tmp_path, git=None).problems
    assert [(p.line, p.rule) for p in problems] == [(3, "CH001")]
    assert "'2026-13-45' is not a valid date" in problems[0].message and "month" in problems[0].message
    assert safeyaml.load("after: 2026-12-24\n") == {"after": date(2026, 12, 24)}
