"""The authority adapter's pure parts: telling OpenBao from Vault, mapping what OpenBao refuses to a typed error,
the value types' normalisation (so Git's value and the server's compare equal), and KV destroy in the fake and the
counting wrapper. Real servers: ``tests/lab/test_openbao_adapter.py`` and ``tests/lab/test_vault_kv.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest

from chamberlain.authority import errors
from chamberlain.authority.counting import CountingKV
from chamberlain.authority.fake import FakeKV
from chamberlain.authority.model import (
    Flavor,
    InitResult,
    KubernetesRole,
    KvConfig,
    Plaintext,
    RawResponse,
    RootToken,
    differing,
    seconds,
)
from chamberlain.authority.vault import map_error
from chamberlain.authority.vault.body import data, keys, listing
from chamberlain.authority.vault.flavor import REKEY_PATHS, flavor_of
from chamberlain.clock import FakeClock

MOUNT = "secret"


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param({"version": "1.21.0", "build_date": "2025-10-01T00:00:00Z"}, Flavor.VAULT, id="vault-seal-status"),
    pytest.param({"version": "1.21.0+ent"}, Flavor.VAULT, id="vault-enterprise-health"),
    pytest.param({"version": "2.7.2", "commit_date": "2026-10-26T20:32:27Z"}, Flavor.OPENBAO, id="openbao-seal-status"),
    pytest.param({"version": "2.7.2"}, Flavor.OPENBAO, id="openbao-health"),
    pytest.param({"version": "v2.4.0"}, Flavor.OPENBAO, id="openbao-v-prefix"),
    pytest.param({}, Flavor.VAULT, id="nothing-known"),
])
def test_flavor_of(body: dict[str, Any], expected: Flavor) -> None:
    assert flavor_of(body) is expected


def test_rekey_endpoints_differ_by_flavor() -> None:
    assert REKEY_PATHS[Flavor.VAULT].init == "sys/rekey/init" and not REKEY_PATHS[Flavor.VAULT].authenticated
    assert REKEY_PATHS[Flavor.OPENBAO].verify == "sys/rotate/root/verify" and REKEY_PATHS[Flavor.OPENBAO].authenticated


@pytest.mark.parametrize("message", [
    "unsupported operation",
    "cannot enable audit device via API; use declarative, config-based audit device management instead",
    "cannot disable configuration-managed audit device",
], ids=["unauthenticated-endpoint-disabled", "api-audit-disabled", "declared-audit-device"])
def test_what_openbao_refuses_is_unsupported(message: str) -> None:
    mapped = map_error(hvac.exceptions.InvalidRequest(errors=[message]), "enable audit device x/", safe_detail=True)
    assert type(mapped) is errors.Unsupported and not mapped.retryable
    assert str(mapped).startswith("enable audit device x/: not offered by this server")


def test_a_kv_mount_still_upgrading_is_retryable() -> None:
    exc = hvac.exceptions.InvalidRequest(errors=["Upgrading from non-versioned to versioned data. This backend will "
                                                 "be unavailable for a brief period and will resume service shortly."])
    mapped = map_error(exc, "write platform-config/config", safe_detail=True)
    assert type(mapped) is errors.AuthorityUnavailable and mapped.retryable
    assert str(mapped) == "write platform-config/config: the KV mount is still upgrading to version 2 (400)"


def test_encoded_data_in_a_safe_detail_is_withheld() -> None:
    exc = hvac.exceptions.InvalidRequest(errors=["bad input " + "QUJD" * 20])
    assert "QUJD" not in str(map_error(exc, "write policy p", safe_detail=True))
    assert "detail withheld" in str(map_error(exc, "write policy p", safe_detail=True))


def test_bodies_are_read_with_or_without_an_envelope() -> None:
    assert data({"data": {"a": 1}, "a": 2}) == {"a": 1}
    assert data({"sealed": True}) == {"sealed": True}
    assert data(object()) == {}
    assert keys({"data": {"keys": ["a", "b/"]}}) == ["a", "b/"] and keys(None) == []
    assert listing({"data": {"secret/": {"type": "kv"}, "request_id": "x"}}) == {"secret": {"type": "kv"}}


# ------------------------------------------------------------------------------------------------ values


@pytest.mark.parametrize(("value", "expected"), [
    (3600, 3600), ("3600", 3600), ("1h", 3600), ("60m", 3600), ("0s", 0), (None, 0), ("", 0),
], ids=["int", "digits", "hours", "minutes", "zero", "none", "empty"])
def test_durations_in_seconds(value: Any, expected: int) -> None:
    assert seconds(value) == expected


def test_a_role_from_git_equals_the_role_the_server_answers() -> None:
    git = KubernetesRole.from_api({"audience": "vault", "bound_service_account_names": ["b", "a"],
                                   "bound_service_account_namespaces": ["ns"], "token_policies": ["p"],
                                   "token_ttl": "1h", "token_max_ttl": "4h"})
    server = KubernetesRole.from_api({"audience": "vault", "bound_service_account_names": "a,b",
                                      "bound_service_account_namespaces": ["ns"], "token_policies": ["p"],
                                      "token_ttl": 3600, "token_max_ttl": 14400, "token_type": "default",
                                      "alias_name_source": "serviceaccount_uid"})
    assert git == server and differing(git, server) == ()
    assert differing(git, KubernetesRole.from_api({**git.as_body(), "token_ttl": "2h"})) == ("token_ttl",)
    assert KubernetesRole.from_api(git.as_body()) == git


def test_kv_config_round_trips_and_compares_durations_by_value() -> None:
    assert KvConfig.from_api({"max_versions": 10, "cas_required": True, "delete_version_after": "0s"}) == \
        KvConfig(10, True, 0)
    assert KvConfig.from_api(KvConfig(3, False, 60).as_body()) == KvConfig(3, False, 60)


def test_secret_material_hides_from_repr() -> None:
    for value, secret in [(InitResult(("share-one",), "root-token"), "share-one"), (RootToken("root-token"), "root"),
                          (Plaintext(b"plain-value"), "plain-value"), (RawResponse({"data": {"k": "value"}}), "value")]:
        assert secret not in repr(value)


# ------------------------------------------------------------------------------------------------ destroy


def test_fake_destroy_reads_back_as_deleted_and_metadata_marks_it() -> None:
    kv = FakeKV()
    kv.write(MOUNT, "a/b", {"k": "v1"}, cas=0)
    kv.write(MOUNT, "a/b", {"k": "v2"}, cas=1)
    kv.destroy(MOUNT, "a/b", [1])
    gone = kv.read(MOUNT, "a/b", version=1)
    assert gone is not None and gone.deleted and dict(gone.data) == {}
    current = kv.read(MOUNT, "a/b")
    assert current is not None and not current.deleted and current.data == {"k": "v2"}
    meta = kv.read_metadata(MOUNT, "a/b")
    assert meta is not None and meta.destroyed == frozenset({1}) and meta.versions == {1: True, 2: False}
    assert meta.current_version == 2  # destroy keeps the history: the next write still needs cas=2
    assert kv.write(MOUNT, "a/b", {"k": "v3"}, cas=2) == 3


def test_fake_destroy_is_idempotent_and_ignores_what_does_not_exist() -> None:
    kv = FakeKV()
    kv.destroy(MOUNT, "absent", [1])
    kv.write(MOUNT, "p", {"k": "v"}, cas=0)
    kv.destroy(MOUNT, "p", [1, 1, 7])
    kv.destroy(MOUNT, "p", [1])
    meta = kv.read_metadata(MOUNT, "p")
    assert meta is not None and meta.destroyed == frozenset({1})
    current = kv.read(MOUNT, "p")
    assert current is not None and current.deleted


def test_destroy_counts_as_destroy_and_fails_like_any_call_when_down() -> None:
    inner = FakeKV()
    counting = CountingKV(inner)
    counting.write(MOUNT, "p", {"k": "v"}, cas=0)
    counting.destroy(MOUNT, "p", [1])
    assert counting.counts["destroy"] == 1 and inner.calls["destroy"] == 1
    inner.down = True
    with pytest.raises(errors.AuthorityUnavailable):
        counting.destroy(MOUNT, "p", [1])
    assert counting.counts["destroy"] == 2


def test_an_anonymous_client_sends_no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """hvac alone would send VAULT_TOKEN (or ~/.vault-token) even on a client chamberlain built without one, to
    whatever address the Platform in Git names; requests would add netrc credentials."""
    import http.server
    import json
    import threading

    from chamberlain.authority.vault import unauthenticated

    seen: list[tuple[str, str | None, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("X-Vault-Token"), self.headers.get("Authorization")))
            body = json.dumps({"initialized": True, "sealed": False, "t": 1, "n": 1, "progress": 0,
                               "version": "1.21.0"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        home = tmp_path / "home"
        home.mkdir()
        (home / ".vault-token").write_text("hvs.FROM-THE-TOKEN-FILE")
        (home / ".netrc").write_text("machine 127.0.0.1 login someone password netrc-secret\n")
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("VAULT_TOKEN", "hvs.OPERATORS-PERSONAL-TOKEN")
        client = unauthenticated(f"http://127.0.0.1:{server.server_address[1]}", None, clock=FakeClock())
        assert client.seal.status().initialized and not client.has_token
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("/v1/sys/seal-status", None, None)]


def test_the_given_ca_file_is_what_verifies_the_server(tmp_path: Path) -> None:
    """hvac takes a given session's own ``verify`` over its argument; the CA file must reach every request."""
    from chamberlain.authority.vault import client_with_token, unauthenticated

    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a request is made")
    for client in (unauthenticated("https://127.0.0.1:1", ca, clock=FakeClock()),
                   client_with_token("https://127.0.0.1:1", ca, "t", clock=FakeClock())):
        adapter = client._hvac.adapter
        assert adapter._kwargs["verify"] == str(ca) and adapter.session.verify == str(ca)
    default = unauthenticated("https://127.0.0.1:1", None, clock=FakeClock())._hvac.adapter
    assert default._kwargs["verify"] is True


class _Calls:
    """The client core's ``call`` for one area: what each named request returns or raises (a list: one per call)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.clock = FakeClock()
        self.counts: dict[str, int] = {}

    def call(self, what: str, _fn: Any) -> Any:
        self.counts[what] = self.counts.get(what, 0) + 1
        answer = self.answers[what]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


DENIED = errors.Forbidden("token lookup-accessor: permission denied (403)")
GONE = errors.InvalidRequest("token lookup-accessor: rejected (400): invalid accessor")
ROOT = {"data": {"accessor": "acc-1", "policies": ["root"], "ttl": 0, "renewable": False}}


@pytest.mark.parametrize(("lookups", "listed", "expected", "calls"), [
    pytest.param([DENIED], [], None, 1, id="revoked-meanwhile-no-longer-listed:gone"),
    pytest.param([DENIED, GONE], ["acc-1"], None, 2, id="revoking-itself-still-listed-then-invalid:gone"),
    pytest.param([DENIED, DENIED, ROOT], ["acc-1"], "root", 3, id="403-twice-then-found"),
    pytest.param([DENIED] * 4, ["acc-1"], errors.Forbidden, 4, id="really-denied:raised"),
])
def test_lookup_accessor_forbidden_is_gone_only_when_it_goes(lookups: list[Any], listed: list[str], expected: Any,
                                                              calls: int) -> None:
    from chamberlain.authority.vault.auth import Auth

    core = _Calls({"token lookup-accessor": lookups, "list token accessors": {"data": {"keys": listed}}})
    auth = Auth(core)  # type: ignore[arg-type]
    if expected is errors.Forbidden:
        with pytest.raises(errors.Forbidden):
            auth.lookup_accessor("acc-1")
    else:
        info = auth.lookup_accessor("acc-1")
        assert (info.policies[0] if info else None) == expected
    assert core.counts["token lookup-accessor"] == calls
