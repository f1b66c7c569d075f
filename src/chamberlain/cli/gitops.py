"""``chamberlain apply``: the LAB STAND-IN for Argo CD + KSOPS / Flux (thin; see :mod:`chamberlain.service.gitops`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chamberlain.cli.options import GROUPED, Target, clock, settings, target_options
from chamberlain.cli.output import DataFormat, Output, RepoPath, emit_data, line, stderr
from chamberlain.service.context import LiveServers


@target_options(vault=False)
def apply_cmd(
    path: RepoPath,
    identity: Annotated[
        Path | None,
        typer.Option("--identity", help="The in-cluster age identity bootstrap files are decrypted with (what "
                     "KSOPS/Flux hold as sops-age).", show_default=False, metavar="FILE"),
    ] = None,
    target: Target = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """OFFLINE FALLBACK, not a GitOps controller: apply the rendered output to a cluster without Flux or Argo CD.

    Not a GitOps controller: in production Argo CD or Flux apply the output of `chamberlain render`. This command
    lets the lab do the same: validate, render in memory, apply CRDs and wait until Established, then
    server-side-apply each application in sync-wave order (field manager chamberlain-gitops-standin), decrypting
    bootstrap Secrets in memory with --identity as KSOPS would. Idempotent. Prints counts, never data.

    Example: chamberlain apply examples/acme --cluster dev1 --identity ~/lab.agekey --kubeconfig lab/kubeconfig
    """
    from chamberlain.bootstrap import Tools
    from chamberlain.service import gitops

    with LiveServers(target.conn, clock()) as servers:
        report = gitops.apply(Path(path), servers, Tools.from_settings(settings()), identity=identity,
                              environment=target.environment, cluster=target.cluster)
    if emit_data(report.to_dict(), output):
        return
    crds = report.crds
    line(f"cluster {report.cluster}: CRDs {crds['created']} created, {crds['configured']} configured, "
         f"{crds['unchanged']} unchanged")
    for app in report.apps:
        c = app.counts
        line(f"{app.path}: {app.total} objects ({c['created']} created, {c['configured']} configured, "
             f"{c['unchanged']} unchanged), {app.bootstrap_secrets} bootstrap Secrets decrypted in memory")
    stderr.print("[green]applied[/green]" if report.changed else "[green]up to date[/green]: nothing changed")
