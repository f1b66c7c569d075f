"""Load an intent repository from disk into a :class:`Repository`.

Every YAML document is parsed with the C loader and remembers its file and the line of every node, so that each
finding can point at the exact place. Hostile input (binary garbage, huge files, deep nesting, alias bombs)
becomes a finding, never a crash: nothing downstream sees a document that failed these limits.

Which files are read at all is the walk's decision (:mod:`chamberlain.intent.walk`: ignore files, rendered output,
Helm templates, symbolic links). Only documents with the chamberlain apiVersion are intent; every other file is
scanned for credentials, and other YAML is kept as manifests for the manifest checks. Not intent either, and
reported as excluded: documents ``chamberlain render`` wrote (annotation ``chamberlain.dev/rendered``) and
documents in kustomize patch files (partial objects).
"""

from __future__ import annotations

import gc
import itertools
import operator
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import ValidationError

from chamberlain import safeyaml
from chamberlain import wellknown as wk
from chamberlain.findings import Finding
from chamberlain.intent import fastyaml, hidden, memo, unseal_shares
from chamberlain.intent.cache import CachedDoc, Entry, ParseCache, digest, json_plain
from chamberlain.intent.model import (
    API_VERSION,
    GENERATOR_TYPES,
    GROUP,
    KINDS,
    IntentObject,
    Platform,
    RotationPolicy,
    SecretIntent,
)
from chamberlain.intent.walk import Exclusion, Role, WalkedFile, walk

# The C-based safe loader that also refuses duplicate mapping keys (see chamberlain.safeyaml).
_SafeLoader = safeyaml.StrictLoader

YAML_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 8 * 1024 * 1024  # no legitimate intent or manifest file is this large
MAX_SCAN_BYTES = 64 * 1024 * 1024  # above this a file is not even read for secret scanning
MAX_DEPTH = safeyaml.MAX_DEPTH
MAX_FLOW_DEPTH = 200
MAX_DOCUMENTS = 20_000  # per file; 10k intents in 100 files is 100 each
MAX_EXPANDED_NODES = safeyaml.MAX_EXPANDED_NODES  # per document, after alias expansion
T = TypeVar("T")


@dataclass
class RepoFile:
    """One file of the repository. ``text`` is None for binary or oversized files. ``role``: ``source`` files are
    parsed; ``rendered`` (chamberlain's own output) and ``template`` (Helm/Go templates) files are only scanned, so
    their ``documents`` stay empty."""

    path: Path
    rel: str
    size: int
    text: str | None
    is_yaml: bool
    documents: list[Document] = field(default_factory=list)
    role: Role = "source"
    # SHA-256 of the bytes of an intent file (every document a chamberlain one) read through the parse cache:
    # what per-file results derived from the bytes alone (the credential scan) are cached under. None otherwise.
    digest: str | None = None

    @property
    def is_sops(self) -> bool:
        return any(d.is_sops for d in self.documents)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class Document:
    """One YAML document: its data, where it sits in its file, and (composed on demand) its node tree.

    Composing nodes costs as much as loading, so it only happens when a finding needs the line of a key.
    """

    file: str
    index: int
    data: Any
    start_line: int  # 1-based, first line of the document's text (its ``---`` line, if any)
    end_line: int  # 1-based, inclusive
    start_index: int  # character offsets of the document's text in the file
    end_index: int
    _source: str = field(repr=False, default="")
    _node: yaml.Node | None = field(repr=False, default=None)

    @property
    def node(self) -> yaml.Node:
        """The document's node tree; its marks are relative to the document (add ``start_line - 1``)."""
        if self._node is None:
            node = yaml.compose(self._source, Loader=_SafeLoader)  # already loaded once, so it parses
            self._node = node if node is not None else yaml.ScalarNode("tag:yaml.org,2002:null", "")
        return self._node

    @property
    def line(self) -> int:
        """The line where the document's content starts (past ``---``, directives, comments and blank lines);
        read from the text, because composing nodes just for this is as slow as loading."""
        for i, raw in enumerate(self._source.splitlines()):
            text = raw.strip()
            if not text or text.startswith(("#", "%")):
                continue
            if text.startswith("---"):
                rest = text[3:].strip()
                if not rest or rest.startswith("#"):
                    continue
            return self.start_line + i
        return self.start_line

    # kind, apiVersion, name and namespace are None unless a string: a mapping or list there is no Kubernetes
    # object checks could match (and would crash them as a dict key), like a YAML file that is no manifest. A
    # ``!!binary`` value is already its text here (_as_applied).
    @property
    def kind(self) -> str | None:
        return _text(self.data.get("kind")) if isinstance(self.data, dict) else None

    @property
    def api_version(self) -> str | None:
        return _text(self.data.get("apiVersion")) if isinstance(self.data, dict) else None

    @property
    def name(self) -> str | None:
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        return _text(meta.get("name")) if isinstance(meta, dict) else None

    @property
    def namespace(self) -> str | None:
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        return _text(meta.get("namespace")) if isinstance(meta, dict) else None

    @property
    def is_sops(self) -> bool:
        return isinstance(self.data, dict) and isinstance(self.data.get("sops"), dict)

    def line_of(self, loc: tuple[int | str, ...]) -> int:
        """Line (1-based) of the deepest key or item along ``loc`` that exists (the key's line, not its value's:
        a block mapping value starts on the line after its key)."""
        node: yaml.Node = self.node
        offset = self.start_line
        line = offset + int(node.start_mark.line)
        for part in loc:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        child, line = value, offset + int(key.start_mark.line)
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                child = node.value[part]
                line = offset + int(child.start_mark.line)
            if child is None:
                break
            node = child
        return line


@dataclass
class Loaded(Generic[T]):
    """A validated intent object and the document it came from."""

    obj: T
    doc: Document

    @property
    def file(self) -> str:
        return self.doc.file

    @property
    def line(self) -> int:
        return self.doc.line

    def line_of(self, *loc: int | str) -> int:
        return self.doc.line_of(loc)


@dataclass
class Repository:
    root: Path
    files: list[RepoFile] = field(default_factory=list)
    platforms: list[Loaded[Platform]] = field(default_factory=list)
    policies: list[Loaded[RotationPolicy]] = field(default_factory=list)
    intents: list[Loaded[SecretIntent]] = field(default_factory=list)
    manifests: list[Document] = field(default_factory=list)  # every other YAML document, SOPS files included
    problems: list[Finding] = field(default_factory=list)  # findings raised while loading
    exclusions: list[Exclusion] = field(default_factory=list)  # what was left out of intent, and why (reported)
    unseal_exports: list[Document] = field(default_factory=list)  # UnsealShares documents (checked, never applied)
    # chamberlain objects the schema refused (their CH003/CH005/CH006 are in problems): a reference to one names an
    # object that is declared but invalid, not one that is missing, and its finding must say which.
    invalid: list[Document] = field(default_factory=list)
    git_root: Path | None = None  # the Git work tree the repository lies in (SARIF paths are relative to it)

    @property
    def platform(self) -> Platform | None:
        return self.platforms[0].obj if len(self.platforms) == 1 else None

    def policy_index(self) -> dict[str, Loaded[RotationPolicy]]:
        index: dict[str, Loaded[RotationPolicy]] = {}
        for p in self.policies:
            index.setdefault(p.obj.metadata.name, p)
        return index

    def intent_index(self) -> dict[str, Loaded[SecretIntent]]:
        """The intents by name, the first of a duplicate name winning (shared within :func:`memo.reading`)."""
        return memo.memo(self, "intent_index", self._intent_index)

    def _intent_index(self) -> dict[str, Loaded[SecretIntent]]:
        index: dict[str, Loaded[SecretIntent]] = {}
        for i in self.intents:
            index.setdefault(i.obj.metadata.name, i)
        return index

    def invalid_object(self, kind: str, name: str) -> Document | None:
        """The first document declaring ``kind`` ``name`` that failed to load, if any (see :attr:`invalid`)."""
        index: dict[tuple[str | None, str | None], Document] = memo.memo(self, "invalid_index", lambda: {
            (d.kind, d.name): d for d in reversed(self.invalid)})
        return index.get((kind, name))

    def file(self, rel: str) -> RepoFile | None:
        return next((f for f in self.files if f.rel == rel), None)

    def without(self, rels: Collection[str]) -> Repository:
        """This repository with the files ``rels`` left out: their documents, objects and loading problems. The
        objects are shared, not copied (for reading only)."""
        return Repository(
            root=self.root, files=[f for f in self.files if f.rel not in rels],
            platforms=[p for p in self.platforms if p.doc.file not in rels],
            policies=[p for p in self.policies if p.doc.file not in rels],
            intents=[i for i in self.intents if i.doc.file not in rels],
            manifests=[d for d in self.manifests if d.file not in rels],
            problems=[f for f in self.problems if f.file not in rels],
            exclusions=list(self.exclusions),
            unseal_exports=[d for d in self.unseal_exports if d.file not in rels],
            invalid=[d for d in self.invalid if d.file not in rels],
            git_root=self.git_root,
        )

    def excluded(self, rel: str) -> Exclusion | None:
        """The exclusion that covers ``rel`` (the path itself or a directory above it), if any."""
        for e in self.exclusions:
            if e.path == rel or (e.path.endswith("/") and (rel + "/").startswith(e.path)) or e.path == "./":
                return e
        return None


# ------------------------------------------------------------------------------------------------ loading


def load_repository(root: Path, *, git: str | None = "git") -> Repository:
    """Read every file under ``root`` the walk keeps; parse YAML; validate chamberlain kinds. Never raises on bad
    content (an unreadable ignore file is a usage error). ``git``: the program asked about ignore rules (None:
    read ``.gitignore`` files instead)."""
    root = root.resolve()
    walked = walk(root, git=git)
    repo = Repository(root=root, exclusions=walked.exclusions, git_root=walked.git_root)
    # Loading allocates millions of small objects that all stay alive; the cyclic GC would rescan them again and
    # again (measured: 7.5 s instead of 2.6 s at 10k intents). Nothing here creates reference cycles.
    with gc_paused():
        for wf in walked.files:
            repo.files.append(_read_file(repo, wf))
        patches = kustomize_patches(repo.files)
        rendered: list[Document] = []
        for f in repo.files:
            in_patch = f.rel in patches
            for doc in f.documents:
                _classify(repo, doc, rendered, in_patch=in_patch)
            _hidden_in_unparsed(repo, f, rendered)
        _check_patches(repo)
        _check_rendered_copies(repo, rendered)
        repo.problems.extend(hidden.exclusions(root, walked.exclusions, in_work_tree=walked.git_root is not None))
        repo.exclusions.sort()
    return repo


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk build of acyclic objects (re-enabled only if it was on).

    On the way out everything tracked is frozen (moved out of the GC's generations) before the collector is back:
    otherwise the first allocation after ``gc.enable()`` collects the whole build at once as generation 0 (about
    1 s at 10k intents), and later collections (during checks and render) would rescan it. What was built lives as
    long as the command; reference counting still frees it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()


def _read_file(repo: Repository, wf: WalkedFile) -> RepoFile:
    path, rel = wf.path, wf.rel
    is_yaml = path.suffix.lower() in YAML_SUFFIXES
    parse = is_yaml and wf.role == "source"
    try:
        size = path.stat().st_size
        if size > MAX_SCAN_BYTES or (parse and size > MAX_FILE_BYTES):
            # Not read whole: the credential scan reads it window by window (checks/secrets.scan_file).
            if parse:
                repo.problems.append(Finding(
                    rel, None, "CH002", f"file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit; not parsed "
                    f"(list it in .chamberlainignore if it is not part of the intent repository)"))
            return RepoFile(path, rel, size, None, is_yaml, role=wf.role)
        raw = path.read_bytes()
    except OSError as exc:  # unreadable (permissions) or vanished since the walk
        repo.problems.append(Finding(rel, None, "CH001", f"file cannot be read ({exc.strerror or 'I/O error'})"))
        return RepoFile(path, rel, 0, None, is_yaml, role=wf.role)
    text: str | None
    try:
        text = raw.decode("utf-8")
        if "\x00" in text:
            text = None
    except UnicodeDecodeError:
        text = None
    rf = RepoFile(path, rel, size, text, is_yaml, role=wf.role)
    if wf.role == "template":
        repo.exclusions.append(Exclusion(rel, "template"))
    elif parse:
        if text is None:
            repo.problems.append(Finding(rel, None, "CH001", "file is not UTF-8 text; YAML must be UTF-8"))
        else:
            _parse_cached(repo, rf, text, raw)
    return rf


_CACHE: ContextVar[ParseCache | None] = ContextVar("chamberlain_parse_cache", default=None)


@contextmanager
def parse_cache(cache: ParseCache | None) -> Iterator[ParseCache | None]:
    """Within this block, :func:`load_repository` reads and writes parse results through ``cache`` (None: no
    cache, the default). The CLI opens it around one command; the cache is pruned when the block ends."""
    token = _CACHE.set(cache)
    try:
        yield cache
    finally:
        _CACHE.reset(token)
        if cache is not None:
            cache.prune()


def active_cache() -> ParseCache | None:
    """The parse cache of the command running (:func:`parse_cache`), if any."""
    return _CACHE.get()


def _parse_cached(repo: Repository, rf: RepoFile, text: str, raw: bytes) -> None:
    """:func:`_parse_source`, or its result for these bytes from the parse cache (see :mod:`.cache`)."""
    cache = _CACHE.get()
    if cache is None:
        _parse_source(repo, rf, text)
        return
    sha = digest(raw)
    entry = cache.get(sha, len(text))
    if entry is not None:
        rel = rf.rel
        if entry.template:
            rf.role = "template"
            repo.exclusions.append(Exclusion(rel, "template"))
        repo.problems.extend(Finding(rel, line, rule, message, column=column)
                             for line, rule, message, column in entry.problems)
        rf.documents = [Document(rel, d.index, d.data, d.start_line, d.end_line, d.start, d.end, text[d.start:d.end])
                        for d in entry.docs]
        rf.digest = sha
        return
    problems_before = len(repo.problems)
    slow: list[Document] = []
    _parse_source(repo, rf, text, slow)
    # Only intent files are kept: they are what a large repository is made of, and they hold no values. Any other
    # YAML (a manifest, Helm values) could hold a plaintext credential the scan is about to report, and a copy
    # outside the repository would outlive its removal from it.
    if rf.documents and all(_intent_document(d) for d in rf.documents) and all(json_plain(d.data) for d in slow):
        problems = tuple((f.line, f.rule, f.message, f.column) for f in repo.problems[problems_before:])
        docs = tuple(CachedDoc(d.index, d.start_line, d.end_line, d.start_index, d.end_index, d.data)
                     for d in rf.documents)
        cache.stage(rf.rel, sha, Entry(docs, problems, rf.role == "template"))  # written once checked clean
        rf.digest = sha


def _intent_document(doc: Document) -> bool:
    version = doc.api_version
    return version is not None and version.startswith(f"{GROUP}/")


def blob_file(rel: str, raw: bytes) -> RepoFile:
    """A file that is not on disk (a blob of Git history) read as :func:`_read_file` reads a source file: text when
    it is UTF-8, and its YAML documents when it parses (what it would be found to hold is not reported here), so
    the credential scan treats it as it treats the working tree. ``path`` is only a name: nothing is read from it."""
    text: str | None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" in text:
        text = None
    is_yaml = rel.lower().endswith(YAML_SUFFIXES)
    rf = RepoFile(Path(rel), rel, len(raw), text, is_yaml)
    if is_yaml and text is not None and len(raw) <= MAX_FILE_BYTES:
        _parse_source(Repository(root=Path(".")), rf, text)
    return rf


def _has_template_actions(text: str) -> bool:
    """Go/Helm template actions (``{{ ... }}``). Substring tests only: linear on any input, where a regex with
    a lazy wildcard would go quadratic on a hostile file of unclosed ``{{``."""
    start = text.find("{{")
    return start >= 0 and text.find("}}", start) >= 0


def _parse_source(repo: Repository, rf: RepoFile, text: str, slow: list[Document] | None = None) -> None:
    problems_before = len(repo.problems)
    rf.documents = _parse_yaml(repo, rf.rel, text, slow)
    failed = len(repo.problems) > problems_before
    # A template outside a chart (an Argo CD or Helmfile template, a values file with actions): only when it does
    # not parse, so valid manifests keep every check. Intent is never templated: a file naming the chamberlain
    # group keeps its syntax error.
    if failed and _has_template_actions(text) and GROUP + "/" not in text:
        del repo.problems[problems_before:]
        rf.documents = []
        rf.role = "template"
        repo.exclusions.append(Exclusion(rf.rel, "template"))


_FLOW_BRACKETS = re.compile(r"[\[\]{}]")


_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _flow_depth(text: str) -> int:
    """The deepest bracket nesting, an excess closer counting as depth 0 again (not below). Computed with C-level
    iteration, as a walk reflected at 0: depth_i = sum_i - min(0, min of the sums so far)."""
    steps = list(map(_BRACKET_STEP.__getitem__, _FLOW_BRACKETS.findall(text)))
    if not steps:
        return 0
    sums = list(itertools.accumulate(steps))
    lows = itertools.accumulate(sums, min, initial=0)
    next(lows)  # the initial 0 pairs with nothing: lows now yields min(0, sums[0..i]) aligned with sums
    return int(max(0, *map(operator.sub, sums, lows)))


_DOC_MARKER = re.compile(r"^(?:---|\.\.\.)(?=[ \t\r\n]|$)", re.M)
_DEEP_INDENT = re.compile(f"^[ \\t]{{{MAX_DEPTH}}}", re.M)


def _deep_indent(chunk: str) -> bool:
    """Is some line indented :data:`MAX_DEPTH` columns or more (nesting deep enough to compose and check)?"""
    return _DEEP_INDENT.search(chunk) is not None


def _split_documents(text: str) -> list[tuple[int, int]]:
    """Character spans of the documents of a YAML stream. ``---`` and ``...`` at column 0 are document markers
    wherever they appear (YAML forbids them inside content), so splitting on them is exact; directive-only chunks
    stay attached to the document they introduce."""
    starts = [m.start() for m in _DOC_MARKER.finditer(text)]
    bounds = sorted({0, *starts})
    spans = []
    pending: int | None = None
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else len(text)
        if text.startswith("...", start):
            continue
        chunk = text[start:end]
        body = [ln for ln in chunk.splitlines() if ln.strip() and not ln.lstrip().startswith("#")] if "%" in chunk \
            else []  # only a chunk with a % can be directives only
        if body and all(ln.startswith("%") for ln in body):
            pending = start if pending is None else pending
            continue
        spans.append((pending if pending is not None else start, end))
        pending = None
    return spans


def _parse_yaml(repo: Repository, rel: str, text: str, slow: list[Document] | None = None) -> list[Document]:
    """The documents of ``text`` (problems go to ``repo``); ``slow`` collects those PyYAML loaded (not the fast
    path), whose data may hold more than JSON does."""
    # libyaml's composer recurses in C; refuse pathological flow nesting before handing it the text.
    if ("[" in text or "{" in text) and _flow_depth(text) > MAX_FLOW_DEPTH:
        repo.problems.append(Finding(rel, None, "CH002", f"nesting deeper than {MAX_FLOW_DEPTH}; not parsed"))
        return []
    spans = _split_documents(text)
    if len(spans) > MAX_DOCUMENTS:  # each document costs a parser set-up: a flood of tiny ones is a slow file
        repo.problems.append(Finding(rel, None, "CH002", f"{len(spans)} YAML documents, over the limit of "
                                                         f"{MAX_DOCUMENTS} per file; not parsed"))
        return []
    docs: list[Document] = []
    first_line, counted_to = 1, 0
    with _fast_path() as fast:
        whole = fastyaml.load_stream(text, spans) if fast else None
        for index, (start, end) in enumerate(spans):
            chunk = text[start:end]
            first_line += text.count("\n", counted_to, start)  # incremental: linear in the file, not quadratic
            counted_to = start
            last_line = first_line + chunk.rstrip("\n").count("\n")
            data = whole[index] if whole is not None else (fastyaml.load(chunk) if fast else fastyaml.DECLINED)
            loaded_slowly = data is fastyaml.DECLINED
            if loaded_slowly:
                data, problem = _load_chunk(chunk, first_line)
                if problem is not None:
                    repo.problems.append(Finding(rel, problem[0], problem[1], problem[2], column=problem[3]))
                    continue
                data = _as_applied(data)
            if data is None:
                continue
            doc = Document(rel, index, data, first_line, last_line, start, end, chunk)
            docs.append(doc)
            if loaded_slowly and slow is not None:
                slow.append(doc)
    return docs


def _as_applied(data: Any) -> Any:
    """``data`` as Kubernetes tools read it: every ``!!binary`` value (bytes to PyYAML) is the text it decodes to,
    as Go's YAML makes it. ``kind: !!binary U2VjcmV0`` is applied as a Secret and ``stringData`` values as text,
    so the checks must see them so (else they skip what GitOps applies). In place; iterative (aliases may share)."""
    def text(value: Any) -> Any:
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value

    stack, seen = [data], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            for key in [k for k, v in node.items() if isinstance(k, bytes) or isinstance(v, bytes)]:
                node[text(key)] = text(node.pop(key))
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            node[:] = [text(value) for value in node]
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return text(data)


@contextmanager
def _fast_path() -> Iterator[bool]:
    """Whether plain documents may take :mod:`chamberlain.intent.fastyaml` (rapidyaml installed, and its error
    messages kept off stderr for the span of one file)."""
    if not fastyaml.available():
        yield False
        return
    with fastyaml.quiet_stderr() as quiet:
        yield quiet


def _load_chunk(chunk: str, first_line: int) -> tuple[Any, tuple[int | None, str, str, int | None] | None]:
    """Load one document with :mod:`chamberlain.safeyaml` (duplicate keys, alias cycles and bombs refused): what
    the fast path (:mod:`.fastyaml`) declined. Plain documents go straight to data with the C loader; documents
    with aliases, or deep enough that nesting could be hostile, are composed first and their graph checked. A
    problem is (line, rule, message, column)."""
    risky = safeyaml.has_aliases(chunk) or _deep_indent(chunk)
    offset = first_line - 1  # marks are chunk-relative; findings are file-relative
    try:
        if not risky:
            return yaml.load(chunk, Loader=_SafeLoader), None  # noqa: S506 - a SafeLoader
        node = yaml.compose(chunk, Loader=_SafeLoader)
        if node is None:
            return None, None
        safeyaml.check_graph(node)
        return _SafeLoader("").construct_document(node), None
    except safeyaml.YamlLimitError as exc:
        return None, (offset + exc.line if exc.line is not None else first_line, exc.rule, exc.message, None)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = offset + int(mark.line) + 1 if mark is not None else None
        column = int(mark.column) + 1 if mark is not None else None  # marks are 0-based, findings 1-based
        return None, (line, "CH001", _syntax_message(chunk, exc, mark), column)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        return None, (first_line, "CH001", f"YAML cannot be parsed: {type(exc).__name__}", None)


def _syntax_message(chunk: str, exc: yaml.MarkedYAMLError, mark: yaml.Mark | None) -> str:
    """The CH001 message of a syntax error. A tab where YAML wants spaces is named as such: libyaml only says it
    "found character that cannot start any token", which does not say which character (a tab is invisible)."""
    problem = exc.problem or exc.context or "syntax error"
    index = int(mark.index) if mark is not None else -1  # a character offset in the chunk (libyaml and PyYAML)
    if mark is None or not 0 <= index < len(chunk) or chunk[index] != "\t":
        return f"YAML syntax error: {problem}"
    start = chunk.rfind("\n", 0, index) + 1
    indenting = not chunk[start:index].strip(" \t")
    where = "YAML indentation uses spaces, not tabs" if indenting else "YAML allows no tab there, use spaces"
    return f"YAML syntax error: a tab character at column {int(mark.column) + 1}: {where} ({problem})"


# ------------------------------------------------------------------------------------------------ validation

# pydantic error types that map to a dedicated rule instead of the generic schema rule.
_DURATION_FIELDS = {"ttl", "rotateBefore", "maxOverlap"}


def _classify(repo: Repository, doc: Document, rendered: list[Document], *, in_patch: bool = False) -> None:
    api = doc.api_version
    if api is None or not api.startswith(GROUP + "/"):
        repo.manifests.append(doc)
        listed = hidden.list_items(doc.file, doc.line, doc.data)
        if listed is not None:  # kubectl and kustomize apply a List's items one by one
            repo.problems.append(listed)
        return
    if in_patch:  # a partial object kustomize merges into rendered output; its own schema does not apply
        repo.exclusions.append(Exclusion(doc.file, "kustomize-patch", doc.line))
        return
    if _rendered(doc):
        repo.exclusions.append(Exclusion(doc.file, "rendered-document", doc.line))
        rendered.append(doc)
        return
    if api != API_VERSION:
        repo.problems.append(
            Finding(doc.file, doc.line_of(("apiVersion",)), "CH003",
                    f"apiVersion {api!r} is not served; use {API_VERSION}")
        )
        repo.invalid.append(doc)
        return
    kind = doc.data.get("kind")  # the raw value (a dict here, as apiVersion is set): CH003 quotes what is wrong
    if kind == unseal_shares.KIND:  # sealed unseal shares kept for cluster loss: not intent, checked by CH108-CH111
        repo.unseal_exports.append(doc)
        return
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        repo.problems.append(
            Finding(doc.file, doc.line_of(("kind",)), "CH003",
                    f"unknown kind {kind!r}; expected one of {', '.join(sorted(KINDS))}")
        )
        return
    try:
        obj = model.model_validate(doc.data)
    except ValidationError as exc:
        for f in _validation_findings(doc, exc):
            repo.problems.append(f)
        repo.invalid.append(doc)
        return
    if isinstance(obj, Platform):
        repo.platforms.append(Loaded(obj, doc))
    elif isinstance(obj, RotationPolicy):
        repo.policies.append(Loaded(obj, doc))
    else:
        repo.intents.append(Loaded(obj, doc))


def _validation_findings(doc: Document, exc: ValidationError) -> Iterator[Finding]:
    label = f"{doc.kind}/{doc.name}" if doc.name else str(doc.kind)
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        path = ".".join(str(p) for p in loc) or "(document)"
        rule = _rule_for(loc, err["type"], str(err.get("msg", "")))
        yield Finding(
            doc.file, doc.line_of(loc), rule, f"{label}: {path}: {_describe(err)}", object=label
        )


def schema_findings(doc: Document, exc: ValidationError) -> list[Finding]:
    """The findings (CH003, CH004, CH005, CH006, CH012) of one document its model refused: what validate reports
    for a file, and the controller for an object read from the cluster."""
    return list(_validation_findings(doc, exc))


# Union branch names that pydantic inserts into error locations; they are not YAML keys.
_UNION_TAGS = {"ref", "inline", *GENERATOR_TYPES}


def _rule_for(loc: tuple[int | str, ...], err_type: str, msg: str) -> str:
    last = str(loc[-1]) if loc else ""
    if loc[:2] in (("spec", "owner"), ("spec", "purpose")) and err_type in ("missing", "string_too_short"):
        return "CH004"
    if last in _DURATION_FIELDS or "invalid duration" in msg:
        return "CH005"
    if "restart" in loc and last == "kind":
        return "CH012"
    if (err_type == "string_pattern_mismatch" and last in {
        "name", "namespace", "owner", "secretName", "clusters", "environments", "policy", "adminIntent",
        "rotationPolicy",
    }) or (err_type == "string_pattern_mismatch" and isinstance(loc[-1], int)):
        return "CH006"
    return "CH003"


def _describe(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_pattern_mismatch":
        return "invalid value: " + str(err["msg"]).replace("String should match pattern", "must match")
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _hidden_in_unparsed(repo: Repository, rf: RepoFile, rendered: list[Document]) -> None:
    """CH106 for a chamberlain object in a file read only to scan it: a JSON manifest, a template, render output
    (where a document annotated as rendered goes to the true-copy check, CH104, instead)."""
    if rf.text is None:
        return
    if rf.path.suffix.lower() == ".json":
        found = hidden.json_file(rf.rel, rf.text)
        if found is not None:
            repo.problems.append(found)
    elif rf.role == "template":
        found = hidden.unparsed_file(rf.rel, rf.text, "a template")
        if found is not None:
            repo.problems.append(found)
    elif rf.role == "rendered" and rf.is_yaml and hidden.mentions_intent(rf.text) is not None:
        # Render output is read as intent only to check each chamberlain document is a true copy of a source
        # object (CH104): a marker file must not turn an attacker's intent into unchecked output.
        scratch = Repository(root=repo.root)
        for doc in _parse_yaml(scratch, rf.rel, rf.text):
            api = doc.api_version
            if api is not None and api.startswith(GROUP + "/"):
                rendered.append(doc)


def _check_patches(repo: Repository) -> None:
    """CH106: kustomize patches (inline, or files a kustomization names) and Flux Kustomization patches that change
    a chamberlain object beyond its environments and metadata."""
    by_rel = {f.rel: f for f in repo.files}
    # path -> an intent file at or below it (files and every directory above them): one lookup per resource.
    below: dict[str, str] = {"": ""}
    for item_file in sorted({*(i.file for i in repo.platforms), *(i.file for i in repo.policies),
                             *(i.file for i in repo.intents)}):
        parts = item_file.split("/")
        for n in range(1, len(parts) + 1):
            below.setdefault("/".join(parts[:n]), item_file)
        below[""] = below[""] or item_file
    for rf in repo.files:
        is_kustomization = rf.rel.rsplit("/", 1)[-1] in KUSTOMIZATION_FILES
        base = rf.rel.rsplit("/", 1)[0] if "/" in rf.rel else ""
        for doc in rf.documents:
            data = doc.data
            if not isinstance(data, dict) or (not is_kustomization and _intent_document(doc)):
                continue  # a chamberlain object outside a kustomization file is no tool's patch or transformer
            for loc, text, target in hidden.inline_patches(data):
                why = hidden.patch_text_problem(text, target)
                if why is not None:
                    repo.problems.append(hidden.patch_finding(rf.rel, doc.line_of(loc), why))
            for loc, reached in hidden.renaming_transformers(data, base, is_kustomization, _join):
                found = below.get(reached) if reached is not None else None
                if found:
                    repo.problems.append(hidden.patch_finding(
                        rf.rel, doc.line_of(loc), f"{loc[-1]} renames (or rewrites) the chamberlain objects of "
                                                  f"{found}, and a renamed intent is another Vault path or another "
                                                  "team's object"))
            if not is_kustomization:
                continue
            for path, target in hidden.patch_targets(data):
                rel = _join(base, path)
                patch = by_rel.get(rel) if rel is not None else None
                for pdoc in patch.documents if patch is not None else ():
                    why = hidden.patch_problem(pdoc.data, target)
                    if why is not None:
                        repo.problems.append(hidden.patch_finding(pdoc.file, pdoc.line, why))


def _check_rendered_copies(repo: Repository, rendered: list[Document]) -> None:
    """A document annotated as render output is left out of intent only when it is a true copy: the same kind and
    name as a source object with the same spec. Anything else would be an intent that escapes validation (an
    attacker's SecretIntent dressed up as output) and is CH104."""
    sources: dict[tuple[str, str], tuple[Any, dict[str, str]]] = {}
    objects: list[IntentObject] = [*(p.obj for p in repo.platforms), *(p.obj for p in repo.policies),
                                   *(i.obj for i in repo.intents)]
    for source in objects:
        sources.setdefault((source.kind, source.metadata.name), (source.spec, source.metadata.annotations))
    for doc in rendered:
        kind = doc.kind if isinstance(doc.kind, str) else ""
        model = KINDS.get(kind)
        try:
            obj = model.model_validate(doc.data) if model is not None else None
        except ValidationError:
            obj = None
        found = sources.get((kind, obj.metadata.name)) if obj is not None else None
        # Annotations steer the controller (PKI mount and role, the rotator): a copy carries the source's, plus
        # only what render adds (the rendered marker, the Argo CD wave).
        annotations = {k: v for k, v in obj.metadata.annotations.items()
                       if k not in _RENDER_ANNOTATIONS} if obj is not None else {}
        if obj is None or found is None or found[0] != obj.spec or found[1] != annotations:
            repo.problems.append(Finding(
                doc.file, doc.line, "CH104",
                f"{kind or 'a document'} annotated {wk.ANNOTATION_RENDERED}: true is not a copy of a source object "
                "of this repository (no source of that kind and name, or a different spec or annotations); render "
                "output is never read as intent, so this one would escape every check: remove the annotation, or the "
                "document",
            ))


_RENDER_ANNOTATIONS = frozenset({wk.ANNOTATION_RENDERED, wk.ARGOCD_SYNC_WAVE})


def _rendered(doc: Document) -> bool:
    meta = doc.data.get("metadata") if isinstance(doc.data, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return isinstance(annotations, dict) and str(annotations.get(wk.ANNOTATION_RENDERED)).lower() == "true"


# ------------------------------------------------------------------------------------------------ kustomize

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def kustomize_patches(files: list[RepoFile]) -> set[str]:
    """Repository-relative paths of the patch files the repository's kustomizations name (``patches[].path``,
    ``patchesStrategicMerge``, ``patchesJson6902[].path``). A path that leaves the repository names nothing."""
    found: set[str] = set()
    for rf in files:
        if rf.rel.rsplit("/", 1)[-1] not in KUSTOMIZATION_FILES:
            continue
        base = rf.rel.rsplit("/", 1)[0] if "/" in rf.rel else ""
        for doc in rf.documents:
            data = doc.data if isinstance(doc.data, dict) else {}
            for entry, _ in hidden.patch_targets(data):
                rel = _join(base, entry)
                if rel is not None:
                    found.add(rel)
    return found


def _join(base: str, path: str) -> str | None:
    parts = [p for p in base.split("/") if p]
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or None
