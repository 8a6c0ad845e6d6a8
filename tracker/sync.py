"""Polling IMAP folders: incremental, read-only, each mail recorded exactly once.

Before logging in to a mailbox, the poller leases its folders in the database
(see "locks" below), so no other process (another worker, on this machine or
another) polls them at the same time; a mailbox whose folders another live
worker holds is left to it. Then one folder is polled like this
(``Poller.sync_folder``):

1. STATUS gives the folder's UIDVALIDITY and UIDNEXT without opening it. If
   both agree with the checkpoint, nothing is new and the poll of that folder
   is over after one round trip, however large the folder is. (Asking
   ``UID SEARCH UID n:*`` instead would not do: when n is past the last UID the
   server still returns the last message, since ``n:*`` means "from n to the
   highest UID" in either order.)
2. Something is new: EXAMINE the folder (read-only).
3. Find the new mail whose From mentions Meta (see ``sender_search_terms``),
   not before the account's ``since`` date. The first sync asks the server
   to SEARCH, which narrows a mailbox of tens of thousands of mails to the
   few that concern Meta without downloading anything; later polls read the
   From header of each new mail and match it here, so a server whose search
   index lags behind delivery cannot make us pass a mail over.
4. FETCH the matches in small batches with BODY.PEEK[]. Each message, its
   events, its alerts and the checkpoint advance to its UID are committed in
   one transaction, so the checkpoint never passes a message that is not in
   the database. A crash anywhere leaves the checkpoint at the last committed
   message and the next poll starts right after it. Each message is parsed and
   classified before that transaction opens: SQLite's write lock, which the
   person's own commands wait for, is held only for the short write, and a
   database that another process keeps busy is waited out with backoff.
5. When every match is recorded, the checkpoint moves to UIDNEXT - 1: the
   mails in between were searched and do not concern Meta.

Later polls narrow the same way as the first one: only new mail whose From
mentions Meta is downloaded (other new mail gives only its From header). The person's other mail never leaves the server,
which saves bandwidth and keeps private mail out of the tracker's database,
and a mail is treated the same whether it came before or after the first sync.

A changed UIDVALIDITY means the folder's UIDs now name other messages (the
folder was deleted and created again, or the server rebuilt its index): that
folder is synced again from the start, and the mails recorded before are
recognised by Message-ID and content (sha256) and not recorded twice.

An ``[[intake]]`` mailbox is polled the same way, except that every new mail
is fetched (a forward comes From the member, not from Meta) and each takes the
intake path (tracker/intake.py) instead of the classifier's.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from datetime import date, datetime, timedelta
from typing import Iterator

from sqlalchemy import DateTime, delete, func, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from tracker import alerts, intake, store
from tracker.authenticity import parse_authentication_results
from tracker.config import AccountSettings, IntakeSettings, Settings
from tracker.errors import ConfigError, MailboxAuthError, MailboxConnectionError, SourceError, TrackerError
from tracker.ingest import NEW, Ingestor, disk_full_error
from tracker.models import Account, Checkpoint, FolderLock, utcnow
from tracker.parse import parse_mail
from tracker.sources.base import MailItem
from tracker.sources.imap import INBOX, FetchedMail, FolderStatus, ImapConnection, ServerRefused, Traffic

log = logging.getLogger(__name__)

# Words searched for in the From header (display name and address), case-insensitive
# substrings as IMAP SEARCH FROM defines them. "facebook", "instagram" and "meta"
# cover Meta's own domains (facebookmail.com, mail.instagram.com, metamail.com...)
# and also the impersonations the classifier must see: lookalike domains
# ("facebook-support.net", "meta-privacy.com") and brand display names on any
# domain ("Meta Support" <x@example.com>). "meta" also finds "metadata" and
# "Metallica": a few harmless extra downloads the classifier calls unrelated.
BRAND_SEARCH_WORDS = ("facebook", "instagram", "meta")
# The digit-for-letter spellings phishers use most; the server cannot undo them
# the way tracker.authenticity does, so the common ones are searched for as written.
LOOKALIKE_SEARCH_WORDS = ("faceb00k", "faceb0ok", "lnstagram", "1nstagram", "rneta")
# A bare "fb" would match random letters in bounce addresses; these two forms
# find fb.com, business.fb.com and "fb-security.net" but not "...3fb1a@...".
SHORT_BRAND_SEARCH_WORDS = ("fb.", "fb-")

# How long a folder lease lasts unless renewed, by default ([daemon] lease_seconds): see "locks" below.
LEASE_SECONDS = 300

# After polls that found nothing and failed nothing, the periodic alert check runs at most this often.
CHECK_EVERY_SECONDS = 60

# How many of a folder's most recent mails are read, their From and Authentication-Results
# headers only, to learn the authserv-id of the person's own mail server.
AUTHSERV_SAMPLE = 20
AUTHSERV_FIELDS = b"BODY.PEEK[HEADER.FIELDS (FROM AUTHENTICATION-RESULTS)]"

ProgressCallback = Callable[[str, str, int, int], None]   # (account, folder, done, total)


def sender_search_terms(meta_domains: tuple[str, ...]) -> list[str]:
    """The words a From header is searched for: brand words, lookalikes, configured domains.

    The configured Meta domains are included even when a brand word already
    covers them, for servers whose search matches whole words rather than
    substrings (a domain is then found by its exact name).
    """
    terms = [*BRAND_SEARCH_WORDS, *LOOKALIKE_SEARCH_WORDS, *SHORT_BRAND_SEARCH_WORDS, *meta_domains]
    return list(dict.fromkeys(term.lower() for term in terms))


def sender_mentions(from_header: str, terms: list[str]) -> bool:
    """The local twin of SEARCH FROM: does the decoded From header contain one of ``terms``?"""
    try:
        decoded = str(make_header(decode_header(from_header)))
    except (ValueError, LookupError, UnicodeError):
        decoded = from_header
    decoded = decoded.lower()
    return any(term in decoded for term in terms)


def search_criteria(meta_domains: tuple[str, ...], after_uid: int, since: date | None) -> list:
    """UID SEARCH criteria: new UIDs, not before ``since``, From mentioning Meta.

    IMAP's OR takes two keys, so n terms become ``OR FROM a OR FROM b FROM c``.
    """
    criteria: list = ["UID", f"{after_uid + 1}:*"]
    if since is not None:
        criteria += ["SINCE", since]
    terms = sender_search_terms(meta_domains)
    for term in terms[:-1]:
        criteria += ["OR", "FROM", term]
    criteria += ["FROM", terms[-1]]
    return criteria


def _headers_only(header_block: bytes):
    """A header block as FETCH BODY[HEADER.FIELDS ...] gives it (or a whole mail), parsed."""
    return parse_mail(header_block.rstrip(b"\r\n") + b"\r\n\r\n")


def topmost_authserv_id(header_block: bytes) -> str | None:
    """The authserv-id of a mail's topmost Authentication-Results header; None without one."""
    return _topmost_authserv_id(_headers_only(header_block))


def _topmost_authserv_id(mail) -> str | None:
    if not mail.auth_results:
        return None
    parsed = parse_authentication_results(mail.auth_results[0])
    return (parsed.authserv_id or None) if parsed is not None else None


def learn_authserv_id(header_blocks: list[bytes], terms: list[str]) -> str | None:
    """The person's own server, from the headers (From, Authentication-Results) of recent mail, newest first.

    The receiving server adds its Authentication-Results on top of whatever the mail
    brought along, so the topmost header of ordinary mail names it. Mail whose From
    mentions Meta (or imitates it) is left out: that is the mail whose headers may be
    forged to be believed. The most common id wins; a tie goes to the newest mail.
    A header without an authserv-id (some Microsoft servers) teaches nothing.
    """
    counts: Counter[str] = Counter()
    for block in header_blocks:
        mail = _headers_only(block)
        if any(sender_mentions(value, terms) for value in mail.from_headers):
            continue
        authserv_id = _topmost_authserv_id(mail)
        if authserv_id:
            counts[authserv_id] += 1
    return counts.most_common(1)[0][0] if counts else None


# ---- results ----------------------------------------------------------------

@dataclass
class FolderPoll:
    folder: str
    matched: int = 0              # new mails the server search found
    new: int = 0
    duplicates: int = 0
    resynced: bool = False        # UIDVALIDITY changed: the folder was read again from the start
    skipped: str | None = None    # why the folder was left alone this time
    interrupted: bool = False     # stopped (SIGTERM) before every match was recorded


@dataclass
class AccountPoll:
    account: str
    folders: list[FolderPoll] = field(default_factory=list)
    traffic: Traffic = field(default_factory=Traffic)
    error: str | None = None
    transient: bool = False       # the error may go away by itself (connection lost, timeout)
    login_refused: bool = False   # the server refused the credentials
    # Left to another worker without logging in: it is polling this mailbox now, or polled it
    # since this round of polls began. None when this worker polled it.
    left_to_another: str | None = None
    lease_ends_in: float | None = None  # left because leased: seconds until that lease ends unless renewed

    @property
    def new(self) -> int:
        return sum(f.new for f in self.folders)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.folders)

    def summary(self) -> str:
        """One line for the person: what the poll found, or why it failed."""
        if self.error:
            return self.error
        if self.left_to_another:
            return f"{self.account}: 0 new mail(s), left to another worker ({self.left_to_another})"
        parts = []
        for f in self.folders:
            note = f" ({f.skipped})" if f.skipped else " (stopped early)" if f.interrupted else \
                " (UIDVALIDITY changed, read again)" if f.resynced else ""
            parts.append(f"{f.folder} {f.new}{note}")
        known = f", {self.duplicates} already known" if self.duplicates else ""
        return (f"{self.account}: {self.new} new mail(s){known} [{', '.join(parts)}]; "
                f"{self.traffic.messages_fetched} fetched, {_kilobytes(self.traffic.bytes_received)} received")


def _kilobytes(count: int) -> str:
    return f"{count / 1024:.1f} KB"


# ---- locks ------------------------------------------------------------------
#
# Several workers (daemons or `poll --once`, on one machine or several) may share one database.
# A worker leases a mailbox's folders before it connects, holds the leases while it polls them,
# renews them every third of their length from a thread of its own (LeaseKeeper) and in every
# transaction that records a mail, and releases them when it is done. Another worker that finds
# every folder of a mailbox leased by a live worker leaves that mailbox alone without logging in.
# A worker that died keeps its leases until they expire ([daemon] lease_seconds), or only until the
# next look when it ran on the same machine and its process is gone.

class FolderLeaseLost(TrackerError):
    """Another poller took over a folder whose lease had expired."""


_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()


@contextmanager
def local_folder_lock(key: str) -> Iterator[None]:
    """One poll of a mailbox at a time within this process (scheduler thread and IDLE thread).

    Waits rather than skips: mail announced by IDLE during a scheduled poll
    must still be picked up by the poll that follows.
    """
    with _local_locks_guard:
        lock = _local_locks.setdefault(key, threading.Lock())
    with lock:
        yield


def folder_key(account_name: str, folder: str) -> str:
    return f"{account_name}/{folder}"


def this_machine() -> str:
    """The host name, and the PID namespace where there is one.

    Process ids can only be judged inside one namespace: two containers that share
    a host name (host networking) must not take each other for dead.
    """
    host = socket.gethostname()
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return host
    return f"{host}~{namespace.removeprefix('pid:[').rstrip(']')}"


def new_holder() -> str:
    """``machine:pid:token``: one per poll of a mailbox, so two threads of a process are two holders."""
    return f"{this_machine()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(holder: str) -> bool:
    machine, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if machine != this_machine() or not pid.isdigit():
        return False  # another machine's process: only the expiry can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _clock(session: Session):
    """"Now" for lease times, as an SQL value. On PostgreSQL the server's clock, which every
    worker shares whatever the clocks of their machines say; a SQLite file has one machine."""
    if session.get_bind().dialect.name == "postgresql":
        return func.timezone("UTC", func.statement_timestamp(), type_=DateTime())
    return utcnow()


def _now(session: Session) -> datetime:
    clock = _clock(session)
    return session.execute(select(clock)).scalar_one() if not isinstance(clock, datetime) else clock


def acquire_leases(db: store.Store, keys: list[str], holder: str, seconds: int) -> set[str]:
    """Lease as many of ``keys`` as are free, for ``holder``, in one transaction; returns those it holds."""
    if not keys:
        return set()

    def attempt() -> set[str]:
        with db.write() as session:
            now = _clock(session)
            expiry = now + timedelta(seconds=seconds)
            insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            for key in sorted(keys):  # one order for every worker: no two wait for each other's rows
                # One statement per key, so two workers cannot both see it free (INSERT ... ON
                # CONFLICT DO UPDATE ... WHERE: a row lock on PostgreSQL, the write lock on SQLite).
                statement = insert(FolderLock).values(key=key, holder=holder, expires_at=expiry)
                session.execute(statement.on_conflict_do_update(
                    index_elements=["key"], set_={"holder": holder, "expires_at": expiry},
                    where=(FolderLock.expires_at < now) | (FolderLock.holder == holder)))
            held = set()
            for key, other in session.execute(select(FolderLock.key, FolderLock.holder)
                                              .where(FolderLock.key.in_(keys))):
                if other == holder:
                    held.add(key)
                elif _holder_is_dead(other):
                    taken = session.execute(update(FolderLock).where(FolderLock.key == key,
                                                                     FolderLock.holder == other)
                                            .values(holder=holder, expires_at=expiry))
                    if taken.rowcount == 1:
                        log.info("%s: took over the lease of %s, which is no longer running", key, other)
                        held.add(key)
            return held

    return store.retry_busy(attempt, f"taking the lease of {', '.join(sorted(keys))}")


def leased_by_others(db: store.Store, keys: list[str], holder: str | None = None) -> float | None:
    """If a live worker other than ``holder`` holds every one of ``keys``: seconds until the first of
    those leases ends (unless renewed). None when any of them is free. A read, no write."""
    if not keys:
        return None
    with db.read() as session:
        now = _now(session)
        rows = session.execute(select(FolderLock.key, FolderLock.holder, FolderLock.expires_at)
                               .where(FolderLock.key.in_(keys), FolderLock.expires_at >= now)).all()
    live = {key: expires for key, other, expires in rows if other != holder and not _holder_is_dead(other)}
    if set(live) != set(keys):
        return None
    return max(0.0, (min(live.values()) - now).total_seconds())


def release_leases(db: store.Store, keys: list[str], holder: str) -> None:
    if not keys:
        return

    def attempt() -> None:
        with db.write() as session:
            session.execute(delete(FolderLock).where(FolderLock.key.in_(keys), FolderLock.holder == holder))

    try:
        store.retry_busy(attempt, f"releasing the lease of {', '.join(sorted(keys))}")
    except store.DatabaseBusy as err:
        # Not fatal: the lease expires by itself, or is taken over at once when this process ends.
        log.warning("%s: lease not released: %s", ", ".join(sorted(keys)), err)


class FolderLease:
    """A lease on one folder, in the database, so two processes never poll it at once.

    The holder is ``machine:pid:token`` (``new_holder``). A lease is free when it has
    expired, or when its holder was a process on this machine that no longer exists
    (killed in the middle of a sync): a restarted poller need not wait for the expiry.
    """

    def __init__(self, db: store.Store, key: str, seconds: int = LEASE_SECONDS, holder: str | None = None):
        self.db = db
        self.key = key
        self.seconds = seconds
        self.holder = holder or new_holder()

    def acquire(self) -> bool:
        return self.key in acquire_leases(self.db, [self.key], self.holder, self.seconds)

    def renew(self, session: Session) -> None:
        """Extend the lease inside the caller's transaction; fail it if the lease was lost."""
        renewed = session.execute(update(FolderLock).where(FolderLock.key == self.key,
                                                           FolderLock.holder == self.holder)
                                  .values(expires_at=_clock(session) + timedelta(seconds=self.seconds)))
        if renewed.rowcount != 1:
            raise FolderLeaseLost(f"{self.key}: another poller took over this folder")

    def release(self) -> None:
        release_leases(self.db, [self.key], self.holder)


class LeaseKeeper:
    """Renews every lease of one holder every third of its length, from a thread of its own.

    The leases are also renewed by each transaction that records a mail; this keeps them
    through the steps that commit nothing for a while (a large FETCH, a mail that is slow
    to read, a database that is busy), so a live worker never loses a folder to another.
    A worker that dies stops renewing: its leases end ``seconds`` after the last renewal.
    """

    def __init__(self, db: store.Store, holder: str, seconds: int):
        self.db = db
        self.holder = holder
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{holder.rsplit(':', 1)[-1]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        every = self.seconds / 3
        while not self._stop.wait(every):
            try:
                store.retry_busy(self.renew, "renewing folder leases", budget=every)
            except Exception as err:  # the next round tries again; the expiry is still ahead
                log.info("folder leases not renewed this time: %s", err)

    def renew(self) -> None:
        with self.db.write() as session:
            session.execute(update(FolderLock).where(FolderLock.holder == self.holder)
                            .values(expires_at=_clock(session) + timedelta(seconds=self.seconds)))


class MailboxLeases:
    """The leases one poll of a mailbox holds: taken before connecting, released at the end."""

    def __init__(self, db: store.Store, account_name: str, seconds: int):
        self.db = db
        self.account_name = account_name
        self.seconds = seconds
        self.holder = new_holder()
        self.held: dict[str, FolderLease] = {}

    def acquire(self, folders: list[str]) -> list[str]:
        """Lease the folders that are free; returns those now held."""
        keys = {folder_key(self.account_name, folder): folder for folder in folders}
        for key in acquire_leases(self.db, list(keys), self.holder, self.seconds):
            self.held[keys[key]] = FolderLease(self.db, key, self.seconds, self.holder)
        return [folder for folder in folders if folder in self.held]

    def release(self) -> None:
        release_leases(self.db, [lease.key for lease in self.held.values()], self.holder)
        self.held.clear()


# ---- backoff ----------------------------------------------------------------

def backoff_seconds(failures: int, base: float = 30.0, cap: float = 600.0) -> float:
    """Exponential backoff with jitter: about 30 s, 60 s, 2 min... up to ``cap``.

    Half the delay is fixed and half random, so accounts on the same server
    that failed together do not retry in step.
    """
    delay = min(cap, base * 2 ** max(0, failures - 1))
    return delay / 2 + random.uniform(0, delay / 2)


# ---- the poller ---------------------------------------------------------------

class Poller:
    """Polls the configured IMAP accounts into the database.

    ``stop`` is checked between messages: when it is set (SIGTERM), the message
    being recorded is committed and the poll ends there. ``connect`` makes the
    connection for an account; tests pass a wrapper that counts or breaks things.
    """

    def __init__(self, db: store.Store, settings: Settings, *, ingestor: Ingestor | None = None,
                 stop: threading.Event | None = None, progress: ProgressCallback | None = None,
                 connect: Callable[[AccountSettings], ImapConnection] = ImapConnection):
        self.db = db
        self.settings = settings
        self.ingestor = ingestor or Ingestor(db, settings)
        self.stop = stop or threading.Event()
        self.progress = progress
        self.connect = connect
        self.lease_seconds = settings.daemon.lease_seconds
        self._checked_at: float | None = None   # time.monotonic() of the last periodic alert check
        self._checked_guard = threading.Lock()

    def poll_all(self) -> list[AccountPoll]:
        """Poll every account once; one account's failure does not stop the others.

        A mailbox that another worker is polling, or has polled since this round
        began, is left to it: several `poll --once` started together share the work.
        """
        began = utcnow()
        results = []
        for account in self.settings.mailboxes:  # the [[intake]] mailboxes after the [[accounts]]
            if self.stop.is_set():
                break
            results.append(self.poll_account(account, fresh_after=began))
        return results

    def poll_account(self, account: AccountSettings, fresh_after: datetime | None = None) -> AccountPoll:
        """Poll every folder of one account, then record how it went in the Account row.

        Left alone, without logging in, when a live worker holds the lease of every folder
        known for it, or (given ``fresh_after``, naive UTC) when a poll of it succeeded since then.
        """
        with local_folder_lock(folder_key(account.name, "")):
            return self._poll_account(account, fresh_after)

    def _poll_account(self, account: AccountSettings, fresh_after: datetime | None) -> AccountPoll:
        account_id = self._account_id(account)
        known = self._known_folders(account, account_id)
        left = self._left_to_another(account, account_id, known, fresh_after)
        if left is not None:
            return left
        leases = MailboxLeases(self.db, account.name, self.lease_seconds)
        held = leases.acquire(known)
        if not held:  # another worker took them between the look and the claim
            log.info("%s: another worker is polling this mailbox; left to it", account.name)
            return AccountPoll(account.name, left_to_another="it is polling this mailbox",
                               lease_ends_in=float(self.lease_seconds))
        fresh = self._fresh(account, account_id, fresh_after)  # polled by another one just before the claim
        if fresh is not None:
            leases.release()
            return fresh
        try:
            with LeaseKeeper(self.db, leases.holder, self.lease_seconds):
                result = self._poll_leased(account, account_id, known, leases)
                try:
                    # Before the leases go: a worker that finds them free then also finds this poll
                    # recorded, and leaves the mailbox alone rather than polling it a second time.
                    self._record_health(account_id, result.error, result.login_refused)
                except Exception as err:  # a full disk: said in the poll's one line, not a traceback
                    full = disk_full_error(err, "to the database")
                    if full is None:
                        raise
                    result.error = result.error or f"account {account.name}: {full}"
        finally:
            leases.release()
        # A mailbox that keeps failing is itself worth an alert (alerts.check_due decides). The
        # check reads every request, so after a poll that went well it runs once a minute, not
        # after each of hundreds of mailboxes: what it looks for (a deadline passed, a mailbox
        # silent for intervals) is measured in days and intervals, and what a new mail changes
        # (a decision withdraws a waiting "overdue") is done in the transaction that records it.
        if result.error is not None or self._checks_due():
            try:
                alerts.run_checks(self.db, self.settings)
            except Exception as err:
                full = disk_full_error(err, "to the database")
                if full is None:
                    raise
                result.error = result.error or f"account {account.name}: {full}"
        return result

    def _poll_leased(self, account: AccountSettings, account_id: int, known: list[str],
                     leases: MailboxLeases) -> AccountPoll:
        # A verdict given since the last poll counts from this one.
        store.retry_busy(self.ingestor.refresh_learned, "reading the templates learned from verdicts")
        connection = self.connect(account)
        result = AccountPoll(account.name, traffic=connection.traffic)
        problems: list[str] = []
        try:
            with connection:
                for folder in account.folders or connection.default_folders():
                    if self.stop.is_set():
                        break
                    try:
                        result.folders.append(self.sync_folder(connection, account, account_id, folder,
                                                               leases, known))
                    except ServerRefused as err:  # e.g. a configured folder that does not exist
                        result.folders.append(FolderPoll(folder, skipped="refused by the server"))
                        problems.append(str(err))
                    except (SourceError, ConfigError):
                        raise  # the connection or the account is at fault: the other folders would fail too
                    except Exception as err:
                        # The database, the evidence folder, or a bug: this folder stays where its
                        # last commit left it, the other folders are still read, and the account's
                        # health shows the error, so nothing stalls unseen.
                        log.debug("%s/%s: poll failed", account.name, folder, exc_info=True)
                        result.folders.append(FolderPoll(folder, skipped="failed"))
                        problems.append(f"account {account.name}: folder {folder}: "
                                        f"{disk_full_error(err, 'to the database') or err}")
            result.error = "; ".join(problems) or None
        except (SourceError, ConfigError) as err:
            result.error = str(err)
            result.transient = isinstance(err, MailboxConnectionError)
            result.login_refused = isinstance(err, MailboxAuthError)
            log.debug("%s: poll failed", account.name, exc_info=True)
        return result

    def _known_folders(self, account: AccountSettings, account_id: int) -> list[str]:
        """The folders to lease before connecting: the configured ones, else INBOX and every
        folder polled before (the spam folder's name is learned from the server's list)."""
        if account.folders:
            return list(dict.fromkeys(account.folders))
        with self.db.read() as session:
            polled = session.exec(select(Checkpoint.folder).where(Checkpoint.account_id == account_id)).all()
        return [INBOX, *sorted(set(polled) - {INBOX})]

    def _left_to_another(self, account: AccountSettings, account_id: int, known: list[str],
                         fresh_after: datetime | None) -> AccountPoll | None:
        """The cheap look before connecting: an AccountPoll saying why this mailbox is left alone, or None.

        The leases are looked at first: a poll records its success before it releases
        them, so a mailbox found free here and polled meanwhile is found fresh below.
        """
        ends_in = leased_by_others(self.db, [folder_key(account.name, folder) for folder in known])
        if ends_in is not None:
            log.info("%s: another worker is polling this mailbox; left to it", account.name)
            return AccountPoll(account.name, left_to_another="it is polling this mailbox", lease_ends_in=ends_in)
        return self._fresh(account, account_id, fresh_after)

    def _fresh(self, account: AccountSettings, account_id: int, fresh_after: datetime | None) -> AccountPoll | None:
        if fresh_after is None:
            return None
        with self.db.read() as session:
            last = session.exec(select(Account.last_success_at).where(Account.id == account_id)).one()
        if last is None or last < fresh_after:
            return None
        log.debug("%s: polled by another worker at %s UTC; left to it", account.name, last)
        return AccountPoll(account.name, left_to_another=f"it polled this mailbox at {last:%H:%M:%S} UTC")

    def sync_folder(self, connection: ImapConnection, account: AccountSettings, account_id: int, folder: str,
                    leases: MailboxLeases, known: list[str]) -> FolderPoll:
        lease = leases.held.get(folder)
        if lease is None:
            if folder in known or not leases.acquire([folder]):
                log.info("%s: another poller is reading this folder; left to it", folder_key(account.name, folder))
                return FolderPoll(folder, skipped="another poller is reading it")
            lease = leases.held[folder]
        status = connection.folder_status(folder)
        checkpoint = self._checkpoint(account_id, folder)
        if (checkpoint is not None and checkpoint.uidvalidity == status.uidvalidity
                and status.uidnext <= checkpoint.last_uid + 1):
            return FolderPoll(folder)  # nothing new: one STATUS, no fetch
        try:
            return self._sync_leased(connection, account, account_id, folder, lease)
        except FolderLeaseLost as err:
            log.warning("%s", err)
            return FolderPoll(folder, skipped="another poller took over")

    def _sync_leased(self, connection: ImapConnection, account: AccountSettings, account_id: int,
                     folder: str, lease: FolderLease) -> FolderPoll:
        status = connection.examine(folder)
        result = FolderPoll(folder)
        checkpoint = self._checkpoint(account_id, folder)  # again: it may have moved while we waited
        if checkpoint is None or checkpoint.uidvalidity != status.uidvalidity:
            if checkpoint is not None:
                result.resynced = True
                log.info("%s/%s: UIDVALIDITY changed from %s to %s; reading the folder again",
                         account.name, folder, checkpoint.uidvalidity, status.uidvalidity)
            self._start_checkpoint(account_id, folder, status, lease)
            after_uid = 0
        else:
            after_uid = checkpoint.last_uid
        learned = self._learned_authserv_id(account_id)
        if learned is None and self.settings.authenticity.trusted_authserv_id is None:
            learned = self._learn_authserv_id(connection, account, account_id, folder, status)
        settings = self.account_settings(learned)
        if status.uidnext > after_uid + 1:
            uids = self._new_uids_from_meta(connection, account, after_uid)
            result.matched = len(uids)
            if not self._record_all(connection, account, account_id, folder, status, uids, lease, result,
                                    settings):
                result.interrupted = True
                return result
        self._finish_checkpoint(account_id, folder, status, lease)
        return result

    def _new_uids_from_meta(self, connection: ImapConnection, account: AccountSettings, after_uid: int) -> list[int]:
        """UIDs after ``after_uid`` whose From mentions Meta (or imitates it), oldest first.

        The first sync of a folder asks the server to SEARCH: that narrows tens of
        thousands of mails without downloading anything. Later polls read the From
        header of each new mail and decide here instead: a server's search index
        can lag behind delivery (Exchange, Gmail), and a mail it missed just after
        arrival would be passed over for good. Reading the headers costs in
        proportion to the new mail, not to the mailbox.
        """
        if isinstance(account, IntakeSettings):
            return intake.new_uids(connection, after_uid, account.since)
        terms = sender_search_terms(self.settings.authenticity.meta_domains)
        if after_uid == 0:
            criteria = search_criteria(self.settings.authenticity.meta_domains, after_uid, account.since)
            # "n:*" also returns the last message when n is past it: keep only UIDs after the checkpoint.
            return [uid for uid in connection.search(criteria) if uid > after_uid]
        since = account.since
        return [uid for uid, sender, arrived in connection.senders_after(after_uid)
                if uid > after_uid and sender_mentions(sender, terms)
                and (since is None or arrived is None or arrived.date() >= since)]

    # ---- the person's own server ---------------------------------------------------

    def account_settings(self, authserv_id: str | None) -> Settings:
        """The settings one account's mail is classified with.

        With a ``trusted_authserv_id`` in the config, the config decides. Otherwise the
        id learned from the account's mail does: only its server's Authentication-Results
        count, and a Meta mail whose headers come from another server is unverified.
        Nothing learned yet: the topmost header, as for local files.
        """
        if authserv_id is None or self.settings.authenticity.trusted_authserv_id is not None:
            return self.settings
        authenticity = self.settings.authenticity.model_copy(update={"trusted_authserv_id": authserv_id})
        return self.settings.model_copy(update={"authenticity": authenticity})

    def _learned_authserv_id(self, account_id: int) -> str | None:
        with self.db.read() as session:
            return session.exec(select(Account.authserv_id).where(Account.id == account_id)).one()

    def _learn_authserv_id(self, connection: ImapConnection, account: AccountSettings, account_id: int,
                           folder: str, status: FolderStatus) -> str | None:
        """Read the folder's recent ordinary mail (two headers each) and store its server's authserv-id.

        Done on the first sync, and on later ones for as long as nothing was learned (a
        new, empty mailbox). Costs two round trips and a few hundred bytes per mail.
        """
        blocks = self._recent_headers(connection, folder, status)
        learned = learn_authserv_id(blocks, sender_search_terms(self.settings.authenticity.meta_domains))
        if learned is None:
            return None

        def write() -> str:
            with self.db.write() as session:
                row = session.get(Account, account_id)
                if row.authserv_id is None:  # another poller may have learned it meanwhile
                    row.authserv_id = learned
                    session.add(row)
                return row.authserv_id

        stored = store.retry_busy(write, f"recording the mail server of {account.name}")
        log.info("%s: its mail server's authserv-id is %s; only its Authentication-Results count",
                 account.name, stored)
        return stored

    @staticmethod
    def _recent_headers(connection: ImapConnection, folder: str, status: FolderStatus) -> list[bytes]:
        """From and Authentication-Results of the last ``AUTHSERV_SAMPLE`` mails of the examined folder, newest first."""
        if status.messages <= 0:
            return []
        first = max(1, status.messages - AUTHSERV_SAMPLE + 1)
        try:
            connection.traffic.commands += 2
            # A bare sequence set in SEARCH means message numbers: the UIDs of the last mails.
            uids = sorted(connection.client.search([f"{first}:*"]), reverse=True)[:AUTHSERV_SAMPLE]
            response = connection.client.fetch(uids, [AUTHSERV_FIELDS]) if uids else {}
        except Exception as err:  # not worth failing the poll for: the next poll tries again
            log.info("%s: could not read recent headers to learn the mail server: %s", folder, err)
            return []
        blocks = []
        for uid in uids:
            data = response.get(uid) or {}
            header = next((value for key, value in data.items() if key.startswith(b"BODY[HEADER")), None)
            if header:
                blocks.append(bytes(header))
        return blocks

    def _record_all(self, connection: ImapConnection, account: AccountSettings, account_id: int, folder: str,
                    status: FolderStatus, uids: list[int], lease: FolderLease, result: FolderPoll,
                    settings: Settings | None = None) -> bool:
        """Fetch and record the matches. False when stopped before the last one."""
        done = 0
        reader = intake.IntakeReader(self.ingestor, account) if isinstance(account, IntakeSettings) else None
        self._report(account.name, folder, done, len(uids))
        for batch in connection.fetch_in_batches(uids):
            for mail in batch:
                if self.stop.is_set():
                    return False
                outcome = self._record_one(account_id, account.name, folder, status, mail, lease, settings,
                                           reader=reader)
                if outcome == NEW:
                    result.new += 1
                else:
                    result.duplicates += 1
                done += 1
                self._report(account.name, folder, done, len(uids))
            # Let go of this batch's mails before the next FETCH: the loop variables would
            # otherwise keep them (a 50 MB mail, say) alive while the next batch arrives.
            batch.clear()
            mail = None
        return True

    def _record_one(self, account_id: int, account_name: str, folder: str, status: FolderStatus,
                    mail: FetchedMail, lease: FolderLease, settings: Settings | None = None,
                    reader: Ingestor | intake.IntakeReader | None = None) -> str:
        """The message, its events and alerts, and the checkpoint advance: one transaction.

        The mail is parsed and classified first, outside any transaction: reading a
        hostile mail can take long, and SQLite's write lock, which every other writer
        (`request add`, another poller, the alert sender) waits for, is taken only for
        the short write that follows. A busy database is waited out with backoff.
        """
        item = MailItem(raw=mail.raw, label=f"{account_name}/{folder}#{mail.uid}", folder=folder,
                        uidvalidity=status.uidvalidity, uid=mail.uid, internal_date=mail.internal_date)
        reader = reader or self.ingestor  # an intake mailbox's mail takes the intake path
        prepared = reader.prepare(item, settings)

        def write() -> str:
            with self.db.write() as session:
                lease.renew(session)
                account = session.get(Account, account_id)
                # A mail seen before (another folder, another account) inserts nothing; the
                # transaction holds SQLite's write lock from its start, so no other writer races us here.
                outcome, _message = reader.record(session, account, item, prepared)
                checkpoint = self._checkpoint_row(session, account_id, folder)
                checkpoint.last_uid = max(checkpoint.last_uid, mail.uid)
                checkpoint.updated_at = utcnow()
                session.add(checkpoint)
            return outcome

        return store.retry_busy(write, f"recording {item.label}")

    def _report(self, account: str, folder: str, done: int, total: int) -> None:
        if self.progress is not None and total:
            self.progress(account, folder, done, total)

    # ---- database bookkeeping -------------------------------------------------

    def _account_id(self, account: AccountSettings) -> int:
        with self.db.read() as session:  # the row is there and unchanged on every poll but the first
            row = session.exec(select(Account.id, Account.host, Account.username)
                               .where(Account.name == account.name)).first()
        if row is not None and (row.host, row.username) == (account.host, account.username):
            return row.id
        try:
            return store.retry_busy(lambda: self._account_row_id(account), f"recording account {account.name}")
        except IntegrityError:  # another poller created the row just now; it exists the second time
            return store.retry_busy(lambda: self._account_row_id(account), f"recording account {account.name}")

    def _account_row_id(self, account: AccountSettings) -> int:
        with self.db.write() as session:
            row = store.get_or_create_account(session, account.name, account.host, account.username)
            if (row.host, row.username) != (account.host, account.username):
                if row.host is not None:
                    # Another mailbox under the same name: its UIDs mean other mails.
                    log.info("%s: now %s@%s; its folders will be read from the start",
                             account.name, account.username, account.host)
                    session.execute(delete(Checkpoint).where(Checkpoint.account_id == row.id))
                    row.authserv_id = None  # another server, perhaps: learned again on its first sync
                row.host, row.username = account.host, account.username
                session.add(row)
            return row.id

    def _checkpoint(self, account_id: int, folder: str) -> Checkpoint | None:
        with self.db.read() as session:
            return session.exec(select(Checkpoint).where(Checkpoint.account_id == account_id,
                                                         Checkpoint.folder == folder)).first()

    @staticmethod
    def _checkpoint_row(session: Session, account_id: int, folder: str) -> Checkpoint:
        return session.exec(select(Checkpoint).where(Checkpoint.account_id == account_id,
                                                     Checkpoint.folder == folder)).one()

    def _start_checkpoint(self, account_id: int, folder: str, status: FolderStatus, lease: FolderLease) -> None:
        """A first sync, or a new UIDVALIDITY: the folder is read from UID 1."""
        def write() -> None:
            with self.db.write() as session:
                lease.renew(session)
                checkpoint = session.exec(select(Checkpoint).where(Checkpoint.account_id == account_id,
                                                                   Checkpoint.folder == folder)).first()
                if checkpoint is None:
                    checkpoint = Checkpoint(account_id=account_id, folder=folder, uidvalidity=status.uidvalidity)
                checkpoint.uidvalidity, checkpoint.last_uid = status.uidvalidity, 0
                checkpoint.highestmodseq, checkpoint.updated_at = None, utcnow()
                session.add(checkpoint)

        store.retry_busy(write, f"starting the checkpoint of {folder}")

    def _finish_checkpoint(self, account_id: int, folder: str, status: FolderStatus, lease: FolderLease) -> None:
        """Every match below UIDNEXT is recorded: the rest of those UIDs need no second look."""
        def write() -> None:
            with self.db.write() as session:
                lease.renew(session)
                checkpoint = self._checkpoint_row(session, account_id, folder)
                checkpoint.last_uid = max(checkpoint.last_uid, status.uidnext - 1)
                checkpoint.highestmodseq = status.highestmodseq
                checkpoint.updated_at = utcnow()
                session.add(checkpoint)

        store.retry_busy(write, f"finishing the checkpoint of {folder}")

    def _record_health(self, account_id: int, error: str | None, login_refused: bool = False) -> None:
        def write() -> None:
            with self.db.write() as session:
                account = session.get(Account, account_id)
                now = utcnow()
                if error is None:
                    account.last_success_at = now
                    account.consecutive_failures = 0
                    account.login_refused = False
                else:
                    account.last_error, account.last_error_at = error, now
                    account.login_refused = login_refused
                    account.consecutive_failures += 1
                session.add(account)

        store.retry_busy(write, "recording how the poll went")

    def _checks_due(self) -> bool:
        with self._checked_guard:
            now = time.monotonic()
            if self._checked_at is not None and now - self._checked_at < CHECK_EVERY_SECONDS:
                return False
            self._checked_at = now
            return True
