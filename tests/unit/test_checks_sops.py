"""SOPS files and bootstrap files (CH021, CH022, CH023, CH025): structure only, against real sops output.

The fixtures under tests/fixtures/scanning/sops were written by the real sops binary (v3.13.2) for the test
recipients; only their ciphertext is committed.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.checks.registry import run_checks
from chamberlain.checks.sops import (
    bootstrap_secret_problems,
    bootstrap_secrets,
    check_bootstrap_files,
    check_sops_files,
    is_encrypted_value,
    recipient_problems,
    resolve_bootstrap_path,
    sops_structure_problems,
)
from chamberlain.findings import Finding
from chamberlain.intent.loader import load_repository

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "tests" / "corpus" / "base"
FIXTURES = ROOT / "tests" / "fixtures" / "scanning"
SOPS = FIXTURES / "sops"
REALISTIC = FIXTURES / "realistic"
PLATFORM_RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
OTHER_RECIPIENT = "age1uje6yutxcw4r8qt9yrcm2x98zpljfgvsn7w3e46vfla77w8cmv7qyzkcaz"
BOOTSTRAP_INTENT = (REALISTIC / "intents" / "bootstrap.yaml").read_text()


def fixture(name: str = "smtp-relay.sops.yaml") -> dict[str, Any]:
    data = yaml.safe_load((SOPS / name).read_text())
    assert isinstance(data, dict)
    return data


def make_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return repo


def findings(tmp_path: Path, files: dict[str, str]) -> list[Finding]:
    repo = load_repository(make_repo(tmp_path, files))
    return sorted([*check_bootstrap_files(repo), *check_sops_files(repo)], key=Finding.sort_key)


def bootstrap(content: str, declared: str = "bootstrap/smtp-relay.sops.yaml") -> dict[str, str]:
    intent = BOOTSTRAP_INTENT.replace("bootstrap/smtp-relay.sops.yaml", declared)
    return {"intents/bootstrap.yaml": intent, "bootstrap/smtp-relay.sops.yaml": content}


# ------------------------------------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("bootstrap/smtp.sops.yaml", "bootstrap/smtp.sops.yaml"),
        ("./bootstrap/./smtp.sops.yaml", "bootstrap/smtp.sops.yaml"),
        ("../outside.yaml", None),
        ("bootstrap/../../outside.yaml", None),
        ("bootstrap/../smtp.sops.yaml", None),
        ("/etc/passwd", None),
        ("C:/secrets.yaml", None),
        ("bootstrap\\..\\x.yaml", None),
        ("~/x.yaml", None),
        ("a\x00b", None),
        ("", None),
        (".", None),
    ],
    ids=["plain", "dot-segments", "parent", "nested-parent", "parent-inside", "absolute", "drive", "backslash",
         "home", "nul", "empty", "dot"],
)
def test_resolve_bootstrap_path(declared: str, expected: str | None) -> None:
    assert resolve_bootstrap_path(declared) == expected


# ------------------------------------------------------------------------------------------------ CH023


def test_real_sops_output_is_well_formed() -> None:
    for name in ("smtp-relay.sops.yaml", "smtp-relay.two-recipients.sops.yaml"):
        assert sops_structure_problems(fixture(name)) == []
    for path in (REALISTIC / "unseal" / "unseal-shares.sops.yaml", REALISTIC / "bootstrap" / "smtp-relay.sops.yaml"):
        assert sops_structure_problems(yaml.safe_load(path.read_text())) == []
    assert sops_structure_problems(json.loads((REALISTIC / "config" / "app.sops.json").read_text())) == []


def _edit(change: str) -> dict[str, Any]:
    data = copy.deepcopy(fixture())
    meta = data["sops"]
    if change == "no-mac":
        del meta["mac"]
    elif change == "plaintext-mac":
        meta["mac"] = "0123456789abcdef"
    elif change == "plaintext-value":
        data["stringData"]["password"] = "edited-by-hand"
    elif change == "plaintext-number":
        data["stringData"]["port"] = 587
    elif change == "malformed-enc":
        data["stringData"]["password"] = "ENC[AES256_GCM,data:abc]"
    elif change == "no-version":
        del meta["version"]
    elif change == "no-master-key":
        del meta["age"]
    elif change == "age-entry-without-enc":
        meta["age"][0].pop("enc")
    elif change == "two-selectors":
        meta["encrypted_suffix"] = "_secret"
    elif change == "bad-regex":
        meta["encrypted_regex"] = "^(data"
    elif change == "regex-excludes-data":
        meta["encrypted_regex"] = "^metadata$"
        data["stringData"]["password"] = "never-encrypted"
    return data


@pytest.mark.parametrize(
    ("change", "loc", "fragment"),
    [
        ("no-mac", ("sops",), "no mac"),
        ("plaintext-mac", ("sops", "mac"), "sops.mac is not"),
        ("plaintext-value", ("stringData", "password"), "not encrypted"),
        ("plaintext-number", ("stringData", "port"), "not encrypted"),
        ("malformed-enc", ("stringData", "password"), "malformed"),
        ("no-version", ("sops",), "no version"),
        ("no-master-key", ("sops",), "no master key"),
        ("age-entry-without-enc", ("sops", "age", 0), "age entry"),
        ("two-selectors", ("sops",), "sops uses one"),
        ("bad-regex", ("sops", "encrypted_regex"), "not a valid regular expression"),
        ("regex-excludes-data", ("stringData", "password"), "always encrypted"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)
def test_structure_problems(change: str, loc: tuple[Any, ...], fragment: str) -> None:
    problems = sops_structure_problems(_edit(change))
    assert any(p_loc == loc and fragment in msg for p_loc, msg in problems), problems


def test_structure_messages_never_show_values() -> None:
    problems = sops_structure_problems(_edit("plaintext-value"))
    assert problems and all("edited-by-hand" not in msg for _, msg in problems)


@pytest.mark.parametrize(
    ("meta_extra", "plain_key", "flagged"),
    [
        ({"unencrypted_suffix": "_unencrypted"}, "note_unencrypted", False),
        ({"unencrypted_suffix": "_unencrypted"}, "note", True),
        ({"encrypted_suffix": "_secret"}, "note", False),
        ({"encrypted_suffix": "_secret"}, "api_secret", True),
        ({"encrypted_regex": "^(data|stringData)$"}, "note", False),
        ({"unencrypted_regex": "^note$"}, "note", False),
        ({"unencrypted_regex": "^note$"}, "other", True),
        ({"encrypted_comment_regex": "sops:enc"}, "note", False),
    ],
    ids=["unencrypted-suffix-match", "unencrypted-suffix-miss", "encrypted-suffix-miss", "encrypted-suffix-match",
         "encrypted-regex-miss", "unencrypted-regex-match", "unencrypted-regex-miss", "comment-regex-unknown"],
)
def test_selection_rules_follow_sops(meta_extra: dict[str, str], plain_key: str, flagged: bool) -> None:
    data = fixture()
    data["sops"].pop("encrypted_regex")
    data["sops"].update(meta_extra)
    data["config"] = {plain_key: "plain"}
    problems = sops_structure_problems(data)
    assert any(loc == ("config", plain_key) for loc, _ in problems) is flagged, problems


def test_null_and_empty_values_stay_as_sops_leaves_them() -> None:
    data = fixture()
    data["stringData"]["empty"] = ""
    data["stringData"]["none"] = None
    assert sops_structure_problems(data) == []


def test_plaintext_flood_is_capped() -> None:
    data = fixture()
    data["stringData"] = {f"k{i}": f"v{i}" for i in range(50)}
    problems = sops_structure_problems(data)
    assert len(problems) == 21 and "only the first" in problems[-1][1]


def test_is_encrypted_value() -> None:
    assert is_encrypted_value(fixture()["sops"]["mac"])
    assert not is_encrypted_value("ENC[AES256_GCM,data:x]")
    assert not is_encrypted_value(None)


# ------------------------------------------------------------------------------------------------ CH022


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("smtp-relay.sops.yaml", []),
        ("smtp-relay.other-recipient.sops.yaml", [("age", 0, "recipient"), ("age",)]),
        ("smtp-relay.two-recipients.sops.yaml", [("age", 1, "recipient")]),
    ],
    ids=["exact", "other", "extra"],
)
def test_recipients_match_the_platform_exactly(name: str, expected: list[tuple[Any, ...]]) -> None:
    problems = recipient_problems(fixture(name)["sops"], [PLATFORM_RECIPIENT])
    assert [loc for loc, _ in problems] == expected


def test_missing_platform_recipient_is_named() -> None:
    (problem,) = recipient_problems(fixture()["sops"], [PLATFORM_RECIPIENT, OTHER_RECIPIENT])
    assert problem[0] == ("age",) and OTHER_RECIPIENT in problem[1]


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"pgp": [{"fp": "85D77543B3D624B63CEA9E6DBC17301B491B3F21", "enc": "x"}]}, ("pgp",)),
        ({"kms": [{"arn": "arn:aws:kms:eu-west-1:111122223333:key/x", "enc": "x"}]}, ("kms",)),
        ({"hc_vault": [{"vault_address": "https://vault", "enc": "vault:v1:x"}]}, ("hc_vault",)),
    ],
    ids=["pgp", "kms", "hc-vault"],
)
def test_other_master_keys_do_not_match(extra: dict[str, Any], loc: tuple[str, ...]) -> None:
    meta = {**fixture()["sops"], **extra}
    assert [p[0] for p in recipient_problems(meta, [PLATFORM_RECIPIENT])] == [loc]


def test_key_groups_are_read_and_shamir_is_flagged() -> None:
    meta = fixture()["sops"]
    grouped = {k: v for k, v in meta.items() if k != "age"}
    grouped["key_groups"] = [{"age": meta["age"]}]
    assert recipient_problems(grouped, [PLATFORM_RECIPIENT]) == []
    grouped["shamir_threshold"] = 2
    assert [p[0] for p in recipient_problems(grouped, [PLATFORM_RECIPIENT])] == [("shamir_threshold",)]


# ------------------------------------------------------------------------------------------------ CH025


def test_bootstrap_secret_problems_of_the_fixture() -> None:
    assert bootstrap_secret_problems(fixture(), "smtp-relay") == []
    problems = bootstrap_secret_problems(fixture(), "other-intent")
    assert [m for _, m in problems] == ["the Secret is not labelled chamberlain.dev/intent: other-intent "
                                        "(it names 'smtp-relay')"]


@pytest.mark.parametrize(
    ("drop", "fragment"),
    [
        (("metadata", "namespace"), "names no namespace"),
        (("metadata", "name"), "no readable metadata.name"),
        (("metadata", "labels"), "chamberlain.dev/class"),
        (("stringData",), "no data or stringData"),
    ],
    ids=["namespace", "name", "labels", "values"],
)
def test_bootstrap_secret_needs(drop: tuple[str, ...], fragment: str) -> None:
    data = fixture()
    node = data
    for part in drop[:-1]:
        node = node[part]
    del node[drop[-1]]
    assert any(fragment in msg for _, msg in bootstrap_secret_problems(data, "smtp-relay"))


# ------------------------------------------------------------------------------------------------ repository


def test_valid_bootstrap_file_passes(tmp_path: Path) -> None:
    files = bootstrap((SOPS / "smtp-relay.sops.yaml").read_text())
    assert findings(tmp_path, files) == []
    repo = load_repository(make_repo(tmp_path / "again", files))
    assert run_checks(repo) == []
    (secret,) = bootstrap_secrets(repo)
    assert (secret.namespace, secret.name) == ("chamberlain-bootstrap", "bootstrap-smtp-relay")


PLAINTEXT = """apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-smtp-relay
  namespace: chamberlain-bootstrap
  labels: {chamberlain.dev/class: bootstrap, chamberlain.dev/intent: smtp-relay}
stringData:
  password: example-only
"""


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (bootstrap(PLAINTEXT), [("bootstrap/smtp-relay.sops.yaml", 7, "CH021")]),
        ({"intents/bootstrap.yaml": BOOTSTRAP_INTENT}, [("intents/bootstrap.yaml", 10, "CH025")]),
        (bootstrap(PLAINTEXT, "../smtp.sops.yaml"), [("intents/bootstrap.yaml", 10, "CH025")]),
        (bootstrap(PLAINTEXT.replace("kind: Secret", "kind: ConfigMap")),
         [("bootstrap/smtp-relay.sops.yaml", 2, "CH025")]),
        (bootstrap(PLAINTEXT + "---\nkind: Namespace\n"), [("bootstrap/smtp-relay.sops.yaml", 10, "CH025")]),
        (bootstrap((SOPS / "smtp-relay.other-recipient.sops.yaml").read_text()),
         [("bootstrap/smtp-relay.sops.yaml", 14, "CH022"), ("bootstrap/smtp-relay.sops.yaml", 23, "CH022")]),
    ],
    ids=["plaintext", "missing", "escape", "not-a-secret", "two-documents", "wrong-recipient"],
)
def test_bootstrap_file_findings(tmp_path: Path, files: dict[str, str], expected: list[tuple[str, int, str]]) -> None:
    assert [(f.file, f.line, f.rule) for f in findings(tmp_path, files)] == expected


def test_bootstrap_file_must_be_yaml(tmp_path: Path) -> None:
    files = bootstrap("", "bootstrap/smtp-relay.env")
    files["bootstrap/smtp-relay.env"] = "password=ENC[...]\n"
    (finding,) = findings(tmp_path, files)
    assert finding.rule == "CH025" and "YAML" in finding.message


def test_symlinked_bootstrap_file_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.sops.yaml"
    outside.write_text((SOPS / "smtp-relay.sops.yaml").read_text())
    repo_path = make_repo(tmp_path, {"intents/bootstrap.yaml": BOOTSTRAP_INTENT})
    (repo_path / "bootstrap").mkdir()
    (repo_path / "bootstrap" / "smtp-relay.sops.yaml").symlink_to(outside)
    (finding,) = list(check_bootstrap_files(load_repository(repo_path)))
    assert finding.rule == "CH025" and "symbolic link" in finding.message


def test_unreferenced_sops_files_are_checked_too(tmp_path: Path) -> None:
    other = (SOPS / "smtp-relay.other-recipient.sops.yaml").read_text()
    found = findings(tmp_path, {"legacy/old.sops.yaml": other})
    assert {(f.file, f.rule) for f in found} == {("legacy/old.sops.yaml", "CH022")}


def test_sops_json_files_are_recognised_by_content(tmp_path: Path) -> None:
    data = json.loads((REALISTIC / "config" / "app.sops.json").read_text())
    data["sops"]["age"][0]["recipient"] = OTHER_RECIPIENT
    data["api_token"] = "edited"
    found = findings(tmp_path, {"config/app.enc": json.dumps(data, indent=1)})
    assert sorted((f.rule, f.line) for f in found) == [("CH022", None), ("CH022", None), ("CH023", None)]


def test_without_a_single_platform_recipients_are_not_compared(tmp_path: Path) -> None:
    other = (SOPS / "smtp-relay.other-recipient.sops.yaml").read_text()
    repo_path = make_repo(tmp_path, {"legacy/old.sops.yaml": other})
    (repo_path / "platform.yaml").unlink()
    assert list(check_sops_files(load_repository(repo_path))) == []
