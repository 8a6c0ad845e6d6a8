"""Turn raw mail bytes into a :class:`ParsedMail`. The only module that uses mail-parser.

Nothing here raises on bad input: a mail that cannot be read completely is
returned with what could be read and ``error`` set, so the caller can record it
and go on with the next one.
"""

from __future__ import annotations

import email.utils
import logging
from email.header import decode_header, make_header
from email.headerregistry import HeaderRegistry
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone

import mailparser

from tracker.text import html_to_text, normalise

log = logging.getLogger(__name__)

# A plain part shorter than this may be a stub that points to the HTML part.
_STUB_WORDS = 30


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
    # Every mailbox of every From header as (decoded display name, lower-case address);
    # sender_name and sender_address are the first. Meta sends one.
    senders: tuple[tuple[str, str], ...] = ()
    from_headers: tuple[str, ...] = field(default=(), repr=False)  # each From value, encoded words decoded
    # How often each header occurs, by lower-case name: a second To or From is a replay's mark.
    header_counts: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    error: str | None = None          # why the mail could not be read completely
    body_plain: str = field(default="", repr=False)
    body_html: str = field(default="", repr=False)

    @cached_property
    def text(self) -> str:
        """Readable body: the plain part, else the HTML part made text.

        A plain part that is only a stub ("view this email in your browser")
        gives way to the HTML part when that says more.
        """
        plain = self.body_plain.strip()
        if not self.body_html or len(plain.split()) >= _STUB_WORDS:
            return plain or html_to_text(self.body_html)
        from_html = html_to_text(self.body_html)
        return from_html if len(from_html.split()) > 2 * len(plain.split()) else plain

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


_ADDRESS_HEADERS = HeaderRegistry()
# A From header longer than this is hostile; the address parser slows down on
# such input, and no mail program shows that much.
_MAX_FROM = 4096


def _raw_header_values(message, name: str) -> list[str]:
    """A header's values as sent, 8-bit bytes read as UTF-8 (RFC 6532), encoded words left encoded."""
    values = []
    try:
        for key, value in message.raw_items():
            if key.strip().lower() != name:
                continue
            if not isinstance(value, str):
                value = str(value)
            values.append(value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    except Exception:  # a header so broken the email package cannot give it back
        return []
    return values


def _decoded(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # unknown charset, broken encoded word: show it as written
        return value


def _mailboxes(value: str) -> list[tuple[str, str]]:
    """(display name, address) of each mailbox in an address header, display names decoded.

    Encoded words are decoded after the header is split, so a display name
    ``=?utf-8?q?Facebook_<security@facebookmail.com>?=`` stays a name and never
    becomes the address.
    """
    value = value[:_MAX_FROM]
    try:
        if "=?" not in value:
            # Nothing encoded: the quicker parser reads it the same way, and like
            # mail programs it takes a comment ("x@example.org (Facebook)") as the name.
            pairs = email.utils.getaddresses([value])
        else:
            parsed = _ADDRESS_HEADERS("from", value)
            pairs = [(address.display_name or "", address.addr_spec or "") for address in parsed.addresses]
        if "=?" in value and "(" in value and not all(name for name, _ in pairs):
            # "x@example.org (Facebook Security)": mail programs show the comment as the name.
            commented = email.utils.getaddresses([value])
            if len(commented) == len(pairs):
                pairs = [(name or _decoded(other), address)
                         for (name, address), (other, _) in zip(pairs, commented)]
    except Exception:  # RecursionError on deeply nested comments, and other hostile shapes
        try:
            pairs = [(_decoded(name), address) for name, address in email.utils.getaddresses([value])]
        except Exception:
            pairs = []
    out = []
    for name, address in pairs:
        address = address.strip().strip("<>").lower()
        if "@" not in address:
            address = ""
        if name.strip() or address:
            out.append((" ".join(name.split()), address))
    return out


def _header_counts(message) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        for key in message.keys():
            name = key.strip().lower()
            counts[name] = counts.get(name, 0) + 1
    except Exception:
        pass
    return counts


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
        if isinstance(subject, (list, tuple)):  # mail-parser gives every copy of a repeated Subject
            subject = str(subject[0]) if subject else ""
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
    # mail-parser decodes the From header before splitting it; split first, then decode.
    from_values = _raw_header_values(message, "from")
    mailboxes = [mailbox for value in from_values for mailbox in _mailboxes(value)]
    if mailboxes:
        sender_name, sender_address = mailboxes[0]

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
        senders=tuple(mailboxes),
        from_headers=tuple(_decoded(value[:_MAX_FROM]) for value in from_values),
        header_counts=_header_counts(message),
        error="; ".join(dict.fromkeys(errors)) or None,
        body_plain=plain,
        body_html=markup,
    )
