"""Adversarial repositories (issue 11, "inputs that cannot hurt"): each is rejected by the real CLI.

Each case under tests/repos/adversarial is a small repository an attacker inside one team could push: an alias
cycle, a billion-laughs document, a SOPS file with a recipient hidden in its stanzas, duplicate keys, plaintext by
SOPS rule, credentials in metadata, a credential in a tool folder. Big inputs (10 MB PEM and ``ENC[`` bombs) are
generated here, never committed; so are the tool folders (this repository's own .gitignore leaves ``.venv`` out).

``chamberlain validate`` runs as a separate process through the real entry point: exit 1 within 30 s, the offending
file named, no traceback. JSON and SARIF output are checked too (in process, same ``main()``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import chamberlain
from tests.conftest import run_cli

ADVERSARIAL = Path(__file__).resolve().parents[1] / "repos" / "adversarial"
SRC = Path(chamberlain.__file__).resolve().parents[1]
TEN_MB = 10 * 1024 * 1024
AWS = "aws_access_key_id = AKIAQWERTYUIOPASDFGH\n"


def _bomb(unit: str) -> Callable[[Path], None]:
    def make(repo: Path) -> None:
        (repo / "notes").mkdir()
        (repo / "notes" / "bomb.txt").write_text(unit * (TEN_MB // len(unit)) + AWS)
    return make


def _tool_folder(rel: str) -> Callable[[Path], None]:
    def make(repo: Path) -> None:
        path = repo / rel
        path.parent.mkdir(parents=True)
        path.write_text(AWS)
    return make


def _nothing(repo: Path) -> None:
    pass


# case -> (rule, file the output must name, extra files generated into the copy)
CASES: dict[str, tuple[str, str, Callable[[Path], None]]] = {
    "alias-cycle": ("CH002", "config/loop.yaml", _nothing),
    "billion-laughs": ("CH002", "intents/laughs.yaml", _nothing),
    "pem-bomb": ("CH024", "notes/bomb.txt", _bomb("-----BEGIN CERTIFICATE-----\n")),
    "pem-bomb-one-line": ("CH024", "notes/bomb.txt", _bomb("-----BEGIN OPENSSH PRIVATE KEY-----")),
    "hidden-sops-recipient": ("CH022", "bootstrap/smtp-relay.sops.yaml", _nothing),
    "sops-passphrase-stanza": ("CH022", "bootstrap/smtp-relay.sops.yaml", _nothing),
    "duplicate-keys-intent": ("CH100", "intents/app.yaml", _nothing),
    "duplicate-keys-sops": ("CH100", "bootstrap/smtp-relay.sops.yaml", _nothing),
    "duplicate-keys-manifest": ("CH100", "apps/config.yaml", _nothing),
    "unencrypted-suffix": ("CH101", "bootstrap/smtp-relay.sops.yaml", _nothing),
    "unencrypted-key": ("CH101", "bootstrap/smtp-relay.sops.yaml", _nothing),
    "sops-redos-regex": ("CH101", "bootstrap/smtp-relay.sops.yaml", _nothing),
    "credential-in-annotation": ("CH102", "intents/app.yaml", _nothing),
    "credential-in-label": ("CH102", "intents/app.yaml", _nothing),
    "credential-in-purpose": ("CH102", "intents/app.yaml", _nothing),
    "node-modules-credential": ("CH024", "web/node_modules/left-pad/config.ini",
                                _tool_folder("web/node_modules/left-pad/config.ini")),
    "venv-credential": ("CH024", ".venv/lib/settings.py", _tool_folder(".venv/lib/settings.py")),
    "unrenderable-pki-mount": ("CH103", "intents/app.yaml", _nothing),
}
# Generated variants share a committed base repository.
BASES = {"pem-bomb-one-line": "pem-bomb", "enc-bomb": "pem-bomb"}
CASES["enc-bomb"] = ("CH024", "notes/bomb.txt", _bomb("ENC[AES256_GCM,data:"))


def test_every_committed_case_is_exercised() -> None:
    committed = {p.name for p in ADVERSARIAL.iterdir() if p.is_dir()}
    assert committed == set(CASES) - set(BASES)


def materialize(case: str, into: Path) -> Path:
    """A copy outside any Git work tree (so only the case's own ignore rules apply), plus generated files."""
    repo = into / "repo"
    shutil.copytree(ADVERSARIAL / BASES.get(case, case), repo)
    CASES[case][2](repo)
    return repo


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {case: materialize(case, tmp_path_factory.mktemp(case)) for case in CASES}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_real_cli_rejects_it(case: str, repos: dict[str, Path]) -> None:
    rule, rel, _ = CASES[case]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", "from chamberlain.cli.main import main; main()", "validate", str(repos[case])],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert elapsed < 30, f"{case}: validate took {elapsed:.1f}s"
    assert "Traceback" not in output
    assert any(line.startswith(f"{rel}:") and rule in line for line in output.splitlines()), output[-3000:]


@pytest.mark.parametrize("fmt", ["json", "sarif"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_machine_output_names_the_file_without_a_traceback(case: str, fmt: str, repos: dict[str, Path]) -> None:
    rule, rel, _ = CASES[case]
    result = run_cli("validate", str(repos[case]), "-o", fmt)
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.out + result.err
    doc = json.loads(result.out)
    if fmt == "json":
        assert any(f["rule"] == rule and f["file"] == rel for f in doc["results"]), doc["results"]
    else:
        results = doc["runs"][0]["results"]
        assert any(r["ruleId"] == rule and r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == rel
                   for r in results), results
