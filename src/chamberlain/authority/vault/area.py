"""The base of every area class: it holds the client core that its requests go through (and so the error
boundary, the session and the clock). Nothing else belongs here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chamberlain.authority.vault.client import VaultClient


class Area:
    def __init__(self, client: VaultClient) -> None:
        self._c = client


__all__ = ["Area"]
