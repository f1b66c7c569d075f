"""Secrets engines (``sys/mounts``) and a KV v2 mount's settings (``<mount>/config``).

Belongs here: :class:`Mounts` (list, enable, tune, disable, read and write the KV settings), typed as
:class:`~chamberlain.authority.model.MountInfo` and :class:`~chamberlain.authority.model.KvConfig`. Not here: the
secrets inside a mount (:mod:`.kv`, :mod:`.pki`, :mod:`.transit`), which mounts should exist
(:mod:`chamberlain.authority.configure`).
"""

from __future__ import annotations

from chamberlain.authority.errors import AuthorityUnavailable
from chamberlain.authority.model import KvConfig, MountInfo
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area

KV_UPGRADE_TIMEOUT = 30.0  # seconds a new KV v2 mount may take before it serves requests


class Mounts(Area):
    def list(self) -> dict[str, MountInfo]:
        resp = self._c.call("list secret mounts", lambda h: h.sys.list_mounted_secrets_engines())
        return {path: MountInfo.from_api(info) for path, info in body.listing(resp).items()}

    def enable(self, path: str, mount: MountInfo) -> None:
        self._c.call(f"enable secrets engine at {path}/", lambda h: h.sys.enable_secrets_engine(
            backend_type=mount.type, path=path, description=mount.description, options=dict(mount.options)),
            safe_detail=True)
        if mount.type == "kv" and str(mount.options.get("version")) == "2":
            self.wait_kv_ready(path)

    def wait_kv_ready(self, mount: str, timeout: float = KV_UPGRADE_TIMEOUT, interval: float = 0.2) -> None:
        """Wait until a KV v2 mount serves requests: a new one upgrades its storage first and answers 400
        meanwhile (OpenBao for about a second, longer on a busy host; Vault too, usually faster)."""
        clock = self._c.clock
        deadline = clock.monotonic() + timeout
        while True:
            try:
                self.read_kv_config(mount)
                return
            except AuthorityUnavailable:
                if clock.monotonic() > deadline:
                    raise
            clock.sleep(interval)

    def tune(self, path: str, description: str) -> None:
        self._c.call(f"tune {path}/", lambda h: h.sys.tune_mount_configuration(path=path, description=description),
                     safe_detail=True)

    def disable(self, path: str) -> None:
        self._c.call(f"disable secrets engine {path}/", lambda h: h.sys.disable_secrets_engine(path=path))

    def read_kv_config(self, mount: str) -> KvConfig:
        resp = self._c.call(f"read {mount}/config", lambda h: h.secrets.kv.v2.read_configuration(mount_point=mount))
        return KvConfig.from_api(body.data(resp))

    def configure_kv(self, mount: str, config: KvConfig) -> None:
        self._c.call(f"write {mount}/config", lambda h: h.secrets.kv.v2.configure(
            mount_point=mount, **config.as_body()), safe_detail=True)


__all__ = ["Mounts"]
