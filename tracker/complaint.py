"""Complaints to a data protection authority (GDPR Art. 77): the directory, drafts, filings.

The directory is ``authorities.toml`` in this package, compiled from the shared
``dpa_directory.tsv`` by ``scripts/compile_authorities.py``.

Which authority is competent: the one of the country the person lives in. That
country is the command's ``--country``, else the request's, else the one of the
``[[accounts]]`` entry whose username is the request's address, else
``[person] country``; with none of them the draft is refused (the CLI asks when a
person is at the terminal), never sent to Ireland by default. In Germany the
authority is the one of the Land (``region``), because the Länder authorities
supervise private companies such as Meta; the federal BfDI does not. Ireland's
Data Protection Commission, Meta's lead authority in the EU, is offered as the
alternative for EU/EEA residents (not for the UK or Switzerland, whose
authorities apply their own law).

A letter is written in the language the authority works in (``letters/
recipients.toml``; Belgium: French or Dutch after the person's language), in
English where that is none of the seven the letters exist in (en, de, fr, it, es,
nl, pl), or in the language ``--lang`` asks for. The texts are data, one file per
language in ``letters/``. The letter states only what the request's timeline
supports: it is about the latest round Meta refused (a newer round may be open),
or, when Meta never decided, about the overdue round; a late answer is claimed
only when the round was decided after its deadline, and a request for more
information only when Meta made one.

A draft is a folder the person reviews and sends: the letter (Markdown and plain
text), ``complaint.eml`` (a draft with ``X-Unsent: 1``, the original mails
attached as ``message/rfc822``, the timeline and SHA256SUMS as text), a NOTE.txt
on how to file, and ``evidence/`` with every mail of the request as its original
bytes, a timeline and their SHA-256. A missing name stays a visible gap.
"""

from __future__ import annotations

import email
import hashlib
import io
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
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr
from functools import cache
from importlib import resources
from pathlib import Path

from babel import Locale
from babel.dates import format_date
from sqlmodel import Session

from tracker import letters, lifecycle, store
from tracker import vocabulary as v
from tracker.config import Settings
from tracker.errors import NotFoundError, TrackerError
from tracker.letters import LANGUAGES, normalise_language, texts
from tracker.models import Complaint, Message, Request
from tracker.parse import parse_mail
from tracker.safe_text import markdown as markdown_text, one_line, strip_controls

log = logging.getLogger(__name__)

LEAD_AUTHORITY = "IE"  # Meta Platforms Ireland Limited's lead supervisory authority (GDPR one-stop shop)
# Country codes people use that the directory spells differently (it uses ISO 3166-1).
_COUNTRY_ALIASES = {"EL": "GR", "UK": "GB"}
PLATFORM_NAMES = {"facebook": "Facebook", "instagram": "Instagram"}


# ---- texts and data (letters/) -----------------------------------------------------

@dataclass(frozen=True)
class Controller:
    name: str
    address: str   # without the country
    country: str   # ISO code, written in the letter's language
    source: str    # where the address was read: Meta's privacy policy


@cache
def controller() -> Controller:
    return Controller(**letters.load("controller.toml")["controller"])


@cache
def _recipients() -> dict:
    return letters.load("recipients.toml")


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
                                          "companies such as Meta, and no Land is known. Give it with --region "
                                          "(e.g. --region BY for Bavaria) or [person] region in the config, or "
                                          "choose an authority with --authority.")
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




# ---- which language, which country --------------------------------------------------

def authority_languages(authority: Authority) -> tuple[str, ...]:
    """The languages of the seven that ``authority`` works in, its default first; () for none."""
    table = _recipients()["languages"]
    return tuple(table.get(authority.code) or table.get(authority.country_code) or ())


def letter_language(authority: Authority, person_language: str | None = None) -> str:
    """The authority's language (the person's, where the authority works in several), else English."""
    spoken = authority_languages(authority)
    person = normalise_language(person_language)
    if person in spoken:
        return person
    return spoken[0] if spoken else "en"


def recipient(authority: Authority, language: str) -> tuple[str, str]:
    """The authority's name and postal address as a letter in ``language`` writes them."""
    written = _recipients().get("recipient", {}).get(authority.code, {}).get(language)
    if written:
        return written["name"], written["address"]
    if language != "en":
        # The directory adds an English gloss in parentheses ("Garante ... (Italian Data Protection
        # Authority)"): a letter in another language names the authority as it names itself.
        native = re.sub(r"\s*\([^()]*\)\s*$", "", authority.name)
        return native or authority.name, authority.address
    return authority.name, authority.address


@dataclass(frozen=True)
class Residence:
    country: str
    region: str | None
    source: str        # where it was found, for the person: "--country", "the request", ...


def _clean(value: str | None) -> str | None:
    value = (value or "").strip().upper()
    return _COUNTRY_ALIASES.get(value, value) or None


def residence(request: Request, settings: Settings, country: str | None = None,
              region: str | None = None) -> Residence | None:
    """Where the person lives: --country, else the request, else its mailbox's [[accounts]] entry, else [person].

    The Land goes with the country it was given with; --region applies to whichever
    country is found. None when no country is known anywhere.
    """
    address = (request.address or "").strip().lower()
    sources = [(country, region, "--country"),
               (request.country, request.region, "the request")]
    sources += [(account.country, account.region, f"[[accounts]] {account.name!r} in the config")
                for account in settings.accounts if account.username.strip().lower() == address]
    sources.append((settings.person.country, settings.person.region, "[person] in the config"))
    found = next(((_clean(c), s) for c, _, s in sources if _clean(c)), None)
    if found is None:
        return None
    where, source = found
    land = _clean(region) or next((_clean(r) for c, r, _ in sources if _clean(c) == where and _clean(r)), None)
    return Residence(where, land, source)


def country_name(code: str, language: str) -> str:
    """"AT" as the letter's language writes it ("Österreich", "Autriche"); the code when unknown."""
    return Locale.parse(texts(language)["locale"]).territories.get(code, code)


def land_name(code: str) -> str:
    return _recipients().get("lands", {}).get(code, code)


def missing_country_error(request: Request) -> TrackerError:
    return TrackerError(f"request #{request.id}: the country you live in is unknown, and it decides the "
                        f"authority; give it with --country (e.g. --country AT), or set [person] country "
                        f"in the config")


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
    residence: Residence | None = None
    round: lifecycle.Round | None = None
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


def complaint_round(request: Request, timeline: lifecycle.Timeline, today: date) -> lifecycle.Round:
    """The round a complaint is about: the latest refused one, else the latest if Meta let its deadline pass.

    A refusal keeps its complaint path while a newer round is open; an approval in a later
    round settles the request. Raises a one-line error when there is nothing to complain about.
    """
    rounds = timeline.rounds
    if not rounds:  # a timeline built without rounds: one round from the summary
        rounds = (lifecycle.Round(1, timeline.state, timeline.received, timeline.deadline, timeline.extended,
                                  timeline.decided, None, False),)
    latest, refused = rounds[-1], next((r for r in reversed(rounds) if r.state in (
        lifecycle.REJECTED, lifecycle.COMPLAINT_FILED) and r.decided is not None), None)
    if latest.state == lifecycle.APPROVED:
        after = f" (after the refusal of {refused.decided})" if refused is not None else ""
        raise TrackerError(f"request #{request.id} was approved on {latest.decided}{after}: there is no refusal "
                           f"to complain about")
    if refused is not None:
        return refused
    if latest.state in lifecycle.OPEN_STATES and (latest.deadline is None or latest.deadline >= today):
        until = f"until {latest.deadline}" if latest.deadline else "time (no receipt date is known yet)"
        raise TrackerError(f"request #{request.id} is {latest.state} and Meta still has {until} to decide; "
                           f"a complaint is possible after a refusal or once the deadline has passed")
    return latest


def _refusal_of(session: Session, request: Request, round_: lifecycle.Round) -> Message | None:
    """The mail by which Meta refused this round: the last refusal event on the round's decision day."""
    if round_.decided is None:
        return None
    events = [e for e in store.events_of(session, request.id)
              if e.kind == v.REJECTED and e.message_id is not None
              and store.utc(e.occurred_at).date() == round_.decided]
    if not events:
        return None
    last = max(events, key=lambda e: (store.utc(e.occurred_at), e.id))
    return session.get(Message, last.message_id)


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
    """Everything the letter states, read from the database, the timeline and the evidence mails."""

    request: Request
    round: lifecycle.Round                 # the round the complaint is about
    rounds: tuple[lifecycle.Round, ...]    # every round of the request
    refusal: Message | None                # the mail that refused the round; None when Meta did not decide
    refusal_sentence: str | None
    refusal_file: str | None  # "evidence/02-...eml", None when its original was not kept
    last_mail: Message | None
    evidence: tuple[tuple[str, str | None], ...]  # (file name, SHA-256 or None when not kept)
    name: str | None
    residence: Residence | None
    today: date


def _day(value: date | datetime | None, t: dict) -> str:
    """A date as a letter in this language writes it: "5 March 2025", "5. März 2025", "1er mars 2025"."""
    if value is None:
        return "?"
    if isinstance(value, datetime):
        value = store.utc(value).date()
    text = format_date(value, format="long", locale=t["locale"])
    if value.day == 1 and t["first_day"] and text.startswith("1 "):
        text = t["first_day"] + text[1:]
    return text + t["date_suffix"]


def _count(forms: list[str], n: int) -> str:
    return (forms[0] if n == 1 else forms[1]).format(n=n)


def build_letter(facts: CaseFacts, authority: Authority, language: str) -> Letter:
    """The letter in ``language``. Each sentence is one the timeline supports, and no more."""
    t = texts(language)
    w = t["letter"]
    request, round_ = facts.request, facts.round
    meta = controller()
    law = w["law"][authority.law]
    platform = PLATFORM_NAMES.get(request.platform, request.platform)
    fill = dict(law=law, platform=platform)
    kind = w["kinds"].get(request.kind, w["kinds"][v.DEFAULT_KIND])
    fill.update({key: value.format(**fill) for key, value in kind.items()})
    day = lambda value: _day(value, t)  # noqa: E731
    # What a mail or the command line gave is one line here: a newline in a subject or a name
    # would start a line of its own in the letter (letter.md escapes it further, see Letter).
    address, name = one_line(request.address), one_line(facts.name) or None

    to_name, to_address = recipient(authority, language)
    label = lambda key, value: w["label"].format(label=key, value=value)  # noqa: E731
    header = Section(None, (label(w["to"], to_name) + f"\n{to_address}" + (f"\n{authority.email}" if authority.email else ""),
                            label(w["date"], day(facts.today))))
    opening = Section(None, (w["salutation"], w["opening"].format(**fill)))

    person = [label(w["name"], name or w["name_missing"]), label(w["email"].format(**fill), address)]
    if facts.residence is not None:
        where = country_name(facts.residence.country, language)
        if facts.residence.region:
            where += f" ({land_name(facts.residence.region) if facts.residence.country == 'DE' else facts.residence.region})"
        person.append(label(w["country"], where))
    complainant = Section(w["complainant"], ("\n".join(person),))
    controller_section = Section(w["controller"], (f"{meta.name}\n{meta.address}, {country_name(meta.country, language)}",
                                                   w["controller_source"].format(url=meta.source)))

    # The facts, in the order they happened.
    told = []
    by_person = request.submitted is not None and round_.received == request.submitted
    if by_person:
        told.append(w["submitted"].format(day=day(round_.received), **fill))
    elif round_.received is None:
        told.append(w["asked"].format(**fill))
    else:
        told.append(w["first_mail"].format(day=day(round_.received), **fill))
    if round_.number > 1:
        told.append(w["earlier_round"].format(received=day(round_.received), **fill))
    if round_.info_requested is not None:
        told.append(w["info_requested"].format(day=day(round_.info_requested), **fill))
    if round_.extended:
        told.append(w["extended"].format(**fill))
    refused = round_.decided is not None and round_.state in (lifecycle.REJECTED, lifecycle.COMPLAINT_FILED)
    late = refused and round_.answered_late and round_.deadline is not None
    silent = (not refused and round_.decided is None and round_.deadline is not None
              and facts.today > round_.deadline)
    if refused:
        if facts.refusal is not None:
            told.append(w["refused"].format(day=day(round_.decided), sender=one_line(facts.refusal.sender),
                                            subject=one_line(facts.refusal.subject), **fill))
            if facts.refusal_sentence:
                told.append(w["quote"].format(sentence=one_line(facts.refusal_sentence)))
            elif facts.refusal_file:
                told.append(w["no_quote"].format(file=facts.refusal_file))
        else:
            told.append(w["refused_plain"].format(day=day(round_.decided), **fill))
        if late:
            told.append(w["late"].format(deadline=day(round_.deadline),
                                         days=_count(w["days"], (round_.decided - round_.deadline).days)))
        later = [r for r in facts.rounds if r.number > round_.number]
        if later:
            key = "later_round" if later[0].received else "later_round_undated"
            told.append(w[key].format(day=day(later[0].received), decided=day(round_.decided), **fill))
    elif silent:
        told.append(w["silent"].format(deadline=day(round_.deadline), today=day(facts.today),
                                       days=_count(w["days"], (facts.today - round_.deadline).days), **fill))
        if facts.last_mail is not None:
            told.append(w["last_mail"].format(day=day(facts.last_mail.mail_date),
                                              subject=one_line(facts.last_mail.subject)))
    facts_section = Section(w["facts"], tuple(told))

    # The law: Art. 21(1) first, so that "such grounds" refers to grounds already named.
    reasoning = [w["art21"].format(**fill) + " " + (w["art21_refused"] if refused else w["art21_silent"])]
    third_party = request.kind == "third_party_data"
    if third_party:
        reasoning.append(w["art17"].format(**fill))
    if late or silent:
        reasoning.append(w["art12"].format(**fill))
    law_section = Section(w["law_heading"], tuple(reasoning))

    articles = "articles_21" + ("_17" if third_party else "") + ("_12" if late or silent else "")
    asks = (w["ask_investigate"], w["ask_establish"].format(articles=w[articles].format(**fill), **fill),
            w["ask_order"], w["ask_inform"])
    extra = ()
    if authority.law == "FADP":
        extra = (w["fadp"],)
    elif authority.law == "GDPR" and authority.code != LEAD_AUTHORITY:
        extra = (w["lead"].format(**fill),)
    ask = Section(w["ask_heading"], (w["ask_intro"],), items=tuple(a.format(**fill) for a in asks), numbered=True)

    listed = tuple(label(file, digest or w["not_kept"]) for file, digest in facts.evidence)
    evidence = Section(w["evidence_heading"], (w["evidence_intro"].format(**fill),), items=listed)
    closing = Section(None, (w["closing"] + ("\n" + name if name else ""),))

    subject = (w["subject_refused"] if refused else w["subject_silent"]).format(**fill)
    sections = [header, opening, complainant, controller_section, facts_section, law_section, ask]
    if extra:
        sections.append(Section(None, extra))
    sections += [evidence, closing]
    return Letter(w["title"].format(**fill), subject, tuple(sections))


def _note_text(authority: Authority, competence: Competence, request_id: int, language: str,
               letter_language: str) -> str:
    """NOTE.txt, for the person in their language: how this authority takes complaints."""
    t = texts(language)["note"]
    headings = texts(letter_language)["letter"]
    parts = [t["title"].format(name=authority.name, code=authority.code)]
    parts.append(t["email"].format(email=authority.email) if authority.email else t["no_email"])
    if authority.complaint_url:
        parts.append(t["form"].format(url=authority.complaint_url, facts=headings["facts"],
                                      requests=headings["ask_heading"]))
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



def _lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _as_message(raw: bytes, policy) -> EmailMessage | None:
    """The mail as a message to attach (message/rfc822), if it writes back as the same bytes.

    Line ends aside, an attached message must be the mail as received; one the parser
    would change (a damaged mail) is attached as the file it is instead.
    """
    parsed = email.message_from_bytes(raw, policy=policy)
    written = io.BytesIO()
    BytesGenerator(written, mangle_from_=False, policy=policy).flatten(parsed)
    return parsed if _lf(written.getvalue()) == _lf(raw) else None


def _eml(letter: Letter, authority: Authority, request: Request, name: str | None, language: str,
         mails: list[Path], texts_attached: list[Path]) -> bytes:
    """The draft: the letter as its text, each mail attached as the message it is, then the text files.

    ``X-Unsent: 1`` makes Outlook, Thunderbird and Apple Mail open it as a draft to edit and
    send rather than as a received mail. Without the authority's address there is no To.
    """
    sender, utf8 = _sender(name, request.address)
    # Long header lines are not folded (a folded subject shows with a leading space in some
    # readers), and the attached mails' own headers are written as they came.
    policy = email_policy.default.clone(utf8=utf8, max_line_length=998, refold_source="none")
    message = EmailMessage(policy=policy)
    message["From"] = sender
    if authority.email:
        message["To"] = authority.email
    message["Subject"] = letter.subject
    message["Content-Language"] = language
    message["X-Unsent"] = "1"
    message.set_content(letter.text())
    for path in mails:
        raw = path.read_bytes()
        attached = _as_message(raw, policy)
        if attached is not None:
            message.add_attachment(attached, filename=path.name)
        else:
            message.add_attachment(raw, maintype="application", subtype="octet-stream", filename=path.name)
    for path in texts_attached:
        message.add_attachment(path.read_text(encoding="utf-8"), subtype="plain", filename=path.name)
    return message.as_bytes(policy=policy)


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



def choose_authority(request: Request, code: str | None, where: Residence | None) -> tuple[Authority, Competence]:
    """The authority to write to: the one asked for, else the competent one where the person lives,
    else (a German residence without a Land, a country outside the directory) Ireland's DPC, with
    the explanation the command shows."""
    competence = competent_authority(where.country if where else None, where.region if where else None)
    if code:
        return get_authority(code), competence
    return competence.authority or competence.alternative, competence


def draft_complaint(session: Session, settings: Settings, request_id: int, *, authority_code: str | None = None,
                    language: str | None = None, out: Path | None = None, name: str | None = None,
                    country: str | None = None, region: str | None = None,
                    today: date | None = None) -> Draft:
    """Write the complaint folder for one request. Refuses to overwrite a folder that has files in it.

    Refuses in one line when the country is unknown (unless ``authority_code`` names the
    authority), when there is nothing to complain about, or for a language without texts.
    """
    today = today or date.today()
    request = store.get_request(session, request_id)
    timeline = store.timeline_of(session, request)
    round_ = complaint_round(request, timeline, today)
    where = residence(request, settings, country, region)
    if where is None and not authority_code:
        raise missing_country_error(request)
    authority, competence = choose_authority(request, authority_code, where)
    if language is not None and normalise_language(language) != language.strip().lower():
        raise TrackerError(f"--lang: no letter in language {language!r}; choose one of {', '.join(LANGUAGES)}")
    language = normalise_language(language) or letter_language(authority, settings.person.language)
    # NOTE.txt is for the person: their language, else the one of their own country's authority.
    home = competence.authority
    note_language = (normalise_language(settings.person.language)
                     or (letter_language(home) if home is not None else language))

    if name is None:
        name = settings.person.name
    if name is not None and strip_controls(name) != name:
        # A CR/LF would add headers to complaint.eml and lines to the letter.
        raise TrackerError("--name must be one line of text, without line breaks or control characters")

    folder = out or Path.cwd() / f"complaint-{request.id}-{authority.code}"
    if folder.exists() and not folder.is_dir():
        raise TrackerError(f"{folder} is a file; choose a folder with --out")
    if folder.exists() and any(folder.iterdir()):
        raise TrackerError(f"{folder} exists and is not empty; remove it or choose another folder with --out")
    draft = Draft(folder, authority, language, competence, where, round_)

    # Everything is written into a hidden folder next to the target, which becomes the target
    # by one rename: a failure halfway leaves nothing behind that would block the next run.
    created, work, done = [], None, False
    try:
        created = store.make_private_dirs(folder.parent)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))  # 0700
        files = _write_draft(session, settings, request, timeline, draft, work, name=name,
                             note_language=note_language, today=today)
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
                 draft: Draft, folder: Path, *, name: str | None, note_language: str, today: date) -> list[Path]:
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

    refusal = _refusal_of(session, request, draft.round)
    refusal_file = next((evidence_dir / m.filename for m in mails if refusal and m.message.id == refusal.id), None)
    if refusal_file is not None and not refusal_file.exists():  # its original was not kept
        refusal_file = None
    sentence = decisive_sentence(refusal_file.read_bytes(), v.REJECTED, settings) if refusal_file else None
    facts = CaseFacts(
        request=request, round=draft.round, rounds=timeline.rounds or (draft.round,), refusal=refusal,
        refusal_sentence=sentence, refusal_file=f"evidence/{refusal_file.name}" if refusal_file else None,
        last_mail=messages[-1] if messages else None, evidence=tuple(digests), name=name,
        residence=draft.residence, today=today)
    letter = build_letter(facts, authority, language)

    files = [_write_private(folder / "letter.md", letter.markdown().encode()),
             _write_private(folder / "letter.txt", letter.text().encode()),
             _write_private(folder / "complaint.eml",
                            _eml(letter, authority, request, name, language, copied, [timeline_file, sums_file])),
             _write_private(folder / "NOTE.txt",
                            _note_text(authority, competence, request.id, note_language, language).encode())]
    files += [*copied, timeline_file, sums_file]
    if not name:
        draft.warnings.append("the letter has no name: add yours before sending, or draft again with --name "
                              "(or set [person] name in the config)")
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
