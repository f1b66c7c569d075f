"""The controller loop with fakes: FakeKV as Vault, FakeKube as the cluster with ESO simulated on force-sync, the
real rotators, a fake clock. What is checked: a short-ttl secret rotates exactly once per window; a batch rolls a
shared workload once; two replicas never both act; an adopted run resumes; annotation and webhook triggers go
through the same path; metrics, logs, RotationRun statuses and events carry no value."""

from __future__ import annotations

import json
import threading
import time
import types
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import LedgerReader
from chamberlain.authority.fake import FakeKV
from chamberlain.clock import FakeClock
from chamberlain.controller import ControllerMetrics, LeaderElector, RunPublisher, decide, loop
from chamberlain.controller.app import ControllerWebhook
from chamberlain.controller.collaborators import Collaborators
from chamberlain.controller.config import ControllerConfig
from chamberlain.controller.leader import Decision
from chamberlain.controller.ledger import SharedLedger
from chamberlain.controller.loop import Controller, scope_of
from chamberlain.handover import metadata as md
from chamberlain.intent.model import GROUP, VERSION, Limits, Platform, RotationPolicySpec, SecretIntent
from chamberlain.kube.api import CustomResource, KubeSecret, KubeUnavailable, LeaseRecord, PodTemplateState
from chamberlain.kube.fake import FakeKube
from chamberlain.rotation import run as runs
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.rotators import PendingVersion, RotationContext
from chamberlain.triggers import MemoryQueue, RunObjectStore, WebhookKey, manual, sign
from chamberlain.values.markers import version_marker

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MOUNT = "secret"
CANARY = "CANARY-controller-0123456789"
NS = "chamberlain-system"


class ListLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(json.dumps({"event": event, **kw}, default=str))

    def warning(self, event: str, **kw: Any) -> None:
        self.info(event, **kw)


class EsoKube(FakeKube):
    """FakeKube whose force-sync does what ESO does: copy the latest Vault version's marker to the Secret."""

    def __init__(self, kv: FakeKV, paths: dict[tuple[str, str], str]) -> None:
        super().__init__()
        self.kv, self.paths = kv, paths
        self.force_syncs = 0

    def annotate_external_secret(self, namespace: str, name: str, annotations: Any) -> None:
        super().annotate_external_secret(namespace, name, annotations)
        self.force_syncs += 1
        meta = self.kv.read_metadata(MOUNT, self.paths[(namespace, name)])
        assert meta is not None
        self.secrets[(namespace, name)] = KubeSecret(
            namespace, name, {"v": "materialized"},
            annotations={wk.ANNOTATION_VERSION_MARKER: meta.custom.get(wk.VALUE_MARKER, "")})


PLATFORM = Platform.model_validate({
    "apiVersion": "chamberlain.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "t"},
    "spec": {"environments": [{"name": "dev", "clusters": ["dev1"]}],
             "authority": {"address": "https://vault.invalid:8200",
                           "mounts": {"runtime": MOUNT, "internalData": "pd", "internalConfig": "pc"}},
             "rootOfTrust": {"ageRecipients": ["age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"]},
             "controller": {"namespace": NS, "serviceAccount": "chamberlain"},
             # most tests trigger at once; the rate limit has its own tests (LIMITED)
             "limits": {"triggerInterval": "0s"}},
})
LIMITED = PLATFORM.model_copy(update={"spec": PLATFORM.spec.model_copy(update={"limits": Limits()})})


def intent(name: str, workload: str = "api", policy: dict[str, Any] | None = None,
           target: dict[str, Any] | None = None) -> SecretIntent:
    return SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": name},
        "spec": {"owner": "shop", "purpose": "tests", "classification": "runtime",
                 "source": {"generate": {"token": {"type": "token"}}},
                 "rotation": policy or {"type": "time-based", "ttl": "10m", "rotateBefore": "2m",
                                        "failureStrategy": "retry"},
                 "consumers": [{"namespace": "shop", "secretName": name,
                                "restart": [{"kind": "Deployment", "name": workload}]}],
                 **({"target": target} if target is not None else {})},
    })


class World:
    def __init__(self, names: tuple[str, ...] = ("api-token",), policy: dict[str, Any] | None = None,
                 platform: Platform = PLATFORM) -> None:
        self.clock = FakeClock(T0)
        self.kv = FakeKV()
        intents = {n: intent(n, policy=policy) for n in names}
        self.scope = scope_of(platform, intents, "dev", "dev1")
        self.kube = EsoKube(self.kv, {("shop", n): self.scope.placed[n].vault.path for n in names})
        self.kube.workloads[("Deployment", "shop", "api")] = PodTemplateState({}, 1)
        for n in names:
            path = self.scope.placed[n].vault.path
            data = {"token": f"{CANARY}-{n}"}
            self.kv.write(MOUNT, path, data, cas=0)
            spec = intents[n].spec.rotation
            assert spec is not None
            policy_spec = RotationPolicySpec.model_validate(spec.model_dump(by_alias=True))
            self.kv.update_custom_metadata(MOUNT, path, {
                **md.policy_metadata(None, policy_spec),
                wk.VALUE_MARKER: version_marker(f"{MOUNT}/{path}", data), wk.VALUE_VERSION: "1",
                wk.CREATED_AT: T0.isoformat().replace("+00:00", "Z"), wk.AUTHORITY: "vault"})
            self.kube.external_secrets[("shop", n)] = {"metadata": {"name": n, "namespace": "shop"}}
        self.log = ListLog()
        self.ids = iter(f"run-{i:04d}" for i in range(1000))

    def controller(self, *, identity: str | None = None, queue: MemoryQueue | None = None, workers: int = 1,
                   **kw: Any) -> Controller:
        """A controller over this world; ``kw`` are further :class:`Collaborators` (metrics, annotations...)."""
        elector = (LeaderElector(self.kube, NS, "chamberlain-controller", identity, self.clock, 15)
                   if identity else None)
        parts = Collaborators(kv=self.kv, kube=self.kube, clock=self.clock,
                              ledger=SharedLedger(self.kv, MOUNT, self.clock), queue=queue or MemoryQueue(),
                              elector=elector, publisher=kw.pop("publisher", RunPublisher(self.kube, NS)),
                              log=self.log, new_run_id=lambda: next(self.ids), **kw)
        config = ControllerConfig(evaluate_every=0.0, propagation_timeout=5.0, poll=1.0, workers=workers,
                                  identity=identity)
        return Controller(self.scope, parts, config)

    def version(self, name: str = "api-token") -> int:
        meta = self.kv.read_metadata(MOUNT, self.scope.placed[name].vault.path)
        assert meta is not None
        return meta.current_version

    def rotations(self) -> list[Any]:
        return [e for e in LedgerReader(self.kv, MOUNT).entries() if e.event == "rotation"]


# --------------------------------------------------------------------------------------------------- leader


def test_decide_is_pure_and_covers_every_case() -> None:
    live = LeaseRecord("a", 15, T0, T0)
    assert decide(None, "a", T0) is Decision.CREATE
    assert decide(live, "a", T0) is Decision.RENEW
    assert decide(live, "b", T0 + timedelta(seconds=14)) is Decision.FOLLOW
    assert decide(live, "b", T0 + timedelta(seconds=15)) is Decision.TAKE_OVER
    assert decide(LeaseRecord(None, 15, T0, None), "b", T0) is Decision.TAKE_OVER


def test_two_electors_one_leader_and_takeover_after_expiry_or_release() -> None:
    kube, clock = FakeKube(), FakeClock(T0)
    a = LeaderElector(kube, NS, "l", "a", clock, 15)
    b = LeaderElector(kube, NS, "l", "b", clock, 15)
    assert a.step() and not b.step()
    clock.advance(10)
    assert a.step() and not b.step()  # renewed
    clock.advance(16)  # a stopped renewing (crashed): b takes over, a would follow
    assert b.step() and not a.step()
    b.release()
    clock.advance(5)  # a follower looks again a third of the lease duration after its last look
    assert a.step()
    lease = kube.get_lease(NS, "l")
    assert lease is not None and lease.holder == "a" and lease.transitions >= 2


class _CountedLeases(FakeKube):
    """The fake's Leases, each request counted by verb; ``lose_next_answer``: the next replace is applied and its
    answer lost (a read timeout after the API server committed it)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.lose_next_answer = False

    def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        self.calls.append("get")
        return super().get_lease(namespace, name)

    def replace_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self.calls.append("patch")
        written = super().replace_lease(namespace, name, record)
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise KubeUnavailable("read timed out")
        return written


def test_release_is_one_conditional_write_and_never_clears_a_lease_taken_since() -> None:
    kube, clock = _CountedLeases(), FakeClock(T0)
    a = LeaderElector(kube, NS, "l", "a", clock, 15)
    b = LeaderElector(kube, NS, "l", "b", clock, 15)
    assert a.step()
    kube.calls.clear()
    a.release()
    lease = kube.get_lease(NS, "l")
    assert kube.calls[:1] == ["patch"] and len(kube.calls) == 2  # one PATCH (then the test's own GET)
    assert lease is not None and lease.holder is None and not a.is_leader
    assert b.step()
    clock.advance(16)  # b stopped renewing; a takes over, then b (still thinking it leads) stops
    assert a.step()
    b.release()  # b's last write is not the Lease's any more: refused, a keeps it
    lease = kube.get_lease(NS, "l")
    assert lease is not None and lease.holder == "a"
    assert a.step()


def test_release_after_a_renewal_whose_answer_was_lost_still_clears_the_lease() -> None:
    kube, clock = _CountedLeases(), FakeClock(T0)
    a = LeaderElector(kube, NS, "l", "a", clock, 15)
    assert a.step()
    clock.advance(6)
    kube.lose_next_answer = True
    assert a.step()  # the renewal was applied; its answer was lost, so a's last write is the one before it
    a.release()
    lease = kube.get_lease(NS, "l")
    assert lease is not None and lease.holder is None


def test_a_tick_longer_than_the_lease_keeps_it_renewed_and_no_follower_takes_over() -> None:
    """One tick drives a whole batch (2,000 rotations take about a minute; the Lease lasts 15 s). A thread renews the
    Lease while the tick runs, so a second replica never finds it expired mid-batch and acts beside the leader."""
    from chamberlain.triggers import manual

    names = tuple(f"s{i}" for i in range(6))
    w = World(names, policy={"type": "static", "failureStrategy": "retry"})
    q = MemoryQueue()
    a = w.controller(identity="a", queue=q)
    a.keep_lease_every = 0.002
    follower = LeaderElector(w.kube, NS, "chamberlain-controller", "b", w.clock, 15)
    a.tick()
    taken: list[datetime] = []
    original = type(w.kube).annotate_external_secret

    def renewed_lately() -> bool:
        lease = w.kube.get_lease(NS, "chamberlain-controller")
        return lease is not None and lease.renewed is not None and w.clock.now() - lease.renewed < timedelta(seconds=7)

    def slow_force_sync(namespace: str, name: str, annotations: Any) -> None:
        w.clock.advance(7)  # each run's step takes 7 s: the batch takes 42 s, the Lease lasts 15
        deadline = time.monotonic() + 5
        while not renewed_lately() and time.monotonic() < deadline:  # the keeper's next look (real time)
            time.sleep(0.002)
        if follower.step():
            taken.append(w.clock.now())
        original(w.kube, namespace, name, annotations)

    w.kube.annotate_external_secret = slow_force_sync  # type: ignore[method-assign]
    for n in names:
        q.put(manual(n, "batch", w.clock.now()))
    started = w.clock.now()
    assert a.tick()
    assert w.clock.now() - started > timedelta(seconds=30)
    assert taken == [], "the follower took the Lease in the middle of the leader's batch"
    lease = w.kube.get_lease(NS, "chamberlain-controller")
    assert lease is not None and lease.holder == "a" and lease.renewed is not None
    assert lease.renewed > started + timedelta(seconds=15)
    assert [e.reason for e in w.rotations()].count("batch") == len(names)


def test_a_lease_lost_during_a_tick_and_regained_since_drops_the_runs_held_and_adopts_them_again() -> None:
    """The keeper saw the Lease lost while the tick ran, and the next tick's look finds it ours again: meanwhile the
    other replica may have adopted our runs and moved their records. What this replica held is stale, so it follows
    and adopts again from the records, as after any change of leader, instead of meeting a record one revision
    ahead at its next save and giving the run up as another executor's (stranded, its lease held)."""
    from chamberlain.triggers import manual

    w = World(policy={"type": "event-based", "revokeOld": True, "maxOverlap": "1h", "failureStrategy": "hold"})
    q = MemoryQueue()
    a = w.controller(identity="a", queue=q)
    q.put(manual("api-token", "drill", w.clock.now()))
    assert a.tick()
    held = a.active["api-token"].run
    assert held.stage == "revoke-wait"
    vault = w.scope.placed["api-token"].vault
    moved = runs.save(w.kv, held.model_copy(update={"notes": {**held.notes, "moved-by": "b"}}))  # b's save
    a._lost_in_tick = True  # as the keeper thread records it
    assert a.tick()
    assert any("lost during the tick and regained" in line for line in w.log.lines)
    assert a.active["api-token"].run.revision == moved.revision, "adopted again from the record"
    w.clock.advance(3700)  # past maxOverlap: the run revokes and ends, driven by this replica
    assert a.tick()
    record = runs.load(w.kv, vault)
    assert record is not None and record.stage == "revoked" and record.ledger_seq is not None
    assert not any("taken over" in line for line in w.log.lines)


def test_a_hung_tick_does_not_keep_the_lease_from_a_healthy_follower() -> None:
    """Review of the keeper thread: a tick that makes no progress (a worker blocked on a dead connection: Kube
    calls carry no request timeout) must not hold leadership for ever; the follower takes over once the keeper
    lets the Lease go."""
    w = World(("s0",), policy={"type": "static", "failureStrategy": "retry"})
    q = MemoryQueue()
    a = w.controller(identity="a", queue=q)
    a.keep_lease_every = 0.005
    follower = LeaderElector(w.kube, NS, "chamberlain-controller", "b", w.clock, 15)
    assert a.tick()
    hang, entered = threading.Event(), threading.Event()
    original = type(w.kube).annotate_external_secret

    def hung(namespace: str, name: str, annotations: Any) -> None:
        entered.set()
        hang.wait(30)  # blocked: no progress at all
        original(w.kube, namespace, name, annotations)

    w.kube.annotate_external_secret = hung  # type: ignore[method-assign]
    q.put(manual("s0", "hung", w.clock.now()))
    t = threading.Thread(target=a.tick, daemon=True)
    t.start()
    assert entered.wait(5)
    taken_at = None
    for second in range(1, 121):  # two fake minutes of a tick that does nothing
        w.clock.advance(1)
        time.sleep(0.02)  # the keeper's look
        if follower.step():
            taken_at = second
            break
    hang.set()
    t.join(10)
    # the keeper lets go once no step was done for propagation_timeout (5 s here) + a Lease duration; the Lease
    # then expires a Lease duration after its last renewal
    assert taken_at is not None and taken_at <= 5 + 15 + 15 + 2, "the stuck leader kept the Lease"


class _ShortJoin(threading.Thread):
    def join(self, timeout: float | None = None) -> None:  # as if the keeper's 31 s join bound had run out
        super().join(0.2 if timeout is not None else None)


def test_a_renewal_in_flight_past_the_join_does_not_take_the_lease_back_after_release(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of the keeper thread: the release at shutdown waits for a renewal in flight, never the reverse."""
    monkeypatch.setattr(loop, "threading", types.SimpleNamespace(
        Thread=_ShortJoin, Event=threading.Event, Lock=threading.Lock))
    w = World(("s0",), policy={"type": "static", "failureStrategy": "retry"})
    q = MemoryQueue()
    a = w.controller(identity="a", queue=q)
    a.keep_lease_every = 0.005
    assert a.tick()
    stop = threading.Event()
    armed, in_renewal, stalled = threading.Event(), threading.Event(), threading.Event()
    original_replace = type(w.kube).replace_lease

    def replace_lease(namespace: str, name: str, record: Any) -> Any:
        if armed.is_set() and threading.current_thread().name == "chamberlain-lease":
            armed.clear()
            in_renewal.set()
            stalled.wait(3)  # a stalled request: answered (and applied) only later
        return original_replace(w.kube, namespace, name, record)

    original_annotate = type(w.kube).annotate_external_secret

    def long_step(namespace: str, name: str, annotations: Any) -> None:
        w.clock.advance(6)  # a renewal is due
        armed.set()
        assert in_renewal.wait(5)
        stop.set()  # SIGTERM while the keeper's renewal hangs
        original_annotate(w.kube, namespace, name, annotations)

    w.kube.replace_lease = replace_lease  # type: ignore[method-assign]
    w.kube.annotate_external_secret = long_step  # type: ignore[method-assign]
    q.put(manual("s0", "batch", w.clock.now()))
    a.serve(stop, interval=0.01)
    lease = w.kube.get_lease(NS, "chamberlain-controller")
    assert lease is not None and lease.holder is None, "released at shutdown"
    stalled.set()  # the stalled renewal gets through now
    for t in threading.enumerate():
        if t.name == "chamberlain-lease":
            t.join(5)
    lease = w.kube.get_lease(NS, "chamberlain-controller")
    assert lease is not None and lease.holder is None, "the stopped replica took the Lease back after releasing it"


class CountingLeases(FakeKube):
    """FakeKube counting Lease reads and writes (each one an API request)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = self.writes = 0

    def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        self.gets += 1
        return super().get_lease(namespace, name)

    def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self.writes += 1
        return super().create_lease(namespace, name, record)

    def replace_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self.writes += 1
        return super().replace_lease(namespace, name, record)


def test_a_leader_ticking_every_second_renews_at_a_third_of_the_lease_duration_without_reading() -> None:
    kube, clock = CountingLeases(), FakeClock(T0)
    a = LeaderElector(kube, NS, "l", "a", clock, 15)
    for _ in range(60):  # a minute of one-second ticks
        assert a.step()
        clock.advance(1)
    assert kube.gets == 1, "only the first step reads the Lease: renewals replace my own last write"
    assert kube.writes == 12 and a.requests == 13  # the create, then a renewal every 5 s
    lease = kube.get_lease(NS, "l")
    assert lease is not None and lease.renewed == T0 + timedelta(seconds=55)


def test_a_follower_reads_the_lease_at_a_third_of_the_duration_and_takes_over_only_after_expiry() -> None:
    kube, clock = CountingLeases(), FakeClock(T0)
    a = LeaderElector(kube, NS, "l", "a", clock, 15)
    b = LeaderElector(kube, NS, "l", "b", clock, 15)
    assert a.step() and not b.step()
    gets = kube.gets
    for _ in range(4):  # a keeps renewing; b looks every 5 s and follows
        clock.advance(1)
        assert a.step() and not b.step()
    assert kube.gets == gets, "a follower does not read the Lease every tick"
    clock.advance(1)
    assert a.step() and not b.step() and kube.gets == gets + 1
    # a dies right after renewing at T0+5: b must not act before T0+20, and takes over at its first look after
    for second in range(6, 20):
        clock.advance(1)
        assert not b.step(), f"took over at T0+{second}s, before a's lease expired"
    clock.advance(1)  # T0+20: the renewal at T0+5 is 15 s old (b's look was scheduled at the expiry)
    assert b.step()
    assert not a.step(), "the old leader's blind renewal conflicts: it reads the Lease and follows"


def test_a_leader_whose_renewals_fail_stops_acting_once_its_last_renewal_is_a_duration_old() -> None:
    kube, clock = FakeKube(), FakeClock(T0)
    a = LeaderElector(kube, NS, "l", "a", clock, 15)
    assert a.step()
    kube.down = True
    for _ in range(14):  # from T0+5 on, each tick tries to renew and fails; a still acts on its valid lease
        clock.advance(1)
        assert a.step()
    assert a.api_reachable is False
    clock.advance(1)  # T0+15: every renewal since T0 failed
    assert not a.step() and not a.is_leader
    kube.down = False
    assert a.step(), "the Lease still names a and nobody took it: the next renewal succeeds"


def test_a_conflicting_renewal_reads_the_lease_and_keeps_leading_when_it_still_names_me() -> None:
    kube, clock = CountingLeases(), FakeClock(T0)
    a = LeaderElector(kube, NS, "l", "a", clock, 15)
    assert a.step()
    lease = kube.get_lease(NS, "l")
    assert lease is not None
    kube.replace_lease(NS, "l", lease)  # someone else wrote the Lease (kubectl edit): a new resourceVersion
    clock.advance(5)
    assert a.step() and a.is_leader


def test_a_leader_that_cannot_renew_stops_acting_when_its_lease_may_have_expired() -> None:
    kube, clock = FakeKube(), FakeClock(T0)
    a = LeaderElector(kube, NS, "l", "a", clock, 15)
    assert a.step()
    kube.down = True
    clock.advance(5)
    assert a.step()  # API server unreachable, but my renewal is still valid
    clock.advance(11)
    assert not a.step()


# --------------------------------------------------------------------------------------------------- time trigger


def test_short_ttl_secret_rotates_exactly_once_per_window() -> None:
    w = World()
    c = w.controller()
    minutes: list[int] = []
    for minute in range(0, 30):
        before = w.version()
        c.tick()
        if w.version() != before:
            minutes.append(minute)
        w.clock.advance(60)
    # ttl 10m, rotateBefore 2m: due at 8m after each change; 30 ticks cover three windows
    assert minutes == [8, 16, 24]
    assert len(w.rotations()) == 3 and all(e.result == "ok" for e in w.rotations())
    assert w.version() == 4


def test_a_stale_time_request_behind_a_running_rotation_does_not_rotate_twice() -> None:
    w = World()
    q = MemoryQueue()
    c = w.controller(queue=q)
    w.clock.advance(9 * 60)
    c.tick()
    assert w.version() == 2
    # A second time request for the same (old) window arrives late: it must be recognised as stale.
    from chamberlain.triggers import RotationRequest

    q.put(RotationRequest("api-token", "time", "late", w.clock.now(), "time:api-token:old-window"))
    c.tick()
    assert w.version() == 2


def test_static_and_event_based_never_rotate_by_time_but_manual_requests_do() -> None:
    w = World(policy={"type": "static", "failureStrategy": "hold"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    for _ in range(5):
        c.tick()
        w.clock.advance(3600)
    assert w.version() == 1
    from chamberlain.triggers import manual

    q.put(manual("api-token", "compromise drill", w.clock.now()))
    c.tick()
    assert w.version() == 2 and w.rotations()[-1].reason == "compromise drill"


# --------------------------------------------------------------------------------------------------- batches


def test_a_batch_of_secrets_feeding_one_workload_restarts_it_once() -> None:
    names = tuple(f"token-{i}" for i in range(5))
    w = World(names)
    c = w.controller()
    w.clock.advance(9 * 60)
    c.tick()
    assert all(w.version(n) == 2 for n in names)
    assert w.kube.workload_patches == [("Deployment", "shop", "api")]
    assert len(w.rotations()) == 5


# --------------------------------------------------------------------------------------------------- two replicas


def test_two_controllers_exactly_one_acts() -> None:
    w = World()
    a = w.controller(identity="replica-a")
    b = w.controller(identity="replica-b")
    w.clock.advance(9 * 60)
    acted = [a.tick(), b.tick()]
    assert acted == [True, False]
    assert w.version() == 2 and len(w.rotations()) == 1
    # a dies (stops ticking): b takes over after the lease expires, and the next window rotates once.
    for _ in range(10):
        w.clock.advance(60)
        b.tick()
    assert w.version() == 3 and len(w.rotations()) == 2
    assert w.rotations()[-1].actor == w.rotations()[0].actor  # both are the controller actor


# --------------------------------------------------------------------------------------------------- resume


def test_a_run_left_half_done_by_a_dead_leader_is_adopted_and_finished_once() -> None:
    w = World()
    placed = w.scope.placed["api-token"]
    c0 = w.controller()
    deps, _ = c0._deps(placed)
    run = wf.start(w.kv, placed.vault, secret="api-token", run_id="run-dead", trigger="manual", reason="crash",
                   now=w.clock.now())
    while run.stage != "tested":  # staged and tested (one step: the random rotator has no target); then it "dies"
        run = wf.advance(run, deps)
    assert run.stage == "tested" and w.version() == 1
    c = w.controller()
    c.tick()
    final = runs.load(w.kv, placed.vault)
    assert final is not None and final.run_id == "run-dead" and final.succeeded
    assert w.version() == 2 and len(w.rotations()) == 1


def test_a_run_record_that_does_not_parse_blocks_its_secret_only() -> None:
    """A record a newer release wrote (a field this one does not know) or a damaged one: the other secrets' runs
    are adopted and finished all the same, and the tick does not fail."""
    w = World(("token-a", "token-b"))
    bad, good = w.scope.placed["token-a"], w.scope.placed["token-b"]
    c0 = w.controller()
    deps, _ = c0._deps(good)
    run = wf.start(w.kv, good.vault, secret="token-b", run_id="run-b", trigger="manual", reason="left half done",
                   now=w.clock.now())
    run = wf.advance(run, deps)
    stored = w.kv.read(MOUNT, runs.run_path(bad.vault))
    record = {"run_id": "run-a", "from_a_newer_release": True}
    w.kv.write(MOUNT, runs.run_path(bad.vault), {"run": json.dumps(record)}, cas=stored.version if stored else 0)
    with pytest.raises(runs.RunUnreadable, match="from_a_newer_release"):
        runs.load(w.kv, bad.vault)
    c = w.controller()
    c.tick()
    final = runs.load(w.kv, good.vault)
    assert final is not None and final.run_id == "run-b" and final.succeeded and w.version("token-b") == 2
    assert any("cannot read a run record" in line and "token-a" in line for line in w.log.lines)
    assert not any("tick failed" in line for line in w.log.lines)


def test_an_unreadable_record_after_an_outage_drops_that_run_only() -> None:
    """The answer to a save is lost, and the record read back does not parse (a newer release took it over): the
    run is given up as another executor's; the next ticks go on."""
    from chamberlain.authority.errors import AuthorityUnavailable
    from chamberlain.intent.paths import RUNS_PREFIX
    from chamberlain.triggers import manual

    w = World(("api-token", "other"), policy={"type": "static", "failureStrategy": "retry"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    original, hit = w.kv.write, []

    def write(mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        stage = json.loads(data.get("run", "{}")).get("stage") if path.startswith(RUNS_PREFIX) else None
        if stage == "propagated" and not hit:  # the first save after promote
            hit.append(1)
            original(mount, path, {"run": json.dumps({"run_id": "x", "from_a_newer_release": 1})}, cas)
            raise AuthorityUnavailable("connection reset")
        return original(mount, path, data, cas)

    w.kv.write = write  # type: ignore[method-assign]
    q.put(manual("api-token", "lost answer", w.clock.now()))
    c.tick()
    assert hit and c.outages == 1
    for _ in range(2):
        c.tick()
    assert c.outages == 0 and "api-token" not in c.state.active
    assert any("taken over" in line for line in w.log.lines)


def test_a_join_that_cannot_read_the_record_ends_its_request_and_frees_the_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chamberlain.triggers import manual

    w = World()
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    real_load, loads = runs.load, []

    def start(*args: Any, **kw: Any) -> runs.RotationRun:
        raise runs.RunActive("held by another run")

    def load(kv: Any, secret: Any) -> runs.RotationRun | None:
        loads.append(1)
        if len(loads) >= 2:  # the join's read
            raise runs.RunUnreadable("does not parse")
        return real_load(kv, secret)

    monkeypatch.setattr(wf, "start", start)
    monkeypatch.setattr(runs, "load", load)
    q.put(manual("api-token", "first", w.clock.now()))
    c.tick()
    assert [r.secret for r in q.in_flight()] == [], "the secret's slot is free again"
    assert any("cannot start a rotation" in line and "RunUnreadable" in line for line in w.log.lines)


# --------------------------------------------------------------------------------------------------- triggers


def test_annotation_trigger_rotates_and_the_annotation_is_removed() -> None:
    w = World(policy={"type": "static", "failureStrategy": "hold"}, platform=LIMITED)
    from chamberlain.triggers import AnnotationTrigger

    q = MemoryQueue()
    w.kube.add_custom_object(CustomResource(GROUP, VERSION, "secretintents"), {
        "metadata": {"name": "api-token", "namespace": NS, "annotations": {wk.ANNOTATION_ROTATE: "pentest finding"}}})
    w.clock.advance(120)  # past the trigger rate limit
    c = w.controller(queue=q, annotations=AnnotationTrigger(w.kube, q, w.clock, NS))
    c.tick()
    assert w.version() == 2 and w.rotations()[-1].reason == "pentest finding"
    si = CustomResource(GROUP, VERSION, "secretintents")
    obj = w.kube.get_custom_object(si, NS, "api-token")
    assert obj is not None and wk.ANNOTATION_ROTATE not in (obj["metadata"].get("annotations") or {})
    assert obj["metadata"]["annotations"]["chamberlain.dev/rotate-handled"].startswith("sha256:")
    c.tick()
    assert w.version() == 2  # no second run from the same annotation
    # GitOps re-applies the same value, again and again, long after: nothing more happens
    for _ in range(3):
        w.clock.advance(600)
        w.kube.patch_custom_object_annotations(si, NS, "api-token", {wk.ANNOTATION_ROTATE: "pentest finding"})
        c.tick()
    assert w.version() == 2
    # a fresh controller (a restart, or another leader) remembers it too: the record is on the object
    w.controller(queue=MemoryQueue(), annotations=AnnotationTrigger(w.kube, MemoryQueue(), w.clock, NS)).tick()
    assert w.version() == 2
    # a new value acts once
    w.kube.patch_custom_object_annotations(si, NS, "api-token", {wk.ANNOTATION_ROTATE: "second finding"})
    c.tick()
    c.tick()
    assert w.version() == 3 and w.rotations()[-1].reason == "second finding"


def test_the_time_trigger_never_acts_on_a_ttl_below_the_platform_floor() -> None:
    floor = PLATFORM.model_copy(update={"spec": PLATFORM.spec.model_copy(
        update={"limits": Limits.model_validate({"minimumTtl": "1h", "triggerInterval": "0s"})})})
    w = World(platform=floor)  # the secret's policy in force: ttl 10m, rotateBefore 2m
    c = w.controller()
    w.clock.advance(9 * 60)  # due under its own ttl
    c.tick()
    assert w.version() == 1 and any("ttl below the platform floor" in line for line in w.log.lines)
    w.clock.advance(60 * 60)  # due under the floor
    c.tick()
    assert w.version() == 2


def test_an_annotation_inside_the_rate_limit_is_refused_once_and_recorded() -> None:
    w = World(policy={"type": "static", "failureStrategy": "hold"}, platform=LIMITED)
    from chamberlain.triggers import AnnotationTrigger

    q = MemoryQueue()
    c = w.controller(queue=q, annotations=AnnotationTrigger(w.kube, q, w.clock, NS))
    q.put(manual("api-token", "a rotation just before", w.clock.now()))
    c.tick()
    assert w.version() == 2
    si = CustomResource(GROUP, VERSION, "secretintents")
    w.kube.add_custom_object(si, {
        "metadata": {"name": "api-token", "namespace": NS, "annotations": {wk.ANNOTATION_ROTATE: "too soon"}}})
    c.tick()
    obj = w.kube.get_custom_object(si, NS, "api-token")
    assert obj is not None and w.version() == 2
    assert obj["metadata"]["annotations"]["chamberlain.dev/rotate-result"].startswith("refused: api-token: rate")
    w.clock.advance(600)
    w.kube.patch_custom_object_annotations(si, NS, "api-token", {wk.ANNOTATION_ROTATE: "too soon"})
    c.tick()
    assert w.version() == 2  # that value was refused; it does not come back with a re-apply


def test_webhook_on_a_follower_is_persisted_and_the_leader_rotates_once_replay_is_401() -> None:
    """Two replicas behind one Service share one cluster: the follower persists (202), the leader acts at its
    next tick, a replay to either replica is refused, and a new leader after a failover finds nothing to redo."""
    w = World(policy={"type": "static", "failureStrategy": "hold"}, platform=LIMITED)
    w.clock.advance(120)  # past the trigger rate limit since the value was created
    key = WebhookKey(b"k" * 32)
    leader = w.controller(identity="a", requests=RunObjectStore(w.kube, NS))
    follower = w.controller(identity="b", requests=RunObjectStore(w.kube, NS))
    leader.tick()
    follower.tick()
    body = json.dumps({"secret": "api-token", "reason": "ci"}).encode()
    headers = sign(body, key, w.clock.now())
    answer = ControllerWebhook(follower, key).handle(headers, body)
    assert answer.status == HTTPStatus.ACCEPTED and answer.body["outcome"] == "persisted"
    assert ControllerWebhook(follower, key).handle(headers, body).status == HTTPStatus.UNAUTHORIZED  # replay
    assert ControllerWebhook(leader, key).handle(headers, body).status == HTTPStatus.UNAUTHORIZED  # replay too
    bad = dict(headers, **{"X-Chamberlain-Signature": "sha256=" + "0" * 64})
    assert ControllerWebhook(leader, key).handle(bad, body).status == HTTPStatus.UNAUTHORIZED
    leader.tick()
    assert w.version() == 2 and w.rotations()[-1].reason == "ci"
    run = w.rotations()[-1].run
    assert run == answer.body["request"]  # the persisted request's object is the run's RotationRun
    obj = w.kube.get_custom_object(CustomResource(GROUP, VERSION, "rotationruns"), NS, run)
    assert obj is not None and obj["status"]["phase"] in ("done", "revoked")
    leader.tick()
    # failover: a fresh replica (new process, empty memory) on the same cluster redoes nothing
    w.clock.advance(600)
    fresh = w.controller(identity="c", requests=RunObjectStore(w.kube, NS))
    fresh.tick()
    fresh.tick()
    assert w.version() == 2 and fresh.is_leader
    assert ControllerWebhook(fresh, key).handle(headers, body).status == HTTPStatus.UNAUTHORIZED  # stale now


def _pair_with_a_request_store(w: World) -> tuple[Controller, Controller]:
    """Replicas a (the leader) and b (a follower) sharing the persisted requests, each ticked once."""
    leader = w.controller(identity="a", requests=RunObjectStore(w.kube, NS))
    follower = w.controller(identity="b", requests=RunObjectStore(w.kube, NS))
    leader.tick()
    follower.tick()
    return leader, follower


def test_a_request_persisted_by_a_follower_survives_the_leaders_death() -> None:
    w = World(policy={"type": "static", "failureStrategy": "hold"}, platform=LIMITED)
    w.clock.advance(120)
    key = WebhookKey(b"k" * 32)
    _, follower = _pair_with_a_request_store(w)
    body = json.dumps({"secret": "api-token", "reason": "leaked", "id": "evt-9"}).encode()
    assert ControllerWebhook(follower, key).handle(sign(body, key, w.clock.now()), body).status == 202
    # the leader dies before its next tick; its lease expires and the follower takes over
    w.clock.advance(30)
    follower.tick()
    assert follower.is_leader and w.version() == 2 and w.rotations()[-1].reason == "leaked"
    # the sender retries with the same id (a new signature): a duplicate, nothing more
    again = ControllerWebhook(follower, key).handle(sign(body, key, w.clock.now()), body)
    assert again.status == HTTPStatus.OK and again.body["outcome"] == "duplicate"
    follower.tick()
    assert w.version() == 2


def test_triggers_are_rate_limited_per_secret_with_a_clear_refusal() -> None:
    w = World(policy={"type": "static", "failureStrategy": "hold"}, platform=LIMITED)
    q = MemoryQueue()
    c = w.controller(queue=q, requests=RunObjectStore(w.kube, NS))
    q.put(manual("api-token", "first", w.clock.now()))
    c.tick()
    assert w.version() == 2
    w.clock.advance(20)
    q.put(manual("api-token", "too soon", w.clock.now()))
    c.tick()
    assert w.version() == 2 and any("rate limited" in line for line in w.log.lines)
    key = WebhookKey(b"k" * 32)
    body = json.dumps({"secret": "api-token", "reason": "x"}).encode()
    answer = ControllerWebhook(c, key).handle(sign(body, key, w.clock.now()), body)
    assert answer.status == HTTPStatus.TOO_MANY_REQUESTS and answer.headers["Retry-After"] == "41"
    assert "rate limited" in answer.body["error"] and "api-token" in answer.body["error"]
    w.clock.advance(41)
    q.put(manual("api-token", "now allowed", w.clock.now()))
    c.tick()
    assert w.version() == 3
    # after the interval, a webhook request runs
    w.clock.advance(61)
    ok = ControllerWebhook(c, key).handle(sign(body, key, w.clock.now()), body)
    assert ok.status == HTTPStatus.OK
    c.tick()
    assert w.version() == 4


def test_a_held_secret_is_not_rotated_by_any_trigger() -> None:
    w = World()
    w.kv.update_custom_metadata(MOUNT, w.scope.placed["api-token"].vault.path, {"held": "true"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    w.clock.advance(9 * 60)
    from chamberlain.triggers import manual

    q.put(manual("api-token", "try", w.clock.now()))
    c.tick()
    assert w.version() == 1 and any("held" in line for line in w.log.lines)


# --------------------------------------------------------------------------------------------------- outputs


def test_metrics_runs_events_and_logs_carry_names_never_values() -> None:
    w = World(("api-token", "other-token"))
    metrics = ControllerMetrics()
    c = w.controller(metrics=metrics)
    w.clock.advance(9 * 60)
    c.tick()
    text = metrics.exposition().decode()
    assert 'chamberlain_rotations_total{result="ok",secret="api-token",trigger="time"} 1.0' in text
    assert "chamberlain_secret_next_due_timestamp_seconds" in text and "chamberlain_secret_age_seconds" in text
    assert "chamberlain_propagation_latency_seconds_count 2.0" in text
    assert "chamberlain_rotation_run_duration_seconds" in text
    objs = {k[-1]: v for k, v in w.kube.custom_objects.items() if k[2] == "rotationruns"}
    assert len(objs) == 2 and all(o["status"]["phase"] in ("done", "revoked") for o in objs.values())
    assert any(e for e in w.kube.events)
    values = [v for n in ("api-token", "other-token")
              for version in (1, 2)
              for v in (w.kv.read(MOUNT, w.scope.placed[n].vault.path, version) or _none()).data.values()]
    assert any(CANARY in v for v in values)
    outputs = text + "\n".join(w.log.lines) + json.dumps(objs, default=str) + repr(w.kube.events)
    for v in values:
        assert v not in outputs


def _none() -> Any:
    pytest.fail("missing version")


# --------------------------------------------------------------------------------------------------- outages


def test_a_request_taken_while_vault_is_down_survives_the_outage() -> None:
    w = World(policy={"type": "static", "failureStrategy": "hold"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    from chamberlain.triggers import manual

    q.put(manual("api-token", "during outage", w.clock.now()))
    w.kv.down = True
    c.tick()
    assert c.outages == 1 and c.pause(1.0) >= 1.0
    w.kv.down = False
    c.tick()
    assert c.outages == 0 and w.version() == 2 and w.rotations()[-1].reason == "during outage"


def test_hold_after_an_outage_of_two_ticks_still_holds() -> None:
    w = World(policy={"type": "event-based", "revokeOld": True, "maxOverlap": "1h", "failureStrategy": "hold"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    from chamberlain.triggers import manual

    q.put(manual("api-token", "x", w.clock.now()))
    c.tick()  # promoted, propagated, restarted; now waiting for maxOverlap
    run = runs.load(w.kv, w.scope.placed["api-token"].vault)
    assert run is not None and run.stage == "revoke-wait"
    w.clock.advance(3600)
    w.kv.down = True
    c.tick()  # the outage interrupts the run
    c.tick()  # still down: the hold cannot be recorded yet
    w.kv.down = False
    c.tick()
    run = runs.load(w.kv, w.scope.placed["api-token"].vault)
    assert run is not None and run.stage == "held" and "authority unavailable" in (run.last_error or "")
    meta = w.kv.read_metadata(MOUNT, w.scope.placed["api-token"].vault.path)
    assert meta is not None and meta.custom.get("held") == "true"


def test_a_lost_answer_to_the_first_save_after_promote_resumes_from_the_tested_revision() -> None:
    """The random rotator has no target: a run is drawn and tested, then promoted in the same call; the promote is
    saved with propagate's result (workflow.saved_with_the_next_step). When the answer to that save is lost (the
    write landed), the controller must hold the tested revision, so the record one revision ahead of it is
    recognised as its own, not taken for another executor's."""
    from chamberlain.authority.errors import AuthorityUnavailable
    from chamberlain.intent.paths import RUNS_PREFIX
    from chamberlain.triggers import manual

    w = World(policy={"type": "static", "failureStrategy": "retry"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    original, lost = w.kv.write, []

    def write(mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        version = original(mount, path, data, cas)
        stage = json.loads(data.get("run", "{}")).get("stage") if path.startswith(RUNS_PREFIX) else None
        if stage == "propagated" and not lost:
            lost.append(version)
            raise AuthorityUnavailable("connection reset after the write")
        return version

    w.kv.write = write  # type: ignore[method-assign]
    q.put(manual("api-token", "answer lost", w.clock.now()))
    c.tick()
    assert c.outages == 1 and lost and w.version() == 2
    c.tick()
    assert c.outages == 0 and w.version() == 2 and [e.reason for e in w.rotations()][-1] == "answer lost"
    assert not any("taken over" in line for line in w.log.lines)
    assert any("re-read after an unanswered write" in line for line in w.log.lines)


def test_a_lost_answer_to_a_failed_attempts_save_then_a_retry_that_succeeds_is_still_recognised() -> None:
    """Review of the promote saved with the next step: propagate fails (ESO slow), its failed attempt is saved, the
    answer is lost. Next tick propagate succeeds: the executor lived through an outage, so it saves at once and meets
    its own record one revision ahead (recognised), instead of clearing the outage unsaved and giving the run up as
    another executor's at its next save, with the workloads rolled and the run stranded."""
    from chamberlain.authority.errors import AuthorityUnavailable
    from chamberlain.intent.paths import RUNS_PREFIX
    from chamberlain.kube.api import KubeSecret
    from chamberlain.triggers import manual

    w = World(policy={"type": "static", "failureStrategy": "retry"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    eso_down = [True]
    original_annotate = type(w.kube).annotate_external_secret

    def annotate(namespace: str, name: str, annotations: Any) -> None:
        if eso_down[0]:  # the poke lands, the Secret is not refreshed yet
            return super(type(w.kube), w.kube).annotate_external_secret(namespace, name, annotations)
        return original_annotate(w.kube, namespace, name, annotations)

    w.kube.annotate_external_secret = annotate  # type: ignore[method-assign]
    original, lost = w.kv.write, []

    def write(mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        version = original(mount, path, data, cas)
        body = json.loads(data.get("run", "{}")) if path.startswith(RUNS_PREFIX) else {}
        if body.get("stage") == "promoted" and body.get("attempts") == 1 and not lost:
            lost.append(version)  # the failed attempt's save landed; its answer is lost
            raise AuthorityUnavailable("connection reset after the write")
        return version

    w.kv.write = write  # type: ignore[method-assign]
    q.put(manual("api-token", "slow eso", w.clock.now()))
    c.tick()
    assert lost and c.outages == 1 and w.version() == 2
    meta = w.kv.read_metadata(MOUNT, w.scope.placed["api-token"].vault.path)
    assert meta is not None  # ESO catches up on its own refresh
    w.kube.secrets[("shop", "api-token")] = KubeSecret(
        "shop", "api-token", {"v": "materialized"},
        annotations={wk.ANNOTATION_VERSION_MARKER: meta.custom.get(wk.VALUE_MARKER, "")})
    eso_down[0] = False
    for _ in range(3):
        c.tick()
        w.clock.advance(60)
    record = runs.load(w.kv, w.scope.placed["api-token"].vault)
    assert not any("taken over" in line for line in w.log.lines), "own write given up as another executor's"
    assert any("re-read after an unanswered write" in line for line in w.log.lines)
    assert record is not None and record.finished and record.ledger_seq is not None
    assert [e.reason for e in w.rotations()][-1] == "slow eso"


def test_derived_and_config_intents_are_out_of_the_controller_scope() -> None:
    derived = SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": "db-app"},
        "spec": {"owner": "data", "purpose": "t", "classification": "derived",
                 "source": {"publication": {"namespace": "databases", "secretName": "db-app", "keys": ["password"]}},
                 "rotation": {"type": "event-based", "failureStrategy": "alert"}}})
    scope = scope_of(PLATFORM, {"db-app": derived, "api-token": intent("api-token")}, "dev", "dev1")
    assert list(scope.placed) == ["api-token"]


def test_a_parallel_batch_rotates_each_secret_once_restarts_once_and_chains_the_ledger() -> None:
    names = tuple(f"token-{i}" for i in range(24))
    w = World(names)
    c = w.controller(workers=6)
    w.clock.advance(9 * 60)
    c.tick()
    assert all(w.version(n) == 2 for n in names)
    assert w.kube.workload_patches == [("Deployment", "shop", "api")]
    assert len(w.rotations()) == 24 and LedgerReader(w.kv, MOUNT).verify().ok
    runs_published = [k for k in w.kube.custom_objects if k[2] == "rotationruns"]
    assert len(runs_published) == 24


def test_load_scope_keeps_the_placed_runtime_intents_and_the_admins_they_name() -> None:
    from chamberlain.service.controller import load_scope
    from tests.conftest import EXAMPLES

    scope = load_scope(EXAMPLES / "acme", "dev", "dev1")
    assert "grafana-admin" in scope.placed and "payments-db" in scope.placed
    assert "orders-db-app" not in scope.placed  # derived: its producer publishes it
    assert "pg-payments-admin" in scope.intents  # the admin login the payments-db rotator needs
    assert all(p.vault.mount == "secret" for p in scope.placed.values())


def test_load_scope_reports_a_repository_with_findings_like_every_command(tmp_path: Any) -> None:
    import shutil

    from chamberlain.errors import ChamberlainError
    from chamberlain.service.controller import load_scope
    from tests.conftest import EXAMPLES

    shutil.copytree(EXAMPLES / "acme", tmp_path / "repo")
    f = tmp_path / "repo" / "intents" / "observability.yaml"
    f.write_text(f.read_text().replace("owner: team-observability", "owner: Team_Bad"))
    with pytest.raises(ChamberlainError, match="findings; run `chamberlain validate"):
        load_scope(tmp_path / "repo", "dev", "dev1")


def test_parallel_starts_share_one_restart_wave_so_a_shared_workload_rolls_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs starting on two worker threads must restart through one wave. A wave constructor slowed down by a
    barrier (both threads inside it at once, if the code lets them) makes a lazily built, unlocked wave come out
    twice; the shared workload would then roll once per wave."""
    import contextlib
    import threading

    from chamberlain.controller.batch import RestartWave
    from chamberlain.triggers import manual

    built: list[object] = []
    both_inside = threading.Barrier(2, timeout=2.0)
    original = RestartWave.__init__

    def slow_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        built.append(self)
        with contextlib.suppress(threading.BrokenBarrierError):  # built once: nobody to wait for
            both_inside.wait()

    monkeypatch.setattr(RestartWave, "__init__", slow_init)
    names = ("token-a", "token-b")
    w = World(names, policy={"type": "static", "failureStrategy": "hold"})
    q = MemoryQueue()
    c = w.controller(queue=q, workers=2)
    for n in names:
        q.put(manual(n, "parallel starts", w.clock.now()))
    c.tick()
    assert all(w.version(n) == 2 for n in names)
    assert len(built) == 1, "one restart wave for the controller"
    assert w.kube.workload_patches == [("Deployment", "shop", "api")]


class AdminLoginRotator:
    """Stands in for the postgres rotator: new token values, and a record of *whether* each step got the admin
    login (never the login itself)."""

    name = "postgres"

    def __init__(self, admin: Mapping[str, str]) -> None:
        self.admin = version_marker("admin", admin)  # a fingerprint: this rotator must hold no value either
        self.logins: list[tuple[str, bool]] = []
        self.count = 0

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        self.logins.append(("create_pending", ctx.admin is not None))
        self.count += 1
        return PendingVersion({**ctx.current, "token": f"{CANARY}-new-{self.count}"}, frozenset({"token"}), {})

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        self.logins.append(("set_at_target", version_marker("admin", ctx.admin or {}) == self.admin))

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        self.logins.append(("test", version_marker("admin", ctx.admin or {}) == self.admin))

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        self.logins.append(("revoke_old", version_marker("admin", ctx.admin or {}) == self.admin))


def test_the_controller_holds_no_admin_login_between_ticks_while_a_run_is_active() -> None:
    from chamberlain.rotation.rotators import Registry
    from chamberlain.triggers import manual
    from tests.unit.test_rotation_workflow import ADMIN, strings_reachable

    policy = {"type": "event-based", "revokeOld": True, "maxOverlap": "1h", "failureStrategy": "hold"}
    w = World(("app-db", "pg-admin"), policy=policy)
    w.kv.write(MOUNT, w.scope.placed["pg-admin"].vault.path, ADMIN, cas=1)
    target = {"postgres": {"host": "127.0.0.1", "role": "app", "adminIntent": "pg-admin"}}
    w.scope = scope_of(PLATFORM, {**w.scope.intents, "app-db": intent("app-db", policy=policy, target=target)},
                       "dev", "dev1")
    rotator = AdminLoginRotator(ADMIN)
    q = MemoryQueue()
    c = w.controller(queue=q, registry=Registry({"postgres": rotator}))
    q.put(manual("app-db", "admin drill", w.clock.now()))
    c.tick()  # staged ... restarted; then the run waits maxOverlap before the revoke, and stays active
    assert c.active["app-db"].run.stage == "revoke-wait"
    assert rotator.logins == [("create_pending", False), ("set_at_target", True), ("test", True)]
    assert ADMIN["password"] not in strings_reachable(c, outside=(FakeKV,)), "an admin value outlived its step"
    w.clock.advance(3600)
    c.tick()
    assert not c.active and c.finished[-1].stage == "revoked"
    assert rotator.logins[-1] == ("revoke_old", True)
    assert ADMIN["password"] not in strings_reachable(c, outside=(FakeKV,))


def test_a_privileged_postgres_target_fails_its_run_with_an_audit_record() -> None:
    """The real PostgreSQL rotator over a fake connection that reports the target role as a superuser: the run
    fails before any ALTER ROLE, and the ledger records why (no value)."""
    from chamberlain.rotation.rotators import Registry
    from chamberlain.rotation.rotators.postgres import PostgresRotator
    from tests.unit.test_rotation_workflow import ADMIN
    from tests.unit.test_rotator_postgres_trust import FakeConn

    policy = {"type": "event-based", "failureStrategy": "alert"}
    w = World(("app-db", "pg-admin"), policy=policy)
    w.kv.write(MOUNT, w.scope.placed["pg-admin"].vault.path, ADMIN, cas=1)
    app = SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": "app-db"},
        "spec": {"owner": "shop", "purpose": "tests", "classification": "runtime",
                 "source": {"generate": {"username": {"type": "fixed-name", "name": "app"},
                                         "password": {"type": "password"}}},
                 "rotation": policy, "consumers": [{"namespace": "shop", "secretName": "app-db"}],
                 "target": {"postgres": {"host": "db.example", "role": "app", "adminIntent": "pg-admin",
                                         "tls": {"mode": "disable"}}}},
    })
    w.scope = scope_of(PLATFORM, {**w.scope.intents, "app-db": app}, "dev", "dev1")
    conn = FakeConn(superuser=True)
    q = MemoryQueue()
    c = w.controller(queue=q, registry=Registry({"postgres": PostgresRotator(connect=lambda **_: conn)}))
    q.put(manual("app-db", "rotate the superuser", w.clock.now()))
    c.tick()
    run = c.finished[-1]
    assert run.stage == "failed" and "privileged" in (run.last_error or "")
    assert not any("ALTER ROLE" in statement for statement in conn.statements)
    entry = [e for e in LedgerReader(w.kv, MOUNT).entries() if e.secret == "app-db"][-1]
    assert entry.result != "ok" and "privileged" in json.dumps(entry.model_dump())
    assert ADMIN["password"] not in json.dumps(entry.model_dump())
    assert w.version("app-db") == 1
    # one Warning Event on the run, the alert's (once per failure streak, as the README says), not a second one
    # for the run's end
    failed = [e for e in w.kube.events if e.reason == "RotationFailed" and e.involved.get("name") == run.run_id]
    assert len(failed) == 1, failed


# --------------------------------------------------------------------------------------------------- RotationRun


def test_a_condition_keeps_its_transition_time_until_its_status_changes_even_across_a_restart() -> None:
    from chamberlain.controller import resources
    from chamberlain.rotation.run import RotationRun

    kube = FakeKube()
    run = RotationRun(run_id="run-t", secret="s", path="dev/shop/s", mount=MOUNT, trigger="manual", reason="x",
                      stage="staged", started_at=T0, updated_at=T0, previous_version=1, staging_base=0)

    def at(minutes: int, **update: Any) -> RotationRun:
        return run.model_copy(update={"updated_at": T0 + timedelta(minutes=minutes), **update})

    def times() -> dict[str, str]:
        obj = kube.get_custom_object(CustomResource(resources.GROUP, resources.VERSION, resources.PLURAL), NS, "run-t")
        assert obj is not None
        return {c["type"]: c["lastTransitionTime"] for c in obj["status"]["conditions"]}

    publisher = RunPublisher(kube, NS)
    assert publisher.publish(run)
    first = times()
    assert set(first.values()) == {"2030-01-01T12:00:00Z"}
    assert publisher.publish(at(1, stage="tested", attempts=0))
    assert times() == first, "no condition changed status: no transition"
    assert publisher.publish(at(2, stage="promoted", current_version=2))
    assert times() == {**first, "Promoted": "2030-01-01T12:02:00Z"}
    restarted = RunPublisher(kube, NS)  # a new process adopts the run: it reads the published conditions back
    assert restarted.publish(at(3, stage="propagated", current_version=2))
    assert times() == {**first, "Promoted": "2030-01-01T12:02:00Z", "Propagated": "2030-01-01T12:03:00Z"}
    assert restarted.publish(at(4, stage="done", current_version=2, finished_at=T0, ledger_seq=1))
    assert times() == {**first, "Ready": "2030-01-01T12:04:00Z", "Promoted": "2030-01-01T12:02:00Z",
                       "Propagated": "2030-01-01T12:03:00Z"}


class _GatedRunObjects:
    """The world's FakeKube for a publisher, with RotationRun writes waiting for ``gate`` (a slow API server)."""

    def __init__(self, kube: FakeKube, gate: Any) -> None:
        self.kube, self.gate = kube, gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)

    def create_custom_object(self, *args: Any) -> Any:
        self.gate.wait(10)
        return self.kube.create_custom_object(*args)

    def patch_custom_object_status(self, *args: Any) -> Any:
        self.gate.wait(10)
        return self.kube.patch_custom_object_status(*args)


def test_a_batch_does_not_wait_for_a_slow_api_server_and_every_run_object_ends_final() -> None:
    import threading

    from chamberlain.controller.resources import RUN_OBJECTS, BackgroundPublisher

    names = tuple(f"token-{i}" for i in range(5))
    w = World(names)
    gate = threading.Event()
    publisher = BackgroundPublisher(RunPublisher(_GatedRunObjects(w.kube, gate), NS), pace=0.0)
    c = w.controller(publisher=publisher, workers=4)
    w.clock.advance(9 * 60)
    c.tick()  # the whole batch, while the API server answers no RotationRun write
    assert all(w.version(n) == 2 for n in names) and len(c.finished) == 5
    assert w.kube.list_custom_objects(RUN_OBJECTS, NS) == [], "nothing published yet: the tick did not wait"
    gate.set()
    assert publisher.flush(10)
    objects = {o["metadata"]["name"]: o for o in w.kube.list_custom_objects(RUN_OBJECTS, NS)}
    assert {o["spec"]["secret"] for o in objects.values()} == set(names)
    assert all(objects[r.run_id]["status"]["phase"] == r.stage for r in c.finished)
    assert all(objects[r.run_id]["status"]["ledgerSeq"] == r.ledger_seq for r in c.finished)
    assert publisher.close(1) and publisher.failures == 0


def test_serve_publishes_what_waits_before_it_gives_up_the_lease() -> None:
    import threading

    from chamberlain.controller.resources import RUN_OBJECTS, BackgroundPublisher
    from chamberlain.triggers import manual

    w = World()
    gate = threading.Event()
    publisher = BackgroundPublisher(RunPublisher(_GatedRunObjects(w.kube, gate), NS), pace=0.0)
    q = MemoryQueue()
    c = w.controller(identity="a", queue=q, publisher=publisher)
    assert c.parts.elector is not None
    waiting_at_release: list[int] = []
    order: list[str] = []
    release, forget = c.parts.elector.release, publisher.forget_unfinished

    def recording_release() -> None:
        waiting_at_release.append(publisher.pending)
        order.append("release")
        release()

    def recording_forget() -> int:
        order.append("forget unfinished")
        return forget()

    c.parts.elector.release = recording_release  # type: ignore[method-assign]
    publisher.forget_unfinished = recording_forget  # type: ignore[method-assign]
    q.put(manual("api-token", "drill", w.clock.now()))
    stop = threading.Event()
    loop = threading.Thread(target=c.serve, args=(stop, 0.01))
    loop.start()
    deadline = time.monotonic() + 10
    while not c.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.finished and w.kube.list_custom_objects(RUN_OBJECTS, NS) == []
    stop.set()
    threading.Timer(0.2, gate.set).start()  # the API server answers again while serve drains
    loop.join(10)
    assert waiting_at_release == [0], "every state was sent before the Lease was given up"
    # unfinished runs' states are the next leader's: forgotten before the Lease goes (never sent after it)
    assert order == ["forget unfinished", "release"], order
    [obj] = w.kube.list_custom_objects(RUN_OBJECTS, NS)
    assert obj["status"]["phase"] == c.finished[0].stage
    assert publisher.close(1)


def test_a_graceful_stop_spends_the_publishers_drain_time_once_when_the_api_server_does_not_answer() -> None:
    """The loop waits up to ``drain`` for the RotationRun states before it gives the Lease up; the app's stop
    after it gave the same again: a stop that must fit Kubernetes' 30 s grace period took two drains."""
    from chamberlain.controller.app import ControllerApp
    from chamberlain.controller.resources import BackgroundPublisher, RunPublisher
    from chamberlain.triggers import manual

    w = World()
    never = threading.Event()
    publisher = BackgroundPublisher(RunPublisher(_GatedRunObjects(w.kube, never), NS), pace=0.0, drain=0.6)
    q = MemoryQueue()
    c = w.controller(identity="a", queue=q, publisher=publisher)
    app = ControllerApp(c, interval=0.01)
    q.put(manual("api-token", "drill", w.clock.now()))
    app.start()
    deadline = time.monotonic() + 10
    while not c.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.finished
    began = time.monotonic()
    app.stop()
    took = time.monotonic() - began
    never.set()  # the sends still waiting return (their states were dropped)
    assert c.drained_at_stop and 0.6 <= took < 1.1, took  # one drain (0.6 s), and no wait for the send in flight


def test_a_graceful_stop_gives_its_threads_one_timeout_together() -> None:
    """Two threads that do not end (a stuck loop, a stuck webhook): the stop waits ``timeout`` once, not per thread."""
    from chamberlain.controller.app import ControllerApp

    app = ControllerApp(World().controller(identity="a"), interval=0.01)
    never = threading.Event()
    stuck = [threading.Thread(target=never.wait, daemon=True) for _ in range(2)]
    for t in stuck:
        t.start()
    app._threads.extend(stuck)
    began = time.monotonic()
    app.stop(timeout=0.4)
    took = time.monotonic() - began
    never.set()
    assert 0.4 <= took < 0.7, took


# --------------------------------------------------------------------------------------------------- queue slots


def _unanswered_first_lease_write(w: World, on_loss: Any = None) -> list[str]:
    """Make the first run-record write applied but unanswered (a raft leader killed in between); ``on_loss`` runs
    then (a signal arriving while the request is in flight)."""
    from chamberlain.authority.errors import AuthorityUnavailable
    from chamberlain.intent.paths import RUNS_PREFIX

    real_write = w.kv.write
    lost: list[str] = []

    def write(mount: str, path: str, data: Mapping[str, str], cas: int) -> int:
        version = real_write(mount, path, data, cas)
        if path.startswith(RUNS_PREFIX) and not lost:
            lost.append(path)
            if on_loss is not None:
                on_loss()
            raise AuthorityUnavailable("connection reset after the write was applied")
        return version

    w.kv.write = write  # type: ignore[method-assign]
    return lost


def _limited(trigger_interval: str | None) -> Platform:
    return PLATFORM if trigger_interval is None else PLATFORM.model_copy(update={"spec": PLATFORM.spec.model_copy(
        update={"limits": Limits.model_validate({"triggerInterval": trigger_interval})})})


@pytest.mark.parametrize("trigger_interval", [None, "1h"])
def test_a_start_whose_lease_write_was_applied_but_unanswered_rotates_once(trigger_interval: str | None) -> None:
    """A raft leader killed between applying the run record and answering: the retried start must join that run
    (same run id), not find "another" run, drive it, and then rotate again for the same request. Nor may the
    trigger's rate limit refuse the retry because of the run the first try recorded."""
    w = World(policy={"type": "static", "failureStrategy": "hold"}, platform=_limited(trigger_interval))
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    lost = _unanswered_first_lease_write(w)
    q.put(manual("api-token", "compromise", w.clock.now()))
    c.tick()
    assert lost and c.outages == 1
    for _ in range(3):
        c.tick()
    assert w.version() == 2, "one request, one new version"
    assert [e.reason for e in w.rotations()] == ["compromise"]
    assert len({r.run_id for r in c.finished}) == len(c.finished) == 1
    assert q.pending() == [] and q.in_flight() == []


def test_an_unanswered_start_whose_run_was_adopted_and_finished_meanwhile_ends_its_request() -> None:
    """Leadership lost and regained while the request waited: the run was adopted and finished. The retry finds
    its own run finished and ends (no second completion, no second rotation)."""
    w = World(policy={"type": "static", "failureStrategy": "hold"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    _unanswered_first_lease_write(w)
    q.put(manual("api-token", "compromise", w.clock.now()))
    c.tick()
    c.state.adopted = False  # as after a change of leadership: the recorded run is adopted before the queue
    for _ in range(4):
        c.tick()
    assert w.version() == 2 and [e.reason for e in w.rotations()] == ["compromise"]
    assert [r.run_id for r in c.finished] == ["run-0000"]
    assert sum(1 for line in w.log.lines if json.loads(line)["event"] == "run finished") == 1
    assert q.pending() == [] and q.in_flight() == []


@pytest.mark.parametrize("arrives", ["while in flight", "after the outage"])
def test_a_signal_that_came_after_an_unanswered_start_gets_a_run_of_its_own(arrives: str) -> None:
    """A second compromise reported after the first run's start was written (but unanswered): that run may make
    its new value before the second report, so the second gets a rotation of its own, with its reason in the
    ledger; the first still rotates once."""
    w = World(policy={"type": "static", "failureStrategy": "hold"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    second = manual("api-token", "second report", w.clock.now() + timedelta(seconds=1))
    _unanswered_first_lease_write(w, (lambda: q.put(second)) if arrives == "while in flight" else None)
    q.put(manual("api-token", "first report", w.clock.now()))
    c.tick()
    assert c.outages == 1
    if arrives == "after the outage":
        q.put(second)
    for _ in range(5):
        c.tick()
    reasons = [e.reason for e in w.rotations()]
    assert w.version() == 3 and len(reasons) == 2 and reasons[0] == "first report" and "second report" in reasons[1]
    assert len({r.run_id for r in c.finished}) == len(c.finished) == 2
    assert q.pending() == [] and q.in_flight() == []


def test_a_time_request_whose_due_check_meets_an_outage_survives_it() -> None:
    from chamberlain.triggers import RotationRequest

    w = World()
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()  # the time trigger's first evaluation: nothing due yet
    c.set_evaluate_every(3600)  # no second evaluation during the test: only the queued request can rotate
    assert c.evaluate_every == 3600
    w.clock.advance(9 * 60)
    q.put(RotationRequest("api-token", "time", "window", w.clock.now(), "time:api-token:w1"))
    w.kv.down = True
    c.tick()  # the due check before the start cannot read the metadata
    w.kv.down = False
    assert c.outages == 1 and w.version() == 1
    c.tick()
    assert w.version() == 2 and q.in_flight() == [] and q.pending() == []


def test_a_replica_that_loses_the_lease_releases_the_queue_slots_of_its_runs() -> None:
    from chamberlain.triggers import manual

    w = World(policy={"type": "event-based", "revokeOld": True, "maxOverlap": "1h", "failureStrategy": "hold"})
    q = MemoryQueue()
    a = w.controller(identity="replica-a", queue=q)
    q.put(manual("api-token", "drill", w.clock.now()))
    a.tick()
    assert a.active["api-token"].run.stage == "revoke-wait" and len(q.in_flight()) == 1
    w.clock.advance(16)  # a stops renewing for a while; b takes the expired Lease
    assert LeaderElector(w.kube, NS, "chamberlain-controller", "replica-b", w.clock, 15).step()
    assert a.tick() is False and not a.active
    assert q.in_flight() == [], "a follower's queue slots are released (the new leader adopts the run)"
    q.put(manual("api-token", "after the takeover", w.clock.now()))
    assert q.take(timeout=0) is not None


# ------------------------------------------------------------------------------------- refusals are not outages


def test_a_refusal_on_one_secret_holds_no_other_secret() -> None:
    """A 403 while observing one run is that run's failure (its policy decides), not an authority outage that
    every other run in flight would be stopped for."""
    from chamberlain.authority.errors import Forbidden

    names = ("token-a", "token-b")
    w = World(names, policy={"type": "static", "failureStrategy": "hold"})
    q = MemoryQueue()
    c = w.controller(queue=q)
    for n in names:
        q.put(manual(n, "probe", w.clock.now()))
    real_read = w.kv.read
    path_a = w.scope.placed["token-a"].vault.path

    def read(mount: str, path: str, version: int | None = None) -> Any:
        if path == path_a and version is None:
            raise Forbidden(f"{mount}/{path}: permission denied (403)")
        return real_read(mount, path, version)

    w.kv.read = read  # type: ignore[method-assign]
    for _ in range(3):
        c.tick()
    assert c.outages == 0
    b = w.kv.read_metadata(MOUNT, w.scope.placed["token-b"].vault.path)
    assert b is not None and b.custom.get(wk.HELD) != "true" and w.version("token-b") == 2
    a = w.kv.read_metadata(MOUNT, path_a)
    assert a is not None and a.custom.get(wk.HELD) == "true", "token-a's own policy (hold) decided its refusal"


def test_a_rotator_bug_fails_its_run_and_never_stops_the_loop() -> None:
    """A plug-in raising a foreign exception fails its run (type only in the record: its text may quote values);
    the loop thread keeps ticking."""
    import threading

    from chamberlain.rotation.rotators import Registry

    class Broken:
        name = "random"

        def create_pending(self, ctx: RotationContext) -> PendingVersion:
            raise RuntimeError(f"plugin bug with {CANARY}")

        def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None: ...

        def test(self, ctx: RotationContext, pending: PendingVersion) -> None: ...

        def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None: ...

    w = World(("api-token",), policy={"type": "static", "failureStrategy": "retry"})
    q = MemoryQueue()
    c = w.controller(queue=q, registry=Registry({"random": Broken()}))  # type: ignore[dict-item]
    q.put(manual("api-token", "probe", w.clock.now()))
    stop = threading.Event()
    loop = threading.Thread(target=c.serve, args=(stop, 0.01), daemon=True)
    loop.start()
    try:
        for _ in range(200):
            if c.finished:
                break
            stop.wait(0.01)
        assert loop.is_alive()
        [run] = c.finished
        assert run.stage == "failed" and run.last_error is not None and "RuntimeError" in run.last_error
        assert CANARY not in run.last_error and CANARY not in "\n".join(w.log.lines)
    finally:
        stop.set()
        loop.join(5)


def test_keep_finished_zero_keeps_none() -> None:
    from chamberlain.controller.batch import RestartWave
    from chamberlain.controller.state import TickState

    state = TickState(RestartWave(FakeKube(), FakeClock(T0)))
    run = runs.RotationRun(run_id="r", secret="s", path="dev/shop/s", mount=MOUNT, trigger="manual", reason="x",
                           started_at=T0, updated_at=T0, previous_version=1, staging_base=0)
    for _ in range(3):
        state.finish(run, 0)
    assert state.finished == []
    for _ in range(3):
        state.finish(run, 2)
    assert len(state.finished) == 2


def test_a_run_taken_over_while_it_promotes_releases_its_queue_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose record another executor changed leaves this controller: its request ends, so later triggers of
    the secret are not held behind a run that is no longer ours."""
    from chamberlain.rotation import workflow
    from chamberlain.rotation.run import RunLost
    from chamberlain.triggers import manual

    w = World()
    q = MemoryQueue()
    c = w.controller(queue=q)
    real = workflow.advance
    calls: list[str] = []

    def lost_once(run: Any, deps: Any, **kw: Any) -> Any:
        calls.append(run.stage)
        if len(calls) == 1:
            raise RunLost("another executor advanced the record")
        return real(run, deps, **kw)

    monkeypatch.setattr(workflow, "advance", lost_once)
    q.put(manual("api-token", "drill", w.clock.now()))
    c.tick()
    assert calls and "api-token" not in c.active
    assert q.in_flight() == [], "the lost run's request still holds the secret's queue slot"
    q.put(manual("api-token", "again", w.clock.now()))
    assert q.take(), "a later trigger of the secret is taken"


# --------------------------------------------------------------------------------------------------- graceful stop


def _stage_of(w: World, name: str) -> runs.RotationRun:
    run = runs.load(w.kv, w.scope.placed[name].vault)
    assert run is not None
    return run


def _stages(w: World, names: tuple[str, ...]) -> set[str]:
    """The stages the run records hold ("" for a secret whose run was never opened)."""
    return {run.stage if (run := runs.load(w.kv, w.scope.placed[n].vault)) is not None else "" for n in names}


def _finish_with_the_next_leader(w: World, names: tuple[str, ...]) -> None:
    """Another replica takes over once the Lease is given up, adopts the runs and drives them to the end."""
    b = w.controller(identity="b", workers=4)
    for _ in range(3):
        b.tick()
    assert b.is_leader
    for n in names:
        run = _stage_of(w, n)
        assert run.succeeded and run.ledger_seq is not None, (n, run.stage)
        assert w.version(n) == 2, n
    assert len(w.rotations()) == len(names) and LedgerReader(w.kv, MOUNT).verify().ok


def test_a_stop_during_the_batch_ends_the_tick_between_run_steps_and_the_next_leader_finishes_it() -> None:
    """SIGTERM while a batch runs: the tick stops between steps instead of driving the batch to its end (a
    2,000-run batch outlasts Kubernetes' 30 s grace period), the Lease is released, and the next leader adopts
    every run and finishes it once, rolling the shared workload once."""
    names = tuple(f"token-{i}" for i in range(16))
    w = World(names)
    stop = threading.Event()
    a = w.controller(identity="a", workers=4)
    force_sync = w.kube.annotate_external_secret

    def sigterm_at_the_first_force_sync(namespace: str, name: str, annotations: Any) -> None:
        stop.set()
        force_sync(namespace, name, annotations)

    w.kube.annotate_external_secret = sigterm_at_the_first_force_sync  # type: ignore[method-assign]
    w.clock.advance(9 * 60)
    a.serve(stop, 0.0)  # one tick: the stop comes during it
    assert a.stopping() and not a.finished
    # opened runs stopped at promote (saved as tested until propagate's save); the later ones were never opened:
    # the time trigger is still due for the next leader
    stages = _stages(w, names)
    assert stages <= {"", "tested", "promoted"} and "" in stages, stages
    assert w.kube.workload_patches == [], "nothing rolled: the batch stopped before its restart pass"
    assert w.rotations() == []
    lease = w.kube.get_lease(NS, "chamberlain-controller")
    assert lease is not None and not lease.holder, "the Lease was given up at once"
    w.kube.annotate_external_secret = force_sync  # type: ignore[method-assign]
    _finish_with_the_next_leader(w, names)
    assert w.kube.workload_patches == [("Deployment", "shop", "api")]


def test_a_stop_during_the_restart_pass_lets_every_propagated_run_restart_so_each_workload_rolls_once() -> None:
    """Once the batch's restart pass has begun, its runs still take their restart step after the stop (a run
    resumed by the next leader is in another batch, under another token, and would roll the workload again);
    nothing after it: the ledger entries are the next leader's."""
    names = tuple(f"token-{i}" for i in range(16))
    w = World(names)
    stop = threading.Event()
    a = w.controller(identity="a", workers=4)
    roll = w.kube.patch_pod_template_annotations

    def sigterm_at_the_first_roll(*args: Any, **kwargs: Any) -> Any:
        stop.set()
        return roll(*args, **kwargs)

    w.kube.patch_pod_template_annotations = sigterm_at_the_first_roll  # type: ignore[method-assign]
    w.clock.advance(9 * 60)
    a.serve(stop, 0.0)
    # restarted (then at revoke-wait: the old version is revoked after maxOverlap), and none went further
    assert _stages(w, names) == {"revoke-wait"}
    assert len(w.rotations()) < len(names)
    assert w.kube.workload_patches == [("Deployment", "shop", "api")]
    _finish_with_the_next_leader(w, names)
    assert w.kube.workload_patches == [("Deployment", "shop", "api")], "rolled once across the two leaders"


def test_a_stop_cuts_a_consumer_wait_short_without_failing_the_run() -> None:
    """ESO does not sync (down): a run's propagate step waits up to --propagation-timeout (120 s by default). A
    stop ends the wait at its next look; the run stays at promoted with no failed attempt, and the next leader
    propagates it once ESO syncs."""
    w = World()
    stop = threading.Event()
    a = w.controller(identity="a")
    eso_sync = w.kube.annotate_external_secret
    looks: list[str] = []
    read = w.kube.get_secret_annotations

    def eso_down(namespace: str, name: str, annotations: Any) -> None:
        FakeKube.annotate_external_secret(w.kube, namespace, name, annotations)  # the annotation only: no sync

    def sigterm_while_waiting(namespace: str, name: str) -> Any:
        looks.append(name)
        stop.set()
        return read(namespace, name)

    w.kube.annotate_external_secret = eso_down  # type: ignore[method-assign]
    w.kube.get_secret_annotations = sigterm_while_waiting  # type: ignore[method-assign]
    w.clock.advance(9 * 60)
    a.serve(stop, 0.0)
    run = _stage_of(w, "api-token")
    assert looks == ["api-token"], "one look, then the wait ended (the fake clock would reach its timeout at once)"
    # promoted (the record says tested until propagate's save: a resume recognises the write by its marker)
    assert run.stage == "tested" and w.version() == 2 and run.attempts == 0 and run.last_error is None
    assert not any("PropagationIncomplete" in line for line in w.log.lines)
    w.kube.annotate_external_secret = eso_sync  # type: ignore[method-assign]
    w.kube.get_secret_annotations = read  # type: ignore[method-assign]
    _finish_with_the_next_leader(w, ("api-token",))


def _stopped_mid_run(w: World, a: Controller) -> None:
    """``a`` serves until its first force-sync, where a graceful stop arrives: the run is left promoted."""
    stop = threading.Event()

    def sigterm_at_the_force_sync(namespace: str, name: str, annotations: Any) -> None:
        stop.set()
        FakeKube.annotate_external_secret(w.kube, namespace, name, annotations)

    w.kube.annotate_external_secret = sigterm_at_the_force_sync  # type: ignore[method-assign]
    a.serve(stop, 0.0)
    del w.kube.annotate_external_secret  # ESO's own again
    assert _stage_of(w, "api-token").stage == "tested" and w.version() == 2, "promoted, then stopped"


@pytest.mark.parametrize("platform", [PLATFORM, LIMITED], ids=["no-interval", "trigger-interval"])
def test_an_annotation_whose_run_the_next_leader_adopted_rotates_once(platform: Platform) -> None:
    """The next leader adopts the stopped run, and its annotation poll finds the same annotation again. The request
    is the adopted run's own and ends with it; deferred behind it, it started a second rotation for one value
    once the run had ended (the adopted run outlasting the trigger interval, or no interval)."""
    from chamberlain.triggers import AnnotationTrigger

    w = World(platform=platform)
    w.clock.advance(120)
    intents = CustomResource(GROUP, VERSION, "secretintents")
    w.kube.add_custom_object(intents, {"metadata": {"name": "api-token", "namespace": NS,
                                                    "annotations": {wk.ANNOTATION_ROTATE: "leaked"}}})
    qa, qb = MemoryQueue(), MemoryQueue()
    _stopped_mid_run(w, w.controller(identity="a", queue=qa, annotations=AnnotationTrigger(w.kube, qa, w.clock, NS)))
    b = w.controller(identity="b", queue=qb, annotations=AnnotationTrigger(w.kube, qb, w.clock, NS))
    w.kube.annotate_external_secret = lambda namespace, name, annotations: FakeKube.annotate_external_secret(  # type: ignore[method-assign]
        w.kube, namespace, name, annotations)  # ESO slow: the adopted run outlasts the trigger interval
    for _ in range(3):
        w.clock.advance(30)
        b.tick()
    del w.kube.annotate_external_secret
    for _ in range(6):
        w.clock.advance(30)
        b.tick()
    assert [e.reason for e in w.rotations()] == ["leaked"] and w.version() == 2
    obj = w.kube.get_custom_object(intents, NS, "api-token")
    assert obj is not None and wk.ANNOTATION_ROTATE not in obj["metadata"].get("annotations", {})


def test_a_webhook_request_whose_run_the_next_leader_adopted_ends_with_it_once() -> None:
    """The run of a persisted webhook request (its RotationRun object ``rq-*``) is adopted by the next leader, whose
    poll of persisted requests also lists that object (its status not sent before the stop). The request is not
    queued again: one start, one finish, one Event."""
    from chamberlain.controller.app import ControllerWebhook

    w = World(platform=LIMITED)
    w.clock.advance(120)
    key = WebhookKey(b"k" * 32)
    a, follower = _pair_with_a_request_store(w)
    body = json.dumps({"secret": "api-token", "reason": "ci"}).encode()
    answer = ControllerWebhook(follower, key).handle(sign(body, key, w.clock.now()), body)
    assert answer.status == HTTPStatus.ACCEPTED
    request_id = answer.body["request"]
    _stopped_mid_run(w, a)
    runs_objects = CustomResource(GROUP, VERSION, "rotationruns")
    w.kube.patch_custom_object_status(runs_objects, NS, request_id, {"phase": None, "conditions": None})
    c = w.controller(identity="c", requests=RunObjectStore(w.kube, NS))
    for _ in range(4):
        w.clock.advance(1)
        c.tick()
    assert w.version() == 2 and len(w.rotations()) == 1
    finished = [line for line in w.log.lines if '"run finished"' in line]
    assert len(finished) == 1, finished
    assert [e.reason for e in w.kube.events].count("RotationSucceeded") == 1, w.kube.events


def test_a_stop_during_the_first_adoption_pass_ends_it_at_the_next_record() -> None:
    """A new leader reads every secret's run record once (10k reads at fleet scale); a stop ends the pass at the
    next record, and nothing is marked adopted (the next leader adopts)."""
    names = tuple(f"token-{i}" for i in range(8))
    w = World(names)
    stop = threading.Event()
    a = w.controller(identity="a")
    record_paths = {runs.run_path(w.scope.placed[n].vault) for n in names}
    reads: list[str] = []
    read = w.kv.read

    def sigterm_at_the_first_record(mount: str, path: str, version: int | None = None) -> Any:
        if path in record_paths:
            reads.append(path)
            stop.set()
        return read(mount, path, version)

    w.kv.read = sigterm_at_the_first_record  # type: ignore[method-assign]
    a.serve(stop, 0.0)
    assert len(reads) == 1 and not a.state.adopted
