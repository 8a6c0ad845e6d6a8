"""Several workers share the mailboxes: each folder polled by one at a time, each mail, event and alert once.

Real parts throughout: the test Dovecot (tests/dovecot_server.py) with several
users, the tracker's database (a SQLite file, or PostgreSQL in the second pass of
.ci/run), real `privacy-tracker daemon` and `poll --once` processes, and a local
webhook that counts the alerts it receives.

A worker on another machine is played by a worker in a PID namespace of its own
(``unshare --pid``, root only, as Dovecot already is): the others cannot tell
whether its process still runs, exactly as with a worker on another machine, so
its folders are taken over only when its lease ends. The lease is made short
through the config: ``[daemon] lease_seconds``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conftest import imap_account_toml, in_ci, running_dovecot
from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail
from tracker import ingest
from tracker.config import load_settings
from tracker.store import Store
from tracker.sync import FolderLease, Poller, acquire_leases

pytestmark = pytest.mark.dovecot

REPO = Path(__file__).resolve().parents[1]
LEASE_SECONDS = 5
USERS = {f"w{n}": f"w{n}-imap-secret" for n in range(6)}


# ---- mail -------------------------------------------------------------------

def refusal(user: str, n: int) -> bytes:
    return meta_mail(REFUSAL, to=f"person{n % 30}@example.org", subject=f"Your objection ({user}-{n})",
                     date=datetime(2025, 6, 20, 9, 0, tzinfo=timezone.utc),
                     message_id=f"<refusal-{user}-{n}@facebookmail.com>")


def acknowledgement(user: str, n: int) -> bytes:
    """Dated now: the request it opens is not overdue (which would queue an alert of its own)."""
    return meta_mail(ACKNOWLEDGEMENT, to=f"person{n % 30}@example.org", subject=f"We received it ({user}-{n})",
                     date=datetime.now(timezone.utc), message_id=f"<ack-{user}-{n}@facebookmail.com>")


def impersonation(user: str, n: int) -> bytes:
    return meta_mail("Confirm your account now or it will be disabled.", sender="security@facebook-help.net",
                     display="Facebook Security", subject=f"Action needed ({user}-{n})", auth=None,
                     message_id=f"<fake-{user}-{n}@facebook-help.net>")


def unrelated(user: str, n: int) -> bytes:
    return meta_mail(f"Minutes of meeting {n}.", sender=f"colleague{n}@example.org", display="A Colleague",
                     subject=f"Meeting {n}", auth=None, message_id=f"<meeting-{user}-{n}@example.org>")


def fill(server, refusals: int, acknowledgements: int, impersonations: int, ordinary: int) -> dict[str, int]:
    """The same mix in every mailbox; returns the mails from Meta (or pretending) per folder key."""
    expected = {}
    for user in USERS:
        inbox = ([refusal(user, n) for n in range(refusals)]
                 + [acknowledgement(user, n) for n in range(acknowledgements)]
                 + [unrelated(user, n) for n in range(ordinary)])
        for raw in sorted(inbox, key=hash):  # interleaved, as mail arrives
            server.deliver(user, raw)
        for n in range(impersonations):
            server.deliver(user, impersonation(user, n), folder="Junk")
        expected[f"{user}/INBOX"] = refusals + acknowledgements
        expected[f"{user}/Junk"] = impersonations
    return expected


# ---- the parts around the workers ------------------------------------------------

class Receiver:
    """A json:// webhook on loopback that counts every alert it is sent, and knows when one is on its way."""

    def __init__(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.received: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self.last_answered = 0.0
        self.guard = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                with receiver.guard:
                    receiver.in_flight += 1
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with receiver.guard:
                    receiver.received[(body.get("title", ""), body.get("message", ""))] += 1
                self.send_response(200)
                self.end_headers()
                with receiver.guard:
                    receiver.in_flight -= 1
                    receiver.last_answered = time.monotonic()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def quiet_for(self, seconds: float) -> bool:
        """No alert on its way, and none answered in the last ``seconds``."""
        with self.guard:
            return self.in_flight == 0 and time.monotonic() - self.last_answered > seconds

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Database:
    """The tracker's database, read directly as another process would, through one engine."""

    def __init__(self, url: str):
        self.engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})

    def rows(self, query: str, **params) -> list[tuple]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query), params)]

    def one(self, query: str, **params):
        return self.rows(query, **params)[0][0]

    def recorded_in(self, key: str) -> int:
        account, folder = key.split("/", 1)
        return self.one("SELECT count(*) FROM message m JOIN account a ON a.id = m.account_id "
                        "WHERE a.name = :account AND m.folder = :folder", account=account, folder=folder)

    def close(self) -> None:
        self.engine.dispose()


def as_utc_naive(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def unshare_usable() -> tuple[bool, str]:
    if shutil.which("unshare") is None:
        return False, "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return False, "a worker in a PID namespace of its own needs root"
    return True, ""


def process_children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{pid}$", status, re.MULTILINE):
            children.append(int(entry.name))
    return children


class Worker:
    """A `privacy-tracker daemon` in a PID namespace of its own: to the others, a worker on another machine."""

    def __init__(self, config: Path, log: Path):
        self.log = log
        self.process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "tracker", "--config", str(config),
             "daemon"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        deadline = time.monotonic() + 30
        while not (children := process_children(self.process.pid)):
            assert self.process.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.01)
        self.pid = children[0]  # the daemon, as this test's namespace numbers it
        namespace = os.readlink(f"/proc/{self.pid}/ns/pid").removeprefix("pid:[").rstrip("]")
        self.machine = f"{socket.gethostname()}~{namespace}"  # how its leases name it (sync.this_machine)

    def holds(self, holder: str) -> bool:
        return holder.startswith(self.machine + ":")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        os.kill(self.pid, signal.SIGTERM)
        return self.process.wait(timeout=60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def write_config(config: Path, server, receiver: Receiver) -> None:
    with config.open("a") as handle:
        handle.write(f"\n[daemon]\ninterval_minutes = 1\njitter_seconds = 0\nlease_seconds = {LEASE_SECONDS}\n")
        handle.write(f"\n[alerts]\nurls = {json.dumps([receiver.url])}\n")
        for user in USERS:
            handle.write(imap_account_toml(server, user))


@pytest.fixture
def many_mailboxes(monkeypatch):
    with running_dovecot(USERS) as server:
        for user, password in USERS.items():
            monkeypatch.setenv(f"{user.upper()}_IMAP_PASSWORD", password)
        yield server


@pytest.fixture
def receiver():
    webhook = Receiver()
    yield webhook
    webhook.close()


# ---- the lease ------------------------------------------------------------------

def test_a_lease_is_claimed_by_exactly_one_of_many_workers_that_race_for_it(new_database_url):
    url = new_database_url("lease")
    Store(url).dispose()
    script = ("import sys; from tracker.store import Store; from tracker.sync import FolderLease\n"
              "db = Store(sys.argv[1]); sys.stdin.readline()\n"
              "print(FolderLease(db, 'w0/INBOX').acquire(), flush=True)")
    racers = [subprocess.Popen([sys.executable, "-c", script, url], cwd=REPO, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True) for _ in range(6)]
    for racer in racers:  # every racer has its database open: the claims start together
        racer.stdin.write("go\n")
    for racer in racers:
        racer.stdin.flush()
    answers = [racer.communicate(timeout=60)[0].strip() for racer in racers]

    assert sorted(answers) == ["False"] * 5 + ["True"], answers


def test_a_lease_of_a_worker_on_another_machine_is_taken_over_only_when_it_ends(new_database_url):
    db = Store(new_database_url("lease"))
    elsewhere = "other-machine~1:4242:abcdef12"
    assert acquire_leases(db, ["w0/INBOX", "w0/Junk"], elsewhere, seconds=2) == {"w0/INBOX", "w0/Junk"}

    ours = FolderLease(db, "w0/INBOX")
    assert not ours.acquire()  # its process cannot be looked at from here: alive for all we know
    time.sleep(2.2)
    assert ours.acquire()
    ours.release()
    db.dispose()


def test_a_worker_keeps_its_lease_through_a_mail_that_takes_longer_to_read_than_the_lease_lasts(
        many_mailboxes, config_file, receiver, monkeypatch):
    write_config(config_file, many_mailboxes, receiver)
    many_mailboxes.deliver("w0", refusal("w0", 1))
    settings = load_settings(config_file)
    reading, release = threading.Event(), threading.Event()
    real = ingest.classify

    def slow(mail, rules, settings):
        reading.set()
        release.wait(timeout=60)
        return real(mail, rules, settings)

    monkeypatch.setattr(ingest, "classify", slow)
    db = Store(settings.database.resolved_url())
    poller = Poller(db, settings)
    results = []
    worker = threading.Thread(target=lambda: results.append(poller.poll_account(settings.accounts[0])))
    worker.start()
    try:
        assert reading.wait(timeout=60), "the poll never reached the mail"
        time.sleep(LEASE_SECONDS * 1.5)  # longer than the lease lasts unless renewed
        taken = FolderLease(db, "w0/INBOX", holder="other-machine~1:4242:abcdef12").acquire()
    finally:
        release.set()
        worker.join(timeout=60)

    assert not taken
    [result] = results
    assert result.error is None and result.new == 1
    assert "took over" not in result.summary()
    # Released when the poll ended: another worker may take the folder at once.
    assert FolderLease(db, "w0/INBOX", holder="other-machine~1:4242:abcdef12").acquire()
    db.dispose()


# ---- splitting the mailboxes ------------------------------------------------------

def logins(server) -> Counter[str]:
    return Counter(re.findall(r"Login: user=<([^>]+)>", server.log_file.read_text(errors="replace")))


def test_two_daemons_started_together_split_the_mailboxes_and_log_in_to_each_once(
        many_mailboxes, config_file, receiver):
    write_config(config_file, many_mailboxes, receiver)
    expected = fill(many_mailboxes, refusals=2, acknowledgements=2, impersonations=1, ordinary=3)
    url = load_settings(config_file).database.resolved_url()
    Store(url).dispose()
    db = Database(url)
    workers = [subprocess.Popen([sys.executable, "-m", "tracker", "--config", str(config_file), "daemon"],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while db.one("SELECT count(last_success_at) FROM account") < len(USERS):
            assert all(worker.poll() is None for worker in workers), [w.stderr.read() for w in workers]
            assert time.monotonic() < deadline, "the mailboxes were not all polled"
            time.sleep(0.1)
        # A worker that found a mailbox leased looks again when that lease would end: by then the
        # other one has polled it, and it is left alone (polled less than half an interval ago).
        time.sleep(LEASE_SECONDS + 3)
        polled = logins(many_mailboxes)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outcomes = [(worker.wait(timeout=60), worker.stderr.read()) for worker in workers]

    try:
        assert [code for code, _err in outcomes] == [0, 0], outcomes
        assert polled == Counter(USERS.keys())  # one login per mailbox between the two workers
        total = sum(expected.values())
        assert db.rows("SELECT count(*), count(DISTINCT dedupe_id) FROM message") == [(total, total)]
        assert db.rows("SELECT key FROM folderlock") == []  # every lease released
    finally:
        db.close()


# ---- SIGKILL in the middle of a sync ------------------------------------------------------

def test_a_worker_killed_mid_sync_loses_and_doubles_nothing_and_its_folders_are_taken_over_after_its_lease(
        many_mailboxes, config_file, receiver, tmp_path):
    usable, why = unshare_usable()
    if not usable:
        if in_ci():
            pytest.fail(f"the worker test needs unshare in CI: {why}")
        pytest.skip(why)
    write_config(config_file, many_mailboxes, receiver)
    expected = fill(many_mailboxes, refusals=24, acknowledgements=24, impersonations=12, ordinary=12)
    total = sum(expected.values())
    request_mails = len(USERS) * 48
    url = load_settings(config_file).database.resolved_url()
    Store(url).dispose()  # the database exists before the workers start
    db = Database(url)
    workers = [Worker(config_file, tmp_path / f"worker{n}.log") for n in range(2)]
    try:
        # Catch a worker with some but not all mails of a folder recorded, at a moment when no
        # alert is on its way: a worker killed between the webhook's answer and the commit that
        # records the delivery would send that alert once more (alerts.py: at most twice).
        victim, key, recorded_then, lease_end = None, None, 0, None
        deadline = time.monotonic() + 120
        while victim is None:
            assert time.monotonic() < deadline, "never caught a worker in the middle of a folder"
            for lock_key, holder, expires_at in db.rows("SELECT key, holder, expires_at FROM folderlock"):
                owner = next((worker for worker in workers if worker.holds(holder)), None)
                # Well inside the folder: a quarter to three quarters of its mails recorded.
                if owner is None or not 1 / 4 <= db.recorded_in(lock_key) / expected[lock_key] <= 3 / 4:
                    continue
                if receiver.quiet_for(0.3):
                    owner.kill()
                    victim, key, lease_end = owner, lock_key, as_utc_naive(expires_at)
                    recorded_then = db.recorded_in(lock_key)
                    break
            time.sleep(0.01)
        killed_at = datetime.now(timezone.utc).replace(tzinfo=None)
        survivor = next(worker for worker in workers if worker is not victim)

        def done() -> bool:
            alerts = db.rows("SELECT count(*), count(sent_at) FROM alert")[0]
            return (db.one("SELECT count(*) FROM message") == total and alerts[0] == alerts[1]
                    and sum(receiver.received.values()) >= alerts[0])

        deadline = time.monotonic() + 180
        while not done():
            assert survivor.process.poll() is None, survivor.output()
            assert time.monotonic() < deadline, (db.rows("SELECT count(*) FROM message"),
                                                 db.rows("SELECT count(*), count(sent_at) FROM alert"),
                                                 survivor.output()[-3000:])
            time.sleep(0.2)
        time.sleep(1.0)  # a second delivery of anything would arrive now
        assert survivor.stop() == 0, survivor.output()
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    try:
        account, folder = key.split("/", 1)
        taken_over = db.one("SELECT min(m.seen_at) FROM message m JOIN account a ON a.id = m.account_id "
                            "WHERE a.name = :account AND m.folder = :folder AND m.seen_at > :killed",
                            account=account, folder=folder, killed=killed_at)
        mails = db.rows("SELECT count(*), count(DISTINCT dedupe_id), "
                        "count(DISTINCT a.name || '/' || m.folder || '/' || m.uid) "
                        "FROM message m JOIN account a ON a.id = m.account_id")[0]
        per_folder = dict(db.rows("SELECT a.name || '/' || m.folder, count(*) FROM message m "
                                  "JOIN account a ON a.id = m.account_id GROUP BY a.name, m.folder"))
        events = db.rows("SELECT count(*), count(DISTINCT message_id) FROM event WHERE message_id IS NOT NULL")[0]
        per_request = db.rows("SELECT request_id, count(*), count(DISTINCT message_id) FROM event "
                              "WHERE message_id IS NOT NULL GROUP BY request_id")
        alerts = db.rows("SELECT count(*), count(DISTINCT key), count(sent_at) FROM alert")[0]
        by_reason = dict(db.rows("SELECT reason, count(*) FROM alert GROUP BY reason"))
        queued = Counter(db.rows("SELECT title, body FROM alert"))
        leases = db.rows("SELECT key FROM folderlock")
    finally:
        db.close()
    delivered = receiver.received
    lost = total - mails[1] + sum(max(0, n - per_folder.get(k, 0)) for k, n in expected.items())
    doubled = (mails[0] - mails[1]) + (events[0] - events[1]) + (alerts[0] - alerts[1]) \
        + sum(n - 1 for n in delivered.values() if n > 1)
    print(f"\nkilled a worker with {recorded_then} of {expected[key]} mails of {key} recorded; the other took "
          f"the folder over {(as_utc_naive(taken_over) - killed_at).total_seconds():.1f} s later "
          f"(lease {LEASE_SECONDS} s). Mails {mails[0]} of {total} (distinct Message-IDs {mails[1]}, UIDs "
          f"{mails[2]}); events {events[0]} of {request_mails}; alerts {alerts[0]} queued, "
          f"{sum(delivered.values())} POSTs for {len(delivered)} distinct alerts; lost {lost}, doubled {doubled}")

    assert mails == (total, total, total)
    assert per_folder == expected
    assert events == (request_mails, request_mails)
    assert all(count == distinct for _request, count, distinct in per_request)
    assert by_reason == {"refused": len(USERS) * 24, "impersonation": len(USERS) * 12}
    assert alerts == (len(USERS) * 36,) * 3
    assert delivered == queued  # every queued alert received once, and nothing else
    assert lost == 0 and doubled == 0
    # The folder stayed with the dead worker until its lease ended, then the other worker finished it.
    assert 0 < recorded_then < expected[key]
    assert as_utc_naive(taken_over) >= lease_end
    assert leases == []
