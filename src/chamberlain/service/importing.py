"""``chamberlain import``: a value issued upstream after the handover (RFC 6.5.2) becomes a new version in the
authority through the rotation workflow — staged, promoted, propagated through ESO, workloads restarted, one
``rotation`` ledger entry with trigger ``import``. Git never becomes an authority again: the value comes from a
file or stdin, never from the repository or the command line.

Refused with a reason, nothing changed: an unknown intent (exit 2); a source other than ``bootstrap`` or
``existingSecret`` (2: its values are generated or published, ``rotate`` them); a value file inside the repository
(2); a malformed value (2: not a mapping of exactly the secret's keys to non-empty strings, too large, not UTF-8);
not handed over (or adopted) yet in that environment (1); a run of that secret in flight (1, the lease); a held
secret (1).

Idempotent and resumable: the same value again is ``unchanged``; an import interrupted after its value was staged
is resumed by running the same import again (its run is recognised by the staged value's marker) or by the
controller, from what Vault staged; one interrupted before staging fails its run when resumed (nothing changed).
Acts as the cluster's orchestrator, as ``rotate`` does. Results carry names, versions and markers; never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chamberlain.errors import ChamberlainError, UsageError
from chamberlain.service.context import new_run_id
from chamberlain.service.repository import load_platform

if TYPE_CHECKING:
    from collections.abc import Callable

    from chamberlain.authority.kv import KV
    from chamberlain.intent.model import SecretIntent
    from chamberlain.intent.paths import VaultPath
    from chamberlain.rotation.run import RotationRun
    from chamberlain.service.context import Caller, Servers
    from chamberlain.values.markers import Markers

DEFAULT_REASON = "upstream-issued value imported"


class NotHandedOver(ChamberlainError):
    """The secret is not (yet) owned by the authority in that environment: hand it over first."""


@dataclass(frozen=True)
class ImportRequest:
    """One secret's new value, as supplied: ``raw`` bytes read from ``source`` (a file, or ``-`` for stdin)."""

    root: Path
    name: str
    environment: str | None
    raw: bytes = field(repr=False)
    source: str
    source_path: Path | None = None  # the file read, to refuse one inside the repository
    cluster: str | None = None
    key: str | None = None
    reason: str = DEFAULT_REASON
    max_wait: float = 120.0
    timeout: float = 120.0
    # Sees (secret, stage) before each step of the run: the CLI's progress display. Never given a value.
    on_stage: Callable[[str, str], None] | None = field(default=None, compare=False)

    def check(self) -> None:
        if not self.environment:
            raise UsageError("pass --environment: an import lands in one environment's runtime path")
        if not self.reason.strip():
            raise UsageError("--reason may not be empty (it is recorded on the run and in the ledger)")
        if self.source_path is not None and _inside(self.source_path, self.root):
            raise UsageError(f"{self.source}: the value file is inside the intent repository; a plaintext value "
                             "never belongs in Git (write it outside, or pass --from-file -)")


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:  # pragma: no cover - an unreadable path was refused when it was read
        return False


@dataclass
class ImportResult:
    ok: bool
    result: str  # imported | unchanged | failed | resumable
    row: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "result": self.result, **self.row}


def _bootstrap_intent(intents: dict[str, SecretIntent], name: str) -> SecretIntent:
    intent = intents.get(name)
    if intent is None:
        raise UsageError(f"unknown secret {name!r}: no SecretIntent of that name in the repository")
    source = intent.spec.source
    if source.bootstrap is None and source.existing_secret is None:
        raise UsageError(f"{name}: source is {source.kind}, not bootstrap; only a value that started as bootstrap "
                         "(or was adopted from an existing Secret) is issued upstream (rotate this one with "
                         "`chamberlain rotate`)")
    return intent


def _handed_over(kv: KV, path: VaultPath, name: str, environment: str) -> tuple[dict[str, str], str]:
    """The current values and marker of a secret the authority owns after a recorded handover in
    ``environment``; :class:`NotHandedOver` otherwise."""
    from chamberlain import wellknown as wk

    meta = kv.read_metadata(path.mount, path.path)
    custom = meta.custom if meta is not None else {}
    recorded = (custom.get(wk.AUTHORITY) == wk.AUTHORITY_VAULT
                and custom.get(wk.ORIGIN) in ("bootstrap", wk.ORIGIN_ADOPTED)
                and custom.get(wk.ENVIRONMENT) == environment and wk.LEDGER_SEQ in custom)
    current = kv.read(path.mount, path.path) if recorded else None
    if current is None or current.deleted:
        raise NotHandedOver(f"{name}: not handed over in {environment} yet ({path}); run `chamberlain handover` "
                            "(or, for an adopted value, `chamberlain adopt verify`) first (an import replaces a "
                            "value the authority owns)")
    return dict(current.data), custom.get(wk.VALUE_MARKER, "")


def _lease(kv: KV, path: VaultPath, name: str, marker: str, reason: str, caller: Caller,
           markers: Markers) -> RotationRun:
    """A new import run, or this same import's run if an earlier attempt staged it and was interrupted."""
    from chamberlain.rotation import run as runs
    from chamberlain.rotation import workflow as wf

    existing = runs.load(kv, path)
    if (existing is not None and not existing.finished and existing.trigger == "import"
            and wf.staged_marker(kv, existing, markers) == marker):
        return existing  # staged in Vault before the interruption: go on from there
    return wf.start(kv, path, secret=name, run_id=new_run_id(), trigger="import", reason=reason,
                    now=caller.clock.now())


def import_value(request: ImportRequest, servers: Servers, caller: Caller) -> ImportResult:
    """Bring an upstream-issued value into the authority as a new version, through the rotation workflow."""
    from chamberlain.audit.ledger import TransitSigner
    from chamberlain.handover import select_cluster
    from chamberlain.rotation import manual as rm
    from chamberlain.rotation.rotators.imported import ImportedRotator, parse_values
    from chamberlain.values.markers import TransitMarkers

    request.check()
    repo, platform = load_platform(request.root)
    intents = {i.obj.metadata.name: i.obj for i in repo.intents}
    intent = _bootstrap_intent(intents, request.name)
    chosen, _ = select_cluster(platform, request.environment, request.cluster)
    placed = rm.place(platform, intent, request.environment, chosen)
    client = servers.orchestrator(platform, chosen)
    kv = client.kv
    current, marker_now = _handed_over(kv, placed.vault, placed.name, placed.environment)
    values = parse_values(request.raw, source=request.source, keys=sorted(current), current=current,
                          key=request.key)
    markers = TransitMarkers(client.transit)  # keyed: a marker never lets a weak value be guessed offline
    marker = markers.of(placed.vault, values)
    base = {"secret": placed.name, "environment": placed.environment, "cluster": chosen, "path": placed.vault.full}
    if values == current:
        return ImportResult(True, "unchanged", {**base, "marker": marker_now,
                                                "message": "the authority already holds this value"})
    run = _lease(kv, placed.vault, placed.name, marker, request.reason, caller, markers)
    deps, timed = rm.build_deps(kv, servers.kube(), platform, intents, placed, actor=caller.actor,
                                clock=caller.clock, timeout=request.timeout, rotator=ImportedRotator(values),
                                signer=TransitSigner(client.transit), markers=markers)
    on_stage = request.on_stage
    run = rm.drive(run, deps, max_wait=request.max_wait,
                   on_step=None if on_stage is None else lambda r: on_stage(r.secret, r.stage))
    row = {**base, **rm.run_report(run, timed)}
    if not run.finished:
        row["message"] = f"run {run.run_id} is {run.stage}; it resumes from its record (re-run this import)"
        return ImportResult(False, "resumable", row)
    return ImportResult(run.succeeded, "imported" if run.succeeded else "failed", row)


__all__ = ["DEFAULT_REASON", "ImportRequest", "ImportResult", "NotHandedOver", "import_value"]
