"""Concept rules: what a sentence means, from the concepts found in it.

Pure. A concept rule says: when these concepts (word lists of
:mod:`tracker.rules.lexicon`) stand within so many words of each other in
one sentence, the sentence means this category; with a negation in scope it
means that other category ("we will honour your objection" is an approval,
"we cannot honour your objection" a refusal). Words in between do not matter,
so "we have reviewed your request and will honour your objection" matches as
well as the bare phrase.

Negation is in scope when it stands between the matched words, up to
``NEGATION_BEFORE`` words before them (a rule may narrow this) ("we are not able to honour your
objection") or right after them ("wir akzeptieren deinen Widerspruch nicht").
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from tracker.errors import RulesError
from tracker.rules.lexicon import CONCEPTS, Hit
from tracker.rules.reading import Sentence
from tracker.vocabulary import CATEGORIES

NEGATION_BEFORE = 8
NEGATION_AFTER = 1
STRONG, WEAK = 2, 1

_KEYS = frozenset({"id", "category", "all", "window", "negated", "strength", "negated_strength", "unless",
                   "also", "description", "enabled", "kind", "negation_before"})


@dataclass(frozen=True)
class ConceptRule:
    id: str
    category: str               # "" when the plain clause means nothing
    all: tuple[str, ...]
    window: int = 12
    negated: str = ""           # "" when the negated clause means nothing
    negation_before: int = NEGATION_BEFORE  # how far before the matched words a negation counts
    strength: int = STRONG
    negated_strength: int = STRONG
    unless: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    kind: str | None = None
    description: str = ""
    source: str = ""

    @property
    def needs(self) -> frozenset[str]:
        """Concepts a sentence must have for this rule to apply: a cheap test before the word positions."""
        return frozenset(self.all) | frozenset(self.also)


@dataclass(frozen=True)
class Signal:
    """One sentence that points to a category."""

    category: str
    strength: int
    rule: str
    sentence: Sentence
    matched: tuple[Hit, ...]
    negation: Hit | None = None

    def words(self) -> str:
        """The matched words by concept, for explanations: 'request: objection; approve: honour'."""
        parts = [f"{hit.concept}: {hit.text}" for hit in self.matched]
        if self.negation is not None:
            parts.append(f"negation: {self.negation.text}")
        return "; ".join(parts)


def build_concept_rule(table: dict, source: str, index: int, kinds: tuple[str, ...]) -> ConceptRule:
    rule_id = table.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise RulesError(f"{source}: concept #{index}: missing 'id'")
    where = f"{source}: concept {rule_id!r}"
    unknown = set(table) - _KEYS
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    category, negated = table.get("category", ""), table.get("negated", "")
    for name, value in (("category", category), ("negated", negated)):
        if value and value not in CATEGORIES:
            raise RulesError(f"{where}: unknown {name} {value!r} (one of: {', '.join(CATEGORIES)})")
    if not category and not negated:
        raise RulesError(f"{where}: needs a category, a negated category, or both")
    lists = {}
    for name in ("all", "unless", "also"):
        value = table.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RulesError(f"{where}: {name!r} must be a list of concept names")
        bad = [v for v in value if v not in CONCEPTS]
        if bad:
            raise RulesError(f"{where}: unknown concept(s) {', '.join(bad)} (one of: {', '.join(CONCEPTS)})")
        lists[name] = tuple(value)
    if not lists["all"]:
        raise RulesError(f"{where}: 'all' needs at least one concept")
    numbers = {}
    for name, default, low, high in (("window", 12, 1, 60), ("strength", STRONG, WEAK, STRONG),
                                     ("negated_strength", STRONG, WEAK, STRONG),
                                     ("negation_before", NEGATION_BEFORE, 0, 20)):
        value = table.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise RulesError(f"{where}: {name!r} must be a whole number from {low} to {high}")
        numbers[name] = value
    kind = table.get("kind")
    if kind is not None and kind not in kinds:
        raise RulesError(f"{where}: unknown kind {kind!r} (one of: {', '.join(kinds)})")
    return ConceptRule(id=rule_id, category=category, negated=negated, kind=kind,
                       description=str(table.get("description", "")), source=source,
                       all=lists["all"], unless=lists["unless"], also=lists["also"], **numbers)


def _closest(groups: list[list[Hit]], window: int) -> tuple[Hit, ...] | None:
    """One hit of each group, not overlapping, spanning the fewest words (at most ``window``)."""
    best, best_span = None, window + 1
    for combination in product(*(group[:6] for group in groups)):
        ordered = sorted(combination, key=lambda hit: hit.start)
        if any(a.end > b.start for a, b in zip(ordered, ordered[1:])):
            continue  # one word cannot be both the request and the verb
        span = ordered[-1].end - ordered[0].start
        if span < best_span:
            best, best_span = combination, span
    return best


def _clause(sentence: Sentence, index: int) -> int:
    clauses = sentence.clauses
    return clauses[index] if 0 <= index < len(clauses) else -1


def evaluate(rule: ConceptRule, sentence: Sentence) -> Signal | None:
    """What ``sentence`` means by ``rule``, or None."""
    if sentence.quoted:
        return None
    concepts = sentence.concepts()
    if not all(c in concepts for c in rule.all) or not all(c in concepts for c in rule.also):
        return None
    if any(c in concepts for c in rule.unless):
        return None
    matched = _closest([sentence.of(c) for c in rule.all], rule.window)
    if matched is None:
        return None
    start = min(hit.start for hit in matched)
    end = max(hit.end for hit in matched)
    negation = None
    for hit in sentence.of("negation"):
        inside = start - rule.negation_before <= hit.start < end + NEGATION_AFTER
        # A negation after the matched words counts only in their clause:
        # "we will honour your objection: we won't use..." is not "won't honour".
        if hit.start >= end and _clause(sentence, hit.start) != _clause(sentence, end - 1):
            inside = False
        # A negation may lie inside a matched term: "no further action", "žiadne ďalšie kroky".
        if inside:
            negation = hit
            break
    category = rule.negated if negation else rule.category
    if not category:
        return None
    strength = rule.negated_strength if negation else rule.strength
    return Signal(category, strength, rule.id, sentence, tuple(sorted(matched, key=lambda h: h.start)), negation)
