"""The ``chamberlain adopt`` use case: read an estate (manifests or a cluster, and the authority's metadata), map
it, write the repository and the plan, and validate what was written.

The order is read -> map (pure) -> plan (pure) -> write -> validate. With ``dry_run`` the files go to a temporary
directory, are validated there and discarded, so a dry run says exactly what a real run would.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chamberlain.adopt import write as writer
from chamberlain.adopt.estate import Estate, is_dns_label
from chamberlain.adopt.mapping import DEFAULT_OWNER_LABELS, Adoption, AuthorityView, Settings, adopt, vault_paths
from chamberlain.adopt.plan import plan_document
from chamberlain.clock import Clock
from chamberlain.errors import UsageError
from chamberlain.intent.model import Platform
from chamberlain.service.context import ConnectionOptions, LiveServers


@dataclass(frozen=True)
class AdoptRequest:
    out: Path
    manifests: Path | None = None
    cluster: bool = False
    authority: bool = False
    environment: str | None = None
    cluster_name: str | None = None
    platform_file: Path | None = None
    age_recipient: str | None = None
    platform_name: str = "adopted"
    runtime_mount: str = "secret"
    owner_labels: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True)
class AdoptResult:
    out: Path
    adoption: Adoption
    plan: dict[str, Any]
    written: list[str]
    validation: dict[str, Any]
    dry_run: bool
    kept: list[str]  # files under out a person edited since adopt wrote them: left as they are

    @property
    def ok(self) -> bool:
        return self.adoption.complete and bool(self.validation.get("ok"))

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "out": str(self.out), "dryRun": self.dry_run, "written": self.written,
                "kept": self.kept, "plan": self.plan, "validation": self.validation}


def _platform(request: AdoptRequest, conn: ConnectionOptions) -> tuple[Platform, str, str, str]:
    """(Platform, its text for REPO/platform.yaml, environment, cluster)."""
    if request.platform_file is not None:
        platform, text = writer.load_platform(request.platform_file)
        envs = [e for e in platform.spec.environments if not e.ephemeral]
        env_name = request.environment or (envs[0].name if len(envs) == 1 else None)
        if env_name is None:
            raise UsageError(f"--platform {request.platform_file}: several environments; choose one with -e")
        env = platform.environment(env_name)
        if env is None:
            raise UsageError(f"-e {env_name}: not an environment of the Platform")
        cluster = request.cluster_name or (env.clusters[0] if len(env.clusters) == 1 else None)
        if cluster is None or cluster not in env.clusters:
            raise UsageError(f"-c: choose one of {', '.join(env.clusters)} (the clusters of {env_name})")
        return platform, text, env_name, cluster
    if not request.environment or not request.cluster_name:
        raise UsageError("without --platform FILE, -e ENVIRONMENT and -c CLUSTER name the skeleton Platform's "
                         "environment and cluster")
    for flag, value in (("-e", request.environment), ("-c", request.cluster_name),
                        ("--platform-name", request.platform_name), ("--runtime-mount", request.runtime_mount)):
        if not is_dns_label(value):
            raise UsageError(f"{flag} {value!r}: not a DNS-1123 label")
    if not request.age_recipient:
        raise UsageError("without --platform FILE, --age-recipient names the root of trust's public recipient "
                         "(chamberlain root init prints it)")
    data = writer.platform_skeleton(request.platform_name, request.environment, request.cluster_name,
                                    conn.vault_addr, request.age_recipient, request.runtime_mount)
    try:
        platform = Platform.model_validate(data)
    except ValueError:
        raise UsageError("the skeleton Platform is not valid: check --age-recipient (age1...) and "
                         "--vault-addr (https://host:port)") from None
    text = yaml.safe_dump(data, sort_keys=False)
    return platform, text, request.environment, request.cluster_name


def _settings(request: AdoptRequest, platform: Platform, environment: str, cluster: str) -> Settings:
    mounts = platform.spec.authority.mounts
    holders: dict[str, str] = {}
    if platform.spec.tenancy is not None:
        for owner in platform.spec.tenancy.owners:
            for ns in owner.namespaces:
                holders.setdefault(ns, owner.name)
    return Settings(environment, cluster, mounts.runtime, (mounts.internal_data, mounts.internal_config),
                    request.owner_labels or DEFAULT_OWNER_LABELS, holders,
                    tuple(e.name for e in platform.spec.environments if e.name != environment),
                    tuple(o.name for o in platform.spec.tenancy.owners) if platform.spec.tenancy else ())


def _something_to_adopt(request: AdoptRequest, estate: Estate) -> None:
    """A directory without a single Secret, SealedSecret or ExternalSecret (or a file it could not read) is a
    mistyped path, not an estate with nothing to adopt: "0 intents" would look like success."""
    if estate.secrets or estate.sealed_secrets or estate.external_secrets or estate.problems:
        return
    others = [(len(estate.stores), "SecretStore"), (len(estate.workloads), "workload"),
              (len(estate.namespaces), "Namespace")]
    found = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for n, kind in others if n) or "nothing chamberlain reads"
    scope = "".join(f" -n {ns}" for ns in request.namespaces)
    raise UsageError(f"--from-manifests {request.manifests}{scope}: no Secret, SealedSecret or ExternalSecret "
                     f"manifests there (found {found}): nothing to adopt; check the path{' and -n' if scope else ''}")


def read_estate(request: AdoptRequest, servers: LiveServers) -> tuple[Estate, list[str]]:
    from chamberlain.adopt.cluster import read_cluster
    from chamberlain.adopt.manifests import read_directory

    read: list[str] = []
    if request.manifests is not None:
        if not request.manifests.exists():
            raise UsageError(f"--from-manifests {request.manifests}: no such file or directory")
        if not (request.manifests.is_dir() or request.manifests.is_file()):  # a FIFO would block, a device is no input
            raise UsageError(f"--from-manifests {request.manifests}: neither a directory nor a regular file")
        estate = read_directory(request.manifests)
        read.append(f"manifests {request.manifests}")
    elif request.cluster:
        estate = read_cluster(servers.kube(), request.namespaces or None)
        source = servers.options.kubeconfig_source
        read.append(f"cluster {source.describe() if source else '(default kubeconfig)'}")
    else:
        estate = Estate()
    if request.namespaces:
        estate = estate.only(request.namespaces)
    if request.manifests is not None:
        _something_to_adopt(request, estate)
    return estate, read


def run(request: AdoptRequest, conn: ConnectionOptions, clock: Clock) -> AdoptResult:
    from chamberlain.reporting import findings_to_dicts, summary
    from chamberlain.service import repository

    writer.prepare(request.out)
    platform, platform_text, environment, cluster = _platform(request, conn)
    settings = _settings(request, platform, environment, cluster)
    with LiveServers(conn, clock) as servers:
        estate, read = read_estate(request, servers)
        view: AuthorityView | None = None
        if request.authority:
            from chamberlain.adopt.authority import read_authority

            client = servers.orchestrator(platform, cluster)
            view = read_authority(client.kv, vault_paths(estate), settings.runtime_mount, environment)
            read.append(f"authority metadata {servers.connection(platform).address}")
    adoption = adopt(estate, settings, view)
    repo = str(request.out)
    contents = writer.files(adoption, platform_text, repo, read)
    kept = writer.edited(request.out, contents)  # a re-run never destroys a person's edits
    with tempfile.TemporaryDirectory(prefix="chamberlain-adopt-") as scratch:
        where = Path(scratch) / "repo" if request.dry_run else request.out
        written = writer.write(where, contents, kept)
        if request.dry_run:
            writer.copy_kept(request.out, where, kept)
        result = repository.validate(where)
    findings = result.findings
    validation = {**summary(findings), "status": "ok" if not result.blocking() else "invalid",
                  "results": findings_to_dicts(findings)}
    return AdoptResult(request.out, adoption, plan_document(adoption, repo, read), written, validation,
                       request.dry_run, kept)


__all__ = ["AdoptRequest", "AdoptResult", "read_estate", "run"]
