"""Is this string key material? Randomness, placeholders and words, decided on the string alone.

Boundary: pure functions of one string (and the key it was assigned to, where the caller knows it); no regex here
may backtrack (each is a single character class or a bounded alternation), so every test is linear in its input.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter

RUN = re.compile(r"[A-Za-z0-9+/_-]{20}")
TOKEN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/_-])")
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


def encoded_pem(token: str) -> str | None:
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




# ------------------------------------------------------------------------------------------------ placeholders

# Words that mark a value as an example or a stand-in. "test" is not one: Stripe's sk_test_ keys are secrets too.
_PLACEHOLDER_WORDS = ("example", "changeme", "change_me", "change-me", "placeholder", "redacted", "dummy", "sample",
                      "your", "insert", "replace", "xxxx", "****", "....", "<", ">", "todo", "fixme", "notreal",
                      "not-a-real", "not_a_real", "fake", "...", "[redacted]", "<redacted>")
_PLACEHOLDER_WORD = re.compile("|".join(re.escape(word) for word in _PLACEHOLDER_WORDS))
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_ALPHABET_RUN = re.compile("|".join(_ALPHABET[i : i + 10] for i in range(17)))


_REPEAT = re.compile(r"(.)\1{5}")  # six of one character in a row


def _longest_run(value: str) -> int:
    if _REPEAT.search(value, 0, 512) is None:
        return 1 if value else 0  # the common case, decided in C: below every threshold that matters
    best = run = 0
    previous = ""
    for ch in value[:512]:
        run = run + 1 if ch == previous else 1
        previous = ch
        best = max(best, run)
    return best


def placeholder(value: str) -> bool:
    """An example or a stand-in, not a credential: ``ghp_xxxxxxxx…``, ``<your-token>``, ``changeme``,
    ``sk_abcdefghijklmnop``, a value of one or two repeated characters."""
    low = value.lower()
    if _PLACEHOLDER_WORD.search(low) is not None:
        return True
    n = len(value)
    if n == 0:
        return True
    if _longest_run(value) >= max(6, n // 3):
        return True
    head = value[:512]
    distinct = len(set(head))
    if n >= 8 and distinct <= 3:
        return True
    # One character making up most of the value (``xoxp-XXXX-XXXX``); digits are left out, since provider ids such
    # as Slack's team and user numbers repeat them. Only a value of few distinct characters can have one.
    if n >= 8 and distinct <= len(head) // 2 + 1:
        candidate = sorted(head)[len(head) // 2]  # a character filling over half the value sits in the middle
        if not candidate.isdigit() and head.count(candidate) * 2 > len(head):
            return True
    # Ten letters of the alphabet in a row are typed, not generated (``sk_abcdefghijklmnopqrstuvwxyz123``).
    return n >= 10 and _ALPHABET_RUN.search(low) is not None


# ------------------------------------------------------------------------------------------------ assigned values

# Values that are configuration words, not credentials, whatever key holds them.
CONFIG_WORDS = frozenset({
    "null", "none", "nil", "true", "false", "yes", "no", "on", "off", "~", "undefined", "required", "optional",
    "string", "str", "text", "bool", "boolean", "int", "integer", "secret", "password", "token", "hidden", "masked",
    "disabled", "enabled", "empty", "generated", "random", "auto", "prompt", "file", "env", "stdin", "default",
    "unset", "unknown", "omitted", "sensitive", "notset", "not-set", "n/a", "na", "tbd", "value", "bearer", "basic",
    "pass", "pwd", "passwd", "pw", "user", "username", "login", "literal",
    # "password" in the languages of translation files (``"password": "Mot de passe"`` in locales/fr.json)
    "passwort", "kennwort", "mot de passe", "contraseña", "contrasena", "senha", "wachtwoord", "parola", "hasło",
    "haslo", "lösenord", "losenord", "passord", "adgangskode", "salasana", "heslo", "jelszó", "şifre", "sifre",
    "пароль", "密码", "密碼", "パスワード", "비밀번호", "mật khẩu", "kata sandi", "palavra-passe",
})
# References and expressions: what a reader resolves at run time, never the value itself.
_ENV_REF = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[^}\n]{0,200}\}|\([^)\n]{0,200}\))")
_CALL = re.compile(r"[A-Za-z_$][\w$.]{0,100}\(.{0,400}\);?")
# A call: a name of 3+ characters that reads as code (lower-case start, or a dot or underscore in it), then "(".
# ``Pa(ss)w0rd`` is a password, not a call.
_CALL_START = re.compile(r"(?:[a-z_$][\w$]{2,100}|[A-Za-z_$][\w$]*[._][\w$.]{0,100})\(")
_ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\[.{0,200}\])?")
_FORMAT_FIELD = re.compile(r"\{[A-Za-z_][\w.-]{0,100}(?:![rsa])?(?::[^{}]{0,20})?\}")
_SUBSCRIPTED_ATTRIBUTE = re.compile(r"[A-Za-z_]\w{0,100}(?:\.[A-Za-z_]\w{0,100}){1,20}\[")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,30}://")  # a password inside a URL is the URL rule's to find
_CONSTANT = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")  # ACCESS_TOKEN: a constant's or variable's name
_WORDS = re.compile(r"[A-Za-z]+(?:[-_. ][A-Za-z]+)*")
_DNS = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*")
_VERSION = re.compile(r"v?\d+(?:\.\d+)+(?:[-+][0-9A-Za-z.-]{0,40})?")
_FILE_LIKE = re.compile(
    r"[\w./-]{0,200}\.(?:json|ya?ml|txt|pem|key|crt|cer|p12|pfx|jks|env|conf|cfg|ini|toml|age|gpg|asc|md|html?|cnf"
    r"|tpl|tmpl|j2|sql|csv|log|sh|py|go|js|ts|rb|java|php|xml)")
_REFERENCE_PREFIXES = ("{{", "${", "#{", "[", "%(", "%{", "<%", "[[", "ENC[", "vault:", "ref+", "arn:", "secretref:",
                       "op://", "sm://", "awssm:", "gcpsm:", "file:", "env:", "projects/", "./", "../", "~/", "/")
_REFERENCE_INSIDE = ("{{", "${", "}}", "os.environ", "process.env", "getenv", "secretkeyref", "valuefrom")


def reference(value: str) -> bool:
    """``${X}``, ``$VAR``, ``{{ .password }}``, ``%(x)s``, ``os.environ["X"]``, ``settings.DB_PASSWORD``,
    ``getPassword()``, ``vault:secret/x#k``, ``@secret@``: where a value comes from, not the value."""
    low = value.lower()
    if low.startswith(_REFERENCE_PREFIXES) or any(part in low for part in _REFERENCE_INSIDE):
        return True
    if value.startswith("$$"):
        value = value[1:]  # $$VAR: docker compose's escaped $VAR
    if value.startswith(("$(", "`")) or _SUBSCRIPTED_ATTRIBUTE.match(value) or _URL.match(value):
        return True  # $(govc env X), `cmd`: a command's output; a.b.c[0].password: Terraform; a URL: a location
    if _ENV_REF.fullmatch(value) or (value.startswith("%") and value.endswith("%")):
        return True
    if _FORMAT_FIELD.fullmatch(value):
        return True  # {guess}, {orders-db-app.password}: a format field or a chamberlain template reference
    if value.startswith("@") and value.endswith("@") and len(value) > 2:
        return True
    if value.startswith("__") and value.endswith("__"):
        return True
    if _CALL_START.match(value):
        return True  # getPassword(), os.getenv("X"), field(repr=False, _map(volume.get(: code computing a value
    if _ATTRIBUTE.fullmatch(value):
        # settings.DB_PASSWORD, ed25519.Ed25519PrivateKey; a dotted run of generated segments is a token (dp.pt.x9f…)
        return all(len(part) <= 12 or not _DIGIT.search(part) or _word_share(part) >= 0.3 for part in value.split("."))
    return bool(_CALL.fullmatch(value) and "(" in value) or bool(_CONSTANT.fullmatch(value))


_LONG_WORD = re.compile(r"[A-Z][a-z]{3,}|[a-z]{4,}|[A-Z]{4,}(?![a-z])")
_NO_VOWELS = str.maketrans("", "", "aeiouy")
_WHITESPACE = re.compile(r"\s")


def _word_share(token: str) -> float:
    """Like :func:`_wordiness`, counting only segments that read as words (a quarter to two thirds vowels): a
    lower-case random run (``bcrr5a2lwnvxu9``) splits into consonant clusters, not words."""
    segments = _SEGMENT.findall(token)
    total = sum(map(len, segments))
    wordy = 0
    for s in _LONG_WORD.findall(token):  # the letter segments of 4+ (what _SEGMENT would split them into)
        vowels = len(s) - len(s.lower().translate(_NO_VOWELS))
        if len(s) * 0.25 <= vowels <= len(s) * 0.67:
            wordy += len(s)
    return wordy / total if total else 1.0


def _looks_generated(value: str) -> bool:
    """A value under a token/key/secret key that is key material rather than a name, a version or a word."""
    n = len(value)
    if n < 10 or _WHITESPACE.search(value):
        return False
    if _VERSION.fullmatch(value) or _FILE_LIKE.fullmatch(value.lower()):
        return False
    if value.isdigit():
        return n >= 10  # numeric ids and PINs issued by providers (Discord, Asana) are 16-19 digits
    if _HEXISH.fullmatch(value):
        return n >= 16
    body = value.rstrip("=")
    has_digit = _DIGIT.search(body) is not None
    has_upper = body != body.lower()
    has_lower = body != body.upper()
    if _WORDS.fullmatch(body):
        # Letters only: random when it is not made of words (few vowels, no word-like segments).
        letters = body.replace("-", "").replace("_", "").replace(".", "").replace(" ", "")
        vowels = len(letters) - len(letters.lower().translate(_NO_VOWELS)) - letters.lower().count("y")
        if has_upper and has_lower and _word_share(letters) <= 0.5:
            return True
        return len(letters) >= 12 and vowels * 100 < len(letters) * 28 and _word_share(letters) <= 0.5
    if _DNS.fullmatch(body) and not has_upper:
        # Lower-case names of words (``orders-db-v2``) are names; a run with digits spread through it is a key.
        pieces = [p for p in re.split(r"[-.]", body) if p]
        if len(pieces) >= 2 and all(len(p) <= 3 or p.isdigit() or (len(p) <= 12 and _word_share(p) > 0.5)
                                    or _SHORT_WORD_NUMBER.fullmatch(p) for p in pieces):
            return False
    if not has_digit and not (has_upper and has_lower):
        return _word_share(body) <= 0.5 and n >= 16
    entropy = shannon_entropy(body[:512])
    return entropy >= 0.6 * math.log2(min(len(body), 64)) and _word_share(body) <= 0.6


_ANSI_ESCAPES = ("\\x1b[", "\\033[", "\\e[", "\\u001b[")  # PASS="\x1b[32mPASS": a terminal colour, not a value
_SHORT_WORD_NUMBER = re.compile(r"[a-z]{1,3}[0-9]{1,3}")  # key1, db2: a name's numbered piece
_SYMBOLS = frozenset("!@#$%^&*()+=~?")


def assigned_credential(value: str, kind: str, key_words: tuple[str, ...], quoted: bool = False) -> bool:
    """Is ``value``, assigned to a key of ``kind`` (``password``, ``secret`` or ``token``), a literal credential?

    Passwords are chosen by people, so any literal counts (letters only, digits only, starting with ``!$@*``),
    except configuration words, references and placeholders. Tokens and keys are generated, so the value must
    look generated: a name (``orders-db-token``), a version or a word is not one."""
    value = value.strip()
    if len(value) < 4 or len(value) > 1024:
        return False
    value = value[:256]  # decided on a prefix: statistics settle long before, and each call stays bounded
    low = value.lower()
    if low in CONFIG_WORDS or reference(value) or placeholder(value) or low.startswith(_ANSI_ESCAPES):
        return False
    # The key's own name as its value (``DB_PASSWORD: db-password``): a key map, not a credential.
    squashed = re.sub(r"[^a-z0-9]", "", low)
    if squashed and (squashed in "".join(key_words) or any(w and w in squashed for w in key_words
                                                            if len(w) >= 5 and _WORDS.fullmatch(value))):
        return False
    if kind == "password":
        # A quoted passphrase may hold spaces (``"correct horse battery staple"``); an unquoted one is prose.
        if (_WHITESPACE.search(value) and not quoted) or (value.isdigit() and len(value) < 6):
            return False
        return not (_VERSION.fullmatch(value) or _FILE_LIKE.fullmatch(low))
    symbols = len(_SYMBOLS.intersection(value))
    if symbols >= 2 and _DIGIT.search(value) and value.lower() != value.upper() and not _WHITESPACE.search(value):
        return True  # punctuation, digits and letters mixed: a generated password or key (Django's, say)
    if key_words[-1:] in (("auth",), ("authorization",)) and len(value) < 16:
        return False  # auth: basic, --auth=scram-sha-256: a method, not a credential
    if kind == "secret" and _DNS.fullmatch(value) and len(value) <= 63 and not _looks_generated(value):
        return False  # ``existingSecret: app-db-v2`` names a Kubernetes Secret
    return _looks_generated(value)
