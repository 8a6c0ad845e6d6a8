"""Benchmark: the IMAP first sync and idle poll on a 50,000-mail mailbox, against a real Dovecot.

    python bench/imap_sync.py                                # as root; about 0.9 GB in /tmp, a few minutes
    python bench/imap_sync.py --messages 5000 --meta 20      # a quicker, smaller run

What it does, in one run:

1. Starts a throwaway Dovecot (tests/dovecot_server.py) and writes a mailbox of
   50,000 mails (about 0.9 GB, 50 of them from Meta, a few more from senders
   whose name merely contains "meta") straight into the Maildir, plus a
   1,000-mail mailbox for comparison. Dovecot then indexes both, as it would
   have long before the tracker is first pointed at a real mailbox.
2. Measures, each in a fresh child process so that memory is its own:
   - a first sync while Dovecot has not cached any header yet (its search
     reads all 50,000 files once), for information;
   - our first sync (server-side search, then fetch the matches), into a new
     database, on the mailbox as Dovecot keeps it once it has been searched
     or listed by a mail client: time, bytes received, peak RSS;
   - a naive baseline that fetches and parses every mail;
   - an idle poll (nothing new) on the 50,000-mail and on the 1,000-mail
     mailbox: the median of several polls, and the round trips.
3. Prints the figures, the ratios and the targets, and exits 1 if a target is missed.

Targets: first sync under 2 s and under 5 MB received; idle poll on 50,000 no
more than 1.5x the one on 1,000; peak RSS of our first sync under 150 MB.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from dovecot_server import DovecotServer, dovecot_usable  # noqa: E402
from mails import ACKNOWLEDGEMENT, APPROVAL, REFUSAL, meta_mail  # noqa: E402

USERS = {"big": "big-secret", "small": "small-secret"}
TARGET_FIRST_SYNC_SECONDS = 2.0
TARGET_FIRST_SYNC_BYTES = 5 * 1024 * 1024
TARGET_IDLE_RATIO = 1.5
TARGET_PEAK_RSS_MB = 150
IDLE_POLLS = 15

WORDS = ("the quarterly report project meeting invoice newsletter update offer travel booking confirmation "
         "receipt delivery order account summary weekly digest team schedule review draft notes family photos "
         "holiday garden recipe football concert tickets school library volunteer").split()


# ---- the mailbox ----------------------------------------------------------------

def ordinary_mail(rng: random.Random, n: int, when: datetime, size: int, sender: str, display: str) -> bytes:
    """A plausible non-Meta mail of about ``size`` bytes: text, sometimes a base64 attachment."""
    words = " ".join(rng.choice(WORDS) for _ in range(40))
    head = (f"From: {display} <{sender}>\r\nTo: person@example.org\r\nSubject: {words[:60]}\r\n"
            f"Date: {format_datetime(when)}\r\nMessage-ID: <bench-{n}@example.net>\r\nMIME-Version: 1.0\r\n")
    text_lines = []
    while sum(len(line) for line in text_lines) < min(size, 6000):
        text_lines.append(" ".join(rng.choice(WORDS) for _ in range(12)) + "\r\n")
    body = "".join(text_lines)
    if size <= 6000:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()
    attachment = os.urandom(max(0, size - len(body)) * 3 // 4)
    encoded = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body +
            '\r\n--b1\r\nContent-Type: application/pdf; name="file.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + encoded + "--b1--\r\n").encode()


def meta_mails(count: int, rng: random.Random, start: datetime) -> list[bytes]:
    kinds = [REFUSAL, APPROVAL, ACKNOWLEDGEMENT]
    mails = []
    for n in range(count):
        when = start + timedelta(days=rng.randrange(900))
        if n % 10 == 9:
            mails.append(meta_mail("Confirm your account now.", sender="security@facebook-help.net",
                                   display="Facebook Security", auth=None, date=when,
                                   message_id=f"<fake-{n}@facebook-help.net>"))
        else:
            mails.append(meta_mail(kinds[n % 3], to=f"person{n % 7}@example.org", date=when,
                                   message_id=f"<meta-{n}@facebookmail.com>"))
    return mails


def fill(server: DovecotServer, user: str, total: int, meta: int, seed: int = 7) -> int:
    """Write ``total`` mails into the user's INBOX; returns the bytes written."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    meta_positions = set(rng.sample(range(total), meta))
    lookalike_names = itertools.cycle(["Metallica Fan Club", "Metadata Weekly", "Metacritic", "Meta Rail Tours"])
    special = meta_mails(meta, rng, start)
    written = 0
    for n in range(total):
        when = start + timedelta(minutes=n * 26)
        if n in meta_positions:
            raw = special.pop()
        elif n % 2500 == 1:  # a sender whose name merely contains "meta": fetched, then called unrelated
            raw = ordinary_mail(rng, n, when, 4000, f"news@list{n}.example.net", next(lookalike_names))
        else:
            # Mostly small text mails, some with attachments: about 18 KB on average.
            size = int(min(400_000, rng.lognormvariate(9.3, 1.0)))
            raw = ordinary_mail(rng, n, when, size, f"sender{n % 900}@example.net", f"Sender {n % 900}")
        server.deliver(user, raw, flags="S" if rng.random() < 0.8 else "", received=when.timestamp())
        written += len(raw)
    return written


def prepare(server: DovecotServer, big: int, meta: int, small: int) -> dict:
    started = time.monotonic()
    written = fill(server, "big", big, meta)
    fill(server, "small", small, min(meta, 10), seed=8)
    filled = time.monotonic() - started
    started = time.monotonic()
    for user in USERS:
        # Dovecot assigns UIDs and builds its index, as it did long ago for a real
        # mailbox. Header fields are not cached yet: the first search reads every
        # mail's headers from disk and caches From (a mail client asking for the
        # message list would have done the same).
        server.doveadm("mailbox", "status", "-u", user, "messages uidnext", "INBOX")
    return {"mailbox_bytes": written, "fill_seconds": filled, "index_seconds": time.monotonic() - started}


# ---- measurements (each run in a child process) --------------------------------

def _settings(config: dict):
    from tracker.config import settings_from_dict
    return settings_from_dict(config)


def measure_first_sync(config: dict) -> dict:
    from tracker.store import Store
    from tracker.sync import Poller

    settings = _settings(config)
    poller = Poller(Store(settings.database.resolved_url()), settings)
    started = time.perf_counter()
    result = poller.poll_account(settings.accounts[0])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": result.traffic.bytes_received, "fetched": result.traffic.messages_fetched,
            "new": result.new, "error": result.error, "peak_rss_mb": _peak_rss_mb()}


def measure_idle_polls(config: dict) -> dict:
    from tracker.store import Store
    from tracker.sync import Poller

    settings = _settings(config)
    poller = Poller(Store(settings.database.resolved_url()), settings)
    poller.poll_account(settings.accounts[0])  # the first sync, not measured
    times, traffic = [], None
    for _ in range(IDLE_POLLS):
        started = time.perf_counter()
        result = poller.poll_account(settings.accounts[0])
        times.append(time.perf_counter() - started)
        traffic = result.traffic
    return {"median_seconds": statistics.median(times), "commands": traffic.commands,
            "bytes": traffic.bytes_received, "fetched": traffic.messages_fetched}


def measure_naive(config: dict) -> dict:
    """What a tracker without server-side search does: fetch every mail and parse it."""
    from tracker.parse import parse_mail
    from tracker.sources.imap import ImapConnection

    account = _settings(config).accounts[0]
    started = time.perf_counter()
    parsed = 0
    with ImapConnection(account) as connection:
        connection.examine("INBOX")
        for batch in connection.fetch_in_batches(connection.search(["ALL"])):
            for mail in batch:
                parse_mail(mail.raw)
                parsed += 1
        traffic = connection.traffic
    return {"seconds": time.perf_counter() - started, "bytes": traffic.bytes_received, "parsed": parsed,
            "peak_rss_mb": _peak_rss_mb()}


MEASUREMENTS = {"first-sync": measure_first_sync, "idle": measure_idle_polls, "naive": measure_naive}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_child(kind: str, config: dict) -> dict:
    env = dict(os.environ, **{f"{user.upper()}_PASSWORD": password for user, password in USERS.items()})
    child = subprocess.run([sys.executable, __file__, "--measure", kind, json.dumps(config)],
                           capture_output=True, text=True, env=env)
    if child.returncode != 0:
        raise RuntimeError(f"measuring {kind} failed:\n{child.stderr}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def account_config(server: DovecotServer, user: str, folder: Path) -> dict:
    return {"database": {"url": f"sqlite:///{folder / f'{user}.sqlite3'}"},
            "evidence": {"dir": str(folder / "evidence")},
            "accounts": [{"name": user, "host": "127.0.0.1", "port": server.tls_port, "username": user,
                          "password_env": f"{user.upper()}_PASSWORD", "ca_file": str(server.ca_file),
                          "folders": ["INBOX"]}]}


# ---- report ---------------------------------------------------------------------

def report(prep: dict, cold: dict, first: dict, naive: dict, idle_big: dict, idle_small: dict, big: int, small: int) -> bool:
    mb = 1024 * 1024
    ratio = idle_big["median_seconds"] / idle_small["median_seconds"]
    checks = [
        ("first sync time", first["seconds"] < TARGET_FIRST_SYNC_SECONDS,
         f"{first['seconds']:.2f} s", f"< {TARGET_FIRST_SYNC_SECONDS:g} s"),
        ("first sync received", first["bytes"] < TARGET_FIRST_SYNC_BYTES,
         f"{first['bytes'] / mb:.2f} MB", f"< {TARGET_FIRST_SYNC_BYTES / mb:g} MB"),
        (f"idle poll {big:,} / {small:,}", ratio <= TARGET_IDLE_RATIO, f"{ratio:.2f}x", f"<= {TARGET_IDLE_RATIO}x"),
        ("peak RSS, first sync", first["peak_rss_mb"] < TARGET_PEAK_RSS_MB,
         f"{first['peak_rss_mb']:.0f} MB", f"< {TARGET_PEAK_RSS_MB} MB"),
    ]
    print(f"mailbox: {big:,} mails, {prep['mailbox_bytes'] / mb:.0f} MB "
          f"(written in {prep['fill_seconds']:.0f} s, indexed by Dovecot in {prep['index_seconds']:.0f} s)")
    print(f"first sync, headers not yet cached by Dovecot: {cold['seconds']:.2f} s, "
          f"{cold['bytes'] / mb:.2f} MB received")
    print(f"first sync (ours):  {first['seconds']:6.2f} s  {first['bytes'] / mb:8.2f} MB received  "
          f"{first['fetched']} fetched, {first['new']} recorded  peak RSS {first['peak_rss_mb']:.0f} MB")
    if naive["parsed"]:
        print(f"naive fetch+parse:  {naive['seconds']:6.2f} s  {naive['bytes'] / mb:8.2f} MB received  "
              f"{naive['parsed']} parsed  peak RSS {naive['peak_rss_mb']:.0f} MB")
        print(f"  ours is {naive['seconds'] / first['seconds']:.0f}x faster and receives "
              f"{naive['bytes'] / max(first['bytes'], 1):.0f}x less")
    else:
        print("naive fetch+parse:  skipped (--skip-naive)")
    for label, idle in ((f"{big:,}", idle_big), (f"{small:,}", idle_small)):
        print(f"idle poll, {label:>6} mails: {idle['median_seconds'] * 1000:6.1f} ms median of {IDLE_POLLS}, "
              f"{idle['commands']} round trips, {idle['bytes']} bytes, {idle['fetched']} fetched")
    print()
    for name, ok, value, target in checks:
        print(f"{'ok  ' if ok else 'MISS'} {name:28} {value:>10}   target {target}")
    return all(ok for _name, ok, _value, _target in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000, help="mails in the large mailbox")
    parser.add_argument("--meta", type=int, default=50, help="of which from Meta (or pretending to be)")
    parser.add_argument("--small", type=int, default=1_000, help="mails in the comparison mailbox")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the slow naive baseline")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, config = args.measure
        print(json.dumps(MEASUREMENTS[kind](json.loads(config))))
        return 0

    usable, why = dovecot_usable()
    if not usable:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    server = DovecotServer(USERS)
    work = Path(tempfile.mkdtemp(prefix="privacy-tracker-bench-"))
    try:
        server.start()
        print(f"filling {args.messages:,} + {args.small:,} mails into {server.root} ...", flush=True)
        prep = prepare(server, args.messages, args.meta, args.small)
        big, small = account_config(server, "big", work / "big"), account_config(server, "small", work / "small")
        cold = run_child("first-sync", account_config(server, "big", work / "cold"))
        first = run_child("first-sync", big)
        naive = (run_child("naive", big) if not args.skip_naive
                 else {"seconds": float("nan"), "bytes": 0, "parsed": 0, "peak_rss_mb": float("nan")})
        idle_big = run_child("idle", account_config(server, "big", work / "idle-big"))
        idle_small = run_child("idle", small)
        return 0 if report(prep, cold, first, naive, idle_big, idle_small, args.messages, args.small) else 1
    finally:
        server.remove()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
