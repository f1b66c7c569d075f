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
controller installation are keyed by their chart values and namespaces, which the build derives first. A file is
kept only when its inode, size, modification and change times are those recorded, and it was recorded only when
its change time was older than a stamp made on the same file system after writing: a later change always moves
the change time (which no one can set back), even within the file system clock's tick (Git's "racy clean"
problem, avoided the same way).

What stays exact: the files written are those a full render writes, byte for byte, because a kept file holds the
bytes of a piece whose inputs did not change. Duplicate objects are still refused: a kept piece's claims are
compared with everything built (kept pieces cannot collide among themselves: they were all in one earlier render
that passed the same check). Any doubt (a record missing, foreign, malformed or for another directory, an input
with no document, a refusal) renders everything, exactly as without a record. ``render --check`` and
``--no-cache`` never use a record.

The record lives in the parse cache's private directory (:mod:`chamberlain.intent.cache`), named after the output
directory's absolute path; it holds paths, stats, object names and digests, never a value.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.intent.cache import ParseCache, digest
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.render import RenderedTree
from chamberlain.render.flux import Store
from chamberlain.render.layout import ClaimKey, Piece, Reuse
from chamberlain.render.topology import PieceName, Topology, namespace_piece, owner_piece

if TYPE_CHECKING:
    from chamberlain.render.forked import Forked

FORMAT = 1
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
        keys: dict[PieceName, str] = {}
        for unit in topo.units:
            for ns in unit.namespaces:
                name = namespace_piece(unit.environment, unit.cluster, ns)
                lines = [common, *name]
                for read in unit.reads.get(ns, ()):
                    place = next(i for i, c in enumerate(read.intent.spec.consumers) if c is read.consumer)
                    lines.append(f"read {ids[id(read.intent)]} {place}")
                    lines += [f"part {ids[id(part.intent)]}" for part in read.parts]
                lines += [f"publish {ids[id(pub.intent)]}" for pub in unit.publishes.get(ns, ())]
                keys[name] = _key(lines)
        for cluster in topo.clusters:
            owners: dict[str, list[str]] = {}
            for intent in topo.cluster_intents.get(cluster, ()):
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
    it claims by namespace, ``group kind name`` each (the cluster is the piece's own); and its stores. Flat strings:
    a record of 26k files loads, checks and saves in milliseconds (JSON escapes would slow it down)."""

    key: str
    paths: list[str]
    stats: list[str]
    claims: Mapping[str, list[str]]
    stores: tuple[Store, ...]


# What _plain_relative refuses, found at once in a piece's paths joined by newlines between two more: an empty,
# "." or ".." segment, a leading or trailing slash, a backslash, a character a marker line cannot hold (a newline
# inside a path shows as one line too many). Every branch starts with a character class: one fast scan.
_NOT_PLAIN = re.compile(r"[\n/]\.{1,2}(?=[\n/])|[\x00\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029\\]|//|\n/|/\n|\n\n")


def _plain(paths: list[str]) -> bool:
    joined = "\n" + "\n".join(paths) + "\n"
    return not paths or (joined.count("\n") == len(paths) + 1 and not _NOT_PLAIN.search(joined))


def _stat_line(st: os.stat_result) -> str:
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"


class Record:
    """What the last render into one output directory recorded (see the module docstring)."""

    def __init__(self, cache: ParseCache, out_dir: Path) -> None:
        self._cache = cache
        self.out_dir = out_dir
        self.name = hashlib.sha256(os.fsencode(os.path.abspath(out_dir))).hexdigest()[:32]
        self._pieces: dict[PieceName, _Kept] = {}
        self.code = cache.render_dir.name  # names this package's source: a key made by other code never matches

    @classmethod
    def load(cls, cache: ParseCache, out_dir: Path) -> Record:
        """The record for ``out_dir``, empty when there is none that fits the directory (every piece built)."""
        record = cls(cache, out_dir)
        raw = cache.get_record(record.name)
        try:
            here = os.stat(out_dir, follow_symlinks=False)
        except OSError:
            return record
        if (isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("out") == os.fspath(out_dir)
                and raw.get("dir") == [here.st_dev, here.st_ino] and stat.S_ISDIR(here.st_mode)
                and isinstance(raw.get("pieces"), list)):
            with contextlib.suppress(ValueError, TypeError):
                record._pieces = dict(_piece(entry) for entry in raw["pieces"])
        return record

    def __bool__(self) -> bool:
        return bool(self._pieces)

    def reusable(self, keys: Mapping[PieceName, str], only: PieceName | None = None,
                 ) -> dict[PieceName, tuple[Piece, _Kept]]:
        """The pieces whose key is unchanged and whose files are exactly as recorded (``only``: that one)."""
        base = os.fspath(self.out_dir)
        kept: dict[PieceName, tuple[Piece, _Kept]] = {}
        entries = self._pieces if only is None else {only: self._pieces[only]} if only in self._pieces else {}
        for name, entry in entries.items():
            if keys.get(name) != entry.key:
                continue
            for path, recorded in zip(entry.paths, entry.stats, strict=True):
                try:
                    st = os.lstat(f"{base}/{path}")
                except OSError:
                    break
                if not stat.S_ISREG(st.st_mode) or _stat_line(st) != recorded:
                    break
            else:
                kept[name] = (Piece(list(entry.paths), [], list(entry.stores), entry.key), entry)
        return kept

    def save(self, pieces: Mapping[PieceName, Piece], keys: Mapping[PieceName, str],
             kept: Mapping[PieceName, tuple[Piece, _Kept]]) -> None:
        """Record the render just written: kept pieces as they were, built ones with the stats their files have
        now (a file changed after the stamp, or unreadable, leaves its piece out: it is built next time)."""
        base = os.fspath(self.out_dir)
        try:
            here = os.stat(base, follow_symlinks=False)
            stamp = _stamp(base)
        except OSError:
            return
        entries: list[list[Any]] = []
        for name, piece in pieces.items():
            key = piece.key or keys.get(name)
            if key is None:
                continue
            recorded = kept[name][1] if name in kept else _recorded(piece, name, key, base, stamp)
            if recorded is not None:
                entries.append([list(name), recorded.key, recorded.paths, recorded.stats, dict(recorded.claims),
                                [[s.api_version, s.namespace, s.name] for s in recorded.stores]])
        body = {"format": FORMAT, "out": base, "dir": [here.st_dev, here.st_ino], "pieces": entries}
        self._cache.put_record(self.name, json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def _stamp(base: str) -> int:
    """The file system's clock now, as a change time: a file made and removed in the output directory."""
    path = f"{base}/.chamberlain-stamp-{os.getpid()}.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        return os.fstat(fd).st_ctime_ns
    finally:
        os.close(fd)
        os.unlink(path)


def _cluster_of(name: PieceName) -> str:
    return name[2] if name[0] == "namespace" else name[1]


def _recorded(piece: Piece, name: PieceName, key: str, base: str, stamp: int) -> _Kept | None:
    cluster = _cluster_of(name)
    claims: dict[str, list[str]] = {}
    for claim in piece.claims:  # kept claims carry no cluster: it must be the piece's own
        if claim[0] != cluster or any(" " in f for f in claim):
            return None
        claims.setdefault(claim[3], []).append(f"{claim[1]} {claim[2]} {claim[4]}")
    stats = []
    for path in piece.paths:
        try:
            st = os.lstat(f"{base}/{path}")
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_ctime_ns >= stamp:
            return None
        stats.append(_stat_line(st))
    if not _plain(piece.paths):
        return None
    return _Kept(key, list(piece.paths), stats, claims, tuple(piece.stores))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and set(map(type, value)) <= {str}  # C loops: 100k strings in a millisecond


def _piece(raw: Any) -> tuple[PieceName, _Kept]:
    """One recorded piece; ValueError or TypeError when it is not the shape :meth:`Record.save` writes, or names
    a path a render would not write."""
    name, key, paths, stats, claims, stores = raw
    if not (_strings(name) and isinstance(key, str) and _strings(paths) and _strings(stats)
            and len(paths) == len(stats) and _plain(paths) and isinstance(claims, dict)
            and all(_strings(c) for c in claims.values()) and isinstance(stores, list)):
        raise ValueError("not a recorded piece")
    kept = []
    for api_version, namespace, store in stores:
        if not all(isinstance(s, str) for s in (api_version, namespace, store)):
            raise ValueError("not a recorded store")
        kept.append(Store(api_version, namespace, store))
    return tuple(name), _Kept(key, paths, stats, claims, tuple(kept))


# ---------------------------------------------------------------------------------------------------- checking


def collides(kept: Mapping[PieceName, tuple[Piece, _Kept]], built: Mapping[ClaimKey, str]) -> bool:
    """Does a kept piece claim an object something built claims too? Only the namespaces something built claims
    in are read. (Kept pieces never collide among themselves: they all passed this check in the render that
    recorded them.)"""
    contested = {(c[0], c[3]) for c in built}
    for name, (_, entry) in kept.items():
        cluster = _cluster_of(name)
        for namespace, objects in entry.claims.items():
            if (cluster, namespace) not in contested:
                continue
            for line in objects:
                fields = line.split(" ")
                if len(fields) != 3:
                    return True  # not what save() wrote: render everything
                if (cluster, fields[0], fields[1], namespace, fields[2]) in built:
                    return True
    return False


# ----------------------------------------------------------------------------------------------------- render


@dataclass(frozen=True)
class Rerender:
    """A render that kept pieces: the files built (``tree``), the kept files (``kept``: on disk already, neither
    read nor written), and what :meth:`Record.save` needs (every piece, the input keys, the kept pieces). Small
    enough to cross a pipe: no topology, no models."""

    tree: RenderedTree
    kept: frozenset[str]
    pieces: dict[PieceName, Piece]
    keys: dict[PieceName, str]
    reused: dict[PieceName, tuple[Piece, _Kept]]

    def save(self, record: Record) -> None:
        """Record this render, once it is written."""
        record.save(self.pieces, self.keys, self.reused)


def rerender(repo: Repository, record: Record) -> Rerender | None:
    """``repo`` rendered, keeping the pieces ``record`` says are unchanged; None when nothing can be kept, or on
    any refusal (the caller then renders everything, and meets the refusal first hand). Reads only: it may run
    before the checks are done (:func:`start_rerender`), and its result is used only once they passed."""
    from chamberlain.render import render_repository
    from chamberlain.render.topology import RenderError

    if not record:
        return None
    keys: dict[PieceName, str] | None = None
    reusable: dict[PieceName, tuple[Piece, _Kept]] = {}

    def derived(name: PieceName, key: str) -> Piece | None:
        found = record.reusable({name: key}, only=name).get(name)
        if found is None:
            return None
        reusable[name] = found
        return found[0]

    def keep(topo: Topology) -> Reuse:
        nonlocal keys
        keys = piece_keys(topo, document_ids(repo), record.code)
        if keys is not None:
            reusable.update(record.reusable(keys))
        return Reuse({name: piece for name, (piece, _) in reusable.items()}, derived)

    try:
        tree = render_repository(repo, reuse=keep)
    except RenderError:
        return None
    if keys is None or not reusable or collides(reusable, tree.claims):
        return None
    kept = frozenset(path for piece, _ in reusable.values() for path in piece.paths)
    pieces = {**tree.pieces, **{name: piece for name, (piece, _) in reusable.items()}}
    return Rerender(RenderedTree(tree.files), kept, pieces, keys, reusable)


def start_rerender(repo: Repository, record: Record) -> Forked[Rerender | None] | None:
    """:func:`rerender` started in a forked child now, while the caller checks the repository (at 10k intents
    both take about as long); :meth:`~chamberlain.render.forked.Forked.result` is the rerender, built here when
    the child could not. None when a child cannot help (:func:`chamberlain.render.start_render`'s rules)."""
    from chamberlain.render import PARALLEL_MIN_INTENTS
    from chamberlain.render.forked import Forked, usable

    if not record or len(repo.intents) < PARALLEL_MIN_INTENTS or not usable():
        return None
    return Forked(lambda: rerender(repo, record))


def record_render(record: Record, tree: RenderedTree, repo: Repository) -> None:
    """After a full render wrote ``tree``: the record for the next render."""
    if tree.topology is not None:
        keys = piece_keys(tree.topology, document_ids(repo), record.code)
        if keys is not None:
            record.save(tree.pieces, keys, {})


__all__ = ["FORMAT", "Record", "Rerender", "collides", "document_ids", "piece_keys", "record_render", "rerender",
           "start_rerender"]
