"""A :class:`~chamberlain.authority.kv.KV` that counts the calls it passes on to another one.

Wraps any KV (the fake, :class:`~chamberlain.authority.vault.VaultKV`): every call of the six protocol methods and
of the optional metadata PATCH is counted by operation name (``read``, ``write``, ``read_metadata``,
``update_custom_metadata``, ``patch_custom_metadata``, ``list``, ``destroy``) and reported to an optional
``on_call`` hook *before* it is delegated, so a call that fails (CAS conflict, Vault down) still counts: it was a
request to the authority. The controller exports the hook as its
"Vault requests" Prometheus counter; the benchmark and the tests read :attr:`CountingKV.counts`.

Counting is thread-safe (a controller drives several runs on worker threads through one KV). Nothing about the
call but its operation name is recorded: no mount, path or data. A call that raises is also reported to an
optional ``on_error`` hook with a reason (:func:`error_reason`; the controller's "Vault request errors" counter).

Boundary: counts protocol calls. A KV implementation may make more than one HTTP request for one call
(:meth:`VaultKV.update_custom_metadata` reads the metadata before it writes it back); those are not seen here.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable, CasConflict, Forbidden, NotFound
from chamberlain.authority.kv import (
    KV,
    MetadataPatch,
    SecretMetadata,
    SecretVersion,
    update_metadata,
    write_and_custom,
)

T = TypeVar("T")

OPERATIONS: tuple[str, ...] = ("read", "write", "read_metadata", "update_custom_metadata", "patch_custom_metadata",
                               "list", "destroy")


def error_reason(exc: BaseException) -> str:
    """A failed call's reason as a metric label: an outage, a refusal, a lost check-and-set race, or other."""
    for kind, reason in ((AuthorityUnavailable, "unavailable"), (Forbidden, "forbidden"), (CasConflict, "conflict"),
                         (NotFound, "not_found"), (AuthorityError, "refused")):
        if isinstance(exc, kind):
            return reason
    return "other"


class CountingKV:
    """``inner`` with every call counted in :attr:`counts` (by operation) and passed to ``on_call`` first."""

    def __init__(self, inner: KV, on_call: Callable[[str], None] | None = None,
                 on_error: Callable[[str, str], None] | None = None) -> None:
        self.inner = inner
        self.on_call = on_call
        self.on_error = on_error
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, operation: str) -> None:
        with self._lock:
            self.counts[operation] += 1
        if self.on_call is not None:
            self.on_call(operation)

    def _failed(self, operation: str, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(operation, error_reason(exc))

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        self._count(operation)
        try:
            return call()
        except Exception as exc:
            self._failed(operation, exc)
            raise

    @property
    def total(self) -> int:
        """Calls of every operation so far."""
        with self._lock:
            return sum(self.counts.values())

    def snapshot(self) -> Counter[str]:
        """A copy of :attr:`counts`, consistent with concurrent callers."""
        with self._lock:
            return Counter(self.counts)

    def reset(self) -> None:
        """Forget the counts so far (the hook is not told: it saw every call already)."""
        with self._lock:
            self.counts.clear()

    # ------------------------------------------------------------------ the KV protocol

    def read(self, mount: str, path: str, version: int | None = None) -> SecretVersion | None:
        return self._call("read", lambda: self.inner.read(mount, path, version))

    def write(self, mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        return self._call("write", lambda: self.inner.write(mount, path, data, cas))

    def write_reporting_custom(self, mount: str, path: str, data: Mapping[str, str],
                               cas: int) -> tuple[int, Mapping[str, str] | None]:
        return self._call("write", lambda: write_and_custom(self.inner, mount, path, data, cas))

    def read_metadata(self, mount: str, path: str) -> SecretMetadata | None:
        return self._call("read_metadata", lambda: self.inner.read_metadata(mount, path))

    def update_custom_metadata(self, mount: str, path: str, custom: Mapping[str, str]) -> None:
        self._call("update_custom_metadata", lambda: self.inner.update_custom_metadata(mount, path, custom))

    def patch_custom_metadata(self, mount: str, path: str, update: Mapping[str, str],
                              known: Mapping[str, str]) -> None:
        """One PATCH when ``inner`` can (else counted as the read-and-write-back it falls back to)."""
        operation = "patch_custom_metadata" if isinstance(self.inner, MetadataPatch) else "update_custom_metadata"
        self._call(operation, lambda: update_metadata(self.inner, mount, path, update, known))

    def list(self, mount: str, prefix: str) -> list[str]:
        return self._call("list", lambda: self.inner.list(mount, prefix))

    def destroy(self, mount: str, path: str, versions: Sequence[int]) -> None:
        self._call("destroy", lambda: self.inner.destroy(mount, path, versions))


__all__ = ["OPERATIONS", "CountingKV", "error_reason"]
