"""A render whose clusters' files and Vault bundle a forked child builds is the same render: the same bytes, and
the same first error (a duplicate object or a part's own failure) in the same words."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chamberlain.intent.loader import load_repository
from chamberlain.render import RenderError, forked, layout
from chamberlain.render.bootstrap import collect
from chamberlain.render.topology import Topology, build_topology
from tests.conftest import EXAMPLES
from tests.unit.test_render import REPOS

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


def _inputs(path: Path) -> tuple[Topology, list[Any]]:
    repo = load_repository(path)
    assert repo.platform is not None
    topo = build_topology(repo.platform, [p.obj for p in repo.policy_index().values()],
                          [i.obj for i in repo.intent_index().values()])
    return topo, list(collect(repo))


@pytest.mark.parametrize("path", [*REPOS.values(), EXAMPLES / "acme-tenancy"], ids=lambda p: p.name)
def test_a_child_building_part_of_the_render_changes_no_byte(path: Path) -> None:
    topo, bootstrap = _inputs(path)
    alone = layout.build_files(topo, bootstrap)
    helped = layout.build_files(topo, bootstrap, fork=True)
    assert list(helped) == list(alone)
    assert helped == alone
    assert any(p.startswith("vault/") for p in helped) and any(p.startswith("clusters/") for p in helped)


def _error(topo: Topology, bootstrap: list[Any], fork: bool) -> str:
    with pytest.raises(RenderError) as raised:
        layout.build_files(topo, bootstrap, fork=fork)
    return str(raised.value)


def test_a_part_failing_in_the_child_is_raised_first_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child sends nothing back for a failed part: the parent builds it again and raises the error itself."""
    topo, bootstrap = _inputs(next(iter(REPOS.values())))
    parent = os.getpid()

    def bundle(_topo: Topology, *_args: object) -> dict[str, str]:
        raise RenderError(f"the bundle failed in {'the parent' if os.getpid() == parent else 'a child'}")

    monkeypatch.setattr(layout, "bundle", bundle)
    assert _error(topo, bootstrap, fork=False) == "the bundle failed in the parent"
    assert _error(topo, bootstrap, fork=True) == "the bundle failed in the parent"


def test_a_duplicate_across_the_parts_is_the_same_first_error_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """A namespace's objects claiming what a cluster's installation already defines: reported at the environments'
    claim (the clusters' files come first in sequence) whether or not the clusters' part ran in a child."""
    topo, bootstrap = _inputs(next(iter(REPOS.values())))
    original = layout._cluster_files

    def clusters(part: layout._Part, topo: Topology, layer: Any, reuse: layout.Pieces) -> None:
        original(part, topo, layer, reuse)
        for cluster, ns in sorted({(unit.cluster, ns) for unit in topo.units for ns in unit.namespaces}):
            part.claims.claim_one(cluster, "", "ServiceAccount", ns, "chamberlain-planted", "clusters/planted")

    real_docs = layout.eso.publisher_documents

    def publishers(*args: Any) -> list[Any]:
        docs = real_docs(*args)
        return [*docs, layout.eso.Document("v1", "ServiceAccount", args[3], "chamberlain-planted", "")]

    monkeypatch.setattr(layout, "_cluster_files", clusters)
    monkeypatch.setattr(layout.eso, "publisher_documents", publishers)
    alone = _error(topo, bootstrap, fork=False)
    assert "ServiceAccount" in alone and "chamberlain-planted" in alone and "(clusters/planted and envs/" in alone
    assert _error(topo, bootstrap, fork=True) == alone


def test_assembly_reports_a_duplicate_made_before_a_part_s_error_first() -> None:
    """Run in sequence, a duplicate claimed before a part's own error stops the render there: the part's later
    error is never reached, so assembly reports the duplicate."""
    first, second = layout._Part(), layout._Part()
    first.claims.claim_one("c1", "", "ServiceAccount", "ns", "sa", "a.yaml")
    second.claims.claim_one("c1", "", "ServiceAccount", "ns", "sa", "b.yaml")
    second.error = ValueError("later")
    with pytest.raises(RenderError, match=r"ServiceAccount ns/sa on cluster c1 would be defined twice \(a.yaml and b"):
        layout._assemble([first, second])
    second.claims.records.clear()
    with pytest.raises(ValueError, match="later"):
        layout._assemble([first, second])


def test_a_child_that_dies_or_sends_what_will_not_pickle_is_built_here() -> None:
    parent = os.getpid()

    def dies() -> int:
        if os.getpid() != parent:
            os._exit(3)
        return 42

    assert forked.Forked(dies).result() == 42

    def unpicklable() -> Any:
        return (lambda: None) if os.getpid() != parent else "built here"

    assert forked.Forked(unpicklable).result() == "built here"
    assert forked.Forked(lambda: os.getpid()).result() != parent
    assert forked.Forked(lambda: os.getpid(), send=lambda _pid: False).result() == parent


def test_a_process_running_another_thread_never_forks() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert forked.usable() is False
    finally:
        stop.set()
        other.join()


def test_a_child_asking_for_a_helper_of_its_own_builds_the_share_itself() -> None:
    """The child is daemonic (multiprocessing stops it when the interpreter exits), and a daemonic process may not
    fork a helper: it then builds the share itself, and forked.usable() says so beforehand."""
    parent = os.getpid()

    def outer() -> tuple[int, int, bool]:
        return os.getpid(), forked.Forked(os.getpid).result(), forked.usable()

    child, inner, usable = forked.Forked(outer).result()
    assert child != parent and inner == child and usable is False


def test_a_child_whose_parent_stopped_listening_exits() -> None:
    """The child holds only the write end: once the parent's read end is gone (the parent died or closed it), its
    write fails and it exits instead of blocking on a full pipe forever."""
    helper = forked.Forked(lambda: "x" * 4_000_000)
    process = helper._process
    assert process is not None and helper._conn is not None
    helper._conn.close()
    process.join(10)
    assert not process.is_alive()
    helper._conn = None
    helper.close()


def test_close_stops_a_child_that_ignores_sigterm_and_one_under_a_parent_s_handler() -> None:
    def stubborn() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)

    started = time.monotonic()
    helper = forked.Forked(stubborn)
    time.sleep(0.3)
    helper.close()
    assert time.monotonic() - started < 10

    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # a handler that does not stop the process
    try:
        started = time.monotonic()
        helper = forked.Forked(lambda: time.sleep(60))
        time.sleep(0.3)
        helper.close()
        assert time.monotonic() - started < 3
    finally:
        signal.signal(signal.SIGTERM, previous)


def _step(value: int, word: object) -> int:
    """A child's step after the parent's word: leaves a file named by the word, so a test sees whether it ran."""
    if word is not None:
        Path(str(word)).write_text("ran")
    return value + 1


def test_a_step_after_the_parents_word_runs_only_after_it(tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    helper = forked.Forked(lambda: 1, then=_step)
    time.sleep(0.3)  # built by now, and waiting
    assert not mark.exists()
    helper.go(str(mark))
    assert helper.result() == 2 and mark.read_text() == "ran"
    helper.close()

    assert forked.Forked(lambda: 1, then=_step).result() == 2, "no word: the step runs with None"

    unwanted = tmp_path / "unwanted"
    helper = forked.Forked(lambda: 1, then=_step)
    process = helper._process
    time.sleep(0.3)
    helper.close()  # refused: the step must never run
    assert process is not None and not process.is_alive()
    helper.go(str(unwanted))  # too late: nobody listens
    time.sleep(0.2)
    assert not unwanted.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A parent killed outright (SIGKILL: no finally runs) takes its child with it, before it writes anything."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from chamberlain.render import forked\n"
        "helper = forked.Forked(lambda: time.sleep(600), then=lambda v, w: open(w, 'w').write('late'))\n"
        "print(helper._process.pid, flush=True)\n"
        "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as f:  # a zombie waits for init to reap it: it is gone all the same
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        pytest.fail(f"child {child} outlived its parent")
