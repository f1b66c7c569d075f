"""The controller's entry point: the scope it acts on, the running controller, and a signed webhook request.

``chamberlain controller run`` and the demo both start the controller through :func:`start`: the orchestrator's
authority session (a Kubernetes login as the cluster's orchestrator, renewed, or a token file), the Kubernetes
client, :func:`chamberlain.controller.app.wire` and :class:`~chamberlain.controller.app.ControllerApp` (the loop on
a thread, the webhook endpoint, ``/metrics``). :func:`run` adds loading the scope in a short-lived child process and
running until stopped. :func:`request_rotation` is what a CI job or an alert (``controller webhook``) sends.

Not here: signal handling and log configuration (the entry point's), the loop itself (:mod:`chamberlain.controller`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from chamberlain import unreachable
from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from chamberlain.clock import Clock
    from chamberlain.controller.app import ControllerApp
    from chamberlain.controller.loop import Logger, Scope
    from chamberlain.service.context import Servers
    from chamberlain.triggers import WebhookKey, WebhookKeys

class LoadFailed(ChamberlainError):
    """Loading the repository in the loader process failed; carries that error's message and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------------------ the scope


def load_scope(path: str | Path, environment: str | None, cluster: str | None) -> Scope:
    """The scope ``controller run`` acts on, and nothing else of the repository.

    The controller runs for days; the loaded Repository (every document's raw data and text, every model) is only
    needed to validate and to place the intents. Loading it in this process would leave its peak as the process's
    resident size for good (CPython keeps freed arenas that still hold one live object, and the kept models are
    scattered among them), so a short-lived child process (fork, before any thread starts) loads, validates and
    places, and sends back only the scope."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    loader = ctx.Process(target=_load_in_child, args=(send, str(path), environment, cluster),
                         name="chamberlain-loader")
    loader.start()
    send.close()
    try:
        status, payload = receive.recv()
    except EOFError:
        raise ChamberlainError("loading the intent repository failed: the loader process ended early") from None
    finally:
        receive.close()
        loader.join()
    if status == "error":
        message, code = payload
        raise LoadFailed(message, code)
    return cast("Scope", payload)


def _load_in_child(send: Any, path: str, environment: str | None, cluster: str | None) -> None:
    try:
        result: tuple[str, Any] = ("ok", scope_from_repository(path, environment, cluster))
    except ChamberlainError as exc:  # our messages are fit to show (findings name files and lines, no values)
        result = ("error", (str(exc), exc.exit_code))
    except Exception as exc:  # a foreign exception's text is unvetted: its type only
        result = ("error", (f"internal error while loading ({type(exc).__name__})", 1))
    send.send(result)
    send.close()


def scope_from_repository(path: str | Path, environment: str | None, cluster: str | None) -> Scope:
    """Load and validate; place the intents. The scope keeps the Platform, the intents placed in the cluster and
    environment (runtime mount), and the admin intents they name (``target.postgres.adminIntent``, found by
    ``rotation.manual.admin_source``): the other intents are never looked at again."""
    from chamberlain.controller.loop import scope_of
    from chamberlain.controller.scope import published_here
    from chamberlain.handover import select_cluster

    repo, platform = load_platform(path)
    chosen, envs = select_cluster(platform, environment, cluster)
    if len(envs) != 1:
        raise UsageError(f"cluster {chosen} hosts environments {', '.join(envs)}; pass --environment")
    every = {i.obj.metadata.name: i.obj for i in repo.intents}
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    del repo  # from here on only the models are needed
    placed = scope_of(platform, every, envs[0], chosen).placed
    needed = {name: every[name] for name in set(placed) | published_here(platform, every, envs[0], chosen)}
    for name in placed:
        target = every[name].spec.target
        if target is not None and target.postgres.admin_intent in every:
            needed.setdefault(target.postgres.admin_intent, every[target.postgres.admin_intent])
    return scope_of(platform, needed, envs[0], chosen, policies=policies)


# ------------------------------------------------------------------------------------------------ running


@dataclass(frozen=True)
class ControllerOptions:
    """How the controller runs: its name in the Lease, cadences and timeouts, and where it serves."""

    identity: str | None = None  # default: host name and pid
    lease_name: str | None = None  # default: chamberlain.controller.app.DEFAULT_LEASE
    lease_seconds: int = 15
    interval: float = 1.0  # seconds between ticks
    evaluate_every: float = 30.0  # seconds between time-trigger evaluations
    metadata_reads_per_second: float | None = None  # the time trigger's re-reads (None: the controller's default)
    propagation_timeout: float = 120.0
    poll: float | None = None  # seconds between polls of consumer Secrets (default: the controller's)
    keep_runs: int | None = 5  # finished RotationRun objects kept per secret (None: never pruned)
    failure_backoff_cap: float | None = None  # seconds; the time trigger's back-off after failed runs (None: 1 h)
    request_retention: float | None = None  # seconds a settled webhook request object is kept (None: 1 day)
    external_quiet: float | None = None  # seconds a producer's pushes must be quiet (None: the controller's, 1 s)
    ack_deadline: float = 3600.0  # seconds past maxOverlap revokeOld waits for follower clusters before alerting
    metrics_address: tuple[str, int] | None = None  # (host, port); port 0 picks a free one
    webhook_address: tuple[str, int] | None = None
    webhook_key: WebhookKey | WebhookKeys | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.identity or f"{socket.gethostname()}-{os.getpid()}"


def config_options(options: ControllerOptions) -> dict[str, Any]:
    """The :class:`~chamberlain.controller.config.ControllerConfig` fields ``options`` set (``wire`` takes them)."""
    from chamberlain.rotation.policy import FailureBackoff

    tuning: dict[str, Any] = {"propagation_timeout": options.propagation_timeout,
                              "evaluate_every": options.evaluate_every, "keep_runs": options.keep_runs,
                              "ack_deadline": options.ack_deadline}
    if options.poll is not None:
        tuning["poll"] = options.poll
    if options.metadata_reads_per_second is not None:
        tuning["metadata_reads_per_second"] = options.metadata_reads_per_second
    if options.failure_backoff_cap is not None:
        cap = timedelta(seconds=options.failure_backoff_cap)
        tuning["failure_backoff"] = FailureBackoff(base=min(FailureBackoff().base, cap), cap=cap)
    if options.request_retention is not None:
        tuning["request_retention"] = options.request_retention
    if options.external_quiet is not None:
        tuning["external_quiet"] = options.external_quiet
    return tuning


def start(scope: Scope, servers: Servers, clock: Clock, options: ControllerOptions, *, log: Logger | None = None,
          stop: threading.Event | None = None, reconcile: bool = False, objects: Any = None,
          settle_heap: bool = False) -> ControllerApp:
    """Log in as the scope's orchestrator, wire the controller and start it (loop, webhook, metrics). ``stop``
    ends it when set; :meth:`ControllerApp.stop` stops it gracefully. ``settle_heap``: this process is the
    controller's own (``controller run``), whose settled state may be frozen out of the collector (:mod:`.heap`
    of the controller); never in a process that does other work (the demo, tests)."""
    from chamberlain.controller.app import DEFAULT_LEASE, ControllerApp, wire

    kube = servers.kube()  # the real client: leases, run objects and events too
    client = servers.orchestrator(scope.platform, scope.cluster)
    tuning = config_options(options)
    controller = wire(scope, client, kube, clock, identity=options.name, lease_name=options.lease_name or DEFAULT_LEASE,
                      lease_seconds=options.lease_seconds, log=log, reconcile=reconcile, objects=objects, **tuning)
    app = ControllerApp(controller, interval=options.interval, metrics_address=options.metrics_address,
                        webhook_address=options.webhook_address, webhook_key=options.webhook_key,
                        stop_event=stop or threading.Event(), settle_heap=settle_heap)
    app.start()
    return app


def run(scope: Scope, servers: Servers, clock: Clock, options: ControllerOptions, *, log: Logger,
        stop: threading.Event | None = None, max_seconds: float | None = None) -> None:
    """``controller run PATH``: start on the scope :func:`load_scope` loaded (before any thread started), run until
    ``stop`` is set (or ``max_seconds`` passed), then stop gracefully: the Lease is released, unfinished runs stay
    recorded."""
    app = start(scope, servers, clock, options, log=log, stop=stop, settle_heap=True)
    log.info("controller started", identity=options.name, environment=scope.environment, cluster=scope.cluster,
             secrets=len(scope.placed), metrics=app.metrics_url, webhook=app.webhook.url if app.webhook else None)
    app.wait(max_seconds)
    app.stop()


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def controller_namespace(explicit: str | None, environ: Mapping[str, str]) -> str:
    """Where the controller's intents are: ``--namespace``, else ``$POD_NAMESPACE`` (the Downward API), else the
    pod's own namespace (its ServiceAccount mount), else the Platform's default (``chamberlain-system``)."""
    if explicit:
        return explicit
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "chamberlain-system"
    except OSError:
        return "chamberlain-system"


def run_from_cluster(servers: Servers, clock: Clock, options: ControllerOptions, *, log: Logger, namespace: str,
                     environment: str | None = None, cluster: str | None = None,
                     stop: threading.Event | None = None, max_seconds: float | None = None,
                     resync: float | None = None) -> None:
    """``controller run --from-cluster``: the intents are the Platform, RotationPolicies and SecretIntents in
    ``namespace``, watched (:class:`~chamberlain.controller.source.ClusterSource`); every change that settles swaps
    a new Scope into the running loop, new generated secrets are provisioned and changed policies brought into
    force by the controller itself. An intent that fails validation is rejected alone (logged with its rule ids,
    ``controller.scope.rejected``); the others keep being served."""
    from chamberlain.controller.source import Built, ClusterSource
    from chamberlain.controller.watched import IntentObjects

    stop = stop or threading.Event()
    objects = IntentObjects()  # what the annotation trigger and the status read of the watched SecretIntents
    source = ClusterSource(servers.kube(), namespace, environment, cluster, clock, log=log, resync=resync,
                           stop_event=stop, sinks={"SecretIntent": [objects]})
    first = source.sync()
    assert first.scope is not None
    app = start(first.scope, servers, clock, options, log=log, stop=stop, reconcile=True, objects=objects,
                settle_heap=True)

    def swap(built: Built) -> None:
        assert built.scope is not None
        app.controller.set_scope(built.scope)
        log.info("scope updated", secrets=len(built.scope.placed), rejected=sorted(built.rejected))

    source.on_built = swap
    source.watch()
    log.info("controller started", identity=options.name, environment=first.scope.environment,
             cluster=first.scope.cluster, source="cluster", namespace=namespace, secrets=len(first.scope.placed),
             rejected=sorted(first.rejected), metrics=app.metrics_url,
             webhook=app.webhook.url if app.webhook else None)
    app.wait(max_seconds)
    source.stop()
    app.stop()


# ------------------------------------------------------------------------------------------------ the webhook


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    text: str  # the controller's answer names the request and its outcome, never a value

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.text or "{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def post_webhook(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float = 10.0) -> WebhookAnswer:
    """POST ``body`` to a controller's webhook endpoint (http or https only)."""
    shown = unreachable.address(url)
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{shown}: the webhook URL must be http:// or https://")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise UsageError(f"{shown}: not a URL the webhook can be sent to") from None
    if parts.username is not None or parts.password is not None:
        # urllib would take "user:password@host" for a host name; the request is authenticated by its signature
        raise UsageError(f"{shown}: the webhook URL carries a user or password; give it without (the request is "
                         "signed with the webhook key)")
    try:
        req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    except ValueError:
        raise UsageError(f"{shown}: not a URL the webhook can be sent to") from None
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            status, raw = int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), exc.read()
    except OSError as exc:
        raise UsageError(f"cannot reach the webhook at {unreachable.address(url)} "
                         f"({unreachable.reason(exc)})") from None
    return WebhookAnswer(status, raw.decode(errors="replace"))


def request_rotation(url: str, key: WebhookKey, secret: str, reason: str, clock: Clock, *,
                     request_id: str | None = None, retry_unavailable: float = 0.0) -> WebhookAnswer:
    """A signed rotation request (HMAC-SHA256 over ``<unix-time>.<body>``). A 503 (every worker busy, or the
    cluster unreachable to persist it) is retried, freshly signed, for up to ``retry_unavailable`` seconds."""
    from chamberlain.triggers.webhook import sign

    doc: dict[str, str] = {"secret": secret, "reason": reason}
    if request_id:
        doc["id"] = request_id
    body = json.dumps(doc).encode()
    deadline = clock.monotonic() + retry_unavailable
    while True:
        answer = post_webhook(url, body, {"Content-Type": "application/json", **sign(body, key, clock.now())})
        if answer.status != 503 or clock.monotonic() >= deadline:
            return answer
        clock.sleep(0.5)


__all__ = [
    "ControllerOptions",
    "LoadFailed",
    "WebhookAnswer",
    "controller_namespace",
    "load_scope",
    "post_webhook",
    "request_rotation",
    "run",
    "run_from_cluster",
    "scope_from_repository",
    "start",
]
