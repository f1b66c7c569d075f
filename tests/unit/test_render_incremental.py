"""``chamberlain render`` renders incrementally (:mod:`chamberlain.render.incremental`): after a render with the parse
cache active a *record* is kept, and the next render into the same directory keeps the pieces whose inputs and
files are unchanged. What must hold whatever happens: the output is byte for byte a full render's (``--no-cache``),
a kept file changed behind chamberlain's back is found and written again, a foreign or tampered record is ignored,
duplicate objects are refused with a full render's words, ``--check`` and ``--no-cache`` never touch a record, the
record holds no user text, and an interrupted render leaves nothing that fools the next one.

Real file system throughout; the repositories are small, so the forked rerender (used at
``PARALLEL_MIN_INTENTS`` intents and more) is forced by lowering that bound (the ``mode`` fixture), and one test
uses a generated repository of 1000 intents as a user would have it.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import stat
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import chamberlain.render as render_pkg
from chamberlain.checks import gate
from chamberlain.findings import Finding
from chamberlain.intent.cache import ParseCache
from chamberlain.intent.loader import load_repository
from chamberlain.render import MARKER, RenderError, forked, incremental, render_repository
from chamberlain.render.incremental import Record, rerender
from chamberlain.service import repository as service
from tests.conftest import CORPUS, EXAMPLES, REPO_ROOT, CliResult, run_cli

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the forked rerender needs fork")

BASE = CORPUS / "base"
ACME = EXAMPLES / "acme"
TENANCY = EXAMPLES / "acme-tenancy"
CANARY = "Zq7canaryXk3PurposeText"

Doc = dict[str, Any]

# One file of each kind of piece: a namespace's ESO file, its Vault policy, an owner's intents, a cluster's files.
PIECE_FILES = (
    "envs/prod/prod-eu1/namespaces/payments.yaml",
    "vault/policies/chamberlain.prod.prod-eu1.payments.reader.hcl",
    "clusters/dev1/intents/team-payments.yaml",
    "clusters/prod-us1/controller.yaml",
)


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test its own parse cache (``CHAMBERLAIN_CACHE_DIR``/parse): records never leak between tests."""
    root = tmp_path / "cache"
    monkeypatch.setenv("CHAMBERLAIN_CACHE_DIR", str(root))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("CHAMBERLAIN_DEBUG", raising=False)
    return root / "parse"


@pytest.fixture(params=["inline", "forked"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``inline``: the rerender runs in the command's process (a small repository); ``forked``: in a child started
    before the checks, as at 1000 intents and more (forced here, also when pytest runs threads of its own)."""
    if request.param == "forked":
        monkeypatch.setattr(render_pkg, "PARALLEL_MIN_INTENTS", 0)
        monkeypatch.setattr(forked, "usable", lambda: True)
    else:
        monkeypatch.setattr(render_pkg, "PARALLEL_MIN_INTENTS", 10**9)
    return str(request.param)


@dataclass
class Spy:
    """What each render did: the files it kept (``write_tree``'s ``kept``) and whether a rerender was forked."""

    kept: list[frozenset[str]] = field(default_factory=list)
    forked: list[bool] = field(default_factory=list)

    @property
    def last_kept(self) -> frozenset[str]:
        assert self.kept, "no render wrote anything"
        return self.kept[-1]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    found = Spy()
    real_write, real_start = render_pkg.write_tree, incremental.start_rerender

    def write(tree: render_pkg.RenderedTree, out_dir: Path, **kwargs: Any) -> render_pkg.WriteResult:
        found.kept.append(frozenset(kwargs.get("kept", frozenset())))
        return real_write(tree, out_dir, **kwargs)

    def start(repo: Any, record: Record) -> Any:
        started = real_start(repo, record)
        found.forked.append(started is not None)
        return started

    monkeypatch.setattr(render_pkg, "write_tree", write)
    monkeypatch.setattr(incremental, "start_rerender", start)
    return found


# ------------------------------------------------------------------------------------------------------- helpers


def cli_render(repo: Path, out: Path, *flags: str) -> CliResult:
    result = run_cli("render", str(repo), "-o", str(out), *flags)
    assert result.code == 0, result.out + result.err
    return result


Entry = tuple[str, object, int]


def snapshot(root: Path) -> dict[str, Entry]:
    """Everything under ``root`` without following a link: each path's type, content (bytes, link target) and
    permission bits."""
    found: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("symlink", os.readlink(path), mode)
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", None, mode)
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", Path(path).read_bytes(), mode)
            else:
                found[rel] = ("other", None, mode)
    return found


def differences(got: Mapping[str, object], want: Mapping[str, object]) -> list[str]:
    return sorted({f"{p}: {'missing' if p not in got else 'extra' if p not in want else 'differs'}"
                   for p in got.keys() | want.keys() if got.get(p) != want.get(p)})


# A full render's output by the repository's content: rendering is deterministic (and never depends on where the
# repository or the output lies), so each state is rendered in full once per session.
_FRESH: dict[str, dict[str, Entry]] = {}


def _content(repo: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in repo.rglob("*") if p.is_file()):
        h.update(path.relative_to(repo).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def fresh_render(repo: Path, scratch: Path) -> dict[str, Entry]:
    """What a full render (``--no-cache``) writes into an empty directory."""
    key = _content(repo)
    if key not in _FRESH:
        fresh = scratch / f"fresh-{key[:16]}"
        cli_render(repo, fresh, "--no-cache")
        _FRESH[key] = snapshot(fresh)
        assert MARKER in _FRESH[key]
    return _FRESH[key]


def assert_same_as_fresh(repo: Path, out: Path, scratch: Path) -> None:
    """``out`` holds exactly what a full render (``--no-cache``) writes into an empty directory."""
    got, want = snapshot(out), fresh_render(repo, scratch)
    assert not differences(got, want), differences(got, want)[:20]


def settle(repo: Path, out: Path, spy: Spy, *paths: str) -> None:
    """Render until ``paths`` are kept. A file written within the file system clock's tick before the record's
    stamp is not recorded (it might change unseen within that tick): its piece is built once more, and kept from
    the render after that on."""
    for _ in range(4):
        cli_render(repo, out)
        if set(paths) <= spy.last_kept:
            return
    raise AssertionError(f"never kept: {sorted(set(paths) - spy.last_kept)}")


def stats(root: Path) -> dict[str, tuple[int, int, int]]:
    """Each regular file's (inode, mtime_ns, ctime_ns): a file rewritten gets another."""
    return {p.relative_to(root).as_posix(): (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
            for p in root.rglob("*") if stat.S_ISREG((st := p.lstat()).st_mode)}


def record_file(cache_root: Path, out: Path) -> Path:
    """Where the record of renders into ``out`` lives (as the command-line's parse cache names it)."""
    cache = ParseCache(cache_root)
    return cache.render_dir / f"{Record(cache, out.absolute()).name}.json"


def record_files(cache_root: Path, out: Path) -> list[Path]:
    """The record's files: the base, and the delta a later render may have saved on top of it."""
    base = record_file(cache_root, out)
    return [p for p in (base, base.with_name(f"{base.stem}-delta.json")) if p.is_file()]


def load_record(path: Path) -> dict[str, Any]:
    raw = json.loads(path.read_text())
    assert isinstance(raw, dict)
    return raw


def rewrite_records(cache_root: Path, out: Path, change: Callable[[dict[str, Any]], str]) -> None:
    """Every file of the record of ``out`` rewritten by ``change`` (its JSON -> the new text)."""
    files = record_files(cache_root, out)
    assert files, "no record"
    for path in files:
        path.write_text(change(load_record(path)))


def copy_repo(source: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(source, repo)
    return repo


# ------------------------------------------------------------------------------------------ editing repositories


def _documents(repo: Path) -> Iterator[tuple[Path, list[str], int, Any]]:
    """Each YAML document of the repository: its file, the file's documents as text, its place, its data."""
    for file in sorted(repo.rglob("*.yaml")):
        parts = file.read_text().split("\n---\n")
        for index, part in enumerate(parts):
            try:
                data = yaml.safe_load(part)
            except yaml.YAMLError:
                continue
            yield file, parts, index, data


def edit(repo: Path, kind: str, name: str | None, change: Callable[[Doc], Doc | None]) -> None:
    """Rewrite one document (``kind``, ``name``; None: the first of its kind) and only it; None removes it."""
    for file, parts, index, data in _documents(repo):
        if isinstance(data, dict) and data.get("kind") == kind and name in (None, data["metadata"]["name"]):
            new = change(copy.deepcopy(data))
            parts[index] = "" if new is None else yaml.safe_dump(new, sort_keys=False)
            file.write_text("\n---\n".join(p for p in parts if p))
            return
    raise KeyError(f"{kind}/{name} not in {repo}")


def intent_doc(repo: Path, name: str) -> Doc:
    for _file, _parts, _index, data in _documents(repo):
        if isinstance(data, dict) and data.get("kind") == "SecretIntent" and data["metadata"]["name"] == name:
            return data
    raise KeyError(name)


def reword(name: str, purpose: str = "Reworded: what this secret is for") -> Callable[[Path], None]:
    def apply(repo: Path) -> None:
        edit(repo, "SecretIntent", name, lambda d: {**d, "spec": {**d["spec"], "purpose": purpose}})
    return apply


def add_consumer(name: str) -> Callable[[Path], None]:
    def change(d: Doc) -> Doc:
        extra = copy.deepcopy(d["spec"]["consumers"][0])
        extra["secretName"] += "-extra"
        d["spec"]["consumers"].append(extra)
        return d
    return lambda repo: edit(repo, "SecretIntent", name, change)


def remove(name: str) -> Callable[[Path], None]:
    return lambda repo: edit(repo, "SecretIntent", name, lambda _d: None)


def copy_intent(name: str) -> Callable[[Path], None]:
    def apply(repo: Path) -> None:
        doc = intent_doc(repo, name)
        doc["metadata"]["name"] += "-copy"
        for consumer in doc["spec"].get("consumers", []):
            consumer["secretName"] += "-copy"
        own = repo / "intents" / doc["spec"]["owner"]  # tenancy: an owner's intents live in its own directory
        target = (own if own.is_dir() else repo / "intents") / "copied.yaml"
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return apply


def change_owner(name: str, owner: str, move_to: str | None = None) -> Callable[[Path], None]:
    """A new owner; ``move_to``: the document moves to that file too (tenancy: an owner's paths)."""
    def apply(repo: Path) -> None:
        doc = intent_doc(repo, name)
        doc["spec"]["owner"] = owner
        if move_to is None:
            edit(repo, "SecretIntent", name, lambda _d: doc)
            return
        remove(name)(repo)
        target = repo / move_to
        old = target.read_text() if target.exists() else ""
        target.write_text(old + ("\n---\n" if old else "") + yaml.safe_dump(doc, sort_keys=False))
    return apply


def rename_namespace(name: str, namespace: str) -> Callable[[Path], None]:
    def change(d: Doc) -> Doc:
        d["spec"]["consumers"][0]["namespace"] = namespace
        return d
    return lambda repo: edit(repo, "SecretIntent", name, change)


def move_to_own_file(name: str, to: str) -> Callable[[Path], None]:
    """The same intent, byte for byte the same model, in a file of its own."""
    def apply(repo: Path) -> None:
        doc = intent_doc(repo, name)
        remove(name)(repo)
        (repo / to).parent.mkdir(parents=True, exist_ok=True)
        (repo / to).write_text(yaml.safe_dump(doc, sort_keys=False))
    return apply


def add_environment(repo: Path) -> None:
    edit(repo, "Platform", None, lambda d: {**d, "spec": {
        **d["spec"], "environments": [*d["spec"]["environments"], {"name": "qa", "clusters": ["qa1"]}]}})


def rename_mount(repo: Path) -> None:
    def change(d: Doc) -> Doc:
        d["spec"]["authority"]["mounts"]["internalConfig"] = "platform-config-2"
        return d
    edit(repo, "Platform", None, change)


def change_policy(repo: Path) -> None:
    def change(d: Doc) -> Doc:
        d["spec"]["ttl"] = "60d"
        return d
    edit(repo, "RotationPolicy", "standard", change)


def change_restart(name: str) -> Callable[[Path], None]:
    """Another workload restarted: a cluster's installation (the controller's access) changes with it."""
    def change(d: Doc) -> Doc:
        d["spec"]["consumers"][0]["restart"] = [{"kind": "Deployment", "name": "api-v2"}]
        return d
    return lambda repo: edit(repo, "SecretIntent", name, change)


def change_controller_account(repo: Path) -> None:
    def change(d: Doc) -> Doc:
        d["spec"].setdefault("controller", {})["serviceAccount"] = "chamberlain-2"
        return d
    edit(repo, "Platform", None, change)


def touch_nothing(_repo: Path) -> None:
    pass


@dataclass(frozen=True)
class Example:
    """An example repository and a series of edits valid on it, one after another."""

    path: Path
    edits: tuple[tuple[str, Callable[[Path], None]], ...]
    kept_share: float = 1 / 3  # of the output an edit of one intent keeps at least


EXAMPLES_EDITED = {
    "base": Example(BASE, (
        ("nothing", touch_nothing),
        ("reword purpose", reword("app-db")),
        ("change a restart workload", change_restart("app-db")),
        ("add consumer", add_consumer("orders-db-app")),
        ("change owner", change_owner("orders-db-endpoint", "team-reports")),
        ("rename consumer namespace", rename_namespace("orders-db-app", "reporting2")),
        ("copy intent", copy_intent("pg-admin")),
        ("remove intent", remove("orders-db-endpoint")),
        ("change policy", change_policy),
        ("change the controller's service account", change_controller_account),
        ("add environment", add_environment),
        ("rename mount", rename_mount),
        ("nothing again", touch_nothing),
    ), kept_share=0),
    "acme": Example(ACME, (
        ("nothing", touch_nothing),
        ("reword purpose", reword("payments-db")),
        ("change a restart workload", change_restart("payments-db")),
        ("add consumer", add_consumer("grafana-admin")),
        ("change owner", change_owner("storefront-session", "team-storefront")),
        ("change owner of a template part", change_owner("orders-db-endpoint", "team-data")),
        ("rename consumer namespace", rename_namespace("grafana-admin", "grafana")),
        ("move intent to its own file", move_to_own_file("jwt-signing-key", "intents/identity.yaml")),
        ("copy intent", copy_intent("jwt-signing-key")),
        ("remove intent", remove("search-endpoint")),
        ("change the controller's service account", change_controller_account),
        ("add environment", add_environment),
        ("rename mount", rename_mount),
        ("nothing again", touch_nothing),
    )),
    "acme-tenancy": Example(TENANCY, (
        ("nothing", touch_nothing),
        ("reword purpose", reword("payments-db")),
        ("change a restart workload", change_restart("payments-db")),
        ("add consumer", add_consumer("grafana-admin")),
        ("change owner", change_owner("storefront-session", "team-search", "intents/team-search/secrets.yaml")),
        ("rename consumer namespace", rename_namespace("grafana-admin", "logging")),
        ("move intent to its own file",
         move_to_own_file("jwt-signing-key", "intents/team-identity/jwt.yaml")),
        ("copy intent", copy_intent("jwt-signing-key")),
        ("remove intent", remove("search-endpoint")),
        ("change the controller's service account", change_controller_account),
        ("add environment", add_environment),
        ("rename mount", rename_mount),
        ("nothing again", touch_nothing),
    )),
}

# Edits that change no input of most pieces: most of the output must be kept, not built again.
LOCAL_EDITS = {"nothing", "nothing again", "reword purpose", "add consumer", "change owner",
               "rename consumer namespace", "move intent to its own file", "copy intent", "remove intent",
               "change owner of a template part", "change a restart workload"}


# --------------------------------------------------------------------------------------------- 1. byte identity


@pytest.mark.parametrize(("example", "mode"), [*((e, "inline") for e in sorted(EXAMPLES_EDITED)),
                                               ("base", "forked"), ("acme", "forked")], indirect=["mode"])
def test_every_edit_renders_the_bytes_of_a_full_render(example: str, mode: str, spy: Spy, tmp_path: Path,
                                                       cache_root: Path) -> None:
    """A series of edits, one render into the same directory after each: every time the directory holds exactly
    a full render's files (bytes, modes, the marker), kept files were not touched, and an edit of one intent
    keeps much of the output."""
    spec = EXAMPLES_EDITED[example]
    repo = copy_repo(spec.path, tmp_path)
    out = tmp_path / "out"
    cli_render(repo, out)
    assert spy.last_kept == frozenset()  # nothing recorded yet: a full render
    assert record_file(cache_root, out).is_file()
    assert_same_as_fresh(repo, out, tmp_path)
    for label, apply in spec.edits:
        apply(repo)
        before = stats(out)
        cli_render(repo, out)
        kept = spy.last_kept
        assert_same_as_fresh(repo, out, tmp_path)
        after = stats(out)
        assert kept <= after.keys(), label
        assert all(before[p] == after[p] for p in kept), f"{label}: a kept file was written"
        if label.startswith("nothing"):
            assert before == after, f"{label}: files were rewritten"
            # After a render that wrote most files, those written within the clock tick of its stamp were not
            # recorded (see settle): one more render records them, and from then on the same files are kept.
            for _ in range(3):
                cli_render(repo, out)
                assert stats(out) == after, f"{label}: files were rewritten"
                if spy.kept[-1] == spy.kept[-2]:
                    break
            kept = spy.last_kept
            assert kept == spy.kept[-2], f"{label}: what is kept never settles"
            assert len(kept) >= len(after) * spec.kept_share * 2, f"{label}: kept {len(kept)} of {len(after)} files"
            assert kept, f"{label}: nothing kept"
        elif label in LOCAL_EDITS:  # (the small corpus repository has few pieces: any edit touches most)
            assert len(kept) >= len(after) * spec.kept_share, f"{label}: kept {len(kept)} of {len(after)} files"
            assert kept, f"{label}: nothing kept"
    if mode == "forked":
        assert any(spy.forked), "the rerender never ran in a child"
    else:
        assert not any(spy.forked)


def test_an_unchanged_repository_keeps_every_kind_of_piece(spy: Spy, tmp_path: Path) -> None:
    """Every kind of piece is kept (a namespace's ESO file and its Vault files, an owner's intents, a cluster's
    installation), kept files are not written, and the command counts them as rendered."""
    repo = copy_repo(ACME, tmp_path)
    out = tmp_path / "out"
    settle(repo, out, spy, *PIECE_FILES)
    before = stats(out)
    again = cli_render(repo, out)
    assert set(PIECE_FILES) <= spy.last_kept
    assert stats(out) == before
    full = cli_render(repo, tmp_path / "full", "--no-cache")
    assert again.err.replace(str(out), "OUT") == full.err.replace(str(tmp_path / "full"), "OUT")


def test_a_refused_repository_leaves_output_and_record_alone(spy: Spy, tmp_path: Path, cache_root: Path) -> None:
    repo = copy_repo(BASE, tmp_path)
    out = tmp_path / "out"
    settle(repo, out, spy, "envs/dev/dev1/namespaces/app.yaml")
    before = snapshot(out)
    records = {p: p.read_bytes() for p in record_files(cache_root, out)}
    original = (repo / "intents" / "app.yaml").read_text()
    remove("pg-admin")(repo)  # app-db's adminIntent is gone: CH014
    refused = run_cli("render", str(repo), "-o", str(out))
    assert refused.code == 1 and "CH014" in refused.out + refused.err
    assert snapshot(out) == before
    assert {p: p.read_bytes() for p in record_files(cache_root, out)} == records
    (repo / "intents" / "app.yaml").write_text(original.replace("Postgres password", "The Postgres password"))
    cli_render(repo, out)
    assert "envs/dev/dev1/namespaces/app.yaml" not in spy.last_kept  # app-db's reader: built again
    assert spy.last_kept
    assert_same_as_fresh(repo, out, tmp_path)


# ------------------------------------------------------------------------------- 2. kept files changed behind


def _tamper_content(path: Path) -> None:
    """Other bytes, same size, and the modification time set back: only the change time tells."""
    st = path.lstat()
    data = bytearray(path.read_bytes())
    data[-2] = ord("X") if data[-2] != ord("X") else ord("Y")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.lstat().st_size == st.st_size and path.lstat().st_mtime_ns == st.st_mtime_ns


def _tamper_delete(path: Path) -> None:
    path.unlink()


def _tamper_symlink(path: Path) -> None:
    """A link to a file with exactly the rendered bytes: still not what a render writes."""
    twin = path.parent.parent / f".{path.name}.twin"
    shutil.copy2(path, twin)
    path.unlink()
    path.symlink_to(os.path.relpath(twin, path.parent))


def _tamper_chmod(path: Path) -> None:
    path.chmod(0o600)


def _tamper_replace(path: Path) -> None:
    """Another file (another inode) with other bytes of the same size and the same modification time."""
    st = path.lstat()
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[:-2] + b"#\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _tamper_replace_same_bytes(path: Path) -> None:
    """Another file (another inode) with the same bytes and modification time: harmless, but not what was kept."""
    st = path.lstat()
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


TAMPERS: dict[str, Callable[[Path], None]] = {
    "content, same size and mtime": _tamper_content,
    "deleted": _tamper_delete,
    "replaced by a symlink": _tamper_symlink,
    "chmod": _tamper_chmod,
    "replaced by another inode": _tamper_replace,
    "replaced by the same bytes": _tamper_replace_same_bytes,
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_a_kept_file_changed_behind_chamberlains_back_is_restored(tamper: str, mode: str, spy: Spy,
                                                                  tmp_path: Path) -> None:
    repo = copy_repo(ACME, tmp_path)
    out = tmp_path / "out"
    settle(repo, out, spy, *PIECE_FILES)  # the record now holds these pieces
    paths = list(PIECE_FILES)
    for path in paths:
        TAMPERS[tamper](out / path)
    # What a full render makes of exactly this directory: the same starting point, no record.
    reference = tmp_path / "reference"
    shutil.copytree(out, reference, symlinks=True)
    cli_render(repo, reference, "--no-cache")
    cli_render(repo, out)
    assert not set(paths) & spy.last_kept, "a changed file was kept"
    assert not differences(snapshot(out), snapshot(reference)), differences(snapshot(out), snapshot(reference))
    # Byte for byte a render into an empty directory (a chmod alone is left as a full render leaves it).
    got = {k: v[:2] for k, v in snapshot(out).items() if not k.endswith(".twin")}
    assert not differences(got, {k: v[:2] for k, v in fresh_render(repo, tmp_path).items()})
    # And a render after that keeps them again.
    settle(repo, out, spy, *paths)


def test_a_file_changed_right_after_the_render_is_found(spy: Spy, tmp_path: Path) -> None:
    """Changed within the file system clock's tick of the render that recorded it (Git's "racy clean"): the
    change time still moves past the stamp the record was checked against."""
    repo = copy_repo(BASE, tmp_path)
    out = tmp_path / "out"
    cli_render(repo, out)
    target = "envs/dev/dev1/namespaces/app.yaml"
    for _ in range(3):
        settle(repo, out, spy, target)
        _tamper_content(out / target)  # at once, no sleep
        cli_render(repo, out)
        assert target not in spy.last_kept
        assert_same_as_fresh(repo, out, tmp_path)


def test_a_directory_moved_out_and_linked_back_is_refused_as_by_a_full_render(spy: Spy, tmp_path: Path) -> None:
    repo = copy_repo(ACME, tmp_path)
    out = tmp_path / "out"
    cli_render(repo, out)
    # clusters/dev1/intents holds owner pieces only: once every file in it is kept, none is written there.
    settle(repo, out, spy, *(p.relative_to(out).as_posix() for p in (out / "clusters/dev1/intents").iterdir()))
    elsewhere = tmp_path / "elsewhere"
    (out / "clusters/dev1/intents").rename(elsewhere)
    (out / "clusters/dev1/intents").symlink_to(elsewhere)
    reference = tmp_path / "reference"
    shutil.copytree(out, reference, symlinks=True)
    full = run_cli("render", str(repo), "-o", str(reference), "--no-cache")
    assert full.code != 0 and "symlink" in full.err  # what a full render says
    incremental_run = run_cli("render", str(repo), "-o", str(out))
    assert incremental_run.code == full.code, incremental_run.err


def test_a_file_changed_between_its_write_and_the_record_is_found(spy: Spy, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_repo(ACME, tmp_path)
    out = tmp_path / "out"
    settle(repo, out, spy, "envs/prod/prod-eu1/namespaces/web.yaml")
    reword("storefront-session")(repo)  # web's pieces are built again and written
    target = out / "envs/prod/prod-eu1/namespaces/web.yaml"
    real_write = render_pkg.write_tree

    def write_then_meddle(tree: render_pkg.RenderedTree, out_dir: Path, **kwargs: Any) -> render_pkg.WriteResult:
        result = real_write(tree, out_dir, **kwargs)
        target.write_text(target.read_text().replace("storefront-session", "storefront-sessiom"))
        time.sleep(0.05)  # a clock tick or more before the save: as for a file written early in a large render
        return result

    with monkeypatch.context() as m:
        m.setattr(render_pkg, "write_tree", write_then_meddle)
        cli_render(repo, out)
    cli_render(repo, out)
    assert_same_as_fresh(repo, out, tmp_path)


# ------------------------------------------------------------------------------- 3. foreign or damaged records


def _rendered_twice(repo: Path, out: Path, spy: Spy) -> None:
    cli_render(repo, out)
    cli_render(repo, out)
    assert spy.last_kept  # the record works before it is damaged


def _set_pieces(raw: dict[str, Any], change: Callable[[list[Any]], None]) -> str:
    for piece in raw["pieces"]:
        change(piece)
    return json.dumps(raw)


def _first_path(value: str) -> Callable[[list[Any]], None]:
    def change(piece: list[Any]) -> None:
        piece[2] = [value, *piece[2][1:]]
    return change


def _stats_off(piece: list[Any]) -> None:
    piece[3] = [" ".join(str(int(f) + 1) for f in s.split(" ")) for s in piece[3]]


def _double_slash(raw: dict[str, Any]) -> str:
    """Every piece's first path spelled with a doubled slash: the same file for the file system, another path for
    the marker."""
    for piece in raw["pieces"]:
        piece[2][0] = piece[2][0].replace("/", "//", 1)
    return json.dumps(raw)


DAMAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "garbage": lambda _raw: "{not json at all",
    "truncated": lambda raw: json.dumps(raw)[: len(json.dumps(raw)) // 2],
    "empty": lambda _raw: "",
    "a list": lambda _raw: "[]",
    "another format": lambda raw: json.dumps({**raw, "format": incremental.FORMAT + 1}),
    "another out": lambda raw: json.dumps({**raw, "out": raw["out"] + "-other"}),
    "another dir": lambda raw: json.dumps({**raw, "dir": [raw["dir"][0], raw["dir"][1] + 1]}),
    "pieces not a list": lambda raw: json.dumps({**raw, "pieces": {}}),
    "dot-dot path": lambda raw: _set_pieces(raw, _first_path("../x")),
    "double slash": lambda raw: _set_pieces(raw, _first_path("envs//x.yaml")),
    "double slash in a real path": _double_slash,
    "newline in path": lambda raw: _set_pieces(raw, _first_path("envs/a\nb.yaml")),
    "absolute path": lambda raw: _set_pieces(raw, _first_path("/etc/passwd")),
    "dot segment": lambda raw: _set_pieces(raw, _first_path("envs/./x.yaml")),
    "backslash": lambda raw: _set_pieces(raw, _first_path("envs\\x.yaml")),
    "stats wrong": lambda raw: _set_pieces(raw, _stats_off),
    "stats shorter than paths": lambda raw: _set_pieces(raw, lambda p: p.__setitem__(3, p[3][:-1])),
    "stats not strings": lambda raw: _set_pieces(raw, lambda p: p.__setitem__(3, [1] * len(p[3]))),
    "claims malformed": lambda raw: _set_pieces(raw, lambda p: p.__setitem__(4, {"ns": 1})),
    "claims not strings": lambda raw: _set_pieces(raw, lambda p: p.__setitem__(4, {"ns": ["a b c"]})),
    "store malformed": lambda raw: _set_pieces(raw, lambda p: p.__setitem__(5, "a b")),
    "stores not a string": lambda raw: _set_pieces(raw, lambda p: p.__setitem__(5, [["a", "b", "c"]])),
    "piece too short": lambda raw: _set_pieces(raw, lambda p: p.pop()),
    "key wrong": lambda raw: _set_pieces(raw, lambda p: p.__setitem__(1, "0" * 32)),
}
# Damages after which no piece may be kept at all (the record is refused whole).
REFUSED_WHOLE = set(DAMAGES) - {"stats wrong", "key wrong"}


# The damages tried on the delta alone (the base then stands on its own).
DELTA_DAMAGES = ("garbage", "dot-dot path", "stats wrong")
# The damages tried with the rerender in a child too: it reads the record without looking at paths and stats
# (its parent checks them), so these are the ones where it differs.
FORKED_DAMAGES = ("garbage", "dot-dot path", "newline in path", "double slash in a real path", "stats wrong",
                  "key wrong", "stats shorter than paths")
DAMAGE_CASES = [
    *((d, "every file", "inline") for d in sorted(DAMAGES)),
    *((d, "every file", "forked") for d in FORKED_DAMAGES),
    *((d, "delta", mode) for d in DELTA_DAMAGES for mode in ("inline", "forked")),
]


@pytest.mark.parametrize(("damage", "which", "mode"), DAMAGE_CASES, indirect=["mode"])
def test_a_damaged_record_is_ignored(damage: str, which: str, mode: str, spy: Spy, tmp_path: Path,
                                     cache_root: Path) -> None:
    repo = copy_repo(BASE, tmp_path)
    out = tmp_path / "out"
    _rendered_twice(repo, out, spy)
    reword("app-db")(repo)
    cli_render(repo, out)  # a small change: saved as a delta on the base
    delta = [p for p in record_files(cache_root, out) if p.stem.endswith("-delta")]
    if which == "delta":
        assert delta, "no delta saved"
        delta[0].write_text(DAMAGES[damage](load_record(delta[0])))
    else:
        rewrite_records(cache_root, out, DAMAGES[damage])
    rename_namespace("orders-db-app", "reporting2")(repo)  # and an edit: something is built beside what is kept
    cli_render(repo, out)
    if which != "delta" and damage in REFUSED_WHOLE | {"stats wrong"}:
        assert spy.last_kept == frozenset()
    assert_same_as_fresh(repo, out, tmp_path)
    # The record was written anew: the next render keeps again.
    cli_render(repo, out)
    assert spy.last_kept
    assert_same_as_fresh(repo, out, tmp_path)


def test_a_record_of_another_directory_is_ignored(mode: str, spy: Spy, tmp_path: Path, cache_root: Path) -> None:
    repo = copy_repo(ACME, tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    _rendered_twice(repo, first, spy)
    raws = [load_record(p) for p in record_files(cache_root, first)]
    cache = ParseCache(cache_root)
    name = Record(cache, second.absolute()).name
    # As found (it names the first directory), then claiming the second one by path, then by path and identity.
    for forge in ("as found", "path", "path and identity"):
        shutil.copytree(first, second, symlinks=True)  # the same bytes, other inodes
        (second / "envs/prod/prod-eu1/namespaces/payments.yaml").write_text("changed behind chamberlain's back\n")
        here = os.stat(second)
        for raw, suffix in zip(raws, ["", "-delta"], strict=False):
            forged = dict(raw)
            if forge != "as found":
                forged["out"] = os.fsencode(str(second)).hex()
            if forge == "path and identity":
                forged["dir"] = [here.st_dev, here.st_ino]
            (cache.render_dir / f"{name}{suffix}.json").write_text(json.dumps(forged))
        cli_render(repo, second)
        assert spy.last_kept == frozenset(), forge
        assert_same_as_fresh(repo, second, tmp_path)
        shutil.rmtree(second)


def test_an_output_directory_made_anew_ignores_the_old_record(spy: Spy, tmp_path: Path) -> None:
    repo = copy_repo(BASE, tmp_path)
    out = tmp_path / "out"
    _rendered_twice(repo, out, spy)
    keep = tmp_path / "keep"
    out.rename(keep)
    shutil.copytree(keep, out, symlinks=True)  # same path, same bytes, another directory
    cli_render(repo, out)
    assert spy.last_kept == frozenset()
    assert_same_as_fresh(repo, out, tmp_path)


@pytest.mark.parametrize("failure", ["no fork", "the child dies"])
def test_a_damaged_record_is_ignored_when_the_child_cannot_help(failure: str, spy: Spy, tmp_path: Path,
                                                                cache_root: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_pkg, "PARALLEL_MIN_INTENTS", 0)
    monkeypatch.setattr(forked, "usable", lambda: True)
    repo = copy_repo(ACME, tmp_path)
    out = tmp_path / "out"
    settle(repo, out, spy, "envs/prod/prod-eu1/namespaces/payments.yaml")
    rewrite_records(cache_root, out, _double_slash)
    if failure == "no fork":  # as when fork fails (EAGAIN: the user's process limit)
        def no_fork(_method: str | None = None) -> Any:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

        monkeypatch.setattr(multiprocessing, "get_context", no_fork)
    else:  # killed (out of memory, say) before it sent anything
        parent, real = os.getpid(), incremental.piece_keys

        def dying(*args: Any, **kwargs: Any) -> Any:
            if os.getpid() != parent:
                os._exit(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(incremental, "piece_keys", dying)
    cli_render(repo, out)
    assert spy.forked[-1]
    assert_same_as_fresh(repo, out, tmp_path)


# ----------------------------------------------------------------------------------- 4. duplicates still refused


DUPLICATE_PLATFORM = textwrap.dedent("""\
    apiVersion: chamberlain.dev/v1alpha1
    kind: Platform
    metadata: {name: dup}
    spec:
      environments:
        - {name: prod, clusters: [prod-eu1]}
        - {name: dev, clusters: [dev1]}
        - {name: qa, clusters: [dev1]}
      authority:
        address: https://vault.vault.svc:8200
        mounts: {runtime: secret, internalData: platform-data, internalConfig: platform-config}
      rootOfTrust:
        ageRecipients: [age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk]
      defaults: {rotationPolicy: standard}
    ---
    apiVersion: chamberlain.dev/v1alpha1
    kind: RotationPolicy
    metadata: {name: standard}
    spec: {type: time-based, ttl: 90d, rotateBefore: 7d, revokeOld: true, maxOverlap: 1h, failureStrategy: retry}
    """)


def _token_intent(name: str, environment: str, secret: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: chamberlain.dev/v1alpha1
        kind: SecretIntent
        metadata: {{name: {name}}}
        spec:
          owner: team-app
          purpose: API token of the app in {environment}
          classification: runtime
          environments: [{environment}]
          source:
            generate:
              token: {{type: token, bytes: 32}}
          rotation: {{policy: standard}}
          consumers:
            - {{namespace: app, secretName: {secret}}}
        """)


def _duplicate_repo(tmp_path: Path) -> Path:
    """Two environments on one cluster; dev's ``app`` namespace reads a-token, qa's reads b-token."""
    repo = tmp_path / "dup"
    (repo / "intents").mkdir(parents=True)
    (repo / "platform.yaml").write_text(DUPLICATE_PLATFORM)
    (repo / "intents" / "a.yaml").write_text(_token_intent("a-token", "dev", "a-token"))
    (repo / "intents" / "b.yaml").write_text(_token_intent("b-token", "qa", "b-token"))
    return repo


def _collide(repo: Path) -> None:
    """qa's piece is built again and now claims the ExternalSecret app/a-token on dev1, which dev's kept piece
    claims too (validate refuses it: CH060)."""
    (repo / "intents" / "b.yaml").write_text(_token_intent("b-token", "qa", "a-token"))


def test_a_built_piece_claiming_a_kept_pieces_object_is_refused_by_the_render_api(tmp_path: Path,
                                                                                  cache_root: Path) -> None:
    repo = _duplicate_repo(tmp_path)
    out = tmp_path / "out"
    cli_render(repo, out)
    _collide(repo)
    assert any(f.rule == "CH060" for f in service.validate(repo).blocking())
    loaded = load_repository(repo)
    with pytest.raises(RenderError) as full:
        render_repository(loaded)
    assert "ExternalSecret app/a-token on cluster dev1 would be defined twice" in str(full.value)
    cache = ParseCache(cache_root)
    # The same record over a harmless edit of qa's intent keeps dev's piece (its file is not built)...
    harmless = tmp_path / "harmless"
    shutil.copytree(repo, harmless)
    (harmless / "intents" / "b.yaml").write_text(_token_intent("b-token", "qa", "b-token").replace("API", "The"))
    kept = rerender(load_repository(harmless), Record.load(cache, out.absolute()))
    assert kept is not None
    assert "envs/dev/dev1/namespaces/app.yaml" not in kept.tree.files
    assert "envs/qa/dev1/namespaces/app.yaml" in kept.tree.files
    # ... and over the colliding one it refuses: the caller renders everything and meets the refusal first hand.
    assert rerender(loaded, Record.load(cache, out.absolute())) is None


def test_a_built_piece_claiming_a_kept_pieces_object_is_refused_as_by_a_full_render(
        mode: str, spy: Spy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _duplicate_repo(tmp_path)
    out = tmp_path / "out"
    cli_render(repo, out)
    cli_render(repo, out)
    assert ("envs/dev/dev1/namespaces/app.yaml") in spy.last_kept
    before = snapshot(out)
    _collide(repo)
    # validate refuses this first (CH060); without it the render's own check is what stands.
    monkeypatch.setattr(gate, "check_repository", lambda r, baseline=None: gate.Validation(r, list[Finding]()))
    full = run_cli("render", str(repo), "-o", str(tmp_path / "full"), "--no-cache")
    again = run_cli("render", str(repo), "-o", str(out))
    assert full.code != 0 and "would be defined twice" in full.err
    assert (again.code, again.err) == (full.code, full.err)
    assert snapshot(out) == before  # nothing written


# ----------------------------------------------------------------------------- 5. --check and --no-cache


@pytest.fixture
def record_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every use of the parse cache's record files (looked for, read, written, removed), by method name."""
    calls: list[str] = []

    def spied(name: str) -> None:
        real = getattr(ParseCache, name)

        def method(self: ParseCache, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(ParseCache, name, method)

    for name in ("get_record", "put_record", "has_record", "drop_record"):
        if hasattr(ParseCache, name):
            spied(name)
    return calls


def _forge_stats(out: Path, changed: str) -> Callable[[dict[str, Any]], str]:
    st = os.lstat(out / changed)

    def forge(raw: dict[str, Any]) -> str:
        for piece in raw["pieces"]:
            for i, path in enumerate(piece[2]):
                if path == changed:
                    piece[3][i] = f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"
        return json.dumps(raw)
    return forge


def test_check_and_no_cache_never_read_or_write_a_record(spy: Spy, record_calls: list[str], tmp_path: Path,
                                                         cache_root: Path) -> None:
    repo = copy_repo(ACME, tmp_path)
    out = tmp_path / "out"
    # On a directory never rendered with a cache: no record appears.
    cli_render(repo, out, "--no-cache")
    result = run_cli("render", str(repo), "-o", str(out), "--check")
    assert result.code == 0, result.err
    assert not record_files(cache_root, out)
    assert record_calls == []
    # A record that would keep a changed file if it were read: its stats forged to the changed file's.
    changed = "envs/prod/prod-eu1/namespaces/payments.yaml"
    settle(repo, out, spy, changed)
    reword("storefront-session")(repo)
    cli_render(repo, out)  # a base and a delta
    assert changed in spy.last_kept
    _tamper_content(out / changed)
    rewrite_records(cache_root, out, _forge_stats(out, changed))
    for path in record_files(cache_root, out):
        os.utime(path, ns=(1, 1))
    saved = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in record_files(cache_root, out)}
    record_calls.clear()
    stale = run_cli("render", str(repo), "-o", str(out), "--check")
    assert stale.code == 1 and f"changed: {changed}" in stale.out, stale.out + stale.err
    cli_render(repo, out, "--no-cache")
    assert record_calls == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in record_files(cache_root, out)} == saved
    assert_same_as_fresh(repo, out, tmp_path)
    assert run_cli("render", str(repo), "-o", str(out), "--check").code == 0
    assert record_calls == []
    # The forged record is read by a render with the cache, as the check shows it would have been.
    _tamper_content(out / changed)
    rewrite_records(cache_root, out, _forge_stats(out, changed))
    cli_render(repo, out)
    # The premise of the above: a render with the cache reads this record and, its stats consistent with the disk,
    # keeps the file (a record is not authenticated; it lives in the user's private cache directory).
    assert changed in spy.last_kept
    assert record_calls


# ---------------------------------------------------------------------------------------- 6. no user text kept


_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"[0-9a-f]{8,64}")
_STAT = re.compile(r"\d+ \d+ \d+ \d+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def test_the_record_holds_no_user_text(tmp_path: Path, cache_root: Path) -> None:
    repo = copy_repo(ACME, tmp_path)
    # A canary wherever a user writes free text: a purpose, a comment, an annotation, the Platform's comments.
    reword("payments-db", f"Postgres login {CANARY}-purpose")(repo)
    (repo / "intents" / "web.yaml").write_text(f"# {CANARY}-comment\n" + (repo / "intents" / "web.yaml").read_text())
    edit(repo, "SecretIntent", "grafana-admin", lambda d: {
        **d, "metadata": {**d["metadata"], "annotations": {"example.com/note": f"{CANARY}-annotation"}}})
    (repo / "platform.yaml").write_text((repo / "platform.yaml").read_text() + f"# {CANARY}-platform\n")
    out = tmp_path / "out"
    cli_render(repo, out)
    rendered = snapshot(out)
    assert any(f"{CANARY}-purpose".encode() in e[1] for e in rendered.values() if isinstance(e[1], bytes))
    reword("storefront-session", f"Session key {CANARY}-second")(repo)
    cli_render(repo, out)  # a record of an incremental render too
    paths = record_files(cache_root, out)
    assert paths  # a base, and (likely) the delta of the second render
    files = {p for p, e in snapshot(out).items() if e[0] == "file"}
    for path in paths:
        text = path.read_text()
        assert CANARY not in text
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0  # a private directory
        raw = json.loads(text)
        assert set(raw) <= {"format", "out", "dir", "serial", "base", "gone", "pieces"}
        assert raw["format"] == incremental.FORMAT and raw["out"] == os.fsencode(str(out)).hex()
        assert all(type(n) is int for n in raw["dir"]) and len(raw["dir"]) == 2
        assert all(_HEX.fullmatch(raw[k]) for k in ("serial", "base") if k in raw)
        assert all(_NAME.fullmatch(part) for gone in raw.get("gone", []) for part in gone.split("/"))
        assert raw["pieces"]
        _assert_plain_pieces(raw["pieces"], files)


def _assert_plain_pieces(pieces: list[Any], files: set[str]) -> None:
    """Pieces of a record: names, digests, rendered paths, numbers and object names, nothing else."""
    for name, key, paths, stat_lines, claims, stores in pieces:
        assert all(_NAME.fullmatch(part) for part in name), name
        assert _HEX32.fullmatch(key)
        assert set(paths) <= files
        assert all(_STAT.fullmatch(line) for line in stat_lines) and len(stat_lines) == len(paths)
        for namespace, objects in claims.items():
            assert namespace == "" or _NAME.fullmatch(namespace)  # "": cluster-wide objects
            for line in objects.split("|"):
                assert all(_NAME.fullmatch(f) or f == "" for f in line.split(" ")) and len(line.split(" ")) == 3
        for store in incremental._stores(stores):
            assert all(_NAME.fullmatch(f) for f in (store.api_version, store.namespace, store.name))


# ------------------------------------------------------------------------------------------- 7. interruptions


def _interrupt_once(monkeypatch: pytest.MonkeyPatch, owner: object, attribute: str, after: int = 0) -> list[int]:
    """``owner.attribute`` raises KeyboardInterrupt on its call number ``after`` (from 0), once."""
    real = getattr(owner, attribute)
    calls = [0]

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == after + 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, interrupted)
    return calls


def _render_interrupted(repo: Path, out: Path) -> None:
    try:
        result = run_cli("render", str(repo), "-o", str(out))
    except KeyboardInterrupt:
        return
    assert result.code != 0, "the render was not interrupted"


@pytest.mark.parametrize("where", ["record save", "file write"])
def test_an_interrupted_render_does_not_fool_the_next(where: str, mode: str, spy: Spy, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_repo(ACME, tmp_path)
    original = tmp_path / "original"
    shutil.copytree(repo, original)
    out = tmp_path / "out"
    cli_render(repo, out)
    cli_render(repo, out)

    def edited() -> None:
        reword("payments-db")(repo)
        rename_namespace("grafana-admin", "grafana")(repo)
        add_consumer("jwt-signing-key")(repo)
        change_owner("storefront-session", "team-storefront")(repo)

    def restored() -> None:
        shutil.rmtree(repo)
        shutil.copytree(original, repo)

    for then in ("edited", "restored"):
        edited()
        with monkeypatch.context() as m:
            if where == "record save":
                calls = _interrupt_once(m, Record, "save")
            else:  # after some files of the render were written
                calls = _interrupt_once(m, render_pkg, "_write_atomic", after=2)
            _render_interrupted(repo, out)
            assert calls[0] >= 1
        if then == "restored":  # the inputs are back to what the (old) record was made from
            restored()
        cli_render(repo, out)
        assert_same_as_fresh(repo, out, tmp_path)
        cli_render(repo, out)
        assert spy.last_kept
        assert_same_as_fresh(repo, out, tmp_path)
        restored()
        cli_render(repo, out)
        assert_same_as_fresh(repo, out, tmp_path)


def test_a_record_saved_by_another_render_meanwhile_is_noticed(spy: Spy, tmp_path: Path, cache_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The child keeps pieces by the keys of the record it read; another render into the same directory saves a
    record (and rewrites a piece the child keeps) before the parent checks the files: the parent must not trust
    the child's choice, since the files now match the other render's record, not the child's."""
    monkeypatch.setattr(render_pkg, "PARALLEL_MIN_INTENTS", 0)
    monkeypatch.setattr(forked, "usable", lambda: True)
    repo, other = copy_repo(ACME, tmp_path), tmp_path / "other"
    out = tmp_path / "out"
    piece = "envs/prod/prod-eu1/namespaces/payments.yaml"
    settle(repo, out, spy, piece)
    shutil.copytree(repo, other)
    reword("storefront-session")(repo)  # this render: payments' piece unchanged, kept by the child
    change_owner("payments-db", "team-billing")(other)  # the other: payments' piece changed
    real_start = incremental.start_rerender
    others: list[int] = []

    def start_then_another_render(r: Any, record: Record) -> Any:
        started = real_start(r, record)
        if not others:
            others.append(1)
            time.sleep(0.3)  # the child has read the record by now
            for _ in range(2):  # twice: the second records the piece it changed (its files then predate the stamp)
                service.render(other, out)
            # The other render's record holds the changed file as it is: only the serial tells the records apart.
            st = os.lstat(out / piece)
            assert f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}" in {
                entry[3][entry[2].index(piece)] for path in record_files(cache_root, out)
                for entry in load_record(path)["pieces"] if piece in entry[2]}
        return started

    monkeypatch.setattr(incremental, "start_rerender", start_then_another_render)
    before = (out / piece).read_bytes()
    cli_render(repo, out)
    assert others and spy.forked[-1]
    assert (out / piece).read_bytes() == before  # written back: this render's inputs, not the other's
    assert_same_as_fresh(repo, out, tmp_path)


# ------------------------------------------------------------------------------------ a repository of 1000 intents


def _generate(root: Path, n: int) -> None:
    spec = importlib.util.spec_from_file_location("bench_validate_render",
                                                  REPO_ROOT / "benchmarks" / "bench_validate_render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    module.generate(root, n)


@pytest.fixture(scope="module")
def large_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("large") / "repo"
    _generate(root, render_pkg.PARALLEL_MIN_INTENTS)
    return root


def test_a_large_repository_rerenders_in_a_child(large_repo: Path, spy: Spy, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """At :data:`PARALLEL_MIN_INTENTS` intents the rerender runs in a child while the checks run (no bound
    lowered; only pytest's own threads are allowed for)."""
    monkeypatch.setattr(forked, "usable", lambda: True)
    repo = tmp_path / "repo"
    shutil.copytree(large_repo, repo)
    out = tmp_path / "out"
    cli_render(repo, out)
    first = sorted((repo / "intents").glob("*.yaml"))[1]
    text = first.read_text()
    purpose = re.search(r"  purpose: Runtime credential number \d+ of team-\d+\n", text)
    assert purpose is not None
    first.write_text(text.replace(purpose.group(0), "  purpose: reworded in a large repository\n", 1))
    cli_render(repo, out)
    assert spy.forked[-1], "the rerender did not run in a child"
    assert len(spy.last_kept) > len(stats(out)) // 2
    assert_same_as_fresh(repo, out, tmp_path)


def test_an_output_path_that_is_not_utf8_is_rendered_and_recorded(spy: Spy, tmp_path: Path) -> None:
    """A directory name in another encoding (Latin-1 bytes): rendered as by a full render, its record kept."""
    repo = copy_repo(ACME, tmp_path)
    out = tmp_path / os.fsdecode(b"out-\xe9t\xe9")
    cli_render(repo, out)
    settle(repo, out, spy, *PIECE_FILES)
    assert_same_as_fresh(repo, out, tmp_path)


def test_a_stamp_left_by_a_killed_render_is_removed_by_the_next(spy: Spy, tmp_path: Path) -> None:
    """The record's clock stamp is a file made and removed in the output directory: one a killed render left is
    removed by the next render (its process is gone), and never one of a live process."""
    repo = copy_repo(ACME, tmp_path)
    out = tmp_path / "out"
    cli_render(repo, out)
    dead = out / f".chamberlain-stamp-{2**22 + 12345}.tmp"  # above any pid this machine hands out
    live = out / ".chamberlain-stamp-1.tmp"  # init: alive
    dead.write_bytes(b"")
    live.write_bytes(b"")
    cli_render(repo, out)
    assert not dead.exists()
    assert live.exists()
    live.unlink()
    assert_same_as_fresh(repo, out, tmp_path)
