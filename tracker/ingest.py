"""Source -> parse -> classify -> store, one message at a time.

``Ingestor.record`` writes one mail (message row, event, request state, alerts)
into a session without committing, so a caller can commit it together with
its own bookkeeping (the IMAP checkpoint). ``Ingestor.ingest`` does the
commit per message for local sources. A mail that cannot be parsed is still
recorded, with its error; the run goes on.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from tracker import alerts, store
from tracker import vocabulary as v
from tracker.config import Settings
from tracker.dates import sane_mail_time
from tracker.errors import StoreError, TrackerError
from tracker.models import Account, Message, utcnow
from tracker.parse import ParsedMail, parse_mail
from tracker.authenticity import check_authenticity
from tracker.rules.engine import Classification, RuleSet, classify, load_rules, platform_of
from tracker.sources.base import MailItem, MailSource
from tracker.text import mask_code

log = logging.getLogger(__name__)

NEW = "new"
DUPLICATE = "duplicate"

LOCAL_ACCOUNT = "local"

COMMIT_EVERY = 200
COMMIT_SECONDS = 1.0
COMMIT_BYTES = 32 * 1024 * 1024  # mails read and waiting for their batch's write, at most

_MB = 1024 * 1024
# content_key hashes a mail in pieces of this size: one CRLF-replaced copy of a piece, never of the mail.
_KEY_CHUNK = 1024 * 1024

# Built once per database kind (INSERT ... ON CONFLICT DO NOTHING on both): SQLAlchemy caches
# its compiled form, and plain parameters skip ORM coercion.
_INSERT_MESSAGE = {
    "sqlite": sqlite_insert(Message.__table__).on_conflict_do_nothing(),
    "postgresql": postgresql_insert(Message.__table__).on_conflict_do_nothing(),
}


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


def classify_raw(raw: bytes, rules: RuleSet, settings: Settings,
                 dkim_verified: tuple[str, ...] | None = None) -> tuple[ParsedMail, Classification]:
    """Parse and classify; never raises for a bad mail (the error is in the result).

    Mail over ``[evidence] max_mail_mb`` is read by its headers only (see :func:`_over_size`).
    ``dkim_verified``: the d= domains whose DKIM signatures the tracker verified itself (the
    original attached to a forward, tracker/intake.py); they decide its authenticity instead of
    its Authentication-Results.
    """
    mail = parse_mail(raw, settings.evidence.max_mail_mb * _MB)
    if dkim_verified is not None:
        mail = replace(mail, dkim_verified_domains=dkim_verified)
    try:
        result = classify(mail, rules, settings.authenticity)
        if mail.too_large:
            result = _over_size(mail, len(raw), result, settings)
        elif result.category != v.UNRELATED:
            mail.read_body()  # a kept mail's body errors are recorded with it
        return mail, result
    except Exception as err:  # a rule bug must not stop the run; keep the mail for review
        log.exception("classification failed")
        error = f"classification failed: {type(err).__name__}: {err}"
        return (replace(mail, error="; ".join(filter(None, [mail.error, error]))),
                Classification(category=v.UNRELATED, platform=None, kind=None, otp=None, reference=None,
                               rule=None, authenticated=None, authenticity="unknown", reason=error))


def _over_size(mail: ParsedMail, size: int, result: Classification, settings: Settings) -> Classification:
    """What a mail over the size limit is, from its headers alone: its body was never read.

    From someone else it stays what the sender makes it (unrelated). From Meta it is
    held for review (meta_other) rather than classified from a body that was not read;
    one that only claims to be Meta stays suspicious. Either way it is not unrelated,
    so it is kept as evidence and listed for review, with the reason saying why.
    """
    verdict = check_authenticity(mail, settings.authenticity)
    if not verdict.concerns_meta:
        return result
    limit = (f"{size / _MB:.1f} MB, over the size limit of {settings.evidence.max_mail_mb} MB "
             f"([evidence] max_mail_mb): only its headers were read")
    if verdict.suspicious:
        return replace(result, category=v.SUSPICIOUS, kind=None, otp=None, rule=None, guesses=(),
                       platform=result.platform or platform_of(mail),
                       reason=f"{result.reason.rstrip('.')}. The mail is {limit}.")
    return replace(result, category=v.META_OTHER, kind=None, otp=None, rule=None, guesses=(),
                   platform=result.platform or platform_of(mail),
                   reason=f"Held for review: a mail from Meta of {limit}, so it was not classified. "
                          f"{verdict.reason}")


# errno values and SQLite result codes that mean "no room to write": a full disk or a used-up quota.
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13


def no_space(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) says the disk or the quota is full."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_SPACE_ERRNOS:
            return True
        if getattr(err, "sqlite_errorcode", None) == _SQLITE_FULL or "database or disk is full" in str(err):
            return True
        err = getattr(err, "orig", None) or err.__cause__ or err.__context__
    return False


def disk_full_error(err: BaseException, what: str) -> StoreError | None:
    """A full disk as one line that says nothing is lost; None for any other error (and for the
    tracker's own errors, which are worded already)."""
    if isinstance(err, TrackerError) or not no_space(err):
        return None
    return StoreError(f"the disk is full: cannot write {what}. Nothing is lost: what was not recorded is "
                      f"read again by the next run; free some space and run it again")


def write_evidence(raw: bytes, sha256: str, folder: Path) -> Path:
    """Keep the original bytes, owner-only. Named by content, so writing twice is harmless.

    A folder that cannot be written stops the run (StoreError): recording the
    mail without its evidence would lose the evidence for good.
    """
    path = folder / f"{sha256}.eml"
    tmp = None
    try:
        store.make_private_dirs(folder)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-")  # created 0600
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
            os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # a part-written file, never renamed: nothing to keep
        if err.errno in _NO_SPACE_ERRNOS:
            raise disk_full_error(err, f"evidence to {folder}") from err
        raise StoreError(f"cannot write evidence to {folder}: {err.strerror or err} "
                         f"(set [evidence] dir in the config)") from err
    return path


def content_key(raw: bytes, sha256: str | None = None) -> str:
    """SHA-256 of the mail with CRLF line ends made LF.

    The same mail read from a Maildir (LF) and fetched over IMAP (CRLF) differs
    only in line ends; it must count once. Hashed a chunk at a time, so a large
    mail is not copied whole; ``sha256`` (of ``raw`` as it is) is the answer when
    the mail has no CR at all.
    """
    if b"\r" not in raw:
        return sha256 or hashlib.sha256(raw).hexdigest()
    digest = hashlib.sha256()
    view = memoryview(raw)
    start = 0
    while start < len(raw):
        end = min(start + _KEY_CHUNK, len(raw))
        if end < len(raw) and end - 1 > start and raw[end - 1] == 0x0D:
            end -= 1  # a CR at the end of a chunk may begin a CRLF: it goes with the next chunk
        digest.update(bytes(view[start:end]).replace(b"\r\n", b"\n"))
        start = end
    return digest.hexdigest()


class Ingestor:
    def __init__(self, db: store.Store, settings: Settings, rules: RuleSet | None = None):
        self.db = db
        self.settings = settings
        self.rules = rules if rules is not None else load_rules(settings.rules.file)
        self.evidence_dir = settings.evidence_dir()
        self._insert_message = _INSERT_MESSAGE[db.engine.dialect.name]
        self.refresh_learned()

    def refresh_learned(self) -> None:
        """Take up the templates learned from the person's verdicts (another process may have added one)."""
        with Session(self.db.engine) as session:
            self.rules = self.rules.with_learned(store.learned_templates(session))

    def is_known(self, session: Session, account: Account, item: MailItem) -> bool:
        if item.uid is None:
            return False
        return session.exec(select(Message.id).where(
            Message.account_id == account.id, Message.folder == item.folder,
            Message.uidvalidity == item.uidvalidity, Message.uid == item.uid)).first() is not None

    def prepare(self, item: MailItem, settings: Settings | None = None) -> tuple[ParsedMail, Classification]:
        """Parse and classify ``item``: the slow part, done before the write transaction opens.

        ``settings``: the mailbox's own, when they differ from the tracker's (an IMAP account
        whose server's authserv-id was learned: see sync.Poller.account_settings).
        """
        return classify_raw(item.raw, self.rules, settings or self.settings)

    def record(self, session: Session, account: Account, item: MailItem,
               prepared: tuple[ParsedMail, Classification] | None = None) -> tuple[str, Recorded | None]:
        """Write one mail into ``session`` (no commit). Returns (NEW or DUPLICATE, what was recorded).

        ``prepared`` is ``prepare(item)`` done beforehand, outside any transaction, so that
        SQLite's write lock is held only for the short write, never while a mail is read.
        """
        if self.is_known(session, account, item):
            return DUPLICATE, None
        sha256 = hashlib.sha256(item.raw).hexdigest()
        mail, result = prepared if prepared is not None else self.prepare(item)
        # When it was sent: the Date header, else when it arrived (INTERNALDATE, file time).
        # Either one outside 1990..now counts as unknown (parse_mail already checks the header).
        mail_date = mail.date or sane_mail_time(item.internal_date)
        error = "; ".join(filter(None, [item.error, mail.error])) or None
        raw_path = None
        if self.settings.evidence.keep_raw and result.category != v.UNRELATED and item.raw:
            raw_path = str(write_evidence(item.raw, sha256, self.evidence_dir))
        row = dict(
            account_id=account.id, folder=item.folder, uidvalidity=item.uidvalidity, uid=item.uid,
            source_path=item.path, dedupe_id=mail.message_id or "", content_key=content_key(item.raw, sha256),
            sha256=sha256, size=len(item.raw),
            subject=mail.subject[:500], sender=mail.sender_address, sender_name=mail.sender_name[:200],
            recipient=mail.recipient, mail_date=store.to_db_time(mail_date),
            category=result.category, platform=result.platform, kind=result.kind, rule=result.rule,
            authenticated=result.authenticated, authenticity=result.authenticity, reason=result.reason,
            reference=result.reference, otp=result.otp, error=error, raw_path=raw_path,
            reviewed=False, guesses=" ".join(result.guesses), uncertain=result.uncertain, seen_at=utcnow(),
        )
        # One statement both checks and inserts: a mail seen before (same Message-ID and
        # bytes, or same folder/UID) inserts nothing, even when another process races us.
        # A Core insert, not an ORM object, because most mail in a mailbox is unrelated
        # and this is the hot path of a first sync.
        inserted = session.execute(self._insert_message, row)
        # SQLite counts the rows (its key would be the last insert's); PostgreSQL answers through
        # RETURNING (row count -1), with no key when nothing was inserted.
        key = inserted.inserted_primary_key if inserted.rowcount != 0 else None
        if key is None:
            return DUPLICATE, None
        recorded = Recorded(key[0], result.category, error)

        log.info("%s: %s (rule %s, %s)%s", item.label, result.category, result.rule,
                 result.authenticity, f" code {mask_code(result.otp)}" if result.otp else "")
        if result.category in v.REQUEST_CATEGORIES:
            self._apply_to_request(session, session.get(Message, recorded.id), mail)
        elif result.category in v.REVIEW_CATEGORIES:
            alerts.queue_for_review_mail(session, session.get(Message, recorded.id),
                                         self.settings.person.language)
        return NEW, recorded

    def _apply_to_request(self, session: Session, message: Message, mail: ParsedMail) -> None:
        if not message.recipient:
            message.reason += " (no recipient address: not joined to a request)"
            return
        kind = message.kind or v.DEFAULT_KIND
        if message.platform is None:
            # Mail from meta.com that names no platform: it joins the person's only request
            # of this kind; with none or several, the person decides which.
            candidates = store.requests_of(session, message.recipient, kind)
            if len(candidates) != 1:
                # Held for the person, like any mail the tracker cannot place: listed and alerted.
                message.reason = (f"Reads as {message.category}, but names no platform and "
                                  f"{message.recipient} has {'no' if not candidates else 'several'} {kind} "
                                  f"requests: held for review. {message.reason}")
                message.category = v.META_OTHER
                session.add(message)
                alerts.queue_for_review_mail(session, message, self.settings.person.language)
                return
            request = candidates[0]
        else:
            request = store.find_request(session, message.recipient, message.platform, kind)
            if request is None:
                request = store.add_request(session, message.recipient, message.platform, kind)
        message.request_id = request.id
        session.add(message)
        occurred = store.utc(message.mail_date) or datetime.now(timezone.utc)
        store.add_event(session, request, message.category, occurred, message_id=message.id,
                        detail=message.subject[:200])
        store.refresh_state(session, request)
        alerts.queue_for_request_mail(session, request, message, language=self.settings.person.language)
        if message.otp and self.settings.alerts.send_codes and self.settings.alerts.private_urls:
            alerts.queue_code(session, request, message, self.settings.person.language)

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
            # Mails are read and classified with no transaction open, then written a batch at a
            # time in one short transaction: SQLite's write lock, which a `request add` or a poller
            # waits for, is never held while a (perhaps hostile, slow) mail is being read.
            batch: list[tuple[MailItem, tuple[ParsedMail, Classification]]] = []
            batch_bytes, batch_started = 0, time.monotonic()
            try:
                for item in source.messages():
                    batch.append((item, self.prepare(item)))
                    batch_bytes += len(item.raw)
                    if (len(batch) >= COMMIT_EVERY or batch_bytes >= COMMIT_BYTES
                            or time.monotonic() - batch_started > COMMIT_SECONDS):
                        self._write_batch(session, account, batch, stats)
                        batch, batch_bytes, batch_started = [], 0, time.monotonic()
                self._write_batch(session, account, batch, stats)
            except BaseException as err:
                session.rollback()
                full = disk_full_error(err, f"to the database {self.db.path or ''}".rstrip())
                if full is not None:
                    raise full from err
                raise
        return stats

    def _write_batch(self, session: Session, account: Account,
                     batch: list[tuple[MailItem, tuple[ParsedMail, Classification]]], stats: IngestStats) -> None:
        """Record prepared mails and commit: one transaction, tried again with backoff while the database is busy."""
        def attempt() -> list[tuple[str, Recorded | None]]:
            try:
                outcomes = [self.record(session, account, item, prepared) for item, prepared in batch]
                session.commit()
                return outcomes
            except BaseException:
                session.rollback()
                raise

        if batch:
            for outcome in store.retry_busy(attempt, f"recording {len(batch)} mail(s)"):
                stats.add(*outcome)
