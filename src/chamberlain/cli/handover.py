"""``chamberlain handover PATH`` and ``chamberlain provision PATH``: thin commands over
:mod:`chamberlain.handover` and :mod:`chamberlain.provision`, plus the connection options they (and ``audit``)
share.

Connecting (through :mod:`chamberlain.authority.session`): Vault at ``--vault-addr`` (default: the Platform's
``authority.address``) with the CA in ``--vault-cacert``. By default chamberlain logs in through Vault's
Kubernetes auth as the orchestrator of the selected cluster (``chamberlain.<cluster>.orchestrator``, a fresh
short-lived ServiceAccount token from ``--kubeconfig``'s cluster); ``--vault-token-file`` uses a token from a file
instead (lab, break-glass) — a file, never a command-line value, so the token stays out of shell history and
``ps``.

Output: one line per secret (``-o json|yaml`` for machines); exit 0 when everything converged, 1 on a conflict,
a blocked secret or an interrupted run (the message says who is the authority now), 2 on usage errors.
"""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chamberlain.authority.kv import KV
from chamberlain.cli.options import (
    Cluster,
    Environment,
    Kubeconfig,
    VaultAddr,
    VaultCACert,
    VaultTokenFile,
    valid_repository,
)
from chamberlain.cli.output import DataFormat, RepoPath, emit_data, stderr, stdout
from chamberlain.clock import Clock, SystemClock
from chamberlain.errors import UsageError
from chamberlain.intent.model import Platform
from chamberlain.kube.api import Kube

if TYPE_CHECKING:
    from chamberlain.authority.vault import VaultClient

DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")]
Output = Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")]


@dataclass(frozen=True)
class AuthorityOptions:
    address: str | None
    ca_file: Path | None
    token_file: Path | None


def open_vault(platform: Platform, opts: AuthorityOptions, kube: Kube | None = None,
               cluster: str | None = None, clock: Clock | None = None) -> VaultClient:
    """The runtime authority's client: with ``--vault-token-file`` a token session (lab, break-glass); otherwise a
    Kubernetes login as the orchestrator of ``cluster`` (its own identity, least privilege), renewable."""
    from chamberlain.authority.session import Connection, login_as
    from chamberlain.authority.vault import client_with_token

    conn = Connection.resolve(platform, opts.address, opts.ca_file, clock=clock or SystemClock())
    if opts.token_file is None:
        if kube is None or cluster is None:
            raise UsageError("pass --vault-token-file (a file holding a Vault token), or --cluster and --kubeconfig "
                             "to log in as that cluster's orchestrator")
        from chamberlain.render.naming import orchestrator_policy

        return login_as(conn, platform, kube, orchestrator_policy(cluster))
    try:
        token = opts.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"{opts.token_file}: cannot read the token file ({exc.strerror})") from None
    if not token:
        raise UsageError(f"{opts.token_file}: the token file is empty")
    return client_with_token(conn.address, conn.ca_file, token, clock=conn.clock)


def open_kv(platform: Platform, opts: AuthorityOptions, kube: Kube | None = None, cluster: str | None = None) -> KV:
    """The KV of :func:`open_vault`."""
    return open_vault(platform, opts, kube, cluster).kv


def open_kube(kubeconfig: Path | None) -> Kube:
    from chamberlain.kube.client import KubeClient

    if kubeconfig is not None and not kubeconfig.is_file():
        raise UsageError(f"{kubeconfig}: no such kubeconfig")
    try:
        return KubeClient.from_kubeconfig(kubeconfig, clock=SystemClock())
    except Exception as exc:  # the client's config loader raises its own types; the text may name files only
        raise UsageError(f"cannot load a kubeconfig ({type(exc).__name__}); pass --kubeconfig") from None


def close_kube(kube: object) -> None:
    """Close a client from :func:`open_kube` (test doubles may have nothing to close)."""
    close = getattr(kube, "close", None)
    if callable(close):
        close()


def login_name() -> str:
    """The login name of whoever runs this process (``unknown`` when the system cannot say)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def actor() -> str:
    """Who acts, for the ledger: a workstation is never an anonymous control plane (Inv. 6)."""
    return f"cli:{login_name()}"


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def handover_cmd(
    path: RepoPath,
    environment: Environment = None,
    cluster: Cluster = None,
    dry_run: DryRun = False,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the ledger.")] = "explicit handover",
    output: Output = DataFormat.text,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Hand the bootstrap Secrets of one cluster over to Vault: copy (check-and-set), verify, record, retire.

    Safe to re-run: finished handovers are no-ops and an interrupted one resumes. A different value already in
    Vault is a conflict that touches nothing. No value is ever printed.

    Example: chamberlain handover examples/acme --cluster dev1 --vault-token-file ~/.vault-token
    """
    from chamberlain.audit.ledger import Ledger
    from chamberlain.handover import RunContext, handover_units, run_handover, select_cluster

    repo, platform = valid_repository(path)
    units = handover_units(repo, environment, cluster)
    chosen, _ = select_cluster(platform, environment, cluster)
    kube = open_kube(kubeconfig)
    kv = open_kv(platform, AuthorityOptions(vault_addr, vault_cacert, vault_token_file), kube, chosen)
    clock = SystemClock()
    ctx = RunContext(actor=actor(), run=new_run_id(), clock=clock, reason=reason)
    report = run_handover(units, kv, kube, Ledger(kv, platform.spec.authority.mounts.runtime, clock), ctx,
                          dry_run=dry_run)
    rows = [o.as_dict() for o in report.outcomes]
    if not emit_data({"run": ctx.run, "dryRun": dry_run, "handovers": rows}, output):
        for row in rows:
            steps = ",".join(row["steps"]) or "-"  # type: ignore[arg-type]
            verb = "would" if dry_run else "steps"
            stdout.print(f"{row['result']:<20} {row['intent']} ({row['environment']}/{row['cluster']}) "
                         f"{row['source']} -> {row['path']}  {verb}: {steps}", markup=False, highlight=False)
            if row["result"] in ("conflict", "blocked"):
                stderr.print(f"  {row['message']}", markup=False, highlight=False)
        if not rows:
            stderr.print("no bootstrap secrets in the selected cluster", markup=False)
    raise typer.Exit(0 if report.ok else 1)


def provision_cmd(
    path: RepoPath,
    environment: Environment = None,
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", "-c", show_default=False,
                     help="Log in as this cluster's orchestrator (without --vault-token-file)."),
    ] = None,
    dry_run: DryRun = False,
    output: Output = DataFormat.text,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Create the initial values of generated secrets (source.generate) in Vault; existing values stay untouched.

    Each value is created once (check-and-set 0), tagged with the rotation policy in force and recorded in the
    ledger. Safe to re-run. No value is ever printed.

    Example: chamberlain provision examples/acme --environment dev --vault-token-file ~/.vault-token
    """
    from chamberlain.audit.ledger import Ledger
    from chamberlain.provision import provision_units, run_provision

    repo, platform = valid_repository(path)
    units = provision_units(repo, environment)
    kube = open_kube(kubeconfig) if vault_token_file is None else None
    kv = open_kv(platform, AuthorityOptions(vault_addr, vault_cacert, vault_token_file), kube, cluster)
    run_id = new_run_id()
    clock = SystemClock()
    outcomes = run_provision(units, kv, Ledger(kv, platform.spec.authority.mounts.runtime, clock), actor=actor(),
                             run=run_id, clock=clock, dry_run=dry_run)
    rows = [o.as_dict() for o in outcomes]
    if not emit_data({"run": run_id, "dryRun": dry_run, "values": rows}, output):
        for row in rows:
            steps = ",".join(row["steps"]) or "-"  # type: ignore[arg-type]
            stdout.print(f"{row['result']:<8} {row['intent']} ({row['environment']}) {row['path']}  "
                         f"{'would' if dry_run else 'steps'}: {steps}", markup=False, highlight=False)
