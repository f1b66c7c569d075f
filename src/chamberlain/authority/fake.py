"""An in-memory KV v2 with Vault's semantics (versions, check-and-set, custom metadata, destroyed versions) for
unit tests.

It also counts calls, so tests can assert how many round-trips a workflow makes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable, CasConflict, Forbidden, NotFound
from chamberlain.authority.kv import SecretMetadata, SecretVersion, merge_custom_metadata
from chamberlain.authority.model import TransitKey


@dataclass
class _Secret:
    versions: list[dict[str, str]] = field(default_factory=list)
    custom: dict[str, str] = field(default_factory=dict)
    destroyed: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)  # soft-deleted: hidden, restorable


class FakeKV:
    def __init__(self) -> None:
        self._store: dict[tuple[str, str], _Secret] = {}
        self.calls: Counter[str] = Counter()
        self.down = False  # set True to simulate an unreachable server
        self._lock = threading.Lock()  # check-and-set is atomic on a real server: so here (the controller is threaded)

    def _guard(self, op: str) -> None:
        self.calls[op] += 1
        if self.down:
            raise AuthorityUnavailable(f"fake authority is down ({op})")

    def read(self, mount: str, path: str, version: int | None = None) -> SecretVersion | None:
        self._guard("read")
        secret = self._store.get((mount, path))
        if secret is None or not secret.versions:
            return None
        number = version or len(secret.versions)
        if not 1 <= number <= len(secret.versions):
            return None
        if number in secret.destroyed or number in secret.deleted:
            return SecretVersion(number, {}, deleted=True)  # as Vault answers: no data, metadata says gone
        return SecretVersion(number, dict(secret.versions[number - 1]), custom=dict(secret.custom))

    def write(self, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        self._guard("write")
        with self._lock:
            secret = self._store.setdefault((mount, path), _Secret())
            if len(secret.versions) != cas:
                raise CasConflict(f"{mount}/{path}: check-and-set expected version {cas}, "
                                  f"found {len(secret.versions)}")
            secret.versions.append(dict(data))
            return len(secret.versions)

    def write_reporting_custom(self, mount: str, path: str, data: Mapping[str, str],
                               cas: int) -> tuple[int, dict[str, str]]:
        version = self.write(mount, path, data, cas)
        return version, dict(self._store[(mount, path)].custom)

    def read_metadata(self, mount: str, path: str) -> SecretMetadata | None:
        self._guard("read_metadata")
        secret = self._store.get((mount, path))
        if secret is None:
            return None
        n = len(secret.versions)
        return SecretMetadata(n, 1 if n else 0,
                              {i: i in secret.destroyed or i in secret.deleted for i in range(1, n + 1)},
                              dict(secret.custom), destroyed=frozenset(secret.destroyed))

    def update_custom_metadata(self, mount: str, path: str, custom: Mapping[str, str]) -> None:
        self._guard("update_custom_metadata")
        secret = self._store.get((mount, path))
        if secret is None:
            raise NotFound(f"{mount}/{path}")
        with self._lock:
            secret.custom = merge_custom_metadata(secret.custom, custom)

    def patch_custom_metadata(self, mount: str, path: str, update: Mapping[str, str],
                              known: Mapping[str, str]) -> None:
        self._guard("patch_custom_metadata")
        merge_custom_metadata(known, update)
        secret = self._store.get((mount, path))
        if secret is None:
            raise NotFound(f"{mount}/{path}")
        with self._lock:  # as OpenBao's PATCH: the merged map's key count is not checked (only ``known``'s above)
            secret.custom = {**secret.custom, **update}

    def list(self, mount: str, prefix: str) -> list[str]:
        self._guard("list")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        out: set[str] = set()
        for m, path in self._store:
            if m == mount and path.startswith(prefix):
                rest = path[len(prefix):]
                head, sep, _ = rest.partition("/")
                out.add(head + sep)
        return sorted(out)

    def destroy(self, mount: str, path: str, versions: Sequence[int]) -> None:
        self._guard("destroy")
        secret = self._store.get((mount, path))
        if secret is None:
            return
        with self._lock:
            secret.destroyed |= {v for v in versions if 1 <= v <= len(secret.versions)}
            for v in secret.destroyed:
                secret.versions[v - 1] = {}  # the data is gone for good, not just hidden

    def delete_versions(self, mount: str, path: str, versions: Sequence[int]) -> None:
        self._guard("delete_versions")
        secret = self._store.get((mount, path))
        if secret is not None:
            with self._lock:
                secret.deleted |= {v for v in versions if 1 <= v <= len(secret.versions)}

    def undelete_versions(self, mount: str, path: str, versions: Sequence[int]) -> None:
        self._guard("undelete_versions")
        secret = self._store.get((mount, path))
        if secret is not None:
            with self._lock:
                secret.deleted -= set(versions)

    def delete_all(self, mount: str, path: str) -> None:
        self._guard("delete_all")
        with self._lock:
            self._store.pop((mount, path), None)

    # Test helpers: tamper with stored history the way an attacker with raw access could.
    def tamper(self, mount: str, path: str, data: Mapping[str, str]) -> None:
        self._store[(mount, path)].versions[-1] = dict(data)

    def remove(self, mount: str, path: str) -> None:
        del self._store[(mount, path)]


class FakeTransit:
    """An in-memory transit engine with the real API's shapes: ed25519 keys sign (``vault:v<n>:<base64>``), every
    key has an HMAC key (``hmac``), public keys are readable, private material never leaves. ``allowed`` (None:
    everything) is the set of ``(operation, mount, key)`` a policy grants, to test who may sign what."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], tuple[str, list[tuple[Ed25519PrivateKey | None, bytes]]]] = {}
        self.calls: Counter[str] = Counter()
        self.allowed: set[tuple[str, str, str]] | None = None

    def _guard(self, op: str, mount: str, name: str) -> None:
        self.calls[op] += 1
        if self.allowed is not None and (op, mount, name) not in self.allowed:
            raise Forbidden(f"{op} {mount}/{name}: permission denied (403)")

    def ensure_key(self, mount: str, name: str, key_type: str = "aes256-gcm96") -> TransitKey:
        self._guard("create", mount, name)
        if (mount, name) not in self._keys:
            private = Ed25519PrivateKey.generate() if key_type == "ed25519" else None
            self._keys[(mount, name)] = (key_type, [(private, secrets.token_bytes(32))])
        return self.read_key(mount, name)  # type: ignore[return-value]

    def read_key(self, mount: str, name: str) -> TransitKey | None:
        found = self._keys.get((mount, name))
        return None if found is None else TransitKey(name, found[0], len(found[1]))

    def rotate_key(self, mount: str, name: str) -> TransitKey:
        key_type, versions = self._keys[(mount, name)]
        versions.append((Ed25519PrivateKey.generate() if key_type == "ed25519" else None, secrets.token_bytes(32)))
        return TransitKey(name, key_type, len(versions))

    def _latest(self, mount: str, name: str) -> tuple[int, Ed25519PrivateKey | None, bytes]:
        found = self._keys.get((mount, name))
        if found is None:
            raise NotFound(f"{mount}/keys/{name}: no such key (404)")
        private, hmac_key = found[1][-1]
        return len(found[1]), private, hmac_key

    def sign(self, mount: str, name: str, data: bytes) -> str:
        self._guard("sign", mount, name)
        version, private, _ = self._latest(mount, name)
        if private is None:
            raise AuthorityError(f"{mount}/keys/{name}: key type does not support signing (400)")
        return f"vault:v{version}:{base64.b64encode(private.sign(data)).decode()}"

    def hmac(self, mount: str, name: str, data: bytes) -> str:
        self._guard("hmac", mount, name)
        version, _, key = self._latest(mount, name)
        return f"vault:v{version}:{base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode()}"

    def public_keys(self, mount: str, name: str) -> dict[int, str]:
        found = self._keys.get((mount, name))
        if found is None:
            return {}
        return {i: base64.b64encode(p.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
                for i, (p, _) in enumerate(found[1], start=1) if p is not None}
