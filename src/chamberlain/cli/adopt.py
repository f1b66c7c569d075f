"""``chamberlain adopt``: read an existing estate, write intents and a migration plan. A thin shell over
:mod:`chamberlain.adopt` (read -> map -> plan, pure -> write).

``adopt_app`` is the ``adopt`` group: its callback is the command itself (``adopt --from-manifests DIR --out
REPO``), and the mechanism's subcommands (``adopt verify``, ``adopt takeover``) join the same group.

Exit 0: everything read was mapped and the generated repository validates; 1: something could not be mapped (the
repository and the plan are still written for the rest, and list it with the reason) or the repository does not
validate; 2: usage errors. Never prints a value: none is ever read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from chamberlain.cli.options import GROUPED, DryRun, Target, clock, target_options
from chamberlain.cli.output import ListFormat, ListOutput, emit_data, is_wide, line, stderr
from chamberlain.errors import UsageError

adopt_app = typer.Typer(no_args_is_help=True, add_completion=False, invoke_without_command=True)  # help: cli.main


@adopt_app.callback()
@target_options()
def adopt_cmd(
    ctx: typer.Context,
    from_manifests: Annotated[Path | None, typer.Option(
        "--from-manifests", show_default=False, metavar="DIR",
        help="Read the estate from the manifests under DIR (*.yaml, *.yml, *.json; kind: List too).")] = None,
    from_cluster: Annotated[bool, typer.Option(
        "--from-cluster", help="Read the estate from the cluster (--kubeconfig, --context).")] = False,
    from_authority: Annotated[bool, typer.Option(
        "--from-authority", help="Read the authority's KV metadata (never data): check each ExternalSecret's "
                                 "Vault path and list the runtime paths no consumer reads (--vault-addr, "
                                 "--vault-token-file...).")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", show_default=False, metavar="REPO",
        help="The repository to write (new or empty, or an earlier adopt output).")] = None,
    platform_file: Annotated[Path | None, typer.Option(
        "--platform", show_default=False, metavar="FILE",
        help="The Platform to use (copied into REPO); default: a skeleton from -e, -c, --age-recipient.")] = None,
    age_recipient: Annotated[str | None, typer.Option(
        "--age-recipient", metavar="RECIPIENT", show_default=False,
        help="The skeleton Platform's root-of-trust recipient (chamberlain root init prints it).")] = None,
    platform_name: Annotated[str, typer.Option(
        "--platform-name", metavar="NAME", help="The skeleton Platform's name.")] = "adopted",
    runtime_mount: Annotated[str, typer.Option(
        "--runtime-mount", metavar="MOUNT", help="The skeleton Platform's runtime KV mount.")] = "secret",
    owner_label: Annotated[list[str] | None, typer.Option(
        "--owner-label", show_default=False, metavar="LABEL",
        help="Label naming a secret's owner (repeatable; default: chamberlain.dev/owner, owner, team, "
             "app.kubernetes.io/part-of), on the object, then on its namespace; else the namespace.")] = None,
    namespace: Annotated[list[str] | None, typer.Option(
        "--namespace", "-n", metavar="NAMESPACE", show_default=False, help="Only this namespace (repeatable).")] = None,
    dry_run: DryRun = False,
    target: Target = GROUPED,
    output: ListOutput = ListFormat.text,
) -> None:
    """Bring an existing estate under intent: ExternalSecrets, SecretStores, plain Secrets, SealedSecrets and
    Reloader annotations become intents, consumers and restarts, plus a migration plan (REPO/MIGRATION.md,
    REPO/migration-plan.yaml). Names, keys and owners only: values are never read.

    Example: chamberlain adopt --from-cluster --context prod --out adopted/ -e prod -c prod-eu1 --age-recipient age1...
    """
    if ctx.invoked_subcommand is not None:
        return
    from chamberlain.service.estate import AdoptRequest, run

    if out is None:
        raise UsageError("--out REPO is required: the repository to write")
    if from_manifests is not None and from_cluster:
        raise UsageError("give one estate: --from-manifests DIR or --from-cluster")
    if from_manifests is None and not from_cluster and not from_authority:
        raise UsageError("nothing to read: give --from-manifests DIR, --from-cluster and/or --from-authority")
    request = AdoptRequest(
        out=out, manifests=from_manifests, cluster=from_cluster, authority=from_authority,
        environment=target.environment, cluster_name=target.cluster, platform_file=platform_file,
        age_recipient=age_recipient, platform_name=platform_name, runtime_mount=runtime_mount,
        owner_labels=tuple(owner_label or ()), namespaces=tuple(namespace or ()), dry_run=dry_run)
    result = run(request, target.conn, clock())
    data: dict[str, Any] = result.as_dict()
    if not emit_data(data, output):
        _print(data, wide=is_wide(output))
    for rel in result.kept:  # on stderr whatever the format: a kept file is not what this run generated
        line(f"{'would keep' if dry_run else 'kept'} {out / rel}: edited since adopt wrote it, so left as it is "
             "(delete it and run adopt again to let adopt rewrite or remove it)", err=True)
    raise typer.Exit(0 if result.ok else 1)


def _shown(text: str) -> str:
    """A name read from the estate as one printable line: manifests are not checked by an API server, so a name
    may hold a newline or a terminal escape."""
    return text if text.isprintable() else repr(text)[1:-1]


def _print(data: dict[str, Any], *, wide: bool) -> None:
    spec = data["plan"]["spec"]
    for intent in spec["intents"]:
        consumers = ", ".join(f"{c['namespace']}/{c['secretName']}" for c in intent["consumers"])
        text = f"adopted    {intent['name']:<32} owner {intent['owner']:<20} {intent['origin']:<16} {intent['path']}"
        line(text + (f"  <- {intent['copiedFrom']}" if intent.get("copiedFrom") else "")
             + (f"  consumers {consumers}  (owner from {intent['ownerFrom']})" if wide else ""))
    for item in spec["unmapped"]:
        subject = _shown(f"{item['kind']} {item['namespace'] + '/' if item['namespace'] else ''}{item['name']}")
        line(f"unmapped   {subject}: {_shown(item['reason'])} [{item['rule']}]"
             + (f" ({item['where']})" if item.get("where") else ""))
    for item in spec["skipped"]:
        subject = _shown(f"{item['kind']} {item['namespace'] + '/' if item['namespace'] else ''}{item['name']}")
        line(f"skipped    {subject}: {_shown(item['reason'])}")
    for finding in data.get("validation", {}).get("results", []):
        line(f"invalid    {finding.get('file')}:{finding.get('line') or ''} {finding.get('rule')} "
             f"{finding.get('message')}", err=True)
    verb = "would write" if data["dryRun"] else "wrote"
    colour = "green" if data["ok"] else "red"
    guide = f"{data['out']}/MIGRATION.md"  # a dry run wrote none: never point at it as if it were there
    guide = f"would write {guide} (nothing written: dry run)" if data["dryRun"] else f"see {guide}"
    stderr.print(f"[{colour}]{verb}[/{colour}] {data['out']}: {len(spec['intents'])} intents, "
                 f"{len(spec['steps'])} plan steps, {len(spec['unmapped'])} not mapped, {len(spec['skipped'])} "
                 f"skipped; validate: {data['validation']['status']}; {guide}", markup=True, highlight=False)
