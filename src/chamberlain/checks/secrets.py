"""Credential scanning: no secret value may live in the intent repository (CH024, CH020).

Concept: Git holds encrypted intent, never runtime values (Inv. 1 and 2). Two checks live here:

- ``credential-scan`` reads every file of the repository (text line by line, binary files as raw bytes) and
  reports known credential shapes (cloud keys, VCS tokens, private keys, age identities, JWTs, Vault tokens,
  passwords in URLs, ``password: <literal>`` assignments) and long random-looking tokens (CH024). A hit inside a
  chamberlain intent document is also a literal value in intent (CH020).
- ``literal-secrets`` reports plaintext Kubernetes ``Secret`` manifests and intent fields that pin a secret value
  (a ``fixed-name`` generator on a password/token key, a random-looking fixed name) (CH020).

Boundary: pure analysis of the loaded :class:`Repository`; no decryption, no network. Public or encrypted
material is allowed: SOPS ``ENC[...]`` values and metadata, age/PGP ciphertext, SealedSecret ``encryptedData``,
certificates, public keys, age recipients, digests; a Secret value that is one template action (``{{ ... }}``,
``${...}``) is a placeholder, not a value. A deliberate exception is marked on its line with
``chamberlain:allow CH024``. Findings name the file, line, column and the *kind* of credential, never the matched
text.

Why hand-written rather than detect-secrets: measured on 10k intents it took ~20 s and produced hundreds of
false positives on intent files (keyword plugin on ``password: {type: password}``), against our budget of 3 s
for validate+render; it also knows nothing of SOPS files. Here every pattern is gated by a cheap substring test,
so a file that cannot contain a shape never runs its regex.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import yaml

from chamberlain.checks.registry import check
from chamberlain.checks.sops import bootstrap_rels
from chamberlain.findings import Finding
from chamberlain.intent.loader import MAX_SCAN_BYTES, Document, RepoFile, Repository
from chamberlain.intent.model import GROUP, FixedNameGenerator

# ------------------------------------------------------------------------------------------------ allow marker

_ALLOW = re.compile(r"chamberlain:allow[ \t]+(CH\d{3}\b(?:[ \t]*,[ \t]*CH\d{3}\b)*)")


def allowed(line_text: str, rule: str) -> bool:
    """True when ``line_text`` carries ``chamberlain:allow <rule>`` (several ids may be comma-separated)."""
    if "chamberlain:allow" not in line_text:
        return False
    return any(rule in re.split(r"[ \t,]+", m.group(1)) for m in _ALLOW.finditer(line_text))


# ------------------------------------------------------------------------------------------------ known shapes


@dataclass(frozen=True)
class _Shape:
    kind: str
    label: str
    regex: re.Pattern[str]
    # The regex starts at a literal inside the credential (``_live_``, ``:AA``); the hit starts at the beginning
    # of the alphanumeric run before it.
    extend_left: bool = False
    # Case-insensitive shapes run (as lower-case patterns) over the lower-cased text: an inline (?i) flag makes
    # Python's engine test every position instead of jumping to a literal prefix, about 10x slower.
    lowered: bool = False
    # A test of the matched text the regex leaves out, because writing it into the regex would backtrack.
    accept: Callable[[str], bool] | None = None


def _shape(kind: str, label: str, pattern: str, lowered: bool = False, extend_left: bool = False,
           accept: Callable[[str], bool] | None = None) -> _Shape:
    return _Shape(kind, label, re.compile(pattern), extend_left, lowered, accept)


_OPENAI_MARK = "T3BlbkFJ"  # base64 of "OpenAI", inside every OpenAI key


def _openai_key(token: str) -> bool:
    """``sk-[proj-|svcacct-|admin-]<20+>T3BlbkFJ<20+>``, tested on one greedy run: the same rule as a regex with
    two unbounded runs around a literal, without its quadratic backtracking on a long run of ``sk-``."""
    body = token[3:]  # the optional prefix is made of run characters, so it may count toward the first 20
    at = body.find(_OPENAI_MARK, 20)  # the first mark after 20 characters leaves the most after it
    return at >= 0 and len(body) - at - len(_OPENAI_MARK) >= 20


_BECH32 = "[qpzry9x8gf2tvdw0s3jn54khce6mua7l]"

# Every pattern starts with a literal, so the engine jumps from one occurrence of it to the next (GB/s) instead
# of trying every position; "not preceded by a token character" is a lookbehind *after* that literal (a leading
# \b or character class would defeat the jump and cost ~50x). Keep it that way when adding a shape.
_PRIVATE_KEY = _shape(
    "private-key", "a PEM private key", r"-----BEGIN[ A-Z0-9]{0,20}PRIVATE KEY(?: BLOCK)?-----"
)
# Shapes looked for after ciphertext and public material are blanked out.
# A table, not code: one credential shape per row, alike on purpose (the duplicate finder pairs its rows).
_SHAPES: tuple[_Shape, ...] = (
    _shape("age-identity", "an age secret key (identity)", rf"AGE-SECRET-KEY-1{_BECH32.upper()}{{58}}"),
    _shape("aws-access-key-id", "an AWS access key id",
           r"(?:AKIA|ASIA|ABIA|ACCA)(?<![A-Za-z0-9]....)[A-Z2-7]{16}(?![A-Za-z0-9])"),
    _shape("aws-secret-access-key", "an AWS secret access key",
           r"secret_?(?:access_?)?key[\"']?[ \t]*[:=][ \t]*[\"']?[a-z0-9/+]{40}(?![a-z0-9/+])", lowered=True),
    _shape("github-token", "a GitHub token",
           r"gh[pousr]_(?<![A-Za-z0-9_]gh._)[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])"
           r"|github_pat_(?<![A-Za-z0-9_]github_pat_)[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])"),
    _shape("gitlab-token", "a GitLab token", r"gl(?:pat|dt|rt|ptt|cbt|soat)-[A-Za-z0-9_-]{20,}"),
    _shape("slack-token", "a Slack token", r"xox[abposre]-[A-Za-z0-9-]{10,}"),
    _shape("slack-webhook", "a Slack webhook URL",
           r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/_-]{20,}"),
    _shape("discord-webhook", "a Discord webhook URL",
           r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{30,}"),
    _shape("stripe-key", "a Stripe secret key", r"_live_(?<=[sr]k_live_)[A-Za-z0-9]{16,}",
           extend_left=True),
    _shape("google-api-key", "a Google API key",
           r"AIza(?<![0-9A-Za-z_-]AIza)[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
    _shape("gcp-service-account-key", "a Google service-account key file",
           r"\"type\"[ \t]*:[ \t]*\"service_account\""),
    _shape("jwt", "a JSON Web Token",
           r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    # Vault's hvs./hvb./hvr. tokens and the s./b./r. form that OpenBao (and Vault before 1.10) issues.
    _shape("vault-token", "a Vault/OpenBao token",
           r"hv[sbr]\.(?<![A-Za-z0-9_.-]hv.\.)[A-Za-z0-9_-]{24,}"
           r"|\.(?<=[sbr]\.)(?<![A-Za-z0-9_.-][sbr]\.)(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{24,}"
           r"(?![A-Za-z0-9_.-])"),
    _shape("npm-token", "an npm token", r"npm_(?<![A-Za-z0-9_]npm_)[A-Za-z0-9]{36}(?![A-Za-z0-9])"),
    _shape("pypi-token", "a PyPI token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    _shape("openai-key", "an OpenAI API key", r"sk-[A-Za-z0-9_-]{48,}", accept=_openai_key),
    _shape("anthropic-key", "an Anthropic API key", r"sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,}"),
    _shape("sendgrid-key", "a SendGrid API key",
           r"SG\.(?<![A-Za-z0-9_-]SG\.)[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"),
    _shape("twilio-key", "a Twilio API key", r"SK(?<![A-Za-z0-9]SK)[0-9a-f]{32}(?![A-Za-z0-9])"),
    _shape("digitalocean-token", "a DigitalOcean token", r"do[por]_v1_[a-f0-9]{64}(?![A-Za-z0-9])"),
    _shape("huggingface-token", "a Hugging Face token",
           r"hf_(?<![A-Za-z0-9_]hf_)[A-Za-z]{34}(?![A-Za-z0-9_])"),
    _shape("azure-storage-key", "an Azure storage account key",
           r"AccountKey=[A-Za-z0-9+/]{86}=="),
    _shape("bcrypt-hash", "a bcrypt password hash (crackable offline)",
           r"\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}(?![./A-Za-z0-9])"),
    _shape("telegram-bot-token", "a Telegram bot token",
           r":AA(?<=[0-9]{8}:AA)(?<![0-9]{11}:AA)[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])", extend_left=True),
)

# ``scheme://user:password@host``. The password part excludes obvious placeholders below.
_URL_PASSWORD = re.compile(r"://[^\s:/?#@\"'<>]{1,256}:(?P<pw>[^\s/?#@\"'<>]{1,256})@[^\s/?#@\"'<>]")
_URL_PLACEHOLDERS = {"password", "pass", "passwd", "pwd", "pw", "secret", "token", "changeme", "redacted"}

# ``password: literal``, ``DB_PASSWORD=literal``, ``"apiKey": "literal"``. The keyword must end the key, so
# ``passwordSecretRef`` or ``tokenTTL`` do not match; ``secretKey`` (ESO's key-name field) is not a keyword.
_ASSIGN_KEY = re.compile(
    r"(?P<kw>password|passwd|passphrase|pass|pwd|secret|secret[_-]key|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|client[_-]?secret|credentials?)"
    r"[\"']?[ \t]*(?::(?![:/])|=(?!=))[ \t]*"
)
_ASSIGN_VALUE = re.compile(r"\"(?P<dq>[^\"\n]{0,512})\"|'(?P<sq>[^'\n]{0,512})'|(?P<bare>[^\s,}\]#\"'`]{1,512})")
_KEY_CHAR = re.compile(r"[A-Za-z0-9_.-]")
_ASSIGN_NEEDLES = ("pass", "pwd", "secret", "token", "key", "credential")
_PLAIN_WORD = re.compile(r"[A-Za-z]+")
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_PLACEHOLDER_VALUE = re.compile(r"[xX*.#_-]+|<[^>]*>|\(?[Rr][Ee][Dd][Aa][Cc][Tt][Ee][Dd]\)?")
# ``settings.DB_PASSWORD``, ``os.environ[`` — code reading a secret, not a literal one.
_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\[)?|[A-Za-z_][A-Za-z0-9_.]*\[")
_LITERAL_WORDS = {"null", "none", "nil", "true", "false", "yes", "no", "on", "off", "~", "undefined"}
_REFERENCE_PREFIXES = ("$", "{", "[", "<", "%", "&", "*", "!", "|", ">", "ENC[", "vault:", "ref+", "/", "./",
                       "@", "(", "`")

# ------------------------------------------------------------------------------------------------ masking

# Material that may sit in Git because it is ciphertext or public: blanked (keeping line breaks so positions
# stay true) before anything but the private-key header is looked for.
_PUBLIC_PEM_LABELS = (
    "CERTIFICATE|TRUSTED CERTIFICATE|CERTIFICATE REQUEST|NEW CERTIFICATE REQUEST|X509 CRL|PUBLIC KEY"
    "|RSA PUBLIC KEY|PGP PUBLIC KEY BLOCK|PGP SIGNATURE|SSH2 PUBLIC KEY|AGE ENCRYPTED FILE|PGP MESSAGE"
)
# Every mask below is found in one pass over the text: a regex such as ``BEGIN X.*?END X`` (or ``ENC\[[^\]]*\]``)
# rescans the rest of the text from every unclosed opener, which is quadratic (336 KB of unclosed ``-----BEGIN``
# took 49 s). Openers and closers are collected once and paired by position instead.
_PUBLIC_PEM = re.compile(rf"-----(BEGIN|END) ({_PUBLIC_PEM_LABELS})-----")
_PRIVATE_PEM = re.compile(r"-----(BEGIN|END)([ A-Z0-9]{0,20}PRIVATE KEY(?: BLOCK)?)-----")
# Consumes up to the closing bracket or the end of the line, so an unclosed opener costs its own line only once.
_ENC_SPAN = re.compile(r"ENC\[AES256_GCM,[^\]\n]*\]?")
_SSH_PUBLIC = re.compile(
    r"(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp(?:256|384|521)|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r"[ \t]+AAAA[A-Za-z0-9+/]+=*"
)
_CIPHER_NEEDLES = ("ENC[AES256_GCM", "-----BEGIN ", "AAAA")
# In a SOPS file of any format, the data key wrapped by each master key (``enc``) is ciphertext too.
_SOPS_ENC_LINE = re.compile(r"^[ \t]*(?:-[ \t]+)?\"?(?:[A-Za-z0-9_]*_)?enc\"?[ \t]*[:=].*$", re.MULTILINE)
_WORD_CHAR = re.compile(r"\w")


def pem_blocks(text: str, marker: re.Pattern[str]) -> list[tuple[int, int]]:
    """(start, end) of every ``-----BEGIN L----- ... -----END L-----`` block, the first END of the same label after
    each BEGIN closing it (what a lazy regex would match), in O(n log n): ``marker`` is scanned once, each BEGIN
    looks up its END by bisection. ``marker``'s groups: (BEGIN|END), label."""
    begins: list[tuple[int, int, str]] = []
    ends: dict[str, tuple[list[int], list[int]]] = {}  # label -> (END starts, END ends), in text order
    for m in marker.finditer(text):
        if m.group(1) == "BEGIN":
            begins.append((m.start(), m.end(), m.group(2)))
        else:
            starts, stops = ends.setdefault(m.group(2), ([], []))
            starts.append(m.start())
            stops.append(m.end())
    blocks: list[tuple[int, int]] = []
    cursor = 0
    for start, body, label in begins:
        if start < cursor:
            continue  # inside the previous block
        closers = ends.get(label)
        at = bisect.bisect_left(closers[0], body) if closers else 0
        if closers is None or at == len(closers[0]):
            continue  # never closed: not a block (a private key's header is still reported on its own)
        cursor = closers[1][at]
        blocks.append((start, cursor))
    return blocks


def _public_spans(text: str) -> list[tuple[int, int]]:
    """Ciphertext and public material: SOPS values, public PEM blocks, SSH public keys."""
    spans: list[tuple[int, int]] = []
    if "ENC[AES256_GCM" in text:
        spans += [m.span() for m in _ENC_SPAN.finditer(text) if m.group().endswith("]")]
    if "-----BEGIN " in text:
        spans += pem_blocks(text, _PUBLIC_PEM)
    if "AAAA" in text:
        spans += [m.span() for m in _SSH_PUBLIC.finditer(text)
                  if m.start() == 0 or not _WORD_CHAR.match(text[m.start() - 1])]
    return spans


def blank_spans(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with every span blanked (line breaks kept, so positions stay true); spans may overlap."""
    parts: list[str] = []
    cursor = 0
    for start, end in sorted(spans):
        if end <= cursor:
            continue
        start = max(start, cursor)
        parts.append(text[cursor:start])
        parts.append(_NOT_NEWLINE.sub(" ", text[start:end]))
        cursor = end
    if not parts:
        return text
    parts.append(text[cursor:])
    return "".join(parts)


# Only for the random-token pass: public identifiers that look random by construction.
_PUBLIC_RANDOM_NEEDLE = re.compile(r"age1|sha|md5|h1:|data:|://")
_PUBLIC_RANDOM = re.compile(
    rf"\bage1{_BECH32}{{58}}\b"  # age recipients (public keys)
    r"|\b(?:sha1|sha224|sha256|sha384|sha512|md5|h1)[-:][A-Za-z0-9+/=_-]+"  # image digests, SRI, go.sum
    r"|\bdata:[\w/+.-]+;base64,[A-Za-z0-9+/=]+"  # inline images in docs
    r"|\b[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s?#\"'<>()\[\]{}]*"  # URLs up to the query (queries are checked)
)

_NOT_NEWLINE = re.compile(r"[^\n]")


def _blank(m: re.Match[str]) -> str:
    return _NOT_NEWLINE.sub(" ", m.group())


# ------------------------------------------------------------------------------------------------ randomness

_RUN = re.compile(r"[A-Za-z0-9+/_-]{20}")
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/_-])")
_HEXISH = re.compile(r"[0-9a-fA-F-]+")
_DIGIT = re.compile(r"[0-9]")
_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_SEPARATORS = re.compile(r"[-_/+]")
_WORD_SEPARATORS = re.compile(r"[-_]")  # identifiers join words with these; base64 uses + and /


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    n = len(value)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _wordiness(token: str) -> float:
    """Share of the alphanumeric characters that sit in word-like segments (camel-case or separated runs of 4+
    letters).

    Identifiers (``V1PersistentVolumeClaim``, ``orders-db-endpoint``) are made of words; random strings split
    into short fragments at every case change and digit. Tuned on ~30k identifiers from Python packages against
    random base64/base62 strings of 20-64 characters: at 0.5 about 1 identifier in 700 passes (mostly
    abbreviation soup such as ``PBESv2SHA256AndAES256CBC``), and about 96% of random tokens are caught."""
    segments = _SEGMENT.findall(token)
    total = sum(len(s) for s in segments)
    wordy = sum(len(s) for s in segments if len(s) >= 4 and not s.isdigit())
    return wordy / total if total else 1.0


def looks_random(token: str, min_length: int = 20) -> bool:
    """True when ``token`` (one run of base64/base64url characters) looks like generated key material.

    Hex strings are allowed: in manifests they are digests, commit ids and UUIDs, all public; a hex secret is
    caught when it is assigned to a password/token key. Tokens built of short separated pieces
    (``TLS_AES_128_GCM_SHA256``, ``v1beta1/pod-group``) are identifiers, not keys."""
    body = token.rstrip("=")
    n = len(body)
    if n < min_length or _HEXISH.fullmatch(body):
        return False
    if n > 4096:  # judged on a prefix: the statistics below settle long before, and a 10 MB run stays cheap
        body, n = body[:4096], 4096
    # C-speed character-class tests (the token alphabet is ASCII): a generator over each character was most of
    # the cost of a file made of tokens.
    has_upper = body != body.lower()
    has_lower = body != body.upper()
    has_digit = _DIGIT.search(body) is not None
    if not ((has_upper and has_lower) or (has_digit and (has_upper or has_lower))):
        return False
    entropic = shannon_entropy(body) >= 0.75 * math.log2(min(n, 64))
    if not (has_upper and has_lower):
        # Single-case tokens are mostly generated *names* (``app-7d9f8b6c5-x2k4q``, ``oqrwrp95gy5-00e1``: DNS
        # labels that Kubernetes and the intent schema require); only a long unbroken one with digits spread
        # through it is taken for key material (base32/base36 keys).
        digits = sum(c.isdigit() for c in body)
        return n >= 32 and not _SEPARATORS.search(body) and digits >= n // 10 and entropic
    pieces = _WORD_SEPARATORS.split(body)
    if len(pieces) >= 3 and max(len(p) for p in pieces) <= 10:
        return False
    # A random string of n characters from a 64-symbol alphabet has close to log2(min(n, 64)) bits/char.
    return entropic and _wordiness(body) <= 0.5


def _encoded_pem(token: str) -> str | None:
    """For base64 of a PEM document (``LS0tLS1CRUdJTi...``): 'private' or 'public'; else None."""
    if not token.startswith("LS0tLS1CRUdJTi"):
        return None
    head = token[:200]
    try:
        decoded = base64.b64decode(head[: len(head) - len(head) % 4] or "", validate=False)
    except (binascii.Error, ValueError):
        return None
    if not decoded.startswith(b"-----BEGIN"):
        return None
    return "private" if b"PRIVATE KEY" in decoded[:80] else "public"


# ------------------------------------------------------------------------------------------------ scanning


@dataclass(frozen=True)
class Hit:
    """One credential-looking place: its kind (never its text), 1-based line and column (None for binary)."""

    kind: str
    label: str
    line: int | None
    column: int | None


class _Lines:
    """Offset → (line, column) for one text, built on first use (most files have no hit)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None

    def _line_starts(self) -> list[int]:
        if self._starts is None:  # computed on the first finding only: a clean file never pays for it
            self._starts = [0] + [m.end() for m in re.finditer("\n", self._text)]
        return self._starts

    def locate(self, offset: int) -> tuple[int, int]:
        starts = self._line_starts()
        index = bisect.bisect_right(starts, offset) - 1
        return index + 1, offset - starts[index] + 1

    def span(self, line: int) -> tuple[int, int]:
        """Character offsets (start, end) of 1-based ``line``, its line break included."""
        starts = self._line_starts()
        return starts[line - 1], starts[line] if line < len(starts) else len(self._text) + 1

    def text_of(self, line: int) -> str:
        starts = self._line_starts()
        start = starts[line - 1]
        end = starts[line] - 1 if line < len(starts) else len(self._text)
        return self._text[start:end]


def _ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, keeping every offset (``str.lower`` can change the length: 'İ' → 'i̇')."""
    if text.isascii():
        return text.lower()
    # latin-1 with replacement maps every character to exactly one byte; bytes.lower touches ASCII only.
    return text.encode("latin-1", "replace").lower().decode("latin-1")


MAX_HITS = 100  # per file: past this the file fails anyway, and a flood would only slow the report down


class _Enough(Exception):
    """Raised inside :func:`scan_text` once a file has :data:`MAX_HITS` hits."""


def scan_text(
    text: str,
    *,
    generic: bool = True,
    generic_regions: Iterable[tuple[int, int]] | None = None,
    rule: str = "CH024",
) -> list[Hit]:
    """Every credential-looking place in ``text``, at most one per (line, kind), minus allow-marked lines.

    ``generic`` enables the ``key: literal`` rule; ``generic_regions`` limits it to (start, end) character
    ranges (chamberlain intent documents are left out: their only free-form maps name keys, e.g.
    ``{DB_PASSWORD: password}``, and the schema has no field that could hold a value). At most
    :data:`MAX_HITS` are returned, the last of them saying that scanning stopped there."""
    found: dict[tuple[int, str], Hit] = {}
    try:
        _scan_into(found, text, generic, generic_regions, rule)
    except _Enough:
        last = max(found.values(), key=lambda h: (h.line or 0, h.column or 0))
        found[(last.line or 0, "truncated")] = Hit(
            "truncated", f"more credential-looking places: scanning stopped after {MAX_HITS}", last.line,
            last.column)
    return sorted(found.values(), key=lambda h: (h.line or 0, h.column or 0, h.kind))


def _scan_into(
    found: dict[tuple[int, str], Hit], text: str, generic: bool, generic_regions: Iterable[tuple[int, int]] | None,
    rule: str,
) -> None:
    lowered = _ascii_lower(text)
    lines = _Lines(text)
    allow: dict[int, bool] = {}  # per line: a long line full of hits is read for its marker once, not per hit
    settled: dict[str, tuple[int, int]] = {}  # kind -> (start, end) of the last line it was decided on

    def seen(kind: str, offset: int) -> bool:
        """Is this kind already decided for the line of ``offset`` (reported, or allowed)? Constant time: a
        line with a million candidates costs one lookup each, not a line's worth of work each."""
        span = settled.get(kind)
        return span is not None and span[0] <= offset < span[1]

    def add(kind: str, label: str, offset: int) -> None:
        if seen(kind, offset):
            return
        if len(found) >= MAX_HITS:
            raise _Enough
        line, column = lines.locate(offset)
        settled[kind] = lines.span(line)
        if (line, kind) in found:
            return
        ok = allow.get(line)
        if ok is None:
            ok = allow[line] = allowed(lines.text_of(line), rule)
        if not ok:
            found[(line, kind)] = Hit(kind, label, line, column)

    # Private keys first, on the raw text: no mask below may hide one.
    for m in _PRIVATE_KEY.regex.finditer(text):
        add(_PRIVATE_KEY.kind, _PRIVATE_KEY.label, m.start())

    masked, masked_lower = text, lowered
    spans = pem_blocks(text, _PRIVATE_PEM) if "PRIVATE KEY" in text else []
    if any(n in text for n in _CIPHER_NEEDLES):
        spans += _public_spans(text)
    if spans:
        masked = blank_spans(text, spans)
    if "ENC[AES256_GCM" in text:
        masked = _SOPS_ENC_LINE.sub(_blank, masked)
    if masked is not text:
        masked_lower = _ascii_lower(masked)

    for shape in _SHAPES:
        for m in shape.regex.finditer(masked_lower if shape.lowered else masked):
            if seen(shape.kind, m.start()) or (shape.accept is not None and not shape.accept(m.group())):
                continue
            start = m.start()
            while shape.extend_left and start > 0 and masked[start - 1].isalnum():
                start -= 1
            add(shape.kind, shape.label, start)

    if "://" in masked:
        for m in _URL_PASSWORD.finditer(masked):
            if not seen("url-password", m.start("pw")) and not _is_placeholder(m.group("pw"), _URL_PLACEHOLDERS):
                add("url-password", "a password embedded in a URL", m.start("pw"))

    if generic and any(n in lowered for n in _ASSIGN_NEEDLES):
        shaped = {line for line, _ in found}  # a line with a known shape needs no vaguer second report
        for start, end in [(0, len(text))] if generic_regions is None else generic_regions:
            for m in _ASSIGN_KEY.finditer(masked_lower, start, end):
                if seen("literal-assignment", m.start()):
                    continue
                if lines.locate(m.start())[0] not in shaped and _literal_assignment(masked, m):
                    add("literal-assignment", "a literal value assigned to a password/secret/token key",
                        m.start())

    known_lines = {line for line, _ in found}
    for offset, kind in _token_hits(masked):
        if kind == "private-key":
            add("private-key", "a base64-encoded PEM private key", offset)
        elif not seen("high-entropy", offset) and lines.locate(offset)[0] not in known_lines:
            add("high-entropy", "a high-entropy string (random-looking token)", offset)  # a known shape: not twice


def _token_hits(text: str) -> Iterator[tuple[int, str]]:
    """(offset, kind) of every base64-alphabet run of 20+ characters that is an encoded private key or looks
    random, leaving out what is public by construction.

    ``str.split`` finds the few whitespace-separated words long enough to hold one about 5x faster than a regex
    over the whole text; each word's offset is found by searching forward from the previous long word (words
    in between are shorter, so they cannot contain it). A word is judged once however often it repeats, so a
    file of one repeated word costs a ``find`` per copy."""
    cursor = 0
    judged: dict[str, list[tuple[int, str]]] = {}
    for word in [w for w in text.split() if len(w) >= 20]:
        offset = text.find(word, cursor)
        cursor = offset + len(word)
        hits = judged.get(word)
        if hits is None:
            hits = _judge_word(word)
            if len(judged) < 100_000:
                judged[word] = hits
        for at, kind in hits:
            yield offset + at, kind


def _judge_word(word: str) -> list[tuple[int, str]]:
    if _RUN.search(word) is None:  # no run long enough: the common case, decided in C
        return []
    if _PUBLIC_RANDOM_NEEDLE.search(word) is not None:
        word = _PUBLIC_RANDOM.sub(_blank, word)
    hits: list[tuple[int, str]] = []
    for m in _TOKEN.finditer(word):
        token = m.group()
        pem = _encoded_pem(token)
        if pem == "private":
            hits.append((m.start(), "private-key"))
        elif pem is None and looks_random(token):
            hits.append((m.start(), "high-entropy"))
    return hits


def _is_placeholder(value: str, words: set[str]) -> bool:
    """References (``${X}``, ``{{ .x }}``, ``<password>``), masks (``*****``) and YAML literals are not values."""
    if not value or value.startswith(_REFERENCE_PREFIXES) or "{{" in value or "${" in value:
        return True
    if _PLACEHOLDER_VALUE.fullmatch(value):
        return True
    return value.lower() in words


def _literal_assignment(text: str, m: re.Match[str]) -> bool:
    """Is this ``<key>: <value>`` (key matched in the lower-cased copy of ``text``) a secret-looking key holding
    a literal value, not a reference, a name or a placeholder?"""
    # The keyword must end the key (``passwordPolicy: x`` never matches), but ``mypassword: x`` and
    # ``DB_PASSWORD=x`` do. Walk back to the key's start to see the whole key.
    start = m.start()
    while start > 0 and _KEY_CHAR.match(text[start - 1]):
        start -= 1
    key = text[start : m.end("kw")]
    kw = m.group("kw")
    if kw == "pass" and len(key) > 4 and key[-5].isalpha():  # DB_PASS and pass, not bypass or compass
        return False
    v = _ASSIGN_VALUE.match(text, m.end())
    if v is None:
        return False
    value = next((g for g in (v.group("dq"), v.group("sq"), v.group("bare")) if g is not None), "")
    value = value.strip().rstrip(";.")  # prose and shell: "set `password: x`;" ends the value
    if len(value) < 4 or _is_placeholder(value, _LITERAL_WORDS) or _CODE.fullmatch(value) or "(" in value:
        return False
    if value.replace(".", "", 1).isdigit():  # lengths, TTLs, ports
        return False
    # Letters only: a word such as a key name or Secret name (``DB_PASSWORD: password``), not a credential.
    if _PLAIN_WORD.fullmatch(value):
        return False
    # ``secret``/``credentials`` keys usually name a Kubernetes Secret (``existingSecret: app-db-v2``).
    if kw in ("secret", "credential", "credentials") and _DNS_NAME.fullmatch(value):
        return False
    return not key.lower().endswith(("type", "kind"))


def scan_binary(raw: bytes) -> list[Hit]:
    """Known credential shapes in a binary (or non-UTF-8) file; lines are meaningless there, so None."""
    # latin-1 maps every byte to one character, so the text patterns apply unchanged and offsets stay true.
    text = raw.decode("latin-1")
    lowered = _ascii_lower(text)
    kinds: dict[str, Hit] = {}
    for shape in (_PRIVATE_KEY, *_SHAPES):
        if shape.kind in kinds:
            continue
        matches = shape.regex.finditer(lowered if shape.lowered else text)
        if any(shape.accept is None or shape.accept(m.group()) for m in matches):
            kinds[shape.kind] = Hit(shape.kind, shape.label, None, None)
    return list(kinds.values())


# Key stores hold private keys in binary containers that have no textual header to recognise.
_KEYSTORE_SUFFIXES = (".p12", ".pfx", ".jks", ".keystore", ".bks", ".kdbx")


def scan_file(rf: RepoFile) -> list[Hit]:
    """Scan one repository file: text with every rule, binary data for known shapes."""
    hits: list[Hit] = []
    if rf.rel.lower().endswith(_KEYSTORE_SUFFIXES):
        hits.append(Hit("keystore", "a key-store file (PKCS#12/JKS/KeePass)", None, None))
    if rf.text is not None:
        hits.extend(scan_text(_mask_ciphertext(rf), generic_regions=_outside_intents(rf)))
    elif rf.size <= MAX_SCAN_BYTES:
        try:
            raw = rf.path.read_bytes()
        except OSError:  # vanished or unreadable since loading; the loader already saw it
            return hits
        hits.extend(scan_binary(raw))
    return hits


SEALED_SECRET_GROUP = "bitnami.com"  # noqa: S105 - an API group, not a password


def ciphertext_spans(doc: Document) -> list[tuple[int, int]]:
    """Character spans (in the file) of the values of a SealedSecret's ``spec.encryptedData``: ciphertext only
    the controller's private key opens, public by design, so never a leak. Empty for any other document."""
    api = doc.api_version or ""
    if doc.kind != "SealedSecret" or api.split("/", 1)[0] != SEALED_SECRET_GROUP:
        return []
    node = doc.node
    for key in ("spec", "encryptedData"):
        if not isinstance(node, yaml.MappingNode):
            return []
        child = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if child is None:
            return []
        node = child
    if not isinstance(node, yaml.MappingNode):
        return []
    return [(doc.start_index + int(v.start_mark.index), doc.start_index + int(v.end_mark.index))
            for _, v in node.value if isinstance(v, yaml.ScalarNode)]


def _mask_ciphertext(rf: RepoFile) -> str:
    """``rf.text`` with SealedSecret ciphertext blanked (line breaks kept, so every position stays true)."""
    text = rf.text or ""
    spans = [span for doc in rf.documents if doc.kind == "SealedSecret" for span in ciphertext_spans(doc)]
    if not spans:
        return text
    parts, cursor = [], 0
    for start, end in sorted(spans):
        if start < cursor:
            continue
        parts.append(text[cursor:start])
        parts.append(_NOT_NEWLINE.sub(" ", text[start:end]))
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def _outside_intents(rf: RepoFile) -> list[tuple[int, int]] | None:
    """Character ranges of ``rf`` outside its chamberlain documents (None: the whole file)."""
    spans = sorted(
        (d.start_index, d.end_index) for d in rf.documents if _is_chamberlain(d)
    )
    if not spans or rf.text is None:
        return None
    regions: list[tuple[int, int]] = []
    cursor = 0
    for start, end in spans:
        if start > cursor:
            regions.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < len(rf.text):
        regions.append((cursor, len(rf.text)))
    return regions


# ------------------------------------------------------------------------------------------------ checks


def _is_chamberlain(doc: Document) -> bool:
    api = doc.api_version
    return api is not None and api.startswith(GROUP + "/")


def _label(doc: Document) -> str:
    return f"{doc.kind}/{doc.name}" if doc.name else str(doc.kind)


def _doc_spans(rf: RepoFile) -> list[tuple[int, int, Document]]:
    """1-based inclusive line spans of the chamberlain documents of a file."""
    return [
        (d.start_line, d.end_line, d)
        for d in rf.documents
        if _is_chamberlain(d)
    ]


def _doc_at(spans: list[tuple[int, int, Document]], line: int | None) -> Document | None:
    if line is None:
        return None
    return next((d for start, end, d in spans if start <= line <= end), None)


@check("credential-scan")
def check_credentials(repo: Repository) -> Iterator[Finding]:
    """CH024 for every credential-looking place in any file; CH020 too when it sits in an intent document."""
    for rf in repo.files:
        spans = _doc_spans(rf)
        for hit in scan_file(rf):
            yield Finding(
                rf.rel, hit.line, "CH024",
                f"looks like {hit.label} [{hit.kind}]; values never belong in Git — remove it, rotate it, or "
                f"mark a deliberate false positive with 'chamberlain:allow CH024' (value not shown)",
                column=hit.column, subject=hit.kind,
            )
            doc = _doc_at(spans, hit.line)
            if doc is not None:
                yield Finding(
                    rf.rel, hit.line, "CH020",
                    f"{_label(doc)}: holds what looks like {hit.label} [{hit.kind}]; intent declares secrets, "
                    f"it never carries their values (value not shown)",
                    column=hit.column, object=_label(doc), subject=hit.kind,
                )


# Key names that hold a credential (a fixed, declared value is fine for a user name, never for these).
_SECRET_KEY_WORDS = re.compile(
    r"pass(word|wd|phrase)?|pwd|pin|secret|token|api-?key|private-?key|credentials?|otp|seed|salt|signing-?key"
    r"|hmac|cookie-?key|session-?key|encryption-?key|master-?key"
)
_NOT_SECRET_SUFFIX = re.compile(r"(name|user|username|id|type|file|path|url|host|hint|policy|length)$")


def secret_key_name(key: str) -> bool:
    """Does an intent key (``password``, ``DB_TOKEN``, ``api-key``) name a credential rather than a name?"""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", key).lower().replace("_", "-").replace(".", "-")
    if _NOT_SECRET_SUFFIX.search(words.replace("-", "")):
        return False
    return any(_SECRET_KEY_WORDS.fullmatch(w) for w in _compound_words(words))


def _compound_words(words: str) -> Iterable[str]:
    """Every run of consecutive '-'-separated words (so ``api-key`` and ``cookie-key`` match as units)."""
    parts = [p for p in words.split("-") if p]
    for i in range(len(parts)):
        for j in range(i + 1, min(len(parts), i + 3) + 1):
            yield "-".join(parts[i:j])
            yield "".join(parts[i:j])


@check("literal-secrets")
def check_literal_secrets(repo: Repository) -> Iterator[Finding]:
    """CH020: plaintext Secret manifests anywhere (bootstrap files excepted: CH021 names them), and intent
    fields that pin a secret value."""
    bootstrap = bootstrap_rels(repo)
    texts = {rf.rel: rf.text for rf in repo.files}
    for doc in repo.manifests:
        if doc.file in bootstrap or doc.is_sops:
            continue
        yield from _plaintext_secret(texts.get(doc.file), doc)
    for loaded in repo.intents:
        intent = loaded.obj
        generate = intent.spec.source.generate or {}
        for key, gen in generate.items():
            if not isinstance(gen, FixedNameGenerator):
                continue
            loc = ("spec", "source", "generate", key)
            if secret_key_name(key):
                yield Finding(
                    loaded.file, loaded.line_of(*loc), "CH020",
                    f"SecretIntent/{intent.name}: spec.source.generate.{key}: a fixed-name generator on a "
                    f"secret key puts the value in Git; use a password, token or bytes generator",
                    object=f"SecretIntent/{intent.name}",
                )
            elif looks_random(gen.name, min_length=12):
                yield Finding(
                    loaded.file, loaded.line_of(*loc, "name"), "CH020",
                    f"SecretIntent/{intent.name}: spec.source.generate.{key}.name looks like generated key "
                    f"material, not a declared name (value not shown)",
                    object=f"SecretIntent/{intent.name}",
                )


def _secret_docs(doc: Document) -> Iterator[tuple[tuple[int | str, ...], dict[str, object]]]:
    """(location, object) of the Secrets in a document: the document itself, or the items of a ``kind: List``."""
    data = doc.data
    if not isinstance(data, dict):
        return
    if data.get("kind") == "Secret":
        yield (), data
    elif data.get("kind") in ("List", "SecretList") and isinstance(data.get("items"), list):
        for index, item in enumerate(data["items"]):
            if isinstance(item, dict) and item.get("kind") == "Secret":
                yield ("items", index), item


def _plaintext_secret(text: str | None, doc: Document) -> Iterator[Finding]:
    for prefix, secret in _secret_docs(doc):
        if secret.get("apiVersion", "v1") != "v1":
            continue  # a custom resource that happens to be called Secret, not core/v1
        keys: list[str] = []
        first: tuple[int | str, ...] | None = None
        for section in ("data", "stringData"):
            values = secret.get(section)
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                if value not in (None, "") and not _templated(value):
                    keys.append(str(key))
                    if first is None:
                        first = (*prefix, section, key)
        if first is None:
            continue
        line = doc.line_of(first)
        kind_line = doc.line_of((*prefix, "kind"))
        if text is not None and any(allowed(_line_text(text, n), "CH020") for n in (line, kind_line)):
            continue
        meta = secret.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        shown = ", ".join(sorted(keys)[:5]) + (", ..." if len(keys) > 5 else "")
        yield Finding(
            doc.file, line, "CH020",
            f"Secret/{name or '?'} holds {len(keys)} plaintext value(s) ({shown}); Kubernetes Secrets are derived "
            f"from Vault, and what must enter through Git is SOPS-encrypted ('chamberlain bootstrap encrypt')",
            object=f"Secret/{name}" if name else "Secret",
        )


def _templated(value: object) -> bool:
    """A value that is one template action (``{{ .Values.password }}``, ``${DB_PASSWORD}``) is filled in by a tool
    at deploy time; it holds no value in Git."""
    text = str(value).strip()
    return (text.startswith("{{") and text.endswith("}}")) or (text.startswith("${") and text.endswith("}"))


def _line_text(text: str, line: int) -> str:
    """The text of 1-based ``line`` (only called for the few Secret manifests, so no index is kept)."""
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


# ------------------------------------------------------------------------------------------------ CH102

# "the password is X", "token: X" in prose: a credential word, an optional verb or sign, then one candidate word.
_PROSE_SECRET = re.compile(
    r"\b(?:password|passwd|passphrase|pwd|token|secret|api[ _-]?key|pin)\b(?:[ \t]+(?:is|was|=|:)|[ \t]*[:=])?"
    r"[ \t]+[\"'`]?(?P<value>[^\s\"'`]{6,128})", re.IGNORECASE)
_CASE_MIX = re.compile(r"(?=.*[A-Za-z])(?=.*[^A-Za-z])")


def _prose_secret(text: str) -> bool:
    """A word right after a credential word that is not a word, a name or a number (``hunter2!``, ``Xk9#mP2q``).
    DNS-style names (``orders-db``) and plain words pass: a purpose names things, it never spells a value."""
    for m in _PROSE_SECRET.finditer(text):
        value = m.group("value").rstrip(".,;:)")
        if len(value) < 6 or _PLAIN_WORD.fullmatch(value) or _DNS_NAME.fullmatch(value) or value.isdigit():
            continue
        if _is_placeholder(value, _LITERAL_WORDS) or _CODE.fullmatch(value):
            continue
        if _CASE_MIX.match(value):
            return True
    return False


def metadata_texts(doc: Document) -> Iterator[tuple[tuple[int | str, ...], str, str]]:
    """(location, what, text to scan) of the free-form metadata of a chamberlain object: every label and
    annotation (scanned as ``key: value``, so a password-named key with a literal is caught) and ``spec.purpose``."""
    data = doc.data if isinstance(doc.data, dict) else {}
    meta = data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    for section in ("labels", "annotations"):
        values = meta.get(section)
        if isinstance(values, dict):
            for key, value in values.items():
                yield ("metadata", section, str(key)), f"metadata.{section}.{key}", f"{key}: {value}"
    spec = data.get("spec")
    purpose = spec.get("purpose") if isinstance(spec, dict) else None
    if isinstance(purpose, str):
        yield ("spec", "purpose"), "spec.purpose", purpose


@check("metadata-credentials")
def check_metadata_credentials(repo: Repository) -> Iterator[Finding]:
    """CH102: a credential-shaped label, annotation or purpose on a Platform, RotationPolicy or SecretIntent.
    Render copies metadata into every cluster the object reaches, so a value there is a leak multiplied."""
    docs = [p.doc for p in repo.platforms] + [p.doc for p in repo.policies] + [i.doc for i in repo.intents]
    # One scan over every item, one item per line (10k intents cost one pass, not 10k scanner set-ups).
    items: list[tuple[Document, tuple[int | str, ...], str, str]] = [
        (doc, loc, what, text) for doc in docs for loc, what, text in metadata_texts(doc)]
    joined = "\n".join(_ONE_LINE.sub(" ", text) for _, _, _, text in items)
    kinds: dict[int, str] = {}
    for hit in scan_text(joined, rule="CH102"):
        if hit.kind != "truncated" and hit.line is not None:
            kinds.setdefault(hit.line - 1, f"{hit.label} [{hit.kind}]")
    for index, (doc, loc, what, text) in enumerate(items):
        kind = kinds.get(index)
        if kind is None and loc[-1] == "purpose" and _prose_secret(text):
            kind = "a password or token spelled out in prose [prose-credential]"
        if kind is None:
            continue
        line = doc.line_of(loc)
        rf_text = _file_text(repo, doc.file)
        if rf_text is not None and allowed(_line_text(rf_text, line), "CH102"):
            continue
        label = _label(doc)
        yield Finding(
            doc.file, line, "CH102",
            f"{label}: {what} looks like {kind}; render copies metadata into every cluster, so it never holds a "
            "value (value not shown)", object=label)


_ONE_LINE = re.compile(r"[\r\n]")


def _file_text(repo: Repository, rel: str) -> str | None:
    rf = repo.file(rel)
    return rf.text if rf is not None else None
