"""``chamberlain drill cluster-loss | authority-loss``: the disasters rehearsed on the lab (thin: options in, report
out). Progress lines go to stderr; the report (``{"ok", "secrets", "matched", "rtoSeconds", ...}``: counts, names,
seconds, states, never a value) to stdout.

Registered by the main CLI with ``app.add_typer(drill_app, name="drill")``. ``authority-loss``: without
``--lab-dir`` the drill first brings a fresh lab to a working world (the demo through its workloads phase: consumer
Secrets materialized by ESO), then drills, then takes the lab down (``--keep`` leaves it). Exit 0 only when the
proof holds: ``matched == secrets``, nothing regenerated, the ledger verifies. ``cluster-loss``: see
:mod:`chamberlain.drill.cluster_loss`; exit 0 only when ``matched == secrets`` and the ledger verifies.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from chamberlain.cli.lab import AuthorityChoice
from chamberlain.cli.output import DataFormat, emit_data, line, stderr, stdout
from chamberlain.errors import UsageError

drill_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main


def _progress(message: str) -> None:
    stderr.print(message, markup=False, highlight=False)


def _identities(given: list[Path] | None, repo: Path) -> tuple[Path, ...]:
    """The identities given, else the demo's custodians (``custodians/*.agekey`` next to its repository copy,
    outside it)."""
    if given:
        return tuple(given)
    found = sorted((repo.parent / "custodians").glob("*.agekey"))
    if not found:
        raise UsageError("pass --identity FILE for the threshold of custodians (or the root identity)")
    return tuple(found)


@drill_app.command("authority-loss")
def authority_loss_cmd(
    lab_dir: Annotated[Path | None, typer.Option(
        "--lab-dir", show_default=False, help="A running lab whose cluster has consumer Secrets (default: a fresh "
        "lab brought through the demo's workloads phase first).", metavar="DIR")] = None,
    repo: Annotated[Path | None, typer.Option(
        "--repo", metavar="PATH", show_default=False,
        help="The intent repository that lab runs (with --lab-dir).")] = None,
    identity: Annotated[list[Path] | None, typer.Option(
        "--identity", metavar="FILE", show_default=False, help="A custodian's (or the root's) age identity; repeat "
        "for the threshold (default with --repo: the demo's custodians/*.agekey next to the repository).")] = None,
    port_offset: Annotated[int, typer.Option("--port-offset", help="Shift every port of a fresh lab by N.")] = 0,
    keep: Annotated[bool, typer.Option("--keep", help="Leave a fresh lab running afterwards.")] = False,
    output: Annotated[DataFormat, typer.Option("-o", "--output", help="Output format.")] = DataFormat.text,
) -> None:
    """Record every consumer Secret's version marker, take a backup, destroy the authority's data, restore the
    backup, unseal from it, force ESO to re-sync, and compare. Reports {ok, secrets, matched, rtoSeconds} and the
    steps; never a value. The ledger must verify across the restore and no value may be regenerated.

    Example: chamberlain drill authority-loss -o json --port-offset 300
    """
    from chamberlain.bootstrap import Tools
    from chamberlain.cli.options import login_name, settings
    from chamberlain.clock import SystemClock
    from chamberlain.demo import DemoOptions, Phase, run_demo
    from chamberlain.drill.authority_loss import DrillOptions, run
    from chamberlain.lab import lab as lab_mod
    from chamberlain.lab.servers import LabHost
    from chamberlain.service.context import ConnectionOptions, LiveServers

    s = settings()
    host = LabHost.from_settings(s, SystemClock())
    fresh = lab_dir is None
    if not fresh and repo is None:
        raise UsageError("--lab-dir needs --repo (the intent repository the lab runs)")
    if fresh:
        base = Path(tempfile.mkdtemp(prefix="chamberlain-drill-"))
        demo = run_demo(DemoOptions(through=Phase.workloads, lab_dir=base / "lab", port_offset=port_offset,
                                    keep=True, user=login_name(), debug=s.debug),
                        host, Tools.from_settings(s), progress=_progress)
        lab_dir = Path(demo.lab_dir)
        repo = Path(demo.work_dir) / "repo"
        if not demo.ok:
            failed = next((p for p in demo.phases if not p.ok), None)
            lab_mod.down(lab_dir, host, progress=_progress)
            raise UsageError(f"the lab could not be brought up for the drill: {failed.name if failed else '?'}: "
                             f"{failed.error if failed else ''}")
    assert lab_dir is not None and repo is not None
    lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, host))
    conn = ConnectionOptions(vault_addr=lab.authority.address, vault_cacert=lab.pki.ca.cert,
                             kubeconfig=lab.kubeconfig)
    options = DrillOptions(repo=repo, lab_dir=lab_dir, identities=_identities(identity, repo),
                           work=lab_dir / "drill")
    try:
        with LiveServers(conn, host.clock) as servers:
            report = run(options, servers, lab, progress=_progress)
    finally:
        if fresh and not keep:
            lab_mod.down(lab_dir, host, progress=_progress)
            lab.postgres.purge()
            shutil.rmtree(lab_dir.parent, ignore_errors=True)
    data = report.as_dict()
    if not emit_data(data, output):
        for step in report.steps:
            line(f"{step.name:<8} {step.seconds:6.1f}s")
        c = report.comparison
        line(f"authority-loss drill: {'ok' if report.ok else 'FAILED'}: {c.matched if c else 0}/"
             f"{c.secrets if c else 0} consumer Secrets kept their version marker, regenerated "
             f"{report.regenerated}, ledger verified {report.ledger_verified}, RTO "
             f"{report.rto_seconds or 0:.1f}s" + (f"; error: {report.error}" if report.error else ""))
        if fresh and keep:
            line(f"lab kept running in {lab_dir}; repository {repo}")
    raise typer.Exit(0 if report.ok else 1)


def _print_cluster_loss(data: dict[str, Any]) -> None:
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
        "--lab-dir", metavar="DIR", show_default=False,
        help="The lab to drill on (default: the --work-dir's parent; without --work-dir: a fresh lab there, or in "
             "a new temporary directory).")] = None,
    work_dir: Annotated[Path | None, typer.Option(
        "--work-dir", metavar="DIR", show_default=False,
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
        _print_cluster_loss(data)
    raise typer.Exit(0 if report.ok else 1)
