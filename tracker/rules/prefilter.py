"""A cheap test that rules a pattern out before its regex runs.

Python's ``re`` scans the whole text once per pattern, and the rules have a
couple of hundred patterns in seven languages; on a long Meta mail that costs
far more than parsing the mail. Most patterns cannot match most mails (a
Polish refusal in an English approval), and that is visible from the words the
pattern needs: ``we (will not|won't) hono(u)?r your objection`` needs the word
"your" and the text "objection". Looking a word up in the set of the mail's
words costs next to nothing, so a pattern's regex only runs when every word it
needs is there.

The test never rejects a text the regex would match: it only uses literal
text outside groups, character classes and quantified pieces, and treats a
word as whole only when the pattern puts a space on both sides of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_SPECIAL = set("\\.^$*+?{}[]()|")
_QUANTIFIERS = set("?*+{")
_SHORTEST_USEFUL_TEXT = 3  # shorter literal text is in nearly every mail


@dataclass(frozen=True)
class Needs:
    """What one alternative of a pattern needs, cheapest test first.

    All of ``words``; from each group of ``word_choices`` one choice (a set of
    words, all present); and, if given, one of ``texts`` somewhere in the text.
    """

    words: frozenset[str] = frozenset()
    word_choices: tuple[tuple[frozenset[str], ...], ...] = ()
    texts: tuple[str, ...] = ()

    def met_by(self, text: str, words: frozenset[str]) -> bool:
        # Plain loops: this runs for every pattern of every Meta mail.
        if not self.words <= words:
            return False
        for group in self.word_choices:
            for choice in group:
                if choice <= words:
                    break
            else:
                return False
        if not self.texts:
            return True
        for piece in self.texts:
            if piece in text:
                return True
        return False


@dataclass(frozen=True)
class Pattern:
    """A compiled rule pattern with the cheap tests that come before it."""

    source: str                          # the pattern as matched (normalised)
    regex: re.Pattern
    needs: tuple[Needs, ...] = ()        # any one of these must be met; empty: no cheap test
    gate: frozenset[str] | None = None   # words of which the text must have at least one; None: no gate

    def search(self, text: str, words: frozenset[str]) -> re.Match | None:
        # The gate is one set operation in C and rules out nearly every
        # pattern of the other languages; the finer test comes second.
        if self.gate is not None and self.gate.isdisjoint(words):
            return None
        if self.needs:
            for need in self.needs:
                if need.met_by(text, words):
                    break
            else:
                return None
        return self.regex.search(text)


def _gate_of(needs: tuple[Needs, ...]) -> frozenset[str] | None:
    """Words of which every match has at least one: the longest needed word of each alternative."""
    gate: set[str] = set()
    for need in needs:
        if need.words:
            gate.add(max(need.words, key=len))
        elif need.word_choices:
            gate.update(max(choice, key=len) for choice in need.word_choices[0])
        else:
            return None
    return frozenset(gate) if gate else None


def words_of(text: str) -> frozenset[str]:
    """The words of normalised text, as the cheap test compares them."""
    return frozenset(text.split(" "))


def _structure(pattern: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """(index, char) of each "(", ")" and "|" outside escapes and [...] classes.

    Ends with (len(pattern), "") when every class is closed, so a caller can
    tell a pattern it reads completely from one it cannot.
    """
    i, in_class = start, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]" or pattern[i + 1:i + 3] == "^]":  # "[]...]": "]" is a member
                i += 2 if pattern[i + 1] == "]" else 3
                continue
        elif char in "()|":
            yield i, char
        i += 1
    if not in_class:
        yield len(pattern), ""


def _split_alternatives(pattern: str) -> list[str] | None:
    """The top-level alternatives of ``pattern``; None if it cannot be read simply."""
    alternatives, depth, start = [], 0, 0
    for i, char in _structure(pattern):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            alternatives.append(pattern[start:i])
            start = i + 1
        elif char == "":
            break
    else:
        return None  # a class that is never closed
    if depth != 0:
        return None
    alternatives.append(pattern[start:])
    return alternatives


def _closing_paren(pattern: str, start: int) -> int:
    """Index of the ")" that closes the "(" at ``start``; -1 if there is none."""
    depth = 0
    for i, char in _structure(pattern, start):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _plain_choices(group: str) -> tuple[str, ...] | None:
    """``can't|cannot|can not`` -> its choices, if they are all plain text; else None."""
    if group.startswith("?:"):
        group = group[2:]
    elif group.startswith("?"):
        return None  # a lookaround or a named group: not required text
    choices = group.split("|")
    if any(not choice or _SPECIAL.intersection(choice) for choice in choices):
        return None
    return tuple(choices)


def _required_pieces(alternative: str) -> tuple[list[str], list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Plain text every match of ``alternative`` contains.

    Runs of text; groups of plain choices; and groups of plain choices that
    stand between spaces, so each choice is made of whole words.
    """
    runs: list[str] = []
    choices: list[tuple[str, ...]] = []
    word_choices: list[tuple[str, ...]] = []
    current: list[str] = []

    def close() -> None:
        if current:
            runs.append("".join(current))
            current.clear()

    i = 0
    while i < len(alternative):
        char = alternative[i]
        following = alternative[i + 1:i + 2]
        if char == "\\":  # \b, \d, \. ...: not plain text
            close()
            i += 2
            continue
        if char == "(":
            close()
            end = _closing_paren(alternative, i)
            if end < 0:
                return [], [], []
            after = alternative[end + 1:end + 3]
            group = None if after[:1] in _QUANTIFIERS else _plain_choices(alternative[i + 1:end])
            if group:
                between_spaces = (alternative[i - 1:i] == " " and after[:1] == " "
                                  and after[1:2] not in _QUANTIFIERS)
                (word_choices if between_spaces else choices).append(group)
            i = end + 1
            continue
        if char == "[":
            close()
            end = alternative.find("]", i + 2)
            i = (end if end > 0 else len(alternative)) + 1
            continue
        if char == "{":  # a repeat count such as {0,60}
            close()
            end = alternative.find("}", i)
            i = (end if end > 0 else len(alternative)) + 1
            continue
        if char in _SPECIAL:
            close()
        elif following and following in _QUANTIFIERS:
            close()  # "s?" or "a{2}": this character is optional or repeated
        else:
            current.append(char)
        i += 1
    close()
    return runs, choices, word_choices


def _needs_of(alternative: str) -> Needs | None:
    runs, choices, word_choices = _required_pieces(alternative)
    words: set[str] = set()
    for run in runs:
        pieces = run.split(" ")
        # Only a piece with a space on both sides is a whole word of the text.
        words.update(piece for piece in pieces[1:-1] if piece)
    # One text test besides the words: the one whose shortest piece is longest.
    candidates = [(run,) for run in runs] + choices
    best = max(candidates, key=lambda texts: (min(map(len, texts)), -len(texts)), default=())
    texts = best if best and min(map(len, best)) >= _SHORTEST_USEFUL_TEXT else ()
    word_groups = tuple(tuple(frozenset(choice.split(" ")) for choice in group) for group in word_choices)
    if not words and not word_groups and not texts:
        return None
    return Needs(words=frozenset(words), word_choices=word_groups, texts=texts)


def compile_pattern(source: str) -> Pattern:
    """Compile ``source`` (raises ``re.error``) and work out its cheap test."""
    regex = re.compile(source)
    alternatives = _split_alternatives(source)
    needs: list[Needs] = []
    for alternative in alternatives or ():
        one = _needs_of(alternative)
        if one is None:  # an alternative that needs nothing: no cheap test for the pattern
            needs = []
            break
        needs.append(one)
    return Pattern(source=source, regex=regex, needs=tuple(needs), gate=_gate_of(tuple(needs)) if needs else None)
