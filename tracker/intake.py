"""Forwarded-mail intake: members forward Meta's mails to a mailbox the organisation owns.

An ``[[intake]]`` mailbox is polled like an account (tracker/sync.py), but every
mail in it is a forward from a person, so it takes this path instead of the
classifier's:

1. The forward's From address names the member (``privacy-tracker member add``).
2. An original attached to it (``message/rfc822``, or an ``.eml`` file) is cut out
   byte for byte, its DKIM signatures are verified here (tracker/dkim_check.py),
   and it is classified as if it had arrived in the member's own mailbox: a valid
   signature of Meta's domain, aligned with its From, makes it authentic although
   no server of ours wrote an Authentication-Results header for it. It is
   recorded as a message of its own, for the member's address, and a request it
   opens takes the member's country and Land.
3. A forward without an attachment (the text forwarded inline) is never
   authentic: anyone can type a mail from Meta. It is held for review, with what
   its text reads as as the guess. So is anything from an address that is no
   member's: registering the member and forwarding it again, or a verdict with
   `review`, decides it.

Exactly once: the forward's row has the folder/UID key every fetched mail has, so
a forward read again records nothing; an original is recorded by its Message-ID
and content like any mail, so the same original forwarded twice (or also seen in
a watched mailbox) counts once. Every row of one forward is written in the
transaction that moves the folder's checkpoint.
"""

from __future__ import annotations

import binascii
import email.utils
import logging
import re
from dataclasses import dataclass, replace
from datetime import date
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlmodel import Session, func, select

from tracker import alerts, dkim_check
from tracker import vocabulary as v
from tracker.authenticity import UNVERIFIED, check_authenticity
from tracker.config import IntakeSettings, Settings
from tracker.errors import NotFoundError, TrackerError
from tracker.ingest import DUPLICATE, NEW, Ingestor, Recorded, classify_raw, content_key, write_evidence
from tracker.models import Account, Member, Message, Request
from tracker.parse import ParsedMail, parse_mail
from tracker.rules.engine import Classification
from tracker.sources.base import MailItem

log = logging.getLogger(__name__)

# Originals taken from one forward at most (a mail program forwards a few selected mails at once).
MAX_ORIGINALS = 10
_MAX_DEPTH = 5
_MAX_PARTS = 200
_MB = 1024 * 1024

FORWARD = "forward"  # the authenticity label of a forward's own row: it is the member's mail, not Meta's


class MemberError(TrackerError):
    """A member cannot be added as asked (the address is registered already)."""


# ---- members --------------------------------------------------------------------

def find_member(session: Session, address: str) -> Member | None:
    return session.exec(select(Member).where(Member.address == address.strip().lower())).first()


def add_member(session: Session, address: str, name: str, country: str, region: str | None = None) -> Member:
    """Register a member; ``address``, ``country`` and ``region`` checked by the caller (corrections)."""
    address = address.strip().lower()
    if find_member(session, address) is not None:
        raise MemberError(f"ADDRESS: {address} is a member already (`privacy-tracker member remove {address}` "
                          f"first to change the entry)")
    member = Member(address=address, name=" ".join(name.split()), country=country, region=region)
    session.add(member)
    session.flush()
    return member


def remove_member(session: Session, address: str) -> Member:
    """Forget a member. Their requests and mails stay; later forwards from the address are held."""
    member = find_member(session, address)
    if member is None:
        raise NotFoundError(f"ADDRESS: {address.strip().lower()} is not a member (see `privacy-tracker member list`)")
    session.delete(member)
    return member


def member_list(session: Session) -> list[dict]:
    """Every member as plain data, with how many requests their address has."""
    counts = dict(session.exec(select(Request.address, func.count()).group_by(Request.address)).all())
    return [{"address": m.address, "name": m.name, "country": m.country, "region": m.region,
             "since": m.created_at.date().isoformat(), "requests": counts.get(m.address, 0)}
            for m in session.exec(select(Member).order_by(Member.address))]


# ---- which mails of an intake folder to read ---------------------------------------

def new_uids(connection, after_uid: int, since: date | None) -> list[int]:
    """Every UID after ``after_uid`` (received on or after ``since``): a forward comes From the
    member, so the search for Meta's senders that accounts use would find none of them."""
    criteria: list = ["UID", f"{after_uid + 1}:*"]
    if since is not None:
        criteria += ["SINCE", since]
    # "n:*" also returns the last message when n is past it: keep only UIDs after the checkpoint.
    return [uid for uid in connection.search(criteria) if uid > after_uid]


# ---- unpacking a forward --------------------------------------------------------

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _headers(block: bytes):
    return BytesHeaderParser(policy=compat32).parsebytes(block + b"\r\n\r\n")


def _split(entity: bytes) -> tuple[object, bytes]:
    """An entity's headers (parsed) and its body, the body as it stands in the mail."""
    if entity.startswith((b"\r\n", b"\n")):  # a part without headers
        return _headers(b""), entity[2 if entity.startswith(b"\r\n") else 1:]
    end = _HEADER_END.search(entity)
    if end is None:
        return _headers(entity), b""
    return _headers(entity[:end.start()]), entity[end.end():]


def _parts(body: bytes, boundary: str) -> list[bytes]:
    """The parts of a multipart body, each exactly as written between its delimiters."""
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary.encode("ascii", "replace")) + rb"(--)?[ \t]*\r?$")
    parts: list[bytes] = []
    opening = None
    for closing in delimiter.finditer(body):
        if opening is not None and opening.group(1) is None:
            start = opening.end() + (1 if body[opening.end():opening.end() + 1] == b"\n" else 0)
            end = closing.start()
            # The line break before a delimiter belongs to the delimiter (RFC 2046), not to the part.
            end -= 2 if body[max(start, end - 2):end] == b"\r\n" else 1 if body[max(start, end - 1):end] == b"\n" else 0
            parts.append(body[start:max(start, end)])
            if len(parts) >= _MAX_PARTS:
                break
        if closing.group(1) is not None:
            break
        opening = closing
    return parts


def _decoded(headers, body: bytes) -> bytes:
    encoding = str(headers.get("Content-Transfer-Encoding") or "").strip().lower()
    try:
        if encoding == "base64":
            return binascii.a2b_base64(body)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(body)
    except (binascii.Error, ValueError):
        return b""
    return body


def attached_originals(raw: bytes) -> list[bytes]:
    """The mails attached to a forward (``message/rfc822`` parts, ``.eml`` files), byte for byte.

    Exact bytes matter: a DKIM signature covers them, and the email package would write a
    parsed mail back with other line folding. Originals inside an original are not taken.
    """
    found: list[bytes] = []

    def walk(entity: bytes, depth: int) -> None:
        headers, body = _split(entity)
        kind = headers.get_content_type()
        if headers.get_content_maintype() == "multipart":
            boundary = headers.get_boundary()
            if boundary and depth < _MAX_DEPTH:
                for part in _parts(body, boundary):
                    if len(found) >= MAX_ORIGINALS:
                        return
                    walk(part, depth + 1)
            return
        if depth == 0:
            return  # the forward itself, not an attachment
        filename = (headers.get_filename() or "").strip().lower()
        if kind == "message/rfc822" or filename.endswith(".eml"):
            original = _decoded(headers, body)
            if _HEADER_END.search(original, 0, 512 * 1024):  # a header block, then a body: a mail
                found.append(original)

    walk(raw, 0)
    return found


# The header lines mail programs write above a mail forwarded inline, in the languages the
# tracker reads: Gmail ("From:/Date:/Subject:/To:"), Outlook ("From:/Sent:"), Apple Mail,
# Thunderbird ("Subject:" first), and their translations.
_INLINE_FIELDS = {
    "from": ("from", "von", "de", "da", "van", "från", "fra", "od", "mittente", "feladó", "lähettäjä", "saatja"),
    "subject": ("subject", "betreff", "objet", "oggetto", "asunto", "assunto", "onderwerp", "ämne", "emne",
                "temat", "předmět", "tárgy", "aihe", "teema"),
    "date": ("date", "sent", "datum", "gesendet", "envoyé", "inviato", "enviado", "fecha", "data", "verzonden",
             "skickat", "sendt", "wysłano", "odesláno", "päivämäärä", "kuupäev"),
    "to": ("to", "an", "à", "a", "para", "aan", "till", "til", "do", "komu", "destinatario", "címzett",
           "vastaanottaja", "saaja", "cc"),
}
_FIELD_OF = {word: field for field, words in _INLINE_FIELDS.items() for word in words}
_FIELD_LINE = re.compile(r"^[\s>]*\*?([^\W\d_][^\W\d_ ]{0,20}?)\*?\s*:\*?\s*(.*)$")
_FORWARD_PREFIX = re.compile(r"^\s*(?:(?:fwd?|wg|tr|rv|i|enc|vs|doorst|fw|pd|továbbítás)\s*:\s*)+", re.I)
_MAILTO = re.compile(r"\s*\[mailto:([^\]]+)\]")


def inline_original(forward: ParsedMail) -> bytes | None:
    """The mail forwarded inline in ``forward``'s text, rebuilt as a mail to classify: its
    From, Subject and Date from the header lines the mail program wrote, its text after them.
    None when the text has no such lines."""
    lines = forward.text.splitlines()
    block: dict[str, str] = {}
    start = None
    for index, line in enumerate(lines):
        found = _FIELD_LINE.match(line)
        field = _FIELD_OF.get(found.group(1).lower()) if found else None
        if field is not None and (block or field == "from" or (field == "subject" and "@" not in found.group(2))):
            block.setdefault(field, found.group(2).strip())
            start = start if start is not None else index
            continue
        if not line.strip() and not block:
            continue
        if "@" in block.get("from", ""):
            body = lines[index:]
            break
        block, start = {}, None
    else:
        if "@" not in block.get("from", ""):
            return None
        body = []
    quoted = all(line.lstrip().startswith(">") for line in body if line.strip())
    text = "\n".join(re.sub(r"^\s*>\s?", "", line) if quoted else line for line in body).strip()
    message = EmailMessage()
    sender = _MAILTO.sub(lambda m: f" <{m.group(1)}>", block["from"])
    try:
        message["From"] = sender
    except Exception:  # a display name the address parser refuses: the address alone
        address = re.search(r"[^\s<>\"'\[\]():;,]+@[^\s<>\"'\[\]():;,]+", sender)
        if address is None:
            return None
        message["From"] = address.group(0)
    subject = block.get("subject") or _FORWARD_PREFIX.sub("", forward.subject)
    message["Subject"] = " ".join(subject.split())
    if forward.recipient:
        message["To"] = forward.recipient
    try:
        written = email.utils.parsedate_to_datetime(block.get("date", ""))
        message["Date"] = email.utils.format_datetime(written)
    except (TypeError, ValueError, IndexError, OverflowError):
        pass  # an Outlook date in words: the forward's own date stands in
    message.set_content(text or "(no text)")
    return bytes(message)


# ---- the decision ----------------------------------------------------------------

@dataclass(frozen=True)
class Original:
    """One original attached to a forward, checked and classified (before any transaction)."""

    item: MailItem
    mail: ParsedMail
    result: Classification
    dkim: dkim_check.DkimResult


@dataclass(frozen=True)
class PreparedForward:
    mail: ParsedMail                         # the forward itself
    originals: tuple[Original, ...]
    inline: Classification | None = None     # no original attached: what the forwarded text reads as
    inline_meta: bool = False                # ...and it claims to come from Meta (or imitates it)
    problem: str | None = None               # why the forward was not unpacked


def _as_original(settings: Settings) -> Settings:
    """Settings for an original: a Meta mail no signature vouches for is held, whatever
    ``[authenticity] unverified`` says (that "trust" is for the person's own archive)."""
    authenticity = settings.authenticity.model_copy(update={"unverified": "review"})
    return settings.model_copy(update={"authenticity": authenticity})


def _guesses(result: Classification) -> tuple[str, ...]:
    if result.guesses:
        return result.guesses
    return (result.category,) if result.category not in (v.META_OTHER, v.UNRELATED, v.SUSPICIOUS) else ()


def _for(mail: ParsedMail, address: str) -> ParsedMail:
    """``mail`` as if sent to ``address`` (the member): its requests are the member's."""
    return replace(mail, recipients=(address, *(r for r in mail.recipients if r != address)))


def _forward_row(category: str, reason: str, *, platform=None, kind=None, guesses=()) -> Classification:
    return Classification(category=category, platform=platform, kind=kind, otp=None, reference=None, rule=None,
                          authenticated=None, authenticity=FORWARD, reason=reason, guesses=tuple(guesses))


class IntakeReader:
    """Reads the mails of one intake mailbox: ``prepare`` outside a transaction, ``record`` inside."""

    def __init__(self, ingestor: Ingestor, mailbox: IntakeSettings, dnsfunc: dkim_check.DnsFunc | None = None):
        self.ingestor = ingestor
        self.mailbox = mailbox
        self.dnsfunc = dnsfunc

    def prepare(self, item: MailItem, settings: Settings | None = None) -> PreparedForward:
        """Unpack, verify and classify: DNS lookups and parsing, before the write transaction opens."""
        settings = _as_original(settings or self.ingestor.settings)
        limit = settings.evidence.max_mail_mb * _MB
        forward = parse_mail(item.raw, limit)
        if forward.too_large:
            return PreparedForward(forward, (), problem=f"it is over the size limit of {settings.evidence.max_mail_mb} "
                                                        f"MB ([evidence] max_mail_mb), so it was not unpacked")
        try:
            return self._unpack(item, forward, settings)
        except Exception as err:  # a shape nobody foresaw must not stall the folder on this mail
            log.warning("%s: cannot unpack the forward", item.label, exc_info=True)
            return PreparedForward(forward, (), problem=f"it could not be unpacked ({type(err).__name__}: {err})")

    def _unpack(self, item: MailItem, forward: ParsedMail, settings: Settings) -> PreparedForward:
        originals = []
        for number, raw in enumerate(attached_originals(item.raw), 1):
            checked = dkim_check.verify(raw, self.dnsfunc)
            mail, result = classify_raw(raw, self.ingestor.rules, settings, dkim_verified=checked.verified)
            if result.authenticity == UNVERIFIED:  # say why no signature vouched for it
                summary = checked.summary()
                result = replace(result, reason=f"{result.reason} {summary[:1].upper()}{summary[1:]}")
            label = f"{item.label} (attached mail {number})"
            originals.append(Original(MailItem(raw=raw, label=label, internal_date=item.internal_date),
                                      mail, result, checked))
        if originals:
            return PreparedForward(forward, tuple(originals))
        typed = inline_original(forward)
        if typed is None:
            return PreparedForward(forward, ())
        mail, result = classify_raw(typed, self.ingestor.rules, settings, dkim_verified=())
        return PreparedForward(forward, (), inline=result,
                               inline_meta=check_authenticity(mail, settings.authenticity).concerns_meta)

    def record(self, session: Session, account: Account, item: MailItem,
               prepared: PreparedForward) -> tuple[str, Recorded | None]:
        """Write the forward, its originals, their events and alerts into ``session`` (no commit)."""
        if self.ingestor.is_known(session, account, item):
            return DUPLICATE, None
        forwarder = prepared.mail.sender_address
        member = find_member(session, forwarder) if forwarder else None
        who = f"{member.name} <{member.address}>" if member else (forwarder or "an unknown sender")
        about_meta = [o for o in prepared.originals if o.result.category != v.UNRELATED]
        address = member.address if member else forwarder
        mail = _for(prepared.mail, address) if address else prepared.mail

        if member is not None and prepared.originals:
            outcome, recorded = self.ingestor.record(session, account, item, (mail, _forward_row(
                v.UNRELATED, f"A forward from member {who}; the mail(s) attached are recorded on their own.")))
            if outcome == DUPLICATE:
                return outcome, None
            notes = [self._record_original(session, account, original, member) for original in prepared.originals]
            forward = session.get(Message, recorded.id)
            forward.reason = f"A forward from member {who}: " + "; ".join(text for text, _ in notes) + "."
            session.add(forward)
            self._acknowledge(session, forward, member, [told for _, told in notes])
            return outcome, recorded

        # Nothing that can be verified, or nobody to record it for: the forward itself is held,
        # unless nothing in it has to do with Meta.
        first = about_meta[0].result if about_meta else None
        guess = prepared.inline if prepared.inline is not None and prepared.inline_meta else None
        if prepared.problem:
            category, why = v.META_OTHER, f"A forward from {who}: {prepared.problem}; held for review."
        elif first is None and guess is None:
            outcome, recorded = self.ingestor.record(session, account, item, (mail, _forward_row(
                v.UNRELATED, f"A mail from {who} that holds no mail from Meta (attached or forwarded in its "
                             f"text).")))
            if outcome == NEW and member is not None:
                self._acknowledge(session, session.get(Message, recorded.id), member, [
                    "It holds no mail from Meta that we could find: please forward Meta's mail as an attachment "
                    "(\"Forward as attachment\" in your mail program)."])
            return outcome, recorded
        elif member is None:
            reads = (f"the mail attached reads as {first.category} ({first.authenticity})" if first is not None
                     else f"its text reads as {guess.category}")
            category = v.META_OTHER
            register = (f"Register them with `privacy-tracker member add {forwarder} --name NAME --country CC` and "
                        f"have them forward it again, or decide it" if forwarder else "Decide it")
            why = (f"Forwarded by {who}, who is not a registered member: held for review; {reads}. {register} "
                   f"with `privacy-tracker review`.")
        else:
            pretends = guess.category == v.SUSPICIOUS
            category = v.SUSPICIOUS if pretends else v.META_OTHER
            reads = "it only pretends to come from Meta" if pretends else (
                f"it reads as {' or '.join(_guesses(guess))}" if _guesses(guess) else "no rule recognises its text")
            why = (f"An inline forward from member {who}: the original is not attached, so its signature cannot "
                   f"be checked, and typed text is never taken as Meta's word; held for review ({reads}).")
        source = first or guess
        outcome, recorded = self.ingestor.record(session, account, item, (mail, _forward_row(v.UNRELATED, why)))
        if outcome == DUPLICATE:
            return outcome, None
        forward = session.get(Message, recorded.id)
        forward.category, forward.reason = category, why
        if source is not None:
            forward.platform, forward.kind = source.platform, source.kind
            forward.guesses = " ".join(_guesses(source))
        if self.ingestor.settings.evidence.keep_raw and item.raw:
            forward.raw_path = str(write_evidence(item.raw, forward.sha256, self.ingestor.evidence_dir))
        session.add(forward)
        log.info("%s: held for review: %s", item.label, why)
        alerts.queue_for_forward(session, forward, self.mailbox.name, held=True)
        if member is not None:
            told = ("It only pretends to come from Meta: do not click its links or enter any code from it."
                    if category == v.SUSPICIOUS else
                    "It could not be read automatically; we will read it." if prepared.problem else
                    "It was forwarded as text, so we cannot check that it comes from Meta; we will read it. Next "
                    "time, please forward Meta's mail as an attachment (\"Forward as attachment\").")
            self._acknowledge(session, forward, member, [told])
        return outcome, Recorded(recorded.id, category, recorded.error)

    def _record_original(self, session: Session, account: Account, original: Original,
                         member: Member) -> tuple[str, str]:
        """Record one original for ``member``: (a note for the forward's reason, a sentence for the member)."""
        mail = _for(original.mail, member.address)
        outcome, recorded = self.ingestor.record(session, account, original.item, (mail, original.result))
        if outcome == DUPLICATE:
            key = content_key(original.item.raw)
            known = session.exec(select(Message.id).where(Message.dedupe_id == (mail.message_id or ""),
                                                          Message.content_key == key)).first()
            return f"mail #{known} was recorded before", "We had received this mail before."
        message = session.get(Message, recorded.id)
        request = session.get(Request, message.request_id) if message.request_id else None
        if request is not None and request.country is None:
            request.country, request.region = member.country, member.region
            session.add(request)
        note = f"mail #{message.id} ({message.category}, {message.authenticity})"
        if request is not None:
            told = (f"It reads as Meta's answer ({message.category}) and is recorded for your "
                    f"{(request.platform or '').capitalize()} {alerts.KIND_LABELS.get(request.kind, request.kind)} "
                    f"(request #{request.id}).")
        elif message.category == v.SUSPICIOUS:
            told = "It only pretends to come from Meta: do not click its links or enter any code from it."
        elif message.category in v.REVIEW_CATEGORIES:
            told = ("We could not confirm it as Meta's own mail, or could not tell what it says; we will read it."
                    if message.authenticated is not True else "We will read it: no rule recognises it.")
        elif message.category == v.UNRELATED:
            told = "It does not look like a mail from Meta about a privacy request; nothing was recorded for you."
        else:
            told = f"It reads as {message.category}."
        return note, told

    def _acknowledge(self, session: Session, forward: Message, member: Member, told: list[str]) -> None:
        if self.mailbox.acknowledge:
            alerts.queue_for_forward(session, forward, self.mailbox.name, held=False,
                                     member=(member.name, member.address), acknowledgement=" ".join(told))
