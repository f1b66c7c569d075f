"""The KV v2 protocol chamberlain needs from its runtime authority, and its value types.

Deliberately small: read a version, write with check-and-set, read and patch metadata, list, destroy versions.
Every method takes the mount explicitly (as hvac does with ``mount_point=``), so one client serves every mount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from chamberlain import wellknown as wk
from chamberlain.authority.errors import InvalidRequest, MetadataTooLarge, NotFound


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret. ``data`` is secret: never log, format or compare it outside the workflow."""

    version: int
    data: Mapping[str, str] = field(repr=False)
    deleted: bool = False
    # the secret's custom_metadata, when the read answered it (KV v2's data read does; None: not known)
    custom: Mapping[str, str] | None = None


@dataclass(frozen=True)
class SecretMetadata:
    current_version: int
    oldest_version: int
    versions: Mapping[int, bool]  # version -> destroyed-or-deleted
    custom: Mapping[str, str]
    cas_required: bool = False
    destroyed: frozenset[int] = frozenset()  # versions whose data is destroyed for good


# Vault's documented limits on custom_metadata.
CUSTOM_METADATA_MAX_KEYS = 64
CUSTOM_METADATA_MAX_KEY_BYTES = 128
CUSTOM_METADATA_MAX_VALUE_BYTES = 512


class KV(Protocol):
    def read(self, mount: str, path: str, version: int | None = None) -> SecretVersion | None:
        """The given (default: current) version, or None when the secret does not exist."""
        ...

    def write(self, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        """Write a new version if the current version is ``cas`` (0: only if absent). Return the new version;
        raise :class:`~chamberlain.authority.errors.CasConflict` otherwise."""
        ...

    def read_metadata(self, mount: str, path: str) -> SecretMetadata | None: ...

    def update_custom_metadata(self, mount: str, path: str, custom: Mapping[str, str]) -> None:
        """Merge ``custom`` into the secret's custom_metadata (other keys are kept, ESO's ``managed-by`` marker
        among them; see :func:`merge_custom_metadata`). An absent secret is :class:`NotFound`: metadata is never
        written ahead of a first version, which would make ESO refuse to push to an internal path."""
        ...

    def list(self, mount: str, prefix: str) -> list[str]:
        """Keys directly under ``prefix`` (sub-folders end with ``/``); empty when there is nothing."""
        ...

    def destroy(self, mount: str, path: str, versions: Sequence[int]) -> None:
        """Destroy the data of ``versions`` for good (KV v2 destroy); their metadata stays, marked destroyed, and
        reading them answers a deleted version. Destroying an absent or already destroyed version is a no-op."""
        ...


@runtime_checkable
class MetadataPatch(Protocol):
    """A KV that merges custom_metadata on the server (KV v2 ``PATCH <mount>/metadata/<path>``, JSON merge patch):
    one request instead of a read and a whole-map write, and no lost update of keys someone else changed between
    the two. Optional: callers fall back to :meth:`KV.update_custom_metadata` for a KV without it."""

    def patch_custom_metadata(self, mount: str, path: str, update: Mapping[str, str],
                              known: Mapping[str, str]) -> None:
        """Merge ``update`` into the secret's custom_metadata. ``known`` is the map as the caller last read it:
        Vault's limits and the ESO marker rule (:func:`merge_custom_metadata`) are checked against it before
        anything is sent. An absent secret is :class:`NotFound`, as for :meth:`KV.update_custom_metadata`."""
        ...


@runtime_checkable
class WriteReportsMetadata(Protocol):
    """A KV whose write answers the secret's custom_metadata as that write left it (KV v2's data write does): a
    caller recording metadata right after a write checks it against the map as it is, without reading it again."""

    def write_reporting_custom(self, mount: str, path: str, data: Mapping[str, str],
                               cas: int) -> tuple[int, Mapping[str, str] | None]:
        """:meth:`KV.write`, and the custom_metadata after it (None: this KV cannot tell, e.g. a wrapper's)."""
        ...


def write_and_custom(kv: KV, mount: str, path: str, data: Mapping[str, str],
                     cas: int) -> tuple[int, Mapping[str, str] | None]:
    """:meth:`KV.write`; also the custom_metadata the write left, where ``kv`` answers it (else None)."""
    if isinstance(kv, WriteReportsMetadata):
        return kv.write_reporting_custom(mount, path, data, cas)
    return kv.write(mount, path, data, cas), None


def update_metadata(kv: KV, mount: str, path: str, update: Mapping[str, str],
                    known: Mapping[str, str] | None) -> None:
    """``update`` merged into the secret's custom_metadata: one PATCH where ``kv`` can, else read and write back.
    The PATCH is checked against ``known``, the map as the caller just saw it (a write's answer, a read); None:
    read it now. The servers' PATCH does not count keys, so ``known`` must be fresh, never kept from long ago."""
    if not isinstance(kv, MetadataPatch):
        kv.update_custom_metadata(mount, path, update)
        return
    if known is None:
        meta = kv.read_metadata(mount, path)
        if meta is None:
            raise NotFound(f"{mount}/{path}: not found (404)")
        known = meta.custom
    kv.patch_custom_metadata(mount, path, update, known)


class KVLifecycle(KV, Protocol):
    """The end of a secret's life: soft-delete (undoable), undelete, and removal of every version and the
    metadata. Separate from :class:`KV` because only decommissioning and ephemeral teardown need it."""

    def delete_versions(self, mount: str, path: str, versions: Sequence[int]) -> None:
        """Soft-delete ``versions`` (KV v2 delete): their data is hidden until :meth:`undelete_versions`."""
        ...

    def undelete_versions(self, mount: str, path: str, versions: Sequence[int]) -> None:
        """Restore soft-deleted ``versions`` (destroyed ones stay gone)."""
        ...

    def delete_all(self, mount: str, path: str) -> None:
        """Remove every version and the metadata for good (KV v2 ``metadata`` DELETE); absent is a no-op."""
        ...


def check_custom_metadata(custom: Mapping[str, str]) -> None:
    """Raise :class:`MetadataTooLarge` when ``custom`` would break Vault's custom_metadata limits (checked before
    any write)."""
    if len(custom) > CUSTOM_METADATA_MAX_KEYS:
        raise MetadataTooLarge(f"custom_metadata has {len(custom)} keys; Vault allows {CUSTOM_METADATA_MAX_KEYS}")
    for key, value in custom.items():
        if len(key.encode()) > CUSTOM_METADATA_MAX_KEY_BYTES:
            raise MetadataTooLarge(f"custom_metadata key {key[:40]!r}… is over {CUSTOM_METADATA_MAX_KEY_BYTES} bytes")
        if len(value.encode()) > CUSTOM_METADATA_MAX_VALUE_BYTES:
            raise MetadataTooLarge(f"custom_metadata value of {key!r} is over {CUSTOM_METADATA_MAX_VALUE_BYTES} bytes")


def merge_custom_metadata(current: Mapping[str, str], update: Mapping[str, str]) -> dict[str, str]:
    """The custom_metadata to write back (KV v2's metadata write replaces the whole map): ``current`` with
    ``update`` on top, within Vault's limits. ESO's PushSecret marker (``managed-by: external-secrets``) is not
    chamberlain's to write: an update that would set or change it is refused (:class:`InvalidRequest`), so a
    published path stays one ESO pushes to."""
    marker = wk.ESO_PUSH_MANAGED_BY
    if marker in update and update[marker] != current.get(marker):
        raise InvalidRequest(f"custom_metadata key {marker!r} belongs to ESO's PushSecret; chamberlain never "
                             "writes it")
    merged = {**current, **update}
    check_custom_metadata(merged)
    return merged
