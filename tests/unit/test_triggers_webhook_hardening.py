"""The webhook under attack and under the other schemes: a bounded server (idle and trickling clients cannot hold
threads), strict header parsing on raw sockets, Standard Webhooks and bearer (Alertmanager) requests, and replay
protection that lives in the cluster (a fresh handler on the same fake cluster still refuses a replay)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chamberlain.clock import FakeClock
from chamberlain.kube.fake import FakeKube
from chamberlain.triggers.request import MemoryQueue
from chamberlain.triggers.store import MemoryStore, RunObjectStore, object_name
from chamberlain.triggers.webhook import (
    ALERT_LABEL,
    BearerToken,
    StandardSecret,
    WebhookHandler,
    WebhookKey,
    WebhookKeyError,
    WebhookKeys,
    WebhookServer,
    load_keys,
    parse_body,
    sign,
    sign_standard,
    verify_standard,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = WebhookKey(b"k" * 32)
STD = StandardSecret(b"s" * 24)
TOKEN = BearerToken(b"t" * 32)
KEYS = WebhookKeys(KEY, STD, TOKEN)
BODY = b'{"secret": "db-password", "reason": "leaked"}'
KNOWN = {"db-password", "api-token"}


def handler(store: object | None = None, queue: MemoryQueue | None = None, keys: WebhookKeys = KEYS,
            clock: FakeClock | None = None) -> WebhookHandler:
    return WebhookHandler(keys, queue or MemoryQueue(), known=lambda s: s in KNOWN, clock=clock or FakeClock(NOW),
                          store=store)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- schemes


def test_standard_webhooks_signature_tolerance_and_key_rotation() -> None:
    headers = sign_standard(BODY, STD, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", NOW)
    assert verify_standard(headers, BODY, STD, NOW).outcome == "ok"
    assert verify_standard(headers, BODY + b" ", STD, NOW).outcome == "bad-signature"
    assert verify_standard(headers, BODY, StandardSecret(b"x" * 24), NOW).outcome == "bad-signature"
    assert verify_standard(headers, BODY, STD, NOW + timedelta(minutes=6)).outcome == "stale"
    assert verify_standard(headers, BODY, STD, NOW - timedelta(minutes=6)).outcome == "future"
    moved = {**headers, "webhook-id": "msg_other"}
    assert verify_standard(moved, BODY, STD, NOW).outcome == "bad-signature"  # the id is signed
    rotated = {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"]}
    assert verify_standard(rotated, BODY, STD, NOW).outcome == "ok"  # several signatures during a key rotation
    assert verify_standard({**headers, "webhook-signature": "v1a,xyz"}, BODY, STD, NOW).outcome == "malformed"
    assert verify_standard({"webhook-id": "a"}, BODY, STD, NOW).outcome == "missing"


def test_standard_secret_is_whsec_base64_and_never_shown() -> None:
    text = "whsec_" + base64.b64encode(b"q" * 24).decode()
    secret = StandardSecret.parse(text)
    assert secret.value == b"q" * 24 and text not in repr(secret)
    with pytest.raises(WebhookKeyError) as bad:
        StandardSecret.parse("whsec_not base64!!")
    assert "not base64" not in str(bad.value)


def test_a_standard_webhooks_retry_is_a_duplicate_and_a_replay_after_restart_is_refused() -> None:
    kube, queue = FakeKube(), MemoryQueue()
    store = RunObjectStore(kube, "chamberlain-system")
    first = handler(store, queue)
    headers = sign_standard(BODY, STD, "msg_1", NOW)
    answer = first.handle(headers, BODY)
    assert answer.status == 200 and answer.body["outcome"] == "queued"
    # the sender retries with the same id, a new timestamp and signature: the same request
    retry = first.handle(sign_standard(BODY, STD, "msg_1", NOW + timedelta(seconds=30)), BODY)
    assert retry.status == 200 and retry.body["outcome"] == "duplicate"
    # a fresh process (new handler, new queue, nothing in memory) on the same cluster
    again = handler(RunObjectStore(kube, "chamberlain-system"), MemoryQueue()).handle(headers, BODY)
    assert again.body["outcome"] == "duplicate" and len(queue.pending()) == 1


def test_an_hmac_replay_after_restart_is_refused_by_the_cluster_record() -> None:
    kube = FakeKube()
    headers = sign(BODY, KEY, NOW)
    assert handler(RunObjectStore(kube, "ns")).handle(headers, BODY).status == 200
    assert handler(RunObjectStore(kube, "ns")).handle(headers, BODY).status == 401  # new process, same cluster
    # without the cluster record (one process's memory) the same replay would pass: that is what the store fixes
    assert handler(MemoryStore()).handle(headers, BODY).status == 200


def test_bearer_needs_an_idempotency_key() -> None:
    h = handler()
    bearer = {"Authorization": "Bearer " + "t" * 32}
    assert h.handle(bearer, BODY).status == 400
    ok = h.handle({**bearer, "Idempotency-Key": "ticket-42"}, BODY)
    assert ok.status == 200 and ok.body["outcome"] == "queued"
    assert h.handle({**bearer, "Idempotency-Key": "ticket-42"}, BODY).body["outcome"] == "duplicate"
    assert h.handle({"Authorization": "Bearer " + "x" * 32, "Idempotency-Key": "k2"}, BODY).status == 401
    assert h.handle({"Authorization": "Basic abc", "Idempotency-Key": "k3"}, BODY).status == 401
    assert h.handle({**bearer, "Idempotency-Key": "bad key with spaces"}, BODY).status == 400
    # a scheme whose secret is not configured is refused
    only_hmac = handler(keys=WebhookKeys(hmac=KEY))
    assert only_hmac.handle({**bearer, "Idempotency-Key": "k4"}, BODY).status == 401
    # the headers of two schemes at once: refused
    both = {**bearer, **sign(BODY, KEY, NOW), "Idempotency-Key": "k5"}
    assert h.handle(both, BODY).status == 401


def test_an_unsigned_idempotency_header_cannot_turn_a_replay_into_a_new_request() -> None:
    h = handler()
    headers = sign(BODY, KEY, NOW)
    assert h.handle(headers, BODY).status == 200
    assert h.handle({**headers, "Idempotency-Key": "fresh-1"}, BODY).status == 401
    std = sign_standard(BODY, STD, "msg_x", NOW)
    assert h.handle(std, BODY).body["outcome"] == "merged"  # a new request, folded into the pending one
    assert h.handle({**std, "Idempotency-Key": "fresh-2"}, BODY).body["outcome"] == "duplicate"


def test_an_authority_outage_does_not_lose_a_request_but_a_cluster_outage_is_a_503() -> None:
    from chamberlain.authority.errors import AuthorityUnavailable

    def down(_secret: str) -> datetime:
        raise AuthorityUnavailable("vault sealed")

    kube = FakeKube()
    h = WebhookHandler(KEYS, MemoryQueue(), known=lambda s: s in KNOWN, clock=FakeClock(NOW),
                       store=RunObjectStore(kube, "ns"), admit=down)
    assert h.handle(sign(BODY, KEY, NOW), BODY).status == 200  # persisted; runs when the authority is back
    kube.down = True
    body = b'{"secret": "api-token"}'
    answer = h.handle(sign(body, KEY, NOW), body)
    assert answer.status == 503 and answer.headers["Retry-After"] == "5"


def _alertmanager(status: str = "firing", starts: str = "2026-03-01T11:59:00Z", label: bool = True,
                  secret: str = "db-password") -> bytes:  # noqa: S107 - an intent name
    labels = {"alertname": "CredentialLeak", **({ALERT_LABEL: secret} if label else {})}
    return json.dumps({
        "version": "4", "groupKey": '{}:{alertname="CredentialLeak"}', "status": status, "receiver": "chamberlain",
        "groupLabels": {"alertname": "CredentialLeak"}, "commonLabels": labels, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
        "alerts": [{"status": status, "labels": labels, "annotations": {"summary": "token seen in a public paste"},
                    "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                    "fingerprint": "c4ab9f1e2d3b4a59"}],
    }).encode()


def test_alertmanager_payload_one_rotation_per_firing() -> None:
    queue = MemoryQueue()
    h = handler(queue=queue)
    bearer = {"Authorization": "Bearer " + "t" * 32}
    first = h.handle(bearer, _alertmanager())
    assert first.status == 200 and first.body["outcome"] == "queued"
    (request,) = queue.pending()
    assert request.reason == "alert: token seen in a public paste"
    # Alertmanager repeats the notification (repeat_interval): the same firing, a duplicate
    assert h.handle(bearer, _alertmanager()).body["outcome"] == "duplicate"
    # resolved: nothing to do; no label: a clear 400; an unknown secret: 404
    assert h.handle(bearer, _alertmanager(status="resolved")).status == 400
    assert h.handle(bearer, _alertmanager(label=False)).status == 400
    assert h.handle(bearer, _alertmanager(secret="nope", starts="2026-03-01T11:00:00Z")).status == 404
    # a new firing of the same alert (a new startsAt) is a new request
    queue.take(timeout=0)
    queue.done("db-password")
    assert h.handle(bearer, _alertmanager(starts="2026-03-01T13:00:00Z")).body["outcome"] == "queued"


def test_parse_body_is_bounded() -> None:
    many = json.dumps({"groupKey": "g", "alerts": [{"status": "firing"}] * 101}).encode()
    with pytest.raises(ValueError, match="more than 100"):
        parse_body(many)


def test_load_keys_reads_files_only_and_needs_one(tmp_path: Path) -> None:
    (tmp_path / "std").write_text("whsec_" + base64.b64encode(b"z" * 24).decode() + "\n")
    (tmp_path / "bearer").write_text("b" * 40 + "\n")
    keys = load_keys(None, tmp_path / "std", tmp_path / "bearer", {})
    assert keys.hmac is None and keys.standard is not None and keys.bearer == BearerToken(b"b" * 40)
    assert keys.schemes == ["standard", "bearer"]
    env = {"CHAMBERLAIN_WEBHOOK_BEARER_TOKEN_FILE": str(tmp_path / "bearer")}
    assert load_keys(None, None, None, env).bearer is not None
    with pytest.raises(WebhookKeyError, match="--webhook-bearer-token-file"):
        load_keys(None, None, None, {})
    (tmp_path / "short").write_text("short")
    with pytest.raises(WebhookKeyError) as err:
        load_keys(None, None, tmp_path / "short", {})
    assert "short" not in str(err.value).replace(str(tmp_path), "").replace("shorter", "")


# --------------------------------------------------------------------------------------------------- the server


@dataclass
class Running:
    server: WebhookServer
    queue: MemoryQueue

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(data)
            return _read_all(s)


def _read_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response else 0


@pytest.fixture
def running() -> Iterator[Running]:
    queue = MemoryQueue()
    server = WebhookServer(("127.0.0.1", 0), handler(queue=queue), max_body=1024, workers=2, header_timeout=0.6,
                           body_timeout=0.6)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Running(server, queue)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _request(body: bytes, headers: dict[str, str], extra: bytes = b"") -> bytes:
    lines = [b"POST /v1/rotate HTTP/1.1", b"Host: x"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n" + body


def test_many_idle_clients_cannot_hold_more_than_the_pool(running: Running) -> None:
    idle = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(12)]
    try:
        time.sleep(0.2)
        assert running.server.active <= 2
        threads_before = threading.active_count()
        refused = sum(1 for s in idle if _status(_read_all(s)) == 503)
        # two served (then cut off), the others answered 503 at once; while the first two were cut off, at most
        # two more may have found a free slot
        assert refused >= 8 and running.server.busy_refusals >= 8
        assert threading.active_count() <= threads_before
        # the idle clients holding a worker are cut off at the header deadline; the pool serves again
        time.sleep(0.8)
        assert running.server.active == 0
        headers = {"Content-Length": str(len(BODY)), **sign(BODY, KEY, NOW)}
        assert _status(running.raw(_request(BODY, headers))) == 200
    finally:
        for s in idle:
            s.close()


def test_a_client_trickling_headers_is_cut_off_at_the_deadline(running: Running) -> None:
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as s:
        started = time.monotonic()
        s.sendall(b"POST /v1/rotate HTTP/1.1\r\n")
        closed = False
        for _ in range(40):  # one header byte every 0.1 s: each read is quick, the total is not
            try:
                s.sendall(b"X")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            s.settimeout(0.01)
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed and time.monotonic() - started < 2.0


def test_a_body_that_never_arrives_is_a_408(running: Running) -> None:
    headers = {"Content-Length": "500", **sign(BODY, KEY, NOW)}
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as s:
        s.sendall(_request(b'{"secret": ', headers))
        assert _status(_read_all(s)) == 408
    assert running.queue.pending() == []


@pytest.mark.parametrize(("label", "headers", "status"), [
    ("non-ascii-digits", {"Content-Length": "\u0661\u0662"}, 400),
    ("superscript-digit", {"Content-Length": "\u00b2"}, 400),
    ("sign", {"Content-Length": "+45"}, 400),
    ("duplicate-length", {"Content-Length": "45", "content-length": "45"}, 400),
    ("chunked", {"Transfer-Encoding": "chunked", "Content-Length": "45"}, 400),
    ("no-length", {}, 411),
    ("too-large", {"Content-Length": "99999"}, 413),
    ("huge-number", {"Content-Length": "99999999999999999999"}, 400),
])
def test_strict_headers(running: Running, label: str, headers: dict[str, str], status: int) -> None:
    data = _request(BODY, {**sign(BODY, KEY, NOW)} | {}, b"".join(
        f"{k}: {v}\r\n".encode() for k, v in headers.items()))
    answer = running.raw(data)
    assert (label, _status(answer)) == (label, status)
    assert b"Traceback" not in answer
    assert running.queue.pending() == []


def test_duplicate_signature_headers_are_refused(running: Running) -> None:
    signed = sign(BODY, KEY, NOW)
    extra = f"X-Chamberlain-Signature: {signed['X-Chamberlain-Signature']}\r\n".encode()
    answer = running.raw(_request(BODY, {"Content-Length": str(len(BODY)), **signed}, extra))
    assert _status(answer) == 400 and running.queue.pending() == []


def test_a_valid_request_on_the_bounded_server(running: Running) -> None:
    headers = {"Content-Length": str(len(BODY)), **sign_standard(BODY, STD, "msg_9", NOW)}
    answer = running.raw(_request(BODY, headers))
    assert _status(answer) == 200 and b"Connection: close" in answer
    (request,) = running.queue.pending()
    assert request.request_id == object_name("key", "msg_9\0db-password")
