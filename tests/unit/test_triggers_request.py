"""RotationRequest validation, reason sanitizing, and the queue's per-secret de-duplication."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from chamberlain.triggers.request import (
    MAX_REASON_CHARS,
    MemoryQueue,
    RequestError,
    RotationRequest,
    sanitize_reason,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def req(secret: str = "db-password",  # noqa: S107 - a secret *name*
        rid: str = "manual:1", reason: str = "why", kind: str = "manual",
        at: datetime = T0) -> RotationRequest:
    return RotationRequest(secret, kind, reason, at, rid)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("leaked in CI log", "leaked in CI log"),
        ("  spaced\t\tout \n", "spaced out"),
        ("line1\nline2\r\nFAKE LOG LINE", "line1 line2 FAKE LOG LINE"),
        ("\x1b[31mred\x1b[0m", "[31mred [0m"),
        ("", "unspecified"),
        ("\x00\x07", "unspecified"),
        ("x" * 500, "x" * (MAX_REASON_CHARS - 1) + "…"),
    ],
    ids=["plain", "whitespace", "newlines-cannot-forge-log-lines", "terminal-escapes", "empty", "only-control",
         "length-limited"],
)
def test_sanitize_reason(raw: str, expected: str) -> None:
    assert sanitize_reason(raw) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": "Bad_Name"}, "DNS-1123"),
        ({"secret": "../etc"}, "DNS-1123"),
        ({"kind": "cron"}, "unknown trigger kind"),
        ({"at": datetime(2026, 1, 1)}, "timezone"),  # a naive time, on purpose
        ({"rid": "has space"}, "malformed request id"),
        ({"rid": "x" * 200}, "malformed request id"),
    ],
    ids=["uppercase-name", "path-name", "unknown-kind", "naive-time", "id-with-space", "id-too-long"],
)
def test_request_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        req(**kwargs)  # type: ignore[arg-type]


def test_reason_is_sanitized_on_construction() -> None:
    assert req(reason="a\nb").reason == "a b"


def test_one_pending_request_per_secret_merges_reasons() -> None:
    q = MemoryQueue()
    assert q.put(req(rid="webhook:a", kind="webhook", reason="leak reported")) == "queued"
    assert q.put(req(rid="manual:b", reason="incident 42")) == "merged"
    assert q.put(req(rid="manual:c", reason="incident 42")) == "merged"  # same reason is kept once
    assert q.put(req(secret="other", rid="manual:d")) == "queued"
    pending = q.pending()
    assert [p.secret for p in pending] == ["db-password", "other"]
    first = pending[0]
    assert (first.kind, first.request_id, first.reason) == ("webhook", "webhook:a", "leak reported; incident 42")
    assert first.keys == ("webhook:a", "manual:b", "manual:c")


def test_same_key_is_a_duplicate_while_pending_and_in_flight_then_free_after_done() -> None:
    q = MemoryQueue()
    assert q.put(req(rid="time:x")) == "queued"
    assert q.put(req(rid="time:x")) == "duplicate"
    taken = q.take(timeout=0)
    assert taken is not None and taken.request_id == "time:x"
    assert q.put(req(rid="time:x")) == "duplicate"  # the timer ticking again mid-run
    assert q.pending() == []
    q.done("db-password")
    assert q.put(req(rid="time:x")) == "queued"


def test_new_signal_during_a_run_waits_for_the_next_run() -> None:
    q = MemoryQueue()
    q.put(req(rid="time:x"))
    assert q.take(timeout=0) is not None
    assert q.put(req(rid="webhook:y", kind="webhook")) == "queued"
    assert q.take(timeout=0) is None  # one secret never has two concurrent runs
    q.done("db-password")
    again = q.take(timeout=0)
    assert again is not None and again.request_id == "webhook:y"


def test_merged_reason_stays_length_limited() -> None:
    q = MemoryQueue()
    for i in range(30):
        q.put(req(rid=f"manual:{i}", reason=f"reason number {i} " + "y" * 20))
    assert len(q.pending()[0].reason) <= MAX_REASON_CHARS


def test_take_blocks_until_a_request_arrives() -> None:
    q = MemoryQueue()
    got: list[RotationRequest | None] = []
    t = threading.Thread(target=lambda: got.append(q.take(timeout=5)))
    t.start()
    q.put(req())
    t.join(5)
    assert got and got[0] is not None and got[0].secret == "db-password"


def test_concurrent_puts_yield_one_pending_request() -> None:
    q = MemoryQueue()
    outcomes: list[str] = []
    lock = threading.Lock()

    def spam(i: int) -> None:
        for j in range(50):
            o = q.put(req(rid=f"webhook:{i}-{j % 5}", kind="webhook", at=T0 + timedelta(seconds=j)))
            with lock:
                outcomes.append(o)

    threads = [threading.Thread(target=spam, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("queued") == 1
    assert len(q.pending()) == 1
    assert len(q.pending()[0].keys) == 8 * 5
