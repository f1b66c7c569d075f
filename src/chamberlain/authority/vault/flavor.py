"""Where OpenBao and Vault differ, written down once: how to tell them apart, and which endpoints differ.

Detection: OpenBao forked Vault at 1.14 and numbers its releases from 2.0; its seal status carries
``commit_date`` where Vault's carries ``build_date``. Either sign is enough.

Differences the adapter handles (everything else is the same HTTP API; checked against OpenBao 2.7.2 and Vault
1.21):

==========================  =====================================  =============================================
operation                   Vault                                   OpenBao
==========================  =====================================  =============================================
rekey the unseal shares     ``sys/rekey/*``, unauthenticated        ``sys/rotate/root/{init,update,verify}``, with a
                                                                    token (chamberlain: the configurator's); the
                                                                    unauthenticated ``sys/rekey/*`` answers
                                                                    "unsupported operation" from 2.5
rekey the recovery keys     ``sys/rekey-recovery-key/*``            ``sys/rotate/recovery/{init,update,verify}``, with
(auto-unseal)                                                       a token
generate-root (break-glass) ``sys/generate-root/*``                 off by default from 2.5.3 (listener option
                                                                    ``disable_unauthed_generate_root_endpoints``):
                                                                    :class:`~chamberlain.authority.errors.Unsupported`
audit devices               enabled through ``sys/audit/<path>``    declared in the server configuration file
                                                                    (``audit "file" "<path>" {...}``); the API
                                                                    refuses to enable one, or to disable a declared
                                                                    one: chamberlain verifies instead
                                                                    (:data:`AUDIT_DEVICES_BY_API`)
==========================  =====================================  =============================================

Not here: the requests themselves (each area module makes its own, choosing by :class:`RekeyPaths`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chamberlain.authority.model import Flavor


def flavor_of(body: Mapping[str, Any]) -> Flavor:
    """The flavour of the server that answered ``sys/seal-status`` or ``sys/health`` with ``body``."""
    if "commit_date" in body and "build_date" not in body:
        return Flavor.OPENBAO
    major = str(body.get("version") or "").lstrip("v").split(".", 1)[0]
    return Flavor.OPENBAO if major.isdigit() and int(major) >= 2 else Flavor.VAULT


@dataclass(frozen=True)
class RekeyPaths:
    """The endpoints of a rekey with verification (paths without ``/v1/``)."""

    init: str
    update: str
    verify: str
    authenticated: bool  # the response is wrapped in ``data`` and a token is needed


REKEY_PATHS: Mapping[Flavor, RekeyPaths] = {
    Flavor.VAULT: RekeyPaths("sys/rekey/init", "sys/rekey/update", "sys/rekey/verify", authenticated=False),
    Flavor.OPENBAO: RekeyPaths("sys/rotate/root/init", "sys/rotate/root/update", "sys/rotate/root/verify",
                               authenticated=True),
}

#: The same for the *recovery* keys of an auto-unsealed server (same request and answer shapes). OpenBao's were
#: checked against 2.7.2 (``sys/rekey-recovery-key/*`` answers "unsupported path" there); Vault's are its
#: documented endpoints, not exercised by the lab (its auto-unseal lab runs OpenBao).
RECOVERY_REKEY_PATHS: Mapping[Flavor, RekeyPaths] = {
    Flavor.VAULT: RekeyPaths("sys/rekey-recovery-key/init", "sys/rekey-recovery-key/update",
                             "sys/rekey-recovery-key/verify", authenticated=False),
    Flavor.OPENBAO: RekeyPaths("sys/rotate/recovery/init", "sys/rotate/recovery/update",
                               "sys/rotate/recovery/verify", authenticated=True),
}


#: Whether the server accepts audit devices through ``sys/audit`` (Vault) or only from its configuration file
#: (OpenBao, unless ``unsafe_allow_api_audit_creation`` is set, which chamberlain never asks for).
AUDIT_DEVICES_BY_API: Mapping[Flavor, bool] = {Flavor.VAULT: True, Flavor.OPENBAO: False}


__all__ = ["AUDIT_DEVICES_BY_API", "RECOVERY_REKEY_PATHS", "REKEY_PATHS", "RekeyPaths", "flavor_of"]
