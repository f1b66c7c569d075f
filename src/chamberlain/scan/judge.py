"""Is this string key material? Randomness, placeholders and words, decided on the string alone.

Boundary: pure functions of one string (and the key it was assigned to, where the caller knows it); no regex here
may backtrack (each is a single character class or a bounded alternation), so every test is linear in its input.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter

RUN = re.compile(r"[A-Za-z0-9+/_-]{20}")
TOKEN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/_-])")
_HEXISH = re.compile(r"[0-9a-fA-F-]+")
_DIGIT = re.compile(r"[0-9]")
_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_SEPARATORS = re.compile(r"[-_/+]")
_WORD_SEPARATORS = re.compile(r"[-_]")  # identifiers join words with these; base64 uses + and /


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    n = len(value)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _wordiness(token: str) -> float:
    """Share of the alphanumeric characters that sit in word-like segments (camel-case or separated runs of 4+
    letters).

    Identifiers (``V1PersistentVolumeClaim``, ``orders-db-endpoint``) are made of words; random strings split
    into short fragments at every case change and digit. Tuned on ~30k identifiers from Python packages against
    random base64/base62 strings of 20-64 characters: at 0.5 about 1 identifier in 700 passes (mostly
    abbreviation soup such as ``PBESv2SHA256AndAES256CBC``), and about 96% of random tokens are caught."""
    segments = _SEGMENT.findall(token)
    total = sum(len(s) for s in segments)
    wordy = sum(len(s) for s in segments if len(s) >= 4 and not s.isdigit())
    return wordy / total if total else 1.0


def looks_random(token: str, min_length: int = 20) -> bool:
    """True when ``token`` (one run of base64/base64url characters) looks like generated key material.

    Hex strings are allowed: in manifests they are digests, commit ids and UUIDs, all public; a hex secret is
    caught when it is assigned to a password/token key. Tokens built of short separated pieces
    (``TLS_AES_128_GCM_SHA256``, ``v1beta1/pod-group``) are identifiers, not keys."""
    body = token.rstrip("=")
    n = len(body)
    if n < min_length or _HEXISH.fullmatch(body):
        return False
    if n > 4096:  # judged on a prefix: the statistics below settle long before, and a 10 MB run stays cheap
        body, n = body[:4096], 4096
    # C-speed character-class tests (the token alphabet is ASCII): a generator over each character was most of
    # the cost of a file made of tokens.
    has_upper = body != body.lower()
    has_lower = body != body.upper()
    has_digit = _DIGIT.search(body) is not None
    if not ((has_upper and has_lower) or (has_digit and (has_upper or has_lower))):
        return False
    entropic = shannon_entropy(body) >= 0.75 * math.log2(min(n, 64))
    if not (has_upper and has_lower):
        # Single-case tokens are mostly generated *names* (``app-7d9f8b6c5-x2k4q``, ``oqrwrp95gy5-00e1``: DNS
        # labels that Kubernetes and the intent schema require); only a long unbroken one with digits spread
        # through it is taken for key material (base32/base36 keys).
        digits = sum(c.isdigit() for c in body)
        return n >= 32 and not _SEPARATORS.search(body) and digits >= n // 10 and entropic
    pieces = _WORD_SEPARATORS.split(body)
    if len(pieces) >= 3 and max(len(p) for p in pieces) <= 10:
        return False
    # A random string of n characters from a 64-symbol alphabet has close to log2(min(n, 64)) bits/char.
    return entropic and _wordiness(body) <= 0.5


def encoded_pem(token: str) -> str | None:
    """For base64 of a PEM document (``LS0tLS1CRUdJTi...``): 'private' or 'public'; else None."""
    if not token.startswith("LS0tLS1CRUdJTi"):
        return None
    head = token[:200]
    try:
        decoded = base64.b64decode(head[: len(head) - len(head) % 4] or "", validate=False)
    except (binascii.Error, ValueError):
        return None
    if not decoded.startswith(b"-----BEGIN"):
        return None
    return "private" if b"PRIVATE KEY" in decoded[:80] else "public"


