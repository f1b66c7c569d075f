"""The lab after the demo's phases through handover, shared by the tests that need ESO materializing consumer
Secrets from the real Vault (``rotate``, ``import``): one fresh lab per session on ports shifted by
``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 900, a copy of examples/acme whose ``grafana-admin`` has a 3-second
maxOverlap (so its revoke finishes inside the command). The fixture is ``demo_world`` in ``conftest.py``."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import SystemClock
from chamberlain.lab import builds, procs
from chamberlain.lab import lab as lab_mod
from tests.conftest import EXAMPLES, host_tools, lab_authority, lab_host, unbuilt

GROUP = "external-secrets.io"


@dataclass
class World:
    lab: lab_mod.Lab
    repo: Path
    kube: Any  # KubeClient
    api: Any  # kubernetes ApiClient
    kv: Any

    def vault_args(self) -> list[str]:
        return ["-e", "dev", "--cluster", "dev1", "--vault-addr", self.lab.authority.address,
                "--vault-cacert", str(self.lab.pki.ca.cert), "--kubeconfig", str(self.lab.kubeconfig)]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s")


def _source_repo(dst: Path) -> Path:
    shutil.copytree(EXAMPLES / "acme", dst)
    f = dst / "intents" / "observability.yaml"
    text = f.read_text()
    short = ("rotation: {type: time-based, ttl: 90d, rotateBefore: 7d, revokeOld: true, maxOverlap: 3s, "
             "failureStrategy: retry}")
    assert "rotation: {policy: standard}" in text
    f.write_text(text.replace("rotation: {policy: standard}", short, 1))
    return dst


def start(base: Path) -> Iterator[World]:
    """Run the demo through handover on a fresh lab, yield the world, stop the lab and check nothing is left."""
    import kubernetes

    from chamberlain.authority.session import Connection, orchestrator_kv
    from chamberlain.demo.walkthrough import DemoOptions, Phase, run_demo
    from chamberlain.kube.client import KubeClient
    from chamberlain.service import load_valid

    missing = unbuilt()
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    lab_dir = base / "lab"
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 900
    pids: dict[str, int] = {}
    try:
        report = run_demo(DemoOptions(through=Phase.handover, lab_dir=lab_dir, port_offset=offset, keep=True,
                                      authority=lab_authority(),
                                      source_repo=_source_repo(base / "source")), lab_host(), host_tools())
        lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host()))
        pids = {n: info.pid for n, s in lab.servers().items() if (info := s.running()) is not None}
        assert report.ok, [p.as_dict() for p in report.phases if not p.ok]
        repo = Path(report.work_dir) / "repo"
        kube = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
        platform = load_valid(repo).platform
        assert platform is not None
        kv = orchestrator_kv(Connection(lab.authority.address, lab.pki.ca.cert, clock=SystemClock()), platform, kube,
                             "chamberlain.dev1.orchestrator", "kubernetes-dev1")
        api = kubernetes.config.new_client_from_config(config_file=str(lab.kubeconfig))
        yield World(lab, repo, kube, api, kv)
        kube.close()
    finally:
        if (lab_dir / "lab.json").exists():
            lab = lab_mod.Lab(lab_mod.LabConfig.load(lab_dir, lab_host()))
            pids = pids or {n: info.pid for n, s in lab.servers().items() if (info := s.running()) is not None}
            lab_mod.down(lab_dir, lab_host(), progress=lambda _m: None)
            lab.postgres.purge()
    leftovers = {name: procs.group_members(pid) for name, pid in pids.items()}
    assert not any(leftovers.values()), f"lab processes left behind: {leftovers}"


def materialize(w: World, ns: str, secret: str, workload: str, mount: str, path: str) -> str:
    """Point the rendered SecretStore of ``ns`` at the lab's Vault (loopback + lab CA), create the declared
    Deployment (no kubelet: the object only), wait until ESO materialized the consumer with the current marker."""
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(w.api)
    store = "chamberlain-dev-secret"
    custom.patch_namespaced_custom_object(GROUP, "v1", ns, "secretstores", store, {"spec": {"provider": {"vault": {
        "server": w.lab.authority.address, "caBundle": base64.b64encode(w.lab.pki.ca_pem.encode()).decode()}}}})
    apps = kubernetes.client.AppsV1Api(w.api)
    try:
        apps.create_namespaced_deployment(ns, {
            "metadata": {"name": workload},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": workload}},
                     "template": {"metadata": {"labels": {"app": workload}},
                                  "spec": {"containers": [{"name": workload, "image": "example.invalid/g:1"}]}}},
        })
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    marker = w.kv.read_metadata(mount, path).custom["value-marker"]

    def synced() -> bool:
        w.kube.annotate_external_secret(ns, secret, {"force-sync": str(time.monotonic())})
        ann = w.kube.get_secret_annotations(ns, secret)
        return ann is not None and ann.get(wk.ANNOTATION_VERSION_MARKER) == marker

    wait_for(synced, 120, f"{ns}/{secret} materialized by ESO with the current marker")
    return str(marker)
