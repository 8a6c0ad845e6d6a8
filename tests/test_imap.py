"""IMAP accounts against a real Dovecot: read-only, incremental, exactly once, and clear when it fails.

Every test talks to the throwaway server of the ``dovecot`` fixture
(tests/dovecot_server.py). Mails are written straight into its Maildirs, or
saved through Dovecot when a test needs the server to notice them at once.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import IMAP_USERS, db_rows, imap_account_toml, running_dovecot
from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail
from tracker.config import load_settings
from tracker.sources.imap import ImapConnection
from tracker.store import Store
from tracker.sync import FolderLease, Poller

pytestmark = pytest.mark.dovecot

REPO = Path(__file__).resolve().parents[1]


# ---- helpers ----------------------------------------------------------------

def unrelated_mail(n: int) -> bytes:
    return meta_mail(f"Minutes of meeting {n}.", sender=f"colleague{n}@example.org", display="A Colleague",
                     subject=f"Meeting {n}", auth=None, message_id=f"<meeting-{n}@example.org>")


def refusal(n: int) -> bytes:
    return meta_mail(REFUSAL, to=f"person{n}@example.org", subject="Your objection",
                     message_id=f"<refusal-{n}@facebookmail.com>")


def impersonation(n: int) -> bytes:
    return meta_mail("Confirm your account now or it will be disabled.", sender="security@facebook-help.net",
                     display="Facebook Security", subject=f"Action needed {n}", auth=None,
                     message_id=f"<fake-{n}@facebook-help.net>")


def acknowledgement(n: int) -> bytes:
    """Dated today, so the request it opens is not overdue (which would queue an alert of its own)."""
    return meta_mail(ACKNOWLEDGEMENT, to=f"person{n}@example.org", subject="We received your request",
                     message_id=f"<ack-{n}@facebookmail.com>", date=datetime.now(timezone.utc))


def open_store(config: Path) -> Store:
    return Store(load_settings(config).database.resolved_url())


def rows(config: Path, query: str) -> list[tuple]:
    """Read the tracker's database directly, as a second process would."""
    return db_rows(config, query)


def poller(config: Path, **kwargs) -> Poller:
    settings = load_settings(config)
    return Poller(open_store(config), settings, **kwargs)


def run_cli(config: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tracker", "--config", str(config), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_messages(config: Path, process: subprocess.Popen, at_least: int) -> None:
    """Until the poller in ``process`` has committed ``at_least`` mails (or has ended)."""
    while process.poll() is None and rows(config, "SELECT count(*) FROM message")[0][0] < at_least:
        time.sleep(0.01)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# ---- the everyday poll ----------------------------------------------------------

def test_poll_once_twice_records_each_meta_mail_once_and_changes_no_flag(dovecot, imap_config, cli):
    for n in range(3):
        dovecot.deliver("alice", refusal(n), flags="S" if n == 0 else "")
    dovecot.deliver("alice", acknowledgement(7), flags="F")
    for n in range(5):
        dovecot.deliver("alice", unrelated_mail(n), flags="S" if n % 2 else "")
    dovecot.deliver("alice", impersonation(1), folder="Junk")
    flags_before = {folder: dovecot.flags_of("alice", folder) for folder in ("INBOX", "Junk")}

    first = cli("poll", "--once")
    second = cli("poll", "--once")

    assert "alice: 5 new mail(s)" in first.stdout
    assert "alice: 0 new mail(s)" in second.stdout and "0 fetched" in second.stdout
    recorded = rows(imap_config, "SELECT folder, category FROM message ORDER BY folder, uid")
    assert sorted(recorded) == sorted([("INBOX", "rejected")] * 3 + [("INBOX", "acknowledgement"),
                                                                      ("Junk", "suspicious")])
    assert {folder: dovecot.flags_of("alice", folder) for folder in ("INBOX", "Junk")} == flags_before
    status = cli.json("status", "--json")
    alice = next(a for a in status["accounts"] if a["name"] == "alice")
    assert alice["last_success"] is not None and alice["last_error"] is None
    assert alice["messages_seen"] == 5


def test_a_poll_with_nothing_new_fetches_nothing_and_costs_the_same_on_a_bigger_folder(dovecot, imap_config):
    dovecot.deliver("alice", refusal(1))
    poller(imap_config).poll_all()

    idle_small = poller(imap_config).poll_all()[0].traffic
    for n in range(300):
        dovecot.deliver("alice", unrelated_mail(n))
    after_growth = poller(imap_config).poll_all()[0]
    idle_big = poller(imap_config).poll_all()[0].traffic

    assert after_growth.new == 0 and after_growth.traffic.fetch_commands == 0  # searched, nothing to fetch
    for idle in (idle_small, idle_big):
        assert idle.fetch_commands == 0 and idle.messages_fetched == 0
    assert idle_big.commands == idle_small.commands  # login, list, one STATUS per folder
    # STATUS numbers grew by digits, and Dovecot's replies carry their own timings ("(0.001 + 0.000 secs)").
    assert idle_big.bytes_received <= idle_small.bytes_received + 64


def test_first_sync_fetches_only_mail_that_mentions_meta_and_respects_since(dovecot, config_file, monkeypatch):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", IMAP_USERS["alice"])
    config_file.write_text(config_file.read_text() + imap_account_toml(dovecot, since="2025-01-01"))
    old = datetime(2024, 6, 1, tzinfo=timezone.utc).timestamp()
    dovecot.deliver("alice", refusal(1), received=old)   # before `since`: left on the server
    dovecot.deliver("alice", refusal(2))
    dovecot.deliver("alice", impersonation(3))
    for n in range(40):
        dovecot.deliver("alice", unrelated_mail(n))

    result = poller(config_file).poll_all()[0]

    assert result.error is None
    assert result.traffic.messages_fetched == 2
    assert sorted(rows(config_file, "SELECT dedupe_id FROM message")) == [
        ("fake-3@facebook-help.net",), ("refusal-2@facebookmail.com",)]


@pytest.mark.parametrize("tls", ["starttls", "none"])
def test_starttls_and_plain_loopback_connections_work(dovecot, config_file, monkeypatch, tls):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", IMAP_USERS["alice"])
    config_file.write_text(config_file.read_text() + imap_account_toml(dovecot, port=dovecot.port, tls=tls))
    dovecot.deliver("alice", refusal(1))

    result = poller(config_file).poll_all()[0]

    assert (result.error, result.new) == (None, 1)


def test_xoauth2_login_uses_the_token_that_oauth2_token_command_prints(config_file):
    tokens_seen = []

    class TokenIntrospection(http.server.BaseHTTPRequestHandler):
        """The identity provider's RFC 7662 endpoint, which Dovecot asks about each token."""

        def do_POST(self):
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            token = form.get("token", [""])[0]
            tokens_seen.append(token)
            answer = {"active": "true", "username": "alice"} if token == "token-for-alice" else {"active": "false"}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    provider = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenIntrospection)
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{provider.server_address[1]}/introspect"
    try:
        with running_dovecot(oauth2_introspection_url=url) as server:
            server.deliver("alice", refusal(1))
            config_file.write_text(config_file.read_text() + imap_account_toml(
                server, password_env=None, oauth2_token_command="printf token-for-alice"))
            result = poller(config_file).poll_all()[0]
    finally:
        provider.shutdown()

    assert (result.error, result.new) == (None, 1)
    assert tokens_seen == ["token-for-alice"]


# ---- faults -----------------------------------------------------------------

class StopsServerMidFetch(ImapConnection):
    """Stops the real server once this many bytes have come in: in the middle of a FETCH response."""

    def __init__(self, account, server, after_bytes: int):
        super().__init__(account)
        self.server, self.after_bytes = server, after_bytes

    def received(self, count: int) -> None:
        super().received(count)
        if self.traffic.fetch_commands and self.traffic.bytes_received > self.after_bytes and self.server.running:
            self.server.stop()


def test_server_stopped_during_a_fetch_the_next_poll_completes_with_nothing_lost_or_doubled(dovecot, imap_config):
    for n in range(60):
        dovecot.deliver("alice", refusal(n))
    broken = poller(imap_config, connect=lambda account: StopsServerMidFetch(account, dovecot, after_bytes=30_000))

    interrupted = broken.poll_all()[0]
    recorded_before = rows(imap_config, "SELECT count(*) FROM message")[0][0]
    dovecot.start()
    resumed = poller(imap_config).poll_all()[0]

    assert interrupted.error.startswith("account alice: connection to 127.0.0.1:")
    assert "\n" not in interrupted.error
    assert 0 < recorded_before < 60
    assert resumed.error is None and resumed.new == 60 - recorded_before and resumed.duplicates == 0
    assert rows(imap_config, "SELECT count(*), count(DISTINCT uid) FROM message") == [(60, 60)]
    assert rows(imap_config, "SELECT consecutive_failures, last_error IS NOT NULL FROM account") == [(0, 1)]


def test_killed_poller_restarted_records_every_mail_and_alert_exactly_once(dovecot, imap_config):
    """A 1,000-mail first sync stopped by SIGTERM once, then SIGKILLed at random points, then run to the end."""
    open_store(imap_config)  # the database exists before the first poller starts
    mails = [refusal(n) if n % 3 == 0 else impersonation(n) if n % 3 == 1 else acknowledgement(n)
             for n in range(1000)]
    for raw in mails:
        dovecot.deliver("alice", raw)
    seed = random.randrange(1_000_000)
    kill_at = sorted(random.Random(seed).sample(range(20, 980), 3))

    # SIGTERM first: the mail being recorded is committed, then the poller exits 0.
    polite = run_cli(imap_config, "poll", "--once")
    wait_for_messages(imap_config, polite, at_least=10)
    polite.send_signal(signal.SIGTERM)
    out, err = polite.communicate(timeout=60)
    assert polite.returncode == 0 and "INBOX" in out and "stopped early" in out, (out, err)
    for target in kill_at:
        process = run_cli(imap_config, "poll", "--once")
        wait_for_messages(imap_config, process, at_least=target)
        process.send_signal(signal.SIGKILL)
        process.communicate()
    final = run_cli(imap_config, "poll", "--once")
    out, err = final.communicate(timeout=120)

    assert final.returncode == 0, (seed, err)
    assert rows(imap_config, "SELECT count(*), count(DISTINCT uid), count(DISTINCT dedupe_id) FROM message") \
        == [(1000, 1000, 1000)], seed
    refusals, impersonations = len(range(0, 1000, 3)), len(range(1, 1000, 3))
    assert rows(imap_config, "SELECT reason, count(*), count(DISTINCT key) FROM alert "
                             "WHERE sent_at IS NULL GROUP BY reason ORDER BY reason") == [
        ("impersonation", impersonations, impersonations), ("refused", refusals, refusals)], seed
    assert rows(imap_config, "SELECT last_uid FROM checkpoint WHERE folder = 'INBOX'") == [(1000,)]


def test_recreated_folder_new_uidvalidity_is_read_again_without_duplicates(dovecot, imap_config):
    for n in range(3):
        dovecot.deliver("alice", impersonation(n), folder="Junk")
    poller(imap_config).poll_all()
    (uidvalidity_before,) = rows(imap_config, "SELECT uidvalidity FROM checkpoint WHERE folder = 'Junk'")[0]

    dovecot.recreate_folder("alice", "Junk")
    for n in range(4):  # the same three mails come back, and one more
        dovecot.deliver("alice", impersonation(n), folder="Junk")
    result = poller(imap_config).poll_all()[0]

    junk = next(f for f in result.folders if f.folder == "Junk")
    assert junk.resynced and (junk.new, junk.duplicates) == (1, 3)
    assert rows(imap_config, "SELECT count(*), count(DISTINCT dedupe_id) FROM message") == [(4, 4)]
    (uidvalidity_after,) = rows(imap_config, "SELECT uidvalidity FROM checkpoint WHERE folder = 'Junk'")[0]
    assert uidvalidity_after != uidvalidity_before


@pytest.mark.parametrize("setting, expected", [
    ({"password_env": "WRONG_PASSWORD"}, "refused the login for alice"),
    ({"password_env": "UMLAUT_PASSWORD"}, "characters other than ASCII"),
    ({"port": "closed"}, "refused the connection"),
    ({"ca_file": None}, "certificate of 127.0.0.1"),
    ({"host": "no-such-host.invalid"}, "unknown host 'no-such-host.invalid'"),
], ids=["wrong password", "non-ASCII password", "wrong port", "untrusted certificate", "unknown host"])
def test_a_broken_account_gives_one_clear_error_line_naming_it(dovecot, config_file, monkeypatch, setting,
                                                               expected):
    from dovecot_server import free_port

    monkeypatch.setenv("ALICE_IMAP_PASSWORD", IMAP_USERS["alice"])
    monkeypatch.setenv("WRONG_PASSWORD", "not-the-password")
    monkeypatch.setenv("UMLAUT_PASSWORD", "pässwörd")
    overrides = {key: free_port() if value == "closed" else value for key, value in setting.items()}
    config_file.write_text(config_file.read_text() + imap_account_toml(dovecot, **overrides))

    process = run_cli(config_file, "poll", "--once")
    _out, err = process.communicate(timeout=60)

    assert process.returncode == 1
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: account alice: ") and expected in lines[0], lines[0]
    assert IMAP_USERS["alice"] not in err and "not-the-password" not in err and "ä" not in err
    assert rows(config_file, "SELECT consecutive_failures FROM account WHERE name = 'alice'") == [(1,)]
    # Only a refused login raises the "cannot log in" alert at once; other faults wait three intervals.
    login_alerts = rows(config_file, "SELECT title FROM alert WHERE reason = 'mailbox_failing'")
    assert login_alerts == ([("The tracker cannot log in to mailbox alice",)] if "password" in str(setting) else [])


def test_a_folder_the_server_refuses_is_reported_and_the_other_folders_are_still_read(dovecot, config_file,
                                                                                    monkeypatch, cli):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", IMAP_USERS["alice"])
    config_file.write_text(config_file.read_text()
                           + imap_account_toml(dovecot, folders=["NoSuchFolder", "INBOX"]))
    dovecot.deliver("alice", refusal(1))

    result = cli("poll", "--once", expect=1)

    (line,) = error_lines(result.stderr)
    assert line.startswith("error: account alice: error from the server while asking for the status of "
                           "NoSuchFolder: ")
    assert rows(config_file, "SELECT dedupe_id FROM message") == [("refusal-1@facebookmail.com",)]


def test_debug_logs_never_show_the_password(dovecot, imap_config):
    dovecot.deliver("alice", refusal(1))

    process = run_cli(imap_config, "-vvv", "poll", "--once")
    _out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err
    assert "LOGIN" in err  # the protocol exchange is logged at -vvv...
    assert IMAP_USERS["alice"] not in err  # ...without the password


# ---- locks ------------------------------------------------------------------

def test_two_pollers_started_together_never_read_the_same_folder_at_once(dovecot, imap_config):
    for n in range(150):
        dovecot.deliver("alice", refusal(n))
    open_store(imap_config)

    processes = [run_cli(imap_config, "poll", "--once") for _ in range(2)]
    outcomes = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in processes]

    assert [code for code, _out, _err in outcomes] == [0, 0], outcomes
    # Between them each mail was fetched and recorded once: the second poller
    # found the folder leased (or already done), never a mail the first one had.
    outputs = " ".join(out for _code, out, _err in outcomes)
    assert sorted(int(word) for word in re.findall(r"alice: (\d+) new", outputs)) == [0, 150], outputs
    assert "already known" not in outputs
    assert rows(imap_config, "SELECT count(*), count(DISTINCT uid) FROM message") == [(150, 150)]


def test_a_folder_lease_keeps_out_a_second_poller_until_released(new_database_url):
    db = Store(new_database_url("lease"))
    first, second = FolderLease(db, "alice/INBOX"), FolderLease(db, "alice/INBOX")

    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()


def test_the_lease_of_a_killed_poller_is_taken_over_at_once(new_database_url):
    db = Store(new_database_url("lease"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = FolderLease(db, "alice/INBOX")
    orphan.holder = orphan.holder.replace(f":{os.getpid()}:", f":{dead.pid}:")
    assert orphan.acquire()

    assert FolderLease(db, "alice/INBOX").acquire()


# ---- the daemon -------------------------------------------------------------

def test_daemon_with_idle_records_a_new_mail_within_5_seconds_and_exits_0_on_sigterm(dovecot, config_file,
                                                                                    monkeypatch):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", IMAP_USERS["alice"])
    # An hour between scheduled polls: only IDLE can bring the mail in time.
    config_file.write_text(config_file.read_text() + imap_account_toml(dovecot, idle=True)
                           + "\n[daemon]\ninterval_minutes = 60\njitter_seconds = 0\n")
    open_store(config_file)
    process = run_cli(config_file, "-v", "daemon")
    try:
        deadline = time.monotonic() + 30
        while not rows(config_file, "SELECT 1 FROM account WHERE last_success_at IS NOT NULL"):
            assert process.poll() is None and time.monotonic() < deadline, "the daemon's first poll failed"
            time.sleep(0.05)
        time.sleep(1.0)  # let the watcher settle into IDLE

        dovecot.append("alice", refusal(42))
        appended = time.monotonic()
        while not rows(config_file, "SELECT 1 FROM message"):
            assert time.monotonic() - appended < 5, "mail not recorded within 5 s of arriving"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert rows(config_file, "SELECT dedupe_id FROM message") == [("refusal-42@facebookmail.com",)]


def test_a_folder_that_fails_is_reported_and_picked_up_again_once_fixed(dovecot, imap_config):
    # The evidence folder cannot be created (a file stands in its way): the Meta mail
    # cannot be kept, so it must not be passed over either.
    blocker = imap_config.parent / "blocker"
    blocker.write_text("")
    good = imap_config.read_text()
    imap_config.write_text(good.replace(f'dir = "{imap_config.parent / "evidence"}"',
                                        f'dir = "{blocker / "evidence"}"'))
    dovecot.deliver("alice", refusal(1))

    process = run_cli(imap_config, "poll", "--once")
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    [line] = error_lines(err)
    assert line.startswith("error: account alice: folder INBOX: cannot write evidence to"), line
    assert rows(imap_config, "SELECT count(*) FROM message") == [(0,)]
    assert rows(imap_config, "SELECT consecutive_failures FROM account WHERE name = 'alice'") == [(1,)]

    imap_config.write_text(good)
    process = run_cli(imap_config, "poll", "--once")
    process.communicate(timeout=60)
    assert process.returncode == 0
    assert rows(imap_config, "SELECT category FROM message") == [("rejected",)]
