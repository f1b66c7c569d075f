"""Every option more than one command takes, declared once, and what the CLI reads from its process.

Options are ``Annotated`` aliases (``reason: Reason = "..."``), so every command spells them the same way, with the
same short flags and environment variables. The options that say where a command acts come as a group: a command
declares one parameter ``target: Target = GROUPED`` and decorates itself with :func:`target_options`, which puts
``--environment/-e``, ``--cluster/-c``, ``--vault-addr``, ``--vault-cacert``, ``--vault-token-file``,
``--vault-token-env``, ``--kubeconfig`` and ``--context`` in that parameter's place and hands the command one typed
:class:`Target` holding a :class:`~chamberlain.service.context.ConnectionOptions` (:data:`configure_options` does
the same for the authority's configuration options). Typer builds a command's options from its signature, so an
:class:`OptionGroup` rewrites ``__signature__``.

The CLI is an entry point, the only kind of module that looks at ``os.environ`` (:func:`settings`), asks who the
user is (:func:`actor`) or reads the wall clock (:func:`clock`); everything below receives these as arguments.
"""

from __future__ import annotations

import functools
import getpass
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TextIO, TypeVar

import typer

from chamberlain.clock import Clock, SystemClock
from chamberlain.errors import UsageError
from chamberlain.kube.kubeconfig import split_kubeconfig
from chamberlain.service.authority import ClusterAuth, ConfigureOptions
from chamberlain.service.context import ConnectionOptions, workstation_actor
from chamberlain.service.repository import repository_root
from chamberlain.settings import Settings

R = TypeVar("R")

# ------------------------------------------------------------------------------------------------ connection


def _option(flag: str, envvar: str, metavar: str, help_: str) -> Any:
    """An option that falls back to an environment variable (shown in --help)."""
    return typer.Option(flag, envvar=envvar, show_default=False, metavar=metavar, help=help_)


VaultAddr = Annotated[str | None, _option("--vault-addr", "VAULT_ADDR", "URL[,URL...]",
                                          "Vault address (default: the Platform's spec.authority.address); an HA "
                                          "authority's nodes comma-separated: requests fail over between them.")]
VaultCACert = Annotated[Path | None, _option("--vault-cacert", "VAULT_CACERT", "FILE",
                                             "PEM bundle of the CA that signed Vault's TLS certificate.")]
# No environment variable chooses a token file or a token: an ambient value would silently pick the identity of a
# privileged command (configure, rekey); the user names the file, or the variable (--vault-token-env).
VaultTokenFile = Annotated[Path | None, typer.Option(
    "--vault-token-file", show_default=False, metavar="PATH",
    help="Use the Vault token in this file ('-': read it from stdin) instead of a Kubernetes login (lab, "
         "break-glass).")]
VaultTokenEnv = Annotated[str | None, typer.Option(
    "--vault-token-env", show_default=False, metavar="NAME",
    help="Read the Vault token from the environment variable NAME (e.g. VAULT_TOKEN: never read unless named).")]
VaultTokenRefused = Annotated[str | None, typer.Option("--vault-token", hidden=True, show_default=False)]
ARGV_REFUSAL = ("--vault-token would put the token in the process list (ps): pass --vault-token-file PATH, "
                 "--vault-token-file - (stdin) or --vault-token-env NAME")
# A string, not a Path: KUBECONFIG may list several files (a:b), merged as kubectl merges them.
Kubeconfig = Annotated[str | None, typer.Option(
    "--kubeconfig", envvar="KUBECONFIG", show_default=False, metavar="PATH[:PATH...]",
    help="kubeconfig of the cluster; several files (a:b, as in KUBECONFIG) merge, the first to set a value wins "
         "(in a pod without one: in-cluster config; else ~/.kube/config).")]


def _complete_context(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of ``--context``: the contexts of the kubeconfig given so far (or ``KUBECONFIG``)."""
    from chamberlain.kube.kubeconfig import KubeconfigSource, contexts

    try:
        files = kubeconfig_files(ctx.params.get("kubeconfig") or os.environ.get("KUBECONFIG"))
        names, _ = contexts(KubeconfigSource(files or ()))
    except Exception:  # completion never fails loudly: no suggestions instead
        return []
    return [name for name in names if name.startswith(incomplete)]


KubeContext = Annotated[str | None, typer.Option(
    "--context", show_default=False, metavar="NAME", autocompletion=_complete_context,
    help="The kubeconfig context to use (default: its current-context).")]

# ------------------------------------------------------------------------------------------------ selection

Environment = Annotated[str | None, typer.Option("--environment", "-e", metavar="ENV", show_default=False,
                                                 help="Only this environment.")]
Cluster = Annotated[str | None, typer.Option(
    "--cluster", "-c", metavar="CLUSTER", show_default=False,
    help="The cluster (a Vault per cluster): only its objects, and without a Vault token its orchestrator logs in. "
         "Optional when the Platform has one cluster.")]

# ------------------------------------------------------------------------------------------------ acting

DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")]
Reason = Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why, for the ledger.")]
# A rotation run from the command line (rotate, playbook compromise): how long it may sleep and wait for ESO.
MaxWait = Annotated[float, typer.Option("--max-wait", help="Longest wait (s) to sleep through in a run.")]
SyncTimeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait for consumers to sync.")]

# ------------------------------------------------------------------------------------------------ authority

AuditFile = Annotated[str, typer.Option("--audit-file", metavar="PATH", help="File audit device path on the Vault host "
                                        "('stdout': Vault's log stream; '' manages no audit device). OpenBao: "
                                        "the path its configuration file declares (verified, never enabled).")]
KubeHost = Annotated[str | None, typer.Option("--kubernetes-host", metavar="URL", show_default=False,
                                              help="API server URL Vault reviews tokens at (default: kubeconfig).")]
KubeCA = Annotated[Path | None, typer.Option("--kubernetes-ca-file", metavar="FILE", show_default=False,
                                             help="CA of that API server (default: kubeconfig).")]
ReviewerJWT = Annotated[Path | None, typer.Option(
    "--token-reviewer-jwt-file", metavar="FILE", show_default=False,
    help="A token of a ServiceAccount with system:auth-delegator, for a Vault running outside the cluster.")]
ReplaceReviewerJWT = Annotated[bool, typer.Option(
    "--replace-token-reviewer-jwt",
    help="Write the reviewer token(s) given even though one is set (Vault cannot show it to compare): after the "
         "cluster was rebuilt, the old token's ServiceAccount is gone.")]
Identity = Annotated[Path, typer.Option("--identity", metavar="FILE",
                                        help="age identity file of the offline root of trust.")]
ClusterKubeconfig = Annotated[list[str] | None, typer.Option(
    "--cluster-kubeconfig", show_default=False, metavar="CLUSTER=PATH",
    help="A kubeconfig of CLUSTER: that cluster's auth mount reviews tokens at its API server, with its CA "
         "(repeat per cluster).")]
ClusterKubeHost = Annotated[list[str] | None, typer.Option(
    "--cluster-kubernetes-host", show_default=False, metavar="CLUSTER=URL",
    help="API server URL of CLUSTER's auth mount (repeat per cluster).")]
ClusterKubeCA = Annotated[list[str] | None, typer.Option(
    "--cluster-kubernetes-ca-file", show_default=False, metavar="CLUSTER=PATH",
    help="CA of CLUSTER's API server (repeat per cluster).")]
KubeIssuer = Annotated[str | None, typer.Option(
    "--kubernetes-issuer", metavar="URL", show_default=False,
    help="Service-account issuer of that cluster: its auth mount then refuses tokens of any other issuer.")]
ClusterKubeIssuer = Annotated[list[str] | None, typer.Option(
    "--cluster-kubernetes-issuer", show_default=False, metavar="CLUSTER=URL",
    help="Service-account issuer of CLUSTER (repeat per cluster).")]
ClusterReviewerJWT = Annotated[list[str] | None, typer.Option(
    "--cluster-token-reviewer-jwt-file", show_default=False, metavar="CLUSTER=PATH",
    help="A token of a ServiceAccount of CLUSTER with system:auth-delegator (repeat per cluster).")]


# ------------------------------------------------------------------------------------------------ groups


GROUPED: Any = None
"""The default of the parameter an :class:`OptionGroup` fills (``target: Target = GROUPED``); never used,
since the group replaces that parameter with its options."""


class OptionGroup:
    """Options that reach a command as one typed object: the command declares one parameter (``param``) and the
    group puts its options in that parameter's place in the signature typer reads; at call time the options'
    values are built into that object (``build(**values)``)."""

    def __init__(self, param: str, build: Callable[..., object], options: Sequence[tuple[str, Any, Any]]) -> None:
        self.param = param
        self.build = build
        self.options = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                          annotation=annotation) for name, annotation, default in options]

    def __call__(self, command: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(command, eval_str=True)
        if self.param not in signature.parameters:
            raise TypeError(f"{command.__name__} has no parameter {self.param!r} for its options")
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            params.extend(self.options if p.name == self.param else [p])
        defaults = {o.name: o.default for o in self.options}

        @functools.wraps(command)
        def with_group(*args: Any, **kwargs: Any) -> R:
            kwargs[self.param] = self.build(**{name: kwargs.pop(name, d) for name, d in defaults.items()})
            return command(*args, **kwargs)

        with_group.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        with_group.__annotations__ = {p.name: p.annotation for p in params} | {"return": signature.return_annotation}
        return with_group


@dataclass(frozen=True)
class Target:
    """Where a command acts: the environment and cluster it selects (None: not selected, or not an option of
    that command) and how it reaches their servers."""

    environment: str | None
    cluster: str | None
    conn: ConnectionOptions


def target_options(*, environment: bool = True, cluster: bool = True, vault: bool = True, token_file: bool = True,
                   token: bool = False) -> OptionGroup:
    """The options that say where a command acts, as ``target: Target``: ``--environment/-e`` and
    ``--cluster/-c`` (unless turned off), then ``--vault-addr``, ``--vault-cacert``, ``--vault-token-file`` and
    ``--vault-token-env`` (``token_file``: the orchestrator's token for the lab; ``token``: a break-glass
    configurator token, never taken from an environment variable unless named), ``--kubeconfig`` and
    ``--context`` (only these two without ``vault``). A token is never an argument: ``--vault-token VALUE`` is
    refused, saying how."""
    options: list[tuple[str, Any, Any]] = []
    if environment:
        options.append(("environment", Environment, None))
    if cluster:
        options.append(("cluster", Cluster, None))
    if vault:
        options += [("vault_addr", VaultAddr, None), ("vault_cacert", VaultCACert, None)]
        if token_file or token:
            options.append(("vault_token_file", VaultTokenFile, None))
            options.append(("vault_token_env", VaultTokenEnv, None))
    options.append(("kubeconfig", Kubeconfig, None))
    options.append(("context", KubeContext, None))
    if vault:
        options.append(("vault_token", VaultTokenRefused, None))

    def build(environment: str | None = None, cluster: str | None = None, vault_token: str | None = None,
              vault_token_env: str | None = None, vault_token_file: Path | None = None,
              kubeconfig: str | None = None, context: str | None = None, **conn: Any) -> Target:
        conn["kubeconfig"] = kubeconfig_files(kubeconfig)
        conn["context"] = context or None
        if vault_token is not None:
            raise UsageError(ARGV_REFUSAL)
        from_stdin = vault_token_file is not None and str(vault_token_file) == "-"
        if from_stdin and vault_token_env:
            raise UsageError("pass one of --vault-token-file and --vault-token-env")
        value = token_from(vault_token_env, os.environ, sys.stdin if from_stdin else None)
        if not from_stdin and vault_token_file is not None:
            if vault_token_env:
                raise UsageError("pass one of --vault-token-file and --vault-token-env")
            conn["vault_token_file"] = vault_token_file
        return Target(environment, cluster, ConnectionOptions(vault_token=value, **conn))

    return OptionGroup("target", build, options)


def kubeconfig_files(value: str | None) -> tuple[Path, ...] | None:
    """``--kubeconfig``/``KUBECONFIG`` as files: one path, or several joined like ``KUBECONFIG`` (``a:b``)."""
    files = tuple(p.expanduser() for p in split_kubeconfig(value or ""))
    return files or None


def token_from(env_name: str | None, environ: Mapping[str, str], stdin: TextIO | None) -> str | None:
    """A token named by ``--vault-token-env NAME`` (read from ``environ``) or given on ``stdin``; None when
    neither. Errors name the variable, never a value."""
    if stdin is not None:
        try:
            value = stdin.read().strip()
        except UnicodeDecodeError:
            raise UsageError("--vault-token-file -: what stdin gave is not text") from None
        if not value:
            raise UsageError("--vault-token-file -: nothing was read from stdin")
        where = "--vault-token-file - (stdin)"
    elif env_name is None:
        return None
    else:
        if not env_name or not env_name.replace("_", "a").isalnum() or not env_name.isascii():
            raise UsageError(f"--vault-token-env {env_name[:64]!r}: not an environment variable name")
        value = environ.get(env_name, "").strip()
        if not value:
            raise UsageError(f"--vault-token-env {env_name}: that variable is not set or empty")
        where = f"--vault-token-env {env_name}"
    # Imported only when a token is given: it brings the authority client, which other commands never load.
    from chamberlain.authority.session import checked_token

    return checked_token(value, where)


def _per_cluster(flag: str, values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        cluster, sep, rest = value.partition("=")
        if not sep or not cluster or not rest:
            raise UsageError(f"{flag} {value!r}: expected CLUSTER=VALUE")
        if cluster in out:
            raise UsageError(f"{flag}: cluster {cluster} given twice")
        out[cluster] = rest
    return out


def _configure(audit_file: str = "stdout", kubernetes_host: str | None = None, kubernetes_ca_file: Path | None = None,
               token_reviewer_jwt_file: Path | None = None, cluster_kubeconfig: list[str] | None = None,
               cluster_kubernetes_host: list[str] | None = None, cluster_kubernetes_ca_file: list[str] | None = None,
               cluster_token_reviewer_jwt_file: list[str] | None = None, kubernetes_issuer: str | None = None,
               cluster_kubernetes_issuer: list[str] | None = None,
               replace_token_reviewer_jwt: bool = False) -> ConfigureOptions:
    kubeconfigs = _per_cluster("--cluster-kubeconfig", cluster_kubeconfig)
    hosts = _per_cluster("--cluster-kubernetes-host", cluster_kubernetes_host)
    cas = _per_cluster("--cluster-kubernetes-ca-file", cluster_kubernetes_ca_file)
    reviewers = _per_cluster("--cluster-token-reviewer-jwt-file", cluster_token_reviewer_jwt_file)
    issuers = _per_cluster("--cluster-kubernetes-issuer", cluster_kubernetes_issuer)

    def path(table: dict[str, str], cluster: str) -> Path | None:
        return Path(table[cluster]).expanduser() if cluster in table else None

    clusters = {c: ClusterAuth(path(kubeconfigs, c), hosts.get(c), path(cas, c), path(reviewers, c), issuers.get(c))
                for c in sorted({*kubeconfigs, *hosts, *cas, *reviewers, *issuers})}
    return ConfigureOptions(audit_file, kubernetes_host, kubernetes_ca_file, token_reviewer_jwt_file, clusters,
                            kubernetes_issuer, replace_token_reviewer_jwt)


configure_options = OptionGroup("configure", _configure, [
    ("audit_file", AuditFile, "stdout"),
    ("kubernetes_host", KubeHost, None),
    ("kubernetes_ca_file", KubeCA, None),
    ("token_reviewer_jwt_file", ReviewerJWT, None),
    ("cluster_kubeconfig", ClusterKubeconfig, None),
    ("cluster_kubernetes_host", ClusterKubeHost, None),
    ("cluster_kubernetes_ca_file", ClusterKubeCA, None),
    ("cluster_token_reviewer_jwt_file", ClusterReviewerJWT, None),
    ("kubernetes_issuer", KubeIssuer, None),
    ("cluster_kubernetes_issuer", ClusterKubeIssuer, None),
    ("replace_token_reviewer_jwt", ReplaceReviewerJWT, False),
])
"""``--audit-file``, ``--kubernetes-host``, ``--kubernetes-ca-file``, ``--token-reviewer-jwt-file`` (every selected
cluster's auth mount that has no settings of its own) and their per-cluster forms ``--cluster-kubeconfig``,
``--cluster-kubernetes-host``, ``--cluster-kubernetes-ca-file``, ``--cluster-token-reviewer-jwt-file``
(``CLUSTER=VALUE``, repeatable) as ``configure: ConfigureOptions``."""


# ------------------------------------------------------------------------------------------------ the process


def settings() -> Settings:
    """The process environment as chamberlain uses it. The CLI is an entry point, the only kind of module that
    may look at ``os.environ``; everything below receives these values as arguments."""
    return Settings.from_environ(os.environ, Path.home())


def login_name() -> str:
    """The login name of whoever runs this process (``unknown`` when the system cannot say)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def actor() -> str:
    """Who acts from this command line, for the ledger (``cli:<user>``)."""
    return workstation_actor("cli", login_name())


def clock() -> Clock:
    """The wall clock, read by the entry point and injected into every use case."""
    return SystemClock()


def repo_dir(path: str | Path) -> Path:
    """The intent repository's root, or a usage error (exit 2) that says what is wrong with ``path``."""
    return repository_root(path)
