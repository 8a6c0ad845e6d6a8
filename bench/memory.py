"""Benchmark: peak memory for large and hostile mail, and the time HTML to text takes on hostile markup.

Every memory figure is the peak RSS of a fresh child process, so it is the
mail's own cost plus what the tracker needs anyway (Python, SQLAlchemy, lxml,
the rules); the child's RSS just before it reads the mail is printed as the
baseline. The mails:

  meta-50mb      an authentic refusal from facebookmail.com with a 50 MB attachment
  other-50mb     the same from someone else (the tracker needs only its headers)
  header-10mb    an authentic refusal from Meta with a 10 MB folded header (X-Folded)

each through

  classify       tracker.ingest.classify_raw (parse + authenticity + rules)
  ingest         Ingestor.ingest of the file into a new SQLite file, evidence kept
  imap           a first sync of a Dovecot mailbox holding the mail (as root, when
                 Dovecot is installed; --no-imap leaves it out)

once with the default size limit (25 MB: the 50 MB mails are recorded by their
headers and SHA-256) and once for the Meta mail with ``[evidence] max_mail_mb``
raised to 100, so its body is read too; then, at that limit,

  cut-50mb       the Meta mail cut off before its closing boundary: damaged MIME
                 structure, read by the email package (at most its first 8 MB)

Target: peak RSS under 300 MB for a 50 MB mail.

Then the time ``tracker.text.html_to_text`` takes for 1 MB of hostile HTML (an
unclosed ``<!--``, an unclosed ``<a``, 200,000 nested ``<div>``, 200,000 ``<p>``)
against 1 MB of ordinary newsletter HTML. The figures for a 300 KB
Authentication-Results header come from bench/auth_results.py.

    python bench/memory.py
    python bench/memory.py --no-imap
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

MB = 1024 * 1024
TARGET_PEAK_MB = 300
MAIL_MB = 50
HEADER_MB = 10
IMAP_USER, IMAP_PASSWORD = "big", "big-secret"

REFUSAL = ("We have reviewed your objection to the use of your information for AI at Meta. "
           "We will not honour your objection, and we cannot take further action on this request.")


# ---- the mails --------------------------------------------------------------------

def _head(sender: str, display: str, extra: str = "") -> str:
    domain = sender.rpartition("@")[2]
    return (f"From: {display} <{sender}>\r\nTo: anna@example.org\r\nSubject: Your objection request\r\n"
            f"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <bench-{domain}-{len(extra)}@{domain}>\r\n"
            f"Authentication-Results: mx.example.org; dkim=pass header.d={domain} header.s=s1; "
            f"spf=pass smtp.mailfrom={sender}; dmarc=pass header.from={domain}\r\n{extra}MIME-Version: 1.0\r\n")


def with_attachment(sender: str, display: str, size: int) -> bytes:
    """A short text part and a base64 attachment, CRLF line ends as on the wire: ``size`` bytes in all."""
    head = _head(sender, display)
    text = (f'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nHi,\r\n\r\n{REFUSAL}\r\n\r\n--b1\r\n"
            f'Content-Type: application/zip; name="your-information.zip"\r\n'
            f"Content-Disposition: attachment; filename=\"your-information.zip\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n")
    tail = "--b1--\r\n"
    room = size - len(head) - len(text) - len(tail)
    line = 76 + 2
    lines = room // line
    rng = random.Random(7)
    # Random bytes, so nothing in the path can compress or share them.
    payload = bytearray()
    chunk_lines = 10_000
    for start in range(0, lines, chunk_lines):
        count = min(chunk_lines, lines - start)
        encoded = base64.b64encode(rng.randbytes(57 * count))
        payload += b"".join(encoded[i:i + 76] + b"\r\n" for i in range(0, len(encoded), 76))
    return head.encode() + text.encode() + bytes(payload) + tail.encode()


def with_folded_header(size: int) -> bytes:
    """An authentic Meta refusal whose header block holds one header folded over ``size`` bytes."""
    unit = "\r\n\tfolded header text that goes on and on and on"
    folded = "X-Folded: start" + unit * (size // len(unit)) + "\r\n"
    return (_head("noreply@facebookmail.com", "Facebook", folded)
            + f"Content-Type: text/plain; charset=utf-8\r\n\r\nHi,\r\n\r\n{REFUSAL}\r\n").encode()


def cut_off(raw: bytes) -> bytes:
    """The mail without its closing boundary line, as when a download broke off: the email package reads it."""
    return raw[:raw.rstrip().rfind(b"\n") + 1]


MAILS = {
    "meta-50mb": lambda: with_attachment("noreply@facebookmail.com", "Facebook", MAIL_MB * MB),
    "other-50mb": lambda: with_attachment("friend@example.net", "A friend", MAIL_MB * MB),
    "header-10mb": lambda: with_folded_header(HEADER_MB * MB),
    "cut-50mb": lambda: cut_off(with_attachment("noreply@facebookmail.com", "Facebook", MAIL_MB * MB)),
}


# ---- measurements, each in a child process ------------------------------------------

def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    """RSS now: what the child holds before it reads the mail."""
    now = _status_mb("VmRSS")
    return now if now is not None else _peak_mb()


def _peak_mb() -> float:
    """Peak RSS of this process. VmHWM, not ru_maxrss: on Linux, ru_maxrss keeps the parent's
    RSS at the fork, so a child of a large parent would report the parent's size."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settings(workdir: Path, limit_mb: int | None, accounts: list | None = None):
    from tracker.config import settings_from_dict

    config = {"database": {"url": f"sqlite:///{workdir / 'tracker.sqlite3'}"},
              "evidence": {"dir": str(workdir / "evidence")}}
    if limit_mb is not None:
        config["evidence"]["max_mail_mb"] = limit_mb
    if accounts:
        config["accounts"] = accounts
    return settings_from_dict(config)


def measure(kind: str, mail: Path, workdir: Path, limit_mb: int | None, account: dict | None) -> dict:
    from sqlmodel import Session, select

    from tracker.ingest import Ingestor, classify_raw
    from tracker.models import Message
    from tracker.sources.local import LocalSource
    from tracker.store import Store
    from tracker.sync import Poller

    settings = _settings(workdir, limit_mb, [account] if account else None)
    db = Store(settings.database.resolved_url())
    ingestor = Ingestor(db, settings)
    baseline = _rss_mb()
    started = time.perf_counter()
    if kind == "classify":
        parsed, result = classify_raw(mail.read_bytes(), ingestor.rules, settings)
        outcome = {"category": result.category, "error": parsed.error}
    elif kind == "ingest":
        ingestor.ingest(LocalSource([mail]))
    elif kind == "imap":
        poll = Poller(db, settings, ingestor=ingestor).poll_account(settings.accounts[0])
        if poll.error:
            raise RuntimeError(poll.error)
    seconds = time.perf_counter() - started
    if kind != "classify":
        with Session(db.engine) as session:
            rows = session.exec(select(Message)).all()
            if not rows:  # IMAP: the server's search found no From that mentions Meta
                outcome = {"category": "not fetched (its From does not mention Meta)", "error": None}
            else:
                [row] = rows
                outcome = {"category": row.category, "error": row.error,
                           "evidence": bool(row.raw_path and Path(row.raw_path).is_file())}
    return {"baseline_mb": baseline, "peak_mb": _peak_mb(), "seconds": seconds, **outcome}


def run_child(kind: str, mail: Path, workdir: Path, limit_mb: int | None = None, account: dict | None = None,
              env: dict | None = None) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    args = json.dumps({"kind": kind, "mail": str(mail), "workdir": str(workdir), "limit_mb": limit_mb,
                       "account": account})
    child = subprocess.run([sys.executable, __file__, "--measure", args], capture_output=True, text=True,
                           env={**os.environ, **(env or {})})
    shutil.rmtree(workdir, ignore_errors=True)
    if child.returncode != 0:
        raise RuntimeError(f"measuring {kind} of {mail.name} failed:\n{child.stderr}")
    return json.loads(child.stdout.strip().splitlines()[-1])


# ---- HTML ---------------------------------------------------------------------------

def hostile_html() -> dict[str, str]:
    size = MB
    row = ('<tr><td style="padding:12px;font-family:Arial">weekly digest offer sale shipping order '
           '<a href="https://click.example.com/t/1234?utm_source=mail">more</a></td></tr>\n')
    return {
        "ordinary 1 MB": "<html><body><table>" + row * (size // len(row)) + "</table></body></html>",
        "unclosed <!--": "<html><body><p>Hi</p><!--" + "x <p>hidden</p> " * (size // 16),
        "unclosed <a": '<html><body><p>Hi</p><a href="x" ' + "title=y " * (size // 8),
        "200,000 nested <div>": "<div>" * 200_000 + "text",   # never closed: nested 200,000 deep
        "200,000 <p>": "<p>x " * 200_000,
    }


def time_html(repeat: int = 3) -> list[tuple[str, int, float]]:
    from tracker.text import html_to_text

    rows = []
    for name, markup in hostile_html().items():
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            html_to_text(markup)
            best = min(best, time.perf_counter() - started)
        rows.append((name, len(markup), best))
    return rows


# ---- IMAP ---------------------------------------------------------------------------

def imap_server():
    try:
        from dovecot_server import DovecotServer, dovecot_usable
    except ImportError as err:
        return None, f"cannot import tests/dovecot_server.py: {err}"
    usable, why = dovecot_usable()
    if not usable:
        return None, why
    try:
        server = DovecotServer({IMAP_USER: IMAP_PASSWORD})
    except ImportError as err:  # trustme, a test dependency
        return None, str(err)
    server.start()
    return server, ""


def imap_account(server) -> dict:
    return {"name": IMAP_USER, "host": "127.0.0.1", "port": server.tls_port, "username": IMAP_USER,
            "password_env": "BENCH_IMAP_PASSWORD", "ca_file": str(server.ca_file), "folders": ["INBOX"]}


# ---- report -------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-imap", action="store_true", help="leave out the Dovecot measurements")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        spec = json.loads(args.measure)
        print(json.dumps(measure(spec["kind"], Path(spec["mail"]), Path(spec["workdir"]), spec["limit_mb"],
                                 spec["account"])))
        return 0

    work = Path(tempfile.mkdtemp(prefix="tracker-bench-memory-"))
    server, why = (None, "--no-imap") if args.no_imap else imap_server()
    misses = 0
    try:
        files = {}
        for name, make in MAILS.items():
            files[name] = work / f"{name}.eml"
            files[name].write_bytes(make())
        runs = []  # (mail, limit, kind)
        for name in ("meta-50mb", "other-50mb", "header-10mb"):
            for kind in ("classify", "ingest", "imap"):
                runs.append((name, None, kind))
        for kind in ("classify", "ingest", "imap"):
            runs.append(("meta-50mb", 100, kind))
        for kind in ("classify", "ingest"):
            runs.append(("cut-50mb", 100, kind))

        print(f"{'mail':<12}{'limit':>7} {'path':<9}{'mail MB':>8}{'base MB':>9}{'peak MB':>9}{'added':>8}"
              f"{'x mail':>8}{'seconds':>9}  category / error")
        for name, limit, kind in runs:
            size = files[name].stat().st_size / MB
            label = f"{limit or 25} MB"
            if kind == "imap":
                if server is None:
                    print(f"{name:<12}{label:>7} {kind:<9}  skipped: {why}")
                    continue
                for old in server.maildir(IMAP_USER).glob("cur/*"):
                    old.unlink()
                server.doveadm("force-resync", "-u", IMAP_USER, "INBOX", check=False)
                server.deliver(IMAP_USER, files[name].read_bytes())
                result = run_child(kind, files[name], work / "run", limit, imap_account(server),
                                   env={"BENCH_IMAP_PASSWORD": IMAP_PASSWORD})
            else:
                result = run_child(kind, files[name], work / "run", limit)
            added = result["peak_mb"] - result["baseline_mb"]
            over = MAIL_MB <= size and result["peak_mb"] >= TARGET_PEAK_MB
            misses += over
            error = (result.get("error") or "")[:60]
            kept = " evidence kept" if result.get("evidence") else ""
            print(f"{name:<12}{label:>7} {kind:<9}{size:>8.1f}{result['baseline_mb']:>9.0f}{result['peak_mb']:>9.0f}"
                  f"{added:>8.0f}{added / size:>8.2f}{result['seconds']:>9.2f}  "
                  f"{result['category']}{kept}{'; ' + error if error else ''}{'  MISS' if over else ''}")
        print(f"target: peak RSS under {TARGET_PEAK_MB} MB for a {MAIL_MB} MB mail; 'added' is peak minus the "
              f"child's RSS before it read the mail, 'x mail' that over the mail's size")
    finally:
        if server is not None:
            server.remove()
        shutil.rmtree(work, ignore_errors=True)

    print()
    rows = time_html()
    ordinary = rows[0][2]
    print(f"{'html_to_text':<24}{'KB':>8}{'seconds':>10}{'MB/s':>8}{'x ordinary':>12}")
    for name, length, seconds in rows:
        print(f"{name:<24}{length / 1024:>8.0f}{seconds:>10.3f}{length / MB / seconds:>8.1f}{seconds / ordinary:>12.2f}")
    print("Authentication-Results of 3 KB and 300 KB: see python bench/auth_results.py")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
