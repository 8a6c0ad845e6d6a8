"""Pure text helpers: HTML to text and the normalisation every rule matches against.

Meta's mails are mostly HTML with entities, curly quotes, non-breaking and
zero-width spaces. Rules are written in plain lower-case words, so both the
mail text and the rule patterns go through :func:`normalise` before matching.
"""

from __future__ import annotations

import re
import unicodedata

import lxml.etree

# Elements whose content is never shown, or is someone else's words (quoted history).
_SKIPPED = ("head", "style", "script", "title", "template", "noscript", "svg", "blockquote", "object", "iframe")
# A line break goes before every block element's start and end tag, so blocks become
# lines; inline elements (span, b, a, font...) add nothing, so a code written as
# "48<span>21</span>77" reads as "482177". One linear regex pass, no Python per element.
_BLOCK_TAG = re.compile(r"<(?=/?(?:p|div|br|tr|td|th|li|h[1-6]|table|ul|ol|dl|dt|dd|hr|pre|section|article"
                        r"|header|footer|center|address|blockquote|caption|form|main|nav|aside)[\s/>])", re.I)
# Elements that may be hidden; the regex below decides. Preheaders and tracking text
# are hidden with inline styles.
_MAYBE_HIDDEN = lxml.etree.XPath(
    "//*[@hidden or contains(@style, 'none') or contains(@style, 'NONE') or contains(@style, 'idden')"
    " or contains(@style, 'IDDEN') or contains(@style, ':0') or contains(@style, ': 0')]")
# Most mail hides nothing: a look for these in the markup spares the element walk. Templates
# write styles in lower case; text hidden in upper case would only be read, never dropped.
_HIDING_MARKS = ("display:none", "display: none", "display :none", "visibility:hidden", "visibility: hidden",
                 "mso-hide", "size:0", "size: 0", "height:0", "height: 0", "width:0", "width: 0", "opacity:0",
                 "opacity: 0", " hidden", "DISPLAY:NONE", "DISPLAY: NONE")
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$|!)"
    r"|(?:^|[;\s])(?:max-)?(?:height|width)\s*:\s*0(?:px|em|pt|%)?\s*(?:;|$|!)"
    r"|font-size\s*:\s*0(?:px|em|pt|%)?\s*(?:;|$|!)", re.I)

# libxml2's HTML parser without lxml.html's per-element Python classes: text is all we need.
_HTML_PARSER = lxml.etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)

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


_BLANKS = re.compile(r"[^\S\n]+")          # a run of white space within a line
_LINE_BREAKS = re.compile(r" ?\n[\n ]*")   # a line break with the blank lines and indents after it


def _tidy_lines(text: str) -> str:
    """Single spaces within lines, no blank lines: two C-level passes, however many lines."""
    return _LINE_BREAKS.sub("\n", _BLANKS.sub(" ", text)).strip()


def _remove_keeping_tail(element) -> None:
    """Take an element out of the tree; the text that follows it stays."""
    parent = element.getparent()
    if parent is None:
        return
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def html_to_text(markup: str) -> str:
    """The text a reader sees in an HTML body: blocks become lines, entities are decoded.

    libxml2's HTML parser works in linear time whatever the markup (an
    unclosed ``<!--`` or ``<a`` costs no more than closed ones) and stops
    descending past a sane nesting depth. Hidden elements, ``<head>``, scripts,
    styles and ``<blockquote>`` (quoted history) are left out.
    """
    if not markup.strip():
        return ""
    try:
        document = lxml.etree.fromstring(_BLOCK_TAG.sub("\n<", markup.replace("\x00", "")), _HTML_PARSER)
    except (lxml.etree.LxmlError, ValueError):
        return ""  # nothing a parser could build a document from: no text
    if document is None:
        return ""
    lxml.etree.strip_elements(document, *_SKIPPED, with_tail=False)
    for element in _MAYBE_HIDDEN(document) if any(mark in markup for mark in _HIDING_MARKS) else ():
        if element.get("hidden") is not None or _HIDDEN_STYLE.search(element.get("style") or ""):
            _remove_keeping_tail(element)
    return _tidy_lines(lxml.etree.tostring(document, method="text", encoding=str))


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
