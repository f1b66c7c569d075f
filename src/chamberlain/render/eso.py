"""External Secrets Operator manifests: the materialization and publication layers (SPEC §4, §5 v1.1).

Belongs here: building the Kubernetes objects ESO acts on — ServiceAccount, SecretStore (``external-secrets.io/v1``,
Vault provider, Kubernetes auth), ExternalSecret (``external-secrets.io/v1``) and PushSecret
(``external-secrets.io/v1alpha1``, the only version ESO serves for it) — plus Namespaces. Input is the
:mod:`~chamberlain.render.topology`; output is plain dicts. Field names are checked against ESO's own CRDs in
``tests/unit/test_render_eso.py``.

Choices, and why:

- One reader ServiceAccount per (consumer namespace, environment), one SecretStore per KV mount (a Vault store
  addresses exactly one mount), all bound to one Vault role that may read only what this namespace consumes.
- The ServiceAccount token ESO requests carries the audience ``vault``; the Vault role requires it, so a token
  minted for the Kubernetes API cannot be replayed against Vault and the other way round.
- ExternalSecret: ``creationPolicy: Owner`` (the Kubernetes Secret is a derived artifact, Inv. 5, and goes away
  with its ExternalSecret), ``deletionPolicy: Retain`` (a value missing in Vault for a moment never blanks a
  running workload's Secret), ``refreshInterval: 1h`` (the orchestrator forces a refresh right after a rotation
  by annotating the ExternalSecret, so the interval is only a safety net).
- PushSecret: ``updatePolicy: Replace`` (the producer's operator is the authority of a derived value, so Vault
  follows it) and ``deletionPolicy: None``: removing an intent from Git, or a mistaken prune, must never destroy
  every version of data other namespaces and clusters read. Pruning an unused internal path is an explicit,
  audited orchestrator step, which also keeps the publisher role free of ``delete``.
  ``refreshInterval: 1m``: ESO does not watch the producer Secret, so the interval bounds how long an operator's
  rotation takes to reach Vault; ESO skips unchanged values, so a quiet interval costs only reads.
- Publication keys (SPEC §5a: only declared keys leave the producer namespace): with a ``keys`` list, each key is
  pushed as one property, and a key the operator adds later stays in its namespace. Without one (CH112, a
  warning), the whole Secret is still pushed as one KV document, as before the rule: rendering nothing instead
  would silently stop the operator's next rotation from reaching the consumers of a repository that validates,
  an outage no one asked for; ``validate --strict`` refuses it, and declaring the keys narrows the push.
- ESO's ``managed-by`` marker: on the first push ESO writes custom_metadata ``managed-by: external-secrets``, and it
  refuses to push over a secret whose metadata lacks it. chamberlain therefore never creates an internal path (its
  controller may only read internal metadata; provisioning, handover, import and retirement act on the runtime
  mount alone), and :meth:`~chamberlain.authority.kv.KV.update_custom_metadata` merges, so a later metadata write
  keeps the marker (and refuses to change it).
- One PushSecret per published intent and environment, each with its own ServiceAccount, SecretStore and Vault
  role: the role may write exactly ``<internal mount>/<env>/<cluster>/<ns>/<name>`` (see
  :mod:`.vault_bundle`), so one producer's credential cannot overwrite another's.
- Version marker (``version_marker=True``, issue 5 propagation): the ExternalSecret also fetches the Vault
  secret's custom_metadata (``metadataPolicy: Fetch``, no property: the whole map as JSON, so a secret that has no
  ``value-marker`` yet — a derived one ESO pushed — yields an empty annotation instead of failing the whole
  ExternalSecret) under a reserved key, and a v2 template copies ``value-marker`` into the annotation
  ``chamberlain.dev/version-marker`` of the materialized Secret. ``mergePolicy: Replace`` plus a literal
  ``templateFrom`` that re-emits every fetched key except the reserved one keeps the metadata out of the
  Secret's data, so the consumer sees exactly the keys it saw before. The orchestrator then learns which
  version a consumer carries from the Secret's annotations alone, never from its values. Needs the reader
  policy to grant ``read`` on the secret's ``metadata/`` path.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from chamberlain import wellknown as wk
from chamberlain.intent.model import Platform
from chamberlain.intent.templates import Literal, Reference, parse
from chamberlain.render import naming
from chamberlain.render.topology import Part, Publish, Read
from chamberlain.render.yamlio import dump_yaml, mapping_text, scalar_text

Manifest = dict[str, Any]

ESO_V1 = "external-secrets.io/v1"
ESO_V1ALPHA1 = "external-secrets.io/v1alpha1"
ESO_GROUP = ESO_V1.rpartition("/")[0]
VAULT_AUDIENCE = "vault"
MATERIALIZE_REFRESH = "1h"
PUBLISH_REFRESH = "1m"

# Reserved data key holding the fetched custom_metadata inside ESO's template input; never lands in the Secret.
# A leading underscore plus the product name cannot collide with an intent's key mapping in practice, and
# ``check_reserved_key`` refuses it when it would.
METADATA_KEY = "_chamberlain-custom-metadata"
# Every fetched key but the reserved one, each re-emitted as a one-entry YAML map (toYaml quotes what needs it;
# ESO reads the output back with a YAML parser into map[string]string, KeysAndValues scope).
_DATA_WITHOUT_METADATA = (
    "{{- range $k, $v := . }}{{- if ne $k \"" + METADATA_KEY + "\" }}\n{{ dict $k $v | toYaml }}{{- end }}{{- end }}\n"
)
# A Vault secret without custom_metadata gives an empty value: ``default "{}"`` keeps fromJson (which yields nil
# on bad input) feeding ``get`` a map, so the annotation is empty instead of the template failing.
_MARKER_FROM_METADATA = (
    "{{ get (index . \"" + METADATA_KEY + "\" | default \"{}\" | fromJson) \"" + wk.VALUE_MARKER + "\" }}"
)


def _meta(name: str, namespace: str | None, labels: dict[str, str], annotations: dict[str, str]) -> Manifest:
    meta: Manifest = {"name": name, "labels": labels, "annotations": annotations}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace(name: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(
            name, None, naming.common_labels(),
            naming.wave(naming.WAVE_FOUNDATION, naming.keep()),
        ),
    }


def service_account(name: str, ns: str, labels: dict[str, str], *, automount: bool = False) -> Manifest:
    """ESO's identities are never mounted into a pod: ESO asks the TokenRequest API for short-lived tokens."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, ns, labels, naming.wave(naming.WAVE_IDENTITY)),
        "automountServiceAccountToken": automount,
    }


def secret_store(
    platform: Platform, *, name: str, ns: str, mount: str, cluster: str, role: str, account: str,
    labels: dict[str, str],
) -> Manifest:
    authority = platform.spec.authority
    vault: Manifest = {
        "server": authority.address.rstrip("/"),
        "path": mount,
        "version": "v2",
        "auth": {
            "kubernetes": {
                "mountPath": naming.kubernetes_auth_mount(platform, cluster),
                "role": role,
                "serviceAccountRef": {"name": account, "audiences": [VAULT_AUDIENCE]},
            }
        },
    }
    if authority.ca_bundle:
        # ESO's caBundle is base64 of the PEM; without it an https Vault signed by a private CA is unreachable.
        vault["caBundle"] = base64.b64encode(authority.ca_bundle.encode()).decode()
    return {
        "apiVersion": ESO_V1,
        "kind": "SecretStore",
        "metadata": _meta(name, ns, labels, naming.wave(naming.WAVE_STORE)),
        "spec": {"provider": {"vault": vault}},
    }


def reader_objects(platform: Platform, environment: str, cluster: str, ns: str, reads: list[Read]) -> list[Manifest]:
    """ServiceAccount, SecretStores (one per mount used) and ExternalSecrets of one consumer namespace."""
    return [*reader_identity(platform, environment, cluster, ns, reads),
            *(external_secret(r, environment, version_marker=True) for r in sorted_reads(reads))]


def reader_identity(platform: Platform, environment: str, cluster: str, ns: str, reads: list[Read]) -> list[Manifest]:
    """The ServiceAccount and SecretStores (one per mount used) the ExternalSecrets of one consumer namespace use."""
    labels = {**naming.common_labels(), wk.LABEL_ENVIRONMENT: environment, wk.LABEL_ROLE: naming.READER_ROLE}
    account = naming.reader_service_account(environment)
    role = naming.reader_policy(environment, cluster, ns)
    mounts = sorted({path.mount for r in reads for path in r.paths})  # a template's parts may use other mounts
    out = [service_account(account, ns, labels)]
    out.extend(
        secret_store(platform, name=naming.reader_store(environment, m), ns=ns, mount=m, cluster=cluster,
                     role=role, account=account, labels=dict(labels))
        for m in mounts
    )
    return out


def sorted_reads(reads: list[Read]) -> list[Read]:
    """The order of a namespace's ExternalSecrets: by Secret name, then intent."""
    return sorted(reads, key=lambda r: (r.consumer.secret_name, r.intent.metadata.name))


def external_secret(read: Read, environment: str, *, version_marker: bool = False) -> Manifest:
    if read.parts:
        return templated_external_secret(read, environment)
    intent, consumer, path = read.intent, read.consumer, read.vault
    labels = {**naming.intent_labels(intent), wk.LABEL_ENVIRONMENT: environment}
    spec: Manifest = {
        "refreshInterval": MATERIALIZE_REFRESH,
        "secretStoreRef": {"kind": "SecretStore", "name": naming.reader_store(environment, path.mount)},
        "target": {
            "name": consumer.secret_name,
            "creationPolicy": "Owner",
            "deletionPolicy": "Retain",
            # The materialized Secret names its intent, so the orchestrator can find what a rotation must reach
            # with one label selector (its ownerReference already points at this ExternalSecret).
            "template": {"metadata": {"labels": {wk.LABEL_INTENT: intent.metadata.name}}},
        },
    }
    if consumer.keys:
        spec["data"] = [
            {"secretKey": k8s_key, "remoteRef": {"key": path.path, "property": intent_key}}
            for k8s_key, intent_key in sorted(consumer.keys.items())
        ]
    else:
        spec["dataFrom"] = [{"extract": {"key": path.path}}]
    if version_marker:
        add_version_marker(spec, path.path)
    annotations = naming.wave(naming.WAVE_SYNC, {wk.ANNOTATION_VAULT_PATH: path.full})
    return {
        "apiVersion": ESO_V1,
        "kind": "ExternalSecret",
        "metadata": _meta(consumer.secret_name, consumer.namespace, labels, annotations),
        "spec": spec,
    }


def external_secret_text(read: Read, environment: str) -> str | None:
    """``dump_yaml(external_secret(read, environment, version_marker=True))`` written directly, for a plain
    consumer (no template): the one document render writes tens of thousands of times, where building the dict
    and walking it cost most of rendering. None for anything else (the caller takes the general path).
    ``tests/unit/test_render_eso.py`` holds it to the general path, byte for byte, on every rendered repository."""
    if read.parts:
        return None
    intent, consumer, path = read.intent, read.consumer, read.vault
    keys = consumer.keys
    if keys and METADATA_KEY in keys:
        return None  # the general path refuses it
    q = scalar_text
    name = q(intent.metadata.name)
    key = q(path.path)
    if keys:
        entries = "".join(f"  - remoteRef:\n      key: {key}\n      property: {q(intent_key)}\n"
                          f"    secretKey: {q(k8s_key)}\n" for k8s_key, intent_key in sorted(keys.items()))
        data = f"  data:\n{entries}{_METADATA_ENTRY.format(key=key)}"
    else:
        data = f"  data:\n{_METADATA_ENTRY.format(key=key)}  dataFrom:\n  - extract:\n      key: {key}\n"
    secret = q(consumer.secret_name)
    return (
        f"apiVersion: {ESO_V1}\nkind: ExternalSecret\nmetadata:\n  annotations:\n"
        f"    {_SYNC_WAVE_LINE}\n    {q(wk.ANNOTATION_VAULT_PATH)}: {q(path.full)}\n"
        f"  labels:\n    {q(wk.MANAGED_BY)}: {q(wk.MANAGER)}\n"
        f"    {q(wk.LABEL_CLASS)}: {q(intent.spec.classification)}\n"
        f"    {q(wk.LABEL_ENVIRONMENT)}: {q(environment)}\n    {q(wk.LABEL_INTENT)}: {name}\n"
        f"    {q(wk.LABEL_OWNER)}: {q(intent.spec.owner)}\n"
        f"  name: {secret}\n  namespace: {q(consumer.namespace)}\n"
        f"spec:\n{data}  refreshInterval: {q(MATERIALIZE_REFRESH)}\n"
        f"  secretStoreRef:\n    kind: SecretStore\n    name: {q(naming.reader_store(environment, path.mount))}\n"
        f"  target:\n    creationPolicy: Owner\n    deletionPolicy: Retain\n    name: {secret}\n"
        f"    template:\n      engineVersion: v2\n      mergePolicy: Replace\n      metadata:\n"
        f"        annotations:\n          {q(wk.ANNOTATION_VERSION_MARKER)}: {q(_MARKER_FROM_METADATA)}\n"
        f"        labels:\n          {q(wk.LABEL_INTENT)}: {name}\n"
        f"      templateFrom:\n      - literal: {q(_DATA_WITHOUT_METADATA)}\n        target: Data\n"
    )


_METADATA_ENTRY = ("  - remoteRef:\n      key: {key}\n      metadataPolicy: Fetch\n"
                   f"    secretKey: {scalar_text(METADATA_KEY)}\n")
_SYNC_WAVE_LINE = f"{scalar_text(wk.ARGOCD_SYNC_WAVE)}: {scalar_text(str(naming.WAVE_SYNC))}"


def add_version_marker(spec: Manifest, vault_key: str) -> None:
    """Extend an ExternalSecret ``spec`` (in place) so the materialized Secret carries the Vault secret's
    ``value-marker`` as the annotation :data:`wk.ANNOTATION_VERSION_MARKER` (see the module docstring)."""
    for entry in spec.get("data", []):
        if entry["secretKey"] == METADATA_KEY:
            raise ValueError(f"the key {METADATA_KEY!r} is reserved for chamberlain's version marker")
    spec.setdefault("data", []).append(
        {"secretKey": METADATA_KEY, "remoteRef": {"key": vault_key, "metadataPolicy": "Fetch"}})
    template = spec["target"].setdefault("template", {})
    template["engineVersion"] = "v2"
    template["mergePolicy"] = "Replace"
    template.setdefault("metadata", {}).setdefault("annotations", {})[wk.ANNOTATION_VERSION_MARKER] = (
        _MARKER_FROM_METADATA)
    template["templateFrom"] = [{"target": "Data", "literal": _DATA_WITHOUT_METADATA}]


# Template input keys of a templated consumer: one per referenced key, one metadata map per part other than the
# declaring intent's (which keeps METADATA_KEY). Never in the Secret: ``mergePolicy: Replace`` emits only the
# template's own keys.
PART_KEY_PREFIX = "_chamberlain-part."


def _go_string(text: str) -> str:
    """A Go interpreted string literal of ``text`` (printable characters only: the template parser refuses control
    characters), so literal text is a constant in an action and never template source."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fetch_key(ref: Reference) -> str:
    return f"{PART_KEY_PREFIX}{ref.intent}.{ref.key}"


def _metadata_key(read: Read, part: Part) -> str:
    name = part.intent.metadata.name
    return METADATA_KEY if name == read.intent.metadata.name else f"{METADATA_KEY}.{name}"


def _marker_of(metadata_key: str) -> str:
    return ("{{ get (index . \"" + metadata_key + "\" | default \"{}\" | fromJson) \"" + wk.VALUE_MARKER
            + "\" }}")


def go_template(text: str) -> str:
    """The ESO (v2, Go) template of one templated value: each literal segment a quoted constant, each reference
    an ``index`` of its fetched key. Nothing the user wrote becomes template syntax."""
    out: list[str] = []
    for segment in parse(text):
        if isinstance(segment, Literal):
            out.append("{{ " + _go_string(segment.text) + " }}")
        else:
            out.append('{{ index . "' + _fetch_key(segment) + '" }}')
    return "".join(out)


def templated_external_secret(read: Read, environment: str) -> Manifest:
    """The ExternalSecret of a templated consumer (:mod:`chamberlain.intent.templates`): one ``data`` entry per
    referenced key and one metadata fetch per part (a part on another mount names that mount's store through
    ``sourceRef.storeRef``), a v2 template that emits only the declared keys, the declaring intent's marker in
    :data:`wk.ANNOTATION_VERSION_MARKER` and every part's marker in its own annotation
    (:func:`wk.part_marker_annotation`), so propagation can tell which version of each part a consumer carries."""
    intent, consumer = read.intent, read.consumer
    assert consumer.template
    home = read.vault.mount
    by_name = {p.intent.metadata.name: p for p in read.parts}

    def source(entry: Manifest, part: Part) -> Manifest:
        if part.vault.mount != home:
            entry["sourceRef"] = {"storeRef": {"kind": "SecretStore",
                                               "name": naming.reader_store(environment, part.vault.mount)}}
        return entry

    refs = sorted({r for text in consumer.template.values() for r in parse(text) if isinstance(r, Reference)},
                  key=str)
    data = [source({"secretKey": _fetch_key(r),
                    "remoteRef": {"key": by_name[r.intent].vault.path, "property": r.key}}, by_name[r.intent])
            for r in refs]
    annotations: dict[str, str] = {}
    for part in read.parts:
        key = _metadata_key(read, part)
        data.append(source({"secretKey": key, "remoteRef": {"key": part.vault.path, "metadataPolicy": "Fetch"}},
                           part))
        annotations[wk.part_marker_annotation(part.intent.metadata.name)] = _marker_of(key)
    annotations[wk.ANNOTATION_VERSION_MARKER] = _marker_of(METADATA_KEY)
    labels = {**naming.intent_labels(intent), wk.LABEL_ENVIRONMENT: environment}
    spec: Manifest = {
        "refreshInterval": MATERIALIZE_REFRESH,
        "secretStoreRef": {"kind": "SecretStore", "name": naming.reader_store(environment, home)},
        "target": {
            "name": consumer.secret_name,
            "creationPolicy": "Owner",
            "deletionPolicy": "Retain",
            "template": {
                "engineVersion": "v2",
                "mergePolicy": "Replace",
                "metadata": {"labels": {wk.LABEL_INTENT: intent.metadata.name}, "annotations": annotations},
                "data": {key: go_template(text) for key, text in sorted(consumer.template.items())},
            },
        },
        "data": data,
    }
    meta_annotations = naming.wave(naming.WAVE_SYNC, {wk.ANNOTATION_VAULT_PATH: read.vault.full})
    return {
        "apiVersion": ESO_V1,
        "kind": "ExternalSecret",
        "metadata": _meta(consumer.secret_name, consumer.namespace, labels, meta_annotations),
        "spec": spec,
    }


def publisher_objects(platform: Platform, environment: str, cluster: str, ns: str,
                      publishes: list[Publish]) -> list[Manifest]:
    """Per published intent: its own ServiceAccount, SecretStore (write-only role) and PushSecret."""
    out: list[Manifest] = []
    for pub in sorted(publishes, key=lambda p: p.intent.metadata.name):
        name = naming.publisher_name(environment, pub.intent.metadata.name)
        labels = {**naming.intent_labels(pub.intent), wk.LABEL_ENVIRONMENT: environment,
                  wk.LABEL_ROLE: naming.PUBLISHER_ROLE}
        role = naming.publisher_policy(environment, cluster, ns, pub.intent.metadata.name)
        out.append(service_account(name, ns, dict(labels)))
        out.append(secret_store(platform, name=name, ns=ns, mount=pub.vault.mount, cluster=cluster, role=role,
                                account=name, labels=dict(labels)))
        out.append(push_secret(pub, environment, name, labels))
    return out


@dataclass(frozen=True)
class Document:
    """One rendered object: what the duplicate check and Flux's wait list need of it, and its text."""

    api_version: str
    kind: str
    namespace: str
    name: str
    text: str


def document(manifest: Manifest) -> Document:
    """A manifest dumped (the general path)."""
    meta = manifest["metadata"]
    return Document(str(manifest["apiVersion"]), str(manifest["kind"]), str(meta.get("namespace", "")),
                    str(meta["name"]), dump_yaml(manifest))


def publisher_documents(platform: Platform, environment: str, cluster: str, ns: str,
                        publishes: list[Publish]) -> list[Document]:
    """:func:`publisher_objects`, each dumped, written directly: three documents per published intent are most of
    what render dumps besides the ExternalSecrets (a third of rendering when built as dicts and walked).
    ``tests/unit/test_render_eso.py`` holds them to the general path, byte for byte, on every rendered
    repository."""
    q = scalar_text
    authority = platform.spec.authority
    server = q(authority.address.rstrip("/"))
    ca = (f"      caBundle: {q(base64.b64encode(authority.ca_bundle.encode()).decode())}\n"
          if authority.ca_bundle else "")
    auth_mount = q(naming.kubernetes_auth_mount(platform, cluster))
    identity_wave = mapping_text(naming.wave(naming.WAVE_IDENTITY), "    ")
    store_wave = mapping_text(naming.wave(naming.WAVE_STORE), "    ")
    out: list[Document] = []
    for pub in sorted(publishes, key=lambda p: p.intent.metadata.name):
        intent = pub.intent.metadata.name
        name = naming.publisher_name(environment, intent)
        labels = mapping_text({**naming.intent_labels(pub.intent), wk.LABEL_ENVIRONMENT: environment,
                               wk.LABEL_ROLE: naming.PUBLISHER_ROLE}, "    ")
        qname = q(name)
        role = q(naming.publisher_policy(environment, cluster, ns, intent))
        meta = f"  labels:\n{labels}  name: {qname}\n  namespace: {q(ns)}\n"
        out.append(Document("v1", "ServiceAccount", ns, name, (
            "apiVersion: v1\nautomountServiceAccountToken: false\nkind: ServiceAccount\nmetadata:\n"
            f"  annotations:\n{identity_wave}{meta}")))
        out.append(Document(ESO_V1, "SecretStore", ns, name, (
            f"apiVersion: {q(ESO_V1)}\nkind: SecretStore\nmetadata:\n  annotations:\n{store_wave}{meta}"
            "spec:\n  provider:\n    vault:\n      auth:\n        kubernetes:\n"
            f"          mountPath: {auth_mount}\n          role: {role}\n          serviceAccountRef:\n"
            f"            audiences:\n            - {q(VAULT_AUDIENCE)}\n            name: {qname}\n"
            f"{ca}      path: {q(pub.vault.mount)}\n      server: {server}\n      version: v2\n")))
        out.append(Document(ESO_V1ALPHA1, "PushSecret", pub.source.namespace, name,
                            _push_secret_text(pub, name, labels)))
    return out


def _push_secret_text(pub: Publish, name: str, labels: str) -> str:
    """``dump_yaml(push_secret(...))`` written directly; ``labels`` already written at the metadata's depth."""
    q = scalar_text
    key = q(pub.vault.path)
    if pub.source.keys:
        data = "".join([f"  - match:\n      remoteRef:\n        property: {q(k)}\n        remoteKey: {key}\n"
                        f"      secretKey: {q(k)}\n" for k in sorted(set(pub.source.keys))])
    else:
        data = f"  - match:\n      remoteRef:\n        remoteKey: {key}\n"
    qname = q(name)
    annotations = mapping_text(naming.wave(naming.WAVE_SYNC, {wk.ANNOTATION_VAULT_PATH: pub.vault.full}), "    ")
    return (
        f"apiVersion: {q(ESO_V1ALPHA1)}\nkind: PushSecret\nmetadata:\n  annotations:\n{annotations}"
        f"  labels:\n{labels}  name: {qname}\n  namespace: {q(pub.source.namespace)}\n"
        f"spec:\n  data:\n{data}  deletionPolicy: {q('None')}\n  refreshInterval: {q(PUBLISH_REFRESH)}\n"
        f"  secretStoreRefs:\n  - kind: SecretStore\n    name: {qname}\n"
        f"  selector:\n    secret:\n      name: {q(pub.source.secret_name)}\n  updatePolicy: Replace\n"
    )


def push_secret(pub: Publish, environment: str, name: str, labels: dict[str, str]) -> Manifest:
    """The PushSecret of one publication: exactly the declared keys, each as a property of the intent's internal
    path; without declared keys (CH112) the whole Secret as one document (see the module docstring for why)."""
    path = pub.vault
    if pub.source.keys:
        data = [
            {"match": {"secretKey": key, "remoteRef": {"remoteKey": path.path, "property": key}}}
            for key in sorted(set(pub.source.keys))
        ]
    else:
        data = [{"match": {"remoteRef": {"remoteKey": path.path}}}]
    annotations = naming.wave(naming.WAVE_SYNC, {wk.ANNOTATION_VAULT_PATH: path.full})
    return {
        "apiVersion": ESO_V1ALPHA1,
        "kind": "PushSecret",
        "metadata": _meta(name, pub.source.namespace, labels, annotations),
        "spec": {
            "refreshInterval": PUBLISH_REFRESH,
            "updatePolicy": "Replace",
            "deletionPolicy": "None",
            "secretStoreRefs": [{"kind": "SecretStore", "name": name}],
            "selector": {"secret": {"name": pub.source.secret_name}},
            "data": data,
        },
    }
