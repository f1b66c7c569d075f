"""The runtime authority on hvac, one module per area as hvac has them; the only package that imports hvac.

==============  ==========================================================================================
module          area
==============  ==========================================================================================
``client``      :class:`VaultClient`: the connection, the session (login, renewal, re-login), the areas
``boundary``    the one error boundary: hvac and transport exceptions to typed errors
``flavor``      where OpenBao and Vault differ, and how to tell them apart
``kv``          KV v2 (``client.kv``): the :class:`~chamberlain.authority.kv.KV` protocol
``seal``        ``client.seal``: seal status, health, leader, init, unseal, rekey, generate-root, key status
``auth``        ``client.auth``: tokens, Kubernetes login, auth mounts, Kubernetes auth config and roles
``policy``      ``client.policies``: ACL policies
``audit``       ``client.audit``: audit devices
``mounts``      ``client.mounts``: secrets engines and KV settings
``pki``         ``client.pki``: sign and revoke (and a root CA and roles for set-up)
``transit``     ``client.transit``: a key, encrypt, decrypt, rotate
``logical``     ``client.logical``: raw path access, for probes only
``raft``        ``client.raft``: integrated-storage snapshots (take, install) and the raft configuration
``body``        reading hvac's answers (envelopes, listings)
``area``        the base of every area class (holds the client core)
==============  ==========================================================================================

Every area takes the mount explicitly (as hvac does with ``mount_point=``) and uses the same verbs (``list``,
``read``, ``write``, ``enable``, ``delete``...). Answers are typed (:mod:`chamberlain.authority.model`), never raw
dicts; secret material travels only in value objects whose repr hides it.
"""

from chamberlain.authority.vault.boundary import map_error
from chamberlain.authority.vault.client import (
    DEFAULT_TIMEOUT,
    VaultClient,
    client_with_token,
    login_kubernetes,
    unauthenticated,
)
from chamberlain.authority.vault.kv import VaultKV

__all__ = [
    "DEFAULT_TIMEOUT",
    "VaultClient",
    "VaultKV",
    "client_with_token",
    "login_kubernetes",
    "map_error",
    "unauthenticated",
]
