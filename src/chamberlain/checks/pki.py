"""CH105: the PKI grants an intent asks for. An ``x509-vault-pki`` intent's annotations name a PKI mount and role;
render turns them into ``update`` on exactly ``<mount>/sign/<role>`` and ``<mount>/revoke`` in its cluster's
orchestrator policy. A name that is malformed or carries a wildcard or glob, a system path, or a mount inside one
of chamberlain's KV mounts would widen that policy (``secret/data/prod/x`` + ``/sign/r`` is a write into another
team's secret), so validate refuses it, with the file and line of the annotations; render would fail on it too.
Always an error: it stops a demonstrated widening of the orchestrator's grants.

CH131: with ``spec.tenancy``, the PKI role an owner's intent names must be one its owner is given (``pkiRoles``)."""

from __future__ import annotations

from collections.abc import Iterator

from chamberlain import wellknown as wk
from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import Repository
from chamberlain.intent.pki import PkiRefError, check_grant, names_pki, pki_ref, uses_vault_pki
from chamberlain.intent.tenancy import glob_match

RULE = "CH105"


@check("pki-grant", per_file=True)
def pki_grant(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    kv_mounts: list[str] = []
    if platform is not None:
        m = platform.spec.authority.mounts
        kv_mounts = [m.runtime, m.internal_data, m.internal_config]
    for item in repo.intents:
        annotations = item.obj.metadata.annotations
        if not names_pki(annotations):
            continue
        try:
            check_grant(pki_ref(annotations), kv_mounts)
        except PkiRefError as exc:
            # The line of the annotation the error names (its message starts with it), else of the annotations.
            key = next((k for k in (wk.ANNOTATION_X509_PKI_MOUNT, wk.ANNOTATION_X509_PKI_ROLE)
                        if str(exc).startswith(f"annotation {k}") and k in annotations), None)
            where = ("metadata", "annotations", key) if key else ("metadata", "annotations")
            yield Finding(item.file, item.doc.line_of(where), RULE,
                          f"SecretIntent {item.obj.metadata.name}: {exc}; the orchestrator's policy grants exactly "
                          "<mount>/sign/<role> of a real PKI mount and role, nothing wider",
                          object=item.obj.metadata.name)


def _role_granted(pattern: str, sign: str) -> bool:
    """``pattern`` (<mount>/<role>, '*' within a segment) names the role at ``sign`` (<mount>/<role>)."""
    want, have = pattern.split("/"), sign.split("/")
    return len(want) == len(have) and all(glob_match(w, h) for w, h in zip(want, have, strict=True))


@check("pki-role-owner")
def pki_role_owner(repo: Repository) -> Iterator[Finding]:
    """CH131 (a warning: it needs the new ``pkiRoles`` declaration): with ``spec.tenancy``, an owner's
    ``x509-vault-pki`` intent names a PKI role its owner is not given. The role decides which names a certificate
    may carry and the intent chooses them (its DNS-names annotation), so another team's role would sign a
    certificate for that team's services (red team). The platform owners may use any role."""
    platform = repo.platform
    tenancy = platform.spec.tenancy if platform is not None else None
    if tenancy is None:
        return
    for item in repo.intents:
        annotations = item.obj.metadata.annotations
        if not uses_vault_pki(annotations):
            continue
        try:
            ref = pki_ref(annotations)
        except PkiRefError:
            continue  # CH105 says what is wrong
        owner_name = item.obj.spec.owner
        if owner_name in tenancy.platform_owners:
            continue
        owner = tenancy.owner(owner_name)
        granted = owner.pki_roles if owner is not None else []
        role = f"{ref.mount}/{ref.role}"
        if any(_role_granted(p, role) for p in granted):
            continue
        key = wk.ANNOTATION_X509_PKI_ROLE
        yield Finding(item.file, item.doc.line_of(("metadata", "annotations", key)), "CH131",
                      f"SecretIntent {item.obj.metadata.name}: PKI role {role!r} is not among the roles "
                      f"spec.tenancy gives owner {owner_name!r} (pkiRoles); a role decides which names a "
                      "certificate may carry, so another team's role would sign certificates for its names. List "
                      f"it in that owner's pkiRoles ({role}) if it is this team's",
                      object=item.obj.metadata.name)
