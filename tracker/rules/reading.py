"""What Meta wrote in a mail, as sentences of words with the concepts found in them.

Pure. Only Meta's own words may decide anything, so before the rules look:

- quoted history goes: ``>`` lines, "On ... wrote:" / "Am ... schrieb ...:"
  and Outlook "From:/Sent:" blocks with everything after them, forwarded
  parts (``<blockquote>`` and hidden elements are already gone in
  :func:`tracker.text.html_to_text`);
- footer lines go (unsubscribe, postal address, "this message was sent to");
- the person's own words quoted back stay readable but cannot decide:
  sentences in the first person ("I do not consent") and text in quotation
  marks are marked ``quoted``.

The subject counts as the first sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from tracker.rules.lexicon import Hit, Lexicon, tokens_of
from tracker.text import normalise

# A line that opens quoted history or a forwarded part: what follows is not Meta's text.
_QUOTE_INTRO_WORDS = (
    "wrote", "writes", "schrieb", "schreibt", "a écrit", "ha scritto", "escribió", "escreveu", "schreef",
    "skrev", "skrifaði", "kirjoitti", "kirjutas", "a scris", "napisał", "napisała", "napsal", "napsala",
    "napísal", "napísala", "je napisal", "je napisala", "napisao", "napisala", "написа", "έγραψε", "írta",
    "rašė", "rakstīja", "kiteb", "kitbet", "scríobh",
)
_QUOTE_INTRO = re.compile(
    r"^(?:on|am|le|il|el|em|op|den|på|þann|\d).{0,200}?(?:" + "|".join(map(re.escape, _QUOTE_INTRO_WORDS))
    + r")\s*:?\s*$", re.I)
_FORWARD_MARK = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|forwarded message|ursprüngliche nachricht|weitergeleitete nachricht"
    r"|message d'origine|message transféré|messaggio originale|messaggio inoltrato|mensaje original"
    r"|mensaje reenviado|mensagem original|mensagem encaminhada|oorspronkelijk bericht|doorgestuurd bericht"
    r"|ursprungligt meddelande|vidarebefordrat meddelande|oprindelig meddelelse|videresendt meddelelse"
    r"|opprinnelig melding|videresendt melding|wiadomość oryginalna|przekazana wiadomość|původní zpráva"
    r"|přeposlaná zpráva)|begin forwarded message:|anfang der weitergeleiteten nachricht:)", re.I)
# Outlook's reply header: a "From:" line followed within a few lines by "Sent:" (or its translation).
_HEADER_FROM = re.compile(r"^\s*\*?(?:from|von|de|da|van|från|fra|od|від|от|από|feladó|nuo|no|mittente)\s*:\*?\s", re.I)
_HEADER_SENT = re.compile(r"^\s*\*?(?:sent|gesendet|envoyé|inviato|enviado|verzonden|skickat|sendt|wysłano"
                          r"|odesláno|poslano|изпратено|στάλθηκε|elküldve|date|datum|fecha|data)\s*:\*?\s", re.I)

# Sentence ends: . ! ? ; (and the Greek question mark ";") before a space and a capital
# letter or an opening quote, not before a digit ("Art. 21") or a lower-case word ("z. B. wenn").
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[^\W\d_a-zà-ÿß]|[\"'(])")
# Concepts a footer line never has: a line with one of them is read even next to footer words.
_DECIDING = frozenset({"request", "objection", "approve", "refuse", "further_action", "received", "extend",
                       "ask", "code", "confirm"})
# Punctuation that ends a clause inside a sentence.
_CLAUSE_END = re.compile(r"[,:;()\u2013\u2014]| - ")
# Text in quotation marks: the person's words or a title, never Meta's decision.
_QUOTATION = re.compile(r"\"[^\"]{12,}\"")

# A one-time code: 6 to 8 digits, plain or in groups ("4821 7730", "660-913").
CODE = re.compile(r"(?<![\w.,/:+-])(\d{6,8}|\d{3,4}[ -]\d{3,4})(?![\w]|[.,/:-]\d)")


@dataclass(frozen=True)
class Sentence:
    text: str                 # as written (one line), for explanations
    normalised: str
    tokens: tuple[str, ...]
    hits: tuple[Hit, ...]
    in_subject: bool
    quoted: bool              # the person's own words ("I object..."): never decides
    quotation_concepts: frozenset[str] = frozenset()  # found only inside quotation marks: topic signs at most
    found: frozenset[str] = frozenset()               # the concepts of ``hits``

    def concepts(self) -> frozenset[str]:
        return self.found

    @cached_property
    def clauses(self) -> tuple[int, ...]:
        """For each token, the number of the clause it stands in (split at , : ; ( and dashes)."""
        return tuple(number for number, clause in enumerate(_CLAUSE_END.split(self.normalised))
                     for _ in tokens_of(clause))

    def of(self, concept: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.concept == concept]


@dataclass(frozen=True)
class Reading:
    sentences: tuple[Sentence, ...]
    languages: frozenset[str]

    def concepts(self) -> frozenset[str]:
        found: set[str] = set()
        for sentence in self.sentences:
            found |= sentence.concepts() | sentence.quotation_concepts
        return frozenset(found)


def meta_lines(text: str) -> Iterator[str]:
    """The lines of a mail body that Meta wrote: quoted history and forwarded parts cut off."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(">") or stripped.startswith("|"):
            continue
        if _FORWARD_MARK.match(stripped) or (len(stripped) < 300 and _QUOTE_INTRO.match(stripped)):
            return
        if _HEADER_FROM.match(stripped) and any(_HEADER_SENT.match(l) for l in lines[index + 1:index + 4]):
            return
        yield line


def split_sentences(line: str) -> list[str]:
    return [part for part in _SENTENCE_END.split(line) if part.strip()]


def read(subject: str, body: str, lexicon: Lexicon, max_words: int = 400) -> Reading:
    """Meta's sentences with the concepts of the mail's languages found in each.

    ``max_words`` bounds the work on hostile or huge mail: a decision is
    stated near the top, never after thousands of words.
    """
    pieces: list[tuple[str, bool]] = [(subject, True)] if subject.strip() else []
    budget = max_words
    for line in meta_lines(body):
        for sentence in split_sentences(line):
            pieces.append((sentence, False))
            budget -= sentence.count(" ") + 1
            if budget <= 0:
                break
        if budget <= 0:
            break

    prepared = []
    all_tokens: list[str] = []
    for text, in_subject in pieces:
        normalised = normalise(text)
        quotations = _QUOTATION.findall(normalised)
        if quotations:
            normalised = _QUOTATION.sub(" ", normalised)
        tokens = tokens_of(normalised)
        prepared.append((text, normalised, tokens, in_subject, quotations))
        all_tokens += tokens
    languages, main = lexicon.detect_languages(all_tokens)

    sentences = []
    for text, normalised, tokens, in_subject, quotations in prepared:
        hits = lexicon.find(tokens, languages, main)
        concepts = {hit.concept for hit in hits}
        if "footer" in concepts and not in_subject and len(tokens) <= 40 and not concepts & _DECIDING:
            continue  # a footer line: unsubscribe, postal address, "sent to"
        quoted_concepts = frozenset(hit.concept for quotation in quotations
                                    for hit in lexicon.find(tokens_of(quotation), languages, main)) \
            if quotations else frozenset()
        sentences.append(Sentence(" ".join(text.split()), normalised, tuple(tokens), tuple(hits),
                                  in_subject, "first_person" in concepts, quoted_concepts, frozenset(concepts)))
    return Reading(tuple(sentences), languages)
