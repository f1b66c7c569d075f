"""Triggers: detecting that a secret should rotate — never rotating it (SPEC §4 component 5, §5 "Triggers").

Belongs here: the :class:`RotationRequest` every trigger produces and the :class:`RequestQueue` it goes into
(``request``), the create-only store of accepted webhook requests (``store``), the platform floors every
trigger obeys (``limits``: rate limit, ttl floor), and one module per trigger — ``timer`` (policy windows, with an
injected clock), ``webhook`` (HMAC, Standard Webhooks or bearer-authenticated HTTP requests, Alertmanager too),
``annotation`` (``chamberlain.dev/rotate`` on a SecretIntent) and ``manual`` (the
CLI, including a whole compromised namespace). Decisions here are pure; the only I/O is the webhook's socket and
the annotation trigger's calls through the :class:`~chamberlain.kube.api.KubeCustomObjects` protocol.

Not here: generating, storing or propagating values. All triggers share one path: a request in the queue, which
the durable workflow consumes (taking, running, then calling ``done`` and, for annotations,
:meth:`AnnotationTrigger.clear_annotation`).
"""

from chamberlain.triggers.annotation import AnnotationTrigger, detect
from chamberlain.triggers.manual import for_namespace, manual
from chamberlain.triggers.request import (
    Enqueued,
    MemoryQueue,
    RequestError,
    RequestQueue,
    RotationRequest,
    TriggerKind,
    sanitize_reason,
)
from chamberlain.triggers.store import MemoryStore, RequestStore, RunObjectStore, is_stored
from chamberlain.triggers.timer import SecretSchedule, Ticker, evaluate
from chamberlain.triggers.webhook import (
    Verdict,
    WebhookHandler,
    WebhookKey,
    WebhookKeys,
    WebhookServer,
    load_key,
    load_keys,
    sign,
    verify,
)

__all__ = [
    "AnnotationTrigger",
    "Enqueued",
    "MemoryQueue",
    "MemoryStore",
    "RequestError",
    "RequestQueue",
    "RequestStore",
    "RotationRequest",
    "RunObjectStore",
    "SecretSchedule",
    "Ticker",
    "TriggerKind",
    "Verdict",
    "WebhookHandler",
    "WebhookKey",
    "WebhookKeys",
    "WebhookServer",
    "detect",
    "evaluate",
    "for_namespace",
    "is_stored",
    "load_key",
    "load_keys",
    "manual",
    "sanitize_reason",
    "sign",
    "verify",
]
