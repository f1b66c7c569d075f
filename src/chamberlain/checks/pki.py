"""CH105: the PKI grants an intent asks for. An ``x509-vault-pki`` intent's annotations name a PKI mount and role;
render turns them into ``update`` on exactly ``<mount>/sign/<role>`` and ``<mount>/revoke`` in its cluster's
orchestrator policy. A name that is malformed or carries a wildcard or glob, a system path, or a mount inside one
of chamberlain's KV mounts would widen that policy (``secret/data/prod/x`` + ``/sign/r`` is a write into another
team's secret), so validate refuses it, with the file and line of the annotations; render would fail on it too.
Always an error: it stops a demonstrated widening of the orchestrator's grants."""

from __future__ import annotations

from collections.abc import Iterator

from chamberlain import wellknown as wk
from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import Repository
from chamberlain.intent.pki import PkiRefError, check_grant, names_pki, pki_ref

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
