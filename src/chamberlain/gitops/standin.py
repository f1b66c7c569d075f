"""``chamberlain apply``: the LAB STAND-IN for Argo CD + KSOPS / Flux. Not a GitOps controller.

Sequence (each step complete before the next, so bad input fails before anything is applied):

1. validate the repository (nothing is applied from a repository with findings) and render it in memory;
2. pick the applications of one cluster (the cluster's base owner first, as an app-of-apps would sync them);
3. build every application, decrypting each bootstrap file with the in-cluster age identity through ``sops``, in
   memory — exactly where KSOPS would, and the only place a plaintext value exists;
4. server-side-apply the CRDs and wait until they are Established;
5. server-side-apply each application's objects in sync-wave order, field manager ``chamberlain-gitops-standin``.

Idempotent: server-side apply of unchanged objects changes nothing (the report counts them as unchanged). The
report holds counts and object identities, never data.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chamberlain.bootstrap.sops import Sops
from chamberlain.bootstrap.tools import Tools
from chamberlain.checks.gate import load_valid
from chamberlain.errors import UsageError
from chamberlain.gitops.build import App, GitopsError, Manifest, build_app
from chamberlain.kube.api import ApplyOutcome, KubeApply
from chamberlain.render import render_repository
from chamberlain.render.topology import build_topology

FIELD_MANAGER = "chamberlain-gitops-standin"


@dataclass
class AppReport:
    path: str
    counts: dict[str, int] = field(default_factory=lambda: {"created": 0, "configured": 0, "unchanged": 0})
    bootstrap_secrets: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.path, **self.counts, "objects": self.total, "bootstrapSecrets": self.bootstrap_secrets}


@dataclass
class ApplyReport:
    cluster: str
    crds: dict[str, int] = field(default_factory=lambda: {"created": 0, "configured": 0, "unchanged": 0})
    apps: list[AppReport] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(r.counts["created"] or r.counts["configured"] for r in self.apps) or bool(
            self.crds["created"] or self.crds["configured"])

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "fieldManager": FIELD_MANAGER, "crds": self.crds,
                "apps": [a.to_dict() for a in self.apps], "changed": self.changed}


def secret_for_apply(decrypted: Any, where: str) -> Manifest:
    """A decrypted bootstrap Secret as the API server stores it: ``stringData`` folded into base64 ``data`` (what
    the API server does on write; applying ``stringData`` itself would never read back as unchanged)."""
    if not isinstance(decrypted, dict) or decrypted.get("kind") != "Secret" or decrypted.get("apiVersion") != "v1":
        raise GitopsError(f"{where}: does not decrypt to a v1 Secret")
    meta = decrypted.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name") or not meta.get("namespace"):
        raise GitopsError(f"{where}: the decrypted Secret has no name or namespace")
    data: dict[str, str] = {}
    raw = decrypted.get("data") or {}
    strings = decrypted.get("stringData") or {}
    if not isinstance(raw, dict) or not isinstance(strings, dict):
        raise GitopsError(f"{where}: data/stringData are not mappings")
    for key, value in raw.items():
        data[str(key)] = str(value)
    for key, value in strings.items():
        data[str(key)] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
    out: Manifest = {"apiVersion": "v1", "kind": "Secret",
                     "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
                     "data": data}
    if decrypted.get("type"):
        out["type"] = decrypted["type"]
    return out


def select_apps(tree: Mapping[str, str], units: list[tuple[str, str]], base_owner: Mapping[str, str],
                environment: str | None, cluster: str | None) -> tuple[str, list[str]]:
    """(cluster, application directories in sync order). One cluster per run: a lab has one API server."""
    clusters = sorted({c for _, c in units})
    if cluster is None:
        if len(clusters) != 1:
            raise UsageError(f"the Platform has {len(clusters)} clusters ({', '.join(clusters)}); pick one with "
                             "--cluster (the lab has a single API server)")
        cluster = clusters[0]
    if cluster not in clusters:
        raise UsageError(f"unknown cluster {cluster!r}; the Platform has {', '.join(clusters)}")
    envs = [e for e, c in units if c == cluster]
    if environment is not None:
        if environment not in envs:
            raise UsageError(f"environment {environment!r} has no application on cluster {cluster} "
                             f"(it hosts {', '.join(envs)})")
        envs = [environment]
    # The base owner's application carries the cluster-wide objects (namespaces, intents): it syncs first.
    order = list(envs)
    envs = sorted(envs, key=lambda e: (e != base_owner[cluster], order.index(e)))
    apps = [f"envs/{e}/{cluster}" for e in envs if f"envs/{e}/{cluster}/kustomization.yaml" in tree]
    return cluster, apps


def apply_repository(
    root: Path,
    kube: KubeApply,
    *,
    identity: Path | None,
    tools: Tools,
    environment: str | None = None,
    cluster: str | None = None,
    sops: Sops | None = None,
) -> ApplyReport:
    """Apply the rendered application(s) of one cluster (see the module docstring). Bootstrap files are decrypted
    with ``sops`` (default: the one ``tools`` finds, looked up only when a file needs decrypting)."""
    repo = load_valid(root)
    tree = render_repository(repo).files
    platform = repo.platform
    if platform is None:  # pragma: no cover - load_valid guarantees exactly one
        raise GitopsError(f"{root}: has no Platform")
    topo = build_topology(platform, [p.obj for p in repo.policy_index().values()],
                          [i.obj for i in repo.intent_index().values()])
    units = [(u.environment, u.cluster) for u in topo.units]
    cluster, app_dirs = select_apps(tree, units, {c: topo.base_owner(c) for c in topo.clusters}, environment,
                                    cluster)

    if identity is not None and not identity.is_file():
        raise UsageError(f"{identity}: no such identity file")

    def decrypt(path: str, text: str) -> Manifest:
        if identity is None:
            raise UsageError(f"{path}: the application carries bootstrap Secrets; pass --identity with the "
                             "in-cluster age identity (what KSOPS/Flux decrypt with)")
        nonlocal sops
        sops = sops or Sops.locate(tools)
        return secret_for_apply(sops.decrypt(text.encode("utf-8"), filename=path, identity_file=identity), path)

    # Build (and decrypt) everything before applying anything: a wrong identity or a bad file applies nothing.
    apps: list[App] = [build_app(tree, d, decrypt) for d in app_dirs]

    report = ApplyReport(cluster)
    crds: dict[str, Manifest] = {}
    for app in apps:
        for crd in app.crds:
            crds.setdefault(str(crd["metadata"]["name"]), crd)
    for name in sorted(crds):
        outcome: ApplyOutcome = kube.apply_manifest(crds[name], FIELD_MANAGER)
        report.crds[outcome] += 1
    for name in sorted(crds):
        kube.wait_crd_established(name)

    for app in apps:
        app_report = AppReport(app.path, bootstrap_secrets=app.secret_count)
        for obj in app.objects:
            if obj["kind"] == "CustomResourceDefinition":
                continue  # applied above, before anything typed by them
            app_report.counts[kube.apply_manifest(obj, FIELD_MANAGER)] += 1
        report.apps.append(app_report)
    return report
