"""Indexes the checks share within one run (chamberlain.intent.memo) change nothing but time: the same findings
with and without the memo on every example and test repository; outside a run nothing is kept."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from chamberlain.checks import registry
from chamberlain.checks.registry import run_checks
from chamberlain.intent import memo
from chamberlain.intent.loader import Repository, load_repository

ROOT = Path(__file__).resolve().parents[2]
REPOS = sorted([*(p for p in (ROOT / "examples").iterdir() if p.is_dir()),
                *(p for group in ("repos",) for sub in (ROOT / "tests" / group).iterdir() if sub.is_dir()
                  for p in sub.iterdir() if p.is_dir()),
                *(p for sub in ("bad", "good") for p in (ROOT / "tests" / "corpus" / sub).iterdir() if p.is_dir())])


@pytest.mark.parametrize("root", REPOS, ids=[str(p.relative_to(ROOT)) for p in REPOS])
def test_same_findings_with_and_without_the_memo(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = load_repository(root, git=None)
    shared = run_checks(repo)

    @contextlib.contextmanager
    def off(_: object) -> Iterator[None]:
        yield

    monkeypatch.setattr(registry, "reading", off)
    assert run_checks(repo) == shared


def test_memo_keeps_values_only_within_reading_of_the_same_repository() -> None:
    repo, other = Repository(root=Path(".")), Repository(root=Path("."))
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert memo.memo(repo, "k", compute) == 1 and memo.memo(repo, "k", compute) == 2  # outside: every time
    with memo.reading(repo):
        assert memo.memo(repo, "k", compute) == 3
        assert memo.memo(repo, "k", compute) == 3
        assert memo.memo(other, "k", compute) == 4  # another repository is never served from this memo
        with memo.reading(repo):  # nested over the same repository: the same memo
            assert memo.memo(repo, "k", compute) == 3
        with memo.reading(other):
            assert memo.memo(other, "k", compute) == 5
            assert memo.memo(repo, "k", compute) == 6
        assert memo.memo(repo, "k", compute) == 3
    assert memo.memo(repo, "k", compute) == 7  # the block ended: nothing kept


def test_an_index_changed_after_a_run_is_seen_by_the_next_one() -> None:
    repo = load_repository(ROOT / "examples" / "acme", git=None)
    with memo.reading(repo):
        before = repo.intent_index()
        assert repo.intent_index() is before
    dropped = repo.intents.pop()
    assert dropped.obj.metadata.name not in repo.intent_index()
