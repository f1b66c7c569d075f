"""A server that gives no answer is named: the address tried (scheme://host:port, never a user, password, path or
query) and why in words (connection refused, name not resolved, TLS verification failed, timed out), for the
Kubernetes API server, a Vault (every node of an HA one) and the controller's webhook. Offline: the exceptions are
built as the transport libraries raise them, and the command-line cases ask a local port nothing listens on."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import hvac.exceptions
import pytest
import requests
import urllib3.exceptions

from chamberlain import unreachable
from chamberlain.authority import errors
from chamberlain.authority.session import Connection
from chamberlain.authority.vault import VaultClient
from chamberlain.authority.vault.failover import FailoverPolicy
from chamberlain.clock import FakeClock
from chamberlain.errors import UsageError
from chamberlain.kube.api import KubeUnavailable
from chamberlain.kube.client import _map_error
from tests.conftest import EXAMPLES, run_cli

TOKEN = "hvs.Sup3rS3cretT0kenValue"


def _wrapped(cause: BaseException) -> Exception:
    """A socket error as requests raises it: ConnectionError(MaxRetryError(reason=NewConnectionError from it))."""
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    reason.__cause__ = cause
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/v1/x", reason))  # type: ignore[arg-type]


def _unresolved() -> Exception:
    reason = urllib3.exceptions.NameResolutionError("vault.example", None, socket.gaierror(-2, "unknown"))  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/v1/x", reason))  # type: ignore[arg-type]


def _retries(reason: Exception) -> urllib3.exceptions.MaxRetryError:
    return urllib3.exceptions.MaxRetryError(None, "/", reason)  # type: ignore[arg-type]


def _cert_error() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_message = "self-signed certificate"
    return exc


@pytest.mark.parametrize(("url", "shown"), [
    ("https://vault.example:8200", "https://vault.example:8200"),
    ("https://admin:Sup3rS3cret@vault.example:8200/v1/x?token=abc#f", "https://vault.example:8200"),
    ("http://127.0.0.1", "http://127.0.0.1:80"),
    ("https://[::1]:6443/", "https://[::1]:6443"),
    ("https://K8S.example", "https://k8s.example:443"),
    ("admin:Sup3rS3cret@vault:8200?token=abc", "vault:8200"),
    ("127.0.0.1:1/tok-SECRET", "127.0.0.1:1"),  # review: a server without a scheme kept its path
])
def test_an_address_is_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert unreachable.address(url) == shown


@pytest.mark.parametrize(("exc", "why"), [
    (_wrapped(ConnectionRefusedError(111, "Connection refused")), "connection refused"),
    (_unresolved(), "name not resolved"),
    (requests.exceptions.SSLError(_retries(urllib3.exceptions.SSLError(_cert_error()))),
     "TLS verification failed: self-signed certificate"),
    (_retries(urllib3.exceptions.SSLError(ssl.SSLError(1, "wrong version"))), "TLS handshake failed"),
    (_retries(urllib3.exceptions.ConnectTimeoutError(None, "timeout")), "timed out connecting"),
    (requests.exceptions.ReadTimeout(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out")),  # type: ignore[arg-type]
     "timed out waiting for an answer"),
    (requests.exceptions.ConnectionError(ConnectionResetError(104, "reset")), "connection reset"),
    (_wrapped(OSError(113, "No route to host")), "host unreachable"),
    (requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")),
     "connection closed before an answer"),
    (OSError("something else"), "connection failed"),
], ids=["refused", "dns", "tls-verify", "tls", "connect-timeout", "read-timeout", "reset", "no-route", "closed",
        "other"])
def test_why_is_said_in_words(exc: BaseException, why: str) -> None:
    assert unreachable.reason(exc) == why


def test_nodes_that_failed_alike_share_one_reason_and_others_keep_their_own() -> None:
    assert unreachable.tried([("https://a:1", "connection refused"), ("https://b:1", "connection refused"),
                              ("https://a:1", "connection refused")]) == "https://a:1, https://b:1 (connection refused)"
    assert unreachable.tried([("https://a:1", "sealed, or no active node (503)"),
                              ("https://b:1", "connection refused")]) == (
        "https://a:1 (sealed, or no active node (503)), https://b:1 (connection refused)")


class _Hvac:
    """Stands for hvac.Client: a ``url`` the client moves, a token, and what each node answers."""

    def __init__(self, answers: dict[str, BaseException]) -> None:
        self.url, self.token, self.answers = next(iter(answers)), TOKEN, answers

    def call(self) -> str:
        raise self.answers[self.url]


def test_a_vault_that_does_not_answer_is_named_without_its_token_or_credentials() -> None:
    url = "https://ops:Sup3rS3cret@vault.example:8200"
    client = VaultClient(_Hvac({url: _wrapped(ConnectionRefusedError(111, "refused"))}), FakeClock())
    with pytest.raises(errors.AuthorityUnavailable) as raised:
        client.call("list secret/dev/", lambda h: h.call())
    assert str(raised.value) == "list secret/dev/: Vault unreachable at https://vault.example:8200 (connection refused)"
    assert TOKEN not in str(raised.value) and "Sup3rS3cret" not in str(raised.value)


def test_an_ha_vault_names_every_node_it_tried_and_what_each_said() -> None:
    a, b, c = "https://a:8200", "https://b:8200", "https://c:8200"
    answers = {a: hvac.exceptions.VaultDown("Vault is sealed"),
               b: _unresolved(),
               c: _wrapped(ConnectionRefusedError(111, "refused"))}
    client = VaultClient(_Hvac(answers), FakeClock(), (a, b, c), FailoverPolicy(rounds=2, pause=0.1, budget=5))
    with pytest.raises(errors.AuthorityUnavailable) as raised:
        client.call("read ledger", lambda h: h.call())
    assert str(raised.value) == (
        "read ledger: Vault unreachable at https://a:8200 (sealed, or no active node (503)), https://b:8200 "
        "(name not resolved), https://c:8200 (connection refused)")


def test_an_ha_address_list_is_checked_node_by_node() -> None:
    conn = Connection.resolve(None, "https://a:8200, https://b:8200", None, clock=FakeClock())  # type: ignore[arg-type]
    assert conn.address == "https://a:8200, https://b:8200"
    with pytest.raises(UsageError, match="'vault:8200': not an http"):
        Connection.resolve(None, "https://a:8200,vault:8200", None, clock=FakeClock())  # type: ignore[arg-type]


def test_an_api_server_that_does_not_answer_is_named() -> None:
    exc = urllib3.exceptions.MaxRetryError(None, "/api/v1", urllib3.exceptions.NameResolutionError(  # type: ignore[arg-type]
        "k8s.example", None, socket.gaierror(-2, "unknown")))  # type: ignore[arg-type]
    err = _map_error(exc, "Secrets payments", "https://u:Sup3rS3cret@k8s.example:6443/prefix?token=abc")
    assert isinstance(err, KubeUnavailable)
    assert str(err) == "Secrets payments: API server unreachable at https://k8s.example:6443 (name not resolved)"


# ------------------------------------------------------------------------------------------------ the CLI


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kc.yaml"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
users: [{{name: u, user: {{token: {TOKEN}}}}}]
""")
    return path


def test_retire_names_the_api_server_it_could_not_reach(tmp_path: Path) -> None:
    port = _closed_port()
    kubeconfig = _kubeconfig(tmp_path, f"https://ops:Sup3rS3cret@127.0.0.1:{port}/?token=abc")
    result = run_cli("retire", str(EXAMPLES / "acme"), "--cluster", "dev1", "--dry-run", "--kubeconfig",
                     str(kubeconfig))
    assert result.code == 1, result.err
    assert f"API server unreachable at https://127.0.0.1:{port} (connection refused)" in result.err
    assert "Traceback" not in result.err and "MaxRetryError" not in result.err
    assert "Sup3rS3cret" not in result.err + result.out and TOKEN not in result.err + result.out


def test_retire_names_the_vault_it_could_not_reach(tmp_path: Path) -> None:
    port = _closed_port()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    result = run_cli("retire", str(EXAMPLES / "acme"), "--cluster", "dev1", "--dry-run", "--kubeconfig",
                     str(_kubeconfig(tmp_path, f"https://127.0.0.1:{_closed_port()}")), "--vault-addr",
                     f"http://127.0.0.1:{port}", "--vault-token-file", str(token))
    assert result.code == 1, result.err
    assert f"Vault unreachable at http://127.0.0.1:{port} (connection refused)" in result.err
    assert "ConnectionError" not in result.err and TOKEN not in result.err + result.out


@pytest.mark.parametrize("url", ["http://user:Sup3rS3cret@127.0.0.1:9/hook?sig=S", "http://vault[x/hook",
                                 "http://h:99999/x"])
def test_a_webhook_url_that_cannot_be_sent_to_is_a_usage_error(url: str) -> None:
    """Review: urllib read "user:password@host" as a host name (and blamed DNS), and a malformed URL crashed."""
    from chamberlain.errors import UsageError
    from chamberlain.service.controller import post_webhook

    with pytest.raises(UsageError) as caught:
        post_webhook(url, b"{}", {})
    assert "Sup3rS3cret" not in str(caught.value) and "sig=S" not in str(caught.value)
