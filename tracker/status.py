"""What `status` shows, as plain data (the JSON form); report.py renders it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlmodel import Session, select

from tracker import lifecycle, store
from tracker import vocabulary as v
from tracker.errors import TrackerError
from tracker.models import Account, Alert, Member, Message, Request
from tracker.text import mask_codes_in


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _timeline(session: Session, request: Request) -> tuple[lifecycle.Timeline, bool]:
    """The request's timeline, and whether its dates could be used.

    Dates are checked (1990 to now) where they come in, but a database written before
    that may hold the year 9999, whose deadline is past what a date can hold: the request
    is then shown with its last known state and no deadline, never a traceback.
    """
    try:
        timeline = store.timeline_of(session, request)
        # A period from an extreme stored date ends on the last date there is: not a real deadline.
        return timeline, timeline.deadline != date.max
    except (OverflowError, ValueError):
        return lifecycle.Timeline(state=request.state, received=None, deadline=None, extended=False,
                                  last_mail=None, decided=None), False


def _authority_deadline(filed: date | None) -> date | None:
    try:
        due = lifecycle.authority_deadline(filed) if filed is not None else None
    except (OverflowError, ValueError):
        return None
    return None if due == date.max else due


def request_summary(session: Session, request: Request, today: date) -> dict:
    timeline, dates_usable = _timeline(session, request)
    complaints = store.complaints_of(session, request.id)
    flags = [] if dates_usable else ["date out of range"]
    if timeline.overdue(today):
        flags.append("overdue")
    if timeline.extended:
        flags.append("extended")
    if len(timeline.rounds) > 1:
        flags.append(f"round {len(timeline.rounds)}")
    if timeline.state == lifecycle.REJECTED:
        flags.append("complaint possible")
    elif timeline.last_refusal is not None and timeline.is_open:
        flags.append("earlier refusal")  # a complaint about it is possible while a newer round is open
    if timeline.state == lifecycle.INFO_REQUESTED:
        flags.append("action needed")
    complaint = None
    if complaints:
        latest = complaints[-1]
        due = _authority_deadline(latest.filed)
        if due is None and "date out of range" not in flags:
            flags.append("date out of range")
        complaint = {"id": latest.id, "authority": latest.authority, "filed": _iso(latest.filed),
                     "reference": latest.reference, "state": latest.state, "authority_deadline": _iso(due),
                     "authority_overdue": due is not None and today > due and latest.state == "filed"}
        if complaint["authority_overdue"]:
            flags.append("authority silent")
    return {
        "id": request.id,
        "address": request.address,
        "platform": request.platform,
        "kind": request.kind,
        "country": request.country,
        "state": timeline.state,
        "submitted": _iso(timeline.received),
        "last_mail": _iso(store.utc(timeline.last_mail)),
        "decided": _iso(timeline.decided),
        "deadline": _iso(timeline.deadline),
        "days_left": timeline.days_left(today),
        "overdue": timeline.overdue(today),
        "extended": timeline.extended,
        "complaint": complaint,
        "flags": flags,
        # Objecting again after an answer starts a new round with its own clock; earlier ones keep their outcome.
        "rounds": [{"number": r.number, "state": r.state, "received": _iso(r.received), "deadline": _iso(r.deadline),
                    "extended": r.extended, "decided": _iso(r.decided), "info_requested": _iso(r.info_requested),
                    "answered_late": r.answered_late} for r in timeline.rounds],
    }


def _masked(text: str | None) -> str | None:
    return mask_codes_in(text) if text else text


def _sort_key(entry: dict):
    # Overdue first, then open requests by deadline, then the decided ones.
    return (not entry["overdue"], entry["days_left"] is None, entry["days_left"] or 0, entry["id"])


# A one-time code is worth showing while the form still takes it (reported: about an hour).
FRESH_CODE = timedelta(hours=1)


def fresh_codes(session: Session, now: datetime) -> list[dict]:
    """One-time codes from authentic code mails of the last hour, so the person can finish the form.

    Message.otp is only ever set for a mail whose sender was verified (rules/engine.py).
    """
    since = store.to_db_time(now - FRESH_CODE)
    rows = session.exec(select(Message, Request).join(Request, Message.request_id == Request.id)
                        .where(Message.otp != None, Message.authenticated == True,  # noqa: E711,E712
                               Message.mail_date >= since).order_by(Message.mail_date.desc()))
    return [{"message": m.id, "request": r.id, "address": r.address, "platform": r.platform, "code": m.otp,
             "received": _iso(store.utc(m.mail_date))} for m, r in rows]


# ---- which requests: filters of `status`, `export` and `complaint draft --all-refused` ----------

STATES = (lifecycle.SUBMITTED, lifecycle.CODE_SENT, lifecycle.ACKNOWLEDGED, lifecycle.INFO_REQUESTED,
          lifecycle.APPROVED, lifecycle.REJECTED, lifecycle.COMPLAINT_FILED)
# The word people use for Meta's "no" (and `--all-refused`), besides the stable name.
_STATE_WORDS = {"refused": lifecycle.REJECTED}


class InvalidFilter(TrackerError):
    """A filter option names no member, state, platform or country; ``problems`` are "--option: why" each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RequestFilter:
    """Which requests to show. A request's country is its own, else its member's."""

    member: str | None = None      # a member's address: the requests of that address
    state: str | None = None       # a stable state name (STATES)
    platform: str | None = None
    country: str | None = None     # ISO 3166-1 alpha-2

    def __bool__(self) -> bool:
        return any((self.member, self.state, self.platform, self.country))

    def as_dict(self) -> dict:
        return {"member": self.member, "state": self.state, "platform": self.platform, "country": self.country}

    def shown(self) -> str:
        """"member anna@example.org, state rejected" for a heading."""
        return ", ".join(f"{key} {value}" for key, value in self.as_dict().items() if value)


def request_filter(session: Session, *, member: str | None = None, state: str | None = None,
                   platform: str | None = None, country: str | None = None) -> RequestFilter:
    """The options as a filter, each checked; raises InvalidFilter naming every problem at once."""
    from tracker.corrections import InvalidInput, check_request_fields
    from tracker.intake import find_member

    problems: list[str] = []
    if member is not None and find_member(session, member) is None:
        problems.append(f"--member: {member.strip().lower()!r} is not a member (see `privacy-tracker member list`)")
    name = None
    if state is not None:
        typed = " ".join(state.lower().replace("-", " ").replace("_", " ").split()).replace(" ", "_")
        name = _STATE_WORDS.get(typed, typed)
        if name not in STATES:
            problems.append(f"--state: {state!r} is not a state; must be one of {', '.join(STATES)} (or refused)")
    values: dict = {}
    try:
        values = check_request_fields(platform=platform, country=country)
    except InvalidInput as err:
        problems += err.problems
    if problems:
        raise InvalidFilter(problems)
    return RequestFilter(member=member.strip().lower() if member is not None else None, state=name,
                         platform=values.get("platform"), country=values.get("country"))


def members_by_address(session: Session) -> dict[str, Member]:
    return {m.address: m for m in session.exec(select(Member))}


def matching_requests(session: Session, today: date,
                      only: RequestFilter | None = None) -> list[tuple[Request, Member | None, dict]]:
    """Every request ``only`` lets through, in id order: the request, its member (or None), its summary."""
    only = only or RequestFilter()
    members = members_by_address(session)
    query = select(Request).order_by(Request.id)
    if only.member:
        query = query.where(Request.address == only.member)
    if only.platform:
        query = query.where(Request.platform == only.platform)
    found = []
    for request in session.exec(query):
        member = members.get(request.address)
        if only.country and (request.country or (member.country if member else None)) != only.country:
            continue
        summary = request_summary(session, request, today)
        if only.state and summary["state"] != only.state:  # the derived state, as shown
            continue
        found.append((request, member, summary))
    return found


def request_events(session: Session, request: Request, *, codes: bool) -> list[dict]:
    """A request's timeline, in date order. With ``codes`` a code mail's event names its one-time
    code (`request show`, for the person finishing the form); without, no code appears (exports)."""
    messages = {m.id: m for m in store.messages_of_request(session, request.id)}
    known = [m.otp for m in messages.values() if m.otp]
    events = []
    for e in sorted(store.events_of(session, request.id), key=lambda e: (e.occurred_at, e.id)):
        message = messages.get(e.message_id)
        detail = e.detail
        if codes:
            if message is not None and message.otp and e.kind == v.OTP:
                detail += f" (code {message.otp})"
        else:
            detail = without_codes(detail, known, mask_all=e.kind == v.OTP)
        events.append({"date": store.utc(e.occurred_at).isoformat(), "kind": e.kind, "detail": detail,
                       "message": e.message_id})
    return events


def without_codes(text: str, codes: list[str], *, mask_all: bool = False) -> str:
    """``text`` with the given one-time codes masked; ``mask_all``: every code-like number too
    (the subject of a code mail may carry its code)."""
    for code in codes:
        text = text.replace(code, "*" * len(code))
    return mask_codes_in(text) if mask_all else text


def build_status(session: Session, today: date, only: RequestFilter | None = None) -> dict:
    shown = matching_requests(session, today, only)
    requests = sorted((summary for _, _, summary in shown), key=_sort_key)
    shown_ids = {entry["id"] for entry in requests}
    # Mails to review are fake or unrecognised: a code in their subject, display name or the
    # reason that quotes it is masked, as in their alerts (a fake code mail wants it typed in).
    from tracker.review import waiting_for_review

    review = [{
        "id": m.id, "category": m.category, "date": _iso(store.utc(m.mail_date)), "sender": m.sender,
        "sender_name": _masked(m.sender_name), "subject": _masked(m.subject), "recipient": m.recipient,
        "reason": _masked(m.reason), "uncertain": m.uncertain,
    } for m in waiting_for_review(session)]
    # Mails recognised by what the person taught: shown so that a wrong lesson is noticed.
    learned = [{"id": m.id, "category": m.category, "date": _iso(store.utc(m.mail_date)), "subject": _masked(m.subject),
                "request": m.request_id, "reason": m.reason}
               for m in session.exec(select(Message).where(Message.rule.like("learned:%")).order_by(Message.mail_date))]
    requested = {(r.address, r.platform) for r in store.all_requests(session)}
    suggestions = [{
        "id": m.id, "date": _iso(store.utc(m.mail_date)), "address": m.recipient, "platform": m.platform,
        "subject": m.subject,
    } for m in session.exec(select(Message).where(Message.category == v.NOTICE).order_by(Message.mail_date))
        if m.recipient and (m.recipient, m.platform or "facebook") not in requested]
    errors = [{"id": m.id, "source": m.source_path or f"{m.folder}#{m.uid}", "error": m.error}
              for m in session.exec(select(Message).where(Message.error != None))]  # noqa: E711
    seen_by_account = store.message_counts_by_account(session)
    accounts = [{
        "name": a.name, "last_success": _iso(store.utc(a.last_success_at)),
        "last_error": a.last_error, "last_error_at": _iso(store.utc(a.last_error_at)),
        "messages_seen": seen_by_account.get(a.id, 0),
        # The authserv-id of the mailbox's own server, learned on its first sync (None: not yet).
        "authserv_id": a.authserv_id,
    } for a in session.exec(select(Account).where(Account.host != None)  # noqa: E711  (IMAP accounts)
                            .order_by(Account.name))]
    # A filtered view shows the alerts and codes of its own requests only: a member's view is about them.
    alerts = [{"id": a.id, "reason": a.reason, "title": a.title, "sent": _iso(store.utc(a.sent_at)),
               "attempts": a.attempts, "last_error": a.last_error}
              for a in session.exec(select(Alert).order_by(Alert.id)) if not only or a.request_id in shown_ids]
    return {
        "today": today.isoformat(),
        **({"filter": only.as_dict()} if only else {}),
        "requests": requests,
        "review": review,
        "codes": [code for code in fresh_codes(session, datetime.now(timezone.utc))
                  if not only or code["request"] in shown_ids],
        "learned": learned,
        "suggestions": suggestions,
        "errors": errors,
        "accounts": accounts,
        "alerts": alerts,
        "messages_seen": store.message_count(session),
    }
