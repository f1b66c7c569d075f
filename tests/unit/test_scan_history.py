"""``validate --history``: credentials in Git history, on real Git repositories made with the ``git`` binary.

The scanner is the real one (:func:`chamberlain.service.scanning.scan_blob`) except where a test counts calls: there
a counting wrapper around it stands in."""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from chamberlain.errors import UsageError
from chamberlain.scan.history import HistoryStats, ScanHit, commits_oldest_first, open_repository, scan_history
from chamberlain.service.scanning import history_findings, scan_blob
from tests.conftest import CORPUS, EXAMPLES, run_cli


def token(seed: int) -> str:
    rng = random.Random(seed)
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


class Git:
    """A throw-away repository driven through the git binary; commit times advance one minute per commit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = 1_700_000_000
        root.mkdir(parents=True, exist_ok=True)
        self("init", "-q", "-b", "main")

    def __call__(self, *args: str, stdin: bytes | None = None) -> str:
        self.clock += 60
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
               "GIT_AUTHOR_DATE": f"{self.clock} +0000", "GIT_COMMITTER_DATE": f"{self.clock} +0000",
               "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        proc = subprocess.run(["git", "-C", str(self.root), *args], input=stdin, capture_output=True, env=env,
                              check=True)
        return proc.stdout.decode().strip()

    def write(self, rel: str, content: str | bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    def commit(self, message: str, files: dict[str, str | bytes] | None = None,
               remove: Sequence[str] = ()) -> str:
        for rel, content in (files or {}).items():
            self.write(rel, content)
        for rel in remove:
            self("rm", "-q", rel)
        self("add", "-A")
        self("commit", "-q", "--allow-empty", "-m", message)
        return self("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Git:
    git = Git(tmp_path / "repo")
    shutil.copytree(CORPUS / "base", git.root, dirs_exist_ok=True)
    git.commit("intent")
    return git


def test_committed_then_removed_is_reported_with_its_commit(repo: Git) -> None:
    leaked = repo.commit("add config", {"config/app.env": f"# settings\nGITHUB_TOKEN={token(1)}\n"})
    repo.commit("remove the token", remove=["config/app.env"])
    assert run_cli("validate", str(repo.root)).code == 0  # the tree is clean

    result = run_cli("validate", str(repo.root), "--history")
    assert result.code == 1, result.out + result.err
    assert f"config/app.env:2: CH126 credential-in-history: commit {leaked[:12]}" in result.out
    assert "[github-pat]" in result.out
    assert "rotate it: removing it from Git does not un-leak it" in result.out
    assert "history: 3 commits" in result.err

    data = json.loads(run_cli("validate", str(repo.root), "--history", "-o", "json").out)
    (finding,) = [r for r in data["results"] if r["rule"] == "CH126"]
    assert finding["fingerprint"] == f"{leaked}:config/app.env:CH126:github-pat:2"
    assert finding["object"] == leaked


def test_a_credential_still_in_the_tree_is_reported_for_both(repo: Git) -> None:
    leaked = repo.commit("add config", {"config/app.env": f"GITHUB_TOKEN={token(1)}\n"})
    repo.commit("unrelated", {"README": "hello\n"})
    data = json.loads(run_cli("validate", str(repo.root), "--history", "-o", "json").out)
    prints = sorted(r["fingerprint"] for r in data["results"] if "fingerprint" in r)
    assert prints == sorted([f"{leaked}:config/app.env:CH126:github-pat:1", "config/app.env:CH024:github-pat:1"])


def test_the_same_blob_in_50_commits_is_scanned_once(repo: Git) -> None:
    introduced = repo.commit("add", {"keys/app.env": f"TOKEN={token(1)}\n"})
    for i in range(49):
        repo.commit(f"change {i}", {"notes.txt": f"note {i}\n"})
    calls: dict[str, int] = {}

    def counting(path: str, raw: bytes) -> Sequence[ScanHit]:
        calls[path] = calls.get(path, 0) + 1
        return scan_blob(path, raw)

    stats = HistoryStats()
    hits = list(scan_history(repo.root, counting, stats=stats))
    assert calls["keys/app.env"] == 1
    assert calls["notes.txt"] == 49  # one distinct blob per change
    assert stats.commits == 51
    assert [(h.commit, h.path, h.line) for h in hits] == [(introduced, "keys/app.env", 1)]


def test_an_unchanged_line_in_a_later_version_is_not_reported_again(repo: Git) -> None:
    first = repo.commit("add", {"app.env": f"A=1\nTOKEN={token(1)}\n"})
    repo.commit("edit another line", {"app.env": f"A=2\nTOKEN={token(1)}\n"})
    second = repo.commit("a new token", {"app.env": f"A=2\nTOKEN={token(2)}\n"})
    hits = list(scan_history(repo.root, scan_blob))
    assert [(h.commit, h.line) for h in hits] == [(first, 2), (second, 2)]


def test_binary_blob_is_scanned_as_bytes(repo: Git) -> None:
    aws = "AKIA" + "Z4QW7RTY3UPLMN5K"
    leaked = repo.commit("bin", {"keys/bundle.bin": b"\x00\xff" + aws.encode() + b"\x00\xfe"})
    repo.commit("rm", remove=["keys/bundle.bin"])
    findings = history_findings(repo.root)
    assert [(f.file, f.line, f.object, f.subject) for f in findings] == [
        ("keys/bundle.bin", None, leaked, "aws-access-key-id")]
    data = json.loads(run_cli("validate", str(repo.root), "--history", "-o", "json").out)
    assert data["results"][0]["fingerprint"] == f"{leaked}:keys/bundle.bin:CH126:aws-access-key-id:0"


def test_merge_commits_and_other_branches(repo: Git) -> None:
    repo("checkout", "-q", "-b", "side")
    on_side = repo.commit("side leak", {"side.env": f"TOKEN={token(1)}\n"})
    repo("checkout", "-q", "main")
    repo.commit("main work", {"main.txt": "x\n"})
    repo("merge", "-q", "--no-ff", "-m", "merge side", "side")
    repo("checkout", "-q", "-b", "unmerged")
    repo.commit("unmerged leak", {"unmerged.env": f"TOKEN={token(2)}\n"})
    repo("checkout", "-q", "main")
    hits = list(scan_history(repo.root, scan_blob))
    # HEAD's ancestry only: the side branch through the merge, not the branch that was never merged.
    assert [(h.commit, h.path) for h in hits] == [(on_side, "side.env")]
    r, _ = open_repository(repo.root)
    order = [c.decode() for c in commits_oldest_first(r)]
    r.close()
    assert len(order) == 4 and order.index(on_side) < order.index(repo("rev-parse", "HEAD"))


def test_empty_repository_has_no_history(tmp_path: Path) -> None:
    git = Git(tmp_path / "repo")
    shutil.copytree(CORPUS / "base", git.root, dirs_exist_ok=True)
    stats = HistoryStats()
    assert list(scan_history(git.root, scan_blob, stats=stats)) == []
    assert stats.commits == 0
    result = run_cli("validate", str(git.root), "--history")
    assert result.code == 0, result.out + result.err
    assert "history: 0 commits" in result.err


def test_not_a_git_repository_is_a_usage_error(tmp_path: Path) -> None:
    repo = tmp_path / "plain"
    shutil.copytree(CORPUS / "base", repo)
    result = run_cli("validate", str(repo), "--history")
    assert result.code == 2, result.out + result.err
    assert "not inside a Git repository" in result.err and "Traceback" not in result.err
    with pytest.raises(UsageError):
        open_repository(repo)


@pytest.mark.parametrize("damage", ["head-garbage", "objects-gone", "gitdir-gone", "ref-outside", "ref-empty",
                                    "ref-control", "ref-loop"])
def test_a_history_that_cannot_be_read_is_a_usage_error_not_an_empty_one(repo: Git, damage: str) -> None:
    head = repo.root / ".git" / "HEAD"
    if damage == "head-garbage":
        head.write_text("garbage\n")
    elif damage == "ref-outside":
        head.write_text("ref: ../../x\n")
    elif damage == "ref-empty":
        head.write_text("ref: \n")
    elif damage == "ref-control":
        head.write_text("ref: refs/heads/a\x1bb\n")
    elif damage == "ref-loop":
        head.write_text("ref: refs/heads/a\n")
        (repo.root / ".git" / "refs" / "heads" / "a").write_text("ref: refs/heads/b\n")
        (repo.root / ".git" / "refs" / "heads" / "b").write_text("ref: refs/heads/a\n")
    elif damage == "objects-gone":
        for entry in (repo.root / ".git" / "objects").iterdir():
            shutil.rmtree(entry)
    else:
        shutil.rmtree(repo.root / ".git")
        (repo.root / ".git").write_text(f"gitdir: {repo.root.parent / 'gone'}\n")
    result = run_cli("validate", str(repo.root), "--history")
    assert result.code == 2, result.out + result.err
    assert "the Git history cannot be read" in result.err and "Traceback" not in result.err
    assert "0 commits" not in result.err


def test_intent_root_in_a_subdirectory_scans_only_its_part(tmp_path: Path) -> None:
    git = Git(tmp_path / "mono")
    shutil.copytree(CORPUS / "base", git.root / "deploy" / "intent")
    leaked = git.commit("intent + leak", {"deploy/intent/a.env": f"TOKEN={token(1)}\n",
                                          "service/b.env": f"TOKEN={token(2)}\n"})
    git.commit("rm", remove=["deploy/intent/a.env"])
    findings = history_findings(git.root / "deploy" / "intent")
    assert [(f.file, f.object) for f in findings] == [("a.env", leaked)]


def test_oversize_blobs_submodules_and_ignored_paths_are_left_out(repo: Git) -> None:
    repo.write(".chamberlainignore", "vendor/\n")
    repo.commit("leaks", {"vendor/lib.env": f"TOKEN={token(1)}\n", "big.env": f"TOKEN={token(2)}\n" + "x" * 5000})
    sub = repo("rev-parse", "HEAD")
    repo("update-index", "--add", "--cacheinfo", f"160000,{sub},modules/sub")
    repo("commit", "-q", "-m", "submodule")
    stats = HistoryStats()
    hits = list(scan_history(repo.root, scan_blob, max_blob_bytes=4096, stats=stats))
    assert [h.path for h in hits] == ["vendor/lib.env"]  # no ignore predicate given here
    assert stats.blobs_oversize == 1 and stats.oversize_paths == ["big.env"]
    assert stats.submodules == 1
    assert [f.file for f in history_findings(repo.root)] == ["big.env"]  # .chamberlainignore honoured


def test_baseline_accepts_history_findings(repo: Git, tmp_path: Path) -> None:
    repo.commit("leak", {"app.env": f"TOKEN={token(1)}\n"})
    repo.commit("rm", remove=["app.env"])
    base = tmp_path / "b"
    assert run_cli("validate", str(repo.root), "--history", "--write-baseline", str(base)).code == 0
    assert run_cli("validate", str(repo.root), "--history", "--baseline", str(base)).code == 0
    # Without --history the history entries are neither matched nor stale.
    plain = run_cli("validate", str(repo.root), "--baseline", str(base))
    assert plain.code == 0 and "stale" not in plain.err


def test_the_value_never_appears_in_any_output(repo: Git) -> None:
    value = token(7)
    repo.commit("leak", {"app.env": f"TOKEN={value}\n", "also.yaml": f"password: {value}\n"})
    repo.commit("rm", remove=["app.env", "also.yaml"])
    for args in ([], ["-o", "wide"], ["-o", "json"], ["-o", "yaml"], ["-o", "sarif"]):
        result = run_cli("validate", str(repo.root), "--history", *args)
        assert result.code == 1
        assert "CH126" in result.out
        assert value[4:12] not in result.out + result.err, args


def _fast_import(git: Git, commits: int, files: int) -> None:
    """``commits`` commits, each changing one of ``files`` files; one planted token in commit 10."""
    chunks = []
    for i in range(1, commits + 1):
        body = f"value {i}\n" + (f"TOKEN={token(3)}\n" if i == 10 else "")
        data = body.encode()
        chunks.append(
            f"commit refs/heads/main\nmark :{i}\ncommitter t <t@example.com> {1_700_000_000 + i} +0000\n"
            f"data 3\nc{i % 10}\n" + (f"from :{i - 1}\n" if i > 1 else "")
            + f"M 100644 inline dir{i % 7}/file{i % files}.txt\ndata {len(data)}\n{body}\n")
    git("fast-import", "--quiet", stdin="".join(chunks).encode())
    git("reset", "-q", "--hard", "main")


def test_a_500_commit_history_finishes_in_seconds(tmp_path: Path) -> None:
    git = Git(tmp_path / "repo")
    _fast_import(git, 500, 40)
    stats = HistoryStats()
    started = time.perf_counter()
    hits = list(scan_history(git.root, scan_blob, stats=stats))
    elapsed = time.perf_counter() - started
    print(f"history scan: {stats.commits} commits, {stats.blobs_scanned} blobs in {elapsed:.2f}s")
    assert stats.commits == 500 and stats.blobs_scanned == 500
    assert [h.path for h in hits] == ["dir3/file10.txt"]
    assert elapsed < 10


def test_a_shallow_clone_says_its_history_is_cut_short(repo: Git, tmp_path: Path) -> None:
    repo.commit("leak", {"app.env": f"TOKEN={token(1)}\n"})
    repo.commit("rm", remove=["app.env"])
    repo.commit("later", {"README": "x\n"})
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True,
                   capture_output=True)
    result = run_cli("validate", str(clone), "--history")
    assert result.code == 0, result.out + result.err
    assert "history: 1 commits" in result.err and "shallow clone" in result.err
    data = json.loads(run_cli("validate", str(clone), "--history", "-o", "json").out)
    assert data["history"]["missingCommits"] == 1 and data["history"]["commits"] == 1


@pytest.mark.parametrize("source", [CORPUS / "good" / "sealed-secret", EXAMPLES / "acme"], ids=["sealed-secret",
                                                                                               "acme"])
def test_history_judges_blobs_as_the_working_tree_judges_files(tmp_path: Path, source: Path) -> None:
    """SealedSecret ciphertext and intent documents are no credentials in history either (a clean tree committed
    has a clean history)."""
    git = Git(tmp_path / "repo")
    shutil.copytree(CORPUS / "base", git.root, dirs_exist_ok=True)
    shutil.copytree(source, git.root, dirs_exist_ok=True)
    git.commit("clean")
    tree = json.loads(run_cli("validate", str(git.root), "-o", "json").out)
    history = json.loads(run_cli("validate", str(git.root), "--history", "-o", "json").out)
    assert "CH024" not in tree["byRule"]
    assert history["byRule"] == tree["byRule"]


def test_allow_markers_and_key_stores_in_history(repo: Git) -> None:
    leaked = repo.commit("files", {"allowed.env": f"TOKEN={token(1)}  # chamberlain:allow CH024\n",
                                   "certs/client.p12": b"\x30\x82\x01\x00binary"})
    repo.commit("rm", remove=["allowed.env", "certs/client.p12"])
    assert [(f.file, f.subject, f.object) for f in history_findings(repo.root)] == [
        ("certs/client.p12", "keystore", leaked)]
