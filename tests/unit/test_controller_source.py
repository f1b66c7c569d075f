"""The controller driven by the cluster, with fakes (FakeKube as the API server and its watches, FakeKV as Vault, a
fake clock): parsing one object, building the Scope (pure) with per-intent rejections, the reflector's handling of
ADDED/MODIFIED/DELETED/BOOKMARK, 410 Gone and resync, the scope swapped into a running loop, and the controller
provisioning a new generated secret and bringing a changed policy into force. The same behaviours against the real
kube-apiserver and OpenBao: tests/lab/test_controller_cluster.py."""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from chamberlain import wellknown as wk
from chamberlain.audit.ledger import LedgerReader
from chamberlain.authority.kv import SecretMetadata
from chamberlain.controller.app import ControllerWebhook
from chamberlain.controller.loop import scope_of
from chamberlain.controller.reconcile import IntentReconciler, policy_drift, provision_unit
from chamberlain.controller.source import (
    RESOURCES,
    ClusterSource,
    Compact,
    Reflector,
    Store,
    build_scope,
    parse,
    rule_ids,
)
from chamberlain.intent.model import RotationPolicy
from chamberlain.kube.fake import FakeKube
from chamberlain.render.layout import intent_manifest
from chamberlain.service import load_valid
from chamberlain.triggers import WebhookKey, manual, sign
from chamberlain.triggers.annotation import HANDLED, RESULT
from tests.conftest import EXAMPLES, run_cli
from tests.unit.test_controller import MOUNT, NS, PLATFORM, World, intent

SI, RP, PF = RESOURCES["SecretIntent"], RESOURCES["RotationPolicy"], RESOURCES["Platform"]


def as_object(model: Any, **extra: Any) -> dict[str, Any]:
    """A model as the API server returns it: render's manifest plus server fields and a status."""
    doc = intent_manifest(model, NS)
    doc["metadata"].update(uid="u-1", resourceVersion="7", generation=2, managedFields=[{"manager": "flux"}])
    doc["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(doc)
    doc["status"] = {"phase": "Ready"}
    return {**doc, **extra}


def acme_objects() -> list[Any]:
    repo = load_valid(EXAMPLES / "acme")
    assert repo.platform is not None
    return ([parse("Platform", as_object(repo.platform))] + [parse("RotationPolicy", as_object(p.obj))
                                                              for p in repo.policies]
            + [parse("SecretIntent", as_object(i.obj)) for i in repo.intents])


def with_spec(model: Any, **spec: Any) -> dict[str, Any]:
    obj = as_object(model)
    obj["spec"] = {**obj["spec"], **spec}
    return obj


# --------------------------------------------------------------------------------------------------- parse


def test_parse_keeps_the_model_only_and_drops_server_fields() -> None:
    p = parse("SecretIntent", as_object(intent("api-token")))
    assert p.model is not None and not p.findings
    assert "kubectl.kubernetes.io/last-applied-configuration" not in p.model.metadata.annotations
    obj = as_object(intent("api-token"))
    obj["metadata"]["annotations"].update({wk.ANNOTATION_ROTATE: "PENTEST-1", HANDLED: "sha256:x", RESULT: "done"})
    assert parse("SecretIntent", obj) == p  # a manual rotation request does not change the intent
    assert p.model.metadata.namespace == NS


def test_parse_refuses_a_bad_object_with_rule_ids_and_no_line() -> None:
    p = parse("SecretIntent", with_spec(intent("api-token"), bogus=1))
    assert p.model is None and rule_ids(p.findings) == ["CH003"]
    assert p.findings[0].file == "secretintents/api-token" and p.findings[0].line is None
    bad_ttl = parse("SecretIntent", with_spec(intent("x"), rotation={"type": "time-based", "ttl": "soon"}))
    assert rule_ids(bad_ttl.findings) == ["CH005"]


# --------------------------------------------------------------------------------------------------- build


def test_a_valid_repository_in_the_cluster_places_what_the_repository_places() -> None:
    from chamberlain.service.controller import scope_from_repository

    built = build_scope(acme_objects(), "dev", "dev1")
    assert built.scope is not None and not built.rejected and not built.scope.rejected
    from_repo = scope_from_repository(EXAMPLES / "acme", "dev", "dev1")
    assert {n: p.vault for n, p in built.scope.placed.items()} == {n: p.vault for n, p in from_repo.placed.items()}
    assert set(built.scope.intents) == set(from_repo.intents)
    assert set(built.scope.policies) == set(from_repo.policies)


def test_invalid_intents_are_rejected_alone_with_their_rule_ids() -> None:
    objects = [o for o in acme_objects() if o.name not in ("grafana-admin", "storefront-session", "pg-payments-admin")]
    repo = load_valid(EXAMPLES / "acme")
    by_name = {i.obj.name: i.obj for i in repo.intents}
    objects += [
        parse("SecretIntent", with_spec(by_name["grafana-admin"], rotation={"policy": "no-such-policy"})),
        parse("SecretIntent", with_spec(by_name["storefront-session"], environments=["nowhere"])),
        parse("SecretIntent", with_spec(by_name["pg-payments-admin"], owner="Not A Label")),
    ]
    built = build_scope(objects, "dev", "dev1")
    assert built.scope is not None
    assert {n: rule_ids(f) for n, f in built.rejected.items()} == {
        "grafana-admin": ["CH011"],
        "storefront-session": ["CH010"],
        "pg-payments-admin": ["CH006"],
        "payments-db": ["CH014"],  # its adminIntent was rejected: it cannot rotate either
    }
    assert built.scope.rejected == built.rejected
    assert not set(built.rejected) & set(built.scope.placed)
    every = build_scope(acme_objects(), "dev", "dev1").scope
    assert every is not None  # every other intent is still served
    assert set(built.scope.placed) == set(every.placed) - set(built.rejected)
    assert all("CANARY" not in f.message for fs in built.rejected.values() for f in fs)


def test_a_credential_in_metadata_is_found_in_any_chunk_and_not_shown() -> None:
    objects = [parse("Platform", as_object(PLATFORM))] + [parse("SecretIntent", as_object(intent(f"t-{i}")))
                                                          for i in range(1200)]
    leaky = as_object(intent("leaky"))
    leaky["metadata"]["annotations"]["db-password"] = "hunter2-Xk9#mQ2!vR7pL"
    built = build_scope([*objects, parse("SecretIntent", leaky)], "dev", "dev1")
    assert {n: rule_ids(f) for n, f in built.rejected.items()} == {"leaky": ["CH102"]}
    [finding] = built.rejected["leaky"]
    assert finding.message.startswith("SecretIntent/leaky: ") and "hunter2" not in finding.message
    assert built.scope is not None and len(built.scope.placed) == 1200


def test_no_valid_platform_builds_no_scope_and_a_bad_cluster_is_a_usage_error() -> None:
    objects = [o for o in acme_objects() if o.kind != "Platform"]
    built = build_scope(objects, "dev", "dev1")
    assert built.scope is None and "CH007" in rule_ids(built.problems)
    from chamberlain.errors import UsageError

    with pytest.raises(UsageError, match="unknown cluster"):
        build_scope(acme_objects(), "dev", "nowhere")


# --------------------------------------------------------------------------------------------------- watching


def reflector(kube: FakeKube, clock: Any, store: Store, resync: float = 300.0) -> Reflector:
    return Reflector(kube, "SecretIntent", NS, store, clock, resync=resync)


def names(store: Store) -> set[str]:
    return {p.name for p in store.snapshot()[1]}


def test_reflector_lists_then_follows_added_modified_deleted_and_bookmarks() -> None:
    w = World()
    kube, store = FakeKube(), Store()
    kube.add_custom_object(SI, as_object(intent("a")))
    r = reflector(kube, w.clock, store)
    r.step()
    assert r.lists == 1 and names(store) == {"a"}
    kube.add_custom_object(SI, as_object(intent("b")))  # ADDED
    kube.add_custom_object(SI, with_spec(intent("a"), purpose="changed"))  # MODIFIED
    r.step()
    assert r.lists == 1 and kube.watches == 1 and names(store) == {"a", "b"}
    a = next(p for p in store.snapshot()[1] if p.name == "a")
    assert a.model is not None and a.model.spec.purpose == "changed"  # type: ignore[union-attr]
    kube.delete_custom_object(SI, NS, "b")  # DELETED
    mark = kube.add_bookmark(SI, NS)  # BOOKMARK: only the resourceVersion moves
    r.step()
    assert names(store) == {"a"} and r.resource_version == mark
    generation = store.generation
    r.step()  # nothing new: the watch ends without a change
    assert store.generation == generation and r.lists == 1


def test_reflector_lists_page_by_page() -> None:
    w = World()
    kube, store = FakeKube(), Store()
    for i in range(5):
        kube.add_custom_object(SI, as_object(intent(f"t-{i}")))
    r = Reflector(kube, "SecretIntent", NS, store, w.clock, page_size=2)
    r.step()
    assert names(store) == {f"t-{i}" for i in range(5)} and r.resource_version == str(kube._last_version())


def test_parsed_intents_share_their_equal_frozen_parts_and_read_the_same() -> None:
    w = World()
    kube, store = FakeKube(), Store()
    for i in range(3):
        kube.add_custom_object(SI, as_object(intent(f"t-{i}")))
    r = Reflector(kube, "SecretIntent", NS, store, w.clock, page_size=2)
    r.step()
    models = sorted((p for p in store.snapshot()[1]), key=lambda p: p.name)
    fresh = [parse("SecretIntent", as_object(intent(f"t-{i}"))).model for i in range(3)]
    assert [p.model for p in models] == fresh  # nothing reads differently
    a, b = (p.model for p in models[:2])
    assert a is not None and b is not None
    assert a.spec.rotation is b.spec.rotation and a.spec.source is not None  # type: ignore[union-attr]
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    assert a.metadata.name is models[0].name  # interned
    kube.add_custom_object(SI, with_spec(intent("t-0"), purpose="changed"))  # a watch event: shared too
    r.step()
    c = store.get("SecretIntent", "t-0")
    assert c is not None and c.model is not None and c.model.spec.rotation is b.spec.rotation  # type: ignore[union-attr]
    assert c.model.spec.purpose == "changed"  # type: ignore[union-attr]
    copied = b.model_copy(update={"kind": "SecretIntent"})  # a copy never writes into the shared field set
    assert copied.__pydantic_fields_set__ is not b.__pydantic_fields_set__


def test_compact_keeps_unhashable_models_and_clears_its_tables() -> None:
    compact = Compact()
    one = parse("SecretIntent", as_object(intent("x"))).model
    two = parse("SecretIntent", as_object(intent("x"))).model
    assert one is not None and two is not None
    assert compact.model(one) is one and compact.model(two) is two  # a dict field: kept, parts shared
    assert one.spec.rotation is two.spec.rotation and len(compact) > 0  # type: ignore[union-attr]
    compact.clear()
    assert len(compact) == 0


def test_compact_shares_equal_dicts_lists_and_models_holding_them_but_never_what_dumps_differently() -> None:
    compact = Compact()
    one, two = (parse("SecretIntent", as_object(intent(n))).model for n in ("x", "y"))
    assert one is not None and two is not None
    compact.model(one)
    compact.model(two)
    assert one.metadata.annotations is two.metadata.annotations  # equal dicts: one object
    assert one.spec.source is two.spec.source  # a model holding a dict (the generators): shared too
    assert one.spec.consumers[0].restart is two.spec.consumers[0].restart
    assert one.metadata is not two.metadata and one.metadata.name == "x" and two.metadata.name == "y"
    # Equal by pydantic's __eq__, but a field given in one and defaulted in the other: exclude_unset differs.
    plain, given = (parse("SecretIntent", with_spec(intent(n), consumers=[c])).model for n, c in (
        ("p", {"namespace": "shop", "secretName": "s"}),
        ("g", {"namespace": "shop", "secretName": "s", "restart": []})))
    assert plain is not None and given is not None and plain.spec.consumers[0] == given.spec.consumers[0]
    dumps = [m.model_dump(mode="json", exclude_unset=True)["spec"]["consumers"] for m in (plain, given)]
    compact.model(plain)
    compact.model(given)
    assert plain.spec.consumers[0] is not given.spec.consumers[0]
    assert [m.model_dump(mode="json", exclude_unset=True)["spec"]["consumers"] for m in (plain, given)] == dumps
    # 1, 1.0 and True are equal in Python; they stay apart here.
    assert compact._value([1]) is not compact._value([1.0]) and compact._value([1]) is not compact._value([True])
    assert compact._value({"a": 0.0}) is not compact._value({"a": -0.0})
    assert compact._value(["a", "b"]) is compact._value(["a", "b"]) and compact._value(("a",)) is compact._value(("a",))


def test_reflector_relists_on_410_gone_and_on_resync() -> None:
    w = World()
    kube, store = FakeKube(), Store()
    kube.add_custom_object(SI, as_object(intent("a")))
    r = reflector(kube, w.clock, store, resync=60)
    r.step()
    kube.add_custom_object(SI, as_object(intent("b")))
    kube.compacted = 10_000  # etcd compacted past our resourceVersion
    r.step()
    assert r.relists_gone == 1 and r.resource_version is None
    kube.compacted = 0
    r.step()  # lists again: b is there
    assert r.lists == 2 and names(store) == {"a", "b"}
    # A deletion the watch never delivered (the change log lost it) is gone after the periodic resync's list.
    del kube.custom_objects[(SI.group, SI.version, SI.plural, NS, "b")]
    r.step()
    assert names(store) == {"a", "b"}
    w.clock.advance(61)
    r.step()
    assert r.lists == 3 and names(store) == {"a"}


def test_source_waits_for_a_platform_applied_after_it_started() -> None:
    import threading

    w = World()
    kube = FakeKube()
    kube.add_custom_object(SI, as_object(intent("api-token")))
    source = ClusterSource(kube, NS, "dev", "dev1", w.clock, log=w.log, retry=0.01)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(source.sync(timeout=None)))
    t.start()
    t.join(0.3)
    assert t.is_alive() and not got  # no Platform yet: waiting, watching
    kube.add_custom_object(PF, as_object(PLATFORM))
    t.join(10)
    source.stop()
    assert got and got[0].scope is not None and set(got[0].scope.placed) == {"api-token"}
    assert any("no valid Platform" in line for line in w.log.lines)


def test_source_builds_only_after_a_change_and_reports_a_forbidden_list_by_verb_and_resource() -> None:
    w = World()
    kube = FakeKube()
    kube.add_custom_object(PF, as_object(PLATFORM))
    kube.add_custom_object(SI, as_object(intent("api-token")))
    source = ClusterSource(kube, NS, "dev", "dev1", w.clock, log=w.log)
    first = source.sync(timeout=1)
    assert first.scope is not None and set(first.scope.placed) == {"api-token"}
    assert source.build() is None  # nothing changed
    kube.add_custom_object(SI, with_spec(intent("broken"), rotation={"policy": "missing"}))
    source.step("SecretIntent")
    built = source.build()
    assert built is not None and built.scope is not None and rule_ids(built.rejected["broken"]) == ["CH011"]
    assert set(built.scope.placed) == {"api-token"}
    assert any('"intent rejected"' in line and "CH011" in line for line in w.log.lines)
    kube.add_custom_object(SI, as_object(intent("another")))
    source.step("SecretIntent")
    assert source.build() is not None
    assert sum('"intent rejected"' in line for line in w.log.lines) == 1  # said once, not at every build

    class Forbidden(FakeKube):
        def list_custom_objects_versioned(self, resource: Any, namespace: str, **_: Any) -> Any:
            from chamberlain.kube.api import KubeForbidden

            raise KubeForbidden(f"{resource.describe(namespace)}: forbidden (403)")

    denied = ClusterSource(Forbidden(), NS, "dev", "dev1", w.clock, log=w.log, retry=0)
    assert not denied.step("SecretIntent")
    line = w.log.lines[-1]
    assert '"verb": "list"' in line and "secretintents.chamberlain.dev" in line and "KubeForbidden" in line


# --------------------------------------------------------------------------------------------------- the loop


def reconciled(w: World, **kw: Any) -> Any:
    c = w.controller(**kw)
    from dataclasses import replace

    rec = IntentReconciler(w.kv, c.parts.ledger, w.clock, "controller:test", new_run_id=lambda: "prov-1", log=w.log)
    c.parts = replace(c.parts, reconciler=rec)
    return c, rec


def test_a_new_generated_intent_is_provisioned_at_the_next_tick_and_then_rotates() -> None:
    w = World(policy={"type": "event-based", "failureStrategy": "retry"})
    c, rec = reconciled(w)
    c.tick()
    new = intent("new-token", policy={"type": "event-based", "failureStrategy": "retry"})
    c.set_scope(scope_of(PLATFORM, {**w.scope.intents, "new-token": new}, "dev", "dev1"))
    assert c.wake.is_set()
    c.tick()
    path = c.scope.placed["new-token"].vault.path
    meta = w.kv.read_metadata(MOUNT, path)
    assert meta is not None and meta.current_version == 1 and meta.custom[wk.CREATED_BY] == "chamberlain"
    assert meta.custom[wk.POLICY_PREFIX + "type"] == "event-based"
    created = [e for e in LedgerReader(w.kv, MOUNT).entries() if e.event == "value-created"]
    assert [(e.secret, e.actor) for e in created] == [("new-token", "controller:test")] and rec.provisioned == 1
    c.tick()  # steady state: nothing more to do
    assert rec.provisioned == 1 and len(LedgerReader(w.kv, MOUNT).entries()) == len(created)
    w.kube.external_secrets[("shop", "new-token")] = {"metadata": {"name": "new-token", "namespace": "shop"}}
    w.kube.paths[("shop", "new-token")] = path
    c.request(manual("new-token", "first rotation", w.clock.now()))
    c.tick()
    assert w.version("api-token") == 1
    after = w.kv.read_metadata(MOUNT, path)
    assert after is not None and after.current_version == 2


def test_a_changed_policy_takes_effect_without_a_restart() -> None:
    w = World(policy={"type": "event-based", "failureStrategy": "retry"})
    c, rec = reconciled(w)
    c.tick()
    w.clock.advance(3600)
    c.tick()
    assert w.version() == 1  # event-based: the timer never fires
    timed = intent("api-token", policy={"type": "time-based", "ttl": "30m", "rotateBefore": "5m",
                                        "failureStrategy": "retry"})
    c.set_scope(scope_of(PLATFORM, {"api-token": timed}, "dev", "dev1"))
    c.tick()  # the policy comes into force (audited), and the secret, older than 25m, is due at once
    changes = [e for e in LedgerReader(w.kv, MOUNT).entries() if e.event == "policy-change"]
    assert [e.secret for e in changes] == ["api-token"] and rec.policy_changes == 1
    c.tick()
    assert w.version() == 2


def test_a_request_for_an_intent_the_new_scope_dropped_is_refused_and_the_webhook_knows_new_ones() -> None:
    w = World(("api-token", "other"), policy={"type": "event-based", "failureStrategy": "retry"})
    c = w.controller()
    key = WebhookKey(b"k" * 32)
    hook = ControllerWebhook(c, key)
    c.tick()
    c.set_scope(scope_of(PLATFORM, {"api-token": w.scope.intents["api-token"]}, "dev", "dev1"))
    c.tick()
    body = json.dumps({"secret": "other", "reason": "ci"}).encode()
    assert hook.handle(sign(body, key, w.clock.now()), body).status == HTTPStatus.NOT_FOUND
    c.request(manual("other", "late", w.clock.now()))
    c.tick()
    assert w.version("other") == 1 and any("out of scope" in line for line in w.log.lines)
    c.set_scope(w.scope)
    c.tick()
    assert hook.handle(sign(body, key, w.clock.now()), body).status == HTTPStatus.OK


def test_an_intent_the_new_scope_dropped_leaves_no_metric_series_behind() -> None:
    """A gauge of a deleted intent (an overdue 1) would keep its alert firing until a restart."""
    w = World(("api-token", "other"), policy={"type": "time-based", "ttl": "30m", "rotateBefore": "5m",
                                              "failureStrategy": "retry"})
    c = w.controller()
    c.tick()
    text = c.parts.metrics.exposition().decode()
    assert 'secret="other"' in text
    c.set_scope(scope_of(PLATFORM, {"api-token": w.scope.intents["api-token"]}, "dev", "dev1"))
    c.tick()
    gauges = ("chamberlain_secret_age_seconds", "chamberlain_secret_ttl_seconds", "chamberlain_secret_held",
              "chamberlain_secret_next_due_timestamp_seconds", "chamberlain_secret_overdue")
    lines = [ln for ln in c.parts.metrics.exposition().decode().splitlines() if ln.startswith(gauges)]
    assert lines and not [ln for ln in lines if 'secret="other"' in ln]
    assert [ln for ln in lines if 'secret="api-token"' in ln]


# --------------------------------------------------------------------------------------------------- decisions


def test_provision_decision_is_for_generated_secrets_without_a_value() -> None:
    w = World()
    placed = w.scope.placed["api-token"]
    assert provision_unit(w.scope, placed, None) is not None
    empty = SecretMetadata(0, 0, {}, {})
    assert provision_unit(w.scope, placed, empty) is not None
    assert provision_unit(w.scope, placed, w.kv.read_metadata(MOUNT, placed.vault.path)) is None
    boot = intent("boot").model_copy(deep=True)
    spec = boot.spec.model_copy(update={"source": boot.spec.source.model_copy(
        update={"generate": None, "bootstrap": {"file": "x.sops.yaml"}})})
    boot = boot.model_copy(update={"spec": spec})
    scope = scope_of(PLATFORM, {"boot": boot}, "dev", "dev1")
    assert provision_unit(scope, scope.placed["boot"], None) is None


def test_policy_drift_names_a_referenced_policy_and_is_none_when_in_sync() -> None:
    w = World()
    placed = w.scope.placed["api-token"]
    meta = w.kv.read_metadata(MOUNT, placed.vault.path)
    assert meta is not None and policy_drift(w.scope, placed, meta) is None
    ref = intent("api-token", policy={"policy": "weekly"})
    weekly = RotationPolicy.model_validate({"apiVersion": "chamberlain.dev/v1alpha1", "kind": "RotationPolicy",
                                            "metadata": {"name": "weekly"},
                                            "spec": {"type": "time-based", "ttl": "7d", "rotateBefore": "1d"}})
    scope = scope_of(PLATFORM, {"api-token": ref}, "dev", "dev1", policies={"weekly": weekly})
    found = policy_drift(scope, scope.placed["api-token"], meta)
    assert found is not None and found.git_name == "weekly" and "ttl" in {f.field for f in found.fields}
    unknown = scope_of(PLATFORM, {"api-token": ref}, "dev", "dev1")  # the policy is missing: no drift
    assert policy_drift(unknown, unknown.placed["api-token"], meta) is None


# --------------------------------------------------------------------------------------------------- command line


def test_run_needs_a_repository_or_from_cluster_but_not_both(tmp_path: Path) -> None:
    neither = run_cli("controller", "run", "-e", "dev", "--cluster", "dev1")
    assert neither.code == 2 and "--from-cluster" in neither.err
    both = run_cli("controller", "run", str(EXAMPLES / "acme"), "--from-cluster", "-e", "dev", "--cluster", "dev1")
    assert both.code == 2 and "--from-cluster" in both.err
    twice = run_cli("controller", "run", str(EXAMPLES / "acme"), "--repo", str(tmp_path))
    assert twice.code == 2 and "once" in twice.err


# --------------------------------------------------------------------------------------------------- tenancy in-cluster


def tenancy_objects() -> tuple[list[Any], dict[str, Any]]:
    repo = load_valid(EXAMPLES / "acme-tenancy")
    assert repo.platform is not None and repo.platform.spec.tenancy is not None
    objects = ([parse("Platform", as_object(repo.platform))] + [parse("RotationPolicy", as_object(p.obj))
                                                                 for p in repo.policies])
    return objects, {i.obj.name: i.obj for i in repo.intents}


def test_an_intent_applied_in_the_cluster_gets_the_tenancy_checks_of_the_platform() -> None:
    """An intent that reaches the cluster without validate (CI skipped, an object applied by an identity the
    admission policy trusts) is judged by the Platform's tenancy: another owner's namespace (CH081), an undeclared
    owner (CH080: in the cluster there is no file, so only the owner's declaration is checked), and another owner's
    admin intent that does not grant it (CH083) are refused; the valid intents still serve."""
    objects, by_name = tenancy_objects()
    assert not build_scope([*objects, *(parse("SecretIntent", as_object(m)) for m in by_name.values())],
                           "dev", "dev1").rejected
    payments = by_name["payments-db"]
    consumer = as_object(payments)["spec"]["consumers"][0]
    crafted = {
        "payments-db": with_spec(payments, consumers=[{**consumer, "namespace": "monitoring"}]),
        "payments-kafka-user": with_spec(by_name["payments-kafka-user"], owner="team-nobody"),
    }
    objects += [parse("SecretIntent", crafted.get(n) or as_object(m)) for n, m in by_name.items()]
    built = build_scope(objects, "dev", "dev1")
    got = {n: rule_ids(f) for n, f in built.rejected.items()}
    assert got["payments-db"] == ["CH081"]
    assert got["payments-kafka-user"] == ["CH080"]
    assert built.scope is not None and not set(got) & set(built.scope.placed)
    every = build_scope([*objects[:-len(by_name)], *(parse("SecretIntent", as_object(m)) for m in by_name.values())],
                        "dev", "dev1").scope
    assert every is not None and set(built.scope.placed) == set(every.placed) - set(got)


def test_an_admin_intent_of_another_owner_is_refused_in_the_cluster() -> None:
    """CH083/CH084 in the cluster: an intent applied there cannot borrow another owner's admin credential."""
    objects, by_name = tenancy_objects()
    admin = by_name["pg-payments-admin"]
    crafted = with_spec(admin, admin={"grantedTo": [], "targets": as_object(admin)["spec"]["admin"]["targets"]})
    objects += [parse("SecretIntent", crafted if n == admin.name else as_object(m)) for n, m in by_name.items()]
    built = build_scope(objects, "dev", "dev1")
    assert rule_ids(built.rejected.get("payments-db", ())) == ["CH083"]
    # The admin credential is sent only to the targets its intent declares: not to a host of the requester's choice.
    objects, by_name = tenancy_objects()
    target = as_object(by_name["payments-db"])["spec"]["target"]
    stolen = with_spec(by_name["payments-db"], target={"postgres": {**target["postgres"], "host": "evil.example.com"}})
    objects += [parse("SecretIntent", stolen if n == "payments-db" else as_object(m)) for n, m in by_name.items()]
    assert rule_ids(build_scope(objects, "dev", "dev1").rejected.get("payments-db", ())) == ["CH084"]


def test_a_long_admin_chain_is_rejected_in_a_few_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejection cascades along adminIntent: intent i names intent i-1. Each pass runs every check over every
    intent (about a second at 10k intents), so a pass per link would let a chain of a few hundred intents stall
    every scope build for minutes: the dependents are found by walking the chain instead."""
    from chamberlain.controller import source

    passes = []
    real = source._check
    monkeypatch.setattr(source, "_check", lambda *a: passes.append(1) or real(*a))
    objects = [parse("Platform", as_object(PLATFORM))]
    for j in range(40):
        target = {"postgres": {"host": f"db{j}.shop.svc", "port": 5432, "database": "app", "role": f"r{j}",
                               "adminIntent": f"c-{j - 1}"}}
        objects.append(parse("SecretIntent", as_object(intent(f"c-{j}", target=target))))
    objects.append(parse("SecretIntent", as_object(intent("unrelated"))))
    built = build_scope(objects, "dev", "dev1")  # c-0 names c--1, which does not exist
    assert {n: rule_ids(f) for n, f in built.rejected.items()} == {f"c-{j}": ["CH014"] for j in range(40)}
    assert "adminIntent 'c-38' was rejected" in built.rejected["c-39"][0].message
    assert built.scope is not None and set(built.scope.placed) == {"unrelated"}
    assert len(passes) <= 3


def test_a_platform_that_fails_validation_places_nothing_new() -> None:
    """The Platform says where the controller logs in (its ServiceAccount token goes there) and who holds which
    namespace: one that fails validate's checks in the cluster (here CH076, an http:// authority off the host;
    CH082, a namespace held twice) builds no scope, and the current one stays in force."""
    objects, by_name = tenancy_objects()
    intents = [parse("SecretIntent", as_object(m)) for m in by_name.values()]
    platform = as_object(load_valid(EXAMPLES / "acme-tenancy").platform)
    insecure = {**platform, "spec": {**platform["spec"], "authority": {
        **platform["spec"]["authority"], "address": "http://vault.attacker.example:8200"}}}
    built = build_scope([parse("Platform", insecure), *objects[1:], *intents], "dev", "dev1")
    assert built.scope is None and "CH076" in rule_ids(built.problems)
    tenancy = platform["spec"]["tenancy"]
    owners = [{**o, "namespaces": [*o["namespaces"], "payments"]} if o["name"] == "team-data" else o
              for o in tenancy["owners"]]
    twice = {**platform, "spec": {**platform["spec"], "tenancy": {**tenancy, "owners": owners}}}
    built = build_scope([parse("Platform", twice), *objects[1:], *intents], "dev", "dev1")
    assert built.scope is None and "CH082" in rule_ids(built.problems)


def test_a_policy_that_fails_validation_is_not_used() -> None:
    """A RotationPolicy below the Platform's minimumTtl (CH077) would rotate, and restart, every intent naming it
    that often: it is left out of the scope, and the intents naming it are rejected (CH011); the others serve. (The
    Platform's default policy so refused leaves the Platform invalid: no new scope.)"""
    objects, by_name = tenancy_objects()
    policies = [p for p in objects if p.kind == "RotationPolicy"]
    standard = next(p for p in policies if p.name == "signing-keys")
    assert standard.model is not None
    fast = as_object(standard.model)
    fast["spec"] = {**fast["spec"], "ttl": "5m", "rotateBefore": "1m"}
    objects = [o if o is not standard else parse("RotationPolicy", fast) for o in objects]
    objects += [parse("SecretIntent", as_object(m)) for m in by_name.values()]
    built = build_scope(objects, "dev", "dev1")
    assert "CH077" in rule_ids(built.problems)
    assert built.scope is not None and "signing-keys" not in built.scope.policies
    naming = {n for n, m in by_name.items() if getattr(m.spec.rotation, "policy", None) == "signing-keys"}
    assert naming and {n: rule_ids(f) for n, f in built.rejected.items()} == {n: ["CH011"] for n in naming}
    assert set(built.scope.placed) and not naming & set(built.scope.placed)
    default = as_object(next(p for p in policies if p.name == "standard").model)
    default["spec"] = {**default["spec"], "ttl": "5m", "rotateBefore": "1m"}
    objects = [parse("RotationPolicy", default) if o.kind == "RotationPolicy" and o.name == "standard" else o
               for o in objects]
    assert build_scope(objects, "dev", "dev1").scope is None


def test_an_object_that_cannot_be_read_is_refused_alone() -> None:
    """Whatever an object holds, parse answers with findings and never raises: one raise would end the whole
    list (every intent of the kind would go stale). The API server's schema keeps metadata well-typed; this is
    the fake's object, as a conversion webhook or a bug could hand over."""
    obj = as_object(intent("odd"))
    obj["metadata"]["annotations"] = ["not", "a", "map"]
    p = parse("SecretIntent", obj)
    assert p.model is None and p.name == "odd" and rule_ids(p.findings) == ["CH003"]
    assert parse("SecretIntent", {"metadata": "x", "spec": 1}).findings
