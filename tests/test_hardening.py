"""Hardening (issue 8): dates from mail and from the command line, a full disk.

Each test is built from the attack's shape and checks what a person would
notice: a traceback or a stalled folder before, one line and nothing lost after.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from conftest import db_rows
from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail
from tracker import store
from tracker.complaint import record_filing
from tracker.parse import parse_mail

ARRIVED = datetime(2025, 6, 3, 10, 0, tzinfo=timezone.utc)  # the file's time / INTERNALDATE


def _at(path: Path, when: datetime) -> Path:
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def _mail_with_date_header(tmp_path: Path, header: str, body: str = ACKNOWLEDGEMENT, name: str = "m") -> Path:
    raw = meta_mail(body, subject="We received your request", message_id=f"<{name}@facebookmail.com>")
    raw = b"\n".join(b"Date: " + header.encode() if line.startswith(b"Date: ") else line
                     for line in raw.split(b"\n"))
    path = tmp_path / f"{name}.eml"
    path.write_bytes(raw)
    return _at(path, ARRIVED)


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def _rows(config_file: Path, sql: str) -> list[tuple]:
    return db_rows(config_file, sql)


# ---- dates in mail ------------------------------------------------------------

def _future(days: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).strftime("%a, %d %b %Y %H:%M:%S +0000")


@pytest.mark.parametrize("header", [
    "Fri, 31 Dec 9999 23:00:00 +0000",   # crashed ingest: the deadline is past the year 9999
    "Mon, 01 Nov 9999 10:00:00 +0000",
    "Mon, 01 Jan 1900 10:00:00 +0000",   # overdue for a century
    "Thu, 01 Jan 1970 00:00:00 +0000",
    "Tue, 31 Dec 1989 23:00:00 +0000",
    _future(3),                          # a deadline three days late
])
def test_a_mail_date_outside_1990_to_now_is_replaced_by_its_arrival_time(cli, tmp_path, header):
    path = _mail_with_date_header(tmp_path, header)
    result = cli("ingest", path)
    assert "1 new" in result.output
    [request] = cli.json("status", "--json")["requests"]
    assert request["submitted"] == "2025-06-03"      # Meta received it when it arrived
    assert request["deadline"] == "2025-07-03"
    assert request["last_mail"].startswith("2025-06-03T10:00")


def test_a_mail_a_few_hours_ahead_of_our_clock_keeps_its_date():
    ahead = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=12)
    mail = parse_mail(meta_mail(ACKNOWLEDGEMENT, date=ahead))
    assert mail.date == ahead


def test_a_file_time_in_the_year_9999_is_not_used_either(cli, tmp_path):
    path = _mail_with_date_header(tmp_path, "Fri, 31 Dec 9999 23:00:00 +0000")
    _at(path, datetime(9999, 12, 31, tzinfo=timezone.utc))
    cli("ingest", path)
    [request] = cli.json("status", "--json")["requests"]
    assert request["state"] == "acknowledged"
    assert request["submitted"] == datetime.now(timezone.utc).date().isoformat()  # no date: when it was read


@pytest.mark.dovecot
def test_a_mail_dated_9999_does_not_stall_an_imap_folder(imap_config, dovecot, cli):
    raw = meta_mail(ACKNOWLEDGEMENT, to="anna@example.org", message_id="<y9999@facebookmail.com>",
                    date=datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc))
    dovecot.deliver("alice", raw, received=ARRIVED.timestamp())
    dovecot.deliver("alice", meta_mail(REFUSAL, to="ben@example.org", message_id="<after@facebookmail.com>"))

    cli("poll", "--once")
    dates = [(dedupe_id, str(mail_date)[:10]) for dedupe_id, mail_date in
             _rows(imap_config, "SELECT dedupe_id, mail_date FROM message")]
    assert sorted(dates) == [("after@facebookmail.com", "2025-06-02"), ("y9999@facebookmail.com", "2025-06-03")]
    # The checkpoint moved past both: the next poll has nothing left to do, and succeeds.
    cli("poll", "--once")
    assert _rows(imap_config, "SELECT count(*) FROM message") == [(2,)]
    [anna] = [r for r in cli.json("status", "--json")["requests"] if r["address"] == "anna@example.org"]
    assert (anna["state"], anna["submitted"]) == ("acknowledged", "2025-06-03")


# ---- dates typed on the command line ------------------------------------------------

def latest_typed_day() -> date:
    """Today where the person is, or in UTC, whichever is later."""
    return max(date.today(), datetime.now(timezone.utc).date())


def _tomorrow() -> str:
    return (latest_typed_day() + timedelta(days=1)).isoformat()


DATE_COMMANDS = {
    "request add": ["request", "add", "--address", "new@example.org", "--platform", "instagram", "--date"],
    "request extend": ["request", "extend", "1", "--date"],
    "complaint filed": ["complaint", "filed", "1", "--authority", "IE", "--date"],
}


@pytest.mark.parametrize("command", DATE_COMMANDS)
@pytest.mark.parametrize("typed, why", [
    ("9999-11-01", "is in the future"),
    (None, "is in the future"),          # tomorrow
    ("1989-12-31", "is before 1990"),
    ("0001-01-01", "is before 1990"),
    ("31.01.2025", "is not a date (YYYY-MM-DD)"),
])
def test_a_typed_date_outside_1990_to_today_is_refused_in_one_line(cli, command, typed, why):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-01-31")
    before = cli.json("status", "--json")
    result = cli(*DATE_COMMANDS[command], typed or _tomorrow(), expect=2)
    [line] = _error_lines(result.output)
    assert line.startswith("error: --date: ") and why in line, line
    assert cli.json("status", "--json") == before   # nothing was recorded


@pytest.mark.parametrize("command", DATE_COMMANDS)
def test_today_and_1990_are_accepted(cli, command):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "1990-01-01")
    cli(*DATE_COMMANDS[command], latest_typed_day().isoformat())


def test_complaint_filed_in_9999_no_longer_breaks_status(cli):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-01-31")
    cli("complaint", "filed", "1", "--authority", "IE", "--date", "9999-11-01", expect=2)
    cli("status")
    [request] = cli.json("status", "--json")["requests"]
    assert request["complaint"] is None


# ---- dates stored before they were checked -------------------------------------------

def test_status_survives_dates_stored_by_an_older_version(cli, config_file, database_url):
    """A database written before the checks may hold the year 9999: `status` shows it, flagged."""
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-01-31")
    cli("request", "add", "--address", "ben@example.org", "--platform", "instagram")
    cli("request", "add", "--address", "chiara@example.org", "--platform", "facebook", "--date", "2025-05-02")
    db = store.Store(database_url)
    with db.session() as session:
        record_filing(session, 1, "IE", date(9999, 11, 1), "")       # as `complaint filed` stored it
        ben = store.get_request(session, 2)                           # as `ingest` stored a 9999 mail
        store.add_event(session, ben, "acknowledgement", datetime(9999, 12, 31, 23, tzinfo=timezone.utc))
    db.dispose()

    assert "Requests" in cli("status").output   # shown, not a traceback
    requests = {r["address"]: r for r in cli.json("status", "--json")["requests"]}
    assert "date out of range" in requests["anna@example.org"]["flags"]
    assert requests["anna@example.org"]["complaint"]["authority_deadline"] is None
    assert "date out of range" in requests["ben@example.org"]["flags"]
    assert requests["chiara@example.org"]["deadline"] == "2025-06-02"   # the others are as they were
    cli("request", "show", "2")


# ---- a full disk -------------------------------------------------------------------------

@pytest.fixture
def evidence_disk_full(monkeypatch):
    """Every write of an evidence file fails as on a full disk (a real one cannot be made here)."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        return Full(handle) if "w" in mode else handle

    class Switch:
        def on(self):
            monkeypatch.setattr(os, "fdopen", fdopen)

        def off(self):
            monkeypatch.setattr(os, "fdopen", real_fdopen)

    return Switch()


@pytest.fixture
def database_full():
    """SQLite reports SQLITE_FULL, as on a full disk: the database may not grow by one page.

    ``max_page_count`` makes SQLite itself fail with "database or disk is full"
    (the same error code a full disk gives) at the first write that needs a new page.
    """
    def cap(connection, _record):
        cursor = connection.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        cursor.close()

    class Switch:
        def on(self):
            event.listen(Engine, "connect", cap)

        def off(self):
            if event.contains(Engine, "connect", cap):
                event.remove(Engine, "connect", cap)

    switch = Switch()
    yield switch
    switch.off()


SAMPLES = Path(__file__).resolve().parents[1] / "tracker" / "sample_mail"


def _categories(cli) -> list[tuple]:
    return sorted(_rows(cli.config, "SELECT sha256, category, request_id IS NOT NULL FROM message"))


@pytest.fixture
def clean_result(tmp_path_factory, new_database_url):
    """What ingesting the sample mail gives on a disk with room."""
    from conftest import Cli

    folder = tmp_path_factory.mktemp("clean")
    config = folder / "config.toml"
    config.write_text(f'[database]\nurl = "{new_database_url("clean")}"\n'
                      f'[evidence]\ndir = "{folder / "evidence"}"\n')
    clean = Cli(config)
    clean("ingest", SAMPLES)
    return _categories(clean), sorted(p.name for p in (folder / "evidence").iterdir())


def test_a_full_disk_for_evidence_during_ingest_is_one_line_and_loses_nothing(cli, config_file, tmp_path,
                                                                              evidence_disk_full, clean_result):
    evidence_disk_full.on()
    result = cli("ingest", SAMPLES, expect=1)
    [line] = _error_lines(result.output)
    assert line.startswith("error: the disk is full: cannot write evidence to "), line
    assert "Nothing is lost" in line
    assert "[evidence] dir" not in line          # not a wrong setting: advice to change it would mislead
    assert not list((tmp_path / "evidence").glob(".incoming-*"))   # no half-written files left

    evidence_disk_full.off()                    # space is freed; the same command again
    cli("ingest", SAMPLES)
    assert (_categories(cli), sorted(p.name for p in (tmp_path / "evidence").iterdir())) == clean_result


@pytest.mark.sqlite_only("SQLite's own full-database error (max_page_count)")
def test_a_full_database_disk_during_ingest_is_one_line_and_loses_nothing(cli, database_full, clean_result):
    cli("status")                               # the database exists, then the disk fills up
    database_full.on()
    result = cli("ingest", SAMPLES, expect=1)
    [line] = _error_lines(result.output)
    assert line.startswith("error: the disk is full: cannot write to the database "), line
    assert "Traceback" not in result.output

    database_full.off()
    cli("ingest", SAMPLES)
    assert _categories(cli) == clean_result[0]


def _deliver_some(dovecot, count: int = 3) -> list[bytes]:
    mails = [meta_mail(REFUSAL, to=f"person{n}@example.org", subject=f"Your objection {'x' * 200}",
                       message_id=f"<refusal-{n}@facebookmail.com>") for n in range(count)]
    for raw in mails:
        dovecot.deliver("alice", raw)
    return mails


@pytest.mark.dovecot
def test_a_full_disk_for_evidence_during_poll_is_one_line_and_loses_nothing(imap_config, dovecot, cli,
                                                                            evidence_disk_full):
    _deliver_some(dovecot)
    evidence_disk_full.on()
    result = cli("poll", "--once", expect=1)
    [line] = _error_lines(result.stderr)
    assert line.startswith("error: account alice: folder INBOX: the disk is full: cannot write evidence to"), line
    assert _rows(imap_config, "SELECT count(*) FROM message") == [(0,)]

    evidence_disk_full.off()
    cli("poll", "--once")
    assert _rows(imap_config, "SELECT count(*) FROM message WHERE category = 'rejected'") == [(3,)]


@pytest.mark.dovecot
@pytest.mark.sqlite_only("SQLite's own full-database error (max_page_count)")
def test_a_full_database_disk_during_poll_is_one_line_and_loses_nothing(imap_config, dovecot, cli, database_full):
    cli("status")
    _deliver_some(dovecot, 40)   # more than the empty tables' first pages hold
    database_full.on()
    result = cli("poll", "--once", expect=1)
    [line] = _error_lines(result.stderr)
    assert "the disk is full: cannot write to the database" in line, line
    assert line.startswith("error: "), line

    database_full.off()
    cli("poll", "--once")
    assert _rows(imap_config, "SELECT count(*) FROM message WHERE category = 'rejected'") == [(40,)]


def test_status_on_a_full_disk_still_shows_what_is_recorded(cli, monkeypatch):
    """`status` queues the alerts that time causes before it shows the table: on a full disk that
    write fails, and the person still sees their requests, with one line saying why alerts wait."""
    from sqlalchemy.exc import OperationalError

    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-01-31")

    def full(*_args, **_kwargs):
        raise OperationalError("INSERT INTO alert ...", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr("tracker.alerts.run_checks", full)
    result = cli("status")
    assert "overdue" in result.output
    [warning] = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert "the disk is full" in warning and "Traceback" not in result.output
    [request] = cli.json("status", "--json")["requests"]
    assert (request["address"], request["overdue"]) == ("anna@example.org", True)


def test_daemon_reports_a_full_disk_after_a_poll_in_one_line(tmp_path, caplog, database_url):
    import errno
    import logging
    import socket as socket_module

    from tracker.config import settings_from_dict
    from tracker.daemon import Daemon

    with socket_module.socket() as probe:  # a port nobody listens on: the poll fails at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings_from_dict({
        "database": {"url": database_url},
        "evidence": {"dir": str(tmp_path / "evidence")},
        "accounts": [{"name": "alice", "host": "127.0.0.1", "port": port, "tls": "none",
                      "username": "alice", "password_env": "NO_SUCH_VARIABLE_SET"}],
    })

    def alerts_on_a_full_disk():
        raise OSError(errno.ENOSPC, "No space left on device")

    daemon = Daemon(store.Store(settings.database.resolved_url()), settings, after_poll=alerts_on_a_full_disk)
    with caplog.at_level(logging.ERROR):
        daemon._poll(settings.accounts[0])
    full = [record for record in caplog.records if "disk is full" in record.getMessage()]
    assert full and all(record.exc_info is None for record in full)
