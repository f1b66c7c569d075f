"""Triggers: detecting that a secret should rotate — never rotating it (SPEC §4 component 5, §5 "Triggers").

Belongs here: the :class:`RotationRequest` every trigger produces and the :class:`RequestQueue` it goes into
(``request``), and one module per trigger — ``timer`` (policy windows, with an injected clock), ``webhook``
(HMAC-signed HTTP requests), ``annotation`` (``chamberlain.dev/rotate`` on a SecretIntent) and ``manual`` (the
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
from chamberlain.triggers.timer import SecretSchedule, Ticker, evaluate
from chamberlain.triggers.webhook import (
    Verdict,
    WebhookHandler,
    WebhookKey,
    WebhookServer,
    load_key,
    sign,
    verify,
)

__all__ = [
    "AnnotationTrigger",
    "Enqueued",
    "MemoryQueue",
    "RequestError",
    "RequestQueue",
    "RotationRequest",
    "SecretSchedule",
    "Ticker",
    "TriggerKind",
    "Verdict",
    "WebhookHandler",
    "WebhookKey",
    "WebhookServer",
    "detect",
    "evaluate",
    "for_namespace",
    "load_key",
    "manual",
    "sanitize_reason",
    "sign",
    "verify",
]
