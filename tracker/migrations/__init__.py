"""Schema migrations (Alembic), kept inside this one module.

``upgrade(engine, url)`` is what opening a database calls (store.Store):

- a new, empty database is created by running every revision, so it is at head;
- a database at head is left alone: one SELECT, no write;
- a database made before the tracker had migrations (its tables, no
  ``alembic_version`` table) is stamped as the baseline, ``0001_baseline``, and
  upgraded in place;
- whenever an existing database is about to change, a copy of the SQLite file is
  made next to it first (owner-only, 0600), with SQLite's backup API, so the
  copy is consistent even with a write-ahead log. A PostgreSQL database is not
  copied (the log says so): a ``pg_dump`` before upgrading is its administrator's job.

All of it runs in one transaction that holds SQLite's write lock from its start
(BEGIN IMMEDIATE): two processes opening the same file at once (the daemon and a
cron ``poll --once``) do not both migrate; the second waits, then finds it at head.
On PostgreSQL the transaction takes a transaction-level advisory lock instead
(``pg_advisory_xact_lock``, released by its commit or rollback), and reads at
READ COMMITTED, so the second process, once it has the lock, sees what the first
committed. PostgreSQL's DDL is transactional: a failed upgrade leaves nothing half done.

A new revision: add a file to ``versions/`` (``script.py.mako`` is its template)
whose ``down_revision`` is the current head. Never change a revision that shipped.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import inspect, text

from tracker.errors import StoreError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BASELINE = "0001_baseline"
# Tables every database of the previous version has: one of them present without
# alembic_version means "made by the previous version", not "empty".
_BASELINE_TABLES = frozenset({"account", "message", "request", "event", "alert", "checkpoint", "folderlock",
                              "complaint"})
# The advisory lock that PostgreSQL processes take to migrate one at a time: any constant
# bigint that nothing else on the database uses ("prtrack" + 0x01 in ASCII).
_PG_MIGRATION_LOCK = 0x7072747261636B01


@functools.lru_cache(maxsize=1)
def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(HERE))


def head() -> str:
    """The newest revision this version of the tracker knows."""
    return _script().get_current_head()


def _config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def backup_path(path: Path, revision: str | None) -> Path:
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    base = f"{path.name}.{revision or 'unversioned'}-{stamp}"
    candidate, n = path.with_name(f"{base}.bak"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{base}-{n}.bak")
    return candidate


def backup(path: Path, revision: str | None) -> Path:
    """A consistent copy of the SQLite file ``path`` beside it, created owner-only (0600)."""
    target = backup_path(path, revision)
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(target, 0o600)  # whatever the umask
    try:
        source = sqlite3.connect(path, timeout=30)
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def upgrade(engine, url: str, *, quiet: bool = False) -> Path | None:
    """Bring the database of ``engine`` to head. Returns the backup made, if any.

    An upgrade of an existing database is logged as a warning, unless ``quiet`` (`db upgrade`
    says it itself)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    known = set(_script().get_heads())
    with engine.connect() as connection:
        dialect = connection.dialect.name
        if dialect == "postgresql":
            # Each statement sees what was committed before it: after waiting for the lock
            # below, the revision read next is the one the other process left (a SERIALIZABLE
            # transaction would keep the snapshot it took before the wait).
            connection.execution_options(isolation_level="READ COMMITTED")
        # Almost always at head: one read, no lock, so opening never waits for a writer.
        current = MigrationContext.configure(connection).get_current_revision()
        connection.rollback()
        if current in known:
            return None
        if dialect == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        current = MigrationContext.configure(connection).get_current_revision()  # again, under the lock
        if current in known:
            connection.rollback()
            return None
        if current is not None and current not in {rev.revision for rev in _script().walk_revisions()}:
            connection.rollback()
            raise StoreError(f"the database {_shown(url)} has schema revision {current}, which this version of "
                             f"privacy-tracker does not know: it was made by a newer version; upgrade privacy-tracker")
        config = _config(connection)
        made = None
        tables = set(inspect(connection).get_table_names())
        existing = current is not None or bool(tables & _BASELINE_TABLES)
        path = _sqlite_path(url)
        if existing and path is not None:
            made = backup(path, current)
        try:
            if current is None and existing:
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
        except CommandError as err:
            connection.rollback()
            raise StoreError(f"cannot upgrade the database {_shown(url)}: {err}") from err
        connection.commit()
    if existing and not quiet:
        where = f"; the previous file is kept as {made}" if made else ""
        if dialect == "postgresql":
            where = "; no copy was made (for PostgreSQL, a pg_dump before upgrading is the administrator's job)"
        log.warning("database upgraded from schema %s to %s%s", current or f"{BASELINE} (no version)",
                    head(), where)
    return made


def current_revision(engine) -> str | None:
    """The database's schema revision; None for a database made before migrations, or an empty one."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class Upgraded:
    """What `privacy-tracker db upgrade` did."""

    where: str              # the SQLite file, or the URL without its password
    before: str | None      # the revision it had; None: made before migrations (version 0.1.0), or empty
    after: str | None       # None: there is no database there, and none was made
    backup: Path | None     # the copy made first (SQLite)
    created: bool = False   # it was empty: made at head, nothing to upgrade

    @property
    def changed(self) -> bool:
        return self.after is not None and self.before != self.after


def upgrade_database(url: str) -> Upgraded:
    """Upgrade the database at ``url`` now, as opening it would. A SQLite file that does not
    exist is not made (a mistyped path must not start a new, empty database)."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    path = _sqlite_path(url)
    where = str(path) if path is not None else _shown(url)
    if path is not None and not path.is_file():
        return Upgraded(where, None, None, None)
    try:
        engine = create_engine(url, connect_args={"timeout": 30} if path is not None else {})
    except ImportError as err:
        raise StoreError(f"cannot open database {where}: its driver is not installed ({err})") from None
    try:
        before = current_revision(engine)
        with engine.connect() as connection:
            empty = not set(inspect(connection).get_table_names())
        made = upgrade(engine, url, quiet=True)
        return Upgraded(where, before, current_revision(engine), made, created=empty)
    except SQLAlchemyError as err:
        raise StoreError(f"cannot upgrade the database {where}: {err}") from err
    finally:
        engine.dispose()


def _shown(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://..."
