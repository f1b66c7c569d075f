"""An in-memory :class:`~chamberlain.kube.api.Kube` with resourceVersion semantics, for unit tests."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from chamberlain.kube.api import ApplyOutcome, KubeConflict, KubeNotFound, KubeSecret, KubeUnavailable


class FakeKube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], KubeSecret] = {}
        self.namespaces: set[str] = set()
        self.service_accounts: set[tuple[str, str]] = set()
        self.down = False
        self._rv = itertools.count(1)
        # Server-side applied objects: (apiVersion, kind, namespace, name) -> (manifest, resourceVersion, manager).
        self.applied: dict[tuple[str, str, str, str], tuple[dict[str, Any], str, str]] = {}
        self.apply_log: list[tuple[str, str, str, str]] = []
        self.established: set[str] = set()

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

    def ensure_service_account(self, namespace: str, name: str) -> None:
        self._guard()
        self.service_accounts.add((namespace, name))

    def service_account_token(self, namespace: str, name: str, audiences: list[str], seconds: int = 600) -> str:
        self._guard()
        return f"fake-token-for-{namespace}-{name}"

    def apply_manifest(self, manifest: Mapping[str, Any], field_manager: str) -> ApplyOutcome:
        self._guard()
        meta = manifest["metadata"]
        key = (str(manifest["apiVersion"]), str(manifest["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))
        self.apply_log.append(key)
        body = copy.deepcopy(dict(manifest))
        current = self.applied.get(key)
        if current is not None and current[0] == body:
            return "unchanged"
        self.applied[key] = (body, str(next(self._rv)), field_manager)
        if key[1] == "CustomResourceDefinition":
            self.established.add(key[3])
        if key[1] == "Namespace":
            self.namespaces.add(key[3])
        return "created" if current is None else "configured"

    def wait_crd_established(self, name: str, timeout: float = 60.0) -> None:
        self._guard()
        if name not in self.established:
            raise KubeUnavailable(f"CustomResourceDefinition {name}: not Established after {timeout:.0f}s")
