"""Proof against the real kube-apiserver: accepted webhook requests are persisted create-only as RotationRun
objects, so two replicas behind one Service share one replay record and one pending list, a replay fails after a
restart, and the leader finds what a follower accepted. The endpoint itself is the real bounded HTTP server."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from chamberlain.clock import FakeClock, SystemClock
from chamberlain.intent.model import GROUP, ROTATION_RUNS, VERSION
from chamberlain.kube.api import CustomResource
from chamberlain.kube.client import KubeClient
from chamberlain.render.crds import rotation_run_crd
from chamberlain.triggers.request import MemoryQueue
from chamberlain.triggers.store import LABEL_REQUEST, RunObjectStore
from chamberlain.triggers.webhook import (
    StandardSecret,
    WebhookHandler,
    WebhookKey,
    WebhookKeys,
    WebhookServer,
    sign,
    sign_standard,
)
from tests.lab.conftest import RunningLab

pytestmark = pytest.mark.lab

NS = "triggers-webhook"
KEYS = WebhookKeys(WebhookKey(b"k" * 32), StandardSecret(b"s" * 24))
RUNS = CustomResource(GROUP, VERSION, ROTATION_RUNS)


@pytest.fixture
def kube(lab: RunningLab) -> Iterator[KubeClient]:
    client = KubeClient.from_kubeconfig(lab.kubeconfig, clock=SystemClock())
    try:
        client.apply_manifest(rotation_run_crd(), field_manager="chamberlain-test")
        client.wait_crd_established(f"{ROTATION_RUNS}.{GROUP}")
        client.ensure_namespace(NS)
        yield client
    finally:
        client.close()


class Replica:
    """One controller replica's webhook: its own process state (queue, handler, server), the shared cluster."""

    def __init__(self, kube: KubeClient, clock: FakeClock, leader: bool) -> None:
        self.queue = MemoryQueue()
        self.store = RunObjectStore(kube, NS)
        self.handler = WebhookHandler(KEYS, self.queue if leader else None, known=lambda s: s == "grafana-admin",
                                      clock=clock, store=self.store, path_of=lambda s: f"secret/dev/team/{s}")
        self.server = WebhookServer(("127.0.0.1", 0), self.handler, workers=4)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
        conn = http.client.HTTPConnection("127.0.0.1", int(self.server.server_address[1]), timeout=10)
        try:
            conn.request("POST", "/v1/rotate", body=body, headers={"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_two_replicas_share_the_replay_record_and_the_pending_requests(kube: KubeClient) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FakeClock(now)
    leader, follower = Replica(kube, clock, leader=True), Replica(kube, clock, leader=False)
    try:
        body = json.dumps({"secret": "grafana-admin", "reason": "leak drill"}).encode()
        headers = sign(body, KEYS.hmac, now)  # type: ignore[arg-type]
        status, answer = follower.post(body, headers)
        assert status == 202 and answer["outcome"] == "persisted"
        name = str(answer["request"])
        obj = kube.get_custom_object(RUNS, NS, name)
        assert obj is not None and obj["spec"]["secret"] == "grafana-admin" and obj["spec"]["trigger"] == "webhook"
        assert obj["metadata"]["labels"][LABEL_REQUEST] == "webhook"
        # the same request to the other replica, and after a restart of both: a replay
        assert leader.post(body, headers)[0] == 401
        restarted = Replica(kube, clock, leader=True)
        try:
            assert restarted.post(body, headers)[0] == 401
            # the leader's view: the follower's request is pending, once
            pending = restarted.store.pending(now)
            assert [r.request_id for r in pending if r.request_id == name] == [name]
            (mine,) = [r for r in pending if r.request_id == name]
            assert (mine.secret, mine.kind, mine.reason) == ("grafana-admin", "webhook", "leak drill")
            # once settled (or once a run's status is published on it) it is no longer pending
            restarted.store.settle(name, "refused", "rate limited")
            assert name not in [r.request_id for r in restarted.store.pending(now)]
            got = kube.get_custom_object(RUNS, NS, name)
            assert got is not None and got["status"]["request"]["state"] == "refused"
        finally:
            restarted.stop()
        # Standard Webhooks: a sender's retry (same webhook-id, new timestamp) is a duplicate across replicas
        first = leader.post(body, sign_standard(body, KEYS.standard, "msg_lab_1", now))  # type: ignore[arg-type]
        assert first[0] == 200 and first[1]["outcome"] == "queued"
        clock.advance(30)
        retry = follower.post(body, sign_standard(body, KEYS.standard, "msg_lab_1", clock.now()))  # type: ignore[arg-type]
        assert retry[0] == 200 and retry[1]["outcome"] == "duplicate"
        assert len(leader.queue.pending()) == 1
    finally:
        leader.stop()
        follower.stop()
