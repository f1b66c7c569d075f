"""A custody change read against the shares in force: who keeps a share, who gets one, who loses theirs.

Pure. Input: the holders of the stored shares (their names, from the sealed material) and whether the material
is sealed as the Platform declares now (a fingerprint comparison the material already records), plus the
Platform's custody. Output: the plan a lost or replaced custodian key needs — the rekey that issues new shares to
the declared set, after which the lost key's share opens nothing the server accepts.

A lost key is refused while nothing in the Platform changed: a rekey to the same custodian list would seal the new
share to the lost key again. Give the custodian a new ``ageRecipient`` (or replace them) in Git first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from chamberlain.errors import UsageError


@dataclass(frozen=True)
class CustodyPlan:
    stored: tuple[str, ...]  # holders of the shares in force ("share-N" without custody)
    declared: tuple[str, ...]  # custodians the Platform names now (empty: no custody)
    threshold_in_force: int
    threshold: int  # the new set's
    matches_platform: bool  # the shares in force are already sealed as the Platform declares
    lost: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def added(self) -> list[str]:
        return [n for n in self.declared if n not in self.stored]

    @property
    def removed(self) -> list[str]:
        return [n for n in self.stored if n not in self.declared]

    @property
    def kept(self) -> list[str]:
        return [n for n in self.declared if n in self.stored]

    @property
    def can_open(self) -> list[str]:
        """Holders of the set in force who can still take part in the rekey (not the lost ones)."""
        return [n for n in self.stored if n not in self.lost]

    def as_dict(self) -> dict[str, object]:
        return {"inForce": list(self.stored), "declared": list(self.declared), "added": self.added,
                "removed": self.removed, "kept": self.kept, "lost": list(self.lost),
                "thresholdInForce": self.threshold_in_force, "threshold": self.threshold,
                "matchesPlatform": self.matches_platform, "warnings": list(self.warnings)}


def plan(stored: Sequence[str], threshold_in_force: int, declared: Sequence[str], threshold: int, *,
         matches_platform: bool, lost: Sequence[str] = ()) -> CustodyPlan:
    """The rekey a custody change needs; :class:`UsageError` when it cannot help (nothing changed for a lost key,
    an unknown name, or too few custodians left to reach the threshold in force)."""
    unknown = [n for n in lost if n not in stored]
    if unknown:
        raise UsageError(f"--lost {', '.join(unknown)}: not a holder of the shares in force "
                         f"({', '.join(stored) or 'none'})")
    if lost and matches_platform:
        raise UsageError(f"{', '.join(lost)}: the Platform still declares the custody in force, so a rekey would "
                         "seal the new share to the lost key again; give them a new ageRecipient (or replace them) "
                         "in rootOfTrust.custody first. Nothing was changed")
    remaining = [n for n in stored if n not in lost]
    if len(remaining) < threshold_in_force:
        raise UsageError(f"only {len(remaining)} holders of the shares in force remain ({', '.join(remaining)}) and "
                         f"a rekey needs {threshold_in_force}: the authority cannot be rekeyed; restore from a "
                         "backup or break glass (docs/design/authority.md)")
    warnings = []
    still = [n for n in lost if n in declared]
    if still:
        warnings.append(f"{', '.join(still)} stays declared: make sure the ageRecipient in the Platform is the new "
                        "key, not the lost one (a recipient cannot be compared with the sealed share)")
    if matches_platform and not lost:
        warnings.append("the shares in force already match the Platform: the rekey issues fresh shares to the same "
                        "custodians (right for an exposed share; to replace a custodian, change the Platform first)")
    return CustodyPlan(tuple(stored), tuple(declared), threshold_in_force, threshold, matches_platform,
                       tuple(lost), tuple(warnings))


__all__ = ["CustodyPlan", "plan"]
