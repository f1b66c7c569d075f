"""Render again only what changed: a render over a repository that barely changed keeps most files as they are.

Most of a large render is *pieces* (:class:`~chamberlain.render.layout.Piece`): the files of one namespace of one
application (its ExternalSecrets, PushSecrets, stores and identities, and its Vault reader and publisher policies
and roles) and each owner's intents file on a cluster. Each depends on a few inputs only. After a render wrote its
output, a *record* keeps, per piece, a key of those inputs, the stat of each of its files, the objects they claim
and the SecretStores among them. The next render into the same directory builds a piece again only when its key
changed or one of its files is not exactly as recorded; every other file (the CRDs, the clusters' installations,
kustomizations, Flux, the rest of the bundle) is built and compared as always.

What a key covers: this package's source (a new version or an edited module never reads an older record), the
Platform and RotationPolicy documents, the piece's name, and the document of every intent it reads in order
(each consumer's position in its intent, each template part). An intent's document stands for its model: the
model is a pure function of the document's text and the loader (:func:`document_ids`). A cluster's namespaces and
controller installation are keyed by what their chart values and namespaces are made of, which the build derives
first.

When a file is trusted: it is kept only when its inode, size, modification and change times are those recorded and
no directory on its way is a symbolic link. It was recorded only when, after a stamp made on the same file system
once everything was written, its change time was older than the stamp and it was read back holding the rendered
bytes: a later change moves the change time (which no one can set back), and a change made before, even in the
file system clock's tick of the write, shows in the bytes (Git's "racy clean" problem, avoided the same way). The
one write that may not move it, as Git's index does not see it either: through a shared memory mapping of the file
opened before the render, on a page already dirty (``render --check`` compares bytes).

At 1,000 intents or more a forked child computes the keys and builds the changed pieces while the caller runs the
checks and checks meanwhile that the kept files are as recorded (:func:`start_rerender`, :func:`rerendered`). A
record is saved as a base and, after a render that built a few pieces, a small delta on it (:meth:`Record.save`).

What stays exact: the files written are those a full render writes, byte for byte, because a kept file holds the
bytes of a piece whose inputs did not change. Duplicate objects are still refused: a kept piece's claims are
compared with everything built (kept pieces cannot collide among themselves: they were all in one earlier render
that passed the same check). Any doubt (a record missing, foreign, malformed or for another directory, an input
with no document, a refusal) renders everything, exactly as without a record. ``render --check`` and
``--no-cache`` never use a record.

The record lives in the parse cache's private directory (:mod:`chamberlain.intent.cache`), named after the output
directory's absolute path; it holds paths, stats, object names and digests, never a value. It is trusted, as a
cached parse is, for what it says a piece is made of: only this user can write there (a directory anyone else may
write to or rename in is not used). Its shape is checked, and a path that is not plain (``..``, ``//``, a control
character) makes the whole record ignored, so no record leads render outside the output directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.intent.cache import ParseCache, digest
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.render import RenderedTree, all_plain
from chamberlain.render.flux import Store
from chamberlain.render.layout import ClaimKey, Piece, Reuse
from chamberlain.render.topology import PieceName, Topology, namespace_piece, owner_piece

if TYPE_CHECKING:
    from chamberlain.render.forked import Forked

FORMAT = 2  # 2: a piece's claims are one flat string per namespace, its stores one flat string
# ----------------------------------------------------------------------------------------------------- inputs


def document_ids(repo: Repository) -> dict[int, str]:
    """Each loaded object (by ``id``) -> a digest of the YAML document its model was made from: its own text (so
    editing one intent of a file changes the id of that intent alone), or the whole file's and its place in it when
    the file has a directive line (``%TAG`` changes how a later document reads)."""
    texts = {f.rel: f.text for f in repo.files if f.text is not None}
    whole: dict[str, str | None] = {}  # file -> its digest when it has a directive line, else None
    ids: dict[int, str] = {}
    loaded: list[Loaded[Any]] = [*repo.platforms, *repo.policies, *repo.intents]
    for one in loaded:
        doc = one.doc
        text = texts.get(doc.file)
        if text is None:
            continue
        if doc.file not in whole:
            whole[doc.file] = digest(text.encode("utf-8")) if text.startswith("%") or "\n%" in text else None
        sha = whole[doc.file]
        ids[id(one.obj)] = (f"{sha}:{doc.index}" if sha is not None
                            else digest(text[doc.start_index:doc.end_index].encode("utf-8")))
    return ids


def piece_keys(topo: Topology, ids: Mapping[int, str], code: str) -> dict[PieceName, str] | None:
    """The key of every piece of ``topo``'s render; None when an input has no document id."""
    try:
        common = "\n".join([code, ids[id(topo.platform)], *sorted(ids[id(p)] for p in topo.policies)])
        # (intent, consumer) by id -> "read <the intent's document> <the consumer's place in it>": an intent is
        # read on every cluster of its environments, its line made once
        reads: dict[tuple[int, int], str] = {}
        keys: dict[PieceName, str] = {}
        for unit in topo.units:
            for ns in unit.namespaces:
                name = namespace_piece(unit.environment, unit.cluster, ns)
                lines = [common, *name]
                for read in unit.reads.get(ns, ()):
                    intent, consumer = read.intent, read.consumer
                    line = reads.get((id(intent), id(consumer)))
                    if line is None:
                        place = next(i for i, c in enumerate(intent.spec.consumers) if c is consumer)
                        line = reads[(id(intent), id(consumer))] = f"read {ids[id(intent)]} {place}"
                    lines.append(line)
                    if read.parts:
                        lines += [f"part {ids[id(part.intent)]}" for part in read.parts]
                lines += [f"publish {ids[id(pub.intent)]}" for pub in unit.publishes.get(ns, ())]
                keys[name] = _key(lines)
        for cluster, intents in topo.cluster_intents.items():
            owners: dict[str, list[str]] = {}
            for intent in intents:
                owners.setdefault(intent.spec.owner, []).append(ids[id(intent)])
            for owner, members in owners.items():
                keys[owner_piece(cluster, owner)] = _key([common, *owner_piece(cluster, owner), *members])
    except (KeyError, StopIteration):
        return None
    return keys


def _key(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:32]


# ----------------------------------------------------------------------------------------------------- record


@dataclass(frozen=True)
class _Kept:
    """One piece as recorded: its key; its files' paths and stats (``inode size mtime_ns ctime_ns``); the objects
    it claims by namespace, ``group kind name`` each joined by ``|`` (the cluster is the piece's own); and its
    stores (recorded as ``apiVersion namespace name`` joined by ``;``). Flat strings: a record of 26k files loads,
    checks and saves in milliseconds (JSON escapes, or a string per object, would slow it down); the claims, half
    of the record, are split only in a namespace a render contests (:func:`collides`)."""

    key: str
    paths: list[str]
    stats: list[str]
    claims: Mapping[str, str]
    stores: tuple[Store, ...]


def _stat_line(st: os.stat_result) -> str:
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"


class Record:
    """What the last render into one output directory recorded (see the module docstring)."""

    def __init__(self, cache: ParseCache, out_dir: Path) -> None:
        self.cache = cache
        self.out_dir = out_dir
        self.name = hashlib.sha256(os.fsencode(os.path.abspath(out_dir))).hexdigest()[:32]
        self._pieces: dict[PieceName, _Kept] = {}
        self.serial = ""  # which save this is: a child and its parent that read the record apart compare it
        self._base = ""  # the serial of the base read, and the pieces its delta holds (see save)
        self._delta: set[PieceName] = set()
        self._directories: dict[str, bool] = {}  # directory (relative) -> a real one, links on the way neither
        self.code = cache.render_dir.name  # names this package's source: a key made by other code never matches

    @classmethod
    def load(cls, cache: ParseCache, out_dir: Path) -> Record:
        """The record for ``out_dir``, empty when there is none that fits the directory (every piece built)."""
        return cls(cache, out_dir).read()

    def exists(self) -> bool:
        """Is there a record to read? (A stat: a caller decides before reading it where to read it.)"""
        return self.cache.has_record(self.name)

    def read(self, *, paths: bool = True) -> Record:
        """Read the record (nothing kept when it does not fit the directory): the base a full save wrote, and the
        delta later saves wrote on top of it (only when it names that base). ``paths=False``: the files' paths
        and stats are not checked (a child keeping pieces by their keys alone, whose parent checks them)."""
        self._pieces, self.serial, self._base, self._delta, self._directories = {}, "", "", set(), {}
        try:
            here = os.stat(self.out_dir, follow_symlinks=False)
        except OSError:
            return self
        if not stat.S_ISDIR(here.st_mode):
            return self
        where = [_spelled(self.out_dir), [here.st_dev, here.st_ino]]
        base = _body(self.cache.get_record(self.name), where)
        if base is None:
            return self
        with contextlib.suppress(ValueError, TypeError):
            self._pieces, self.serial = dict(_piece(entry, paths) for entry in base["pieces"]), base["serial"]
            self._base = base["serial"]
            delta = _body(self.cache.get_record(f"{self.name}-delta"), where)
            if delta is not None and delta.get("base") == self._base and _strings(delta.get("gone")):
                pieces = dict(_piece(entry, paths) for entry in delta["pieces"])
                for gone in delta["gone"]:
                    self._pieces.pop(tuple(gone.split("/")), None)
                self._pieces.update(pieces)
                self._delta, self.serial = set(pieces), delta["serial"]
        if paths and not all_plain([path for entry in self._pieces.values() for path in entry.paths]):
            self._pieces, self.serial, self._base, self._delta = {}, "", "", set()  # a path not plain: refused whole
        return self

    def __bool__(self) -> bool:
        return bool(self._pieces)

    def matching(self, keys: Mapping[PieceName, str], *, verify: bool = True) -> dict[PieceName, Piece]:
        """The recorded pieces whose key is unchanged (``verify``: and whose files are exactly as recorded;
        otherwise the caller checks :meth:`intact` before it trusts them)."""
        kept: dict[PieceName, Piece] = {}
        with self._directory() as fd:
            for name, key in keys.items():
                entry = self._pieces.get(name)
                if (entry is not None and entry.key == key
                        and (not verify or (fd is not None and self._intact(entry, fd)))):
                    kept[name] = Piece(list(entry.paths), [], list(entry.stores), entry.key)
        return kept

    def intact(self) -> set[PieceName]:
        """The recorded pieces whose files are all exactly as recorded."""
        with self._directory() as fd:
            return set() if fd is None else {name for name, e in self._pieces.items() if self._intact(e, fd)}

    @contextlib.contextmanager
    def _directory(self) -> Iterator[int | None]:
        """The output directory, open (None: it cannot be, or is a link): its files are looked up from it, so the
        kernel walks only the part of each path inside it."""
        try:
            fd = os.open(self.out_dir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            yield None
            return
        try:
            yield fd
        finally:
            os.close(fd)

    def _intact(self, entry: _Kept, fd: int) -> bool:
        for path, recorded in zip(entry.paths, entry.stats, strict=True):
            try:
                st = os.stat(path, dir_fd=fd, follow_symlinks=False)
            except OSError:
                return False
            if not stat.S_ISREG(st.st_mode) or _stat_line(st) != recorded or not self._real_parent(path, fd):
                return False
        return True

    def _real_parent(self, path: str, fd: int) -> bool:
        """Is every directory on the way to ``path`` inside the output directory a directory, no symbolic link
        (lstat follows the links on the way: a directory moved out and linked back must not keep its files)?"""
        parent = path.rpartition("/")[0]
        if not parent:
            return True
        known = self._directories.get(parent)
        if known is None:
            try:
                real = stat.S_ISDIR(os.stat(parent, dir_fd=fd, follow_symlinks=False).st_mode)
            except OSError:
                real = False
            known = self._directories[parent] = real and self._real_parent(parent, fd)
        return known

    def claims_of(self, name: PieceName) -> Mapping[str, str]:
        """The piece's claims as recorded (see :class:`_Kept`)."""
        return self._pieces[name].claims

    def paths_of(self, names: Iterable[PieceName]) -> frozenset[str]:
        return frozenset(path for name in names for path in self._pieces[name].paths)

    def save(self, tree: RenderedTree, pieces: Mapping[PieceName, Piece], keys: Mapping[PieceName, str],
             kept: Collection[PieceName] = ()) -> None:
        """Record the render just written: the ``kept`` pieces as they were, the built ``pieces`` with the stats
        their files have now, each file read back and found to hold the bytes ``tree`` has for it (a file changed
        since it was written, unreadable, or changed after the stamp leaves its piece out: it is built next
        time)."""
        base = os.fspath(self.out_dir)
        try:
            here = os.stat(base, follow_symlinks=False)
            stamp = _stamp(base)
        except OSError:
            return
        fresh: dict[PieceName, _Kept] = {}
        for name, piece in pieces.items():
            key = piece.key or keys.get(name)
            if key is not None and name not in kept:
                recorded = _recorded(piece, name, key, base, stamp, tree)
                if recorded is not None:
                    fresh[name] = recorded
        serial = secrets.token_hex(8)
        where = {"format": FORMAT, "out": _spelled(self.out_dir), "dir": [here.st_dev, here.st_ino],
                 "serial": serial}
        # A few pieces changed (an edit): only they are written, as a delta on the base read; else a new base.
        # The delta also carries the pieces earlier deltas held, and names the recorded pieces now gone.
        kept_names = set(kept)
        if self._base and len(fresh) + len(self._delta & kept_names) <= max(8, len(self._pieces) // 4):
            held = [_entry(name, self._pieces[name]) for name in sorted(self._delta & kept_names)]
            gone = sorted("/".join(name) for name in self._pieces.keys() - kept_names - fresh.keys())
            body = {**where, "base": self._base, "gone": gone,
                    "pieces": held + [_entry(name, entry) for name, entry in fresh.items()]}
            self.cache.put_record(f"{self.name}-delta", json.dumps(body, ensure_ascii=False, separators=(",", ":")))
            return
        entries = [_entry(name, self._pieces[name]) for name in kept]
        entries += [_entry(name, entry) for name, entry in fresh.items()]
        self.cache.put_record(self.name, json.dumps({**where, "pieces": entries}, ensure_ascii=False,
                                                     separators=(",", ":")))
        self.cache.drop_record(f"{self.name}-delta")


def _entry(name: PieceName, kept: _Kept) -> list[Any]:
    return [list(name), kept.key, kept.paths, kept.stats, dict(kept.claims),
            ";".join(f"{s.api_version} {s.namespace} {s.name}" for s in kept.stores)]


def _stores(text: str) -> tuple[Store, ...]:
    """A piece's recorded stores; ValueError when they are not in the shape :func:`_recorded` writes."""
    stores = []
    for one in text.split(";") if text else ():
        fields = one.split(" ")
        if len(fields) != 3:
            raise ValueError("not a recorded store")
        stores.append(Store(*fields))
    return tuple(stores)


def _body(raw: Any, where: list[Any]) -> dict[str, Any] | None:
    """A record file's JSON when it is one, for this directory (its path and identity)."""
    if (isinstance(raw, dict) and type(raw.get("format")) is int and raw.get("format") == FORMAT
            and [raw.get("out"), raw.get("dir")] == where
            and isinstance(raw.get("pieces"), list) and isinstance(raw.get("serial"), str)):
        return raw
    return None


def _spelled(out_dir: Path) -> str:
    """The output directory's path as the record names it: its bytes in hex (a path need not be UTF-8)."""
    return os.fsencode(os.fspath(out_dir)).hex()


_STAMP_PREFIX, _STAMP_SUFFIX = ".chamberlain-stamp-", ".tmp"


def _stamp(base: str) -> int:
    """The file system's clock now, as a change time: a file made and removed in the output directory (and those
    left by renders killed meanwhile, whose process is gone)."""
    path = f"{base}/{_STAMP_PREFIX}{os.getpid()}{_STAMP_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        return os.fstat(fd).st_ctime_ns
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        _remove_dead_stamps(base)


def _remove_dead_stamps(base: str) -> None:
    with contextlib.suppress(OSError), os.scandir(base) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(_STAMP_PREFIX) and name.endswith(_STAMP_SUFFIX)):
                continue
            pid = name[len(_STAMP_PREFIX):-len(_STAMP_SUFFIX)]
            if pid.isdigit() and entry.is_file(follow_symlinks=False) and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive, and its file not ours to judge
    return True


def _cluster_of(name: PieceName) -> str:
    return name[2] if name[0] == "namespace" else name[1] if len(name) > 1 else ""


def _recorded(piece: Piece, name: PieceName, key: str, base: str, stamp: int, tree: RenderedTree) -> _Kept | None:
    """A built piece as the record keeps it, or None. Each file's stat is taken after the stamp, and its change
    time must be older than the stamp: any later change moves it past the recorded one. And the file is read
    after that stat and must hold the rendered bytes: a change between the write and the stat (even in the same
    clock tick, where the stat alone would not show it) is caught by the bytes."""
    from chamberlain.render import _READ_EXISTING, read_up_to

    cluster = _cluster_of(name)
    claims: dict[str, list[str]] = {}
    for claim in piece.claims:  # kept claims carry no cluster: it must be the piece's own
        if claim[0] != cluster or any(" " in f or "|" in f or ";" in f for f in claim):
            return None  # (names in Kubernetes hold none of these: such a piece is simply built every time)
        claims.setdefault(claim[3], []).append(f"{claim[1]} {claim[2]} {claim[4]}")
    if (any(" " in f or ";" in f or not f for s in piece.stores for f in (s.api_version, s.namespace, s.name))
            or not all_plain(piece.paths)):
        return None
    stats = []
    for path in piece.paths:
        text = tree.files.get(path)
        if text is None:
            return None
        try:
            fd = os.open(f"{base}/{path}", _READ_EXISTING)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            data = text.encode("utf-8")
            if (not stat.S_ISREG(st.st_mode) or st.st_ctime_ns >= stamp or st.st_size != len(data)
                    or read_up_to(fd, st.st_size + 1) != data):  # a byte more: one that grew reads otherwise
                return None
        except OSError:
            return None
        finally:
            os.close(fd)
        stats.append(_stat_line(st))
    return _Kept(key, list(piece.paths), stats, {ns: "|".join(objects) for ns, objects in claims.items()},
                 tuple(piece.stores))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and set(map(type, value)) <= {str}  # C loops: 100k strings in a millisecond


def _piece(raw: Any, check_paths: bool = True) -> tuple[PieceName, _Kept]:
    """One recorded piece; ValueError or TypeError when it is not the shape :meth:`Record.save` writes
    (``check_paths=False``: its paths and stats are not looked at; the caller checks that the paths of all pieces
    are plain, at once). The claims are split only when they are checked (:func:`collides`)."""
    name, key, paths, stats, claims, stores = raw
    if not (_strings(name) and isinstance(key, str) and isinstance(claims, dict) and isinstance(stores, str)
            and _strings(list(claims.values()))
            and (not check_paths or (_strings(paths) and _strings(stats) and len(paths) == len(stats)))):
        raise ValueError("not a recorded piece")
    return tuple(name), _Kept(key, paths, stats, claims, _stores(stores))


# ---------------------------------------------------------------------------------------------------- checking


def collides(record: Record, kept: Iterable[PieceName], built: Mapping[ClaimKey, str]) -> bool:
    """Does a kept piece claim an object something built claims too? Only the namespaces something built claims
    in are read. (Kept pieces never collide among themselves: they all passed this check in the render that
    recorded them.)"""
    contested = {(c[0], c[3]) for c in built}
    for name in kept:
        cluster = _cluster_of(name)
        for namespace, objects in record.claims_of(name).items():
            if (cluster, namespace) not in contested:
                continue
            for line in objects.split("|"):
                fields = line.split(" ")
                if len(fields) != 3:
                    return True  # not what save() wrote: render everything
                if (cluster, fields[0], fields[1], namespace, fields[2]) in built:
                    return True
    return False


# ----------------------------------------------------------------------------------------------------- render


class _NothingKept(Exception):
    """No recorded piece has its key any more: building the rest here would be a full render done twice."""


@dataclass(frozen=True)
class Rerender:
    """A render that kept pieces: the files built (``tree``) and their pieces (``built``), the names of the pieces
    kept (their files are on disk already, neither read nor written), and every piece's input key. Small enough
    to cross a pipe: no topology, no models, nothing of the record but names."""

    tree: RenderedTree
    built: dict[PieceName, Piece]
    kept: frozenset[PieceName]
    keys: dict[PieceName, str]
    serial: str  # the record's, as read

    def save(self, record: Record) -> None:
        """Record this render, once it is written."""
        record.save(self.tree, self.built, self.keys, self.kept)


def rerender(repo: Repository, record: Record, *, verify: bool = True) -> Rerender | None:
    """``repo`` rendered, keeping the pieces ``record`` says are unchanged (``verify``: and whose files are as
    recorded; without it, the caller checks them with :meth:`Record.intact` before it uses the result); None when
    nothing can be kept, or on any refusal (the caller then renders everything, and meets the refusal first hand).
    Reads only: it may run before the checks are done (:func:`start_rerender`), and its result is used only once
    they passed."""
    from chamberlain.render import render_repository
    from chamberlain.render.topology import RenderError

    if not record:
        return None
    keys: dict[PieceName, str] | None = None
    kept: dict[PieceName, Piece] = {}

    def derived(name: PieceName, key: str) -> Piece | None:
        found = record.matching({name: key}, verify=verify).get(name)
        if found is not None:
            kept[name] = found
        return found

    def keep(topo: Topology) -> Reuse:
        nonlocal keys
        keys = piece_keys(topo, document_ids(repo), record.code)
        if keys is not None:
            kept.update(record.matching(keys, verify=verify))
        if not kept:
            raise _NothingKept  # (a Platform edit): the caller renders everything, as fast as it can
        return Reuse(dict(kept), derived)

    try:
        tree = render_repository(repo, reuse=keep)
    except (RenderError, _NothingKept):
        return None
    if keys is None or not kept or collides(record, kept, tree.claims):
        return None
    return Rerender(RenderedTree(tree.files), dict(tree.pieces), frozenset(kept), keys, record.serial)


def start_rerender(repo: Repository, record: Record) -> Forked[Rerender | None] | None:
    """:func:`rerender` started in a forked child now, while the caller checks the repository (at 10k intents
    both take about as long): the child reads ``record`` and keeps pieces by their keys; the caller reads it too,
    and checks the kept files meanwhile (:func:`rerendered`). None when a child cannot help
    (:func:`chamberlain.render.start_render`'s rules)."""
    from chamberlain.render import PARALLEL_MIN_INTENTS
    from chamberlain.render.forked import Forked, usable

    if len(repo.intents) < PARALLEL_MIN_INTENTS or not usable():
        return None
    # Its own Record: when no child can run, Forked builds this here, and must not change what the caller reads.
    return Forked(lambda: rerender(repo, Record(record.cache, record.out_dir).read(paths=False), verify=False))


def rerendered(ahead: Forked[Rerender | None] | None, repo: Repository, record: Record) -> Rerender | None:
    """The rerender of ``repo`` (validated clean): the child's, once the files of the pieces it kept are found as
    recorded (checked here while it works) in the same record, or one built here. Reads ``record``."""
    if not record.read():
        return None
    if ahead is None:
        return rerender(repo, record)
    intact = record.intact()
    again = ahead.result()
    if again is not None and (again.serial != record.serial or not again.kept <= intact):
        return rerender(repo, record)  # another render saved a record meanwhile, or a kept file changed
    return again


def record_render(record: Record, tree: RenderedTree, repo: Repository) -> None:
    """After a full render wrote ``tree``: the record for the next render."""
    if tree.topology is not None:
        keys = piece_keys(tree.topology, document_ids(repo), record.code)
        if keys is not None:
            record.save(tree, tree.pieces, keys)


__all__ = ["FORMAT", "Record", "Rerender", "collides", "document_ids", "piece_keys", "record_render", "rerender",
           "rerendered", "start_rerender"]
