"""Templates learned from the person's verdicts: a mail's text with what varies masked.

When the person says what a mail means (``privacy-tracker review ID --as ...``), the
tracker keeps the mail's *template*: its subject and text, lower case, with codes,
numbers, addresses, links, dates and the greeting's names replaced by placeholders.
A later authentic Meta mail with the same template gets the same category by itself.

Matching is exact on the masked words, on purpose: two of Meta's mails that differ in
one word ("we will honour" / "we will not honour") are different answers. A mail that is
merely close to a learned template is not decided by it; it keeps its own reading (and,
when held, the person decides again). Pure logic, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

# Fewer words than this say too little to stand for a template ("Your request", a subject alone).
MIN_WORDS = 8
# Masked text longer than this is cut: a template is recognised by its start; it bounds the work.
MAX_WORDS = 600

LINK = "<link>"
ADDRESS = "<address>"
NUMBER = "<n>"
NAME = "<name>"
MONTH = "<month>"

_LINK = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_WORD = re.compile(r"<(?:link|address|n|name|month)>|\w+")
# Month names and their usual abbreviations in the languages Meta writes most to:
# "3 June 2025" and "12 July 2025" are the same template.
_MONTHS = frozenset("""
january february march april may june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec
januar februar märz maerz mai juni juli oktober dezember jänner
janvier février fevrier mars avril juin juillet août aout septembre octobre novembre décembre decembre
gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre dicembre
enero febrero abril mayo junio julio septiembre setiembre octubre noviembre diciembre
januari februari maart mei augustus
stycznia lutego marca kwietnia maja czerwca lipca sierpnia września wrzesnia października pazdziernika
listopada grudnia styczeń luty marzec kwiecień maj czerwiec lipiec sierpień wrzesień październik
listopad grudzień
janeiro fevereiro março marco maio junho julho setembro outubro dezembro
""".split())
# A greeting is the first short line ending in "," or "!": the words after its first are a name.
_GREETING_MAX_WORDS = 5


@dataclass(frozen=True)
class Template:
    """A learned template: the masked words of a mail and the category the person gave it."""

    id: str                      # "learned:7" (from the database) or a [[template]] id of a rules file
    category: str
    words: str                   # the masked words, space-separated
    platform: str | None = None
    kind: str | None = None
    source: str = ""             # "your verdict on mail #12", or the rules file it came from

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.words)


def _greeting_names(body: str) -> set[str]:
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        words = re.findall(r"\w+", line)
        if line[-1] in ",!:" and 2 <= len(words) <= _GREETING_MAX_WORDS:
            return {w.casefold() for w in words[1:]}
        return set()
    return set()


def masked_words(subject: str, body: str, recipient: str | None = None) -> list[str]:
    """The template of a mail: its words, lower case, with what differs between people masked."""
    names = _greeting_names(body)
    if recipient:
        local = recipient.split("@", 1)[0]
        names |= {part.casefold() for part in re.split(r"[\W_\d]+", local) if len(part) >= 2}
    text = unicodedata.normalize("NFKC", f"{subject}\n{body}")
    text = _LINK.sub(f" {LINK} ", text)
    text = _ADDRESS.sub(f" {ADDRESS} ", text)
    words = []
    for token in _WORD.findall(text.casefold()):
        if token.startswith("<"):
            word = token
        elif any(c.isdigit() for c in token):
            word = NUMBER
        elif token in _MONTHS:
            word = MONTH
        elif token in names:
            word = NAME
        else:
            word = token
        if words and word == words[-1] and word.startswith("<"):
            continue  # "12 06 2025" is one masked date, whatever its spelling
        words.append(word)
        if len(words) >= MAX_WORDS:
            break
    return words


def template_words(subject: str, body: str, recipient: str | None = None) -> str | None:
    """The masked words as one string, or None when the mail says too little to learn from."""
    words = masked_words(subject, body, recipient)
    plain = [w for w in words if not w.startswith("<")]
    return " ".join(words) if len(plain) >= MIN_WORDS else None


def fingerprint(words: str) -> str:
    return hashlib.sha256(words.encode("utf-8")).hexdigest()


def match(words: str | None, templates: tuple[Template, ...]) -> Template | None:
    """The learned template whose masked words are exactly these; the newest when several are."""
    if not words or not templates:
        return None
    key = fingerprint(words)
    found = [t for t in templates if t.fingerprint == key]
    return found[-1] if found else None
