"""Failover between the nodes of an HA authority, with fakes: which errors move a request to the next node, the
bounds of trying, unseal of every node, a run record whose committed write went unanswered, and the lab's
``--ha`` configuration. The real three-node OpenBao with a leader killed mid-batch: ``benchmarks/bench_failover.py``
(run at smoke size by tests/lab/test_benchmarks_smoke.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest
import requests
import urllib3.exceptions

from chamberlain.authority import errors, lifecycle
from chamberlain.authority.model import Health
from chamberlain.authority.vault import VaultClient
from chamberlain.authority.vault.failover import FailoverPolicy, may_fail_over, parse_addresses
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.lab import lab as lab_mod
from chamberlain.lab.servers import LabError, LabHost
from tests.unit.test_authority_fakes import FakeVault
from tests.unit.test_authority_lifecycle import World, _identities

A, B, C = "https://a:8200", "https://b:8200", "https://c:8200"


def _refused() -> requests.exceptions.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
    reason.__cause__ = ConnectionRefusedError(111, "Connection refused")  # as urllib3 raises it: from the socket's
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/v1/x", reason))  # type: ignore[arg-type]


def test_addresses_are_comma_separated_and_checked() -> None:
    assert parse_addresses(f"{A}/, {B} ,{C}") == (A, B, C)
    assert parse_addresses(A) == (A,)
    with pytest.raises(UsageError):
        parse_addresses(" , ")
    with pytest.raises(UsageError, match="https://"):
        parse_addresses(f"{A},b:8200")


@pytest.mark.parametrize(("exc", "expected"), [
    (_refused(), True),
    (requests.exceptions.ConnectTimeout(), True),
    (hvac.exceptions.VaultDown("Vault is sealed"), True),
    (hvac.exceptions.InternalServerError(errors=["local node not active but active cluster node not found"]), True),
    (hvac.exceptions.InternalServerError(errors=["error during forwarding RPC request"]), False),  # may be applied
    (requests.exceptions.ConnectionError(ConnectionResetError(104, "reset")), False),  # may be applied
    (requests.exceptions.ReadTimeout(), False),
    (hvac.exceptions.Forbidden("permission denied"), False),
])
def test_only_what_no_node_applied_fails_over(exc: BaseException, expected: bool) -> None:
    assert may_fail_over(exc) is expected


class _Hvac:
    """Stands for hvac.Client: a ``url`` the client moves, and the node each call reached."""

    def __init__(self, down: set[str], answer: BaseException | None = None) -> None:
        self.url, self.down, self.answer, self.reached = A, down, answer, []  # type: ignore[var-annotated]

    def call(self) -> str:
        self.reached.append(self.url)
        if self.url in self.down:
            raise self.answer or _refused()
        return self.url


def test_a_request_moves_to_the_next_node_and_stays_there() -> None:
    fake = _Hvac({A})
    client = VaultClient(fake, FakeClock(), (A, B, C))
    assert client.call("read", lambda h: h.call()) == B
    assert client.call("read", lambda h: h.call()) == B  # the next request starts on the node that answered
    assert fake.reached == [A, B, B] and client.failovers == 1 and client.address == B


def test_all_nodes_down_ends_within_the_bounds_with_a_typed_error() -> None:
    clock = FakeClock()
    fake = _Hvac({A, B, C})
    client = VaultClient(fake, clock, (A, B, C), FailoverPolicy(rounds=3, pause=0.5, max_pause=1.0, budget=30))
    with pytest.raises(errors.AuthorityUnavailable) as raised:
        client.call("write secret", lambda h: h.call())
    assert len(fake.reached) == 9 and clock.monotonic() == pytest.approx(1.5)  # 3 rounds, 0.5 + 1.0 s between
    # Every node it asked, each once, and why in words (never an exception's class name).
    assert str(raised.value) == ("write secret: Vault unreachable at https://a:8200, https://b:8200, https://c:8200 "
                                 "(connection refused)")


def test_an_answer_that_may_have_been_applied_is_not_sent_again() -> None:
    fake = _Hvac({A}, requests.exceptions.ConnectionError(ConnectionResetError(104, "reset")))
    client = VaultClient(fake, FakeClock(), (A, B, C))
    with pytest.raises(errors.AuthorityUnavailable):
        client.call("write run", lambda h: h.call())
    assert fake.reached == [A] and client.failovers == 0


def test_one_address_never_fails_over() -> None:
    fake = _Hvac({A})
    client = VaultClient(fake, FakeClock(), (A,))
    with pytest.raises(errors.AuthorityUnavailable):
        client.call("read", lambda h: h.call())
    assert fake.reached == [A]


def test_connect_takes_every_address() -> None:
    client = VaultClient.connect(f"{A},{B}", clock=FakeClock())
    assert client.addresses == (A, B) and client.address == A


# ------------------------------------------------------------------------------------------- unseal every node


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _node(address: str, leader: FakeVault) -> FakeVault:
    """A raft node that joined ``leader``: initialized with the same keyring, sealed."""
    node = FakeVault()
    node.address, node.initialized, node.keys, node.threshold = address, True, leader.keys, leader.threshold
    return node


def _with_health(node: FakeVault, clock: FakeClock, active: bool) -> Any:
    node.clock = clock  # type: ignore[attr-defined]
    node.seal.health = lambda: Health(initialized=node.initialized, sealed=node.sealed,  # type: ignore[method-assign]
                                      standby=not active)
    return node


def test_unseal_unseals_every_node_with_the_same_shares(world: World) -> None:
    world.init()
    clock = FakeClock()
    world.vault.restart()
    nodes = [_with_health(world.vault, clock, True), _with_health(_node(B, world.vault), clock, False),
             _with_health(_node(C, world.vault), clock, False)]
    outcome = lifecycle.unseal_nodes(nodes, world.store(), _identities())
    assert [n.address for n in outcome] == [world.vault.address, B, C]
    assert all(n.report is not None and n.report.was_sealed and not n.report.sealed for n in outcome)
    assert not any(n.sealed for n in nodes)


def test_a_lost_node_does_not_keep_the_others_sealed(world: World) -> None:
    world.init()
    clock = FakeClock()
    world.vault.restart()
    lost = _with_health(_node(B, world.vault), clock, False)
    lost.seal.status = lambda: (_ for _ in ()).throw(errors.AuthorityUnavailable("b: unreachable"))  # type: ignore[method-assign]
    nodes = [_with_health(world.vault, clock, True), lost, _with_health(_node(C, world.vault), clock, False)]
    outcome = lifecycle.unseal_nodes(nodes, world.store(), _identities())
    assert [n.skipped for n in outcome] == ["", "unreachable", ""]
    assert not world.vault.sealed and not nodes[2].sealed


def test_a_refused_connection_after_a_redirect_is_not_resent() -> None:
    """An OpenBao standby forwards a write over the cluster port first and redirects (307) to the leader only when
    that fails: the leader may have applied it before it died."""
    exc = _refused()
    exc.request = requests.Request("PUT", "https://dead-leader:8200/v1/secret/data/x").prepare()
    assert may_fail_over(exc, A) is False
    exc.request = requests.Request("PUT", f"{A}/v1/secret/data/x").prepare()
    assert may_fail_over(exc, A) is True
    exc.request = requests.Request("GET", "https://dead-leader:8200/v1/secret/data/x").prepare()
    assert may_fail_over(exc, A) is True  # a read is safe to send again


# ------------------------------------------------------------------------------------------------- the lab


def _host(tmp_path: Path) -> LabHost:
    return LabHost(tmp_path / "cache", {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, FakeClock())


def test_lab_ha_runs_three_raft_nodes_that_join_node_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = lab_mod.LabConfig(lab_dir=tmp_path / "lab", host=_host(tmp_path), ha=True)
    assert lab_mod.LabConfig.load(config.lab_dir, config.host).ha is False  # nothing stored yet
    config.lab_dir.mkdir()
    (config.lab_dir / "lab.json").write_text(config.to_json())
    lab = lab_mod.Lab(lab_mod.LabConfig.load(config.lab_dir, config.host))
    assert {"openbao", "openbao-2", "openbao-3"} <= set(lab.servers())
    assert lab.authority_addresses == ["https://127.0.0.1:28200", "https://127.0.0.1:23121",
                                       "https://127.0.0.1:23123"]
    monkeypatch.setattr("chamberlain.lab.builds.openbao_binary", lambda: Path("/bin/true"))
    configs = []
    for node in lab.authority_nodes:
        monkeypatch.setattr(node, "_spawn", lambda argv, env=None, **kw: None)
        node.start()
        configs.append(json.loads((node.dir / "config.json").read_text()))
    first, second, _ = configs
    assert "retry_join" not in first["storage"]["raft"]  # node 1 founds the cluster
    assert [j["leader_api_addr"] for j in second["storage"]["raft"]["retry_join"]] == [
        lab.authority_addresses[0], lab.authority_addresses[2]]
    assert {c["storage"]["raft"]["node_id"] for c in configs} == {"lab-1", "lab-2", "lab-3"}
    assert all(c["disable_standby_reads"] for c in configs)
    assert len({json.dumps(c["audit"]) for c in configs}) == 1  # raft nodes must declare the same audit device


def test_lab_ha_needs_server_mode(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="--ha needs server mode"):
        lab_mod.LabConfig(lab_dir=tmp_path, host=_host(tmp_path), ha=True, dev=True)
    single = lab_mod.Lab(lab_mod.LabConfig(lab_dir=tmp_path, host=_host(tmp_path)))
    assert single.authority_nodes == [single.authority] and "openbao-2" not in single.servers()


# ------------------------------------------------------------------------------------------- the run record


def test_after_an_outage_the_run_record_one_revision_on_is_our_own_unanswered_write() -> None:
    """The old leader committed the run record and died before answering: the executor's next save conflicts. Only
    after an outage, and only one revision on with the same run id, is that record taken as ours."""
    from types import SimpleNamespace

    from chamberlain.authority.fake import FakeKV
    from chamberlain.controller.loop import Controller
    from chamberlain.rotation import run as runs

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    kv = FakeKV()
    ours = runs.save(kv, runs.RotationRun(run_id="run-1", secret="s", path="dev/shop/s", mount="secret",
                                          trigger="manual", reason="x", started_at=t0, updated_at=t0,
                                          previous_version=3, staging_base=0))
    committed = runs.save(kv, ours.model_copy(update={"stage": "staged"}))  # its answer "lost"
    active = SimpleNamespace(run=ours, deps=SimpleNamespace(kv=kv), outage="Vault unreachable")
    assert Controller._own_unanswered_write(active) == committed  # type: ignore[arg-type]
    active.outage = None  # no outage: a conflict is another executor's
    assert Controller._own_unanswered_write(active) is None  # type: ignore[arg-type]
    active.outage = "Vault unreachable"
    runs.save(kv, committed.model_copy(update={"stage": "promoted"}))  # two revisions on: someone else moved it
    assert Controller._own_unanswered_write(active) is None  # type: ignore[arg-type]
