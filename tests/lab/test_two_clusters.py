"""One environment on two clusters, on real servers: ``lab up --clusters 2`` (two kube-apiservers, each with its own
ESO and kube-controller-manager) and one OpenBao configured by ``chamberlain authority configure`` with an auth
mount per cluster. Lab cluster 1 is ``prod-eu1`` (the rotating cluster: first in the Platform), lab cluster 2 is
``prod-us1`` (it follows). Each cluster runs its own ``chamberlain controller run`` process (JSON logs).

What it proves:
- one rotation of the shared secret (one new version, one ledger entry) reaches both clusters: each cluster's ESO
  materializes the new marker and each cluster's Deployment rolls exactly once (one new ReplicaSet, by its own
  kube-controller-manager) with the run id as restart token; the follower acknowledges under its own path and only
  then is the old credential revoked;
- cluster 2 down (its API server stopped: its controller, ESO and kube-controller-manager cannot act): cluster 1
  still rotates, propagates and restarts its own
  workloads; ``revokeOld`` waits (the run names the awaited cluster); when cluster 2 returns, its controller
  catches up (one restart) and the owner revokes;
- least privilege across the two: the follower's orchestrator cannot write a version over an existing one, nor
  read or write run records, staged values or the owner's internal paths; the owner reads acknowledgements but
  writes none and cannot read the follower's internal mounts; a reader of either cluster reads no internal path.

Runs its own lab on ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 1450.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain import wellknown as wk
from chamberlain.clock import SystemClock
from chamberlain.intent.paths import VaultPath
from chamberlain.lab import builds, procs
from chamberlain.lab import lab as lab_mod
from chamberlain.lab.servers import install_crds

pytestmark = [pytest.mark.lab]

pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402
from chamberlain.authority.errors import AuthorityError, Forbidden  # noqa: E402
from chamberlain.authority.kv import KV  # noqa: E402
from chamberlain.authority.vault import VaultClient, client_with_token, login_kubernetes  # noqa: E402
from chamberlain.kube.client import KubeClient  # noqa: E402
from chamberlain.rotation import clusters  # noqa: E402
from chamberlain.rotation import run as runs  # noqa: E402
from chamberlain.rotation.run import RotationRun  # noqa: E402
from chamberlain.triggers.webhook import WebhookKey, sign  # noqa: E402
from tests.conftest import REPO_ROOT, lab_authority, lab_host, run_cli, unbuilt  # noqa: E402
from tests.lab import rollouts  # noqa: E402
from tests.lab.controller_helpers import ControllerProc, post, wait_for  # noqa: E402
from tests.lab.test_cluster_separation import _reviewer  # noqa: E402

EU, US = "prod-eu1", "prod-us1"  # lab cluster 1 (rotates), lab cluster 2 (follows)
NAME, NS, DEPLOYMENT = "shared-token", "shop", "api"
SECRET = VaultPath("secret", f"prod/team-shop/{NAME}")
CONTROLLER = ("chamberlain-system", "chamberlain")
READER = (NS, "chamberlain-prod-reader")
PLATFORM = """\
apiVersion: chamberlain.dev/v1alpha1
kind: Platform
metadata: {name: twin}
spec:
  environments:
    - {name: prod, clusters: [prod-eu1, prod-us1]}
  authority:
    address: https://vault.vault.svc:8200
  rootOfTrust:
    ageRecipients: [age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk]
  limits: {triggerInterval: 0s}
"""
INTENT = f"""\
apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {{name: {NAME}}}
spec:
  owner: team-shop
  purpose: An API token both prod clusters' shop Deployments read
  classification: runtime
  source:
    generate:
      token: {{type: token, bytes: 24}}
  rotation: {{type: event-based, revokeOld: true, maxOverlap: 1s, failureStrategy: retry}}
  consumers:
    - namespace: {NS}
      secretName: {NAME}
      restart:
        - {{kind: Deployment, name: {DEPLOYMENT}}}
"""


@dataclass
class Twin:
    lab: lab_mod.Lab
    repo: Path
    out: Path
    base: Path
    kube: dict[str, KubeClient]
    api: dict[str, Any]
    kubeconfig: dict[str, Path]
    root: VaultClient
    key_file: Path
    key: bytes
    controllers: dict[str, ControllerProc] = field(default_factory=dict)

    @property
    def kv(self) -> KV:
        return self.root.kv

    def meta(self) -> dict[str, str]:
        got = self.kv.read_metadata(SECRET.mount, SECRET.path)
        assert got is not None
        return dict(got.custom)

    def version(self) -> int:
        got = self.kv.read_metadata(SECRET.mount, SECRET.path)
        assert got is not None
        return got.current_version

    def run(self) -> RotationRun | None:
        return runs.load(self.kv, SECRET)

    def marker(self, cluster: str) -> str | None:
        ann = self.kube[cluster].get_secret_annotations(NS, NAME)
        return None if ann is None else ann.get(wk.ANNOTATION_VERSION_MARKER)

    def rollout(self, cluster: str) -> rollouts.Rollout:
        return rollouts.rollout(self.api[cluster], "Deployment", NS, DEPLOYMENT)

    def ack(self) -> clusters.Acknowledgement | None:
        return clusters.read_acknowledgement(self.kv, SECRET, US)[0]

    def login(self, cluster: str, namespace: str, account: str, role: str) -> VaultClient:
        jwt = self.kube[cluster].service_account_token(namespace, account, ["vault"])
        return login_kubernetes(self.lab.authority.address, self.lab.pki.ca.cert, f"kubernetes-{cluster}", role, jwt,
                                clock=SystemClock())

    def start_controller(self, cluster: str, *, wait: bool = True) -> ControllerProc:
        log = self.base / f"controller-{cluster}-{len(self.controllers)}.log"
        argv = [sys.executable, "-m", "chamberlain.cli.main", "controller", "run", str(self.repo), "-e", "prod",
                "--cluster", cluster, "--vault-addr", self.lab.authority.address,
                "--vault-cacert", str(self.lab.pki.ca.cert), "--kubeconfig", str(self.kubeconfig[cluster]),
                "--interval", "0.5", "--evaluate-every", "1", "--lease-seconds", "4", "--identity", cluster,
                "--webhook-port", "0", "--webhook-key-file", str(self.key_file), "--metrics-port", "0",
                "--propagation-timeout", "30"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_", "KUBECONFIG"))}
        with log.open("wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT, env=env,
                                    cwd=REPO_ROOT, start_new_session=True)
        c = ControllerProc(cluster, proc, log)
        self.controllers[cluster] = c
        if wait:
            c.wait_started()
            c.wait_leader()
        return c

    def webhook(self, cluster: str) -> str:
        body = json.dumps({"secret": NAME, "reason": "two-cluster test"}).encode()
        status, answer = post(self.controllers[cluster].webhook_url, body,
                              sign(body, WebhookKey(self.key), datetime.now(UTC)))
        assert status in (200, 202), answer
        return str(answer.get("status", ""))

    def wait_run(self, check: Callable[[RotationRun], bool], what: str, timeout: float = 60) -> RotationRun:
        got: RotationRun = wait_for(lambda: (r := self.run()) is not None and check(r) and r, timeout, what,
                                    every=0.25)
        return got


def _apply_consumers(t: Twin, cluster: str) -> None:
    kube = t.kube[cluster]
    for doc in yaml.safe_load_all((t.out / f"envs/prod/{cluster}/namespaces/{NS}.yaml").read_text()):
        if doc["kind"] == "SecretStore":  # the rendered store names the in-cluster address; the lab's is loopback
            doc["spec"]["provider"]["vault"]["server"] = t.lab.authority.address
            doc["spec"]["provider"]["vault"]["caBundle"] = base64.b64encode(t.lab.pki.ca_pem.encode()).decode()
        kube.apply_manifest(doc, "chamberlain-test")
    apps = kubernetes.client.AppsV1Api(t.api[cluster])
    apps.create_namespaced_deployment(NS, {
        "metadata": {"name": DEPLOYMENT},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": DEPLOYMENT}},
                 "template": {"metadata": {"labels": {"app": DEPLOYMENT}},
                              "spec": {"containers": [{"name": DEPLOYMENT, "image": "example.invalid/x:1"}]}}}})


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    missing = unbuilt()
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    base = tmp_path_factory.mktemp("twin")
    repo = base / "repo"
    (repo / "intents").mkdir(parents=True)
    (repo / "platform.yaml").write_text(PLATFORM, encoding="utf-8")
    (repo / "intents" / "shop.yaml").write_text(INTENT, encoding="utf-8")
    out = base / "out"
    rendered = run_cli("render", str(repo), "-o", str(out))
    assert rendered.code == 0, rendered.err
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 1450
    config = lab_mod.LabConfig(lab_dir=base / "lab", host=lab_host(), ports=lab_mod.Ports().shifted(offset),
                               dev=True, authority=lab_authority(), clusters=2)
    kubes: dict[str, KubeClient] = {}
    t: Twin | None = None
    try:
        report = lab_mod.up(config, progress=lambda _m: None)
        assert report["clusters"] == 2 and lab_mod.healthy(report), report
        lab = lab_mod.Lab(config)
        assert lab.second is not None
        kubeconfigs = {EU: lab.kubeconfig, US: lab.second.kubeconfig}
        kubes = {c: KubeClient.from_kubeconfig(p, clock=SystemClock()) for c, p in kubeconfigs.items()}
        apis = {c: kubernetes.config.new_client_from_config(config_file=str(p)) for c, p in kubeconfigs.items()}
        # RotationRun (the webhook persists requests as such objects) and SecretIntent (status), both clusters at once
        crds = [out / "crds" / f"chamberlain.dev_{kind}.yaml" for kind in ("rotationruns", "secretintents")]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda server: install_crds(server, crds, "chamberlain", lambda _m: None),
                          (lab.apiserver, lab.second.apiserver)))
        for cluster, kube in kubes.items():
            for ns in (CONTROLLER[0], NS):
                kube.ensure_namespace(ns)
            kube.ensure_service_account(*CONTROLLER)
            _reviewer(kube, base / f"reviewer-{cluster}.jwt")
        root_token = lab.authority.root_token_file.read_text(encoding="utf-8").strip()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("VAULT_TOKEN", root_token)  # break-glass: the first configuration of a dev-mode server
            args = ["--vault-addr", lab.authority.address, "--vault-cacert", str(lab.pki.ca.cert)]
            configured = run_cli(
                "authority", "configure", str(repo), *args, "--kubeconfig", str(lab.kubeconfig), "--audit-file", "",
                "--vault-token-env", "VAULT_TOKEN",
                *(a for c, p in kubeconfigs.items() for a in ("--cluster-kubeconfig", f"{c}={p}")),
                *(a for c in kubeconfigs for a in ("--cluster-token-reviewer-jwt-file",
                                                   f"{c}={base / f'reviewer-{c}.jwt'}")),
                "--cluster-kubernetes-issuer", f"{EU}={lab.apiserver.issuer}",
                "--cluster-kubernetes-issuer", f"{US}={lab.second.apiserver.issuer}", "-o", "json")
            assert configured.code == 0, configured.err
        # The initial value, by the rotating cluster's orchestrator (its Kubernetes login).
        provisioned = run_cli("provision", str(repo), "-e", "prod", "--cluster", EU, *args,
                              "--kubeconfig", str(lab.kubeconfig))
        assert provisioned.code == 0, provisioned.err + provisioned.out
        root = client_with_token(lab.authority.address, lab.pki.ca.cert, root_token, clock=SystemClock())
        key = os.urandom(32).hex().encode()
        key_file = base / "webhook.key"
        key_file.write_bytes(key + b"\n")
        key_file.chmod(0o600)
        t = Twin(lab, repo, out, base, kubes, apis, kubeconfigs, root, key_file, key)
        for cluster in (EU, US):
            _apply_consumers(t, cluster)
        marker = t.meta()[wk.VALUE_MARKER]
        wait_for(lambda: t.marker(EU) == marker and t.marker(US) == marker, 60,
                 "both clusters' ESO materialized the first version", every=0.5)
        for c in [t.start_controller(cluster, wait=False) for cluster in (EU, US)]:  # both start at once
            c.wait_started()
            c.wait_leader()
        yield t
    finally:
        if t is not None:
            for c in t.controllers.values():
                c.kill()
        for kube in kubes.values():
            kube.close()
        lab_mod.down(config.lab_dir, lab_host(), progress=lambda _m: None)
        lab_mod.Lab(lab_mod.LabConfig.load(config.lab_dir, lab_host())).postgres.purge()


def _denied(action: Callable[[], object]) -> None:
    with pytest.raises(Forbidden):
        action()


# --------------------------------------------------------------------------------------------------- rotation


def test_one_rotation_reaches_both_clusters_and_revoke_waits_for_the_follower(twin: Twin) -> None:
    t = twin
    wait_for(lambda: (a := t.ack()) is not None and a.version == 1, 30, "prod-us1 acknowledged version 1")
    before = {c: t.rollout(c) for c in (EU, US)}
    t.webhook(EU)
    run = t.wait_run(lambda r: r.finished and r.ledger_seq is not None, "the run finished")
    assert run.stage == "revoked", run
    assert t.version() == 2 and run.current_version == 2
    assert run.notes[clusters.ACKNOWLEDGED_NOTE] == US
    ack = t.ack()
    assert ack is not None and (ack.version, ack.marker, ack.run) == (2, run.pending_marker, run.run_id)
    marker = t.meta()[wk.VALUE_MARKER]
    assert t.marker(EU) == t.marker(US) == marker
    for cluster in (EU, US):  # each cluster rolled its own Deployment once, with the run id as token
        after = t.rollout(cluster)
        assert after.revision == before[cluster].revision + 1, cluster
        assert after.template_annotations[wk.ANNOTATION_RESTART_BATCH] == run.run_id, cluster
    entries = [e for e in LedgerReader(t.kv, "secret").for_secret(NAME) if e.event == "rotation"]
    assert [e.run for e in entries] == [run.run_id], "one rotation, recorded once"
    assert t.controllers[US].events("followed a version rotated by another cluster", version=2)


def test_a_rotation_request_to_the_follower_is_dropped(twin: Twin) -> None:
    t = twin
    version = t.version()
    t.webhook(US)
    wait_for(lambda: t.controllers[US].events("request for a secret another cluster rotates"), 15,
             "the follower drops the request")
    assert t.version() == version


def test_with_the_follower_cluster_down_the_owner_still_rotates_and_the_follower_catches_up(twin: Twin) -> None:
    t = twin
    assert t.lab.second is not None
    before, before_us = t.rollout(EU), t.rollout(US)
    # cluster 2 down (SIGKILL: a graceful stop waits ~20 s for its watchers): its controller, ESO and
    # kube-controller-manager cannot act; its etcd stays up
    assert procs.stop(t.lab.second.dir, t.lab.second.apiserver.name, sig=signal.SIGKILL)
    version = t.version()
    t.webhook(EU)
    run = t.wait_run(lambda r: r.current_version == version + 1 and r.stage == "revoke-wait"
                     and r.notes.get(clusters.AWAITING_NOTE) == US, "the owner waits for prod-us1 before revoking")
    assert t.marker(EU) == t.meta()[wk.VALUE_MARKER], "cluster 1 got the new version"
    assert t.rollout(EU).revision == before.revision + 1
    assert not run.finished
    proc = t.lab.second.apiserver.start()
    t.lab.second.apiserver.wait(proc, timeout=60)
    done = t.wait_run(lambda r: r.run_id == run.run_id and r.finished and r.ledger_seq is not None,
                      "the owner revoked once prod-us1 caught up", timeout=90)
    assert done.stage == "revoked"
    ack = t.ack()
    assert ack is not None and ack.version == version + 1
    assert t.marker(US) == t.meta()[wk.VALUE_MARKER]
    after = t.rollout(US)
    assert after.revision == before_us.revision + 1, "the returning cluster restarted once"
    assert after.template_annotations[wk.ANNOTATION_RESTART_BATCH] == run.run_id


def test_sigterm_to_a_follower_waiting_for_its_eso_exits_at_once_and_the_next_follower_acknowledges(
        twin: Twin) -> None:
    """The follower cluster's ESO is down: after the owner's rotation its controller refreshes the ExternalSecret
    and waits for the consumer Secret (up to --propagation-timeout, 30 s here). SIGTERM cuts that wait short: it
    exits at once, restarts nothing and acknowledges nothing, so the owner keeps the old credential. The next
    follower controller, with ESO back, follows the version: one restart, one acknowledgement, and the owner
    revokes. The code before waited out the 30 s."""
    t = twin
    second = t.lab.second
    assert second is not None
    version, before_us = t.version(), t.rollout(US)
    custom = kubernetes.client.CustomObjectsApi(t.api[US])

    def poked(tokens: tuple[str, ...]) -> bool:
        got = custom.list_namespaced_custom_object("external-secrets.io", "v1", NS, "externalsecrets")
        return any((i["metadata"].get("annotations") or {}).get(wk.ESO_FORCE_SYNC, "").startswith(tokens)
                   for i in got["items"])

    follower = t.controllers[US]
    assert procs.stop(second.dir, second.eso.name, sig=signal.SIGKILL)
    try:
        t.webhook(EU)
        run = t.wait_run(lambda r: r.current_version == version + 1 and r.stage == "revoke-wait",
                         "the owner rotated and waits before revoking")
        wait_for(lambda: poked((f"follow.{run.run_id}.", f"follow.{version + 1}.")), 30,
                 "the follower refreshed its ExternalSecret (its wait for ESO begins)", every=0.2)
        time.sleep(1)  # inside the wait
        began = time.monotonic()
        code = follower.terminate()
        took = time.monotonic() - began
    finally:
        proc = second.eso.start()
        second.eso.wait(proc)
    print(f"\n[graceful stop] the follower exited {took:.1f}s after SIGTERM, waiting for its ESO")
    assert code == 0, follower.text()[-2000:]
    assert took < 10, f"the stop took {took:.1f}s"
    ack = t.ack()
    assert ack is not None and ack.version == version, "nothing acknowledged"
    assert t.rollout(US).revision == before_us.revision, "nothing restarted"
    assert not follower.events("followed a version rotated by another cluster", version=version + 1)
    left = t.run()
    assert left is not None and left.run_id == run.run_id and not left.finished, left
    t.start_controller(US)
    done = t.wait_run(lambda r: r.run_id == run.run_id and r.finished and r.ledger_seq is not None,
                      "the owner revoked once the next follower acknowledged", timeout=90)
    assert done.stage == "revoked"
    ack = t.ack()
    assert ack is not None and (ack.version, ack.run) == (version + 1, run.run_id)
    assert t.marker(US) == t.meta()[wk.VALUE_MARKER]
    after = t.rollout(US)
    assert after.revision == before_us.revision + 1, "the follower restarted once"
    assert after.template_annotations[wk.ANNOTATION_RESTART_BATCH] == run.run_id


# --------------------------------------------------------------------------------------------------- privilege


def test_neither_cluster_reads_the_others_internal_paths(twin: Twin) -> None:
    t = twin
    owner = t.login(EU, *CONTROLLER, f"chamberlain.{EU}.orchestrator")
    follower = t.login(US, *CONTROLLER, f"chamberlain.{US}.orchestrator")
    readers = [t.login(c, *READER, f"chamberlain.prod.{c}.{NS}.reader") for c in (EU, US)]
    run_path = runs.run_path(SECRET)
    staged = runs.staging_path(SECRET)
    ack_us, ack_eu = clusters.ack_path(SECRET, US), clusters.ack_path(SECRET, EU)
    # The owner: reads the follower's acknowledgements, writes none; never the follower's internal mounts.
    assert owner.kv.read(ack_us.mount, ack_us.path) is not None
    _denied(lambda: owner.kv.write(ack_us.mount, ack_us.path, {"version": "99"}, cas=1))
    _denied(lambda: owner.logical.read(f"platform-data/metadata/prod/{US}/x"))
    _denied(lambda: owner.logical.read(f"platform-config/metadata/prod/{US}/x"))
    # The follower: no run record, no staged value, no version over an existing one, no acknowledgement but its own.
    assert follower.kv.read_metadata(SECRET.mount, SECRET.path) is not None  # what it follows
    _denied(lambda: follower.kv.read(SECRET.mount, run_path))
    _denied(lambda: follower.kv.read(SECRET.mount, staged))
    _denied(lambda: follower.kv.write(SECRET.mount, SECRET.path, {"token": "x"}, cas=t.version()))
    _denied(lambda: follower.kv.write(SECRET.mount, run_path, {"run": "{}"}, cas=0))
    _denied(lambda: follower.kv.write(ack_eu.mount, ack_eu.path, {"version": "1"}, cas=0))
    _denied(lambda: follower.logical.read(f"platform-data/metadata/prod/{EU}/x"))
    assert follower.kv.read(ack_us.mount, ack_us.path) is not None
    # Readers: their value, nothing of chamberlain's internal paths.
    for reader in readers:
        assert reader.kv.read(SECRET.mount, SECRET.path) is not None
        for path in (run_path, staged, ack_us.path, ack_eu.path):
            with pytest.raises(AuthorityError):
                reader.kv.read(SECRET.mount, path)
