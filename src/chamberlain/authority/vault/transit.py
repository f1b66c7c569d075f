"""The transit secrets engine: a named key, encrypt and decrypt with it, rotate it (it will serve auto-unseal).

Belongs here: :class:`Transit`. Plaintexts go in as bytes and come back inside
:class:`~chamberlain.authority.model.Plaintext` (repr hidden); ciphertexts (``vault:v<n>:...``) are not secret.
Not here: which key unseals what.
"""

from __future__ import annotations

import base64
from typing import Any

from chamberlain.authority.errors import AuthorityError, NotFound
from chamberlain.authority.model import Plaintext, TransitKey
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area


def _key(name: str, d: dict[str, Any]) -> TransitKey:
    return TransitKey(name, str(d.get("type") or ""), int(d.get("latest_version") or 0),
                      int(d.get("min_decryption_version") or 1))


class Transit(Area):
    def read_key(self, mount: str, name: str) -> TransitKey | None:
        try:
            resp = self._c.call(f"read transit key {mount}/keys/{name}", lambda h: h.secrets.transit.read_key(
                name=name, mount_point=mount), fresh=True)
        except NotFound:
            return None
        return _key(name, body.data(resp))

    def ensure_key(self, mount: str, name: str, key_type: str = "aes256-gcm96") -> TransitKey:
        """The key ``name``, created when absent (an existing key is never changed)."""
        existing = self.read_key(mount, name)
        if existing is not None:
            return existing
        self._c.call(f"create transit key {mount}/keys/{name}", lambda h: h.secrets.transit.create_key(
            name=name, key_type=key_type, mount_point=mount), safe_detail=True, fresh=True)
        created = self.read_key(mount, name)
        if created is None:
            raise AuthorityError(f"create transit key {mount}/keys/{name}: the key is not there afterwards")
        return created

    def encrypt(self, mount: str, name: str, plaintext: bytes) -> str:
        encoded = base64.b64encode(plaintext).decode()
        d = body.data(self._c.call(f"encrypt with {mount}/keys/{name}", lambda h: h.secrets.transit.encrypt_data(
            name=name, plaintext=encoded, mount_point=mount), fresh=True))
        return str(d.get("ciphertext") or "")

    def decrypt(self, mount: str, name: str, ciphertext: str) -> Plaintext:
        d = body.data(self._c.call(f"decrypt with {mount}/keys/{name}", lambda h: h.secrets.transit.decrypt_data(
            name=name, ciphertext=ciphertext, mount_point=mount), fresh=True))
        return Plaintext(base64.b64decode(str(d.get("plaintext") or "")))

    def sign(self, mount: str, name: str, data: bytes) -> str:
        """The signature (``vault:v<n>:<base64>``) of ``data`` with key ``name`` (ed25519 signs ``data`` itself)."""
        encoded = base64.b64encode(data).decode()
        d = body.data(self._c.call(f"sign with {mount}/keys/{name}", lambda h: h.adapter.post(
            f"/v1/{mount}/sign/{name}", json={"input": encoded}), fresh=True))
        return str(d.get("signature") or "")

    def sign_batch(self, mount: str, name: str, items: list[bytes]) -> list[str]:
        """The signatures of ``items``, in order, from one request (``batch_input``): a ledger group commit signs
        every entry of the group at once."""
        if not items:
            return []
        batch = [{"input": base64.b64encode(item).decode()} for item in items]
        d = body.data(self._c.call(f"sign {len(items)} items with {mount}/keys/{name}", lambda h: h.adapter.post(
            f"/v1/{mount}/sign/{name}", json={"batch_input": batch}), fresh=True))
        results = d.get("batch_results") or []
        if len(results) != len(items) or any(not isinstance(r, dict) or r.get("error") or not r.get("signature")
                                             for r in results):
            raise AuthorityError(f"sign with {mount}/keys/{name}: the batch answer is incomplete")
        return [str(r["signature"]) for r in results]

    def hmac(self, mount: str, name: str, data: bytes) -> str:
        """The HMAC-SHA256 (``vault:v<n>:<base64>``) of ``data`` with key ``name``'s HMAC key (never exported)."""
        encoded = base64.b64encode(data).decode()
        d = body.data(self._c.call(f"hmac with {mount}/keys/{name}", lambda h: h.adapter.post(
            f"/v1/{mount}/hmac/{name}/sha2-256", json={"input": encoded}), fresh=True))
        return str(d.get("hmac") or "")

    def public_keys(self, mount: str, name: str) -> dict[int, str]:
        """Key version -> public key (base64 of the raw key, as the API gives it) of an asymmetric key; {} when
        the key does not exist."""
        try:
            resp = self._c.call(f"read transit key {mount}/keys/{name}", lambda h: h.secrets.transit.read_key(
                name=name, mount_point=mount), fresh=True)
        except NotFound:
            return {}
        versions = body.data(resp).get("keys") or {}
        return {int(v): str(k["public_key"]) for v, k in versions.items()
                if str(v).isdigit() and isinstance(k, dict) and k.get("public_key")}

    def rotate_key(self, mount: str, name: str) -> TransitKey:
        self._c.call(f"rotate transit key {mount}/keys/{name}", lambda h: h.secrets.transit.rotate_key(
            name=name, mount_point=mount), fresh=True)
        rotated = self.read_key(mount, name)
        if rotated is None:
            raise NotFound(f"rotate transit key {mount}/keys/{name}: not found (404)")
        return rotated


__all__ = ["Transit"]
