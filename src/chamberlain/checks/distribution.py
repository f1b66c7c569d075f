"""Internal distribution (SPEC §5a): what a producer publishes, and who may use the framework for it.

A derived or config intent routes a Secret an operator makes in its *producer namespace* through the authority: a
PushSecret writes it to ``<internal mount>/<env>/<cluster>/<ns>/<name>`` and ExternalSecrets materialize it in the
*other* namespaces that consume it. Two rules keep that narrow:

- CH112 (warning): ``source.publication`` without ``keys``. The PushSecret would push every key of the producer's
  Secret, including keys the operator adds later that nobody declared; §5a publishes only declared keys. A warning,
  so repositories valid before the rule stay valid (``--strict`` fails); render keeps pushing the whole Secret for
  them until the list is declared (see :mod:`chamberlain.render.eso`).
- CH113 (error): a consumer in the producer namespace. The producer's Secret is already there; a secret used only
  in its own namespace gets no distribution, and a copy through the authority would be a second, lagging Secret
  with a second writer beside the operator's.

Pure: reads the loaded repository, emits findings.
"""

from __future__ import annotations

from collections.abc import Iterator

from chamberlain.checks.registry import check
from chamberlain.findings import Finding
from chamberlain.intent.loader import Loaded, Repository
from chamberlain.intent.model import SecretIntent

RULE_KEYS = "CH112"
RULE_SAME_NAMESPACE = "CH113"


def _label(item: Loaded[SecretIntent]) -> str:
    return f"SecretIntent/{item.obj.metadata.name}"


def mapped_keys(intent: SecretIntent) -> list[str]:
    """The intent keys its consumers map (what a ``keys`` list must hold at least), sorted."""
    return sorted({k for c in intent.spec.consumers for k in (c.keys or {}).values()})


@check("publication-keys", per_file=True)
def publication_keys(repo: Repository) -> Iterator[Finding]:
    for item in repo.intents:
        pub = item.obj.spec.source.publication
        if pub is None or pub.keys:
            continue
        wanted = mapped_keys(item.obj)
        hint = (f"add keys: [{', '.join(wanted)}] (the keys its consumers map)" if wanted
                else "add keys: [...] naming each key consumers need")
        what = "an empty keys list" if pub.keys is not None else "no keys"
        yield Finding(
            item.file, item.line_of("spec", "source", "publication"), RULE_KEYS,
            f"{_label(item)}: source.publication has {what}, so its PushSecret pushes every key of "
            f"{pub.namespace}/{pub.secret_name}; {hint}. §5a: only declared keys leave the producer namespace",
            object=_label(item), subject=f"{pub.namespace}/{pub.secret_name}",
        )


@check("same-namespace-use", per_file=True)
def same_namespace_use(repo: Repository) -> Iterator[Finding]:
    for item in repo.intents:
        pub = item.obj.spec.source.publication
        if pub is None:
            continue
        for i, consumer in enumerate(item.obj.spec.consumers):
            if consumer.namespace != pub.namespace:
                continue
            yield Finding(
                item.file, item.line_of("spec", "consumers", i, "namespace"), RULE_SAME_NAMESPACE,
                f"{_label(item)}: consumer {consumer.namespace}/{consumer.secret_name} is in the producer namespace "
                f"{pub.namespace}, where {pub.namespace}/{pub.secret_name} already is; use that Secret directly and "
                "remove this consumer. §5a: a secret used only in its own namespace gets no distribution",
                object=_label(item), subject=f"{consumer.namespace}/{consumer.secret_name}",
            )


__all__ = ["RULE_KEYS", "RULE_SAME_NAMESPACE", "mapped_keys", "publication_keys", "same_namespace_use"]
