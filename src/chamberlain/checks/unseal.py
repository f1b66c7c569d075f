"""The unseal-share export in the repository (``kind: UnsealShares``, see :mod:`chamberlain.intent.unseal_shares`):
a share that is not age ciphertext (CH108), a malformed document (CH109), a custodian's share more than one
recipient can open (CH110), and an export that no longer matches what the Platform declares or a second export of
the same authority (CH111, a warning: the shares still unseal, but a rekey is due or one copy is stale).

Pure: the loaded repository in, findings out. A share is never quoted.
"""

from __future__ import annotations

from collections.abc import Iterator

from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent import unseal_shares as fmt
from chamberlain.intent.loader import Repository
from chamberlain.intent.model import Platform


def _expected_fingerprint(platform: Platform) -> str:
    trust = platform.spec.root_of_trust
    if trust.custody is None:
        return fmt.recipients_fingerprint(trust.age_recipients)
    return fmt.custody_fingerprint(trust.age_recipients,
                                   [(c.name, c.age_recipient) for c in trust.custody.custodians],
                                   trust.custody.threshold)


@check("unseal-share-export", per_file=True)
def unseal_share_export(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    expected = _expected_fingerprint(platform) if platform is not None else None
    seen: dict[str, str] = {}  # authority address -> file of its first export
    for doc in repo.unseal_exports:
        label = f"{fmt.KIND}/{doc.name or '?'}"
        problems = fmt.problems(doc.data)
        for p in problems:
            yield Finding(doc.file, doc.line_of(p.loc), p.rule, f"{label}: {p.message}", object=label,
                          subject=".".join(str(part) for part in p.loc) or None)
        spec = doc.data.get("spec") if isinstance(doc.data, dict) else None
        if not isinstance(spec, dict) or any(p.rule == fmt.RULE_MALFORMED for p in problems):
            continue
        sealed_to = spec.get("sealedTo")
        if expected is not None and sealed_to != expected:
            yield Finding(doc.file, doc.line_of(("spec", "sealedTo")), fmt.RULE_STALE,
                          f"{label}: the shares are sealed to another custody (or root recipients) than the "
                          "Platform declares now; after `chamberlain authority rekey`, refresh the export with "
                          "`chamberlain authority export-shares`", object=label, subject="spec.sealedTo")
        authority = str(spec.get("authority"))
        if authority in seen:
            yield Finding(doc.file, doc.line_of(("spec", "authority")), fmt.RULE_STALE,
                          f"{label}: a second export of the authority {authority} (the first is in "
                          f"{seen[authority]}); one of them is stale: keep the one `chamberlain authority "
                          "export-shares` writes", object=label, subject="spec.authority")
        else:
            seen[authority] = doc.file
