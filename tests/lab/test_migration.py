"""Migration of an existing estate on the real lab (the session's demo world: kube-apiserver, the real ESO, Vault
after the demo's handover), in its own namespaces ``legacy-*``.

The estate, as a team has it before chamberlain: plain Secrets applied by hand, an ExternalSecret of its own
(``creationPolicy: Owner``, named unlike its Secret) reading a path of the authority outside chamberlain's
convention through a legacy SecretStore and role, a dozen workloads (objects only: the lab runs no kubelet) with
Reloader annotations. The intents are written by hand as ``chamberlain adopt`` writes them (issue 14 contract:
``source.existingSecret`` per Secret, rotation static, the Secret itself as the consumer).

The plan, followed step by step: ``mark`` (``kubectl annotate ... chamberlain.dev/adopt=<intent>``), ``verify-import``
(the real ``chamberlain adopt verify`` CLI), ``takeover`` (chamberlain's rendered ExternalSecrets applied; the old
ExternalSecret released with ``creationPolicy: Orphan`` and deleted). Proven against the real servers: every Secret
exists throughout with byte-identical data (fingerprints computed here only), ends owned by chamberlain's
ExternalSecret with the authority's version marker, no pod template changes, one ``adopt`` ledger entry per secret
(the chain verifies), and the canary values appear in no output, record or annotation.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from tests.conftest import REPO_ROOT, CliResult, run_cli
from tests.lab.demo_lab import World, wait_for

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402
from chamberlain.authority.model import KubernetesRole  # noqa: E402
from chamberlain.clock import SystemClock  # noqa: E402
from chamberlain.service import authority  # noqa: E402
from chamberlain.service.context import Caller, ConnectionOptions, LiveServers  # noqa: E402

ESO = ("external-secrets.io", "v1")
MOUNT, ENV, CLUSTER, OWNER = "secret", "dev", "dev1", "team-legacy"
AUTH_MOUNT = "kubernetes-dev1"
SHOP, BILLING, SEARCH = "legacy-shop", "legacy-billing", "legacy-search"
LEGACY_PATH = "dev/legacy/billing-stripe"  # where the old ExternalSecret reads: outside <env>/<owner>/<name>
OLD_ES = "stripe-from-vault"
PEM = "-----BEGIN PRIVATE KEY-----\ncanary-LegacyPem-Zq81Lw\n-----END PRIVATE KEY-----\n"

# namespace -> Secret -> data; every value a canary that must never leave the Secret and the authority
SECRETS: dict[str, dict[str, dict[str, str]]] = {
    SHOP: {"shop-db": {"username": "shop", "password": "canary-LegacyShopDb-7fK2pQ"},
           "shop-api-key": {"token": "canary-LegacyShopApi-Vb93Xe"},
           "shop-tls": {"tls.key": PEM}},
    SEARCH: {"search-admin": {"user": "admin", "password": "canary-LegacySearch-Hw4Rt0 with: spaces & ':'"}},
    BILLING: {"billing-stripe": {"api-key": "canary-LegacyStripe-Mm62Ud"}},  # materialized by the old ES
}
# workload -> (namespace, kind, the Secret it reads, its Reloader annotation)
WORKLOADS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "shop-web": (SHOP, "Deployment", "shop-db", {"secret.reloader.stakater.com/reload": "shop-db"}),
    "shop-worker": (SHOP, "Deployment", "shop-db", {"reloader.stakater.com/auto": "true"}),
    "shop-cron": (SHOP, "Deployment", "shop-db", {"reloader.stakater.com/auto": "true"}),
    "shop-api": (SHOP, "Deployment", "shop-api-key", {"secret.reloader.stakater.com/reload": "shop-api-key"}),
    "shop-gateway": (SHOP, "Deployment", "shop-tls", {"secret.reloader.stakater.com/reload": "shop-tls"}),
    "shop-cache": (SHOP, "StatefulSet", "shop-db", {"reloader.stakater.com/auto": "true"}),
    "search-api": (SEARCH, "Deployment", "search-admin", {"reloader.stakater.com/auto": "true"}),
    "search-indexer": (SEARCH, "StatefulSet", "search-admin", {"reloader.stakater.com/auto": "true"}),
    "search-ui": (SEARCH, "Deployment", "search-admin", {}),
    "billing-api": (BILLING, "Deployment", "billing-stripe", {"reloader.stakater.com/auto": "true"}),
    "billing-webhooks": (BILLING, "Deployment", "billing-stripe",
                         {"secret.reloader.stakater.com/reload": "billing-stripe"}),
    "billing-reports": (BILLING, "Deployment", "billing-stripe", {}),
}
CANARIES = sorted({m for secrets in SECRETS.values() for data in secrets.values() for v in data.values()
                   for m in re.findall(r"canary-[A-Za-z0-9-]+", v)})


def _hand_intents() -> str:
    """What `chamberlain adopt` writes for this estate, by hand (the contract's shape), when it is not installed."""
    docs = []
    for ns, secrets in SECRETS.items():
        for name, data in secrets.items():
            docs.append(f"""apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {{name: {name}}}
spec:
  owner: {OWNER}
  purpose: Adopted from {ns}/{name} (existing estate)
  classification: runtime
  environments: [{ENV}]
  source:
    existingSecret: {{namespace: {ns}, secretName: {name}, keys: [{', '.join(json.dumps(k) for k in data)}]}}
  rotation: {{type: static}}
  consumers:
    - {{namespace: {ns}, secretName: {name}}}
""")
    return "---\n".join(docs)


def _fingerprint(secret: Any) -> str:
    """sha256 over the Secret's data bytes, key by key (test-only; compared, never printed)."""
    h = hashlib.sha256()
    for key in sorted(secret.data or {}):
        h.update(key.encode() + b"\0" + base64.b64decode(secret.data[key]) + b"\0")
    return h.hexdigest()


def _controller(secret: Any) -> str | None:
    for ref in secret.metadata.owner_references or []:
        if ref.controller:
            return f"{ref.kind}/{ref.name}"
    return None


@dataclass
class Watch:
    """Polls every legacy Secret while the takeover runs: each must always exist with the same data."""

    core: Any
    expected: dict[tuple[str, str], str]
    seen_missing: list[str] = field(default_factory=list)
    seen_changed: list[str] = field(default_factory=list)
    ownerless: dict[str, int] = field(default_factory=dict)  # Secret -> polls that saw it with no controller
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            for (ns, name), fp in self.expected.items():
                try:
                    s = self.core.read_namespaced_secret(name, ns)
                except kubernetes.client.ApiException as exc:
                    if exc.status == 404:
                        self.seen_missing.append(f"{ns}/{name}")
                        continue
                    raise
                if _fingerprint(s) != fp:
                    self.seen_changed.append(f"{ns}/{name}")
                if _controller(s) is None:
                    key = f"{ns}/{name}"
                    self.ownerless[key] = self.ownerless.get(key, 0) + 1
            self.polls += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


class Estate:
    def __init__(self, w: World, repo: Path) -> None:
        self.w, self.repo = w, repo
        self.plan: list[dict[str, str]] = []
        self.core = kubernetes.client.CoreV1Api(w.api)
        self.apps = kubernetes.client.AppsV1Api(w.api)
        self.custom = kubernetes.client.CustomObjectsApi(w.api)

    def run(self, argv: list[str]) -> CliResult:
        """The real CLI in a child process."""
        driver = "from chamberlain.cli.main import main; main()"
        proc = subprocess.run([sys.executable, "-c", driver, *argv], capture_output=True, text=True, timeout=120,
                              cwd=REPO_ROOT, check=False)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def secret(self, ns: str, name: str) -> Any:
        return self.core.read_namespaced_secret(name, ns)

    def templates(self) -> dict[str, dict[str, str]]:
        out = {}
        for name, (ns, kind, _, _) in WORKLOADS.items():
            read = (self.apps.read_namespaced_deployment if kind == "Deployment"
                    else self.apps.read_namespaced_stateful_set)
            out[name] = dict(read(name, ns).spec.template.metadata.annotations or {})
        return out

    def force_sync(self, ns: str, name: str) -> None:
        self.w.kube.annotate_external_secret(ns, name, {wk.ESO_FORCE_SYNC: f"{time.monotonic()}"})


def _workload(name: str, ns: str, kind: str, secret: str, reloader: dict[str, str]) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": name}, "annotations": {"legacy.example/config-rev": "3"}},
                "spec": {"containers": [{"name": name, "image": "example.invalid/legacy:1",
                                         "envFrom": [{"secretRef": {"name": secret}}]}]}}
    spec: dict[str, Any] = {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns,
                                                                "annotations": reloader}, "spec": spec}


def _legacy_reader(w: World, servers: LiveServers, platform: Any) -> None:
    """The estate's own Vault role (as a team set it up by hand): ESO's legacy-eso in legacy-billing reads the
    old path. Written with the configurator identity, which may write policies and roles."""
    admin = servers.configurator(platform, CLUSTER)
    admin.policies.write("legacy-billing-read", f'path "{MOUNT}/data/{LEGACY_PATH}" {{ capabilities = ["read"] }}\n')
    admin.auth.write_role(AUTH_MOUNT, "legacy-billing", KubernetesRole(
        bound_service_account_names=("legacy-eso",), bound_service_account_namespaces=(BILLING,), audience="vault",
        token_policies=("legacy-billing-read",), token_ttl=600, token_max_ttl=1200))


def _store(w: World, name: str, ns: str, role: str, account: str) -> dict[str, Any]:
    return {"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": name, "namespace": ns},
            "spec": {"provider": {"vault": {
                "server": w.lab.authority.address, "path": MOUNT, "version": "v2",
                "caBundle": base64.b64encode(w.lab.pki.ca_pem.encode()).decode(),
                "auth": {"kubernetes": {"mountPath": AUTH_MOUNT, "role": role,
                                        "serviceAccountRef": {"name": account, "audiences": ["vault"]}}}}}}}


def _hand_plan(repo: Path) -> list[dict[str, str]]:
    """The plan `chamberlain adopt` writes (migration-plan.yaml, the contract's steps), by hand."""
    target = ["-e", ENV, "-c", CLUSTER]
    out = [{"action": "mark", "kind": "Secret", "namespace": ns, "name": name, "intent": name,
            "command": f"kubectl annotate --overwrite secret -n {ns} {name} {wk.ANNOTATION_ADOPT}={name}"}
           for ns, secrets in SECRETS.items() for name in secrets]
    out.append({"action": "apply", "kind": "Repository", "namespace": "", "name": str(repo), "intent": "",
                "command": f"chamberlain render {repo} -o {repo}/rendered"})
    out.append({"action": "verify-import", "kind": "Repository", "namespace": "", "name": str(repo), "intent": "",
                "command": shlex.join(["chamberlain", "adopt", "verify", str(repo), *target])})
    out += [{"action": "takeover", "kind": "SecretIntent", "namespace": "", "name": name, "intent": name,
             "command": shlex.join(["chamberlain", "adopt", "takeover", str(repo), *target, "--intent", name])}
            for secrets in SECRETS.values() for name in secrets]
    return out


def _adopt_available() -> bool:
    return importlib.util.find_spec("chamberlain.adopt") is not None


def _adopt(e: Estate, base: Path) -> list[dict[str, str]]:
    """The intents and the plan for the estate: `chamberlain adopt --from-cluster` when this installation has it
    (its intents copied next to the demo's, so `authority configure` keeps every role the other tests use), else
    written by hand in the same shape. Returns the plan's steps, with the repository path made ours."""
    if not _adopt_available():
        (e.repo / "intents" / "legacy.yaml").write_text(_hand_intents(), encoding="utf-8")
        return _hand_plan(e.repo)
    out = base / "adopted"
    # The demo's Platform with the RotationPolicy documents it names (its default policy travels with it).
    platform = base / "platform.yaml"
    platform.write_text((e.repo / "platform.yaml").read_text().rstrip("\n") + "\n---\n"
                        + (e.repo / "policies" / "rotation.yaml").read_text(), encoding="utf-8")
    got = run_cli("adopt", "--from-cluster", *(a for ns in SECRETS for a in ("-n", ns)), "--out", str(out),
                  "--platform", str(platform), "-e", ENV, "-c", CLUSTER,
                  "--kubeconfig", str(e.w.lab.kubeconfig), "-o", "json")
    assert got.code == 0, got.out + got.err
    for canary in CANARIES:
        assert canary not in got.out + got.err
    shutil.copytree(out / "intents", e.repo / "intents" / "adopted")
    steps: list[dict[str, str]] = json.loads(got.out)["plan"]["spec"]["steps"]
    return [{**st, "command": st["command"].replace(str(out), str(e.repo))} for st in steps]


@pytest.fixture(scope="module")
def estate(demo_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    """The legacy estate in the cluster and the authority (its own role, store and ExternalSecret), then the
    repository and plan `adopt` writes for it (plus the demo's own intents), the authority configured for it."""
    from chamberlain.service import load_valid

    w = demo_world
    t0 = time.monotonic()
    base = tmp_path_factory.mktemp("migration")
    repo = base / "repo"
    shutil.copytree(w.repo, repo, ignore=shutil.ignore_patterns(".git"))
    e = Estate(w, repo)
    for ns in SECRETS:
        w.kube.ensure_namespace(ns)
    for ns, secrets in SECRETS.items():
        for name, data in secrets.items():
            if ns != BILLING:  # kubectl apply'd by the team, no owner
                w.kube.create_secret(ns, name, data, labels={"app.kubernetes.io/part-of": "legacy"})
    for name, (ns, kind, secret, reloader) in WORKLOADS.items():
        w.kube.apply_manifest(_workload(name, ns, kind, secret, reloader), "legacy-team")
    # The ExternalSecret already reading from the authority: its value at the old path, its own store and role.
    w.kv.write(MOUNT, LEGACY_PATH, SECRETS[BILLING]["billing-stripe"], cas=0)
    jwt = base / "reviewer.jwt"
    jwt.write_text(w.kube.service_account_token("vault-system", "vault-auth", [], 24 * 3600))
    jwt.chmod(0o600)
    conn = ConnectionOptions(vault_addr=w.lab.authority.address, vault_cacert=w.lab.pki.ca.cert,
                             kubeconfig=w.lab.kubeconfig)
    platform = load_valid(repo).platform
    assert platform is not None
    with LiveServers(conn, SystemClock()) as servers:
        _legacy_reader(w, servers, platform)
    w.kube.ensure_service_account(BILLING, "legacy-eso")
    w.kube.apply_manifest(_store(w, "legacy-vault", BILLING, "legacy-billing", "legacy-eso"), "legacy-team")
    w.kube.apply_manifest({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": OLD_ES, "namespace": BILLING, "labels": {"app.kubernetes.io/part-of": "legacy"}},
        "spec": {"refreshInterval": "1h", "secretStoreRef": {"kind": "SecretStore", "name": "legacy-vault"},
                 "target": {"name": "billing-stripe", "creationPolicy": "Owner"},
                 "dataFrom": [{"extract": {"key": LEGACY_PATH}}]}}, "legacy-team")

    def materialized() -> bool:
        try:
            s = e.secret(BILLING, "billing-stripe")
        except kubernetes.client.ApiException:
            e.force_sync(BILLING, OLD_ES)
            return False
        return _controller(s) == f"ExternalSecret/{OLD_ES}"

    wait_for(materialized, 60, "the legacy ExternalSecret materializes billing-stripe")
    e.plan = _adopt(e, base)
    assert load_valid(repo).platform is not None
    with LiveServers(conn, SystemClock()) as servers:
        # chamberlain's reader roles of the legacy namespaces, as `authority configure` writes them from Git
        authority.configure(authority.Selection(repo, None, CLUSTER, authority.ConfigureOptions(
            audit_file=str(w.lab.authority.audit_log), token_reviewer_jwt_file=jwt)), servers,
            Caller("lab:test", SystemClock()))
    how = "chamberlain adopt --from-cluster" if _adopt_available() else "intents and plan by hand"
    print(f"\n[migration] the estate set up and adopted ({how}) in {time.monotonic() - t0:.1f}s")
    yield e
    for ns in SECRETS:  # the shared world stays as the other tests know it
        with contextlib.suppress(kubernetes.client.ApiException):
            e.core.delete_namespace(ns)


def _rendered_objects(e: Estate) -> dict[str, list[dict[str, Any]]]:
    """chamberlain's rendered ESO objects of each legacy namespace, pointed at the lab's Vault (as the demo's
    materialize does: loopback address and the lab CA)."""
    import yaml

    from chamberlain.service import repository

    out = e.repo.parent / "rendered"
    assert repository.render(e.repo, out).rendered
    objects: dict[str, list[dict[str, Any]]] = {}
    for ns in SECRETS:
        docs = [d for d in yaml.safe_load_all((out / f"envs/{ENV}/{CLUSTER}/namespaces/{ns}.yaml").read_text()) if d]
        for d in docs:
            if d["kind"] == "SecretStore":
                d["spec"]["provider"]["vault"]["server"] = e.w.lab.authority.address
                d["spec"]["provider"]["vault"]["caBundle"] = base64.b64encode(e.w.lab.pki.ca_pem.encode()).decode()
        objects[ns] = docs
    return objects


def _argv(e: Estate, command: str) -> list[str]:
    """A plan step's `chamberlain ...` command as this lab runs it: its server options and JSON output added."""
    words = shlex.split(command)
    assert words[0] == "chamberlain", command
    return [*words[1:], *e.w.vault_args()[4:], "-o", "json"]  # -e/-c come from the step itself


def test_an_estate_is_adopted_without_a_changed_value_or_a_restart(estate: Estate) -> None:
    """Follow the plan step by step; prove nothing changed for the workloads and everything is recorded."""
    e, w = estate, estate.w
    started = time.monotonic()
    names = [(ns, name) for ns, secrets in SECRETS.items() for name in secrets]
    before = {(ns, name): _fingerprint(e.secret(ns, name)) for ns, name in names}
    templates = e.templates()
    adopt_entries = len([x for x in LedgerReader(w.kv, MOUNT).entries() if x.event == "adopt"])
    actions = [st["action"] for st in e.plan]
    assert actions.index("verify-import") > max(i for i, a in enumerate(actions) if a == "mark")
    assert actions.index("verify-import") < min(i for i, a in enumerate(actions) if a == "takeover")
    verify = next(st for st in e.plan if st["action"] == "verify-import")

    # Without the marker nothing is imported: the person's consent comes first.
    refused = run_cli(*_argv(e, verify["command"]))
    assert refused.code == 1, refused.out + refused.err
    assert {r["result"] for r in json.loads(refused.out)["imports"]} == {"not-marked"}
    for r in json.loads(refused.out)["imports"]:
        if r["source"] != f"{BILLING}/billing-stripe":  # the old ExternalSecret's value may sit at its path already
            assert w.kv.read_metadata(MOUNT, r["path"].split("/", 1)[1]) is None

    outputs: list[str] = [refused.out, refused.err]
    watch = Watch(e.core, before)
    thread: threading.Thread | None = None
    rows: dict[str, dict[str, Any]] = {}
    moved: dict[str, dict[str, Any]] = {}
    applied = takeover = 0.0
    try:
        for step in e.plan:
            action = step["action"]
            if action == "mark":
                e.core.patch_namespaced_secret(step["name"], step["namespace"], {
                    "metadata": {"annotations": {wk.ANNOTATION_ADOPT: step["intent"]}}})
            elif action == "apply":  # what GitOps does with the rendered tree, for the legacy namespaces only
                t = time.monotonic()
                for docs in _rendered_objects(e).values():
                    for doc in docs:
                        w.kube.apply_manifest(doc, "chamberlain")
                applied = time.monotonic() - t
            elif action == "verify-import":  # the real CLI, in a child process
                got = e.run([*_argv(e, step["command"]), "--wait", "10"])
                outputs += [got.out, got.err]
                assert got.code == 0, got.out + got.err
                rows = {r["source"]: r for r in json.loads(got.out)["imports"]}
                again = run_cli(*_argv(e, step["command"]))
                outputs += [again.out, again.err]
                assert again.code == 0 and {r["result"] for r in json.loads(again.out)["imports"]} == {
                    "already-adopted"}
                thread = threading.Thread(target=watch.run, daemon=True)
                thread.start()
            elif action == "takeover" and step["kind"] != "SealedSecret":
                t = time.monotonic()
                took = run_cli(*_argv(e, step["command"]))
                takeover += time.monotonic() - t
                outputs += [took.out, took.err]
                assert took.code == 0, took.out + took.err
                moved.update({r["secret"]: r for r in json.loads(took.out)["takeovers"]})
            elif action == "cleanup" and step["kind"] in ("Deployment", "StatefulSet") and \
                    step["command"].startswith("kubectl annotate"):
                # Reloader's annotations leave the workload's own metadata: the pod template stays as it is
                change = shlex.split(step["command"])[-1]
                key, _, value = change.partition("=")
                ann = {key.removesuffix("-"): None} if change.endswith("-") and not value else {key: value}
                patch = {"metadata": {"annotations": ann}}
                if step["kind"] == "Deployment":
                    e.apps.patch_namespaced_deployment(step["name"], step["namespace"], patch)
                else:
                    e.apps.patch_namespaced_stateful_set(step["name"], step["namespace"], patch)
        time.sleep(1.0)  # the garbage collector has seen the old ExternalSecret go: the Secret must stay
    finally:
        watch.stop()
        if thread is not None:
            thread.join(5)

    assert sorted(rows) == sorted(f"{ns}/{name}" for ns, name in names)
    assert {k: r["result"] for k, r in rows.items()} == {k: "adopted" for k in rows}
    for (ns, name) in names:
        r = rows[f"{ns}/{name}"]
        mount, path = r["path"].split("/", 1)
        meta = w.kv.read_metadata(mount, path)
        assert meta.custom["origin"] == "adopted" and meta.custom["authority"] == "vault"
        assert meta.custom["source"] == f"{ns}/{name}" and meta.custom["value-marker"] == r["marker"]
        assert dict(w.kv.read(mount, path).data) == SECRETS[ns][name]

    assert sorted(moved) == sorted(f"{ns}/{name}" for ns, name in names)
    assert moved[f"{BILLING}/billing-stripe"]["previousOwner"] == f"ExternalSecret/{OLD_ES}"
    assert moved[f"{BILLING}/billing-stripe"]["result"] == "taken-over"
    for key, row in moved.items():  # ESO may adopt a plain Secret (no controller) as soon as it is applied
        assert row["dataUnchanged"] is True and row["result"] in ("taken-over", "already-owned"), (key, row)
    assert watch.polls > 0 and not watch.seen_missing and not watch.seen_changed, (watch.seen_missing,
                                                                                   watch.seen_changed)
    assert watch.ownerless.get(f"{BILLING}/billing-stripe", 0) == 0, "billing-stripe always had a controller"
    for ns, name in names:
        s = e.secret(ns, name)
        assert _fingerprint(s) == before[(ns, name)], f"{ns}/{name} keeps its data, byte for byte"
        assert _controller(s) == f"ExternalSecret/{name}"
        assert (s.metadata.annotations or {}).get(wk.ANNOTATION_VERSION_MARKER) == rows[f"{ns}/{name}"]["marker"]
    assert e.templates() == templates, "no pod template changed: nothing restarted"
    with pytest.raises(kubernetes.client.ApiException):
        e.custom.get_namespaced_custom_object(*ESO, BILLING, "externalsecrets", OLD_ES)

    reader = LedgerReader(w.kv, MOUNT)
    entries = [x for x in reader.entries() if x.event == "adopt"][adopt_entries:]
    assert sorted(x.details["source"] for x in entries) == sorted(f"{ns}/{name}" for ns, name in names)
    assert sorted(x.secret or "" for x in entries) == sorted(r["intent"] for r in rows.values())
    assert reader.verify().ok

    texts = outputs + [x.model_dump_json() for x in entries]
    for r in rows.values():
        mount, path = r["path"].split("/", 1)
        texts.append(json.dumps(dict(w.kv.read_metadata(mount, path).custom)))
    for ns, name in names:
        s = e.secret(ns, name)
        texts.append(json.dumps(s.metadata.annotations or {}) + json.dumps(s.metadata.labels or {}))
        texts.append(json.dumps(e.custom.get_namespaced_custom_object(*ESO, ns, "externalsecrets", name)))
        texts.append(str(e.core.list_namespaced_event(ns).to_dict()))
    for text in texts:
        for canary in CANARIES:
            assert canary not in text
    print(f"\n[migration] {len(names)} Secrets, {len(WORKLOADS)} workloads, {len(e.plan)} plan steps in "
          f"{time.monotonic() - started:.1f}s (apply {applied:.1f}s, takeovers {takeover:.1f}s; per Secret "
          f"{ {k: r['seconds'] for k, r in moved.items()} }); {watch.polls} polls: no Secret missing or changed, "
          "billing-stripe never without a controller")
