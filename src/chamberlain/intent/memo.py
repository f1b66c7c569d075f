"""Results derived from one repository, computed once while a command reads it without changing it.

Several checks (and render) derive the same index from a repository: the intents by name, the declared bootstrap
files. At 10k intents each derivation is a pass over every intent, repeated by every check that needs it. Within
:func:`reading` they are computed once; outside it (a caller that may still change the repository) every call
computes afresh, as before. Values handed out are shared: callers must not change them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_SCOPE: ContextVar[tuple[object, dict[Hashable, Any]] | None] = ContextVar("chamberlain_repo_memo", default=None)


@contextmanager
def reading(repo: object) -> Iterator[None]:
    """Within this block ``repo`` is not changed: what :func:`memo` computes from it is kept until the block ends.
    Nested blocks over the same repository share one memo."""
    current = _SCOPE.get()
    if current is not None and current[0] is repo:
        yield
        return
    token = _SCOPE.set((repo, {}))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def memo(repo: object, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, once per ``key`` within :func:`reading` of this very ``repo``; every time outside it."""
    scope = _SCOPE.get()
    if scope is None or scope[0] is not repo:
        return compute()
    values = scope[1]
    if key in values:
        value: T = values[key]
        return value
    value = values[key] = compute()
    return value


__all__ = ["memo", "reading"]
