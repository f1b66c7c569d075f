"""Intent that GitOps would apply but validate would not read (CH106), found while loading.

Validate reads chamberlain objects only as top-level documents of parsed YAML files. Anything else that carries a
chamberlain object still reaches the cluster through the GitOps controller, unchecked:

- a chamberlain document in a file that is not parsed as intent: a ``.json`` manifest (Argo CD applies them), a Helm
  or Go template, a file a ``.gitignore`` leaves out where Git cannot say it is untracked (outside a work tree).
  Render output (``.chamberlain-render``) is held to being a true copy of a source object instead (CH104);
- a chamberlain object among the ``items`` of a ``List`` document;
- a kustomize (or Flux ``Kustomization``) patch that changes a chamberlain object beyond ``spec.environments`` and
  metadata labels and annotations: the applied intent would not be the validated one;
- a symbolic link that leads out of the repository, or a directory nested deeper than the walk enters.

Belongs here: detecting these, as findings. Not here: what the other rules say about the objects. Every scan is a
substring test or a regex without nested quantifiers (linear in the file), and each file is read at most once,
bounded by the loader's size limit.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from chamberlain import safeyaml
from chamberlain import wellknown as wk
from chamberlain.findings import Finding
from chamberlain.intent.model import GROUP, KINDS
from chamberlain.intent.walk import Exclusion

RULE = "CH106"
MAX_HIDDEN_FILES = 20_000  # files read below one ignored directory (outside a work tree); the rest is reported
MAX_HIDDEN_BYTES = 8 * 1024 * 1024
# `apiVersion: chamberlain.dev/...` in YAML or JSON spelling. No nested quantifier: linear on any input.
_API = re.compile(r"""apiVersion["']?[ \t\r\n]*:[ \t\r\n]*(?:!!?[a-z]*[ \t]+)?["']?chamberlain\.dev/""")
_RENDERED = wk.ANNOTATION_RENDERED
# What a patch may change on a chamberlain object: which environments it exists in, and its metadata.
_PATCHABLE_SPEC = frozenset({"environments"})
_PATCHABLE_META = frozenset({"name", "namespace", "labels", "annotations"})
# Fields of a chamberlain object's spec: a patch with no kind in its target that touches one of them is aimed at
# an intent (an application object has no spec.consumers or spec.owner).
_CHAMBERLAIN_SPEC = frozenset({"owner", "purpose", "classification", "source", "target", "rotation", "consumers",
                               "admin", "authority", "environments", "rootOfTrust", "tenancy", "limits", "gitops",
                               "controller", "defaults", "ttl", "rotateBefore", "type"})
PATCH_KEYS = ("patches", "patchesJson6902", "patchesStrategicMerge")


def _finding(file: str, line: int | None, what: str) -> Finding:
    return Finding(file, line, RULE, f"{what}; GitOps would apply it, but validate never reads it as intent, so no "
                                     "rule would check it: write intent as a top-level document of a .yaml file")


def mentions_intent(text: str) -> int | None:
    """The 1-based line of the first chamberlain apiVersion in ``text``, or None."""
    m = _API.search(text)
    return None if m is None else text.count("\n", 0, m.start()) + 1


def unparsed_document(rel: str, line: int, why: str) -> Finding:
    return _finding(rel, line, f"a chamberlain object in {why}")


def unparsed_file(rel: str, text: str, why: str) -> Finding | None:
    """A file read only for scanning (a template, a JSON manifest, rendered output) that holds a chamberlain
    object."""
    line = mentions_intent(text)
    if line is None and why == "a template" and yaml_holds_intent(text):
        line = 1
    if line is None:
        return None
    return _finding(rel, line, f"a chamberlain object in {why}")


def _holds_intent(data: object) -> bool:
    """Is there a chamberlain object anywhere in ``data`` (iterative: a deep document cannot exhaust the stack)?"""
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            api = node.get("apiVersion")
            if isinstance(api, str) and api.startswith(GROUP + "/"):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def json_file(rel: str, text: str) -> Finding | None:
    """A ``.json`` file holding a chamberlain object at any depth (a List, an array of objects). Parsed, not
    searched: JSON may spell the group with escapes (``chamberlain\\u002edev``)."""
    if "chamberlain" not in text and "\\u" not in text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return unparsed_file(rel, text, "a JSON file")
    if _holds_intent(data):
        return _finding(rel, mentions_intent(text) or 1, "a chamberlain object in a JSON file")
    return None


def yaml_holds_intent(text: str) -> bool:
    """Does ``text``, parsed as YAML (when it parses; escapes decoded), hold a chamberlain object?"""
    if "\\" not in text:
        return False  # without an escape, the apiVersion regex has already seen every spelling
    return any(_holds_intent(doc) for doc in _load_patch(text))


def list_items(rel: str, line: int, data: object) -> Finding | None:
    """A ``List`` (``v1 List``, ``SecretList``...) whose ``items`` hold a chamberlain object."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        return None
    for item in data["items"]:
        api = item.get("apiVersion") if isinstance(item, dict) else None
        if isinstance(api, str) and api.startswith(GROUP + "/"):
            kind = item.get("kind")
            return _finding(rel, line, f"a chamberlain object ({kind}) among the items of a {data.get('kind')}")
    return None


# ------------------------------------------------------------------------------------------------ patches


def _object_patch_problem(data: object, aimed: bool) -> str | None:
    """What a strategic-merge patch of a chamberlain object changes beyond environments and metadata. The patch is
    aimed at one when its target says so, or its own apiVersion or kind does (kustomize matches either)."""
    if not isinstance(data, dict):
        return None
    api, kind = data.get("apiVersion"), data.get("kind")
    if not (aimed or (isinstance(api, str) and api.startswith(GROUP + "/"))
            or (api is None and isinstance(kind, str) and kind in KINDS)):
        return None
    for key, value in data.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata" and isinstance(value, dict):
            extra = sorted(str(k) for k in value if k not in _PATCHABLE_META)
        elif key == "spec" and isinstance(value, dict):
            extra = sorted(f"spec.{k}" for k in value if k not in _PATCHABLE_SPEC)
        else:
            extra = [str(key)]
        if extra:
            return f"it changes {', '.join(extra)} of {data.get('kind')}/{_name(data)}"
    return None


def _name(data: dict[str, Any]) -> str:
    meta = data.get("metadata")
    return str(meta.get("name")) if isinstance(meta, dict) else "?"


def _op_problem(ops: list[Any], aimed: bool) -> str | None:
    """What JSON 6902 operations change: beyond ``/spec/environments`` and metadata when ``aimed`` at a chamberlain
    kind; otherwise only when they touch a field only chamberlain objects have."""
    for op in ops:
        path = op.get("path") if isinstance(op, dict) else None
        if not isinstance(path, str):
            continue
        parts = [p for p in path.split("/") if p]
        if not parts:
            return f"it replaces the whole object ({path!r})" if aimed else None
        head = parts[0]
        if head == "spec" and len(parts) > 1:
            if aimed and parts[1] not in _PATCHABLE_SPEC:
                return f"it changes {path}"
            if not aimed and parts[1] in _CHAMBERLAIN_SPEC - {"environments", "type", "ttl"}:
                return f"it changes {path}"
        elif head == "metadata" and len(parts) > 1:
            if aimed and parts[1] not in _PATCHABLE_META - {"name", "namespace"}:
                return f"it changes {path}"
        elif aimed and head not in ("metadata",):
            return f"it changes {path}"
    return None


def _target_aimed(target: object) -> bool | None:
    """True: the patch target is a chamberlain kind; False: another kind; None: no kind (any object matches)."""
    if not isinstance(target, dict):
        return None
    group, kind = target.get("group"), target.get("kind")
    if isinstance(group, str) and group == GROUP:
        return True
    if isinstance(kind, str) and kind:
        return kind in KINDS and (not isinstance(group, str) or not group or group == GROUP)
    return None


def _load_patch(text: str) -> list[Any]:
    if safeyaml.flow_depth(text) > safeyaml.MAX_DEPTH:
        return []  # libyaml composes flow nesting recursively: never hand it a hostile depth
    try:
        return [doc for doc in safeyaml.load_all(text) if doc is not None]
    except (yaml.YAMLError, safeyaml.YamlLimitError, RecursionError, ValueError, TypeError):
        return []


def patch_problem(content: object, target: object) -> str | None:
    """Why one patch (parsed content: a partial object or a JSON 6902 operation list) is refused, or None."""
    aimed = _target_aimed(target)
    if aimed is False:
        return None
    if isinstance(content, list):
        return _op_problem(content, bool(aimed))
    return _object_patch_problem(content, bool(aimed))


def inline_patches(data: dict[str, Any]) -> Iterator[tuple[tuple[int | str, ...], str, object]]:
    """(location, inline patch text, target) of a kustomization's or a Flux Kustomization's inline patches."""
    spec = data.get("spec") if isinstance(data.get("spec"), dict) and data.get("kind") == "Kustomization" \
        and str(data.get("apiVersion", "")).startswith("kustomize.toolkit.fluxcd.io/") else None
    holders: list[tuple[tuple[int | str, ...], dict[str, Any]]] = [((), data)]
    if isinstance(spec, dict):
        holders.append((("spec",), spec))
    holders.extend(_argocd_kustomize(data))
    for prefix, holder in holders:
        for key in PATCH_KEYS:
            items = holder.get(key)
            if not isinstance(items, list):
                continue
            for i, item in enumerate(items):
                if isinstance(item, str) and "\n" in item:
                    yield (*prefix, key, i), item, None
                elif isinstance(item, dict) and isinstance(item.get("patch"), str):
                    yield (*prefix, key, i), item["patch"], item.get("target")


def _argocd_kustomize(data: dict[str, Any]) -> Iterator[tuple[tuple[int | str, ...], dict[str, Any]]]:
    """The ``kustomize`` blocks of an Argo CD Application's sources (Argo CD applies their patches too)."""
    if data.get("kind") != "Application" or not str(data.get("apiVersion", "")).startswith("argoproj.io/"):
        return
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return
    sources: list[tuple[tuple[int | str, ...], object]] = [(("spec", "source"), spec.get("source"))]
    if isinstance(spec.get("sources"), list):
        sources.extend((("spec", "sources", i), src) for i, src in enumerate(spec["sources"]))
    for loc, src in sources:
        kustomize = src.get("kustomize") if isinstance(src, dict) else None
        if isinstance(kustomize, dict):
            yield (*loc, "kustomize"), kustomize


def patch_text_problem(text: str, target: object) -> str | None:
    for content in _load_patch(text):
        why = patch_problem(content, target)
        if why is not None:
            return why
    return None


# Kustomize transformers that rename objects or rewrite arbitrary fields: on an intent, the applied name (its Vault
# path, the object it replaces) or any field would differ from what was validated.
RENAMING = ("namePrefix", "nameSuffix", "replacements", "vars")


def renaming_transformers(
    data: dict[str, Any], base: str, is_kustomization: bool, join: Callable[[str, str], str | None],
) -> Iterator[tuple[tuple[int | str, ...], str | None]]:
    """(location of the transformer, repository path it reaches) for a kustomization's renaming transformers (each
    of its resources) and a Flux Kustomization's ``namePrefix``/``nameSuffix`` (its ``spec.path``, taken from
    the intent root)."""
    if is_kustomization:
        used = [k for k in RENAMING if data.get(k)]
        for key in used:
            for field in ("resources", "bases", "components"):
                for entry in listed(data, field):
                    if isinstance(entry, str) and "://" not in entry:
                        yield (key,), join(base, entry) if entry not in (".", "./") else base
    elif data.get("kind") == "Kustomization" and str(data.get("apiVersion", "")).startswith(
            "kustomize.toolkit.fluxcd.io/"):
        spec = data.get("spec")
        if isinstance(spec, dict):
            path = spec.get("path")
            for key in ("namePrefix", "nameSuffix"):
                if spec.get(key) and isinstance(path, str):
                    yield ("spec", key), join("", path) or ""


def listed(data: dict[str, Any], key: str) -> list[Any]:
    """A kustomization's list field; anything else there (a scalar, a mapping) names nothing, as kustomize fails
    on it."""
    value = data.get(key)
    return value if isinstance(value, list) else []


def patch_targets(data: dict[str, Any]) -> Iterator[tuple[str, object]]:
    """(path, target) of the patch files a kustomization names."""
    for key in ("patches", "patchesJson6902"):
        for item in listed(data, key):
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                yield item["path"], item.get("target")
    for item in listed(data, "patchesStrategicMerge"):
        if isinstance(item, str) and "\n" not in item:
            yield item, None


def patch_finding(file: str, line: int | None, why: str) -> Finding:
    return Finding(file, line, RULE,
                   f"a kustomize patch of a chamberlain object: {why}; the intent GitOps applies would not be the one "
                   "validated (a patch may change spec.environments and metadata labels and annotations only)")


# ------------------------------------------------------------------------------------------------ the walk's exclusions


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_HIDDEN_BYTES:
            return None
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


def _files_below(directory: Path) -> Iterator[Path]:
    """Regular files below ``directory`` (symbolic links never followed), at most :data:`MAX_HIDDEN_FILES`."""
    count = 0
    for top, dirs, files in os.walk(directory, followlinks=False):
        if wk.RENDER_MARKER in files:
            dirs[:] = []
            continue  # render output: its true copies are what CH104 checks where it is read
        for name in files:
            path = Path(top) / name
            if path.is_symlink() or not path.is_file():
                continue
            count += 1
            if count > MAX_HIDDEN_FILES:
                return
            yield path


def _hidden_intent(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    line = mentions_intent(text)
    if line is None and yaml_holds_intent(text):
        line = 1
    if line is None or _RENDERED in text:
        return None
    return line


def exclusions(root: Path, excluded: Iterable[Exclusion], *, in_work_tree: bool) -> Iterator[Finding]:
    """Findings for what the walk left out but GitOps would still apply."""
    root = root.resolve()
    for e in excluded:
        path = root / e.path.rstrip("/")
        if e.reason == "too-deep":
            yield Finding(e.path, None, "CH002",
                          "directory nested deeper than the walk enters: nothing in it is validated, but GitOps "
                          "would apply it; flatten the tree")
        elif e.reason == "symlink":
            try:
                resolved = Path(os.path.realpath(path))
            except (OSError, ValueError):
                resolved = path
            if not resolved.is_relative_to(root):
                yield _finding(e.path, None, "a symbolic link leading out of the repository "
                                             f"({os.readlink(path) if path.is_symlink() else '?'})")
        elif e.reason == "gitignore" and not in_work_tree:
            # Inside a work tree Git says the file is untracked, so GitOps never sees it. Outside one (an
            # exported tree), a present ignored file may well be tracked (git add -f): an intent in it would be
            # applied unchecked. (.chamberlainignore is the Platform's own, at the root: trusted.)
            what = "a .gitignore (outside a Git work tree nothing says it is untracked)"
            targets = _files_below(path) if path.is_dir() and not path.is_symlink() else iter([path])
            for file in targets:
                line = _hidden_intent(file)
                if line is not None:
                    rel = file.relative_to(root).as_posix()
                    yield _finding(rel, line, f"a chamberlain object in a file left out by {what}")
                    break
