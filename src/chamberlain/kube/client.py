"""The protocols of :mod:`chamberlain.kube.api` (``Kube``, ``KubeApply``, ``KubeCustomObjects``, ``KubePropagation``,
``KubeLeases``, ``KubeRunObjects``) on the official ``kubernetes`` client.

The only module that imports ``kubernetes``. API errors are mapped once, here, to typed errors by status. Leases
and Events go through :meth:`KubeClient._json` (plain JSON both ways) because of their MicroTime fields.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import kubernetes
from kubernetes.client import ApiException

from chamberlain import unreachable
from chamberlain.clock import Clock, rfc3339
from chamberlain.kube.api import (
    ApplyOutcome,
    CustomObjectList,
    CustomResource,
    KubeConflict,
    KubeError,
    KubeForbidden,
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
from chamberlain.kube.bounded import BoundedApiClient
from chamberlain.kube.kubeconfig import KubeconfigSource, api_client

T = TypeVar("T")

# Ask the API server for an object's metadata only: a Secret's data never leaves the server (propagation reads
# annotations of consumer Secrets and must never see their values).
_PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_MERGE_PATCH = "application/merge-patch+json"
_ESO_GROUP, _ESO_VERSION = "external-secrets.io", "v1"
REPORTING_COMPONENT = "chamberlain-controller"
# Limits the API server enforces on core/v1 Events (k8s.io/kubernetes/pkg/apis/core/validation/events.go).
_EVENT_REASON_MAX, _EVENT_MESSAGE_MAX, _EVENT_NAME_PREFIX_MAX = 128, 1024, 200
# A Lease request slower than this has lost the Lease's purpose (15 s by default): it fails, and the elector acts
# on its last renewal, rather than holding the lock a graceful stop waits for (client-go bounds it the same way).
# Per attempt: urllib3 tries a request up to 4 times when it cannot connect, and a GET also when its answer is
# late; a PATCH whose answer is late fails at once.
_LEASE_TIMEOUT = (5.0, 5.0)


def _map_error(exc: Exception, what: str, server: str = "") -> KubeError:
    """The typed error for an API or transport exception; ``server``: the API server's URL, named (scheme, host
    and port only) when it gave no answer."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        if status == 404:
            return KubeNotFound(f"{what}: not found")
        if status == 409:
            return KubeConflict(f"{what}: conflict (changed since read, or exists)")
        if status in (401, 403):
            return KubeForbidden(f"{what}: forbidden ({status}){_denial(exc)}")
        if status == 429 or status >= 500:
            return KubeUnavailable(f"{what}: API server answered {status}")
        return KubeError(f"{what}: API server answered {status}")
    at = f" at {unreachable.address(server)}" if server else ""
    return KubeUnavailable(f"{what}: API server unreachable{at} ({unreachable.reason(exc)})")


def _denial(exc: ApiException) -> str:
    """RBAC's own words for a 403 (``User "system:serviceaccount:ns:sa" cannot list resource "secrets" in API group
    "" in the namespace "x"``): the verb, resource and identity an operator must grant, never a value (a Status
    body carries no object data)."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {message[:400]}" if isinstance(message, str) and message else ""


def micro_time(t: datetime) -> str:
    """A timezone-aware datetime as Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits (the
    API server refuses a MicroTime without them, which ``datetime.isoformat`` omits for whole seconds)."""
    if t.tzinfo is None:
        raise ValueError("a naive datetime has no place on the wire; pass a timezone-aware UTC datetime")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime | None:
    """A MicroTime (or Time) from the wire as a timezone-aware UTC datetime."""
    if not value:
        return None
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _seg(name: str) -> str:
    """One path segment (a namespace or object name), escaped."""
    return quote(name, safe="")


def _lease_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace, safe='')}/leases"
    return f"{base}/{quote(name, safe='')}" if name else base


def _decode(data: Mapping[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode("utf-8", errors="surrogateescape") for k, v in (data or {}).items()}


def _encode(data: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode("utf-8", errors="surrogateescape")).decode() for k, v in data.items()}


class KubeClient:
    def __init__(self, api_client: Any, *, clock: Clock, instance: str = REPORTING_COMPONENT) -> None:
        self._api = api_client
        self._core_api: Any = None
        self._dyn: Any = None
        # The clock of Event timestamps (the only "now" this module needs); ``instance``: reportingInstance.
        self._clock = clock
        self._instance = instance

    @classmethod
    def from_kubeconfig(cls, path: Path | Sequence[Path] | None = None, context: str | None = None, *,
                        clock: Clock) -> KubeClient:
        """A client for ``context`` of the kubeconfig ``path`` (several files merge like ``KUBECONFIG``); with
        neither, the in-cluster configuration in a pod, else ``~/.kube/config``."""
        source = KubeconfigSource.of(path, context)
        if source is None and Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
            return cls(BoundedApiClient(), clock=clock)
        return cls(api_client(source or KubeconfigSource()), clock=clock)

    def close(self) -> None:
        self._api.close()

    @property
    def _server(self) -> str:
        """The API server's URL, for errors (a stand-in client in a test may have none)."""
        return str(getattr(getattr(self._api, "configuration", None), "host", "") or "")

    @property
    def _core(self) -> Any:
        """The typed CoreV1Api, made on first use: importing it imports a model module per kind it names (about
        20 MiB resident). The controller's calls (consumer looks, TokenRequest, owner patches, workload restarts)
        are raw requests (:meth:`_json`) and never pay it; the CLI's set-up paths do."""
        if self._core_api is None:
            self._core_api = kubernetes.client.CoreV1Api(self._api)
        return self._core_api

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (ApiException, OSError, kubernetes.client.exceptions.OpenApiException) as exc:
            raise _map_error(exc, what, self._server) from None
        except Exception as exc:  # urllib3 connection errors and friends
            if type(exc).__module__.startswith("urllib3"):
                raise _map_error(exc, what, self._server) from None
            raise

    @staticmethod
    def _to_secret(obj: Any) -> KubeSecret:
        meta = obj.metadata
        return KubeSecret(
            namespace=meta.namespace,
            name=meta.name,
            data=_decode(obj.data),
            labels=dict(meta.labels or {}),
            annotations=dict(meta.annotations or {}),
            resource_version=meta.resource_version or "",
            type=obj.type or "Opaque",
        )

    def get_secret(self, namespace: str, name: str) -> KubeSecret | None:
        try:
            obj = self._call(f"Secret {namespace}/{name}", lambda: self._core.read_namespaced_secret(name, namespace))
        except KubeNotFound:
            return None
        return self._to_secret(obj)

    def create_secret(self, namespace: str, name: str, data: Mapping[str, str],
                      labels: Mapping[str, str] | None = None,
                      annotations: Mapping[str, str] | None = None) -> KubeSecret:
        body = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name=name, namespace=namespace, labels=dict(labels or {}), annotations=dict(annotations or {})
            ),
            data=_encode(data),
            type="Opaque",
        )
        obj = self._call(f"Secret {namespace}/{name}", lambda: self._core.create_namespaced_secret(namespace, body))
        return self._to_secret(obj)

    def update_secret(self, secret: KubeSecret) -> KubeSecret:
        body = kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(
                name=secret.name,
                namespace=secret.namespace,
                labels=dict(secret.labels),
                annotations=dict(secret.annotations),
                resource_version=secret.resource_version or None,
            ),
            data=_encode(secret.data),
            type=secret.type,
        )
        obj = self._call(
            f"Secret {secret.namespace}/{secret.name}",
            lambda: self._core.replace_namespaced_secret(secret.name, secret.namespace, body),
        )
        return self._to_secret(obj)

    def delete_secret(self, namespace: str, name: str, resource_version: str | None = None) -> None:
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(resource_version=resource_version)
            if resource_version
            else None
        )
        try:
            self._call(
                f"Secret {namespace}/{name}",
                lambda: self._core.delete_namespaced_secret(name, namespace, body=options),
            )
        except KubeNotFound:
            return

    def ensure_namespace(self, name: str) -> None:
        body = kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name))
        try:
            self._call(f"Namespace {name}", lambda: self._core.create_namespace(body))
        except KubeConflict:
            return

    def list_namespaces(self, selector: str) -> list[str]:
        resp = self._call(f"Namespaces {selector}", lambda: self._core.list_namespace(label_selector=selector))
        return sorted(str(n.metadata.name) for n in resp.items if n.metadata is not None)

    def delete_namespace(self, name: str) -> None:
        try:
            self._call(f"Namespace {name}", lambda: self._core.delete_namespace(name))
        except (KubeNotFound, KubeConflict):  # gone, or already terminating
            return

    def ensure_service_account(self, namespace: str, name: str) -> None:
        body = kubernetes.client.V1ServiceAccount(metadata=kubernetes.client.V1ObjectMeta(name=name))
        try:
            self._call(f"ServiceAccount {namespace}/{name}",
                       lambda: self._core.create_namespaced_service_account(namespace, body))
        except KubeConflict:
            return

    def service_account_token(self, namespace: str, name: str, audiences: list[str], seconds: int = 600) -> str:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": list(audiences), "expirationSeconds": seconds}}
        resp = self._call(f"ServiceAccount {namespace}/{name} token", lambda: self._json(
            "POST", f"/api/v1/namespaces/{_seg(namespace)}/serviceaccounts/{_seg(name)}/token", body))
        token = (resp.get("status") or {}).get("token")
        if not token:
            raise KubeError(f"ServiceAccount {namespace}/{name}: TokenRequest returned no token")
        return str(token)

    # ------------------------------------------------------------------ server-side apply (KubeApply)

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        if self._dyn is None:
            self._dyn = self._call("API discovery", lambda: DynamicClient(self._api))  # type: ignore[no-untyped-call]
        dyn = self._dyn
        try:
            return self._call(f"{kind} ({api_version})", lambda: dyn.resources.get(api_version=api_version, kind=kind))
        except ResourceNotFoundError:
            pass
        # A kind whose CRD was applied moments ago is missing from the (cached) discovery: refresh once.
        self._call("API discovery", dyn.resources.invalidate_cache)
        try:
            return self._call(f"{kind} ({api_version})", lambda: dyn.resources.get(api_version=api_version, kind=kind))
        except ResourceNotFoundError:
            raise KubeNotFound(f"{kind} ({api_version}): the API server does not serve this kind") from None

    def apply_manifest(self, manifest: Mapping[str, Any], field_manager: str) -> ApplyOutcome:
        api_version, kind = str(manifest["apiVersion"]), str(manifest["kind"])
        meta = manifest["metadata"]
        name, namespace = str(meta["name"]), meta.get("namespace")
        what = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
        resource = self._resource(api_version, kind)
        ns = str(namespace) if resource.namespaced and namespace else None
        if resource.namespaced and ns is None:
            raise KubeError(f"{what}: a namespaced kind needs metadata.namespace")
        try:
            before = self._call(what, lambda: self._dyn.get(resource, name=name, namespace=ns))
            before_rv: str | None = before.metadata.resourceVersion
        except KubeNotFound:
            before_rv = None
        after = self._call(what, lambda: self._dyn.server_side_apply(
            resource, body=dict(manifest), name=name, namespace=ns, field_manager=field_manager,
            force_conflicts=True))
        if before_rv is None:
            return "created"
        return "unchanged" if after.metadata.resourceVersion == before_rv else "configured"

    def wait_crd_established(self, name: str, timeout: float = 60.0) -> None:
        api = kubernetes.client.ApiextensionsV1Api(self._api)
        deadline = time.monotonic() + timeout
        while True:
            crd = self._call(f"CustomResourceDefinition {name}", lambda: api.read_custom_resource_definition(name))
            conditions = (crd.status.conditions or []) if crd.status else []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                return
            if time.monotonic() > deadline:
                raise KubeUnavailable(f"CustomResourceDefinition {name}: not Established after {timeout:.0f}s")
            time.sleep(0.2)

    # ------------------------------------------------------------------ custom objects (KubeCustomObjects)

    def _custom(self) -> Any:
        return kubernetes.client.CustomObjectsApi(self._api)

    def list_custom_objects(self, resource: CustomResource, namespace: str | None = None,
                            label: str | None = None) -> list[dict[str, Any]]:
        api, (group, version, plural) = self._custom(), (resource.group, resource.version, resource.plural)
        selector = {"label_selector": label} if label else {}
        if namespace is None:
            resp = self._call(resource.describe(),
                              lambda: api.list_cluster_custom_object(group, version, plural, **selector))
        else:
            resp = self._call(resource.describe(namespace),
                              lambda: api.list_namespaced_custom_object(group, version, namespace, plural, **selector))
        return [dict(item) for item in (resp or {}).get("items", [])]

    def get_custom_object(self, resource: CustomResource, namespace: str, name: str) -> dict[str, Any] | None:
        api, r = self._custom(), resource
        try:
            obj = self._call(r.describe(namespace, name),
                             lambda: api.get_namespaced_custom_object(r.group, r.version, namespace, r.plural, name))
        except KubeNotFound:
            return None
        return dict(obj)

    def patch_custom_object_annotations(self, resource: CustomResource, namespace: str, name: str,
                                        annotations: Mapping[str, str | None],
                                        resource_version: str | None = None) -> dict[str, Any]:
        # A JSON merge patch (the client's default for custom objects): null deletes a key. A resourceVersion in
        # the patch makes the API server refuse it with 409 when the object changed since it was read.
        meta: dict[str, Any] = {"annotations": dict(annotations)}
        if resource_version:
            meta["resourceVersion"] = resource_version
        api, r = self._custom(), resource
        obj = self._call(r.describe(namespace, name), lambda: api.patch_namespaced_custom_object(
            r.group, r.version, namespace, r.plural, name, {"metadata": meta}))
        return dict(obj)

    def wait_custom_object(self, resource: CustomResource, namespace: str, name: str,
                           until: Callable[[dict[str, Any] | None], bool], timeout: float) -> dict[str, Any] | None:
        # List-then-watch on one name (client-go's informer pattern without the cache): the list gives the object
        # and the resourceVersion the watch starts from; a watch that ends (server timeout, 410 Gone) relists.
        api, r = self._custom(), resource
        selector = f"metadata.name={name}"
        deadline = time.monotonic() + timeout
        relists = 0
        while True:
            listed = self._call(r.describe(namespace, name), lambda: api.list_namespaced_custom_object(
                r.group, r.version, namespace, r.plural, field_selector=selector))
            items = (listed or {}).get("items") or []
            current: dict[str, Any] | None = dict(items[0]) if items else None
            if until(current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KubeUnavailable(f"{r.describe(namespace, name)}: not as expected after {timeout:g}s")
            since = ((listed or {}).get("metadata") or {}).get("resourceVersion")
            if relists:  # a watch that ended without news: pause before listing again, never spin
                time.sleep(min(0.5 * relists, 2.0, max(0.0, deadline - time.monotonic())))
            relists += 1
            watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            try:
                # The client-side read timeout bounds a stalled connection; the server ends the watch before it.
                for event in watch.stream(  # type: ignore[no-untyped-call]
                        api.list_namespaced_custom_object, r.group, r.version, namespace, r.plural,
                        field_selector=selector, resource_version=since, timeout_seconds=max(1, int(remaining) + 1),
                        _request_timeout=(10, remaining + 10)):
                    relists = 0
                    kind, obj = event.get("type"), event.get("object")
                    if kind == "ERROR" or not isinstance(obj, Mapping):
                        break  # 410 Gone and friends: relist
                    current = None if kind == "DELETED" else dict(obj)
                    if until(current):
                        return current
                    if time.monotonic() > deadline:
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise _map_error(exc, r.describe(namespace, name) + " watch", self._server) from None
            except Exception as exc:  # urllib3 connection errors while streaming
                if type(exc).__name__ == "ReadTimeoutError":
                    continue  # a stalled watch: list again (the deadline decides when to stop)
                if type(exc).__module__.startswith("urllib3") or isinstance(exc, OSError):
                    raise _map_error(exc, r.describe(namespace, name) + " watch", self._server) from None
                raise
            finally:
                watch.stop()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ watches (KubeWatch)

    def list_custom_objects_versioned(self, resource: CustomResource, namespace: str, *, limit: int = 500,
                                      page: str = "", label: str | None = None) -> CustomObjectList:
        api, r = self._custom(), resource
        more: dict[str, str] = {"_continue": page} if page else {}
        if label:
            more["label_selector"] = label
        resp = self._call(r.describe(namespace), lambda: api.list_namespaced_custom_object(
            r.group, r.version, namespace, r.plural, limit=limit, **more))
        resp = resp or {}
        meta = resp.get("metadata") or {}
        return CustomObjectList([dict(item) for item in resp.get("items") or []],
                                str(meta.get("resourceVersion") or ""), str(meta.get("continue") or ""))

    def watch_custom_objects(self, resource: CustomResource, namespace: str, resource_version: str,
                             timeout_seconds: int, label: str | None = None) -> Iterator[WatchEvent]:
        api, r = self._custom(), resource
        what = r.describe(namespace) + " watch"
        selector = {"label_selector": label} if label else {}
        watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        try:
            # With timeout_seconds the client does not retry a 410 itself: it raises, and the caller relists.
            # The read timeout bounds a connection that went silent (bookmarks arrive about once a minute).
            stream = watch.stream(  # type: ignore[no-untyped-call]
                api.list_namespaced_custom_object, r.group, r.version, namespace, r.plural,
                resource_version=resource_version, allow_watch_bookmarks=True, timeout_seconds=timeout_seconds,
                _request_timeout=(10, timeout_seconds + 90), **selector)
            for event in stream:
                kind, obj = event.get("type"), event.get("raw_object", event.get("object"))
                if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") and isinstance(obj, Mapping):
                    yield WatchEvent(kind, obj)
        except ApiException as exc:
            if exc.status == 410:
                raise KubeGone(f"{what}: resourceVersion {resource_version} is gone (410); list again") from None
            raise _map_error(exc, what, self._server) from None
        except Exception as exc:  # urllib3 connection errors while streaming
            if type(exc).__module__.startswith("urllib3") or isinstance(exc, OSError):
                raise _map_error(exc, what, self._server) from None
            raise
        finally:
            watch.stop()  # type: ignore[no-untyped-call]

    def create_custom_object(self, resource: CustomResource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        api, r = self._custom(), resource
        name = str((body.get("metadata") or {}).get("name", ""))
        obj = self._call(r.describe(namespace, name), lambda: api.create_namespaced_custom_object(
            r.group, r.version, namespace, r.plural, dict(body)))
        return dict(obj)

    def delete_custom_object(self, resource: CustomResource, namespace: str, name: str,
                             resource_version: str | None = None) -> None:
        api, r = self._custom(), resource
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(resource_version=resource_version)
            if resource_version
            else None
        )
        try:
            self._call(r.describe(namespace, name), lambda: api.delete_namespaced_custom_object(
                r.group, r.version, namespace, r.plural, name, body=options))
        except KubeNotFound:
            return

    def patch_custom_object_status(self, resource: CustomResource, namespace: str, name: str,
                                   status: Mapping[str, Any]) -> dict[str, Any]:
        api, r = self._custom(), resource
        body = {"status": dict(status)}
        obj = self._call(r.describe(namespace, name) + " status", lambda: api.patch_namespaced_custom_object_status(
            r.group, r.version, namespace, r.plural, name, body, _content_type=_MERGE_PATCH))
        return dict(obj)

    # ------------------------------------------------------------------ events (KubeRunObjects)

    def create_event(
        self, namespace: str, involved: Mapping[str, str], reason: str, message: str, type_: str = "Normal"
    ) -> None:
        now = self._clock.now()
        stamp = micro_time(now)
        name = str(involved.get("name", "chamberlain"))[:_EVENT_NAME_PREFIX_MAX]
        reference = {k: str(involved[k]) for k in ("apiVersion", "kind", "name", "namespace", "uid") if involved.get(k)}
        reason = reason[:_EVENT_REASON_MAX]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            # The API server appends a random suffix: two events in the same microsecond never collide.
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": reference,
            "reason": reason,
            "message": message[:_EVENT_MESSAGE_MAX],
            "type": type_,
            # eventTime set means the "new" validation rules: reportingComponent, reportingInstance and action are
            # required. The legacy fields stay filled so `kubectl describe` and `kubectl get events` show them.
            "eventTime": stamp,
            "reportingComponent": REPORTING_COMPONENT,
            "reportingInstance": self._instance[:128],
            "action": reason,
            "source": {"component": REPORTING_COMPONENT},
            "firstTimestamp": rfc3339(now),
            "lastTimestamp": rfc3339(now),
            "count": 1,
        }
        try:
            self._call(f"Event about {reference.get('kind', '?')} {namespace}/{name}",
                       lambda: self._json("POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", body))
        except (KubeForbidden, KubeConflict):
            # Events are advisory: a controller without the grant, or a duplicate, never fails the work it reports.
            return

    # ------------------------------------------------------------------ leases (KubeLeases)

    @staticmethod
    def _to_lease(obj: Mapping[str, Any]) -> LeaseRecord:
        spec = obj.get("spec") or {}
        return LeaseRecord(
            holder=spec.get("holderIdentity"),
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquired=_parse_time(spec.get("acquireTime")),
            renewed=_parse_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        )

    @staticmethod
    def _lease_spec(record: LeaseRecord) -> dict[str, Any]:
        """The Lease spec on the wire; absent times and holder are None (a merge patch then clears them)."""
        return {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration_seconds,
            "acquireTime": micro_time(record.acquired) if record.acquired is not None else None,
            "renewTime": micro_time(record.renewed) if record.renewed is not None else None,
            "leaseTransitions": record.transitions,
        }

    def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        try:
            obj = self._call(f"Lease {namespace}/{name}",
                             lambda: self._json("GET", _lease_path(namespace, name), timeout=_LEASE_TIMEOUT))
        except KubeNotFound:
            return None
        return self._to_lease(obj)

    def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        spec = {k: v for k, v in self._lease_spec(record).items() if v is not None}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        obj = self._call(f"Lease {namespace}/{name}",
                         lambda: self._json("POST", _lease_path(namespace), body, timeout=_LEASE_TIMEOUT))
        return self._to_lease(obj)

    def replace_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        if not record.resource_version:
            raise KubeConflict(f"Lease {namespace}/{name}: replace needs the resourceVersion it was read at")
        # A merge patch of the whole spec (None clears a field) rather than a PUT: Leases allow create-on-update, so
        # a PUT would silently recreate a Lease deleted since it was read; a patch answers 404. The
        # resourceVersion in the patch is the precondition: 409 when the Lease changed since it was read.
        patch = {"metadata": {"resourceVersion": record.resource_version}, "spec": self._lease_spec(record)}
        obj = self._call(f"Lease {namespace}/{name}",
                         lambda: self._json("PATCH", _lease_path(namespace, name), patch, _MERGE_PATCH,
                                            timeout=_LEASE_TIMEOUT))
        return self._to_lease(obj)

    def _json(self, method: str, path: str, body: Mapping[str, Any] | None = None,
              content_type: str = "application/json", accept: str = "application/json",
              timeout: tuple[float, float] | None = None) -> dict[str, Any]:
        """One request with a JSON body sent as is and the answer parsed as is. For the kinds with MicroTime
        fields (Lease, Event): the typed API turns a body into its model first, and the model writes datetimes with
        ``isoformat()`` — without the six fractional digits the API server requires for whole seconds."""
        api = self._api
        request = api.param_serialize(
            method, path, header_params={"Accept": accept, "Content-Type": content_type},
            body=dict(body) if body is not None else None, auth_settings=["BearerToken"])
        response = api.call_api(*request, _request_timeout=timeout)
        response.read()
        if not 200 <= response.status <= 299:
            api.response_deserialize(response, {})  # raises the ApiException of that status
            raise ApiException(status=response.status)
        data: dict[str, Any] = json.loads(response.data)
        return data

    # ------------------------------------------------------------------ propagation (KubePropagation)

    def annotate_external_secret(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        custom = kubernetes.client.CustomObjectsApi(self._api)
        body = {"metadata": {"annotations": dict(annotations)}}
        self._call(f"ExternalSecret {namespace}/{name}", lambda: custom.patch_namespaced_custom_object(
            _ESO_GROUP, _ESO_VERSION, namespace, "externalsecrets", name, body, _content_type=_MERGE_PATCH))

    def get_external_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        custom: Any = kubernetes.client.CustomObjectsApi(self._api)
        try:
            obj: dict[str, Any] = self._call(
                f"ExternalSecret {namespace}/{name}", lambda: custom.get_namespaced_custom_object(
                    _ESO_GROUP, _ESO_VERSION, namespace, "externalsecrets", name))
        except KubeNotFound:
            return None
        return obj

    def list_external_secrets(self, namespace: str) -> list[dict[str, Any]]:
        custom: Any = kubernetes.client.CustomObjectsApi(self._api)
        resp = self._call(f"ExternalSecrets in {namespace}", lambda: custom.list_namespaced_custom_object(
            _ESO_GROUP, _ESO_VERSION, namespace, "externalsecrets"))
        return [dict(item) for item in (resp or {}).get("items", [])]

    def get_secret_annotations(self, namespace: str, name: str) -> Mapping[str, str] | None:
        meta = self._secret_metadata(namespace, name)
        return None if meta is None else dict(meta.get("annotations") or {})

    def get_secret_ownership(self, namespace: str, name: str) -> SecretOwnership | None:
        meta = self._secret_metadata(namespace, name)
        if meta is None:
            return None
        owners = tuple((str(o.get("kind", "")), str(o.get("name", "")))
                       for o in meta.get("ownerReferences") or () if isinstance(o, dict))
        return SecretOwnership(dict(meta.get("labels") or {}), owners)

    # ------------------------------------------------------------------ takeover (KubeTakeover)

    def get_secret_owners(self, namespace: str, name: str) -> SecretOwners | None:
        meta = self._secret_metadata(namespace, name)
        if meta is None:
            return None
        owners = tuple(OwnerRef(str(o.get("apiVersion", "")), str(o.get("kind", "")), str(o.get("name", "")),
                                str(o.get("uid", "")), bool(o.get("controller")))
                       for o in meta.get("ownerReferences") or () if isinstance(o, dict))
        return SecretOwners(owners, str(meta.get("resourceVersion", "")))

    def set_secret_controller(self, namespace: str, name: str, controller: OwnerRef, resource_version: str) -> None:
        current = self.get_secret_owners(namespace, name)
        if current is None:
            raise KubeNotFound(f"Secret {namespace}/{name}: not found")
        refs: list[dict[str, object]] = [{"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid}
                for o in current.owners if not o.controller]
        refs.append({"apiVersion": controller.api_version, "kind": controller.kind, "name": controller.name,
                     "uid": controller.uid, "controller": True, "blockOwnerDeletion": True})
        # A JSON merge patch replaces the whole list; the resourceVersion in the body makes it conditional.
        body = {"metadata": {"resourceVersion": resource_version, "ownerReferences": refs}}
        self._call(f"Secret {namespace}/{name} (owner)", lambda: self._json(
            "PATCH", f"/api/v1/namespaces/{_seg(namespace)}/secrets/{_seg(name)}", body, _MERGE_PATCH))

    def _secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = f"/api/v1/namespaces/{_seg(namespace)}/secrets/{_seg(name)}"
        try:
            obj = self._call(f"Secret {namespace}/{name} (metadata)",
                             lambda: self._json("GET", path, accept=_PARTIAL_METADATA))
        except KubeNotFound:
            return None
        if obj.get("kind") != "PartialObjectMetadata" or "data" in obj:
            # Never fall back to a full read: a server that ignores the Accept header would hand us the values.
            raise KubeError(f"Secret {namespace}/{name}: the API server did not answer with metadata only")
        meta = obj.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @staticmethod
    def _workload_path(kind: WorkloadKind, namespace: str, name: str) -> str:
        plural = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}[kind]
        return f"/apis/apps/v1/namespaces/{_seg(namespace)}/{plural}/{_seg(name)}"

    @staticmethod
    def _template_state(obj: Mapping[str, Any]) -> PodTemplateState:
        meta = obj.get("metadata") or {}
        template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        return PodTemplateState(
            annotations=dict(template_meta.get("annotations") or {}),
            generation=int(meta.get("generation") or 0),
            workload_annotations=dict(meta.get("annotations") or {}),
        )

    def get_pod_template(self, kind: WorkloadKind, namespace: str, name: str) -> PodTemplateState:
        path = self._workload_path(kind, namespace, name)
        return self._template_state(self._call(f"{kind} {namespace}/{name}", lambda: self._json("GET", path)))

    def patch_pod_template_annotations(
        self, kind: WorkloadKind, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> PodTemplateState:
        path = self._workload_path(kind, namespace, name)
        body = {"spec": {"template": {"metadata": {"annotations": dict(annotations)}}}}
        obj = self._call(f"{kind} {namespace}/{name}", lambda: self._json("PATCH", path, body, _MERGE_PATCH))
        return self._template_state(obj)

    # ------------------------------------------------------------------ raw lists (KubeList)

    def list_objects(self, path: str) -> list[dict[str, Any]] | None:
        secrets = path.rstrip("/").endswith("/secrets")
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            url = f"{path}?{urlencode({'limit': 500, **({'continue': token} if token else {})})}"
            try:
                page = self._call(f"list {path}", lambda url=url: self._json("GET", url))  # type: ignore[misc]
            except KubeNotFound:
                return None
            for item in page.get("items") or ():
                if isinstance(item, dict):
                    if secrets:  # values are dropped here, at the reader: only key names leave this method
                        for field_ in ("data", "stringData"):
                            if isinstance(item.get(field_), dict):
                                item[field_] = dict.fromkeys(item[field_], "")
                    items.append(item)
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    # ------------------------------------------------------------------ permission probes (KubeProbe)

    def request_status(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                       content_type: str = "application/json") -> int:
        api = self._api
        request = api.param_serialize(
            method, path, header_params={"Accept": "application/json", "Content-Type": content_type},
            body=dict(body) if body is not None else None, auth_settings=["BearerToken"])
        try:
            # A short timeout: a watch that was (wrongly) allowed must not hang the probe.
            response = api.call_api(*request, _request_timeout=(5, 5))
            status = int(response.status)
            response.read()  # drained, never kept
        except Exception as exc:  # urllib3 connection errors and read timeouts
            if type(exc).__module__.startswith("urllib3") or isinstance(exc, OSError):
                return 0
            raise
        return status
