"""The ledger's public keys, pinned in Git (``audit/ledger-keys.yaml``): what ``audit verify`` checks signatures with.

Why pinned: a verifier that fetched the public key from the authority at verification time would trust whoever
controls the authority *now*; the pinned file is reviewed and versioned like the rest of the repository, so a
signing key swapped on the server (or a forged ledger signed with another key) fails verification offline.
``chamberlain audit pin`` writes the file from the authority's transit keys; it is not secret (public keys, as
PEM blocks, which the credential scan knows to be public).

Format::

    # comment
    ledgerKeys:
      chamberlain-ledger-dev:        # the transit key (chamberlain-ledger-<env>)
        "1": |                       # its version
          -----BEGIN PUBLIC KEY-----
          ...
          -----END PUBLIC KEY-----
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from chamberlain.errors import UsageError

PINNED_FILE = "audit/ledger-keys.yaml"
MAX_FILE_BYTES = 256 * 1024
_HEADER = ("# Public keys of the authority ledger's signing keys (transit, ed25519), written by `chamberlain audit "
           "pin`.\n# Not secret. `chamberlain audit verify` checks every ledger signature against these; review a "
           "change\n# here like a change of trust: a new key or version means the authority signs with it.\n")


@dataclass(frozen=True)
class PinnedKeys:
    """Transit key name -> version -> Ed25519 public key."""

    keys: Mapping[str, Mapping[int, Ed25519PublicKey]]

    def verify(self, key: str, version: int, signature: bytes, message: bytes) -> str | None:
        public = self.keys.get(key, {}).get(version)
        if public is None:
            return f"signed with {key} version {version}, which is not pinned in {PINNED_FILE}"
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return f"does not verify with the pinned key {key} version {version} (forged or altered)"
        return None

    @classmethod
    def from_transit(cls, raw: Mapping[str, Mapping[int, str]]) -> PinnedKeys:
        """From what the transit API returns: base64 of each raw 32-byte public key."""
        out: dict[str, dict[int, Ed25519PublicKey]] = {}
        for name, versions in raw.items():
            for version, b64 in versions.items():
                try:
                    out.setdefault(name, {})[version] = Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))
                except (ValueError, binascii.Error):
                    raise UsageError(f"transit key {name} version {version}: not an ed25519 public key") from None
        return cls(out)

    def render(self) -> str:
        doc: dict[str, dict[str, str]] = {}
        for name in sorted(self.keys):
            doc[name] = {str(v): self.keys[name][v].public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
                         .decode() for v in sorted(self.keys[name])}

        class _Literal(yaml.SafeDumper):
            pass

        _Literal.add_representer(str, lambda d, s: d.represent_scalar(
            "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))
        return _HEADER + yaml.dump({"ledgerKeys": doc}, Dumper=_Literal, sort_keys=True)


def load(path: Path) -> PinnedKeys:
    """The pinned keys in ``path``; a clear error naming the file (and what is wrong) otherwise."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{where}: no pinned ledger keys; run `chamberlain audit pin` and commit the file "
                         "(signatures are verified against keys pinned in Git, never fetched at verify time)") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot read the pinned ledger keys ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"{where}: {len(raw)} bytes, more than the {MAX_FILE_BYTES} a key file can need")
    try:
        text = raw.decode("utf-8")
        for token in yaml.scan(text):  # linear; aliases could expand without bound, and a key file needs none
            if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
                line = token.start_mark.line + 1
                raise UsageError(f"{where}:{line}: YAML anchors and aliases are not allowed in the pinned keys")
        doc = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{where}{line}: not valid YAML ({type(exc).__name__})") from None
    keys = doc.get("ledgerKeys") if isinstance(doc, dict) else None
    if not isinstance(keys, dict):
        raise UsageError(f"{where}: expected a mapping 'ledgerKeys: {{<transit key>: {{<version>: <PEM>}}}}'")
    out: dict[str, dict[int, Ed25519PublicKey]] = {}
    for name, versions in keys.items():
        if not isinstance(name, str) or not isinstance(versions, dict):
            raise UsageError(f"{where}: ledgerKeys.{name}: expected a mapping of version -> PEM public key")
        for version, pem in versions.items():
            if not str(version).isdigit() or not isinstance(pem, str):
                raise UsageError(f"{where}: ledgerKeys.{name}.{version}: expected a version number and a PEM key")
            try:
                public = load_pem_public_key(pem.encode())
            except ValueError:
                raise UsageError(f"{where}: ledgerKeys.{name}.{version}: not a PEM public key") from None
            if not isinstance(public, Ed25519PublicKey):
                raise UsageError(f"{where}: ledgerKeys.{name}.{version}: not an ed25519 key (the ledger's type)")
            out.setdefault(name, {})[int(version)] = public
    return PinnedKeys(out)


__all__ = ["PINNED_FILE", "PinnedKeys", "load"]
