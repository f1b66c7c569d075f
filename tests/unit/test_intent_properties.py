"""Property-based tests: generated intent repositories load, validate clean, and round-trip through the model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chamberlain.checks import run_checks
from chamberlain.intent.loader import load_repository
from chamberlain.intent.model import SecretIntent
from tests.conftest import CORPUS

label = st.from_regex(r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,8})?", fullmatch=True)
key = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True)

generator = st.one_of(
    st.builds(lambda n: {"type": "password", "length": n}, st.integers(8, 128)),
    st.builds(lambda n: {"type": "token", "bytes": n}, st.integers(16, 64)),
    st.just({"type": "ed25519"}),
    st.sampled_from([{"type": "rsa", "bits": 2048}, {"type": "ecdsa", "curve": "P-384"}]),
    st.builds(lambda n: {"type": "fixed-name", "name": n}, st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True)),
)


@st.composite
def intent_doc(draw: st.DrawFn, name: str) -> dict[str, Any]:
    classification = draw(st.sampled_from(["runtime", "derived", "config"]))
    producer = None
    if classification == "runtime":
        source: dict[str, Any] = {"generate": draw(st.dictionaries(key, generator, min_size=1, max_size=4))}
    else:
        # A clean publication declares its keys (CH112) and is consumed outside its producer namespace (CH113).
        keys = draw(st.lists(st.sampled_from(["host", "port", "user", "database"]), unique=True, min_size=1,
                             max_size=3))
        producer = draw(label)
        source = {"publication": {"namespace": producer, "secretName": f"{name}.src", "keys": keys}}
    consumers = [
        {
            "namespace": ns,
            "secretName": name,
            "restart": [{"kind": draw(st.sampled_from(["Deployment", "StatefulSet", "DaemonSet"])), "name": w}
                        for w in draw(st.lists(label, unique=True, max_size=2))],
        }
        for ns in draw(st.lists(label.filter(lambda n: n != producer), unique=True, max_size=3))
    ]
    rotation = draw(
        st.one_of(
            st.just({"policy": "standard"}),
            st.just({"type": "static"}),
            st.builds(lambda d: {"type": "time-based", "ttl": f"{d + 1}d", "rotateBefore": f"{d}h"},
                      st.integers(1, 30)),
        )
    )
    return {
        "apiVersion": "chamberlain.dev/v1alpha1",
        "kind": "SecretIntent",
        "metadata": {"name": name},
        "spec": {
            "owner": draw(label),
            "purpose": "generated for a property test",
            "classification": classification,
            "environments": draw(st.sampled_from([["prod"], ["dev"], ["prod", "dev"]])),
            "source": source,
            "rotation": rotation,
            "consumers": consumers,
        },
    }


@st.composite
def repository(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(label, unique=True, min_size=1, max_size=6))
    return [draw(intent_doc(f"gen-{n}")) for n in names]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(repository())
def test_generated_repositories_validate_and_round_trip(docs: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(CORPUS / "base", root)
        (root / "generated.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        repo = load_repository(root)
        # CH119 (a warning) is left out: the generator draws arbitrary keys, some of them another spelling of a
        # conventional property name ("user", "Host")
        findings = [f for f in run_checks(repo) if f.rule != "CH119"]
        assert findings == [], [f.message for f in findings]
        loaded = {i.obj.metadata.name: i.obj for i in repo.intents}
        for doc in docs:
            model = loaded[doc["metadata"]["name"]]
            again = SecretIntent.model_validate(model.model_dump(by_alias=True, exclude_none=True, mode="json"))
            assert again == model
