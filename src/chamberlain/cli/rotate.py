"""``chamberlain rotate`` (the manual trigger) and ``chamberlain status``: thin commands over
:mod:`chamberlain.rotation.manual` and the durable workflow.

``rotate NAME PATH --reason TEXT`` starts a run through the same workflow path every trigger uses and drives it
until it is finished and recorded (a wait longer than ``--max-wait``, such as a revoke after a long maxOverlap,
leaves the run to resume from its record). ``--rollback`` re-promotes the previous version; ``--release`` clears a
hold. ``rotate --namespace X PATH --reason compromise`` rotates every intent with a consumer or producer in X.
Exit 0 ok, 1 failed/held, 2 usage. Connection options are those of ``handover``. Never prints a value.

``status PATH`` prints, per secret of the selected environment/cluster: classification, authority, version, last
rotation, next due, held, and whether each consumer Secret carries the current version marker (annotations only).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chamberlain.cli.handover import (
    AuthorityOptions,
    Output,
    actor,
    close_kube,
    new_run_id,
    open_kube,
    open_kv,
    open_vault,
)
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
from chamberlain.clock import SystemClock
from chamberlain.errors import ChamberlainError, UsageError


def _kube_propagation(kube: Any) -> Any:
    for method in ("annotate_external_secret", "get_secret_annotations", "get_pod_template"):
        if not hasattr(kube, method):  # pragma: no cover - the real client implements them all
            raise UsageError("the Kubernetes client cannot propagate (no ExternalSecret support)")
    return kube


def _print_run(row: dict[str, Any]) -> None:
    prop = row["propagationSeconds"]
    stdout.print(
        f"{row['stage']:<12} {row['secret']} {row['path']}  run {row['run']}  "
        f"v{row['previousVersion']} -> v{row['version'] if row['version'] is not None else '?'}  "
        f"propagated {'-' if prop is None else f'{prop:.2f}s'}  "
        f"restarted {','.join(row['workloadsRestarted']) or '-'}",
        markup=False, highlight=False)
    if row.get("error"):
        stderr.print(f"  {row['error']}", markup=False, highlight=False)
    if row.get("message"):
        stderr.print(f"  {row['message']}", markup=False, highlight=False)


def rotate_cmd(
    path: RepoPath,
    name: Annotated[str | None, typer.Argument(help="The secret (intent name); omit with --namespace.",
                                               show_default=False)] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the run and the ledger.",
                                               show_default=False)] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", show_default=False,
                                                  help="Rotate every secret with a consumer or producer here.")
                         ] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Re-promote the previous version.")] = False,
    release: Annotated[bool, typer.Option("--release", help="Clear the hold of a secret.")] = False,
    max_wait: Annotated[float, typer.Option("--max-wait", help="Longest wait (s) to sleep through in a run.")
                        ] = 120.0,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for consumers to sync.")] = 120.0,
    environment: Environment = None,
    cluster: Cluster = None,
    output: Output = DataFormat.text,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Rotate a secret now through the durable workflow (manual trigger), or roll back / release it.

    Example: chamberlain rotate examples/acme grafana-admin --reason "suspected leak" -e dev --cluster dev1
    """
    from chamberlain.handover import select_cluster
    from chamberlain.rotation import manual as rm
    from chamberlain.rotation import workflow as wf
    from chamberlain.triggers.manual import for_namespace, manual

    # PATH NAME or NAME PATH: accept the secret's name first, as the issue spells it.
    if name is not None and not _is_dir(path) and _is_dir(name):
        path, name = name, path
    if (name is None) == (namespace is None):
        raise UsageError("pass a secret NAME or --namespace (exactly one)")
    if rollback and release:
        raise UsageError("--rollback and --release exclude each other")
    if namespace is not None and (rollback or release):
        raise UsageError("--rollback and --release take one secret NAME, not --namespace")
    if not release and not (reason or "").strip():
        raise UsageError("--reason is required (it is recorded on the run and in the ledger)")
    repo, platform = valid_repository(path)
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    chosen, _ = select_cluster(platform, environment, cluster)
    clock = SystemClock()
    now = clock.now()
    if namespace is not None:
        names = [r.secret for r in for_namespace(intents.values(), namespace, reason or "", now)]
        if not names:
            raise UsageError(f"no secret has a consumer or producer in namespace {namespace!r}")
    else:
        assert name is not None
        names = [manual(name, reason or "", now).secret]
    selected = rm.pick(list(intents.values()), names)
    placed = [rm.place(platform, i, environment, chosen) for i in selected]
    kube = open_kube(kubeconfig)
    from chamberlain.authority.pki import VaultCertificateIssuer

    client = open_vault(platform, AuthorityOptions(vault_addr, vault_cacert, vault_token_file), kube, chosen)
    kv = client.kv
    who = actor()
    rows: list[dict[str, Any]] = []
    ok = True
    for p in placed:
        if release:
            was = wf.release(kv, p.vault)
            rows.append({"secret": p.name, "path": p.vault.full, "released": was})
            continue
        deps, timed = rm.build_deps(kv, _kube_propagation(kube), platform, intents, p, actor=who, clock=clock,
                                     timeout=timeout,
                                     pki=VaultCertificateIssuer(client))
        run_id = new_run_id()
        try:
            if rollback:
                run = wf.start(kv, p.vault, secret=p.name, run_id=run_id, trigger="rollback",
                               reason=reason or "", now=clock.now(), source_version=_previous(kv, p.vault),
                               ignore_held=True)
            else:
                run = wf.start(kv, p.vault, secret=p.name, run_id=run_id, trigger="manual", reason=reason or "",
                               now=clock.now())
            run = rm.drive(run, deps, max_wait=max_wait)
        except ChamberlainError as exc:  # our messages name secrets and states, never values
            ok = False
            rows.append({"secret": p.name, "path": p.vault.full, "run": run_id, "stage": "not-started",
                         "ok": False, "finished": True, "previousVersion": None, "version": None,
                         "propagationSeconds": None, "workloadsRestarted": [], "error": str(exc)})
            continue
        row = rm.run_report(run, timed)
        if not run.finished:
            row["message"] = (f"run {run.run_id} is {run.stage}; it resumes from its record"
                              + (f" (revoke at {row['revokeAt']})" if row.get("revokeAt") else ""))
        ok = ok and (run.succeeded or (run.stage == "revoke-wait" and run.last_error is None))
        rows.append(row)
    close_kube(kube)
    if not emit_data({"ok": ok, "cluster": chosen, "runs" if not release else "released": rows}, output):
        for row in rows:
            if release:
                stdout.print(f"{'released' if row['released'] else 'not-held':<12} {row['secret']} {row['path']}",
                             markup=False, highlight=False)
            else:
                _print_run(row)
    raise typer.Exit(0 if ok else 1)


def _is_dir(text: str | None) -> bool:
    from pathlib import Path

    return text is not None and Path(text).is_dir()


def _previous(kv: Any, vault: Any) -> int:
    from chamberlain.authority.errors import NotFound

    meta = kv.read_metadata(vault.mount, vault.path)
    if meta is None or meta.current_version < 2:
        raise NotFound(f"{vault}: no earlier version to roll back to")
    source = int(meta.current_version) - 1
    if meta.versions.get(source, False):
        raise NotFound(f"{vault}: version {source} is not available to roll back to")
    return source


def status_cmd(
    path: RepoPath,
    environment: Environment = None,
    cluster: Cluster = None,
    output: Output = DataFormat.text,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Per secret: classification, authority, version, last rotation, next due, held, consumers in sync.

    Example: chamberlain status examples/acme -e dev --cluster dev1 -o json
    """
    from chamberlain.audit.ledger import LedgerReader
    from chamberlain.handover import select_cluster
    from chamberlain.intent.paths import effective_policy, placements
    from chamberlain.rotation import manual as rm

    repo, platform = valid_repository(path)
    chosen, envs = select_cluster(platform, environment, cluster)
    kube = open_kube(kubeconfig)
    kv = open_kv(platform, AuthorityOptions(vault_addr, vault_cacert, vault_token_file), kube, chosen)
    ledger = LedgerReader(kv, platform.spec.authority.mounts.runtime)
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    now = SystemClock().now()
    rows: list[dict[str, Any]] = []
    for loaded in sorted(repo.intents, key=lambda i: i.obj.metadata.name):
        intent = loaded.obj
        for pl in placements(platform, intent):
            if pl.cluster != chosen or pl.environment not in envs:
                continue
            git = effective_policy(platform, policies, intent)
            placed = rm.Placed(intent, pl.environment, pl.cluster, pl.vault)
            rows.append(rm.secret_status(kv, ledger, _kube_propagation(kube), placed, now,
                                         git[1] if git else None))
    close_kube(kube)
    if not emit_data({"cluster": chosen, "at": now.isoformat(timespec="seconds"), "secrets": rows}, output):
        for r in rows:
            last = r["lastRotation"] or {}
            consumers = r["consumers"]
            synced = sum(1 for c in consumers if c["inSync"])
            stdout.print(
                f"{r['secret']:<28} {r['environment']:<8} {r['classification']:<10} authority={r['authority']:<8} "
                f"v{r['version'] if r['version'] is not None else '-'}  "
                f"last={last.get('at') or '-'} ({last.get('result') or '-'})  next={r['nextDue'] or '-'}  "
                f"{'HELD  ' if r['held'] else ''}in-sync {synced}/{len(consumers)}",
                markup=False, highlight=False)
