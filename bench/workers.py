"""Benchmark: several workers sharing 200 mailboxes on one Dovecot, on SQLite and PostgreSQL.

    python bench/workers.py                                 # as root; SQLite only
    scripts/test_postgres.sh --shell                        # in another terminal: a throwaway cluster
    PRIVACY_TRACKER_TEST_DATABASE_URL=postgresql+psycopg://... python bench/workers.py
    python bench/workers.py --mailboxes 50 --workers 1,2    # a quicker run
    python bench/workers.py --once                          # workers as `poll --once` instead of daemons

What it does:

1. Starts a throwaway Dovecot (tests/dovecot_server.py) with 200 users. Each
   mailbox holds a few ordinary mails and a few from Meta (a refusal or an
   acknowledgement in INBOX; every fourth mailbox an impersonation in Junk).
2. For 1, 2 and 4 workers, on a new database each time, starts that many
   `privacy-tracker daemon` processes (interval one minute, no jitter) and measures
   - the first sync of every mailbox: from the start of the processes until every
     mail is recorded and every mailbox has been polled;
   - an idle cycle (nothing new): their second round, from the moment it is due
     (an interval after the first) until every mailbox has been polled again;
   - the IMAP logins of each (counted in Dovecot's log);
   - the peak memory of each worker (VmHWM in /proc).
   With --once, each worker is one `privacy-tracker poll --once` process instead
   (as cron on several machines would run it), all started together: the time is
   until the last one exits, process start included, and an idle cycle is the
   median of three.
   Every mail must be recorded once (by Message-ID and by folder/UID).
3. Prints one table per database and the ratios to one worker; exits 1 if an
   idle cycle with 2 workers takes 10 s or more, or a mail is missing or doubled.

On SQLite every worker shares one file on this machine; on PostgreSQL each run
gets a database of its own on the server PRIVACY_TRACKER_TEST_DATABASE_URL (or
--postgres) names, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from dovecot_server import DovecotServer, dovecot_usable  # noqa: E402
from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail  # noqa: E402

PASSWORD = "bench-mailbox-secret"
PASSWORD_ENV = "BENCH_IMAP_PASSWORD"
TARGET_IDLE_SECONDS = 10.0      # an idle cycle over 200 mailboxes with 2 workers on 2 cores
IDLE_CYCLES = 3                 # --once: the idle cycle is the median of this many
INTERVAL_SECONDS = 120          # the daemons' interval: a mailbox polled less than half of it ago is left alone


# ---- the mailboxes ----------------------------------------------------------------

def user_name(n: int) -> str:
    return f"m{n:03d}"


def ordinary_mail(user: str, n: int, when: datetime) -> bytes:
    return (f"From: Colleague {n} <colleague{n}@example.net>\r\nTo: {user}@example.org\r\n"
            f"Subject: Meeting notes {n}\r\nDate: {format_datetime(when)}\r\n"
            f"Message-ID: <bench-{user}-{n}@example.net>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            + "The notes of our meeting, the schedule and the list of open points.\r\n" * 20).encode()


def mailbox_mails(index: int, ordinary: int, meta: int) -> list[tuple[str, bytes]]:
    """(folder, raw) for one mailbox: ``ordinary`` plain mails and ``meta`` from Meta in INBOX,
    and in every fourth mailbox an impersonation in Junk."""
    user = user_name(index)
    start = datetime(2025, 3, 1, tzinfo=timezone.utc) + timedelta(hours=index)
    mails = [("INBOX", ordinary_mail(user, n, start + timedelta(minutes=n))) for n in range(ordinary)]
    for n in range(meta):
        body, subject = (REFUSAL, "Your objection") if n % 2 == 0 else (ACKNOWLEDGEMENT, "We received your request")
        mails.append(("INBOX", meta_mail(body, to=f"{user}.{n}@example.org", subject=subject,
                                         date=start + timedelta(days=1, minutes=n),
                                         message_id=f"<meta-{user}-{n}@facebookmail.com>")))
    if index % 4 == 0:
        mails.append(("Junk", meta_mail("Confirm your account now or it will be disabled.",
                                        sender="security@facebook-help.net", display="Facebook Security",
                                        subject="Action needed", auth=None,
                                        message_id=f"<fake-{user}@facebook-help.net>")))
    return mails


def fill(server: DovecotServer, mailboxes: int, ordinary: int, meta: int) -> int:
    """Write every mailbox; returns how many mails the tracker should record (the Meta ones)."""
    expected = 0
    for index in range(mailboxes):
        for folder, raw in mailbox_mails(index, ordinary, meta):
            server.deliver(user_name(index), raw, folder=folder)
        expected += meta + (1 if index % 4 == 0 else 0)

    def index_mailbox(index: int) -> None:
        # Dovecot assigns UIDs and builds its index, as it did long ago for a real mailbox.
        for folder in ("INBOX", "Junk"):
            server.doveadm("mailbox", "status", "-u", user_name(index), "messages uidnext", folder)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(index_mailbox, range(mailboxes)))
    return expected


def write_config(path: Path, server: DovecotServer, database_url: str, mailboxes: int) -> None:
    lines = [f'[database]\nurl = "{database_url}"\n',
             f'[evidence]\ndir = "{path.parent / "evidence"}"\n',
             f'[daemon]\ninterval_minutes = {INTERVAL_SECONDS / 60:g}\njitter_seconds = 0\n']
    for index in range(mailboxes):
        user = user_name(index)
        lines.append(f'[[accounts]]\nname = "{user}"\nhost = "127.0.0.1"\nport = {server.tls_port}\n'
                     f'username = "{user}"\npassword_env = "{PASSWORD_ENV}"\ntls = "implicit"\n'
                     f'ca_file = "{server.ca_file}"\n')
    path.write_text("\n".join(lines))


# ---- databases ----------------------------------------------------------------------

class Databases:
    """A new, empty database for each run: a SQLite file, or a database on the PostgreSQL server."""

    def __init__(self, work: Path, postgres_url: str | None):
        self.work = work
        self.postgres_url = postgres_url
        self.made: list[str] = []
        self.admin = None
        if postgres_url:
            from sqlalchemy import create_engine
            from sqlalchemy.engine import make_url

            self.base = make_url(postgres_url)
            self.admin = create_engine(self.base, isolation_level="AUTOCOMMIT")

    def new(self, label: str) -> str:
        if self.admin is None:
            return f"sqlite:///{self.work / (label + '.sqlite3')}"
        from sqlalchemy import text

        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return self.base.set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        if self.admin is None:
            return
        from sqlalchemy import text

        for name in self.made:
            with self.admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


def _utc_timestamp(value) -> float:
    """A stored naive-UTC time (a datetime, or SQLite's text) as a Unix time."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc).timestamp()


def last_polls(database_url: str) -> list[float | None]:
    """When each mailbox's last poll succeeded (Unix time), None for one never polled."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            try:
                rows = connection.execute(text("SELECT last_success_at FROM account")).all()
            except Exception:  # the first worker is still creating the tables
                return []
            return [None if value is None else _utc_timestamp(value) for (value,) in rows]
    finally:
        engine.dispose()


def recorded(database_url: str) -> tuple[int, int, int]:
    """(mails recorded, distinct Message-IDs, distinct account/folder/UID)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return tuple(connection.execute(text(
                "SELECT count(*), count(DISTINCT dedupe_id), "
                "count(DISTINCT account_id || '/' || folder || '/' || uid) FROM message")).one())
    finally:
        engine.dispose()


# ---- one phase: N workers together ----------------------------------------------------

def logins(server: DovecotServer) -> int:
    try:
        return server.log_file.read_text(errors="replace").count("Login: user=<")
    except OSError:
        return 0


def run_workers(config: Path, workers: int, server: DovecotServer) -> dict:
    """Start ``workers`` `poll --once` processes together; wall time, logins, each one's peak memory."""
    env = dict(os.environ, **{PASSWORD_ENV: PASSWORD})
    env.pop("PRIVACY_TRACKER_CONFIG", None)
    before = logins(server)
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "tracker", "--config", str(config), "poll", "--once"],
                                  cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(workers)]
    peaks, failures = [], []
    for process in processes:
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        peaks.append(usage.ru_maxrss / 1024)  # Linux reports KiB
        if process.returncode != 0:
            failures.append(process.stderr.read().decode(errors="replace")[-2000:])
        process.stderr.close()
    seconds = time.perf_counter() - started
    time.sleep(0.3)  # Dovecot writes its log lines a moment after the logins
    if failures:
        raise RuntimeError(f"a worker failed:\n{failures[0]}")
    return {"seconds": seconds, "logins": logins(server) - before, "peak_mb": max(peaks)}


class Daemon:
    """One `privacy-tracker -v daemon` worker; its log lines are read as they come, with their time."""

    def __init__(self, config: Path, env: dict):
        self.process = subprocess.Popen([sys.executable, "-m", "tracker", "-v", "--config", str(config), "daemon"],
                                        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
        self.started: float | None = None  # when its jobs were scheduled: the second round is due INTERVAL later
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            if self.started is None and "daemon started" in line:
                self.started = time.time()
            self.lines.append(line.rstrip())

    def peak_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError("a worker ended early:\n" + "\n".join(self.lines[-20:]))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=5)
        errors = [line for line in self.lines if " ERROR " in line or "Traceback" in line]
        if errors:
            raise RuntimeError("a worker logged errors:\n" + "\n".join(errors[:10]))


def wait_for(condition, daemons: list[Daemon], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for daemon in daemons:
            daemon.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_daemons(config: Path, url: str, workers: int, server: DovecotServer, mailboxes: int,
                expected: int) -> dict:
    """``workers`` daemons: their first round (the first sync), and their second one, an interval
    later, with nothing new (an idle cycle)."""
    env = dict(os.environ, **{PASSWORD_ENV: PASSWORD})
    env.pop("PRIVACY_TRACKER_CONFIG", None)
    before = logins(server)
    launched = time.time()
    daemons = [Daemon(config, env) for _ in range(workers)]
    try:
        wait_for(lambda: all(daemon.started for daemon in daemons), daemons, 120, "the workers to start")
        wait_for(lambda: (len(polls := last_polls(url)) == mailboxes and all(polls)
                          and recorded(url)[0] >= expected), daemons, 10 * INTERVAL_SECONDS, "the first sync")
        first_end = max(last_polls(url))
        # Each worker's second round is due an interval after it scheduled its first.
        due = min(daemon.started for daemon in daemons) + INTERVAL_SECONDS
        if first_end > due - INTERVAL_SECONDS / 2:
            raise RuntimeError("the first sync took more than half an interval: the second round would "
                               "leave the mailboxes polled last alone")
        time.sleep(max(0.0, due - 1 - time.time()))
        first_logins, first_peak = logins(server) - before, max(daemon.peak_mb() for daemon in daemons)
        wait_for(lambda: all(poll > first_end for poll in last_polls(url)), daemons, 2 * INTERVAL_SECONDS,
                 "the idle cycle")
        idle_end = max(last_polls(url))
        time.sleep(0.5)  # Dovecot writes its log lines a moment after the logins
        idle_logins = logins(server) - before - first_logins
        peak = max(daemon.peak_mb() for daemon in daemons)
    finally:
        for daemon in daemons:
            daemon.stop()
    mails = recorded(url)
    return {"workers": workers, "recorded": mails,
            "first": {"seconds": first_end - launched, "logins": first_logins, "peak_mb": first_peak,
                      "recorded": mails},
            "idle": {"seconds": idle_end - due, "logins": idle_logins, "peak_mb": peak}}


def measure(server: DovecotServer, databases: Databases, work: Path, workers: int, mailboxes: int,
            expected: int, label: str, once: bool) -> dict:
    url = databases.new(f"{label}_{workers}")
    config = work / f"{label}-{workers}" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    write_config(config, server, url, mailboxes)
    if not once:
        return run_daemons(config, url, workers, server, mailboxes, expected)
    first = run_workers(config, workers, server)
    first["recorded"] = recorded(url)
    idle = [run_workers(config, workers, server) for _ in range(IDLE_CYCLES)]
    return {"workers": workers, "first": first,
            "idle": {"seconds": statistics.median(cycle["seconds"] for cycle in idle),
                     "logins": max(cycle["logins"] for cycle in idle),
                     "peak_mb": max(cycle["peak_mb"] for cycle in idle)},
            "recorded": recorded(url)}


# ---- report -------------------------------------------------------------------------------

def report(label: str, results: list[dict], mailboxes: int, expected: int) -> bool:
    ok = True
    print(f"\n{label}: {mailboxes} mailboxes, {expected} mails from Meta to record")
    print(f"{'workers':>7} | {'first sync':>10} {'logins':>6} {'peak MB':>7} | "
          f"{'idle cycle':>10} {'logins':>6} {'peak MB':>7} | recorded (mails, Message-IDs, UIDs)")
    for result in results:
        first, idle = result["first"], result["idle"]
        mails = result["recorded"]
        right = mails == (expected, expected, expected) and first["recorded"] == mails
        ok &= right
        print(f"{result['workers']:>7} | {first['seconds']:>8.2f} s {first['logins']:>6} {first['peak_mb']:>7.0f} | "
              f"{idle['seconds']:>8.2f} s {idle['logins']:>6} {idle['peak_mb']:>7.0f} | "
              f"{mails}{'' if right else '  WRONG'}")
    one = results[0]
    for result in results[1:]:
        faster = one["first"]["seconds"] / result["first"]["seconds"]
        print(f"  {result['workers']} workers vs 1: first sync {faster:.2f}x "
              f"faster, idle cycle {one['idle']['seconds'] / result['idle']['seconds']:.2f}x faster, "
              f"logins per idle cycle {result['idle']['logins'] / max(one['idle']['logins'], 1):.2f}x")
    two = next((r for r in results if r["workers"] == 2), None)
    if two is not None:
        hit = two["idle"]["seconds"] < TARGET_IDLE_SECONDS
        ok &= hit
        print(f"  {'ok  ' if hit else 'MISS'} idle cycle with 2 workers: {two['idle']['seconds']:.2f} s, "
              f"target < {TARGET_IDLE_SECONDS:g} s")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument("--ordinary", type=int, default=10, help="ordinary mails per mailbox")
    parser.add_argument("--meta", type=int, default=2, help="mails from Meta per mailbox (INBOX)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma-separated")
    parser.add_argument("--postgres", default=os.environ.get("PRIVACY_TRACKER_TEST_DATABASE_URL", ""),
                        help="a PostgreSQL URL whose server may get new databases "
                             "(default: $PRIVACY_TRACKER_TEST_DATABASE_URL)")
    parser.add_argument("--no-sqlite", action="store_true", help="measure PostgreSQL only")
    parser.add_argument("--once", action="store_true",
                        help="workers are `poll --once` processes started together, not daemons")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    usable, why = dovecot_usable()
    if not usable:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    server = DovecotServer({user_name(n): PASSWORD for n in range(args.mailboxes)})
    work = Path(tempfile.mkdtemp(prefix="privacy-tracker-bench-workers-"))
    targets = [("PostgreSQL", args.postgres)] if args.postgres else []
    if not args.no_sqlite:
        targets.insert(0, ("SQLite", ""))
    ok = True
    try:
        server.start()
        print(f"filling {args.mailboxes} mailboxes on {server.root} ...", flush=True)
        expected = fill(server, args.mailboxes, args.ordinary, args.meta)
        kind = "`privacy-tracker poll --once` process" if args.once else "`privacy-tracker daemon` process"
        print(f"{os.cpu_count()} cores; each worker is one {kind}", flush=True)
        for label, url in targets:
            databases = Databases(work, url or None)
            try:
                results = []
                for workers in counts:
                    print(f"  {label}, {workers} worker(s) ...", flush=True)
                    results.append(measure(server, databases, work, workers, args.mailboxes, expected,
                                           label.lower(), args.once))
            finally:
                databases.close()
            ok &= report(label, results, args.mailboxes, expected)
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
