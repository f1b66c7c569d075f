"""Record the root of trust's recipient in the intent repository: the Platform and ``.sops.yaml``.

- ``Platform.spec.rootOfTrust.ageRecipients`` gains the recipient (once). Only the Platform's own document is
  re-emitted, with a round-trip edit (:mod:`.yamledit`), so the rest of its file stays byte for byte.
- ``.sops.yaml`` gets one creation rule per bootstrap location — ``bootstrap/.*\\.sops\\.ya?ml$`` and an exact rule
  for every declared ``source.bootstrap.file`` outside it — encrypting only ``data``/``stringData`` to exactly the
  Platform's recipients. Rules chamberlain does not manage are kept as they are, after ours (sops uses the first
  rule that matches).

Idempotent: a second run changes nothing and writes nothing. Files are replaced atomically and keep their mode.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from chamberlain import yamledit
from chamberlain.bootstrap.sops import ENCRYPTED_REGEX
from chamberlain.checks.sops import bootstrap_refs, recipient_problems
from chamberlain.errors import UsageError
from chamberlain.intent.loader import Document, Repository, load_repository
from chamberlain.intent.model import API_VERSION, DNS_LABEL_PATTERN
from chamberlain.intent.paths import bootstrap_recipients

SOPS_CONFIG = ".sops.yaml"
DNS_LABEL = re.compile(DNS_LABEL_PATTERN.strip("^$"))
GENERIC_RULE = r"bootstrap/.*\.sops\.ya?ml$"
# Master-key settings of a creation rule besides age; our rules must encrypt to the Platform's recipients only.
_OTHER_KEYS = ("pgp", "kms", "gcp_kms", "azure_keyvault", "hc_vault_transit_uri", "hckms", "key_groups",
               "encrypted_suffix", "unencrypted_suffix", "unencrypted_regex", "encrypted_comment_regex",
               "unencrypted_comment_regex", "shamir_threshold")
_HEADER = (
    "# Written by `chamberlain root init`: sops reads this when bootstrap Secrets are encrypted in this repository.\n"
    "# They are encrypted to the Platform's rootOfTrust.ageRecipients, and only data/stringData are encrypted so\n"
    "# that kind, name, namespace and labels stay reviewable in Git.\n"
)


@dataclass
class RepoUpdate:
    platform_file: str
    recipients: list[str]
    recipient_added: bool = False
    sops_config_written: bool = False
    stale_files: list[str] = field(default_factory=list)  # encrypted bootstrap files missing a recipient


def write_atomic(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".chamberlain.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _platform_document(repo: Repository) -> tuple[str, Document]:
    # Raw documents, not the validated Platform: a new repository's Platform may not validate yet precisely
    # because it has no recipient.
    found = [(f.rel, d) for f in repo.files for d in f.documents
             if d.kind == "Platform" and d.api_version == API_VERSION]
    if len(found) != 1:
        raise UsageError(f"{repo.root}: needs exactly one Platform document to record the recipient in "
                         f"(found {len(found)})")
    return found[0]


def _spec(text: str) -> tuple[YAML, Any, CommentedMap]:
    """A Platform document for a round-trip edit: (yaml, document, its spec mapping)."""
    yaml, doc = yamledit.load(text)
    spec = doc.get("spec") if isinstance(doc, CommentedMap) else None
    if not isinstance(spec, CommentedMap):
        raise UsageError("the Platform has no spec mapping")
    return yaml, doc, spec


def add_recipient(text: str, recipient: str) -> tuple[str, list[str], bool]:
    """The Platform document ``text`` with ``recipient`` in ``spec.rootOfTrust.ageRecipients``: (new text,
    recipients, changed). Pure."""
    yaml, doc, spec = _spec(text)
    root = yamledit.child(spec, "rootOfTrust", CommentedMap)
    if root is None:
        raise UsageError("Platform spec.rootOfTrust is not a mapping")
    recipients = yamledit.child(root, "ageRecipients", CommentedSeq)
    if recipients is None:
        raise UsageError("Platform spec.rootOfTrust.ageRecipients is not a list")
    if _anchored(recipients) or _anchored(root):
        raise UsageError("Platform spec.rootOfTrust.ageRecipients uses a YAML anchor or alias; write the list out in "
                         "full, then run again (nothing was written)")
    if recipient in recipients:
        return text, [str(r) for r in recipients], False
    gitops = spec.get("gitops")
    per_cluster = gitops.get("decryptionRecipients") if isinstance(gitops, Mapping) else None
    if isinstance(per_cluster, Mapping) and any(isinstance(v, list) and recipient in v for v in per_cluster.values()):
        raise UsageError(f"{recipient} is a cluster's GitOps decryption key (spec.gitops.decryptionRecipients); the "
                         "root of trust needs a key of its own (nothing was written)")
    recipients.append(recipient)
    return yamledit.dump(yaml, doc), [str(r) for r in recipients], True


def add_decryption_recipient(text: str, cluster: str, recipient: str) -> tuple[str, bool]:
    """The Platform document ``text`` with ``recipient`` in ``spec.gitops.decryptionRecipients[cluster]``: (new
    text, changed). Pure."""
    yaml, doc, spec = _spec(text)
    gitops = yamledit.child(spec, "gitops", CommentedMap)
    per_cluster = yamledit.child(gitops, "decryptionRecipients", CommentedMap) if gitops is not None else None
    listed = yamledit.child(per_cluster, cluster, CommentedSeq) if per_cluster is not None else None
    if listed is None:
        raise UsageError(f"Platform spec.gitops.decryptionRecipients.{cluster} is not a list under mappings")
    # A YAML anchor or alias shares one list between places (say, the root recipients): appending would add the
    # cluster's key there too, and unseal shares sealed later would open with it.
    if any(_anchored(node) for node in (gitops, per_cluster, listed)):
        raise UsageError(f"Platform spec.gitops.decryptionRecipients.{cluster} uses a YAML anchor or alias; write "
                         "the list out in full, then run again (nothing was written)")
    if recipient in listed:
        return text, False
    listed.append(recipient)
    return yamledit.dump(yaml, doc), True


def _anchored(node: Any) -> bool:
    anchor = getattr(node, "anchor", None)
    return bool(getattr(anchor, "value", None))


def desired_rules(bootstrap_files: list[str], own: Collection[str] = ()) -> list[str]:
    """path_regex of every rule chamberlain manages, in the order sops should try them. A file with recipients of
    its own (``own``: GitOps decryption recipients on top of the root's) always gets an exact rule."""
    generic = re.compile(GENERIC_RULE)
    exact = [exact_rule(rel) for rel in sorted(set(bootstrap_files)) if rel in own or not generic.search(rel)]
    return [*exact, GENERIC_RULE]


def exact_rule(rel: str) -> str:
    return f"^{re.escape(rel)}$"


def update_sops_config(text: str | None, rules: list[str], recipients: list[str],
                       extra: Mapping[str, Sequence[str]] | None = None) -> tuple[str, bool]:
    """``.sops.yaml`` text with our creation rules in front and up to date: each rule encrypts to ``recipients``
    plus ``extra[rule]`` (a bootstrap file's GitOps decryption recipients). Pure; (new text, changed)."""
    if text is None or not text.strip():
        yaml, doc = yamledit.load("creation_rules: []\n")
        doc["creation_rules"] = CommentedSeq()
        original = None
    else:
        yaml, doc = yamledit.load(text)
        original = text
        if not isinstance(doc, CommentedMap):
            raise UsageError(f"{SOPS_CONFIG}: is not a YAML mapping")
    rules_seq = yamledit.child(doc, "creation_rules", CommentedSeq)
    if rules_seq is None:
        raise UsageError(f"{SOPS_CONFIG}: creation_rules is not a list")
    by_regex: dict[str, CommentedMap] = {
        r["path_regex"]: r for r in rules_seq if isinstance(r, CommentedMap) and isinstance(r.get("path_regex"), str)
    }
    changed = False
    insert_at = 0
    for regex in rules:
        age = ",".join([*recipients, *(r for r in (extra or {}).get(regex, ()) if r not in recipients)])
        rule = by_regex.get(regex)
        if rule is None:
            rule = CommentedMap([("path_regex", regex), ("encrypted_regex", ENCRYPTED_REGEX), ("age", age)])
            rules_seq.insert(insert_at, rule)
            insert_at += 1
            changed = True
            continue
        for key, value in (("encrypted_regex", ENCRYPTED_REGEX), ("age", age)):
            if rule.get(key) != value:
                rule[key] = value
                changed = True
        for key in _OTHER_KEYS:
            if key in rule:
                del rule[key]
                changed = True
    if not changed and original is not None:
        return original, False
    out = yamledit.dump(yaml, doc)
    return (_HEADER + out if original is None else out), True


def _stale(repo: Repository, recipients: list[str], extra: Mapping[str, Sequence[str]]) -> list[str]:
    stale = []
    for ref in bootstrap_refs(repo):
        if ref.file is None:
            continue
        wanted = [*recipients, *extra.get(ref.file.rel, ())]
        for doc in ref.file.documents:
            if doc.is_sops and recipient_problems(doc.data["sops"], wanted):
                stale.append(ref.file.rel)
    return sorted(set(stale))


def _gitops_recipients(repo: Repository) -> dict[str, list[str]]:
    """Per bootstrap file: the GitOps decryption recipients its intent's clusters add to the root's."""
    platform = repo.platform
    if platform is None:
        return {}
    root = set(platform.spec.root_of_trust.age_recipients)
    extra: dict[str, list[str]] = {}
    for ref in bootstrap_refs(repo):
        if ref.rel is None:
            continue
        own = [r for r in bootstrap_recipients(platform, ref.intent.obj) if r not in root]
        if own:
            extra.setdefault(ref.rel, [])
            extra[ref.rel] += [r for r in own if r not in extra[ref.rel]]
    return extra


def _platform_source(root: Path) -> tuple[Repository, str, Document, str]:
    """The repository at ``root``, its Platform document, that document's file (relative) and the file's text."""
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory; pass the root of the intent repository")
    repo = load_repository(root)
    rel, doc = _platform_document(repo)
    rf = repo.file(rel)
    if rf is None or rf.text is None:  # pragma: no cover - a document always comes from a readable file
        raise UsageError(f"{rel}: cannot be read")
    return repo, rel, doc, rf.text


def _write_document(root: Path, rel: str, doc: Document, text: str, new_chunk: str) -> None:
    write_atomic(root / rel, text[:doc.start_index] + new_chunk + text[doc.end_index:])


def update_repository(root: Path, recipient: str) -> RepoUpdate:
    """Add ``recipient`` to the Platform and bring ``.sops.yaml`` up to date. Writes only what changes."""
    repo, rel, doc, text = _platform_source(root)
    chunk = text[doc.start_index:doc.end_index]
    new_chunk, recipients, added = add_recipient(chunk, recipient)
    update = RepoUpdate(platform_file=rel, recipients=recipients, recipient_added=added)
    if added:
        _write_document(repo.root, rel, doc, text, new_chunk)

    return _refresh_sops_config(load_repository(root) if added else repo, update)


def _raw_recipients(doc: Document) -> tuple[list[str], dict[str, list[str]]]:
    """(root recipients, decryption recipients per cluster) as the Platform document says, valid or not."""
    spec = doc.data.get("spec") if isinstance(doc.data, Mapping) else None
    spec = spec if isinstance(spec, Mapping) else {}
    trust = spec.get("rootOfTrust")
    roots = trust.get("ageRecipients") if isinstance(trust, Mapping) else None
    gitops = spec.get("gitops")
    per_cluster = gitops.get("decryptionRecipients") if isinstance(gitops, Mapping) else None
    declared = {str(c): [str(r) for r in v] for c, v in per_cluster.items() if isinstance(v, list)} \
        if isinstance(per_cluster, Mapping) else {}
    return ([str(r) for r in roots] if isinstance(roots, list) else []), declared


def check_decryption_target(root: Path, cluster: str) -> tuple[Repository, str, Document, str]:
    """Before any key is made: ``cluster`` is a DNS label that an environment of a valid Platform lists."""
    if not DNS_LABEL.fullmatch(cluster):
        raise UsageError(f"{cluster!r} is not a cluster name (a DNS label: lowercase letters, digits, '-')")
    repo, rel, doc, text = _platform_source(root)
    if repo.platform is None:
        raise UsageError(f"{rel}: the Platform does not validate; run `chamberlain validate {root}` and fix it first "
                         "(nothing was written)")
    known = {c for env in repo.platform.spec.environments for c in env.clusters}
    if cluster not in known:
        raise UsageError(f"{rel}: no environment lists cluster {cluster!r} (known: {', '.join(sorted(known))}); "
                         "nothing was written")
    return repo, rel, doc, text


def check_one_key(rel: str, doc: Document, cluster: str, recipient: str | None) -> None:
    """``cluster`` declares no GitOps decryption key other than ``recipient`` (None: a key still to be made). A
    second key is no rotation: the old one would still open the cluster's bootstrap files, so replacing it is
    ``--rotate``'s (it re-encrypts them and retires the old key)."""
    declared = _raw_recipients(doc)[1].get(cluster, [])
    if declared and recipient not in declared:
        raise UsageError(f"{rel}: {cluster} already has a GitOps decryption key ({', '.join(declared)}); a second "
                         "one is not added, the old key would still open its bootstrap files. To replace it: "
                         f"`chamberlain root gitops-key {cluster} --rotate --identity-file FILE --root-identity "
                         "ROOT.agekey --reason WHY`; to keep it, give its identity file (nothing was written)")


def declare_decryption_recipient(root: Path, cluster: str, recipient: str) -> RepoUpdate:
    """Add a cluster's GitOps decryption recipient to the Platform and bring ``.sops.yaml`` up to date (the
    cluster's bootstrap files get an exact rule with it). Refuses a root recipient: the cluster's key must never be
    able to open an unseal share. Writes only what changes; ``stale_files`` lists what to re-encrypt."""
    repo, rel, doc, text = check_decryption_target(root, cluster)
    root_recipients, declared = _raw_recipients(doc)
    if recipient in root_recipients:
        raise UsageError(f"{rel}: {recipient} is a root-of-trust recipient; a cluster's decryption key must be a "
                         "key of its own (it must never open an unseal share)")
    others = sorted(c for c, listed in declared.items() if c != cluster and recipient in listed)
    if others:
        raise UsageError(f"{rel}: {recipient} is already the decryption key of {', '.join(others)}; each cluster "
                         f"needs a key of its own, or {cluster}'s GitOps controller could open their bootstrap files")
    check_one_key(rel, doc, cluster, recipient)
    chunk = text[doc.start_index:doc.end_index]
    new_chunk, added = add_decryption_recipient(chunk, cluster, recipient)
    if added:
        _write_document(repo.root, rel, doc, text, new_chunk)
    update = RepoUpdate(platform_file=rel, recipients=root_recipients, recipient_added=added)
    return _refresh_sops_config(load_repository(root) if added else repo, update)


def _refresh_sops_config(repo: Repository, update: RepoUpdate) -> RepoUpdate:
    """Bring ``.sops.yaml`` up to date with the Platform (root recipients in ``update.recipients``, plus each
    bootstrap file's GitOps decryption recipients) and list the bootstrap files whose recipients are stale."""
    recipients = update.recipients
    config = repo.root / SOPS_CONFIG
    if config.is_symlink():
        raise UsageError(f"{config}: is a symbolic link; refusing to write through it")
    current = config.read_text(encoding="utf-8") if config.exists() else None
    files = [r.rel for r in bootstrap_refs(repo) if r.rel is not None]
    extra = _gitops_recipients(repo)
    text, changed = update_sops_config(current, desired_rules(files, set(extra)), recipients,
                                       {exact_rule(rel): own for rel, own in extra.items()})
    if changed:
        write_atomic(config, text)
        update.sops_config_written = True
    update.stale_files = _stale(repo, recipients, extra)
    return update




def swap_recipient(text: str, old: str, new: str) -> tuple[str, list[str], bool]:
    """The Platform document ``text`` with ``old`` replaced by ``new`` in ``spec.rootOfTrust.ageRecipients``, in
    place (``root rotate``): (new text, recipients, changed). Already swapped: unchanged. Pure."""
    yaml, doc, spec = _spec(text)
    root = yamledit.child(spec, "rootOfTrust", CommentedMap)
    recipients = yamledit.child(root, "ageRecipients", CommentedSeq) if root is not None else None
    if root is None or recipients is None:
        raise UsageError("Platform spec.rootOfTrust.ageRecipients is not a list")
    if _anchored(recipients) or _anchored(root):
        raise UsageError("Platform spec.rootOfTrust.ageRecipients uses a YAML anchor or alias; write the list out in "
                         "full, then run again (nothing was written)")
    listed = [str(r) for r in recipients]
    if old not in listed:
        if new in listed:
            return text, listed, False
        raise UsageError(f"{old} is not in the Platform's rootOfTrust.ageRecipients: the identity given is not the "
                         "root in force (nothing was written)")
    if new in listed:  # both present (an interrupted edit cannot produce this; a hand edit can): drop the old one
        del recipients[listed.index(old)]
    else:
        recipients[listed.index(old)] = new
    return yamledit.dump(yaml, doc), [str(r) for r in recipients], True


def rotate_root_recipient(root: Path, old: str, new: str) -> RepoUpdate:
    """Replace the root recipient ``old`` with ``new`` in the Platform and bring ``.sops.yaml`` up to date; refuses
    a ``new`` that is a cluster's GitOps key. Writes only what changes; ``stale_files`` lists what to re-encrypt."""
    repo, rel, doc, text = _platform_source(root)
    _, declared = _raw_recipients(doc)
    clusters = sorted(c for c, listed in declared.items() if new in listed)
    if clusters:
        raise UsageError(f"{new} is the GitOps decryption key of {', '.join(clusters)}; the root of trust needs a "
                         "key of its own (nothing was written)")
    chunk = text[doc.start_index:doc.end_index]
    new_chunk, recipients, changed = swap_recipient(chunk, old, new)
    if changed:
        _write_document(repo.root, rel, doc, text, new_chunk)
    update = RepoUpdate(platform_file=rel, recipients=recipients, recipient_added=changed)
    return _refresh_sops_config(load_repository(root) if changed else repo, update)


def swap_decryption_recipient(root: Path, cluster: str, old: str, new: str) -> RepoUpdate:
    """Replace ``cluster``'s GitOps decryption recipient ``old`` with ``new`` (``root gitops-key --rotate``) and
    bring ``.sops.yaml`` up to date. Same refusals as :func:`declare_decryption_recipient`."""
    repo, rel, doc, text = check_decryption_target(root, cluster)
    root_recipients, declared = _raw_recipients(doc)
    if new in root_recipients:
        raise UsageError(f"{rel}: {new} is a root-of-trust recipient; a cluster's decryption key must be a key of "
                         "its own (it must never open an unseal share)")
    others = sorted(c for c, listed in declared.items() if c != cluster and new in listed)
    if others:
        raise UsageError(f"{rel}: {new} is already the decryption key of {', '.join(others)}")
    chunk = text[doc.start_index:doc.end_index]
    yaml, pdoc, spec = _spec(chunk)
    gitops = yamledit.child(spec, "gitops", CommentedMap)
    per_cluster = yamledit.child(gitops, "decryptionRecipients", CommentedMap) if gitops is not None else None
    listed = yamledit.child(per_cluster, cluster, CommentedSeq) if per_cluster is not None else None
    if listed is None or any(_anchored(n) for n in (gitops, per_cluster, listed)):
        raise UsageError(f"Platform spec.gitops.decryptionRecipients.{cluster} is not a plain list (nothing was "
                         "written)")
    names = [str(r) for r in listed]
    changed = False
    if old in names:
        if new in names:
            del listed[names.index(old)]
        else:
            listed[names.index(old)] = new
        changed = True
    elif new not in names:
        raise UsageError(f"{rel}: {old} is not {cluster}'s decryption recipient (nothing was written)")
    if changed:
        _write_document(repo.root, rel, doc, text, yamledit.dump(yaml, pdoc))
    update = RepoUpdate(platform_file=rel, recipients=root_recipients, recipient_added=changed)
    return _refresh_sops_config(load_repository(root) if changed else repo, update)
