"""The per-file checks keep their promise, and reusing their findings changes nothing but time.

A per-file check's findings on an intent file depend only on that file and the context (every other file); its
findings on a context file do not depend on intent files at all (chamberlain.checks.incremental). Each example and
test repository is tried as it is, *split* (every SecretIntent of an intent file moved into a file of its own, so
that two intents that used to share a file are told apart) and *doubled* (split, and each intent file copied under
a second name: every intent has a twin in another file, so any check that looks at other intents, by name, target,
role or path, sees a difference).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.checks import incremental, run_checks
from chamberlain.checks.registry import CHECKS, PER_FILE, load_checks
from chamberlain.findings import Finding
from chamberlain.intent.cache import ParseCache
from chamberlain.intent.loader import Repository, load_repository, parse_cache
from chamberlain.intent.memo import reading

ROOT = Path(__file__).resolve().parents[2]
REPOS = sorted([*(p for p in (ROOT / "examples").iterdir() if p.is_dir()),
                *(p for group in (ROOT / "tests" / "repos").iterdir() if group.is_dir()
                  for p in group.iterdir() if p.is_dir()),
                *(p for sub in ("bad", "good") for p in (ROOT / "tests" / "corpus" / sub).iterdir() if p.is_dir())])
IDS = [str(p.relative_to(ROOT)) for p in REPOS]


def _full(findings: Iterable[Finding]) -> set[tuple[Any, ...]]:
    return {(f.file, f.line, f.rule, f.message, f.column, f.object, f.subject) for f in findings}


def _split(source: Path, target: Path) -> Path:
    """A copy of ``source`` where each document of an intent-only YAML file lies in a file of its own."""
    shutil.copytree(source, target, symlinks=True)
    for path in sorted(target.rglob("*.y*ml")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            docs = list(yaml.safe_load_all(text))
        except (UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError):
            continue
        if len(docs) < 2 or not all(isinstance(d, dict) and d.get("kind") == "SecretIntent" for d in docs):
            continue
        parts = [p for p in text.split("\n---") if p.strip() and yaml.safe_load(p) is not None]
        if len(parts) != len(docs):
            continue
        for i, part in enumerate(parts):
            path.with_name(f"{path.stem}-{i}{path.suffix}").write_text(part.lstrip("-\n") + "\n", encoding="utf-8")
        path.unlink()
    return target


def _doubled(source: Path, target: Path) -> Path:
    _split(source, target)
    for path in sorted(target.rglob("*.y*ml")):
        if _intent_only(path):
            path.with_name(f"twin-{path.name}").write_bytes(path.read_bytes())
    return target


def _intent_only(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False
    return "kind: SecretIntent" in text and "kind: Platform" not in text


def _load(root: Path, tmp: Path) -> Repository:
    with parse_cache(ParseCache(tmp / "digests")):  # intent files are those read through the cache
        return load_repository(root, git=None)


def _run(name: str, repo: Repository) -> set[tuple[Any, ...]]:
    with reading(repo):
        return _full(CHECKS[name](repo))


def _promise_kept(repo: Repository) -> None:
    intents = incremental.intent_files(repo)
    for name in sorted(PER_FILE):
        whole = _run(name, repo)
        on_context = {f for f in whole if f[0] not in intents}
        assert _run(name, repo.without(intents.keys())) == on_context, f"{name}: context findings need intents"
        for rel in intents:
            alone = _run(name, repo.without(intents.keys() - {rel}))
            assert alone == on_context | {f for f in whole if f[0] == rel}, (
                f"{name}: what it finds on {rel} depends on other intent files")


@pytest.mark.parametrize("root", REPOS, ids=IDS)
def test_every_per_file_check_keeps_its_promise(root: Path, tmp_path: Path) -> None:
    load_checks()
    _promise_kept(_load(root, tmp_path))
    _promise_kept(_load(_split(root, tmp_path / "split"), tmp_path))
    _promise_kept(_load(_doubled(root, tmp_path / "doubled"), tmp_path))


def _edit_each_intent_file(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*.y*ml")):
        if _intent_only(path):
            path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
            yield path


@pytest.mark.parametrize("root", REPOS, ids=IDS)
def test_reused_findings_equal_a_run_without_the_cache(root: Path, tmp_path: Path) -> None:
    work = _doubled(root, tmp_path / "repo")
    store = ParseCache(tmp_path / "cache")

    def checked(cache: ParseCache | None) -> set[tuple[Any, ...]]:
        with parse_cache(cache):
            return _full(run_checks(load_repository(work, git=None)))

    assert checked(store) == checked(None)  # cold: computes, writes
    assert checked(store) == checked(None)  # warm: everything reused
    for _ in _edit_each_intent_file(work):
        assert checked(store) == checked(None)  # one file changed at a time: that file's findings computed


def test_a_context_change_computes_every_file_again(tmp_path: Path) -> None:
    work = _split(ROOT / "examples" / "acme", tmp_path / "repo")
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        repo = load_repository(work, git=None)
        run_checks(repo)
        first = incremental.plan(repo, store)
    assert first is not None and first.cached and not first.fresh
    platform = work / "platform.yaml"
    platform.write_text(platform.read_text(encoding="utf-8") + "\n# a comment is a change too\n", encoding="utf-8")
    with parse_cache(store):
        again = incremental.plan(load_repository(work, git=None), store)
    assert again is not None and not again.cached and set(again.fresh) == set(first.cached)


def test_a_tampered_findings_entry_is_ignored(tmp_path: Path) -> None:
    work = _split(ROOT / "examples" / "acme", tmp_path / "repo")
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        reference = _full(run_checks(load_repository(work, git=None)))
    entries = list(store.findings_dir.glob("*.json"))
    assert entries
    for entry in entries:
        entry.write_text('{"format": 1, "findings": [[1, "CH999", "forged", null, null, null]]}', encoding="utf-8")
    with parse_cache(ParseCache(tmp_path / "cache")):
        assert _full(run_checks(load_repository(work, git=None))) == reference


def test_without_covers_every_field_of_a_repository() -> None:
    # A field added to Repository must be filtered by Repository.without (or deliberately shared): decide here.
    assert {f.name for f in dataclasses.fields(Repository)} == {
        "root", "files", "platforms", "policies", "intents", "manifests", "problems", "exclusions",
        "unseal_exports", "invalid", "git_root",
    }


def test_a_credential_anywhere_keeps_every_finding_out_of_the_cache(tmp_path: Path) -> None:
    # CH019 on the intent file lists its bootstrap Secret's key names; a key named like a token (CH024 on the
    # plaintext bootstrap file) would otherwise reach the cache inside the intent file's findings.
    canary = "ghp_" + "A1b2C3d4" * 4 + "E5f6"
    work = tmp_path / "repo"
    (work / "intents").mkdir(parents=True)
    (work / "bootstrap").mkdir()
    platform = (ROOT / "tests" / "repos" / "incremental" / "bootstrap-file-is-an-intent-file" / "platform.yaml")
    (work / "platform.yaml").write_text(platform.read_text(encoding="utf-8").split("\n---\nkind: SecretIntent")[0]
                                        .rsplit("\n---\napiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent",
                                                1)[0] + "\n", encoding="utf-8")
    (work / "intents" / "a.yaml").write_text(
        "apiVersion: chamberlain.dev/v1alpha1\nkind: SecretIntent\nmetadata: {name: alpha}\nspec:\n"
        "  owner: team-app\n  purpose: bootstrap value a\n  classification: bootstrap\n"
        "  source:\n    bootstrap: {file: bootstrap/a.yaml}\n  rotation: {type: static}\n"
        "  consumers:\n    - namespace: appa\n      secretName: sa\n      keys: {K: api-token}\n", encoding="utf-8")
    (work / "bootstrap" / "a.yaml").write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: sa, namespace: appa}}\nstringData:\n  {canary}: x\n",
        encoding="utf-8")
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        found = run_checks(load_repository(work, git=None))
    assert any(f.rule == "CH019" and canary in f.message for f in found)  # what would have been kept
    assert any(f.rule in {"CH020", "CH024"} for f in found)
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
