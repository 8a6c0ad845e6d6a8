"""Turn raw mail bytes into a :class:`ParsedMail`, with the standard library's email parser.

Headers first: most mail in a mailbox is not from Meta, and for it the
headers are all the tracker needs. The body is parsed only when something
asks for its text, and only for mail under the size limit; the header block
is cut at ``MAX_HEADER_BYTES``. So a 50 MB mail from someone else costs its
headers, not 50 MB of parsing.

Nothing here raises on bad input: a mail that cannot be read completely is
returned with what could be read and ``error`` set, so the caller can record it
and go on with the next one.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.message
import email.utils
import logging
import re
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.headerregistry import HeaderRegistry
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone

from tracker.text import html_to_text, normalise

log = logging.getLogger(__name__)

# A plain part shorter than this may be a stub that points to the HTML part.
_STUB_WORDS = 30
# A header block larger than this is hostile (no mail program writes one); the rest is cut.
MAX_HEADER_BYTES = 512 * 1024
# Mail larger than this is recorded by its headers and SHA-256; its body is not read.
DEFAULT_MAX_MAIL_BYTES = 25 * 1024 * 1024
# Text read from one body part at most: a decision stands near the top of a mail.
MAX_PART_CHARS = 2 * 1024 * 1024
# MIME parts read of one mail at most: Meta's mails have a few; a hostile one has millions.
MAX_PARTS = 1000
# Of a mail whose MIME structure is damaged, the email package reads at most this much
# (it holds about ten times what it reads).
MAX_REPAIR_BYTES = 8 * 1024 * 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_ENDS = re.compile(rb"[\r\n]*")
# A text part longer than MAX_PART_CHARS bytes is decoded this much at a time, until
# MAX_PART_CHARS characters are read: the rest is never decoded.
_DECODE_CHUNK = 1024 * 1024


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
    # The body parts as text; None until asked for, then read from ``raw``.
    body_plain: str | None = field(default=None, repr=False)
    body_html: str | None = field(default=None, repr=False)
    raw: bytes = field(default=b"", repr=False, compare=False)
    too_large: bool = False           # over the size limit: headers only
    # Where the body starts, for reading it without parsing the headers again.
    body_start: int = field(default=0, repr=False, compare=False)
    # The d= domains of the DKIM signatures the tracker verified itself. None: not checked here,
    # the mail server's Authentication-Results decide; set for the original attached to a forward
    # (tracker/intake.py), which reached the intake mailbox with no header of its own server.
    dkim_verified_domains: tuple[str, ...] | None = None

    @cached_property
    def _parts(self) -> tuple[str, str]:
        """(plain, html) text of the body, read from ``raw`` on first use; body errors join ``error``."""
        if self.body_plain is not None or self.body_html is not None:
            return self.body_plain or "", self.body_html or ""
        if not self.raw or self.too_large:
            return "", ""
        plain, markup, errors = _read_body(self.raw, self.body_start)
        if errors:
            # The dataclass is frozen for its callers; reading the body is part of reading
            # the mail, so what it finds belongs in the one error the store records.
            object.__setattr__(self, "error", "; ".join(dict.fromkeys(filter(None, [self.error, *errors]))))
        return plain, markup

    def read_body(self) -> None:
        """Read the body now, so that its errors show in ``error``."""
        self._parts  # noqa: B018 - the cached property does the work

    @cached_property
    def text(self) -> str:
        """Readable body: the plain part, else the HTML part made text.

        A plain part that is only a stub ("view this email in your browser")
        gives way to the HTML part when that says more.
        """
        body_plain, body_html = self._parts
        plain = body_plain.strip()
        if not body_html or (plain and not _is_stub(plain)):
            return plain or html_to_text(body_html)
        from_html = html_to_text(body_html)
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


def _is_stub(plain: str) -> bool:
    """A short plain part with a link points to the HTML part ("view this email in your browser")."""
    return len(plain.split()) < _STUB_WORDS and ("http" in plain or "www." in plain)


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
    from tracker.dates import sane_mail_time

    try:
        value = email.utils.parsedate_to_datetime(str(raw))
        if value.tzinfo is None:  # "-0000" or no zone: RFC 5322 says UTC is the best guess
            value = value.replace(tzinfo=timezone.utc)
        # The sender writes the Date: before 1990 or more than a day ahead of our clock
        # (the year 9999 overflows every deadline) it counts as missing, and the arrival time is used.
        return sane_mail_time(value.astimezone(timezone.utc))
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None  # year 9999 with a negative zone overflows; nonsense is just "no date"


def parse_mail(raw: bytes, max_bytes: int = DEFAULT_MAX_MAIL_BYTES) -> ParsedMail:
    """Parse one mail's headers; the body waits until its text is asked for. Never raises."""
    # isspace(), not strip(): strip() would copy the whole mail to find it is not empty.
    if not raw or raw.isspace():
        return ParsedMail(error="empty message")
    try:
        return _parse(raw, max_bytes)
    except Exception as err:  # the email package has more ways to fail than can be listed
        log.debug("cannot parse message", exc_info=True)
        return ParsedMail(error=f"cannot parse message: {type(err).__name__}: {err}")


def _header_block(raw: bytes) -> tuple[bytes, list[str]]:
    end = _HEADER_END.search(raw, 0, MAX_HEADER_BYTES + 4)
    if end is not None:
        return raw[:end.end()], []
    if len(raw) <= MAX_HEADER_BYTES:
        return raw, []
    return raw[:MAX_HEADER_BYTES], [f"header block over {MAX_HEADER_BYTES // 1024} KB: the rest was not read"]


def _parse(raw: bytes, max_bytes: int) -> ParsedMail:
    block, errors = _header_block(raw)
    message = BytesHeaderParser().parsebytes(block)
    if not any(message.get(h) for h in ("From", "Date", "Subject", "Message-ID")):
        errors.append("no mail headers (From, Date, Subject, Message-ID all missing)")

    subjects = _raw_header_values(message, "subject")
    subject = " ".join(_decoded(subjects[0]).split()) if subjects else ""
    # Split From first, then decode: an encoded display name stays a name.
    from_values = _raw_header_values(message, "from")
    mailboxes = [mailbox for value in from_values for mailbox in _mailboxes(value)]
    sender_name, sender_address = mailboxes[0] if mailboxes else ("", "")

    # The address Meta wrote to comes first: a family member's mail forwarded into
    # one mailbox must join that member's request, not the mailbox owner's.
    recipients: list[str] = []
    for name in ("to", "cc", "x-original-to", "delivered-to"):
        for value in _raw_header_values(message, name):
            recipients += [address for _, address in _mailboxes(value) if address]

    too_large = len(raw) > max_bytes
    if too_large:
        errors.append(f"mail of {len(raw) / 1024 / 1024:.1f} MB is over the size limit of "
                      f"{max_bytes / 1024 / 1024:.0f} MB: only its headers were read")

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
        raw=raw,
        too_large=too_large,
        body_start=len(block),
    )


def _read_body(raw: bytes, body_start: int) -> tuple[str, str, list[str]]:
    """The text/plain and text/html parts of a body that are not attachments, and what went wrong.

    Common shapes (one text part; multipart with well-formed boundaries) are split
    and decoded directly with C-level searches; anything unusual goes to the
    email package, which reads what it can and names the defect. The email
    package holds about ten times what it reads, so it reads at most
    ``MAX_REPAIR_BYTES`` of a damaged mail.
    """
    headers = _mime_headers(raw[:body_start])
    found = _Found()
    # A view, not a slice: no part of the mail (an attachment of 40 MB, say) is copied.
    if _read_part(headers, memoryview(raw)[body_start:], found, depth=0):
        return "\n".join(found.plain), "\n".join(found.markup), found.errors
    if len(raw) > MAX_REPAIR_BYTES:
        cut = raw.rfind(b"\n", 0, MAX_REPAIR_BYTES) + 1 or MAX_REPAIR_BYTES
        plain, markup, errors = _read_body_with_email_package(raw[:cut])
        return plain, markup, [*errors, f"damaged MIME structure in a mail of {len(raw) / 1024 / 1024:.1f} MB: "
                                        f"only its first {MAX_REPAIR_BYTES // 1024 // 1024} MB were read"]
    return _read_body_with_email_package(raw)


_MAX_DEPTH = 5


@dataclass
class _Found:
    """What the MIME parts read so far gave."""

    plain: list[str] = field(default_factory=list)
    markup: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    parts: int = 0


def _read_part(headers, body: memoryview, found: _Found, depth: int) -> bool:
    """Add one MIME part's text to ``found``; False when the part needs the email package.

    ``body`` is a view into the mail: parts are found by position and never copied;
    only a text part's content is decoded, and only as far as ``MAX_PART_CHARS``.
    """
    content_type = headers.get_content_type()
    if headers.get_content_maintype() == "multipart":
        boundary = headers.get_boundary()
        if not boundary or depth >= _MAX_DEPTH:
            return False
        delimiter = re.compile(rb"(?m)^--" + re.escape(boundary.encode("ascii", "replace")) + rb"(--)?[ \t]*\r?$")
        # One delimiter at a time, not a list of them all: a hostile mail has millions.
        opening = None
        for closing in delimiter.finditer(body):
            if opening is not None and opening.group(1) is None:  # not after the closing delimiter
                found.parts += 1
                if found.parts > MAX_PARTS:
                    found.errors.append(f"more than {MAX_PARTS} MIME parts: the rest were not read")
                    return True
                if not _read_one_part(body, opening.end(), closing.start(), found, depth):
                    return False
            opening = closing
        # No closing delimiter: damaged, or cut off.
        return opening is not None and opening.group(1) is not None
    if content_type not in ("text/plain", "text/html"):
        return True
    if (headers.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
        return True
    encoding = str(headers.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if encoding == "base64":
        try:
            # As base64.b64decode does, without its copy of the input: line breaks and
            # other characters outside the alphabet are skipped.
            body = binascii.a2b_base64(body)
        except (binascii.Error, ValueError):
            return False
    elif encoding == "quoted-printable":
        body = binascii.a2b_qp(body)
    charset = headers.get_content_charset() or "utf-8"
    try:
        text = _decode_capped(body, charset)
    except LookupError:
        found.errors.append(f"unknown charset {charset[:40]!r}: read as UTF-8")
        text = _decode_capped(body, "utf-8")
    (found.plain if content_type == "text/plain" else found.markup).append(text)
    return True


_FOLDED = re.compile(r"\r?\n[ \t]+")


def _mime_headers(block: bytes) -> email.message.Message:
    """The headers of a MIME part, enough for its type, charset, encoding and disposition.

    Faster than the email package's parser, which a mail's few parts would pay
    for each: the values are only read, never decoded or written back.
    """
    headers = email.message.Message()
    for line in _FOLDED.sub(" ", block.decode("latin-1")).splitlines():
        name, colon, value = line.partition(":")
        if colon and name and not name[0].isspace():
            headers[name.strip()] = value.strip()
    return headers


def _read_one_part(body: memoryview, start: int, stop: int, found: _Found, depth: int) -> bool:
    """The part of a multipart ``body`` between two delimiters: its headers, then its content."""
    # It starts after the delimiter line's end and any further line ends.
    start = _LINE_ENDS.match(body, start, stop).end()
    end = _HEADER_END.search(body, start, stop)
    if end is None:
        # A part without headers: text/plain by RFC 2045.
        return _read_part(_mime_headers(b""), body[start:stop], found, depth + 1)
    if end.start() - start > MAX_HEADER_BYTES:
        # As for the mail's own header block: the rest is not read as headers.
        found.errors.append(f"header block of a MIME part over {MAX_HEADER_BYTES // 1024} KB: "
                            f"the rest was not read")
        cut = start + MAX_HEADER_BYTES
        return _read_part(_mime_headers(body[start:cut].tobytes()), body[cut:stop], found,
                          depth + 1)
    return _read_part(_mime_headers(body[start:end.end()].tobytes()), body[end.end():stop],
                      found, depth + 1)


def _decode_capped(data: bytes | memoryview, charset: str) -> str:
    """``data`` decoded (errors replaced), at most ``MAX_PART_CHARS`` characters of it.

    The same text as ``data.decode(charset, "replace")[:MAX_PART_CHARS]``, but a
    long part is decoded a piece at a time and only until there is enough text,
    so a text part of 20 MB never becomes a string of 20 million characters.
    Raises LookupError for an unknown charset, as ``bytes.decode`` does.
    """
    if len(data) <= MAX_PART_CHARS:
        return str(data, charset, "replace")[:MAX_PART_CHARS]
    view = memoryview(data)
    # As bytes.decode does: LookupError for unknown charsets and for codecs that are not
    # text encodings (an empty probe would not do: decoding nothing looks up no codec).
    str(view[:1], charset, "replace")
    decoder = codecs.getincrementaldecoder(charset)("replace")
    pieces: list[str] = []
    count = 0
    for start in range(0, len(view), _DECODE_CHUNK):
        piece = decoder.decode(view[start:start + _DECODE_CHUNK].tobytes())
        pieces.append(piece)
        count += len(piece)
        if count >= MAX_PART_CHARS:
            break
    else:
        pieces.append(decoder.decode(b"", final=True))
    return "".join(pieces)[:MAX_PART_CHARS]


def _read_body_with_email_package(raw: bytes) -> tuple[str, str, list[str]]:
    """The text/plain and text/html parts that are not attachments, as text, and what went wrong."""
    errors: list[str] = []
    try:
        message = email.message_from_bytes(raw)
    except Exception as err:
        return "", "", [f"unreadable body: {type(err).__name__}: {err}"]
    plain: list[str] = []
    markup: list[str] = []
    try:
        parts = list(message.walk())
    except RecursionError:
        return "", "", ["unreadable body: MIME parts nested too deep"]
    for part in parts:
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if (part.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
            continue
        subtype = part.get_content_subtype()
        if subtype not in ("plain", "html"):
            continue
        try:
            payload = part.get_payload(decode=True) or b""
        except Exception as err:
            errors.append(f"unreadable body part: {type(err).__name__}")
            continue
        for defect in part.defects:
            if "Base64" in type(defect).__name__:
                errors.append(f"damaged base64 body ({type(defect).__name__})")
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset, "replace")
        except LookupError:
            errors.append(f"unknown charset {charset[:40]!r}: read as UTF-8")
            text = payload.decode("utf-8", "replace")
        (plain if subtype == "plain" else markup).append(text[:MAX_PART_CHARS])
    for defect in message.defects:
        name = type(defect).__name__
        if name in ("StartBoundaryNotFoundDefect", "CloseBoundaryNotFoundDefect", "MultipartInvariantViolationDefect"):
            errors.append(f"damaged MIME structure ({name})")
    return "\n".join(plain), "\n".join(markup), errors
