"""``chamberlain render`` starts a large render in a child while the checks run, and a first render's Vault bundle is
written meanwhile to a stage that becomes ``vault/`` only when everything passed. The output is the same bytes as a
render one step after another; a refused or failed render leaves the output directory as it found it; the child never
outlives its use."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

import chamberlain.render as render_pkg
from chamberlain.checks import gate
from chamberlain.findings import Finding
from chamberlain.intent.loader import load_repository
from chamberlain.render import RenderError, forked, layout, render_repository, staging, write_tree
from chamberlain.service import repository as service
from tests.conftest import EXAMPLES
from tests.unit.test_render import REPOS

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

EXAMPLE_REPOS = [*REPOS.values(), EXAMPLES / "acme-tenancy"]


@pytest.fixture(autouse=True)
def _every_repository_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The examples are small: let them fork as a 10k repository does, also when earlier tests in this process
    left threads behind (``usable`` refuses then; the command-line process it guards runs one thread)."""
    monkeypatch.setattr(render_pkg, "PARALLEL_MIN_INTENTS", 0)
    monkeypatch.setattr(forked, "usable", lambda: True)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _plain_render(repo_path: Path, out: Path) -> dict[str, bytes]:
    write_tree(render_repository(load_repository(repo_path)), out)
    return _files(out)


class _Spy:
    """Records what start_render handed out, so a test can tell the stage was used."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started: list[render_pkg.RenderAhead | None] = []
        real = render_pkg.start_render

        def start(repo: Any, out_dir: Path | None = None) -> render_pkg.RenderAhead | None:
            ahead = real(repo, out_dir)
            self.started.append(ahead)
            return ahead

        monkeypatch.setattr(render_pkg, "start_render", start)


def _no_children_left() -> None:
    deadline = time.monotonic() + 5
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("path", EXAMPLE_REPOS, ids=lambda p: p.name)
def test_a_first_render_with_the_bundle_staged_is_the_plain_render_byte_for_byte(
        path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch)
    outcome = service.render(path, tmp_path / "out")
    assert outcome.rendered
    ahead = spy.started[-1]
    assert ahead is not None and ahead.staged is not None, "the child staged the bundle"
    got = _files(tmp_path / "out")
    assert got == _plain_render(path, tmp_path / "plain")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(staging.STAGE_PREFIX)]
    assert any(p.startswith("vault/") for p in got)
    _no_children_left()


def test_an_empty_directory_is_a_first_render_too_and_a_rerender_writes_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    out.mkdir()
    spy = _Spy(monkeypatch)
    service.render(path, out)
    first = spy.started[-1]
    assert first is not None and first.staged is not None
    policy = next((out / "vault" / "policies").iterdir())
    before = policy.stat().st_mtime_ns
    time.sleep(0.01)
    service.render(path, out)
    again = spy.started[-1]
    assert again is not None and again.staged is None, "a directory holding a render is compared, not staged"
    assert policy.stat().st_mtime_ns == before, "an unchanged file is not rewritten"
    assert _files(out) == _plain_render(path, tmp_path / "plain")


def _refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(repo: Any) -> gate.Validation:
        return gate.Validation(repo, [Finding("platform.yaml", 1, "CH001", "refused for the test")])

    monkeypatch.setattr(gate, "check_repository", refused)


@pytest.mark.parametrize("exists", [False, True], ids=["absent", "empty"])
def test_a_refused_repository_leaves_the_output_directory_as_it_was(
        exists: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    if exists:
        out.mkdir()
    _refuse(monkeypatch)
    spy = _Spy(monkeypatch)
    outcome = service.render(next(iter(REPOS.values())), out)
    assert spy.started[-1] is not None, "the child started before the checks"
    assert not outcome.rendered and outcome.findings
    assert out.is_dir() == exists
    assert not exists or not list(out.iterdir())
    _no_children_left()


def test_a_child_still_busy_when_the_checks_refuse_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the child works on a repository not yet checked; whatever it does there (here: never finishing) ends
    with the refusal."""
    def forever(repo: Any, stage: Any) -> Any:
        time.sleep(600)

    monkeypatch.setattr(render_pkg, "_child_share", forever)
    _refuse(monkeypatch)
    spy = _Spy(monkeypatch)
    start = time.monotonic()
    service.render(next(iter(REPOS.values())), tmp_path / "out")
    assert time.monotonic() - start < 10
    assert spy.started[-1] is not None
    assert not (tmp_path / "out").exists()
    _no_children_left()


def test_a_part_failing_in_the_child_is_raised_first_hand_and_nothing_is_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()

    def bundle(_topo: Any) -> dict[str, str]:
        raise RenderError(f"the bundle failed in {'the parent' if os.getpid() == parent else 'a child'}")

    monkeypatch.setattr(layout, "bundle", bundle)
    with pytest.raises(RenderError, match="the bundle failed in the parent"):
        service.render(next(iter(REPOS.values())), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _no_children_left()


def test_a_stage_that_cannot_be_moved_is_written_like_the_other_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    real_rename = os.rename

    def refuse_stages(src: Any, dst: Any) -> None:
        if Path(src).name.startswith(staging.STAGE_PREFIX):
            raise OSError(18, "Invalid cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", refuse_stages)
    service.render(path, out)
    assert _files(out) == _plain_render(path, tmp_path / "plain")
    assert not [p for p in out.iterdir() if p.name.startswith(staging.STAGE_PREFIX)]


@pytest.mark.parametrize("earlier", [False, True], ids=["no-earlier-render", "earlier-render"])
def test_a_stage_left_by_a_killed_render_is_removed_by_the_next(
        earlier: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    if earlier:
        service.render(path, out)
    leftover = out / f"{staging.STAGE_PREFIX}999999"
    (leftover / "policies").mkdir(parents=True)
    (leftover / "policies" / "x.hcl").write_text("half written")
    service.render(path, out)
    assert not leftover.exists()
    assert _files(out) == _plain_render(path, tmp_path / "plain")


def test_what_only_looks_like_a_stage_is_not_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_text("mine")
    (out / f"{staging.STAGE_PREFIX}1").symlink_to(target)
    (out / f"{staging.STAGE_PREFIX}notapid").mkdir()
    staging.remove_leftovers(out)
    assert (target / "keep").read_text() == "mine"
    assert (out / f"{staging.STAGE_PREFIX}notapid").is_dir()
    assert staging.Stage.prepare(out) is None, "a directory holding something else is not a first render"


@pytest.mark.parametrize("bad", ["vault/../escape.json", "vault//x.json", "vault/./x.json", "/vault/x.json",
                                 "vault/a\nb.json", "clusters/x.yaml"])
def test_the_child_stages_nothing_when_a_path_is_not_plain(bad: str, tmp_path: Path) -> None:
    """The child writes before the checks are done: a path the render would refuse makes it stage nothing, and
    nothing is written outside the stage."""
    stage = staging.Stage.prepare(tmp_path / "out")
    assert stage is not None
    assert stage.write({"vault/fine.json": "{}", bad: "{}"}) is None
    assert not (tmp_path / "out" / "escape.json").exists() and not (tmp_path / "escape.json").exists()
    stage.discard()
    assert not (tmp_path / "out").exists()


def test_render_check_stages_nothing_and_reports_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    service.render(path, out)
    (out / "crds" / "kustomization.yaml").write_text("changed\n")
    spy = _Spy(monkeypatch)
    outcome = service.render(path, out, check=True)
    ahead = spy.started[-1]
    assert ahead is not None and ahead.staged is None
    assert outcome.stale is not None and outcome.stale.changed == ["crds/kustomization.yaml"]
    assert not [p for p in out.iterdir() if p.name.startswith(staging.STAGE_PREFIX)]
    shutil.rmtree(out)
    _no_children_left()


def test_a_stage_that_cannot_be_made_leaves_no_directory_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{staging.STAGE_PREFIX}{os.getpid()}").symlink_to(tmp_path)  # planted where the stage would go
    assert staging.Stage.prepare(out) is None
    fresh = tmp_path / "fresh"
    real_mkdir = Path.mkdir

    def no_stage(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name.startswith(staging.STAGE_PREFIX):
            raise PermissionError(13, "Permission denied")
        real_mkdir(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "mkdir", no_stage)
        assert staging.Stage.prepare(fresh) is None
    assert not fresh.exists()
