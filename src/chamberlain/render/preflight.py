"""Render's own refusals, checked at validate time (CH103): validate-clean implies render succeeds.

Render refuses a few things only it knows about: a consumer key that collides with the key chamberlain reserves
for its version marker, and ``x509-vault-pki`` annotations that name no role, a malformed role or a system path
as the PKI mount. They are registered here as a validate check (``render-preflight``), using the very functions
render calls, so the two cannot drift apart; ``tests/unit/test_validate_implies_render.py`` is the property that
keeps it so.

Lives in the render package because it calls render's (and the authority adapter's) own rules; the check registry
imports it by name.
"""

from __future__ import annotations

from collections.abc import Iterator

from chamberlain.authority.pki import PkiRefError, pki_ref, uses_vault_pki
from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import Repository
from chamberlain.render.eso import METADATA_KEY


@check("render-preflight", per_file=True)
def check_renderable(repo: Repository) -> Iterator[Finding]:
    for loaded in repo.intents:
        intent = loaded.obj
        label = f"SecretIntent/{intent.name}"
        annotations = intent.metadata.annotations
        if uses_vault_pki(annotations):
            try:
                pki_ref(annotations)
            except PkiRefError as exc:
                yield Finding(loaded.file, loaded.line_of("metadata", "annotations"), "CH103",
                              f"{label}: {exc}; render would refuse it", object=label)
        for key in (intent.spec.source.generate or {}):
            if key == METADATA_KEY:
                yield Finding(loaded.file, loaded.line_of("spec", "source", "generate", key), "CH103",
                              f"{label}: key {METADATA_KEY!r} is reserved for chamberlain's version marker; "
                              "render would drop or refuse it", object=label)
        for i, consumer in enumerate(intent.spec.consumers):
            if METADATA_KEY in (consumer.keys or {}) or METADATA_KEY in (consumer.template or {}):
                field = "keys" if METADATA_KEY in (consumer.keys or {}) else "template"
                yield Finding(loaded.file, loaded.line_of("spec", "consumers", i, field, METADATA_KEY), "CH103",
                              f"{label}: consumer {consumer.namespace}/{consumer.secret_name} maps key "
                              f"{METADATA_KEY!r}, which is reserved for chamberlain's version marker; render "
                              "would refuse it", object=label)


__all__ = ["METADATA_KEY", "check_renderable"]
