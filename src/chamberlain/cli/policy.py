"""``chamberlain policy plan|apply``: the rotation policy in force (Vault metadata) against Git's.

``plan`` lists the drift per secret (exit 1 when there is any); ``apply`` writes Git's policy onto each drifted
secret, one ``policy-change`` ledger entry each. Connection options are those of ``rotate``.
"""

from __future__ import annotations

from typing import Any

import typer

from chamberlain.cli.handover import AuthorityOptions, Output, actor, close_kube, new_run_id, open_kube, open_kv
from chamberlain.cli.options import (
    Cluster,
    Environment,
    Kubeconfig,
    VaultAddr,
    VaultCACert,
    VaultTokenFile,
    valid_repository,
)
from chamberlain.cli.output import DataFormat, RepoPath, emit_data, stdout
from chamberlain.errors import UsageError

policy_app = typer.Typer(no_args_is_help=True, add_completion=False)


def drift_for_plan(path: str, environment: str | None, cluster: str | None, vault_addr: str | None,
                   vault_cacert: Any, vault_token: str | None, kubeconfig: Any) -> list[Any]:
    """The drift part of ``chamberlain plan``: with ``--vault-token`` that token reads the metadata, otherwise
    the cluster's orchestrator identity does."""
    import tempfile
    from pathlib import Path

    if vault_token:
        with tempfile.TemporaryDirectory() as tmp:
            token_file = Path(tmp) / "token"
            token_file.touch(mode=0o600)
            token_file.write_text(vault_token, encoding="utf-8")
            _, _, kube, drifts = _drifts(path, environment, cluster,
                                         AuthorityOptions(vault_addr, vault_cacert, token_file), kubeconfig)
    else:
        _, _, kube, drifts = _drifts(path, environment, cluster, AuthorityOptions(vault_addr, vault_cacert, None),
                                     kubeconfig)
    close_kube(kube)
    return drifts


def _drifts(path: str, environment: str | None, cluster: str | None, opts: AuthorityOptions,
            kubeconfig: Any) -> tuple[Any, Any, Any, list[Any]]:
    from chamberlain.handover import select_cluster
    from chamberlain.rotation import policy_sync
    from chamberlain.rotation.manual import place

    repo, platform = valid_repository(path)
    chosen, envs = select_cluster(platform, environment, cluster)
    kube = open_kube(kubeconfig)
    kv = open_kv(platform, opts, kube, chosen)
    policies = {p.obj.metadata.name: p.obj for p in repo.policies}
    placed = []
    for loaded in sorted(repo.intents, key=lambda i: i.obj.metadata.name):
        for env in envs:
            try:
                placed.append(place(platform, loaded.obj, env, chosen))
            except UsageError:  # not placed in this environment/cluster
                continue
    return platform, kv, kube, policy_sync.plan(kv, platform, policies, placed)


def show_drift(drifts: list[Any], output: DataFormat, applied: int | None) -> None:
    data = {"drift": [d.as_dict() for d in drifts], **({"applied": applied} if applied is not None else {})}
    if emit_data(data, output):
        return
    if not drifts:
        stdout.print("policy in force matches Git for every secret", markup=False, highlight=False)
    for d in drifts:
        stdout.print(f"{'applied' if applied is not None else 'drift':<8} {d.secret} {d.vault.full} "
                     f"(policy {d.git_name or '-'})", markup=False, highlight=False)
        for f in d.fields:
            stdout.print(f"    {f.field}: in force {f.in_force or '-'} -> git {f.in_git or '-'}",
                         markup=False, highlight=False)


@policy_app.command("plan")
def plan_cmd(
    path: RepoPath,
    environment: Environment = None,
    cluster: Cluster = None,
    output: Output = DataFormat.text,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Show where the rotation policy in force differs from Git's. Exit 1 when it does.

    Example: chamberlain policy plan examples/acme -e dev --cluster dev1
    """
    _, _, kube, drifts = _drifts(path, environment, cluster,
                                 AuthorityOptions(vault_addr, vault_cacert, vault_token_file), kubeconfig)
    close_kube(kube)
    show_drift(drifts, output, None)
    raise typer.Exit(1 if drifts else 0)


@policy_app.command("apply")
def apply_cmd(
    path: RepoPath,
    environment: Environment = None,
    cluster: Cluster = None,
    reason: str = typer.Option("policy changed in Git", "--reason", help="Why, for the ledger."),
    output: Output = DataFormat.text,
    vault_addr: VaultAddr = None,
    vault_cacert: VaultCACert = None,
    vault_token_file: VaultTokenFile = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Make Git's rotation policy the one in force, one audited policy-change per secret. Safe to re-run.

    Example: chamberlain policy apply examples/acme -e dev --cluster dev1 --reason "ttl 90d -> 30d (PR #42)"
    """
    from chamberlain.audit.ledger import Ledger
    from chamberlain.clock import SystemClock
    from chamberlain.rotation import policy_sync

    platform, kv, kube, drifts = _drifts(path, environment, cluster,
                                         AuthorityOptions(vault_addr, vault_cacert, vault_token_file), kubeconfig)
    ledger = Ledger(kv, platform.spec.authority.mounts.runtime, SystemClock())
    applied = policy_sync.apply(kv, ledger, drifts, actor=actor(), run=new_run_id(), reason=reason)
    close_kube(kube)
    show_drift(drifts, output, applied)
