"""The time trigger reads each secret's metadata at a bounded rate: new, changed and just-rotated secrets at once,
the rest round robin at ``metadata_reads_per_second``; every pass still decides for every secret, from the last
reading, and a time request is checked against fresh metadata before it acts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.authority.fake import FakeKV
from chamberlain.controller.config import ControllerConfig
from chamberlain.controller.freshness import MIN_WINDOW, refresh_budget, to_read
from chamberlain.controller.loop import Controller
from chamberlain.controller.scope import scope_of
from tests.unit.test_controller import MOUNT, PLATFORM, World, intent

POLICY = {"type": "time-based", "ttl": "90d", "rotateBefore": "7d", "failureStrategy": "retry"}


# ------------------------------------------------------------------------------------------------ pure


def test_the_budget_reads_a_small_scope_in_full_and_a_large_one_at_the_rate() -> None:
    assert refresh_budget(500, 20.0, 30.0) == 500, "up to rate x 30 s: every secret every pass"
    assert refresh_budget(600, 20.0, 0.0) == 20 * MIN_WINDOW, "a small scope even on a pass a swap started early"
    assert refresh_budget(10_000, 20.0, 30.0) == 600
    assert refresh_budget(10_000, 20.0, 5.0) == 100, "a pass a scope swap started early reads less: the rate holds"
    assert refresh_budget(10_000, 20.0, 120.0) == 2400, "a late pass catches up with the rate"
    assert refresh_budget(10_000, None, 30.0) == 10_000
    assert refresh_budget(0, 20.0, 30.0) == 0


def test_to_read_takes_every_unread_name_and_a_round_robin_of_the_rest() -> None:
    names = [f"s{i}" for i in range(10)]
    known = set(names) - {"s7"}
    picked, cursor = to_read(names, known, 8, 4)
    assert picked == {"s8", "s9", "s0", "s1", "s7"} and cursor == 2, "wraps around; s7 was never read"
    picked, cursor = to_read(names, known, cursor, 4)
    assert picked == {"s2", "s3", "s4", "s5", "s7"} and cursor == 6
    assert to_read(names, known, 3, 10) == (set(names), 0)
    assert to_read([], set(), 5, 0) == (set(), 0)
    seen: set[str] = set()
    cursor = 0
    for _ in range(5):  # every name comes round within n / budget passes
        picked, cursor = to_read(names, set(names), cursor, 2)
        seen |= picked
    assert seen == set(names)


# ------------------------------------------------------------------------------------------------ the loop


class CountingKV(FakeKV):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def read_metadata(self, mount: str, path: str) -> Any:
        self.reads.append(path)
        return super().read_metadata(mount, path)


def world(n: int, rate: float | None = 1.0) -> tuple[World, CountingKV, Controller]:
    names = tuple(f"token-{i:03d}" for i in range(n))
    w = World(names, policy=POLICY)
    counting = CountingKV()
    counting.__dict__.update({k: v for k, v in w.kv.__dict__.items() if k != "reads"})
    w.kv = w.kube.kv = counting
    c = w.controller()
    c.config = ControllerConfig(evaluate_every=30.0, evaluate_slice=None, propagation_timeout=5.0, poll=1.0,
                                metadata_reads_per_second=rate)
    return w, counting, c


def passes(w: World, c: Controller, kv: CountingKV) -> int:
    """One pass 30 s after the last; the metadata reads it made."""
    w.clock.advance(30)
    before = len(kv.reads)
    c.tick()
    return len(kv.reads) - before


def test_a_large_scope_is_read_at_once_then_again_at_the_rate_round_robin() -> None:
    w, kv, c = world(100, rate=1.0)
    c.tick()
    assert len(kv.reads) == 100, "the first pass reads every secret"
    assert [passes(w, c, kv) for _ in range(3)] == [30, 30, 30], "then 1/s over 30 s"
    assert len(set(kv.reads[100:])) == 90, "round robin: the least recently read first"
    assert passes(w, c, kv) == 30
    assert set(kv.reads[100:]) == set(kv.reads[:100]), "within n / rate seconds every secret is read again"


def test_a_small_scope_is_read_in_full_on_every_pass_as_before() -> None:
    w, kv, c = world(5, rate=20.0)
    c.tick()
    assert [passes(w, c, kv) for _ in range(3)] == [5, 5, 5]


def test_the_pass_decides_from_the_last_reading_and_rotates_a_secret_whose_window_opens() -> None:
    w, _, c = world(40, rate=0.1)
    c.tick()
    assert not c.finished
    w.clock.t += timedelta(days=84)  # wall time only: into every secret's rotation window, a pass later
    w.clock.advance(30)
    c.tick()  # the pass: 3 re-reads, 40 decisions from the last readings, 40 time requests
    for _ in range(10):
        c.tick()
        w.clock.advance(1)
    rotated = {r.secret for r in c.finished if r.succeeded}
    assert len(rotated) == 40, "every secret rotated though only 3 per pass were read again"


def test_a_changed_intent_and_a_rotated_secret_are_read_again_at_once() -> None:
    w, kv, c = world(50, rate=0.1)
    c.tick()
    assert passes(w, c, kv) == 3
    w.clock.advance(30)
    changed = intent("token-007", policy={**POLICY, "ttl": "30d"})
    scope = scope_of(PLATFORM, {**{n: p.intent for n, p in w.scope.placed.items()}, "token-007": changed},
                     "dev", "dev1")
    c.set_scope(scope)
    before = len(kv.reads)
    c.tick()
    path = scope.placed["token-007"].vault.path
    assert path in kv.reads[before:] and len(kv.reads) - before <= 4, "only the changed one (and the round robin)"
    from chamberlain.triggers import manual
    c.parts.queue.put(manual("token-011", "now", w.clock.now()))
    c.tick()
    assert c.finished and c.finished[-1].secret == "token-011"
    assert "token-011" not in c.state.known, "its run ended: read again by the next pass"


def test_a_hold_set_outside_the_controller_is_seen_within_n_over_rate_and_never_rotated() -> None:
    w, _, c = world(30, rate=1.0)
    c.tick()
    path = w.scope.placed["token-003"].vault.path
    w.kv.update_custom_metadata(MOUNT, path, {wk.HELD: "true"})
    w.clock.t += timedelta(days=84)
    for _ in range(3):
        c.tick()
        w.clock.advance(30)
    assert "token-003" not in {r.secret for r in c.finished}, "checked against fresh metadata before it opened"
    assert c.state.known["token-003"].held


def test_without_a_rate_every_secret_is_read_on_every_pass() -> None:
    w, kv, c = world(100, rate=1.0)
    c.config = replace(c.config, metadata_reads_per_second=None)
    c.tick()
    assert passes(w, c, kv) == 100


def test_a_small_scope_with_a_new_secret_still_reads_every_known_one() -> None:
    """The budget counts the whole scope: with one secret new, the round robin must not skip a known one."""
    w, kv, c = world(5, rate=20.0)
    c.tick()
    c.state.refresh_cursor = 3
    del c.state.known["token-000"]  # as after its run ended
    assert passes(w, c, kv) == 5


def test_a_platform_change_reads_every_secret_again_and_the_floor_holds_for_a_time_request() -> None:
    """Readings carry the Platform's ttl floor: a changed Platform (or policy set) drops them all (review
    finding); and a time request is checked against the floor as the pass would evaluate it."""
    from chamberlain.intent.model import Platform

    w, kv, c = world(50, rate=0.1)
    c.tick()
    assert len(c.state.known) == 50
    data = w.scope.platform.model_dump(by_alias=True, exclude_none=True)
    data["metadata"]["labels"] = {"changed": "yes"}
    c.set_scope(replace(w.scope, platform=Platform.model_validate(data)))
    w.clock.advance(30)
    before = len(kv.reads)
    c.tick()
    assert len(kv.reads) - before == 50, "every secret read again under the new Platform"


def test_scope_swaps_do_not_raise_the_read_rate() -> None:
    w, kv, c = world(100, rate=1.0)
    c.tick()
    reads = []
    for _ in range(6):  # a swap every 5 s (GitOps applying changes): each pass starts early
        w.clock.advance(5)
        c.set_scope(replace(w.scope, placed=dict(w.scope.placed)))
        before = len(kv.reads)
        c.tick()
        reads.append(len(kv.reads) - before)
    assert sum(reads) <= 30 + 6, reads
