"""The intent model: what Git declares about secrets (SPEC §9).

Belongs here: the pydantic models of the three kinds, duration parsing, the repository loader that remembers
file and line of every object, and the Vault path conventions. Nothing here talks to Vault or Kubernetes.
"""

from chamberlain.intent.durations import Duration, format_duration, parse_duration
from chamberlain.intent.model import (
    API_VERSION,
    Platform,
    RotationPolicy,
    RotationPolicySpec,
    SecretIntent,
)

__all__ = [
    "API_VERSION",
    "Duration",
    "Platform",
    "RotationPolicy",
    "RotationPolicySpec",
    "SecretIntent",
    "format_duration",
    "parse_duration",
]
