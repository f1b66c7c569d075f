"""The handover decision: given what is observed now, which single step comes next (pure, no I/O).

A handover is a few small idempotent steps, and the persisted state of Vault and of the cluster *is* the progress
record, so a crash anywhere resumes at the right step on the next run:

================  ======================================================================================
write             copy the bootstrap Secret's data to the runtime path, check-and-set 0 (create only), then read
                  it back and compare in memory (verify)
record            write custom_metadata ``authority=vault`` + provenance + the policy in force: **the commit
                  point**; before it the bootstrap Secret is the authority, from it on Vault is
consume           retire the bootstrap Secret per ``afterHandover`` (delete / inert / ignore) — only once no
                  GitOps controller applies it any more (:mod:`.gitops`), or it would come back
ledger            append the ``handover`` ledger entry and note its sequence number on the secret: after consume
                  (``retired.<cluster>``, the entry records the retirement too), or, while GitOps still applies the
                  Secret, before it (``handover-seq.<cluster>``)
await-retirement  GitOps still applies the Secret and the handover is recorded: its retirement must be declared
                  in Git (``retiredIn``) and reconciled first; the run ends here, the bootstrap Secret untouched
retire            after a deferred consume: append the ``retire`` ledger entry (``retired.<cluster>``)
done              nothing left to do
================  ======================================================================================

``conflict`` (Vault holds a different value) and ``blocked`` (the observed state is not one a handover can
produce, e.g. the bootstrap Secret is missing) stop the handover of that secret and touch nothing.

The bootstrap Secret is retired only after the Vault copy is verified and recorded, so at every instant exactly one
authority exists: the bootstrap Secret until ``record``, Vault after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    WRITE = "write"
    RECORD = "record"
    CONSUME = "consume"
    LEDGER = "ledger"
    AWAIT = "await-retirement"
    RETIRE = "retire"
    DONE = "done"
    CONFLICT = "conflict"
    BLOCKED = "blocked"


class Bootstrap(StrEnum):
    """The bootstrap Secret in the cluster."""

    ABSENT = "absent"
    PRESENT = "present"  # still authoritative (not marked consumed)
    CONSUMED = "consumed"  # annotated chamberlain.dev/consumed (inert or ignore)
    FOREIGN = "foreign"  # a Secret of that name exists but is not labelled as this intent's bootstrap Secret


class VaultValue(StrEnum):
    """The current value at the runtime path, compared with the bootstrap Secret's data when it has some."""

    ABSENT = "absent"
    EQUAL = "equal"
    DIFFERENT = "different"
    PRESENT = "present"  # exists; not compared (no bootstrap data to compare with)


@dataclass(frozen=True)
class Observed:
    bootstrap: Bootstrap
    vault: VaultValue
    recorded: bool  # custom_metadata says authority=vault
    recorded_here: bool  # ... and names this cluster's bootstrap Secret as its source
    retired: bool  # custom_metadata has retired.<this cluster>
    gitops: bool = False  # a GitOps controller still applies the bootstrap Secret (it would come back if consumed)
    logged: bool = False  # custom_metadata has handover-seq.<this cluster>: handed over, retirement deferred


@dataclass(frozen=True)
class Decision:
    step: Step
    why: str


TERMINAL = frozenset({Step.DONE, Step.CONFLICT, Step.BLOCKED, Step.AWAIT})


def next_step(s: Observed) -> Decision:
    """The one step to take next. Messages name states, never values."""
    if s.bootstrap is Bootstrap.FOREIGN:
        return Decision(Step.BLOCKED, "the Secret at the bootstrap name is not labelled as this intent's bootstrap "
                                      "Secret (chamberlain.dev/class, chamberlain.dev/intent); it is not touched")
    if s.recorded:
        return _after_commit(s)
    if s.bootstrap is Bootstrap.ABSENT:
        if s.vault is VaultValue.ABSENT:
            return Decision(Step.BLOCKED, "the bootstrap Secret is not in the cluster (materialize it first); "
                                          "Vault has no value either")
        return Decision(Step.BLOCKED, "the bootstrap Secret is not in the cluster, and Vault holds a value that no "
                                      "handover recorded; inspect it before recording anything")
    if s.bootstrap is Bootstrap.CONSUMED:
        return Decision(Step.BLOCKED, "the bootstrap Secret is marked consumed, but Vault records no handover")
    if s.vault is VaultValue.ABSENT:
        return Decision(Step.WRITE, "Vault has no value yet")
    if s.vault is VaultValue.EQUAL:
        return Decision(Step.RECORD, "Vault holds the bootstrap value (verified); record the transfer")
    return Decision(Step.CONFLICT, "Vault already holds a different value at the runtime path")


def _after_commit(s: Observed) -> Decision:
    if s.bootstrap is Bootstrap.PRESENT:
        if s.vault is VaultValue.EQUAL:
            return _consume(s, "Vault is the authority; retire the bootstrap Secret")
        if s.vault is VaultValue.DIFFERENT and s.recorded_here:
            # This very Secret was handed over and Vault has moved on since (e.g. a rotation): still retire it.
            return _consume(s, "Vault is the authority (its value changed since the handover); retire the "
                               "bootstrap Secret")
        if s.vault is VaultValue.DIFFERENT:
            return Decision(Step.CONFLICT, "Vault is the authority from another source and holds a different "
                                           "value than this cluster's bootstrap Secret")
        return Decision(Step.BLOCKED, "Vault records a handover but holds no current value")
    if s.retired:
        return Decision(Step.DONE, "already handed over")
    if s.logged:
        return Decision(Step.RETIRE, "the bootstrap Secret is retired; record its retirement in the ledger")
    return Decision(Step.LEDGER, "the bootstrap Secret is retired; record the handover in the ledger")


def _consume(s: Observed, why: str) -> Decision:
    """Consume, unless GitOps still applies the Secret: then record the handover and wait for Git to retire it."""
    if not s.gitops:
        return Decision(Step.CONSUME, why)
    if s.logged:
        return Decision(Step.AWAIT, "Vault is the authority, but GitOps still applies the bootstrap Secret: declare "
                                    "its retirement in Git (retiredIn), let GitOps reconcile, then re-run")
    return Decision(Step.LEDGER, "Vault is the authority, but GitOps still applies the bootstrap Secret: record "
                                 "the handover now, retire the Secret once Git no longer declares it")
