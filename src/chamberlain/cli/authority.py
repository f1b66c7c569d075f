"""``chamberlain authority init|unseal|configure|plan|rekey|status|export-shares`` and ``chamberlain plan``: thin
commands over :mod:`chamberlain.service.authority`.

Each command turns its options into a request, calls one use case and prints its report. Nothing printed here is a
share, a token or a value: reports carry counts, names and states. Ledger entries of these commands name the
command as their actor (``chamberlain authority init``).

Registered by the main CLI with ``app.add_typer(authority_app, name="authority")``; ``plan`` is also the top-level
``chamberlain plan PATH``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chamberlain.cli.options import GROUPED, Target, clock, configure_options, settings, target_options
from chamberlain.cli.output import DataFormat, Output, RepoPath, emit_data, line
from chamberlain.service.authority import ConfigureOptions, Selection
from chamberlain.service.context import Caller, LiveServers

if TYPE_CHECKING:
    from chamberlain.authority.configure import Change
    from chamberlain.service.authority import ExportResult

authority_app = typer.Typer(no_args_is_help=True, add_completion=False)  # help: cli.main

# Repeatable: under custody each custodian holds one share, and generate-root or rekey take k of them in one run.
Identities = Annotated[list[Path], typer.Option(
    "--identity", metavar="FILE",
    help="age identity file: the root of trust's, or a custodian's (repeat for several custodians).")]


ExportShares = Annotated[bool, typer.Option(
    "--export-shares", help="Also write the sealed shares to authority/unseal-shares.yaml in the repository (an "
    "existing export is refreshed anyway), so a lost cluster's authority can be unsealed from Git.")]


def _caller(command: str, servers: LiveServers) -> Caller:
    return Caller(f"chamberlain {command}", servers.clock)


def _selection(path: str, target: Target, configure: ConfigureOptions) -> Selection:
    return Selection(Path(path), target.environment, target.cluster, configure)


def _print_changes(changes: list[Change], *, dry_run: bool) -> None:
    from chamberlain.authority.configure import summarize

    for c in changes:
        line(c.line())
    s = summarize(changes)
    if not changes:
        line("Vault configuration is up to date (no changes).")
    else:
        line(f"{'would change' if dry_run else 'changed'}: {s['add']} to add, {s['change']} to change, "
             f"{s['remove']} to remove" + (f", {s['conflict']} conflicts" if s["conflict"] else "")
             + (f", {s['declare']} to declare in the server's configuration file" if s["declare"] else ""))


@authority_app.command()
@target_options(token_file=False)
@configure_options
def init(
    path: RepoPath,
    shares: Annotated[int | None, typer.Option(
        "--shares", min=1, max=10, help="Shamir shares to create (default 5; with custody declared in the "
        "Platform: one per custodian, and a different value is refused).")] = None,
    threshold: Annotated[int | None, typer.Option(
        "--threshold", min=1, max=10, help="Shares needed to unseal (default 3; with custody: the Platform's "
        "threshold, and a different value is refused).")] = None,
    identity: Annotated[list[Path] | None, typer.Option(
        "--identity", help="age identity; only needed to resume a run that stopped before it finished (under "
        "custody, repeat it: k custodians).", metavar="FILE")] = None,
    recovery_dir: Annotated[Path | None, typer.Option(
        "--recovery-dir", metavar="DIR", help="Where encrypted shares wait if the Kubernetes write fails.")] = None,
    export_shares: ExportShares = False,
    target: Target = GROUPED,
    configure: ConfigureOptions = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """Initialize Vault: shares sealed into a Kubernetes Secret — one per custodian when the Platform declares
    rootOfTrust.custody, else each to the root recipients — unseal, configure, verify the orchestrator login,
    revoke the root token. Safe to re-run; resumes after a crash.

    Example: chamberlain authority init --shares 5 --threshold 3 examples/acme
    """
    from chamberlain.service import authority

    request = authority.InitRequest(_selection(path, target, configure), recovery_dir or settings().recovery_dir,
                                    shares, threshold, tuple(identity or ()), export=export_shares)
    with LiveServers(target.conn, clock()) as servers:
        result = authority.initialize(request, servers, _caller("authority init", servers))
    if not emit_data(result.as_dict(), output):
        r = result.report
        keys = "sealed shares" if result.seal == "shamir" else f"{result.seal} seal (auto-unseal); sealed recovery keys"
        line(f"Vault at {result.address}: {'initialized now' if r.initialized_now else 'already initialized'}; "
             f"{keys} in Secret {result.secret}; configuration changes: {r.configure_changes}; "
             f"orchestrator login verified for {', '.join(r.verified_roles) or 'no role'}; root token revoked.")
        if result.secret_from_export:
            line("the Secret of sealed shares was missing: re-created from the repository's export (recorded in "
                 "the ledger).")
        _print_export(result.export)


@authority_app.command()
@target_options(environment=False, token_file=False)
def unseal(
    path: RepoPath,
    identity: Annotated[list[Path] | None, typer.Option(
        "--identity", help="age identity file: the root of trust's, or a custodian's (repeat for several "
        "custodians). Not needed with an auto-unseal seal: there is nothing to do.", metavar="FILE")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Discard the unseal progress on the server first "
                                        "(shares other custodians submitted).")] = False,
    target: Target = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """Unseal Vault with the shares sealed in the Kubernetes Secret that the age identities open. Under custody
    each custodian runs it in turn with their own identity; Vault unseals when k have. A no-op when unsealed, and
    with an auto-unseal seal (the server unseals itself; a sealed one cannot reach its seal, and it says so).
    When the Secret is gone (a lost cluster), it is re-created from the repository's export
    (authority/unseal-shares.yaml) first.

    Example: chamberlain authority unseal --identity ~/.config/chamberlain/root.age examples/acme
    """
    from chamberlain.service import authority

    with LiveServers(target.conn, clock()) as servers:
        result = authority.unseal(Path(path), identity or [], servers, reset=reset,
                                  caller=_caller("authority unseal", servers), cluster=target.cluster)
    if not emit_data(result.as_dict(), output):
        if result.secret_from_export:
            line(f"the Secret of sealed shares was missing: unsealed from {result.secret_from_export}; Secret "
                 f"re-created: {result.recorded}.")
        line(f"Vault at {result.address}: {result.message}.")


@authority_app.command()
@target_options(token_file=False, token=True)
@configure_options
def configure(
    path: RepoPath,
    prune: Annotated[bool, typer.Option("--prune", help="Remove unmanaged policies and roles "
                                        "(never root/default, never mounts).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    target: Target = GROUPED,
    configure: ConfigureOptions = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """Converge Vault's mounts, Kubernetes auth, roles, policies and audit device to the rendered bundle.

    Example: chamberlain authority configure examples/acme --cluster dev1 --prune
    """
    from chamberlain.service import authority

    with LiveServers(target.conn, clock()) as servers:
        result = authority.configure(_selection(path, target, configure), servers,
                                     _caller("authority configure", servers), prune=prune, dry_run=dry_run)
    if not emit_data(result.as_dict(), output):
        _print_changes(result.changes, dry_run=dry_run)


@target_options(token_file=False, token=True)
@configure_options
def plan(
    path: RepoPath,
    prune: Annotated[bool, typer.Option("--prune", help="Also show what --prune would remove.")] = False,
    policies: Annotated[bool, typer.Option("--policies/--no-policies",
                                           help="Also show rotation-policy drift (policy in force vs Git).")
                        ] = True,
    target: Target = GROUPED,
    configure: ConfigureOptions = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """Show how Vault's configuration differs from the intent (add/change/remove per object), where the
    rotation policy in force differs from Git's, conflicts in the cluster (an ExternalSecret chamberlain did
    not render writing one of its Secrets, a Reloader annotation on a restart target), and intents removed from
    Git while their data is still in the authority (retire them with spec.retire instead); change nothing. Exit 0
    when up to date, 1 when there is a diff, a conflict or a removed intent.

    Example: chamberlain plan examples/acme --cluster dev1 -o json
    """
    from chamberlain.cli.policy import show_drift
    from chamberlain.service import authority

    with LiveServers(target.conn, clock()) as servers:
        result = authority.plan(_selection(path, target, configure), servers, prune=prune, policies=policies)
    if not emit_data(result.as_dict(), output):
        _print_changes(result.changes, dry_run=True)
        if result.drift_unchecked is None:
            show_drift(result.drifts)
        elif policies:
            line(f"policy drift not checked: {result.drift_unchecked}", err=True)
        for conflict in result.conflicts:
            line(conflict.line())
        if result.conflicts_unchecked is not None:
            line(f"conflicts not checked: {result.conflicts_unchecked}", err=True)
        elif not result.conflicts:
            line("no conflicts: nothing else writes chamberlain's Secrets or restarts its workloads")
        for orphan in result.orphans:
            line(orphan.line())
        for stranded in result.stranded:
            line(stranded.line())
        if result.orphans_unchecked is not None:
            line(f"removed intents not checked: {result.orphans_unchecked}", err=True)
    if not result.up_to_date:
        raise typer.Exit(1)


authority_app.command("plan")(plan)


@authority_app.command()
@target_options(environment=False, token_file=False, token=True)
def rekey(
    path: RepoPath,
    identity: Identities,
    shares: Annotated[int | None, typer.Option("--shares", min=1, max=10, help="New share count (default: "
                                               "unchanged; with custody: one per custodian, not a flag).")] = None,
    threshold: Annotated[int | None, typer.Option("--threshold", min=1, max=10, help="New threshold (default: "
                                                  "unchanged; with custody: the Platform's, not a flag).")] = None,
    export_shares: ExportShares = False,
    target: Target = GROUPED,
    output: Output = DataFormat.text,
) -> None:
    """Issue new unseal shares (the old ones from the Secret, opened with the identities: k custodians under
    custody), seal them as the Platform declares (one per custodian, or to the root recipients), replace the
    Secret, then rotate Vault's encryption key. For an exposed share, and to move to a new custodian list.

    Example: chamberlain authority rekey --identity alice.agekey --identity bob.agekey examples/acme
    """
    from chamberlain.service import authority

    with LiveServers(target.conn, clock()) as servers:
        result = authority.rekey(Path(path), identity, servers, _caller("authority rekey", servers), shares=shares,
                                 threshold=threshold, cluster=target.cluster, export=export_shares)
    if not emit_data(result.as_dict(), output):
        r = result.report
        keys = "recovery keys" if r.recovery_keys else "shares"
        line(f"rekeyed: {r.shares} new {keys} (threshold {r.threshold}, generation {r.generation}) sealed in the "
             f"Secret; encryption key rotated (term {r.key_term}).")
        _print_export(result.export)


@authority_app.command("export-shares")
@target_options(environment=False, cluster=False, token_file=False)
def export_shares_cmd(
    path: RepoPath,
    out: Annotated[Path | None, typer.Option(
        "--out", show_default=False, help="Where to write (default: authority/unseal-shares.yaml in the "
        "repository).", metavar="FILE")] = None,
    output: Output = DataFormat.text,
    target: Target = GROUPED,
) -> None:
    """Export the sealed unseal shares in force (ciphertext only: each share sealed to one custodian, or to the
    root recipients) to a file in the repository, so a lost cluster's authority can still be unsealed. Commit it.
    `authority init/rekey` refresh an existing export; `authority unseal/init` re-create the Secret from it.

    Example: chamberlain authority export-shares examples/acme && git add examples/acme/authority
    """
    from chamberlain.service import authority

    with LiveServers(target.conn, clock()) as servers:
        result = authority.export_shares(Path(path), servers, out=out)
    if not emit_data(result.as_dict(), output):
        _print_export(result)


def _print_export(result: ExportResult | None) -> None:
    if result is None:
        return
    held = f", held by {', '.join(result.holders)}" if result.holders else ""
    state = "written" if result.written else "already up to date"
    line(f"unseal-share export {result.file}: {state} ({result.shares} sealed shares, threshold "
         f"{result.threshold}, generation {result.generation}{held}); commit it.")


@authority_app.command()
@target_options(environment=False, cluster=False, token_file=False)
def status(path: RepoPath, target: Target = GROUPED, output: Output = DataFormat.text) -> None:
    """Where the authority stands: initialized, sealed, version, HA, the sealed material, the root token."""
    from chamberlain.service import authority

    with LiveServers(target.conn, clock()) as servers:
        result = authority.status(Path(path), servers)
    if emit_data(result.as_dict(), output):
        return
    m = result.material
    root = {True: "revoked", False: "NOT revoked", None: "unknown"}[result.root_token_revoked]
    for text in (
        f"address:        {result.address}",
        f"version:        {result.version}",
        f"initialized:    {result.initialized}",
        f"sealed:         {result.sealed} (threshold {result.threshold} of {result.shares}"
        + (" recovery keys)" if result.auto_unseal else ")"),
        f"seal:           {result.seal_type}" + (
            " (auto-unseal: restarts need nobody; the shares are recovery keys)" if result.auto_unseal
            else " (unsealed with its shares: `authority unseal`)"),
        f"ha enabled:     {'unknown' if result.ha_enabled is None else result.ha_enabled}",
        f"sealed shares:  {'Secret ' + m.secret if m.exists else 'MISSING (' + m.secret + ')'}"
        + (f", {m.shares} shares, threshold {m.threshold}, generation {m.generation}" if m.exists else ""),
        f"root token:     {root}",
        "custody:        " + (f"one share per custodian ({', '.join(m.custodians)})" if m.custodians
                               else "none: every share opens with any root identity" if m.exists else "-"),
    ):
        line(text)
    if m.matches_platform is False:
        line("the sealed shares are not sealed as the Platform declares now (custodians or threshold changed): "
             "run `chamberlain authority rekey` with k custodians' identities", err=True)
    if result.seal_matches_platform is False:
        line(f"the server's seal ({result.seal_type}) is not the one the Platform declares "
             f"(authority.seal.type: {result.declared_seal})", err=True)
    if not result.ready and result.auto_unseal and result.initialized:
        line("the authority is sealed although it auto-unseals: it cannot reach its seal (unsealer or KMS); "
             "restore that, then restart it — recovery keys cannot unseal", err=True)
    elif not result.ready:
        line("the authority is not ready: run `chamberlain authority init` or `unseal`", err=True)
