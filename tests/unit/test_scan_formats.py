"""The provider token-format table (chamberlain.scan.formats): every row is found where it should be, and only there.

Pure unit tests: the samples are generated from each row's own parts (random, seeded), never real tokens.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
import re2

from chamberlain.scan import formats
from chamberlain.scan.formats import CATEGORIES, FORMATS, Chars, Format, body, context_format, find, sample

PREFIXED = [f for f in FORMATS if not f.context]
KEYWORD_GATED = [f for f in FORMATS if f.context]
REPO = Path(__file__).resolve().parents[2]
UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def _hits(text: str) -> list[tuple[int, int, str]]:
    return [(start, end, fmt.kind) for start, end, fmt in find(text, text.lower())]


def _build(fmt: Format, rng: random.Random, lengths: dict[int, int] | None = None, fill: bool = False) -> str:
    """A token from the parts; `lengths` overrides run lengths by part index; `fill` uses one character per run."""
    out = []
    for i, part in enumerate(fmt.parts):
        if isinstance(part, str):
            out.append(part)
            continue
        count = (lengths or {}).get(i, rng.randint(part.low, part.max))
        if fill:
            out.append(_filler(part) * count)
        else:
            out.append("".join(rng.choice(part.characters) for _ in range(count)))
    return "".join(out)


def _filler(part: Chars) -> str:
    return next((c for c in "xX0" if c in part.characters), part.characters[0])


def _syntaxes(token: str) -> list[tuple[str, int]]:
    """(text, offset of the token) in the syntaxes a token is committed in."""
    texts = [
        f'API_TOKEN="{token}"\n',
        f"settings:\n  api_token: {token}\n",
        f'{{"name": "demo", "api_token": "{token}"}}',
        f"export TOKEN='{token}'; echo done",
    ]
    if UNRESERVED.fullmatch(token):
        texts.append(f"curl https://api.example.com/v1/items?access_token={token}&page=2")
    return [(text, text.index(token)) for text in texts]


# --- the table -----------------------------------------------------------------------------------------------
def test_table_is_well_formed() -> None:
    kinds = [f.kind for f in FORMATS]
    assert len(kinds) == len(set(kinds)), "kinds are unique"
    assert len(FORMATS) >= 200
    for fmt in FORMATS:
        assert re.fullmatch(r"[0-9a-z]+(-[0-9a-z]+)*", fmt.kind), fmt.kind
        assert fmt.category in CATEGORIES, fmt.kind
        assert fmt.label.startswith(("a ", "an ")), fmt.kind
        assert fmt.docs.startswith("https://"), fmt.kind
        assert fmt.needles, fmt.kind
        assert all(n == n.lower() and n for n in fmt.needles), fmt.kind
        assert all(w == w.lower() for w in fmt.context), fmt.kind
        assert any(isinstance(p, Chars) and p.low > 0 for p in fmt.parts), f"{fmt.kind} has a random part"
    assert {f.category for f in FORMATS} == set(CATEGORIES)


def test_alphabets_hold_only_token_characters() -> None:
    # A "-" between two characters is a range: "=-_" would silently admit "[", "\\" and "^".
    for fmt in FORMATS:
        for part in fmt.parts:
            if isinstance(part, Chars):
                assert not set(part.characters) & set("\"'`<>[]\\^{} \t\n"), (fmt.kind, part.alphabet)


def test_every_regex_compiles_under_re2() -> None:
    for fmt in FORMATS:
        assert isinstance(fmt.regex, re2._Regexp), fmt.kind
        assert isinstance(fmt.full_regex, re2._Regexp), fmt.kind


def test_the_private_key_rule_stays_elsewhere() -> None:
    assert not any("PRIVATE KEY" in p for f in FORMATS for p in f.parts if isinstance(p, str))


@pytest.mark.parametrize("fmt", PREFIXED, ids=lambda f: f.kind)
def test_every_needle_occurs_in_every_sample(fmt: Format) -> None:
    rng = random.Random(fmt.kind)
    for _ in range(20):
        token = sample(fmt, rng).lower()
        assert any(needle in token for needle in fmt.needles)


# --- found where it is -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", PREFIXED, ids=lambda f: f.kind)
def test_samples_are_found_at_their_span_in_every_syntax(fmt: Format) -> None:
    rng = random.Random(fmt.kind)
    for _ in range(20):
        token = sample(fmt, rng)
        for text, offset in _syntaxes(token):
            assert (offset, offset + len(token), fmt.kind) in _hits(text), (fmt.kind, text)


@pytest.mark.parametrize("fmt", PREFIXED, ids=lambda f: f.kind)
def test_placeholder_bodies_are_found_and_body_is_the_random_part(fmt: Format) -> None:
    rng = random.Random(fmt.kind)
    token = _build(fmt, rng, fill=True)
    text = f'TOKEN="{token}"'
    # Formats that require a digit and a capital are the only ones whose one-letter fill is not even a shape.
    assert ((7, 7 + len(token), fmt.kind) in _hits(text)) is not bool(fmt.must_contain)
    expected = "".join(_filler(p) * p.low for p in fmt.parts if isinstance(p, Chars))
    lengths = {i: p.low for i, p in enumerate(fmt.parts) if isinstance(p, Chars)}
    token = _build(fmt, rng, lengths=lengths, fill=True)
    if _hits(f'TOKEN="{token}"'):
        assert body(fmt, token) == expected


def test_body_of_a_non_matching_token_is_the_token() -> None:
    assert body(formats.BY_KIND["github-pat"], "not-a-token") == "not-a-token"


# --- not found where it is not ----------------------------------------------------------------------------------
def _last_run(fmt: Format) -> int:
    return max(i for i, p in enumerate(fmt.parts) if isinstance(p, Chars) and p.low > 0)


@pytest.mark.parametrize("fmt", PREFIXED, ids=lambda f: f.kind)
def test_one_character_short_or_long_is_not_found(fmt: Format) -> None:
    rng = random.Random(fmt.kind)
    index = _last_run(fmt)
    run = fmt.parts[index]
    assert isinstance(run, Chars)
    mins = {i: p.low for i, p in enumerate(fmt.parts) if isinstance(p, Chars)}
    maxs = {i: p.max for i, p in enumerate(fmt.parts) if isinstance(p, Chars)}
    for _ in range(5):
        short = _build(fmt, rng, lengths={**mins, index: run.low - 1})
        long = _build(fmt, rng, lengths={**maxs, index: run.max + 1})
        for token in (short, long):
            assert fmt.kind not in {kind for _, _, kind in _hits(f'TOKEN="{token}"\n')}, token


@pytest.mark.parametrize("fmt", PREFIXED, ids=lambda f: f.kind)
def test_wrong_prefix_is_not_found(fmt: Format) -> None:
    rng = random.Random(fmt.kind)
    first = next(i for i, p in enumerate(fmt.parts) if isinstance(p, str))
    literal = fmt.parts[first]
    assert isinstance(literal, str)
    wrong = ("Z" if literal[0] in "qQ" else "Q") + literal[1:]
    parts = (*fmt.parts[:first], wrong, *fmt.parts[first + 1 :])
    mutated = Format(fmt.kind, fmt.label, fmt.category, parts, fmt.needles, docs=fmt.docs)
    for _ in range(5):
        token = sample(mutated, rng)
        assert fmt.kind not in {kind for _, _, kind in _hits(f'TOKEN="{token}"\n')}, token


@pytest.mark.parametrize(
    "fmt", [f for f in PREFIXED if isinstance(f.parts[0], str) and f.parts[0][0].isalnum()], ids=lambda f: f.kind
)
def test_prefix_glued_to_a_longer_identifier_is_not_found(fmt: Format) -> None:
    rng = random.Random(fmt.kind)
    for _ in range(5):
        token = sample(fmt, rng)
        for glue in ("x", "7", "_"):
            assert fmt.kind not in {kind for _, _, kind in _hits(f'TOKEN="{glue}{token}"\n')}, glue + token


@pytest.mark.parametrize("fmt", [f for f in PREFIXED if f.glued], ids=lambda f: f.kind)
def test_prefix_after_a_dot_or_dash_is_part_of_a_name(fmt: Format) -> None:
    rng = random.Random(fmt.kind)
    token = sample(fmt, rng)
    texts = [f"static/favicon.{token}.png"] + ([] if fmt.instance_prefix else [f"cache-{token}"])
    for text in texts:
        assert fmt.kind not in {kind for _, _, kind in _hits(text)}, text


def test_gitlab_tokens_may_carry_an_instance_prefix() -> None:
    token = sample(formats.BY_KIND["gitlab-pat"], random.Random(2))
    text = f"GITLAB_TOKEN=SIE-{token}\n"
    assert (text.index(token), text.index(token) + len(token), "gitlab-pat") in _hits(text)


def test_host_name_prefixes_may_follow_a_dot() -> None:
    fmt = formats.BY_KIND["teams-webhook-url"]
    token = sample(fmt, random.Random(1))
    text = f"url: https://contoso.{token}\n"
    assert (text.index(token), text.index(token) + len(token), fmt.kind) in _hits(text)


def test_a_token_inside_a_longer_base64_blob_is_not_found() -> None:
    rng = random.Random(7)
    blob = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40))
    token = sample(formats.BY_KIND["jfrog-api-key"], rng)
    assert _hits(f"data: {blob}{token}{blob}\n") == []


def test_matches_of_several_formats_resolve_to_the_most_specific() -> None:
    rng = random.Random(3)
    token = sample(formats.BY_KIND["kubernetes-service-account-token"], rng)
    assert [kind for _, _, kind in _hits(f"token: {token}\n")] == ["kubernetes-service-account-token"]


def test_offsets_are_characters_in_non_ascii_text() -> None:
    token = "ghp_" + "aB3" * 12
    text = f"# clé d'accès — ne pas committer\nGITHUB_TOKEN={token}\n"
    ((start, end, kind),) = _hits(text)
    assert (text[start:end], kind) == (token, "github-pat")


def test_several_tokens_next_to_each_other_are_all_found() -> None:
    a, b = "ghp_" + "a1B2" * 9, "glpat-" + "Zy9_" * 5
    text = f"{a},{b} {a}\n"
    assert [kind for _, _, kind in _hits(text)] == ["github-pat", "gitlab-pat", "github-pat"]


def test_whole_text_scan_finds_what_the_windows_find(monkeypatch: pytest.MonkeyPatch) -> None:
    # Past the occurrence budget find() scans the whole text in batches of formats; both paths must agree.
    rng = random.Random(11)
    tokens = [sample(f, rng) for f in PREFIXED]
    text = "".join(f"line {i}: value = {token}\n" for i, token in enumerate(tokens))
    windows = _hits(text)
    monkeypatch.setattr(formats, "_HIT_BUDGET", 1)
    monkeypatch.setattr(formats, "_FIND_NEEDLES", 0)
    assert _hits(text) == windows
    assert len(windows) >= len(tokens) - 3


# --- keyword-gated formats -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", KEYWORD_GATED, ids=lambda f: f.kind)
def test_keyword_gated_formats_count_only_under_their_keyword(fmt: Format) -> None:
    rng = random.Random(fmt.kind)
    for _ in range(20):
        value = sample(fmt, rng)
        key = f"MY_{fmt.context[0].upper()}_SETTING"
        found = context_format(key, value)
        assert found is not None and found.context, (fmt.kind, value)
        # Two rows may share a shape under one keyword (a client ID and a secret): the first one names it.
        assert found.kind == fmt.kind or set(found.context) & set(fmt.context), (fmt.kind, found.kind)
        assert context_format("description", value) is None or "token" in fmt.context
        assert context_format(key, value + "\u00e9") is None
        assert all(fmt.kind != kind for _, _, kind in _hits(f"{key}={value}\n"))


def test_context_format_needs_the_whole_value() -> None:
    uuid = "0a1b2c3d-4e5f-4a6b-8c7d-9e8f7a6b5c4d"
    assert context_format("HEROKU_API_KEY", uuid) is not None
    assert context_format("HEROKU_API_KEY", uuid + "0") is None
    assert context_format("HOSTNAME", uuid) is None


# --- linear time ---------------------------------------------------------------------------------------------
SIZE = 10_000_000


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("ghp_" * (SIZE // 4), id="ghp-repeated"),
        pytest.param(("xoxb-1234567890-" * (SIZE // 16 + 1))[:SIZE], id="xoxb-runs"),
        pytest.param("eyJ" + "A" * SIZE, id="jwt-header-run"),
        pytest.param(("sk-proj-" + "a" * 60 + "T3BlbkFJ") * (SIZE // 76), id="openai-pieces"),
        # Every needle, over and over: every format must then scan the whole text.
        pytest.param("".join(n + " " for f in PREFIXED for n in f.needles) * (SIZE // 4000), id="every-needle"),
        pytest.param("=" * SIZE, id="padding"),
    ],
)
def test_find_is_linear_on_10_mb_adversarial_text(text: str) -> None:
    lowered = text.lower()
    start = time.perf_counter()
    list(find(text, lowered))
    assert time.perf_counter() - start < 1.0


# --- samples and the published list ---------------------------------------------------------------------------
def test_samples_are_reproducible_from_the_seed() -> None:
    fmt = formats.BY_KIND["stripe-live-secret-key"]
    assert sample(fmt, random.Random(1)) == sample(fmt, random.Random(1))


def test_the_committed_doc_is_generated_from_the_table() -> None:
    committed = (REPO / "docs" / "credential-kinds.md").read_text(encoding="utf-8")
    assert committed == formats.render_docs(), "run: python -m chamberlain.scan.formats --write"


def test_the_doc_names_every_kind_and_no_token() -> None:
    doc = formats.render_docs()
    for fmt in FORMATS:
        assert f"`{fmt.kind}`" in doc
    rng = random.Random(0)
    assert all(sample(f, rng) not in doc for f in FORMATS)


def test_the_readme_links_the_doc() -> None:
    assert "docs/credential-kinds.md" in (REPO / "README.md").read_text(encoding="utf-8")
