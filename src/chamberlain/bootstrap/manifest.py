"""A bootstrap Secret manifest before encryption: check its shape and add chamberlain's labels, in memory.

Pure: text in, text out, with ruamel.yaml's round-trip mode so the user's comments, key order and quoting survive.
What "valid" means is :mod:`chamberlain.checks.sops`' rule (one v1 Secret with name, namespace, data or stringData,
labelled with the bootstrap class and its intent); the labels are the only thing we change. Errors name keys and
never values.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from chamberlain import safeyaml, yamledit
from chamberlain import wellknown as wk
from chamberlain.bootstrap.sops import BootstrapError
from chamberlain.checks.sops import BOOTSTRAP_CLASS
from chamberlain.errors import UsageError

# What the API server accepts as a ``data`` value: standard-alphabet base64 with its padding (Go's StdEncoding,
# which skips line breaks); "" decodes to no bytes.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class ManifestError(BootstrapError, UsageError):
    """FILE is not what ``bootstrap encrypt`` takes: a usage error (exit 2), like a FILE that is not UTF-8 or not
    in the repository. Still a :class:`BootstrapError` for callers that catch those."""

    exit_code = 2


@dataclass(frozen=True)
class PreparedSecret:
    """The manifest to hand to sops. ``text`` holds plaintext: keep it in memory, never log or write it."""

    text: str  # repr would show the plaintext; see __repr__
    namespace: str
    name: str
    labels_added: tuple[str, ...]

    def __repr__(self) -> str:
        return f"PreparedSecret(namespace={self.namespace!r}, name={self.name!r}, labels_added={self.labels_added})"


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never fold a long value onto several lines
    return yaml


def _strings(node: Any) -> Iterator[str]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            yield item


def _line_of(mapping: CommentedMap, key: object) -> int | None:
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):  # a merged (<<) key has no position of its own
        return None


def _not_base64(data: CommentedMap) -> list[str]:
    """The keys of ``data`` (with their lines) whose value is not base64 text; never the values."""
    bad = []
    for key, value in data.items():
        if value is None or isinstance(value, bytes):  # null is an empty value; !!binary was base64 in the file
            continue
        if isinstance(value, str) and _BASE64.fullmatch(value.replace("\r", "").replace("\n", "")):
            continue
        line = _line_of(data, key)
        bad.append(f"{key} (line {line})" if line is not None else str(key))
    return bad


def existing_intent_label(text: str) -> str | None:
    """The ``chamberlain.dev/intent`` label of a manifest, if it parses and has one (for guessing the intent)."""
    try:
        safeyaml.check_text(text)
        doc = _yaml().load(text)
    except (YAMLError, safeyaml.YamlLimitError):
        return None
    except pyyaml.YAMLError:  # PyYAML's stricter syntax: let ruamel decide
        try:
            doc = _yaml().load(text)
        except YAMLError:
            return None
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    value = labels.get(wk.LABEL_INTENT) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else None


def prepare_secret(text: str, intent: str, where: str) -> PreparedSecret:
    """Check that ``text`` is one plaintext v1 Secret with name and namespace and add the bootstrap labels.

    Raises :class:`ManifestError` (naming ``where``) for anything else, including input that is already
    encrypted (encrypting twice would lock the values behind a key nobody has) and ``data`` values that are not
    base64 (once encrypted, validate cannot see them, and Flux fails to apply the Secret).
    """
    yaml = _yaml()
    try:
        safeyaml.check_text(text)  # no duplicate key, alias cycle or alias bomb reaches ruamel or the walk below
    except safeyaml.YamlLimitError as exc:
        line = f" (line {exc.line})" if exc.line is not None else ""
        raise ManifestError(f"{where}: {exc.message}{line}") from None
    except pyyaml.YAMLError:
        pass  # syntax: ruamel's verdict below is the one that counts
    try:
        docs = [d for d in yaml.load_all(text) if d is not None]
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ManifestError(f"{where}: not valid YAML{line}") from None
    if len(docs) != 1:
        raise ManifestError(f"{where}: holds {len(docs)} YAML documents; a bootstrap file holds exactly one Secret")
    doc = docs[0]
    if not isinstance(doc, CommentedMap):
        raise ManifestError(f"{where}: is not a Kubernetes manifest (a YAML mapping)")
    if "sops" in doc or any(s.startswith("ENC[") for s in _strings(doc)):
        raise ManifestError(f"{where}: is already SOPS-encrypted; to change recipients use `sops updatekeys`")
    if doc.get("apiVersion") != "v1" or doc.get("kind") != "Secret":
        raise ManifestError(f"{where}: is not a Kubernetes Secret (apiVersion: v1, kind: Secret)")
    meta = doc.get("metadata")
    if not isinstance(meta, CommentedMap):
        raise ManifestError(f"{where}: the Secret has no metadata")
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: the Secret has no metadata.name")
    if not isinstance(namespace, str) or not namespace:
        raise ManifestError(f"{where}: the Secret names no metadata.namespace; bootstrap Secrets live in a "
                            "minimal namespace that handover reads from")
    if not any(isinstance(doc.get(s), dict) and doc[s] for s in ("data", "stringData")):
        raise ManifestError(f"{where}: the Secret has no data or stringData keys")
    data = doc.get("data")
    bad = _not_base64(data) if isinstance(data, CommentedMap) else []
    if bad:
        raise ManifestError(f"{where}: data {'keys' if len(bad) > 1 else 'key'} {', '.join(bad)}: not base64, "
                            "and Kubernetes takes only base64 under data (Flux could not apply the Secret); put "
                            "plaintext under stringData instead, or base64-encode the value")
    labels = yamledit.child(meta, "labels", CommentedMap)
    if labels is None:
        raise ManifestError(f"{where}: metadata.labels is not a mapping")
    current = labels.get(wk.LABEL_INTENT)
    if current is not None and current != intent:
        raise ManifestError(f"{where}: the Secret is labelled {wk.LABEL_INTENT}: {current}, not {intent}; fix the "
                            "label or pass the right --intent")
    if labels.get(wk.LABEL_CLASS) not in (None, BOOTSTRAP_CLASS):
        raise ManifestError(f"{where}: the Secret is labelled {wk.LABEL_CLASS}: {labels.get(wk.LABEL_CLASS)}, "
                            f"not {BOOTSTRAP_CLASS}")
    added = []
    for key, value in ((wk.LABEL_CLASS, BOOTSTRAP_CLASS), (wk.LABEL_INTENT, intent)):
        if key not in labels:
            labels[key] = value
            added.append(key)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return PreparedSecret(buf.getvalue(), namespace, name, tuple(added))
