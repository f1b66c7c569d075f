"""The parse cache and the fast path change nothing but time: the same findings and data on every example and test
repository, with or without them; a bad cache entry is ignored; the cross-file checks always run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chamberlain.checks import run_checks
from chamberlain.clock import SystemClock
from chamberlain.intent import cache as cache_mod
from chamberlain.intent import fastyaml
from chamberlain.intent.cache import ParseCache
from chamberlain.intent.loader import load_repository, parse_cache
from chamberlain.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
REPOS = sorted([*(p for p in (ROOT / "examples").iterdir() if p.is_dir()),
                *(p for group in (ROOT / "tests" / "repos").iterdir() if group.is_dir()
                  for p in group.iterdir() if p.is_dir())])


def outcome(root: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Findings (file, line, rule, message) and every document (file, index, lines, spans, data with types)."""
    repo = load_repository(root, git=None)
    findings = [(f.file, f.line, f.rule, f.message) for f in run_checks(repo)]
    docs = [(d.file, d.index, d.start_line, d.end_line, d.start_index, d.end_index, _typed(d.data))
            for f in repo.files for d in f.documents]
    return findings, docs


def _typed(data: Any) -> Any:
    if isinstance(data, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in data.items()])
    if isinstance(data, list):
        return ("list", [_typed(v) for v in data])
    return (type(data).__name__, repr(data))


@pytest.mark.parametrize("root", REPOS, ids=[str(p.relative_to(ROOT)) for p in REPOS])
def test_same_findings_and_data_with_or_without_fast_path_and_cache(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as m:
        m.setattr(fastyaml, "available", lambda: False)
        reference = outcome(root)
    assert outcome(root) == reference  # the fast path
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        assert outcome(root) == reference  # cold: parses, writes
    with parse_cache(store):
        assert outcome(root) == reference  # warm: reads
    assert store.hits > 0 or store.written == 0


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "acme", root)
    return root


def test_a_cross_file_check_runs_when_the_other_file_comes_from_the_cache(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        clean, _ = outcome(root)
    intents = root / "intents" / "payments.yaml"
    first = intents.read_text(encoding="utf-8").split("\n---\n")[0]
    (root / "intents" / "copy.yaml").write_text(first + "\n", encoding="utf-8")  # same name, another file
    again = ParseCache(tmp_path / "cache")
    with parse_cache(again):
        found, _ = outcome(root)
    assert again.hits > 0
    assert "CH008" in {f[2] for f in found} - {f[2] for f in clean}


def test_only_intent_files_are_kept_so_no_plaintext_outlives_its_removal_from_the_repository(tmp_path: Path) -> None:
    """A manifest (or Helm values) could hold a plaintext credential the scan reports; a copy in the cache would
    outlive its removal from the repository. Intent files, which hold no values, are what gets cached."""
    root = _repo(tmp_path)
    canary = "canary-plaintext-7f3e9a1c"
    (root / "leak.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: leak}}\ndata: {{token: {canary}}}\n", encoding="utf-8")
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        outcome(root)
    assert store.written > 0
    assert not any(canary in entry.read_text(encoding="utf-8") for entry in store.dir.rglob("*.json"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "wrong-key", "bad-span", "bad-rule"])
def test_a_bad_entry_is_ignored_and_replaced(tmp_path: Path, damage: str) -> None:
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        reference = outcome(root)
    warm = ParseCache(tmp_path / "cache")
    with parse_cache(warm):
        assert outcome(root) == reference
    uncached = warm.misses  # files that are not intent files are parsed every time (never written to the cache)
    entries = sorted(store.dir.glob("*.json"))
    assert len(entries) >= 2
    victim, other = entries[0], entries[1]
    body = json.loads(victim.read_text(encoding="utf-8"))
    if damage == "garbage":
        victim.write_bytes(b"\x00not json")
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "foreign":  # another file's entry under this file's name
        shutil.copyfile(other, victim)
    elif damage == "wrong-key":
        victim.write_text(json.dumps({**body, "key": "0" * 32}), encoding="utf-8")
    elif damage == "bad-span":
        body["docs"] = [[0, 1, 1, 0, 10**9, {}]]
        victim.write_text(json.dumps(body), encoding="utf-8")
    else:
        body["problems"] = [[1, "rm -rf", "x"]]
        victim.write_text(json.dumps(body), encoding="utf-8")
    again = ParseCache(tmp_path / "cache")
    with parse_cache(again):
        assert outcome(root) == reference
    assert again.misses == uncached + 1 and again.written == 1  # parsed again, and the entry rewritten
    assert json.loads(victim.read_text(encoding="utf-8"))["sha256"] == victim.stem


def test_an_entry_claiming_other_content_is_not_used(tmp_path: Path) -> None:
    """A forged entry for the bytes of a file has to name those bytes' hash; one naming another hash is foreign."""
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        outcome(root)
    entry = next(store.dir.glob("*.json"))
    body = json.loads(entry.read_text(encoding="utf-8"))
    body["sha256"] = "f" * 64
    entry.write_text(json.dumps(body), encoding="utf-8")
    assert store.get(entry.stem, 10**6) is None


def test_a_directory_others_may_write_is_not_used(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    store = ParseCache(shared)
    with parse_cache(store):
        outcome(root)
    assert store.written == 0 and store.hits == 0
    assert not any(shared.iterdir())


def test_a_parent_others_may_rename_in_is_not_trusted(tmp_path: Path) -> None:
    """Another user who may write to a parent (no sticky bit) could swap the checked directory for a link to forged
    entries after the check: the cache is not used there, even when the directory itself is private."""
    root = _repo(tmp_path)
    parent = tmp_path / "team-share"
    parent.mkdir()
    parent.chmod(0o777)
    store = ParseCache(parent / "cache")
    with parse_cache(store):
        outcome(root)
    assert store.written == 0 and store.hits == 0
    parent.chmod(0o1777)  # sticky, as /tmp: only an entry's owner may rename it
    sticky = ParseCache(parent / "cache")
    with parse_cache(sticky):
        outcome(root)
    assert sticky.written > 0


def test_a_symbolic_link_for_the_directory_is_not_used(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    store = ParseCache(link)
    with parse_cache(store):
        outcome(root)
    assert store.written == 0


def test_writes_are_atomic_private_and_leave_no_temporary_files(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        outcome(root)
    assert store.written > 0
    assert oct(store.root.stat().st_mode & 0o777) == "0o700"
    assert oct(store.dir.stat().st_mode & 0o777) == "0o700"
    assert not list(store.dir.glob(".tmp-*"))


def test_concurrent_runs_share_the_cache(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    results: list[Any] = []

    def run() -> None:
        with parse_cache(ParseCache(tmp_path / "cache")):
            results.append(outcome(root))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache", max_bytes=2000)
    with parse_cache(store):
        outcome(root)
    total = sum(p.stat().st_size for p in store.root.rglob("*.json"))
    assert total <= 2000


def test_data_json_cannot_carry_is_not_cached(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "dates.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata: {when: 2026-01-01}\n"
                                     "---\n1: integer key\n", encoding="utf-8")
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        outcome(root)
    assert store.written == 0
    assert not cache_mod.json_plain({1: "a"}) and cache_mod.json_plain({"a": [1, 1.5, None, True, "x"]})


def test_a_cached_syntax_error_keeps_its_column(tmp_path: Path) -> None:
    # An intent file with one valid document and one broken one is cached with its CH001: the column must survive.
    root = _repo(tmp_path)
    intents = root / "intents" / "web.yaml"
    intents.write_text(intents.read_text(encoding="utf-8") + "---\napiVersion: chamberlain.dev/v1alpha1\n"
                       "kind: SecretIntent\nmetadata: {name: tabbed}\nspec:\n\towner: team-web\n", encoding="utf-8")

    def ch001() -> list[tuple[Any, ...]]:
        return [(f.file, f.line, f.message, f.column) for f in run_checks(load_repository(root, git=None))
                if f.rule == "CH001"]

    reference = ch001()
    assert [(file, column) for file, _, _, column in reference] == [("intents/web.yaml", 1)]
    store = ParseCache(tmp_path / "cache")
    with parse_cache(store):
        assert ch001() == reference  # cold
    with parse_cache(store):
        assert ch001() == reference and store.hits > 0  # warm


def test_the_code_key_changes_with_the_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache_mod._code_key()
    monkeypatch.setattr(cache_mod, "__version__", "0.0.0-other")
    assert cache_mod._code_key() != before


def test_where_the_cache_lives() -> None:
    home = Path("/home/u")
    assert Settings.from_environ({}, home).parse_cache == home / ".cache" / "chamberlain" / "parse"
    assert Settings.from_environ({"XDG_CACHE_HOME": "/x"}, home).parse_cache == Path("/x/chamberlain/parse")
    assert Settings.from_environ({"CHAMBERLAIN_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x"}, home).parse_cache \
        == Path("/c/parse")


def _cli(args: list[str], cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHAMBERLAIN_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "chamberlain.cli.main", *args], capture_output=True, text=True,
                          env=env, check=False, timeout=120)


def test_the_cli_uses_the_cache_and_no_cache_skips_it(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    cold = _cli(["validate", str(root), "-o", "json", "--no-cache"], tmp_path / "c")
    assert not (tmp_path / "c").exists()
    first = _cli(["validate", str(root), "-o", "json"], tmp_path / "c")
    entries = list((tmp_path / "c" / "parse").rglob("*.json"))
    assert entries
    second = _cli(["validate", str(root), "-o", "json"], tmp_path / "c")
    assert cold.stdout == first.stdout == second.stdout and cold.returncode == second.returncode
    assert cold.stderr == first.stderr == second.stderr
    out = tmp_path / "out"
    rendered = _cli(["render", str(root), "-o", str(out), "--no-cache"], tmp_path / "c")
    assert rendered.returncode == 0, rendered.stderr


def test_validate_does_not_import_the_server_clients(tmp_path: Path) -> None:
    code = ("import sys; sys.argv = ['chamberlain', 'validate', sys.argv[1], '--no-cache']\n"
            "from chamberlain.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('hvac', 'kubernetes', 'requests', "
            "'urllib3', 'prometheus_client') or m.startswith(('chamberlain.lab', 'chamberlain.cli.lab', "
            "'chamberlain.service.authority', 'chamberlain.cli.options')))\n"
            "print(','.join(heavy))")
    got = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "acme")], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=False, timeout=120)
    assert got.stdout.strip().splitlines()[-1:] in ([], [""]), got.stdout


def _canary_token() -> str:
    """A GitHub token shape built at run time (no credential-shaped literal in the test source)."""
    import secrets as rnd
    import string

    return "ghp_" + "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(36))


def _cache_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_a_credential_pasted_into_an_intent_file_never_reaches_the_cache(tmp_path: Path) -> None:
    """Intent files are cached, and a value can be pasted into one (a comment, a purpose, an annotation): the parse
    of a file any credential finding points at is not written, and scan hits hold kinds and places only."""
    root = _repo(tmp_path)
    token = _canary_token()
    prose = "Zq7#pLm2Wx9"
    payments = root / "intents" / "payments.yaml"
    payments.write_text(payments.read_text(encoding="utf-8") + f"# deploy with {token}\n", encoding="utf-8")
    web = root / "intents" / "web.yaml"
    text = web.read_text(encoding="utf-8")
    assert "  purpose: " in text
    web.write_text(text.replace("  purpose: ", f"  purpose: the password is {prose} for ", 1), encoding="utf-8")
    annotated = root / "intents" / "observability.yaml"
    text = annotated.read_text(encoding="utf-8")
    assert "spec:\n" in text
    annotated.write_text(text.replace("spec:\n", f"  annotations: {{note: '{token}'}}\nspec:\n", 1),
                         encoding="utf-8")
    results = []
    for _ in range(2):  # cold, then warm
        store = ParseCache(tmp_path / "cache")
        with parse_cache(store):
            found, _ = outcome(root)
        results.append(found)
        rules = {(f[0], f[2]) for f in found}
        assert ("intents/payments.yaml", "CH024") in rules
        assert ("intents/web.yaml", "CH102") in rules
        assert ("intents/observability.yaml", "CH024") in rules
        cached = _cache_bytes(tmp_path / "cache")
        assert token.encode() not in cached and prose.encode() not in cached
    assert results[0] == results[1]
    assert store.hits > 0  # the clean intent files still come from the cache
    assert list(store.scan_dir.glob("*.json"))  # and every intent file's scan hits


def test_scan_hits_come_from_the_cache_and_a_bad_entry_is_ignored(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    with parse_cache(ParseCache(tmp_path / "cache")):
        reference, _ = outcome(root)
    store = ParseCache(tmp_path / "cache")
    entries = sorted(store.scan_dir.glob("*.json"))
    assert entries
    from chamberlain.checks import secrets as secrets_mod

    scanned: list[int] = []
    real = secrets_mod.scan_text
    def counted(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("rule", "CH024") != "CH102":  # the file scans, not the metadata check's
            scanned.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(secrets_mod, "scan_text", counted)
    with parse_cache(store):
        assert outcome(root)[0] == reference
    warm_scans = len(scanned)
    # A damaged, foreign or wrongly shaped entry is ignored (the file is scanned again) and rewritten.
    entries[0].write_text("{not json", encoding="utf-8")
    body = json.loads(entries[1].read_text(encoding="utf-8"))
    entries[1].write_text(json.dumps({**body, "hits": [["Not A Kind", "x", 1, 1]]}), encoding="utf-8")
    shutil.rmtree(store.findings_dir)  # else the credential scan's findings are reused whole (checks.incremental)
    scanned.clear()
    with parse_cache(ParseCache(tmp_path / "cache")):
        assert outcome(root)[0] == reference
    assert len(scanned) == warm_scans + 2
    assert cache_mod._hits(json.loads(entries[0].read_text(encoding="utf-8")), entries[0].stem,
                           store.scan_dir.name) is not None
    assert cache_mod._hits({**body, "sha256": "0" * 64}, entries[1].stem, store.scan_dir.name) is None


def test_the_scan_key_changes_with_the_scanner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    before = ParseCache(tmp_path / "c").scan_dir.name
    assert before.startswith("scan-") and before != "scan-" + cache_mod._code_key()
    monkeypatch.setattr(cache_mod, "_SCAN_SOURCES", (*cache_mod._SCAN_SOURCES, "findings.py"))
    assert ParseCache(tmp_path / "c").scan_dir.name != before


def _filler(store: ParseCache, size: int, age: float) -> Path:
    """An old entry of another code key, ``size`` bytes."""
    other = store.root / ("0" * 32)
    other.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = other / ("f" * 64 + ".json")
    path.write_bytes(b"x" * size)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_fresh_tally_with_room_spares_the_count_and_grows_by_what_was_written(tmp_path: Path) -> None:
    """Counting the cache means a stat per entry: a run that wrote a little, under a tally that says there is room,
    does not count (the filler past the bound stays) and adds its bytes to the tally."""
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache", max_bytes=100_000, clock=SystemClock())
    store.root.mkdir(mode=0o700, parents=True)
    filler = _filler(store, 150_000, age=3600)
    (store.root / cache_mod.TALLY).write_text(f"1000 {int(time.time()) - 60}\n", encoding="ascii")
    with parse_cache(store):
        outcome(root)
    assert store.written and filler.exists()
    assert (store.root / cache_mod.TALLY).read_text(encoding="ascii").split()[0] == str(1000 + store.written_bytes)


@pytest.mark.parametrize("tally", [None, "99000 {now}\n", "1000 {day_old}\n", "1000 {future}\n", "junk\n",
                                   "1000 {now}", "symlink"])
def test_the_cache_is_counted_and_pruned_when_the_tally_cannot_be_trusted_or_is_full(
        tmp_path: Path, tally: str | None) -> None:
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache", max_bytes=100_000, clock=SystemClock())
    store.root.mkdir(mode=0o700, parents=True)
    filler = _filler(store, 150_000, age=3600)
    path = store.root / cache_mod.TALLY
    now = int(time.time())
    if tally == "symlink":
        target = tmp_path / "elsewhere"
        target.write_text(f"1000 {now}\n", encoding="ascii")
        path.symlink_to(target)
    elif tally is not None:
        path.write_text(tally.format(now=now - 60, day_old=now - cache_mod.TALLY_TRUSTED - 60, future=now + 3600),
                        encoding="ascii")
    with parse_cache(store):
        outcome(root)
    assert store.written and not filler.exists()
    total = sum(p.stat().st_size for p in store.root.rglob("*.json"))
    counted, when = path.read_text(encoding="ascii").split()
    assert int(counted) == total <= 100_000 and abs(int(when) - time.time()) < 60
    assert not path.is_symlink()


def test_without_a_clock_every_run_that_writes_counts(tmp_path: Path) -> None:
    """The tally is dated by the clock the entry point hands in; a cache built without one counts as it always did."""
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache", max_bytes=100_000)
    store.root.mkdir(mode=0o700, parents=True)
    filler = _filler(store, 150_000, age=3600)
    (store.root / cache_mod.TALLY).write_text(f"1000 {int(time.time()) - 60}\n", encoding="ascii")
    with parse_cache(store):
        outcome(root)
    assert store.written and not filler.exists()


def test_a_full_cache_is_pruned_well_below_its_bound_an_older_code_first(tmp_path: Path) -> None:
    """Removing just enough would leave the cache at its bound, and every later run that writes would count every
    entry again (a fifth of a rerun at 10k intents): a prune leaves a quarter free. An older chamberlain's entries
    (another code key) go before this code's, however new they are."""
    root = _repo(tmp_path)
    store = ParseCache(tmp_path / "cache", max_bytes=100_000, clock=SystemClock())
    with parse_cache(store):
        outcome(root)  # this code's entries, older than the filler below
    mine = sorted(p for p in store.dir.iterdir())
    assert mine
    for path in mine:
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    filler = _filler(store, 90_000, age=60)  # another code key, newer
    (store.root / cache_mod.TALLY).write_text(f"99999 {int(time.time()) - 60}\n", encoding="ascii")
    store2 = ParseCache(tmp_path / "cache", max_bytes=100_000, clock=SystemClock())
    store2.written, store2.written_bytes = 1, 10  # a run that wrote a little: the tally says the bound is passed
    store2.prune()
    assert not filler.exists() and all(p.exists() for p in mine)
    total = sum(p.stat().st_size for p in store.root.rglob("*.json"))
    assert total <= 75_000
    assert int((store.root / cache_mod.TALLY).read_text(encoding="ascii").split()[0]) == total


def test_a_count_under_the_bound_removes_nothing(tmp_path: Path) -> None:
    store = ParseCache(tmp_path / "cache", max_bytes=100_000, clock=SystemClock())
    store.root.mkdir(mode=0o700, parents=True)
    filler = _filler(store, 90_000, age=3600)  # over three quarters, under the bound
    store.dir.mkdir(mode=0o700)
    store.written, store.written_bytes = 1, 10
    store.prune()  # no tally: counts
    assert filler.exists()


def test_two_prunes_at_once_remove_no_more_than_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs counting a full cache at the same moment: the second one's removals of entries the first removed
    already count as removed, so it does not go on cutting this code's entries below three quarters."""
    a = ParseCache(tmp_path / "cache", max_bytes=100_000)
    b = ParseCache(tmp_path / "cache", max_bytes=100_000)
    a.dir.mkdir(mode=0o700, parents=True)
    for i in range(110):
        path = a.dir / f"{i:064x}.json"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (time.time() - 10_000 + i, time.time() - 10_000 + i))
    real_sorted = sorted
    raced: list[int | None] = []

    def listed_then_raced(files: Any, key: Any = None) -> Any:
        if key is not None and not raced:  # b has counted every entry; a prunes now, then b goes on
            raced.append(None)
            raced[0] = a._remove_oldest()
        return real_sorted(files, key=key)

    monkeypatch.setattr(cache_mod, "sorted", listed_then_raced, raising=False)
    b._remove_oldest()
    assert raced == [75_000]
    assert sum(p.stat().st_size for p in a.dir.iterdir()) == 75_000
