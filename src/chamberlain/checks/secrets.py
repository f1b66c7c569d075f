"""Credential scanning of the intent repository: no secret value may live in it (CH024, CH020, CH102).

Concept: Git holds encrypted intent, never runtime values (Inv. 1 and 2). The engine (:mod:`chamberlain.scan`)
finds credential-looking places in one text; the checks here feed it every file of the repository and turn its
hits into findings:

- ``credential-scan`` reports every credential in any file (CH024); one inside a chamberlain intent document is
  also a literal value in intent (CH020).
- ``literal-secrets`` reports plaintext Kubernetes ``Secret`` manifests and intent fields that pin a secret value
  (a ``fixed-name`` generator on a password/token key, a random-looking fixed name) (CH020).
- ``metadata-credentials`` reports labels, annotations and purposes that spell a value (CH102).

Public or encrypted material is allowed: SOPS ``ENC[...]`` values and metadata, SealedSecret ``encryptedData``,
certificates, public keys. A deliberate exception is marked on its line with ``chamberlain:allow CH024``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import yaml

from chamberlain.checks.registry import check
from chamberlain.checks.sops import bootstrap_rels
from chamberlain.findings import Finding
from chamberlain.intent.loader import MAX_SCAN_BYTES, Document, RepoFile, Repository, active_cache
from chamberlain.intent.model import GROUP, FixedNameGenerator
from chamberlain.scan.decode import decode_for_scan, windows
from chamberlain.scan.engine import (
    MAX_HITS,
    Hit,
    allowed,
    blank_spans,
    pem_blocks,
    scan_binary,
    scan_text,
)
from chamberlain.scan.judge import CONFIG_WORDS, looks_random, placeholder, reference

__all__ = ["MAX_HITS", "Hit", "allowed", "pem_blocks", "scan_binary", "scan_file", "scan_text"]


# ------------------------------------------------------------------------------------------------ files

_KEYSTORE_SUFFIXES = (".p12", ".pfx", ".jks", ".keystore", ".bks", ".kdbx")


def scan_file(rf: RepoFile) -> list[Hit]:
    """Scan one repository file: text with every rule, binary data for known shapes."""
    hits: list[Hit] = []
    if rf.rel.lower().endswith(_KEYSTORE_SUFFIXES):
        hits.append(Hit("keystore", "a key-store file (PKCS#12/JKS/KeePass)", None, None))
    if rf.text is not None:
        hits.extend(_text_hits(rf))
    elif rf.size > MAX_SCAN_BYTES:
        seen: set[str] = set()
        try:
            for w in windows(rf.path):
                if w.text is None:
                    new = [h for h in scan_binary(w.raw) if h.kind not in seen]
                    seen.update(h.kind for h in new)
                    hits.extend(new)
                    continue
                for h in scan_text(w.text):
                    if h.line is not None and h.column is not None and w.owns_at(h.line, h.column):
                        line, column = w.start_line + h.line - 1, w.file_column(h.line, h.column)
                        hits.append(Hit(h.kind, h.label, line, column))
        except OSError:  # vanished or unreadable since loading; the loader already saw it
            return hits
    else:
        decoded = decode_for_scan(rf)
        hits.extend(scan_text(decoded.text) if decoded.text is not None else scan_binary(decoded.raw))
        if decoded.lossy:  # replaced characters were not scanned: say so (CH127), never pass it off as clean
            hits.append(Hit("partial", decoded.note, None, None))
    return hits


def _text_hits(rf: RepoFile) -> list[Hit]:
    """The hits of a text file; an intent file's come from the parse cache when its bytes were scanned before
    (they depend on nothing else: see :meth:`ParseCache.get_hits`)."""
    cache = active_cache() if rf.digest is not None else None
    if cache is not None and rf.digest is not None:
        cached = cache.get_hits(rf.digest)
        if cached is not None:
            return [Hit(*h) for h in cached]
    hits = scan_text(_mask_ciphertext(rf), generic_regions=_outside_intents(rf))
    if cache is not None and rf.digest is not None:
        cache.put_hits(rf.digest, [(h.kind, h.label, h.line, h.column) for h in hits])
    return hits


SEALED_SECRET_GROUP = "bitnami.com"  # noqa: S105 - an API group, not a password


def ciphertext_spans(doc: Document) -> list[tuple[int, int]]:
    """Character spans (in the file) of the values of a SealedSecret's ``spec.encryptedData``: ciphertext only
    the controller's private key opens, public by design, so never a leak. Empty for any other document."""
    api = doc.api_version or ""
    if doc.kind != "SealedSecret" or api.split("/", 1)[0] != SEALED_SECRET_GROUP:
        return []
    node = doc.node
    for key in ("spec", "encryptedData"):
        if not isinstance(node, yaml.MappingNode):
            return []
        child = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if child is None:
            return []
        node = child
    if not isinstance(node, yaml.MappingNode):
        return []
    return [(doc.start_index + int(v.start_mark.index), doc.start_index + int(v.end_mark.index))
            for _, v in node.value if isinstance(v, yaml.ScalarNode)]


def _mask_ciphertext(rf: RepoFile) -> str:
    """``rf.text`` with SealedSecret ciphertext blanked (line breaks kept, so every position stays true)."""
    spans = [span for doc in rf.documents if doc.kind == "SealedSecret" for span in ciphertext_spans(doc)]
    return blank_spans(rf.text or "", spans)


def _outside_intents(rf: RepoFile) -> list[tuple[int, int]] | None:
    """Character ranges of ``rf`` outside its chamberlain documents (None: the whole file)."""
    spans = sorted(
        (d.start_index, d.end_index) for d in rf.documents if _is_chamberlain(d)
    )
    if not spans or rf.text is None:
        return None
    regions: list[tuple[int, int]] = []
    cursor = 0
    for start, end in spans:
        if start > cursor:
            regions.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < len(rf.text):
        regions.append((cursor, len(rf.text)))
    return regions


# ------------------------------------------------------------------------------------------------ checks


def _is_chamberlain(doc: Document) -> bool:
    api = doc.api_version
    return api is not None and api.startswith(GROUP + "/")


def _label(doc: Document) -> str:
    return f"{doc.kind}/{doc.name}" if doc.name else str(doc.kind)


def _doc_spans(rf: RepoFile) -> list[tuple[int, int, Document]]:
    """1-based inclusive line spans of the chamberlain documents of a file."""
    return [
        (d.start_line, d.end_line, d)
        for d in rf.documents
        if _is_chamberlain(d)
    ]


def _doc_at(spans: list[tuple[int, int, Document]], line: int | None) -> Document | None:
    if line is None:
        return None
    return next((d for start, end, d in spans if start <= line <= end), None)


@check("credential-scan", per_file=True)
def check_credentials(repo: Repository) -> Iterator[Finding]:
    """CH024 for every credential-looking place in any file; CH020 too when it sits in an intent document.
    A random-looking string with no credential context is a CH128 warning: a guess must not block a repository."""
    for rf in repo.files:
        spans = _doc_spans(rf)
        for hit in scan_file(rf):
            if hit.kind == "partial":
                yield Finding(rf.rel, hit.line, "CH127", f"file partly scanned for credentials: {hit.label}",
                              subject=hit.kind)
                continue
            if hit.kind in ("high-entropy", "unconfirmed-token"):
                if rf.text is None or hit.line is None or not allowed(_line_text(rf.text, hit.line), "CH128"):
                    yield Finding(
                        rf.rel, hit.line, "CH128",
                        f"looks like {hit.label}, unconfirmed by any known format; if it is a credential, remove and "
                        f"rotate it, else mark it 'chamberlain:allow CH128' (value not shown)",
                        column=hit.column, subject=hit.kind)
                continue
            yield Finding(
                rf.rel, hit.line, "CH024",
                f"looks like {hit.label} [{hit.kind}]; values never belong in Git — remove it, rotate it, or "
                f"mark a deliberate false positive with 'chamberlain:allow CH024' (value not shown)",
                column=hit.column, subject=hit.kind,
            )
            doc = _doc_at(spans, hit.line)
            if doc is not None:
                yield Finding(
                    rf.rel, hit.line, "CH020",
                    f"{_label(doc)}: holds what looks like {hit.label} [{hit.kind}]; intent declares secrets, "
                    f"it never carries their values (value not shown)",
                    column=hit.column, object=_label(doc), subject=hit.kind,
                )


# Key names that hold a credential (a fixed, declared value is fine for a user name, never for these).
_SECRET_KEY_WORDS = re.compile(
    r"pass(word|wd|phrase)?|pwd|pin|secret|token|api-?key|private-?key|credentials?|otp|seed|salt|signing-?key"
    r"|hmac|cookie-?key|session-?key|encryption-?key|master-?key"
)
_NOT_SECRET_SUFFIX = re.compile(r"(name|user|username|id|type|file|path|url|host|hint|policy|length)$")


def secret_key_name(key: str) -> bool:
    """Does an intent key (``password``, ``DB_TOKEN``, ``api-key``) name a credential rather than a name?"""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", key).lower().replace("_", "-").replace(".", "-")
    if _NOT_SECRET_SUFFIX.search(words.replace("-", "")):
        return False
    return any(_SECRET_KEY_WORDS.fullmatch(w) for w in _compound_words(words))


def _compound_words(words: str) -> Iterable[str]:
    """Every run of consecutive '-'-separated words (so ``api-key`` and ``cookie-key`` match as units)."""
    parts = [p for p in words.split("-") if p]
    for i in range(len(parts)):
        for j in range(i + 1, min(len(parts), i + 3) + 1):
            yield "-".join(parts[i:j])
            yield "".join(parts[i:j])


@check("literal-secrets")
def check_literal_secrets(repo: Repository) -> Iterator[Finding]:
    """CH020: plaintext Secret manifests anywhere (bootstrap files excepted: CH021 names them), and intent
    fields that pin a secret value."""
    bootstrap = bootstrap_rels(repo)
    texts = {rf.rel: rf.text for rf in repo.files}
    for doc in repo.manifests:
        if doc.file in bootstrap or doc.is_sops:
            continue
        yield from _plaintext_secret(texts.get(doc.file), doc)
    for loaded in repo.intents:
        intent = loaded.obj
        generate = intent.spec.source.generate or {}
        for key, gen in generate.items():
            if not isinstance(gen, FixedNameGenerator):
                continue
            loc = ("spec", "source", "generate", key)
            if secret_key_name(key):
                yield Finding(
                    loaded.file, loaded.line_of(*loc), "CH020",
                    f"SecretIntent/{intent.name}: spec.source.generate.{key}: a fixed-name generator on a "
                    f"secret key puts the value in Git; use a password, token or bytes generator",
                    object=f"SecretIntent/{intent.name}",
                )
            elif looks_random(gen.name, min_length=12):
                yield Finding(
                    loaded.file, loaded.line_of(*loc, "name"), "CH020",
                    f"SecretIntent/{intent.name}: spec.source.generate.{key}.name looks like generated key "
                    f"material, not a declared name (value not shown)",
                    object=f"SecretIntent/{intent.name}",
                )


def _secret_docs(doc: Document) -> Iterator[tuple[tuple[int | str, ...], dict[str, object]]]:
    """(location, object) of the Secrets in a document: the document itself, or the items of a ``kind: List``."""
    data = doc.data
    if not isinstance(data, dict):
        return
    if data.get("kind") == "Secret":
        yield (), data
    elif data.get("kind") in ("List", "SecretList") and isinstance(data.get("items"), list):
        for index, item in enumerate(data["items"]):
            if isinstance(item, dict) and item.get("kind") == "Secret":
                yield ("items", index), item


def _plaintext_secret(text: str | None, doc: Document) -> Iterator[Finding]:
    for prefix, secret in _secret_docs(doc):
        if secret.get("apiVersion", "v1") != "v1":
            continue  # a custom resource that happens to be called Secret, not core/v1
        keys: list[str] = []
        first: tuple[int | str, ...] | None = None
        for section in ("data", "stringData"):
            values = secret.get(section)
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                if value not in (None, "") and not _templated(value):
                    keys.append(str(key))
                    if first is None:
                        first = (*prefix, section, key)
        if first is None:
            continue
        line = doc.line_of(first)
        kind_line = doc.line_of((*prefix, "kind"))
        if text is not None and any(allowed(_line_text(text, n), "CH020") for n in (line, kind_line)):
            continue
        meta = secret.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        shown = ", ".join(sorted(keys)[:5]) + (", ..." if len(keys) > 5 else "")
        yield Finding(
            doc.file, line, "CH020",
            f"Secret/{name or '?'} holds {len(keys)} plaintext value(s) ({shown}); Kubernetes Secrets are derived "
            f"from Vault, and what must enter through Git is SOPS-encrypted ('chamberlain bootstrap encrypt')",
            object=f"Secret/{name}" if name else "Secret",
        )


def _templated(value: object) -> bool:
    """A value that is one template action (``{{ .Values.password }}``, ``${DB_PASSWORD}``) is filled in by a tool
    at deploy time; it holds no value in Git."""
    text = str(value).strip()
    return (text.startswith("{{") and text.endswith("}}")) or (text.startswith("${") and text.endswith("}"))


def _line_text(text: str, line: int) -> str:
    """The text of 1-based ``line`` (only called for the few Secret manifests, so no index is kept)."""
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


# ------------------------------------------------------------------------------------------------ CH102

# "the password is X", "token: X" in prose: a credential word, an optional verb or sign, then one candidate word.
_PROSE_SECRET = re.compile(
    r"\b(?:password|passwd|passphrase|pwd|token|secret|api[ _-]?key|pin)\b(?:[ \t]+(?:is|was|=|:)|[ \t]*[:=])?"
    r"[ \t]+[\"'`]?(?P<value>[^\s\"'`]{6,128})", re.IGNORECASE)
_CASE_MIX = re.compile(r"(?=.*[A-Za-z])(?=.*[^A-Za-z])")
_PLAIN_WORD = re.compile(r"[A-Za-z]+")
# Prose wraps names in brackets and quotes ("a Secret (payments/smtp-relay)"), refers with $, %, @, paths.
_NOT_A_VALUE = ("(", "[", "{", "<", "/", "$", "%", "@", "`", "&", "*", "!", "|", ">")
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def _prose_secret(text: str) -> bool:
    """A word right after a credential word that is not a word, a name or a number (``hunter2!``, ``Xk9#mP2q``).
    DNS-style names (``orders-db``) and plain words pass: a purpose names things, it never spells a value."""
    for m in _PROSE_SECRET.finditer(text):
        value = m.group("value").rstrip(".,;:)")
        if len(value) < 6 or _PLAIN_WORD.fullmatch(value) or _DNS_NAME.fullmatch(value) or value.isdigit():
            continue
        if value.startswith(_NOT_A_VALUE) or value.lower() in CONFIG_WORDS or placeholder(value) or reference(value):
            continue
        if _CASE_MIX.match(value):
            return True
    return False


def metadata_texts(doc: Document) -> Iterator[tuple[tuple[int | str, ...], str, str]]:
    """(location, what, text to scan) of the free-form metadata of a chamberlain object: every label and
    annotation (scanned as ``key: value``, so a password-named key with a literal is caught) and ``spec.purpose``."""
    data = doc.data if isinstance(doc.data, dict) else {}
    meta = data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    for section in ("labels", "annotations"):
        values = meta.get(section)
        if isinstance(values, dict):
            for key, value in values.items():
                yield ("metadata", section, str(key)), f"metadata.{section}.{key}", f"{key}: {value}"
    spec = data.get("spec")
    purpose = spec.get("purpose") if isinstance(spec, dict) else None
    if isinstance(purpose, str):
        yield ("spec", "purpose"), "spec.purpose", purpose


@check("metadata-credentials", per_file=True)
def check_metadata_credentials(repo: Repository) -> Iterator[Finding]:
    """CH102: a credential-shaped label, annotation or purpose on a Platform, RotationPolicy or SecretIntent.
    Render copies metadata into every cluster the object reaches, so a value there is a leak multiplied."""
    docs = [p.doc for p in repo.platforms] + [p.doc for p in repo.policies] + [i.doc for i in repo.intents]
    # One scan per file, one item per line (10k intents in 100 files: 100 scanner set-ups, not 10k). Per file, so
    # the scan's hit cap and patterns spanning lines never tie one file's findings to another's, and only one
    # file's texts are held at a time (in the controller every object is a file).
    by_file: dict[str, list[Document]] = {}
    for doc in docs:
        by_file.setdefault(doc.file, []).append(doc)
    for rel, in_file in by_file.items():
        yield from _metadata_findings(repo, rel, in_file)


def _metadata_findings(repo: Repository, rel: str, docs: list[Document]) -> Iterator[Finding]:
    items = [(doc, loc, what, text) for doc in docs for loc, what, text in metadata_texts(doc)]
    joined = "\n".join(_ONE_LINE.sub(" ", text) for _, _, _, text in items)
    kinds: dict[int, str] = {}
    for hit in scan_text(joined, rule="CH102"):
        if hit.kind != "truncated" and hit.line is not None:
            kinds.setdefault(hit.line - 1, f"{hit.label} [{hit.kind}]")
    rf_text = _file_text(repo, rel)
    for index, (doc, loc, what, text) in enumerate(items):
        kind = kinds.get(index)
        if kind is None and loc[-1] == "purpose" and _prose_secret(text):
            kind = "a password or token spelled out in prose [prose-credential]"
        if kind is None:
            continue
        line = doc.line_of(loc)
        if rf_text is not None and allowed(_line_text(rf_text, line), "CH102"):
            continue
        label = _label(doc)
        yield Finding(
            doc.file, line, "CH102",
            f"{label}: {what} looks like {kind}; render copies metadata into every cluster, so it never holds a "
            "value (value not shown)", object=label)


_ONE_LINE = re.compile(r"[\r\n]")


def _file_text(repo: Repository, rel: str) -> str | None:
    rf = repo.file(rel)
    return rf.text if rf is not None else None
