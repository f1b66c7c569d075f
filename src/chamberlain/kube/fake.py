"""An in-memory :class:`~chamberlain.kube.api.Kube` with resourceVersion semantics, for unit tests."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace

from chamberlain.kube.api import KubeConflict, KubeNotFound, KubeSecret, KubeUnavailable


class FakeKube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], KubeSecret] = {}
        self.namespaces: set[str] = set()
        self.down = False
        self._rv = itertools.count(1)

    def _guard(self) -> None:
        if self.down:
            raise KubeUnavailable("fake API server is down")

    def get_secret(self, namespace: str, name: str) -> KubeSecret | None:
        self._guard()
        return self.secrets.get((namespace, name))

    def create_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> KubeSecret:
        self._guard()
        if (namespace, name) in self.secrets:
            raise KubeConflict(f"Secret {namespace}/{name}: exists")
        secret = KubeSecret(namespace, name, dict(data), dict(labels or {}), dict(annotations or {}),
                            str(next(self._rv)))
        self.secrets[(namespace, name)] = secret
        return secret

    def update_secret(self, secret: KubeSecret) -> KubeSecret:
        self._guard()
        current = self.secrets.get((secret.namespace, secret.name))
        if current is None:
            raise KubeNotFound(f"Secret {secret.namespace}/{secret.name}")
        if secret.resource_version and secret.resource_version != current.resource_version:
            raise KubeConflict(f"Secret {secret.namespace}/{secret.name}: changed since read")
        updated = replace(secret, resource_version=str(next(self._rv)))
        self.secrets[(secret.namespace, secret.name)] = updated
        return updated

    def delete_secret(self, namespace: str, name: str, resource_version: str | None = None) -> None:
        self._guard()
        current = self.secrets.get((namespace, name))
        if current is None:
            return
        if resource_version and resource_version != current.resource_version:
            raise KubeConflict(f"Secret {namespace}/{name}: changed since read")
        del self.secrets[(namespace, name)]

    def ensure_namespace(self, name: str) -> None:
        self._guard()
        self.namespaces.add(name)

    def service_account_token(self, namespace: str, name: str, audiences: list[str], seconds: int = 600) -> str:
        self._guard()
        return f"fake-token-for-{namespace}-{name}"
