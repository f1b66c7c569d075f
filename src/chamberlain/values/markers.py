"""Version markers: a non-reversible fingerprint of a secret version, safe to log, annotate and compare.

Two forms:

- ``v2:<32 hex>`` (issue 11, what chamberlain writes): HMAC-SHA256 over the canonical (path, data), keyed with the
  HMAC key of the authority's transit key ``chamberlain-marker-<env>`` (``<transit>/hmac/<key>/sha2-256``). The key
  never leaves the authority, so a marker found in an annotation, a ledger entry or custom_metadata cannot be used
  to test guesses of a weak value offline; only an identity allowed to use that environment's HMAC key (that
  environment's orchestrators) can compute one.
- ``v1:<32 hex>`` (the previous release): HMAC keyed with the *public* path. Anyone can recompute it, so a
  low-entropy value is guessable from its marker. Still computed by :func:`version_marker` (tests, reading old
  installations) and still *recognized*, never written by a keyed :class:`Markers`.

Comparison stays value-free: markers are compared, never values. Rule for the two forms (:func:`same_version`): a v1
and a v2 marker are never compared by content (they cannot be: different keys); a v1 marker is the same version as
the v2 marker in force when the secret's custom_metadata records that v1 marker as the one of the Vault version the
v2 marker was re-keyed from (``value-marker-v1`` with ``value-marker-v1-version`` equal to ``value-version``). The
upgrade re-keys each secret's marker that way, so consumers still annotated with the v1 marker of the same Vault
version are in sync (nothing restarts because only a marker's form changed); the next rotation changes
``value-version`` and the v1 marker stops matching.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from chamberlain.intent.paths import TRANSIT_MOUNT, VaultPath, marker_key

VALUE_MARKER_V1 = "value-marker-v1"  # custom_metadata: the v1 marker a v2 marker was re-keyed from
VALUE_MARKER_V1_VERSION = "value-marker-v1-version"  # ... and the Vault version it belongs to
_TRANSIT_MAC = re.compile(r"vault:v[0-9]{1,9}:([A-Za-z0-9+/=]{1,200})")


def _canonical(path: str, data: Mapping[str, str]) -> bytes:
    return json.dumps(dict(sorted(data.items())), separators=(",", ":"), ensure_ascii=False).encode()


def version_marker(path: str, data: Mapping[str, str]) -> str:
    """The previous release's unkeyed ``v1`` marker (the key is the public path): recognized, no longer written by
    chamberlain's workflows, which use a keyed :class:`Markers`."""
    digest = hmac.new(f"chamberlain:{path}".encode(), _canonical(path, data), hashlib.sha256).hexdigest()
    return f"v1:{digest[:32]}"


class Markers(Protocol):
    def of(self, vault: VaultPath, data: Mapping[str, str]) -> str:
        """The marker of ``data`` as the version at ``vault``."""
        ...


class LegacyMarkers:
    """``v1`` markers (no key): for tests and fakes that have no authority, never for a live installation."""

    def of(self, vault: VaultPath, data: Mapping[str, str]) -> str:
        return version_marker(vault.full, data)


class HmacAPI(Protocol):
    def hmac(self, mount: str, name: str, data: bytes) -> str: ...


class MarkerError(ValueError):
    """The authority's HMAC answer is not of the expected form."""


@dataclass(frozen=True)
class TransitMarkers:
    """``v2`` markers keyed with the environment's transit HMAC key (one call per marker). The environment is the
    first segment of every chamberlain path (SPEC §9: runtime, derived and config paths all start with it)."""

    transit: HmacAPI
    mount: str = TRANSIT_MOUNT

    def of(self, vault: VaultPath, data: Mapping[str, str]) -> str:
        environment = vault.path.split("/", 1)[0]
        message = vault.full.encode() + b"\n" + _canonical(vault.full, data)
        answer = self.transit.hmac(self.mount, marker_key(environment), message)
        m = _TRANSIT_MAC.fullmatch(answer)
        if m is None:
            raise MarkerError(f"{self.mount}/hmac/{marker_key(environment)}: unexpected answer form")
        try:
            digest = base64.b64decode(m.group(1), validate=True).hex()
        except (binascii.Error, ValueError):
            raise MarkerError(f"{self.mount}/hmac/{marker_key(environment)}: unexpected answer form") from None
        return f"v2:{digest[:32]}"


def same_version(observed: str | None, custom: Mapping[str, str]) -> bool:
    """Whether a consumer's marker ``observed`` names the version in force per ``custom`` (the secret's
    custom_metadata): the marker itself, or the v1 marker of that same Vault version (see the module docstring)."""
    current = custom.get("value-marker", "")
    if not observed or not current:
        return False
    if observed == current:
        return True
    legacy = custom.get(VALUE_MARKER_V1)
    return (observed.startswith("v1:") and current.startswith("v2:") and legacy == observed
            and custom.get(VALUE_MARKER_V1_VERSION) == custom.get("value-version"))


__all__ = ["VALUE_MARKER_V1", "VALUE_MARKER_V1_VERSION", "HmacAPI", "LegacyMarkers", "MarkerError", "Markers",
           "TransitMarkers", "same_version", "version_marker"]
