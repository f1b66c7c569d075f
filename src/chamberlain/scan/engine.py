"""The scanning engine: every credential-looking place in one text or one blob of bytes.

Boundary: pure; the caller decides which text to scan (the repository check blanks SealedSecret ciphertext and
says which regions are intent documents first). Findings name the kind of credential and its place, never the
matched text.

Why hand-written rather than detect-secrets: measured on 10k intents it took ~20 s and produced hundreds of
false positives on intent files (keyword plugin on ``password: {type: password}``), against our budget of 3 s
for validate+render; it also knows nothing of SOPS files. Here every pattern is gated by a cheap substring test,
so a file that cannot contain a shape never runs its regex.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from chamberlain.scan import assignments, formats
from chamberlain.scan.judge import (
    RUN,
    TOKEN,
    assigned_credential,
    encoded_pem,
    looks_random,
    placeholder,
    reference,
)

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
    """A credential shape that is not a provider token (those are :mod:`.formats`)."""

    kind: str
    label: str
    regex: re.Pattern[str]


def _shape(kind: str, label: str, pattern: str) -> _Shape:
    return _Shape(kind, label, re.compile(pattern))


_BECH32 = "[qpzry9x8gf2tvdw0s3jn54khce6mua7l]"

# Every pattern starts with a literal, so the engine jumps from one occurrence of it to the next (GB/s) instead
# of trying every position; "not preceded by a token character" is a lookbehind *after* that literal (a leading
# \b or character class would defeat the jump and cost ~50x). Keep it that way when adding a shape.
_PRIVATE_KEY = _shape(
    "private-key", "a PEM private key", r"-----BEGIN[ A-Z0-9]{0,20}PRIVATE KEY(?: BLOCK)?-----"
)
# Shapes that are not provider tokens (those are :mod:`.formats`), looked for after ciphertext and public material
# are blanked out.
_SHAPES: tuple[_Shape, ...] = (
    _shape("gcp-service-account-key", "a Google service-account key file",
           r"\"type\"[ \t]*:[ \t]*\"service_account\""),
)

# ``scheme://user:password@host``. The password part excludes obvious placeholders below.
_URL_PASSWORD = re.compile(
    r"://(?P<user>[^\s:/?#@\"'<>\[\]]{0,256}):(?P<pw>[^\s/?#@\"'<>]{1,256})@[^\s/?#@\"'<>]")
# ``x-oauth-basic`` is what GitHub documents as the password when the token is the user name.
_URL_PLACEHOLDERS = {"password", "pass", "passwd", "pwd", "pw", "secret", "token", "changeme", "redacted",
                     "x-oauth-basic"}

_ASSIGN_NEEDLES = ("pass", "pwd", "secret", "token", "key", "cred", "auth", "bearer")
_PLAIN_WORD = re.compile(r"[A-Za-z]+")
_PLACEHOLDER_VALUE = re.compile(r"[xX*.#_-]+|<[^>]*>|\(?[Rr][Ee][Dd][Aa][Cc][Tt][Ee][Dd]\)?")

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
_CIPHER_NEEDLES = ("ENC[AES256_GCM", "-----BEGIN ", "AAAA", "kty", "|1|")
# Public members of a JSON Web Key (RFC 7517/7518): modulus, exponent, curve point, thumbprints, certificate chain.
_JWK_PUBLIC = re.compile(
    r"[\"']?(?:n|e|x|y|kid|x5t|x5t#S256|x5c)[\"']?[ \t]*:[ \t]*\[?[ \t\r\n]*[\"']?(?P<value>[A-Za-z0-9_+/=-]{8,16384})")
_JWK_PRIVATE = re.compile(r"[\"'](?:d|p|q|dp|dq|qi|k)[\"'][ \t]*:[ \t]*[\"'][A-Za-z0-9_-]{20,}")
# ``|1|salt|hash`` host names in a hashed known_hosts file: one-way digests, public.
_HASHED_HOST = re.compile(r"\|1\|[A-Za-z0-9+/=]{1,64}\|[A-Za-z0-9+/=]{1,64}")
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
    if "kty" in text:  # a JSON Web Key: its public members only (d, p, q, dp, dq, qi, k stay visible)
        spans += [m.span("value") for m in _JWK_PUBLIC.finditer(text)]
    if "|1|" in text:
        spans += [m.span() for m in _HASHED_HOST.finditer(text)]
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
_PUBLIC_RANDOM_NEEDLE = re.compile(r"age1|sha|md5|h1:|data:|://|\|1\|")
_PUBLIC_RANDOM = re.compile(
    rf"\bage1{_BECH32}{{58}}\b"  # age recipients (public keys)
    r"|\b(?:sha1|sha224|sha256|sha384|sha512|md5|h1)[-:][A-Za-z0-9+/=_-]+"  # image digests, SRI, go.sum
    r"|\bdata:[\w/+.-]+;base64,[A-Za-z0-9+/=]+"  # inline images in docs
    r"|\|1\|[A-Za-z0-9+/=]{1,64}\|[A-Za-z0-9+/=]{1,64}"  # hashed known_hosts entries
    r"|\b[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s?#\"'<>()\[\]{}]*"  # URLs up to the query (queries are checked)
)

_NOT_NEWLINE = re.compile(r"[^\n]")
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/]")


def _blank(m: re.Match[str]) -> str:
    return _NOT_NEWLINE.sub(" ", m.group())


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

    # Private keys first, on the raw text: no mask below may hide one. A closed block with no key material in it
    # (``-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----`` in documentation) is not a key.
    private_blocks = pem_blocks(text, _PRIVATE_PEM) if "PRIVATE KEY" in text else []
    block_end = dict(private_blocks)
    for m in _PRIVATE_KEY.regex.finditer(text):
        end = block_end.get(m.start())
        if end is not None and len(_BASE64_CHARS.findall(text, m.end(), end)) < 64:
            continue
        add(_PRIVATE_KEY.kind, _PRIVATE_KEY.label, m.start())

    masked, masked_lower = text, lowered
    spans = list(private_blocks)
    if any(n in text for n in _CIPHER_NEEDLES):
        spans += _public_spans(text)
    if spans:
        masked = blank_spans(text, spans)
    if "ENC[AES256_GCM" in text:
        masked = _SOPS_ENC_LINE.sub(_blank, masked)
    if masked is not text:
        masked_lower = _ascii_lower(masked)

    if "kty" in masked:  # a JSON Web Key's private members (d, p, q, dp, dq, qi; k of a symmetric key)
        for m in _JWK_PRIVATE.finditer(masked):
            add("jwk-private-key", "a private JSON Web Key", m.start())

    for start, end, fmt in formats.find(masked, masked_lower, first_per_line=True):
        if not seen(fmt.kind, start) and not _placeholder_token(fmt, masked[start:end]):
            add(fmt.kind, fmt.label, start)
    for shape in _SHAPES:
        for m in shape.regex.finditer(masked):
            if not seen(shape.kind, m.start()):
                add(shape.kind, shape.label, m.start())

    if "://" in masked:
        for m in _URL_PASSWORD.finditer(masked):
            pw = m.group("pw")
            if not seen("url-password", m.start("pw")) and pw.lower() not in _URL_PLACEHOLDERS and not (
                    reference(pw) or placeholder(pw) or pw.startswith(("$", "{", "%", "<"))
                    or pw == m.group("user") or _PLACEHOLDER_VALUE.fullmatch(pw)):  # guest:guest, ***: defaults, masks
                add("url-password", "a password embedded in a URL", m.start("pw"))

    if ("uthoriz" in masked_lower or "-u" in masked or "--user" in masked or "mysql" in masked_lower
            or "identified" in masked_lower or "password '" in masked_lower or "password\t'" in masked_lower):
        shaped_lines = {line for line, _ in found}
        for kind, label, offset in _header_and_flag_hits(masked, masked_lower):
            if lines.locate(offset)[0] not in shaped_lines:
                add(kind, label, offset)

    named = _provider_names(masked_lower) if generic else []
    if generic and (named or any(n in lowered for n in _ASSIGN_NEEDLES)):
        shaped = {line for line, _ in found}  # a line with a known shape needs no vaguer second report
        budget = assignments.Budget(assignments.LIMIT + len(text) // 100)  # a long file may name more keys
        verdicts: dict[tuple[str, str, str, tuple[str, ...], bool, bool], tuple[str, str] | None] = {}
        for start, end in [(0, len(text))] if generic_regions is None else generic_regions:
            for a in assignments.find(masked, masked_lower, start, end, budget, named):
                if lines.locate(a.start)[0] in shaped:
                    continue
                if a.key.lower() == "token" and (masked_lower.find("badge", max(0, a.start - 200), a.start) >= 0
                                                 or masked_lower.find(".svg?", max(0, a.start - 200), a.start) >= 0):
                    continue  # a README badge's token (codecov, travis) is a public, read-only graph token
                memo = (a.key, a.value, a.kind, a.words, a.quoted, a.call)  # a repeated value is judged once
                if memo in verdicts:
                    verdict = verdicts[memo]
                else:
                    verdict = _assignment_verdict(a)
                    if len(verdicts) < 10_000:
                        verdicts[memo] = verdict
                if verdict is not None and not seen(verdict[0], a.start):
                    add(verdict[0], verdict[1], a.start)
        if budget.exhausted:
            found[(0, "partial")] = Hit(
                "partial", "too many credential names to check every assignment (known formats were checked)",
                None, None)

    known_lines = {line for line, _ in found}
    known_spans = [lines.span(line) for line in sorted(known_lines)]
    for offset, kind in _token_hits(masked, known_spans):
        if kind == "private-key":
            add("private-key", "a base64-encoded PEM private key", offset)
        elif not seen("high-entropy", offset) and lines.locate(offset)[0] not in known_lines:
            add("high-entropy", "a high-entropy string (random-looking token)", offset)  # a known shape: not twice


def _assignment_verdict(a: assignments.Assignment) -> tuple[str, str] | None:
    """(kind, label) when the assigned value is a credential, None when it is not.

    A value in a provider's format under that provider's name (``HEROKU_API_KEY=<uuid>``) is named after it. A
    credential-looking value under a provider's name, or starting with a provider's prefix, that is *not* in that
    provider's format is reported as unconfirmed (a CH128 warning): usually a test value or a truncated example."""
    fmt = formats.context_format(a.key, a.value)
    if fmt is not None and a.kind == "named" and not _names(a.words, fmt.context):
        fmt = None  # the provider's name inside another word: ``rookTable`` is not Okta, ``SetSysctl`` not Etsy
    if fmt is not None and len(a.value) >= 32 and _HEX_VALUE.fullmatch(a.value) and not _hex_format(fmt):
        fmt = None  # 40 hex digits are a digest or a key id, not a 40-character base64 AWS secret
    if (a.words and {"gpg", "pgp"}.intersection(a.words) and len(a.value) in (8, 16, 40)
            and _HEX_VALUE.fullmatch(a.value)):
        return None  # AWSCLI_GPG_KEY=<40 hex>: a public key's fingerprint or id
    if fmt is not None:
        if placeholder(a.value) or reference(a.value) or _KEY_NAME_VALUE.fullmatch(a.value):
            return None
        return fmt.kind, fmt.label
    if a.kind == "named" or not assigned_credential(a.value, a.kind, a.words, a.quoted):
        return None
    if a.call and (_WHITESPACE.search(a.value) or _PLAIN_WORD.fullmatch(a.value)):
        return None  # manual("db-password", "rotation drill"): a name and any string, not an assignment
    # A value in one of the provider's formats never gets here: the format rows reported its line already.
    providers = [word for word in a.words if word in _providers()]
    if providers:
        return "unconfirmed-token", f"a value under a {providers[0]} name that is not in any {providers[0]} format"
    if a.value.lower().startswith(_prefixes()):
        return "unconfirmed-token", "a value with a provider's prefix that is not in that provider's format"
    return "literal-assignment", f"a literal value assigned to a {a.kind} key"


# A value that is itself a key's name (``("administrator_login_password", "admin_password")``): a mapping of names.
_KEY_NAME_VALUE = re.compile(r"[A-Za-z_.-]{0,100}(?:password|passwd|secret|token|api_?key)[A-Za-z_.-]{0,100}",
                             re.IGNORECASE)
_WHITESPACE = re.compile(r"\s")


_HEX_VALUE = re.compile(r"[0-9a-fA-F]+")


@cache
def _hex_format(fmt: formats.Format) -> bool:
    """Could a value of ``fmt`` be all hex digits? Not when its runs are base64 proper (``+`` and ``/``): 40 random
    base64 characters are all hex once in 10^18. (Alphanumeric formats are left alone: providers documented as
    alphanumeric often issue hex.)"""
    return not any("+" in part.characters and "/" in part.characters
                   for part in fmt.parts if isinstance(part, formats.Chars))


# Provider words that name a credential's issuer, not what it is.
_GENERIC_WORDS = frozenset({"private", "generic", "secret", "token", "api", "key", "password", "admin", "access",
                            "client", "service", "oauth", "user", "personal", "session", "basic", "bearer"})


@cache
def _providers() -> dict[str, tuple[formats.Format, ...]]:
    """Provider name (``telegram``, ``meraki``, ``databricks``) -> its formats."""
    table: dict[str, list[formats.Format]] = {}
    for fmt in formats.FORMATS:
        words = {fmt.kind.split("-", 1)[0]} | {w for w in fmt.context if w.isalpha()}
        for word in words:
            if len(word) >= 4 and word not in _GENERIC_WORDS:
                table.setdefault(word, []).append(fmt)
    return {word: tuple(fmts) for word, fmts in table.items()}


@cache
def _prefixes() -> tuple[str, ...]:
    """Lower-case literal prefixes of 4+ characters that only one provider's tokens start with."""
    return tuple(sorted({fmt.parts[0].lower() for fmt in formats.FORMATS
                         if isinstance(fmt.parts[0], str) and len(fmt.parts[0]) >= 4 and not fmt.context}))


def _names(words: tuple[str, ...], context: tuple[str, ...]) -> bool:
    """Does the key name the provider: one of its words starts with a context word (``sumologic``: ``sumo``), or
    two or three of them joined are one (``message`` ``bird``)?"""
    return any(word.startswith(c) for word in words for c in context) or any(c in _joined(words) for c in context)


def _joined(words: tuple[str, ...]) -> set[str]:
    """The key's words and runs of two or three of them (``message``+``bird``), joined with and without ``_``."""
    runs = set(words)
    for size in (2, 3):
        for i in range(len(words) - size + 1):
            runs.add("".join(words[i : i + size]))
            runs.add("_".join(words[i : i + size]))
            runs.add("-".join(words[i : i + size]))
    return runs


def _provider_names(lowered: str) -> list[tuple[int, int]]:
    """(start, end) of provider names that gate a keyword-gated format (``sonar``, ``heroku``), in text order."""
    spans = []
    for last, word in formats.context_word_spans(lowered):
        if word.isalpha() and word not in _GENERIC_WORDS:
            spans.append((last - len(word) + 1, last + 1))
            if len(spans) > assignments.LIMIT:
                break  # the assignment budget runs out before these would be read
    return spans


# ``Authorization: Bearer <token>`` (headers in curl commands, HTTP files, proxies' configuration) and
# ``curl -u user:password``. Bounded runs only: linear on any input.
_AUTH_HEADER = re.compile(
    r"authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:bearer|basic|token|bot|apikey|api-key|sso-key|digest)[ \t]+)?"
    r"(?P<value>[a-z0-9+/=._~:-]{1,512})")
_CURL_USER = re.compile(
    r"(?:^|[ \t])(?:-u|--user)(?:[ \t]+|=)[\"']?(?P<user>[^\s:\"'`]{0,128}):(?P<pw>[^\s\"'`]{1,256})")
# ``CREATE USER app IDENTIFIED BY 'x'``, ``ALTER ROLE app WITH PASSWORD 'x'`` (migrations, init scripts).
# Each starts with a literal, so the engine jumps between occurrences instead of trying every position.
_SQL_IDENTIFIED = re.compile(r"identified[ \t]+by[ \t]+'(?P<pw>[^'\n]{1,256})'")
_SQL_WITH_PASSWORD = re.compile(r"password[ \t]+'(?P<pw>[^'\n]{1,256})'")
# ``mysql -u root -p<password>`` (and mysqldump, mysqladmin): the password glued to ``-p``.
_MYSQL_PASSWORD = re.compile(r"(?:^|[ \t])-p[\"']?(?P<pw>[^\s\"'`\\$][^\s\"'`\\]{3,255})")


def _header_and_flag_hits(text: str, lowered: str) -> Iterator[tuple[str, str, int]]:
    verdicts: dict[str, bool] = {}
    for m in _AUTH_HEADER.finditer(lowered):
        value = text[m.start("value") : m.end("value")]
        verdict = verdicts.get(value)
        if verdict is None:
            verdict = assigned_credential(value, "token", ("authorization", "header"))
            if len(verdicts) < 10_000:
                verdicts[value] = verdict
        if verdict:
            yield "authorization-header", "a credential in an Authorization header", m.start("value")
    for m in _CURL_USER.finditer(text):
        user, pw = m.group("user"), m.group("pw")
        if user.startswith("+") or pw.split("@", 1)[0].lower() in _URL_PLACEHOLDERS:
            continue  # date -u +%Y-%m-%dT%H:%M:%S (a format), govc -u user:pass@host (a placeholder)
        if pw != user and assigned_credential(pw, "password", ()):
            yield "basic-auth-password", "a password in a user:password argument", m.start("pw")
    sql_matches: list[re.Match[str]] = []
    if "identified" in lowered:
        sql_matches += _SQL_IDENTIFIED.finditer(lowered)
    if "password '" in lowered or "password\t'" in lowered:  # WITH [ENCRYPTED] PASSWORD 'x'
        sql_matches += [m for m in _SQL_WITH_PASSWORD.finditer(lowered)
                        if lowered.find("with", max(0, m.start() - 24), m.start()) >= 0]
    sql_verdicts: dict[str, bool] = {}
    for sql in sql_matches:
        pw = text[sql.start("pw") : sql.end("pw")]
        if pw not in sql_verdicts and len(sql_verdicts) < 10_000:
            sql_verdicts[pw] = assigned_credential(pw, "password", (), quoted=True)
        if sql_verdicts.get(pw, False):
            yield "sql-password", "a password in a SQL statement", sql.start("pw")
    if "mysql" in lowered:
        passwords: dict[str, bool] = {}
        pos = 0
        while (flag := _MYSQL_PASSWORD.search(text, pos)) is not None:
            pos = flag.end()
            # the command on the same line, looked for at most 256 characters back (linear on a 10 MB line)
            line_start = text.rfind("\n", max(0, flag.start() - 256), flag.start()) + 1
            if lowered.find("mysql", max(line_start, flag.start() - 256), flag.start()) < 0:
                continue
            pw = flag.group("pw")
            verdict = passwords.get(pw)
            if verdict is None:
                verdict = assigned_credential(pw, "password", ())
                if len(passwords) < 10_000:
                    passwords[pw] = verdict
            if verdict:
                yield "basic-auth-password", "a password in a mysql -p argument", flag.start("pw")
                end = text.find("\n", flag.end())  # one report per line: a line of 100,000 ``-p`` flags costs one
                pos = len(text) if end < 0 else end


def _token_hits(text: str, skip: list[tuple[int, int]] | None = None) -> Iterator[tuple[int, str]]:
    """(offset, kind) of every base64-alphabet run of 20+ characters that is an encoded private key or looks
    random, leaving out what is public by construction.

    ``str.split`` finds the few whitespace-separated words long enough to hold one about 5x faster than a regex
    over the whole text; each word's offset is found by searching forward from the previous long word (words
    in between are shorter, so they cannot contain it). A word is judged once however often it repeats, so a
    file of one repeated word costs a ``find`` per copy. Words on the ``skip`` spans (lines that already hold a
    finding, in order) are not judged: the line is reported already."""
    cursor = 0
    judged: dict[str, list[tuple[int, str]]] = {}
    skip = skip or []
    next_skip = 0
    for word in [w for w in text.split() if len(w) >= 20]:
        offset = text.find(word, cursor)
        cursor = offset + len(word)
        while next_skip < len(skip) and skip[next_skip][1] <= offset:
            next_skip += 1
        if next_skip < len(skip) and skip[next_skip][0] <= offset:
            continue
        hits = judged.get(word)
        if hits is None:
            hits = _judge_word(word)
            if len(judged) < 100_000:
                judged[word] = hits
        for at, kind in hits:
            yield offset + at, kind


def _judge_word(word: str) -> list[tuple[int, str]]:
    if RUN.search(word) is None:  # no run long enough: the common case, decided in C
        return []
    if _PUBLIC_RANDOM_NEEDLE.search(word) is not None:
        word = _PUBLIC_RANDOM.sub(_blank, word)
    hits: list[tuple[int, str]] = []
    for m in TOKEN.finditer(word):
        token = m.group()
        pem = encoded_pem(token)
        if pem == "private":
            hits.append((m.start(), "private-key"))
        elif pem is None and looks_random(token):
            hits.append((m.start(), "high-entropy"))
    return hits


def _placeholder_token(fmt: formats.Format, token: str) -> bool:
    """``ghp_xxxx…``, ``AKIAIOSFODNN7EXAMPLE``: documentation, not a leak. An age identity is bech32 with a
    checksum, so even a run of one character there is a real (if weak) key."""
    if fmt.kind == "age-secret-key":
        return False
    prefix = fmt.parts[0]
    rest = token[len(prefix):] if isinstance(prefix, str) else token
    return placeholder(rest)  # ghp_xxxx…: judged without its prefix


def scan_binary(raw: bytes) -> list[Hit]:
    """Known credential shapes in a binary (or non-UTF-8) file; lines are meaningless there, so None."""
    # latin-1 maps every byte to one character, so the text patterns apply unchanged and offsets stay true.
    text = raw.decode("latin-1")
    lowered = _ascii_lower(text)
    kinds: dict[str, Hit] = {}
    for start, end, fmt in formats.find(text, lowered):
        if fmt.kind not in kinds and not _placeholder_token(fmt, text[start:end]):
            kinds[fmt.kind] = Hit(fmt.kind, fmt.label, None, None)
    for shape in (_PRIVATE_KEY, *_SHAPES):
        if shape.kind in kinds:
            continue
        if shape.regex.search(text) is not None:
            kinds[shape.kind] = Hit(shape.kind, shape.label, None, None)
    return list(kinds.values())


# Key stores hold private keys in binary containers that have no textual header to recognise.
