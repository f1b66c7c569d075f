"""The YAML writer: what it writes loads back as exactly the data given, in every YAML 1.1 reader's eyes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chamberlain.render.yamlio import dump_json, dump_yaml, dump_yaml_documents
from tests.unit.test_render import REPOS, docs, render

_key = st.text(min_size=1, max_size=12)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**53), max_value=2**53),
    st.text(max_size=30),
    st.sampled_from(["yes", "No", "ON", "off", "y", "N", "null", "~", "1h", "0x1F", "1e3", "1_000", "12:30",
                     "2024-01-01", ".inf", "-", "- a", "a: b", "#x", "&a", "*a", "!t", "@x", "`x", "'q'", '"q"',
                     "%x", "|", ">", "[a]", "{a}", "a #b", " lead", "trail ", "multi\nline", "tab\tx",
                     "\x85nel", "\u2028ls", "émoji 😀", "", "/path/x", "a/b.c-d_e@f"]),
)
_data = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_key, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_key, _data, max_size=6))
def test_round_trip(data: dict[str, Any]) -> None:
    assert yaml.safe_load(dump_yaml(data)) == (data or {})


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Y", "NO", "true", "False", "null"])
def test_yaml_1_1_words_are_quoted(word: str) -> None:
    # PyYAML (YAML 1.1) would already read these back as booleans; Go's yaml.v2 reads y/n as booleans too.
    assert dump_yaml({word: word}) == f'"{word}": "{word}"\n'


def test_block_style_and_sorted_keys() -> None:
    text = dump_yaml({"b": [{"q": 1, "p": [1, 2]}, "s"], "a": {"d": {}, "c": []}})
    assert text == "a:\n  c: []\n  d: {}\nb:\n- p:\n  - 1\n  - 2\n  q: 1\n- s\n"
    assert dump_yaml_documents([{"a": 1}, {"b": 2}]) == "---\na: 1\n---\nb: 2\n"


def test_rejects_what_it_cannot_write() -> None:
    with pytest.raises(TypeError):
        dump_yaml({"a": object()})
    with pytest.raises(TypeError):
        dump_yaml({1: "a"})  # type: ignore[dict-item]


@pytest.mark.parametrize("name", sorted(REPOS))
def test_rendered_documents_equal_what_pyyaml_reads(name: str) -> None:
    for _, doc in docs(render(name)):
        assert yaml.safe_load(dump_yaml(doc)) == doc
        # Same data as PyYAML's own dumper would have written.
        assert yaml.safe_load(yaml.safe_dump(doc)) == doc


def test_json_is_sorted_and_ends_with_newline() -> None:
    assert dump_json({"b": 1, "a": [2]}) == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
