"""A bootstrap Secret manifest before encryption: check its shape and add chamberlain's labels, in memory.

Pure: text in, text out, with ruamel.yaml's round-trip mode so the user's comments, key order and quoting survive.
What "valid" means is :mod:`chamberlain.checks.sops`' rule (one v1 Secret with name, namespace, data or stringData,
labelled with the bootstrap class and its intent); the labels are the only thing we change. Errors name keys and
never values.
"""

from __future__ import annotations

import io
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

    Raises :class:`BootstrapError` (naming ``where``) for anything else, including input that is already
    encrypted: encrypting twice would lock the values behind a key nobody has.
    """
    yaml = _yaml()
    try:
        safeyaml.check_text(text)  # no duplicate key, alias cycle or alias bomb reaches ruamel or the walk below
    except safeyaml.YamlLimitError as exc:
        line = f" (line {exc.line})" if exc.line is not None else ""
        raise BootstrapError(f"{where}: {exc.message}{line}") from None
    except pyyaml.YAMLError:
        pass  # syntax: ruamel's verdict below is the one that counts
    try:
        docs = [d for d in yaml.load_all(text) if d is not None]
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise BootstrapError(f"{where}: not valid YAML{line}") from None
    if len(docs) != 1:
        raise BootstrapError(f"{where}: holds {len(docs)} YAML documents; a bootstrap file holds exactly one Secret")
    doc = docs[0]
    if not isinstance(doc, CommentedMap):
        raise BootstrapError(f"{where}: is not a Kubernetes manifest (a YAML mapping)")
    if "sops" in doc or any(s.startswith("ENC[") for s in _strings(doc)):
        raise BootstrapError(f"{where}: is already SOPS-encrypted; to change recipients use `sops updatekeys`")
    if doc.get("apiVersion") != "v1" or doc.get("kind") != "Secret":
        raise BootstrapError(f"{where}: is not a Kubernetes Secret (apiVersion: v1, kind: Secret)")
    meta = doc.get("metadata")
    if not isinstance(meta, CommentedMap):
        raise BootstrapError(f"{where}: the Secret has no metadata")
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        raise BootstrapError(f"{where}: the Secret has no metadata.name")
    if not isinstance(namespace, str) or not namespace:
        raise BootstrapError(f"{where}: the Secret names no metadata.namespace; bootstrap Secrets live in a "
                             "minimal namespace that handover reads from")
    if not any(isinstance(doc.get(s), dict) and doc[s] for s in ("data", "stringData")):
        raise BootstrapError(f"{where}: the Secret has no data or stringData keys")
    labels = yamledit.child(meta, "labels", CommentedMap)
    if labels is None:
        raise BootstrapError(f"{where}: metadata.labels is not a mapping")
    current = labels.get(wk.LABEL_INTENT)
    if current is not None and current != intent:
        raise BootstrapError(f"{where}: the Secret is labelled {wk.LABEL_INTENT}: {current}, not {intent}; fix the "
                             "label or pass the right --intent")
    if labels.get(wk.LABEL_CLASS) not in (None, BOOTSTRAP_CLASS):
        raise BootstrapError(f"{where}: the Secret is labelled {wk.LABEL_CLASS}: {labels.get(wk.LABEL_CLASS)}, "
                             f"not {BOOTSTRAP_CLASS}")
    added = []
    for key, value in ((wk.LABEL_CLASS, BOOTSTRAP_CLASS), (wk.LABEL_INTENT, intent)):
        if key not in labels:
            labels[key] = value
            added.append(key)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return PreparedSecret(buf.getvalue(), namespace, name, tuple(added))
