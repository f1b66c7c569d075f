"""Importing a value that already lives in a cluster Secret (``source.existingSecret``): a handover whose source is
a Secret nobody declared in Git. ``chamberlain adopt verify`` runs it for each such intent.

Why the copy is done here and not by an ESO PushSecret: the runtime mount requires check-and-set (only the
orchestrator writes there, always with CAS), and ESO's Vault provider never sends ``cas`` (v0.16:
``pkg/provider/vault/client_push.go``), so a PushSecret into ``<runtime>/<env>/<owner>/<name>`` is refused; and a
PushSecret applied by GitOps pushes before anything could check the adopt marker. The value is therefore read in
memory from the Secret (like a bootstrap Secret at handover), written once with CAS 0, read back, and recorded.
It never reaches a file, the output, the ledger or an exception: only names, versions and a keyed marker do.

Gates, each checked before anything is written: the Secret carries ``chamberlain.dev/adopt: <intent>`` (a person's
explicit consent, set with ``kubectl annotate``), has every declared key, holds text only; the runtime path is
empty or holds exactly this value (a crashed earlier import). Tenancy was checked by validate (CH121).

Once recorded (``origin: adopted`` plus ``ledger-seq``), the authority owns the value like a handed-over bootstrap
secret: the Secret is never read again for it, so a later change of the old Secret is not imported, and the value
is never regenerated (CH122 keeps its rotation static). Idempotent and resumable: each run re-reads everything and
goes on from what it finds; the ledger entry is looked up before it is appended, so it is never doubled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import Ledger, LedgerEntry, LedgerReader
from chamberlain.authority.errors import CasConflict, MetadataTooLarge
from chamberlain.authority.kv import KV
from chamberlain.clock import Clock, rfc3339
from chamberlain.errors import ChamberlainError
from chamberlain.faults import checkpoint
from chamberlain.handover import metadata as md
from chamberlain.intent.model import Platform, RotationPolicy, RotationPolicySpec, SecretIntent
from chamberlain.intent.paths import VaultPath, effective_policy, intent_environments, vault_path
from chamberlain.kube.api import Kube
from chamberlain.values.markers import LegacyMarkers, Markers

Result = Literal["adopted", "already-adopted", "planned", "not-marked", "missing", "held", "conflict"]
FAILED: frozenset[str] = frozenset({"not-marked", "missing", "held", "conflict"})
DEFAULT_REASON = "existing Secret adopted (source.existingSecret)"


class AdoptError(ChamberlainError):
    """An import could not finish; the message names the path and the Secret, never a value."""


@dataclass(frozen=True)
class AdoptUnit:
    """One imported intent in one environment, read from its Secret on one cluster."""

    intent: str
    environment: str
    cluster: str
    namespace: str
    name: str
    keys: tuple[str, ...]
    vault: VaultPath
    policy_name: str | None = None
    policy: RotationPolicySpec | None = None

    @property
    def source(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class AdoptOutcome:
    unit: AdoptUnit
    result: Result
    message: str
    marker: str | None = None
    version: int | None = None
    ledger_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.result not in FAILED

    def as_dict(self) -> dict[str, object]:
        u = self.unit
        return {"intent": u.intent, "environment": u.environment, "cluster": u.cluster, "path": u.vault.full,
                "source": u.source, "keys": list(u.keys), "result": self.result, "message": self.message,
                "marker": self.marker, "version": self.version, "ledgerSeq": self.ledger_seq}


@dataclass(frozen=True)
class AdoptContext:
    actor: str
    run: str
    clock: Clock
    reason: str = DEFAULT_REASON
    markers: Markers = field(default_factory=LegacyMarkers)


def adopt_units(platform: Platform, policies: Mapping[str, RotationPolicy], intents: list[SecretIntent],
                environment: str, cluster: str, only: set[str] | None = None) -> list[AdoptUnit]:
    """Every ``source.existingSecret`` intent placed in ``environment`` on ``cluster`` (pure), by name."""
    out: list[AdoptUnit] = []
    for intent in sorted(intents, key=lambda i: i.metadata.name):
        src = intent.spec.source.existing_secret
        if src is None or (only is not None and intent.metadata.name not in only):
            continue
        env = next((e for e in intent_environments(platform, intent) if e.name == environment), None)
        if env is None or cluster not in env.clusters:
            continue
        resolved = effective_policy(platform, dict(policies), intent)
        out.append(AdoptUnit(
            intent=intent.metadata.name, environment=environment, cluster=cluster, namespace=src.namespace,
            name=src.secret_name, keys=tuple(sorted(set(src.keys or ()))),
            vault=vault_path(platform, intent, environment, cluster),
            policy_name=resolved[0] if resolved else None, policy=resolved[1] if resolved else None))
    return out


def adopted(custom: Mapping[str, str]) -> bool:
    """Whether the secret's metadata records a finished import (the authority owns the value)."""
    return (custom.get(wk.AUTHORITY) == wk.AUTHORITY_VAULT and custom.get(wk.ORIGIN) == wk.ORIGIN_ADOPTED
            and wk.LEDGER_SEQ in custom)


def gate(unit: AdoptUnit, annotations: Mapping[str, str] | None, data: Mapping[str, str] | None
         ) -> tuple[Result, str] | None:
    """Why the Secret may not be imported now (pure), or None. Messages name keys, never values."""
    if annotations is None or data is None:
        return "missing", f"Secret {unit.source} does not exist on cluster {unit.cluster}"
    marked = annotations.get(wk.ANNOTATION_ADOPT)
    if marked != unit.intent:
        said = f"it says {marked!r}" if marked else "it has none"
        return "not-marked", (f"Secret {unit.source} lacks the adopt marker {wk.ANNOTATION_ADOPT}={unit.intent} "
                              f"({said}); run `kubectl annotate secret -n {unit.namespace} {unit.name} "
                              f"{wk.ANNOTATION_ADOPT}={unit.intent}` to consent to the import")
    absent = [k for k in unit.keys if k not in data]
    if absent:
        return "held", (f"Secret {unit.source} lacks declared key(s) {', '.join(absent)} (it has "
                        f"{', '.join(sorted(data)) or 'none'}); nothing was imported")
    binary = [k for k in unit.keys if any(0xD800 <= ord(ch) <= 0xDFFF for ch in data[k])]
    if binary:
        return "held", (f"Secret {unit.source}: key(s) {', '.join(binary)} are not UTF-8 text, which the authority's "
                        "KV cannot hold as is; nothing was imported")
    return None


def record_metadata(unit: AdoptUnit, at: str, version: int, marker: str) -> dict[str, str]:
    return {
        wk.AUTHORITY: wk.AUTHORITY_VAULT,
        wk.INTENT: unit.intent,
        wk.ENVIRONMENT: unit.environment,
        wk.ORIGIN: wk.ORIGIN_ADOPTED,
        wk.ADOPTED_AT: at,
        wk.SOURCE: unit.source,
        wk.SOURCE_CLUSTER: unit.cluster,
        wk.VALUE_VERSION: str(version),
        wk.VALUE_MARKER: marker,
        **md.policy_metadata(unit.policy_name, unit.policy),
    }


def _find_entry(ledger: LedgerReader, unit: AdoptUnit) -> LedgerEntry | None:
    for entry in reversed(ledger.for_secret(unit.intent)):
        if (entry.event == "adopt" and entry.result == "ok" and entry.path == unit.vault.full
                and entry.details.get("cluster") == unit.cluster):
            return entry
    return None


def adopt(unit: AdoptUnit, kv: KV, kube: Kube, ledger: Ledger, ctx: AdoptContext, *,
          dry_run: bool = False) -> AdoptOutcome:
    """Bring one unit to ``adopted`` (or say why not, having written nothing)."""
    ledger = ledger.for_environment(unit.environment)
    vault = unit.vault
    meta = kv.read_metadata(vault.mount, vault.path)
    custom = dict(meta.custom) if meta is not None else {}
    if adopted(custom):
        return AdoptOutcome(unit, "already-adopted", "the authority owns the value; the Secret is not read again",
                            custom.get(wk.VALUE_MARKER), meta.current_version if meta else None,
                            int(custom[wk.LEDGER_SEQ]) if custom[wk.LEDGER_SEQ].isdigit() else None)
    if custom.get(wk.AUTHORITY) == wk.AUTHORITY_VAULT and custom.get(wk.ORIGIN) != wk.ORIGIN_ADOPTED:
        return AdoptOutcome(unit, "conflict", f"{vault} already holds a value the authority owns "
                            f"(origin {custom.get(wk.ORIGIN, '?')}); an import never replaces it")
    secret = kube.get_secret(unit.namespace, unit.name)
    refused = gate(unit, secret.annotations if secret else None, secret.data if secret else None)
    if refused is not None:
        return AdoptOutcome(unit, refused[0], refused[1])
    assert secret is not None
    data = {k: secret.data[k] for k in unit.keys}
    del secret  # only the declared keys go on
    current = kv.read(vault.mount, vault.path) if meta is not None and meta.current_version else None
    if current is not None and not current.deleted and dict(current.data) != data:
        return AdoptOutcome(unit, "conflict", f"{vault} already holds another value (version "
                            f"{current.version}); nothing was imported")
    if dry_run:
        return AdoptOutcome(unit, "planned", f"would import keys {', '.join(unit.keys)} of {unit.source} into "
                            f"{vault}")
    try:
        md.merged(custom, record_metadata(unit, "0000-00-00T00:00:00Z", 10**9, "v2:" + "0" * 32)
                  | {wk.LEDGER_SEQ: str(10**12)})
    except MetadataTooLarge as exc:
        raise AdoptError(f"{vault}: cannot record the import ({exc}); nothing was written") from None
    if current is None or current.deleted:
        try:
            kv.write(vault.mount, vault.path, data, cas=0 if current is None else current.version)
        except CasConflict:
            raise AdoptError(f"{vault}: written by someone else meanwhile; re-run to compare") from None
        checkpoint("adopt.write")
        current = kv.read(vault.mount, vault.path)
        if current is None or current.deleted or dict(current.data) != data:
            raise AdoptError(f"{vault}: the value read back differs from Secret {unit.source}; nothing recorded")
    marker = ctx.markers.of(vault, data)
    kv.update_custom_metadata(vault.mount, vault.path,
                              record_metadata(unit, rfc3339(ctx.clock.now()), current.version, marker))
    checkpoint("adopt.record")
    entry = _find_entry(ledger, unit)
    if entry is None:
        entry = ledger.append("adopt", actor=ctx.actor, secret=unit.intent, path=vault.full, run=ctx.run,
                              reason=ctx.reason, details={
                                  "environment": unit.environment, "cluster": unit.cluster, "source": unit.source,
                                  "keys": ",".join(unit.keys), "version": str(current.version), "marker": marker,
                                  "policy": unit.policy_name or "", "authority": wk.AUTHORITY_VAULT})
        checkpoint("adopt.ledger")
    kv.update_custom_metadata(vault.mount, vault.path, {wk.LEDGER_SEQ: str(entry.seq)})
    return AdoptOutcome(unit, "adopted", f"imported keys {', '.join(unit.keys)} of {unit.source} into {vault}",
                        marker, current.version, entry.seq)


__all__ = ["DEFAULT_REASON", "AdoptContext", "AdoptError", "AdoptOutcome", "AdoptUnit", "adopt", "adopt_units",
           "adopted", "gate", "record_metadata"]
