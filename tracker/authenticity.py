"""Is a mail really from Meta? A verdict from the sender and Authentication-Results.

Pure: works on a :class:`~tracker.parse.ParsedMail` and the settings, no I/O.

Three questions, in this order:

1. Does the mail claim to come from Meta at all? Its From domain is one of the
   configured Meta domains (or below one), or it pretends to be: a lookalike
   domain (``facebookmail.corn``, ``instagram-support.net``) or a display name
   such as "Facebook Privacy" on somebody else's domain. Pretending is
   ``suspicious`` straight away.
2. For a real Meta From domain: what did the person's own mail server find?
   It wrote an ``Authentication-Results`` header (RFC 8601) on arrival. We read
   the topmost one, which is the last server's, or the topmost written by the
   configured ``trusted_authserv_id``; headers further down may come from the
   sender and prove nothing.
3. In that header, DMARC decides when it says pass or fail (it already
   combines DKIM and SPF with alignment). Without a DMARC verdict, a passing
   DKIM signature of a Meta domain aligned with the From domain is enough, and a
   failing one is suspicious. Anything else leaves the mail unverified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from tracker.config import AuthenticitySettings
from tracker.parse import ParsedMail
from tracker.text import normalise

# Labels: short, stable words for the report, the JSON output and the database.
DKIM_PASS = "dkim-pass"
DMARC_PASS = "dmarc-pass"
DKIM_FAIL = "dkim-fail"
DMARC_FAIL = "dmarc-fail"
UNVERIFIED = "unverified"
LOOKALIKE_DOMAIN = "lookalike-domain"
BRAND_DISPLAY_NAME = "brand-display-name"
NOT_META = "not-meta"

# Brand words long and distinctive enough to count anywhere inside a domain
# label ("myfacebookhelp.net", "faceb00k-mail.com").
_LONG_BRANDS = ("facebook", "instagram")
# Short brand words count only as a whole word: "meta-privacy.com" and
# "fb-security.net" yes, "metallica.com" and "fbi.gov" no.
_SHORT_BRANDS = frozenset({"meta", "fb"})
# The same for display names; "fb" is left out there because people's own
# names and initials make it too common.
_DISPLAY_NAME_BRANDS = re.compile(r"facebook|instagram|\bmeta\b")

# Characters that phishers swap for letters that look alike. Undone before
# comparing, so "faceb00k" and "facebookmail.corn" look like what they imitate.
# "1" stands for "l" as often as for "i", so both readings are tried.
_LOOKALIKE_SEQUENCES = (("rn", "m"), ("vv", "w"))
_LOOKALIKE_CHARACTERS = str.maketrans("03457$@", "oeastsa")

# Organisational domains that have three labels (a public suffix of two labels).
# Enough for alignment checks between Meta's domains and their lookalikes; the
# full Public Suffix List would be a dependency for no gain here.
_TWO_LABEL_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "com.au", "net.au", "org.au", "co.nz", "co.jp",
    "com.br", "com.mx", "com.ar", "com.tr", "co.in", "co.za", "com.pl", "com.es", "com.cn",
})

_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^([a-z0-9_-]+)(?:/\d+)?\s*=\s*([a-z]+)\b(.*)$", re.S)
_PROPERTY = re.compile(r'([a-z0-9_-]+\.[a-z0-9_-]+)\s*=\s*("[^"]*"|[^\s;]+)')


@dataclass(frozen=True)
class AuthVerdict:
    """What the tracker believes about a mail's sender."""

    is_meta_sender: bool        # the From domain is a configured Meta domain
    authenticated: bool | None  # True: proven; False: proven false; None: no usable evidence
    suspicious: bool            # pretends to be Meta, or Meta's domain failed authentication
    label: str                  # one of the labels above, e.g. "dkim-pass"
    reason: str                 # one sentence for a person

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

    def of(self, method: str) -> list[MethodResult]:
        return [r for r in self.results if r.method == method]


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


def _unmasked(text: str) -> tuple[str, ...]:
    """``text`` with the usual letter swaps undone, once reading "1" as "l" and once as "i"."""
    text = text.lower().translate(_LOOKALIKE_CHARACTERS)
    for lookalike, letter in _LOOKALIKE_SEQUENCES:
        text = text.replace(lookalike, letter)
    if "1" not in text:
        return (text,)
    return text.replace("1", "l"), text.replace("1", "i")


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


def _imitated_domain(candidate: str, meta_domains: Iterable[str]) -> str | None:
    labels = candidate.split(".")
    for meta in meta_domains:
        meta_labels = meta.split(".")
        # Short Meta domains ("fb.com", "meta.com") are one typo away from too
        # many honest domains ("ft.com"); the brand-word test covers them.
        if len(meta_labels[0]) < 6:
            continue
        tail = ".".join(labels[-len(meta_labels):])
        limit = 2 if len(meta) >= 14 else 1
        if _edit_distance(tail, meta, limit) <= limit:
            return meta
    return None


def _brand_in_domain(candidate: str) -> str | None:
    for label in candidate.split("."):
        for brand in _LONG_BRANDS:
            if brand in label.replace("-", ""):
                return brand
        for word in re.split(r"[^a-z]+", label):
            if word in _SHORT_BRANDS:
                return word
    return None


def lookalike_of(domain: str, meta_domains: Iterable[str]) -> str | None:
    """What a non-Meta ``domain`` imitates (a Meta domain or brand word), or None.

    Two signs: a domain a couple of typing errors or letter swaps away from a
    Meta domain (``facebookmail.corn``, ``facebookmai1.com``), or a brand word
    inside it (``instagram-support.net``, ``meta-privacy.com``, ``faceb00k-mail.com``).
    """
    return _lookalike(domain, tuple(meta_domains))


@lru_cache(maxsize=4096)
def _lookalike(domain: str, meta_domains: tuple[str, ...]) -> str | None:
    # A mailbox has few distinct sender domains, and the edit distance is the
    # costliest test run on every ordinary mail: remember the answers.
    for candidate in _unmasked(domain):
        imitated = _imitated_domain(candidate, meta_domains) or _brand_in_domain(candidate)
        if imitated:
            return imitated
    return None


def display_name_brand(name: str) -> str | None:
    """The Meta brand a display name claims ("Facebook Privacy", "Meta Support"), or None."""
    for candidate in _unmasked(normalise(name)):
        found = _DISPLAY_NAME_BRANDS.search(candidate)
        if found:
            return found.group(0)
    return None


# --- Authentication-Results ---------------------------------------------------

def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """Parse one header value; None when it has no authserv-id.

    ``mx.example.org; dkim=pass header.d=facebookmail.com; dmarc=pass header.from=facebookmail.com``
    """
    text = " ".join(value.split()).lower()
    while True:  # comments may nest: strip the innermost until none is left
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    parts = [part.strip() for part in text.split(";")]
    head = parts[0].split()
    if not head:
        return None
    results = []
    for part in parts[1:]:
        found = _RESULT.match(part)
        if not found:
            continue  # "none", or something we cannot read: not evidence either way
        method, result, rest = found.groups()
        properties = {key: raw.strip('"') for key, raw in _PROPERTY.findall(rest)}
        results.append(MethodResult(method, result, properties))
    return AuthenticationResults(authserv_id=head[0], results=tuple(results))


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


def _verdict_from_results(header: AuthenticationResults, from_domain: str,
                          meta_domains: tuple[str, ...]) -> AuthVerdict:
    for dmarc in header.of("dmarc"):
        header_from = dmarc.properties.get("header.from", from_domain)
        if header_from != from_domain:
            continue  # a verdict about some other From domain
        if dmarc.result == "pass":
            return _meta(True, DMARC_PASS, f"DMARC passed for {from_domain} ({header.authserv_id}).")
        if dmarc.result == "fail":
            return _meta(False, DMARC_FAIL,
                         f"DMARC failed for {from_domain} ({header.authserv_id}): the mail only claims to be from Meta.")

    dkim_results = header.of("dkim")
    for dkim in dkim_results:
        signer = dkim.properties.get("header.d") or dkim.properties.get("header.i", "").rpartition("@")[2]
        if (dkim.result == "pass" and signer and _aligned(signer, from_domain)
                and is_meta_domain(signer, meta_domains)):
            return _meta(True, DKIM_PASS, f"DKIM signature of {signer} verified by {header.authserv_id}.")
    for dkim in dkim_results:
        signer = dkim.properties.get("header.d") or dkim.properties.get("header.i", "").rpartition("@")[2]
        # A broken signature of some mailing list says nothing about Meta;
        # a broken one of the From domain (or one that names no domain) does.
        if dkim.result == "fail" and (not signer or _aligned(signer, from_domain)):
            return _meta(False, DKIM_FAIL,
                         f"DKIM signature of {signer or from_domain} failed ({header.authserv_id}): "
                         "the mail only claims to be from Meta.")
    return _meta(None, UNVERIFIED,
                 f"{header.authserv_id} found no passing DKIM or DMARC result for {from_domain}.")


def _meta(authenticated: bool | None, label: str, reason: str) -> AuthVerdict:
    return AuthVerdict(is_meta_sender=True, authenticated=authenticated,
                       suspicious=authenticated is False, label=label, reason=reason)


def check_authenticity(mail: ParsedMail, settings: AuthenticitySettings) -> AuthVerdict:
    """The verdict for one mail. Cheap for non-Meta senders: no header parsing."""
    domain = mail.sender_domain.lower().rstrip(".")
    meta_domains = settings.meta_domains

    if not is_meta_domain(domain, meta_domains):
        imitated = lookalike_of(domain, meta_domains) if domain else None
        if imitated:
            return AuthVerdict(False, False, True, LOOKALIKE_DOMAIN,
                               f"Sender domain {domain} imitates {imitated} but is not a Meta domain.")
        brand = display_name_brand(mail.sender_name) if mail.sender_name else None
        if brand:
            return AuthVerdict(False, False, True, BRAND_DISPLAY_NAME,
                               f"Display name {mail.sender_name!r} claims {brand.title()} "
                               f"but the sender domain {domain or '(none)'} is not Meta's.")
        return AuthVerdict(False, None, False, NOT_META, f"Sender domain {domain or '(none)'} is not a Meta domain.")

    header = choose_authentication_results(mail.auth_results, settings.trusted_authserv_id)
    if header is None:
        if settings.trusted_authserv_id and mail.auth_results:
            why = f"no Authentication-Results header from the trusted server {settings.trusted_authserv_id}"
        else:
            why = "no Authentication-Results header"
        return _meta(None, UNVERIFIED, f"{domain} is a Meta domain, but the mail has {why} to prove it.")
    return _verdict_from_results(header, domain, meta_domains)
