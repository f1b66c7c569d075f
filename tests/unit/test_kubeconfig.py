"""--context and a multi-file KUBECONFIG: merged by the kubernetes client's own loader, the first file that sets a
value wins (as kubectl), an unknown context names the context and the files. No API server here: the clients are
built but never called (the lab test in tests/lab/test_cli_habits.py calls one)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chamberlain.cli.options import GROUPED, Target, kubeconfig_files, target_options
from chamberlain.errors import UsageError
from chamberlain.kube.kubeconfig import KubeconfigSource, api_client, cluster_endpoint, contexts
from chamberlain.service.context import ConnectionOptions, LiveServers
from tests.conftest import EXAMPLES, REPO_ROOT, run_cli

CA_A = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
CA_B = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"


def _kubeconfig(path: Path, *, current: str | None, clusters: dict[str, tuple[str, dict[str, str]]],
                contexts: dict[str, str]) -> Path:
    """A kubeconfig with ``clusters`` (name: (server, CA fields)) and ``contexts`` (name: cluster), each context
    with a token user of its own name."""
    doc: dict[str, object] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": s, **ca}} for n, (s, ca) in clusters.items()],
        "users": [{"name": c, "user": {"token": f"token-of-{c}"}} for c in contexts],
        "contexts": [{"name": c, "context": {"cluster": cl, "user": c}} for c, cl in contexts.items()],
    }
    if current is not None:
        doc["current-context"] = current
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    """File a: context alpha (current) on cluster shared=https://a; file b (in its own directory, CA by a
    relative path): context beta (current there too) on cluster b-only, and its own 'shared' cluster, which a's
    shadows."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "ca.crt").write_text(CA_B)
    a = _kubeconfig(tmp_path / "a.yaml", current="alpha",
                    clusters={"shared": ("https://a:6443", {"certificate-authority-data":
                                                            base64.b64encode(CA_A.encode()).decode()})},
                    contexts={"alpha": "shared"})
    b = _kubeconfig(tmp_path / "b" / "config", current="beta",
                    clusters={"b-only": ("https://b:6443", {"certificate-authority": "ca.crt"}),
                              "shared": ("https://not-this-one:6443", {"certificate-authority": "ca.crt"})},
                    contexts={"beta": "b-only", "gamma": "shared"})
    return a, b


def test_files_merge_the_first_to_set_a_value_wins(two_files: tuple[Path, Path]) -> None:
    a, b = two_files
    names, current = contexts(KubeconfigSource((a, b)))
    assert names == ["alpha", "beta", "gamma"] and current == "alpha"  # a's current-context, not the last file's
    assert contexts(KubeconfigSource((b, a)))[1] == "beta"
    # gamma (declared in b) uses the cluster 'shared', which a declares first: a's server and CA.
    assert cluster_endpoint(KubeconfigSource((a, b), "gamma")) == ("https://a:6443", CA_A)
    # beta's cluster exists only in b; its CA path is relative to b's directory.
    assert cluster_endpoint(KubeconfigSource((a, b), "beta")) == ("https://b:6443", CA_B)


def test_the_context_chooses_server_and_user(two_files: tuple[Path, Path]) -> None:
    a, b = two_files
    for context, host, token in (("alpha", "https://a:6443", "token-of-alpha"),
                                 ("beta", "https://b:6443", "token-of-beta"),
                                 (None, "https://a:6443", "token-of-alpha")):
        client = api_client(KubeconfigSource((a, b), context))
        try:
            assert client.configuration.host == host
            assert client.configuration.api_key["BearerToken"].endswith(token)
        finally:
            client.close()


def test_an_unknown_context_names_the_context_and_the_files(two_files: tuple[Path, Path]) -> None:
    a, b = two_files
    with pytest.raises(UsageError) as caught:
        cluster_endpoint(KubeconfigSource((a, b), "prod"))
    message = str(caught.value)
    assert "'prod'" in message and str(a) in message and str(b) in message
    assert "alpha, beta, gamma" in message and "token-of" not in message
    with pytest.raises(UsageError, match="'prod'"):
        LiveServers(ConnectionOptions(kubeconfig=(a, b), context="prod"), clock=None).kube()  # type: ignore[arg-type]


def test_missing_and_broken_files(two_files: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_files
    gone = tmp_path / "gone"
    with pytest.raises(UsageError, match="no such kubeconfig"):
        contexts(KubeconfigSource((gone,)))
    with pytest.raises(UsageError, match="none of"):
        contexts(KubeconfigSource((gone, tmp_path / "gone-too")))
    assert contexts(KubeconfigSource((gone, a)))[1] == "alpha"  # a missing file in a list is skipped, as kubectl
    no_current = _kubeconfig(tmp_path / "c.yaml", current=None, clusters={"c": ("https://c", {})},
                             contexts={"delta": "c"})
    with pytest.raises(UsageError, match="no current-context; pass --context"):
        contexts(KubeconfigSource((no_current,)))
    broken = tmp_path / "broken.yaml"
    broken.write_text("clusters: [unclosed\n  token: sekrit\n")
    with pytest.raises(UsageError, match=r"not valid YAML at line 2\)") as caught:
        contexts(KubeconfigSource((broken,)))
    assert "sekrit" not in str(caught.value) and "Error" not in str(caught.value)
    broken.write_bytes(b"token: \xff\xfe sekrit\n")
    with pytest.raises(UsageError, match=r"\(not UTF-8 text\)") as caught:
        contexts(KubeconfigSource((broken,)))
    assert "sekrit" not in str(caught.value)
    _kubeconfig(broken, current="x", clusters={"c": ("https://c", {"certificate-authority-data": "%%%"})},
                contexts={"x": "c"})
    with pytest.raises(UsageError, match="is not a PEM"):
        cluster_endpoint(KubeconfigSource((broken,)))
    for text in ("- a list\n", "contexts: [{context: {cluster: c}}]\n", "just a string\n"):
        broken.write_text(text)
        with pytest.raises(UsageError, match="cannot read the kubeconfig \\(not a kubeconfig: "):
            cluster_endpoint(KubeconfigSource((broken,)))


def test_kubeconfig_option_takes_a_kubeconfig_list(two_files: tuple[Path, Path]) -> None:
    a, b = two_files
    assert kubeconfig_files(f"{a}:{b}") == (a, b)
    assert kubeconfig_files(f":{a}::") == (a,) and kubeconfig_files("") is None and kubeconfig_files(None) is None

    @target_options(vault=False)
    def command(target: Target = GROUPED) -> Target:
        return target

    got = command(kubeconfig=f"{a}:{b}", context="beta")
    assert got.conn == ConnectionOptions(kubeconfig=(a, b), context="beta")
    assert got.conn.kubeconfig_source == KubeconfigSource((a, b), "beta")
    assert command().conn.kubeconfig_source is None  # neither: in-cluster in a pod, else ~/.kube/config


def test_every_command_that_talks_to_kubernetes_takes_context() -> None:
    for command in (("status",), ("rotate",), ("handover",), ("provision",), ("apply",), ("import",),
                    ("controller", "run"), ("authority", "configure"), ("audit", "show"), ("upgrade", "plan"),
                    ("policy", "plan")):
        result = run_cli(*command, "--help")
        assert result.code == 0 and "--context" in result.out, command


def test_an_unknown_context_from_the_command_line_is_a_usage_error(two_files: tuple[Path, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = two_files
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    result = run_cli("apply", str(EXAMPLES / "acme"), "--cluster", "dev1", "--context", "prod")
    assert result.code == 2, result.err
    assert "context 'prod' is not in the kubeconfig" in result.err and str(b) in result.err
    assert "internal error" not in result.err and "Traceback" not in result.err


def test_context_completes_from_the_merged_files(two_files: tuple[Path, Path]) -> None:
    a, b = two_files
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "KUBECONFIG": f"{a}:{b}",
           "_CHAMBERLAIN_COMPLETE": "complete_bash", "COMP_WORDS": "chamberlain status . --context ", "COMP_CWORD": "4"}
    code = "import sys; sys.argv[0] = 'chamberlain'; from chamberlain.cli.main import main; main()"
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False,
                         timeout=60)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["alpha", "beta", "gamma"]
