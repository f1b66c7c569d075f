"""SOPS files and bootstrap files: the structure of encrypted intent (CH021, CH022, CH023, CH025).

Concept: a bootstrap secret enters Git exactly once, as a SOPS-encrypted Kubernetes ``Secret`` manifest that only
the Platform's offline root of trust (its age recipients) and the GitOps controllers of the clusters it is applied
on (``spec.gitops.decryptionRecipients``) can decrypt, labelled so it is traceable to its
SecretIntent (Inv. 2). chamberlain encrypts with ``--encrypted-regex '^(data|stringData)$'``, so kind, name,
namespace and labels stay reviewable in Git while every value is ciphertext.

- ``bootstrap-files``: each ``source.bootstrap.file`` resolves inside the repository to one readable, labelled,
  namespaced Secret (CH025) that is SOPS-encrypted (CH021).
- ``sops-files``: every SOPS document in the repository (referenced or not; YAML, and JSON by content) has
  well-formed metadata, a MAC, and ciphertext wherever its own rules say a value is encrypted (CH023), and is
  encrypted to exactly the Platform's age recipients — plus, for a bootstrap file, the decryption recipients of
  its intent's clusters — and nothing else (CH022).

Boundary: structural only. Nothing is decrypted, no MAC is verified (that needs the data key), no binary is
called. The helpers that resolve bootstrap files are shared with :mod:`chamberlain.checks.manifests` and
:mod:`chamberlain.checks.secrets`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import Document, Loaded, RepoFile, Repository
from chamberlain.intent.memo import memo
from chamberlain.intent.model import SecretIntent
from chamberlain.intent.paths import bootstrap_recipients, intent_environments

# One reader of age headers: the stanza types decide who can open a data key (the sops `recipient` is a label).
from chamberlain.intent.unseal_shares import age_stanzas

BOOTSTRAP_CLASS = "bootstrap"
# The only selector a bootstrap file may carry (chamberlain.bootstrap.sops.ENCRYPTED_REGEX writes it; that module
# sits above this one, so the value is repeated here and a test keeps the two equal).
BOOTSTRAP_ENCRYPTED_REGEX = "^(data|stringData)$"

# A value sops encrypted: AES-256-GCM ciphertext, IV, tag and the original type, all base64.
ENC_VALUE = re.compile(
    r"ENC\[AES256_GCM,data:[A-Za-z0-9+/]*={0,2},iv:[A-Za-z0-9+/]+={0,2},tag:[A-Za-z0-9+/]+={0,2},"
    r"type:(?:str|int|float|bool|bytes|time|comment)\]"
)
AGE_RECIPIENT = re.compile(r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}")
AGE_ARMOR = "-----BEGIN AGE ENCRYPTED FILE-----"
# Master-key kinds sops knows besides age; any of them means someone other than the Platform can decrypt.
OTHER_KEY_TYPES = ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")
SELECTORS = (
    "unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex",
    "unencrypted_comment_regex", "encrypted_comment_regex",
)
MAX_KEY_TESTED = 1024  # a file's own selector regex runs only on keys up to this long
MAX_VALUE_FINDINGS = 20  # per document; a wholly plaintext file would otherwise flood the report

Loc = tuple[int | str, ...]
Problem = tuple[Loc, str]


def is_encrypted_value(value: object) -> bool:
    return isinstance(value, str) and ENC_VALUE.fullmatch(value) is not None


# ------------------------------------------------------------------------------------------------ bootstrap refs


@dataclass(frozen=True)
class BootstrapRef:
    """A ``source.bootstrap.file`` and what it resolves to. ``rel`` is None when the path is absolute or escapes
    the repository; ``file`` is None when nothing readable is there."""

    intent: Loaded[SecretIntent]
    declared: str
    rel: str | None
    file: RepoFile | None

    @property
    def line(self) -> int:
        return self.intent.line_of("spec", "source", "bootstrap", "file")


def resolve_bootstrap_path(declared: str) -> str | None:
    """The repository-relative POSIX path of a declared bootstrap file, or None if it could leave the repository
    (absolute, drive-qualified, home-relative, ``..`` anywhere, backslashes, NUL)."""
    if not declared or "\x00" in declared or "\\" in declared or declared.startswith("~"):
        return None
    if re.match(r"^[A-Za-z]:", declared):
        return None
    path = PurePosixPath(declared)
    if path.is_absolute() or ".." in path.parts:
        return None
    parts = [p for p in path.parts if p != "."]
    return "/".join(parts) if parts else None


def bootstrap_refs(repo: Repository) -> list[BootstrapRef]:
    """Every intent's declared bootstrap file, resolved (shared within :func:`memo.reading`: do not change it)."""
    return memo(repo, "bootstrap_refs", lambda: _bootstrap_refs(repo))


def _bootstrap_refs(repo: Repository) -> list[BootstrapRef]:
    by_rel = {f.rel: f for f in repo.files}
    refs: list[BootstrapRef] = []
    for loaded in repo.intents:
        source = loaded.obj.spec.source.bootstrap
        if source is None:
            continue
        rel = resolve_bootstrap_path(source.file)
        refs.append(BootstrapRef(loaded, source.file, rel, by_rel.get(rel) if rel is not None else None))
    return refs


def bootstrap_rels(repo: Repository) -> set[str]:
    """Repository-relative paths of every bootstrap file that is declared and present."""
    return {r.rel for r in bootstrap_refs(repo) if r.rel is not None and r.file is not None}


@dataclass(frozen=True)
class BootstrapSecret:
    """A Secret declared in a bootstrap file: what workloads must never reference (CH030)."""

    ref: BootstrapRef
    namespace: str | None
    name: str


def bootstrap_secrets(repo: Repository) -> list[BootstrapSecret]:
    found: list[BootstrapSecret] = []
    for ref in bootstrap_refs(repo):
        if ref.file is None:
            continue
        for doc in ref.file.documents:
            if doc.kind == "Secret" and doc.name is not None and not is_encrypted_value(doc.name):
                found.append(BootstrapSecret(ref, doc.namespace, doc.name))
    return found


# ------------------------------------------------------------------------------------------------ CH021 / CH025


@check("bootstrap-files")
def check_bootstrap_files(repo: Repository) -> Iterator[Finding]:
    for ref in bootstrap_refs(repo):
        yield from _bootstrap_file(repo, ref)


def _bootstrap_file(repo: Repository, ref: BootstrapRef) -> Iterator[Finding]:
    root = repo.root
    intent = ref.intent.obj
    label = f"SecretIntent/{intent.name}"
    where = ref.intent.file

    def finding(rule: str, message: str, file: str | None = None, line: int | None = None) -> Finding:
        # Problems of the reference itself point at the intent; problems of the file's content at the file.
        if file is None:
            file, line = where, ref.line
        return Finding(file, line, rule, f"{label}: {message}", object=label)

    if ref.rel is None:
        yield finding("CH025", f"bootstrap file {ref.declared!r} is absolute or leaves the repository; give a "
                               "path relative to the repository root")
        return
    if ref.file is None:
        excluded = repo.excluded(ref.rel)
        yield finding("CH025", f"bootstrap file {ref.rel} is left out of the repository: {excluded.detail}"
                      if excluded is not None else _missing_reason(root, ref.rel))
        return
    rf = ref.file
    if not rf.is_yaml or rf.text is None:
        yield finding("CH025", f"bootstrap file {ref.rel} is not a readable YAML manifest (.yaml/.yml)")
        return
    docs = rf.documents
    if len(docs) != 1:
        yield finding("CH025", f"bootstrap file {ref.rel} holds {len(docs)} YAML documents; it must hold exactly "
                               "one Kubernetes Secret", file=rf.rel, line=docs[1].line if len(docs) > 1 else None)
        return
    doc = docs[0]
    data = doc.data if isinstance(doc.data, dict) else {}
    kind, api = data.get("kind"), data.get("apiVersion")
    if is_encrypted_value(kind) or is_encrypted_value(api):
        yield finding("CH025", "apiVersion/kind are encrypted, so nobody can review what the file is; encrypt "
                               "only values (--encrypted-regex '^(data|stringData)$')", rf.rel, doc.line)
        return
    if kind != "Secret" or api != "v1":
        yield finding("CH025", f"bootstrap file {ref.rel} is not a Kubernetes Secret (apiVersion v1, kind "
                               f"Secret), it is {api}/{kind}", rf.rel, doc.line_of(("kind",)))
        return
    if not doc.is_sops:
        yield finding("CH021", f"bootstrap file {ref.rel} is not SOPS-encrypted; encrypt it to the Platform's "
                               "recipients with 'chamberlain bootstrap encrypt'", rf.rel,
                      doc.line_of(("stringData",)) if "stringData" in data else doc.line_of(("data",)))
    yield from (finding("CH025", msg, rf.rel, doc.line_of(loc)) for loc, msg in
                bootstrap_secret_problems(data, intent.name))


def _missing_reason(root: Path, rel: str) -> str:
    # The loader does not follow symbolic links, so a link (or a path through a linked directory) looks
    # missing; say why, since a link is how a file from outside the repository would sneak in.
    path = root / rel
    try:
        if path.is_symlink() or (path.exists() and not path.resolve().is_relative_to(root.resolve())):
            return f"bootstrap file {rel} is a symbolic link or leaves the repository; it must be a regular file"
    except OSError:
        pass
    return f"bootstrap file {rel} does not exist in the repository"


def bootstrap_secret_problems(secret: Mapping[str, Any], intent_name: str) -> list[Problem]:
    """What a bootstrap Secret manifest lacks to be traceable and scoped: name, namespace, the bootstrap class
    label and the label naming its intent, and at least one key. Pure; locations are YAML key paths."""
    problems: list[Problem] = []
    meta = secret.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or is_encrypted_value(name):
        problems.append((("metadata",), "the Secret has no readable metadata.name"))
    if not isinstance(namespace, str) or is_encrypted_value(namespace):
        problems.append((("metadata",), "the Secret names no namespace; bootstrap Secrets are scoped to a minimal "
                                        "namespace, and handover must know where to read them"))
    labels = meta.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    loc: Loc = ("metadata", "labels") if "labels" in meta else ("metadata",)
    if labels.get(wk.LABEL_CLASS) != BOOTSTRAP_CLASS:
        problems.append((loc, f"the Secret is not labelled {wk.LABEL_CLASS}: {BOOTSTRAP_CLASS}"))
    if labels.get(wk.LABEL_INTENT) != intent_name:
        got = labels.get(wk.LABEL_INTENT)
        problems.append((loc, f"the Secret is not labelled {wk.LABEL_INTENT}: {intent_name}"
                              + (f" (it names {got!r})" if isinstance(got, str) and not is_encrypted_value(got)
                                 else "")))
    if not any(isinstance(secret.get(s), dict) and secret[s] for s in ("data", "stringData")):
        problems.append((("kind",), "the Secret has no data or stringData keys"))
    return problems


# ------------------------------------------------------------------------------------------------ CH022 / CH023


@check("sops-files")
def check_sops_files(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    root = list(platform.spec.root_of_trust.age_recipients) if platform is not None else None
    # A bootstrap file is also opened by the GitOps controller of each cluster its intent is placed on.
    per_file: dict[str, list[str]] = {}
    if platform is not None:
        for ref in bootstrap_refs(repo):
            if ref.rel is not None:
                wanted = per_file.setdefault(ref.rel, list(root or []))
                wanted += [r for r in bootstrap_recipients(platform, ref.intent.obj) if r not in wanted]
    bootstrap = bootstrap_rels(repo)
    for rf in repo.files:
        expected = per_file.get(rf.rel, root)
        for data, locate in _sops_documents(rf):
            if _DUPLICATE in data:
                key = str(data[_DUPLICATE])
                shown = key if len(key) <= 80 else "(long key)"
                yield Finding(rf.rel, None, "CH100", f"duplicate JSON key {shown!r}: only the last one is used, so "
                                                     "what a reviewer reads is not what is decrypted")
                continue
            for loc, msg in sops_structure_problems(data):
                yield Finding(rf.rel, locate(loc), "CH023", msg)
            # The stanzas, not the recipient labels: checked with or without a Platform to compare against.
            for loc, msg in stanza_problems(data["sops"]):
                yield Finding(rf.rel, locate(("sops", *loc)), "CH022", msg)
            if expected is not None:
                for loc, msg in recipient_problems(data["sops"], expected):
                    yield Finding(rf.rel, locate(("sops", *loc)), "CH022", msg)
            if rf.rel in bootstrap:
                for loc, msg in plaintext_rule_problems(data):
                    yield Finding(rf.rel, locate(loc), "CH101", msg)


@check("gitops-recipients")
def check_gitops_recipients(repo: Repository) -> Iterator[Finding]:
    """``spec.gitops.decryptionRecipients``: known clusters (CH016), never a root recipient (CH017), and, once a
    Platform declares any, present for every cluster that applies a bootstrap file (CH018, a warning). A Platform
    that declares none keeps the earlier model (the root recipients only) and gets no finding: valid repositories
    stay valid and quiet; the README says why declaring them is better."""
    if repo.platform is None:
        return
    loaded = repo.platforms[0]
    spec = loaded.obj.spec
    declared = {c for env in spec.environments for c in env.clusters}
    root = set(spec.root_of_trust.age_recipients)
    where = ("spec", "gitops", "decryptionRecipients")
    obj = f"Platform/{loaded.obj.metadata.name}"
    for cluster, recipients in spec.gitops.decryption_recipients.items():
        if cluster not in declared:
            yield Finding(loaded.file, loaded.line_of(*where, cluster), "CH016",
                          f"spec.gitops.decryptionRecipients names cluster {cluster!r}, which no environment "
                          f"lists (known: {', '.join(sorted(declared))})", object=obj)
        for i, recipient in enumerate(recipients):
            if recipient in root:
                yield Finding(loaded.file, loaded.line_of(*where, cluster, i), "CH017",
                              f"the GitOps decryption recipient of cluster {cluster!r} is a root recipient "
                              f"({recipient}); the in-cluster key must be a separate age key",
                              object=obj)
    if not spec.gitops.decryption_recipients:
        return
    needing: dict[str, list[str]] = {}
    for ref in bootstrap_refs(repo):
        for env in intent_environments(loaded.obj, ref.intent.obj):
            for cluster in env.clusters:
                needing.setdefault(cluster, []).append(ref.intent.obj.name)
    for cluster in sorted(needing):
        if not spec.gitops.decryption_recipients.get(cluster):
            names = ", ".join(sorted(set(needing[cluster])))
            yield Finding(loaded.file, loaded.line_of(*where), "CH018",
                          f"cluster {cluster!r} applies bootstrap files ({names}) but spec.gitops."
                          f"decryptionRecipients has no recipient for it; add the public key of its GitOps "
                          "controller's age key", object=obj)


def _sops_documents(rf: RepoFile) -> Iterator[tuple[dict[str, Any], Callable[[Loc], int | None]]]:
    """SOPS documents of a file with a line locator: parsed YAML documents, or JSON recognised by content (sops
    writes JSON for .json inputs and for its binary format, whatever the file is called)."""
    for doc in rf.documents:
        if doc.is_sops:
            yield doc.data, _locator(doc)
    text = rf.text
    if rf.is_yaml or text is None or '"sops"' not in text or not text.lstrip().startswith("{"):
        return
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateJsonKey as exc:
        yield {"sops": {}, _DUPLICATE: exc.key}, lambda loc: None
        return
    except (ValueError, RecursionError):
        return  # not JSON after all; nothing to check
    if isinstance(data, dict) and isinstance(data.get("sops"), dict):
        yield data, lambda loc: None


_DUPLICATE = "\x00duplicate-key"  # marks a JSON SOPS document refused for a duplicate key (never a real key)


class _DuplicateJsonKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: JSON, like YAML, keeps the last of two equal keys; a SOPS file must not hide one."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateJsonKey(key)
        out[key] = value
    return out


def _locator(doc: Document) -> Callable[[Loc], int | None]:
    return lambda loc: doc.line_of(loc)


def sops_structure_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Structural problems of one SOPS document (pure): malformed metadata, no MAC, no master key, or a value
    left in plaintext that the file's own rules say must be encrypted. A Kubernetes Secret's data/stringData
    must be encrypted whatever the rules say."""
    meta = data.get("sops")
    if not isinstance(meta, dict):
        return [(("sops",), "sops metadata is not a mapping")]
    problems: list[Problem] = []
    for key in ("version", "lastmodified"):
        if meta.get(key) in ("", None):
            problems.append((("sops",), f"sops metadata has no {key}; the file was not written by sops"))
    mac = meta.get("mac")
    if mac is None:
        problems.append((("sops",), "sops metadata has no mac, so tampering cannot be detected"))
    elif not is_encrypted_value(mac):
        problems.append((("sops", "mac"), "sops.mac is not an ENC[AES256_GCM,...] value"))
    problems.extend(_master_key_problems(meta))
    selector = _selector(meta, problems)
    limit = [MAX_VALUE_FINDINGS]
    if selector is not None:
        for loc, path, value in _leaves(data):
            if loc[0] == "sops" or not selector(path):
                continue
            _value_problem(problems, loc, value, limit)
    if data.get("kind") == "Secret" and data.get("apiVersion") == "v1":
        for section in ("data", "stringData"):
            values = data.get(section)
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                loc = (section, key)
                if selector is None or not selector([section, str(key)]):
                    _value_problem(problems, loc, value, limit,
                                   " (a Secret's data and stringData are always encrypted)")
    if limit[0] < 0:
        problems.append((("sops",), f"more than {MAX_VALUE_FINDINGS} plaintext values; only the first are listed"))
    return problems


def _value_problem(problems: list[Problem], loc: Loc, value: object, limit: list[int], why: str = "") -> None:
    if value is None or value == "" or is_encrypted_value(value):
        return  # sops leaves null and empty strings as they are
    limit[0] -= 1
    if limit[0] < 0:
        return
    path = ".".join(str(p) for p in loc)
    if isinstance(value, str) and value.startswith("ENC["):
        problems.append((loc, f"value at {path} is a malformed ENC[...] value"))
    else:
        problems.append((loc, f"value at {path} is not encrypted{why} (value not shown)"))


def _master_key_problems(meta: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    groups: list[tuple[Loc, Mapping[str, Any]]] = [((), meta)]
    key_groups = meta.get("key_groups")
    if isinstance(key_groups, list):
        groups += [(("key_groups", i), g) for i, g in enumerate(key_groups) if isinstance(g, dict)]
    has_key = False
    for prefix, group in groups:
        age = group.get("age")
        if isinstance(age, list):
            for i, entry in enumerate(age):
                has_key = True
                ok = (isinstance(entry, dict) and isinstance(entry.get("recipient"), str)
                      and AGE_RECIPIENT.fullmatch(entry["recipient"].strip()) is not None
                      and isinstance(entry.get("enc"), str) and AGE_ARMOR in entry["enc"])
                if not ok:
                    problems.append((("sops", *prefix, "age", i), "sops age entry needs an age1 recipient and "
                                                                   "an age-encrypted data key (enc)"))
        elif age not in (None, ""):
            problems.append((("sops", *prefix, "age"), "sops.age is not a list of recipients"))
        has_key = has_key or any(isinstance(group.get(t), list) and group[t] for t in OTHER_KEY_TYPES)
    if not has_key:
        problems.append((("sops",), "sops metadata has no master key (age, pgp, kms, ...); nobody can decrypt it"))
    return problems


def _selector(meta: Mapping[str, Any], problems: list[Problem]) -> Callable[[Sequence[str]], bool] | None:
    """sops' rule for "is the value at this key path encrypted" (mirrors ``shouldBeEncrypted``: suffixes and
    regexes are tested against every key on the path). None when it cannot be evaluated from parsed data
    (comment-based rules need the comments) or the rules are malformed (reported)."""
    present = [s for s in SELECTORS if isinstance(meta.get(s), str) and meta[s]]
    if len(present) > 1:
        # sops itself refuses to encrypt with more than one; it only stores the default suffix when none is set.
        present_no_default = [s for s in present if not (s == "unencrypted_suffix" and meta[s] == "_unencrypted")]
        if len(present_no_default) > 1:
            problems.append((("sops",), f"sops metadata sets {', '.join(present_no_default)}; sops uses one"))
            return None
        present = present_no_default
    if not present:
        return lambda path: True
    option = present[0]
    value: str = meta[option]
    if option.endswith("comment_regex"):
        return None
    if option.endswith("suffix"):
        if option == "unencrypted_suffix":
            return lambda path: not any(k.endswith(value) for k in path)
        return lambda path: any(k.endswith(value) for k in path)
    if not _simple_regex(value):
        problems.append((("sops", option), f"sops.{option} is too complex to evaluate safely (a quantified group, "
                                           "a back-reference, or more than 3 quantifiers); it is never run"))
        return None
    try:
        pattern = re.compile(value)
    except re.error:
        problems.append((("sops", option), f"sops.{option} is not a valid regular expression"))
        return None

    def hit(path: Sequence[str]) -> bool:
        # A key too long to test in bounded time counts as matching: what it selects is then checked as encrypted.
        return any(len(k) > MAX_KEY_TESTED or pattern.search(k) for k in path)

    if option == "unencrypted_regex":
        return lambda path: not any(pattern.search(k) for k in path if len(k) <= MAX_KEY_TESTED)
    return hit


_QUANTIFIER = re.compile(r"(?<!\\)(?:[*+?]|\{\d*,?\d*\})")
_GROUP_QUANTIFIED = re.compile(r"(?<!\\)\)(?:[*+?]|\{)")


def _simple_regex(value: str) -> bool:
    """A selector regex taken from the file itself runs only when it cannot backtrack catastrophically: short, no
    quantified group (``(a+)+``), no back-reference, at most three quantifiers."""
    return (len(value) <= 256 and not _GROUP_QUANTIFIED.search(value)
            and not re.search(r"\\[1-9]|\(\?P=", value) and len(_QUANTIFIER.findall(value)) <= 3)


def _leaves(data: Any) -> Iterator[tuple[Loc, list[str], Any]]:
    """(YAML location, sops key path, value) of every scalar; list indexes are in the location only, as in
    sops, whose rules see mapping keys alone."""
    stack: list[tuple[Loc, list[str], Any]] = [((), [], data)]
    while stack:
        loc, path, node = stack.pop()
        if isinstance(node, dict):
            for key, value in reversed(list(node.items())):
                stack.append(((*loc, str(key)), [*path, str(key)], value))
        elif isinstance(node, list):
            for index in range(len(node) - 1, -1, -1):
                stack.append(((*loc, index), path, node[index]))
        elif loc:
            yield loc, path, node


def recipient_problems(meta: Mapping[str, Any], expected: Sequence[str]) -> list[Problem]:
    """How a SOPS document's master keys differ from the Platform's age recipients (pure). Locations are
    relative to the ``sops`` block. Recipients are public keys, so naming them is safe."""
    problems: list[Problem] = []
    wanted = set(expected)
    found: dict[str, Loc] = {}
    groups: list[tuple[Loc, Mapping[str, Any]]] = [((), meta)]
    key_groups = meta.get("key_groups")
    if isinstance(key_groups, list):
        groups += [(("key_groups", i), g) for i, g in enumerate(key_groups) if isinstance(g, dict)]
    for prefix, group in groups:
        age = group.get("age")
        for i, entry in enumerate(age if isinstance(age, list) else []):
            recipient = entry.get("recipient") if isinstance(entry, dict) else None
            if isinstance(recipient, str):
                found.setdefault(recipient.strip(), (*prefix, "age", i, "recipient"))
        for key_type in OTHER_KEY_TYPES:
            keys = group.get(key_type)
            if keys not in (None, "", [], {}):  # any shape: a malformed stanza still names someone else
                count = len(keys) if isinstance(keys, list) else 1
                problems.append(((*prefix, key_type), f"also encrypted to {count} {key_type} master key(s); "
                                 "only the Platform's age recipients may decrypt bootstrap material"))
    for recipient in sorted(set(found) - wanted):
        problems.append((found[recipient], f"encrypted to age recipient {recipient}, which is not one of the "
                                           "Platform's rootOfTrust.ageRecipients (nor, for a bootstrap file, a "
                                           "spec.gitops.decryptionRecipients entry of its clusters)"))
    missing = sorted(wanted - set(found))
    if missing:
        loc: Loc = ("age",) if "age" in meta else ()
        problems.append((loc, f"not encrypted to the Platform recipient(s) {', '.join(missing)}; re-encrypt with "
                              "'sops updatekeys' or 'chamberlain bootstrap encrypt'"))
    threshold = meta.get("shamir_threshold")
    if isinstance(key_groups, list) and isinstance(threshold, int) and threshold > 1:
        problems.append((("shamir_threshold",), f"needs {threshold} key groups to decrypt; each Platform recipient "
                                                "must be able to decrypt on its own"))
    return problems


# ------------------------------------------------------------------------------------------------ stanzas


def stanza_problems(meta: Mapping[str, Any]) -> list[Problem]:
    """Every age entry of a sops document wraps the data key for exactly one X25519 recipient, as sops writes it.
    A second stanza (or a passphrase, SSH or plug-in one) hides a reader the recipient list does not show."""
    problems: list[Problem] = []
    groups: list[tuple[Loc, Mapping[str, Any]]] = [((), meta)]
    key_groups = meta.get("key_groups")
    if isinstance(key_groups, list):
        groups += [(("key_groups", i), g) for i, g in enumerate(key_groups) if isinstance(g, dict)]
    for prefix, group in groups:
        age = group.get("age")
        for i, entry in enumerate(age if isinstance(age, list) else []):
            enc = entry.get("enc") if isinstance(entry, dict) else None
            if not isinstance(enc, str):
                continue  # malformed entries are CH023
            stanzas = age_stanzas(enc)
            loc: Loc = (*prefix, "age", i, "enc")
            if stanzas is None:
                problems.append((loc, "the age-wrapped data key is not an armored age file; who can open it is "
                                      "unknown"))
            elif stanzas != ["X25519"]:
                shown = ", ".join(stanzas[:5]) or "none"
                problems.append((loc, f"the age-wrapped data key has {len(stanzas)} recipient stanza(s) ({shown}); "
                                      "sops writes exactly one X25519 stanza per recipient, so someone not in the "
                                      "recipient list can decrypt"))
    return problems


# ------------------------------------------------------------------------------------------------ CH101

_UNENCRYPTED_SUFFIX = "_unencrypted"  # sops' default: such keys stay plaintext whatever else is set


def plaintext_rule_problems(data: Mapping[str, Any]) -> list[Problem]:
    """For a bootstrap file: every rule that leaves a value in plaintext next to ciphertext. chamberlain encrypts
    with ``encrypted_regex: ^(data|stringData)$`` only (shape reviewable, every value secret); any other selector,
    and any key ending in ``_unencrypted``, lets plaintext hide in a file everyone takes for encrypted."""
    problems: list[Problem] = []
    meta = data.get("sops")
    meta = meta if isinstance(meta, dict) else {}
    for option in SELECTORS:
        value = meta.get(option)
        if value in (None, ""):
            continue
        if option == "encrypted_regex" and value == BOOTSTRAP_ENCRYPTED_REGEX:
            continue
        if option == "unencrypted_suffix" and value == _UNENCRYPTED_SUFFIX:
            continue  # sops' own default, stored when nothing else is set; the keys themselves are checked below
        problems.append((("sops", option), f"sops.{option} is set; in a bootstrap file only encrypted_regex "
                                           f"{BOOTSTRAP_ENCRYPTED_REGEX!r} is allowed, so no value can stay "
                                           "plaintext by rule (re-encrypt with 'chamberlain bootstrap encrypt')"))
    for loc, path, _ in _leaves(data):
        if loc[0] != "sops" and any(k.endswith(_UNENCRYPTED_SUFFIX) for k in path):
            problems.append((loc, f"key {'.'.join(str(p) for p in loc)} ends in {_UNENCRYPTED_SUFFIX!r}, so sops "
                                  "leaves its value in plaintext; a bootstrap file holds no plaintext value"))
            if len(problems) > MAX_VALUE_FINDINGS:
                break
    return problems
