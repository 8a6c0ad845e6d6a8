"""Pattern rules that put a category on a mail: is it a code, an acknowledgement, a refusal...?

Pure apart from reading the rules files. The order of decisions:

1. Authenticity (:mod:`tracker.authenticity`). Mail that neither comes from
   Meta nor pretends to is ``unrelated`` before any body pattern runs; mail
   that pretends to be Meta is ``suspicious``, never a request category and
   never with a code.
2. Rules, highest priority first; the first rule that matches wins. Refusals
   have the highest priorities so that "we will not honour your objection" is
   not read as an approval. A low-priority rule of category ``meta_other``
   catches Meta mail that talks about a privacy request in words no specific
   rule knows, so it reaches the person instead of being dropped.
3. Meta mail whose sender could not be verified is held for review as
   ``meta_other`` (unless the settings say to trust it), because acting on a
   forged refusal or code would be worse than asking.

Patterns are matched against normalised text (:func:`tracker.text.normalise`)
and are normalised the same way when loaded, so rule authors write plain
lower-case words with straight quotes.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tracker.authenticity import AuthVerdict, check_authenticity, is_meta_domain
from tracker.config import AuthenticitySettings
from tracker.errors import RulesError
from tracker.parse import ParsedMail
from tracker.rules.prefilter import Pattern, compile_pattern, words_of
from tracker.text import normalise
from tracker.vocabulary import (CATEGORIES, KINDS, META_OTHER, OTP, PLATFORMS, REQUEST_CATEGORIES,
                                SUSPICIOUS, UNRELATED, DEFAULT_KIND)

DEFAULT_RULES_FILE = "default_rules.toml"

PATTERN_FIELDS = ("subject_any", "subject_all", "body_any", "body_all", "none")
_RULE_KEYS = frozenset({"id", "category", "priority", "platform", "kind", "description", "enabled",
                        "sender_domains", "extract_otp", "extract_reference", *PATTERN_FIELDS})
_DEFAULT_KEYS = frozenset({"extract_reference"})

_INSTAGRAM_DOMAINS = ("instagram.com",)
_FACEBOOK_DOMAINS = ("facebookmail.com", "facebook.com", "fb.com")
_PLATFORM_MENTION = re.compile(r"\b(facebook|instagram)\b")

# What each category means, for the one-sentence reason of a classification.
_MEANING = {
    "otp": "a one-time code for the objection form",
    "acknowledgement": "Meta confirms it received the request",
    "approved": "Meta honours the objection or grants the request",
    "rejected": "Meta refuses the request",
    "info_requested": "Meta asks for more information",
    "extended": "Meta extends its deadline by two months",
    "notice": "Meta announces AI training or a policy change",
    "meta_other": "a Meta mail about a privacy request that no specific rule recognises",
    "suspicious": "a mail that a rule marks as suspicious",
    "unrelated": "a Meta mail that a rule marks as unrelated",
}


# --- results ------------------------------------------------------------------

@dataclass(frozen=True)
class Classification:
    category: str
    platform: str | None
    kind: str | None
    otp: str | None            # only for authentic (or trusted) Meta mail
    reference: str | None      # Meta's case or reference number, when the mail gives one
    rule: str | None           # id of the rule that decided, None when no rule did
    authenticated: bool | None
    authenticity: str          # short label: "dkim-pass", "unverified", "lookalike-domain", "not-meta"...
    reason: str                # one sentence: why this category


@dataclass(frozen=True)
class RuleCheck:
    """How one rule fared on one mail, for ``privacy-tracker rules test``."""

    rule_id: str
    category: str
    priority: int
    matched: bool
    note: str


@dataclass(frozen=True)
class Explanation:
    classification: Classification
    verdict: AuthVerdict
    sender: str
    recipient: str | None
    subject: str
    winner: str | None
    matched_text: str | None    # the winning rule's match with some text around it
    checks: tuple[RuleCheck, ...]

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
        if self.matched_text:
            lines.append(f'Matched:      "{self.matched_text}"')
        lines.append("Rules, highest priority first (* decided, + matches too):")
        width = max((len(check.rule_id) for check in self.checks), default=0)
        for check in self.checks:
            mark = "*" if check.rule_id == self.winner else ("+" if check.matched else " ")
            lines.append(f"  {mark} {check.priority:>4}  {check.rule_id:<{width}}  {check.category:<15}  {check.note}")
        return "\n".join(lines)


# --- rules ----------------------------------------------------------------------

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


@dataclass(frozen=True)
class MailText:
    """The normalised text of a mail as the rules see it, with its word sets for the cheap tests."""

    subject: str
    body: str
    sender_domain: str
    subject_words: frozenset[str]
    body_words: frozenset[str]

    @classmethod
    def of(cls, mail: ParsedMail) -> "MailText":
        return cls(mail.normalised_subject, mail.normalised_text, mail.sender_domain,
                   words_of(mail.normalised_subject), words_of(mail.normalised_text))


def _first_search(patterns: tuple[Pattern, ...], text: str, words: frozenset[str]) -> re.Match | None:
    for pattern in patterns:
        found = pattern.search(text, words)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]                                          # highest priority first
    kind_patterns: tuple[tuple[str, tuple[Pattern, ...]], ...] = ()  # kind -> what names it, in file order
    sources: tuple[str, ...] = ()

    def get(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)


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


def _read_toml(text: str, source: str) -> dict:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RulesError(f"{source}: not valid TOML: {err}") from err
    unknown = set(document) - {"rule", "kinds", "defaults"}
    if unknown:
        raise RulesError(f"{source}: unknown table(s) {', '.join(sorted(unknown))} "
                         "(expected [[rule]], [kinds], [defaults])")
    if not isinstance(document.get("rule", []), list):
        raise RulesError(f"{source}: rules are written as [[rule]] tables")
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


def load_rules(user_file: Path | None = None) -> RuleSet:
    """The built-in rules, plus the rules of ``user_file``.

    A user rule with the id of a built-in rule replaces it entirely;
    ``enabled = false`` removes it. Other user rules are added. ``[kinds]``
    entries and ``[defaults]`` of the user file replace the built-in ones by key.
    Raises :class:`RulesError` naming the file and the rule for any mistake.
    """
    builtin = resources.files("tracker.rules").joinpath(DEFAULT_RULES_FILE)
    documents = [(_read_toml(builtin.read_text(encoding="utf-8"), f"{DEFAULT_RULES_FILE} (built in)"),
                  f"{DEFAULT_RULES_FILE} (built in)")]
    if user_file is not None:
        try:
            text = Path(user_file).read_text(encoding="utf-8")
        except OSError as err:
            raise RulesError(f"{user_file}: cannot read rules file: {err}") from err
        documents.append((_read_toml(text, str(user_file)), str(user_file)))

    # Merge first, build second, so a user's [defaults] applies to built-in rules too.
    rule_tables: dict[str, tuple[dict, str, int]] = {}   # id -> (table, file, position in file)
    kinds: dict[str, tuple[Pattern, ...]] = {}
    defaults: dict[str, str] = {}
    for document, source in documents:
        defaults.update(document.get("defaults", {}))
        kinds.update(_kind_patterns(document.get("kinds", {}), source))
        seen_here: set[str] = set()
        for index, table in enumerate(document.get("rule", []), 1):
            if not isinstance(table, dict):
                raise RulesError(f"{source}: rule #{index}: expected a [[rule]] table")
            rule_id = table.get("id")
            if not isinstance(rule_id, str) or not rule_id.strip():
                raise RulesError(f"{source}: rule #{index}: missing 'id'")
            if rule_id in seen_here:
                raise RulesError(f"{source}: rule {rule_id!r}: the id is used twice in this file")
            seen_here.add(rule_id)
            rule_tables.pop(rule_id, None)  # an override takes the place of the original in file order
            if table.get("enabled", True) is not False:
                rule_tables[rule_id] = (table, source, index)

    default_reference = defaults.get("extract_reference")
    rules = [_build_rule(table, source, index, default_reference) for table, source, index in rule_tables.values()]
    # sorted() is stable: rules of equal priority keep their file order.
    ordered = tuple(sorted(rules, key=lambda rule: -rule.priority))
    return RuleSet(rules=ordered, kind_patterns=tuple(kinds.items()), sources=tuple(s for _, s in documents))


# --- classification ---------------------------------------------------------------

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


def platform_of(mail: ParsedMail, rule_platform: str | None = None) -> str | None:
    """Which platform a mail is about: the rule's word, else the sender, else what the mail mentions."""
    if rule_platform:
        return rule_platform
    domain = mail.sender_domain
    if is_meta_domain(domain, _INSTAGRAM_DOMAINS):
        return "instagram"
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
    found = _PLATFORM_MENTION.search(mail.normalised_text)
    return found.group(1) if found else None


def _kind_of(text: MailText, rules: RuleSet, rule: Rule) -> str | None:
    if rule.kind:
        return rule.kind
    if rule.category not in REQUEST_CATEGORIES:
        return None
    for kind, patterns in rules.kind_patterns:
        if (_first_search(patterns, text.subject, text.subject_words)
                or _first_search(patterns, text.body, text.body_words)):
            return kind
    return DEFAULT_KIND


def _snippet(found: re.Match | bool | None, width: int = 60) -> str | None:
    if not isinstance(found, re.Match):
        return None
    text, start, end = found.string, found.start(), found.end()
    left, right = max(0, start - width), min(len(text), end + width)
    return ("..." if left else "") + text[left:right] + ("..." if right < len(text) else "")


def _quoted(found: re.Match | bool | None) -> str:
    if not isinstance(found, re.Match):
        return ""
    matched = found.group(0)
    return f' ("{matched[:80]}{"..." if len(matched) > 80 else ""}")'


def _winning_rule(text: MailText, rules: RuleSet) -> tuple[Rule | None, re.Match | bool | None]:
    for rule in rules.rules:
        found = rule.match(text)
        if found:
            return rule, found
    return None, None


@dataclass(frozen=True)
class _Decision:
    classification: Classification
    winner: Rule | None = None
    found: re.Match | bool | None = None
    text: MailText | None = None   # None when the rules were not consulted


def _decide(mail: ParsedMail, rules: RuleSet, auth: AuthenticitySettings, verdict: AuthVerdict) -> _Decision:
    def result(category: str, reason: str, *, platform: str | None = None, kind: str | None = None,
               otp: str | None = None, reference: str | None = None, rule: str | None = None) -> Classification:
        return Classification(category, platform, kind, otp, reference, rule,
                              verdict.authenticated, verdict.label, reason)

    # Decided by the sender alone, before any body pattern runs.
    if not verdict.concerns_meta:
        return _Decision(result(UNRELATED, verdict.reason))
    if verdict.suspicious:
        return _Decision(result(SUSPICIOUS, verdict.reason, platform=platform_of(mail)))

    text = MailText.of(mail)
    winner, found = _winning_rule(text, rules)
    if winner is None:
        reason = "Meta mail that no rule recognises and that does not mention a privacy request."
        return _Decision(result(UNRELATED, reason), text=text)

    platform = platform_of(mail, winner.platform)
    trusted = verdict.authenticated is True or auth.unverified == "trust"
    if not trusted and winner.category not in (UNRELATED, SUSPICIOUS):
        # Held for the person: acting on a forged refusal or code would do harm.
        reason = (f"Sender not verified: {verdict.reason} "
                  f"Held for review; rule {winner.id} would make it {winner.category}.")
        return _Decision(result(META_OTHER, reason, platform=platform, kind=winner.kind), winner, found, text)

    otp = None
    if verdict.authenticated is True:  # never from unverified mail, even when trusted for its category
        otp = _first_group(winner.extract_otp, text.subject, text.body)
    reference = _first_group(winner.extract_reference, text.subject, text.body)
    meaning = _MEANING[winner.category]
    quoted = _quoted(found)
    if winner.category == OTP:
        quoted = re.sub(r"\d", "*", quoted)  # reasons are logged and shown; the code is not
    reason = f"{meaning[0].upper()}{meaning[1:]}: rule {winner.id} matched{quoted}"
    if winner.category == OTP and verdict.authenticated is not True:
        reason += ", but the code is not shown: the sender is not verified"
    elif winner.category == OTP and otp is None:
        reason += ", but no code was found in the mail"
    classification = result(winner.category, reason + ".", platform=platform, kind=_kind_of(text, rules, winner),
                            otp=otp, reference=reference, rule=winner.id)
    return _Decision(classification, winner, found, text)


def classify(mail: ParsedMail, rules: RuleSet, auth: AuthenticitySettings) -> Classification:
    """The category of one parsed mail, with platform, kind, code and the reason."""
    return _decide(mail, rules, auth, check_authenticity(mail, auth)).classification


# --- explanation ---------------------------------------------------------------------

def _why_not(rule: Rule, text: MailText) -> str | None:
    """The first condition of ``rule`` that fails on the mail, or None if it matches."""
    if rule.sender_domains and not is_meta_domain(text.sender_domain, rule.sender_domains):
        return (f"sender condition failed: {text.sender_domain or '(none)'} "
                f"is not in {', '.join(rule.sender_domains)}")
    for name, where, content, words in (("subject_any", "subject", text.subject, text.subject_words),
                                        ("body_any", "body", text.body, text.body_words)):
        patterns = getattr(rule, name)
        if patterns and _first_search(patterns, content, words) is None:
            if len(patterns) == 1:
                return f"{where}: pattern '{_shorten(patterns[0].source)}' not found"
            return f"{where}: none of its {len(patterns)} {name} patterns found"
    for name, where, content, words in (("subject_all", "subject", text.subject, text.subject_words),
                                        ("body_all", "body", text.body, text.body_words)):
        for pattern in getattr(rule, name):
            if pattern.search(content, words) is None:
                return f"{where}: pattern '{_shorten(pattern.source)}' not found"
    for content, words in ((text.subject, text.subject_words), (text.body, text.body_words)):
        for pattern in rule.none:
            found = pattern.search(content, words)
            if found is not None:
                return f"excluded by none-pattern '{_shorten(pattern.source)}' (found \"{found.group(0)}\")"
    return None


def _shorten(pattern: str, limit: int = 70) -> str:
    return pattern if len(pattern) <= limit else pattern[:limit - 3] + "..."


def explain(mail: ParsedMail, rules: RuleSet, auth: AuthenticitySettings) -> Explanation:
    """Why a mail got its category: the verdict, the winning rule and what every other rule did."""
    verdict = check_authenticity(mail, auth)
    decision = _decide(mail, rules, auth, verdict)
    winner = decision.winner

    checks = []
    for rule in rules.rules:
        if decision.text is None:
            why = "the sender is not Meta" if not verdict.concerns_meta else "the sender only pretends to be Meta"
            matched, note = False, f"not checked: {why}"
        else:
            failure = _why_not(rule, decision.text)
            matched = failure is None
            if rule is winner:
                note = "matches: the winner"
            elif matched:
                note = f"matches too, but lower priority than the winner {winner.id}"
            else:
                note = failure
        checks.append(RuleCheck(rule.id, rule.category, rule.priority, matched, note))

    sender = f"{mail.sender_name} <{mail.sender_address}>" if mail.sender_name else mail.sender_address
    return Explanation(
        classification=decision.classification,
        verdict=verdict,
        sender=sender,
        recipient=mail.recipient,
        subject=mail.subject,
        winner=winner.id if winner else None,
        matched_text=_snippet(decision.found),
        checks=tuple(checks),
    )
