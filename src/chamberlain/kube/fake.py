"""An in-memory :class:`~chamberlain.kube.api.Kube` with resourceVersion semantics, for unit tests.

It also stands in for :class:`~chamberlain.kube.api.KubeLeases` and :class:`~chamberlain.kube.api.KubeRunObjects`
the way the real API server behaves: every write bumps the resourceVersion, a stale resourceVersion is a conflict,
custom objects created with a status lose it (status subresource), and status patches are JSON merge patches.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any

from chamberlain.kube.api import (
    ApplyOutcome,
    CustomObjectList,
    CustomResource,
    KubeConflict,
    KubeError,
    KubeGone,
    KubeNotFound,
    KubeSecret,
    KubeUnavailable,
    LeaseRecord,
    OwnerRef,
    PodTemplateState,
    SecretOwners,
    SecretOwnership,
    WatchEvent,
    WorkloadKind,
)


@dataclass(frozen=True)
class FakeEvent:
    """An Event as :class:`FakeKube` recorded it (what the real client would send, minus timestamps)."""

    namespace: str
    involved: Mapping[str, str]
    reason: str
    message: str
    type: str
    reporting_component: str = "chamberlain-controller"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, None removes a key, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _key(resource: CustomResource, namespace: str, name: str) -> tuple[str, str, str, str, str]:
    return resource.group, resource.version, resource.plural, namespace, name


class FakeKube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], KubeSecret] = {}
        self.secret_owners: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}  # (kind, name) ownerReferences
        self.secret_owner_refs: dict[tuple[str, str], tuple[OwnerRef, ...]] = {}  # full references (KubeTakeover)
        self.namespaces: set[str] = set()
        self.service_accounts: set[tuple[str, str]] = set()
        self.down = False
        self._rv = itertools.count(1)
        # Server-side applied objects: (apiVersion, kind, namespace, name) -> (manifest, resourceVersion, manager).
        self.applied: dict[tuple[str, str, str, str], tuple[dict[str, Any], str, str]] = {}
        self.apply_log: list[tuple[str, str, str, str]] = []
        self.established: set[str] = set()
        # Propagation: ExternalSecrets as plain objects, workloads as their pod template state, and every patch
        # (so tests can count restarts and force-syncs).
        self.external_secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.workloads: dict[tuple[str, str, str], PodTemplateState] = {}
        self.workload_patches: list[tuple[str, str, str]] = []
        self.secret_annotation_reads = 0
        # Custom objects: (group, version, plural, namespace, name) -> object (with metadata.resourceVersion).
        self.custom_objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        # RotationRuns and Events (KubeRunObjects): what was created and patched, in order, for assertions.
        self.created_custom_objects: list[dict[str, Any]] = []
        self.status_patches: list[tuple[str, str, str, dict[str, Any]]] = []  # (plural, namespace, name, status)
        self.deleted_custom_objects: list[tuple[str, str, str]] = []  # (plural, namespace, name)
        self.events: list[FakeEvent] = []
        self.events_forbidden = False  # simulate a controller without the grant: events are dropped silently
        self.dropped_events = 0
        # Leases (KubeLeases): (namespace, name) -> record as stored (with its resourceVersion).
        self.leases: dict[tuple[str, str], LeaseRecord] = {}
        # What "controllers" do while someone waits (wait_custom_object): each step mutates the fake, in order.
        self.on_wait: list[Callable[[FakeKube], bool]] = []
        # Watches (KubeWatch): every change of a custom object, in order, as a watch would see it; a watch from a
        # resourceVersion below ``compacted`` is 410 Gone (etcd compacted what it needs), like the API server.
        self.custom_changes: list[tuple[tuple[str, str, str, str], WatchEvent]] = []
        self.record_changes = True  # False: no change log (a benchmark seeding 10k objects it never watches)
        self.compacted = 0
        self.watches = 0  # watch calls, for assertions
        self.lists = 0  # versioned (paged) list calls, for assertions

    def _guard(self) -> None:
        if self.down:
            raise KubeUnavailable("fake API server is down")

    def get_secret(self, namespace: str, name: str) -> KubeSecret | None:
        self._guard()
        return self.secrets.get((namespace, name))

    def create_secret(self, namespace: str, name: str, data: Mapping[str, str],
                      labels: Mapping[str, str] | None = None,
                      annotations: Mapping[str, str] | None = None) -> KubeSecret:
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

    def list_namespaces(self, selector: str) -> list[str]:
        """Only the equality selector ``key=value``, matched against applied Namespaces' labels."""
        self._guard()
        key, _, value = selector.partition("=")
        if key == "kubernetes.io/metadata.name":  # the API server puts it on every namespace
            return [value] if value in self.namespaces else []
        return sorted(k[3] for k, (body, _rv, _m) in self.applied.items() if k[1] == "Namespace"
                      and ((body.get("metadata") or {}).get("labels") or {}).get(key) == value)

    def delete_namespace(self, name: str) -> None:
        """At once what the namespace controller does in time: everything in it goes with it."""
        self._guard()
        self.namespaces.discard(name)
        for key in [k for k in self.applied if k[2] == name or (k[1] == "Namespace" and k[3] == name)]:
            del self.applied[key]
        for ckey in [k for k in self.custom_objects if k[3] == name]:
            del self.custom_objects[ckey]
        for skey in [k for k in self.secrets if k[0] == name]:
            del self.secrets[skey]
        self.service_accounts = {sa for sa in self.service_accounts if sa[0] != name}

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

    # ------------------------------------------------------------------ custom objects (KubeCustomObjects)

    def add_custom_object(self, resource: CustomResource, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Test helper: store ``obj`` as the API server would (a uid and a resourceVersion added)."""
        body = copy.deepcopy(dict(obj))
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta["resourceVersion"] = str(next(self._rv))
        key = _key(resource, str(meta.get("namespace") or ""), str(meta["name"]))
        before = self.custom_objects.get(key)
        meta.setdefault("generation", 1)
        if before is not None:  # the API server moves a custom object's generation with every spec change
            generation = int(before["metadata"].get("generation") or 1)
            meta["generation"] = generation + 1 if before.get("spec") != body.get("spec") else generation
        self._changed("MODIFIED" if key in self.custom_objects else "ADDED", key, body)
        self.custom_objects[key] = body
        return copy.deepcopy(body)

    def add_bookmark(self, resource: CustomResource, namespace: str) -> str:
        """Test helper: the API server's periodic BOOKMARK (a resourceVersion and nothing else)."""
        rv = str(next(self._rv))
        key = (resource.group, resource.version, resource.plural, namespace)
        self.custom_changes.append((key, WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": rv}})))
        return rv

    def _changed(self, kind: str, key: tuple[str, str, str, str, str], obj: Mapping[str, Any]) -> None:
        if self.record_changes and kind in ("ADDED", "MODIFIED", "DELETED"):
            self.custom_changes.append((key[:4], WatchEvent(kind, copy.deepcopy(dict(obj)))))  # type: ignore[arg-type]

    def _last_version(self) -> int:
        return max((int(e.resource_version) for _, e in self.custom_changes), default=0)

    def list_custom_objects_versioned(self, resource: CustomResource, namespace: str, *, limit: int = 500,
                                      page: str = "", label: str | None = None) -> CustomObjectList:
        self._guard()
        self.lists += 1
        kind = (resource.group, resource.version, resource.plural)
        keys = sorted(k for k in self.custom_objects if k[:3] == kind and k[3] == namespace  # stable pages
                      and (label is None or label in _labels(self.custom_objects[k])))
        start = int(page or 0)
        end = start + limit
        return CustomObjectList([copy.deepcopy(self.custom_objects[k]) for k in keys[start:end]],
                                str(self._last_version()), str(end) if end < len(keys) else "")

    def watch_custom_objects(self, resource: CustomResource, namespace: str, resource_version: str,
                             timeout_seconds: int, label: str | None = None) -> Iterator[WatchEvent]:
        """The changes recorded after ``resource_version``, then the watch ends (no time passes in a fake)."""
        self._guard()
        self.watches += 1
        since = int(resource_version or 0)
        if since < self.compacted:
            raise KubeGone(f"{resource.describe(namespace)} watch: resourceVersion {since} is gone (410)")
        key = (resource.group, resource.version, resource.plural, namespace)
        for k, event in list(self.custom_changes):
            if k == key and int(event.resource_version) > since and (
                    label is None or event.type == "BOOKMARK" or label in _labels(event.object)):
                yield event

    def list_custom_objects(self, resource: CustomResource, namespace: str | None = None,
                            label: str | None = None) -> list[dict[str, Any]]:
        self._guard()
        kind = (resource.group, resource.version, resource.plural)
        return [copy.deepcopy(o) for (g, v, p, ns, _), o in sorted(self.custom_objects.items())
                if (g, v, p) == kind and (namespace is None or ns == namespace)
                and (label is None or label in ((o.get("metadata") or {}).get("labels") or {}))]

    def get_custom_object(self, resource: CustomResource, namespace: str, name: str) -> dict[str, Any] | None:
        self._guard()
        obj = self.custom_objects.get(_key(resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def patch_custom_object_annotations(self, resource: CustomResource, namespace: str, name: str,
                                        annotations: Mapping[str, str | None],
                                        resource_version: str | None = None) -> dict[str, Any]:
        obj = self._existing_custom_object(resource, namespace, name)
        meta = obj.setdefault("metadata", {})
        if resource_version and resource_version != meta.get("resourceVersion"):
            raise KubeConflict(f"{resource.describe(namespace, name)}: changed since read")
        current = meta.setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        meta["resourceVersion"] = str(next(self._rv))
        self._changed("MODIFIED", _key(resource, namespace, name), obj)
        return copy.deepcopy(obj)

    def wait_custom_object(self, resource: CustomResource, namespace: str, name: str,
                           until: Callable[[dict[str, Any] | None], bool], timeout: float) -> dict[str, Any] | None:
        """No time passes in a fake: each call of :attr:`on_wait` (a test's script of what controllers do next)
        is one watch event; when the script has nothing left and ``until`` still fails, the wait times out."""
        while True:
            current = self.get_custom_object(resource, namespace, name)
            if until(current):
                return current
            if not self.on_wait or not self.on_wait.pop(0)(self):
                raise KubeUnavailable(f"{resource.describe(namespace, name)}: not as expected after {timeout:.0f}s")

    def _existing_custom_object(self, resource: CustomResource, namespace: str, name: str) -> dict[str, Any]:
        self._guard()
        obj = self.custom_objects.get(_key(resource, namespace, name))
        if obj is None:
            raise KubeNotFound(resource.describe(namespace, name))
        return obj

    def create_custom_object(self, resource: CustomResource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._guard()
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        name = str(meta.get("name") or "")
        if not name:
            raise KubeError(f"{resource.describe(namespace)}: metadata.name is required")
        if meta.get("namespace", namespace) != namespace:
            raise KubeError(f"{resource.describe(namespace, name)}: metadata.namespace does not match the request")
        key = _key(resource, namespace, name)
        if key in self.custom_objects:
            raise KubeConflict(f"{resource.describe(namespace, name)}: exists")
        obj.pop("status", None)  # the status subresource: create ignores it, like the API server
        meta.update(namespace=namespace, uid=f"uid-{name}", generation=1, resourceVersion=str(next(self._rv)))
        self.custom_objects[key] = obj
        self._changed("ADDED", key, obj)
        self.created_custom_objects.append(copy.deepcopy(obj))
        return copy.deepcopy(obj)

    def delete_custom_object(self, resource: CustomResource, namespace: str, name: str,
                             resource_version: str | None = None) -> None:
        """Delete as the API server would: the precondition checked, a DELETED event carrying the object at a
        new version for watchers."""
        self._guard()
        for applied in [k for k in self.applied if k[0] == f"{resource.group}/{resource.version}"
                        and k[1].lower() + "s" == resource.plural and k[2:] == (namespace, name)]:
            del self.applied[applied]  # applied server-side (env up), deleted like any custom object
        key = _key(resource, namespace, name)
        obj = self.custom_objects.get(key)
        if obj is None:
            return
        if resource_version and resource_version != obj["metadata"].get("resourceVersion"):
            raise KubeConflict(f"{resource.describe(namespace, name)}: changed since read")
        del self.custom_objects[key]
        self.deleted_custom_objects.append((resource.plural, namespace, name))
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self._changed("DELETED", key, obj)

    def patch_custom_object_status(self, resource: CustomResource, namespace: str, name: str,
                                   status: Mapping[str, Any]) -> dict[str, Any]:
        obj = self._existing_custom_object(resource, namespace, name)
        patched = merge_patch(obj.get("status") or {}, dict(status))
        if patched != obj.get("status"):  # the API server does not bump the resourceVersion of a no-op patch
            obj["status"] = patched
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            self._changed("MODIFIED", _key(resource, namespace, name), obj)
        self.status_patches.append((resource.plural, namespace, name, copy.deepcopy(dict(status))))
        return copy.deepcopy(obj)

    # ------------------------------------------------------------------ events (KubeRunObjects)

    def create_event(
        self, namespace: str, involved: Mapping[str, str], reason: str, message: str, type_: str = "Normal"
    ) -> None:
        self._guard()
        if self.events_forbidden:
            self.dropped_events += 1
            return
        self.events.append(FakeEvent(namespace, dict(involved), reason, message, type_))

    # ------------------------------------------------------------------ leases (KubeLeases)

    def _store_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        stored = replace(
            record,
            acquired=record.acquired.astimezone(UTC) if record.acquired is not None else None,
            renewed=record.renewed.astimezone(UTC) if record.renewed is not None else None,
            resource_version=str(next(self._rv)),
        )
        self.leases[(namespace, name)] = stored
        return stored

    def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        self._guard()
        return self.leases.get((namespace, name))

    def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self._guard()
        if (namespace, name) in self.leases:
            raise KubeConflict(f"Lease {namespace}/{name}: exists")
        return self._store_lease(namespace, name, record)

    def replace_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self._guard()
        current = self.leases.get((namespace, name))
        if not record.resource_version:
            raise KubeConflict(f"Lease {namespace}/{name}: replace needs the resourceVersion it was read at")
        if current is None:
            raise KubeNotFound(f"Lease {namespace}/{name}")
        if record.resource_version != current.resource_version:
            raise KubeConflict(f"Lease {namespace}/{name}: changed since read")
        return self._store_lease(namespace, name, record)

    # ------------------------------------------------------------------ propagation (KubePropagation)

    def annotate_external_secret(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self._guard()
        obj = self.external_secrets.get((namespace, name))
        if obj is None:
            raise KubeNotFound(f"ExternalSecret {namespace}/{name}")
        obj.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)

    def get_external_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self._guard()
        obj = self.external_secrets.get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_external_secrets(self, namespace: str) -> list[dict[str, Any]]:
        self._guard()
        return [copy.deepcopy(o) for (ns, _), o in sorted(self.external_secrets.items()) if ns == namespace]

    def get_secret_annotations(self, namespace: str, name: str) -> Mapping[str, str] | None:
        self._guard()
        self.secret_annotation_reads += 1
        secret = self.secrets.get((namespace, name))
        return dict(secret.annotations) if secret is not None else None

    def get_secret_owners(self, namespace: str, name: str) -> SecretOwners | None:
        self._guard()
        secret = self.secrets.get((namespace, name))
        if secret is None:
            return None
        return SecretOwners(self.secret_owner_refs.get((namespace, name), ()), secret.resource_version)

    def set_secret_controller(self, namespace: str, name: str, controller: OwnerRef, resource_version: str) -> None:
        self._guard()
        secret = self.secrets.get((namespace, name))
        if secret is None:
            raise KubeNotFound(f"Secret {namespace}/{name}: not found")
        if secret.resource_version != resource_version:
            raise KubeConflict(f"Secret {namespace}/{name}: changed since read")
        kept = tuple(o for o in self.secret_owner_refs.get((namespace, name), ()) if not o.controller)
        self.secret_owner_refs[(namespace, name)] = (*kept, controller)
        self.secrets[(namespace, name)] = replace(secret, resource_version=str(next(self._rv)))

    def get_secret_ownership(self, namespace: str, name: str) -> SecretOwnership | None:
        self._guard()
        secret = self.secrets.get((namespace, name))
        if secret is None:
            return None
        return SecretOwnership(dict(secret.labels), self.secret_owners.get((namespace, name), ()))

    def get_pod_template(self, kind: WorkloadKind, namespace: str, name: str) -> PodTemplateState:
        self._guard()
        state = self.workloads.get((kind, namespace, name))
        if state is None:
            raise KubeNotFound(f"{kind} {namespace}/{name}")
        return state

    def patch_pod_template_annotations(
        self, kind: WorkloadKind, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> PodTemplateState:
        state = self.get_pod_template(kind, namespace, name)
        merged = {**state.annotations, **annotations}
        # Like the API server: the generation moves only when the spec really changes.
        generation = state.generation + (1 if merged != dict(state.annotations) else 0)
        new = PodTemplateState(annotations=merged, generation=generation,
                               workload_annotations=state.workload_annotations)
        self.workloads[(kind, namespace, name)] = new
        self.workload_patches.append((kind, namespace, name))
        return new
