"""ACL policies (``sys/policies/acl``): list, read, write, delete, by name, the text as HCL.

Belongs here: :class:`Policies`. Not here: which policies should exist (:mod:`chamberlain.authority.configure`,
rendered by :mod:`chamberlain.render.vault_bundle`).
"""

from __future__ import annotations

from chamberlain.authority.errors import NotFound
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area


class Policies(Area):
    def list(self) -> list[str]:
        return body.keys(self._c.call("list ACL policies", lambda h: h.sys.list_acl_policies()))

    def read(self, name: str) -> str | None:
        """The policy's HCL text; None when there is no such policy."""
        try:
            resp = self._c.call(f"read policy {name}", lambda h: h.sys.read_acl_policy(name=name))
        except NotFound:
            return None
        return str(body.data(resp).get("policy") or "")

    def write(self, name: str, text: str) -> None:
        self._c.call(f"write policy {name}", lambda h: h.sys.create_or_update_acl_policy(name=name, policy=text),
                     safe_detail=True)

    def delete(self, name: str) -> None:
        self._c.call(f"delete policy {name}", lambda h: h.sys.delete_acl_policy(name=name))


__all__ = ["Policies"]
