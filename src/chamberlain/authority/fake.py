"""An in-memory KV v2 with Vault's semantics (versions, check-and-set, custom metadata, destroyed versions) for
unit tests.

It also counts calls, so tests can assert how many round-trips a workflow makes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chamberlain.authority.errors import AuthorityUnavailable, CasConflict, NotFound
from chamberlain.authority.kv import SecretMetadata, SecretVersion, check_custom_metadata


@dataclass
class _Secret:
    versions: list[dict[str, str]] = field(default_factory=list)
    custom: dict[str, str] = field(default_factory=dict)
    destroyed: set[int] = field(default_factory=set)


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
        if number in secret.destroyed:
            return SecretVersion(number, {}, deleted=True)  # as Vault answers: no data, metadata says destroyed
        return SecretVersion(number, dict(secret.versions[number - 1]))

    def write(self, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        self._guard("write")
        with self._lock:
            secret = self._store.setdefault((mount, path), _Secret())
            if len(secret.versions) != cas:
                raise CasConflict(f"{mount}/{path}: check-and-set expected version {cas}, "
                                  f"found {len(secret.versions)}")
            secret.versions.append(dict(data))
            return len(secret.versions)

    def read_metadata(self, mount: str, path: str) -> SecretMetadata | None:
        self._guard("read_metadata")
        secret = self._store.get((mount, path))
        if secret is None:
            return None
        n = len(secret.versions)
        return SecretMetadata(n, 1 if n else 0, {i: i in secret.destroyed for i in range(1, n + 1)},
                              dict(secret.custom), destroyed=frozenset(secret.destroyed))

    def update_custom_metadata(self, mount: str, path: str, custom: Mapping[str, str]) -> None:
        self._guard("update_custom_metadata")
        secret = self._store.get((mount, path))
        if secret is None:
            raise NotFound(f"{mount}/{path}")
        with self._lock:
            merged = {**secret.custom, **custom}
            check_custom_metadata(merged)
            secret.custom = merged

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

    # Test helpers: tamper with stored history the way an attacker with raw access could.
    def tamper(self, mount: str, path: str, data: Mapping[str, str]) -> None:
        self._store[(mount, path)].versions[-1] = dict(data)

    def remove(self, mount: str, path: str) -> None:
        del self._store[(mount, path)]
