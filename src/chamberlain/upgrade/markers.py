"""The marker re-key of one secret: its ``v1`` marker replaced by the ``v2`` marker of the same Vault version,
with the v1 marker and that version recorded beside it (:func:`chamberlain.values.markers.same_version`).

Value-free in every output: the data is read only to compute the keyed marker (in the authority, by transit HMAC)
and to check that the stored v1 marker is the one of that version. A v1 marker that does not match its version's
data is left alone and reported (``inconsistent``): re-keying it would claim consumers are current when they are
not.
"""

from __future__ import annotations

from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.authority.kv import KV
from chamberlain.intent.paths import VaultPath
from chamberlain.values.markers import VALUE_MARKER_V1, VALUE_MARKER_V1_VERSION, HmacAPI, TransitMarkers, version_marker

Outcome = Literal["rekeyed", "current", "inconsistent", "absent"]


def is_legacy(custom: dict[str, str] | None) -> bool:
    """Whether the secret's marker in force is still the previous release's unkeyed form."""
    return custom is not None and custom.get(wk.VALUE_MARKER, "").startswith("v1:")


def rekey(kv: KV, transit: HmacAPI, vault: VaultPath) -> Outcome:
    """Re-key ``vault``'s marker; idempotent (a second call finds a v2 marker: ``current``)."""
    meta = kv.read_metadata(vault.mount, vault.path)
    if meta is None:
        return "absent"
    custom = dict(meta.custom)
    if not is_legacy(custom):
        return "current"
    version = custom.get(wk.VALUE_VERSION, "")
    if not version.isdigit() or len(version) > 9:
        return "inconsistent"
    current = kv.read(vault.mount, vault.path, int(version))
    if current is None or current.deleted or version_marker(vault.full, current.data) != custom[wk.VALUE_MARKER]:
        return "inconsistent"
    keyed = TransitMarkers(transit).of(vault, current.data)
    # One metadata write carries all three keys: there is no moment where the v2 marker is in force without the
    # v1 marker it replaced (a consumer would look out of date and be restarted).
    kv.update_custom_metadata(vault.mount, vault.path, {
        wk.VALUE_MARKER: keyed, VALUE_MARKER_V1: custom[wk.VALUE_MARKER], VALUE_MARKER_V1_VERSION: version})
    return "rekeyed"


__all__ = ["Outcome", "is_legacy", "rekey"]
