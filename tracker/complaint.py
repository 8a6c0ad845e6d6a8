"""Complaints to a data protection authority (GDPR Art. 77): the directory, drafts, filings.

The directory is ``authorities.toml`` in this package, compiled from the shared
``dpa_directory.tsv`` by ``scripts/compile_authorities.py``.

Which authority is competent: the one of the country the person lives in
(the request's ``country``). In Germany that is the authority of the Land
(``region``), because the Länder authorities supervise private companies such
as Meta; the federal BfDI does not. Without a country, or in Germany without a
Land, the tracker cannot tell and says so. Ireland's Data Protection
Commission, Meta's lead authority in the EU, is always offered as the
alternative for EU/EEA residents (not for the UK or Switzerland, whose
authorities apply their own law).

A draft is a folder the person reviews and sends: the letter (Markdown and
plain text), an ``.eml`` addressed to the authority with the evidence attached,
a NOTE.txt on how to file, and ``evidence/`` with every mail of the request as
its original bytes, a timeline and their SHA-256. Only what the database and
the evidence mails say goes into the letter; a missing name stays a visible gap.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import textwrap
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr
from functools import cache
from importlib import resources
from pathlib import Path

from sqlmodel import Session

from tracker import lifecycle, store
from tracker import vocabulary as v
from tracker.config import Settings
from tracker.errors import NotFoundError, TrackerError
from tracker.models import Complaint, Message, Request
from tracker.parse import parse_mail
from tracker.safe_text import markdown as markdown_text, one_line, strip_controls

log = logging.getLogger(__name__)

LEAD_AUTHORITY = "IE"  # Meta Platforms Ireland Limited's lead supervisory authority (GDPR one-stop shop)
# The controller for Facebook and Instagram in the EU (datenanfragen companies/facebook.json).
CONTROLLER = "Meta Platforms Ireland Limited, 4 Grand Canal Square, Grand Canal Harbour, Dublin 2, Ireland"
# Country codes people use that the directory spells differently (it uses ISO 3166-1).
_COUNTRY_ALIASES = {"EL": "GR", "UK": "GB"}
# Authorities that get a German letter unless --lang says otherwise.
_GERMAN_SPEAKING = frozenset({"DE", "AT", "LI", "CH"})
LANGUAGES = ("en", "de")


# ---- the directory ---------------------------------------------------------------

@dataclass(frozen=True)
class Authority:
    code: str             # "AT", "DE-BY", ...
    country_code: str     # ISO 3166-1
    region: str           # German Land code for the Länder authorities, else ""
    country: str
    name: str
    website: str
    complaint_url: str
    email: str
    address: str
    notes: str            # how it accepts complaints (QES, PEC, BankID...)
    law: str              # "GDPR", "UK GDPR" or "FADP"
    source: tuple[str, ...]


@cache
def load_authorities() -> dict[str, Authority]:
    text = resources.files("tracker").joinpath("authorities.toml").read_text(encoding="utf-8")
    entries = tomllib.loads(text)["authority"]
    return {e["code"]: Authority(**{**e, "source": tuple(e["source"])}) for e in entries}


def get_authority(code: str) -> Authority:
    directory = load_authorities()
    authority = directory.get(code.strip().upper())
    if authority is None:
        raise NotFoundError(f"no authority with code {code!r}; known codes: {', '.join(directory)}")
    return authority


def authority_name(code: str) -> str:
    authority = load_authorities().get(code)
    return authority.name if authority else code


@dataclass(frozen=True)
class Competence:
    authority: Authority | None    # competent where the person lives; None when that cannot be told
    alternative: Authority | None  # Ireland's DPC, for EU/EEA residents
    explanation: str               # why this one, or what is missing


def competent_authority(country: str | None, region: str | None = None) -> Competence:
    directory = load_authorities()
    lead = directory[LEAD_AUTHORITY]
    country = _COUNTRY_ALIASES.get((country or "").strip().upper(), (country or "").strip().upper())
    region = (region or "").strip().upper()
    if not country:
        return Competence(None, lead, "The request has no country, so the authority where you live is unknown. "
                                      "Give it with --country (e.g. --country AT) or choose one with --authority.")
    if country == "DE":
        if not region:
            return Competence(None, lead, "In Germany the data protection authority of your Land supervises "
                                          "companies such as Meta, and the request names no Land. Give it with "
                                          "--region (e.g. --region BY for Bavaria) or choose one with --authority.")
        authority = directory.get(f"DE-{region}")
        if authority is None:
            lands = sorted(a.region for a in directory.values() if a.region)
            return Competence(None, lead, f"{region!r} is not a German Land code; known: {', '.join(dict.fromkeys(lands))}.")
        return Competence(authority, lead, f"You live in {region}, Germany: the Land authority supervises Meta there.")
    authority = directory.get(country)
    if authority is None:
        return Competence(None, lead, f"The directory has no authority for country {country!r}.")
    if authority.law != "GDPR":
        return Competence(authority, None, f"You live in {authority.country}, where the authority applies the "
                                           f"{authority.law}; the Irish DPC is not an alternative there.")
    if authority.code == LEAD_AUTHORITY:
        return Competence(authority, None, "You live in Ireland: the DPC is both your authority and Meta's lead "
                                           "authority.")
    return Competence(authority, lead, f"You live in {authority.country}: its authority takes your complaint and "
                                       f"works with the Irish DPC, Meta's lead authority.")


# ---- the facts a letter is made of -----------------------------------------------

@dataclass(frozen=True)
class EvidenceMail:
    message: Message
    filename: str             # name inside evidence/
    source: Path | None       # the stored original; None when it was not kept


@dataclass
class Draft:
    folder: Path
    authority: Authority
    language: str
    competence: Competence
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _sentences(text: str) -> list[str]:
    return [" ".join(part.split()) for part in re.split(r"(?<=[.!?])\s+|\n+", text) if part.strip()]


def decisive_sentence(raw: bytes, category: str, settings: Settings) -> str | None:
    """The first sentence of the mail that on its own is classified as ``category``, as Meta wrote it.

    Each sentence is classified as if it were the whole body, without the
    subject, so the quote is the sentence that says "refused" and not merely
    the mail's first line. None when no single sentence decides (the letter
    then points to the attached mail).
    """
    from tracker.rules.engine import classify, load_rules

    mail = parse_mail(raw)
    rules = load_rules(settings.rules.file)
    for sentence in _sentences(mail.text):
        probe = replace(mail, subject="", body_plain=sentence, body_html="")
        if classify(probe, rules, settings.authenticity).category == category:
            return sentence
    return None


def _evidence_mails(messages: list[Message]) -> list[EvidenceMail]:
    out = []
    for index, message in enumerate(messages, start=1):
        day = message.mail_date.date().isoformat() if message.mail_date else "undated"
        source = Path(message.raw_path) if message.raw_path else None
        out.append(EvidenceMail(message, f"{index:02d}-{day}-{message.category}.eml", source))
    return out


def _latest(messages: list[Message], category: str) -> Message | None:
    found = [m for m in messages if m.category == category]
    return found[-1] if found else None


# ---- texts -------------------------------------------------------------------------

def _fmt_day(day: date | datetime | None, language: str) -> str:
    if day is None:
        return "?"
    if isinstance(day, datetime):
        day = day.date()
    return day.strftime("%d.%m.%Y") if language == "de" else day.isoformat()


PLATFORM_NAMES = {"facebook": "Facebook", "instagram": "Instagram"}

_T = {
    "en": {
        "title": "Complaint under Article 77 {law} against Meta Platforms Ireland Limited",
        "to": "To", "date": "Date", "from": "From",
        "complainant": "Complainant",
        "name": "Name", "name_missing": "[your name: please add it before sending]",
        "email": "Email address of the {platform} account", "country": "Country of residence",
        "controller": "Controller",
        "requested": "What I asked Meta",
        "ai_objection": "an objection under Article 21 {law} to the use of my personal data from my {platform} "
                        "account for developing and improving artificial intelligence at Meta (AI training)",
        "third_party_data": "a request under Articles 17 and 21 {law} to stop using, and to erase, personal data "
                            "about me that Meta obtained from third parties and uses for artificial intelligence",
        "submitted": "On {day} I sent Meta {what}.",
        "first_mail": "I sent Meta {what}. Meta's first mail about it is dated {day}, so Meta had received it "
                      "by then.",
        "answer": "Meta's answer",
        "refused": "On {day} Meta refused it, by email from {sender} with the subject \"{subject}\".",
        "quote": "The decisive sentence of that mail reads: \"{sentence}\"",
        "no_quote": "The mail is attached as evidence ({file}).",
        "in_time": "Meta had to answer by {deadline} (Article 12(3) {law}).",
        "late_answer": "Meta had to answer by {deadline} (Article 12(3) {law}); its answer came {days} days late.",
        "no_answer": "Meta had to decide by {deadline} (Article 12(3) {law}{extended}). As of {today} it has not "
                     "decided: {days} days after the deadline.",
        "extended": ", after extending the period by two months",
        "last_mail": "Meta's last mail about it is dated {day}, subject \"{subject}\".",
        "law_heading": "Articles concerned",
        "art21": "Article 21(1) {law}: after an objection, \"the controller shall no longer process the personal "
                 "data unless the controller demonstrates compelling legitimate grounds for the processing which "
                 "override the interests, rights and freedoms of the data subject\".",
        "art21_refused": "Meta refused my {kind_short}. As far as I can see, its answer does not demonstrate such "
                         "compelling legitimate grounds.",
        "art17": "Article 17 {law}: the right to erasure of personal data.",
        "art12_3": "Article 12(3) {law}: the controller must act on a request without undue delay and at the latest "
                   "within one month of receipt; it may extend this by two further months, telling the data "
                   "subject within the first month, with reasons.",
        "art12_4": "Article 12(4) {law}: if the controller does not take action on a request, it must say why "
                   "within one month and mention the possibility of a complaint to a supervisory authority.",
        "art77": "Article 77 {law}: the right to lodge a complaint with a supervisory authority.",
        "ask_heading": "What I ask of the authority",
        "ask": ["to examine this complaint and investigate how Meta handled my {kind_short};",
                "to establish whether Meta infringed Article 21 and Article 12(3) and (4) {law};",
                "to order Meta to comply with my {kind_short} (Article 58(2)(c) {law});",
                "to inform me of the progress and the outcome of the complaint (Article 77(2) {law}), "
                "within three months (Article 78(2) {law})."],
        "kind_short": {"ai_objection": "objection", "third_party_data": "request"},
        "lead": "Meta Platforms Ireland Limited has its main establishment in Ireland. I ask you to handle this "
                "complaint together with the Irish Data Protection Commission as lead supervisory authority "
                "(Articles 56 and 60 GDPR) and to remain my point of contact.",
        "fadp": "The FDPIC works under the Swiss Federal Act on Data Protection (FADP). Please take this letter as "
                "a report; Meta's answer concerns my rights under the GDPR, which Meta applies to my account.",
        "evidence_heading": "Evidence",
        "evidence_intro": "Attached: every mail Meta sent me about this {kind_short}, unchanged, and the timeline. "
                          "SHA-256 of each file:",
        "not_kept": "not kept: the original of this mail was not stored",
        "timeline_heading": "Timeline",
        "closing": "Yours faithfully,",
        "subject": "Complaint under Art. 77 {law}: Meta ({platform}) {outcome} my {kind_short}",
        "outcome_refused": "refused", "outcome_silent": "did not decide on",
    },
    "de": {
        "title": "Beschwerde nach Artikel 77 {law} gegen Meta Platforms Ireland Limited",
        "to": "An", "date": "Datum", "from": "Von",
        "complainant": "Beschwerdeführende Person",
        "name": "Name", "name_missing": "[Ihr Name: bitte vor dem Absenden ergänzen]",
        "email": "E-Mail-Adresse des {platform}-Kontos", "country": "Wohnsitzland",
        "controller": "Verantwortlicher",
        "requested": "Was ich von Meta verlangt habe",
        "ai_objection": "einen Widerspruch nach Artikel 21 {law} gegen die Verwendung meiner personenbezogenen Daten "
                        "aus meinem {platform}-Konto für die Entwicklung und Verbesserung künstlicher Intelligenz "
                        "bei Meta (KI-Training)",
        "third_party_data": "einen Antrag nach Artikel 17 und 21 {law}, personenbezogene Daten über mich, die Meta "
                            "von Dritten erhalten hat und für künstliche Intelligenz verwendet, nicht mehr zu "
                            "verwenden und zu löschen",
        "submitted": "Am {day} habe ich an Meta {what} gerichtet.",
        "first_mail": "Ich habe an Meta {what} gerichtet. Metas erste E-Mail dazu ist vom {day}; spätestens da "
                      "lag er Meta vor.",
        "answer": "Metas Antwort",
        "refused": "Am {day} hat Meta ihn abgelehnt, per E-Mail von {sender} mit dem Betreff \"{subject}\".",
        "quote": "Der entscheidende Satz dieser E-Mail lautet: \"{sentence}\"",
        "no_quote": "Die E-Mail liegt als Beweismittel bei ({file}).",
        "in_time": "Meta musste bis zum {deadline} antworten (Artikel 12 Absatz 3 {law}).",
        "late_answer": "Meta musste bis zum {deadline} antworten (Artikel 12 Absatz 3 {law}); die Antwort kam "
                       "{days} Tage zu spät.",
        "no_answer": "Meta musste bis zum {deadline} entscheiden (Artikel 12 Absatz 3 {law}{extended}). Bis heute, "
                     "{today}, hat Meta nicht entschieden: {days} Tage nach Ablauf der Frist.",
        "extended": ", nach Verlängerung der Frist um zwei Monate",
        "last_mail": "Metas letzte E-Mail dazu ist vom {day}, Betreff \"{subject}\".",
        "law_heading": "Betroffene Artikel",
        "art21": "Artikel 21 Absatz 1 {law}: Nach einem Widerspruch \"verarbeitet der Verantwortliche die "
                 "personenbezogenen Daten nicht mehr, es sei denn, er kann zwingende schutzwürdige Gründe für die "
                 "Verarbeitung nachweisen, die die Interessen, Rechte und Freiheiten der betroffenen Person "
                 "überwiegen\".",
        "art21_refused": "Meta hat meinen {kind_short} abgelehnt. Soweit ich sehe, weist die Antwort solche "
                         "zwingenden schutzwürdigen Gründe nicht nach.",
        "art17": "Artikel 17 {law}: das Recht auf Löschung personenbezogener Daten.",
        "art12_3": "Artikel 12 Absatz 3 {law}: Der Verantwortliche muss unverzüglich, spätestens innerhalb eines "
                   "Monats nach Eingang des Antrags tätig werden; er kann die Frist um weitere zwei Monate "
                   "verlängern und muss dies innerhalb des ersten Monats mit Gründen mitteilen.",
        "art12_4": "Artikel 12 Absatz 4 {law}: Wird der Verantwortliche nicht tätig, muss er innerhalb eines Monats "
                   "die Gründe nennen und auf die Möglichkeit einer Beschwerde bei einer Aufsichtsbehörde hinweisen.",
        "art77": "Artikel 77 {law}: das Recht auf Beschwerde bei einer Aufsichtsbehörde.",
        "ask_heading": "Worum ich die Behörde bitte",
        "ask": ["diese Beschwerde zu prüfen und zu untersuchen, wie Meta mit meinem {kind_short} umgegangen ist;",
                "festzustellen, ob Meta gegen Artikel 21 und Artikel 12 Absatz 3 und 4 {law} verstoßen hat;",
                "Meta anzuweisen, meinem {kind_short} zu entsprechen (Artikel 58 Absatz 2 Buchstabe c {law});",
                "mich über den Stand und das Ergebnis der Beschwerde zu unterrichten (Artikel 77 Absatz 2 {law}), "
                "innerhalb von drei Monaten (Artikel 78 Absatz 2 {law})."],
        "kind_short": {"ai_objection": "Widerspruch", "third_party_data": "Antrag"},
        "lead": "Meta Platforms Ireland Limited hat seine Hauptniederlassung in Irland. Ich bitte Sie, diese "
                "Beschwerde gemeinsam mit der irischen Data Protection Commission als federführender "
                "Aufsichtsbehörde zu bearbeiten (Artikel 56 und 60 DSGVO) und meine Ansprechstelle zu bleiben.",
        "fadp": "Der EDÖB arbeitet nach dem Schweizer Datenschutzgesetz (DSG). Bitte verstehen Sie dieses Schreiben "
                "als Anzeige; Metas Antwort betrifft meine Rechte nach der DSGVO, die Meta auf mein Konto anwendet.",
        "evidence_heading": "Beweismittel",
        "evidence_intro": "Anbei: jede E-Mail, die Meta mir zu diesem {kind_short} geschickt hat, unverändert, und "
                          "die Chronologie. SHA-256 jeder Datei:",
        "not_kept": "nicht vorhanden: das Original dieser E-Mail wurde nicht gespeichert",
        "timeline_heading": "Chronologie",
        "closing": "Mit freundlichen Grüßen",
        "subject": "Beschwerde nach Art. 77 {law}: Meta ({platform}) {outcome} meinen {kind_short}",
        "outcome_refused": "lehnt", "outcome_silent": "entscheidet nicht über",
    },
}
_LAW_NAMES = {"en": {"GDPR": "GDPR", "UK GDPR": "UK GDPR", "FADP": "GDPR"},
              "de": {"GDPR": "DSGVO", "UK GDPR": "UK GDPR", "FADP": "DSGVO"}}
_GERMAN_OUTCOME_SUFFIX = {"lehnt": " ab"}  # "Meta lehnt meinen Widerspruch ab"


@dataclass(frozen=True)
class Section:
    heading: str | None
    paragraphs: tuple[str, ...] = ()
    items: tuple[str, ...] = ()       # a list after the paragraphs
    numbered: bool = False


@dataclass(frozen=True)
class Letter:
    title: str
    subject: str
    sections: tuple[Section, ...]

    def markdown(self) -> str:
        """The letter in Markdown. Its text is escaped line by line, template and facts alike:
        a subject or a name from a mail renders as the characters it has, never as a heading,
        a link or HTML. Only the title, the headings and the lists are Markdown."""
        out = [f"# {self.title}", ""]
        for section in self.sections:
            if section.heading:
                out += [f"## {section.heading}", ""]
            for paragraph in section.paragraphs:
                out += ["  \n".join(markdown_text(line) for line in paragraph.split("\n")), ""]
            for n, item in enumerate(section.items, start=1):
                item = markdown_text(item)
                out.append(f"{n}. {item}" if section.numbered else f"- {item}")
            if section.items:
                out.append("")
        return "\n".join(out).rstrip() + "\n"

    def text(self, width: int = 78) -> str:
        out = [self.title, "=" * min(len(self.title), width), ""]
        for section in self.sections:
            if section.heading:
                out += [section.heading, "-" * len(section.heading), ""]
            for paragraph in section.paragraphs:
                for line in paragraph.split("\n"):
                    out += textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False) or [""]
                out.append("")
            for n, item in enumerate(section.items, start=1):
                bullet = f"{n}. " if section.numbered else "- "
                out += textwrap.wrap(item, width, initial_indent=bullet, subsequent_indent=" " * len(bullet),
                                     break_long_words=False, break_on_hyphens=False)
            if section.items:
                out.append("")
        return "\n".join(out).rstrip() + "\n"


@dataclass(frozen=True)
class CaseFacts:
    """Everything the letter states, read from the database and the evidence mails."""

    request: Request
    timeline: lifecycle.Timeline
    refusal: Message | None
    refusal_sentence: str | None
    refusal_file: str | None  # "evidence/02-...eml", None when its original was not kept
    last_mail: Message | None
    evidence: tuple[tuple[str, str | None], ...]  # (file name, SHA-256 or None when not kept)
    timeline_text: str
    name: str | None
    country: str | None       # where the person lives: the request's, or what the command was told
    region: str | None
    today: date


def build_letter(facts: CaseFacts, authority: Authority, language: str) -> Letter:
    t = _T[language]
    law = _LAW_NAMES[language][authority.law]
    request, timeline = facts.request, facts.timeline
    # What a mail or the command line gave is one line here: a newline in a subject or a name
    # would start a line of its own in the letter (letter.md escapes it further, see Letter).
    address, name = one_line(request.address), one_line(facts.name) or None
    platform = PLATFORM_NAMES.get(request.platform, request.platform)
    kind_short = t["kind_short"].get(request.kind, t["kind_short"][v.DEFAULT_KIND])
    day = lambda d: _fmt_day(d, language)  # noqa: E731
    fill = dict(law=law, platform=platform, kind_short=kind_short)

    header = Section(None, (f"{t['to']}: {authority.name}\n{authority.address}"
                            + (f"\n{authority.email}" if authority.email else ""),
                            f"{t['date']}: {day(facts.today)}"))
    person = [f"{t['name']}: {name or t['name_missing']}",
              f"{t['email'].format(**fill)}: {address}"]
    if facts.country:
        person.append(f"{t['country']}: {one_line(facts.country)}"
                      + (f" ({one_line(facts.region)})" if facts.region else ""))
    complainant = Section(t["complainant"], ("\n".join(person),))
    controller = Section(t["controller"], (CONTROLLER,))

    what = t.get(request.kind, t[v.DEFAULT_KIND]).format(**fill)
    if request.submitted:
        asked = t["submitted"].format(day=day(request.submitted), what=what)
    else:
        asked = t["first_mail"].format(day=day(timeline.received), what=what)
    requested = Section(t["requested"], (asked,))

    answer = []
    extended = t["extended"] if timeline.extended else ""
    if facts.refusal is not None:
        answer.append(t["refused"].format(day=day(facts.refusal.mail_date), sender=one_line(facts.refusal.sender),
                                          subject=one_line(facts.refusal.subject)))
        if facts.refusal_sentence:
            answer.append(t["quote"].format(sentence=one_line(facts.refusal_sentence)))
        elif facts.refusal_file:
            answer.append(t["no_quote"].format(file=facts.refusal_file))
        if timeline.deadline and timeline.decided:
            late = (timeline.decided - timeline.deadline).days
            answer.append(t["late_answer"].format(deadline=day(timeline.deadline), days=late, law=law) if late > 0
                          else t["in_time"].format(deadline=day(timeline.deadline), law=law))
        answer.append(t["art21_refused"].format(kind_short=kind_short))
    elif timeline.deadline:
        answer.append(t["no_answer"].format(deadline=day(timeline.deadline), law=law, extended=extended,
                                            today=day(facts.today),
                                            days=(facts.today - timeline.deadline).days))
        if facts.last_mail is not None:
            answer.append(t["last_mail"].format(day=day(facts.last_mail.mail_date),
                                                subject=one_line(facts.last_mail.subject)))
    answer_section = Section(t["answer"], tuple(answer))

    articles = [t["art21"].format(**fill)]
    if request.kind == "third_party_data":
        articles.append(t["art17"].format(**fill))
    articles += [t["art12_3"].format(**fill), t["art12_4"].format(**fill), t["art77"].format(**fill)]
    law_section = Section(t["law_heading"], items=tuple(articles))

    extra = ()
    if authority.law == "FADP":
        extra = (t["fadp"],)
    elif authority.law == "GDPR" and authority.code != LEAD_AUTHORITY:
        extra = (t["lead"],)
    ask = Section(t["ask_heading"], items=tuple(item.format(**fill) for item in t["ask"]), numbered=True)
    after_ask = Section(None, extra) if extra else None

    listed = tuple(f"{name}: {digest}" if digest else f"{name}: {t['not_kept']}" for name, digest in facts.evidence)
    evidence = Section(t["evidence_heading"], (t["evidence_intro"].format(**fill),), items=listed)
    timeline_section = Section(t["timeline_heading"], items=tuple(facts.timeline_text.splitlines()))
    closing = Section(None, (t["closing"] + ("\n" + name if name else ""),))

    outcome = t["outcome_refused"] if facts.refusal is not None else t["outcome_silent"]
    subject = t["subject"].format(outcome=outcome, **fill) + _GERMAN_OUTCOME_SUFFIX.get(outcome, "")
    sections = [header, complainant, controller, requested, answer_section, law_section, ask]
    if after_ask:
        sections.append(after_ask)
    sections += [evidence, timeline_section, closing]
    return Letter(t["title"].format(law=law), subject, tuple(sections))


_NOTE = {
    "en": {
        "title": "How to file this complaint with {name} ({code})",
        "email": "By email: open complaint.eml in your mail program. It is a draft addressed to {email}, with the "
                 "letter as its text and the evidence attached. Check the letter, add your name if it is missing, "
                 "and send it.",
        "no_email": "The directory knows no email address for this authority, so there is no complaint.eml.",
        "form": "Online form: {url}\nPaste the sections of letter.txt from \"What I asked Meta\" to \"What I ask of "
                "the authority\" into the form, and upload the files in evidence/.",
        "post": "By post: {address}\nPrint letter.txt and enclose the files in evidence/ (printed or on a storage "
                "medium).",
        "notes": "About this authority: {notes}",
        "website": "Website: {website}",
        "check": "The directory was compiled from public sources and not checked against the live sites: confirm "
                 "the address or form on the authority's website before you file.",
        "record": "After filing, record it, so the tracker watches the authority's three-month deadline "
                  "(Art. 78(2)):\n  privacy-tracker complaint filed {id} --authority {code} --date YYYY-MM-DD "
                  "--reference REFERENCE",
        "alternative": "Alternative: Meta's lead authority in the EU is the Irish {lead_name}; draft a complaint "
                       "to it with:\n  privacy-tracker complaint draft {id} --authority {lead}",
    },
    "de": {
        "title": "So reichen Sie diese Beschwerde bei {name} ({code}) ein",
        "email": "Per E-Mail: Öffnen Sie complaint.eml in Ihrem E-Mail-Programm. Es ist ein Entwurf an {email}, mit "
                 "dem Schreiben als Text und den Beweismitteln im Anhang. Prüfen Sie das Schreiben, ergänzen Sie "
                 "gegebenenfalls Ihren Namen, und senden Sie es ab.",
        "no_email": "Das Verzeichnis kennt keine E-Mail-Adresse dieser Behörde, daher gibt es keine complaint.eml.",
        "form": "Online-Formular: {url}\nFügen Sie die Abschnitte von letter.txt von \"Was ich von Meta verlangt "
                "habe\" bis \"Worum ich die Behörde bitte\" in das Formular ein und laden Sie die Dateien aus "
                "evidence/ hoch.",
        "post": "Per Post: {address}\nDrucken Sie letter.txt aus und legen Sie die Dateien aus evidence/ bei "
                "(ausgedruckt oder auf einem Datenträger).",
        "notes": "Zu dieser Behörde: {notes}",
        "website": "Website: {website}",
        "check": "Das Verzeichnis wurde aus öffentlichen Quellen zusammengestellt und nicht mit den aktuellen "
                 "Websites abgeglichen: Prüfen Sie Adresse oder Formular auf der Website der Behörde, bevor Sie "
                 "die Beschwerde einreichen.",
        "record": "Tragen Sie die Beschwerde danach ein, damit der Tracker die Dreimonatsfrist der Behörde "
                  "(Art. 78 Abs. 2) überwacht:\n  privacy-tracker complaint filed {id} --authority {code} "
                  "--date JJJJ-MM-TT --reference AKTENZEICHEN",
        "alternative": "Alternative: Metas federführende Behörde in der EU ist die irische {lead_name}; eine "
                       "Beschwerde an sie entwerfen Sie mit:\n  privacy-tracker complaint draft {id} "
                       "--authority {lead}",
    },
}


def _note_text(authority: Authority, competence: Competence, request_id: int, language: str) -> str:
    t = _NOTE[language]
    parts = [t["title"].format(name=authority.name, code=authority.code)]
    parts.append(t["email"].format(email=authority.email) if authority.email else t["no_email"])
    if authority.complaint_url:
        parts.append(t["form"].format(url=authority.complaint_url))
    if authority.address:
        parts.append(t["post"].format(address=authority.address))
    if authority.notes:
        parts.append(t["notes"].format(notes=authority.notes))
    if authority.website:
        parts.append(t["website"].format(website=authority.website))
    parts.append(t["check"])
    parts.append(t["record"].format(id=request_id, code=authority.code))
    lead = competence.alternative
    if lead is not None and lead.code != authority.code:
        parts.append(t["alternative"].format(lead_name=lead.name, id=request_id, lead=lead.code))
    wrapped = ["\n".join(textwrap.fill(line, 78, break_long_words=False, break_on_hyphens=False)
                         if not line.startswith("  ") else line for line in part.split("\n")) for part in parts]
    return "\n\n".join(wrapped) + "\n"


# ---- files -----------------------------------------------------------------------------

def _private_dir(path: Path) -> None:
    store.make_private_dirs(path)
    os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that existed
    return path


def _timeline_text(session: Session, request: Request, mails: list[EvidenceMail]) -> str:
    by_message = {m.message.id: m for m in mails}
    lines = []
    for event in sorted(store.events_of(session, request.id), key=lambda e: (e.occurred_at, e.id)):
        when = store.utc(event.occurred_at).strftime("%Y-%m-%d %H:%M UTC")
        # One line per event: the detail is a mail's subject or a person's note, and a newline
        # in it would add an event of its own to the file that SHA256SUMS vouches for.
        line = f"{when}  {event.kind:<16} {one_line(event.detail)}".rstrip()
        mail = by_message.get(event.message_id)
        if mail is not None:
            line += f"  (from {one_line(mail.message.sender)}; evidence/{mail.filename})"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _sender(name: str | None, address: str) -> tuple[str, bool]:
    """The From header's value, and whether the .eml needs UTF-8 headers (RFC 6532).

    A domain that is not ASCII is written in its ASCII form (IDNA); a local part that is
    not ASCII has none, so the header is written in UTF-8, which mail programs read.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # not a valid international domain name: written as it is, in UTF-8
    if f"{local}{domain}".isascii():
        return formataddr((name or "", f"{local}{at}{domain}")), False
    return str(Address(display_name=name or "", username=local, domain=domain)), True


def _eml(letter: Letter, authority: Authority, request: Request, name: str | None,
         attachments: list[Path]) -> bytes:
    sender, utf8 = _sender(name, request.address)
    message = EmailMessage(policy=email_policy.default.clone(utf8=utf8))
    message["From"] = sender
    message["To"] = authority.email
    message["Subject"] = letter.subject
    message["X-Unsent"] = "1"  # mail programs open it as a draft to send, not as a received mail
    message.set_content(letter.text())
    for path in attachments:
        # octet-stream, not message/rfc822: the attachment must stay byte-identical to the evidence.
        message.add_attachment(path.read_bytes(), maintype="application", subtype="octet-stream",
                               filename=path.name)
    # Long header lines unfolded: the default folding puts a long subject on a
    # line of its own, which readers then show with a leading space.
    return message.as_bytes(policy=message.policy.clone(max_line_length=998))


def _copy_evidence(mails: list[EvidenceMail], folder: Path,
                   warnings: list[str]) -> tuple[list[Path], list[tuple[str, str | None]]]:
    """Byte-identical copies of the stored originals; (copies, [(file name, SHA-256 or None)])."""
    copied, digests = [], []
    for mail in mails:
        if mail.source is None or not mail.source.is_file():
            why = "was not kept" if mail.source is None else f"is missing ({mail.source})"
            warnings.append(f"the original of mail #{mail.message.id} ({mail.message.subject!r}) {why}; "
                            f"it is listed in the timeline only")
            digests.append((mail.filename, None))
            continue
        raw = mail.source.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != mail.message.sha256:
            warnings.append(f"{mail.source} no longer has the SHA-256 recorded when mail #{mail.message.id} "
                            f"arrived; it was copied as it is now")
        copied.append(_write_private(folder / mail.filename, raw))
        digests.append((mail.filename, digest))
    return copied, digests


def default_language(authority: Authority) -> str:
    return "de" if authority.country_code in _GERMAN_SPEAKING else "en"


def choose_authority(request: Request, code: str | None, country: str | None = None,
                     region: str | None = None) -> tuple[Authority, Competence]:
    """The authority to write to: the one asked for, else the competent one, else Ireland's DPC."""
    competence = competent_authority(country or request.country, region or request.region)
    if code:
        return get_authority(code), competence
    return competence.authority or competence.alternative, competence


def _check_can_complain(request: Request, timeline: lifecycle.Timeline, today: date) -> None:
    if timeline.state == lifecycle.APPROVED:
        raise TrackerError(f"request #{request.id} was approved on {timeline.decided}: there is no refusal "
                           f"to complain about")
    if timeline.state in lifecycle.OPEN_STATES and not timeline.overdue(today):
        until = f"until {timeline.deadline}" if timeline.deadline else "time (no receipt date is known yet)"
        raise TrackerError(f"request #{request.id} is {timeline.state} and Meta still has {until} to decide; "
                           f"a complaint is possible after a refusal or once the deadline has passed")


def draft_complaint(session: Session, settings: Settings, request_id: int, *, authority_code: str | None = None,
                    language: str | None = None, out: Path | None = None, name: str | None = None,
                    country: str | None = None, region: str | None = None,
                    today: date | None = None) -> Draft:
    """Write the complaint folder for one request. Refuses to overwrite a folder that has files in it."""
    today = today or date.today()
    request = store.get_request(session, request_id)
    timeline = store.timeline_of(session, request)
    _check_can_complain(request, timeline, today)
    authority, competence = choose_authority(request, authority_code, country, region)
    language = language or default_language(authority)
    if language not in LANGUAGES:
        raise TrackerError(f"no letter in language {language!r}; choose one of {', '.join(LANGUAGES)}")

    if name is not None and strip_controls(name) != name:
        # A CR/LF would add headers to complaint.eml and lines to the letter.
        raise TrackerError("--name must be one line of text, without line breaks or control characters")

    folder = out or Path.cwd() / f"complaint-{request.id}-{authority.code}"
    if folder.exists() and not folder.is_dir():
        raise TrackerError(f"{folder} is a file; choose a folder with --out")
    if folder.exists() and any(folder.iterdir()):
        raise TrackerError(f"{folder} exists and is not empty; remove it or choose another folder with --out")
    draft = Draft(folder, authority, language, competence)

    # Everything is written into a hidden folder next to the target, which becomes the target
    # by one rename: a failure halfway leaves nothing behind that would block the next run.
    created, work, done = [], None, False
    try:
        created = store.make_private_dirs(folder.parent)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))  # 0700
        files = _write_draft(session, settings, request, timeline, draft, work, name=name, country=country,
                             region=region, today=today)
        os.rename(work, folder)  # replaces an empty folder; fails if it filled up meanwhile
        done = True
    except OSError as err:
        raise TrackerError(f"cannot write the complaint to {folder}: {err.strerror or err}; "
                           f"nothing was written") from err
    except (ValueError, UnicodeError) as err:
        raise TrackerError(f"cannot write the complaint: {err}; nothing was written") from err
    finally:
        if not done:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            for parent in reversed(created):  # the folders made for it, while they are empty
                try:
                    parent.rmdir()
                except OSError:
                    break
    draft.files = [folder / path.relative_to(work) for path in files]
    log.info("complaint draft for request #%d to %s written to %s", request.id, authority.code, folder)
    return draft


def _write_draft(session: Session, settings: Settings, request: Request, timeline: lifecycle.Timeline,
                 draft: Draft, folder: Path, *, name: str | None, country: str | None, region: str | None,
                 today: date) -> list[Path]:
    """Write the draft's files into ``folder``; returns them in the order they are listed."""
    authority, competence, language = draft.authority, draft.competence, draft.language
    evidence_dir = folder / "evidence"
    _private_dir(evidence_dir)

    messages = store.messages_of_request(session, request.id)
    mails = _evidence_mails(messages)
    copied, digests = _copy_evidence(mails, evidence_dir, draft.warnings)
    timeline_text = _timeline_text(session, request, mails)
    timeline_file = _write_private(evidence_dir / "timeline.txt", timeline_text.encode())
    digests.append((timeline_file.name, hashlib.sha256(timeline_text.encode()).hexdigest()))
    sums = "".join(f"{digest}  {file}\n" for file, digest in digests if digest)
    sums_file = _write_private(evidence_dir / "SHA256SUMS", sums.encode())

    refusal = _latest(messages, v.REJECTED)
    refusal_file = next((evidence_dir / m.filename for m in mails if refusal and m.message.id == refusal.id), None)
    if refusal_file is not None and not refusal_file.exists():  # its original was not kept
        refusal_file = None
    sentence = decisive_sentence(refusal_file.read_bytes(), v.REJECTED, settings) if refusal_file else None
    facts = CaseFacts(
        request=request, timeline=timeline, refusal=refusal, refusal_sentence=sentence,
        refusal_file=f"evidence/{refusal_file.name}" if refusal_file else None,
        last_mail=messages[-1] if messages else None, evidence=tuple(digests), timeline_text=timeline_text,
        name=name, country=(country or request.country or "").upper() or None,
        region=(region or request.region or "").upper() or None, today=today)
    letter = build_letter(facts, authority, language)

    files = [_write_private(folder / "letter.md", letter.markdown().encode()),
             _write_private(folder / "letter.txt", letter.text().encode())]
    if authority.email:
        attachments = [*copied, timeline_file, sums_file]
        files.append(_write_private(folder / "complaint.eml", _eml(letter, authority, request, name, attachments)))
    files.append(_write_private(folder / "NOTE.txt",
                                _note_text(authority, competence, request.id, language).encode()))
    files += [*copied, timeline_file, sums_file]
    if not name:
        draft.warnings.append("the letter has no name: add yours before sending, or draft again with --name")
    return files


def record_filing(session: Session, request_id: int, authority_code: str, filed: date,
                  reference: str = "") -> Complaint:
    """A complaint the person filed: starts the authority's three-month clock (Art. 78(2))."""
    request = store.get_request(session, request_id)
    authority = get_authority(authority_code)
    complaint = Complaint(request_id=request.id, authority=authority.code, filed=filed, reference=reference)
    session.add(complaint)
    detail = f"complaint to {authority.code}" + (f", reference {reference}" if reference else "")
    store.add_event(session, request, lifecycle.EVENT_COMPLAINT_FILED,
                    store.end_of(filed), detail=detail)
    store.refresh_state(session, request)
    return complaint
