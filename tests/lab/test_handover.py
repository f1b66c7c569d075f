"""Handover and initial values against the real servers: Vault 1.21 (raft, TLS) and kube-apiserver 1.34.

The bootstrap Secrets are the example repository's own: decrypted from its SOPS files with the test identity by
the real sops binary, created in the lab cluster, then handed over by the real CLI in a subprocess (so crash
injection with ``CHAMBERLAIN_CRASH_AT`` kills a real process at a real step boundary). Every test gets its own
KV v2 mount (the Platform's runtime mount is rewritten in a copy of the repository), so tests never share Vault
state; they share the bootstrap namespace and recreate its Secrets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES, REPO_ROOT

pytestmark = pytest.mark.lab

hvac = pytest.importorskip("hvac")
kubernetes = pytest.importorskip("kubernetes")

IDENTITY = REPO_ROOT / "tests" / "fixtures" / "age" / "test-identity.txt"
NAMESPACE = "chamberlain-bootstrap"
SMTP, REGISTRY = "bootstrap-smtp-relay", "bootstrap-registry-pull"
CANARY = "canary-Hx4Jd8Qe2Vt7Nc1Wz9Ks"

# Runs the CLI through the real error boundary, registering this work's commands the way main.py will.
DRIVER = """
import sys
from chamberlain.cli import main as m
from chamberlain.cli.audit import audit_app
from chamberlain.cli.handover import handover_cmd, provision_cmd
names = {c.name or c.callback.__name__ for c in m.app.registered_commands}
groups = {g.name for g in m.app.registered_groups}
if "handover" not in names and "handover_cmd" not in names:
    m.app.command("handover")(handover_cmd)
if "provision" not in names and "provision_cmd" not in names:
    m.app.command("provision")(provision_cmd)
if "audit" not in groups:
    m.app.add_typer(audit_app, name="audit")
m.main()
"""


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Env:
    repo: Path
    mount: str
    token_file: Path
    ca_file: Path
    address: str
    kubeconfig: Path
    values: dict[str, dict[str, str]]  # decrypted bootstrap data by Secret name (secret!)

    def cli(self, *args: str, crash_at: str | None = None) -> Run:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CHAMBERLAIN_"))}
        if crash_at:
            env["CHAMBERLAIN_CRASH_AT"] = crash_at
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, env=env, timeout=120,
            cwd=REPO_ROOT, check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def conn(self) -> list[str]:
        return ["--vault-addr", self.address, "--vault-cacert", str(self.ca_file),
                "--vault-token-file", str(self.token_file)]

    def handover(self, *extra: str, crash_at: str | None = None) -> Run:
        return self.cli("handover", str(self.repo), "--cluster", "dev1", *self.conn(),
                        "--kubeconfig", str(self.kubeconfig), *extra, crash_at=crash_at)

    def audit_verify(self) -> Run:
        """Pin the ledger's public keys from the real authority into the repository, then verify against them."""
        pinned = self.cli("audit", "pin", str(self.repo), *self.conn(), "-o", "json")
        assert pinned.code == 0, pinned.err
        return self.cli("audit", "verify", str(self.repo), *self.conn(), "-o", "json")


def _decrypt(path: Path, sops: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["SOPS_AGE_KEY_FILE"] = str(IDENTITY)
    out = subprocess.run([str(sops), "--decrypt", str(path)], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout
    doc: dict[str, Any] = yaml.safe_load(out)
    return doc


@pytest.fixture(scope="module")
def bootstrap_docs(sops_bin: Path) -> dict[str, dict[str, Any]]:
    docs = [_decrypt(EXAMPLES / "acme" / "bootstrap" / f, sops_bin)
            for f in ("smtp-relay.sops.yaml", "registry-pull.sops.yaml")]
    return {d["metadata"]["name"]: d for d in docs}


@pytest.fixture
def core(k8s: Any, make_namespace: Callable[[str], str]) -> Any:
    make_namespace(NAMESPACE)
    return kubernetes.client.CoreV1Api(k8s)


def _get(core: Any, name: str) -> Any | None:
    try:
        return core.read_namespaced_secret(name, NAMESPACE)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _materialize(core: Any, doc: dict[str, Any], data: dict[str, str] | None = None) -> None:
    """What KSOPS/Flux would do in-cluster: apply the decrypted bootstrap Secret."""
    name = doc["metadata"]["name"]
    if _get(core, name) is not None:
        core.delete_namespaced_secret(name, NAMESPACE)
    body = kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=NAMESPACE, labels=doc["metadata"]["labels"]),
        type=doc.get("type", "Opaque"),
        string_data=data if data is not None else doc["stringData"],
    )
    core.create_namespaced_secret(NAMESPACE, body)


def _decoded(obj: Any) -> dict[str, str]:
    import base64

    return {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}


def fresh_repo(tmp_path: Path, vault: Any, vault_info: Any) -> tuple[Path, str, Path]:
    """A copy of examples/acme whose runtime mount is a new KV v2 mount of its own, and a token file: (repository,
    mount, token file). Tests never share Vault state."""
    mount = f"rt-{uuid.uuid4().hex[:8]}"
    vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "acme", repo)
    platform = repo / "platform.yaml"
    platform.write_text(platform.read_text().replace("runtime: secret", f"runtime: {mount}"))
    token_file = tmp_path / "token"
    token_file.write_text(vault_info.root_token + "\n")
    token_file.chmod(0o600)
    return repo, mount, token_file


@pytest.fixture
def env(tmp_path: Path, vault: Any, vault_info: Any, lab: Any, core: Any,
        bootstrap_docs: dict[str, dict[str, Any]]) -> Iterator[Env]:
    repo, mount, token_file = fresh_repo(tmp_path, vault, vault_info)
    for doc in bootstrap_docs.values():
        _materialize(core, doc)
    values = {name: dict(doc["stringData"]) for name, doc in bootstrap_docs.items()}
    yield Env(repo, mount, token_file, vault_info.ca_file, vault_info.address, lab.kubeconfig, values)


def _kv(vault: Any, mount: str, path: str) -> tuple[dict[str, str] | None, dict[str, str]]:
    """(current data, custom_metadata) at mount/path, read with the root token."""
    try:
        meta = vault.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"]
    except hvac.exceptions.InvalidPath:
        return None, {}
    data = vault.secrets.kv.v2.read_secret_version(path=path, mount_point=mount,
                                                    raise_on_deleted_version=True)["data"]["data"]
    return data, meta.get("custom_metadata") or {}


def _secret_values(e: Env) -> list[str]:
    return [v for data in e.values.values() for v in data.values() if len(v) >= 12] + [CANARY]


def _no_values(e: Env, *texts: str) -> None:
    for text in texts:
        for value in _secret_values(e):
            assert value not in text


def _assert_converged(e: Env, vault: Any, core: Any, smtp_mode: str = "delete") -> None:
    smtp, smtp_meta = _kv(vault, e.mount, "dev/team-platform/smtp-relay")
    reg, reg_meta = _kv(vault, e.mount, "dev/team-platform/registry-pull")
    assert smtp == e.values[SMTP] and reg == e.values[REGISTRY], "the values arrived intact"
    for meta, source in ((smtp_meta, SMTP), (reg_meta, REGISTRY)):
        assert meta["authority"] == "vault" and meta["source"] == f"{NAMESPACE}/{source}"
        assert meta["source-cluster"] == "dev1" and meta["ledger-seq"] == meta["retired.dev1"]
        assert meta["value-marker"].startswith("v2:") and meta["handed-over-at"]  # keyed by the authority
    assert smtp_meta["policy.name"] == "on-event" and smtp_meta["policy.type"] == "event-based"
    assert reg_meta["policy.name"] == "static" and reg_meta["policy.failure-strategy"] == "hold"
    smtp_secret, reg_secret = _get(core, SMTP), _get(core, REGISTRY)
    if smtp_mode == "delete":
        assert smtp_secret is None
    else:
        assert smtp_secret is not None
        assert smtp_secret.metadata.annotations["chamberlain.dev/authority"] == "vault"
        assert _decoded(smtp_secret) == e.values[SMTP]  # ignore: left as is, nothing references it
    assert reg_secret is not None, "inert keeps the Secret"
    assert reg_secret.type == "kubernetes.io/dockerconfigjson"
    assert _decoded(reg_secret) == {".dockerconfigjson": '{"auths":{}}'}
    assert "chamberlain.dev/consumed" in reg_secret.metadata.annotations
    verify = e.audit_verify()
    assert verify.code == 0, verify.err
    assert verify.json["ok"] and verify.json["entries"] == 2
    ledger_blob = json.dumps(_ledger(vault, e.mount))
    _no_values(e, ledger_blob, json.dumps(smtp_meta), json.dumps(reg_meta), verify.out, verify.err)


def _ledger(vault: Any, mount: str, partition: str = "dev/dev1") -> list[dict[str, Any]]:
    """The entries of one partition (the handover of cluster dev1 writes dev/dev1), read with the root token."""
    prefix = f"_chamberlain/ledger/{partition}"
    keys = vault.secrets.kv.v2.list_secrets(path=prefix, mount_point=mount)["data"]["keys"]
    return [json.loads(vault.secrets.kv.v2.read_secret_version(
        path=f"{prefix}/{k}", mount_point=mount, raise_on_deleted_version=True)["data"]["data"]["entry"])
        for k in sorted(keys) if k.isdigit()]


# ------------------------------------------------------------------------------------------------ happy paths


@pytest.mark.vault_compat
@pytest.mark.parametrize("smtp_mode", ["delete", "ignore"])
def test_handover_moves_authority_once(env: Env, vault: Any, core: Any, smtp_mode: str) -> None:
    if smtp_mode != "delete":
        intents = env.repo / "intents" / "platform.yaml"
        intents.write_text(intents.read_text().replace("afterHandover: delete", f"afterHandover: {smtp_mode}"))
    plan = env.handover("--dry-run", "-o", "json")
    assert plan.code == 0, plan.err
    assert {h["result"] for h in plan.json["handovers"]} == {"planned"}
    assert _kv(vault, env.mount, "dev/team-platform/smtp-relay") == (None, {})

    first = env.handover("-o", "json")
    assert first.code == 0, first.err
    rows = {h["intent"]: h for h in first.json["handovers"]}
    assert rows["smtp-relay"]["result"] == rows["registry-pull"]["result"] == "handed-over"
    assert rows["smtp-relay"]["steps"] == ["write", "record", "consume", "ledger"]
    _assert_converged(env, vault, core, smtp_mode)

    again = env.handover()
    assert again.code == 0, again.err
    assert again.out.count("already-handed-over") == 2
    assert len(_ledger(vault, env.mount)) == 2, "a re-run records nothing new"

    show = env.cli("audit", "show", "smtp-relay", str(env.repo), *env.conn(), "-o", "json")
    assert show.code == 0, show.err
    [entry] = show.json["ledger"]
    assert entry["event"] == "handover" and entry["details"]["after-handover"] == smtp_mode
    meta = show.json["metadata"][f"{env.mount}/dev/team-platform/smtp-relay"]
    assert meta["custom"]["authority"] == "vault"
    text = env.cli("audit", "show", "smtp-relay", str(env.repo), *env.conn())
    assert text.code == 0 and "handover ok" in text.out
    _no_values(env, first.out, first.err, again.out, show.out, text.out)


def test_conflicting_value_in_vault_touches_nothing(env: Env, vault: Any, core: Any) -> None:
    path = "dev/team-platform/smtp-relay"
    vault.secrets.kv.v2.create_or_update_secret(path=path, secret={"password": CANARY}, mount_point=env.mount)
    before = _get(core, SMTP)
    run = env.handover()
    assert run.code == 1
    assert "conflict" in run.out and f"{env.mount}/{path}" in run.err
    assert "Traceback" not in run.err
    after = _get(core, SMTP)
    assert after is not None and before is not None
    assert after.metadata.resource_version == before.metadata.resource_version
    data, meta = _kv(vault, env.mount, path)
    assert data == {"password": CANARY} and meta == {}
    assert all(e["secret"] != "smtp-relay" for e in _ledger(vault, env.mount))
    _no_values(env, run.out, run.err)


def test_provision_creates_generated_values_once(env: Env, vault: Any) -> None:
    run = env.cli("provision", str(env.repo), "--environment", "dev", *env.conn(), "-o", "json")
    assert run.code == 0, run.err
    rows = run.json["values"]
    assert rows and {r["result"] for r in rows} == {"created"}
    webhook = next(r for r in rows if r["intent"] == "argocd-webhook")
    data, meta = _kv(vault, env.mount, webhook["path"].split("/", 1)[1])
    assert data is not None and len(data["hmac"]) == 64
    assert meta["created-by"] == "chamberlain" and meta["authority"] == "vault"
    assert meta["policy.name"] == "standard" and meta["policy.ttl"] == "90d"
    assert data["hmac"] not in run.out + run.err + json.dumps(_ledger(vault, env.mount))
    again = env.cli("provision", str(env.repo), "--environment", "dev", *env.conn(), "-o", "json")
    assert {r["result"] for r in again.json["values"]} == {"exists"}
    assert _kv(vault, env.mount, webhook["path"].split("/", 1)[1])[0] == data
    assert env.audit_verify().json["entries"] == len(rows)


# ------------------------------------------------------------------------------------------------ crashes


@pytest.mark.parametrize("point", ["handover.write", "handover.verify", "handover.record", "handover.consume",
                                   "handover.ledger", "handover.done"])
def test_crash_at_a_step_boundary_then_rerun_converges(env: Env, vault: Any, core: Any, point: str) -> None:
    crashed = env.handover(crash_at=point)
    assert crashed.code == 137, crashed.err
    # Exactly one authority right now: Vault if the commit point was reached, else the untouched bootstrap Secret.
    _, meta = _kv(vault, env.mount, "dev/team-platform/registry-pull")  # handed over first (name order)
    secret = _get(core, REGISTRY)
    if meta.get("authority") == "vault":
        assert point not in ("handover.write", "handover.verify")
    else:
        assert point in ("handover.write", "handover.verify")
        assert secret is not None and _decoded(secret) == env.values[REGISTRY]
        assert "chamberlain.dev/consumed" not in (secret.metadata.annotations or {})
    rerun = env.handover()
    assert rerun.code == 0, rerun.err
    _assert_converged(env, vault, core)
    _no_values(env, crashed.out, crashed.err, rerun.out, rerun.err)


# ------------------------------------------------------------------------------------------------ outages


def _unseal(vault: Any, keys: tuple[str, ...]) -> None:
    vault.sys.submit_unseal_keys(list(keys))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if not vault.sys.read_seal_status()["sealed"]:
                vault.sys.list_mounted_secrets_engines()
                return
        except Exception:  # noqa: S110 - still starting up or electing itself leader
            pass
        time.sleep(0.5)
    pytest.fail("Vault did not become active after unseal")


def test_vault_sealed_mid_handover_fails_cleanly_and_resumes(env: Env, vault: Any, vault_info: Any,
                                                             core: Any) -> None:
    assert vault_info.unseal_keys, "the conftest keeps the unseal keys in memory"
    crashed = env.handover(crash_at="handover.verify")  # the value is in Vault, nothing is recorded
    assert crashed.code == 137
    vault.sys.seal()
    try:
        failed = env.handover()
        assert failed.code == 1
        assert "sealed" in failed.err and "stays the authority" in failed.err
        assert "Traceback" not in failed.err and "internal error" not in failed.err
    finally:
        _unseal(vault, vault_info.unseal_keys)
    secret = _get(core, REGISTRY)
    assert secret is not None and _decoded(secret) == env.values[REGISTRY], "the bootstrap Secret is intact"
    rerun = env.handover()
    assert rerun.code == 0, rerun.err
    _assert_converged(env, vault, core)


def test_vault_stopped_mid_handover_fails_cleanly_and_resumes(env: Env, vault: Any, vault_info: Any,
                                                              core: Any, lab: Any) -> None:
    crashed = env.handover(crash_at="handover.record")  # committed for the first secret, nothing retired
    assert crashed.code == 137
    server = lab.lab.authority
    server.stop()
    try:
        failed = env.handover()
        assert failed.code == 1
        assert "unreachable" in failed.err and "Traceback" not in failed.err
    finally:
        proc = server.start()
        server.wait(proc)
        _unseal(vault, vault_info.unseal_keys)
    assert _get(core, REGISTRY) is not None, "not retired while Vault was down"
    assert _get(core, SMTP) is not None
    rerun = env.handover()
    assert rerun.code == 0, rerun.err
    _assert_converged(env, vault, core)


def test_cli_usage_errors(env: Env) -> None:
    no_cluster = env.cli("handover", str(env.repo), *env.conn())
    assert no_cluster.code == 2 and "--cluster" in no_cluster.err
    missing = env.cli("handover", str(env.repo), "--cluster", "dev1", "--vault-token-file", "/nonexistent",
                      "--vault-cacert", str(env.ca_file), "--kubeconfig", str(env.kubeconfig))
    assert missing.code == 2 and "token file" in missing.err
