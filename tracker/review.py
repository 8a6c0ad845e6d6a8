"""The person's word on a mail: the review list, verdicts, taking one back, and learning from them.

A verdict (``review ID --as CATEGORY``, ``mail relabel``) makes a stored mail count as
the person says: it joins the request its recipient, platform and kind point to (or
the one named), the request's state is derived again, and alerts follow as for a mail
the rules recognised. Every verdict is kept, with what the mail was before, so that
``review ID --undo`` can put it back; taking one back is kept too (``undone_at``).

From a verdict on an authentic Meta mail the tracker learns the mail's template
(rules/templates.py): a later authentic mail of the same template gets the same
category by itself. Nothing is learned from mail whose sender is not verified, nor
from a verdict forced on a mail that failed authentication.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlmodel import Session, or_, select

from tracker import alerts, store
from tracker import vocabulary as v
from tracker.authenticity import NOT_META
from tracker.config import Settings
from tracker.errors import NotFoundError, TrackerError
from tracker.lifecycle import EVENT_CHANGED
from tracker.models import Alert, Event, LearnedTemplate, Message, Request, Verdict, utcnow
from tracker.rules.engine import TEMPLATE_CATEGORIES
from tracker.rules.templates import fingerprint, template_words

log = logging.getLogger(__name__)

CATEGORY = "category"
DISMISS = "dismiss"

VERDICT_CATEGORIES = TEMPLATE_CATEGORIES


class VerdictError(TrackerError):
    """A verdict that cannot be given as asked (the message says what to do instead)."""


# ---- the list -------------------------------------------------------------------

def waiting_for_review(session: Session) -> list[Message]:
    """Mails that wait for the person, oldest first.

    Held (meta_other) and fake (suspicious) mails, mails that could not be read whole (but
    not someone else's mail: a sender that is known and not Meta),
    decisions read from a weak sign, and recognised mails that belong to no request
    (no recipient, no platform to tell between requests, or their request was deleted).
    """
    # A damaged mail is listed unless it is plainly someone else's (a known sender that is not Meta).
    damaged = (Message.error != None) & ((Message.category != v.UNRELATED) | (Message.sender == "")  # noqa: E711
                                         | (Message.authenticity != NOT_META))
    held = or_(Message.category.in_(v.REVIEW_CATEGORIES), damaged,
               Message.uncertain == True,  # noqa: E712
               (Message.category.in_(v.REQUEST_CATEGORIES)) & (Message.request_id == None))  # noqa: E711
    return list(session.exec(select(Message).where(Message.reviewed == False, held)  # noqa: E712
                             .order_by(Message.mail_date, Message.id)))


def _why_listed(message: Message) -> str:
    if message.category == v.SUSPICIOUS:
        return "it only pretends to come from Meta"
    if message.error:
        return f"it could not be read completely ({message.error})"
    if message.uncertain:
        return f"it reads as {message.category} from a weak sign only: confirm it or say what it is"
    if message.category in v.REQUEST_CATEGORIES and message.request_id is None:
        return f"it reads as {message.category} but belongs to no request"
    return "no rule recognises it"


def guesses_for(session: Session, message: Message) -> list[dict]:
    """The tool's best guesses for a mail, each with the request it would join (None: a new one)."""
    if message.category == v.SUSPICIOUS:
        return []
    categories = [c for c in message.guesses.split() if c]
    if message.category in v.REQUEST_CATEGORIES and message.category not in categories:
        categories.insert(0, message.category)
    out = []
    for category in categories:
        request = None
        if category in v.REQUEST_CATEGORIES:
            try:
                request = target_request(session, message, category, create=False)
            except VerdictError:
                request = None
        out.append({"category": category, "request": request.id if request is not None else None})
    return out


def review_list(session: Session) -> list[dict]:
    """The review list as plain data (the JSON form of `review`)."""
    return [{
        "id": m.id, "category": m.category, "subject": m.subject, "sender": m.sender,
        "sender_name": m.sender_name, "recipient": m.recipient,
        "date": store.utc(m.mail_date).isoformat() if m.mail_date else None,
        "authenticity": m.authenticity, "why": _why_listed(m), "reason": m.reason,
        "guesses": guesses_for(session, m),
    } for m in waiting_for_review(session)]


# ---- verdicts -------------------------------------------------------------------

def get_message(session: Session, message_id: int) -> Message:
    message = session.get(Message, message_id)
    if message is None:
        raise NotFoundError(f"no mail with id {message_id} (see `privacy-tracker review`)")
    return message


def failed_authentication(message: Message) -> bool:
    return message.category == v.SUSPICIOUS or message.authenticated is False


def target_request(session: Session, message: Message, category: str, request_id: int | None = None,
                   *, create: bool = True) -> Request | None:
    """The request a mail of ``category`` joins: the one named, else the one its recipient,
    platform and kind point to (created if ``create``, as for a recognised mail)."""
    if request_id is not None:
        return store.get_request(session, request_id)
    if not message.recipient:
        raise VerdictError(f"mail #{message.id} has no recipient address: say which request it belongs "
                           f"to with --request N")
    kind = message.kind or v.DEFAULT_KIND
    if message.platform is None:
        candidates = store.requests_of(session, message.recipient, kind)
        if len(candidates) == 1:
            return candidates[0]
        raise VerdictError(f"mail #{message.id} names no platform and {message.recipient} has "
                           f"{'no' if not candidates else 'several'} {kind} requests: say which with --request N")
    request = store.find_request(session, message.recipient, message.platform, kind)
    if request is None and create:
        # A member's forwarded mail (intake.py): the request gets the member's country, as a recognised one does.
        from tracker.intake import find_member

        member = find_member(session, message.recipient)
        request = store.add_request(session, message.recipient, message.platform, kind,
                                    country=member.country if member else None,
                                    region=member.region if member else None)
    return request


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _changed(session: Session, request: Request, detail: str) -> None:
    """The person's change, in the request's timeline ("changed by you on ...")."""
    store.add_event(session, request, EVENT_CHANGED, _now(), detail=detail)


def detach(session: Session, message: Message, why: str, keep: Request | None = None) -> Request | None:
    """Take a mail out of its request: its event goes, the state is derived again, and the
    alerts it caused that were not sent yet are withdrawn. Returns the request it left."""
    request = session.get(Request, message.request_id) if message.request_id else None
    for event in session.exec(select(Event).where(Event.message_id == message.id)):
        session.delete(event)
    for alert in session.exec(select(Alert).where(Alert.message_id == message.id,
                                                  Alert.sent_at == None)):  # noqa: E711
        alerts._withdraw(session, alert, why)
    message.request_id = None
    session.add(message)
    if request is None:
        return None
    session.flush()
    if request is not keep and _made_by_mail_alone(session, request):
        # The request existed only because of this mail (no date, note or complaint of the person's):
        # without it there is nothing left to track.
        for alert in session.exec(select(Alert).where(Alert.request_id == request.id)):
            if alert.sent_at is None and not alert.delivered_channels.strip():
                session.delete(alert)
            else:
                alert.request_id = None
                session.add(alert)
        session.delete(request)
        session.flush()
        return None
    if request is not keep:  # a mail that stays in its request gets one "changed" line, from its new meaning
        _changed(session, request, f"mail #{message.id} taken out of this request: {why}")
    store.refresh_state(session, request)
    alerts.withdraw_stale_overdue(session, request)
    return request


def _made_by_mail_alone(session: Session, request: Request) -> bool:
    return (request.submitted is None and not request.notes and not store.events_of(session, request.id)
            and not store.complaints_of(session, request.id))


def _join(session: Session, settings: Settings, message: Message, request: Request) -> None:
    """What recording a recognised mail does to its request (ingest.Ingestor._apply_to_request)."""
    message.request_id = request.id
    message.platform = message.platform or request.platform
    message.kind = message.kind or request.kind
    session.add(message)
    occurred = store.utc(message.mail_date) or _now()
    store.add_event(session, request, message.category, occurred, message_id=message.id,
                    detail=message.subject[:200])
    store.refresh_state(session, request)
    alerts.queue_for_request_mail(session, request, message, language=settings.person.language)
    if message.otp and settings.alerts.send_codes and settings.alerts.private_urls:
        alerts.queue_code(session, request, message, settings.person.language)


@dataclass(frozen=True)
class VerdictResult:
    verdict: Verdict
    request: Request | None
    learned: LearnedTemplate | None
    not_learned: str | None          # why nothing was learned, when nothing was


def assign(session: Session, settings: Settings, message: Message, category: str,
           request_id: int | None = None, *, by: str = "review", forced: bool = False) -> VerdictResult:
    """Make ``message`` count as ``category``, as the person says; learn its template when authentic."""
    if category not in VERDICT_CATEGORIES:
        raise VerdictError(f"{category!r} is not a category a mail can be given: one of "
                           f"{', '.join(VERDICT_CATEGORIES)} (or --dismiss)")
    if failed_authentication(message) and not forced:
        raise VerdictError(f"mail #{message.id} failed authentication ({message.authenticity}): it may not be "
                           f"from Meta at all. If you are sure it is, add --force; the verdict is recorded as forced")
    if request_id is not None and category not in v.REQUEST_CATEGORIES:
        raise VerdictError(f"a {category} mail belongs to no request: leave out --request")
    previous = (message.category, message.request_id, message.reviewed)
    request = None
    if category in v.REQUEST_CATEGORIES:
        # Find (or make) the request first: a mail that cannot be placed is left as it was.
        saved_category, message.category = message.category, category
        try:
            request = target_request(session, message, category, request_id)
        finally:
            message.category = saved_category
    old_request = (detach(session, message, f"you said it is {category}", keep=request)
                   if message.request_id else None)
    _withdraw_review_alert(session, message)
    message.category = category
    message.reviewed = True
    message.uncertain = False
    if category not in v.REQUEST_CATEGORIES:
        message.otp = None if category != v.OTP else message.otp
    session.add(message)
    if request is not None:
        _join(session, settings, message, request)
        _changed(session, request, f"mail #{message.id} is {category}"
                 + (" (you insisted although it failed authentication)" if forced else "")
                 + (f", was {previous[0]}" if previous[0] != category else ""))
    verdict = Verdict(message_id=message.id, action=CATEGORY, category=category,
                      request_id=request.id if request else None, forced=forced, by=by,
                      previous_category=previous[0], previous_request_id=previous[1], previous_reviewed=previous[2])
    session.add(verdict)
    session.flush()
    learned, not_learned = _learn(session, message, verdict, forced)
    log.info("verdict on mail #%s: %s (was %s)%s", message.id, category, previous[0],
             " [forced]" if forced else "")
    if old_request is not None and request is not None and old_request.id != request.id:
        store.refresh_state(session, old_request)
    return VerdictResult(verdict, request, learned, not_learned)


def dismiss(session: Session, message: Message, by: str = "review") -> Verdict:
    """Take a mail off the review list; it means nothing more (a request it belongs to keeps it)."""
    verdict = Verdict(message_id=message.id, action=DISMISS, category=None, request_id=message.request_id,
                      by=by, previous_category=message.category, previous_request_id=message.request_id,
                      previous_reviewed=message.reviewed)
    message.reviewed = True
    session.add(message)
    session.add(verdict)
    _withdraw_review_alert(session, message)
    session.flush()
    return verdict


def undo(session: Session, settings: Settings, message: Message) -> Verdict:
    """Take back the latest verdict on a mail: it is what it was before, and nothing learned from it counts."""
    verdict = session.exec(select(Verdict).where(Verdict.message_id == message.id,
                                                 Verdict.undone_at == None)  # noqa: E711
                           .order_by(Verdict.id.desc())).first()
    if verdict is None:
        raise VerdictError(f"mail #{message.id} has no verdict to take back")
    for learned in session.exec(select(LearnedTemplate).where(LearnedTemplate.verdict_id == verdict.id)):
        learned.active = False
        session.add(learned)
        _hold_what_it_recognised(session, learned)
    if verdict.action == CATEGORY:
        if message.request_id is not None:
            detach(session, message, f"your verdict ({verdict.category}) was taken back")
        message.category = verdict.previous_category
        previous = (session.get(Request, verdict.previous_request_id)
                    if verdict.previous_request_id is not None else None)
        if previous is not None and message.category in v.REQUEST_CATEGORIES:
            session.add(message)
            _join(session, settings, message, previous)
            _changed(session, previous, f"mail #{message.id} is {message.category} again (verdict taken back)")
    message.reviewed = verdict.previous_reviewed
    session.add(message)
    verdict.undone_at = utcnow()
    session.add(verdict)
    session.flush()
    return verdict


def _hold_what_it_recognised(session: Session, learned: LearnedTemplate) -> None:
    """Mails recognised only by a template whose verdict was taken back go back to the person."""
    for message in session.exec(select(Message).where(Message.rule == f"learned:{learned.id}")):
        why = f"it was recognised by your verdict on mail #{learned.message_id}, which you took back"
        if message.request_id is not None:
            detach(session, message, why)
        message.guesses = message.category
        message.category = v.META_OTHER
        message.rule = None
        message.reviewed = False
        message.reason = f"Held for review: {why}."
        session.add(message)


def _withdraw_review_alert(session: Session, message: Message) -> None:
    for alert in session.exec(select(Alert).where(Alert.message_id == message.id, Alert.reason == alerts.REVIEW,
                                                  Alert.sent_at == None)):  # noqa: E711
        alerts._withdraw(session, alert, "you reviewed the mail")


# ---- learning -------------------------------------------------------------------

def _learn(session: Session, message: Message, verdict: Verdict, forced: bool) -> tuple[LearnedTemplate | None,
                                                                                      str | None]:
    if forced or message.authenticated is not True:
        return None, "its sender is not verified, so nothing is learned from it"
    if not message.raw_path or not Path(message.raw_path).is_file():
        return None, "its original is not kept (evidence), so its template is unknown"
    from tracker.parse import parse_mail

    try:
        mail = parse_mail(Path(message.raw_path).read_bytes())
    except OSError as err:
        return None, f"its evidence file cannot be read ({err.strerror or err})"
    words = template_words(mail.subject, mail.text, mail.recipient)
    if words is None:
        return None, "it says too little to stand for a template"
    learned = LearnedTemplate(verdict_id=verdict.id, message_id=message.id, category=verdict.category,
                              platform=message.platform, kind=message.kind if verdict.category in
                              v.REQUEST_CATEGORIES else None, words=words, fingerprint=fingerprint(words))
    session.add(learned)
    session.flush()
    return learned, None


def learned_list(session: Session) -> list[dict]:
    rows = session.exec(select(LearnedTemplate).order_by(LearnedTemplate.id))
    return [{"id": row.id, "category": row.category, "platform": row.platform, "kind": row.kind,
             "message": row.message_id, "active": row.active, "learned": store.utc(row.created_at).isoformat(),
             "words": row.words,
             "used_by": [m.id for m in session.exec(select(Message).where(Message.rule == f"learned:{row.id}"))]}
            for row in rows]


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


def export_rules(session: Session) -> str:
    """The active learned templates as a user rules file ([[template]] tables) another person can load."""
    rows = list(session.exec(select(LearnedTemplate).where(LearnedTemplate.active == True)  # noqa: E712
                             .order_by(LearnedTemplate.id)))
    lines = ["# Templates learned from verdicts on Meta's mails (privacy-tracker rules export).",
             "# Codes, numbers, addresses, links, dates and the greeting's names are masked.",
             "# Load it with [rules] file = \"this-file.toml\" in the config; a mail of exactly",
             "# one of these templates, from a verified Meta sender, gets its category.", ""]
    exported = set()
    for row in rows:
        if row.fingerprint in exported:
            continue
        exported.add(row.fingerprint)
        lines += ["[[template]]", f"id = {_toml_string(f'exported-{row.fingerprint[:12]}')}",
                  f"category = {_toml_string(row.category)}"]
        if row.platform:
            lines.append(f"platform = {_toml_string(row.platform)}")
        if row.kind:
            lines.append(f"kind = {_toml_string(row.kind)}")
        lines += [f"words = {_toml_string(row.words)}", ""]
    return "\n".join(lines)
