"""``chamberlain controller run``: the long-running orchestrator; ``chamberlain controller webhook``: a signed sender.
Thin commands over :mod:`chamberlain.service.controller`.

``run --from-cluster -e ENV --cluster C`` (in a cluster) watches the intents in the controller namespace and
swaps each new scope in without a restart; ``run PATH`` (or ``--repo PATH``, laptops) loads the scope once
(every intent placed in ENV/C). Both log in (as the cluster's orchestrator through Kubernetes auth unless
``--vault-token-file``/``--vault-token-env`` is given), and start the
loop, the webhook endpoint (``--webhook-port``; its schemes' secrets from ``--webhook-key-file`` (HMAC),
``--webhook-standard-secret-file`` (Standard Webhooks) and ``--webhook-bearer-token-file`` (bearer, Alertmanager),
or the ``CHAMBERLAIN_WEBHOOK_*_FILE`` variables: files, never arguments) and
``/metrics`` with the ``/healthz`` and ``/readyz`` probes (``--metrics-address HOST:PORT``, or ``--metrics-port``
on ``--listen``). As the entry point it configures the logs (JSON lines on stderr), reads
``$POD_NAME`` and turns SIGTERM/SIGINT into a graceful stop.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import GROUPED, Target, clock, settings, target_options
from chamberlain.cli.output import line
from chamberlain.errors import UsageError
from chamberlain.service.context import LiveServers

controller_app = typer.Typer(no_args_is_help=True, add_completion=False)

WebhookKeyFile = Annotated[Path | None, typer.Option(
    "--webhook-key-file", metavar="FILE", help="File holding the webhook HMAC key (or $CHAMBERLAIN_WEBHOOK_KEY_FILE).",
    show_default=False)]
WebhookStandardFile = Annotated[Path | None, typer.Option(
    "--webhook-standard-secret-file", metavar="FILE", show_default=False,
    help="File holding a Standard Webhooks secret, whsec_<base64> (or $CHAMBERLAIN_WEBHOOK_STANDARD_SECRET_FILE).")]
WebhookBearerFile = Annotated[Path | None, typer.Option(
    "--webhook-bearer-token-file", metavar="FILE", show_default=False,
    help="File holding the bearer token senders such as Alertmanager present (or "
         "$CHAMBERLAIN_WEBHOOK_BEARER_TOKEN_FILE).")]


OptionalRepoPath = Annotated[str | None, typer.Argument(
    help="The intent repository (laptops; same as --repo). Omit with --from-cluster.", show_default=False,
    metavar="[PATH]")]


@controller_app.command("run")
@target_options()
def run_cmd(
    path: OptionalRepoPath = None,
    target: Target = GROUPED,
    repo: Annotated[str | None, typer.Option("--repo", help="Read the intents once from this repository "
                                             "(laptops).", show_default=False, metavar="PATH")] = None,
    from_cluster: Annotated[bool, typer.Option("--from-cluster", help="Watch the Platform, RotationPolicies and "
                                               "SecretIntents in the controller namespace (in-cluster mode).")
                            ] = False,
    namespace: Annotated[str | None, typer.Option("--namespace", help="The controller namespace (default: "
                                                  "$POD_NAMESPACE, else the pod's own, else chamberlain-system).",
                                                  show_default=False, metavar="NAMESPACE")] = None,
    identity: Annotated[str | None, typer.Option("--identity", metavar="NAME", help="This replica's name in the Lease "
                                                 "(default: $POD_NAME, else host name and pid).",
                                                 show_default=False)] = None,
    lease_name: Annotated[str, typer.Option("--lease-name", metavar="NAME", help="The coordination.k8s.io Lease.")
                          ] = "chamberlain-controller",
    lease_seconds: Annotated[int, typer.Option("--lease-seconds", help="Lease duration.")] = 15,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between ticks.")] = 1.0,
    evaluate_every: Annotated[float, typer.Option("--evaluate-every",
                                                  help="Seconds between time-trigger evaluations.")] = 30.0,
    metadata_reads: Annotated[float, typer.Option(
        "--metadata-reads-per-second", min=0.01,
        help="How fast the time trigger reads again the Vault metadata of secrets it already read (new, changed "
        "and just-rotated secrets are read at once). A scope of up to 30 s worth is read on every evaluation.")
    ] = 20.0,
    propagation_timeout: Annotated[float, typer.Option("--propagation-timeout",
                                                       help="Seconds to wait for consumers to sync.")] = 120.0,
    ack_deadline: Annotated[float, typer.Option(
        "--ack-deadline", help="Seconds past maxOverlap revokeOld waits for the environment's other clusters to "
        "acknowledge a new version before it alerts (and keeps waiting).")] = 3600.0,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve /metrics, /healthz and /readyz "
                                                     "here, on --listen (0: any).", show_default=False)] = None,
    metrics_address: Annotated[str | None, typer.Option(
        "--metrics-address", help="HOST:PORT for /metrics, /healthz and /readyz (instead of --listen and "
        "--metrics-port); 0.0.0.0:9102 in a pod.", show_default=False, metavar="HOST:PORT")] = None,
    webhook_port: Annotated[int | None, typer.Option("--webhook-port", help="Serve POST /v1/rotate here.",
                                                     show_default=False)] = None,
    listen: Annotated[str, typer.Option("--listen", metavar="HOST:PORT",
                                        help="Address of the metrics and webhook servers.")
                      ] = "127.0.0.1",
    webhook_key_file: WebhookKeyFile = None,
    webhook_standard_secret_file: WebhookStandardFile = None,
    webhook_bearer_token_file: WebhookBearerFile = None,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", help="Stop after this long (tests).",
                                                      show_default=False)] = None,
    log_format: Annotated[str, typer.Option("--log-format", metavar="FORMAT", help="json or console.")] = "json",
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL",
                                           help="debug, info, warning or error.")] = "info",
    keep_runs: Annotated[int, typer.Option("--keep-runs", min=0, help="Finished RotationRun objects kept per "
                                           "secret; older ones are deleted.")] = 5,
    failure_backoff_cap: Annotated[float, typer.Option(
        "--failure-backoff-cap", min=1.0, help="Longest wait (seconds) of the time trigger after failed runs "
        "(exponential from 60 s, jittered).")] = 3600.0,
    external_quiet: Annotated[float, typer.Option(
        "--external-quiet", min=0.0,
        help="Seconds a producer's pushes of a derived or config secret must be quiet before the controller "
        "follows the last version (one run, one restart per workload, for a burst of changes).")] = 1.0,
    request_retention: Annotated[float, typer.Option(
        "--request-retention", min=300.0, help="Seconds a settled webhook request object (rq-*) is kept: its "
        "name is the request's replay record.")] = 86400.0,
    login_token_file: Annotated[Path | None, typer.Option(
        "--login-token-file", metavar="FILE", envvar="CHAMBERLAIN_LOGIN_TOKEN_FILE", show_default=False,
        help="Log in to the authority with the ServiceAccount token in this file (in a pod: a projected token "
             "with the 'vault' audience; re-read at each login) instead of minting one with a TokenRequest.")
    ] = None,
) -> None:
    """Run the controller: time, webhook and annotation triggers in, durable rotations out, while leader.

    Example: chamberlain controller run examples/acme -e dev --cluster dev1 --metrics-address 127.0.0.1:9102

    In a cluster: chamberlain controller run --from-cluster -e dev --cluster dev1 (new and changed intents take
    effect without a restart; new generated secrets are provisioned by the controller).
    """
    from chamberlain.controller import logs
    from chamberlain.controller.heap import limit_malloc_arenas
    from chamberlain.controller.probes import parse_address
    from chamberlain.controller.signals import StopOnSignals
    from chamberlain.service import controller
    from chamberlain.triggers.webhook import load_keys

    if path is not None and repo is not None and path != repo:
        raise UsageError("pass the repository once: PATH or --repo")
    root = repo if repo is not None else path
    if (root is None) == (not from_cluster):
        raise UsageError("pass PATH (or --repo PATH) to read a repository, or --from-cluster to watch the cluster")
    if log_format not in ("json", "console"):
        raise UsageError("--log-format is json or console")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise UsageError("--log-level is debug, info, warning or error")
    if metrics_address is not None and metrics_port is not None:
        raise UsageError("give --metrics-address or --metrics-port, not both")
    try:
        probes_at = parse_address(metrics_address) if metrics_address is not None else (
            (listen, metrics_port) if metrics_port is not None else None)
    except ValueError as exc:
        raise UsageError(f"--metrics-address: {exc}") from None
    logs.configure(level=log_level, json=log_format == "json")
    log = logs.get()
    # this process is the controller's own: its threads share two malloc arenas (controller.heap), set before
    # the first of them starts
    log.debug("malloc arenas", cap=limit_malloc_arenas(os.environ))
    key = (load_keys(webhook_key_file, webhook_standard_secret_file, webhook_bearer_token_file, os.environ)
           if webhook_port is not None else None)
    options = controller.ControllerOptions(
        identity=identity or settings().pod_name, lease_name=lease_name, lease_seconds=lease_seconds,
        interval=interval, evaluate_every=evaluate_every, metadata_reads_per_second=metadata_reads,
        propagation_timeout=propagation_timeout, metrics_address=probes_at,
        webhook_address=(listen, webhook_port) if webhook_port is not None else None, webhook_key=key,
        keep_runs=keep_runs, failure_backoff_cap=failure_backoff_cap, request_retention=request_retention,
        external_quiet=external_quiet,
        ack_deadline=ack_deadline)
    stop = threading.Event()

    def on_signal(signum: int) -> None:
        log.info("signal received; stopping", signal=signal.Signals(signum).name)

    # `kill -USR1 <pid>`: every thread's stack on stderr, to see where a hung controller waits (frames name code
    # and lines, never a variable's value)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    conn = replace(target.conn, login_token_file=login_token_file) if login_token_file else target.conn
    # the repository is loaded in a forked child, before any thread of this process starts (the signal watcher's
    # too); a SIGTERM meanwhile ends the process: nothing has started yet
    scope = controller.load_scope(Path(root), target.environment, target.cluster) if root is not None else None
    with StopOnSignals(stop, on_signal), LiveServers(conn, clock()) as servers:
        if scope is None:
            controller.run_from_cluster(servers, servers.clock, options, log=log,
                                        namespace=controller.controller_namespace(namespace, os.environ),
                                        environment=target.environment, cluster=target.cluster, stop=stop,
                                        max_seconds=max_seconds)
        else:
            controller.run(scope, servers, servers.clock, options, log=log, stop=stop, max_seconds=max_seconds)


@controller_app.command("webhook")
def webhook_cmd(
    secret: Annotated[str, typer.Argument(metavar="SECRET", help="The secret (intent name) to rotate.",
                                          show_default=False)],
    url: Annotated[str, typer.Option("--url", metavar="URL", help="The controller's webhook endpoint.")
                   ] = "http://127.0.0.1:8443/v1/rotate",
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why, for the run and the ledger.")
                      ] = "webhook",
    request_id: Annotated[str | None, typer.Option("--id", help="Idempotency key (a retry sends the same).",
                                                   show_default=False, metavar="KEY")] = None,
    webhook_key_file: WebhookKeyFile = None,
) -> None:
    """Send a signed rotation request to a controller's webhook (what a CI job or an alert would do).

    Example: CHAMBERLAIN_WEBHOOK_KEY_FILE=key chamberlain controller webhook grafana-admin --reason "leak drill"
    """
    from chamberlain.service.controller import request_rotation
    from chamberlain.triggers.webhook import load_key

    key = load_key(webhook_key_file, os.environ)
    answer = request_rotation(url, key, secret, reason, clock(), request_id=request_id)
    line(f"{answer.status} {answer.text}", err=answer.status != 200)
    sys.stdout.flush()
    raise typer.Exit(0 if answer.status == 200 else 1)
