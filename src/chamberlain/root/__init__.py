"""Phase 0, the root of trust: the offline age identity and the repository's knowledge of its public half.

Belongs here: creating the identity once, outside any repository (``root init``), reading its recipient, and
recording the recipient where Git needs it — ``Platform.spec.rootOfTrust.ageRecipients`` and the ``.sops.yaml``
creation rules — with round-trip YAML edits that keep the user's comments and layout. Not here: encrypting or
decrypting (:mod:`chamberlain.bootstrap`), Vault unseal material (authority).

The identity's secret half is never printed, logged or copied by this package; only ``--print-identity`` reads it
back, on the user's explicit request.
"""

from chamberlain.root.identity import RootIdentity, default_identity_path, ensure_identity, recipient_of
from chamberlain.root.repo import RepoUpdate, update_repository

__all__ = [
    "RepoUpdate",
    "RootIdentity",
    "default_identity_path",
    "ensure_identity",
    "recipient_of",
    "update_repository",
]
