"""Auto-unseal against the real servers (issue 13 item 3): an OpenBao authority with a transit seal backed by a
second, small OpenBao (the lab's unsealer), initialized by ``chamberlain authority init`` with recovery keys sealed
one per custodian, restarted with nobody acting, and reported plainly when its unsealer is down.

Beside the session lab, not a lab of its own: the session's kube-apiserver holds the sealed recovery keys (in a
namespace of this module's, ``chamberlain-autounseal``), while the unsealer and this authority run from a directory
of this module on the unsealer's ports (``Ports.unsealer`` .. ``+3``: 23127-23130 shifted by
``CHAMBERLAIN_LAB_TEST_PORT_OFFSET``). Tests run in file order and build on each other. The CLI runs through its
real entry point (``main()``), in this process. Identities are generated per run (pyrage).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from chamberlain.authority import lifecycle
from chamberlain.clock import SystemClock
from chamberlain.kube.client import KubeClient
from chamberlain.lab import lab as lab_mod
from chamberlain.lab.servers import Authority, Unsealer
from tests.conftest import CliResult, holds_authority_token, lab_authority, lab_host, run_cli
from tests.lab.conftest import RunningLab
from tests.lab.test_authority_lifecycle import IDENTITY

pytestmark = [pytest.mark.lab]

REPO_ROOT = Path(__file__).resolve().parents[2]
NS = "chamberlain-autounseal"  # the controller namespace of this module's Platform: the session lab's is left alone
CUSTODIANS = ("alice", "bob", "carol")


@dataclass
class World:
    unsealer: Unsealer
    authority: Authority
    repo: Path
    work: Path
    kubeconfig: Path
    reviewer_jwt: Path
    identities: dict[str, pyrage.x25519.Identity]
    outputs: list[str] = field(default_factory=list)

    def cli(self, *args: str) -> CliResult:
        """``chamberlain ARGS`` through ``main()``, the real error boundary, in this process: a subprocess per
        call would cost more CI seconds than the servers do."""
        result = run_cli(*args, "--vault-addr", self.authority.address, "--vault-cacert",
                         str(self.authority.pki.ca.cert), "--kubeconfig", str(self.kubeconfig))
        self.outputs += [result.out, result.err]
        return result

    def store(self) -> lifecycle.SealedStore:
        return lifecycle.SealedStore(KubeClient.from_kubeconfig(self.kubeconfig, clock=SystemClock()), NS)


def _json(result: CliResult) -> dict[str, Any]:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    data: dict[str, Any] = json.loads(result.out)
    return data


def _declare(repo: Path, address: str, identities: dict[str, pyrage.x25519.Identity]) -> None:
    path = repo / "platform.yaml"
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    spec = docs[0]["spec"]
    spec["authority"]["address"] = address
    spec["authority"]["seal"] = {"type": "transit"}
    spec["controller"] = {"namespace": NS}
    spec["rootOfTrust"]["custody"] = {"threshold": 2, "custodians": [
        {"name": n, "ageRecipient": str(identities[n].to_public())} for n in CUSTODIANS]}
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def world(lab: RunningLab, tmp_path_factory: pytest.TempPathFactory, make_namespace: Callable[[str], str],
          make_service_account: Callable[[str, str], str], k8s: Any, sa_token: Callable[..., str]
          ) -> Iterator[World]:
    if lab_authority() != "openbao":
        pytest.skip("the auto-unseal lab runs OpenBao")
    import kubernetes

    work = tmp_path_factory.mktemp("autounseal")
    ports = lab_mod.Ports().shifted(int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")))
    servers = work / "servers"
    servers.mkdir(mode=0o700)
    pki = lab.lab.pki  # its server certificate names 127.0.0.1
    unsealer = Unsealer(servers, lab_host(), ports.unsealer, ports.unsealer_cluster, pki)
    authority = Authority(servers, lab_host(), ports.unsealer + 2, ports.unsealer + 3, pki, dev=False,
                          seal=unsealer.transit_seal())
    authority.raft_performance_multiplier = 1  # one node on loopback, and CI seconds are scarce
    # The authority reviews logins with a ServiceAccount of its own in the session cluster.
    make_service_account(make_namespace("vault-system"), "vault-auth")
    try:
        kubernetes.client.RbacAuthorizationV1Api(k8s).create_cluster_role_binding({
            "metadata": {"name": "vault-auth-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": "vault-auth", "namespace": "vault-system"}]})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    reviewer = work / "reviewer.jwt"
    reviewer.write_text(sa_token("vault-system", "vault-auth", seconds=3600), encoding="utf-8")
    reviewer.chmod(0o600)
    identities = {n: pyrage.x25519.Identity.generate() for n in CUSTODIANS}
    keys = work / "identities"
    keys.mkdir(mode=0o700)
    for name, identity in identities.items():
        fd = os.open(keys / f"{name}.agekey", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{identity}\n")
    repo = work / "repo"
    shutil.copytree(REPO_ROOT / "tests" / "corpus" / "base", repo)
    _declare(repo, authority.address, identities)
    started = time.monotonic()
    try:
        unsealer.wait(unsealer.start())
        authority.wait(authority.start())
        print(f"\n[autounseal] unsealer and authority up in {time.monotonic() - started:.1f}s")
        yield World(unsealer, authority, repo, work, lab.kubeconfig, reviewer, identities)
    finally:
        authority.stop()
        unsealer.stop()


def test_init_issues_recovery_keys_sealed_one_per_custodian(world: World) -> None:
    started = time.monotonic()
    data = _json(world.cli("authority", "init", str(world.repo), "--cluster", "dev1",
                           "--audit-file", str(world.authority.audit_log),
                           "--token-reviewer-jwt-file", str(world.reviewer_jwt),
                           "--recovery-dir", str(world.work / "recovery"), "-o", "json"))
    print(f"\n[autounseal] empty authority -> initialized (recovery keys), configured: "
          f"{time.monotonic() - started:.1f}s")
    assert data["initialized_now"] is True and data["root_revoked"] is True
    assert data["unsealed_now"] is False  # nobody unsealed it: its seal did
    assert data["seal"] == "transit" and data["keys"] == "recovery"
    material = world.store().load()
    assert material is not None and material.recovery_keys and material.seal_type == "transit"
    assert material.holders == CUSTODIANS and material.threshold == 2 and len(material.shares) == 3
    # Each recovery key opens for its custodian only; the root identity opens none.
    opened = {n: material.open_held([world.identities[n]]) for n in CUSTODIANS}
    assert {n: [i for i, _ in o] for n, o in opened.items()} == {"alice": [0], "bob": [1], "carol": [2]}
    assert material.open_held(lifecycle.load_identities(IDENTITY)) == []
    plaintext = [k for o in opened.values() for _, k in o]
    for text in world.outputs:
        assert not any(k in text for k in plaintext) and not holds_authority_token(text)


def test_k_custodians_rekey_the_recovery_keys(world: World) -> None:
    before = world.store().load()
    assert before is not None
    ids = world.work / "identities"
    data = _json(world.cli("authority", "rekey", str(world.repo), "--cluster", "dev1", "--identity",
                           str(ids / "alice.agekey"), "--identity", str(ids / "carol.agekey"), "-o", "json"))
    assert data["recovery_keys"] is True and data["generation"] == before.generation + 1 and data["shares"] == 3
    after = world.store().load()
    assert after is not None and after.recovery_keys and after.holders == CUSTODIANS and not after.next_shares
    old = {k for n in CUSTODIANS for _, k in before.open_held([world.identities[n]])}
    new = {k for n in CUSTODIANS for _, k in after.open_held([world.identities[n]])}
    assert len(new) == 3 and not old & new  # verified by the server before they were promoted


def test_status_shows_the_seal(world: World) -> None:
    data = _json(world.cli("authority", "status", str(world.repo), "-o", "json"))
    assert data["initialized"] and not data["sealed"]
    assert data["seal"] == {"type": "transit", "auto_unseal": True, "declared": "transit"}
    assert data["sealed_material"]["recovery_keys"] is True
    text = world.cli("authority", "status", str(world.repo))
    assert "seal:           transit (auto-unseal" in text.out


def test_a_restart_needs_nobody(world: World) -> None:
    world.authority.stop()
    started = time.monotonic()
    world.authority.wait(world.authority.start())
    while (health := world.authority.sys_health()).get("sealed") or health.get("standby"):
        assert time.monotonic() - started < 60, f"not unsealed and active 60s after start: {health}"
        time.sleep(0.2)
    print(f"\n[autounseal] restart -> unsealed and active, nobody acting: {time.monotonic() - started:.1f}s")
    data = _json(world.cli("authority", "unseal", str(world.repo), "-o", "json"))  # no identity needed
    assert data["auto_unseal"] == "transit" and data["submitted"] == 0 and data["sealed"] is False
    assert "nothing to do" in world.cli("authority", "unseal", str(world.repo)).out


def test_the_unsealer_down_is_reported_plainly(world: World) -> None:
    world.unsealer.stop()
    # A running authority keeps its key in memory: it still serves.
    assert not world.authority.sys_health().get("sealed")
    # Restarted without its unsealer, OpenBao does not start: chamberlain says why, without a traceback.
    world.authority.stop()
    world.authority.start()
    deadline = time.monotonic() + 60
    while world.authority.running() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert world.authority.running() is None, "OpenBao started although its transit seal is unreachable"
    for args in (("authority", "status", str(world.repo)), ("authority", "unseal", str(world.repo))):
        result = world.cli(*args)
        assert result.code != 0
        assert "transit seal (auto-unseal)" in result.err and "unsealer or KMS" in result.err, result.err
        assert "Traceback" not in result.err + result.out
    # The unsealer back: the authority starts and unseals itself again.
    world.unsealer.wait(world.unsealer.start())
    world.authority.wait(world.authority.start())
    deadline = time.monotonic() + 60
    while world.authority.sys_health().get("sealed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert _json(world.cli("authority", "status", str(world.repo), "-o", "json"))["sealed"] is False
