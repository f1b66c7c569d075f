"""The unseal-share export: the file in the intent repository that lets a lost cluster's authority be unsealed again.

The sealed unseal shares normally live in one Kubernetes Secret (:mod:`chamberlain.authority.material`); losing the
cluster loses it. SPEC §3 allows Git to hold material encrypted offline-only, such as unseal shares each encrypted
to one custodian, so the same ciphertexts are exported as a chamberlain document, by default at
:data:`DEFAULT_PATH`::

    apiVersion: chamberlain.dev/v1alpha1
    kind: UnsealShares
    metadata: {name: unseal-shares}
    spec:
      authority: https://vault.vault.svc:8200   # the server these shares unseal
      threshold: 2
      generation: 1                             # bumped by every rekey
      sealedTo: 3f2a...                          # fingerprint of the custody (or root recipients)
      initializedAt: "2026-01-01T00:00:00Z"
      shares:
        - holder: alice                          # a custodian, or share-N without custody
          sealed: |
            -----BEGIN AGE ENCRYPTED FILE-----
            ...

A share is only ever armored age ciphertext; anything else is refused by validate (CH108). This module is the
format only: its spelling, the pure problems of one document (for validate and for every reader), and the custody
fingerprint both sides compute. Converting to and from the stored material, and file I/O, is
:mod:`chamberlain.authority.export`. Pure: data in, data out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

KIND: Final = "UnsealShares"
DEFAULT_PATH: Final = "authority/unseal-shares.yaml"  # relative to the intent repository's root
DEFAULT_NAME: Final = "unseal-shares"
AGE_BEGIN: Final = "-----BEGIN AGE ENCRYPTED FILE-----"
AGE_END: Final = "-----END AGE ENCRYPTED FILE-----"
MAX_SHARES: Final = 10  # the CLI's bound on --shares

RULE_PLAINTEXT: Final = "CH108"  # a share that is not age ciphertext
RULE_MALFORMED: Final = "CH109"  # the document does not have the shape below
RULE_EXTRA_READER: Final = "CH110"  # a custodian's share opens for more than one recipient
RULE_STALE: Final = "CH111"  # sealed to another custody than the Platform declares, or two exports of one authority

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    loc: Loc  # where in the document (for the line)
    rule: str
    message: str  # never quotes a share


def recipients_fingerprint(recipients: Sequence[str]) -> str:
    """What shares sealed to every root recipient are sealed to (custody not declared)."""
    return hashlib.sha256(",".join(sorted(recipients)).encode()).hexdigest()[:16]


def custody_fingerprint(recipients: Sequence[str], custodians: Sequence[tuple[str, str]], threshold: int) -> str:
    """Names what the shares are sealed to: a changed custodian list or threshold is a changed fingerprint. Without
    custodians, the root recipients' fingerprint."""
    if not custodians:
        return recipients_fingerprint(recipients)
    text = f"custody:{threshold}:" + ",".join(f"{n}={r}" for n, r in custodians)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def age_stanzas(armored: str) -> list[str] | None:
    """The recipient stanza types (``X25519``, ``scrypt``...) in an armored age file's header, grease left out;
    None when the text is not armored age ciphertext at all."""
    text = armored.strip()
    if not text.startswith(AGE_BEGIN) or not text.endswith(AGE_END):
        return None
    body = "".join(text[len(AGE_BEGIN):-len(AGE_END)].split())
    if not body or len(body) > 64 * 1024:  # one share sealed to a handful of recipients is well under a KB
        return None
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None
    header, sep, _ = raw.partition(b"\n---")
    lines = header.split(b"\n")
    if not sep or lines[0] != b"age-encryption.org/v1":
        return None
    types = [line[3:].split(b" ", 1)[0].decode("ascii", "replace") for line in lines[1:] if line.startswith(b"-> ")]
    # rage adds a random "<x>-grease" stanza to every file (so parsers tolerate unknown stanzas); nobody opens it
    return [t for t in types if not t.endswith("-grease")]


def _int(spec: Mapping[str, Any], key: str, problems: list[Problem], *, low: int) -> int:
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        problems.append(Problem(("spec", key), RULE_MALFORMED, f"spec.{key} must be an integer >= {low}"))
        return 0
    return value


def problems(doc: Any) -> list[Problem]:
    """Everything wrong with one UnsealShares document, in document order. A share that is not armored age
    ciphertext is CH108 whatever else is wrong: it may be a plaintext share, so it is never quoted."""
    out: list[Problem] = []
    if not isinstance(doc, Mapping):
        return [Problem((), RULE_MALFORMED, "an UnsealShares document must be a mapping")]
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        return [Problem(("spec",), RULE_MALFORMED, "spec is missing or not a mapping")]
    for key in ("authority", "sealedTo"):
        if not isinstance(spec.get(key), str) or not spec.get(key):
            out.append(Problem(("spec", key), RULE_MALFORMED, f"spec.{key} must be a non-empty string"))
    threshold = _int(spec, "threshold", out, low=1)
    _int(spec, "generation", out, low=1)
    shares = spec.get("shares")
    if not isinstance(shares, list) or not shares:
        out.append(Problem(("spec", "shares"), RULE_MALFORMED, "spec.shares must be a non-empty list"))
        return out
    if len(shares) > MAX_SHARES:
        out.append(Problem(("spec", "shares"), RULE_MALFORMED, f"{len(shares)} shares; at most {MAX_SHARES}"))
    if threshold and threshold > len(shares):
        out.append(Problem(("spec", "threshold"), RULE_MALFORMED,
                           f"threshold {threshold} exceeds the {len(shares)} shares: they could never unseal"))
    holders: list[str] = []
    for i, share in enumerate(shares):
        if not isinstance(share, Mapping):
            out.append(Problem(("spec", "shares", i), RULE_MALFORMED,
                               f"share {i + 1}: must be a mapping with holder and sealed"))
            continue
        holder = share.get("holder")
        if not isinstance(holder, str) or not holder:
            out.append(Problem(("spec", "shares", i, "holder"), RULE_MALFORMED,
                               f"share {i + 1}: holder must be a custodian's name or share-{i + 1}"))
        elif holder in holders:
            out.append(Problem(("spec", "shares", i, "holder"), RULE_MALFORMED,
                               f"share {i + 1}: holder {holder!r} holds another share already"))
        else:
            holders.append(holder)
        sealed = share.get("sealed")
        stanzas = age_stanzas(sealed) if isinstance(sealed, str) else None
        if stanzas is None:
            out.append(Problem(("spec", "shares", i, "sealed"), RULE_PLAINTEXT,
                               f"share {i + 1}: not armored age ciphertext; an unseal share in Git must be sealed "
                               "with age (if this is a plaintext share, it is exposed: rekey now with "
                               "`chamberlain authority rekey`)"))
        elif custodial(spec) and stanzas != ["X25519"]:
            out.append(Problem(("spec", "shares", i, "sealed"), RULE_EXTRA_READER,
                               f"share {i + 1} (held by {holder}): {len(stanzas)} recipient stanza(s) "
                               f"({', '.join(stanzas[:5]) or 'none'}); a custodian's share is sealed to that "
                               "custodian alone (one X25519 stanza)"))
    return out


def custodial(spec: Mapping[str, Any]) -> bool:
    """Whether the shares are held by named custodians (not ``share-N`` placeholders of root-sealed shares)."""
    shares = spec.get("shares")
    if not isinstance(shares, list):
        return False
    names = [s.get("holder") for s in shares if isinstance(s, Mapping)]
    return bool(names) and not all(n == f"share-{i}" for i, n in enumerate(names, start=1))


__all__ = [
    "AGE_BEGIN",
    "AGE_END",
    "DEFAULT_NAME",
    "DEFAULT_PATH",
    "KIND",
    "RULE_EXTRA_READER",
    "RULE_MALFORMED",
    "RULE_PLAINTEXT",
    "RULE_STALE",
    "Problem",
    "age_stanzas",
    "custodial",
    "custody_fingerprint",
    "problems",
    "recipients_fingerprint",
]
