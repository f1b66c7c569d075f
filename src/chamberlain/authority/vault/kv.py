"""KV v2 (``<mount>/data``, ``<mount>/metadata``, ``<mount>/destroy``): the
:class:`~chamberlain.authority.kv.KV` protocol over hvac.

Belongs here: :class:`VaultKV` (read, write with check-and-set, metadata, list, destroy). The mount's own settings
(``<mount>/config``) are :mod:`.mounts`' business. Secret data is read into
:class:`~chamberlain.authority.kv.SecretVersion` (whose repr hides it) and never enters an error message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import hvac.exceptions

from chamberlain.authority.errors import Forbidden, NotFound
from chamberlain.authority.kv import SecretMetadata, SecretVersion, merge_custom_metadata
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area
from chamberlain.clock import parse_rfc3339


def _gone(meta: Mapping[str, Any], now: datetime) -> bool:
    """Destroyed, or deleted. A deletion time in the future is a mount's ``delete_version_after`` that has not
    come yet: that version is still readable."""
    if meta.get("destroyed"):
        return True
    deleted_at = parse_rfc3339(str(meta.get("deletion_time") or ""))
    return deleted_at is not None and deleted_at <= now


def _custom(meta: Mapping[str, Any]) -> dict[str, str] | None:
    """The custom_metadata a data read or write answered (since Vault 1.9, and OpenBao; null when empty). An answer
    without the field (an older server, a proxy) cannot tell: None."""
    if "custom_metadata" not in meta:
        return None
    return {str(k): str(v) for k, v in (meta.get("custom_metadata") or {}).items()}


def _destroyed_version(exc: hvac.exceptions.InvalidPath, asked: int | None = None) -> list[int]:
    """KV v2 answers a read of a destroyed version with 404 and that version's metadata, an absent secret or version
    with 404 and no data (hvac returns only soft-deleted versions): the destroyed version's number, or nothing.
    Only the metadata of the answer is looked at; a destroyed version has no values. ``asked``: the version read
    (None: the latest); an answer naming another one is not believed."""
    answer = exc.json if isinstance(exc.json, dict) else {}
    data = answer.get("data")
    meta = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or meta.get("destroyed") is not True:
        return []
    number = meta.get("version")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        return []
    return [number] if asked is None or number == asked else []


class VaultKV(Area):
    """:class:`~chamberlain.authority.kv.KV` over Vault's KV v2 engine. Every call renews the session when due."""

    def read(self, mount: str, path: str, version: int | None = None) -> SecretVersion | None:
        destroyed: list[int] = []

        def fetch(h: Any) -> Any:
            destroyed.clear()
            try:
                return h.secrets.kv.v2.read_secret_version(path=path, version=version, mount_point=mount,
                                                           raise_on_deleted_version=False)
            except hvac.exceptions.InvalidPath as exc:
                destroyed.extend(_destroyed_version(exc, version))
                raise

        try:
            resp = self._c.call(f"read {mount}/{path}", fetch, fresh=True)
        except NotFound:
            return SecretVersion(destroyed[0], {}, deleted=True) if destroyed else None
        answer = body.data(resp)
        meta = answer.get("metadata") or {}
        values = answer.get("data")
        deleted = _gone(meta, self._c.clock.now())
        if values is None and not deleted:
            return None
        return SecretVersion(int(meta.get("version") or 0), {str(k): str(v) for k, v in (values or {}).items()},
                             deleted=deleted, custom=_custom(meta))

    def write(self, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        return self.write_reporting_custom(mount, path, data, cas)[0]

    def write_reporting_custom(self, mount: str, path: str, data: Mapping[str, str],
                               cas: int) -> tuple[int, dict[str, str] | None]:
        """The write's answer carries the secret's metadata (see :func:`_custom`)."""
        resp = self._c.call(f"write {mount}/{path}", lambda h: h.secrets.kv.v2.create_or_update_secret(
            path=path, secret=dict(data), cas=cas, mount_point=mount), fresh=True)
        answer = body.data(resp)
        return int(answer.get("version") or 0), _custom(answer)

    def read_metadata(self, mount: str, path: str) -> SecretMetadata | None:
        try:
            resp = self._c.call(f"read metadata of {mount}/{path}", lambda h: h.secrets.kv.v2.read_secret_metadata(
                path=path, mount_point=mount), fresh=True)
        except NotFound:
            return None
        d = body.data(resp)
        versions = {int(n): v for n, v in (d.get("versions") or {}).items()}
        return SecretMetadata(
            current_version=int(d.get("current_version") or 0),
            oldest_version=int(d.get("oldest_version") or 0),
            versions={n: _gone(v, self._c.clock.now()) for n, v in versions.items()},
            custom={str(k): str(v) for k, v in (d.get("custom_metadata") or {}).items()},
            cas_required=bool(d.get("cas_required")),
            destroyed=frozenset(n for n, v in versions.items() if v.get("destroyed")),
        )

    def update_custom_metadata(self, mount: str, path: str, custom: Mapping[str, str]) -> None:
        current = self.read_metadata(mount, path)
        if current is None:
            raise NotFound(f"{mount}/{path}: not found (404)")
        merged = merge_custom_metadata(current.custom, custom)
        # The metadata POST replaces custom_metadata as a whole, so send the merged map.
        self._c.call(f"update metadata of {mount}/{path}", lambda h: h.secrets.kv.v2.update_metadata(
            path=path, custom_metadata=merged, mount_point=mount), fresh=True)

    _patch_refused = False  # a policy without the "patch" capability: read and write back instead, from then on

    def patch_custom_metadata(self, mount: str, path: str, update: Mapping[str, str],
                              known: Mapping[str, str]) -> None:
        merge_custom_metadata(known, update)  # the limits and the ESO marker rule, before anything is sent
        if not self._patch_refused:
            try:
                # JSON merge patch: the server merges custom_metadata key by key (other keys, ESO's, stay).
                self._c.call(f"patch metadata of {mount}/{path}", lambda h: h.adapter.request(
                    "PATCH", f"/v1/{mount}/metadata/{path}", json={"custom_metadata": dict(update)},
                    headers={"Content-Type": "application/merge-patch+json"}), fresh=True)
                return
            except Forbidden:
                self._patch_refused = True  # rendered policies grant it; a hand-written one may not
        self.update_custom_metadata(mount, path, update)

    def list(self, mount: str, prefix: str) -> list[str]:
        try:
            resp = self._c.call(f"list {mount}/{prefix}", lambda h: h.secrets.kv.v2.list_secrets(
                path=prefix, mount_point=mount), fresh=True)
        except NotFound:
            return []
        return sorted(body.keys(resp))

    def destroy(self, mount: str, path: str, versions: Sequence[int]) -> None:
        if not versions:
            return
        wanted = sorted({int(v) for v in versions})
        self._c.call(f"destroy versions {wanted} of {mount}/{path}", lambda h: h.secrets.kv.v2.destroy_secret_versions(
            path=path, versions=wanted, mount_point=mount), fresh=True)

    def delete_versions(self, mount: str, path: str, versions: Sequence[int]) -> None:
        if not versions:
            return
        wanted = sorted({int(v) for v in versions})
        self._c.call(f"delete versions {wanted} of {mount}/{path}", lambda h: h.secrets.kv.v2.delete_secret_versions(
            path=path, versions=wanted, mount_point=mount), fresh=True)

    def undelete_versions(self, mount: str, path: str, versions: Sequence[int]) -> None:
        if not versions:
            return
        wanted = sorted({int(v) for v in versions})
        self._c.call(f"undelete versions {wanted} of {mount}/{path}",
                     lambda h: h.secrets.kv.v2.undelete_secret_versions(path=path, versions=wanted, mount_point=mount),
                     fresh=True)

    def delete_all(self, mount: str, path: str) -> None:
        try:
            self._c.call(f"delete metadata and every version of {mount}/{path}",
                         lambda h: h.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=mount),
                         fresh=True)
        except NotFound:
            return


__all__ = ["VaultKV"]
