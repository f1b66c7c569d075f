"""The migration plan: the ordered moves that bring an adopted estate under the authority with nothing going down.

Five actions, in this order (docs/adoption.md explains each; the migration mechanism implements them):

==============  ====================================================================================================
mark            annotate each Secret to import with ``chamberlain.dev/adopt=<intent>``: the explicit consent the
                one-time import needs (nothing changes for its readers)
apply           render the generated repository and let GitOps apply it: the authority gets its policies and
                roles (consumers still read the old Secrets)
verify-import   ``chamberlain adopt verify``: the one-time import of each marked Secret's declared keys into the
                authority (check-and-set, never a file or output), ledger entry ``adopt`` each; the gate for
                everything after it
takeover        per intent (``adopt takeover --intent``): chamberlain's ExternalSecret replaces each consumer Secret's
                old writer (ExternalSecret, plain manifest; a SealedSecret is released first) with no window with
                no owner; the data never changes, so nothing restarts
cleanup         Reloader annotations (chamberlain restarts now), Vault stores nothing reads, old paths outside the
                convention (after a grace period, for a rollback)
==============  ====================================================================================================

Pure: an :class:`~chamberlain.adopt.mapping.Adoption` in, steps and file texts out.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from chamberlain.adopt.estate import ADOPT_MARKER, RELOADER_SECRET_RELOAD
from chamberlain.adopt.mapping import Adopted, Adoption, Workload

PLAN_FILE = "migration-plan.yaml"
GUIDE_FILE = "MIGRATION.md"
PLAN_API_VERSION = "adopt.chamberlain.dev/v1alpha1"  # not the intent API: validate reads it as a plain manifest
ACTIONS = ("mark", "apply", "verify-import", "takeover", "cleanup")


@dataclass(frozen=True)
class Step:
    id: str
    action: str
    kind: str
    namespace: str
    name: str
    intent: str
    command: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "action": self.action, "kind": self.kind, "namespace": self.namespace,
                "name": self.name, "intent": self.intent, "command": self.command, "why": self.why}


def _q(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def steps(adoption: Adoption, repo: str) -> list[Step]:
    """Every step, in the order to run them. Step ids are stable across runs on the same estate."""
    s = adoption.settings
    target = ("-e", s.environment, "-c", s.cluster)
    out: list[Step] = []
    for a in adoption.adopted:
        ns, secret = a.import_from
        out.append(Step(f"mark-{a.intent}", "mark", "Secret", ns, secret, a.intent,
                        _q("kubectl", "annotate", "--overwrite", "secret", "-n", ns, secret,
                           f"{ADOPT_MARKER}={a.intent}"),
                        "the explicit adopt marker: without it the import refuses to read this Secret"))
    if not adoption.adopted:
        return out
    out.append(Step("apply", "apply", "Repository", "", repo, "",
                    _q("chamberlain", "render", repo, "-o", f"{repo}/rendered"),
                    "commit the rendered output so Flux/Argo CD applies it (on the lab: chamberlain apply "
                    f"{repo} -c {s.cluster}): the authority gets the policies and roles; consumers still read "
                    "their old Secrets"))
    out.append(Step("verify-import", "verify-import", "Repository", "", repo, "",
                    _q("chamberlain", "adopt", "verify", repo, *target),
                    "imports each marked Secret's declared keys into the authority once (ledger entry adopt "
                    "each); nothing below runs before it passes"))
    for a in adoption.adopted:
        for c in a.consumers:
            kind, wns, wname = c.writer
            if kind == "SealedSecret":  # the takeover never fights another controller: release it first
                out.append(Step(f"release-{wns}-{wname}", "takeover", kind, wns, wname, a.intent,
                                _q("kubectl", "delete", "sealedsecret", "-n", wns, wname, "--cascade=orphan"),
                                f"remove the SealedSecret from Git first (else GitOps brings it back and its "
                                f"controller rewrites {c.namespace}/{c.secret_name}); the Secret and its data stay"))
        out.append(Step(f"takeover-{a.intent}", "takeover", "SecretIntent", "", a.intent, a.intent,
                        _q("chamberlain", "adopt", "takeover", repo, *target, "--intent", a.intent),
                        _takeover_why(a)))
    out.extend(_cleanup(adoption))
    return out


def _takeover_why(a: Adopted) -> str:
    """What the takeover of ``a`` replaces, Secret by Secret."""
    parts: list[str] = []
    for c in a.consumers:
        kind, ns, name = c.writer
        was = {"ExternalSecret": f"ExternalSecret {ns}/{name} (deleted once it lost the Secret)",
               "SealedSecret": "the released SealedSecret",
               "Secret": "its manifest (remove it from Git first, else GitOps re-applies the old value)"}[kind]
        parts.append(f"{c.namespace}/{c.secret_name} from {was}")
    return ("chamberlain's ExternalSecret takes over " + "; ".join(parts) + ": one guarded swap of the controller "
            "reference, the data never changes, so nothing restarts")


def _cleanup(adoption: Adoption) -> list[Step]:
    out: list[Step] = []
    by_workload: dict[Workload, list[tuple[str, str, str]]] = defaultdict(list)  # -> [(annotation, value, secret)]
    for a in adoption.adopted:
        for c in a.consumers:
            for use in c.reloader:
                by_workload[use.workload].append((use.annotation, use.value, c.secret_name))
    for wl, uses in sorted(by_workload.items(), key=lambda kv: (kv[0].namespace, kv[0].kind, kv[0].name)):
        kind = wl.kind.lower()
        for annotation in sorted({u[0] for u in uses}):
            if annotation == RELOADER_SECRET_RELOAD:
                value = next(u[1] for u in uses if u[0] == annotation)
                adopted = {u[2] for u in uses if u[0] == annotation}
                left = [n.strip() for n in value.split(",") if n.strip() and n.strip() not in adopted]
                arg = f"{annotation}={','.join(left)}" if left else f"{annotation}-"
                why = "chamberlain restarts it now for the adopted Secrets; Reloader keeps the others"
            else:
                arg = f"{annotation}-"
                why = ("chamberlain restarts it now (declared on the intent); keep Reloader's ConfigMap reloads with "
                       "configmap.reloader.stakater.com/auto=true if it had any. Until removed, both restart it "
                       "(harmless, twice)")
            out.append(Step(f"cleanup-reloader-{wl.namespace}-{kind}-{wl.name}-{annotation.rsplit('/', 1)[-1]}",
                            "cleanup", wl.kind, wl.namespace, wl.name, "",
                            _q("kubectl", "annotate", "--overwrite", kind, "-n", wl.namespace, wl.name, arg), why))
    for kind, ns, name in adoption.stores:
        command = (_q("kubectl", "delete", kind.lower(), "-n", ns, name) if ns else
                   _q("kubectl", "delete", kind.lower(), name))
        out.append(Step(f"cleanup-store-{ns or 'cluster'}-{name}", "cleanup", kind, ns, name, "", command,
                        "no ExternalSecret reads through it any more (chamberlain renders its own stores)"))
    for a in adoption.adopted:
        if a.copied_from:
            mount, _, path = a.copied_from.partition("/")
            out.append(Step(f"cleanup-path-{a.intent}", "cleanup", "VaultPath", "", a.copied_from, a.intent,
                            _q("vault", "kv", "metadata", "delete", f"-mount={mount}", path),
                            f"the value lives at {a.path} now; delete the old copy only after a grace period "
                            "(until then a rollback to the old ExternalSecret still works) and once nothing else "
                            "reads it"))
    return out


# --------------------------------------------------------------------------------------------------- files


def _intent_summary(a: Adopted) -> dict[str, Any]:
    return {
        "name": a.intent, "owner": a.owner, "ownerFrom": a.owner_from, "origin": a.origin, "path": a.path,
        **({"copiedFrom": a.copied_from} if a.copied_from else {}),
        "importFrom": {"namespace": a.import_from[0], "secretName": a.import_from[1]},
        "keys": list(a.keys),
        "consumers": [{
            "namespace": c.namespace, "secretName": c.secret_name,
            "writer": {"kind": c.writer[0], "namespace": c.writer[1], "name": c.writer[2]},
            "restart": [f"{r.kind}/{r.name}" for r in c.restart],
            "notRestarted": [f"{r.kind}/{r.name}" for r in c.readers],
        } for c in a.consumers],
        **({"notes": list(a.notes)} if a.notes else {}),
    }


def plan_document(adoption: Adoption, repo: str, read: list[str]) -> dict[str, Any]:
    """migration-plan.yaml: the steps, the intents and what was not mapped, as data (``-o json`` prints it)."""
    s = adoption.settings
    return {
        "apiVersion": PLAN_API_VERSION,
        "kind": "MigrationPlan",
        "metadata": {"name": f"adopt-{s.environment}-{s.cluster}"},
        "spec": {
            "environment": s.environment,
            "cluster": s.cluster,
            "read": read,
            "complete": adoption.complete,
            "steps": [step.as_dict() for step in steps(adoption, repo)],
            "intents": [_intent_summary(a) for a in adoption.adopted],
            "unmapped": [{"kind": u.kind, "namespace": u.namespace, "name": u.name, "reason": u.reason,
                          "rule": u.rule, **({"where": u.where} if u.where else {})} for u in adoption.unmapped],
            "skipped": [{"kind": k.kind, "namespace": k.namespace, "name": k.name, "reason": k.reason}
                        for k in adoption.skipped],
        },
    }


def _object(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace + '/' if namespace else ''}{name}"


def _md(text: str) -> str:
    """One table cell: a name read from a manifest may hold a newline or a terminal escape (no API server checked
    it), shown escaped."""
    text = text if text.isprintable() else repr(text)[1:-1]
    return text.replace("|", "\\|")


def guide(adoption: Adoption, repo: str, read: list[str]) -> str:
    """MIGRATION.md: the same plan for people, in the order to follow it."""
    s = adoption.settings
    lines = [f"# Migration plan: {s.environment} / {s.cluster}", "",
             f"Generated by `chamberlain adopt` from {', '.join(read)}. Values were never read: this plan names "
             "Secrets, keys and owners only.", "",
             f"- {len(adoption.adopted)} secrets adopted as intents, {len(adoption.unmapped)} objects not mapped, "
             f"{len(adoption.skipped)} skipped.",
             "- Follow the steps in order; each is idempotent. `verify-import` is the gate: nothing after it runs "
             "before every value is in the authority.",
             "- Nothing restarts during the takeover (values are equal); restarts are declared only where Reloader "
             "restarted before.", "", "## Steps", ""]
    current = ""
    for step in steps(adoption, repo):
        if step.action != current:
            current = step.action
            lines += [f"### {current}", ""]
        subject = f"{step.kind} {step.namespace + '/' if step.namespace else ''}{step.name}"
        lines.append(f"- **{step.id}** ({subject}): {step.why}")
        lines.append(f"  ```\n  {step.command}\n  ```")
    lines += ["", "## Intents", "",
              "| intent | owner (from) | origin | path | consumers: restart |", "| --- | --- | --- | --- | --- |"]
    for a in adoption.adopted:
        consumers = "; ".join(f"{c.namespace}/{c.secret_name} restarts "
                              f"{', '.join(f'{r.kind}/{r.name}' for r in c.restart) or 'none'}" for c in a.consumers)
        path = a.path + (f" (copied from {a.copied_from})" if a.copied_from else "")
        lines.append(f"| {a.intent} | {a.owner} ({_md(a.owner_from)}) | {a.origin} | {path} | {_md(consumers)} |")
    readers = [(a.intent, c, r) for a in adoption.adopted for c in a.consumers for r in c.readers]
    if readers:
        lines += ["", "Workloads that read an adopted Secret but were never restarted on its change (they still "
                      "are not; add a `restart` to the intent if they should be):", ""]
        lines += [f"- {r.kind} {r.namespace}/{r.name} reads {c.secret_name} ({intent})" for intent, c, r in readers]
    lines += ["", "## Not mapped", ""]
    if adoption.unmapped:
        lines += ["| object | reason | rule | where |", "| --- | --- | --- | --- |"]
        lines += [f"| {_md(_object(u.kind, u.namespace, u.name))} | {_md(u.reason)} | {u.rule} | {_md(u.where)} |"
                  for u in adoption.unmapped]
    else:
        lines.append("Everything read was mapped.")
    if adoption.skipped:
        lines += ["", "## Skipped (not application secrets, or already chamberlain's)", "",
                  "| object | reason |", "| --- | --- |"]
        lines += [f"| {_md(_object(k.kind, k.namespace, k.name))} | {_md(k.reason)} |" for k in adoption.skipped]
    return "\n".join(lines) + "\n"


__all__ = ["ACTIONS", "GUIDE_FILE", "PLAN_API_VERSION", "PLAN_FILE", "Step", "guide", "plan_document", "steps"]
