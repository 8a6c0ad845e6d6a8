"""Concurrency: parallel polls, the overdue check, and the person's commands while a poll runs.

Real parts throughout: a SQLite file, the daemon's parallel account threads or
separate processes, the test Dovecot (tests/dovecot_server.py), the CLI, and a
local webhook that receives the alerts. The one fault injected is a slow
classification (a hostile mail that takes long to read), by wrapping the rules
engine's ``classify`` as the ingest module calls it: a real mail cannot be made
to take a chosen time to read on demand.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import db_rows, imap_account_toml
from mails import REFUSAL, meta_mail
from tracker import ingest, store
from tracker.cli import app
from tracker.config import load_settings
from tracker.daemon import Daemon
from tracker.ingest import Ingestor
from tracker.sources.local import LocalSource
from tracker.store import Store
from tracker.sync import Poller

REPO = Path(__file__).resolve().parents[1]

ANNA = "anna@example.org"
# Anna objected on 1 May 2025: Meta had to decide by 1 June. Its refusal came on 20 June.
SUBMITTED = "2025-05-01"
REFUSAL_DATE = datetime(2025, 6, 20, 9, 0, tzinfo=timezone.utc)
NOT_DECIDED = "has not decided"      # in the title of an overdue alert
REFUSED = "Meta refused your"        # in the title of a refusal alert


# ---- helpers ----------------------------------------------------------------

def anna_refusal() -> bytes:
    return meta_mail(REFUSAL, to=ANNA, subject="Your objection", date=REFUSAL_DATE,
                     message_id="<refusal-anna@facebookmail.com>")


def impersonation() -> bytes:
    return meta_mail("Confirm your account now or it will be disabled.", sender="security@facebook-help.net",
                     display="Facebook Security", subject="Action needed", auth=None,
                     message_id="<fake-1@facebook-help.net>")


def database_url(config: Path) -> str:
    return load_settings(config).database.resolved_url()


def rows(config: Path, query: str) -> list[tuple]:
    """Read the tracker's database directly, as another process would."""
    return db_rows(config, query)


def open_store(config: Path) -> Store:
    return Store(load_settings(config).database.resolved_url())


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def drop_closed_log_handlers() -> None:
    """The CLI runs above pointed the root logger at their captured, now closed, stderr."""
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(getattr(h, "stream", None), "closed", False)]


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def run_cli(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tracker", "--config", str(config), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Webhook:
    """A json:// receiver on loopback. ``hold`` keeps the first delivery waiting until released."""

    def __init__(self, hold: bool = False):
        self.port = free_port()
        self.titles: list[str] = []
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                receiver.first_arrived.set()
                receiver.release.wait(timeout=20)
                receiver.titles.append(body.get("title", ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    receiver = Webhook()
    yield receiver
    receiver.close()


def with_alerts(config: Path, *urls: str) -> None:
    with config.open("a") as handle:
        handle.write(f"\n[alerts]\nurls = {json.dumps(list(urls))}\n")


def slow_classification(monkeypatch, seconds: float | None = None, until: threading.Event | None = None,
                        started: threading.Event | None = None) -> None:
    """Reading a mail takes ``seconds`` (or until ``until`` is set): the injected fault."""
    real = ingest.classify

    def classify(mail, rules, settings):
        if started is not None:
            started.set()
        if until is not None:
            until.wait(timeout=60)
        if seconds:
            time.sleep(seconds)
        return real(mail, rules, settings)

    monkeypatch.setattr(ingest, "classify", classify)


HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1].removeprefix("sqlite:///"), isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""

# PostgreSQL has no lock on the whole database: EXCLUSIVE on every table keeps out every writer
# and lets readers read, as SQLite's write lock does.
HOLD_LOCK_POSTGRESQL = """
import sys, time
from sqlalchemy import create_engine, inspect, text
engine = create_engine(sys.argv[1])
with engine.connect() as connection:
    tables = ", ".join(f'"{name}"' for name in inspect(connection).get_table_names())
    connection.execute(text(f"LOCK TABLE {tables} IN EXCLUSIVE MODE"))
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    connection.rollback()
"""


def hold_write_lock(config: Path, seconds: float) -> subprocess.Popen:
    """Another process keeps every writer out for ``seconds`` (a stuck writer, a backup...)."""
    url = database_url(config)
    script = HOLD_LOCK_POSTGRESQL if url.startswith("postgresql") else HOLD_LOCK
    holder = subprocess.Popen([sys.executable, "-c", script, url, str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


# ---- the overdue check and a decision recorded at the same time -------------------------

def test_parallel_account_polls_never_leave_an_overdue_alert_for_a_request_that_is_decided(
        dovecot, imap_config, cli, monkeypatch, webhook):
    """The daemon polls alice and bob in parallel threads. Bob's poll ends with the overdue
    check while alice's poll is still reading Meta's refusal of the same request."""
    with imap_config.open("a") as handle:
        handle.write(imap_account_toml(dovecot, "bob"))
    with_alerts(imap_config, webhook.url)
    cli("request", "add", "--address", ANNA, "--platform", "facebook", "--date", SUBMITTED)
    dovecot.deliver("alice", anna_refusal())
    slow_classification(monkeypatch, seconds=1.5)

    def bob_is_done() -> bool:
        return bool(rows(imap_config, "SELECT 1 FROM account WHERE name = 'bob' AND last_success_at IS NOT NULL"))

    def progress(account: str, _folder: str, done: int, _total: int) -> None:
        if account == "alice" and done == 0:
            # Alice's poll has found the refusal; it goes on once bob's poll has recorded its
            # result, so bob's overdue check runs while the refusal is being read and written.
            wait_until(bob_is_done, what="bob's poll")

    polls_done = []

    def after_poll() -> None:
        polls_done.append(1)
        if len(polls_done) == 2:  # both accounts polled once: stop, as SIGTERM would
            daemon.stop.set()

    daemon = Daemon(open_store(imap_config), load_settings(imap_config), progress=progress, after_poll=after_poll)
    safety_net = threading.Timer(60, daemon.stop.set)  # never hang the test run
    safety_net.start()
    drop_closed_log_handlers()
    try:
        daemon.run()
    finally:
        safety_net.cancel()
    assert len(polls_done) == 2

    assert rows(imap_config, "SELECT name, consecutive_failures FROM account ORDER BY name") == [
        ("alice", 0), ("bob", 0)]
    assert rows(imap_config, "SELECT state FROM request") == [("rejected",)]
    # Nothing in the outbox says Meta has not decided...
    assert rows(imap_config, f"SELECT title FROM alert WHERE sent_at IS NULL AND title LIKE '%{NOT_DECIDED}%'") == []
    # ...and what the person receives is the refusal, not a stale "Meta has not decided".
    cli("alerts", "send")
    assert [title for title in webhook.titles if NOT_DECIDED in title] == []
    assert [title for title in webhook.titles if REFUSED in title] == [
        f"{REFUSED} Facebook request ({ANNA})"]


def test_a_refusal_withdraws_the_waiting_overdue_alert_in_the_transaction_that_records_it(cli, config_file,
                                                                                         tmp_path):
    cli("request", "add", "--address", ANNA, "--platform", "facebook", "--date", SUBMITTED)
    cli("status")  # the check queues "overdue": nothing from Meta yet
    assert rows(config_file, "SELECT reason FROM alert WHERE sent_at IS NULL") == [("overdue",)]
    mail = tmp_path / "refusal.eml"
    mail.write_bytes(anna_refusal())

    # The refusal alone, with no check after it (as a poller records it, before its own check).
    Ingestor(open_store(config_file), load_settings(config_file)).ingest(LocalSource([mail]))

    assert rows(config_file, "SELECT state FROM request") == [("rejected",)]
    assert rows(config_file, "SELECT reason FROM alert WHERE sent_at IS NULL") == [("refused",)]


def test_an_overdue_alert_is_not_sent_when_the_request_is_decided_by_the_time_it_is_sent(
        cli, config_file, tmp_path):
    """A sender is delivering the outbox when the person records a complaint (a decision)."""
    cli("request", "add", "--address", ANNA, "--platform", "facebook", "--date", SUBMITTED)
    fake = tmp_path / "fake.eml"
    fake.write_bytes(impersonation())
    cli("ingest", fake)  # queues the impersonation warning, then the check queues "overdue"
    assert [reason for (reason,) in rows(config_file, "SELECT reason FROM alert WHERE sent_at IS NULL "
                                                      "ORDER BY id")] == ["impersonation", "overdue"]
    receiver = Webhook(hold=True)
    try:
        with_alerts(config_file, receiver.url)
        sender = run_cli(config_file, "alerts", "send")
        if not receiver.first_arrived.wait(timeout=30):
            sender.kill()
            raise AssertionError(f"the sender did not deliver the first alert: {sender.communicate()}")
        # While the first alert is on its way, the person complains about the missing answer.
        cli("complaint", "filed", "1", "--authority", "IE", "--date", date.today().isoformat())
        receiver.release.set()
        out, err = sender.communicate(timeout=60)
    finally:
        receiver.close()

    assert sender.returncode == 0, (out, err)
    assert rows(config_file, "SELECT state FROM request") == [("complaint_filed",)]
    assert [title for title in receiver.titles if NOT_DECIDED in title] == [], receiver.titles
    assert len(receiver.titles) == 1 and "pretends to come from Meta" in receiver.titles[0]
    assert rows(config_file, "SELECT reason FROM alert WHERE sent_at IS NULL") == []


# ---- the write lock: held only for the short write -------------------------------------

def test_request_add_during_a_long_classification_in_a_poll_succeeds_at_once(dovecot, imap_config, cli,
                                                                             monkeypatch):
    dovecot.deliver("alice", meta_mail(REFUSAL, to="ben@example.org", subject="Your objection",
                                       message_id="<refusal-ben@facebookmail.com>"))
    open_store(imap_config)
    reading, added = threading.Event(), threading.Event()
    slow_classification(monkeypatch, until=added, started=reading)
    results = []
    drop_closed_log_handlers()
    poll = threading.Thread(target=lambda: results.extend(
        Poller(open_store(imap_config), load_settings(imap_config)).poll_all()))
    poll.start()
    try:
        assert reading.wait(timeout=30), "the poll never reached the classification"
        started = time.monotonic()
        added_result = cli.runner.invoke(
            app, ["--config", str(imap_config), "request", "add", "--address", ANNA, "--platform", "instagram",
             "--date", SUBMITTED])
        took = time.monotonic() - started
    finally:
        added.set()
        poll.join(timeout=90)

    assert added_result.exit_code == 0, (added_result.output, added_result.exception)
    assert "Request #1 added" in added_result.stdout
    assert took < 5, f"request add waited {took:.1f} s for the poll"
    [alice] = results
    assert alice.error is None and alice.new == 1
    assert sorted(rows(imap_config, "SELECT address, platform, state FROM request")) == [
        (ANNA, "instagram", "submitted"), ("ben@example.org", "facebook", "rejected")]


def test_a_writer_that_holds_the_database_too_long_gives_one_line_not_a_traceback(cli, config_file, monkeypatch):
    cli("status")  # the database exists
    monkeypatch.setattr(store, "BUSY_TIMEOUT_SECONDS", 1.0, raising=False)  # wait 1 s, not 30 s, in this test
    holder = hold_write_lock(config_file, 45)
    try:
        result = cli("request", "add", "--address", ANNA, "--platform", "facebook", expect=1)
    finally:
        holder.kill()
        holder.wait()

    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: the database ") and "busy" in lines[0], lines[0]
    assert "Traceback" not in result.output and "SQL" not in lines[0]
    cli("request", "add", "--address", ANNA, "--platform", "facebook")  # once free, it works


def test_a_poll_waits_out_a_writer_that_holds_the_database_past_one_wait(dovecot, imap_config):
    """Held for longer than one 30 s wait (SQLite's busy timeout, PostgreSQL's lock_timeout): the
    poll retries with backoff and finishes."""
    dovecot.deliver("alice", meta_mail(REFUSAL, to="ben@example.org", subject="Your objection",
                                       message_id="<refusal-ben@facebookmail.com>"))
    open_store(imap_config)
    holder = hold_write_lock(imap_config, 34)
    try:
        process = run_cli(imap_config, "poll", "--once")
        out, err = process.communicate(timeout=180)
    finally:
        holder.kill()
        holder.wait()

    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "alice: 1 new mail(s)" in out, out
    assert rows(imap_config, "SELECT category FROM message") == [("rejected",)]
