"""Schema migrations: a database made by the previous version (no alembic_version) is kept and upgraded."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from tracker import migrations
from tracker.store import Store

REPO = Path(__file__).resolve().parents[1]


def make_previous_version_database(path: Path) -> None:
    """The tables as the models define them, less the column this version adds, with a few rows,
    and no alembic_version table: what the tracker before migrations left on disk."""
    engine = create_engine(f"sqlite:///{path}")
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("ALTER TABLE account DROP COLUMN authserv_id")
        db.execute("INSERT INTO account (id, name, host, username, consecutive_failures, login_refused, "
                   "last_success_at) VALUES (1, 'alice', 'imap.example.org', 'alice', 0, 0, '2025-06-01 10:00:00')")
        db.execute("INSERT INTO request (id, address, platform, kind, notes, state, created_at, submitted) "
                   "VALUES (1, 'anna@example.org', 'facebook', 'ai_objection', '', 'submitted', "
                   "'2025-06-01 10:00:00', '2025-06-01')")
        db.execute("INSERT INTO event (id, request_id, kind, occurred_at, detail, created_at) "
                   "VALUES (1, 1, 'submitted', '2025-06-01 00:00:00', '', '2025-06-01 10:00:00')")
        db.execute("INSERT INTO message (id, account_id, folder, uidvalidity, uid, dedupe_id, content_key, sha256, "
                   "size, subject, sender, sender_name, category, authenticity, reason, reviewed, seen_at) "
                   "VALUES (1, 1, 'INBOX', 7, 3, '<m@example.org>', 'k', 's', 10, 'Hello', 'x@example.org', "
                   "'X', 'unrelated', 'not_meta', '', 0, '2025-06-01 10:00:00')")
    path.chmod(0o600)


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def revision(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.*.bak"))


def status(config: Path) -> subprocess.CompletedProcess:
    """`privacy-tracker status --json` in its own process, as the person would run it after upgrading."""
    return subprocess.run([sys.executable, "-m", "tracker", "--config", str(config), "status", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_database_of_the_previous_version_is_backed_up_and_upgraded_in_place_once(config_file, tmp_path):
    database = tmp_path / "tracker.sqlite3"
    make_previous_version_database(database)
    assert "authserv_id" not in columns(database, "account") and "alembic_version" not in tables(database)

    first = status(config_file)

    assert first.returncode == 0, first.stderr
    shown = json.loads(first.stdout)
    assert [r["address"] for r in shown["requests"]] == ["anna@example.org"]
    assert shown["messages_seen"] == 1
    alice = next(a for a in shown["accounts"] if a["name"] == "alice")
    assert alice["authserv_id"] is None and alice["last_success"].startswith("2025-06-01")
    assert "authserv_id" in columns(database, "account")
    assert revision(database) == migrations.head()
    with sqlite3.connect(database) as db:  # the rows are kept as they were
        assert db.execute("SELECT name, host FROM account").fetchall() == [("alice", "imap.example.org")]
        assert db.execute("SELECT count(*) FROM event").fetchone()[0] == 1
        assert db.execute("SELECT subject FROM message").fetchall() == [("Hello",)]
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    [backup] = backups(database)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert "authserv_id" not in columns(backup, "account") and "alembic_version" not in tables(backup)
    with sqlite3.connect(backup) as db:  # a whole copy, the write-ahead log included
        assert db.execute("SELECT count(*) FROM message").fetchone()[0] == 1
    assert "upgraded" in first.stderr and backup.name in first.stderr

    second = status(config_file)

    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["requests"] == shown["requests"]
    assert backups(database) == [backup]
    assert revision(database) == migrations.head()
    assert "upgraded" not in second.stderr


def test_a_new_database_is_created_at_head_with_the_models_schema(tmp_path):
    database = tmp_path / "new" / "tracker.sqlite3"

    Store(f"sqlite:///{database}").dispose()

    assert revision(database) == migrations.head()
    assert backups(database) == []
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:  # the revisions build exactly what the models describe
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
    engine.dispose()


def test_a_database_of_a_newer_version_is_refused_in_one_line(cli, tmp_path):
    database = tmp_path / "tracker.sqlite3"
    Store(f"sqlite:///{database}").dispose()
    with sqlite3.connect(database) as db:
        db.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")

    result = cli("status", expect=1)

    assert "0099_from_the_future" in result.output and "newer version" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert backups(database) == []


def test_processes_opening_an_old_database_at_once_upgrade_it_once(tmp_path):
    database = tmp_path / "tracker.sqlite3"
    make_previous_version_database(database)
    opener = f"from tracker.store import Store; Store('sqlite:///{database}').dispose()"

    processes = [subprocess.Popen([sys.executable, "-c", opener], cwd=REPO, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    errors = [process.communicate(timeout=120)[1] for process in processes]

    assert [process.returncode for process in processes] == [0] * 4, errors
    assert len(backups(database)) == 1
    assert sum("upgraded" in text for text in errors) == 1
    assert revision(database) == migrations.head() and "authserv_id" in columns(database, "account")
