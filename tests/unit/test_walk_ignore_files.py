"""Ignore files that are not regular files: a FIFO ``.chamberlainignore`` or ``.gitignore`` never blocks the walk,
and a symlinked one is never followed (a file outside the repository must not decide what is validated). Either is
reported as an excluded special file or symlink whose patterns do not apply: more is validated, never less."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chamberlain.errors import UsageError
from chamberlain.intent.walk import GITIGNORE, IGNORE_FILE, IGNORE_NOT_READ, load_ignore_file, walk
from tests.conftest import CORPUS, run_cli

SRC = Path(__file__).resolve().parents[2] / "src"
AWS = "aws_access_key_id = AKIAQWERTYUIOPASDFGH\n"


def base_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", repo)
    (repo / "vendor").mkdir()
    (repo / "vendor" / "config.ini").write_text(AWS)  # what the ignore file would leave out
    return repo


def validate_subprocess(repo: Path) -> tuple[int, dict[str, object], str]:
    """The real CLI in a child process, killed after 30 s: a blocking read cannot hang the suite."""
    # No Git above the repository: the walk reads .gitignore files itself (the path under test).
    env = {**os.environ, "PYTHONPATH": str(SRC), "GIT_CEILING_DIRECTORIES": str(repo.parent)}
    proc = subprocess.run(
        [sys.executable, "-c", "from chamberlain.cli.main import main; main()", "validate", str(repo), "-o", "json",
         "--no-cache"], capture_output=True, text=True, timeout=30, env=env, check=False)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def in_thread(path: Path) -> object:
    """load_ignore_file(path) in a thread joined with a timeout: a blocking open fails the test, not the suite."""
    box: list[object] = []
    worker = threading.Thread(target=lambda: box.append(load_ignore_file(path)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), f"{path}: reading the ignore file blocked"
    return box[0]


@pytest.mark.parametrize("where", [IGNORE_FILE, f"vendor/{GITIGNORE}", GITIGNORE])
def test_a_fifo_ignore_file_is_never_opened_and_is_reported(tmp_path: Path, where: str) -> None:
    repo = base_repo(tmp_path)
    os.mkfifo(repo / where)  # opening it for reading would block forever
    code, report, _ = validate_subprocess(repo)
    assert report["excluded"] == {"special-file": 1}
    exclusions = report["exclusions"]
    assert isinstance(exclusions, list)
    (excluded,) = exclusions
    assert excluded["path"] == where and excluded["reason"] == "special-file"
    assert IGNORE_NOT_READ in excluded["detail"]
    results = report["results"]
    assert isinstance(results, list)
    assert code == 1 and {(r["file"], r["rule"]) for r in results} == {("vendor/config.ini", "CH024")}


@pytest.mark.parametrize("name", [IGNORE_FILE, GITIGNORE])
@pytest.mark.parametrize("target", ["outside", "inside"])
def test_a_symlinked_ignore_file_is_not_followed(tmp_path: Path, name: str, target: str) -> None:
    repo = base_repo(tmp_path)
    patterns = tmp_path / "outside-ignore" if target == "outside" else repo / "patterns.txt"
    patterns.write_text("vendor/\n")
    (repo / name).symlink_to(patterns)
    walked = walk(repo, git=None)
    assert "vendor/config.ini" in {f.rel for f in walked.files}  # validated: the link's patterns do not apply
    assert [(e.path, e.reason) for e in walked.exclusions] == [(name, "symlink")]
    assert walked.exclusions[0].detail.endswith(IGNORE_NOT_READ)

    result = run_cli("validate", str(repo), "--no-cache")
    assert "ignored by" not in result.err
    assert f"excluded: {name}: a symbolic link: never followed" in result.err
    assert "its patterns do not apply" in result.err
    assert "vendor/config.ini" in result.out  # the credential the outside file would have hidden is found


def test_an_ignore_file_swapped_after_the_lstat_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    regular = tmp_path / "regular"
    regular.write_text("x\n")
    fifo, link = tmp_path / "fifo", tmp_path / "link"
    os.mkfifo(fifo)
    link.symlink_to(regular)
    real_lstat = os.lstat
    # lstat saw a regular file; by the open it is a FIFO or a symlink: what was opened decides
    monkeypatch.setattr(os, "lstat", lambda p: real_lstat(regular))
    assert in_thread(fifo) is None
    assert in_thread(link) is None
    assert in_thread(regular) is not None


def test_regular_missing_and_directory_ignore_files_behave_as_before(tmp_path: Path) -> None:
    (tmp_path / "ok").write_text("vendor/\n")
    spec = load_ignore_file(tmp_path / "ok")
    assert spec is not None and spec.match_file("vendor/x")
    assert load_ignore_file(tmp_path / "missing") is None
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert load_ignore_file(tmp_path / "dangling") is None
    (tmp_path / "dir").mkdir()
    with pytest.raises(UsageError, match="cannot read the ignore file"):
        load_ignore_file(tmp_path / "dir")


def test_a_regular_ignore_file_still_leaves_files_out(tmp_path: Path) -> None:
    repo = base_repo(tmp_path)
    (repo / IGNORE_FILE).write_text("vendor/\n")
    (repo / "sub").mkdir()
    (repo / "sub" / GITIGNORE).write_text("*.ini\n")
    (repo / "sub" / "x.ini").write_text(AWS)
    walked = walk(repo, git=None)
    assert [(e.path, e.reason) for e in walked.exclusions] == [("sub/x.ini", "gitignore"),
                                                               ("vendor/", "chamberlainignore")]
    assert walked.exclusions[1].detail == "ignored by .chamberlainignore"
