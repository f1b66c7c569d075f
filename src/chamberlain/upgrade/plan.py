"""The upgrade plan: a pure function of what was observed, no I/O, no clock.

Steps, in the order they run (each one idempotent; the apply re-observes after every step, so a step that a crash
interrupted is simply planned again):

1. ``authority-configuration`` — converge the authority to this release's configuration (one Kubernetes auth mount
   per cluster, the configurator role bound to its own ServiceAccount, the transit mount and its ledger and marker
   keys, the orchestrator policies). It runs first because every later step's ledger entry is signed with a
   transit key this step creates. While the old shared mount still holds chamberlain's roles, the configurator's
   policy may also list, read and delete roles there (never create one), so step 6 can remove them; once they are
   gone, this step is planned once more and drops that grant.
2. ``configurator-account`` — the configurator's namespace and ServiceAccount in the cluster.
3. ``legacy-configurator-role`` — the old configurator role on the shared mount is bound to the *controller's*
   ServiceAccount: while it exists the controller can reconfigure the authority. Removed as soon as this
   release's configurator has logged in at its own mount (*waiting* until then: removing the only identity that
   can configure would leave only a root token generated from the unseal shares).
4. ``markers`` — every secret whose current version still carries a ``v1`` marker gets its ``v2`` marker, with the
   ``v1`` marker and the Vault version it belongs to (``value-marker-v1``, ``value-marker-v1-version``): consumers
   annotated with the v1 marker still count as current, so nothing restarts because only the form changed.
5. ``ledger-link`` — an ``upgrade`` entry in each new partition of this cluster (and the configurator's) naming the
   old layout's head (seq and hash). The old chain is unsigned and stays readable; the signed entry pins its tail,
   so a later rewrite of the old chain no longer matches what the signed chain recorded.
6. ``legacy-roles`` — this cluster's remaining roles on the old shared mount (readers, publishers, its
   orchestrator; another cluster's roles wait for that cluster's upgrade, its stores may still use them).
   *Waiting* while a SecretStore of the cluster still logs in there (the Git re-render moves them). The mount
   itself is left enabled: it holds no data, its default name (``kubernetes``) is the one other tools use, and
   with no chamberlain role left nobody logs in to chamberlain's policies through it; disabling it is the
   operator's call.
7. ``custody`` — when ``rootOfTrust.custody`` is declared and the stored shares are not one per custodian: *manual*
   (``chamberlain authority rekey`` with k custodians' identities), or needed when the apply was given
   ``--identity`` files (then it rekeys). Never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

StepId = Literal["authority-configuration", "configurator-account", "legacy-configurator-role", "markers",
                 "ledger-link", "legacy-roles", "custody"]
State = Literal["done", "needed", "waiting", "manual"]
ORDER: tuple[StepId, ...] = ("authority-configuration", "configurator-account", "legacy-configurator-role",
                             "markers", "ledger-link", "legacy-roles", "custody")
LEGACY_CONFIGURATOR = "chamberlain.authority.configurator"
ROLE_PREFIX = "chamberlain."  # every role chamberlain ever wrote starts with it


@dataclass(frozen=True)
class Observed:
    """What the upgrade needs to know of one cluster's installation (names, counts and states; never a value)."""

    cluster: str
    configuration_changes: tuple[str, ...] = ()  # lines of the configure plan (add/change/remove ...)
    configurator_account: bool = True  # its namespace and ServiceAccount exist
    configurator_login: bool = True  # this release's configurator logs in (its own ServiceAccount, own mount)
    legacy_mount: str = "kubernetes"
    legacy_roles: tuple[str, ...] = ()  # chamberlain's roles still on the old shared mount
    stores_on_legacy: tuple[str, ...] = ()  # SecretStores (namespace/name, or name) that log in there
    v1_markers: tuple[str, ...] = ()  # secrets (mount/path) whose current marker is still v1
    old_head: tuple[int, str] | None = None  # the old layout's head: (seq, hash); None: no old ledger
    unlinked_partitions: tuple[str, ...] = ()  # partitions without the upgrade entry naming ``old_head``
    custody_declared: bool = False
    custody_in_force: bool = True  # the stored shares are one per declared custodian
    custodians: tuple[str, ...] = ()
    identities_given: bool = False


@dataclass(frozen=True)
class Step:
    id: StepId
    state: State
    changes: str  # what it changes (or would), in words
    items: tuple[str, ...] = field(default=())  # what it acts on: paths, roles, partitions (never values)

    @property
    def needed(self) -> bool:
        return self.state == "needed"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "needed": self.needed, "changes": self.changes,
                "items": list(self.items)}


def _step(id_: StepId, o: Observed) -> Step:
    if id_ == "authority-configuration":
        n = len(o.configuration_changes)
        return Step(id_, "needed" if n else "done",
                    f"converge the authority configuration ({n} change(s): per-cluster auth mount, configurator "
                    "role on its own ServiceAccount, transit keys, policies)" if n else
                    "authority configuration is current", o.configuration_changes)
    if id_ == "configurator-account":
        return Step(id_, "done" if o.configurator_account else "needed",
                    "configurator namespace and ServiceAccount exist" if o.configurator_account else
                    "create the configurator's namespace and ServiceAccount")
    if id_ == "legacy-configurator-role":
        has = LEGACY_CONFIGURATOR in o.legacy_roles
        if has and not o.configurator_login:
            # Never remove the only configurator identity before the new one is proven: without it, only a
            # root token generated from the unseal shares could reconfigure the authority.
            return Step(id_, "waiting", f"keep role {LEGACY_CONFIGURATOR} on {o.legacy_mount} until this "
                        "release's configurator logs in at its cluster's mount (check the cluster's auth settings: "
                        "--kubernetes-host/--kubernetes-ca-file/--token-reviewer-jwt-file/--kubernetes-issuer)")
        return Step(id_, "needed" if has else "done",
                    f"delete role {LEGACY_CONFIGURATOR} on the old shared mount {o.legacy_mount} (bound to the "
                    "controller's ServiceAccount)" if has else "no configurator role on the old shared mount",
                    (f"auth/{o.legacy_mount}/role/{LEGACY_CONFIGURATOR}",) if has else ())
    if id_ == "markers":
        n = len(o.v1_markers)
        return Step(id_, "needed" if n else "done",
                    f"re-key {n} version marker(s) v1 -> v2, recording the v1 marker of the same Vault version "
                    "(consumers stay current, nothing restarts)" if n else "every marker is keyed (v2)",
                    o.v1_markers)
    if id_ == "ledger-link":
        if o.old_head is None:
            return Step(id_, "done", "no ledger in the previous layout")
        seq, digest = o.old_head
        n = len(o.unlinked_partitions)
        return Step(id_, "needed" if n else "done",
                    f"append an upgrade entry naming the old layout's head (seq {seq}, hash {digest[:12]}…) to "
                    f"{n} partition(s)" if n else "every partition is linked to the old layout's head",
                    o.unlinked_partitions)
    if id_ == "legacy-roles":
        rest = tuple(r for r in o.legacy_roles if r != LEGACY_CONFIGURATOR)
        if not rest:
            return Step(id_, "done", f"no chamberlain role left on the old shared mount {o.legacy_mount}")
        if o.stores_on_legacy:
            return Step(id_, "waiting",
                        f"waiting for Git re-render: {len(o.stores_on_legacy)} SecretStore(s) still log in at "
                        f"{o.legacy_mount} (render, commit, let GitOps apply, then apply again)",
                        o.stores_on_legacy)
        return Step(id_, "needed", f"delete {len(rest)} chamberlain role(s) on the old shared mount {o.legacy_mount} "
                    "(the mount stays enabled: it holds no data and may serve others)",
                    tuple(f"auth/{o.legacy_mount}/role/{r}" for r in rest))
    # custody
    if not o.custody_declared or o.custody_in_force:
        return Step(id_, "done", "shares are sealed as the Platform declares" if o.custody_declared else
                    "no custody declared")
    if o.identities_given:
        return Step(id_, "needed", f"rekey: one share per custodian ({', '.join(o.custodians)})", o.custodians)
    return Step(id_, "manual", "run `chamberlain authority rekey PATH --identity FILE ...` with k custodians' (or the "
                "root's) identities, or `upgrade apply --identity ...`: shares are moved to custodians only with "
                "their identities", o.custodians)


def plan(observed: Observed) -> list[Step]:
    """Every step, in order, with its state (``done`` ones included, so the plan shows the whole path)."""
    return [_step(s, observed) for s in ORDER]


def next_step(steps: list[Step]) -> Step | None:
    """The first step to run now (None: nothing the apply can do; some may be waiting or manual)."""
    return next((s for s in steps if s.needed), None)


def outstanding(steps: list[Step]) -> list[Step]:
    """Steps not done: needed, waiting on Git, or left to the custodians. Empty: the upgrade is complete."""
    return [s for s in steps if s.state != "done"]


__all__ = ["LEGACY_CONFIGURATOR", "ORDER", "ROLE_PREFIX", "Observed", "State", "Step", "StepId", "next_step",
           "outstanding", "plan"]
