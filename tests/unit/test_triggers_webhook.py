"""The webhook trigger: the pure verification table, key loading, and a real HTTP server on 127.0.0.1 proving that
only an authentic, fresh, first-seen request for a known secret enqueues anything."""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chamberlain.clock import FakeClock
from chamberlain.triggers.request import MemoryQueue, RotationRequest
from chamberlain.triggers.store import MemoryStore, object_name
from chamberlain.triggers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayCache,
    ReplayCacheFull,
    WebhookHandler,
    WebhookKey,
    WebhookKeyError,
    WebhookServer,
    load_key,
    sign,
    verify,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = WebhookKey(b"k" * 32)
OTHER = WebhookKey(b"o" * 32)
BODY = b'{"secret": "db-password", "reason": "leaked"}'


def _signed(body: bytes = BODY, key: WebhookKey = KEY, at: datetime = NOW) -> dict[str, str]:
    return sign(body, key, at)


def _case(name: str) -> tuple[dict[str, str], bytes, set[str]]:
    good = _signed()
    sig = good[SIGNATURE_HEADER].removeprefix("sha256=")
    return {
        "valid": (good, BODY, set()),
        "valid-lowercase-header-names": ({k.lower(): v for k, v in good.items()}, BODY, set()),
        "wrong-key": (_signed(key=OTHER), BODY, set()),
        "no-signature": ({TIMESTAMP_HEADER: good[TIMESTAMP_HEADER]}, BODY, set()),
        "no-timestamp": ({SIGNATURE_HEADER: good[SIGNATURE_HEADER]}, BODY, set()),
        "no-headers": ({}, BODY, set()),
        "signature-not-hex": ({**good, SIGNATURE_HEADER: "sha256=" + "z" * 64}, BODY, set()),
        "signature-wrong-scheme": ({**good, SIGNATURE_HEADER: "sha1=" + sig[:40]}, BODY, set()),
        "signature-truncated": ({**good, SIGNATURE_HEADER: "sha256=" + sig[:63]}, BODY, set()),
        "timestamp-not-a-number": ({**good, TIMESTAMP_HEADER: "yesterday"}, BODY, set()),
        "timestamp-moved": ({**good, TIMESTAMP_HEADER: str(int(NOW.timestamp()) + 1)}, BODY, set()),
        "stale": (_signed(at=NOW - timedelta(seconds=301)), BODY, set()),
        "edge-of-window": (_signed(at=NOW - timedelta(seconds=300)), BODY, set()),
        "future": (_signed(at=NOW + timedelta(seconds=301)), BODY, set()),
        "replay": (good, BODY, {sig}),
        "tampered-body": (good, BODY.replace(b"leaked", b"LEAKED"), set()),
    }[name]


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("valid", "ok"),
        ("valid-lowercase-header-names", "ok"),
        ("edge-of-window", "ok"),
        ("wrong-key", "bad-signature"),
        ("no-signature", "missing"),
        ("no-timestamp", "missing"),
        ("no-headers", "missing"),
        ("signature-not-hex", "malformed"),
        ("signature-wrong-scheme", "malformed"),
        ("signature-truncated", "malformed"),
        ("timestamp-not-a-number", "malformed"),
        ("timestamp-moved", "bad-signature"),
        ("stale", "stale"),
        ("future", "future"),
        ("replay", "replay"),
        ("tampered-body", "bad-signature"),
    ],
    ids=lambda v: str(v),
)
def test_verify(name: str, outcome: str) -> None:
    headers, body, seen = _case(name)
    verdict = verify(headers, body, KEY, NOW, seen)
    assert verdict.outcome == outcome
    assert (verdict.replay_key is not None) == (outcome == "ok")


def test_verify_expiry_is_the_end_of_the_window() -> None:
    verdict = verify(_signed(), BODY, KEY, NOW, set())
    assert verdict.expires_at == NOW + timedelta(seconds=300)


def test_key_repr_hides_the_value() -> None:
    assert "kkkk" not in repr(KEY)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("file", b"f" * 20),
        ("file-env", b"f" * 20),
        ("env", b"e" * 20),
    ],
    ids=["explicit-file", "file-from-env", "value-from-env"],
)
def test_load_key(tmp_path: Path, setup: str, expected: bytes) -> None:
    f = tmp_path / "key"
    f.write_bytes(b"f" * 20 + b"\n")
    env = {"CHAMBERLAIN_WEBHOOK_KEY": "e" * 20}
    if setup == "file":
        key = load_key(f, env)
    elif setup == "file-env":
        key = load_key(None, {**env, "CHAMBERLAIN_WEBHOOK_KEY_FILE": str(f)})
    else:
        key = load_key(None, env)
    assert key.value == expected


def test_load_key_errors_never_show_the_key(tmp_path: Path) -> None:
    with pytest.raises(WebhookKeyError, match="no webhook key"):
        load_key(None, {})
    with pytest.raises(WebhookKeyError, match="shorter") as info:
        load_key(None, {"CHAMBERLAIN_WEBHOOK_KEY": "tiny-secret"})
    assert "tiny-secret" not in str(info.value)
    with pytest.raises(WebhookKeyError, match="cannot read"):
        load_key(tmp_path / "absent", {})


def test_replay_cache_forgets_expired_entries_and_refuses_when_full() -> None:
    cache = ReplayCache(max_entries=2)
    assert cache.remember("a", NOW + timedelta(seconds=10), NOW)
    assert not cache.remember("a", NOW + timedelta(seconds=10), NOW)
    assert cache.remember("b", NOW + timedelta(seconds=20), NOW)
    with pytest.raises(ReplayCacheFull):
        cache.remember("c", NOW + timedelta(seconds=20), NOW)  # evicting a live one would reopen a replay
    assert cache.remember("c", NOW + timedelta(seconds=40), NOW + timedelta(seconds=15))  # "a" expired
    assert "a" not in cache and "b" in cache and len(cache) == 2


# --------------------------------------------------------------------------------------- a real HTTP server


@dataclass
class Endpoint:
    host: str
    port: int
    queue: MemoryQueue
    clock: FakeClock

    def post(self, body: bytes, headers: dict[str, str], method: str = "POST",
             path: str = "/v1/rotate") -> tuple[int, dict[str, object]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, json.loads(data) if data else {}
        finally:
            conn.close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    queue = MemoryQueue()
    clock = FakeClock(NOW)
    handler = WebhookHandler(KEY, queue, known=lambda s: s in {"db-password", "api-token"}, clock=clock)
    server = WebhookServer(("127.0.0.1", 0), handler, max_body=1024)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Endpoint("127.0.0.1", server.server_address[1], queue, clock)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_server_only_the_valid_request_enqueues(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="chamberlain")
    rejected = [
        ("unsigned", BODY, {}),
        ("wrong-key", BODY, _signed(key=OTHER)),
        ("stale", BODY, _signed(at=NOW - timedelta(minutes=10))),
        ("tampered", BODY.replace(b"leaked", b"other"), _signed()),
    ]
    for label, body, headers in rejected:
        status, answer = endpoint.post(body, headers)
        assert (label, status, answer) == (label, 401, {"error": "unauthorized"})
    assert endpoint.queue.pending() == []

    unknown = b'{"secret": "nope", "reason": "x"}'
    assert endpoint.post(unknown, _signed(unknown))[0] == 404
    big = b'{"secret": "db-password", "reason": "' + b"x" * 2000 + b'"}'
    assert endpoint.post(big, _signed(big))[0] == 413
    assert endpoint.post(b"", {}, method="GET")[0] == 405
    assert endpoint.post(BODY, _signed(), path="/v1/other")[0] == 404
    not_json = b"secret=db-password"
    assert endpoint.post(not_json, _signed(not_json))[0] == 400
    assert endpoint.queue.pending() == []

    good = _signed()
    status, answer = endpoint.post(BODY, good)
    assert status == 200 and answer["outcome"] == "queued" and answer["secret"] == "db-password"
    # The very same request again, still inside the window: a replay.
    assert endpoint.post(BODY, good) == (401, {"error": "unauthorized"})
    (request,) = endpoint.queue.pending()
    assert (request.secret, request.kind, request.reason) == ("db-password", "webhook", "leaked")

    # Nothing sensitive in the logs: neither the key nor a signature nor the body's reason.
    text = caplog.text
    assert "k" * 32 not in text and good[SIGNATURE_HEADER].split("=")[1] not in text and "leaked" not in text


def test_server_second_signal_merges_and_sender_id_is_idempotent(endpoint: Endpoint) -> None:
    first = b'{"secret": "api-token", "reason": "scanner hit", "id": "evt-1"}'
    endpoint.clock.advance(1)
    assert endpoint.post(first, _signed(first, at=NOW))[1]["outcome"] == "queued"
    # The sender retries the same event with a fresh timestamp (a new signature, so no replay): same id.
    assert endpoint.post(first, _signed(first, at=NOW + timedelta(seconds=1)))[1]["outcome"] == "duplicate"
    second = b'{"secret": "api-token", "reason": "confirmed leak"}'
    assert endpoint.post(second, _signed(second))[1]["outcome"] == "merged"
    (request,) = endpoint.queue.pending()
    assert request.request_id == object_name("key", "evt-1\0api-token")
    assert request.reason == "scanner hit; confirmed leak"


class _PolledStore(MemoryStore):
    """A store whose write is seen at once by the leader's poll of persisted requests, which queues the request
    before the handler delivers it (the race the lab hit under load)."""

    def __init__(self, queue: MemoryQueue) -> None:
        super().__init__()
        self._queue = queue

    def accept(self, request: RotationRequest, path: str) -> bool:
        accepted = super().accept(request, path)
        if accepted:
            self._queue.put(request)
        return accepted


def test_a_request_the_leader_queued_first_is_still_queued_for_its_sender() -> None:
    queue = MemoryQueue()
    handler = WebhookHandler(KEY, queue, known=lambda s: s == "db-password", clock=FakeClock(NOW),
                             store=_PolledStore(queue))
    answer = handler.handle(_signed(), BODY)
    assert (answer.status, answer.body["outcome"]) == (200, "queued")
    assert len(queue.pending()) == 1
    # The same request again is still a replay, and a retry under the sender's id still a duplicate.
    assert handler.handle(_signed(), BODY).status == 401
    keyed = b'{"secret": "db-password", "reason": "x", "id": "evt-9"}'
    assert handler.handle(_signed(keyed), keyed).body["outcome"] == "queued"
    assert handler.handle(_signed(keyed, at=NOW + timedelta(seconds=1)), keyed).body["outcome"] == "duplicate"
