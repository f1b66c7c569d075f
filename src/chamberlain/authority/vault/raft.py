"""Integrated storage snapshots (``sys/storage/raft/snapshot``, ``snapshot-force``) and the raft configuration.

Belongs here: :class:`Raft`: take a snapshot (the whole storage, still encrypted by the server's barrier: opening
it takes the unseal shares), install one, read which nodes form the cluster. The snapshot travels as bytes in a
value object whose repr hides it; nothing here writes it anywhere.

Not here: encrypting, storing or checking a backup (:mod:`chamberlain.authority.backup`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chamberlain.authority.errors import AuthorityError
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area

SNAPSHOT_PATH = "sys/storage/raft/snapshot"
SNAPSHOT_FORCE_PATH = "sys/storage/raft/snapshot-force"
SNAPSHOT_TIMEOUT = 300  # a large storage streams for a while; the client's default (30 s) is for small answers


@dataclass(frozen=True)
class Snapshot:
    data: bytes = field(repr=False)

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class RaftServer:
    node_id: str
    address: str
    leader: bool
    voter: bool


class Raft(Area):
    def snapshot(self) -> Snapshot:
        """The storage as the server streams it (gzip'ed tar; the values inside stay barrier-encrypted)."""

        def fetch(h: Any) -> bytes:
            resp = h.adapter.get(f"/v1/{SNAPSHOT_PATH}", stream=True, timeout=SNAPSHOT_TIMEOUT)
            content = getattr(resp, "content", None)
            if not isinstance(content, bytes):
                raise AuthorityError(f"read {SNAPSHOT_PATH}: the server answered no snapshot")
            return content

        return Snapshot(self._c.call(f"read {SNAPSHOT_PATH}", fetch, fresh=True))

    def restore(self, snapshot: Snapshot, *, force: bool) -> None:
        """Install ``snapshot``. Without ``force`` the server refuses one made with other unseal keys (another
        authority); ``force`` installs it anyway, after which the server's keys are the snapshot's."""
        path = SNAPSHOT_FORCE_PATH if force else SNAPSHOT_PATH
        self._c.call(f"write {path}", lambda h: h.adapter.post(f"/v1/{path}", data=snapshot.data,
                                                               timeout=SNAPSHOT_TIMEOUT), safe_detail=True)

    def configuration(self) -> list[RaftServer]:
        d = body.data(self._c.call("read raft configuration",
                                   lambda h: h.adapter.get("/v1/sys/storage/raft/configuration")))
        servers = (d.get("config") or {}).get("servers") or []
        return [RaftServer(str(s.get("node_id", "")), str(s.get("address", "")), bool(s.get("leader")),
                           bool(s.get("voter"))) for s in servers if isinstance(s, dict)]


__all__ = ["SNAPSHOT_FORCE_PATH", "SNAPSHOT_PATH", "Raft", "RaftServer", "Snapshot"]
