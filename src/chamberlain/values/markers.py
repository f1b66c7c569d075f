"""Version markers: a non-reversible fingerprint of a secret version, safe to log, annotate and compare.

A marker is HMAC-SHA256 keyed with the Vault path and version number over the canonical data, truncated. It
identifies "which version a consumer Secret carries" without being usable to guess or verify a value offline any
faster than the value's own entropy allows (the key is public, so low-entropy values such as fixed names are
guessable from a marker; markers are computed over the whole key set, which always includes a generated value).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping


def version_marker(path: str, data: Mapping[str, str]) -> str:
    canonical = json.dumps(dict(sorted(data.items())), separators=(",", ":"), ensure_ascii=False).encode()
    digest = hmac.new(f"chamberlain:{path}".encode(), canonical, hashlib.sha256).hexdigest()
    return f"v1:{digest[:32]}"
