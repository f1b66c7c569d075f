"""Git -> cluster through the lab's real Flux for one test: the repository's rendered tree committed to a Git
repository of its own on the lab's Git server, the cluster's age key in ``flux-system/sops-age``, the Git source and
root Kustomization applied (:mod:`chamberlain.gitops.flux`, what the demo does too).

The lab's tests share one API server, and the rendered Flux objects have fixed names in ``flux-system``. So each
test takes Flux over on entry and lets go on exit: every Kustomization is suspended, set to ``prune: false`` and
deleted, leaving what it applied in place (orphaned, as ``chamberlain apply`` used to leave it), so the next test
neither prunes nor fights over this one's objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chamberlain.clock import SystemClock
from chamberlain.gitops import flux
from chamberlain.gitops.git import publish_tree
from chamberlain.kube.client import KubeClient
from tests.conftest import host_tools, run_cli
from tests.lab.conftest import RunningLab


@dataclass
class FluxRun:
    kube: KubeClient
    url: str
    cluster: str
    commit: str
    rendered: Path
    repo: Path
    work: Path

    def publish(self, message: str) -> str:
        """Render the repository again into a fresh directory and commit it; the new commit."""
        out = self.work / f"rendered-{uuid.uuid4().hex[:6]}"
        result = run_cli("render", str(self.repo), "-o", str(out))
        assert result.code == 0, result.err
        self.rendered = out
        self.commit = publish_tree(out, self.url, message, base_env=host_tools().env).commit
        return self.commit

    def reconcile(self, *names: str) -> list[flux.Readiness]:
        token = f"test-{uuid.uuid4().hex[:10]}"
        return flux.reconcile_all(self.kube, list(names), token, timeout=120)

    def wait_ready(self, *names: str, commit: str | None = None) -> list[flux.Readiness]:
        return [flux.wait_ready(self.kube, n, commit=self.commit if commit is None else commit, timeout=120)
                for n in names]


def _orphan_everything(api: Any) -> None:
    """Suspend, un-prune and delete every Kustomization and the Git source in flux-system; wait until gone."""
    import time

    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(api)
    k = flux.KUSTOMIZATIONS
    items = custom.list_namespaced_custom_object(k.group, k.version, flux.NAMESPACE, k.plural).get("items", [])
    names = [i["metadata"]["name"] for i in items]
    for name in names:  # the root first would be enough to stop re-applies; all of them keeps it simple
        custom.patch_namespaced_custom_object(k.group, k.version, flux.NAMESPACE, k.plural, name,
                                              {"spec": {"suspend": True, "prune": False}})
    for name in names:
        custom.delete_namespaced_custom_object(k.group, k.version, flux.NAMESPACE, k.plural, name)
        # A worker may be busy waiting out health checks for minutes before it handles the deletion; this test is
        # orphaning everything anyway, so it lets go of the finalizer itself.
        try:
            custom.patch_namespaced_custom_object(k.group, k.version, flux.NAMESPACE, k.plural, name,
                                                  {"metadata": {"finalizers": None}})
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
    g = flux.GIT_REPOSITORIES
    try:
        custom.delete_namespaced_custom_object(g.group, g.version, flux.NAMESPACE, g.plural, flux.SOURCE)
        custom.patch_namespaced_custom_object(g.group, g.version, flux.NAMESPACE, g.plural, flux.SOURCE,
                                              {"metadata": {"finalizers": None}})
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise
    # Both gone before the next test applies its own: a GitRepository still terminating would take the next test's
    # spec and then vanish, leaving its root Kustomization on the previous repository's artifact.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = custom.list_namespaced_custom_object(k.group, k.version, flux.NAMESPACE, k.plural).get("items", [])
        try:
            custom.get_namespaced_custom_object(g.group, g.version, flux.NAMESPACE, g.plural, flux.SOURCE)
            source_left = True
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            source_left = False
        if not left and not source_left:
            return
        time.sleep(0.5)
    raise AssertionError(f"Flux objects not deleted: {[i['metadata']['name'] for i in left]}, source {source_left}")


@contextmanager
def through_flux(lab: RunningLab, api: Any, repo: Path, cluster: str, key: Path, work: Path) -> Iterator[FluxRun]:
    """Publish ``repo``'s rendered tree and let Flux apply it to the lab cluster as ``cluster`` (decrypting with the
    identity in ``key``); the caller waits for what it needs. Flux lets go of everything on exit."""
    git = lab.lab.git
    name = f"t-{uuid.uuid4().hex[:8]}"
    git.ensure_repo(name)
    url = git.repo_url(name)
    kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    run = FluxRun(kube, url, cluster, "", work, repo, work)
    try:
        _orphan_everything(api)  # whatever an earlier test left
        run.publish("chamberlain render")
        flux.install_decryption_key(kube, key.read_text(encoding="utf-8"))
        flux.install_source(kube, url, cluster)
        yield run
    finally:
        try:
            _orphan_everything(api)
        finally:
            kube.close()
