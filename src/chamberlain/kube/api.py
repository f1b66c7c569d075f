"""The :class:`Kube` protocol: what chamberlain needs from a Kubernetes API server, and its typed errors.

Secret data crosses this boundary decoded (``str``), and only inside :class:`KubeSecret`, whose ``repr`` hides it.
Errors carry kind, namespace, name and status, never bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from chamberlain.errors import ChamberlainError


class KubeError(ChamberlainError):
    """Base of every Kubernetes API error."""


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


class KubeGone(KubeError):
    """410 Gone: the resourceVersion a watch started from is older than the API server keeps; list again."""

    retryable = True


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
    """Secrets, namespaces, ServiceAccounts and tokens. :class:`~chamberlain.kube.client.KubeClient` implements
    every protocol of this module and :class:`~chamberlain.kube.fake.FakeKube` fakes them: both repeat these
    signatures on purpose (that is what a protocol is), so keep each on as few lines as it reads well."""

    def get_secret(self, namespace: str, name: str) -> KubeSecret | None: ...

    def create_secret(self, namespace: str, name: str, data: Mapping[str, str],
                      labels: Mapping[str, str] | None = None,
                      annotations: Mapping[str, str] | None = None) -> KubeSecret:
        """Create; raise :class:`KubeConflict` when it exists."""
        ...

    def update_secret(self, secret: KubeSecret) -> KubeSecret:
        """Replace data, labels and annotations if ``secret.resource_version`` is still current."""
        ...

    def delete_secret(self, namespace: str, name: str, resource_version: str | None = None) -> None:
        """Delete (with a resourceVersion precondition when given); absent is not an error."""
        ...

    def ensure_namespace(self, name: str) -> None: ...

    def ensure_service_account(self, namespace: str, name: str) -> None:
        """Create the ServiceAccount unless it exists (GitOps normally does; a bare lab cluster does not)."""
        ...

    def service_account_token(self, namespace: str, name: str, audiences: list[str], seconds: int = 600) -> str:
        """A short-lived ServiceAccount token from the TokenRequest API."""
        ...


ApplyOutcome = Literal["created", "configured", "unchanged"]


class KubeApply(Protocol):
    """Server-side apply of arbitrary manifests: what a GitOps controller (or chamberlain's lab stand-in for one)
    needs. Manifests may be Secrets: implementations never put a manifest body into an error or a log."""

    def apply_manifest(self, manifest: Mapping[str, Any], field_manager: str) -> ApplyOutcome:
        """Server-side apply (conflicts forced: the caller is the deployment authority). ``unchanged`` when the
        object's resourceVersion did not move, i.e. the apply was a no-op."""
        ...

    def wait_crd_established(self, name: str, timeout: float = 60.0) -> None:
        """Block until the CustomResourceDefinition ``name`` is Established; :class:`KubeUnavailable` on timeout."""
        ...


class KubeNamespaces(Protocol):
    """Namespaces as whole units: what the teardown of an ephemeral environment instance needs (it owns its
    namespaces, so removing one with everything in it is the point)."""

    def list_namespaces(self, selector: str) -> list[str]:
        """Names of the namespaces matching the label selector ``key=value`` (terminating ones included)."""
        ...

    def delete_namespace(self, name: str) -> None:
        """Delete (the namespace controller then removes everything in it); absent is not an error."""
        ...


WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]


@dataclass(frozen=True)
class PodTemplateState:
    """What a rollout restart needs to see of a workload: its pod-template annotations and generation, and the
    workload's own annotations (where another restarter, such as Reloader, is configured)."""

    annotations: Mapping[str, str]
    generation: int
    workload_annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretOwnership:
    """Who a Secret belongs to, read as metadata only: its labels and the (kind, name) of its ownerReferences."""

    labels: Mapping[str, str]
    owners: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OwnerRef:
    """One ownerReference of an object (metadata only)."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = False


@dataclass(frozen=True)
class SecretOwners:
    """A Secret's ownerReferences and the resourceVersion they were read at (the precondition of a change)."""

    owners: tuple[OwnerRef, ...]
    resource_version: str

    @property
    def controller(self) -> OwnerRef | None:
        return next((o for o in self.owners if o.controller), None)


class KubeTakeover(Protocol):
    """What ``adopt takeover`` needs: a Secret's owners read as metadata only (never its data), and its controller
    replaced in one update guarded by the resourceVersion read (so the Secret is never without one)."""

    def get_secret_owners(self, namespace: str, name: str) -> SecretOwners | None: ...

    def set_secret_controller(self, namespace: str, name: str, controller: OwnerRef, resource_version: str) -> None:
        """Replace the controller ownerReference (other owners are kept); :class:`KubeConflict` when the Secret
        changed since ``resource_version``."""
        ...


class KubePropagation(Protocol):
    """What propagation needs: poke ExternalSecrets, read consumer Secrets' metadata (never their data) and patch
    workloads' pod templates. Kept apart from :class:`Kube` so the narrow handover fakes need not grow."""

    def annotate_external_secret(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        """Merge-patch annotations onto an ExternalSecret (``external-secrets.io/v1``); :class:`KubeNotFound`."""
        ...

    def get_external_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ExternalSecret object (spec and status; no secret data lives there), or None when absent."""
        ...

    def list_external_secrets(self, namespace: str) -> list[dict[str, Any]]:
        """Every ExternalSecret of a namespace (``external-secrets.io/v1``; spec and status, no secret data)."""
        ...

    def get_secret_annotations(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The annotations of a Secret, fetched as metadata only (PartialObjectMetadata): its data never crosses
        the wire. None when the Secret does not exist."""
        ...

    def get_secret_ownership(self, namespace: str, name: str) -> SecretOwnership | None:
        """Labels and ownerReferences of a Secret, as metadata only (never its data); None when it does not
        exist."""
        ...

    def get_pod_template(self, kind: WorkloadKind, namespace: str, name: str) -> PodTemplateState:
        """:class:`KubeNotFound` when the workload does not exist."""
        ...

    def patch_pod_template_annotations(
        self, kind: WorkloadKind, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> PodTemplateState:
        """Merge the annotations into ``spec.template.metadata.annotations`` (what ``kubectl rollout restart``
        does); returns the state after the patch."""
        ...


@dataclass(frozen=True)
class CustomResource:
    """A kind of custom object, as the API addresses it (client-go's GroupVersionResource)."""

    group: str
    version: str
    plural: str

    def describe(self, namespace: str | None = None, name: str | None = None) -> str:
        """``plural.group ns/name`` for error messages (names only, never a body)."""
        where = f" {namespace}/{name}" if name else (f" in {namespace}" if namespace else "")
        return f"{self.plural}.{self.group}{where}"


class KubeCustomObjects(Protocol):
    """Custom resources as plain dicts (the annotation trigger reads SecretIntents and clears one annotation).
    Kept apart from :class:`Kube` so existing fakes need not grow."""

    def list_custom_objects(self, resource: CustomResource, namespace: str | None = None,
                            label: str | None = None) -> list[dict[str, Any]]:
        """Every object of the kind (in ``namespace``, or cluster-wide when None); with ``label``, only those
        carrying that label key (a server-side selector)."""
        ...

    def get_custom_object(self, resource: CustomResource, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when absent."""
        ...

    def patch_custom_object_annotations(self, resource: CustomResource, namespace: str, name: str,
                                        annotations: Mapping[str, str | None],
                                        resource_version: str | None = None) -> dict[str, Any]:
        """JSON-merge-patch ``metadata.annotations`` (a None value removes the key). With ``resource_version``, the
        patch applies only if the object is unchanged (:class:`KubeConflict` otherwise); :class:`KubeNotFound`."""
        ...

    def wait_custom_object(self, resource: CustomResource, namespace: str, name: str,
                           until: Callable[[dict[str, Any] | None], bool], timeout: float) -> dict[str, Any] | None:
        """Watch the object until ``until`` holds for it (None: absent) and return it as it was then;
        :class:`KubeUnavailable` when ``timeout`` seconds pass first. A watch, not a polling loop."""
        ...


WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch. A BOOKMARK carries only ``metadata.resourceVersion`` (the point a watch may resume
    from); the other types carry the whole object as it is after the change (DELETED: as it was last)."""

    type: WatchEventType
    object: Mapping[str, Any]

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")

    @property
    def name(self) -> str:
        return str((self.object.get("metadata") or {}).get("name") or "")


@dataclass(frozen=True)
class CustomObjectList:
    """One page of a list of custom objects and the collection's resourceVersion, where a watch of what follows
    starts; ``next_page`` (the API's ``continue`` token) is empty on the last page."""

    items: list[dict[str, Any]]
    resource_version: str
    next_page: str = ""


class KubeWatch(Protocol):
    """List-then-watch of one kind of custom object in one namespace (the informer pattern, without client-go):
    the controller keeps its intents from these. Kept apart so the other fakes need not grow."""

    def list_custom_objects_versioned(self, resource: CustomResource, namespace: str, *, limit: int = 500,
                                      page: str = "", label: str | None = None) -> CustomObjectList:
        """A page of at most ``limit`` objects of the kind in ``namespace`` (``page``: the previous page's
        ``next_page``), with the list's resourceVersion: pages keep a large namespace's answer small in memory.
        With ``label``, only the objects carrying that label key (a server-side selector)."""
        ...

    def watch_custom_objects(self, resource: CustomResource, namespace: str, resource_version: str,
                             timeout_seconds: int, label: str | None = None) -> Iterator[WatchEvent]:
        """The changes after ``resource_version``, with bookmarks (``allowWatchBookmarks``), until the server ends
        the watch after about ``timeout_seconds``. :class:`KubeGone` when ``resource_version`` is too old (410):
        list again; :class:`KubeUnavailable`, :class:`KubeForbidden` as for any call. ``label`` as for the list."""
        ...


@dataclass(frozen=True)
class LeaseRecord:
    """A coordination.k8s.io/v1 Lease as leader election sees it.

    Datetimes are timezone-aware UTC; on the wire they are MicroTime (RFC 3339 with exactly six fractional digits,
    e.g. ``2026-11-28T03:00:00.000000Z``), so they round-trip at microsecond precision."""

    holder: str | None  # spec.holderIdentity
    duration_seconds: int  # spec.leaseDurationSeconds
    acquired: datetime | None  # spec.acquireTime
    renewed: datetime | None  # spec.renewTime
    transitions: int = 0  # spec.leaseTransitions
    resource_version: str = ""  # metadata.resourceVersion (the precondition of replace)


class KubeLeases(Protocol):
    """Leases for leader election: read, create, replace with a resourceVersion precondition."""

    def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        """The Lease, or None when absent."""
        ...

    def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        """:class:`KubeConflict` when it already exists."""
        ...

    def replace_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        """Replace if ``record.resource_version`` is still current; :class:`KubeConflict` otherwise;
        :class:`KubeNotFound` when the Lease is gone."""
        ...


class KubeRunObjects(Protocol):
    """RotationRun custom resources (``chamberlain.dev/v1alpha1``, plural ``rotationruns``, namespaced) and Events."""

    def create_custom_object(self, resource: CustomResource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """:class:`KubeConflict` when it exists. A ``status`` in ``body`` is ignored (status subresource)."""
        ...

    def patch_custom_object_status(self, resource: CustomResource, namespace: str, name: str,
                                   status: Mapping[str, Any]) -> dict[str, Any]:
        """JSON-merge-patch the status subresource (a None value removes the key); :class:`KubeNotFound`."""
        ...

    def delete_custom_object(self, resource: CustomResource, namespace: str, name: str,
                             resource_version: str | None = None) -> None:
        """Delete the object (pruning finished RotationRuns). With ``resource_version``, only if it is unchanged
        (:class:`KubeConflict` otherwise). Absent already: no error."""
        ...

    def create_event(
        self, namespace: str, involved: Mapping[str, str], reason: str, message: str, type_: str = "Normal"
    ) -> None:
        """A core/v1 Event about ``involved`` (``{apiVersion, kind, name, namespace, uid?}``), reportingComponent
        ``chamberlain-controller``. Never fails the caller on 403/409 (and logs nothing secret)."""
        ...


class KubeList(Protocol):
    """Raw list reads of any served kind (``chamberlain adopt`` reads an estate). Secret values never cross: the
    client blanks every ``data``/``stringData`` value of a Secret list before returning, so only key names do."""

    def list_objects(self, path: str) -> list[dict[str, Any]] | None:
        """Every item of the list endpoint ``path`` (e.g. ``/api/v1/secrets``), paged; None when the API server
        does not serve it (404: a CRD that is not installed)."""
        ...


class KubeProbe(Protocol):
    """One raw request whose answer is only its HTTP status: what a permission check (``chamberlain.install``'s
    RBAC matrix) needs to prove a call is refused by the real API server. The body of the answer is never read
    into anything returned or raised, so a request that was (wrongly) allowed leaks nothing."""

    def request_status(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                       content_type: str = "application/json") -> int:
        """The HTTP status the API server answers ``method path`` with (0: unreachable)."""
        ...
