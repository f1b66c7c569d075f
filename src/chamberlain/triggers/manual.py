"""The manual trigger: what ``chamberlain rotate NAME --reason TEXT`` and ``rotate --namespace X`` queue.

Belongs here: :func:`manual` for one secret and :func:`for_namespace`, the pure selection of every intent with a
consumer or producer in a namespace (the answer to "this namespace is compromised", SPEC §6). Manual requests
ignore the policy type on purpose: a static secret rotates when a human asks. Not here: the CLI, or rotating.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from chamberlain.intent.model import SecretIntent
from chamberlain.triggers.request import RotationRequest


def manual(secret: str, reason: str, now: datetime) -> RotationRequest:
    # The id is per invocation: running the command twice asks twice (the queue still merges while pending).
    return RotationRequest(secret, "manual", reason, now, f"manual:{secret}:{now.isoformat()}")


def touches(intent: SecretIntent, namespace: str) -> bool:
    """Whether a compromise of ``namespace`` exposes the secret: a consumer reads it there, or it is produced
    (published from) there."""
    source = intent.spec.source.publication
    return any(c.namespace == namespace for c in intent.spec.consumers) or (
        source is not None and source.namespace == namespace
    )


def for_namespace(intents: Iterable[SecretIntent], namespace: str, reason: str, now: datetime) -> list[RotationRequest]:
    """A manual request for every intent :func:`touches` ``namespace``, in name order (stable output)."""
    chosen = sorted({i.name for i in intents if touches(i, namespace)})
    return [
        RotationRequest(name, "manual", reason, now, f"manual:{name}:{namespace}:{now.isoformat()}")
        for name in chosen
    ]
