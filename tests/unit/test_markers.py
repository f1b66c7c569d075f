"""Keyed version markers (issue 11): a marker of a weak value cannot be matched offline without the authority's key,
the comparison stays value-free, and v1 markers are still recognized for the same Vault version."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from chamberlain.authority.errors import Forbidden
from chamberlain.authority.fake import FakeTransit
from chamberlain.intent.paths import TRANSIT_MOUNT, VaultPath, marker_key
from chamberlain.values.markers import (
    VALUE_MARKER_V1,
    VALUE_MARKER_V1_VERSION,
    LegacyMarkers,
    TransitMarkers,
    same_version,
    version_marker,
)

PATH = VaultPath("secret", "dev/team-a/db")
GUESSES = ["123456", "password", "hunter2", "letmein", "changeme", "admin", "secret", "qwerty"]


@pytest.fixture
def transit() -> FakeTransit:
    t = FakeTransit()
    for env in ("dev", "prod"):
        t.ensure_key(TRANSIT_MOUNT, marker_key(env))
    return t


def _offline_guesses(path: str) -> dict[str, str]:
    """What an attacker holding only the marker can compute: every public-key HMAC form over a dictionary."""
    out = {}
    for guess in GUESSES:
        out[version_marker(path, {"password": guess})] = guess
        canonical = f'{{"password":"{guess}"}}'.encode()
        out["v2:" + hmac.new(path.encode(), canonical, hashlib.sha256).hexdigest()[:32]] = guess
    return out


def test_a_v1_marker_of_a_weak_value_is_guessed_offline() -> None:
    marker = LegacyMarkers().of(PATH, {"password": "hunter2"})
    assert _offline_guesses(PATH.full)[marker] == "hunter2"  # the weakness issue 11 reports


def test_a_v2_marker_of_a_weak_value_is_not_reproducible_without_the_key(transit: FakeTransit) -> None:
    marker = TransitMarkers(transit).of(PATH, {"password": "hunter2"})
    assert marker.startswith("v2:") and len(marker) == 35
    assert marker not in _offline_guesses(PATH.full)
    other = FakeTransit()  # the same engine, another key: another marker
    other.ensure_key(TRANSIT_MOUNT, marker_key("dev"))
    assert TransitMarkers(other).of(PATH, {"password": "hunter2"}) != marker


def test_v2_markers_are_deterministic_and_compare_versions_without_values(transit: FakeTransit) -> None:
    markers = TransitMarkers(transit)
    a = markers.of(PATH, {"password": "x", "user": "u"})
    assert a == markers.of(PATH, {"user": "u", "password": "x"})  # canonical: key order does not matter
    assert a != markers.of(PATH, {"password": "y", "user": "u"})
    assert a != markers.of(VaultPath("secret", "dev/team-a/other"), {"password": "x", "user": "u"})


def test_each_environment_uses_its_own_key_and_only_that(transit: FakeTransit) -> None:
    transit.allowed = {("hmac", TRANSIT_MOUNT, marker_key("dev"))}  # a dev orchestrator's policy
    TransitMarkers(transit).of(PATH, {"a": "b"})
    with pytest.raises(Forbidden):
        TransitMarkers(transit).of(VaultPath("secret", "prod/team-a/db"), {"a": "b"})


def test_a_v1_marker_counts_for_the_same_vault_version_only() -> None:
    v1 = version_marker(PATH.full, {"password": "x"})
    rekeyed = {"value-marker": "v2:" + "a" * 32, "value-version": "3", VALUE_MARKER_V1: v1,
               VALUE_MARKER_V1_VERSION: "3"}
    assert same_version(v1, rekeyed) and same_version("v2:" + "a" * 32, rekeyed)
    assert not same_version(v1, {**rekeyed, "value-version": "4"})  # rotated since: the consumer is behind
    assert not same_version("v1:" + "0" * 32, rekeyed)
    assert same_version(v1, {"value-marker": v1})  # nothing re-keyed yet: plain equality
    assert not same_version(None, rekeyed) and not same_version(v1, {})
