"""The running controller: the loop on a thread, the webhook endpoint and ``/metrics``, started and stopped as one.

The CLI (``chamberlain controller run``) and the demo build the clients and the :class:`~.loop.Controller`, then
hand it here. Stopping is graceful: the loop finishes its tick, gives up the Lease, and the servers shut down;
an unfinished run stays recorded in Vault for whichever replica leads next.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from chamberlain.controller.loop import Controller
from chamberlain.triggers.webhook import DEFAULT_WINDOW, Answer, WebhookHandler, WebhookKey, WebhookServer


class LeaderOnlyWebhook(WebhookHandler):
    """A follower answers 503 (retry later): a request it queued would wait until it leads, maybe forever. Behind
    a Service, the sender's retry reaches the leader."""

    def __init__(self, controller: Controller, key: WebhookKey, window: timedelta = DEFAULT_WINDOW) -> None:
        super().__init__(key, controller.queue, controller.scope.knows, controller.now, window=window)
        self._controller = controller

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        if not self._controller.is_leader:
            return Answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "not the leader, retry"})
        return super().handle(headers, body)


@dataclass
class ControllerApp:
    controller: Controller
    interval: float = 1.0
    metrics_address: tuple[str, int] | None = None  # (host, port); port 0 picks a free one
    webhook_address: tuple[str, int] | None = None
    webhook_key: WebhookKey | None = field(default=None, repr=False)
    stop_event: threading.Event = field(default_factory=threading.Event)
    webhook: WebhookServer | None = None
    metrics_server: Any = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        if self.metrics_address is not None:
            self.metrics_server = self.controller.metrics.serve(self.metrics_address[1], self.metrics_address[0])
        if self.webhook_address is not None:
            if self.webhook_key is None:
                raise ValueError("a webhook address needs a webhook key")
            self.webhook = WebhookServer(self.webhook_address, LeaderOnlyWebhook(self.controller, self.webhook_key))
            t = threading.Thread(target=self.webhook.serve_forever, name="chamberlain-webhook", daemon=True)
            t.start()
            self._threads.append(t)
        loop = threading.Thread(target=self.controller.serve, args=(self.stop_event, self.interval),
                                name="chamberlain-controller", daemon=True)
        loop.start()
        self._threads.append(loop)

    @property
    def metrics_url(self) -> str | None:
        if self.metrics_server is None:
            return None
        host, port = self.metrics_server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or ``timeout``); True when the loop has ended."""
        return self.stop_event.wait(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        self.stop_event.set()
        if self.webhook is not None:
            self.webhook.shutdown()
            self.webhook.server_close()
        for t in self._threads:
            t.join(timeout)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()


__all__ = ["ControllerApp", "LeaderOnlyWebhook"]
