"""No secret value leaks anywhere along the whole flow, on the real servers.

The README walkthrough is run through the real CLI (in process, through its error boundary), Phase 0 to
handover, with canaries: a bootstrap Secret whose plaintext holds a unique canary (encrypted with
``chamberlain bootstrap encrypt``, committed to the lab's Git server and applied by the real Flux, decrypting with
the cluster's own key, handed over), and every generated value read back
from Vault after ``provision``. None may appear in: the stdout/stderr of any command (failing ones included),
messages of errors raised by the core, anything logged through ``logging``, the ledger, Vault custom_metadata,
Kubernetes events, the rendered output, the repository (ciphertext only), the lab servers' own logs, or the
unseal Secret's annotations. Vault's file audit device may mention a value only HMAC'd (it does so by default),
which is asserted too. Also: ``root init`` never printed the identity.

Runs its own lab on ports shifted by ``CHAMBERLAIN_LAB_TEST_PORT_OFFSET`` + 800.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chamberlain.clock import SystemClock
from chamberlain.lab import builds, procs
from chamberlain.lab import lab as lab_mod
from tests.conftest import EXAMPLES, REPO_ROOT, host_tools, lab_authority, lab_host, run_cli, unbuilt

pytestmark = pytest.mark.lab

pytest.importorskip("hvac")
pytest.importorskip("kubernetes")

from chamberlain.audit.ledger import LedgerReader  # noqa: E402
from chamberlain.authority.session import Connection, login_as  # noqa: E402
from chamberlain.bootstrap import encrypt_file  # noqa: E402
from chamberlain.errors import ChamberlainError  # noqa: E402
from chamberlain.intent.loader import load_repository  # noqa: E402
from chamberlain.kube.client import KubeClient  # noqa: E402

PREVIOUS_ROOT = REPO_ROOT / "tests" / "fixtures" / "age" / "test-identity.txt"
CANARY = f"canary-{uuid.uuid4().hex}"
SMTP_PLAINTEXT = f"""apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-smtp-relay
  namespace: chamberlain-bootstrap
type: Opaque
stringData:
  username: acme-outbound
  password: {CANARY}
"""


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Flow:
    lab: lab_mod.Lab
    repo: Path
    identity: Path
    rendered: Path
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)  # values read back from Vault: canaries too (secret!)

    def cli(self, *args: str, expect: int = 0) -> str:
        result = run_cli(*args)
        self.outputs += [result.out, result.err]
        assert result.code == expect, f"{args[:2]}: exit {result.code}\n{result.err}"
        return result.out

    def vault(self) -> list[str]:
        return ["--vault-addr", self.lab.authority.address, "--vault-cacert", str(self.lab.pki.ca.cert),
                "--kubeconfig", str(self.lab.kubeconfig)]

    @property
    def canaries(self) -> list[str]:
        return [CANARY, *self.generated]


def _updatekeys(repo: Path, rel: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")} | {"SOPS_AGE_KEY_FILE": str(PREVIOUS_ROOT)}
    subprocess.run([str(host_tools().find("sops")), "updatekeys", "--yes", rel], cwd=repo, env=env, check=True,
                   capture_output=True, timeout=60)


def _through_flux(f: Flow, key: Path) -> None:
    """Phase 2: the rendered tree committed to the lab's Git server; the real Flux decrypts with dev1's own key and
    applies CRDs -> cluster -> bootstrap. What Flux reports is an output too."""
    from chamberlain.gitops import flux
    from chamberlain.gitops.git import publish_tree
    from chamberlain.kube.client import KubeClient
    from chamberlain.render.flux import CLUSTER, CRDS, bootstrap_name

    kube = KubeClient.from_kubeconfig(f.lab.kubeconfig, clock=SystemClock())
    try:
        url = f.lab.git.repo_url()
        commit = publish_tree(f.rendered, url, "chamberlain render", base_env=host_tools().env).commit
        flux.install_decryption_key(kube, key.read_text(encoding="utf-8"))
        flux.install_source(kube, url, "dev1")
        for name in (flux.ROOT, CRDS, CLUSTER, bootstrap_name("dev")):
            f.outputs.append(flux.wait_ready(kube, name, commit=commit, timeout=180).describe())
    finally:
        kube.close()


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    missing = unbuilt()
    if missing or builds.postgres_bindir() is None:
        pytest.skip(f"lab binaries missing ({missing}); run `python -m chamberlain.lab build`")
    work = tmp_path_factory.mktemp("no-leaks")
    offset = int(os.environ.get("CHAMBERLAIN_LAB_TEST_PORT_OFFSET", "1000")) + 800
    config = lab_mod.LabConfig(lab_dir=work / "lab", host=lab_host(), ports=lab_mod.Ports().shifted(offset), dev=False,
                               authority=lab_authority())
    capture = _Capture()
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(capture)
    root_logger.setLevel(logging.DEBUG)
    lab_mod.up(config, progress=lambda _m: None)
    lab = lab_mod.Lab(config)
    pids = {n: info.pid for n, s in lab.servers().items() if (info := s.running()) is not None}
    try:
        repo = work / "repo"
        shutil.copytree(EXAMPLES / "acme", repo)
        f = Flow(lab, repo, work / "offline" / "root.agekey", work / "rendered")
        _run_walkthrough(f, work)
        f.logs = capture.lines
        yield f
    finally:
        root_logger.removeHandler(capture)
        root_logger.setLevel(old_level)
        lab_mod.down(config.lab_dir, lab_host(), progress=lambda _m: None)
        lab.postgres.purge()
    leftovers = {name: procs.group_members(pid) for name, pid in pids.items()}
    assert not any(leftovers.values()), f"lab processes left behind: {leftovers}"


def _run_walkthrough(f: Flow, work: Path) -> None:
    """The README's commands, in order, for dev/dev1 (plus a few failing ones: their errors are sinks too)."""
    kubectl = f.lab.apiserver.kubectl
    # Vault runs outside the lab cluster: it reviews logins with a ServiceAccount of its own.
    kubectl("create", "namespace", "vault-system")
    kubectl("-n", "vault-system", "create", "serviceaccount", "vault-auth")
    kubectl("create", "clusterrolebinding", "vault-auth-delegator", "--clusterrole=system:auth-delegator",
            "--serviceaccount=vault-system:vault-auth")
    reviewer = work / "reviewer.jwt"
    reviewer.write_text(kubectl("-n", "vault-system", "create", "token", "vault-auth", "--duration=24h")
                        .stdout.strip(), encoding="utf-8")
    reviewer.chmod(0o600)

    # Phase 0
    recipient = f.cli("root", "init", "--repo", str(f.repo), "--identity-file", str(f.identity)).strip()
    assert recipient.startswith("age1")
    f.cli("root", "gitops-key", "dev1", "--identity-file", str(work / "gitops" / "dev1.agekey"), "--repo", str(f.repo))
    for rel in ("bootstrap/registry-pull.sops.yaml",):
        _updatekeys(f.repo, rel)  # the previous root opens it once to add the new recipient
    # A bootstrap Secret with the canary, encrypted by chamberlain (replacing the example's smtp-relay file).
    smtp = f.repo / "bootstrap" / "smtp-relay.sops.yaml"
    smtp.write_text(SMTP_PLAINTEXT, encoding="utf-8")
    f.cli("bootstrap", "encrypt", str(smtp), "--repo", str(f.repo))
    f.cli("bootstrap", "encrypt", str(smtp), "--repo", str(f.repo), expect=2)  # already encrypted: a usage error
    try:
        encrypt_file(smtp, f.repo, tools=host_tools())
    except ChamberlainError as exc:
        f.errors.append(str(exc))
    f.cli("validate", str(f.repo))
    # Phases 1-2
    f.cli("render", str(f.repo), "-o", str(f.rendered))
    _through_flux(f, work / "gitops" / "dev1.agekey")
    # Phase 3
    audit_log = f.lab.authority.audit_log
    f.cli("authority", "init", "--shares", "3", "--threshold", "2", str(f.repo), *f.vault(), "--cluster", "dev1",
          "--audit-file", str(audit_log), "--token-reviewer-jwt-file", str(reviewer))
    f.cli("authority", "status", str(f.repo), *f.vault())
    f.cli("authority", "unseal", "--identity", str(f.identity), str(f.repo), *f.vault())
    f.cli("provision", str(f.repo), "-e", "dev", "--cluster", "dev1", *f.vault())
    f.cli("handover", str(f.repo), "-e", "dev", "--cluster", "dev1", *f.vault(), "--dry-run")
    f.cli("handover", str(f.repo), "-e", "dev", "--cluster", "dev1", *f.vault())
    f.cli("handover", str(f.repo), "-e", "dev", "--cluster", "dev1", *f.vault(), "-o", "json")
    for name in ("smtp-relay", "payments-db", "argocd-webhook"):
        f.cli("audit", "show", name, str(f.repo), "--cluster", "dev1", *f.vault())
        f.cli("audit", "show", name, str(f.repo), "--cluster", "dev1", *f.vault(), "-o", "json")
    f.cli("audit", "pin", str(f.repo), "--cluster", "dev1", *f.vault())  # public keys into the repository
    f.cli("audit", "verify", str(f.repo), "--cluster", "dev1", *f.vault())
    f.cli("plan", str(f.repo), "--cluster", "dev1", *f.vault(), "--audit-file", str(audit_log),
          "--token-reviewer-jwt-file", str(reviewer))

    # Read every generated value back (as the orchestrator): they are canaries from here on.
    # fixed-name values (e.g. a database user name) are declared in the intent, in plain text: not canaries.
    declared = "\n".join(p.read_text(encoding="utf-8") for p in (f.repo / "intents").rglob("*.yaml"))
    kv = _orchestrator(f).kv
    for path in _runtime_paths(f):
        version = kv.read("secret", path)
        assert version is not None, path
        f.generated += [v for v in version.data.values() if len(v) >= 16 and v != CANARY and v not in declared]
    smtp_value = kv.read("secret", "dev/team-platform/smtp-relay")
    assert smtp_value is not None and smtp_value.data["password"] == CANARY, "the canary went through handover"
    assert len(f.generated) >= 5


def _orchestrator(f: Flow) -> Any:
    platform = load_repository(f.repo).platform
    assert platform is not None
    kube = KubeClient.from_kubeconfig(f.lab.kubeconfig, clock=SystemClock())
    return login_as(Connection(f.lab.authority.address, f.lab.pki.ca.cert, clock=SystemClock()), platform, kube,
                    "chamberlain.dev1.orchestrator", "kubernetes-dev1")


def _runtime_paths(f: Flow) -> list[str]:
    kv = _orchestrator(f).kv
    out: list[str] = []
    stack = ["dev/"]
    while stack:
        prefix = stack.pop()
        for key in kv.list("secret", prefix.rstrip("/")):
            (stack.append(prefix + key) if key.endswith("/") else out.append(prefix + key))
    return sorted(out)


def _assert_clean(where: str, text: str, canaries: list[str]) -> None:
    leaked = [i for i, c in enumerate(canaries) if c in text]
    assert not leaked, f"{where}: canary #{leaked} found"  # never print the value itself


# ------------------------------------------------------------------------------------------------ sinks


def test_canary_reached_vault_through_the_whole_flow(flow: Flow) -> None:
    assert CANARY not in flow.generated and len(set(flow.generated)) == len(flow.generated)


def test_cli_output_of_every_command(flow: Flow) -> None:
    assert len(flow.outputs) >= 40
    _assert_clean("CLI output", "\n".join(flow.outputs), flow.canaries)
    assert "Traceback" not in "\n".join(flow.outputs)


def test_root_init_never_printed_the_identity(flow: Flow) -> None:
    identity = flow.identity.read_text(encoding="utf-8")
    secret_line = next(line for line in identity.splitlines() if line.startswith("AGE-SECRET-KEY-"))
    everything = "\n".join(flow.outputs + flow.errors + flow.logs)
    assert secret_line not in everything and "AGE-SECRET-KEY-" not in everything


def test_error_messages_and_logs(flow: Flow) -> None:
    assert flow.errors, "the core raised on the already-encrypted file"
    _assert_clean("exception messages", "\n".join(flow.errors), flow.canaries)
    _assert_clean("logging records", "\n".join(flow.logs), flow.canaries)


def test_ledger_entries(flow: Flow) -> None:
    entries = LedgerReader(_orchestrator(flow).kv, "secret").entries()
    assert len(entries) >= 10
    _assert_clean("ledger", json.dumps([e.model_dump() for e in entries]), flow.canaries)


def test_vault_custom_metadata(flow: Flow) -> None:
    kv = _orchestrator(flow).kv
    metas = [kv.read_metadata("secret", p) for p in _runtime_paths(flow)]
    blob = json.dumps([dict(m.custom) for m in metas if m is not None])
    assert "value-marker" in blob
    _assert_clean("custom_metadata", blob, flow.canaries)


def test_kubernetes_events_and_unseal_secret(flow: Flow) -> None:
    events = flow.lab.apiserver.kubectl("get", "events", "-A", "-o", "json").stdout
    assert json.loads(events)["kind"] == "List"
    _assert_clean("kubernetes events", events, flow.canaries)
    unseal = flow.lab.apiserver.kubectl("-n", "chamberlain-system", "get", "secret", "chamberlain-unseal",
                                        "-o", "json").stdout
    _assert_clean("unseal Secret", unseal, flow.canaries)


def test_rendered_output_and_repository(flow: Flow) -> None:
    for tree in (flow.rendered, flow.repo):
        blob = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in tree.rglob("*") if p.is_file())
        _assert_clean(f"files under {tree.name}", blob, flow.canaries)
    assert "ENC[AES256_GCM" in (flow.repo / "bootstrap" / "smtp-relay.sops.yaml").read_text()


def test_lab_server_logs(flow: Flow) -> None:
    logs = [p for p in procs.log_dir(flow.lab.config.lab_dir).rglob("*") if p.is_file()]
    assert logs
    for path in logs:
        _assert_clean(f"server log {path.name}", path.read_text(encoding="utf-8", errors="replace"), flow.canaries)


def test_vault_audit_log_holds_values_only_hmacd(flow: Flow) -> None:
    audit = flow.lab.authority.audit_log.read_text(encoding="utf-8")
    assert audit.count("\n") > 10 and "hmac-sha256:" in audit
    _assert_clean("vault audit log", audit, flow.canaries)
