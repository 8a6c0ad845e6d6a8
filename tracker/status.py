"""What `status` shows, as plain data (the JSON form); report.py renders it."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, select

from tracker import lifecycle, store
from tracker import vocabulary as v
from tracker.models import Account, Alert, Message, Request
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
    if timeline.state == lifecycle.REJECTED:
        flags.append("complaint possible")
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
    }


def _masked(text: str | None) -> str | None:
    return mask_codes_in(text) if text else text


def _sort_key(entry: dict):
    # Overdue first, then open requests by deadline, then the decided ones.
    return (not entry["overdue"], entry["days_left"] is None, entry["days_left"] or 0, entry["id"])


def build_status(session: Session, today: date) -> dict:
    requests = sorted((request_summary(session, r, today) for r in store.all_requests(session)), key=_sort_key)
    # Mails to review are fake or unrecognised: a code in their subject, display name or the
    # reason that quotes it is masked, as in their alerts (a fake code mail wants it typed in).
    review = [{
        "id": m.id, "category": m.category, "date": _iso(store.utc(m.mail_date)), "sender": m.sender,
        "sender_name": _masked(m.sender_name), "subject": _masked(m.subject), "recipient": m.recipient,
        "reason": _masked(m.reason),
    } for m in store.messages_for_review(session, v.REVIEW_CATEGORIES)]
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
    alerts = [{"id": a.id, "reason": a.reason, "title": a.title, "sent": _iso(store.utc(a.sent_at)),
               "attempts": a.attempts, "last_error": a.last_error}
              for a in session.exec(select(Alert).order_by(Alert.id))]
    return {
        "today": today.isoformat(),
        "requests": requests,
        "review": review,
        "suggestions": suggestions,
        "errors": errors,
        "accounts": accounts,
        "alerts": alerts,
        "messages_seen": store.message_count(session),
    }
