"""Fingerprints and the baseline file (``validate --baseline`` / ``--write-baseline``).

Pure tests of the format, then the CLI on a copy of the corpus base with a planted (random, fake) credential."""

from __future__ import annotations

import json
import random
import shutil
import string
import time
from pathlib import Path

import pytest
import yaml

from chamberlain.findings import Finding
from chamberlain.scan.baseline import (
    HEADER,
    MAX_BASELINE_BYTES,
    BaselineError,
    baseline_text,
    load_baseline,
    parse_lines,
    stale_entries,
    write_baseline,
)
from chamberlain.scan.fingerprint import Fingerprint, FingerprintError, fingerprint, parse
from tests.conftest import CORPUS, run_cli

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def token(seed: int) -> str:
    rng = random.Random(seed)
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


def tree_finding(file: str = "app/config.yaml", line: int | None = 3, kind: str = "github-pat",
                 rule: str = "CH024") -> Finding:
    return Finding(file, line, rule, f"looks like a token [{kind}] (value not shown)", column=7, subject=kind)


# ------------------------------------------------------------------------------------------------ fingerprints


@pytest.mark.parametrize(("finding", "expected"), [
    (tree_finding(), "app/config.yaml:CH024:github-pat:3"),
    (tree_finding(line=None, kind="private-key"), "app/config.yaml:CH024:private-key:0"),
    (tree_finding(rule="CH020"), "app/config.yaml:CH020:github-pat:3"),
    (Finding("s.yaml", 4, "CH020", "Secret/x holds 1 plaintext value(s)", object="Secret/x"),
     "s.yaml:CH020:literal-secret:4"),
    (Finding("a.yaml", 9, "CH126", "commit ...", object=COMMIT, subject="aws-access-key-id"),
     f"{COMMIT}:a.yaml:CH126:aws-access-key-id:9"),
    (Finding("a.yaml", 9, "CH003", "schema"), None),
], ids=["tree", "binary-line-0", "intent", "no-kind-uses-slug", "history", "not-a-credential"])
def test_fingerprint_format(finding: Finding, expected: str | None) -> None:
    assert fingerprint(finding) == expected


def test_fingerprint_never_depends_on_the_value_or_the_message() -> None:
    # Two findings at one place with different messages (and, in reality, values) share one fingerprint.
    a = tree_finding()
    b = Finding(a.file, a.line, a.rule, "another message", subject=a.subject)
    assert fingerprint(a) == fingerprint(b)


@pytest.mark.parametrize("file", [
    "plain.yaml", "dir/with:colon.yaml", "a:CH024:x:1", "100%.yaml", "#hash.yaml", " lead.yaml", "trail.yaml ",
    "new\nline.yaml", "tab\there", "ünïcode/ファイル.yaml",
], ids=["plain", "colon", "looks-like-fingerprint", "percent", "leading-hash", "leading-space", "trailing-space",
        "newline", "tab", "unicode"])
@pytest.mark.parametrize("commit", [None, COMMIT], ids=["tree", "history"])
def test_fingerprint_round_trips(file: str, commit: str | None) -> None:
    fp = Fingerprint(file, "CH126" if commit else "CH024", "github-pat", 12, commit)
    text = str(fp)
    assert "\n" not in text and not text.startswith(("#", " ")) and text == text.strip()
    assert parse(text) == fp
    # and through a baseline file's line handling
    assert parse_lines([HEADER, text, ""], "b").entries == (fp,)


@pytest.mark.parametrize(("text", "words"), [
    ("app.yaml:CH024:github-pat", "expected <file>"),
    ("app.yaml:CH024:github-pat:x", "line must be a number"),
    ("app.yaml:CH024:github-pat:-1", "line must be a number"),
    ("app.yaml:CH024:git hub:1", "not a credential kind"),
    ("app.yaml:X24:github-pat:1", "not a rule id"),
    ("app.yaml:CH003:github-pat:1", "not a credential rule"),
    ("app.yaml:CH126:github-pat:1", "40-hex commit"),
    ("abc:app.yaml:CH126:github-pat:1", "40-hex commit"),
    (":CH024:github-pat:1", "file is empty"),
], ids=["too-few-fields", "line-not-number", "negative-line", "bad-kind", "bad-rule", "other-rule",
        "history-without-commit", "short-commit", "empty-file"])
def test_malformed_fingerprint_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(FingerprintError, match=words):
        parse(text)


# ------------------------------------------------------------------------------------------------ baseline file


def test_baseline_comments_blank_lines_and_acceptance(tmp_path: Path) -> None:
    path = tmp_path / "b"
    path.write_text("# reviewed 2026-12\n\n   app/config.yaml:CH024:github-pat:3  \n# done\n"
                    "app/config.yaml:CH024:github-pat:3\n")
    baseline = load_baseline(path)
    assert len(baseline.entries) == 1  # duplicates collapse
    assert baseline.accepts(tree_finding())
    assert not baseline.accepts(tree_finding(line=4))  # another place is a new finding
    assert not baseline.accepts(tree_finding(kind="slack-token"))
    assert not baseline.accepts(Finding("app/config.yaml", 3, "CH003", "schema"))


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "b"
    path.write_text("# ok\napp.yaml:CH024:github-pat:3\napp.yaml:CH024:github-pat\n")
    with pytest.raises(BaselineError, match=rf"{path}:3: not a fingerprint: expected"):
        load_baseline(path)


@pytest.mark.parametrize("case", ["missing", "directory", "not-utf8", "long-line"])
def test_unusable_baseline_is_a_usage_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "b"
    if case == "directory":
        path.mkdir()
    elif case == "not-utf8":
        path.write_bytes(b"# fine\n\xff\xfe:CH024:x:1\n")
    elif case == "long-line":
        path.write_text("a" * 10_000 + ":CH024:x:1\n")
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    assert info.value.exit_code == 2
    assert str(path) in str(info.value)


def test_a_100_mb_baseline_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    with path.open("wb") as handle:  # sparse: 100 MB long, nothing written
        handle.truncate(100 * 1024 * 1024)
    started = time.perf_counter()
    with pytest.raises(BaselineError, match="larger than 4 MiB"):
        load_baseline(path)
    assert time.perf_counter() - started < 1
    assert MAX_BASELINE_BYTES < 100 * 1024 * 1024


def test_baseline_reading_is_linear(tmp_path: Path) -> None:
    """~40,000 entries (just under the size limit) load in well under a second."""
    path = tmp_path / "b"
    lines = [f"dir{i % 97}/file{i}.yaml:CH024:github-pat:{i % 500}" for i in range(90_000)]
    text = "\n".join(lines)
    text = text[: MAX_BASELINE_BYTES - 1000].rsplit("\n", 1)[0] + "\n"
    path.write_text(text)
    started = time.perf_counter()
    baseline = load_baseline(path)
    # linear: well under a second quiet; a quadratic read of 40k entries takes minutes (5 s leaves room for a
    # machine shared with the lab tests)
    assert time.perf_counter() - started < 5
    assert len(baseline.entries) > 40_000


def test_write_baseline_is_sorted_deterministic_and_holds_only_credentials(tmp_path: Path) -> None:
    findings = [tree_finding("z.yaml"), tree_finding("a.yaml", line=None), tree_finding("a.yaml"),
                tree_finding("a.yaml"), Finding("a.yaml", 1, "CH003", "schema")]
    path = tmp_path / "b"
    assert write_baseline(findings, path) == 3
    text = path.read_text()
    assert text == baseline_text(reversed(findings))
    assert text.startswith(HEADER) and "not a value" in HEADER
    assert text[len(HEADER):].splitlines() == ["a.yaml:CH024:github-pat:0", "a.yaml:CH024:github-pat:3",
                                               "z.yaml:CH024:github-pat:3"]
    baseline = load_baseline(path)
    assert all(baseline.accepts(f) for f in findings[:4])


def test_stale_entries_ignore_history_unless_it_was_scanned() -> None:
    baseline = parse_lines(["a.yaml:CH024:github-pat:3", f"{COMMIT}:b.yaml:CH126:github-pat:1",
                            "gone.yaml:CH024:github-pat:1"], "b")
    found = [tree_finding("a.yaml")]
    assert stale_entries(baseline, found, history=False) == ["gone.yaml:CH024:github-pat:1"]
    assert stale_entries(baseline, found, history=True) == [f"{COMMIT}:b.yaml:CH126:github-pat:1",
                                                            "gone.yaml:CH024:github-pat:1"]


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def leaky(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    (repo / "config").mkdir()
    (repo / "config" / "app.env").write_text(f"# app settings\nGITHUB_TOKEN={token(1)}\n")
    return repo


def test_write_then_accept_then_a_new_finding_still_fails(leaky: Path, tmp_path: Path) -> None:
    base = tmp_path / ".chamberlain-baseline"
    assert run_cli("validate", str(leaky)).code == 1
    written = run_cli("validate", str(leaky), "--write-baseline", str(base))
    assert written.code == 0, written.err
    assert "review every entry" in written.err
    assert base.read_text().splitlines()[-1] == "config/app.env:CH024:github-pat:2"

    accepted = run_cli("validate", str(leaky), "--baseline", str(base))
    assert accepted.code == 0, accepted.out + accepted.err
    assert "(accepted by the baseline)" in accepted.out
    assert "1 accepted by the baseline" in accepted.err

    (leaky / "config" / "other.env").write_text(f"TOKEN={token(2)}\n")
    new = run_cli("validate", str(leaky), "--baseline", str(base))
    assert new.code == 1
    assert "other.env:1: CH024" in new.out and "1 error" in new.err


def test_machine_outputs_carry_fingerprint_and_acceptance(leaky: Path, tmp_path: Path) -> None:
    base = tmp_path / "b"
    base.write_text("config/app.env:CH024:github-pat:2\nconfig/gone.env:CH024:github-pat:1\n")
    out = run_cli("validate", str(leaky), "--baseline", str(base), "-o", "json")
    assert out.code == 0, out.err
    data = json.loads(out.out)
    (result,) = [r for r in data["results"] if r["rule"] == "CH024"]
    assert result["fingerprint"] == "config/app.env:CH024:github-pat:2"
    assert result["accepted"] == "baseline"
    assert data["ok"] is True and data["accepted"] == 1
    assert data["staleBaseline"] == ["config/gone.env:CH024:github-pat:1"]
    assert yaml.safe_load(run_cli("validate", str(leaky), "--baseline", str(base), "-o", "yaml").out) == data

    sarif = json.loads(run_cli("validate", str(leaky), "--baseline", str(base), "-o", "sarif").out)
    (res,) = sarif["runs"][0]["results"]
    assert res["partialFingerprints"]["chamberlainCredential/v1"] == "config/app.env:CH024:github-pat:2"
    assert "chamberlain/v1" in res["partialFingerprints"]  # the existing alert identity is kept
    assert res["suppressions"][0]["kind"] == "external"

    wide = run_cli("validate", str(leaky), "-o", "wide")
    assert "fingerprint=config/app.env:CH024:github-pat:2" in wide.out
    text = run_cli("validate", str(leaky), "--baseline", str(base))
    assert "stale entry" in text.err and "config/gone.env:CH024:github-pat:1" in text.err


def test_unaccepted_sarif_result_has_no_suppression(leaky: Path) -> None:
    sarif = json.loads(run_cli("validate", str(leaky), "-o", "sarif").out)
    (res,) = sarif["runs"][0]["results"]
    assert "suppressions" not in res


@pytest.mark.parametrize("content", [None, "not a fingerprint\n"], ids=["missing", "malformed"])
def test_bad_baseline_is_a_usage_error(leaky: Path, tmp_path: Path, content: str | None) -> None:
    base = tmp_path / "b"
    if content is not None:
        base.write_text(content)
    result = run_cli("validate", str(leaky), "--baseline", str(base))
    assert result.code == 2, result.out + result.err
    assert str(base) in result.err and "Traceback" not in result.err
    if content is not None:
        assert f"{base}:1:" in result.err


def test_the_value_never_appears_in_any_output_or_the_baseline(leaky: Path, tmp_path: Path) -> None:
    base = tmp_path / "b"
    run_cli("validate", str(leaky), "--write-baseline", str(base))
    value = token(1)
    assert value not in base.read_text() and value[4:12] not in base.read_text()
    for args in ([], ["-o", "wide"], ["-o", "json"], ["-o", "yaml"], ["-o", "sarif"]):
        for baseline in ([], ["--baseline", str(base)]):
            result = run_cli("validate", str(leaky), *args, *baseline)
            assert value[4:12] not in result.out + result.err, args


def test_a_reviewed_finding_stops_no_command_once_accepted(leaky: Path, tmp_path: Path) -> None:
    """New user: validate passed with --baseline, but render had no such option and refused the repository for
    the very findings the baseline accepts; and every command behind the gate (plan, the controller) would too."""
    from chamberlain.checks.gate import load_valid

    entry = "config/app.env:CH024:github-pat:2\n"
    given = tmp_path / "reviewed"
    given.write_text(entry)
    refused = run_cli("render", str(leaky), "-o", str(tmp_path / "out0"))
    assert refused.code == 1 and "nothing rendered" in refused.err and not (tmp_path / "out0").exists()
    rendered = run_cli("render", str(leaky), "-o", str(tmp_path / "out1"), "--baseline", str(given))
    assert rendered.code == 0, rendered.out + rendered.err
    assert "(accepted by the baseline)" in rendered.out

    # The repository's own baseline at its root: applied without a flag, by validate, render and the gate alike.
    (leaky / ".chamberlain-baseline").write_text(entry)
    validated = run_cli("validate", str(leaky), "-o", "json")
    assert validated.code == 0, validated.out + validated.err
    data = json.loads(validated.out)
    assert data["ok"] is True and data["errors"] == 0 and data["accepted"] == 1 and data["findings"] == 1
    assert data["baseline"].endswith(".chamberlain-baseline")
    assert run_cli("render", str(leaky), "-o", str(tmp_path / "out2")).code == 0
    assert load_valid(leaky).root == leaky

    # A new credential still stops them all.
    (leaky / "config" / "other.env").write_text(f"TOKEN={token(2)}\n")
    assert run_cli("render", str(leaky), "-o", str(tmp_path / "out3")).code == 1
    assert run_cli("validate", str(leaky)).code == 1


@pytest.mark.parametrize("case", ["malformed", "symlink"])
def test_a_repository_baseline_that_cannot_be_used_is_a_usage_error(leaky: Path, tmp_path: Path,
                                                                     case: str) -> None:
    own = leaky / ".chamberlain-baseline"
    if case == "malformed":
        own.write_text("not a fingerprint\n")
    else:
        (tmp_path / "elsewhere").write_text("config/app.env:CH024:github-pat:2\n")
        own.symlink_to(tmp_path / "elsewhere")
    for args in (["validate", str(leaky)], ["render", str(leaky), "-o", str(tmp_path / "out")]):
        result = run_cli(*args)
        assert result.code == 2, result.out + result.err
        assert ".chamberlain-baseline" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "out").exists()


def test_a_baseline_given_replaces_the_repositorys_own_which_is_then_not_read(leaky: Path, tmp_path: Path) -> None:
    (leaky / ".chamberlain-baseline").write_text("not a fingerprint\n")
    given = tmp_path / "reviewed"
    given.write_text("config/app.env:CH024:github-pat:2\n")
    for args in (["validate", str(leaky)], ["render", str(leaky), "-o", str(tmp_path / "out")]):
        result = run_cli(*args, "--baseline", str(given))
        assert result.code == 0, result.out + result.err
