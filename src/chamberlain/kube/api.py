"""The :class:`Kube` protocol: what chamberlain needs from a Kubernetes API server, and its typed errors.

Secret data crosses this boundary decoded (``str``), and only inside :class:`KubeSecret`, whose ``repr`` hides it.
Errors carry kind, namespace, name and status, never bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from chamberlain.errors import ChamberlainError


class KubeError(ChamberlainError):
    retryable = False


class KubeUnavailable(KubeError):
    """The API server is unreachable or answered 5xx/429."""

    retryable = True


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    """The object changed since it was read (resourceVersion mismatch) or already exists."""

    retryable = True


class KubeForbidden(KubeError):
    pass


@dataclass(frozen=True)
class KubeSecret:
    namespace: str
    name: str
    data: Mapping[str, str] = field(repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    type: str = "Opaque"


class Kube(Protocol):
    def get_secret(self, namespace: str, name: str) -> KubeSecret | None: ...

    def create_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> KubeSecret:
        """Create; raise :class:`KubeConflict` when it exists."""
        ...

    def update_secret(self, secret: KubeSecret) -> KubeSecret:
        """Replace data, labels and annotations if ``secret.resource_version`` is still current."""
        ...

    def delete_secret(self, namespace: str, name: str, resource_version: str | None = None) -> None:
        """Delete (with a resourceVersion precondition when given); absent is not an error."""
        ...

    def ensure_namespace(self, name: str) -> None: ...

    def service_account_token(self, namespace: str, name: str, audiences: list[str], seconds: int = 600) -> str:
        """A short-lived ServiceAccount token from the TokenRequest API."""
        ...
