"""``chamberlain drill ...``: disaster drills on the lab (thin: options in, the drill's report out).

Progress lines go to stderr as each step runs; the report (``{"ok", "secrets", "matched", "rtoSeconds", ...}``:
counts, names, seconds, states, never a value) goes to stdout. Exit 0 only when every consumer Secret came back
with the version marker it had (``matched == secrets``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from chamberlain.cli.lab import AuthorityChoice
from chamberlain.cli.output import DataFormat, emit_data, stderr, stdout

drill_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main


def _progress(message: str) -> None:
    stderr.print(message, markup=False, highlight=False)


def _print(data: dict[str, Any]) -> None:
    for step in data["steps"]:
        facts = {k: v for k, v in step.items() if k not in ("step", "seconds")}
        shown = ", ".join(f"{k}={v}" for k, v in facts.items() if not isinstance(v, dict | list))
        stdout.print(f"{step['step']:<17} {step['seconds']:>6.1f}s  {shown}", markup=False, highlight=False)
    rto = "-" if data["rtoSeconds"] is None else f"{data['rtoSeconds']:.1f}s"
    verdict = "ok" if data["ok"] else "FAILED"
    stdout.print(f"{data['drill']}: {verdict}: {data['matched']} of {data['secrets']} consumer Secrets back with "
                 f"their version marker; RTO {rto}", markup=False, highlight=False)
    for key in ("missing", "changed"):
        if data.get(key):
            stdout.print(f"{key}: {', '.join(data[key])}", markup=False, highlight=False)
    if data.get("error"):
        stdout.print(f"error: {data['error']}", markup=False, highlight=False)


@drill_app.command("cluster-loss")
def cluster_loss(
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
    lab_dir: Annotated[Path | None, typer.Option(
        "--lab-dir", show_default=False,
        help="The lab to drill on (default: the --work-dir's parent; without --work-dir: a fresh lab there, or in "
             "a new temporary directory).")] = None,
    work_dir: Annotated[Path | None, typer.Option(
        "--work-dir", show_default=False,
        help="A kept demo's working directory (`chamberlain demo --through handover --keep`): its repository "
             "copy, custodian and GitOps keys. Default: run the demo through handover first.")] = None,
    port_offset: Annotated[int, typer.Option("--port-offset", help="Shift every port of a fresh lab by N.")] = 0,
    authority: Annotated[AuthorityChoice, typer.Option(
        "--authority", help="A fresh lab's runtime authority: OpenBao (default) or HashiCorp Vault.")]
    = AuthorityChoice.openbao,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave a lab the drill brought up running afterwards (one given is always left running).")]
    = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds each wait may take.")] = 180.0,
) -> None:
    """Lose the lab's Kubernetes cluster and rebuild it: etcd's data deleted, the cluster and the authority
    restarted empty and sealed, Flux re-bootstrapped (the cluster's GitOps key), the authority unsealed from the
    share export in Git by two custodians and re-configured for the new cluster, then Flux and ESO rebuild every
    consumer Secret. Compares each one's version marker with the one it had; nothing is regenerated.

    Example: chamberlain drill cluster-loss -o json --port-offset 300
    """
    from chamberlain.bootstrap import Tools
    from chamberlain.cli.options import login_name, settings
    from chamberlain.clock import SystemClock
    from chamberlain.drill.cluster_loss import ClusterLossOptions, run_cluster_loss
    from chamberlain.lab.servers import LabHost

    s = settings()
    options = ClusterLossOptions(lab_dir=lab_dir, work_dir=work_dir, port_offset=port_offset,
                                 authority=authority.value, keep=keep, timeout=timeout, user=login_name(),
                                 debug=s.debug)
    report = run_cluster_loss(options, LabHost.from_settings(s, SystemClock()), Tools.from_settings(s),
                              progress=_progress)
    data = report.as_dict()
    if not emit_data(data, output):
        _print(data)
    raise typer.Exit(0 if report.ok else 1)
