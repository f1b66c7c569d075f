"""``bootstrap encrypt``: what chamberlain encrypts validates (CH021-CH025) and the real sops decrypts it; no
plaintext copy is ever written and a failure leaves the input untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chamberlain.bootstrap import BootstrapError, Sops, SopsError, Tools, encrypt_file
from chamberlain.bootstrap.manifest import prepare_secret
from chamberlain.checks import run_checks
from chamberlain.errors import UsageError
from chamberlain.intent.loader import load_repository
from chamberlain.root import ensure_identity, update_repository
from tests.conftest import host_tools, run_cli
from tests.unit.test_bootstrap_helpers import SECRET, make_repo, need_tools, register_cli

CANARY = "canary-7f3a9c2e-do-not-leak"


@pytest.fixture
def repo(tmp_path: Path, tools: Tools) -> tuple[Path, Path]:
    need_tools("sops", "age-keygen")
    root = make_repo(tmp_path / "repo", CANARY)
    ident = ensure_identity(tmp_path / "offline" / "root.agekey", root, tools=tools)
    update_repository(root, ident.recipient)
    return root, ident.path


def _decrypt(path: Path, identity: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["SOPS_AGE_KEY_FILE"] = str(identity)
    out = subprocess.run([str(host_tools().find("sops")), "decrypt", str(path)], capture_output=True, env=env,
                         check=True)
    data = yaml.safe_load(out.stdout)
    assert isinstance(data, dict)
    return data


# ------------------------------------------------------------------------------------------- pure


@pytest.mark.parametrize("text, match", [
    pytest.param("a: 1\n---\nb: 2\n", "2 YAML documents", id="two-documents"),
    pytest.param("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: b}\ndata: {k: v}\n",
                 "not a Kubernetes Secret", id="configmap"),
    pytest.param("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData: {k: v}\n", "namespace",
                 id="no-namespace"),
    pytest.param("apiVersion: v1\nkind: Secret\nmetadata: {namespace: a}\nstringData: {k: v}\n", "metadata.name",
                 id="no-name"),
    pytest.param("apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\n", "no data", id="no-data"),
    pytest.param("apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {k: 'ENC[AES256_GCM,"
                 "data:x,iv:y,tag:z,type:str]'}\n", "already SOPS-encrypted", id="already-encrypted"),
    pytest.param("apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b, labels: {chamberlain.dev/intent: "
                 "other}}\nstringData: {k: v}\n", "not smtp-relay", id="other-intent-label"),
    pytest.param("key: [unclosed\n", "not valid YAML", id="bad-yaml"),
])
def test_prepare_refuses_what_cannot_be_a_bootstrap_secret(text: str, match: str) -> None:
    with pytest.raises(BootstrapError, match=match) as err:
        prepare_secret(text, "smtp-relay", "f.yaml")
    assert "data:x" not in str(err.value) and "{k: v}" not in str(err.value)
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2  # FILE is not what encrypt takes


PLAIN_DATA = """\
apiVersion: v1
kind: Secret
metadata: {{name: a, namespace: b}}
data:
  fine: cmVsYXk=
  value: {value}
"""


@pytest.mark.parametrize("value", [
    pytest.param(CANARY, id="plaintext"),
    pytest.param("cmVsYXk", id="unpadded"),
    pytest.param("'cmVs YXk='", id="space"),
    pytest.param("'a-_b'", id="url-alphabet"),
    pytest.param("'cmVsYXk=cmVsYXk='", id="padding-inside"),
    pytest.param("1234", id="a-number"),
])
def test_prepare_refuses_data_values_that_are_not_base64(value: str) -> None:
    with pytest.raises(UsageError) as err:
        prepare_secret(PLAIN_DATA.format(value=value), "smtp-relay", "f.yaml")
    message = str(err.value)
    assert message.startswith("f.yaml: data key value (line 6): not base64") and "stringData" in message
    assert "fine" not in message and value.strip("'") not in message.replace("f.yaml", "")
    assert err.value.exit_code == 2


@pytest.mark.parametrize("value", ['""', "cmVsYXk=", "YQ==", "YWI=", "|\n    cmVs\n    YXk=", "null"],
                         ids=["empty", "padded-one", "padded-two", "padded-three", "line-broken", "null"])
def test_prepare_accepts_base64_data(value: str) -> None:
    prepared = prepare_secret(PLAIN_DATA.format(value=value), "smtp-relay", "f.yaml")
    assert prepared.name == "a"


def test_prepare_adds_labels_and_keeps_comments() -> None:
    prepared = prepare_secret(SECRET.format(namespace="ns", canary=CANARY), "smtp-relay", "f.yaml")
    assert prepared.labels_added == ("chamberlain.dev/class", "chamberlain.dev/intent")
    assert prepared.text.startswith("# The SMTP relay credential")
    assert "chamberlain.dev/intent: smtp-relay" in prepared.text
    assert CANARY not in repr(prepared)


# ------------------------------------------------------------------------------------------- real sops


def test_encrypted_file_validates_and_decrypts_with_the_identity(repo: tuple[Path, Path], tools: Tools) -> None:
    root, identity = repo
    file = root / "bootstrap" / "smtp-relay.sops.yaml"
    assert "CH021" in {f.rule for f in run_checks(load_repository(root))}
    result = encrypt_file(file, root, tools=tools)
    assert (result.intent, result.namespace, result.name) == ("smtp-relay", "chamberlain-bootstrap",
                                                              "bootstrap-smtp-relay")
    text = file.read_text()
    assert CANARY not in text and "ENC[AES256_GCM" in text
    assert [f for f in run_checks(load_repository(root))] == []
    plain = _decrypt(file, identity)
    assert hashlib.sha256(str(plain["stringData"]["password"]).encode()).digest() == \
        hashlib.sha256(CANARY.encode()).digest()  # type: ignore[index]
    assert plain["metadata"]["labels"] == {"chamberlain.dev/class": "bootstrap",  # type: ignore[index]
                                           "chamberlain.dev/intent": "smtp-relay"}
    assert sorted(p.name for p in file.parent.iterdir()) == ["smtp-relay.sops.yaml"]  # no temporary left


def test_encrypting_twice_is_refused_and_changes_nothing(repo: tuple[Path, Path], tools: Tools) -> None:
    root, _ = repo
    file = root / "bootstrap" / "smtp-relay.sops.yaml"
    encrypt_file(file, root, tools=tools)
    before = file.read_bytes()
    with pytest.raises(BootstrapError, match="already SOPS-encrypted"):
        encrypt_file(file, root, tools=tools)
    assert file.read_bytes() == before


def test_a_sops_failure_leaves_the_input_untouched_and_no_temporary(repo: tuple[Path, Path], tmp_path: Path,
                                                                    tools: Tools) -> None:
    root, _ = repo
    file = root / "bootstrap" / "smtp-relay.sops.yaml"
    before = file.read_bytes()
    failing = tmp_path / "sops"
    failing.write_text(f"#!/bin/sh\ncat >/dev/null\necho 'leaked {CANARY}' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(SopsError) as err:
        encrypt_file(file, root, tools=tools, sops=Sops(failing, tools.env))
    assert CANARY not in str(err.value) and "status 3" in str(err.value)
    assert file.read_bytes() == before
    assert sorted(p.name for p in file.parent.iterdir()) == ["smtp-relay.sops.yaml"]


def test_output_that_would_not_validate_is_never_written(repo: tuple[Path, Path], tmp_path: Path,
                                                         tools: Tools) -> None:
    root, _ = repo
    file = root / "bootstrap" / "smtp-relay.sops.yaml"
    before = file.read_bytes()
    echo = tmp_path / "sops"
    echo.write_text("#!/bin/sh\ncat\n")  # "encrypts" to plaintext
    echo.chmod(0o755)
    with pytest.raises(BootstrapError, match="nothing was written") as err:
        encrypt_file(file, root, tools=tools, sops=Sops(echo, tools.env))
    assert CANARY not in str(err.value)
    assert file.read_bytes() == before
    assert sorted(p.name for p in file.parent.iterdir()) == ["smtp-relay.sops.yaml"]


def test_files_outside_the_repository_or_of_another_intent_are_refused(repo: tuple[Path, Path],
                                                                       tmp_path: Path, tools: Tools) -> None:
    root, _ = repo
    outside = tmp_path / "outside.yaml"
    shutil.copy(root / "bootstrap" / "smtp-relay.sops.yaml", outside)
    with pytest.raises(UsageError, match="outside the repository"):
        encrypt_file(outside, root, tools=tools)
    other = root / "bootstrap" / "other.yaml"
    shutil.copy(root / "bootstrap" / "smtp-relay.sops.yaml", other)
    with pytest.raises(UsageError, match="pass --intent"):
        encrypt_file(other, root, tools=tools)
    with pytest.raises(UsageError, match="declares bootstrap file"):
        encrypt_file(other, root, tools=tools, intent="smtp-relay")
    with pytest.raises(UsageError, match="no such file"):
        encrypt_file(root / "bootstrap" / "absent.yaml", root, tools=tools)
    with pytest.raises(UsageError, match="not a regular file"):
        encrypt_file(root / "bootstrap", root, tools=tools)


def test_cli_bootstrap_encrypt_never_prints_the_value(repo: tuple[Path, Path]) -> None:
    root, _ = repo
    register_cli()
    result = run_cli("bootstrap", "encrypt", str(root / "bootstrap" / "smtp-relay.sops.yaml"), "--repo", str(root),
                     "-o", "json")
    assert result.code == 0, result.err
    assert CANARY not in result.out + result.err
    assert '"intent": "smtp-relay"' in result.out
    again = run_cli("bootstrap", "encrypt", str(root / "bootstrap" / "smtp-relay.sops.yaml"), "--repo", str(root))
    assert again.code == 2 and "already SOPS-encrypted" in again.err and CANARY not in again.err
    missing = run_cli("bootstrap", "encrypt", str(root / "nope.yaml"), "--repo", str(root))
    assert missing.code == 2


@pytest.mark.parametrize("content, says", [
    pytest.param(b"", "username (line 9), password (line 10): not base64", id="plaintext-under-data"),
    pytest.param(b"apiVersion: v1\nkind: ConfigMap\n", "not a Kubernetes Secret", id="not-a-secret"),
    pytest.param(b"key: [unclosed\n", "not valid YAML (line 2)", id="bad-yaml"),
    pytest.param(b"key: \xff\n", "not UTF-8", id="not-utf8"),
])
def test_cli_refuses_a_file_it_cannot_encrypt_as_a_usage_error(repo: tuple[Path, Path], content: bytes,
                                                               says: str) -> None:
    root, _ = repo
    register_cli()
    file = root / "bootstrap" / "smtp-relay.sops.yaml"
    if not content:  # the common mistake: plaintext put under data: instead of stringData:
        content = file.read_bytes().replace(b"\nstringData:", b"\ndata:")
    file.write_bytes(content)
    result = run_cli("bootstrap", "encrypt", str(file), "--repo", str(root))
    assert result.code == 2, result.err
    assert "bootstrap/smtp-relay.sops.yaml" in result.err and says in result.err
    assert CANARY not in result.out + result.err and "Traceback" not in result.err
    assert file.read_bytes() == content
