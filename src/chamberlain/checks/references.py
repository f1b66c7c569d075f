"""Reference rules: environments (CH010), policies (CH011, CH013), other intents (CH014) and the agreement of
classification with source (CH015). Each lookup goes through a dict, so the rules stay linear in repo size."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.durations import format_duration
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.intent.model import RotationPolicySpec, SecretIntent

_SOURCE_FOR_CLASS = {
    "bootstrap": "bootstrap",
    "runtime": "generate",
    "derived": "publication",
    "config": "publication",
}


def _label(item: Loaded[SecretIntent]) -> str:
    return f"SecretIntent/{item.obj.metadata.name}"


@check("unknown-environments")
def unknown_environments(repo: Repository) -> Iterator[Finding]:
    platform = repo.platform
    if platform is None:
        return
    known = {e.name for e in platform.spec.environments}
    for item in repo.intents:
        for i, env in enumerate(item.obj.spec.environments or []):
            if env not in known:
                yield Finding(
                    item.file, item.line_of("spec", "environments", i), "CH010",
                    f"{_label(item)}: environment {env!r} is not declared by the Platform "
                    f"(known: {', '.join(sorted(known))})",
                    object=_label(item),
                )


def _rotate_before_findings(
    item: Loaded[Any], loc: tuple[str, ...], label: str, spec: RotationPolicySpec
) -> Iterator[Finding]:
    """CH013 at ``loc`` in ``item``'s document. The line is computed only for a finding: ``line_of`` composes
    and caches the document's node tree, which a clean repository should not pay for."""
    if spec.ttl is not None and spec.rotate_before is not None and spec.rotate_before >= spec.ttl:
        yield Finding(
            item.file, item.line_of(*loc), "CH013",
            f"{label}: rotateBefore {format_duration(spec.rotate_before)} is not shorter than ttl "
            f"{format_duration(spec.ttl)}; the secret would always be due",
            object=label,
        )


@check("policies")
def policies(repo: Repository) -> Iterator[Finding]:
    index = repo.policy_index()
    for p in repo.policies:
        label = f"RotationPolicy/{p.obj.metadata.name}"
        yield from _rotate_before_findings(p, ("spec", "rotateBefore"), label, p.obj.spec)
    platform_item = repo.platforms[0] if len(repo.platforms) == 1 else None
    default = platform_item.obj.spec.defaults.rotation_policy if platform_item else None
    if platform_item is not None and default is not None and default not in index:
        yield Finding(
            platform_item.file, platform_item.line_of("spec", "defaults", "rotationPolicy"), "CH011",
            f"Platform default rotation policy {default!r} is not declared",
            object=f"Platform/{platform_item.obj.metadata.name}",
        )
    for item in repo.intents:
        rotation = item.obj.spec.rotation
        if isinstance(rotation, RotationPolicySpec):
            yield from _rotate_before_findings(item, ("spec", "rotation", "rotateBefore"), _label(item), rotation)
        elif rotation is not None and rotation.policy not in index:
            yield Finding(
                item.file, item.line_of("spec", "rotation", "policy"), "CH011",
                f"{_label(item)}: rotation policy {rotation.policy!r} is not declared",
                object=_label(item),
            )
        elif rotation is None and default is None and platform_item is not None:
            yield Finding(
                item.file, item.line_of("spec"), "CH011",
                f"{_label(item)}: no rotation policy and the Platform declares no default",
                object=_label(item),
            )


@check("intent-references")
def intent_references(repo: Repository) -> Iterator[Finding]:
    index = repo.intent_index()
    for item in repo.intents:
        target = item.obj.spec.target
        if target is None:
            continue
        admin = target.postgres.admin_intent
        # The line is computed only for a finding: it composes (and caches) the document's YAML node tree,
        # which a clean repository must not pay for every intent with a target.
        if admin == item.obj.metadata.name:
            yield Finding(item.file, item.line_of("spec", "target", "postgres", "adminIntent"), "CH014",
                          f"{_label(item)}: adminIntent names the intent itself", object=_label(item))
        elif admin not in index:
            yield Finding(item.file, item.line_of("spec", "target", "postgres", "adminIntent"), "CH014",
                          f"{_label(item)}: adminIntent {admin!r} is not a declared SecretIntent",
                          object=_label(item))


@check("classification-source")
def classification_source(repo: Repository) -> Iterator[Finding]:
    for item in repo.intents:
        spec = item.obj.spec
        wanted = _SOURCE_FOR_CLASS[spec.classification]
        if spec.source.kind != wanted:
            yield Finding(
                item.file, item.line_of("spec", "source"), "CH015",
                f"{_label(item)}: classification {spec.classification!r} needs source.{wanted}, "
                f"not source.{spec.source.kind}",
                object=_label(item),
            )
