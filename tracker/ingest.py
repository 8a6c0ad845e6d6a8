"""Source -> parse -> classify -> store, one message at a time.

``Ingestor.record`` writes one mail (message row, event, request state, alerts)
into a session without committing, so a caller can commit it together with
its own bookkeeping (the IMAP checkpoint). ``Ingestor.ingest`` does the
commit per message for local sources. A mail that cannot be parsed is still
recorded, with its error; the run goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from tracker import alerts, store
from tracker import vocabulary as v
from tracker.config import Settings
from tracker.errors import StoreError
from tracker.models import Account, Message, utcnow
from tracker.parse import ParsedMail, parse_mail
from tracker.rules.engine import Classification, RuleSet, classify, load_rules
from tracker.sources.base import MailItem, MailSource
from tracker.text import mask_code

log = logging.getLogger(__name__)

NEW = "new"
DUPLICATE = "duplicate"

LOCAL_ACCOUNT = "local"

COMMIT_EVERY = 200
COMMIT_SECONDS = 1.0

# Built once: SQLAlchemy caches its compiled form, and plain parameters skip ORM coercion.
_INSERT_MESSAGE = sqlite_insert(Message.__table__).on_conflict_do_nothing()


@dataclass(frozen=True)
class Recorded:
    """What ``Ingestor.record`` wrote."""

    id: int
    category: str
    error: str | None


@dataclass
class IngestStats:
    new: int = 0
    duplicates: int = 0
    errors: int = 0
    categories: Counter = field(default_factory=Counter)

    def add(self, outcome: str, message: Recorded | None) -> None:
        if outcome == DUPLICATE:
            self.duplicates += 1
            return
        self.new += 1
        if message is not None:
            self.categories[message.category] += 1
            if message.error:
                self.errors += 1


def classify_raw(raw: bytes, rules: RuleSet, settings: Settings) -> tuple[ParsedMail, Classification]:
    """Parse and classify; never raises for a bad mail (the error is in the result)."""
    mail = parse_mail(raw)
    try:
        result = classify(mail, rules, settings.authenticity)
        if result.category != v.UNRELATED:
            mail.read_body()  # a kept mail's body errors are recorded with it
        return mail, result
    except Exception as err:  # a rule bug must not stop the run; keep the mail for review
        log.exception("classification failed")
        error = f"classification failed: {type(err).__name__}: {err}"
        return (replace(mail, error="; ".join(filter(None, [mail.error, error]))),
                Classification(category=v.UNRELATED, platform=None, kind=None, otp=None, reference=None,
                               rule=None, authenticated=None, authenticity="unknown", reason=error))


def write_evidence(raw: bytes, sha256: str, folder: Path) -> Path:
    """Keep the original bytes, owner-only. Named by content, so writing twice is harmless.

    A folder that cannot be written stops the run (StoreError): recording the
    mail without its evidence would lose the evidence for good.
    """
    path = folder / f"{sha256}.eml"
    try:
        store.make_private_dirs(folder)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-")  # created 0600
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
            os.replace(tmp, path)
    except OSError as err:
        raise StoreError(f"cannot write evidence to {folder}: {err.strerror or err} "
                         f"(set [evidence] dir in the config)") from err
    return path


def content_key(raw: bytes) -> str:
    """SHA-256 of the mail with CRLF line ends made LF.

    The same mail read from a Maildir (LF) and fetched over IMAP (CRLF) differs
    only in line ends; it must count once.
    """
    return hashlib.sha256(raw.replace(b"\r\n", b"\n")).hexdigest()


class Ingestor:
    def __init__(self, db: store.Store, settings: Settings, rules: RuleSet | None = None):
        self.db = db
        self.settings = settings
        self.rules = rules if rules is not None else load_rules(settings.rules.file)
        self.evidence_dir = settings.evidence_dir()

    def is_known(self, session: Session, account: Account, item: MailItem) -> bool:
        if item.uid is None:
            return False
        return session.exec(select(Message.id).where(
            Message.account_id == account.id, Message.folder == item.folder,
            Message.uidvalidity == item.uidvalidity, Message.uid == item.uid)).first() is not None

    def record(self, session: Session, account: Account, item: MailItem) -> tuple[str, Recorded | None]:
        """Write one mail into ``session`` (no commit). Returns (NEW or DUPLICATE, what was recorded)."""
        if self.is_known(session, account, item):
            return DUPLICATE, None
        sha256 = hashlib.sha256(item.raw).hexdigest()
        mail, result = classify_raw(item.raw, self.rules, self.settings)
        # When it was sent: the Date header, else when it arrived (INTERNALDATE, file time).
        mail_date = mail.date or item.internal_date
        error = "; ".join(filter(None, [item.error, mail.error])) or None
        raw_path = None
        if self.settings.evidence.keep_raw and result.category != v.UNRELATED and item.raw:
            raw_path = str(write_evidence(item.raw, sha256, self.evidence_dir))
        row = dict(
            account_id=account.id, folder=item.folder, uidvalidity=item.uidvalidity, uid=item.uid,
            source_path=item.path, dedupe_id=mail.message_id or "", content_key=content_key(item.raw),
            sha256=sha256, size=len(item.raw),
            subject=mail.subject[:500], sender=mail.sender_address, sender_name=mail.sender_name[:200],
            recipient=mail.recipient, mail_date=store.to_db_time(mail_date),
            category=result.category, platform=result.platform, kind=result.kind, rule=result.rule,
            authenticated=result.authenticated, authenticity=result.authenticity, reason=result.reason,
            reference=result.reference, otp=result.otp, error=error, raw_path=raw_path,
            reviewed=False, seen_at=utcnow(),
        )
        # One statement both checks and inserts: a mail seen before (same Message-ID and
        # bytes, or same folder/UID) inserts nothing, even when another process races us.
        # A Core insert, not an ORM object, because most mail in a mailbox is unrelated
        # and this is the hot path of a first sync.
        inserted = session.execute(_INSERT_MESSAGE, row)
        if inserted.rowcount == 0:
            return DUPLICATE, None
        recorded = Recorded(inserted.inserted_primary_key[0], result.category, error)

        log.info("%s: %s (rule %s, %s)%s", item.label, result.category, result.rule,
                 result.authenticity, f" code {mask_code(result.otp)}" if result.otp else "")
        if result.category in v.REQUEST_CATEGORIES:
            self._apply_to_request(session, session.get(Message, recorded.id), mail)
        elif result.category in v.REVIEW_CATEGORIES:
            alerts.queue_for_review_mail(session, session.get(Message, recorded.id))
        return NEW, recorded

    def _apply_to_request(self, session: Session, message: Message, mail: ParsedMail) -> None:
        if not message.recipient:
            message.reason += " (no recipient address: not joined to a request)"
            return
        platform = message.platform or "facebook"
        kind = message.kind or v.DEFAULT_KIND
        request = store.find_request(session, message.recipient, platform, kind)
        if request is None:
            request = store.add_request(session, message.recipient, platform, kind)
        message.request_id = request.id
        session.add(message)
        occurred = store.utc(message.mail_date) or datetime.now(timezone.utc)
        store.add_event(session, request, message.category, occurred, message_id=message.id,
                        detail=message.subject[:200])
        store.refresh_state(session, request)
        alerts.queue_for_request_mail(session, request, message)
        if message.otp and self.settings.alerts.send_codes and self.settings.alerts.private_urls:
            alerts.queue_code(session, request, message)

    def ingest(self, source: MailSource, account_name: str = LOCAL_ACCOUNT) -> IngestStats:
        """Record every mail of ``source``.

        Commits in batches (every ``COMMIT_EVERY`` mails or ``COMMIT_SECONDS``): a
        local file can always be read again, so a crash loses no mail, only the
        work on the last batch, and re-ingesting skips what was committed.
        """
        stats = IngestStats()
        with Session(self.db.engine, expire_on_commit=False) as session:
            account = store.get_or_create_account(session, account_name)
            session.commit()
            pending, last_commit = 0, time.monotonic()
            try:
                for item in source.messages():
                    stats.add(*self.record(session, account, item))
                    pending += 1
                    if pending >= COMMIT_EVERY or time.monotonic() - last_commit > COMMIT_SECONDS:
                        session.commit()
                        pending, last_commit = 0, time.monotonic()
                session.commit()
            except BaseException:
                session.rollback()
                raise
        return stats
