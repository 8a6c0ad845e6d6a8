"""Is a mail really from Meta? A verdict from the sender and Authentication-Results.

Pure: works on a :class:`~tracker.parse.ParsedMail` and the settings, no I/O
(the Unicode confusables table is package data, read once on import).

Four questions, in this order:

1. Is the mail's shape one Meta never sends? More than one From mailbox that
   claims Meta is ``suspicious``; a Meta mail with a repeated To, Date or
   Subject header is held for review (``AuthVerdict.held``): a genuine mail
   replayed with an extra ``To:`` on top still carries a valid signature.
2. Does the mail claim to come from Meta at all? Its From domain is one of the
   configured Meta domains (or below one), or it pretends to be: a lookalike
   domain (``facebookmail.corn``, ``xn--nstagram-shh.com``, ``metaprivacycenter.com``),
   a display name that claims Meta's service ("Facebook Privacy", "Meta
   Datenschutz", "F a c e b o o k"), or a Meta address hidden in the display
   name. Pretending is ``suspicious`` straight away. Naming a brand is not:
   "Meta Schmidt" is a person and "Heise: Meta & Facebook News" a newsletter;
   a display name claims Meta with a service word, or as a brand nobody is
   named after standing alone ("Instagram").
3. For a real Meta From domain: what did the person's own mail server find?
   It wrote an ``Authentication-Results`` header (RFC 8601) on arrival. We read
   the topmost one, which is the last server's, or the topmost written by the
   configured ``trusted_authserv_id``; headers further down may come from the
   sender and prove nothing.
4. In that header, DMARC decides when it says pass or fail (it already
   combines DKIM and SPF with alignment); a pass counts only for the From
   domain named in its ``header.from``. Without a DMARC verdict, a passing
   DKIM signature of a Meta domain aligned with the From domain is enough, and
   a failing one is suspicious. When the same method is reported twice with
   different results, fail wins. A header that does not follow the grammar
   proves nothing in Meta's favour. Anything else leaves the mail unverified.

Look-alike letters are undone with Unicode's confusables data (UTS #39, from
the ``confusable-homoglyphs`` package): Cyrillic "а" and Greek "ο" compare as
Latin "a" and "o", "m" as "rn". A few typing tricks that the Unicode table does
not list ("3" for "e", "vv" for "w", lower-case "l" for "I") are added here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from tracker.config import AuthenticitySettings
from tracker.parse import ParsedMail

# Labels: short, stable words for the report, the JSON output and the database.
DKIM_PASS = "dkim-pass"
DMARC_PASS = "dmarc-pass"
DKIM_FAIL = "dkim-fail"
DMARC_FAIL = "dmarc-fail"
UNVERIFIED = "unverified"
LOOKALIKE_DOMAIN = "lookalike-domain"
BRAND_DISPLAY_NAME = "brand-display-name"
ADDRESS_IN_DISPLAY_NAME = "address-in-display-name"
REPEATED_FROM = "repeated-from"
REPEATED_HEADERS = "repeated-headers"
NOT_META = "not-meta"

# Headers a mail has once (RFC 5322 3.6). A second copy is how a genuine,
# signed Meta mail is replayed to somebody else: DKIM signs the bottom-most copy,
# mail programs show the topmost.
SINGLE_HEADERS = ("from", "to", "date", "subject")

# --- brands and service words -------------------------------------------------

# Brand words long and distinctive enough to count anywhere inside a domain
# label or a word ("myfacebookhelp.net", "faceb00k-mail.com", "FacebookSecurity").
_LONG_BRANDS = ("facebook", "instagram", "whatsapp")
# Short brand words count only as a whole word or joined to a service word:
# "meta-privacy.com", "metaprivacycenter.com" and "fbmail-security.com" yes,
# "metallica.com", "metadata.org" and "fbi.gov" no.
_SHORT_BRANDS = ("meta", "fb")
# Nobody is called "Facebook"; "Meta" is a common first name and "FB" initials,
# so those two need a service word next to them in a display name.
_BRANDS_ALONE = frozenset(_LONG_BRANDS)

# Words with which a display name claims to be Meta's service, in the languages
# Meta writes in. Compared after folding (accents, look-alike letters).
_SERVICE_WORDS = """
    privacy security secure safety support help helpdesk helpcenter center centre team teams
    service services customer care account accounts notification notifications notify alert
    alerts noreply reply verification verify verified confirm confirmation login signin admin
    administrator official legal compliance policy policies appeal appeals
    integrity community standards copyright billing payments pay ads business protection
    gdpr dpo department desk office operations trust abuse moderation mail
    platforms inc ltd limited ireland llc dataprotection infosec
    datenschutz sicherheit kundendienst kundenservice hilfe hilfebereich konto konten
    benachrichtigung benachrichtigungen uberprufung bestatigung rechtsabteilung dsgvo
    confidentialite securite assistance aide equipe compte verification juridique rgpd
    privacidad seguridad soporte ayuda equipo servicio cuenta verificacion atencion
    sicurezza assistenza supporto aiuto squadra servizio verifica protezione riservatezza
    beveiliging veiligheid ondersteuning hulp klantenservice verificatie gegevensbescherming avg
    prywatnosc bezpieczenstwo wsparcie pomoc zespol obsluga weryfikacja ochrona rodo
    privacidade seguranca suporte ajuda equipa servico conta verificacao protecao
    integritet sakerhet hjalp kundtjanst dataskydd privatliv sikkerhed databeskyttelse
    personvern sikkerhet hjelp kundeservice tietosuoja turvallisuus tietoturva tuki
    asiakaspalvelu tili yksityisyys soukromi zabezpeceni bezpecnost podpora ucet sukromie
    confidentialitate securitate asistenta suport ajutor echipa cont protectia
    adatvedelem biztonsag ugyfelszolgalat tamogatas segitseg fiok
    privatnost sigurnost podrska zasebnost varnost privatumas saugumas pagalba privatums
    drosiba atbalsts privaatsus turvalisus tugi personuvernd oryggi hjalp adstod
    privatezza sigurta appogg slandail tacaiocht
    απορρητο ασφαλεια υποστηριξη βοηθεια ομαδα λογαριασμος προστασια
    поверителност сигурност поддръжка помощ екип акаунт защита
""".split()

# Marks that separate the parts of a display name: "Heise Security: Meta News"
# is two parts, and a brand and a service word must share one to count.
_NAME_PARTS = re.compile(r"\s[-–—]\s|[:|/,;•·()\[\]<>\"“”«»–—]")
# Words of a display name: signs that stand for letters ("F@cebook", "Inst4gr4m") stay inside.
_WORD = re.compile(r"[^\s\-–—_.,:;/()\[\]<>\"'“”«»•·&+*~#=?]+")
_NOT_LETTER = re.compile(r"[\W_]+")
_DOMAIN_IN_TEXT = re.compile(r"(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}")

# Organisational domains that have three labels (a public suffix of two labels).
# Enough for alignment checks between Meta's domains and their lookalikes; the
# full Public Suffix List would be a dependency for no gain here.
_TWO_LABEL_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "com.au", "net.au", "org.au", "co.nz", "co.jp",
    "com.br", "com.mx", "com.ar", "com.tr", "co.in", "co.za", "com.pl", "com.es", "com.cn",
})

# Beyond this many characters a display name or domain is not looked at further:
# mail programs do not show more, and it keeps hostile input cheap.
_MAX_NAME = 512


@dataclass(frozen=True)
class AuthVerdict:
    """What the tracker believes about a mail's sender."""

    is_meta_sender: bool        # the From domain is a configured Meta domain
    authenticated: bool | None  # True: proven; False: proven false; None: no usable evidence
    suspicious: bool            # pretends to be Meta, or Meta's domain failed authentication
    label: str                  # one of the labels above, e.g. "dkim-pass"
    reason: str                 # one sentence for a person
    held: str | None = None     # why a mail from a Meta domain must be reviewed by the person

    @property
    def concerns_meta(self) -> bool:
        """The mail is from Meta or pretends to be: the rules have to look at it."""
        return self.is_meta_sender or self.suspicious


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` entry of an Authentication-Results header."""

    method: str                      # "dkim", "dmarc", "spf", ...
    result: str                      # "pass", "fail", "none", ...
    properties: dict[str, str]       # "header.d" -> "facebookmail.com", ...


@dataclass(frozen=True)
class AuthenticationResults:
    authserv_id: str
    results: tuple[MethodResult, ...]
    problem: str | None = None   # where the header breaks RFC 8601; then no pass counts

    def of(self, method: str) -> list[MethodResult]:
        return [r for r in self.results if r.method == method]


# --- folding look-alike letters -----------------------------------------------

@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Character -> the ASCII text it is confusable with, from Unicode's confusables.txt.

    The package's table lists, for a character that imitates another, that one
    prototype; for a prototype, everything that imitates it. Only the first kind
    is wanted, followed until it reaches ASCII ("ʜ" -> Cyrillic "н" -> "H").
    """
    from confusable_homoglyphs.confusables import confusables_data

    def single(char: str) -> str | None:
        entries = confusables_data.get(char)
        if not entries or len(entries) != 1:
            return None
        return entries[0]["c"].replace("\u200e", "")

    table: dict[str, str] = {}
    for char in confusables_data:
        if len(char) != 1:
            continue
        target = single(char)
        for _ in range(3):
            if target is None or target.isascii():
                break
            target = single(target) if len(target) == 1 else None
        if not target or not target.isascii():
            continue
        if char.isascii() and not target.isalpha():
            continue  # '"' -> "''" and the like: punctuation that does not spell brands
        table[char] = target
    return table


# Typing tricks beyond Unicode's table: digits and signs for letters, "vv" for
# "w", and lower-case "l", "i" and "!" all read as the same stroke ("lnstagrarn").
_LEET = str.maketrans("3457$@!i", "eastsall")


@lru_cache(maxsize=8192)
def fold(text: str) -> str:
    """``text`` as it looks: accents dropped, look-alike letters replaced, lower case.

    Both sides of every comparison are folded, so the target words change too:
    "instagram" folds to "lnstagrarn", and so does "Іnstagrаm" in Cyrillic.
    """
    table = _prototypes()
    text = unicodedata.normalize("NFKD", text[:_MAX_NAME])
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = "".join(table.get(char, char) if not char.isascii() else char for char in text)
    text = "".join(table.get(char, char) if char in "01m|" else char for char in text.lower())
    return text.lower().translate(_LEET).replace("vv", "w")


def _decode_label(label: str) -> str:
    """A punycode label (``xn--...``) as the Unicode a mail program shows."""
    if label.startswith("xn--") and len(label) <= 63:
        try:
            return label[4:].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            return label
    return label


def _fold_domain(domain: str) -> str:
    labels = domain.lower().rstrip(".")[:_MAX_NAME].split(".")
    return ".".join(fold(_decode_label(label)) for label in labels)


_FOLDED_SERVICE_WORDS = frozenset(fold(word) for word in _SERVICE_WORDS)
_FOLDED_LONG_BRANDS = {fold(brand): brand for brand in _LONG_BRANDS}
_FOLDED_SHORT_BRANDS = {fold(brand): brand for brand in _SHORT_BRANDS}
# Domain labels also join a brand to these ("fbmail-security.com", "metamailer.net").
_FOLDED_DOMAIN_WORDS = _FOLDED_SERVICE_WORDS | {fold(word) for word in ("mail", "mailer", "email", "msg")}
_LONGEST_DOMAIN_WORD = max(map(len, _FOLDED_DOMAIN_WORDS))


@lru_cache(maxsize=4096)
def _service_words_only(text: str) -> bool:
    """``text`` is nothing but service words run together: "privacycenter", "mailsecurity"."""
    if not text:
        return False
    reachable = [True] + [False] * len(text)
    for start in range(len(text)):
        if not reachable[start]:
            continue
        for stop in range(start + 2, min(len(text), start + _LONGEST_DOMAIN_WORD) + 1):
            if text[start:stop] in _FOLDED_DOMAIN_WORDS:
                reachable[stop] = True
    return reachable[-1]


@lru_cache(maxsize=64)
def _brands(meta_domains: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """The brand words that apply: "whatsapp" only once whatsapp.com is a Meta domain."""
    def configured(brand: str) -> bool:
        return brand in _SHORT_BRANDS or brand in ("facebook", "instagram") or any(
            brand in domain for domain in meta_domains)
    long = {folded: brand for folded, brand in _FOLDED_LONG_BRANDS.items() if configured(brand)}
    return long, dict(_FOLDED_SHORT_BRANDS)


# --- domains -----------------------------------------------------------------

def is_meta_domain(domain: str, meta_domains: Iterable[str]) -> bool:
    """True for a Meta domain or one below it; ``evilfacebookmail.com`` is not below ``facebookmail.com``."""
    domain = domain.lower().rstrip(".")
    return any(domain == meta or domain.endswith("." + meta) for meta in meta_domains)


def organisational_domain(domain: str) -> str:
    """The registrable part of a domain: ``em.facebookmail.com`` -> ``facebookmail.com``."""
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if ".".join(labels[-2:]) in _TWO_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance counting an adjacent swap as one edit; gives up past ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before_previous: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], before_previous[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before_previous, previous = previous, current
    return previous[-1]


def _imitated_domain(candidate: str, meta_domains: tuple[str, ...]) -> str | None:
    labels = candidate.split(".")
    for meta in meta_domains:
        meta_labels = meta.split(".")
        # Short Meta domains ("fb.com", "meta.com") are one typo away from too
        # many honest domains ("ft.com"); the brand-word test covers them.
        if len(meta_labels[0]) < 6:
            continue
        tail = ".".join(labels[-len(meta_labels):])
        limit = 2 if len(meta) >= 14 else 1
        if _edit_distance(tail, _fold_domain(meta), limit) <= limit:
            return meta
    return None


def _joined_to_service_word(word: str, brand: str) -> bool:
    """``word`` is ``brand`` run together with service words: "metaprivacycenter", "fbmail", "supportfb"."""
    if word.startswith(brand) and _service_words_only(word[len(brand):]):
        return True
    return word.endswith(brand) and _service_words_only(word[:-len(brand)])


def _brand_in_domain(candidate: str, meta_domains: tuple[str, ...]) -> str | None:
    long_brands, short_brands = _brands(meta_domains)
    for label in candidate.split("."):
        joined = label.replace("-", "").replace("_", "")
        for folded, brand in long_brands.items():
            if folded in joined:
                return brand
        for word in (*re.split(r"[-_]+", label), joined):
            for folded, brand in short_brands.items():
                if word == folded or _joined_to_service_word(word, folded):
                    return brand
    return None


def lookalike_of(domain: str, meta_domains: Iterable[str]) -> str | None:
    """What a non-Meta ``domain`` imitates (a Meta domain or brand word), or None.

    Two signs, after punycode is decoded and look-alike letters are folded: a
    domain a couple of typing errors away from a Meta domain (``facebookmail.corn``,
    ``facebookmai1.com``, ``fаcebookmail.com`` with a Cyrillic "а"), or a brand word
    inside it (``instagram-support.net``, ``meta-privacy.com``, ``metaprivacycenter.com``).
    """
    return _lookalike(domain.lower().rstrip("."), tuple(meta_domains))


@lru_cache(maxsize=4096)
def _lookalike(domain: str, meta_domains: tuple[str, ...]) -> str | None:
    # A mailbox has few distinct sender domains, and the edit distance is the
    # costliest test run on every ordinary mail: remember the answers.
    if not domain:
        return None
    candidate = _fold_domain(domain)
    return _imitated_domain(candidate, meta_domains) or _brand_in_domain(candidate, meta_domains)


# --- display names ------------------------------------------------------------

def _words(part: str) -> list[str]:
    """The folded words of a display name part, with spaced-out letters joined ("F a c e b o o k")."""
    words: list[str] = []
    letters: list[str] = []
    for word in _WORD.findall(part):
        if len(word) == 1:
            letters.append(word)
            continue
        if letters:
            words.append("".join(letters))
            letters = []
        words.append(word)
    if letters:
        words.append("".join(letters))
    folded = (_NOT_LETTER.sub("", fold(word)) for word in words)
    return [word for word in folded if word]


def _brand_of_word(word: str, long_brands: dict[str, str], short_brands: dict[str, str]) -> tuple[str | None, bool]:
    """(brand named by ``word``, whether the word also carries a service word: "facebooksecurity")."""
    for folded, brand in long_brands.items():
        if folded in word:
            return brand, word != folded and _joined_to_service_word(word, folded)
    for folded, brand in short_brands.items():
        if word == folded:
            return brand, False
        if _joined_to_service_word(word, folded):
            return brand, True
    return None, False


def display_name_claim(name: str, meta_domains: Iterable[str] = ("facebook.com", "instagram.com")) -> str | None:
    """How a display name claims to be Meta's service, as a short phrase, or None.

    "Facebook Privacy", "Meta Datenschutz", "Équipe de sécurité Instagram" and a
    brand alone ("Instagram", "F a c e b o o k") claim it. "Meta Schmidt" (a first
    name), "Heise: Meta & Facebook News" and "Metallica Fanclub" do not.
    """
    return _display_name_claim(name[:_MAX_NAME], tuple(meta_domains))


# Words that may stand next to a brand without changing what it claims: "Facebook Inc", "The Instagram app".
_FILLER = frozenset(fold(word) for word in ("the", "official", "app", "at", "of", "for", "from", "by", "and",
                                             "de", "du", "des", "la", "le", "der", "die", "das", "von", "van",
                                             "del", "di", "da", "do", "dla", "och", "og", "en"))


@lru_cache(maxsize=4096)
def _display_name_claim(name: str, meta_domains: tuple[str, ...]) -> str | None:
    long_brands, short_brands = _brands(meta_domains)
    parts = []   # (text, brands, service words, other words) of each part of the name
    for text in _NAME_PARTS.split(name):
        brands, services, others = [], 0, 0
        for word in _words(text):
            brand, joined = _brand_of_word(word, long_brands, short_brands)
            if brand:
                brands.append(brand)
                services += joined
            elif word in _FOLDED_SERVICE_WORDS:
                services += 1
            elif word not in _FILLER:
                others += 1
        if brands or services or others:
            parts.append((" ".join(text.split()), brands, services, others))

    # A brand and a service word in one part: "Facebook Privacy", "Équipe sécurité Meta".
    for text, brands, services, _ in parts:
        if brands and services:
            return f"{text[:80]!r} names {brands[0].title()} with a service word"
    # ... or in neighbouring parts that say nothing else: "Facebook (Security)", "Meta | Support".
    pure_brand = [brands for _, brands, services, others in parts if brands and not others]
    pure_service = [text for text, brands, services, others in parts if services and not brands and not others]
    if pure_brand and pure_service:
        return f"{pure_brand[0][0].title()} with {pure_service[0][:40]!r}"
    # A brand nobody is named after, standing alone: "Instagram", "F a c e b o o k".
    # "Meta" alone may be a person's first name and is left to the domain test.
    if len(parts) == len(pure_brand) and not pure_service:
        alone = [brand for brands in pure_brand for brand in brands if brand in _BRANDS_ALONE]
        if alone:
            return f"the brand name {alone[0].title()} alone"
    return None


def _meta_address_in(text: str, actual_address: str, meta_domains: tuple[str, ...]) -> str | None:
    """A Meta address (or a lookalike's) written into a display name or comment, or a bare Meta domain.

    The sender hides behind it: ``"Facebook <security@facebookmail.com>" <x@evil.example>``.
    A bare word with a dot is not enough unless it is a Meta domain: "meta.schmidt" is a name.
    """
    actual = actual_address.lower()
    text = text[:_MAX_NAME].lower()
    for found in _DOMAIN_IN_TEXT.finditer(text):
        domain = found.group(0).strip(".")
        if actual.endswith("@" + domain):
            continue   # '"anna@example.org" <anna@example.org>' is only the address twice
        is_address = found.start() > 0 and text[found.start() - 1] == "@"
        if is_meta_domain(domain, meta_domains) or (is_address and lookalike_of(domain, meta_domains)):
            return domain
    return None


# --- Authentication-Results ---------------------------------------------------
#
# RFC 8601 in one pass over the text: tokens are words, quoted strings, "=" and
# ";"; comments (nested, with quoted pairs) and white space only separate them.
# Each step is a regular expression match at a position that consumes what it
# matched, so a header of any size is read in linear time.

_TOKEN = re.compile(
    r'(\s+)'                                     # 1 white space
    r'|([^\s;()"=\\]+)'                          # 2 a word: token, dot-atom, keyword
    r'|(;)|(=)'                                  # 3, 4
    r'|"([^"\\]*+(?:\\.[^"\\]*+)*+)"'            # 5 a quoted string
    r'|(\([^()\\]*+(?:\\.[^()\\]*+)*+\))'        # 6 a comment with no comment inside
    r'|(.)', re.S)                               # 7 "(" of a nested comment, or a stray '"', ")", "\"
_COMMENT_PART = re.compile(r"[^()\\]+|\\.?|[()]", re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_KEYWORD = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_PROPERTY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.[a-z0-9][a-z0-9_-]*\Z")
_DIGITS = re.compile(r"\d+\Z")

# Token kinds; a token is (kind, text, spaced): spaced when white space or a
# comment stands before it. A quoted string's text is its content.
_WORD_TOKEN, _QUOTED, _EQ, _SEMI = "word", "quoted", "=", ";"


def _tokenize(text: str) -> tuple[list[tuple[str, str, bool]], str | None]:
    """The tokens of an Authentication-Results value and the first grammar problem met."""
    tokens: list[tuple[str, str, bool]] = []
    append, match = tokens.append, _TOKEN.match
    problem: str | None = None
    position, end, spaced = 0, len(text), True
    while position < end:
        found = match(text, position)
        group, position = found.lastindex, found.end()
        if group == 2:
            append((_WORD_TOKEN, found.group(2), spaced))
            spaced = False
        elif group == 1 or group == 6:
            spaced = True
        elif group == 3:
            append((_SEMI, ";", spaced))
            spaced = False
        elif group == 4:
            append((_EQ, "=", spaced))
            spaced = False
        elif group == 5:
            content = found.group(5)
            append((_QUOTED, _QUOTED_PAIR.sub(r"\1", content) if "\\" in content else content, spaced))
            spaced = False
        else:
            char = found.group(7)
            if char == "(":   # a comment with comments inside: count the depth
                depth = 1
                while depth and position < end:
                    part = _COMMENT_PART.match(text, position)
                    position = part.end()
                    if part.group(0) == "(":
                        depth += 1
                    elif part.group(0) == ")":
                        depth -= 1
                if depth:
                    problem = problem or "a comment is not closed"
            elif char == '"':
                problem = problem or "a quoted string is not closed"
                position = end   # what follows is inside the string
            elif char == ")":
                problem = problem or "a ')' closes no comment"
            else:
                problem = problem or "a '\\' stands outside a quoted string"
            spaced = True
    return tokens, problem


def _joined_words(tokens: list[tuple[str, str, bool]], start: int) -> tuple[str, int]:
    """Consecutive words from ``start`` joined ("header" "." "from" -> "header.from"), and the next index."""
    index = start
    while index < len(tokens) and tokens[index][0] == _WORD_TOKEN:
        index += 1
    return "".join(token[1] for token in tokens[start:index]), index


def _read_resinfo(tokens: list[tuple[str, str, bool]]) -> tuple[MethodResult | None, str | None]:
    """One ``method=result [reason=...] [ptype.property=value ...]`` between semicolons."""
    if not tokens or (len(tokens) == 1 and tokens[0][1] == "none" and tokens[0][0] == _WORD_TOKEN):
        return None, None  # ";;", a trailing ";" or "none": nothing said
    method, index = _joined_words(tokens, 0)
    method = method.partition("/")[0]
    if not _KEYWORD.match(method) or index >= len(tokens) or tokens[index][0] != _EQ:
        return None, f"'{(method or tokens[0][1])[:40]}' is not 'method=result'"
    index += 1
    if index >= len(tokens) or tokens[index][0] != _WORD_TOKEN or not _KEYWORD.match(tokens[index][1]):
        return None, f"{method} has no result"
    result = tokens[index][1]
    index += 1
    properties: dict[str, str] = {}
    problem = None
    while index < len(tokens):
        if not tokens[index][2]:
            problem = problem or f"{method}={result} runs into '{tokens[index][1][:40]}'"
        key, index = _joined_words(tokens, index)
        if not key:
            problem = problem or f"{method}={result} is followed by '{tokens[index][1][:40]}'"
            index += 1
            continue
        if index >= len(tokens) or tokens[index][0] != _EQ:
            problem = problem or f"{method}={result} is followed by '{key[:40]}'"
            continue
        index += 1
        # The value: what follows "=" up to the next white space, comment or ";",
        # so '"x;dmarc=pass"@evil.example' is one value, never a second result.
        first = index
        while index < len(tokens) and (index == first or not tokens[index][2]):
            index += 1
        value_tokens = tokens[first:index]
        if len(value_tokens) == 1 and value_tokens[0][0] == _QUOTED:
            value = value_tokens[0][1]
        else:
            value = "".join(f'"{text}"' if kind == _QUOTED else text for kind, text, _ in value_tokens)
        if "." in key and not _PROPERTY_NAME.match(key):
            problem = problem or f"'{key[:40]}' is not a property name"
            continue
        if key in properties and properties[key] != value:
            problem = problem or f"{method} gives {key} twice"
        properties.setdefault(key, value)
    return MethodResult(method, result, properties), problem


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """Parse one header value by the grammar of RFC 8601; None when it names no server and no result.

    ``mx.example.org; dkim=pass header.d=facebookmail.com; dmarc=pass header.from=facebookmail.com``

    Quoted strings and comments are honoured, so a ``;`` or ``dmarc=pass``
    inside them is text, not a result. Where the header breaks the grammar
    (an unclosed comment, a ``)`` that closes nothing, words where a property
    should be), :attr:`AuthenticationResults.problem` says so. Microsoft's
    servers leave out the authserv-id and start with the first result; such a
    header is read with an empty authserv-id.
    """
    tokens, problem = _tokenize(value.lower())
    groups: list[list[tuple[str, str, bool]]] = []
    start = 0
    for index, token in enumerate(tokens):
        if token[0] == _SEMI:
            groups.append(tokens[start:index])
            start = index + 1
    groups.append(tokens[start:])
    head = groups[0]
    authserv_id = ""
    if len(head) >= 2 and head[0][0] == _WORD_TOKEN and head[1][0] == _EQ:
        pass   # no authserv-id: the first group is already a result
    elif not head or head[0][0] not in (_WORD_TOKEN, _QUOTED):
        return None
    else:
        authserv_id = head[0][1]
        if len(head) > 2 or (len(head) == 2 and not (head[1][0] == _WORD_TOKEN and _DIGITS.match(head[1][1]))):
            problem = problem or "text follows the authserv-id"
        groups = groups[1:]
    results = []
    for group in groups:
        result, group_problem = _read_resinfo(group)
        problem = problem or group_problem
        if result is not None:
            results.append(result)
    if not authserv_id and not results:
        return None
    return AuthenticationResults(authserv_id=authserv_id, results=tuple(results), problem=problem)


def choose_authentication_results(values: Iterable[str], trusted_authserv_id: str | None) -> AuthenticationResults | None:
    """The header to believe: the topmost, or the topmost from the trusted server."""
    for value in values:
        parsed = parse_authentication_results(value)
        if parsed is None:
            continue
        if trusted_authserv_id is None or parsed.authserv_id == trusted_authserv_id.lower():
            return parsed
        # A header from another server: with a trusted server configured,
        # it may have been written by anybody, so keep looking.
    return None


def _aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment: both domains have the same organisational domain."""
    return organisational_domain(signing_domain) == organisational_domain(from_domain)


def _domain_property(result: MethodResult, *names: str) -> str | None:
    """A domain named by a property (the part after "@" of an identity), or None."""
    for name in names:
        value = result.properties.get(name)
        if value:
            return value.rpartition("@")[2].strip('"').rstrip(".")
    return None


def _verdict_from_results(header: AuthenticationResults, from_domain: str,
                          meta_domains: tuple[str, ...]) -> AuthVerdict:
    server = header.authserv_id
    # A header that breaks the grammar may carry words a sender smuggled in
    # (a ")" in an address that the server copied into a comment): a failure in
    # it still counts, a pass does not.
    broken = f" Its header from {server} does not follow RFC 8601 ({header.problem}), so no pass in it counts." \
        if header.problem else ""

    dmarc_results = [(r, _domain_property(r, "header.from")) for r in header.of("dmarc")]
    if any(r.result == "fail" and named in (None, from_domain) for r, named in dmarc_results):
        return _meta(False, DMARC_FAIL,
                     f"DMARC failed for {from_domain} ({server}): the mail only claims to be from Meta.")
    about_from = [r.result for r, named in dmarc_results if named == from_domain]
    if about_from and "pass" in about_from:
        if set(about_from) != {"pass"}:
            return _meta(None, UNVERIFIED, f"{server} gives conflicting DMARC results for {from_domain} "
                                           f"({', '.join(dict.fromkeys(about_from))}).")
        if not header.problem:
            return _meta(True, DMARC_PASS, f"DMARC passed for {from_domain} ({server}).")

    dkim_results = [(r, _domain_property(r, "header.d", "header.i")) for r in header.of("dkim")]
    for dkim, signer in dkim_results:
        # A broken signature of some mailing list says nothing about Meta;
        # a broken one of the From domain (or one that names no domain) does,
        # even next to a passing one: fail wins.
        if dkim.result == "fail" and (not signer or _aligned(signer, from_domain)):
            return _meta(False, DKIM_FAIL,
                         f"DKIM signature of {signer or from_domain} failed ({server}): "
                         "the mail only claims to be from Meta.")
    if not header.problem:
        for dkim, signer in dkim_results:
            if (dkim.result == "pass" and signer and _aligned(signer, from_domain)
                    and is_meta_domain(signer, meta_domains)):
                return _meta(True, DKIM_PASS, f"DKIM signature of {signer} verified by {server}.")
    unnamed = " (a DMARC pass that names no header.from proves nothing)" if any(
        r.result == "pass" and named is None for r, named in dmarc_results) else ""
    return _meta(None, UNVERIFIED, f"{server} found no passing DKIM or DMARC result for {from_domain}{unnamed}.{broken}")


def _meta(authenticated: bool | None, label: str, reason: str) -> AuthVerdict:
    return AuthVerdict(is_meta_sender=True, authenticated=authenticated,
                       suspicious=authenticated is False, label=label, reason=reason)


# --- the verdict ---------------------------------------------------------------

def _pretends(name: str, address: str, domain: str, meta_domains: tuple[str, ...],
              header_text: str = "") -> tuple[str, str] | None:
    """(label, reason) when a sender that is not Meta's pretends to be, else None."""
    imitated = lookalike_of(domain, meta_domains) if domain else None
    if imitated:
        return LOOKALIKE_DOMAIN, f"Sender domain {domain} imitates {imitated} but is not a Meta domain."
    hidden = _meta_address_in(name, address, meta_domains) or (
        _meta_address_in(header_text, address, meta_domains) if header_text else None)
    if hidden:
        return ADDRESS_IN_DISPLAY_NAME, (f"The From header shows {hidden} in the display name, "
                                         f"but the mail comes from {address or '(no address)'}.")
    claim = _display_name_claim(name[:_MAX_NAME], meta_domains) if name else None
    if claim:
        return BRAND_DISPLAY_NAME, (f"Display name {name[:80]!r} claims to be Meta ({claim}), "
                                    f"but the sender domain {domain or '(none)'} is not Meta's.")
    return None


def _senders(mail: ParsedMail) -> tuple[tuple[str, str], ...]:
    if mail.senders:
        return mail.senders
    return ((mail.sender_name, mail.sender_address),) if (mail.sender_name or mail.sender_address) else ()


def _repeated(mail: ParsedMail) -> dict[str, int]:
    counts = mail.header_counts or {}
    return {name: counts[name] for name in SINGLE_HEADERS if counts.get(name, 0) > 1}


def _header_names(repeated: dict[str, int]) -> str:
    names = {"from": "From", "to": "To", "date": "Date", "subject": "Subject"}
    return " and ".join(f"{count} {names[name]} headers" for name, count in repeated.items())


def check_authenticity(mail: ParsedMail, settings: AuthenticitySettings) -> AuthVerdict:
    """The verdict for one mail. Cheap for non-Meta senders: no header parsing."""
    meta_domains = tuple(settings.meta_domains)
    repeated = _repeated(mail)
    senders = _senders(mail)

    if len(senders) > 1 or "from" in repeated:
        # Which From a mail program shows is anybody's guess; Meta sends one.
        for name, address in senders:
            domain = address.rpartition("@")[2].rstrip(".")
            if is_meta_domain(domain, meta_domains):
                claim = f"{address} is a Meta address"
            else:
                pretence = _pretends(name, address, domain, meta_domains)
                claim = pretence[1] if pretence else None
            if claim:
                count = max(len(senders), repeated.get("from", 1))
                return AuthVerdict(False, False, True, REPEATED_FROM,
                                   f"The mail has {count} senders in its From headers and one claims Meta "
                                   f"({claim.rstrip('.')}); Meta's mails have one sender.")
        return AuthVerdict(False, None, False, NOT_META,
                           "The mail has several senders in its From headers, none of them Meta.")

    verdict = _single_sender_verdict(mail, settings, meta_domains)
    others = {name: count for name, count in repeated.items() if name != "from"}
    if others and verdict.is_meta_sender and not verdict.suspicious:
        held = (f"The mail has {_header_names(others)}, which Meta's mails never have: "
                "it may be a genuine mail replayed to another address.")
        return AuthVerdict(True, None, False, REPEATED_HEADERS, f"{held} ({verdict.reason})", held=held)
    return verdict


def _single_sender_verdict(mail: ParsedMail, settings: AuthenticitySettings,
                           meta_domains: tuple[str, ...]) -> AuthVerdict:
    domain = mail.sender_domain.lower().rstrip(".")

    if not is_meta_domain(domain, meta_domains):
        header_text = mail.from_headers[0] if mail.from_headers else ""
        pretence = _pretends(mail.sender_name, mail.sender_address, domain, meta_domains, header_text)
        if pretence:
            return AuthVerdict(False, False, True, *pretence)
        return AuthVerdict(False, None, False, NOT_META, f"Sender domain {domain or '(none)'} is not a Meta domain.")

    if mail.dkim_verified_domains is not None:
        # The original of a forward: the tracker checked its signatures itself. Authentication-Results
        # inside it were written by a server it does not know, or by the forwarder: they prove nothing.
        for signer in mail.dkim_verified_domains:
            if _aligned(signer, domain) and is_meta_domain(signer, meta_domains):
                return _meta(True, DKIM_PASS, f"DKIM signature of {signer} verified by the tracker "
                                              "(the original attached to a forward).")
        return _meta(None, UNVERIFIED, f"{domain} is a Meta domain, but no DKIM signature of it verified "
                                       "(the original attached to a forward).")

    header = choose_authentication_results(mail.auth_results, settings.trusted_authserv_id)
    if header is None:
        if settings.trusted_authserv_id and mail.auth_results:
            why = f"no Authentication-Results header from the trusted server {settings.trusted_authserv_id}"
        else:
            why = "no Authentication-Results header"
        return _meta(None, UNVERIFIED, f"{domain} is a Meta domain, but the mail has {why} to prove it.")
    return _verdict_from_results(header, domain, meta_domains)
