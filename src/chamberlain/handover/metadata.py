"""The custom_metadata vocabulary chamberlain writes on runtime secrets it hands over or creates.

Vault keeps a secret's custom_metadata next to its versions, so the record of *who owns this secret, since when,
where it came from and which rotation policy is in force* lives with the secret (SPEC §5), not in a side
database. The keys themselves are spelled in :mod:`chamberlain.wellknown` (a contract: the rotation workflow,
``chamberlain audit`` and ``status`` read them); this module builds the records.

Boundary: pure functions building ``dict[str, str]`` and checking Vault's limits; no I/O. Values of a secret never
enter metadata; only a :func:`~chamberlain.values.markers.version_marker` may.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamberlain import wellknown as wk
from chamberlain.authority.kv import check_custom_metadata
from chamberlain.intent.durations import format_duration
from chamberlain.intent.model import RotationPolicySpec


def policy_metadata(name: str | None, spec: RotationPolicySpec | None) -> dict[str, str]:
    """The rotation policy in force, flattened to ``policy.*`` keys (absent fields are left out)."""
    if spec is None:
        return {}
    out = {
        wk.POLICY_NAME: name or "inline",
        wk.POLICY_TYPE: spec.type,
        wk.POLICY_REVOKE_OLD: "true" if spec.revoke_old else "false",
        wk.POLICY_FAILURE_STRATEGY: spec.failure_strategy,
    }
    for key, value in ((wk.POLICY_TTL, spec.ttl), (wk.POLICY_ROTATE_BEFORE, spec.rotate_before),
                       (wk.POLICY_MAX_OVERLAP, spec.max_overlap)):
        if value is not None:
            out[key] = format_duration(value)
    return out


def merged(existing: Mapping[str, str], update: Mapping[str, str]) -> dict[str, str]:
    """``existing`` with ``update`` merged in, checked against Vault's custom_metadata limits *before* any write
    (:class:`~chamberlain.authority.errors.MetadataTooLarge`), so a too-large record fails cleanly instead of
    half-applying."""
    result = {**existing, **update}
    check_custom_metadata(result)
    return result
