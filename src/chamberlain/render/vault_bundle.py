"""The Vault configuration bundle: KV mounts, ACL policies and Kubernetes auth roles, as plain files.

Belongs here: deriving, from the :mod:`~chamberlain.render.topology`, exactly the Vault configuration that least
privilege calls for (SPEC §6), as deterministic files a later ``authority configure`` applies with hvac. Nothing
here talks to Vault.

Layout (paths relative to ``vault/``):

- ``mounts.json`` — ``{path: {type, description, options, kv_config}}``: enable with
  ``sys.enable_secrets_engine(backend_type=type, path=path, description=..., options=options)``, then
  ``secrets.kv.v2.configure(mount_point=path, **kv_config)``;
- ``transit.json`` — ``{mount: {name: {type}}}``: the transit keys ``authority configure`` creates (never
  changes, exports or deletes): per environment ``chamberlain-ledger-<env>`` (ed25519, signs the ledger) and
  ``chamberlain-marker-<env>`` (its HMAC key keys the version markers), and ``chamberlain-ledger-_authority``
  (the configurator's partition);
- ``auth.json`` — ``{path: {type, description}}``: the auth methods to enable, one Kubernetes auth mount per
  cluster (``<kubernetesAuthMount>-<cluster>``), each holding only that cluster's roles (their cluster-specific
  config — API server address, CA — is runtime data, not intent);
- ``policies/<name>.hcl`` — ``sys.create_or_update_acl_policy(name, policy=text)``;
- ``auth/<mount>/roles/<name>.json`` — the body of ``POST auth/<mount>/role/<name>`` (Vault API field names);
- ``pki.json`` — ``{"mounts": [...]}``, only when an ``x509-vault-pki`` intent names one: the mounts the
  orchestrators may sign on, which ``authority configure`` refuses to grant unless each is a ``pki`` engine (a
  transit or SSH engine's ``sign`` would sign with its keys).

Who may do what:

- reader (ESO in a consumer namespace, per environment and cluster): ``read`` on the ``data/`` path of each intent
  it materializes, nothing else — not even ``list`` or metadata;
- publisher (ESO PushSecret of one derived/config intent): ``create``/``update`` on its own ``data/`` and
  ``metadata/`` path, and ``read`` on both because ESO reads before it writes (it skips unchanged values and
  refuses to overwrite a secret whose metadata lacks its ``managed-by`` marker). It reads back only the value
  its own namespace produced. No ``delete`` (see the PushSecret deletion policy in :mod:`.eso`);
- orchestrator (the chamberlain controller of one cluster): the full KV v2 life cycle under
  ``<runtime>/<env>/`` of each environment the cluster hosts (generate, hand over, rotate, verify, revoke), its
  ledger partitions ``<runtime>/_chamberlain/ledger/<env>/<cluster>/`` (create and read only, never update or
  delete: it is the audit trail; only the partition's ``head`` is updatable; every partition is readable, for
  ``audit show``/``verify``), ``update`` on ``<transit>/sign/chamberlain-ledger-<env>`` (signing its entries)
  and ``<transit>/hmac/chamberlain-marker-<env>/sha2-256`` (keyed version markers) for each environment it
  hosts, ``read`` on every ledger key (public keys, for ``audit pin``) — never export, config, rotate or delete,
  and ``read``/``list``/``update`` on the *metadata* of the internal mounts for its own cluster — it reports on
  derived and config secrets and marks the versions their producers push (an observed external rotation, with its
  records under ``<runtime>/_chamberlain/external/<env>/<cluster>/``), it never reads their values.
  For each intent on the cluster rotated by ``x509-vault-pki``:
  ``update`` on ``<mount>/sign/<role>`` and ``<mount>/revoke`` of the mount and role its annotations name
  (signing a CSR and revoking a serial; never ``issue``, so Vault never generates or sees a private key).
  That life cycle, the run records and staged values are the environment's **rotating cluster**'s alone
  (``rotationCluster``, default the first; :mod:`chamberlain.rotation.clusters`), which also reads every
  acknowledgement of the environment; a **following** cluster's orchestrator may write a first version (handover)
  and the metadata, read what it follows, and write only its own acknowledgements
  (``<runtime>/_chamberlain/acks/<env>/<cluster>/``).

Mount settings: the runtime mount requires check-and-set (only the orchestrator writes there, always with CAS,
so a lost race is an error, never a silent overwrite). The internal mounts cannot: ESO's PushSecret writes
without CAS.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from chamberlain.authority.pki import PkiRefError, check_grant, pki_ref, uses_vault_pki
from chamberlain.intent.model import Platform, SecretIntent
from chamberlain.intent.paths import (
    ACKS_PREFIX,
    AUTHORITY_PARTITION,
    EXTERNAL_PREFIX,
    INSTANCES_SEGMENT,
    LEDGER_HEAD,
    LEDGER_HEAD_NAME,
    LEDGER_PREFIX,
    PENDING_PREFIX,
    READERS_SEGMENT,
    RUNS_PREFIX,
    TRANSIT_MOUNT,
    VaultPath,
    accessor_ref,
    ledger_key,
    marker_key,
)
from chamberlain.render import naming
from chamberlain.render.eso import VAULT_AUDIENCE
from chamberlain.render.topology import PieceName, Read, RenderError, Topology, namespace_piece
from chamberlain.render.yamlio import dump_json, json_string

MAX_VERSIONS = 10  # enough history to roll back a bad rotation and to serve the overlap window
ESO_LOGIN_TTL = "10m"  # ESO logs in per reconcile; a token outliving it is only risk
ESO_LOGIN_MAX_TTL = "30m"
ORCHESTRATOR_LOGIN_TTL = "1h"
ORCHESTRATOR_LOGIN_MAX_TTL = "4h"

_HEADER = "# Rendered by chamberlain from the intent repository; do not edit, re-render instead.\n"


def mounts(platform: Platform) -> dict[str, dict[str, object]]:
    m = platform.spec.authority.mounts

    def kv(description: str, cas: bool) -> dict[str, object]:
        return {
            "type": "kv",
            "description": description,
            "options": {"version": "2"},
            "kv_config": {"max_versions": MAX_VERSIONS, "cas_required": cas, "delete_version_after": "0s"},
        }

    return {
        m.runtime: kv("chamberlain runtime secrets: <env>/<owner>/<name>, owned by Vault", True),
        m.internal_data: kv("chamberlain internal secrets published by producers: <env>/<cluster>/<ns>/<name>",
                            False),
        m.internal_config: kv("chamberlain internal configuration, non-sensitive (Inv. 8): "
                              "<env>/<cluster>/<ns>/<name>", False),
        TRANSIT_MOUNT: {"type": "transit", "description": "chamberlain: ledger signing and version-marker keys",
                        "options": {}},
    }


def transit_keys(platform: Platform) -> dict[str, dict[str, dict[str, str]]]:
    """The transit keys configure creates: per environment a ledger signing key and a marker HMAC key, and the
    configurator's ledger key."""
    keys = {ledger_key(AUTHORITY_PARTITION[0]): {"type": "ed25519"}}
    for env in platform.spec.environments:
        keys[ledger_key(env.name)] = {"type": "ed25519"}
        keys[marker_key(env.name)] = {"type": "aes256-gcm96"}  # only its HMAC key is used (never encrypts)
    return {TRANSIT_MOUNT: dict(sorted(keys.items()))}


def _policy(title: str, blocks: Iterable[tuple[str, str, list[str]]]) -> str:
    """HCL text. ``blocks`` are (comment, path, capabilities); identical paths are merged."""
    merged: dict[str, tuple[list[str], set[str]]] = {}
    for comment, path, caps in blocks:
        comments, capabilities = merged.setdefault(path, ([], set()))
        if comment not in comments:
            comments.append(comment)
        capabilities.update(caps)
    lines = [_HEADER, f"# {title}\n"]
    for path in sorted(merged):
        notes, granted = merged[path]
        lines.append("\n")
        lines.extend(f"# {note}\n" for note in notes)
        cap_list = ", ".join(f'"{c}"' for c in sorted(granted))
        lines.append(f'path "{path}" {{\n  capabilities = [{cap_list}]\n}}\n')
    return "".join(lines)


def role_data(account: str, ns: str, policy: str, ttl: str, max_ttl: str) -> dict[str, object]:
    return {
        "audience": VAULT_AUDIENCE,
        "bound_service_account_names": [account],
        "bound_service_account_namespaces": [ns],  # "<ns>-*" for the instances of an ephemeral environment
        "token_policies": [policy],
        "token_ttl": ttl,
        "token_max_ttl": max_ttl,
    }


def _role(account: str, ns: str, policy: str, ttl: str, max_ttl: str) -> str:
    """``dump_json(role_data(...))`` written directly: one per ESO identity, tens of thousands at 10k intents
    (``tests/unit/test_render_vault.py`` holds it to the general path)."""
    q = json_string
    return (f'{{\n  "audience": {q(VAULT_AUDIENCE)},\n  "bound_service_account_names": [\n    {q(account)}\n  ],\n'
            f'  "bound_service_account_namespaces": [\n    {q(ns)}\n  ],\n  "token_max_ttl": {q(max_ttl)},\n'
            f'  "token_policies": [\n    {q(policy)}\n  ],\n  "token_ttl": {q(ttl)}\n}}\n')


def bundle(topo: Topology, reuse: Collection[PieceName] = (),
           pieces: dict[PieceName, list[str]] | None = None) -> dict[str, str]:
    """Every file of the bundle, keyed by its path relative to ``vault/``. The files of one namespace of one
    application (its reader and publisher policies and roles) are a piece (:class:`~.layout.Piece`): not built
    when ``reuse`` names it; ``pieces`` receives the paths of each piece built."""
    platform = topo.platform
    files: dict[str, str] = {
        "mounts.json": dump_json(mounts(platform)),
        "transit.json": dump_json(transit_keys(platform)),
    }
    ephemeral = {e.name for e in platform.spec.environments if e.ephemeral}
    piece: list[str] = []

    def put(rel: str, text: str) -> None:
        files[rel] = text
        piece.append(rel)

    def add_role(cluster: str, name: str, body: str) -> None:
        # Every role lives in the auth mount of its own cluster, reviewed by that cluster's API server only.
        put(f"auth/{naming.kubernetes_auth_mount(platform, cluster)}/roles/{name}.json", body)

    for unit in topo.units:
        env, cluster = unit.environment, unit.cluster
        for ns in unit.namespaces:
            if namespace_piece(env, cluster, ns) in reuse:
                continue
            piece = []
            reads = unit.reads.get(ns)
            if reads is not None:
                name = naming.reader_policy(env, cluster, ns)
                put(f"policies/{name}.hcl", _policy(
                    f"ESO in namespace {ns} of cluster {cluster} ({env}) reads exactly what it materializes.",
                    (block
                     for r in reads
                     for name, path in _read_paths(r)
                     for block in (
                         (f"{name} -> {r.consumer.secret_name}", path.data_path, ["read"]),
                         # The version marker ESO copies into an annotation lives in custom_metadata (no values).
                         (f"{name}: version marker", path.metadata_path, ["read"]),
                     )),
                ))
                add_role(cluster, name, _role(naming.reader_service_account(env), ns, name,
                                              ESO_LOGIN_TTL, ESO_LOGIN_MAX_TTL))
                if env in ephemeral:
                    _instance_reader(put, add_role, env, cluster, naming.kubernetes_auth_mount(platform, cluster),
                                     ns, reads)
            for pub in unit.publishes.get(ns, ()):
                intent = pub.intent.metadata.name
                name = naming.publisher_policy(env, cluster, ns, intent)
                caps = ["create", "read", "update"]
                put(f"policies/{name}.hcl", _policy(
                    f"ESO PushSecret of {intent} in namespace {ns} of cluster {cluster} ({env}) "
                    "publishes to exactly its own path.",
                    [(f"{intent}: value", pub.vault.data_path, caps),
                     (f"{intent}: ESO's managed-by marker", pub.vault.metadata_path, caps)],
                ))
                add_role(cluster, name, _role(naming.publisher_name(env, intent), ns, name,
                                              ESO_LOGIN_TTL, ESO_LOGIN_MAX_TTL))
            if pieces is not None:
                pieces[namespace_piece(env, cluster, ns)] = piece
    piece = []  # the files below belong to no piece
    for cluster in topo.clusters:
        name = naming.orchestrator_policy(cluster)
        files[f"policies/{name}.hcl"] = _policy(
            f"The chamberlain orchestrator of cluster {cluster}.",
            [*_orchestrator_blocks(platform, cluster, topo.cluster_environments[cluster]),
             *_pki_blocks(topo.cluster_intents.get(cluster, []), _kv_mounts(platform))],
        )
        add_role(cluster, name, _role(naming.controller_service_account(platform),
                                      naming.controller_namespace(platform), name,
                                      ORCHESTRATOR_LOGIN_TTL, ORCHESTRATOR_LOGIN_MAX_TTL))
    signing = sorted({pki_ref(i.metadata.annotations).mount for intents in topo.cluster_intents.values()
                      for i in intents if uses_vault_pki(i.metadata.annotations)})
    if signing:  # absent otherwise: a bundle without PKI intents stays byte for byte what it was
        files["pki.json"] = dump_json({"mounts": signing})
    # Every cluster has its orchestrator's role, so every auth mount holding a role is one of these.
    auth_mounts = {naming.kubernetes_auth_mount(platform, cluster): cluster for cluster in topo.clusters}
    files["auth.json"] = dump_json({
        mount: {"type": "kubernetes",
                "description": f"chamberlain: ESO and orchestrator service accounts of cluster {cluster}"}
        for mount, cluster in sorted(auth_mounts.items())
    })
    return files


def _read_paths(read: Read) -> list[tuple[str, VaultPath]]:
    """(intent name, path) of everything one consumer reads: its intent's path, or each part of a template."""
    if read.parts:
        return [(p.intent.metadata.name, p.vault) for p in read.parts]
    return [(read.intent.metadata.name, read.vault)]


def _instance_reader(put: Callable[[str, str], None], add_role: Callable[[str, str, str], None], env: str,
                     cluster: str,
                     auth_mount: str, ns: str, reads: list[Read]) -> None:
    """ESO in every instance ``<ns>-<id>`` of an ephemeral environment: one role, bound to the reader
    ServiceAccount in namespaces ``<ns>-*``, whose policy is templated on the namespace of the ServiceAccount that
    logged in (the Kubernetes auth alias's ``service_account_namespace``): it reads the copies ``env up`` writes for
    that namespace only, ``<env>/_instances/<id>/_ns/<ns>-<id>/<owner>/<name>``. No policy is written when an
    instance comes or goes, and an instance never reads another's (:mod:`chamberlain.lifecycle.ephemeral`)."""
    name = naming.instance_reader_policy(env, cluster, ns)
    own = f"{{{{identity.entity.aliases.{accessor_ref(auth_mount)}.metadata.service_account_namespace}}}}"

    def instance(path: VaultPath) -> VaultPath:
        rest = path.path.removeprefix(f"{env}/")
        return VaultPath(path.mount, f"{env}/{INSTANCES_SEGMENT}/+/{READERS_SEGMENT}/{own}/{rest}")

    put(f"policies/{name}.hcl", _policy(
        f"ESO in an instance of namespace {ns} on cluster {cluster} ({env}, ephemeral) reads what it materializes, "
        "in its own namespace's copy only.",
        (block
         for r in reads
         for name, path in _read_paths(r)
         for block in (
             (f"{name} -> {r.consumer.secret_name}", instance(path).data_path, ["read"]),
             (f"{name}: version marker", instance(path).metadata_path, ["read"]),
         )),
    ))
    add_role(cluster, name, _role(naming.reader_service_account(env), f"{ns}-*", name,
                                  ESO_LOGIN_TTL, ESO_LOGIN_MAX_TTL))


def _orchestrator_blocks(platform: Platform, cluster: str,
                         environments: list[str]) -> list[tuple[str, str, list[str]]]:
    m = platform.spec.authority.mounts
    blocks: list[tuple[str, str, list[str]]] = []
    for env in environments:
        environment = platform.environment(env)
        if environment is not None and environment.rotating_cluster != cluster:
            blocks.extend(_follower_blocks(platform, cluster, env, environment.rotating_cluster))
            continue
        scope = VaultPath(m.runtime, f"{env}/*")
        life = f"runtime secrets of {env}: generate, hand over, rotate, verify, revoke"
        blocks.append((life, scope.data_path, ["create", "read", "update", "patch", "delete"]))
        blocks.append((life, scope.metadata_path, ["create", "read", "update", "patch", "delete", "list"]))
        for verb in ("delete", "undelete", "destroy"):
            blocks.append((life, f"{m.runtime}/{verb}/{env}/*", ["update"]))
        # Rotation: the run record (also the lease) and values staged before promotion. Only the orchestrator
        # reaches these paths; ESO never reads a staged, untested value.
        runs = VaultPath(m.runtime, f"{RUNS_PREFIX}/{env}/*")
        pending = VaultPath(m.runtime, f"{PENDING_PREFIX}/{env}/*")
        blocks.append((f"rotation runs of {env}", runs.data_path, ["create", "read", "update"]))
        blocks.append((f"rotation runs of {env}", runs.metadata_path, ["read"]))
        blocks.append((f"rotation staging of {env}", pending.data_path, ["create", "read", "update", "delete"]))
        blocks.append((f"rotation staging of {env}", pending.metadata_path, ["read", "delete"]))
        blocks.append((f"rotation staging of {env}", f"{m.runtime}/destroy/{PENDING_PREFIX}/{env}/*", ["update"]))
        acks = VaultPath(m.runtime, f"{ACKS_PREFIX}/{env}/*")
        blocks.append((f"acknowledgements of {env}'s follower clusters: read, before revokeOld", acks.data_path,
                       ["read"]))
        blocks.extend(_internal_metadata_blocks(platform, cluster, env))
    # The authority ledger (issue 11): entries are create-only (no update, no delete), so even the orchestrator
    # cannot rewrite history, and only in the partitions of its own cluster; only their head is updatable. Each
    # environment's entries are signed with that environment's transit key, which only its orchestrators use.
    for env in environments:
        own = f"{LEDGER_PREFIX}/{env}/{cluster}"
        note = f"authority ledger, partition {env}/{cluster}: append, never rewrite"
        blocks.append((note, VaultPath(m.runtime, f"{own}/*").data_path, ["create", "read"]))
        blocks.append((note + " (head)", VaultPath(m.runtime, f"{own}/{LEDGER_HEAD_NAME}").data_path,
                       ["create", "read", "update"]))
        blocks.append((f"sign the ledger entries of {env}", f"{TRANSIT_MOUNT}/sign/{ledger_key(env)}", ["update"]))
        blocks.append((f"keyed version markers of {env}", f"{TRANSIT_MOUNT}/hmac/{marker_key(env)}/sha2-256",
                       ["update"]))
    entries = VaultPath(m.runtime, f"{LEDGER_PREFIX}/*")
    legacy_head = VaultPath(m.runtime, LEDGER_HEAD)
    reading = "authority ledger: every partition readable (audit show/verify)"
    blocks.append((reading, entries.data_path, ["read"]))
    blocks.append((reading, entries.metadata_path, ["read", "list"]))
    blocks.append(("the previous release's ledger head: read only", legacy_head.data_path, ["read"]))
    blocks.append(("the previous release's ledger head: read only", legacy_head.metadata_path, ["read"]))
    for env in [AUTHORITY_PARTITION[0], *(e.name for e in platform.spec.environments)]:
        blocks.append(("ledger public keys (audit pin)", f"{TRANSIT_MOUNT}/keys/{ledger_key(env)}", ["read"]))
    return blocks


def _internal_metadata_blocks(platform: Platform, cluster: str, env: str) -> list[tuple[str, str, list[str]]]:
    """Metadata only, never values: read it (reports), and merge a version marker into the custom_metadata of a
    version a producer pushed (an observed external rotation, ESO's ``managed-by`` kept); plus the records of
    the external versions this cluster handled, in its own runtime subtree."""
    m = platform.spec.authority.mounts
    records = VaultPath(m.runtime, f"{EXTERNAL_PREFIX}/{env}/{cluster}/*")
    note = f"external versions of {env} handled by {cluster}: its own records only"
    return [*((f"internal secrets of {env} on {cluster}: metadata only, never values",
               VaultPath(mount, f"{env}/{cluster}/*").metadata_path, ["read", "list", "update"])
              for mount in (m.internal_data, m.internal_config)),
            (note, records.data_path, ["create", "read", "update"]),
            (note, records.metadata_path, ["read"])]


def _follower_blocks(platform: Platform, cluster: str, env: str, owner: str) -> list[tuple[str, str, list[str]]]:
    """A cluster that follows ``env`` (another cluster, ``owner``, rotates it; rotation.clusters): it may hand a
    bootstrap value over (the first version only: ``create`` without ``update`` writes no version over an existing
    one) and record its handover in the metadata, read the metadata it follows, and write its own
    acknowledgements. No run record and no staged value: it cannot take a rotation's lease, nor read one."""
    m = platform.spec.authority.mounts
    scope = VaultPath(m.runtime, f"{env}/*")
    life = f"runtime secrets of {env} (rotated by {owner}): hand over a first version, follow, never rotate"
    own = VaultPath(m.runtime, f"{ACKS_PREFIX}/{env}/{cluster}/*")
    note = f"acknowledgements of {env} by {cluster}: its own only"
    return [
        (life, scope.data_path, ["create", "read"]),
        (life, scope.metadata_path, ["create", "read", "update", "list"]),
        (note, own.data_path, ["create", "read", "update"]),
        (note, own.metadata_path, ["read"]),
        *_internal_metadata_blocks(platform, cluster, env),
    ]


def _kv_mounts(platform: Platform) -> list[str]:
    m = platform.spec.authority.mounts
    return [m.runtime, m.internal_data, m.internal_config]


def _pki_blocks(intents: Iterable[SecretIntent], kv_mounts: list[str]) -> list[tuple[str, str, list[str]]]:
    """Sign and revoke on exactly the PKI mount and role each ``x509-vault-pki`` intent names (sorted:
    deterministic): never a wildcard, never a path inside chamberlain's KV mounts (validate rejects both first,
    CH105)."""
    blocks: list[tuple[str, str, list[str]]] = []
    signing = [intent for intent in intents if uses_vault_pki(intent.metadata.annotations)]
    for intent in sorted(signing, key=lambda i: i.metadata.name):  # the few that sign, not every intent sorted
        annotations = intent.metadata.annotations
        try:
            ref = pki_ref(annotations)
            check_grant(ref, kv_mounts)
        except PkiRefError as exc:
            raise RenderError(f"SecretIntent {intent.metadata.name}: {exc}") from None
        name = intent.metadata.name
        blocks.append((f"{name}: sign its certificate (x509-vault-pki)", ref.sign_path, ["update"]))
        blocks.append((f"{name}: revoke its previous certificate (x509-vault-pki)", ref.revoke_path, ["update"]))
    return blocks
