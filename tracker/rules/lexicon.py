"""The word lists of every language, and finding their terms in a text.

Pure apart from reading the data files of ``tracker/rules/lexicon/``. A word
list names, for one language, the words that stand for a concept ("request",
"approve", "negation", ...). A term is one or more words that must stand next
to each other; a word ending in ``*`` matches every word that starts with it.
Words match whole words only, so ``ai`` never matches inside "explained".
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Iterable

from tracker.errors import RulesError
from tracker.text import normalise

# A word: letters and digits, with apostrophes inside ("won't", "n'avons", "l'opposizione").
WORD = re.compile(r"\w+(?:'\w+)*'?")

# The concepts a word list may name (the keys of [words]); README.md in the folder explains each.
CONCEPTS = (
    "stopwords", "ai", "objection", "privacy", "third_party", "request", "approve", "refuse", "negation",
    "further_action", "automatic", "received", "reviewing", "code", "confirm", "login", "ask", "information",
    "extend", "period", "use", "your_information", "announce", "condition", "contrast", "first_person",
    "ordinary", "footer", "generic", "you_need", "decision",
)
COMMON = "*"
# In a term, "..." stands for up to GAP_WORDS other words: separable verbs put their
# object between the parts ("tar innsigelsen til følge", "kommen deinem Widerspruch nach").
GAP = "..."
GAP_WORDS = 4
# Small words whose meaning depends on the language: counted only in the mail's main languages.
# Negation is not among them: a negation missed would read a refusal as an approval.
FUNCTION_CONCEPTS = frozenset({"condition", "contrast", "first_person", "generic", "you_need"})
# A text with fewer common words than this is too short to tell its language: every language is read.
_FEWEST_TELLING_WORDS = 3   # the language of common.toml: terms that count in every language


@dataclass(frozen=True)
class Term:
    concept: str
    language: str
    words: tuple[str, ...]          # normalised; a trailing "*" marks a stem

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class Hit:
    """One term found in a sentence: its concept and the word positions it covers."""

    concept: str
    start: int      # index of the first word
    end: int        # index after the last word
    text: str       # the words as they stand in the mail
    language: str


def word_forms(token: str) -> tuple[str, ...]:
    """The forms a word is looked up by: itself and, for "n'avons", also "n'" and "avons"."""
    if "'" not in token.strip("'"):
        return (token.strip("'") or token,)
    head, _, tail = token.partition("'")
    return (token, head + "'", tail.strip("'"))


@dataclass
class Lexicon:
    """Every language's terms, indexed by their first word for a fast scan."""

    languages: dict[str, str] = field(default_factory=dict)           # code -> name
    stopwords: dict[str, frozenset[str]] = field(default_factory=dict)  # code -> words
    terms: list[Term] = field(default_factory=list)
    _exact: dict[str, list[Term]] = field(default_factory=dict, repr=False)
    _stems: dict[str, list[Term]] = field(default_factory=dict, repr=False)
    _stem_lengths: tuple[int, ...] = field(default=(), repr=False)
    _cache: dict[str, tuple[Term, ...]] = field(default_factory=dict, repr=False)
    _weights: dict[str, list[tuple[str, float]]] | None = field(default=None, repr=False)

    def add(self, language: str, concept: str, terms: Iterable[str], where: str) -> None:
        if concept not in CONCEPTS:
            raise RulesError(f"{where}: unknown concept {concept!r} (one of: {', '.join(CONCEPTS)})")
        if isinstance(terms, str) or not all(isinstance(t, str) for t in terms):
            raise RulesError(f"{where}: {concept} must be a list of words")
        for raw in terms:
            words = tuple(part for w in raw.split() for part in ((GAP,) if w == GAP else _term_words(w)))
            if words and GAP in (words[0], words[-1]):
                raise RulesError(f"{where}: {concept}: {raw!r}: '...' stands between words, not at an end")
            if not words:
                continue
            if words[0].endswith("*") and len(words[0]) < 4:  # later words only narrow a match
                raise RulesError(f"{where}: {concept}: the stem in {raw!r} is too short (at least 3 letters before *)")
            if concept == "stopwords":
                self.stopwords[language] = self.stopwords.get(language, frozenset()) | {words[0]}
                self._weights = None
                continue
            term = Term(concept, language, words)
            self.terms.append(term)
            first = words[0]
            if first.endswith("*"):
                self._stems.setdefault(first[:-1], []).append(term)
            else:
                self._exact.setdefault(first, []).append(term)
        self._stem_lengths = tuple(sorted({len(stem) for stem in self._stems}))
        self._cache.clear()

    def starting_with(self, token: str) -> tuple[Term, ...]:
        """Terms whose first word matches ``token`` in any of its forms ("n'avons": "n'", "avons")."""
        found = self._cache.get(token)
        if found is None:
            candidates: list[Term] = []
            for form in word_forms(token):
                candidates += self._exact.get(form, ())
                for length in self._stem_lengths:
                    if length > len(form):
                        break
                    candidates += self._stems.get(form[:length], ())
            found = tuple(dict.fromkeys(candidates))
            if len(self._cache) > 200_000:  # bounded: hostile mail can be made of unique words
                self._cache.clear()
            self._cache[token] = found
        return found

    def find(self, tokens: list[str], languages: frozenset[str], main: frozenset[str] | None = None) -> list[Hit]:
        """Every term of ``languages`` (and the common ones) in a sentence's tokens.

        Function words ("if", "I", "usually"...) count only in the ``main``
        languages: a Spanish "ha" is no Hungarian "if".
        """
        main = languages if main is None else main
        forms: list[tuple[str, ...]] | None = None   # made only for terms of several words
        hits = []
        for index, token in enumerate(tokens):
            for term in self.starting_with(token):
                language = term.language
                if language != COMMON and (language not in languages
                                           or (term.concept in FUNCTION_CONCEPTS and language not in main)):
                    continue
                if len(term.words) == 1:
                    end = index + 1
                else:
                    if forms is None:
                        forms = [word_forms(t) for t in tokens]
                    end = _match_rest(term.words, forms, index)
                if end:
                    hits.append(Hit(term.concept, index, end, " ".join(tokens[index:end]), language))
        return hits

    def detect_languages(self, tokens: Iterable[str], limit: int = 4) -> tuple[frozenset[str], frozenset[str]]:
        """The languages a text may be written in, and its main language(s).

        From how often it uses each one's common words: a word common to
        several languages counts for each of them in part; one-letter words
        ("a", "i") tell too little to count at all. Languages used at least
        a third as much as the main one are read too: neighbours such as
        Croatian and Slovenian share many common words, and mail may mix languages.
        """
        weights: dict[str, list[tuple[str, float]]] = self._stopword_weights()
        counts: dict[str, float] = {}
        hits: dict[str, int] = {}
        for word, times in Counter(tokens).items():
            if len(word) > 2:
                word = word.rstrip("'")
            for language, weight in weights.get(word, ()):
                counts[language] = counts.get(language, 0.0) + weight * times
                hits[language] = hits.get(language, 0) + times
        best = max(counts.values(), default=0.0)
        if max(hits.values(), default=0) < _FEWEST_TELLING_WORDS:
            # Too little text to tell: every language's words, but no language's small
            # words ("ha" is "has" in Spanish and "if" in Hungarian).
            return frozenset(self.languages), frozenset()
        ranked = sorted((c, l) for l, c in counts.items() if c * 3 >= best)
        main = frozenset(language for count, language in ranked if count * 2 >= best)
        return frozenset(language for _, language in ranked[-limit:]) | main, main

    def _stopword_weights(self) -> dict[str, list[tuple[str, float]]]:
        if self._weights is None:
            owners: dict[str, list[str]] = {}
            for language, words in self.stopwords.items():
                for word in words:
                    if len(word) > 1:
                        owners.setdefault(word, []).append(language)
            self._weights = {word: [(language, 1 / len(languages)) for language in languages]
                             for word, languages in owners.items()}
        return self._weights


def _word_matches(pattern: str, forms: tuple[str, ...]) -> bool:
    if pattern.endswith("*"):
        stem = pattern[:-1]
        return any(form.startswith(stem) for form in forms)
    return pattern in forms


def _match_rest(words: tuple[str, ...], forms: list[tuple[str, ...]], start: int) -> int:
    """The index after the term's last word when all its words follow from ``start``, else 0."""
    return _match_from(words, 1, forms, start + 1)


def _match_from(words: tuple[str, ...], word: int, forms: list[tuple[str, ...]], at: int) -> int:
    if word == len(words):
        return at
    pattern = words[word]
    if pattern == GAP:
        for skip in range(GAP_WORDS + 1):
            end = _match_from(words, word + 1, forms, at + skip)
            if end:
                return end
        return 0
    if at >= len(forms) or not _word_matches(pattern, forms[at]):
        return 0
    return _match_from(words, word + 1, forms, at + 1)


def _term_words(word: str) -> list[str]:
    """A term's word as the words of a mail are read: "third-party" is "third" "party"."""
    stem = word.endswith("*")
    # "ta'" is looked up as "ta"; an elided head such as "n'" or "l'" keeps its apostrophe.
    parts = [part.rstrip("'") if len(part) > 2 else part
             for part in WORD.findall(unaccented(normalise(word.rstrip("*"))))]
    if stem and parts:
        parts[-1] += "*"
    return parts


_MARKS = re.compile(r"[\u0300-\u036f]+")


def unaccented(text: str) -> str:
    """``text`` without accents: "réponse" is "reponse", Greek "αίτημά" is "αιτημα".

    Words are compared without their accents: templates and people drop them,
    Greek doubles them before an enclitic ("το αίτημά σου"), and Romanian
    writes "ş" and "ș" alike.
    """
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", _MARKS.sub("", unicodedata.normalize("NFD", text)))


def tokens_of(text: str) -> list[str]:
    """The words of a normalised text, without accents."""
    return WORD.findall(unaccented(text))


def read_lexicon_document(document: dict, source: str, lexicon: Lexicon) -> None:
    language = document.get("language")
    if not isinstance(language, str) or not language:
        raise RulesError(f"{source}: missing 'language'")
    name = document.get("name", language)
    words = document.get("words", {})
    if not isinstance(words, dict):
        raise RulesError(f"{source}: [words] must be a table of word lists")
    if language != COMMON:
        lexicon.languages[language] = str(name)
    for concept, terms in words.items():
        lexicon.add(language, concept, terms, f"{source}: [words]")


def load_lexicon(extra: dict[str, dict[str, list[str]]] | None = None, extra_source: str = "") -> Lexicon:
    """Every built-in word list, plus ``extra`` ({language: {concept: [terms]}}) from a user rules file."""
    lexicon = Lexicon()
    folder = resources.files("tracker.rules").joinpath("lexicon")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        source = f"lexicon/{entry.name} (built in)"
        try:
            document = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise RulesError(f"{source}: not valid TOML: {err}") from err
        read_lexicon_document(document, source, lexicon)
    for language, concepts in (extra or {}).items():
        if not isinstance(concepts, dict):
            raise RulesError(f"{extra_source}: [words.{language}] must be a table of word lists")
        if language != COMMON:
            lexicon.languages.setdefault(language, language)
        for concept, terms in concepts.items():
            lexicon.add(language, concept, terms, f"{extra_source}: [words.{language}]")
    return lexicon
