"""The audit trail: an append-only, hash-chained ledger of every authority-changing event, stored in Vault.

Belongs here: ledger entries, appending, verification and per-secret provenance. No values are ever recorded:
entries carry names, paths, versions, reasons and outcomes.
"""

from chamberlain.audit.ledger import Ledger, LedgerEntry, LedgerReader, Verification

__all__ = ["Ledger", "LedgerEntry", "LedgerReader", "Verification"]
