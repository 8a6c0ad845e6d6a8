"""Alerts as an outbox.

An alert row is written in the same transaction as the event that causes it,
keyed by (request or message, reason), so ingesting a mail twice can never
queue it twice. Sending happens afterwards (see ``send_pending``); a sent alert
is never sent again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, select

from tracker.models import Alert, Message, Request

log = logging.getLogger(__name__)

# Reasons, also used in alert keys.
REFUSED = "refused"
INFO_REQUESTED = "info_requested"
OVERDUE = "overdue"
REVIEW = "review"
IMPERSONATION = "impersonation"
AUTHORITY_SILENT = "authority_silent"
MAILBOX_FAILING = "mailbox_failing"
ONE_TIME_CODE = "one_time_code"

KIND_LABELS = {"ai_objection": "objection to AI training", "third_party_data": "third-party data request"}


def _day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "an unknown date"


def describe_request(request: Request) -> str:
    return (f"request #{request.id} ({request.platform.capitalize()}, "
            f"{KIND_LABELS.get(request.kind, request.kind)}, {request.address})")


def queue(session: Session, key: str, reason: str, title: str, body: str, *,
          request_id: int | None = None, message_id: int | None = None,
          account_id: int | None = None, contains_code: bool = False) -> Alert | None:
    """Add an alert unless one with this key exists. Returns the new alert, or None."""
    if session.exec(select(Alert.id).where(Alert.key == key)).first() is not None:
        return None
    alert = Alert(key=key, reason=reason, title=title, body=body, request_id=request_id,
                  message_id=message_id, account_id=account_id, contains_code=contains_code)
    session.add(alert)
    log.info("alert queued: %s", title)
    return alert


def queue_for_request_mail(session: Session, request: Request, message: Message) -> None:
    """Alerts a request mail causes: a refusal, or a request for more information."""
    what = describe_request(request)
    when = _day(message.mail_date)
    if message.category == "rejected":
        queue(session, f"request:{request.id}:{REFUSED}", REFUSED,
              f"Meta refused your {request.platform.capitalize()} request ({request.address})",
              f"On {when} Meta refused {what} (mail: \"{message.subject}\").\n"
              f"Next step: draft a complaint to the data protection authority:\n"
              f"  privacy-tracker complaint draft {request.id}",
              request_id=request.id, message_id=message.id)
    elif message.category == "info_requested":
        queue(session, f"request:{request.id}:{INFO_REQUESTED}:{message.id}", INFO_REQUESTED,
              f"Meta asks for more information ({request.address})",
              f"On {when} Meta asked for more information about {what} "
              f"(mail: \"{message.subject}\").\n"
              f"Next step: answer Meta's mail, then check the request:\n"
              f"  privacy-tracker request show {request.id}",
              request_id=request.id, message_id=message.id)


def queue_for_review_mail(session: Session, message: Message) -> None:
    """Alerts for mail that never changes a request: unrecognised Meta mail and impersonation."""
    when = _day(message.mail_date)
    if message.category == "suspicious":
        queue(session, f"message:{message.id}:{IMPERSONATION}", IMPERSONATION,
              f"Warning: a mail pretends to come from Meta ({message.recipient or 'unknown recipient'})",
              f"On {when} a mail from \"{message.sender_name}\" <{message.sender}> with the subject "
              f"\"{message.subject}\" claimed to be from Meta but is not ({message.reason}).\n"
              f"Do not click its links, reply, or enter any code it contains.\n"
              f"  privacy-tracker status",
              message_id=message.id)
    elif message.category == "meta_other":
        queue(session, f"message:{message.id}:{REVIEW}", REVIEW,
              f"A mail from Meta needs your review ({message.recipient or 'unknown recipient'})",
              f"On {when} Meta sent \"{message.subject}\" from <{message.sender}>, which no rule "
              f"recognises ({message.reason}). Read it and, if it concerns a request, note it:\n"
              f"  privacy-tracker status",
              message_id=message.id)


def queue_code(session: Session, request: Request, message: Message) -> None:
    """The one-time code, for people who asked for it on a private channel."""
    queue(session, f"message:{message.id}:{ONE_TIME_CODE}", ONE_TIME_CODE,
          f"Your {request.platform.capitalize()} one-time code",
          f"Code for {describe_request(request)}: {message.otp} (mail of {_day(message.mail_date)}).",
          request_id=request.id, message_id=message.id, contains_code=True)


def pending(session: Session) -> list[Alert]:
    return list(session.exec(select(Alert).where(Alert.sent_at == None)  # noqa: E711
                             .order_by(Alert.created_at, Alert.id)))
