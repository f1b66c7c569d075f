"""Inputs that cannot hurt (issue 11 item 7): no silent skips in the walk, SOPS recipients read from the stanzas,
plaintext-by-rule in bootstrap files (CH101), credential shapes in metadata (CH102), render's refusals at validate
(CH103)."""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.bootstrap.sops import ENCRYPTED_REGEX
from chamberlain.checks.registry import run_checks
from chamberlain.checks.sops import (
    BOOTSTRAP_ENCRYPTED_REGEX,
    age_stanzas,
    plaintext_rule_problems,
    recipient_problems,
    stanza_problems,
)
from chamberlain.intent.loader import load_repository
from chamberlain.intent.walk import SKIP_DIRS, walk
from chamberlain.render.eso import METADATA_KEY
from chamberlain.render.preflight import METADATA_KEY as PREFLIGHT_KEY

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "tests" / "corpus" / "base"
SOPS = ROOT / "tests" / "fixtures" / "scanning" / "sops"
PLATFORM_RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
AWS = "aws_access_key_id = AKIAQWERTYUIOPASDFGH\n"


# ------------------------------------------------------------------------------------------------ the walk


def test_only_the_root_git_directory_is_skipped_by_name() -> None:
    assert frozenset({".git"}) == SKIP_DIRS


@pytest.mark.parametrize("folder", ["node_modules", ".venv", "__pycache__", ".hg", ".svn", "a/b/node_modules"])
def test_tool_folders_are_walked(tmp_path: Path, folder: str) -> None:
    path = tmp_path / folder / "x" / "config.ini"
    path.parent.mkdir(parents=True)
    path.write_text(AWS)
    files = {f.rel for f in walk(tmp_path, git=None).files}
    assert f"{folder}/x/config.ini" in files
    findings = run_checks(load_repository(tmp_path, git=None))
    assert any(f.rule == "CH024" and f.file == f"{folder}/x/config.ini" for f in findings)


def test_an_ignore_rule_still_leaves_a_tool_folder_out_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.ini").write_text(AWS)
    (tmp_path / ".chamberlainignore").write_text("node_modules/\n")
    result = walk(tmp_path, git=None)
    assert result.files == [f for f in result.files if not f.rel.startswith("node_modules")]
    assert [(e.path, e.reason) for e in result.exclusions] == [("node_modules/", "chamberlainignore")]


def test_a_nested_git_directory_is_reported_not_silently_skipped(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(AWS)
    (tmp_path / "vendor" / ".git").mkdir(parents=True)
    result = walk(tmp_path, git=None)
    assert result.files == []
    assert [(e.path, e.reason) for e in result.exclusions] == [("vendor/.git/", "submodule")]


def test_symlink_loops_cannot_hang_the_walk(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "self").symlink_to(tmp_path / "self")
    started = time.monotonic()
    result = walk(tmp_path, git=None)
    assert time.monotonic() - started < 5
    assert {e.reason for e in result.exclusions} == {"symlink"}


def test_the_walk_is_linear_in_wide_and_deep_trees(tmp_path: Path) -> None:
    for i in range(2000):
        (tmp_path / f"f{i}.txt").write_text("x")
    deep = tmp_path
    for i in range(60):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    started = time.process_time()
    result = walk(tmp_path, git=None)
    assert time.process_time() - started < 5
    assert len(result.files) == 2000


# ------------------------------------------------------------------------------------------------ SOPS stanzas


def armored(stanzas: list[str]) -> str:
    header = b"age-encryption.org/v1\n"
    for kind in stanzas:
        header += f"-> {kind} ".encode() + base64.b64encode(os.urandom(32)).rstrip(b"=") + b"\n"
        header += base64.b64encode(os.urandom(32)).rstrip(b"=") + b"\n"
    header += b"--- " + base64.b64encode(os.urandom(32)).rstrip(b"=") + b"\n" + os.urandom(48)
    body = base64.b64encode(header).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN AGE ENCRYPTED FILE-----\n" + "\n".join(lines) + "\n-----END AGE ENCRYPTED FILE-----\n"


def fixture(name: str = "smtp-relay.sops.yaml") -> dict[str, Any]:
    data = yaml.safe_load((SOPS / name).read_text())
    assert isinstance(data, dict)
    return data


def test_real_sops_output_has_one_x25519_stanza_per_recipient() -> None:
    for name in ("smtp-relay.sops.yaml", "smtp-relay.two-recipients.sops.yaml"):
        meta = fixture(name)["sops"]
        assert all(age_stanzas(e["enc"]) == ["X25519"] for e in meta["age"])
        assert stanza_problems(meta) == []


@pytest.mark.parametrize(
    ("stanzas", "fragment"),
    [(["X25519", "X25519"], "2 recipient stanza(s)"), (["X25519", "scrypt"], "scrypt"),
     (["ssh-ed25519"], "ssh-ed25519"), (["piv-p256"], "piv-p256"), ([], "0 recipient stanza(s)")],
    ids=["hidden-second-recipient", "passphrase", "ssh", "plugin", "none"],
)
def test_a_reader_hidden_in_the_stanzas_fails_the_recipient_check(stanzas: list[str], fragment: str) -> None:
    meta = fixture()["sops"]
    meta["age"][0]["enc"] = armored(stanzas)
    # The label still names exactly the Platform's recipient: that alone used to pass.
    assert recipient_problems(meta, [PLATFORM_RECIPIENT]) == []
    problems = stanza_problems(meta)
    assert [loc for loc, _ in problems] == [("age", 0, "enc")] and fragment in problems[0][1]


@pytest.mark.parametrize("enc", ["not armor",
                                 "-----BEGIN AGE ENCRYPTED FILE-----\n!!!\n-----END AGE ENCRYPTED FILE-----",
                                 armored(["X25519"]).replace("YWdl", "eHh4", 1)])
def test_an_unreadable_wrapped_key_is_reported(enc: str) -> None:
    meta = fixture()["sops"]
    meta["age"][0]["enc"] = enc
    assert [loc for loc, _ in stanza_problems(meta)] == [("age", 0, "enc")]


@pytest.mark.parametrize("extra", [{"pgp": "FINGERPRINT"}, {"kms": {"arn": "x"}}, {"hc_vault": [{"x": 1}]},
                                   {"azure_kv": [{}]}, {"gcp_kms": [{"resource_id": "x"}]}])
def test_any_other_master_key_stanza_is_reported_whatever_its_shape(extra: dict[str, Any]) -> None:
    meta = {**fixture()["sops"], **extra}
    problems = recipient_problems(meta, [PLATFORM_RECIPIENT])
    assert [loc for loc, _ in problems] == [(next(iter(extra)),)]


def test_the_bootstrap_regex_is_the_one_encrypt_writes() -> None:
    assert ENCRYPTED_REGEX == BOOTSTRAP_ENCRYPTED_REGEX


@pytest.mark.parametrize(
    ("selector", "flagged"),
    [({"encrypted_regex": "^(data|stringData)$"}, False), ({"unencrypted_suffix": "_unencrypted"}, False),
     ({"encrypted_regex": "^data$"}, True), ({"unencrypted_suffix": "_plain"}, True),
     ({"unencrypted_regex": "^note$"}, True), ({"unencrypted_comment_regex": "plain"}, True),
     ({"encrypted_suffix": "_secret"}, True), ({"encrypted_comment_regex": "enc"}, True)],
)
def test_plaintext_rules_in_a_bootstrap_file(selector: dict[str, str], flagged: bool) -> None:
    data = fixture()
    data["sops"].pop("encrypted_regex")
    data["sops"].update(selector)
    problems = plaintext_rule_problems(data)
    assert bool(problems) is flagged, problems
    if flagged:
        assert problems[0][0] == ("sops", next(iter(selector)))


def test_keys_ending_in_unencrypted_are_plaintext_next_to_ciphertext() -> None:
    data = fixture()
    data["metadata"]["annotations"] = {"note_unencrypted": "hunter2"}
    data["stringData"]["nested_unencrypted"] = {"a": "b"}
    locs = [loc for loc, _ in plaintext_rule_problems(data)]
    assert locs == [("metadata", "annotations", "note_unencrypted"), ("stringData", "nested_unencrypted", "a")]


# ------------------------------------------------------------------------------------------------ metadata


def repo(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(BASE, root)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


INTENT = """apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata:
  name: meta
  annotations: {ANNOTATIONS}
  labels: {LABELS}
spec:
  owner: team-app
  purpose: PURPOSE
  classification: runtime
  source:
    generate:
      password: {type: password, length: 32}
"""


def metadata_rules(tmp_path: Path, annotations: str = "{}", labels: str = "{}",
                   purpose: str = "Login of the app") -> list[tuple[int | None, str]]:
    text = INTENT.replace("{ANNOTATIONS}", annotations).replace("{LABELS}", labels).replace("PURPOSE", purpose)
    findings = run_checks(load_repository(repo(tmp_path, {"intents/meta.yaml": text}), git=None))
    return [(f.line, f.rule) for f in findings if f.rule == "CH102"]


@pytest.mark.parametrize(
    ("field", "value", "line"),
    [("annotations", "{db-password: 'Hunter22!x'}", 5),
     ("annotations", "{note: 'xoxb-2849301746-5928174630-Kq8ZrT3mXp9LwV2nHc7dJy4s'}", 5),
     ("labels", "{api-token: aB3dE5fG7hJ9kL1mN3pQ5rS7}", 6), ("purpose", "Login; the password is Xk9#mP2q", 9),
     ("purpose", "'Admin login (password: Sup3r-S3cret!)'", 9), ("purpose", "was AKIAQWERTYUIOPASDFGH before", 9)],
    ids=["password-annotation", "slack-annotation", "token-label", "prose-password", "assigned-password", "aws-key"],
)
def test_credential_shapes_in_metadata_are_errors(tmp_path: Path, field: str, value: str, line: int) -> None:
    kwargs = {field: value}
    assert metadata_rules(tmp_path, **kwargs) == [(line, "CH102")]


@pytest.mark.parametrize(
    ("field", "value"),
    [("purpose", "Admin role chamberlain uses to set the payments role password on the payments Postgres cluster"),
     ("purpose", "Bearer token the node log shipper presents to the Loki gateway"),
     ("purpose", "Token TTL is 24h; the password is rotated weekly by orders-db-operator"),
     ("annotations", "{chamberlain.dev/rotator: x509-self-signed, chamberlain.dev/x509-dns-names: a.example.com}"),
     ("labels", "{team: payments, password-policy: strict}")],
)
def test_ordinary_metadata_passes(tmp_path: Path, field: str, value: str) -> None:
    kwargs = {field: value}
    assert metadata_rules(tmp_path, **kwargs) == []


@pytest.mark.parametrize("path", ["examples/acme", "tests/repos/unseen", "tests/corpus/base"])
def test_known_good_repositories_have_no_metadata_findings(path: str) -> None:
    findings = run_checks(load_repository(ROOT / path))
    assert [f for f in findings if f.rule in ("CH100", "CH101", "CH102", "CH103")] == []


# ------------------------------------------------------------------------------------------------ render refusals


def test_preflight_uses_renders_reserved_key() -> None:
    assert PREFLIGHT_KEY == METADATA_KEY


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [("{chamberlain.dev/rotator: x509-vault-pki}", "x509-pki-role is required"),
     ("{chamberlain.dev/rotator: x509-vault-pki, chamberlain.dev/x509-pki-role: web, "
      "chamberlain.dev/x509-pki-mount: sys}", "system path"),
     ("{chamberlain.dev/rotator: x509-vault-pki, chamberlain.dev/x509-pki-role: 'a b'}", "not a Vault PKI role")],
)
def test_pki_annotations_render_would_refuse_fail_validate(tmp_path: Path, annotations: str, fragment: str) -> None:
    text = INTENT.replace("{ANNOTATIONS}", annotations).replace("{LABELS}", "{}").replace("PURPOSE", "Cert")
    findings = run_checks(load_repository(repo(tmp_path, {"intents/meta.yaml": text}), git=None))
    ch093 = [f for f in findings if f.rule == "CH103"]
    assert len(ch093) == 1 and fragment in ch093[0].message and ch093[0].line == 5


def test_duplicate_keys_in_a_json_sops_file_are_refused(tmp_path: Path) -> None:
    text = (ROOT / "tests/fixtures/scanning/realistic/config/app.sops.json").read_text()
    doubled = text.replace('\t"retries"', '\t"debug": "plain",\n\t"retries"', 1)
    root = repo(tmp_path, {"config/app.sops.json": doubled})
    findings = run_checks(load_repository(root, git=None))
    assert [(f.file, f.rule) for f in findings if f.rule == "CH100"] == [("config/app.sops.json", "CH100")]
