"""The sealed unseal shares as a file that survives the cluster: write it, read it back as stored material.

The format (``kind: UnsealShares``, default path ``authority/unseal-shares.yaml`` in the intent repository) and its
pure checks are :mod:`chamberlain.intent.unseal_shares`. Here: :func:`export_material` (material → YAML text),
:func:`parse_export` / :func:`read_export` (text or file → :class:`SealedMaterial`, refusing anything that is not
armored age ciphertext, with the rule id and the file), and :func:`write_export` (atomic, unchanged content not
rewritten). Only the shares in force are exported: a rekey's unverified ``next-share-*`` never leave the Secret.
Nothing here opens a share; the ciphertexts are copied as they are.

Boundary: the local file system only. Re-creating the Kubernetes Secret from an export (and auditing it) is the
service's (:mod:`chamberlain.service.authority`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from chamberlain import safeyaml
from chamberlain.authority.material import SealedMaterial, SealError
from chamberlain.intent.model import API_VERSION
from chamberlain.intent.unseal_shares import DEFAULT_NAME, DEFAULT_PATH, KIND, problems

HEADER = (
    "# The runtime authority's unseal shares, each sealed with age (one custodian each under rootOfTrust.custody,\n"
    "# else every root recipient). No plaintext share: safe to commit (SPEC §3). Written by `chamberlain authority\n"
    "# init/rekey --export-shares` and `chamberlain authority export-shares`; read back when the cluster is lost.\n"
)


class ExportError(SealError):
    """The export file is missing, malformed, or holds something that is not a sealed share."""


def default_path(repo_root: Path) -> Path:
    return repo_root / DEFAULT_PATH


def export_document(m: SealedMaterial, *, name: str = DEFAULT_NAME) -> dict[str, Any]:
    """The UnsealShares document of the shares in force (never the pending ``next_shares``)."""
    if not m.shares or m.pending:
        raise ExportError("there are no sealed unseal shares to export yet (authority init has not stored them)")
    spec: dict[str, Any] = {
        "authority": m.vault_address or "unknown",
        "threshold": m.threshold,
        "generation": m.generation,
        "sealedTo": m.recipients,
    }
    optional = {"initializedAt": m.initialized_at, "rekeyedAt": m.rekeyed_at, "rootRevokedAt": m.root_revoked_at}
    spec.update({k: v for k, v in optional.items() if v})
    if m.init_recorded:
        spec["initRecorded"] = True
    spec["shares"] = [{"holder": m.holder(i), "sealed": c.strip() + "\n"} for i, c in enumerate(m.shares)]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


class _Literal(str):
    """A string dumped in YAML's literal block style (armored ciphertext stays readable, line by line)."""


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def export_material(m: SealedMaterial, *, name: str = DEFAULT_NAME) -> str:
    """The export file's text for ``m`` (deterministic: the same material gives the same text)."""
    doc = export_document(m, name=name)
    for share in doc["spec"]["shares"]:
        share["sealed"] = _Literal(share["sealed"])
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def parse_export(text: str, source: str = DEFAULT_PATH) -> SealedMaterial:
    """The sealed material of an export's text; :class:`ExportError` naming ``source`` and the rule when the text
    is not one valid UnsealShares document. The message never quotes a share."""
    try:
        docs = [d for d in safeyaml.load_all(text) if d is not None]
    except (yaml.YAMLError, ValueError, RecursionError):
        raise ExportError(f"{source}: not valid YAML (CH109)") from None
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if len(found) != 1:
        raise ExportError(f"{source}: expected one {KIND} document, found {len(found)} (CH109)")
    doc = found[0]
    if doc.get("apiVersion") != API_VERSION:
        raise ExportError(f"{source}: apiVersion must be {API_VERSION} (CH109)")
    bad = problems(doc)
    if bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ExportError(f"{source}: {first.message} ({first.rule}){more}")
    spec = doc["spec"]
    shares = spec["shares"]
    holders = tuple(str(s["holder"]) for s in shares)
    custodial = not all(h == f"share-{i}" for i, h in enumerate(holders, start=1))
    return SealedMaterial(
        shares=tuple(str(s["sealed"]) for s in shares),
        threshold=int(spec["threshold"]),
        recipients=str(spec["sealedTo"]),
        initialized_at=str(spec.get("initializedAt", "")),
        root_revoked_at=str(spec.get("rootRevokedAt", "")),
        generation=int(spec["generation"]),
        rekeyed_at=str(spec.get("rekeyedAt", "")),
        init_recorded=bool(spec.get("initRecorded", False)),
        vault_address="" if spec["authority"] == "unknown" else str(spec["authority"]),
        holders=holders if custodial else (),
    )


def read_export(path: Path) -> SealedMaterial:
    """The sealed material of the export file at ``path`` (see :func:`parse_export`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError(f"{path}: no unseal-share export there (write it with `chamberlain authority "
                          "export-shares`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: cannot read the unseal-share export ({type(exc).__name__})") from None
    return parse_export(text, str(path))


def write_export(path: Path, m: SealedMaterial, *, name: str = DEFAULT_NAME) -> bool:
    """Write the export of ``m`` to ``path`` atomically; False (and nothing written) when the file already says
    exactly that."""
    text = export_material(m, name=name)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".unseal-shares.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # ciphertext meant for Git: readable like the rest of the repository
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def same_shares(a: SealedMaterial, b: SealedMaterial) -> bool:
    """Whether two copies of the material hold the same sealed shares (ciphertexts compared, nothing opened)."""
    return (tuple(c.strip() for c in a.shares) == tuple(c.strip() for c in b.shares)
            and a.threshold == b.threshold and a.generation == b.generation)


__all__ = [
    "DEFAULT_PATH",
    "KIND",
    "ExportError",
    "default_path",
    "export_document",
    "export_material",
    "parse_export",
    "read_export",
    "same_shares",
    "write_export",
]
