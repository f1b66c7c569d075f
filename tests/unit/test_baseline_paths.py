"""Where ``--baseline``/``--write-baseline`` may point: an empty path is a usage error saying so (never the current
directory), and the baseline is written only to a regular file or a new path; never over a symlink, device, FIFO or
directory (the write renames a new file over the path, which would replace the node, e.g. /dev/null as root)."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from chamberlain.findings import Finding
from chamberlain.scan.baseline import BaselineError, check_write_target, load_baseline, write_baseline
from tests.conftest import CORPUS, run_cli

FINDING = Finding("app/config.yaml", 3, "CH024", "looks like a token [github-pat] (value not shown)", column=7,
                  subject="github-pat")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", path)
    return path


def test_an_empty_path_is_a_usage_error_saying_so(repo: Path) -> None:
    with pytest.raises(BaselineError, match="the path is empty"):
        write_baseline([FINDING], "")
    with pytest.raises(BaselineError, match="the path is empty"):
        load_baseline("")
    for option in ("--write-baseline", "--baseline"):
        result = run_cli("validate", str(repo), option, "")
        assert result.code == 2, result.out + result.err
        assert f"{option}: the path is empty" in result.err and "internal error" not in result.err


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "fifo", "directory"])
def test_a_target_that_is_not_a_regular_file_is_refused_and_left_alone(repo: Path, tmp_path: Path,
                                                                      kind: str) -> None:
    kept = tmp_path / "kept"
    kept.write_text("someone else's file\n")
    target = tmp_path / "target"
    if kind == "symlink":
        target.symlink_to(kept)
    elif kind == "dangling-symlink":
        target.symlink_to(tmp_path / "nowhere")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    before = os.lstat(target)
    with pytest.raises(BaselineError, match="a baseline is written only to a regular file or a new path") as info:
        write_baseline([FINDING], target)
    assert info.value.exit_code == 2
    result = run_cli("validate", str(repo), "--write-baseline", str(target))
    assert result.code == 2 and str(target) in result.err and "Traceback" not in result.err
    after = os.lstat(target)
    assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino)
    assert kept.read_text() == "someone else's file\n"
    assert not (tmp_path / "nowhere").exists()


def test_a_device_is_refused() -> None:
    # only the check: a write_baseline regression here would replace /dev/null when run as root
    with pytest.raises(BaselineError, match="not a regular file"):
        check_write_target("/dev/null")


def test_a_device_node_is_left_in_place(repo: Path, tmp_path: Path) -> None:
    node = tmp_path / "mynull"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("creating a device node needs root")
    result = run_cli("validate", str(repo), "--write-baseline", str(node))
    assert result.code == 2 and "not a regular file" in result.err
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_a_missing_directory_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "baseline"
    result = run_cli("validate", str(repo), "--write-baseline", str(target))
    assert result.code == 2, result.out + result.err
    assert f"no such directory: {target.parent}" in result.err and "Traceback" not in result.err
    assert not target.parent.exists()


def test_a_regular_file_or_new_path_is_written_atomically(tmp_path: Path) -> None:
    existing = tmp_path / "b"
    existing.write_text("old\n")
    assert write_baseline([FINDING], existing) == 1
    assert existing.read_text().splitlines()[-1] == "app/config.yaml:CH024:github-pat:3"
    assert write_baseline([FINDING], tmp_path / "new") == 1
    assert load_baseline(tmp_path / "new").accepts(FINDING)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "new"]  # no temporary file left


def test_a_link_at_the_temporary_path_is_not_written_through(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.write_text("keep\n")
    (tmp_path / ".b.tmp").symlink_to(kept)
    os.link(kept, tmp_path / ".c.tmp")  # a hard link: truncating it would truncate kept
    write_baseline([FINDING], tmp_path / "b")
    write_baseline([FINDING], tmp_path / "c")
    assert kept.read_text() == "keep\n"
    assert load_baseline(tmp_path / "b").accepts(FINDING) and load_baseline(tmp_path / "c").accepts(FINDING)


def test_a_fifo_target_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            write_baseline([FINDING], fifo)
        except BaselineError as exc:
            errors.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and len(errors) == 1
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
