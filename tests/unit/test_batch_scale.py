"""A batch at fleet scale (issue 16, P4), on fakes: building the consumers of every run of a big scope is linear
(the templated readers are indexed once, not searched per run), each run's ExternalSecrets are poked the moment it
is promoted (ESO syncs while the rest of the batch still promotes) and exactly once, the restart wave rolls each
workload once whatever the workers do, and the benchmark's report keeps the shape ``benchmarks/run`` reads."""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.clock import FakeClock
from chamberlain.controller.batch import RestartWave
from chamberlain.intent.loader import load_repository
from chamberlain.intent.model import SecretIntent
from chamberlain.intent.templates import references, templated_readers
from chamberlain.kube.api import PodTemplateState
from chamberlain.kube.fake import FakeKube
from chamberlain.propagation import Change, ConsumerRef, WorkloadRef
from chamberlain.rotation import manual as rm
from chamberlain.triggers import MemoryQueue, manual
from tests.unit.test_controller import MOUNT, PLATFORM, T0, World, intent
from tests.unit.test_templates import TEMPLATED, _repo

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _templated(name: str, reads: list[str]) -> SecretIntent:
    """An intent whose one consumer is a template over the ``token`` of each of ``reads``."""
    text = "-".join(f"{{{r}.token}}" for r in reads)
    return SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": name},
        "spec": {"owner": "shop", "purpose": "tests", "classification": "runtime",
                 "source": {"generate": {"token": {"type": "token"}}},
                 "rotation": {"type": "time-based", "ttl": "10m", "rotateBefore": "2m"},
                 "consumers": [{"namespace": "shop", "secretName": f"{name}-joined", "template": {"T": text}}]},
    })


# ------------------------------------------------------------------------------------- templated readers, indexed


def test_the_index_answers_what_templated_readers_answers_for_every_intent(tmp_path: Path) -> None:
    loaded = load_repository(_repo(tmp_path, "", TEMPLATED))
    assert loaded.platform is not None
    intents = {i.obj.metadata.name: i.obj for i in loaded.intents}
    envs = {e.name for e in loaded.platform.spec.environments}
    for env in envs:
        index = rm.TemplatedIndex(loaded.platform, intents.values(), env)
        for name in [*intents, "not-an-intent"]:
            assert index.readers(name) == templated_readers(loaded.platform, intents.values(), name, env), (env, name)
    assert any(rm.TemplatedIndex(loaded.platform, intents.values(), env).readers("orders-db-endpoint")
               for env in envs), "the corpus has a templated reader"


def test_the_index_keeps_order_skips_self_references_and_unparsable_templates() -> None:
    intents = {n: intent(n) for n in ("a", "b")}
    intents["z-reader"] = _templated("z-reader", ["a", "z-reader"])
    intents["m-reader"] = _templated("m-reader", ["a", "b"])
    broken = _templated("broken", ["a"])
    intents["broken"] = broken.model_copy(update={"spec": broken.spec.model_copy(update={"consumers": [
        broken.spec.consumers[0].model_copy(update={"template": {"T": "{a.token"}})]})})
    index = rm.TemplatedIndex(PLATFORM, intents.values(), "dev")
    for name in [*intents, "nobody"]:
        assert index.readers(name) == templated_readers(PLATFORM, intents.values(), name, "dev")
    assert [i.metadata.name for i, _ in index.readers("a")] == ["m-reader", "z-reader"]
    assert index.readers("z-reader") == []  # its own template is not another intent's reader
    assert rm.TemplatedIndex(PLATFORM, intents.values(), "prod").readers("a") == []  # not placed there


def test_consumers_of_every_run_of_a_big_scope_parse_each_template_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quadratic it replaces: 2,000 runs each searching 2,000 intents (30 s of CPU at 2,000)."""
    parsed = []
    real = references

    def counting(text: str) -> Any:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr("chamberlain.rotation.manual.references", counting)
    names = [f"s-{i:04d}" for i in range(400)]
    intents: dict[str, SecretIntent] = {n: intent(n) for n in names}
    intents["reader"] = _templated("reader", names[:3])
    placed = [rm.place(PLATFORM, intents[n], "dev", None) for n in names]
    consumers = [rm.placed_consumers(PLATFORM, intents, p) for p in placed]
    assert len(parsed) == 1, "one template, parsed once for the whole scope"
    assert [c.secret for c in consumers[0]] == [ConsumerRef("shop", names[0]), ConsumerRef(
        "shop", "reader-joined", wk.part_marker_annotation(names[0]))]
    assert all(len(c) == 1 for c in consumers[3:])
    # a new scope (a new mapping) is indexed again: the cache never answers for another set of intents
    fresh = {**intents, "reader": _templated("reader", [names[5]])}
    assert len(rm.placed_consumers(PLATFORM, fresh, placed[5])) == 2
    assert len(rm.placed_consumers(PLATFORM, fresh, placed[0])) == 1


# ------------------------------------------------------------------------------------- the batch on the controller


def test_each_run_pokes_its_external_secret_once_as_soon_as_it_is_promoted() -> None:
    names = tuple(f"token-{i:02d}" for i in range(12))
    w = World(names)
    order: list[tuple[str, str]] = []
    paths = {w.scope.placed[n].vault.path: n for n in names}
    write, annotate = w.kv.write, w.kube.annotate_external_secret

    def recording_write(mount: str, path: str, data: Any, cas: int) -> int:
        if mount == MOUNT and path in paths:
            order.append(("promote", paths[path]))
        return write(mount, path, data, cas)

    def recording_annotate(namespace: str, name: str, annotations: Any) -> None:
        order.append(("poke", name))
        annotate(namespace, name, annotations)

    w.kv.write = recording_write  # type: ignore[method-assign]
    w.kube.annotate_external_secret = recording_annotate  # type: ignore[method-assign]
    q = MemoryQueue()
    c = w.controller(queue=q)
    c.tick()
    for n in names:
        q.put(manual(n, "compromise", w.clock.now()))
    c.tick()
    assert all(w.version(n) == 2 for n in names)
    promotes = [i for i, (what, _) in enumerate(order) if what == "promote"]
    pokes = [i for i, (what, _) in enumerate(order) if what == "poke"]
    assert min(pokes) < max(promotes), "ESO is asked before the last run of the batch is promoted"
    assert sorted(n for what, n in order if what == "poke") == sorted(names), "one force-sync per ExternalSecret"
    assert w.kube.force_syncs == len(names)
    assert w.kube.workload_patches == [("Deployment", "shop", "api")]


def test_a_batch_on_many_workers_rolls_each_workload_once() -> None:
    names = tuple(f"token-{i:02d}" for i in range(40))
    w = World(names)
    q = MemoryQueue()
    c = w.controller(queue=q, workers=8)
    c.tick()
    for n in names:
        q.put(manual(n, "compromise", w.clock.now()))
    c.tick()
    assert len(c.finished) == len(names) and all(r.succeeded for r in c.finished)
    assert w.kube.workload_patches == [("Deployment", "shop", "api")]


def test_the_wave_rolls_a_workload_shared_by_runs_on_many_threads_once() -> None:
    kube = FakeKube()
    workloads = [WorkloadRef("Deployment", "shop", f"app-{i}") for i in range(20)]
    for wl in workloads:
        kube.workloads[("Deployment", "shop", wl.name)] = PodTemplateState({}, 1)
    wave = RestartWave(kube, FakeClock(T0))
    changes = [Change(f"s-{i}", ((ConsumerRef("shop", f"s-{i}"), (workloads[i % 20], workloads[(i + 1) % 20])),))
               for i in range(100)]
    wave.begin([f"run-{i}" for i in range(100)])
    threads = [threading.Thread(target=wave.restart, args=(ch, f"run-{i}")) for i, ch in enumerate(changes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(kube.workload_patches) == sorted(("Deployment", "shop", wl.name) for wl in workloads)


# ------------------------------------------------------------------------------------- the benchmark's report


@pytest.fixture
def bench() -> Any:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("bench_batch_rotation")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _result(n: int, total: float, floor: float | None) -> dict[str, Any]:
    nan = float("nan")
    return {
        "secrets": n, "ratio": None if floor is None else total / floor, "eso": "ESO --concurrent=4",
        "floor": None if floor is None else {"total": floor, "eso_wait": floor / 2},
        "goal": {"restarted_once": True},
        "controller": {"total": total, "workloads": n // 10, "restarted_once": n // 10, "patches": n // 10,
                       "restart_batches": 1, "failed": 0,
                       "breakdown": {"Vault phase (all promoted)": 1.0, "ESO window (first promoted -> all "
                                     "Secrets updated)": nan, "after ESO (all Secrets updated -> all finished)": 2.0}},
    }


def test_the_report_carries_figures_and_growth_for_the_runner(bench: Any) -> None:
    figs, curves = bench.figures_of([_result(200, 10.0, 8.0), _result(2000, 100.0, 80.0), _result(1000, 50.0, 40.0)])
    by_id = {f["id"]: f for f in figs}
    assert set(by_id) == {"P4", "P4-ratio", "P4-restart"}
    p4 = by_id["P4"]
    assert p4["measured"] == 100.0 and p4["floor"] == 80.0 and p4["ratio"] == 1.25 and p4["met"] is True
    assert p4["goal"] == "<= 120 s at 2000" and len(p4["load"]) == 3
    assert by_id["P4-ratio"]["met"] is True and by_id["P4-ratio"]["goal"] == "<= 1.5"
    assert by_id["P4-restart"]["met"] is True and by_id["P4-restart"]["measured"] == 200
    assert curves[0]["sizes"] == [200, 1000, 2000] and curves[0]["values"] == [10.0, 50.0, 100.0]
    assert curves[0]["per_item_growth"] == [1.0, 1.0]
    assert [c["series"] for c in curves] == ["controller: all queued -> all finished", "floor: raw clients"]


def test_a_smoke_report_gives_no_verdict_on_time_or_ratio(bench: Any) -> None:
    figs, curves = bench.figures_of([_result(6, 3.0, None)])
    by_id = {f["id"]: f for f in figs}
    assert by_id["P4"]["met"] is None and by_id["P4"]["floor"] is None
    assert by_id["P4-ratio"]["met"] is None and by_id["P4-ratio"]["measured"] is None
    assert by_id["P4-restart"]["met"] is True
    assert [c["series"] for c in curves] == ["controller: all queued -> all finished"]


def test_sizes_are_a_comma_separated_list(bench: Any) -> None:
    import argparse

    assert bench.sizes_of("200,1000,2000") == [200, 1000, 2000]
    with pytest.raises(argparse.ArgumentTypeError):
        bench.sizes_of("200,x")
    with pytest.raises(argparse.ArgumentTypeError):
        bench.sizes_of("0")


def test_the_protocol_floor_splits_the_ratio_into_requests_and_code(bench: Any) -> None:
    r = _result(2000, 66.0, 30.0)
    r["protocol_floor"] = {"total": 60.0}
    r["protocol_ratios"] = bench._protocol_ratios(r["controller"], r["floor"], r["protocol_floor"])
    assert r["protocol_ratios"] == {"controller_to_protocol": 1.1, "protocol_to_naive": 2.0}
    figs, _ = bench.figures_of([r])
    split = {f["id"]: f for f in figs}["P4-protocol"]
    assert split["floor"] == 60.0 and split["ratio"] == 1.1 and split["met"] is None
    assert "protocol floor / naive floor 2.00" in split["note"]
    # without the naive floor only the code's share is known; without the protocol floor, nothing is split
    assert bench._protocol_ratios(r["controller"], None, {"total": 60.0}) == {"controller_to_protocol": 1.1}
    assert bench._protocol_ratios(r["controller"], r["floor"], None) is None


def test_protocol_variants_name_known_parts_only(bench: Any) -> None:
    import argparse

    assert bench._parts("run-saves, events") == frozenset({"run-saves", "events"})
    with pytest.raises(argparse.ArgumentTypeError, match="takes parts among"):
        bench._parts("staging")  # no longer part of the batch's protocol (generated values stay in memory)
    for bad in ("", "run-saves,bogus", ","):
        with pytest.raises(argparse.ArgumentTypeError, match="takes parts among"):
            bench._parts(bad)


class _SlowKube(FakeKube):
    """Patches that take a while and fail once for one workload: workers must overlap and recover."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.most_inside = 0
        self.fail_once = {"app-3"}
        self._count = threading.Lock()

    def patch_pod_template_annotations(self, kind: Any, namespace: str, name: str,
                                       annotations: Any) -> PodTemplateState:
        with self._count:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            threading.Event().wait(0.02)
            if name in self.fail_once:
                self.fail_once.discard(name)
                from chamberlain.kube.api import KubeUnavailable

                raise KubeUnavailable(f"{name}: the API server did not answer")
            return super().patch_pod_template_annotations(kind, namespace, name, annotations)
        finally:
            with self._count:
                self.inside -= 1


def test_the_wave_rolls_different_workloads_side_by_side_and_recovers_a_failed_roll() -> None:
    kube = _SlowKube()
    workloads = [WorkloadRef("Deployment", "shop", f"app-{i}") for i in range(8)]
    for wl in workloads:
        kube.workloads[("Deployment", "shop", wl.name)] = PodTemplateState({}, 1)
    wave = RestartWave(kube, FakeClock(T0))
    wave.begin([f"run-{i}" for i in range(16)])
    errors: list[BaseException] = []

    def run(i: int) -> None:
        change = Change(f"s-{i}", ((ConsumerRef("shop", f"s-{i}"), (workloads[i % 8],)),))
        try:
            wave.restart(change, f"run-{i}")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kube.most_inside > 1, "different workloads roll on several workers at once"
    assert len(errors) == 1, "the run whose roll failed fails (its step retries); the others go on"
    assert sorted(kube.workload_patches) == sorted(("Deployment", "shop", wl.name) for wl in workloads)
    assert wave.rolled == set(workloads)


def test_the_restart_pass_takes_runs_of_different_workloads_first() -> None:
    from chamberlain.controller.batch import spread_by_workload

    w = {n: WorkloadRef("Deployment", "shop", n) for n in ("a", "b", "c")}
    feeds = {"a1": ["a"], "a2": ["a"], "a3": ["a"], "b1": ["b"], "b2": ["b"], "c1": ["c", "a"], "free": []}
    order = spread_by_workload(list(feeds), lambda run: [w[n] for n in feeds[run]])
    assert order == ["free", "a1", "b1", "a2", "b2", "a3", "c1"], "c1 goes with a, its first workload"
    assert sorted(order) == sorted(feeds), "every run once"
    assert spread_by_workload([], lambda run: []) == []


def test_the_controller_spreads_its_runs_by_the_workloads_their_propagation_rolls() -> None:
    from types import SimpleNamespace

    from chamberlain.controller.batch import BatchedPropagation
    from chamberlain.controller.loop import Controller

    wl = WorkloadRef("Deployment", "shop", "api")
    change = Change("s-1", ((ConsumerRef("shop", "s-1"), (wl,)),))
    batched = BatchedPropagation(rm.TimedPropagation(None, FakeClock(T0)),  # type: ignore[arg-type]
                                 RestartWave(FakeKube(), FakeClock(T0)), change)
    assert Controller._workloads(SimpleNamespace(deps=SimpleNamespace(propagation=batched))) == [wl]  # type: ignore[arg-type]
    assert Controller._workloads(SimpleNamespace(deps=SimpleNamespace(propagation=object()))) == []  # type: ignore[arg-type]


class _TimedKube(FakeKube):
    """Every pod-template patch takes a while, as under a loaded API server."""

    def patch_pod_template_annotations(self, kind: Any, namespace: str, name: str,
                                       annotations: Any) -> PodTemplateState:
        threading.Event().wait(0.1)
        return super().patch_pod_template_annotations(kind, namespace, name, annotations)


def test_runs_grouped_by_workload_roll_side_by_side_once_spread() -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from chamberlain.controller.batch import spread_by_workload

    workloads = [WorkloadRef("Deployment", "shop", f"app-{i}") for i in range(8)]
    runs = [(f"s-{i}", workloads[i // 4]) for i in range(32)]  # as a batch arrives: four runs per workload in a row

    def roll(ordered: list[tuple[str, WorkloadRef]]) -> float:
        kube = _TimedKube()
        for wl in workloads:
            kube.workloads[("Deployment", "shop", wl.name)] = PodTemplateState({}, 1)
        wave = RestartWave(kube, FakeClock(T0))
        wave.begin([name for name, _ in ordered])
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda r: wave.restart(Change(r[0], ((ConsumerRef("shop", r[0]), (r[1],)),)), r[0]),
                          ordered))
        assert len(kube.workload_patches) == len(workloads), "each workload rolls once, whatever the order"
        return time.monotonic() - started

    grouped = roll(runs)
    spread = roll(spread_by_workload(runs, lambda r: [r[1]]))
    # grouped: the four workers take one workload's four runs, one rolls and three wait (8 x 0.1 s); spread: four
    # workloads roll at once (2 x 0.1 s)
    assert grouped >= 0.75 and spread < grouped / 2, (grouped, spread)


# ------------------------------------------------------------------------------------- Events off the loop thread


class _EventKube(FakeKube):
    def __init__(self, gate: threading.Event | None = None, refuse: set[str] | None = None) -> None:
        super().__init__()
        self.gate, self.refuse = gate, refuse or set()
        self.sent: list[tuple[str, str]] = []
        self.threads: set[str] = set()

    def create_event(self, namespace: str, involved: Any, reason: str, message: str, type_: str = "Normal") -> None:
        if self.gate is not None:
            self.gate.wait(5)
        self.threads.add(threading.current_thread().name)
        if reason in self.refuse:
            from chamberlain.kube.api import KubeUnavailable

            raise KubeUnavailable("the API server did not answer")
        self.sent.append((reason, message))


def test_events_are_sent_in_order_off_the_calling_thread_and_failures_counted() -> None:
    from chamberlain.controller.batch import BackgroundEvents

    gate = threading.Event()
    kube = _EventKube(gate, refuse={"Refused"})
    events = BackgroundEvents(kube)
    for i in range(50):
        events.create_event("ns", {"kind": "SecretIntent", "name": f"s-{i}"}, "Refused" if i == 7 else "Started",
                            f"s-{i}")
    assert kube.sent == [], "the caller does not wait for the API server"
    gate.set()
    assert events.flush(5)
    assert [m for _, m in kube.sent] == [f"s-{i}" for i in range(50) if i != 7]
    assert events.failures == 1 and kube.threads == {"chamberlain-events"}
    kube.workloads[("Deployment", "ns", "app")] = PodTemplateState({}, 1)
    assert events.get_pod_template("Deployment", "ns", "app").generation == 1  # everything else: straight through
    events.close()


def test_a_full_backlog_drops_events_instead_of_blocking_the_loop() -> None:
    from chamberlain.controller.batch import BackgroundEvents

    gate = threading.Event()
    kube = _EventKube(gate)
    events = BackgroundEvents(kube, backlog=3)
    for i in range(10):
        events.create_event("ns", {"kind": "SecretIntent", "name": "s"}, "Started", f"m-{i}")
    assert not events.flush(0.05), "still waiting on the API server"
    assert events.dropped >= 6
    gate.set()
    assert events.flush(5)
    assert len(kube.sent) + events.dropped == 10
    events.close()


def test_at_shutdown_queued_events_are_dropped_and_the_sender_ends_after_the_one_in_flight() -> None:
    """A stopping controller does not send a batch's thousands of Normal Events within its grace period, nor leave
    the sender thread inside a request while the interpreter shuts down."""
    import time

    from chamberlain.controller.batch import BackgroundEvents

    gate = threading.Event()
    kube = _EventKube(gate)
    events = BackgroundEvents(kube)
    for i in range(500):
        events.create_event("ns", {"kind": "SecretIntent", "name": f"s-{i}"}, "Started", f"m-{i}")
    threading.Timer(0.2, gate.set).start()  # the request in flight answers
    began = time.monotonic()
    assert events.stop(5)
    assert time.monotonic() - began < 2
    assert len(kube.sent) <= 1 and len(kube.sent) + events.dropped == 500
    # a publisher thread still finishing emits after the stop: counted as dropped, never queued behind the sentinel
    events.create_event("ns", {"kind": "RotationRun", "name": "late"}, "RotationSucceeded", "late")
    assert len(kube.sent) + events.dropped == 501 and events.flush(0.1)
