"""Pure text helpers: HTML to text and the normalisation every rule matches against.

Meta's mails are mostly HTML with entities, curly quotes, non-breaking and
zero-width spaces. Rules are written in plain lower-case words, so both the
mail text and the rule patterns go through :func:`normalise` before matching.
"""

from __future__ import annotations

import html
import re
import unicodedata

_DROP_BLOCKS = re.compile(r"<(script|style|head|title)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_COMMENTS = re.compile(r"<!--.*?-->", re.S)
_BREAKS = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h[1-6]|/table|p|div|tr|li|h[1-6])\b[^>]*>", re.I)
_TAGS = re.compile(r"<[^>]+>")
_BLANK_RUNS = re.compile(r"[ \t\r\f\v]+")
_NEWLINE_RUNS = re.compile(r"[ \t]*\n\s*")

# Characters that render as nothing: zero-width spaces and joiners, word joiner,
# byte-order mark, soft hyphen. Meta's templates put them between words.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
# Quotes and dashes folded to ASCII so "won’t" matches "won't".
_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "-", "\u2011": "-", "\u2010": "-",
})
_WHITESPACE = re.compile(r"\s+")


def html_to_text(markup: str) -> str:
    """Readable text from an HTML body: blocks become lines, tags go, entities are decoded."""
    text = _COMMENTS.sub(" ", markup)
    text = _DROP_BLOCKS.sub(" ", text)
    text = _BREAKS.sub("\n", text)
    text = _TAGS.sub(" ", text)
    text = html.unescape(text)
    text = _BLANK_RUNS.sub(" ", text)
    return _NEWLINE_RUNS.sub("\n", text).strip()


def normalise(text: str) -> str:
    """The form rules match on: NFKC, no invisible characters, ASCII quotes, lower case, single spaces.

    NFKC turns non-breaking and other exotic spaces into plain ones and
    full-width letters into ASCII. ``lower()`` rather than ``casefold()`` keeps
    German "ß" as it is written in the rules.
    """
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_FOLD)
    return _WHITESPACE.sub(" ", text.lower()).strip()


def mask_code(code: str | None) -> str:
    """A one-time code as it may appear in logs: only its length is kept."""
    if not code:
        return ""
    return "*" * len(code)
