"""Read the authority's KV metadata for adoption: never a secret's data, only whether a path exists, whether its
current version is deleted, and whom chamberlain recorded it for.

Through the :class:`~chamberlain.authority.kv.KV` protocol (list + read_metadata), so the token needs ``list`` and
``read`` on ``<mount>/metadata/*`` and nothing on ``<mount>/data/*``. Bounded: at most :data:`MAX_PATHS` paths are
listed under the environment.
"""

from __future__ import annotations

from collections.abc import Iterable

from chamberlain import wellknown as wk
from chamberlain.adopt.mapping import AuthorityView, PathMeta
from chamberlain.authority.kv import KV, SecretMetadata

MAX_PATHS = 20_000


def path_meta(meta: SecretMetadata) -> PathMeta:
    current = meta.current_version
    deleted = bool(meta.versions.get(current, False)) or current in meta.destroyed
    recorded = meta.custom.get(wk.AUTHORITY) == wk.AUTHORITY_VAULT
    return PathMeta(current, deleted, meta.custom.get(wk.INTENT) or None, recorded)


def listed(kv: KV, mount: str, prefix: str, limit: int = MAX_PATHS) -> list[str]:
    """Every secret path under ``mount/prefix`` (depth first, sorted), at most ``limit``."""
    out: list[str] = []
    stack = [prefix]
    while stack and len(out) < limit:
        folder = stack.pop()
        for key in reversed(kv.list(mount, folder)):
            if key.endswith("/"):
                stack.append(folder + key)
            elif len(out) < limit:
                out.append(folder + key)
    return sorted(out)


def read_authority(kv: KV, paths: Iterable[str], runtime_mount: str, environment: str) -> AuthorityView:
    """The metadata of ``paths`` (``mount/path``) and of every runtime path under the environment."""
    found = [f"{runtime_mount}/{p}" for p in listed(kv, runtime_mount, f"{environment}/")]
    metas: dict[str, PathMeta] = {}
    for full in sorted({*paths, *found}):
        mount, _, path = full.partition("/")
        meta = kv.read_metadata(mount, path) if mount and path else None
        if meta is not None and meta.current_version > 0:
            metas[full] = path_meta(meta)
    return AuthorityView(metas, tuple(found))


__all__ = ["MAX_PATHS", "listed", "path_meta", "read_authority"]
