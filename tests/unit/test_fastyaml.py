"""The rapidyaml fast path against PyYAML's checked loader: for every document, the same data (types and key order
included) or a decline. Never data where PyYAML refuses the document."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chamberlain.intent import fastyaml, loader
from chamberlain.safeyaml import StrictLoader

pytestmark = pytest.mark.skipif(not fastyaml.available(), reason="rapidyaml is not installed")

ROOT = Path(__file__).resolve().parents[2]


def _reference(text: str) -> tuple[bool, Any]:
    try:
        return True, yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return False, None


def same(a: Any, b: Any) -> bool:
    """Equal with types and key order: 1 == 1.0 == True for ``==``, not here."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def agrees(text: str) -> bool:
    """The fast path declined, or gave exactly what the checked loader gives."""
    with fastyaml.quiet_stderr():
        fast = fastyaml.load(text)
    if fast is fastyaml.DECLINED:
        return True
    ok, ref = _reference(text)
    assert ok, f"fast path accepted what PyYAML refuses: {text!r} -> {fast!r}"
    assert same(ref, fast), f"{text!r}: PyYAML {ref!r}, fast {fast!r}"
    return False


def _corpus() -> list[Path]:
    return sorted(p for d in ("examples", "tests") for p in (ROOT / d).rglob("*")
                  if p.suffix in (".yaml", ".yml") and p.is_file())


def test_every_document_of_the_examples_and_fixtures_agrees() -> None:
    answered = total = 0
    for path in _corpus():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for start, end in loader._split_documents(text):
            total += 1
            answered += not agrees(text[start:end])
    assert total > 500
    assert answered > total // 2, f"the fast path answered only {answered} of {total} documents"


_SPECIAL = ["yes", "No", "on", "OFF", "y", "n", "true", "False", "TRUE", "~", "null", "Null", "", " ", "0", "-0",
            "+1", "017", "08", "0x1F", "0b101", "1_000", "12:30", "190:20:30", "1.5", ".5", "-.5", "5.", "1e3",
            "1.0e+3", ".inf", "-.Inf", ".nan", "NaN", "2026-01-31", "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10 -5", "<<", "=", "!", "&a", "*a", "- x", "a: b", "#", "a #b", "'", '"', "\\",
            "%", "@", "`", "{", "}", "[", "]", ",", "?", "|", ">", "a\nb", " lead", "trail ", "é", "日本",
            "\u2028", "\x85", "\t", "\r", "9" * 30]
_scalars = st.one_of(
    st.sampled_from(_SPECIAL), st.text(max_size=12), st.integers(), st.booleans(), st.none(),
    st.floats(allow_nan=False), st.dates(min_value=dt.date(1000, 1, 1)),
)
_keys = st.one_of(st.sampled_from(_SPECIAL), st.text(min_size=0, max_size=10), st.integers(-5, 99))
_data = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(_keys, kids, max_size=4)), max_leaves=20)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_data, flow=st.sampled_from([None, False, True]), style=st.sampled_from([None, '"', "'", "|", ">"]),
       width=st.sampled_from([8, 80, 1000]), indent=st.sampled_from([2, 4]), unicode=st.booleans())
def test_dumped_documents_agree(data: Any, flow: bool | None, style: str | None, width: int, indent: int,
                                unicode: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, default_style=style, width=width, indent=indent,
                          allow_unicode=unicode, sort_keys=False)
    agrees(text)


_TOKENS = ["a", "b", "key", "yes", "1", "0x1", "~", "null", "'q'", '"d"', '"e\\tf"', "'it''s'", "[", "]", "{",
           "}", ",", ": ", ":", "- ", "-", "#c", " #c", "|", "|-", "|+", ">", ">2", "  ", "   ", "\n", "\n  ",
           "\n- ", "\n  - ", "---", "...", "?", "&x", "*x", "!t", "%", "@", "`", "\t", "\r\n", "é", '"', "'",
           "\\", "1.5", "-1", "2026-01-01"]


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=30))
@example(["key", ": ", "a", "\n", "key", ": ", "b"])
@example([": ", "a"])
@example(["a", ": ", "b", "\n  ", "c"])
@example(["a", ": ", "[", "1", ",", "\n  ", "2", "]"])
def test_fuzzed_texts_agree_or_decline(tokens: list[str]) -> None:
    agrees("".join(tokens))


@pytest.mark.parametrize("text", [
    "a: yes\n", "a: '1'\n", "a: 1.5\n", "a: &x 1\nb: *x\n", "a: !!str 1\n", "? a\n: b\n", "<<: {a: 1}\n",
    "a: 1\na: 2\n", ": x\n", "a:\tb\n", "a: b\r\n", "a: \x85\n", "%YAML 1.1\n---\na: 1\n", "1: a\n",
    "a: 2026-01-01\n", "a: .inf\n", "a: [1, 2\n", "a: {b: 1, b: 2}\n",
])
def test_what_the_fast_path_declines(text: str) -> None:
    with fastyaml.quiet_stderr():
        assert fastyaml.load(text) is fastyaml.DECLINED


@pytest.mark.parametrize(("text", "data"), [
    ("a: b\nc: [1, -2, x]\nd: {e: null, f: true, g: false}\nh:\n", {"a": "b", "c": [1, -2, "x"],
                                                                  "d": {"e": None, "f": True, "g": False},
                                                                  "h": None}),
    ("---\n- 'q'\n- \"d\\u00e9\"\n- |\n  lit\n  eral\n", ["q", "d\u00e9", "lit\neral\n"]),
    ("a: multi\n  line\n", {"a": "multi line"}),
])
def test_what_the_fast_path_answers(text: str, data: Any) -> None:
    with fastyaml.quiet_stderr():
        got = fastyaml.load(text)
    assert same(got, data)
    assert same(_reference(text)[1], data)


def test_rapidyaml_errors_stay_off_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    with fastyaml.quiet_stderr():
        assert fastyaml.load("key: value: x\n") is fastyaml.DECLINED
    assert capfd.readouterr().err == ""


def _stream_agrees(text: str) -> bool:
    """Whole-file loading agrees with PyYAML document by document (the loader's spans), or declines."""
    spans = loader._split_documents(text)
    with fastyaml.quiet_stderr():
        got = fastyaml.load_stream(text, spans)
    if got is None:
        return False
    assert len(got) == len(spans)
    for (start, end), data in zip(spans, got, strict=True):
        ok, ref = _reference(text[start:end])
        assert ok, f"stream accepted what PyYAML refuses: {text[start:end]!r}"
        assert same(ref, data), f"{text!r}: PyYAML {ref!r}, stream {data!r}"
    return True


def test_whole_files_of_the_examples_and_fixtures_agree() -> None:
    answered = 0
    for path in _corpus():
        try:
            answered += _stream_agrees(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    assert answered > 100


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(_data, max_size=4), flow=st.sampled_from([None, False, True]),
       lead=st.sampled_from(["", "---\n", "# c\n", "# c\n---\n"]),
       sep=st.sampled_from(["---\n", "--- # c\n", "---\n# c\n", "---\n---\n", "...\n---\n", "--- a\n"]))
def test_dumped_streams_agree(docs: list[Any], flow: bool | None, lead: str, sep: str) -> None:
    parts = [yaml.safe_dump(d, default_flow_style=flow, sort_keys=False, explicit_start=False) for d in docs]
    _stream_agrees(lead + sep.join(parts))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([*_TOKENS, "\n---\n", "\n---\n", "\n", "a: b\n"]), max_size=40))
def test_fuzzed_streams_agree_or_decline(tokens: list[str]) -> None:
    _stream_agrees("".join(tokens))
