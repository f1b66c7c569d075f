"""The controller in watch mode (``controller run --from-cluster``) reads its watches instead of listing: the rotate
annotation, the SecretIntent status facts and persisted webhook requests come from watches, periodic looks at
consumer Secrets are held to a budget, and the RotationRun history is listed only after runs finish. A
whole controller wired as ``controller run`` wires it, ticking every second over a fake cluster, stays under one API
request a second."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.authority.fake import FakeKV, FakeTransit
from chamberlain.clock import FakeClock
from chamberlain.controller.app import wire
from chamberlain.controller.history import RunHistory
from chamberlain.controller.metrics import ControllerMetrics
from chamberlain.controller.source import RESOURCES, ClusterSource, Reflector, Store
from chamberlain.controller.status import IntentStatus
from chamberlain.controller.watched import IntentObjects, WatchedAnnotations, WatchedRequests
from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key, marker_key
from chamberlain.kube.api import KubeSecret
from chamberlain.kube.fake import FakeKube
from chamberlain.render.layout import intent_manifest
from chamberlain.triggers import MemoryQueue, RotationRequest, manual
from chamberlain.triggers.annotation import HANDLED
from chamberlain.triggers.store import LABEL_REQUEST, RUN_OBJECTS
from tests.unit.test_controller import MOUNT, NS, PLATFORM, T0, EsoKube, ListLog, World

SI = RESOURCES["SecretIntent"]


class Counting(EsoKube):
    """EsoKube counting every API call by method (a watch counts once, as one request)."""

    CALLS = ("get_", "list_", "create_", "replace_", "patch_", "delete_", "annotate_", "watch_")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if callable(attr) and name.startswith(Counting.CALLS) and not name.startswith("get_lease_"):
            super().__getattribute__("calls")[name] += 1
        return attr


def rotate(kube: FakeKube, name: str, value: str) -> None:
    obj = kube.get_custom_object(SI, NS, name)
    assert obj is not None
    obj["metadata"].setdefault("annotations", {})[wk.ANNOTATION_ROTATE] = value
    kube.add_custom_object(SI, obj)


def world_with_objects(names: tuple[str, ...] = ("api-token",),
                       policy: dict[str, Any] | None = None) -> tuple[World, Counting]:
    w = World(names, policy=policy)
    kube = Counting(w.kv, w.kube.paths)
    kube.external_secrets, kube.workloads = w.kube.external_secrets, w.kube.workloads
    w.kube = kube
    for n in names:
        kube.add_custom_object(SI, intent_manifest(w.scope.intents[n], NS))
        meta = w.kv.read_metadata(MOUNT, w.scope.placed[n].vault.path)
        assert meta is not None  # ESO materialized the first version
        kube.secrets[("shop", n)] = KubeSecret("shop", n, {"v": "x"}, labels={wk.LABEL_INTENT: n}, annotations={
            wk.ANNOTATION_VERSION_MARKER: meta.custom[wk.VALUE_MARKER]})
    return w, kube


# ------------------------------------------------------------------------------------------ the annotation trigger


def test_the_rotate_annotation_is_read_from_the_watch_and_acts_once_even_before_the_watch_sees_the_clearing() -> None:
    w, kube = world_with_objects()
    objects, store = IntentObjects(), Store()
    reflector = Reflector(kube, "SecretIntent", NS, store, w.clock, sinks=[objects])
    reflector.step()  # the list
    q = MemoryQueue()
    trigger = WatchedAnnotations(kube, q, w.clock, NS, objects)
    assert trigger.poll() == []
    woken: list[bool] = []
    objects.on_rotate = lambda: woken.append(True)
    rotate(kube, "api-token", "ticket-1")
    reflector.step()  # the watch sees the annotation (and wakes the loop)
    assert woken == [True]
    lists = kube.calls["list_custom_objects"]
    [request] = trigger.poll()
    assert request.secret == "api-token" and request.reason == "ticket-1"
    assert kube.calls["list_custom_objects"] == lists, "a poll asks the API server nothing"
    assert q.take(timeout=0) == request
    q.done("api-token")  # the run ended
    assert trigger.clear_annotation("api-token", request)
    assert trigger.poll() == [], "the watch has not seen the clearing yet: the request is not made again"
    reflector.step()  # now it has
    assert trigger.poll() == [] and not trigger._cleared
    stored = kube.get_custom_object(SI, NS, "api-token")
    assert stored is not None and HANDLED in stored["metadata"]["annotations"]
    rotate(kube, "api-token", "ticket-2")  # a new value acts once more
    reflector.step()
    assert [r.reason for r in trigger.poll()] == ["ticket-2"]


def test_the_scope_is_not_rebuilt_for_status_patches_and_a_status_only_change_is_not_parsed_again() -> None:
    w, kube = world_with_objects()
    store = Store()
    reflector = Reflector(kube, "SecretIntent", NS, store, w.clock)
    reflector.step()
    generation, [before] = store.snapshot()
    kube.patch_custom_object_status(SI, NS, "api-token", {"phase": "Ready"})
    reflector.step()
    after_generation, [after] = store.snapshot()
    assert after_generation == generation and after is before, "the model parsed before is kept"
    obj = kube.get_custom_object(SI, NS, "api-token")
    assert obj is not None
    obj["spec"]["purpose"] = "changed"
    kube.add_custom_object(SI, obj)  # a spec change moves the generation: parsed again
    reflector.step()
    assert store.generation > generation and store.snapshot()[1][0].model.spec.purpose == "changed"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------ status from the watch


def test_the_status_reads_generation_uid_and_status_from_the_watch_and_lists_nothing() -> None:
    w, kube = world_with_objects()
    objects = IntentObjects()
    reflector = Reflector(kube, "SecretIntent", NS, Store(), w.clock, sinks=[objects])
    reflector.step()
    status = IntentStatus(kube, w.kv, NS, w.clock, ControllerMetrics(), ListLog(), list_every=0.0, feed=objects)
    c = w.controller(status=status)
    c.tick()
    assert kube.calls["list_custom_objects"] == 0
    patched = [p for p in kube.status_patches if p[0] == "secretintents"]
    assert len(patched) == 1 and patched[0][3]["phase"] == "Ready"
    reflector.step()  # the watch sees the status the controller wrote: nothing to write again
    w.clock.advance(1)
    c.tick()
    assert len([p for p in kube.status_patches if p[0] == "secretintents"]) == 1
    obj = kube.get_custom_object(SI, NS, "api-token")
    assert obj is not None
    obj["spec"]["purpose"] = "changed"
    kube.add_custom_object(SI, obj)  # a new generation: observedGeneration follows
    reflector.step()
    w.clock.advance(1)
    c.tick()
    last = [p for p in kube.status_patches if p[0] == "secretintents"][-1][3]
    assert last["observedGeneration"] == 2
    kube.delete_custom_object(SI, NS, "api-token")
    reflector.step()
    w.clock.advance(1)
    c.tick()
    assert "api-token" not in status._objects
    assert kube.calls["list_custom_objects"] == 0


# ------------------------------------------------------------------------------------------ consumer Secrets


def test_periodic_consumer_looks_are_held_to_their_budget_and_a_finished_run_looks_at_once() -> None:
    names = tuple(f"token-{i:02d}" for i in range(20))
    w, kube = world_with_objects(names, {"type": "event-based", "failureStrategy": "retry"})
    objects = IntentObjects()
    Reflector(kube, "SecretIntent", NS, Store(), w.clock, sinks=[objects]).step()
    status = IntentStatus(kube, w.kv, NS, w.clock, ControllerMetrics(), ListLog(), list_every=0.0, feed=objects,
                          consumer_check_every=60, consumer_looks_per_second=0.5)
    q = MemoryQueue()
    c = w.controller(status=status, queue=q)
    c.tick()
    assert kube.secret_annotation_reads == 20, "the first look after start is not held back"
    for _ in range(60):
        w.clock.advance(1)
        c.tick()
    reads = kube.secret_annotation_reads
    for _ in range(100):  # every secret is due again: the looks spread at half a GET a second
        w.clock.advance(1)
        c.tick()
    periodic = kube.secret_annotation_reads - reads
    assert 10 <= periodic <= 0.5 * 100 + 10, periodic
    reads = kube.secret_annotation_reads
    q.put(manual("token-00", "drill", w.clock.now()))
    c.tick()
    assert c.finished and c.finished[-1].succeeded
    assert kube.secret_annotation_reads > reads, "a finished run looks at its consumers at once"


# ------------------------------------------------------------------------------------------ requests and history


def test_persisted_requests_are_listed_once_then_watched() -> None:
    clock = FakeClock(T0)
    kube = FakeKube()
    store = WatchedRequests(kube, NS, clock)
    request = RotationRequest("api-token", "webhook", "ci", T0, "rq-" + "a" * 40)
    assert store.accept(request, "secret/api-token")
    try:
        assert [r.request_id for r in store.pending(T0)] == [request.request_id]
        lists = kube.lists
        store.settle(request.request_id, "merged", "into run x", "x")
        store.watch.step()
        assert store.pending(T0) == [] and kube.lists == lists
        assert kube.list_custom_objects(RUN_OBJECTS, NS, label=LABEL_REQUEST)  # the object stays, settled
    finally:
        store.stop()


def test_history_lists_at_start_then_only_after_runs_finish_or_hourly() -> None:
    w, kube = world_with_objects()
    history = RunHistory(kube, NS, w.clock, 2, timedelta(days=1), ControllerMetrics(), ListLog(), every=30.0)
    history.prune()
    assert kube.calls["list_custom_objects"] == 1
    for _ in range(10):
        w.clock.advance(60)
        history.prune()
    assert kube.calls["list_custom_objects"] == 1, "nothing finished: no list"
    history.finished()
    history.prune()
    assert kube.calls["list_custom_objects"] == 2
    w.clock.advance(3600)
    history.prune()
    assert kube.calls["list_custom_objects"] == 3


# ------------------------------------------------------------------------------------------ the whole controller


class Session:
    """FakeKV as a logged-in authority session (what ``wire`` takes)."""

    def __init__(self, kv: FakeKV) -> None:
        self.kv = kv
        self.session_generation = 0
        self.transit = FakeTransit()
        for env in ("dev", "_authority"):
            self.transit.ensure_key(TRANSIT_MOUNT, ledger_key(env), "ed25519")
        self.transit.ensure_key(TRANSIT_MOUNT, marker_key("dev"))

    def ensure_fresh(self) -> None:
        return None


def test_a_controller_wired_for_watch_mode_makes_at_most_one_api_request_a_second_in_steady_state() -> None:
    names = tuple(f"token-{i:02d}" for i in range(30))
    w, kube = world_with_objects(names, {"type": "time-based", "ttl": "90d", "rotateBefore": "7d",
                                         "failureStrategy": "retry"})  # nothing rotates: a steady state
    objects = IntentObjects()
    for kind in ("Platform",):
        kube.add_custom_object(RESOURCES[kind], intent_manifest(PLATFORM, NS))
    source = ClusterSource(kube, NS, "dev", "dev1", w.clock, sinks={"SecretIntent": [objects]})
    built = source.sync(timeout=5)
    assert built.scope is not None and len(built.scope.placed) == len(names)
    controller = wire(built.scope, Session(w.kv), kube, w.clock, identity="a", objects=objects,  # type: ignore[arg-type]
                      evaluate_every=30.0)
    assert isinstance(controller.parts.annotations, WatchedAnnotations)
    assert isinstance(controller.parts.requests, WatchedRequests)
    try:
        for _ in range(30):  # start-up: the first status of every intent, the first look at consumers
            controller.tick()
            w.clock.advance(1)
        before = Counter(kube.calls)
        seconds = 900  # 15 minutes: past the consumer look (5 min) and many Lease renewals
        for _ in range(seconds):
            for r in source.reflectors.values():  # what the reflector threads would have seen meanwhile
                r.watch() if r.resource_version is not None else r.list()
            controller.tick()
            w.clock.advance(1)
        calls = Counter(kube.calls)
        calls.subtract(before)
        made = {k: v for k, v in calls.items() if v and not k.startswith("watch_")}
        assert sum(made.values()) <= seconds, made
        assert not {k for k in made if k.startswith("list_custom_objects")}, made
        assert made.get("replace_lease", 0) == seconds // 5 and not made.get("get_lease"), made
        assert made.get("get_secret_annotations", 0) <= 0.5 * seconds + 10, "periodic consumer looks: budgeted"
    finally:
        controller.parts.requests.stop()


# ------------------------------------------------------------------------------------------ per-secret series


def test_per_secret_gauges_export_the_same_series_and_cost_a_row_per_secret() -> None:
    import gc
    import tracemalloc

    import pytest

    metrics = ControllerMetrics()
    metrics.secret_age.labels("a", "secret/a").set(5)
    metrics.overdue.labels("a", "secret/a").set(1)
    text = metrics.exposition().decode()
    assert 'chamberlain_secret_age_seconds{path="secret/a",secret="a"} 5.0' in text
    assert 'chamberlain_secret_overdue{path="secret/a",secret="a"} 1.0' in text
    assert "# TYPE chamberlain_secret_held gauge" in text and "chamberlain_secret_held{" not in text
    assert metrics.overdue.labels("a", "secret/a")._value.get() == 1
    metrics.forget_secret("a", "secret/a")
    assert "secret=\"a\"" not in metrics.exposition().decode()
    with pytest.raises(KeyError):
        metrics.failed_runs.remove("a", "secret/a")
    keys = [(f"s-{i:05d}", f"secret/bench/s-{i:05d}") for i in range(10_000)]
    gc.collect()
    tracemalloc.start()
    try:
        for gauge in (metrics.secret_age, metrics.next_due, metrics.held, metrics.secret_ttl, metrics.overdue):
            for key in keys:
                gauge.labels(*key).set(1.0)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 8 * 2**20, f"{held / 2**20:.1f} MiB for 50k series (prometheus_client children: ~31 MiB)"


def test_per_secret_series_are_written_as_prometheus_client_writes_them_a_chunk_at_a_time() -> None:
    import gc
    import tracemalloc

    from prometheus_client import CollectorRegistry, generate_latest

    metrics = ControllerMetrics()
    odd = ('we"ird\\name\nx', "secret/a")  # every character the text format escapes
    metrics.secret_age.labels(*odd).set(1.5)
    metrics.held.labels("b", "secret/b").set(1)
    reference = CollectorRegistry()
    reference.register(metrics.per_secret)  # prometheus_client's own writing of the same series
    assert b"".join(metrics.per_secret.text(lines_per_chunk=1)) == generate_latest(reference)
    # after the registry's metrics (whose process figures move from one call to the next)
    assert metrics.exposition().endswith(b"\n" + generate_latest(reference))
    for i in range(10_000):
        for gauge in (metrics.secret_age, metrics.next_due, metrics.held, metrics.secret_ttl, metrics.overdue):
            gauge.labels(f"s-{i:05d}", f"secret/bench/s-{i:05d}").set(float(i))
    gc.collect()
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in metrics.scrape())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 3 * 2**20 and peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB to write {size / 2**20:.1f} MiB"


# ------------------------------------------------------------------------------------------ the time trigger


class SlowKV(FakeKV):
    """Every metadata read takes 10 ms of the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.metadata_reads = 0

    def read_metadata(self, mount: str, path: str) -> Any:
        self.metadata_reads += 1
        self.clock.advance(0.01)
        return super().read_metadata(mount, path)


def _slow_world(names: tuple[str, ...]) -> tuple[World, SlowKV]:
    """Time-based secrets whose metadata reads take 10 ms of the fake clock each."""
    w = World(names, policy={"type": "time-based", "ttl": "90d", "rotateBefore": "7d", "failureStrategy": "retry"})
    slow = SlowKV(w.clock)
    slow.__dict__.update({k: v for k, v in w.kv.__dict__.items() if k not in ("clock", "metadata_reads")})
    w.kv = w.kube.kv = slow
    return w, slow


def test_a_large_pass_of_the_time_trigger_is_spread_over_ticks_and_a_request_waits_for_one_slice() -> None:
    from chamberlain.controller.config import ControllerConfig

    names = tuple(f"token-{i:02d}" for i in range(50))
    w, slow = _slow_world(names)
    c = w.controller()
    c.config = ControllerConfig(evaluate_every=30.0, evaluate_slice=0.1, propagation_timeout=5.0, poll=1.0)
    c.tick()
    first = slow.metadata_reads
    assert 5 <= first <= 15, "about a tenth of a second of reads in the first tick"
    q = c.parts.queue
    q.put(manual("token-49", "now", w.clock.now()))  # the last secret of the pass
    c.tick()
    assert c.finished and c.finished[-1].secret == "token-49", "the request did not wait for the whole pass"
    for _ in range(10):
        c.tick()
    assert not c.state.evaluating
    reads = slow.metadata_reads
    c.tick()
    assert slow.metadata_reads - reads <= 2, "the next pass starts evaluate_every after this one started"
    w.clock.advance(30)
    c.tick()
    assert c.state.evaluating, "a new pass"


def test_a_trigger_that_wakes_the_loop_mid_slice_cuts_the_pass_short_and_starts_in_the_same_tick() -> None:
    from chamberlain.controller.config import ControllerConfig

    names = tuple(f"token-{i:02d}" for i in range(50))
    w, slow = _slow_world(names)
    c = w.controller()
    c.config = ControllerConfig(evaluate_every=30.0, evaluate_slice=0.1, propagation_timeout=5.0, poll=1.0)
    read = slow.read_metadata

    def read_then_trigger(mount: str, path: str) -> Any:
        if slow.metadata_reads == 2:  # a webhook arrives while the pass reads its third secret
            c.request(manual("token-49", "now", w.clock.now()))
        return read(mount, path)

    slow.read_metadata = read_then_trigger  # type: ignore[method-assign]
    c.tick()
    assert len(c.state.evaluating) >= len(names) - 3, "the pass stopped at the wake, not after 0.1 s of reads"
    assert c.finished and c.finished[-1].secret == "token-49", "the request started in the tick it arrived in"
    for _ in range(60):
        c.tick()
    assert not c.state.evaluating and slow.metadata_reads >= len(names), "and the pass still ends"


def test_only_a_trigger_from_outside_cuts_a_slice_never_the_loop_s_own_requests() -> None:
    w = World(("api-token", "db-password"))
    c = w.controller()
    c.tick()
    c._enqueue(manual("api-token", "a due secret or a persisted request polled again", w.clock.now()))
    assert c.wake.is_set() and not c.arrived.is_set()
    c.tick()
    assert not c.arrived.is_set()
    c.request(manual("db-password", "a webhook", w.clock.now()))
    assert c.wake.is_set() and c.arrived.is_set()
    c.tick()  # served: a tick forgets what came before it
    assert not c.arrived.is_set()


def test_a_report_slice_stops_early_when_a_trigger_waits() -> None:
    names = tuple(f"token-{i:02d}" for i in range(40))
    w, kube = world_with_objects(names, {"type": "time-based", "ttl": "90d", "rotateBefore": "7d",
                                         "failureStrategy": "retry"})
    objects = IntentObjects()
    Reflector(kube, "SecretIntent", NS, Store(), w.clock, sinks=[objects]).step()
    waiting = [False]
    status = IntentStatus(kube, w.kv, NS, w.clock, ControllerMetrics(), ListLog(), list_every=0.0, feed=objects,
                          report_slice=10.0, interrupted=lambda: waiting[0])
    placed, now = w.scope.placed, w.clock.now()
    waiting[0] = True
    assert status.report(placed, {}, now) == 2, "a waiting trigger: the least a report does"
    waiting[0] = False
    assert status.report(placed, {}, now) == len(names) - 2, "nobody waiting: the rest within the slice"


def test_a_first_report_of_many_intents_is_spread_over_ticks() -> None:
    names = tuple(f"token-{i:02d}" for i in range(40))
    w, kube = world_with_objects(names, {"type": "time-based", "ttl": "90d", "rotateBefore": "7d",
                                         "failureStrategy": "retry"})
    slow = SlowKV(w.clock)
    slow.__dict__.update({k: v for k, v in w.kv.__dict__.items() if k not in ("clock", "metadata_reads")})
    objects = IntentObjects()
    Reflector(kube, "SecretIntent", NS, Store(), w.clock, sinks=[objects]).step()
    status = IntentStatus(kube, slow, NS, w.clock, ControllerMetrics(), ListLog(), list_every=0.0, feed=objects,
                          report_slice=0.1)
    placed, now = w.scope.placed, w.clock.now()
    first = status.report(placed, {}, now)
    assert 5 <= first <= 15, first
    total = first
    for _ in range(10):
        total += status.report(placed, {}, now)
    assert total == len(names), "every intent got its status, a slice at a time"


def test_the_loop_ticks_again_at_once_while_a_sliced_pass_is_unfinished() -> None:
    import threading
    import time

    from chamberlain.controller.config import ControllerConfig

    names = tuple(f"token-{i:02d}" for i in range(50))
    w, slow = _slow_world(names)
    c = w.controller()
    c.config = ControllerConfig(evaluate_every=3600.0, evaluate_slice=0.1, propagation_timeout=5.0, poll=1.0)
    stop = threading.Event()
    loop = threading.Thread(target=c.serve, args=(stop, 5.0), daemon=True)
    started = time.monotonic()
    loop.start()
    try:
        while slow.metadata_reads < len(names) and time.monotonic() - started < 4.0:
            time.sleep(0.01)
        assert slow.metadata_reads >= len(names), "the pass went on at the next tick, not 5 s later"
        assert not c.backlog
    finally:
        stop.set()
        c.wake.set()
        loop.join(5)
