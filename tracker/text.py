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

# Characters that render as nothing: zero-width spaces and joiners, word joiner,
# byte-order mark, soft hyphen. Meta's templates put them between words.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
# Quotes and dashes folded to ASCII so "won’t" matches "won't".
_FOLD = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "-", "\u2011": "-", "\u2010": "-",
}
_TRANSLATION = str.maketrans({**_FOLD, **dict.fromkeys(_INVISIBLE, None)})
# str.translate walks the whole text in Python-level steps; a C-level search first
# skips it for the many mails that contain none of these characters.
_NEEDS_TRANSLATION = re.compile("[" + re.escape(_INVISIBLE + "".join(_FOLD)) + "]")


def _tidy_lines(text: str) -> str:
    """Single spaces within lines, no blank lines. split()/join is far faster than regex here."""
    return "\n".join(filter(None, (" ".join(line.split()) for line in text.split("\n"))))


def html_to_text(markup: str) -> str:
    """Readable text from an HTML body: blocks become lines, tags go, entities are decoded."""
    text = _COMMENTS.sub(" ", markup)
    text = _DROP_BLOCKS.sub(" ", text)
    text = _BREAKS.sub("\n", text)
    text = _TAGS.sub(" ", text)
    return _tidy_lines(html.unescape(text))


def normalise(text: str) -> str:
    """The form rules match on: NFKC, no invisible characters, ASCII quotes, lower case, single spaces.

    NFKC turns non-breaking and other exotic spaces into plain ones and
    full-width letters into ASCII. ``lower()`` rather than ``casefold()`` keeps
    German "ß" as it is written in the rules.
    """
    if not text.isascii():
        # Fold before NFKC: NFKC would turn the acute accent of "won´t" into a space.
        if _NEEDS_TRANSLATION.search(text):
            text = text.translate(_TRANSLATION)
        text = unicodedata.normalize("NFKC", text)
    elif "`" in text:
        text = text.translate(_TRANSLATION)
    return " ".join(text.lower().split())


_CODE_LIKE = re.compile(r"(?<!\d)\d{6,8}(?!\d)")


def mask_codes_in(text: str) -> str:
    """``text`` with every 6-8 digit run masked: subjects of held or fake code mails carry codes."""
    return _CODE_LIKE.sub(lambda found: "*" * len(found.group(0)), text)


def mask_code(code: str | None) -> str:
    """A one-time code as it may appear in logs: only its length is kept."""
    if not code:
        return ""
    return "*" * len(code)
