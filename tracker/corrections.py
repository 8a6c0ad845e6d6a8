"""Corrections by the person: edit or delete a request, show, relabel or forget a stored mail.

The person's word is kept: every change to a request is an event of its timeline
(kind ``changed``, shown as "changed by you: address a → b" on its date), which the
lifecycle passes over. A relabelled mail is a verdict (tracker.review). After a
change the request's state is derived again from its events, and an unsent alert
the new state no longer supports is withdrawn (tracker.alerts).

Input typed by the person (addresses, countries, Länder, platforms, dates) is
checked here, for `request add` and `request edit` alike; every problem is named
at once, so one corrected command goes through.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from sqlmodel import Session, or_, select

from tracker import alerts, lifecycle, store
from tracker import vocabulary as v
from tracker.config import Settings
from tracker.dates import typed_day_problem
from tracker.errors import NotFoundError, TrackerError
from tracker.text import mask_codes_in
from tracker.models import Alert, Event, LearnedTemplate, Message, Request, Verdict

log = logging.getLogger(__name__)

ARROW = "→"


class InvalidInput(TrackerError):
    """Values typed on the command line that cannot be used; ``problems`` are "--option: why" each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class CorrectionRefused(TrackerError):
    """A correction that would make the record wrong (two requests for the same thing, say)."""


# ---- checking what the person types --------------------------------------------------

# Spellings people use for a country that ISO 3166-1 spells otherwise (complaint.py maps them too).
_COUNTRY_ALIASES = {"EL": "GR", "UK": "GB"}
_DOMAIN_LABEL = re.compile(r"[^\s@.,;:<>()\[\]\\\"]+")


def _directory() -> tuple[dict[str, str], set[str]]:
    """Country codes the authority directory knows (code -> country name), and the German Länder codes."""
    from tracker.complaint import load_authorities

    countries: dict[str, str] = {}
    lands: set[str] = set()
    for authority in load_authorities().values():
        countries.setdefault(authority.country_code, authority.country)
        if authority.country_code == "DE" and authority.region:
            lands.add(authority.region)
    return countries, lands


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a usable e-mail address (name@domain.tld), or None."""
    local, at, domain = address.partition("@")
    labels = domain.split(".")
    if (not at or not local or "@" in domain or len(labels) < 2
            or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
            or any(ch.isspace() or ch in "<>,;\"" or ord(ch) < 32 for ch in local)):
        return f"{address!r} is not an e-mail address (name@domain.tld)"
    return None


def _country(value: str) -> tuple[str | None, str | None]:
    countries, _ = _directory()
    code = value.strip().upper()
    code = _COUNTRY_ALIASES.get(code, code)
    if code in countries:
        return code, None
    names = {name.lower(): c for c, name in countries.items()}
    guess = names.get(value.strip().lower())
    if guess is None:
        close = difflib.get_close_matches(value.strip().lower(), list(names), n=1, cutoff=0.75)
        guess = names[close[0]] if close else None
    if guess is not None:
        return None, f"{value!r} is not a country code (ISO 3166-1, two letters): did you mean {guess}?"
    return None, (f"{value!r} is not a country code the authority directory knows "
                  f"(ISO 3166-1, two letters, e.g. DE; see `privacy-tracker complaint authorities`)")


def _region(value: str, country: str | None) -> tuple[str | None, str | None]:
    _, lands = _directory()
    code = value.strip().upper().removeprefix("DE-")
    if code not in lands:
        return None, f"{value!r} is not a German Land code; known: {', '.join(sorted(lands))}"
    if country != "DE":
        return None, f"a Land ({code}) is only for requests from Germany: give --country DE with it"
    return code, None


def _choice(value: str, choices: tuple[str, ...], what: str) -> tuple[str | None, str | None]:
    name = value.strip().lower().replace("-", "_")
    if name in choices:
        return name, None
    return None, f"{value!r} is not a {what}; must be one of {', '.join(choices)}"


def typed_day(value: str) -> tuple[date | None, str | None]:
    """A date typed as YYYY-MM-DD, from 1990 to today, or why not."""
    try:
        day = date.fromisoformat(value) if len(value) == 10 else None  # not 20250131 or 2025-W05-1
    except ValueError:
        day = None
    if day is None:
        return None, f"{value!r} is not a date (YYYY-MM-DD)"
    problem = typed_day_problem(day)
    return (None, problem) if problem else (day, None)


def check_request_fields(*, address: str | None = None, platform: str | None = None, kind: str | None = None,
                         country: str | None = None, region: str | None = None, submitted: str | None = None,
                         current_country: str | None = None) -> dict[str, Any]:
    """The given fields, checked and in their stored form (address lower case, codes upper case...).

    Only the fields given are returned. ``current_country`` is the request's country when
    ``country`` is not given (a Land is checked against it). Raises InvalidInput naming
    every problem, "--option: why" each.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []

    def take(key: str, option: str, result: tuple[Any, str | None]) -> None:
        value, problem = result
        if problem is None:
            values[key] = value
        else:
            problems.append(f"{option}: {problem}")

    if address is not None:
        cleaned = address.strip().lower()
        take("address", "--address", (cleaned, address_problem(cleaned)))
    if platform is not None:
        take("platform", "--platform", _choice(platform, v.PLATFORMS, "platform"))
    if kind is not None:
        take("kind", "--kind", _choice(kind, v.KINDS, "kind of request"))
    if country is not None:
        take("country", "--country", _country(country))
    # A Land is checked against the country it goes with; a wrong country is named already.
    if region is not None and (country is None or "country" in values):
        take("region", "--region", _region(region, values.get("country", current_country)))
    if submitted is not None:
        take("submitted", "--date", typed_day(submitted))
    if problems:
        raise InvalidInput(problems)
    return values


# ---- the timeline: what the person changed --------------------------------------------

def _now() -> datetime:
    return datetime.now(timezone.utc)


def record_change(session: Session, request: Request, what: str, now: datetime | None = None) -> Event:
    """The person's change as an event of the request's timeline (`request show`: "changed by you")."""
    return store.add_event(session, request, lifecycle.EVENT_CHANGED, now or _now(), detail=what)


def _rederive(session: Session, request: Request) -> lifecycle.Timeline:
    """State derived again; an unsent overdue alert the new state does not support is withdrawn."""
    timeline = store.refresh_state(session, request)
    alerts.withdraw_stale_overdue(session, request, timeline)
    return timeline


# ---- requests ----------------------------------------------------------------------

_FIELD_NAMES = {"address": "address", "platform": "platform", "kind": "kind", "country": "country",
                "region": "region", "submitted": "date"}


@dataclass
class Edited:
    request_id: int
    changes: list[str] = field(default_factory=list)   # "address a → b", ...
    state: str = ""


def _shown(value: Any) -> str:
    return "none" if value in (None, "") else str(value)


def edit_request(db: store.Store, request_id: int, values: dict[str, Any], *, now: datetime | None = None) -> Edited:
    """Change a request's fields (``values`` as :func:`check_request_fields` returns them; ``submitted``
    None clears the date). Another request with the same address, platform and kind is refused."""
    with db.write() as session:
        request = store.get_request(session, request_id)
        target = {key: values.get(key, getattr(request, key)) for key in ("address", "platform", "kind")}
        other = store.find_request(session, target["address"], target["platform"], target["kind"])
        if other is not None and other.id != request.id:
            raise CorrectionRefused(f"request #{other.id} is the {other.platform} {other.kind} request for "
                                    f"{other.address} already: edit or delete that one instead")
        if values.get("country", request.country) != "DE" and "region" not in values and request.region:
            values = {**values, "region": None}   # a Land belongs to Germany only
        edited = Edited(request.id)
        for key, value in values.items():
            before = getattr(request, key)
            if value == before:
                continue
            edited.changes.append(f"{_FIELD_NAMES[key]} {_shown(before)} {ARROW} {_shown(value)}")
            setattr(request, key, value)
            if key == "submitted":
                _move_submitted_event(session, request, value)
        if edited.changes:
            session.add(request)
            record_change(session, request, "; ".join(edited.changes), now)
        edited.state = _rederive(session, request).state
    return edited


def _move_submitted_event(session: Session, request: Request, day: date | None) -> None:
    """The "request sent" event follows the date the person gives (and goes with it)."""
    for event in session.exec(select(Event).where(Event.request_id == request.id,
                                                  Event.kind == lifecycle.EVENT_SUBMITTED,
                                                  Event.message_id == None)):  # noqa: E711
        session.delete(event)
    session.flush()
    if day is not None:
        store.add_event(session, request, lifecycle.EVENT_SUBMITTED, store.start_of(day))


@dataclass(frozen=True)
class Deleted:
    request_id: int
    description: str
    mails: list[int]          # back on the review list
    events: int
    complaints: int
    alerts_kept: int          # sent alerts stay on record, without the request
    alerts_withdrawn: int


def delete_request(db: store.Store, request_id: int) -> Deleted:
    """Remove a request with its events and complaints. Its mails stay recorded, without a request,
    and go back to the review list; its sent alerts stay as history, its unsent ones are withdrawn."""
    with db.write() as session:
        request = store.get_request(session, request_id)
        description = f"{request.platform} {request.kind} request for {request.address}"
        mails = store.messages_of_request(session, request_id)
        for message in mails:
            message.request_id = None
            message.reviewed = False
            session.add(message)
        events = store.events_of(session, request_id)
        for event in events:
            session.delete(event)
        complaints = store.complaints_of(session, request_id)
        for complaint in complaints:
            session.delete(complaint)
        withdrawn = alerts.withdraw_unsent_of_request(session, request_id)
        session.flush()
        kept = list(session.exec(select(Alert).where(Alert.request_id == request_id)))
        for alert in kept:
            alert.request_id = None
            session.add(alert)
        session.flush()
        session.delete(request)
    log.info("request #%d deleted by the person (%d mails back to review)", request_id, len(mails))
    return Deleted(request_id, description, [m.id for m in mails], len(events), len(complaints), len(kept),
                   withdrawn)


# ---- stored mail ------------------------------------------------------------------------

def get_message(session: Session, message_id: int) -> Message:
    message = session.get(Message, message_id)
    if message is None:
        raise NotFoundError(f"no mail with id {message_id} (see `privacy-tracker status`)")
    return message


@dataclass(frozen=True)
class Evidence:
    path: str | None           # the kept .eml, None when the mail was not kept
    present: bool
    matches: bool | None       # its bytes still have the recorded SHA-256; None without the file
    raw: bytes | None = None
    problem: str | None = None  # why there is nothing to read


def read_evidence(message: Message) -> Evidence:
    """The stored mail's original bytes, checked against the SHA-256 recorded when it arrived."""
    if not message.raw_path:
        why = ("the mail is unrelated, and only mail from (or claiming to be from) Meta is kept as evidence"
               if message.category == v.UNRELATED else "its original was not kept ([evidence] keep_raw was off)")
        return Evidence(None, False, None, problem=why)
    path = Path(message.raw_path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        return Evidence(str(path), False, None, problem=f"the evidence file cannot be read: {err.strerror or err}")
    return Evidence(str(path), True, hashlib.sha256(raw).hexdigest() == message.sha256, raw)


def _request_brief(request: Request | None) -> dict | None:
    if request is None:
        return None
    return {"id": request.id, "address": request.address, "platform": request.platform, "kind": request.kind,
            "state": request.state}


def mail_details(db: store.Store, settings: Settings, message_id: int) -> dict:
    """Everything recorded about a stored mail, and its text read from the evidence file (JSON form)."""
    from tracker.parse import parse_mail

    with db.session() as session:
        message = get_message(session, message_id)
        request = session.get(Request, message.request_id) if message.request_id is not None else None
        brief = _request_brief(request)
    evidence = read_evidence(message)
    recipients = [message.recipient] if message.recipient else []
    text, text_note = None, evidence.problem
    if evidence.raw is not None:
        mail = parse_mail(evidence.raw, settings.evidence.max_mail_mb * 1024 * 1024)
        recipients = list(mail.recipients) or recipients
        text = mail.text if not mail.too_large else None
        if mail.too_large:
            text_note = "the mail is over the size limit ([evidence] max_mail_mb): its text was not read"
        elif not text:
            text_note = "the mail has no readable text"
    verdict = {True: "authentic", False: "failed authentication", None: "unverified"}[message.authenticated]
    # A fake wants its code typed in somewhere: in its text and subject, codes are masked.
    fake = message.category == v.SUSPICIOUS or message.authenticated is False
    if fake:
        text = text and mask_codes_in(text)
    return {
        "id": message.id,
        "subject": mask_codes_in(message.subject) if fake else message.subject,
        "from": {"name": message.sender_name, "address": message.sender},
        "to": recipients,
        "date": message.mail_date and store.utc(message.mail_date).isoformat(),
        "message_id": message.dedupe_id or None,
        "category": message.category,
        "platform": message.platform,
        "kind": message.kind,
        "rule": message.rule,
        "reason": message.reason,
        "authenticated": message.authenticated,
        "authenticity": {"verdict": verdict, "label": message.authenticity},
        "reference": message.reference,
        # Set by the classifier only for authentic mail: a fake's code is never shown.
        "otp": message.otp if message.authenticated else None,
        "error": message.error,
        "reviewed": message.reviewed,
        "request": brief,
        "source": message.source_path or (f"{message.folder}#{message.uid}" if message.folder else None),
        "evidence": {"path": evidence.path, "sha256": message.sha256, "present": evidence.present,
                     "matches": evidence.matches},
        "fake": fake,
        "text": text,
        "text_note": text_note,
    }


def stored_mail_bytes(db: store.Store, message_id: int) -> tuple[str, bytes]:
    """(label, original bytes) of a stored mail, for `rules test --message`; NotFoundError without evidence."""
    with db.session() as session:
        message = get_message(session, message_id)
    evidence = read_evidence(message)
    if evidence.raw is None:
        raise NotFoundError(f"mail #{message_id} has no evidence file to explain: {evidence.problem}")
    label = f"mail #{message_id}: {evidence.path}"
    if not evidence.matches:
        label += " (does not match its recorded SHA-256)"
    return label, evidence.raw


# ---- relabel and forget ----------------------------------------------------------------

def _undo_mail_events(session: Session, message: Message) -> list[Request]:
    """Remove the events a mail caused; returns the requests they were on."""
    touched = []
    for event in session.exec(select(Event).where(Event.message_id == message.id)):
        request = session.get(Request, event.request_id)
        if request is not None and request.id not in {r.id for r in touched}:
            touched.append(request)
        session.delete(event)
    session.flush()
    return touched


@dataclass(frozen=True)
class Relabelled:
    message_id: int
    before: str
    after: str
    request_id: int | None
    state: str | None
    learned: bool
    not_learned: str | None


def relabel(db: store.Store, settings: Settings, message_id: int, category: str, request_id: int | None = None,
            *, forced: bool = False) -> Relabelled:
    """Make a stored mail count as ``category``: a verdict, as `review ID --as` gives (tracker.review.assign).
    What it caused as the old category is undone; alerts the mail no longer supports are withdrawn."""
    from tracker.review import assign

    category = category.strip().lower().replace("-", "_")
    with db.write() as session:
        message = get_message(session, message_id)
        before = message.category
        if before == category and (request_id is None or request_id == message.request_id):
            raise CorrectionRefused(f"mail #{message_id} is {category} already")
        result = assign(session, settings, message, category, request_id, by="relabel", forced=forced)
        alerts.withdraw_stale_for_message(session, message.id, category)
        request = result.request
        if request is not None:
            _rederive(session, request)
    return Relabelled(message_id, before, category, request.id if request is not None else None,
                      request.state if request is not None else None, result.learned is not None,
                      result.not_learned)


@dataclass(frozen=True)
class Forgotten:
    message_id: int
    subject: str
    requests: list[int]            # whose timelines lost the mail's events
    learned: int                   # templates learned from the mail, forgotten with it
    evidence_removed: str | None   # the evidence file deleted, if it was this mail's alone
    evidence_kept: str | None      # kept: another stored mail has the same bytes
    evidence_problem: str | None   # the file could not be deleted


def forget_message(db: store.Store, message_id: int, *, now: datetime | None = None) -> Forgotten:
    """Remove a stored mail, the events it caused, the verdicts on it and what was learned from it, and
    its evidence file (unless another stored mail has the same bytes). Its sent alerts stay on record
    without it; its unsent ones are withdrawn."""
    with db.write() as session:
        message = get_message(session, message_id)
        subject, sha256, evidence = message.subject, message.sha256, message.raw_path
        joined = session.get(Request, message.request_id) if message.request_id is not None else None
        touched = _undo_mail_events(session, message)
        if joined is not None and joined.id not in {r.id for r in touched}:
            touched.append(joined)
        alerts.withdraw_stale_for_message(session, message.id, None)
        session.flush()
        for alert in session.exec(select(Alert).where(Alert.message_id == message.id)):
            alert.message_id = None
            session.add(alert)
        verdicts = list(session.exec(select(Verdict).where(Verdict.message_id == message.id)))
        learned = list(session.exec(select(LearnedTemplate).where(or_(
            LearnedTemplate.message_id == message.id, LearnedTemplate.verdict_id.in_([x.id for x in verdicts])))))
        for row in [*learned, *verdicts]:
            session.delete(row)
        session.flush()
        shared = session.exec(select(Message.id).where(Message.sha256 == sha256,
                                                       Message.id != message.id)).first() is not None
        message.request_id = None
        session.add(message)
        session.flush()
        session.delete(message)
        for request in touched:
            record_change(session, request, f"mail #{message_id} forgotten (\"{subject[:80]}\")", now)
            _rederive(session, request)
    removed = kept = problem = None
    # Only a file named by the content it holds: a path in the database never removes anything else.
    if evidence and Path(evidence).name == f"{sha256}.eml":
        if shared:
            kept = evidence
        else:
            try:
                Path(evidence).unlink(missing_ok=True)
                removed = evidence
            except OSError as err:
                problem = f"the evidence file {evidence} could not be deleted: {err.strerror or err}"
    log.info("mail #%d forgotten by the person", message_id)
    return Forgotten(message_id, subject, [r.id for r in touched], len(learned), removed, kept, problem)
