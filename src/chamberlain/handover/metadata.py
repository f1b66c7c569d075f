"""The custom_metadata vocabulary chamberlain writes on runtime secrets it hands over or creates.

Vault keeps a secret's custom_metadata next to its versions, so the record of *who owns this secret, since when,
where it came from and which rotation policy is in force* lives with the secret (SPEC §5), not in a side
database. The keys are a contract: the rotation workflow, ``chamberlain audit`` and ``status`` read them.

Boundary: pure functions building ``dict[str, str]`` and checking Vault's limits; no I/O. Values of a secret never
enter metadata; only a :func:`~chamberlain.values.markers.version_marker` may.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamberlain.authority.kv import check_custom_metadata
from chamberlain.intent.durations import format_duration
from chamberlain.intent.model import RotationPolicySpec

AUTHORITY = "authority"  # "vault": Vault is the authority of this secret (the handover's commit point)
AUTHORITY_VAULT = "vault"
INTENT = "intent"
ENVIRONMENT = "environment"
ORIGIN = "origin"  # "bootstrap" (handed over) or "generated" (created in Vault)
HANDED_OVER_AT = "handed-over-at"
SOURCE = "source"  # <namespace>/<name> of the bootstrap Secret that was handed over
SOURCE_CLUSTER = "source-cluster"
VALUE_MARKER = "value-marker"  # non-reversible marker of the version chamberlain wrote
VALUE_VERSION = "value-version"
LEDGER_SEQ = "ledger-seq"  # the ledger entry recording the transfer (or creation)
CREATED_BY = "created-by"
CREATED_BY_CHAMBERLAIN = "chamberlain"
CREATED_AT = "created-at"
RETIRED_PREFIX = "retired."  # retired.<cluster> = ledger seq of the entry recording that cluster's retirement
POLICY_PREFIX = "policy."


def retired_key(cluster: str) -> str:
    """Several clusters of one environment may share a Vault path; each retires its own bootstrap Secret."""
    return f"{RETIRED_PREFIX}{cluster}"


def policy_metadata(name: str | None, spec: RotationPolicySpec | None) -> dict[str, str]:
    """The rotation policy in force, flattened to ``policy.*`` keys (absent fields are left out)."""
    if spec is None:
        return {}
    out = {
        f"{POLICY_PREFIX}name": name or "inline",
        f"{POLICY_PREFIX}type": spec.type,
        f"{POLICY_PREFIX}revoke-old": "true" if spec.revoke_old else "false",
        f"{POLICY_PREFIX}failure-strategy": spec.failure_strategy,
    }
    for key, value in (("ttl", spec.ttl), ("rotate-before", spec.rotate_before), ("max-overlap", spec.max_overlap)):
        if value is not None:
            out[f"{POLICY_PREFIX}{key}"] = format_duration(value)
    return out


def merged(existing: Mapping[str, str], update: Mapping[str, str]) -> dict[str, str]:
    """``existing`` with ``update`` merged in, checked against Vault's custom_metadata limits *before* any write
    (raises ValueError), so a too-large record fails cleanly instead of half-applying."""
    result = {**existing, **update}
    check_custom_metadata(result)
    return result
