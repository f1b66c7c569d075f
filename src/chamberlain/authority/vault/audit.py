"""Audit devices (``sys/audit``): list, enable, disable.

Belongs here: :class:`Audit`, typed as :class:`~chamberlain.authority.model.AuditDevice`. OpenBao accepts audit
devices only from its configuration file: enabling one there, or disabling a declared one, raises
:class:`~chamberlain.authority.errors.Unsupported` (mapped in :mod:`.boundary`); :attr:`Audit.declarative` says
which kind of server this is. Not here: which device should exist (:mod:`chamberlain.authority.configure`).
"""

from __future__ import annotations

from chamberlain.authority.model import AuditDevice
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area
from chamberlain.authority.vault.flavor import AUDIT_DEVICES_BY_API


# Same verbs as every area (list, enable, disable), as hvac's areas have: the shape repeats by design.
class Audit(Area):
    @property
    def declarative(self) -> bool:
        """True when audit devices are declared in the server's configuration file (OpenBao), not enabled through
        the API (Vault)."""
        return not AUDIT_DEVICES_BY_API[self._c.flavor]

    def list(self) -> dict[str, AuditDevice]:
        resp = self._c.call("list audit devices", lambda h: h.sys.list_enabled_audit_devices())
        return {path: AuditDevice.from_api(info) for path, info in body.listing(resp).items()}

    def enable(self, path: str, device: AuditDevice) -> None:
        self._c.call(f"enable audit device {path}/", lambda h: h.sys.enable_audit_device(
            device_type=device.type, description=device.description, options=dict(device.options), path=path),
            safe_detail=True)

    def disable(self, path: str) -> None:
        self._c.call(f"disable audit device {path}/", lambda h: h.sys.disable_audit_device(path=path))


__all__ = ["Audit"]
