"""The database under the tracker: SQLite or PostgreSQL, the same behaviour on both.

The tests that need a PostgreSQL server are marked ``postgresql_only``: they run when
PRIVACY_TRACKER_TEST_DATABASE_URL names one (scripts/test_postgres.sh, the second pass of
.ci/run). The others run against whichever database the run uses.
"""

from __future__ import annotations

import socket
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import make_url
from sqlmodel import select

from conftest import TEST_DATABASE_URL, Cli, db_rows
from tracker import store
from tracker.models import Alert, Event
from tracker.store import Store

# Logs in with a password: scripts/test_postgres.sh makes the server ask this role for one.
PASSWORD_ROLE = "tracker_password_test"
PASSWORD = "s3cret-Pa55word"


def config_with(tmp_path, url: str) -> Cli:
    config = tmp_path / "pg.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[evidence]\ndir = "{tmp_path / "evidence"}"\n')
    return Cli(config)


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- on either database ---------------------------------------------------------------

def test_imap_numbers_up_to_their_protocol_limits_are_kept(database_url):
    """UIDs and UIDVALIDITY go up to 2**32 - 1, MODSEQ to 2**63 - 1: wider than PostgreSQL's INTEGER."""
    from tracker.models import Checkpoint

    db = Store(database_url)
    with db.session() as session:
        account = store.get_or_create_account(session, "alice", "imap.example.org", "alice")
        session.add(Checkpoint(account_id=account.id, folder="INBOX", uidvalidity=2**32 - 1,
                               last_uid=2**32 - 2, highestmodseq=2**63 - 1))
    with db.session() as session:
        [checkpoint] = session.exec(select(Checkpoint)).all()
    db.dispose()
    assert (checkpoint.uidvalidity, checkpoint.last_uid, checkpoint.highestmodseq) == (2**32 - 1, 2**32 - 2, 2**63 - 1)


def test_times_are_kept_as_utc_to_the_microsecond_and_come_back_the_same(database_url):
    """Stored naive, in UTC (SQLite's text; PostgreSQL's timestamp without time zone)."""
    db = Store(database_url)
    summer = datetime(2025, 6, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    with db.session() as session:
        request = store.add_request(session, "anna@example.org", "facebook", "ai_objection")
        store.add_event(session, request, "acknowledgement", summer)
        store.add_event(session, request, "rejected", last)
    with db.session() as session:
        stored = {e.kind: e.occurred_at for e in session.exec(select(Event))}
    db.dispose()

    assert stored["acknowledgement"] == datetime(2025, 6, 1, 10, 30, 15, 123456)
    assert stored["acknowledgement"].tzinfo is None
    assert store.utc(stored["acknowledgement"]) == summer
    assert store.utc(stored["rejected"]) == last


# ---- PostgreSQL --------------------------------------------------------------------------

@pytest.fixture
def password_role(new_database_url):
    """A role that must log in with PASSWORD, allowed to use one migrated test database."""
    url = new_database_url("password")
    db_rows(TEST_DATABASE_URL, f"DO $$BEGIN CREATE ROLE {PASSWORD_ROLE} LOGIN; "
                               f"EXCEPTION WHEN duplicate_object THEN NULL; END$$")
    db_rows(TEST_DATABASE_URL, f"ALTER ROLE {PASSWORD_ROLE} PASSWORD '{PASSWORD}'")
    db_rows(url, f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {PASSWORD_ROLE}")
    db_rows(url, f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {PASSWORD_ROLE}")
    yield make_url(url).set(username=PASSWORD_ROLE, password=None)
    db_rows(url, f"DROP OWNED BY {PASSWORD_ROLE}")
    db_rows(TEST_DATABASE_URL, f"DROP ROLE {PASSWORD_ROLE}")


@pytest.mark.postgresql_only
def test_a_postgresql_server_that_is_down_is_one_line_without_the_password(tmp_path):
    port = unused_port()
    cli = config_with(tmp_path, f"postgresql+psycopg://tracker:{PASSWORD}@127.0.0.1:{port}/tracker")

    line = one_error_line(cli("status", expect=1))

    assert line.startswith(f"error: cannot open database postgresql+psycopg://tracker:***@127.0.0.1:{port}/tracker: ")
    assert "refused" in line.lower(), line
    assert PASSWORD not in line


@pytest.mark.postgresql_only
def test_a_wrong_postgresql_password_is_one_line_without_the_password(tmp_path, password_role):
    wrong = "not-the-Pa55word"
    cli = config_with(tmp_path, password_role.set(password=wrong).render_as_string(hide_password=False))

    line = one_error_line(cli("status", expect=1))

    assert line.startswith(f"error: cannot open database postgresql+psycopg://{PASSWORD_ROLE}:***@"), line
    assert "password authentication failed" in line, line
    assert wrong not in line and PASSWORD not in line


@pytest.mark.postgresql_only
def test_the_postgresql_password_can_stay_out_of_the_config(tmp_path, password_role, monkeypatch):
    """libpq reads PGPASSWORD (or ~/.pgpass): the config names no secret, as for mailboxes."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    cli = config_with(tmp_path, password_role.render_as_string(hide_password=False))

    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-05-01")

    [request] = cli.json("status", "--json")["requests"]
    assert (request["address"], request["deadline"]) == ("anna@example.org", "2025-06-01")


@pytest.mark.postgresql_only
def test_an_unknown_postgresql_database_is_one_line(tmp_path):
    url = make_url(TEST_DATABASE_URL).set(database="no_such_tracker_database")
    cli = config_with(tmp_path, url.render_as_string(hide_password=False))

    line = one_error_line(cli("status", expect=1))

    assert line.startswith("error: cannot open database postgresql+psycopg://"), line
    assert 'database "no_such_tracker_database" does not exist' in line, line


@pytest.mark.postgresql_only
def test_two_processes_checking_then_writing_at_once_queue_one_alert_not_two(database_url):
    """Each checks that no overdue alert is waiting, then queues one, both reading before either
    writes. SQLite lets one write at a time; on PostgreSQL (SERIALIZABLE) the transaction that
    would act on a stale read fails as DatabaseBusy, in one line, and done again it sees the other's."""
    both_read = threading.Barrier(2, timeout=30)
    busy: list[str] = []
    queued: list[bool] = []

    def process(name: str) -> None:
        db = Store(database_url)
        attempts = []

        def check_and_queue() -> bool:
            attempts.append(1)
            try:
                with db.write() as session:
                    waiting = session.exec(select(Alert).where(Alert.reason == "overdue")).first()
                    if len(attempts) == 1:
                        both_read.wait()
                    if waiting is None:
                        session.add(Alert(key=name, reason="overdue", title=name, body=""))
                    return waiting is None
            except store.DatabaseBusy as err:
                busy.append(str(err))
                raise

        queued.append(store.retry_busy(check_and_queue, "the test's check"))
        db.dispose()

    threads = [threading.Thread(target=process, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert db_rows(database_url, "SELECT count(*) FROM alert WHERE reason = 'overdue'") == [(1,)]
    assert sorted(queued) == [False, True]
    assert busy, "the crossing was not detected"
    for message in busy:
        [line] = message.splitlines()
        assert line.startswith("the database is busy: another privacy-tracker process changed the same "
                               "records at the same time"), line
