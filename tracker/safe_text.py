"""Text from a mail made safe for where it lands: a terminal, a JSON line, a Markdown letter.

Anyone can send mail, so a subject, a display name or a file name is hostile
input. On a terminal it could carry escape sequences (colours, a cleared
screen, OSC 8 links, a changed window title), bidi overrides that make text
read backwards, or rich markup (``[/]`` crashes rich, ``[link=...]`` makes a
live link). In a letter or a timeline a newline would add a line of its own.

Every print site passes mail text through :func:`terminal` (rich markup) or
:func:`plain` (no markup), JSON goes through :func:`json_text`, and the
complaint through :func:`one_line` / :func:`markdown`.
"""

from __future__ import annotations

import json
import re

from rich.markup import escape as _escape_markup

# Bidi controls: embeddings and overrides (U+202A-202E), isolates (U+2066-2069),
# marks (U+200E, U+200F, U+061C). They reorder what the person reads.
_BIDI = "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
# C0 controls, DEL and C1 controls (U+0080-009F: CSI U+009B, OSC U+009D...),
# the line and paragraph separators, and the bidi controls.
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
# What stands for a line break or a space: it becomes a space (a newline kept
# where the text may have lines), so that words do not run together.
_SPACE_LIKE = {"\t": " ", "\n": "\n", "\r": "\n", "\v": "\n", "\f": "\n", "\x85": "\n",
               "\u2028": "\n", "\u2029": "\n", "\x1c": "\n", "\x1d": "\n", "\x1e": "\n", "\x1f": " "}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def strip_controls(value: object, *, keep_newlines: bool = False) -> str:
    """``value`` without control characters and bidi controls; line breaks become spaces
    unless ``keep_newlines`` (then each line has its own trailing spaces removed)."""
    text = _text(value)
    if not _UNSAFE.search(text):
        return text

    def replace(found: re.Match) -> str:
        space = _SPACE_LIKE.get(found.group(0), "")
        return " " if space == "\n" and not keep_newlines else space

    text = _UNSAFE.sub(replace, text.replace("\r\n", "\n"))
    return "\n".join(line.rstrip() for line in text.split("\n")) if keep_newlines else text


def one_line(value: object) -> str:
    """One line, single spaces, nothing a terminal or a file format would act on."""
    return " ".join(strip_controls(value).split())


def plain(value: object, *, multiline: bool = False) -> str:
    """For printing without markup (``markup=False``): no control characters, one line unless ``multiline``."""
    return strip_controls(value, keep_newlines=True) if multiline else one_line(value)


def terminal(value: object, *, multiline: bool = False) -> str:
    """For a rich string with markup: control characters gone, markup escaped, so it shows as written."""
    return _escape_markup(plain(value, multiline=multiline))


# JSON escapes C0 controls itself; with ensure_ascii=False it leaves DEL, C1
# controls, line separators and bidi controls raw. As \\u escapes they still
# decode to the same data, but never reach a terminal.
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\u2028\u2029{_BIDI}]")


def json_text(data: object, **options) -> str:
    """``json.dumps(data, ensure_ascii=False, ...)`` with every terminal-unsafe character escaped."""
    dumped = json.dumps(data, ensure_ascii=False, **options)
    return _JSON_UNSAFE.sub(lambda found: f"\\u{ord(found.group(0)):04x}", dumped)


# Markdown (CommonMark and GitHub's dialect): characters that start inline
# markup, HTML or entities anywhere, and those that start a block at a line's start.
_MD_INLINE = re.compile(r"([\\`*_{}\[\]<>&|~!])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+=\-]|\d+(?=[.)]))")


def markdown(value: object) -> str:
    """One line of Markdown text that renders as exactly the characters given: no heading,
    no list, no link, no HTML (``<script>`` shows as text)."""
    text = _MD_INLINE.sub(r"\\\1", one_line(value))
    return _MD_LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if not m.group(2).isdigit()
                              else f"{m.group(1)}{m.group(2)}\\", text)
