"""Schema migrations: a database made by the previous version (no alembic_version) is kept and upgraded."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

from conftest import db_rows
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
        db.execute("ALTER TABLE message DROP COLUMN guesses")
        db.execute("ALTER TABLE message DROP COLUMN uncertain")
        db.execute("DROP TABLE learnedtemplate")
        db.execute("DROP TABLE verdict")
        db.execute("DROP TABLE member")
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


@pytest.mark.sqlite_only("the SQLite backup made before an upgrade")
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


def test_a_new_database_is_created_at_head_with_the_models_schema(tmp_path, new_database_url):
    url = new_database_url("new", empty=True)

    Store(url).dispose()

    assert db_rows(url, "SELECT version_num FROM alembic_version") == [(migrations.head(),)]
    assert list(tmp_path.glob("*.bak")) == []
    engine = create_engine(url)
    with engine.connect() as connection:  # the revisions build exactly what the models describe
        assert compare_metadata(MigrationContext.configure(connection), SQLModel.metadata) == []
    engine.dispose()


def test_a_database_of_a_newer_version_is_refused_in_one_line(cli, tmp_path, database_url):
    Store(database_url).dispose()
    db_rows(database_url, "UPDATE alembic_version SET version_num = '0099_from_the_future'")

    result = cli("status", expect=1)

    assert "0099_from_the_future" in result.output and "newer version" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.glob("*.bak")) == []


def previous_version_database(url: str) -> None:
    """What the tracker before migrations left, on any database: every revision undone down to the
    baseline, no alembic_version table, and a few rows."""
    from alembic import command
    from alembic.config import Config

    Store(url).dispose()
    engine = create_engine(url)
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(migrations.HERE))
        config.attributes["connection"] = connection
        command.downgrade(config, migrations.BASELINE)
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text(
            "INSERT INTO account (name, host, username, consecutive_failures, login_refused, last_success_at) "
            "VALUES ('alice', 'imap.example.org', 'alice', 0, FALSE, '2025-06-01 10:00:00')"))
        connection.execute(text(
            "INSERT INTO request (address, platform, kind, notes, state, created_at, submitted) VALUES "
            "('anna@example.org', 'facebook', 'ai_objection', '', 'submitted', '2025-06-01 10:00:00', '2025-06-01')"))
    engine.dispose()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).chmod(0o600)


def test_processes_opening_an_old_database_at_once_upgrade_it_once_and_keep_its_rows(tmp_path, config_file,
                                                                                     database_url):
    """On PostgreSQL too: the advisory lock lets one process migrate; the log says no copy was made."""
    previous_version_database(database_url)
    opener = f"from tracker.store import Store; Store({database_url!r}).dispose()"

    processes = [subprocess.Popen([sys.executable, "-c", opener], cwd=REPO, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    errors = [process.communicate(timeout=120)[1] for process in processes]

    assert [process.returncode for process in processes] == [0] * 4, errors
    [upgraded] = [text for text in errors if "upgraded" in text]
    assert db_rows(database_url, "SELECT version_num FROM alembic_version") == [(migrations.head(),)]
    if database_url.startswith("postgresql"):
        assert "no copy was made" in upgraded and "pg_dump" in upgraded, upgraded
        assert list(tmp_path.glob("*.bak")) == []
    else:
        assert len(list(tmp_path.glob("*.bak"))) == 1
    shown = json.loads(status(config_file).stdout)
    assert [r["address"] for r in shown["requests"]] == ["anna@example.org"]
    alice = next(a for a in shown["accounts"] if a["name"] == "alice")
    assert alice["authserv_id"] is None and alice["last_success"].startswith("2025-06-01")


@pytest.mark.sqlite_only("the SQLite backup made before an upgrade")
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


# ---- a database written by version 0.1.0 ------------------------------------------------------

# Made by `privacy-tracker demo --keep` of commit 50fe599 (version 0.1.0) from its sample mail; beside
# it, the same version's `status --json` of it (the states and deadlines that version derived).
DEMO_010 = Path(__file__).parent / "data" / "v0.1.0-demo.sqlite3"
DEMO_010_STATUS = Path(__file__).parent / "data" / "v0.1.0-demo-status.json"
# The columns version 0.1.0 wrote, by table: the upgrade must keep every one of them as it was.
DEMO_010_COLUMNS = {
    "account": "id, name, host, username",
    "request": "id, address, platform, kind, country, region, submitted, notes, state, created_at",
    "message": "id, account_id, source_path, dedupe_id, content_key, sha256, size, subject, sender, sender_name, "
               "recipient, mail_date, category, platform, kind, rule, authenticated, authenticity, reason, "
               "reference, otp, error, raw_path, request_id, reviewed, seen_at",
    "event": "id, request_id, message_id, kind, occurred_at, detail",
    "alert": "id, key, reason, request_id, message_id, title, body, contains_code, sent_at, attempts",
    "complaint": "id, request_id, authority, filed, reference, state",
    "checkpoint": "id, account_id, folder, uidvalidity, last_uid",
}


def demo_010_rows(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as db:
        return {table: db.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
                for table, columns in DEMO_010_COLUMNS.items()}


@pytest.mark.sqlite_only("a SQLite file written by version 0.1.0")
def test_db_upgrade_of_a_database_written_by_version_0_1_0_loses_nothing(cli, tmp_path):
    database = tmp_path / "tracker.sqlite3"
    database.write_bytes(DEMO_010.read_bytes())
    database.chmod(0o600)
    before = demo_010_rows(database)
    assert "alembic_version" not in tables(database)
    assert {table: len(rows) for table, rows in before.items()} == {
        "account": 1, "request": 15, "message": 48, "event": 32, "alert": 15, "complaint": 0, "checkpoint": 0}

    result = cli("db", "upgrade")

    [backup] = backups(database)
    assert result.stdout.strip() == (f"Database {database} upgraded from schema of version 0.1.0 (no revision "
                                     f"recorded) to {migrations.head()}; the previous file is kept as {backup}.")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert demo_010_rows(backup) == before                     # the copy is the database as it was
    assert revision(database) == migrations.head()
    assert demo_010_rows(database) == before                   # every row and key field kept

    # What the tracker derives from it now is what version 0.1.0 derived: states, dates, deadlines.
    expected = json.loads(DEMO_010_STATUS.read_text())
    shown = cli.json("status", "--json")
    derived = sorted(({key: r[key] for key in expected["requests"][0]} for r in shown["requests"]),
                     key=lambda r: r["id"])
    assert derived == expected["requests"]
    assert shown["messages_seen"] == expected["messages_seen"] == 48
    assert [(a["id"], a["reason"], a["title"]) for a in shown["alerts"]] == [
        (row[0], row[2], row[5]) for row in before["alert"]]
    waiting = {m["id"] for m in cli.json("review", "--json")["mails"]}
    assert set(expected["review"]) <= waiting

    again = cli("db", "upgrade")
    assert again.stdout.strip() == f"Database {database} is already up to date (schema {migrations.head()})."
    assert backups(database) == [backup]


def test_db_upgrade_makes_no_database_where_there_is_none(tmp_path):
    from conftest import Cli

    config = tmp_path / "missing.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "typo.sqlite3"}"\n')

    result = Cli(config)("db", "upgrade")

    assert result.stdout.startswith(f"No database at {tmp_path / 'typo.sqlite3'}: nothing to upgrade")
    assert not (tmp_path / "typo.sqlite3").exists()
