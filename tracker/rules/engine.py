"""Putting a category on a mail: is it a code, an acknowledgement, a refusal...?

Pure apart from reading the rules files. The layers, in order:

1. Authenticity (:mod:`tracker.authenticity`). Mail that neither comes from
   Meta nor pretends to is ``unrelated`` before any word is read; mail that
   pretends to be Meta is ``suspicious``, never a request category and never
   with a code.
2. Meta's own text (:mod:`tracker.rules.reading`): quoted history, forwarded
   parts, footers and the person's own words quoted back do not decide.
3. Concepts in every EU/EEA language (:mod:`tracker.rules.lexicon`, word lists
   kept as data) and concept rules (:mod:`tracker.rules.concepts`): a
   sentence means a category when its concepts stand close together, with
   negation in scope turning an approval into a refusal.
4. Resolution: strong signs of an approval and a refusal in one mail mean
   review (``meta_other`` with both guesses), never a guess. Otherwise the
   strongest sign of a decision wins, in the order code, refusal, approval,
   request for information, extension; then acknowledgement, announcement.
5. Fallbacks: a Meta mail with any sign of the privacy topic is at least
   ``meta_other``; ``unrelated`` is for Meta's ordinary mail (log-in codes,
   birthdays...) and mail with no sign of the topic.
6. Meta mail whose sender could not be verified is held as ``meta_other``
   unless the settings say to trust it: acting on a forged refusal or code
   would be worse than asking.

A user rules file may add words, concept rules and pattern rules
(``[[rule]]``, regular expressions). A pattern rule that matches decides: it
is the person's own word for a mail template.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from tracker.authenticity import AuthVerdict, check_authenticity, is_meta_domain
from tracker.config import AuthenticitySettings
from tracker.errors import RulesError
from tracker.parse import ParsedMail
from tracker.rules.concepts import STRONG, ConceptRule, Signal, build_concept_rule, evaluate
from tracker.rules.lexicon import Lexicon, load_lexicon
from tracker.rules.prefilter import Pattern, compile_pattern, words_of
from tracker.rules.reading import CODE, Reading, Sentence, read
from tracker.rules.templates import Template, fingerprint, template_words
from tracker.text import normalise
from tracker.vocabulary import (ACKNOWLEDGEMENT, APPROVED, CATEGORIES, DEFAULT_KIND, EXTENDED, INFO_REQUESTED,
                                KINDS, META_OTHER, NOTICE, OTP, PLATFORMS, REJECTED, REQUEST_CATEGORIES,
                                SUSPICIOUS, UNRELATED)

DEFAULT_RULES_FILE = "default_rules.toml"

PATTERN_FIELDS = ("subject_any", "subject_all", "body_any", "body_all", "none")
_RULE_KEYS = frozenset({"id", "category", "priority", "platform", "kind", "description", "enabled",
                        "sender_domains", "extract_otp", "extract_reference", *PATTERN_FIELDS})
_DEFAULT_KEYS = frozenset({"extract_reference"})

_INSTAGRAM_DOMAINS = ("instagram.com",)
_FACEBOOK_DOMAINS = ("facebookmail.com", "facebook.com", "fb.com")
_WHATSAPP_DOMAINS = ("whatsapp.com", "whatsapp.net")
_PLATFORM_MENTION = re.compile(r"\b(facebook|instagram|whatsapp)\b")
_DIGIT = re.compile(r"\d")

# Signs that a mail is about the privacy topic: any one makes Meta's mail at least meta_other.
TOPIC_CONCEPTS = frozenset({"ai", "objection", "privacy", "third_party"})
# When one mail gives several categories, the first in this order wins...
PRECEDENCE = (OTP, REJECTED, APPROVED, INFO_REQUESTED, EXTENDED, ACKNOWLEDGEMENT, NOTICE)
_RECEIPT_OR_NEWS = frozenset({ACKNOWLEDGEMENT, NOTICE})
# ...unless it gives strong signs of two of these: then the person decides.
CONFLICTING = ((APPROVED, REJECTED), (OTP, APPROVED), (OTP, REJECTED))
# Decisions on the request: read from a weak sign only, they are listed for the person to confirm.
_DECISIONS = frozenset({APPROVED, REJECTED, INFO_REQUESTED})
# Sentences around a code that say what the code is for.
_CODE_CONTEXT_BEFORE, _CODE_CONTEXT_AFTER = 2, 1

_MEANING = {
    "otp": "a one-time code for the objection form",
    "acknowledgement": "Meta confirms it received the request",
    "approved": "Meta honours the objection or grants the request",
    "rejected": "Meta refuses the request",
    "info_requested": "Meta asks for more information",
    "extended": "Meta extends its deadline by two months",
    "notice": "Meta announces AI training or a policy change",
    "meta_other": "a Meta mail about a privacy request that no rule recognises",
    "suspicious": "a mail that a rule marks as suspicious",
    "unrelated": "a Meta mail that a rule marks as unrelated",
}


# --- results ------------------------------------------------------------------

@dataclass(frozen=True)
class Classification:
    category: str
    platform: str | None
    kind: str | None
    otp: str | None            # only for authentic Meta mail
    reference: str | None      # Meta's case or reference number, when the mail gives one
    rule: str | None           # id of the rule that decided, None when no rule did
    authenticated: bool | None
    authenticity: str          # short label: "dkim-pass", "unverified", "lookalike-domain", "not-meta"...
    reason: str                # one sentence: why this category
    guesses: tuple[str, ...] = ()   # for mail held for review: the categories it might be, best first
    uncertain: bool = False         # a decision read from a weak sign only: the person is asked to confirm it


@dataclass(frozen=True)
class Explanation:
    classification: Classification
    verdict: AuthVerdict
    sender: str
    recipient: str | None
    subject: str
    winner: str | None              # the deciding rule
    matched_text: str | None        # the deciding sentence
    matched_words: str | None       # its words by concept: "request: objection; approve: honour"
    runner_up: str | None           # the next guess, with its sentence
    languages: tuple[str, ...] = ()
    signals: tuple[Signal, ...] = ()

    def to_text(self) -> str:
        c = self.classification
        lines = [
            f"Subject:      {self.subject or '(none)'}",
            f"From:         {self.sender or '(none)'}",
            f"To:           {self.recipient or '(none)'}",
            f"Authenticity: {self.verdict.label} - {self.verdict.reason}",
            f"Category:     {c.category}",
            f"Platform:     {c.platform or '-'}",
            f"Kind:         {c.kind or '-'}",
            f"Rule:         {c.rule or '-'}",
        ]
        if c.otp:
            lines.append(f"Code:         {c.otp}")
        if c.reference:
            lines.append(f"Reference:    {c.reference}")
        lines.append(f"Why:          {c.reason}")
        if self.languages:
            lines.append(f"Languages:    {', '.join(self.languages)}")
        if self.matched_text:
            lines.append(f'Sentence:     "{self.matched_text}"')
        if self.matched_words:
            lines.append(f"Words:        {self.matched_words}")
        if c.guesses:
            lines.append(f"Guesses:      {', '.join(c.guesses)}")
        if c.uncertain:
            lines.append("Uncertain:    only a weak sign of the decision: listed for you to confirm")
        lines.append(f"Runner-up:    {self.runner_up or '-'}")
        if self.signals:
            lines.append("Signs found (category, strength, rule, words):")
            for signal in self.signals:
                strength = "strong" if signal.strength == STRONG else "weak"
                lines.append(f"  {signal.category:<15} {strength:<6} {signal.rule:<28} {signal.words()}")
        return "\n".join(lines)


# --- pattern rules ----------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One rule with its patterns compiled."""

    id: str
    category: str
    priority: int
    source: str                              # the file it was read from
    platform: str | None = None
    kind: str | None = None
    description: str = ""
    sender_domains: tuple[str, ...] = ()     # empty: any Meta domain
    subject_any: tuple[Pattern, ...] = ()
    subject_all: tuple[Pattern, ...] = ()
    body_any: tuple[Pattern, ...] = ()
    body_all: tuple[Pattern, ...] = ()
    none: tuple[Pattern, ...] = ()
    extract_otp: re.Pattern | None = None
    extract_reference: re.Pattern | None = None

    def match(self, mail: MailText) -> re.Match | None | bool:
        """The match to quote (subject or body), True if only ``*_all`` patterns matched, or None."""
        if self.sender_domains and not is_meta_domain(mail.sender_domain, self.sender_domains):
            return None
        quoted: re.Match | None = None
        if self.subject_any:
            quoted = _first_search(self.subject_any, mail.subject, mail.subject_words)
            if quoted is None:
                return None
        for pattern in self.subject_all:
            if pattern.search(mail.subject, mail.subject_words) is None:
                return None
        if self.body_any:
            found = _first_search(self.body_any, mail.body, mail.body_words)
            if found is None:
                return None
            quoted = found
        for pattern in self.body_all:
            found = pattern.search(mail.body, mail.body_words)
            if found is None:
                return None
            quoted = quoted or found
        if (_first_search(self.none, mail.subject, mail.subject_words)
                or _first_search(self.none, mail.body, mail.body_words)):
            return None
        return quoted or True


def _first_search(patterns: tuple[Pattern, ...], text: str, words: frozenset[str]) -> re.Match | None:
    for pattern in patterns:
        found = pattern.search(text, words)
        if found is not None:
            return found
    return None


def normalise_pattern(pattern: str) -> str:
    """Normalise the words of a pattern like mail text, leaving escapes such as ``\\D`` or ``\\.`` alone."""
    pieces = re.split(r"(\\.)", pattern)
    out = []
    for piece in pieces:
        if piece.startswith("\\") or not piece:
            out.append(piece)
            continue
        # normalise() strips; keep a single space where the piece had edge whitespace.
        lead = " " if piece[0].isspace() else ""
        trail = " " if piece[-1].isspace() and piece.strip() else ""
        out.append(lead + normalise(piece) + trail)
    return "".join(out)


def _compile(pattern: str, where: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise RulesError(f"{where}: bad regex {pattern!r}: {err}") from err


def _compile_all(patterns: tuple[str, ...], where: str) -> tuple[Pattern, ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(compile_pattern(pattern))
        except re.error as err:
            raise RulesError(f"{where}: bad regex {pattern!r}: {err}") from err
    return tuple(compiled)


def _pattern_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesError(f"{where}: expected a list of regex strings")
    return tuple(normalise_pattern(v) for v in value if v.strip())


def _build_rule(data: dict, source: str, index: int, default_reference: str | None) -> Rule:
    rule_id = data.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise RulesError(f"{source}: rule #{index}: missing 'id'")
    where = f"{source}: rule {rule_id!r}"
    unknown = set(data) - _RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    category = data.get("category")
    if category not in CATEGORIES:
        raise RulesError(f"{where}: unknown category {category!r} (one of: {', '.join(CATEGORIES)})")
    priority = data.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise RulesError(f"{where}: 'priority' must be a whole number")
    platform, kind = data.get("platform"), data.get("kind")
    if platform is not None and platform not in PLATFORMS:
        raise RulesError(f"{where}: unknown platform {platform!r} (one of: {', '.join(PLATFORMS)})")
    if kind is not None and kind not in KINDS:
        raise RulesError(f"{where}: unknown kind {kind!r} (one of: {', '.join(KINDS)})")
    domains = data.get("sender_domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise RulesError(f"{where}: 'sender_domains' must be a list of domains")

    written = {name: _pattern_list(data.get(name, []), f"{where}: {name}") for name in PATTERN_FIELDS}
    if not any(written[name] for name in PATTERN_FIELDS if name != "none"):
        raise RulesError(f"{where}: needs at least one of subject_any, subject_all, body_any, body_all")

    extractors = {}
    for name, fallback in (("extract_otp", None), ("extract_reference", default_reference)):
        value = data.get(name, fallback)
        if value is None or value == "":
            extractors[name] = None
            continue
        if not isinstance(value, str):
            raise RulesError(f"{where}: {name} must be a regex string")
        compiled = _compile(normalise_pattern(value), f"{where}: {name}")
        if compiled.groups < 1:
            raise RulesError(f"{where}: {name} needs a group (...) around the value to extract")
        extractors[name] = compiled

    return Rule(
        id=rule_id,
        category=category,
        priority=priority,
        source=source,
        platform=platform,
        kind=kind,
        description=str(data.get("description", "")),
        sender_domains=tuple(d.strip().lower().lstrip(".") for d in domains if d.strip()),
        **{name: _compile_all(written[name], f"{where}: {name}") for name in PATTERN_FIELDS},
        extract_otp=extractors["extract_otp"],
        extract_reference=extractors["extract_reference"],
    )


# --- loading ----------------------------------------------------------------------

@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]                                          # pattern rules, highest priority first
    concepts: tuple[ConceptRule, ...] = ()
    lexicon: Lexicon = field(default_factory=Lexicon)
    kind_patterns: tuple[tuple[str, tuple[Pattern, ...]], ...] = ()  # kind -> what names it, in file order
    reference: re.Pattern | None = None
    sources: tuple[str, ...] = ()
    templates: tuple[Template, ...] = ()                             # [[template]] of the rules file, then learned

    @cached_property
    def _templates_by_fingerprint(self) -> dict[str, Template]:
        return {t.fingerprint: t for t in self.templates}  # a later one (the newest verdict) wins

    def template_for(self, words: str | None) -> Template | None:
        return self._templates_by_fingerprint.get(fingerprint(words)) if words and self.templates else None

    def with_learned(self, learned: tuple[Template, ...]) -> "RuleSet":
        """These rules plus templates learned from the person's verdicts (they come last, so they win)."""
        from_file = tuple(t for t in self.templates if not t.id.startswith(LEARNED_PREFIX))
        return replace(self, templates=from_file + tuple(learned))

    def get(self, rule_id: str) -> Rule | ConceptRule | None:
        return next((rule for rule in (*self.rules, *self.concepts) if rule.id == rule_id), None)

    @cached_property
    def concept_needs(self) -> tuple[tuple[ConceptRule, frozenset[str]], ...]:
        return tuple((concept, concept.needs) for concept in self.concepts)


def _read_toml(text: str, source: str) -> dict:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RulesError(f"{source}: not valid TOML: {err}") from err
    unknown = set(document) - {"rule", "concept", "template", "kinds", "defaults", "words"}
    if unknown:
        raise RulesError(f"{source}: unknown table(s) {', '.join(sorted(unknown))} "
                         "(expected [[rule]], [[concept]], [[template]], [words.LANGUAGE], [kinds], [defaults])")
    for name in ("rule", "concept", "template"):
        if not isinstance(document.get(name, []), list):
            raise RulesError(f"{source}: write {name}s as [[{name}]] tables")
    defaults = document.get("defaults", {})
    if set(defaults) - _DEFAULT_KEYS:
        raise RulesError(f"{source}: [defaults] may only set {', '.join(sorted(_DEFAULT_KEYS))}")
    return document


def _kind_patterns(kinds: dict, source: str) -> dict[str, tuple[Pattern, ...]]:
    out = {}
    for kind, patterns in kinds.items():
        if kind not in KINDS:
            raise RulesError(f"{source}: [kinds]: unknown kind {kind!r} (one of: {', '.join(KINDS)})")
        where = f"{source}: [kinds] {kind}"
        out[kind] = _compile_all(_pattern_list(patterns, where), where)
    return out


def _tables_by_id(document: dict, name: str, source: str, into: dict[str, tuple[dict, str, int]]) -> None:
    """Add the [[rule]] or [[concept]] tables of one file; a table with a known id replaces it."""
    seen_here: set[str] = set()
    for index, table in enumerate(document.get(name, []), 1):
        if not isinstance(table, dict):
            raise RulesError(f"{source}: {name} #{index}: expected a [[{name}]] table")
        table_id = table.get("id")
        if not isinstance(table_id, str) or not table_id.strip():
            raise RulesError(f"{source}: {name} #{index}: missing 'id'")
        if table_id in seen_here:
            raise RulesError(f"{source}: {name} {table_id!r}: the id is used twice in this file")
        seen_here.add(table_id)
        into.pop(table_id, None)  # an override takes the place of the original in file order
        if table.get("enabled", True) is not False:
            into[table_id] = (table, source, index)


LEARNED_PREFIX = "learned:"
# What a verdict may make a mail (review --as, a [[template]]): held and fake are not meanings.
TEMPLATE_CATEGORIES = tuple(c for c in CATEGORIES if c not in (META_OTHER, SUSPICIOUS))


def _build_template(table: dict, source: str, index: int) -> Template:
    """A [[template]] of a rules file: ``rules export`` writes them from learned verdicts."""
    where = f"{source}: template #{index}"
    unknown = set(table) - {"id", "category", "words", "platform", "kind", "description"}
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    template_id, category, words = table.get("id"), table.get("category"), table.get("words")
    if not isinstance(template_id, str) or not template_id.strip() or template_id.startswith(LEARNED_PREFIX):
        raise RulesError(f"{where}: 'id' must be a name (not starting with {LEARNED_PREFIX!r})")
    if category not in TEMPLATE_CATEGORIES:
        raise RulesError(f"{where}: category must be one of {', '.join(TEMPLATE_CATEGORIES)}")
    if not isinstance(words, str) or not words.strip():
        raise RulesError(f"{where}: 'words' must be the masked text `rules export` writes")
    platform, kind = table.get("platform"), table.get("kind")
    if platform is not None and platform not in PLATFORMS:
        raise RulesError(f"{where}: platform must be one of {', '.join(PLATFORMS)}")
    if kind is not None and kind not in KINDS:
        raise RulesError(f"{where}: kind must be one of {', '.join(KINDS)}")
    return Template(id=template_id, category=category, words=" ".join(words.split()), platform=platform,
                    kind=kind, source=f"template {template_id} of {source}")


def load_rules(user_file: Path | None = None) -> RuleSet:
    """The built-in word lists and rules, plus those of ``user_file``.

    A user rule or concept with the id of a built-in one replaces it entirely;
    ``enabled = false`` removes it. Other user rules are added, and
    ``[words.LANGUAGE]`` lists add words to a language's concepts. ``[kinds]``
    entries and ``[defaults]`` of the user file replace the built-in ones by key.
    Raises :class:`RulesError` naming the file and the rule for any mistake.
    """
    builtin = resources.files("tracker.rules").joinpath(DEFAULT_RULES_FILE)
    documents = [(_read_toml(builtin.read_text(encoding="utf-8"), f"{DEFAULT_RULES_FILE} (built in)"),
                  f"{DEFAULT_RULES_FILE} (built in)")]
    if user_file is not None:
        try:
            text = Path(user_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise RulesError(f"{user_file}: cannot read rules file: {err}") from err
        documents.append((_read_toml(text, str(user_file)), str(user_file)))

    # Merge first, build second, so a user's [defaults] applies to built-in rules too.
    rule_tables: dict[str, tuple[dict, str, int]] = {}
    concept_tables: dict[str, tuple[dict, str, int]] = {}
    kinds: dict[str, tuple[Pattern, ...]] = {}
    defaults: dict[str, str] = {}
    extra_words: dict[str, dict[str, list[str]]] = {}
    for document, source in documents:
        defaults.update(document.get("defaults", {}))
        kinds.update(_kind_patterns(document.get("kinds", {}), source))
        _tables_by_id(document, "rule", source, rule_tables)
        _tables_by_id(document, "concept", source, concept_tables)
        words = document.get("words", {})
        if not isinstance(words, dict):
            raise RulesError(f"{source}: [words] must hold one table per language: [words.de]")
        for language, concepts in words.items():
            if not isinstance(concepts, dict):
                raise RulesError(f"{source}: [words.{language}] must be a table of word lists")
            for concept, terms in concepts.items():
                extra_words.setdefault(language, {}).setdefault(concept, []).extend(
                    terms if isinstance(terms, list) else [terms])

    templates = tuple(_build_template(table, source, index) for document, source in documents
                      for index, table in enumerate(document.get("template", []), 1))
    default_reference = defaults.get("extract_reference")
    rules = [_build_rule(table, source, index, None) for table, source, index in rule_tables.values()]
    concepts = tuple(build_concept_rule(table, source, index, KINDS)
                     for table, source, index in concept_tables.values())
    reference = _compile(normalise_pattern(default_reference), "[defaults] extract_reference") \
        if default_reference else None
    user_source = documents[-1][1] if user_file is not None else ""
    return RuleSet(
        rules=tuple(sorted(rules, key=lambda rule: -rule.priority)),  # stable: equal priorities keep file order
        concepts=concepts,
        lexicon=load_lexicon(extra_words, user_source),
        kind_patterns=tuple(kinds.items()),
        reference=reference,
        sources=tuple(s for _, s in documents),
        templates=templates,
    )


# --- classification ---------------------------------------------------------------

def platform_of(mail: ParsedMail, rule_platform: str | None = None, reading: Reading | None = None) -> str | None:
    """Which platform a mail is about: the rule's word, else the sender, else what the mail names.

    Mail from meta.com or metamail.com that names no platform leaves it open (None).
    """
    if rule_platform:
        return rule_platform
    domain = mail.sender_domain
    if is_meta_domain(domain, _INSTAGRAM_DOMAINS):
        return "instagram"
    if is_meta_domain(domain, _WHATSAPP_DOMAINS):
        return "whatsapp"
    in_subject = set(_PLATFORM_MENTION.findall(mail.normalised_subject))
    if len(in_subject) == 1:
        return in_subject.pop()
    if is_meta_domain(domain, _FACEBOOK_DOMAINS):
        return "facebook"
    # Impersonators put the brand in the display name ("Instagram Support").
    in_name = set(_PLATFORM_MENTION.findall(normalise(mail.sender_name)))
    if len(in_name) == 1:
        return in_name.pop()
    # Mails often name both ("from Facebook and Instagram"); the first is the one meant.
    texts = (s.normalised for s in reading.sentences) if reading is not None else (mail.normalised_text,)
    for text in texts:
        found = _PLATFORM_MENTION.search(text)
        if found:
            return found.group(1)
    return None


@dataclass(frozen=True)
class _CodeFinding:
    code: str | None            # digits only
    for_request: bool           # the code confirms a request, form or objection
    for_login: bool             # the code logs in, resets a password or confirms an address
    sentence: Sentence | None


def _first_reference(reading: Reading, pattern: re.Pattern | None) -> str | None:
    """Meta's reference number: the first one in the subject or Meta's sentences."""
    for sentence in reading.sentences:
        if _DIGIT.search(sentence.normalised):
            found = _references(sentence.normalised, pattern)
            if found:
                return min(found, key=sentence.normalised.find)
    return None


def _references(text: str, pattern: re.Pattern | None) -> set[str]:
    if pattern is None:
        return set()
    return {next((g for g in found.groups() if g), "") for found in pattern.finditer(text)}


def _find_code(reading: Reading, reference: re.Pattern | None) -> _CodeFinding | None:
    """The one-time code in Meta's text and what the words around it say it is for.

    The sentences around each code say what it is for. Strong signs of a
    request: a word of the privacy topic, or "confirm" next to "request",
    "form" or "objection" in one sentence. Signs of Meta's ordinary codes:
    logging in, passwords, a new address. Weaker signs of a request ("confirm"
    in one sentence, "form" in the next) count only when nothing speaks of
    logging in. When the sentences around the code say nothing, the whole
    mail is asked.
    """
    sentences = reading.sentences
    found_code: tuple[str, Sentence] | None = None
    near: set[str] = set()
    confirms_request = False
    for index, sentence in enumerate(sentences):
        if sentence.quoted:
            continue
        references = None
        for found in CODE.finditer(sentence.normalised):
            if references is None:
                references = _references(sentence.normalised, reference)
            digits = re.sub(r"\D", "", found.group(1))
            if found.group(1) in references or digits in references:
                continue  # "case 12345678" is a reference number, not a code
            context = [s for s in sentences[max(0, index - _CODE_CONTEXT_BEFORE):index + _CODE_CONTEXT_AFTER + 1]
                       if not s.quoted]
            concepts = set().union(*(s.concepts() for s in context))
            if not concepts & {"code", "confirm"}:
                continue  # a number with no word for a code near it: an amount, a phone number...
            found_code = found_code or (digits, sentence)
            near |= concepts
            confirms_request = confirms_request or any(_near(s, "confirm", "request", 8) for s in context)
    if found_code is None:
        return None
    if not near & (TOPIC_CONCEPTS | {"login", "request"}):  # the words around the code do not say
        near = set(reading.concepts())
        confirms_request = any(_near(s, "confirm", "request", 8) for s in sentences if not s.quoted)
    strong = bool(near & TOPIC_CONCEPTS) or confirms_request
    for_login = "login" in near
    weak = "confirm" in near and "request" in near
    return _CodeFinding(found_code[0], strong or (weak and not for_login), for_login, found_code[1])


def _near(sentence: Sentence, first: str, second: str, window: int) -> bool:
    return any(abs(a.start - b.start) <= window for a in sentence.of(first) for b in sentence.of(second))


@dataclass(frozen=True)
class MailText:
    """The normalised text of a mail as pattern rules see it, with its word sets for the cheap tests."""

    subject: str
    body: str
    sender_domain: str
    subject_words: frozenset[str]
    body_words: frozenset[str]

    @classmethod
    def of(cls, mail: ParsedMail) -> "MailText":
        return cls(mail.normalised_subject, mail.normalised_text, mail.sender_domain,
                   words_of(mail.normalised_subject), words_of(mail.normalised_text))


@dataclass(frozen=True)
class _Decision:
    classification: Classification
    deciding: Signal | None = None
    runner_up: Signal | None = None
    reading: Reading | None = None
    signals: tuple[Signal, ...] = ()
    pattern_rule: Rule | None = None
    pattern_found: re.Match | bool | None = None


def _strongest(signals: list[Signal]) -> dict[str, Signal]:
    best: dict[str, Signal] = {}
    for signal in signals:
        if signal.category not in best or signal.strength > best[signal.category].strength:
            best[signal.category] = signal
    return best


def _resolve(signals: list[Signal]) -> tuple[Signal | None, Signal | None, tuple[str, ...]]:
    """(deciding signal, runner-up, conflicting categories).

    With a conflict, the two signals are the two readings, and the person decides.
    """
    best = _strongest(signals)
    strong = {category for category, signal in best.items() if signal.strength == STRONG}
    for a, b in CONFLICTING:
        if a in strong and b in strong:
            first, second = sorted((a, b), key=PRECEDENCE.index)
            return best[first], best[second], (first, second)
    # A decision, even a weak sign of one, says more than "we received your request".
    ranked = sorted(best.values(), key=lambda s: (s.category in _RECEIPT_OR_NEWS, -s.strength,
                                                  PRECEDENCE.index(s.category)))
    return (ranked[0] if ranked else None), (ranked[1] if len(ranked) > 1 else None), ()


def _kind_of(reading: Reading, text: MailText | None, rules: RuleSet, category: str,
             rule_kind: str | None = None) -> str | None:
    if category not in REQUEST_CATEGORIES:
        return None
    if rule_kind:
        return rule_kind
    for sentence in reading.sentences:
        if not sentence.quoted and "third_party" in sentence.concepts():
            return "third_party_data"
    if text is not None:
        for kind, patterns in rules.kind_patterns:
            if (_first_search(patterns, text.subject, text.subject_words)
                    or _first_search(patterns, text.body, text.body_words)):
                return kind
    return DEFAULT_KIND


def _describe(signal: Signal) -> str:
    sentence = signal.sentence.text
    if len(sentence) > 160:
        sentence = sentence[:157] + "..."
    return f'{signal.category} by {signal.rule} in "{_masked(sentence)}"'


def _masked(text: str) -> str:
    return CODE.sub(lambda found: re.sub(r"\d", "*", found.group(0)), text)


def _decide(mail: ParsedMail, rules: RuleSet, auth: AuthenticitySettings, verdict: AuthVerdict) -> _Decision:
    def result(category: str, reason: str, *, platform: str | None = None, kind: str | None = None,
               otp: str | None = None, reference: str | None = None, rule: str | None = None,
               guesses: tuple[str, ...] = ()) -> Classification:
        return Classification(category, platform, kind, otp, reference, rule,
                              verdict.authenticated, verdict.label, reason, guesses)

    # Decided by the sender alone, before any word is read.
    if not verdict.concerns_meta:
        return _Decision(result(UNRELATED, verdict.reason))
    if verdict.suspicious:
        return _Decision(result(SUSPICIOUS, verdict.reason, platform=platform_of(mail)))

    reading = read(mail.subject, mail.text, rules.lexicon)
    platform = platform_of(mail, reading=reading)
    reference = _first_reference(reading, rules.reference)
    if verdict.held:
        return _Decision(result(META_OTHER, f"Held for review: {verdict.held}", platform=platform),
                         reading=reading)

    # The person said what a mail of exactly this template means (a verdict, or an exported
    # [[template]]): it decides, but only for mail whose sender is verified.
    if verdict.authenticated is True and rules.templates:
        learned = rules.template_for(template_words(mail.subject, mail.text, mail.recipient))
        if learned is not None:
            return _finish(mail, rules, auth, verdict, reading, result, learned.category, learned.id,
                           f"learned from {learned.source}", platform=platform_of(mail, learned.platform),
                           kind=learned.kind, reference=reference, code=_find_code(reading, rules.reference),
                           decision=dict(reading=reading))

    # A pattern rule that matches is the person's own word for this template: it decides.
    text = MailText.of(mail) if rules.rules else None
    for rule in rules.rules:
        found = rule.match(text)
        if found:
            return _finish(mail, rules, auth, verdict, reading, result, rule.category, rule.id,
                           f"rule {rule.id} matched{_quoted(found)}", platform=platform_of(mail, rule.platform),
                           kind=rule.kind, reference=_first_group(rule.extract_reference, text.subject, text.body)
                           or reference, otp_pattern=rule.extract_otp, text=text,
                           decision=dict(pattern_rule=rule, pattern_found=found))

    signals = [signal for sentence in reading.sentences if sentence.found and not sentence.quoted
               for concept, needs in rules.concept_needs if needs <= sentence.found
               if (signal := evaluate(concept, sentence)) is not None]
    code = _find_code(reading, rules.reference)
    concepts = reading.concepts()
    topic = bool(concepts & TOPIC_CONCEPTS)
    ordinary = "ordinary" in concepts or (code is not None and code.for_login and not code.for_request)
    if code is not None and code.for_request and code.sentence is not None:
        signals.append(Signal(OTP, STRONG, "code.for-request", code.sentence, ()))
    # In Meta's ordinary mail, a decision needs the topic: "we received a request to
    # reset your password" is not about an objection.
    if ordinary and not topic:
        signals = [s for s in signals if s.category not in REQUEST_CATEGORIES or s.category == OTP]

    deciding, runner_up, conflict = _resolve(signals)
    info = dict(reading=reading, signals=tuple(signals), runner_up=runner_up)
    if conflict:
        first, second = deciding, runner_up
        reason = (f"Held for review: the mail reads as {first.category} ({_describe(first)}) "
                  f"and as {second.category} ({_describe(second)}).")
        return _Decision(result(META_OTHER, reason, platform=platform, reference=reference, guesses=conflict),
                         deciding=first, **info)
    if deciding is not None and ordinary and deciding.strength < STRONG:
        deciding = None
    subject_says_decision = any(s.in_subject and "decision" in s.found for s in reading.sentences)
    if deciding is not None and deciding.category in _RECEIPT_OR_NEWS and subject_says_decision and topic:
        # Subject "Decision on your objection", but no sentence says which: the person reads it.
        why = (f"The subject announces a decision, but no sentence says which; it reads only as "
               f"{deciding.category} ({_describe(deciding)}): held for review.")
        return _Decision(result(META_OTHER, why, platform=platform, reference=reference,
                                guesses=(deciding.category,)), deciding=deciding, **info)
    if deciding is None:
        if ordinary:
            why = "One of Meta's ordinary mails (log-in codes, notifications...), not about a privacy request."
            return _Decision(result(UNRELATED, why), **info)
        if topic:
            found = sorted(concepts & TOPIC_CONCEPTS)
            why = (f"A Meta mail about the privacy topic ({', '.join(found)}) that no rule recognises: "
                   "held for review.")
            return _Decision(result(META_OTHER, why, platform=platform, reference=reference), **info)
        why = "Meta mail that does not mention a privacy request."
        return _Decision(result(UNRELATED, why), **info)

    concept = rules.get(deciding.rule)
    rule_kind = concept.kind if isinstance(concept, ConceptRule) else None
    finished = _finish(mail, rules, auth, verdict, reading, result, deciding.category, deciding.rule,
                   f'rule {deciding.rule} read "{_masked(_short(deciding.sentence.text))}"'
                   + (f" ({deciding.words()})" if deciding.matched else ""),
                   platform=platform, kind=rule_kind, reference=reference, code=code,
                   decision=dict(deciding=deciding, **info))
    if deciding.strength < STRONG and finished.classification.category in _DECISIONS:
        finished = replace(finished, classification=replace(finished.classification, uncertain=True))
    return finished


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _finish(mail, rules, auth, verdict, reading, result, category, rule_id, how, *, platform, kind, reference,
            code=None, otp_pattern=None, text=None, decision) -> _Decision:
    # "trust" is for mail that carries no Authentication-Results at all (a local archive),
    # not for mail whose server found no pass.
    trusted = verdict.authenticated is True or (auth.unverified == "trust" and verdict.authenticated is None
                                                and not mail.auth_results)
    kind = _kind_of(reading, text, rules, category, kind)
    if not trusted and category not in (UNRELATED, SUSPICIOUS, META_OTHER):
        reason = f"Sender not verified: {verdict.reason} Held for review; {how} would make it {category}."
        return _Decision(result(META_OTHER, reason, platform=platform, reference=reference,
                                guesses=(category,)), **decision)
    otp = None
    if category == OTP and verdict.authenticated is True:  # never from unverified mail, even when trusted
        if otp_pattern is not None and text is not None:
            otp = _first_group(otp_pattern, text.subject, text.body)
        elif code is not None:
            otp = code.code
    meaning = _MEANING[category]
    reason = f"{meaning[0].upper()}{meaning[1:]}: {how}"
    if category == OTP and verdict.authenticated is not True:
        reason += ", but the code is not shown: the sender is not verified"
    elif category == OTP and otp is None:
        reason += ", but no code was found in the mail"
    return _Decision(result(category, reason + ".", platform=platform, kind=kind, otp=otp, reference=reference,
                            rule=rule_id), **decision)


def _first_group(pattern: re.Pattern | None, *texts: str) -> str | None:
    if pattern is None:
        return None
    for text in texts:
        found = pattern.search(text)
        if found:
            value = next((g for g in found.groups() if g), None)
            if value:
                return value
    return None


def _quoted(found: re.Match | bool | None) -> str:
    if not isinstance(found, re.Match):
        return ""
    matched = _masked(found.group(0))
    return f' ("{matched[:80]}{"..." if len(matched) > 80 else ""}")'


def classify(mail: ParsedMail, rules: RuleSet, auth: AuthenticitySettings) -> Classification:
    """The category of one parsed mail, with platform, kind, code and the reason."""
    return _decide(mail, rules, auth, check_authenticity(mail, auth)).classification


def explain(mail: ParsedMail, rules: RuleSet, auth: AuthenticitySettings) -> Explanation:
    """Why a mail got its category: the deciding sentence, its words, and the runner-up."""
    verdict = check_authenticity(mail, auth)
    decision = _decide(mail, rules, auth, verdict)
    sender = f"{mail.sender_name} <{mail.sender_address}>" if mail.sender_name else mail.sender_address
    deciding = decision.deciding
    winner = decision.pattern_rule.id if decision.pattern_rule else (deciding.rule if deciding else None)
    if decision.pattern_rule is not None:
        matched_text = _masked(decision.pattern_found.group(0)) if isinstance(decision.pattern_found, re.Match) else None
        words = None
    else:
        matched_text = _masked(deciding.sentence.text) if deciding else None
        words = deciding.words() if deciding and deciding.matched else None
    return Explanation(
        classification=decision.classification,
        verdict=verdict,
        sender=sender,
        recipient=mail.recipient,
        subject=mail.subject,
        winner=winner,
        matched_text=matched_text,
        matched_words=words,
        runner_up=_describe(decision.runner_up) if decision.runner_up else None,
        languages=tuple(sorted(decision.reading.languages)) if decision.reading else (),
        signals=decision.signals,
    )
