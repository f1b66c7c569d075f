"""``chamberlain bootstrap encrypt``: turn a plaintext bootstrap Secret manifest into its SOPS ciphertext, in place.

Flow: load the repository (for the Platform's recipients and the intent that declares the file; the repository need
not validate, since the file being encrypted is exactly what makes it invalid) → relabel in memory → ``sops`` reads
the plaintext on stdin, writes ciphertext to stdout → check the ciphertext with the checker's own rules → write it to
a fresh 0600 temporary file next to FILE and atomically rename it over FILE.

Why this shape: no second plaintext copy ever exists (the user's own FILE is the only one, and it is replaced), and
on any failure FILE is untouched and no temporary file remains.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from chamberlain import safeyaml
from chamberlain.bootstrap.manifest import existing_intent_label, prepare_secret
from chamberlain.bootstrap.sops import BootstrapError, Sops
from chamberlain.bootstrap.tools import Tools
from chamberlain.checks.sops import (
    bootstrap_refs,
    bootstrap_secret_problems,
    plaintext_rule_problems,
    recipient_problems,
    sops_structure_problems,
    stanza_problems,
)
from chamberlain.errors import UsageError
from chamberlain.intent.loader import YAML_SUFFIXES, Repository, load_repository
from chamberlain.intent.model import Platform
from chamberlain.intent.paths import bootstrap_recipients


@dataclass(frozen=True)
class EncryptResult:
    file: Path
    rel: str
    intent: str
    namespace: str
    name: str
    recipients: tuple[str, ...]
    labels_added: tuple[str, ...]


def _repo_relative(file: Path, root: Path) -> str:
    if file.is_symlink():
        raise UsageError(f"{file}: is a symbolic link; encrypt the file itself")
    if not file.is_file():
        raise UsageError(f"{file}: no such file" if not file.exists() else f"{file}: not a regular file")
    if file.suffix.lower() not in YAML_SUFFIXES:
        raise UsageError(f"{file}: a bootstrap file is a YAML manifest (.yaml or .yml)")
    resolved, root = file.resolve(), root.resolve()
    if not resolved.is_relative_to(root):
        raise UsageError(f"{file}: is outside the repository {root}; bootstrap files live in the repository")
    return resolved.relative_to(root).as_posix()


def resolve_intent(repo: Repository, rel: str, given: str | None, existing_label: str | None) -> str:
    """The intent a bootstrap file belongs to: ``--intent``, else the intent whose ``source.bootstrap.file`` is
    the file, else the file's own intent label. A contradiction is an error, not a guess."""
    declaring = sorted(r.intent.obj.name for r in bootstrap_refs(repo) if r.rel == rel)
    if given is not None:
        known = repo.intent_index().get(given)
        source = known.obj.spec.source.bootstrap if known is not None else None
        if source is not None and rel not in {r.rel for r in bootstrap_refs(repo) if r.intent.obj.name == given}:
            raise UsageError(f"SecretIntent {given} declares bootstrap file {source.file}, not {rel}")
        return given
    if len(declaring) == 1:
        return declaring[0]
    if len(declaring) > 1:
        raise UsageError(f"{rel} is the bootstrap file of several intents ({', '.join(declaring)}); pass --intent")
    if existing_label:
        return existing_label
    raise UsageError(f"no SecretIntent declares source.bootstrap.file: {rel}; pass --intent NAME")


def _recipients_of(repo: Repository, platform: Platform, intent: str) -> list[str]:
    """The root recipients plus the GitOps decryption recipients of the intent's clusters (an intent not declared
    in the repository yet: the root recipients only)."""
    known = repo.intent_index().get(intent)
    if known is None:
        return list(platform.spec.root_of_trust.age_recipients)
    return bootstrap_recipients(platform, known.obj)


def verify_ciphertext(ciphertext: bytes, intent: str, recipients: Sequence[str], where: str) -> None:
    """Refuse to write anything the checker would reject (CH021-CH025): the same rules, applied before writing."""
    try:
        data = safeyaml.load(ciphertext.decode("utf-8", "replace"))
    except yaml.YAMLError:
        raise BootstrapError(f"{where}: sops produced output that is not YAML; nothing was written") from None
    if not isinstance(data, dict) or not isinstance(data.get("sops"), dict):
        raise BootstrapError(f"{where}: sops produced no sops metadata; nothing was written")
    problems = [msg for _, msg in sops_structure_problems(data)]
    problems += [msg for _, msg in recipient_problems(data["sops"], recipients)]
    problems += [msg for _, msg in stanza_problems(data["sops"])]
    problems += [msg for _, msg in plaintext_rule_problems(data)]
    problems += [msg for _, msg in bootstrap_secret_problems(data, intent)]
    if problems:
        raise BootstrapError(f"{where}: the encrypted file would not validate ({'; '.join(problems)}); nothing "
                             "was written")


def replace_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to a new 0600 file beside ``target`` and rename it over ``target``: readers see the old or
    the new file, never a mix; on failure the temporary file is removed and ``target`` is untouched."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".chamberlain.tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not all filesystems allow fsync on a directory
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def encrypt_file(
    file: Path, repo_root: Path, *, tools: Tools, intent: str | None = None, sops: Sops | None = None
) -> EncryptResult:
    """Encrypt the bootstrap Secret manifest ``file`` in place to the Platform's age recipients, with ``sops``
    (default: the one ``tools`` finds, looked up only once the file is ready to encrypt)."""
    if not repo_root.is_dir():
        raise UsageError(f"{repo_root}: not a directory; pass the root of the intent repository with --repo")
    rel = _repo_relative(file, repo_root)
    repo = load_repository(repo_root)
    platform = repo.platform
    if platform is None:
        raise BootstrapError(f"{repo_root}: has no valid Platform (found {len(repo.platforms)}); its "
                             "rootOfTrust.ageRecipients are what bootstrap files are encrypted to — run "
                             f"`chamberlain validate {repo_root}`")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{rel}: is not UTF-8 text") from None
    name = resolve_intent(repo, rel, intent, existing_intent_label(text))
    recipients = tuple(_recipients_of(repo, platform, name))
    prepared = prepare_secret(text, name, rel)
    del text
    sops = sops or Sops.locate(tools)
    ciphertext = sops.encrypt(prepared.text.encode("utf-8"), filename=rel, recipients=recipients)
    verify_ciphertext(ciphertext, name, recipients, rel)
    replace_atomically(file, ciphertext)
    return EncryptResult(file, rel, name, prepared.namespace, prepared.name, recipients, prepared.labels_added)
