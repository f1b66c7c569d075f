"""``chamberlain controller run``: the long-running orchestrator; ``chamberlain controller webhook``: a signed sender.

``run PATH -e ENV --cluster C`` builds the clients (a Kubernetes login as the cluster's orchestrator unless
``--vault-token-file`` is given), the scope (every intent placed in ENV/C), and starts the loop, the webhook
endpoint (``--webhook-port``, key from ``--webhook-key-file`` or ``$CHAMBERLAIN_WEBHOOK_KEY_FILE``) and
``/metrics`` (``--metrics-port``). SIGTERM/SIGINT stop it gracefully. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from chamberlain.cli.handover import AuthorityOptions, open_vault
from chamberlain.cli.options import (
    Cluster,
    Environment,
    Kubeconfig,
    VaultAddr,
    VaultCACert,
    VaultTokenFile,
    settings,
    valid_repository,
)
from chamberlain.cli.output import RepoPath, stderr, stdout
from chamberlain.clock import SystemClock
from chamberlain.errors import ChamberlainError, UsageError

if TYPE_CHECKING:
    from chamberlain.controller.loop import Scope
    from chamberlain.kube.client import KubeClient

controller_app = typer.Typer(no_args_is_help=True, add_completion=False)

WebhookKeyFile = Annotated[Path | None, typer.Option(
    "--webhook-key-file", help="File holding the webhook HMAC key (or $CHAMBERLAIN_WEBHOOK_KEY_FILE).",
    show_default=False)]


class LoadFailed(ChamberlainError):
    """Loading the repository in the loader process failed; carries that error's message and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
        result: tuple[str, Any] = ("ok", _scope_from_repository(path, environment, cluster))
    except ChamberlainError as exc:  # our messages are fit to show (findings name files and lines, no values)
        result = ("error", (str(exc), exc.exit_code))
    except Exception as exc:  # a foreign exception's text is unvetted: its type only
        result = ("error", (f"internal error while loading ({type(exc).__name__})", 1))
    send.send(result)
    send.close()


def _scope_from_repository(path: str | Path, environment: str | None, cluster: str | None) -> Scope:
    """Load and validate; place the intents. The scope keeps the Platform, the intents placed in the cluster and
    environment (runtime mount), and the admin intents they name (``target.postgres.adminIntent``, found by
    ``rotation.manual.admin_source``): the other intents are never looked at again."""
    from chamberlain.controller.loop import scope_of
    from chamberlain.handover import select_cluster

    repo, platform = valid_repository(path)
    chosen, envs = select_cluster(platform, environment, cluster)
    if len(envs) != 1:
        raise UsageError(f"cluster {chosen} hosts environments {', '.join(envs)}; pass --environment")
    every = {i.obj.metadata.name: i.obj for i in repo.intents}
    del repo  # from here on only the models are needed
    placed = scope_of(platform, every, envs[0], chosen).placed
    needed = {name: every[name] for name in placed}
    for name in placed:
        target = every[name].spec.target
        if target is not None and target.postgres.admin_intent in every:
            needed.setdefault(target.postgres.admin_intent, every[target.postgres.admin_intent])
    return scope_of(platform, needed, envs[0], chosen)


@controller_app.command("run")
def run_cmd(
    path: RepoPath,
    environment: Environment = None,
    cluster: Cluster = None,
    identity: Annotated[str | None, typer.Option("--identity", help="This replica's name in the Lease "
                                                 "(default: $POD_NAME, else host name and pid).",
                                                 show_default=False)] = None,
    lease_name: Annotated[str, typer.Option("--lease-name", help="The coordination.k8s.io Lease.")
                          ] = "chamberlain-controller",
    lease_seconds: Annotated[int, typer.Option("--lease-seconds", help="Lease duration.")] = 15,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between ticks.")] = 1.0,
    evaluate_every: Annotated[float, typer.Option("--evaluate-every",
                                                  help="Seconds between time-trigger evaluations.")] = 30.0,
    propagation_timeout: Annotated[float, typer.Option("--propagation-timeout",
                                                       help="Seconds to wait for consumers to sync.")] = 120.0,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve /metrics here (0: any).",
                                                     show_default=False)] = None,
    webhook_port: Annotated[int | None, typer.Option("--webhook-port", help="Serve POST /v1/rotate here.",
                                                     show_default=False)] = None,
    listen: Annotated[str, typer.Option("--listen", help="Address of the metrics and webhook servers.")
                      ] = "127.0.0.1",
    webhook_key_file: WebhookKeyFile = None,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", help="Stop after this long (tests).",
                                                      show_default=False)] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="json or console.")] = "json",
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Run the controller: time, webhook and annotation triggers in, durable rotations out, while leader.

    Example: chamberlain controller run examples/acme -e dev --cluster dev1 --metrics-port 9102 --webhook-port 8443
    """
    from chamberlain.cli.handover import open_kube
    from chamberlain.controller import ControllerApp, logs
    from chamberlain.controller.app import wire
    from chamberlain.triggers.webhook import load_key

    if log_format not in ("json", "console"):
        raise UsageError("--log-format is json or console")
    logs.configure(json=log_format == "json")
    log = logs.get()
    scope = load_scope(path, environment, cluster)  # the repository itself is not kept
    platform, chosen = scope.platform, scope.cluster
    key = load_key(webhook_key_file, os.environ) if webhook_port is not None else None
    kube = cast("KubeClient", open_kube(kubeconfig))  # the real client: leases, run objects, events too
    client = open_vault(platform, AuthorityOptions(vault_addr, vault_cacert, vault_token_file), kube, chosen)
    me = identity or settings().pod_name or f"{socket.gethostname()}-{os.getpid()}"
    controller = wire(scope, client, kube, SystemClock(), identity=me, lease_name=lease_name,
                      lease_seconds=lease_seconds, log=log, propagation_timeout=propagation_timeout,
                      evaluate_every=evaluate_every)
    app = ControllerApp(
        controller, interval=interval,
        metrics_address=(listen, metrics_port) if metrics_port is not None else None,
        webhook_address=(listen, webhook_port) if webhook_port is not None else None, webhook_key=key,
    )

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal received; stopping", signal=signal.Signals(signum).name)
        app.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app.start()
    log.info("controller started", identity=me, environment=scope.environment, cluster=chosen,
             secrets=len(scope.placed), metrics=app.metrics_url, webhook=app.webhook.url if app.webhook else None)
    app.wait(max_seconds)
    app.stop()
    kube.close()


@controller_app.command("webhook")
def webhook_cmd(
    secret: Annotated[str, typer.Argument(help="The secret (intent name) to rotate.", show_default=False)],
    url: Annotated[str, typer.Option("--url", help="The controller's webhook endpoint.")
                   ] = "http://127.0.0.1:8443/v1/rotate",
    reason: Annotated[str, typer.Option("--reason", help="Why, for the run and the ledger.")] = "webhook",
    request_id: Annotated[str | None, typer.Option("--id", help="Idempotency key (a retry sends the same).",
                                                   show_default=False)] = None,
    webhook_key_file: WebhookKeyFile = None,
) -> None:
    """Send a signed rotation request to a controller's webhook (what a CI job or an alert would do).

    Example: CHAMBERLAIN_WEBHOOK_KEY_FILE=key chamberlain controller webhook grafana-admin --reason "leak drill"
    """
    from chamberlain.triggers.webhook import load_key, sign

    key = load_key(webhook_key_file, os.environ)
    doc: dict[str, str] = {"secret": secret, "reason": reason}
    if request_id:
        doc["id"] = request_id
    body = json.dumps(doc).encode()
    headers = {"Content-Type": "application/json", **sign(body, key, SystemClock().now())}
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{url}: the webhook URL must be http:// or https://")
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - scheme checked above
            status, answer = resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        raise UsageError(f"{url}: cannot reach the webhook ({type(exc).__name__})") from None
    (stdout if status == 200 else stderr).print(f"{status} {answer}", markup=False, highlight=False)
    sys.stdout.flush()
    raise typer.Exit(0 if status == 200 else 1)
