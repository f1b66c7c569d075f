"""Every scan is linear: 10 MB of adversarial text is scanned in well under a second of CPU time.

The worst cases of the old scanner: many ``-----BEGIN`` without END (a lazy ``.*?`` rescans the rest of the text
from each one: 336 KB took 49 s), many ``ENC[`` without ``]``, long runs of candidate characters, one long line,
and runs of ``sk-`` (a regex with two unbounded runs around a literal). The bound is CPU time (``process_time``), so
a loaded machine does not fail the test; on top, the 10 MB scan may cost at most ~20x the 1 MB one (a quadratic
scan costs 100x).
"""

from __future__ import annotations

import time

import pytest

from chamberlain.checks.secrets import MAX_HITS, pem_blocks, scan_binary, scan_text
from chamberlain.checks.sops import sops_structure_problems
from chamberlain.scan import engine as secrets

MB = 1024 * 1024

WORST_CASES = {
    "begin-without-end": "-----BEGIN CERTIFICATE-----\n",
    "begin-one-line": "-----BEGIN CERTIFICATE-----",
    "private-begin-without-end": "-----BEGIN RSA PRIVATE KEY-----\n",
    "private-labels-all-different": None,  # built below: a distinct label each time
    "enc-without-bracket": "ENC[AES256_GCM,",
    "enc-lines": "x: ENC[AES256_GCM,data:\n",
    "token-run": "aB3/",
    "long-line": "note: " + "x" * 200 + " ",
    "sk-run": "sk-",
    "url-passwords": "://a:b@",
    "ssh-prefix": "ssh-rsa AAAA",
    "secret-key-assignments": "secret_key: ",
    "token-assignments": "token=",
    "password-assignments": "password=",
    "name-value-pairs": "- name: DB_PASSWORD\n  value: ",
    "xml-elements": "<apiToken>",
    "typed-declarations": "var x_token string = ",
    "authorization-headers": "Authorization: Bearer ",
    "curl-users": " -u a:",
    "placeholder-runs": "xoxb-xxxxxxxxxxxxxxxxxxxxxxxx ",
    "provider-names": "sonar_login: ",
    "provider-prefixes": "api_token = xoxp-1 ",
}


def text_of(case: str, size: int) -> str:
    if case == "private-labels-all-different":
        count = size // len("-----BEGIN K00000000 PRIVATE KEY-----") + 1
        return "".join(f"-----BEGIN K{n:08d} PRIVATE KEY-----" for n in range(count))[:size]
    unit = WORST_CASES[case]
    assert unit is not None
    return (unit * (size // len(unit) + 1))[:size]


def cpu(fn: object, *args: object, bound: float = 1.0) -> float:
    """CPU seconds of ``fn(*args)``; measured again (the better run counts) only when over ``bound``, so a run the
    machine descheduled does not fail the test."""
    best = float("inf")
    for _ in range(2):
        started = time.process_time()
        fn(*args)  # type: ignore[operator]
        best = min(best, time.process_time() - started)
        if best < bound:
            break
    return best


@pytest.mark.parametrize("case", sorted(WORST_CASES))
def test_ten_megabytes_scan_in_under_a_second(case: str) -> None:
    t_big = cpu(scan_text, text_of(case, 10 * MB))
    if t_big < 1.0:
        return
    # Over a second on a loaded machine: still linear? (10x the input may cost ~10x, never ~100x.)
    t_small = cpu(scan_text, text_of(case, MB), bound=0.1)
    assert t_big < 20 * max(t_small, 0.01), (case, t_small, t_big)
    assert t_big < 3.0, (case, t_big)  # generous for a loaded 2-core machine; the old scanner took hours here


def test_binary_scan_is_linear_too() -> None:
    raw = (b"-----BEGIN CERTIFICATE-----" + b"sk-" * 10) * (10 * MB // 57)
    assert cpu(scan_binary, raw, bound=3.0) < 3.0


def test_pem_blocks_pair_each_begin_with_the_next_end_of_its_label() -> None:
    text = ("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n"
            "-----BEGIN PUBLIC KEY-----\nB\n-----END PUBLIC KEY-----\n")
    blocks = pem_blocks(text, secrets._PUBLIC_PEM)
    assert [text[a:b].splitlines()[0] for a, b in blocks] == ["-----BEGIN CERTIFICATE-----",
                                                              "-----BEGIN PUBLIC KEY-----"]


def test_an_unclosed_public_block_masks_nothing_after_it() -> None:
    key = "AKIAQWERTYUIOPASDFGH"
    hits = scan_text("-----BEGIN CERTIFICATE-----\n" * 1000 + f"id = {key}\n")
    assert [h.kind for h in hits] == ["aws-access-key-id"]


def test_a_private_key_inside_an_unclosed_public_block_is_still_found() -> None:
    hits = scan_text("-----BEGIN CERTIFICATE-----\n-----BEGIN RSA PRIVATE KEY-----\nabc\n")
    assert "private-key" in {h.kind for h in hits}


def test_openai_keys_are_still_recognised() -> None:
    key = "sk-" + "Qx7rTz2mKp9vLw4nHc8d" + "T3BlbkFJ" + "Jb5sYf1gNe6uRk3oWa0h"  # the legacy 20+8+20 shape
    assert any(h.kind.startswith("openai-") for h in scan_text(f"OPENAI = {key}\n", generic=False))
    assert not any(h.kind.startswith("openai-") for h in scan_text("sk-" + "A" * 60 + "\n", generic=False))


def test_a_flood_of_hits_is_capped_and_says_so() -> None:
    hits = scan_text("-----BEGIN RSA PRIVATE KEY-----\n" * 100_000)
    assert len(hits) == MAX_HITS + 1 and hits[-1].kind == "truncated"


def test_an_allow_marker_on_a_huge_line_is_read_once() -> None:
    line = "chamberlain:allow CH024 " + "AKIAQWERTYUIOPASDFGH " * 400_000
    assert cpu(scan_text, line, bound=3.0) < 3.0
    assert scan_text(line) == []


def test_sops_selector_regexes_from_the_file_never_backtrack() -> None:
    data = {"sops": {"unencrypted_regex": "^(a+)+$", "mac": None, "age": []}, "a" * 50_000 + "!": "x"}
    started = time.process_time()
    problems = sops_structure_problems(data)
    assert time.process_time() - started < 1.0
    assert any("too complex" in msg for _, msg in problems)


def test_binary_scan_applies_the_same_shape_tests() -> None:
    assert scan_binary(b"\x00sk-" + b"A" * 60) == []
    key = b"sk-" + b"Qx7rTz2mKp9vLw4nHc8d" + b"T3BlbkFJ" + b"Jb5sYf1gNe6uRk3oWa0h"
    assert [h.kind for h in scan_binary(b"\x00" + key)] == ["openai-api-key"]
