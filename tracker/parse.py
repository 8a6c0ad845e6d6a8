"""Turn raw mail bytes into a :class:`ParsedMail`. The only module that uses mail-parser.

Nothing here raises on bad input: a mail that cannot be read completely is
returned with what could be read and ``error`` set, so the caller can record it
and go on with the next one.
"""

from __future__ import annotations

import email.utils
import logging
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone

import mailparser

from tracker.text import html_to_text, normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParsedMail:
    """What the rules and the store need from one mail.

    The body is turned into text only when something asks for it: most mail in
    a mailbox is not from Meta, and the rules never read its body.
    """

    subject: str = ""
    sender_name: str = ""
    sender_address: str = ""          # lower case, "" when there is no From
    recipients: tuple[str, ...] = ()  # lower case: To, Cc, X-Original-To, Delivered-To, without repeats
    date: datetime | None = None      # timezone-aware, UTC
    message_id: str | None = None     # without angle brackets
    auth_results: tuple[str, ...] = ()  # Authentication-Results values, topmost first
    error: str | None = None          # why the mail could not be read completely
    body_plain: str = field(default="", repr=False)
    body_html: str = field(default="", repr=False)

    @cached_property
    def text(self) -> str:
        """Readable body: the plain part, else the HTML part made text."""
        return self.body_plain.strip() or html_to_text(self.body_html)

    @cached_property
    def normalised_text(self) -> str:
        return normalise(self.text)

    @cached_property
    def normalised_subject(self) -> str:
        return normalise(self.subject)

    @property
    def recipient(self) -> str | None:
        """The address the mail was sent to: the person whose request it belongs to."""
        return self.recipients[0] if self.recipients else None

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2]


def _addresses(pairs) -> list[str]:
    out = []
    for pair in pairs or ():
        address = (pair[1] if isinstance(pair, (tuple, list)) else str(pair)).strip().strip("<>").lower()
        if "@" in address:
            out.append(address)
    return out


def _header_values(message, name: str) -> list[str]:
    try:
        return [str(v) for v in (message.get_all(name) or [])]
    except Exception:  # a header so broken the email package cannot decode it
        return []


def _parse_date(message) -> datetime | None:
    raw = message.get("Date") if message is not None else None
    if not raw:
        return None
    try:
        value = email.utils.parsedate_to_datetime(str(raw))
        if value.tzinfo is None:  # "-0000" or no zone: RFC 5322 says UTC is the best guess
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None  # year 9999 with a negative zone overflows; nonsense is just "no date"


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse one mail. Never raises: problems end up in ``ParsedMail.error``."""
    if not raw or not raw.strip():
        return ParsedMail(error="empty message")
    try:
        return _parse(raw)
    except Exception as err:  # the email package has more ways to fail than can be listed
        log.debug("cannot parse message", exc_info=True)
        return ParsedMail(error=f"cannot parse message: {type(err).__name__}: {err}")


def _parse(raw: bytes) -> ParsedMail:
    try:
        parsed = mailparser.parse_from_bytes(raw)
    except Exception as err:  # mail-parser raises many kinds on broken input
        log.debug("mail-parser failed", exc_info=True)
        return ParsedMail(error=f"cannot parse message: {type(err).__name__}: {err}")

    message = parsed.message
    errors: list[str] = []
    if not any(message.get(h) for h in ("From", "Date", "Subject", "Message-ID")):
        errors.append("no mail headers (From, Date, Subject, Message-ID all missing)")

    try:
        subject = parsed.subject or ""
    except Exception as err:
        subject, _ = "", errors.append(f"unreadable Subject: {err}")
    try:
        senders = parsed.from_ or []
    except Exception as err:
        senders, _ = [], errors.append(f"unreadable From: {err}")
    sender_name, sender_address = "", ""
    if senders:
        sender_name = (senders[0][0] or "").strip()
        sender_address = (_addresses(senders[:1]) or [""])[0]

    # The address Meta wrote to comes first: a family member's mail forwarded into
    # one mailbox must join that member's request, not the mailbox owner's.
    # mail-parser has already split the address headers; X-Original-To it leaves as text.
    recipients: list[str] = []
    try:
        recipients += _addresses(parsed.to) + _addresses(parsed.cc)
        recipients += _addresses(email.utils.getaddresses(_header_values(message, "X-Original-To")))
        recipients += _addresses(parsed.delivered_to)
    except Exception as err:
        errors.append(f"unreadable recipients: {err}")

    try:
        plain, markup = "\n".join(parsed.text_plain), "\n".join(parsed.text_html)
    except Exception as err:
        plain, markup, _ = "", "", errors.append(f"unreadable body: {err}")

    for defect in parsed.defects or ():
        for kinds in defect.values():
            for description in kinds:
                if "CharsetDecodeDefect" in description or "Base64" in description:
                    errors.append(description.split(".")[0])

    # str(): a Message-ID with raw 8-bit bytes comes back as a Header object.
    message_id = str(message.get("Message-ID") or "").strip().strip("<>") or None
    return ParsedMail(
        subject=subject,
        sender_name=sender_name,
        sender_address=sender_address,
        recipients=tuple(dict.fromkeys(recipients)),
        date=_parse_date(message),
        message_id=message_id,
        auth_results=tuple(_header_values(message, "Authentication-Results")),
        error="; ".join(dict.fromkeys(errors)) or None,
        body_plain=plain,
        body_html=markup,
    )
