"""The PKI secrets engine: sign a CSR at ``<mount>/sign/<role>``, revoke by serial, and the set-up a lab or a test
needs (generate a root CA, write a role).

Belongs here: :class:`Pki`. Only a CSR goes to the server: private keys never cross this boundary. The server's
short error text is kept (it names the CN or field the role refuses) unless it quotes encoded data
(:mod:`.boundary`). Not here: the rotation's view of an issuer
(:class:`chamberlain.authority.pki.VaultCertificateIssuer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chamberlain.authority.errors import AuthorityError
from chamberlain.authority.model import PkiRole
from chamberlain.authority.pki import SignedCertificate
from chamberlain.authority.vault import body
from chamberlain.authority.vault.area import Area


class Pki(Area):
    def sign(self, mount: str, role: str, csr_pem: str, common_name: str, alt_names: Sequence[str],
             ttl: str | None) -> SignedCertificate:
        """Sign ``csr_pem`` at ``<mount>/sign/<role>``."""
        params: dict[str, Any] = {"format": "pem"}
        if alt_names:
            params["alt_names"] = ",".join(alt_names)
        if ttl:
            params["ttl"] = ttl
        what = f"sign a certificate at {mount}/sign/{role}"
        d = body.data(self._c.call(what, lambda h: h.secrets.pki.sign_certificate(
            name=role, csr=csr_pem, common_name=common_name, extra_params=params, mount_point=mount),
            safe_detail=True, fresh=True))
        certificate, issuing_ca = d.get("certificate"), d.get("issuing_ca")
        if not isinstance(certificate, str) or not isinstance(issuing_ca, str):
            raise AuthorityError(f"{what}: the answer lacks the certificate or the issuing CA")
        return SignedCertificate(
            certificate_pem=certificate,
            issuing_ca_pem=issuing_ca,
            chain_pem=tuple(str(c) for c in (d.get("ca_chain") or []) if isinstance(c, str)),
            serial=str(d.get("serial_number") or ""),
        )

    def revoke(self, mount: str, serial: str) -> None:
        """Revoke the certificate ``serial`` (public) at ``<mount>/revoke``. Revoking it again is harmless."""
        self._c.call(f"revoke certificate {serial} at {mount}/revoke", lambda h: h.secrets.pki.revoke_certificate(
            serial_number=serial, mount_point=mount), safe_detail=True, fresh=True)

    def generate_root(self, mount: str, common_name: str, ttl: str = "87600h") -> str:
        """An internal root CA for the mount (its key stays in the server); the certificate's PEM."""
        d = body.data(self._c.call(f"generate a root CA at {mount}", lambda h: h.secrets.pki.generate_root(
            type="internal", common_name=common_name, extra_params={"ttl": ttl}, mount_point=mount),
            safe_detail=True))
        return str(d.get("certificate") or "")

    def write_role(self, mount: str, name: str, role: PkiRole) -> None:
        self._c.call(f"write PKI role {mount}/roles/{name}", lambda h: h.secrets.pki.create_or_update_role(
            name=name, extra_params=role.as_body(), mount_point=mount), safe_detail=True)

    def read_ca(self, mount: str) -> str:
        """The mount's CA certificate (PEM)."""
        return str(self._c.call(f"read the CA of {mount}", lambda h: h.secrets.pki.read_ca_certificate(
            mount_point=mount)) or "")


__all__ = ["Pki"]
