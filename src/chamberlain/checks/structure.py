"""Repository-shape rules: exactly one Platform (CH007), unique object names per kind (CH008), paths of
chamberlain files that can be shown as they are (CH129), and documents meant for chamberlain that its apiVersion
leaves out of intent (CH130)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import Document, Loaded, Repository
from chamberlain.intent.model import API_VERSION, GROUP
from chamberlain.intent.walk import unshowable

_ONE = "an intent repository declares exactly one"
_PLATFORM_FILES = ("platform.yaml", "platform.yml")


@check("platform-count")
def platform_count(repo: Repository) -> Iterator[Finding]:
    if not repo.platforms:
        yield _no_platform(repo)
        return
    first = repo.platforms[0]
    for extra in repo.platforms[1:]:
        yield Finding(
            extra.file, extra.line, "CH007",
            f"second Platform {extra.obj.metadata.name!r}; the first is in {first.file}:{first.line}",
            object=f"Platform/{extra.obj.metadata.name}",
        )


def _no_platform(repo: Repository) -> Finding:
    """CH007 without a Platform, on the file meant to hold it when that can be told: a Platform the schema refused,
    one whose apiVersion is misspelt (CH130), a ``platform.yaml`` that is empty or holds none. Blaming an intent file
    for the Platform file's state sent authors to the wrong file."""
    refused = next((d for d in repo.invalid if d.kind == "Platform"), None)
    if refused is not None:
        label = f"Platform/{refused.name}" if refused.name else "Platform"
        return Finding(refused.file, refused.line, "CH007",
                       f"{label} is declared here but invalid (see the findings there), so the repository has no "
                       f"valid Platform; {_ONE}", object=label if refused.name else None)
    for doc in repo.manifests:
        if doc.kind == "Platform" and doc.api_version is not None and near_miss_group(doc.api_version):
            return Finding(doc.file, doc.line_of(("apiVersion",)), "CH007",
                           f"no Platform found: the Platform here has apiVersion {doc.api_version!r}, not "
                           f"{API_VERSION}, so it is not read (CH130); {_ONE}")
    named = [f for f in repo.files if f.rel.rsplit("/", 1)[-1] in _PLATFORM_FILES and f.role == "source"]
    if named:
        rf = min(named, key=lambda f: (f.rel.count("/"), f.rel))  # the one nearest the root
        if rf.text is not None and not rf.text.strip():
            why = "this file is empty"
        elif any(p.file == rf.rel for p in repo.problems):
            why = "this file could not be read as YAML (see the finding there)"
        elif not rf.documents:
            why = "this file holds no YAML document"
        else:
            why = "this file holds no chamberlain Platform"
        return Finding(rf.rel, None, "CH007", f"no Platform found: {why}; {_ONE}")
    # Point at the first intent file when there is one: that is where the author is looking.
    anchor = repo.intents[0].file if repo.intents else "."
    left_out = [e for e in repo.exclusions if e.reason not in ("symlink", "special-file")]
    why = (f" ({len(left_out)} paths were left out: ignore files or rendered output, see the exclusions; an "
           "ignore file that ignores everything leaves nothing to validate)") if left_out else ""
    return Finding(anchor, None, "CH007", f"no Platform found; {_ONE}{why}")


def _duplicates(kind: str, objects: Sequence[Loaded[Any]]) -> Iterable[Finding]:
    seen: dict[str, Loaded[Any]] = {}
    for item in objects:
        name = item.obj.metadata.name
        if name in seen:
            first = seen[name]
            yield Finding(
                item.file, item.line, "CH008",
                f"{kind} {name!r} is declared twice; first in {first.file}:{first.line}",
                object=f"{kind}/{name}",
            )
        else:
            seen[name] = item


@check("duplicate-objects")
def duplicate_objects(repo: Repository) -> Iterator[Finding]:
    yield from _duplicates("RotationPolicy", repo.policies)
    yield from _duplicates("SecretIntent", repo.intents)


@check("unshowable-path")
def unshowable_path(repo: Repository) -> Iterator[Finding]:
    """CH129: a file holding chamberlain objects whose path has a control character, a line separator or a
    bidirectional override. Its path reaches owner matching, review and the rendered CODEOWNERS: raw, a newline in
    it forged CODEOWNERS lines that handed every team's paths to one reviewer (red team). Files that hold no
    chamberlain object are only shown escaped."""
    holding = {item.file for items in (repo.platforms, repo.policies, repo.intents) for item in items}
    for f in repo.files:
        if f.rel not in holding:
            continue
        raw = os.fsdecode(f.path.relative_to(repo.root)) if f.path.is_relative_to(repo.root) else f.path.name
        bad = unshowable(raw)
        if bad is not None:
            yield Finding(f.rel, None, "CH129",
                          f"the path holds {bad.encode('unicode_escape').decode('ascii')!s}, which cannot be shown on "
                          "one line: review, owner paths and the rendered CODEOWNERS could not show or match it as it "
                          "is; rename the file")


# ------------------------------------------------------------------------------------------------ CH130

_LABEL = GROUP.split(".", 1)[0]  # "chamberlain"


def near_miss_group(api: str) -> bool:
    """Is the group of ``api`` (before the ``/``; all of it when there is none) a misspelling of chamberlain.dev:
    case aside, at most two edits or swaps from it, its letters rearranged, or a first label that is such a
    misspelling of ``chamberlain`` (``chamberlain.io``)? One split of ``api``, then at most a few dozen characters
    compared: a value of any other length is never compared."""
    group = api.partition("/")[0]
    return _close(group, GROUP) or _close(group.partition(".")[0], _LABEL)


def _close(text: str, target: str) -> bool:
    if abs(len(text) - len(target)) > 2:  # more than two edits apart; also keeps a huge value from being compared
        return False
    text = text.lower()
    return text == target or sorted(text) == sorted(target) or _within_two(text, target)


def _within_two(a: str, b: str) -> bool:
    """An optimal-string-alignment distance (insertions, deletions, substitutions, adjacent swaps) of at most 2.
    Both strings are short (a few dozen characters), so the table is small."""
    before: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], before[j - 2] + 1)
        before, prev = prev, cur
    return prev[len(b)] <= 2


def meant_for_chamberlain(doc: Document) -> bool:
    """A document that is not intent (one of ``repo.manifests``) but looks meant to be: CH130's test."""
    api = doc.api_version
    return doc.kind == "SecretIntent" or (api is not None and near_miss_group(api))


@check("apiversion-near-miss", per_file=True)
def apiversion_near_miss(repo: Repository) -> Iterator[Finding]:
    """CH130 (a warning): a document that looks meant for chamberlain but is not read as intent, so validate says
    ok about an intent it never saw. Its group is a misspelling of chamberlain.dev, whatever its kind; or its kind is
    SecretIntent, whatever its group. Platform, RotationPolicy and UnsealShares alone are not enough: other tools in
    a monorepo use those kind names with groups of their own. Each document is judged alone, and only documents
    that are not intent (manifests), so what it finds about a file depends on that file only (per file)."""
    for doc in repo.manifests:
        if not meant_for_chamberlain(doc):
            continue
        api, kind = doc.api_version, doc.kind
        near = api is not None and near_miss_group(api)
        # Quoted: kind and name are the document's own text, and raw they could forge lines of the output (review)
        what = (f"{kind!r}/{doc.name!r}" if kind and doc.name else repr(kind)) if kind else "a document"
        found = f"apiVersion {api!r}" if api is not None else "no apiVersion"
        why = f"looks like a misspelling of {API_VERSION}" if near else f"is not chamberlain's ({API_VERSION})"
        yield Finding(doc.file, doc.line_of(("apiVersion",)), "CH130",
                      f"{what}: {found} {why}; the document is not read as intent, so nothing validates, renders or "
                      f"rotates it: write apiVersion: {API_VERSION}",
                      object=f"{kind}/{doc.name}" if kind and doc.name and unshowable(f"{kind}/{doc.name}") is None
                      else None)
