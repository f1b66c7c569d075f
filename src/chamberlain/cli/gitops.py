"""``chamberlain apply``: the LAB STAND-IN for Argo CD + KSOPS / Flux (thin; see :mod:`chamberlain.gitops`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import repo_dir, settings
from chamberlain.cli.output import DataFormat, RepoPath, emit_data, stderr, stdout
from chamberlain.clock import SystemClock


def apply_cmd(
    path: RepoPath,
    identity: Annotated[
        Path | None,
        typer.Option("--identity", help="The in-cluster age identity bootstrap files are decrypted with (what "
                     "KSOPS/Flux hold as sops-age).", show_default=False),
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Kubeconfig of the target cluster.", show_default=False)
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Only this environment's application.",
                                 show_default=False)
    ] = None,
    cluster: Annotated[
        str | None, typer.Option("--cluster", "-c", help="The cluster to apply (required when there are several).",
                                 show_default=False)
    ] = None,
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
) -> None:
    """LAB STAND-IN for the GitOps controller (Argo CD + KSOPS, or Flux): apply the rendered output to a cluster.

    Not a GitOps controller: in production Argo CD or Flux apply the output of `chamberlain render`. This command
    lets the lab do the same: validate, render in memory, apply CRDs and wait until Established, then
    server-side-apply each application in sync-wave order (field manager chamberlain-gitops-standin), decrypting
    bootstrap Secrets in memory with --identity as KSOPS would. Idempotent. Prints counts, never data.

    Example: chamberlain apply examples/acme --cluster dev1 --identity ~/lab.agekey --kubeconfig lab/kubeconfig
    """
    from chamberlain.bootstrap import Tools
    from chamberlain.errors import UsageError
    from chamberlain.gitops import apply_repository
    from chamberlain.kube.client import KubeClient

    root = repo_dir(path)
    if kubeconfig is not None and not kubeconfig.is_file():
        raise UsageError(f"{kubeconfig}: no such kubeconfig")
    kube = KubeClient.from_kubeconfig(kubeconfig, clock=SystemClock())
    try:
        report = apply_repository(root, kube, identity=identity, tools=Tools.from_settings(settings()),
                                  environment=environment, cluster=cluster)
    finally:
        kube.close()
    if emit_data(report.to_dict(), output):
        return
    crds = report.crds
    stdout.print(f"cluster {report.cluster}: CRDs {crds['created']} created, {crds['configured']} configured, "
                 f"{crds['unchanged']} unchanged", markup=False, highlight=False)
    for app in report.apps:
        c = app.counts
        stdout.print(f"{app.path}: {app.total} objects ({c['created']} created, {c['configured']} configured, "
                     f"{c['unchanged']} unchanged), {app.bootstrap_secrets} bootstrap Secrets decrypted in memory",
                     markup=False, highlight=False)
    stderr.print("[green]applied[/green]" if report.changed else "[green]up to date[/green]: nothing changed")
