"""Raw path access (read, write, list, delete any path), for probes only: the least-privilege tests and a
break-glass script ask "may this identity do X at path P?" of paths no area covers.

chamberlain's own workflows never use it: they use the typed areas. Answers come back as
:class:`~chamberlain.authority.model.RawResponse` (repr hidden: a raw body may hold secret data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.authority.errors import NotFound
from chamberlain.authority.model import RawResponse
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area


class Logical(Area):
    def read(self, path: str) -> RawResponse | None:
        try:
            resp = self._c.call(f"read {path}", lambda h: h.read(path))
        except NotFound:
            return None
        return RawResponse(body.data(resp)) if resp else None

    def write(self, path: str, payload: Mapping[str, Any]) -> None:
        self._c.call(f"write {path}", lambda h: h.write_data(path, data=dict(payload)), safe_detail=True)

    def list(self, path: str) -> list[str]:
        try:
            return body.keys(self._c.call(f"list {path}", lambda h: h.list(path)))
        except NotFound:
            return []

    def delete(self, path: str) -> None:
        try:
            self._c.call(f"delete {path}", lambda h: h.delete(path))
        except NotFound:
            return


__all__ = ["Logical"]
