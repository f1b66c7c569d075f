"""``chamberlain render`` starts a large render in a child while the checks run, and a first render's Vault bundle is
written meanwhile to a stage that becomes ``vault/`` only when everything passed. The output is the same bytes as a
render one step after another; a refused or failed render leaves the output directory as it found it; the child never
outlives its use."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
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


def _files(root: Path) -> dict[str, bytes | int]:
    """Every file's bytes and every directory's and file's mode, by path."""
    out: dict[str, bytes | int] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[f"{rel} mode"] = p.stat().st_mode
        if p.is_file():
            out[rel] = p.read_bytes()
    return out


def _plain_render(repo_path: Path, out: Path) -> dict[str, bytes]:
    write_tree(render_repository(load_repository(repo_path)), out)
    return _files(out)


class _Spy:
    """Records what start_render handed out, so a test can tell the stage was used."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started: list[render_pkg.RenderAhead | None] = []
        real = render_pkg.start_render

        def start(repo: Any, *, stage: bool = False) -> render_pkg.RenderAhead | None:
            ahead = real(repo, stage=stage)
            self.started.append(ahead)
            return ahead

        monkeypatch.setattr(render_pkg, "start_render", start)


def _moved(ahead: render_pkg.RenderAhead | None, out: Path) -> bool:
    """The child staged the bundle and the stage's own vault/ became ``out/vault`` (not a copy written anew)."""
    staged = ahead.staged if ahead is not None else None
    st = (out / "vault").stat()
    return staged is not None and staged.stage.identity == (st.st_dev, st.st_ino)


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
    assert _moved(spy.started[-1], tmp_path / "out"), "the child staged the bundle and it was moved into place"
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
    assert _moved(spy.started[-1], out)
    policy = next((out / "vault" / "policies").iterdir())
    before = policy.stat().st_mtime_ns
    time.sleep(0.01)
    service.render(path, out)
    again = spy.started[-1]
    assert again is not None and again.staged is None, "a directory holding a render is compared, not staged"
    assert policy.stat().st_mtime_ns == before, "an unchanged file is not rewritten"
    assert _files(out) == _plain_render(path, tmp_path / "plain")


def _refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(repo: Any, baseline: Any = None) -> gate.Validation:
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
    def forever(repo: Any) -> Any:
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


@pytest.mark.parametrize("refused", [True, False], ids=["refused", "passed"])
def test_nothing_is_written_before_the_checks_passed(
        refused: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks may refuse a value that render would copy into the bundle: while they run, nothing of the render
    is on disk, and a refusal leaves nothing either."""
    out, seen = tmp_path / "out", []
    real = gate.check_repository

    def slow_check(repo: Any, baseline: Any = None) -> gate.Validation:
        time.sleep(1.0)  # the child has long built its share by now
        seen.append(sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")))
        if refused:
            return gate.Validation(repo, [Finding("platform.yaml", 1, "CH001", "refused for the test")])
        return real(repo, baseline)

    monkeypatch.setattr(gate, "check_repository", slow_check)
    spy = _Spy(monkeypatch)
    outcome = service.render(next(iter(REPOS.values())), out)
    assert spy.started[-1] is not None
    assert seen == [[]]
    assert outcome.rendered is not refused
    assert out.exists() is not refused
    _no_children_left()


def test_a_part_failing_in_the_child_is_raised_first_hand_and_nothing_is_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()

    def bundle(_topo: Any, *_args: Any) -> dict[str, str]:
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

    def refuse_stages(src: Any, dst: Any, **kwargs: Any) -> None:
        if Path(src).parent.name.startswith(staging.STAGE_PREFIX):
            raise OSError(18, "Invalid cross-device link")
        real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", refuse_stages)
    service.render(path, out)
    assert _files(out) == _plain_render(path, tmp_path / "plain")
    assert not [p for p in out.iterdir() if p.name.startswith(staging.STAGE_PREFIX)]


def test_a_stage_replaced_by_another_directory_is_not_moved(tmp_path: Path) -> None:
    stage = staging.Stage.create(tmp_path / "out")
    assert stage is not None
    assert stage.write({"vault/policies/a.hcl": "x"}) == frozenset({"vault/policies/a.hcl"})
    os.rename(stage.path / "vault", tmp_path / "away")
    (stage.path / "vault" / "policies").mkdir(parents=True)  # someone else's directory under the stage's name
    assert stage.write({"vault/policies/b.hcl": "x"}) is None, "the child writes only into the stage it was given"
    assert not stage.move_into_place()
    assert not (tmp_path / "out" / "vault").exists()
    stage.discard()


@pytest.mark.parametrize("mode", [0o775, 0o757], ids=["group-writable", "world-writable"])
def test_a_directory_others_may_write_to_gets_no_stage_and_the_same_output(
        mode: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    out.mkdir()
    out.chmod(mode)
    assert staging.Stage.create(out) is None
    spy = _Spy(monkeypatch)
    service.render(path, out)
    ahead = spy.started[-1]
    assert ahead is not None and ahead.staged is None
    assert _files(out) == _plain_render(path, tmp_path / "plain")


def _killed_stage(out: Path) -> Path:
    """A stage as a killed render leaves it: written, its lock released (the process that held it is gone)."""
    scratch = out.parent / "scratch"
    stage = staging.Stage.create(scratch)
    assert stage is not None
    assert stage.write({"vault/policies/x.hcl": "half written"}) is not None
    left = out / stage.path.name
    os.rename(stage.path, left)
    os.close(stage.lock)
    scratch.rmdir()
    return left


@pytest.mark.parametrize("earlier", [False, True], ids=["no-earlier-render", "earlier-render"])
def test_a_stage_left_by_a_killed_render_is_removed_by_the_next(
        earlier: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    if earlier:
        service.render(path, out)
    else:
        out.mkdir()
    leftover = _killed_stage(out)
    service.render(path, out)
    assert not leftover.exists()
    assert _files(out) == _plain_render(path, tmp_path / "plain")


def test_a_live_stage_and_what_only_looks_like_a_stage_are_never_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    live = staging.Stage.create(out)
    assert live is not None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("mine")
    lookalikes = [out / f"{staging.STAGE_PREFIX}2024abcd", out / f"{staging.STAGE_PREFIX}notes_01"]
    lookalikes[0].mkdir()
    (lookalikes[0] / "notes.md").write_text("mine")  # no lock file: not a stage
    lookalikes[1].mkdir()
    (lookalikes[1] / staging.LOCK_NAME).symlink_to(elsewhere / "keep")  # a lock that is not a file of ours
    (out / f"{staging.STAGE_PREFIX}linkabcd").symlink_to(elsewhere)
    staging.remove_leftovers(out)
    assert live.path.is_dir() and all(p.is_dir() for p in lookalikes)
    assert (elsewhere / "keep").read_text() == "mine"
    live.discard()
    with pytest.raises(Exception, match="not empty"):
        write_tree(render_repository(load_repository(next(iter(REPOS.values())))), out)
    assert (lookalikes[0] / "notes.md").read_text() == "mine"


@pytest.mark.parametrize("bad", ["vault/../escape.json", "vault//x.json", "vault/./x.json", "/vault/x.json",
                                 "vault/a\nb.json", "clusters/x.yaml"])
def test_the_child_stages_nothing_when_a_path_is_not_plain(bad: str, tmp_path: Path) -> None:
    stage = staging.Stage.create(tmp_path / "out")
    assert stage is not None
    assert stage.write({"vault/fine.json": "{}", bad: "{}"}) is None
    assert not (tmp_path / "out" / "escape.json").exists() and not (tmp_path / "escape.json").exists()
    stage.discard()
    assert not (tmp_path / "out").exists()


def test_a_symlink_inside_the_stage_is_never_followed(tmp_path: Path) -> None:
    stage = staging.Stage.create(tmp_path / "out")
    assert stage is not None
    (tmp_path / "victim").mkdir()
    (stage.path / "vault" / "policies").symlink_to(tmp_path / "victim")
    assert stage.write({"vault/policies/a.hcl": "x"}) is None
    assert not list((tmp_path / "victim").iterdir())
    stage.discard()


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


@pytest.mark.parametrize("spelling", ["out", "./out", "sub/../out", "out/", "."])
def test_a_relative_output_directory_is_staged_too(spelling: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = next(iter(REPOS.values())).resolve()
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    if spelling == ".":
        work = work / "sub"
    monkeypatch.chdir(work)
    real_mkdtemp = tempfile.mkdtemp
    # Python 3.12 and later: mkdtemp returns an absolute path even for a relative dir
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: os.path.abspath(real_mkdtemp(**kw)))
    spy = _Spy(monkeypatch)
    service.render(path, Path(spelling))
    out = (work / spelling).resolve()
    assert _moved(spy.started[-1], out)
    assert _files(out) == _plain_render(path, tmp_path / "plain")


def _dies_in_the_child(value: Any, stage: object) -> Any:
    os._exit(1)


@pytest.mark.parametrize("how", ["dies", "cannot-stage"])
def test_a_child_that_dies_or_cannot_stage_leaves_the_render_to_the_command(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    if how == "dies":
        monkeypatch.setattr(render_pkg, "_write_stage", _dies_in_the_child)
    else:
        monkeypatch.setattr(staging.Stage, "write", lambda self, files: None)
    spy = _Spy(monkeypatch)
    service.render(path, out)
    ahead = spy.started[-1]
    assert ahead is not None and ahead.staged is None
    assert _files(out) == _plain_render(path, tmp_path / "plain")
    _no_children_left()


def test_a_fifo_planted_as_a_lock_file_hangs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake = out / f"{staging.STAGE_PREFIX}abcdefgh"
    fake.mkdir(parents=True)
    os.mkfifo(fake / staging.LOCK_NAME)
    started = time.monotonic()
    staging.remove_leftovers(out)
    assert staging.Stage.create(out) is None
    assert time.monotonic() - started < 5
    assert fake.is_dir()


def test_a_setgid_directory_gives_vault_the_same_mode_as_a_plain_render(tmp_path: Path) -> None:
    path = next(iter(REPOS.values()))
    for name in ("out", "plain"):
        (tmp_path / name).mkdir()
        (tmp_path / name).chmod(0o2755)
    service.render(path, tmp_path / "out")
    assert _files(tmp_path / "out") == _plain_render(path, tmp_path / "plain")
    assert (tmp_path / "out" / "vault").stat().st_mode & 0o2000


def test_a_render_beside_a_live_stage_writes_in_place_and_leaves_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two renders into one new directory: the second finds the first's stage, writes its files itself, and
    never touches the other's stage."""
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    other = staging.Stage.create(out)
    assert other is not None
    spy = _Spy(monkeypatch)
    service.render(path, out)
    ahead = spy.started[-1]
    assert ahead is not None and ahead.staged is None
    assert other.path.is_dir()
    other.discard()
    assert _files(out) == _plain_render(path, tmp_path / "plain")


def test_a_stage_stopped_while_being_made_or_removed_is_removed_by_the_next_render(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    empty = out / f"{staging.STAGE_PREFIX}empty123"
    empty.mkdir()  # stopped after mkdtemp, or after its lock file was removed
    unnamed = out / f"{staging.STAGE_PREFIX}unnamed1"
    unnamed.mkdir()
    (unnamed / ".chamberlain-stage-lock.new").write_text("")  # stopped before its lock had its name
    making = staging.Stage.create(tmp_path / "elsewhere")  # a live one, moved here: locked, never removed
    assert making is not None
    live = out / making.path.name
    os.rename(making.path, live)
    staging.remove_leftovers(out)
    assert not empty.exists() and not unnamed.exists()
    assert live.is_dir()
    os.close(making.lock)


def test_an_interrupt_while_making_a_stage_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(staging.fcntl, "flock", interrupted)
    with pytest.raises(KeyboardInterrupt):
        staging.Stage.create(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_stage_is_moved_and_removed_through_its_descriptors_never_its_path_again(tmp_path: Path) -> None:
    """Someone who may rename entries above the output directory swaps it for one whose stage-named entry leads to
    a victim's directory: the stage is neither moved there nor is the victim's ``vault/`` removed."""
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    (victim / "vault" / "keep").mkdir(parents=True)
    (victim / "vault" / "keep" / "important.txt").write_text("mine")
    (victim / staging.LOCK_NAME).write_text("")
    out = shared / "out"
    shared.mkdir()
    stage = staging.Stage.create(out)
    assert stage is not None
    assert stage.write({"vault/policies/a.hcl": "x"}) is not None
    os.rename(out, shared / "out.orig")
    out.mkdir()
    (out / stage.path.name).symlink_to(victim)
    assert not stage.move_into_place(), "the path leads elsewhere now"
    stage.discard()
    assert (victim / "vault" / "keep" / "important.txt").read_text() == "mine"
    assert (victim / staging.LOCK_NAME).exists()
    assert (out / stage.path.name).is_symlink() and not (out / "vault").exists()
    assert not list((shared / "out.orig").iterdir()), "the render's own stage is removed where it really is"


def test_a_moved_stage_lands_in_the_directory_it_was_made_in(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stage = staging.Stage.create(out)
    assert stage is not None
    assert stage.write({"vault/policies/a.hcl": "x"}) is not None
    assert stage.move_into_place()
    assert (out / "vault" / "policies" / "a.hcl").read_text() == "x"
    assert not stage.move_into_place(), "vault/ is there now: never replaced"
    stage.discard()
    assert sorted(p.name for p in out.iterdir()) == ["vault"]


def _lookalikes(directory: Path) -> dict[str, Path]:
    """Directories a user may have that carry a stage's name without being stages, and an empty one."""
    made = {
        "empty": directory / f"{staging.STAGE_PREFIX}emptydir",
        "with-a-lock": directory / f"{staging.STAGE_PREFIX}backup01",
        "vault-and-more": directory / f"{staging.STAGE_PREFIX}backup02",
    }
    for path in made.values():
        path.mkdir(parents=True)
    (made["with-a-lock"] / "notes.txt").write_text("mine")
    (made["with-a-lock"] / staging.LOCK_NAME).write_text("")
    (made["vault-and-more"] / "vault").mkdir()
    (made["vault-and-more"] / staging.LOCK_NAME).write_text("")
    (made["vault-and-more"] / "todo.txt").write_text("mine")
    return made


def test_a_refused_render_removes_nothing_not_even_what_looks_like_a_dead_stage(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "README").write_text("mine")
    made = _lookalikes(proj)
    with pytest.raises(Exception, match="not empty"):
        service.render(next(iter(REPOS.values())), proj)
    assert all(path.is_dir() for path in made.values())
    assert (made["with-a-lock"] / "notes.txt").read_text() == "mine"
    assert (made["vault-and-more"] / "todo.txt").read_text() == "mine"


def test_only_the_shape_of_a_stage_is_removed_from_a_renders_directory(tmp_path: Path) -> None:
    path, out = next(iter(REPOS.values())), tmp_path / "out"
    service.render(path, out)
    made = _lookalikes(out)
    service.render(path, out)
    assert not made["empty"].exists(), "an empty stage-named directory in a render's directory is a dead stage"
    assert (made["with-a-lock"] / "notes.txt").read_text() == "mine"
    assert (made["vault-and-more"] / "todo.txt").read_text() == "mine"
