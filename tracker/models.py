"""Database tables (SQLModel). Engine and sessions live in store.py.

Times are stored as naive UTC datetimes (SQLite has no time zone type);
``store.utc`` turns them back into aware ones. The columns are typed
``NaiveDatetime`` because newer SQLModel releases otherwise insist on aware values.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from pydantic import NaiveDatetime
from sqlalchemy import BigInteger, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel


# IMAP numbers go up to 2**32 - 1 (UIDs, UIDVALIDITY) and 2**63 - 1 (MODSEQ): wider than PostgreSQL's
# INTEGER. SQLite's INTEGER holds 64 bits already.
IMAP_NUMBER = Integer().with_variant(BigInteger(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Account(SQLModel, table=True):
    """A mailbox being watched, and how its last syncs went."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)   # "local" for files ingested by path
    host: str | None = None
    username: str | None = None
    last_success_at: NaiveDatetime | None = None
    last_error_at: NaiveDatetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    login_refused: bool = False          # the last failure was the server refusing the credentials
    # The authserv-id of the mailbox's own server (topmost Authentication-Results of its ordinary
    # mail), learned on the first sync; only its Authentication-Results count for this account's mail.
    authserv_id: str | None = None


class Checkpoint(SQLModel, table=True):
    """How far one IMAP folder has been read. Written in the same transaction as the messages."""

    __table_args__ = (UniqueConstraint("account_id", "folder"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    folder: str
    uidvalidity: int = Field(sa_type=IMAP_NUMBER)
    last_uid: int = Field(default=0, sa_type=IMAP_NUMBER)
    highestmodseq: int | None = Field(default=None, sa_type=IMAP_NUMBER)
    updated_at: NaiveDatetime = Field(default_factory=utcnow)


class FolderLock(SQLModel, table=True):
    """A lease that keeps two pollers (in any process) off the same folder."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)        # "account/folder"
    holder: str                          # host:pid:token
    expires_at: NaiveDatetime


class Message(SQLModel, table=True):
    """Every mail seen, once. Meta mails keep their original bytes as evidence."""

    __table_args__ = (
        UniqueConstraint("dedupe_id", "content_key", name="uq_message_content"),
        UniqueConstraint("account_id", "folder", "uidvalidity", "uid", name="uq_message_location"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    folder: str | None = None
    uidvalidity: int | None = Field(default=None, sa_type=IMAP_NUMBER)
    uid: int | None = Field(default=None, sa_type=IMAP_NUMBER)
    source_path: str | None = None       # for mail ingested from files
    dedupe_id: str = ""                  # Message-ID, "" when the mail has none
    content_key: str                     # SHA-256 with line ends normalised (ingest.content_key)
    sha256: str = Field(index=True)      # SHA-256 of the bytes as received: the evidence's checksum
    size: int = 0
    subject: str = ""
    sender: str = ""
    sender_name: str = ""
    recipient: str | None = None
    mail_date: NaiveDatetime | None = Field(default=None, index=True)
    category: str = Field(index=True)
    platform: str | None = None
    kind: str | None = None
    rule: str | None = None
    authenticated: bool | None = None
    authenticity: str = ""
    reason: str = ""
    reference: str | None = None
    otp: str | None = None               # only from authentic mail; shown to the person, masked in logs
    error: str | None = None
    raw_path: str | None = None          # evidence .eml, mode 0600
    request_id: int | None = Field(default=None, foreign_key="request.id", index=True)
    reviewed: bool = False               # taken off the review list by the person
    guesses: str = ""                    # held mail: the categories it might be, best first, space-separated
    uncertain: bool = False              # a decision read from a weak sign: listed for the person to confirm
    seen_at: NaiveDatetime = Field(default_factory=utcnow)


class Request(SQLModel, table=True):
    """One objection or data request, for one address, platform and kind."""

    __table_args__ = (UniqueConstraint("address", "platform", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(index=True)
    platform: str
    kind: str
    country: str | None = None           # ISO 3166-1 alpha-2, decides the authority
    region: str | None = None            # German state code (e.g. "BY") for the Länder authorities
    submitted: date | None = None        # given by the person; else the first mail decides
    notes: str = ""
    state: str = "submitted"             # cache of lifecycle.derive(events); recomputed on every change
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Append-only history of a request: a mail that arrived, or something the person did."""

    __table_args__ = (UniqueConstraint("request_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="request.id", index=True)
    message_id: int | None = Field(default=None, foreign_key="message.id")
    kind: str                            # a category, or submitted / extended / note / complaint_filed
    occurred_at: NaiveDatetime           # the mail's date, or the date the person gave
    detail: str = ""
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Alert(SQLModel, table=True):
    """Outbox: created with the event that causes it, sent later, never twice."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)        # "request:3:rejected", "message:12:suspicious", ...
    reason: str
    request_id: int | None = Field(default=None, foreign_key="request.id")
    message_id: int | None = Field(default=None, foreign_key="message.id")
    account_id: int | None = Field(default=None, foreign_key="account.id")
    title: str
    body: str
    contains_code: bool = False          # only sent to private channels, and only when enabled
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    sent_at: NaiveDatetime | None = None
    attempts: int = 0
    next_attempt_at: NaiveDatetime | None = None
    last_error: str | None = None
    delivered_channels: str = ""         # ids of the channels that have it, space-separated (alerts.Channel.id)
    claimed_until: NaiveDatetime | None = None  # a sender is delivering it; others keep off until then


class Verdict(SQLModel, table=True):
    """The person's word on one mail: what it means, or that it means nothing. Kept when taken back."""

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    action: str                          # "category" (review --as, mail relabel) or "dismiss"
    category: str | None = None          # what the person said the mail is
    request_id: int | None = None        # the request it joined
    forced: bool = False                 # the mail failed authentication; the person insisted (--force)
    by: str = "review"                   # the command: review, relabel, reviewed
    # What the mail was before, so that `review ID --undo` can put it back.
    previous_category: str
    previous_request_id: int | None = None
    previous_reviewed: bool = False
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    undone_at: NaiveDatetime | None = None


class LearnedTemplate(SQLModel, table=True):
    """A template learned from a verdict on an authentic Meta mail (rules/templates.py)."""

    id: int | None = Field(default=None, primary_key=True)
    verdict_id: int = Field(foreign_key="verdict.id", index=True)
    message_id: int = Field(foreign_key="message.id")
    category: str
    platform: str | None = None
    kind: str | None = None
    words: str                           # the masked words
    fingerprint: str = Field(index=True)
    created_at: NaiveDatetime = Field(default_factory=utcnow)
    active: bool = True                  # false once the verdict is taken back


class Complaint(SQLModel, table=True):
    """A complaint filed with a data protection authority (Art. 77)."""

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="request.id", index=True)
    authority: str                       # code from authorities.toml, e.g. "IE", "DE-BY"
    filed: date
    reference: str = ""
    state: str = "filed"                 # filed | answered | closed
    created_at: NaiveDatetime = Field(default_factory=utcnow)


class Member(SQLModel, table=True):
    """A person an organisation acts for, known by the address they forward Meta's mails from (intake.py)."""

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(unique=True)    # lower case: the From address of their forwards
    name: str
    country: str                         # ISO 3166-1 alpha-2: their requests' country, decides the authority
    region: str | None = None            # German Land code (e.g. "BY") for the state authorities
    created_at: NaiveDatetime = Field(default_factory=utcnow)
