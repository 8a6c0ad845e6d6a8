"""The database (SQLite, or PostgreSQL): engine, sessions, and the queries the rest of the tracker shares.

A SQLite file and its folder are created owner-only (0600 / 0700): they hold the
person's addresses, mail subjects and evidence for a complaint. On PostgreSQL
the server keeps the data; who may read it is the server's grants.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine, func, select

from tracker import lifecycle, migrations
from tracker.errors import NotFoundError, StoreError
from tracker.models import Account, Complaint, Event, LearnedTemplate, Message, Request

log = logging.getLogger(__name__)


def utc(value: datetime | None) -> datetime | None:
    """A stored naive-UTC datetime as an aware one."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def to_db_time(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def end_of(day: date) -> datetime:
    """For things the person dates by hand (a complaint filed, an extension): a mail of the same
    day came before them, so they sort after it."""
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=timezone.utc)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    return None if path in ("", ":memory:") else Path(path)


def make_private_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and every missing parent owner-only (0700), whatever the umask.

    ``Path.mkdir(parents=True, mode=0o700)`` gives the mode only to the last folder, and
    only as far as the umask allows; the parents get 0777 minus the umask (0777 under
    umask 000). Folders that existed already are left as they are. Returns the folders
    it created, outermost first.
    """
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    created = []
    for candidate in reversed(missing):
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:  # created meanwhile by another process: its mode is its own
            continue
        os.chmod(candidate, 0o700)
        created.append(candidate)
    return created


def _create_private_file(path: Path, create_folder: bool = True) -> None:
    if not create_folder and not path.parent.is_dir():
        # A typo in a configured path must not quietly start a new, empty database.
        raise StoreError(f"the folder {path.parent} of the database does not exist: "
                         f"create it or fix [database] url")
    make_private_dirs(path.parent)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        return
    mode = path.stat().st_mode & 0o777
    if not mode & 0o200:
        # The owner took write permission away, perhaps to keep the evidence as it is:
        # never give it back behind their back (root could write anyway).
        raise StoreError(f"the database {path} is read-only (mode {mode:04o}); the tracker needs to write to it: "
                         f"make it writable (chmod u+w) or choose another [database] url")
    if mode != 0o600:
        os.chmod(path, 0o600)


class Store:
    """One database. ``session()`` gives a SQLModel session that commits on success."""

    def __init__(self, url: str, create_folder: bool = True):
        """``create_folder``: whether a missing folder of a SQLite file may be created (the default
        location may; a configured ``[database] url`` may not)."""
        self.url = url
        self.path = _sqlite_path(url)
        try:
            if self.path is not None:
                _create_private_file(self.path, create_folder)
            # hide_parameters: SQL logging (-vvv) and errors must not show one-time codes or addresses.
            self.engine = create_engine(url, hide_parameters=True, **_engine_options(url))
            if self.engine.dialect.name == "sqlite":
                sa_event.listen(self.engine, "connect", _sqlite_pragmas)
            elif self.engine.dialect.name == "postgresql":
                sa_event.listen(self.engine, "connect", _postgresql_settings)
            sa_event.listen(self.engine, "handle_error", _busy_as_one_line)
            # The schema: created at head when new, upgraded in place when older (a SQLite file after a backup).
            migrations.upgrade(self.engine, url)
        except ImportError as err:  # postgresql://, mysql://... without the driver installed
            raise StoreError(_missing_driver(url, err)) from None
        except (OSError, SQLAlchemyError) as err:
            raise StoreError(f"cannot open database {_shown_url(url)}: {_one_line(err, url)}") from err

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads that only guide a later decision (is a folder leased, is a
        checkpoint behind): the write that acts on it checks again.

        On PostgreSQL its transaction is REPEATABLE READ: one snapshot, and, unlike a
        SERIALIZABLE one, never failed because the writes of other workers crossed it.
        """
        with Session(self.engine, expire_on_commit=False) as session:
            if self.engine.dialect.name == "postgresql":
                # Given back to the pool at the end, the connection returns to SERIALIZABLE.
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session  # closing ends the transaction; what was read stays readable

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose reads and writes take effect as if no other transaction ran meanwhile.

        On SQLite it holds the write lock from its first statement (BEGIN IMMEDIATE): what
        it reads is the committed state, and nobody can commit in between until it commits,
        so a check that reads and then writes (the overdue check) acts on what is true, not
        on what was true a moment before. On PostgreSQL every transaction of the tracker is
        SERIALIZABLE (see ``_engine_options``), which gives the same guarantee without a
        global lock: of two transactions whose reads and writes cross, one fails with a
        serialization failure, raised as ``DatabaseBusy``. Keep the work inside short: parse
        and classify before entering. Raises ``DatabaseBusy`` if the lock is not had within
        ``BUSY_TIMEOUT_SECONDS`` (or on such a conflict); ``retry_busy`` tries again with backoff.
        """
        with self.session() as session:
            if self.engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


# ---- the write lock: short holds, retried with backoff ---------------------------

# How long one statement waits inside SQLite for another process's write to end.
BUSY_TIMEOUT_SECONDS = 30.0
# How long ``retry_busy`` goes on trying a whole transaction again, with backoff, after that.
LOCK_WAIT_SECONDS = 120.0


class DatabaseBusy(StoreError):
    """Another process held SQLite's write lock for longer than we waited, or (PostgreSQL) a
    transaction crossed another one's reads and writes, or waited too long for a lock."""


# PostgreSQL's SQLSTATEs for "another transaction was in the way; the same work may well succeed
# again", with what the person is told.
_PG_LOCK_NOT_AVAILABLE = "55P03"   # lock_timeout passed
_PG_BUSY = {
    "40001": "another privacy-tracker process changed the same records at the same time",
    "40P01": "this process and another one waited for each other's records (a deadlock)",
    _PG_LOCK_NOT_AVAILABLE: "another process kept a lock",
}


def _busy_as_one_line(context) -> None:
    """SQLAlchemy's handle_error hook: "database is locked" (SQLite) and PostgreSQL's serialization
    failure, deadlock and lock timeout become DatabaseBusy, a one-line error ``retry_busy`` retries."""
    original = context.original_exception
    if "database is locked" in str(original) or "database table is locked" in str(original):
        raise DatabaseBusy(
            f"the database is busy: another privacy-tracker process (or a program that opened "
            f"the file) kept it locked for more than {BUSY_TIMEOUT_SECONDS:g} s; this change was not "
            f"saved, try again in a moment") from original
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in _PG_BUSY:
        why = _PG_BUSY[sqlstate]
        if sqlstate == _PG_LOCK_NOT_AVAILABLE:
            why += f" for more than {BUSY_TIMEOUT_SECONDS:g} s"
        raise DatabaseBusy(f"the database is busy: {why}; this change was not saved, "
                           f"try again in a moment") from original


T = TypeVar("T")


def retry_busy(work: Callable[[], T], what: str = "a write", budget: float | None = None) -> T:
    """Run ``work`` (one whole transaction) again while the database is busy, with backoff.

    Waits 0.1 s, 0.2 s, 0.4 s... (at most 5 s, with jitter so that processes that
    collided do not collide again) until ``budget`` seconds (``LOCK_WAIT_SECONDS``)
    have passed, then lets ``DatabaseBusy`` through: one line for the person.
    ``work`` must be safe to run again: a failed attempt is rolled back whole.
    """
    deadline = time.monotonic() + (LOCK_WAIT_SECONDS if budget is None else budget)
    delay = 0.1
    while True:
        try:
            return work()
        except DatabaseBusy:
            if time.monotonic() + delay > deadline:
                raise
            pause = delay / 2 + random.uniform(0, delay / 2)
            log.info("database busy during %s; trying again in %.1f s", what, pause)
            time.sleep(pause)
            delay = min(delay * 2, 5.0)


# The pip package that provides each driver SQLAlchemy can use (by the module it imports).
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "asyncpg": "asyncpg", "pg8000": "pg8000",
    "MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "mysql": "mysql-connector-python",
    "mariadb": "mariadb", "oracledb": "oracledb", "pyodbc": "pyodbc", "pymssql": "pymssql",
}


def _shown_url(url: str) -> str:
    """The URL without its password."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: the scheme is all that can be shown safely
        return url.split("://", 1)[0] + "://..."


def _missing_driver(url: str, err: ImportError) -> str:
    """One line naming the driver a database URL needs and the package that installs it."""
    module = (err.name or "").split(".")[0]
    try:
        from sqlalchemy.engine import make_url
        parsed = make_url(url)
        driver = f"{parsed.get_backend_name()}+{parsed.get_dialect().driver}"
    except Exception:
        driver = url.split("://", 1)[0]
    package = _DRIVER_PACKAGES.get(module, module or "the driver")
    return (f"the database URL {_shown_url(url)} needs the {driver} driver, which is not installed: "
            f"pip install '{package}' (or use a sqlite:/// URL)")


def _one_line(err: BaseException, url: str) -> str:
    """The driver's own message in one line (psycopg's run over several), without the password."""
    text = str(getattr(err, "orig", None) or err)
    text = text.split("(Background on this error at:", 1)[0]
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    try:
        from sqlalchemy.engine import make_url
        password = make_url(url).password
    except Exception:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text or type(err).__name__


def _engine_options(url: str) -> dict:
    """create_engine's options for the database the URL names."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": BUSY_TIMEOUT_SECONDS}}
    if backend == "postgresql":
        # SERIALIZABLE for every transaction, not only Store.write(): the checks that read and then
        # write (an overdue alert against a refusal recorded at the same time, a folder's lease, an
        # alert queued once by key) also run in the ingest's plain sessions, and PostgreSQL detects
        # a conflict only between two SERIALIZABLE transactions. A conflict fails one of them with
        # SQLSTATE 40001, which is DatabaseBusy and retried whole, as SQLite's busy lock is.
        options: dict = {"isolation_level": "SERIALIZABLE", "pool_pre_ping": True}
        if parsed.get_driver_name() in ("psycopg", "psycopg2") and "connect_timeout" not in parsed.query:
            # A server that does not answer is one line after 10 s, not a hang.
            options["connect_args"] = {"connect_timeout": 10}
        return options
    return {}


def _postgresql_settings(dbapi_connection, _record) -> None:
    """Each PostgreSQL connection waits for a row or table lock as long as SQLite waits for its
    write lock, then fails (SQLSTATE 55P03, DatabaseBusy), rather than forever."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET lock_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.close()
    dbapi_connection.commit()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the daemon write while `status` reads; SQLite gives the -wal and
    # -shm files the same owner-only mode as the database.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.close()


# ---- accounts ---------------------------------------------------------------

def get_or_create_account(session: Session, name: str, host: str | None = None,
                          username: str | None = None) -> Account:
    account = session.exec(select(Account).where(Account.name == name)).first()
    if account is None:
        account = Account(name=name, host=host, username=username)
        session.add(account)
        session.flush()
    return account


# ---- requests ---------------------------------------------------------------

def get_request(session: Session, request_id: int) -> Request:
    request = session.get(Request, request_id)
    if request is None:
        raise NotFoundError(f"no request with id {request_id} (see `privacy-tracker status`)")
    return request


def requests_of(session: Session, address: str, kind: str) -> list[Request]:
    """Every request of ``address`` of one kind, whatever the platform."""
    return list(session.exec(select(Request).where(Request.address == address, Request.kind == kind)))


def find_request(session: Session, address: str, platform: str, kind: str) -> Request | None:
    return session.exec(select(Request).where(
        Request.address == address, Request.platform == platform, Request.kind == kind)).first()


def events_of(session: Session, request_id: int) -> list[Event]:
    return list(session.exec(select(Event).where(Event.request_id == request_id)))


def timeline_of(session: Session, request: Request) -> lifecycle.Timeline:
    facts = [lifecycle.EventFact(e.kind, utc(e.occurred_at), e.id or 0) for e in events_of(session, request.id)]
    return lifecycle.derive(facts, request.submitted)


def refresh_state(session: Session, request: Request) -> lifecycle.Timeline:
    """Recompute the cached state from the events (call after adding one)."""
    session.flush()
    timeline = timeline_of(session, request)
    request.state = timeline.state
    session.add(request)
    return timeline


def add_event(session: Session, request: Request, kind: str, occurred_at: datetime,
              message_id: int | None = None, detail: str = "") -> Event:
    event = Event(request_id=request.id, message_id=message_id, kind=kind,
                  occurred_at=to_db_time(occurred_at), detail=detail)
    session.add(event)
    return event


def add_request(session: Session, address: str, platform: str, kind: str, country: str | None = None,
                region: str | None = None, submitted: date | None = None, notes: str = "") -> Request:
    address = address.strip().lower()
    if find_request(session, address, platform, kind) is not None:
        raise StoreError(f"a {platform} {kind} request for {address} exists already")
    request = Request(address=address, platform=platform, kind=kind, country=country,
                      region=region, submitted=submitted, notes=notes)
    session.add(request)
    session.flush()
    if submitted is not None:
        add_event(session, request, lifecycle.EVENT_SUBMITTED,
                  start_of(submitted))
    refresh_state(session, request)
    return request


def all_requests(session: Session) -> list[Request]:
    return list(session.exec(select(Request).order_by(Request.id)))


def complaints_of(session: Session, request_id: int) -> list[Complaint]:
    return list(session.exec(select(Complaint).where(Complaint.request_id == request_id)
                             .order_by(Complaint.filed)))


# ---- messages ---------------------------------------------------------------

def message_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Message)).one()


def last_message_id(session: Session) -> int:
    return session.exec(select(func.max(Message.id))).one() or 0


def categories_after(session: Session, message_id: int) -> dict[str, int]:
    """How many mails of each category were recorded after ``message_id`` (what a poll brought)."""
    rows = session.exec(select(Message.category, func.count()).where(Message.id > message_id)
                        .group_by(Message.category))
    return {category: count for category, count in rows}


def message_counts_by_account(session: Session) -> dict[int, int]:
    rows = session.exec(select(Message.account_id, func.count()).group_by(Message.account_id))
    return {account_id: count for account_id, count in rows}


def messages_of_request(session: Session, request_id: int) -> list[Message]:
    return list(session.exec(select(Message).where(Message.request_id == request_id)
                             .order_by(Message.mail_date.nulls_first())))


# ---- templates learned from verdicts ------------------------------------------

def learned_templates(session: Session) -> tuple:
    """Every active learned template, oldest first (so a newer verdict on the same template wins)."""
    from tracker.rules.engine import LEARNED_PREFIX
    from tracker.rules.templates import Template

    rows = session.exec(select(LearnedTemplate).where(LearnedTemplate.active == True)  # noqa: E712
                        .order_by(LearnedTemplate.id))
    return tuple(Template(id=f"{LEARNED_PREFIX}{row.id}", category=row.category, words=row.words,
                          platform=row.platform, kind=row.kind, source=f"your verdict on mail #{row.message_id}")
                 for row in rows)
