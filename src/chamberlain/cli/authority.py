"""``chamberlain authority init|unseal|configure|rekey|status`` and the Vault part of ``chamberlain plan``.

Thin: each command loads the intent repository (which must validate), renders the Vault bundle in memory, builds
the clients and calls :mod:`chamberlain.authority.lifecycle` / :mod:`chamberlain.authority.configure`. Nothing
here prints a share, a token or a value: reports carry counts, names and states.

Registered by the main CLI with ``app.add_typer(authority_app, name="authority")``; ``plan`` below is the Vault
part of the top-level ``chamberlain plan PATH``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chamberlain.cli.options import Kubeconfig, VaultAddr, VaultCACert, repo_dir, settings, valid_repository
from chamberlain.cli.output import DataFormat, RepoPath, emit_data, stderr, stdout
from chamberlain.errors import ChamberlainError, UsageError

if TYPE_CHECKING:
    from chamberlain.authority.configure import Change, Desired
    from chamberlain.authority.lifecycle import AuthorityEvent, Recorder
    from chamberlain.authority.session import Connection
    from chamberlain.authority.vault import VaultClient
    from chamberlain.kube.client import KubeClient

authority_app = typer.Typer(
    help="Phase 3, the runtime authority: initialize, unseal, configure, re-key Vault.",
    no_args_is_help=True,
)

VaultToken = Annotated[str | None, typer.Option(
    "--vault-token", envvar="VAULT_TOKEN", show_default=False, show_envvar=True,
    help="Break-glass only: configure with this token instead of the configurator's Kubernetes login.")]
Environment = Annotated[str | None, typer.Option("--environment", help="Only this environment's objects.")]
Cluster = Annotated[str | None, typer.Option("--cluster", help="Only this cluster's objects (a Vault per cluster).")]
AuditFile = Annotated[str, typer.Option("--audit-file", help="File audit device path on the Vault host "
                                        "('stdout': Vault's log stream; '' manages no audit device).")]
KubeHost = Annotated[str | None, typer.Option("--kubernetes-host", show_default=False,
                                              help="API server URL Vault reviews tokens at (default: kubeconfig).")]
KubeCA = Annotated[Path | None, typer.Option("--kubernetes-ca-file", show_default=False,
                                             help="CA of that API server (default: kubeconfig).")]
ReviewerJWT = Annotated[Path | None, typer.Option(
    "--token-reviewer-jwt-file", show_default=False,
    help="A token of a ServiceAccount with system:auth-delegator, for a Vault running outside the cluster.")]
Identity = Annotated[Path, typer.Option("--identity", help="age identity file of the offline root of trust.")]
Output = Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")]


# ------------------------------------------------------------------------------------------------ plumbing


class _Context:
    """Everything a command needs, built once from its options."""

    def __init__(self, path: str, vault_addr: str | None, vault_cacert: Path | None, kubeconfig: Path | None,
                 token: str | None = None) -> None:
        from chamberlain.authority.session import Connection
        from chamberlain.clock import SystemClock

        self.root = repo_dir(path)
        self.kubeconfig = kubeconfig
        self.repo, self.platform = valid_repository(path)
        self.clock = SystemClock()
        self.conn: Connection = Connection.resolve(self.platform, vault_addr, vault_cacert, token, clock=self.clock)
        self.run = uuid.uuid4().hex[:12]
        self._kube: KubeClient | None = None

    @property
    def kube(self) -> KubeClient:
        if self._kube is None:
            from chamberlain.kube.client import KubeClient

            self._kube = KubeClient.from_kubeconfig(self.kubeconfig, clock=self.clock)
        return self._kube

    def store(self) -> Any:
        from chamberlain.authority.lifecycle import SealedStore

        return SealedStore(self.kube, self.platform.spec.controller.namespace)

    def bundle(self, environment: str | None, cluster: str | None) -> dict[str, str]:
        from chamberlain.authority.configure import select
        from chamberlain.render import render_repository

        names = {e.name for e in self.platform.spec.environments}
        clusters = {c for e in self.platform.spec.environments for c in e.clusters}
        if environment is not None and environment not in names:
            raise UsageError(f"--environment {environment}: not an environment of the Platform")
        if cluster is not None and cluster not in clusters:
            raise UsageError(f"--cluster {cluster}: not a cluster of the Platform")
        tree = render_repository(self.repo)
        files = {p[len("vault/"):]: tree[p] for p in tree.paths() if p.startswith("vault/")}
        return select(files, environment, cluster)

    def desired(self, environment: str | None, cluster: str | None, audit_file: str,
                kube_host: str | None, kube_ca: Path | None, reviewer: Path | None) -> Desired:
        from chamberlain.authority.configure import Settings, desired_state
        from chamberlain.authority.session import kubernetes_auth_settings

        spec = self.platform.spec
        settings = Settings(
            controller_namespace=spec.controller.namespace,
            controller_service_account=spec.controller.service_account,
            runtime_mount=spec.authority.mounts.runtime,
            audit_file=audit_file or None,
            kubernetes=kubernetes_auth_settings(self.kubeconfig, kube_host, kube_ca, reviewer),
        )
        return desired_state(self.bundle(environment, cluster), settings)

    def recorder(self, command: str) -> Callable[[VaultClient], Recorder]:
        from chamberlain.audit.ledger import Ledger

        def bind(client: VaultClient) -> Recorder:
            ledger = Ledger(client.kv, self.platform.spec.authority.mounts.runtime, self.clock)

            def record(event: AuthorityEvent, details: Mapping[str, str]) -> None:
                ledger.append(event, actor=f"chamberlain {command}", run=self.run, details=details)

            return record

        return bind

    def orchestrator_roles(self, desired: Desired) -> list[str]:
        return sorted(name for (_, name) in desired.roles if name.endswith(".orchestrator"))


def _converge(client: VaultClient, desired: Desired, *, prune: bool, dry_run: bool,
              record: Recorder | None) -> tuple[list[Change], int]:
    from chamberlain.authority.configure import apply, observe, plan, summarize

    changes = plan(desired, observe(client, desired), prune=prune)
    if dry_run or not changes:
        return changes, 0
    result = apply(client, desired, changes)
    if record is not None:
        counts = summarize(changes)
        record("authority-configure", {k: str(v) for k, v in counts.items()} | {"prune": str(prune).lower()})
    return changes, result.applied


def _print_changes(changes: list[Change], output: DataFormat, *, applied: int | None, dry_run: bool) -> None:
    from chamberlain.authority.configure import summarize

    data = {"changes": [c.as_dict() for c in changes], "summary": summarize(changes), "dry_run": dry_run}
    if applied is not None:
        data["applied"] = applied
    if emit_data(data, output):
        return
    for c in changes:
        stdout.print(c.line(), markup=False, highlight=False)
    s = summarize(changes)
    verb = "would change" if dry_run else "changed"
    if not changes:
        stdout.print("Vault configuration is up to date (no changes).", markup=False)
    else:
        stdout.print(f"{verb}: {s['add']} to add, {s['change']} to change, {s['remove']} to remove"
                     + (f", {s['conflict']} conflicts" if s["conflict"] else ""), markup=False)


# ------------------------------------------------------------------------------------------------ commands


@authority_app.command()
def init(
    path: RepoPath,
    shares: Annotated[int, typer.Option("--shares", min=1, max=10, help="Shamir shares to create.")] = 5,
    threshold: Annotated[int, typer.Option("--threshold", min=1, max=10, help="Shares needed to unseal.")] = 3,
    identity: Annotated[Path | None, typer.Option(
        "--identity", help="age identity; only needed to resume a run that stopped before it finished.")] = None,
    recovery_dir: Annotated[Path | None, typer.Option(
        "--recovery-dir", help="Where encrypted shares wait if the Kubernetes write fails.")] = None,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    kubeconfig: Kubeconfig = None,
    environment: Environment = None,
    cluster: Cluster = None,
    audit_file: AuditFile = "stdout",
    kubernetes_host: KubeHost = None,
    kubernetes_ca_file: KubeCA = None,
    token_reviewer_jwt_file: ReviewerJWT = None,
    output: Output = DataFormat.text,
) -> None:
    """Initialize Vault: shares sealed to the root of trust into a Kubernetes Secret, unseal, configure, verify
    the orchestrator login, revoke the root token. Safe to re-run; resumes after a crash.

    Example: chamberlain authority init --shares 5 --threshold 3 examples/acme
    """
    from chamberlain.authority import lifecycle, session
    from chamberlain.render import naming

    if threshold > shares:
        raise UsageError(f"--threshold ({threshold}) cannot exceed --shares ({shares})")
    ctx = _Context(path, vault_addr, vault_cacert, kubeconfig)
    desired = ctx.desired(environment, cluster, audit_file, kubernetes_host, kubernetes_ca_file,
                          token_reviewer_jwt_file)
    spec = ctx.platform.spec
    ns, account = naming.controller_namespace(ctx.platform), naming.controller_service_account(ctx.platform)
    ctx.kube.ensure_namespace(ns)
    ctx.kube.ensure_service_account(ns, account)
    identities = lifecycle.load_identities(identity) if identity else None
    recorder_for = ctx.recorder("authority init")

    def configure(client: VaultClient) -> int:
        changes, _ = _converge(client, desired, prune=False, dry_run=False, record=None)
        if changes:
            recorder_for(client)("authority-configure", {k: str(v) for k, v in _counts(changes).items()})
        return len(changes)

    def verify() -> list[str]:
        roles = ctx.orchestrator_roles(desired)
        for role in roles:
            session.login_as(ctx.conn, ctx.platform, ctx.kube, role).auth.lookup_self()
        return roles

    report = lifecycle.initialize(
        ctx.conn.anonymous(), ctx.store(),
        lifecycle.InitPlan(shares, threshold, spec.root_of_trust.age_recipients,
                           recovery_dir or settings().recovery_dir),
        login_configurator=lambda: session.configurator(ctx.conn, ctx.platform, ctx.kube),
        configure=configure, verify=verify, recorder_for=recorder_for, identities=identities, clock=ctx.clock,
    )
    data = asdict(report) | {"secret": f"{ns}/{lifecycle.SECRET_NAME}"}
    if not emit_data(data, output):
        stdout.print(
            f"Vault at {ctx.conn.address}: {'initialized now' if report.initialized_now else 'already initialized'}"
            f"; sealed shares in Secret {data['secret']}; configuration changes: {report.configure_changes}; "
            f"orchestrator login verified for {', '.join(report.verified_roles) or 'no role'}; root token revoked.",
            markup=False, highlight=False)


def _counts(changes: list[Change]) -> dict[str, int]:
    from chamberlain.authority.configure import summarize

    return summarize(changes)


@authority_app.command()
def unseal(
    path: RepoPath,
    identity: Identity,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    kubeconfig: Kubeconfig = None,
    output: Output = DataFormat.text,
) -> None:
    """Unseal Vault with the shares sealed in the Kubernetes Secret, opened with the age identity. A no-op when
    Vault is unsealed.

    Example: chamberlain authority unseal --identity ~/.config/chamberlain/root.age examples/acme
    """
    from chamberlain.authority import lifecycle

    ctx = _Context(path, vault_addr, vault_cacert, kubeconfig)
    report = lifecycle.unseal(ctx.conn.anonymous(), ctx.store(), lifecycle.load_identities(identity))
    if not emit_data(asdict(report), output):
        msg = f"unsealed with {report.submitted} shares" if report.was_sealed else "already unsealed (no-op)"
        stdout.print(f"Vault at {ctx.conn.address}: {msg}.", markup=False, highlight=False)


@authority_app.command()
def configure(
    path: RepoPath,
    prune: Annotated[bool, typer.Option("--prune", help="Remove unmanaged policies and roles "
                                        "(never root/default, never mounts).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    kubeconfig: Kubeconfig = None,
    vault_token: VaultToken = None,
    environment: Environment = None,
    cluster: Cluster = None,
    audit_file: AuditFile = "stdout",
    kubernetes_host: KubeHost = None,
    kubernetes_ca_file: KubeCA = None,
    token_reviewer_jwt_file: ReviewerJWT = None,
    output: Output = DataFormat.text,
) -> None:
    """Converge Vault's mounts, Kubernetes auth, roles, policies and audit device to the rendered bundle.

    Example: chamberlain authority configure examples/acme --cluster dev1 --prune
    """
    from chamberlain.authority import session

    ctx = _Context(path, vault_addr, vault_cacert, kubeconfig, vault_token)
    desired = ctx.desired(environment, cluster, audit_file, kubernetes_host, kubernetes_ca_file,
                          token_reviewer_jwt_file)
    client = session.configurator(ctx.conn, ctx.platform, ctx.kube)
    changes, applied = _converge(client, desired, prune=prune, dry_run=dry_run,
                                 record=ctx.recorder("authority configure")(client))
    _print_changes(changes, output, applied=None if dry_run else applied, dry_run=dry_run)


def plan(
    path: RepoPath,
    prune: Annotated[bool, typer.Option("--prune", help="Also show what --prune would remove.")] = False,
    policies: Annotated[bool, typer.Option("--policies/--no-policies",
                                           help="Also show rotation-policy drift (policy in force vs Git).")
                        ] = True,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    kubeconfig: Kubeconfig = None,
    vault_token: VaultToken = None,
    environment: Environment = None,
    cluster: Cluster = None,
    audit_file: AuditFile = "stdout",
    kubernetes_host: KubeHost = None,
    kubernetes_ca_file: KubeCA = None,
    token_reviewer_jwt_file: ReviewerJWT = None,
    output: Output = DataFormat.text,
) -> None:
    """Show how Vault's configuration differs from the intent (add/change/remove per object), and where the
    rotation policy in force differs from Git's; change nothing. Exit 0 when up to date, 1 when there is a diff.

    Example: chamberlain plan examples/acme --cluster dev1 -o json
    """
    from chamberlain.cli.policy import drift_for_plan, show_drift

    changes = vault_plan(path, prune=prune, vault_addr=vault_addr, vault_cacert=vault_cacert,
                         kubeconfig=kubeconfig, vault_token=vault_token, environment=environment, cluster=cluster,
                         audit_file=audit_file, kubernetes_host=kubernetes_host,
                         kubernetes_ca_file=kubernetes_ca_file, token_reviewer_jwt_file=token_reviewer_jwt_file)
    drifts: list[Any] = []
    unchecked: str | None = None if policies else "not requested"
    if policies:
        try:
            drifts = drift_for_plan(path, environment, cluster, vault_addr, vault_cacert, vault_token, kubeconfig)
        except ChamberlainError as exc:  # e.g. no orchestrator login from here: the config plan still stands
            unchecked = str(exc)
    if output is DataFormat.text:
        _print_changes(changes, output, applied=None, dry_run=True)
        if unchecked is None:
            show_drift(drifts, output, None)
        elif policies:
            stderr.print(f"policy drift not checked: {unchecked}", markup=False, highlight=False)
    else:
        from chamberlain.authority.configure import summarize

        emit_data({"changes": [c.as_dict() for c in changes], "summary": summarize(changes), "dry_run": True,
                   "policyDrift": None if unchecked else [d.as_dict() for d in drifts],
                   "policyDriftUnchecked": unchecked}, output)
    if changes or drifts:
        raise typer.Exit(1)


authority_app.command("plan")(plan)


def vault_plan(path: str, *, prune: bool = False, vault_addr: str | None = None, vault_cacert: Path | None = None,
               kubeconfig: Path | None = None, vault_token: str | None = None, environment: str | None = None,
               cluster: str | None = None, audit_file: str = "stdout", kubernetes_host: str | None = None,
               kubernetes_ca_file: Path | None = None,
               token_reviewer_jwt_file: Path | None = None) -> list[Change]:
    """The Vault part of ``chamberlain plan PATH``: the changes ``authority configure`` would make."""
    from chamberlain.authority import session

    ctx = _Context(path, vault_addr, vault_cacert, kubeconfig, vault_token)
    desired = ctx.desired(environment, cluster, audit_file, kubernetes_host, kubernetes_ca_file,
                          token_reviewer_jwt_file)
    client = session.configurator(ctx.conn, ctx.platform, ctx.kube)
    changes, _ = _converge(client, desired, prune=prune, dry_run=True, record=None)
    return changes


@authority_app.command()
def rekey(
    path: RepoPath,
    identity: Identity,
    shares: Annotated[int | None, typer.Option("--shares", min=1, max=10,
                                               help="New share count (default: unchanged).")] = None,
    threshold: Annotated[int | None, typer.Option("--threshold", min=1, max=10,
                                                  help="New threshold (default: unchanged).")] = None,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    kubeconfig: Kubeconfig = None,
    vault_token: VaultToken = None,
    output: Output = DataFormat.text,
) -> None:
    """Issue new unseal shares (the old ones from the Secret, opened with the identity), seal them to the
    Platform's recipients, replace the Secret, then rotate Vault's encryption key. For an exposed share.

    Example: chamberlain authority rekey --identity root.age examples/acme
    """
    from chamberlain.authority import lifecycle, session

    ctx = _Context(path, vault_addr, vault_cacert, kubeconfig, vault_token)
    report = lifecycle.rekey(
        ctx.conn.anonymous(), ctx.store(), lifecycle.load_identities(identity),
        ctx.platform.spec.root_of_trust.age_recipients,
        login_configurator=lambda: session.configurator(ctx.conn, ctx.platform, ctx.kube),
        recorder_for=ctx.recorder("authority rekey"), shares=shares, threshold=threshold, clock=ctx.clock,
    )
    if not emit_data(asdict(report), output):
        stdout.print(f"rekeyed: {report.shares} new shares (threshold {report.threshold}, generation "
                     f"{report.generation}) sealed in the Secret; encryption key rotated (term {report.key_term}).",
                     markup=False, highlight=False)


@authority_app.command()
def status(
    path: RepoPath,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    kubeconfig: Kubeconfig = None,
    output: Output = DataFormat.text,
) -> None:
    """Where the authority stands: initialized, sealed, version, HA, the sealed material, the root token."""
    from chamberlain.authority import lifecycle

    ctx = _Context(path, vault_addr, vault_cacert, kubeconfig)
    data = lifecycle.status(ctx.conn.anonymous(), ctx.store()).as_dict()
    if emit_data(data, output):
        return
    m = data["sealed_material"]
    root = {True: "revoked", False: "NOT revoked", None: "unknown"}[data["root_token_revoked"]]
    for line in (
        f"address:        {data['address']}",
        f"version:        {data['version']}",
        f"initialized:    {data['initialized']}",
        f"sealed:         {data['sealed']} (threshold {data['threshold']} of {data['shares']})",
        f"ha enabled:     {data.get('ha_enabled', 'unknown')}",
        f"sealed shares:  {'Secret ' + m['secret'] if m['exists'] else 'MISSING (' + m['secret'] + ')'}"
        + (f", {m['shares']} shares, threshold {m['threshold']}, generation {m['generation']}" if m["exists"] else ""),
        f"root token:     {root}",
    ):
        stdout.print(line, markup=False, highlight=False)
    if not data["initialized"] or data["sealed"]:
        stderr.print("the authority is not ready: run `chamberlain authority init` or `unseal`", markup=False)
