"""Benchmark: bare mail-parser parsing vs. classify vs. ingest, and memory in N.

Generates N varied mails (about 20 KB of HTML each, plain+HTML or HTML only,
quoted-printable, base64 or 8bit: newsletters and digests, Meta's ordinary
notifications, and Meta privacy mails in several languages, one mail in ten
from Meta), then in one run times. Newsletters carry rows of text; Meta's mails
come in a template like Meta's: nested layout tables, spacer rows, a logo and
a footer, with the message itself a few sentences long.

  parse     mailparser.parse_from_bytes on every mail (the floor: nothing of ours)
  classify  the tracker's parse + normalise + authenticity + rules
  ingest    classify + store every mail in a fresh SQLite file (one transaction each)

and prints mails per second for each with the ratio to bare parsing. Peak
memory of ingest is measured in child processes for N/10 and N mails, so "flat
in N" is a ratio near 1.

    python bench/ingest.py                 # N = 10,000, one mail in ten from Meta
    python bench/ingest.py -n 2000
    python bench/ingest.py --mix privacy   # every mail an authentic Meta privacy mail
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timedelta, timezone
from pathlib import Path

HTML_TARGET = 20_000
# One mail in ten from Meta or claiming to be: far more than a real mailbox holds,
# so that the rules' share of the work is not understated.
META_SHARE = 0.10
PEOPLE = ["anna@example.org", "ben@example.de", "chiara@example.it", "dirk@example.nl", "elena@example.es",
          "marie@example.fr", "piotr@example.pl"]
META_MAILS = [  # (sender, subject, sentence) in the voices Meta uses
    ("security@facebookmail.com", "Your confirmation code", "Use this code to confirm your objection: {code}"),
    ("noreply@facebookmail.com", "We've received your objection request",
     "We've received your request to object to the use of your information for AI at Meta."),
    ("security@mail.instagram.com", "Your objection request",
     "We will honour your objection. We won't use your public information for AI at Meta."),
    ("noreply@facebookmail.com", "Update on your request",
     "We reviewed your request and cannot take further action on it. We will not honour your objection."),
    ("noreply@facebookmail.com", "Dein Widerspruch", "Wir haben deinen Widerspruch erhalten und prüfen ihn."),
    ("security@mail.instagram.com", "Ta demande d'opposition",
     "Nous avons bien reçu ta demande d'opposition concernant l'IA chez Meta."),
    ("notification@facebookmail.com", "You have new notifications", "3 friends posted new photos."),
    ("security@facebookmail.com", "New login to your account", "We noticed a new login from Chrome on Linux."),
]
OTHER_SENDERS = ["news@shop.example.com", "team@newsletter.example.net", "billing@provider.example",
                 "friends@club.example.org", "alerts@bank.example"]
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         "et dolore magna aliqua offer sale shipping order invoice account update weekly digest").split()


def _filler(rng: random.Random, size: int) -> str:
    """Newsletter-style rows: as in real HTML mail, most bytes are markup, about a quarter text."""
    rows = []
    while sum(map(len, rows)) < size:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
        link = f"https://click.example.com/t/{rng.getrandbits(64):016x}?utm_source=mail&amp;utm_medium=email"
        rows.append(
            '<tr><td class="row" style="padding:12px 24px 12px 24px;background-color:#ffffff;'
            'border-bottom:1px solid #e5e5e5"><table role="presentation" width="100%" cellpadding="0" '
            'cellspacing="0" border="0"><tr><td style="font-family:Helvetica,Arial,sans-serif;font-size:14px;'
            f'line-height:20px;color:#1c1e21">{words}&nbsp;&amp; more\u2019s</td>'
            f'<td width="80" align="right"><a href="{link}" style="color:#1877f2;text-decoration:none">'
            f'<img src="https://img.example.com/{rng.getrandbits(32):08x}.png" width="64" height="64" '
            'alt="" style="display:block;border:0"></a></td></tr></table></td></tr>\n')
    return "".join(rows)


# The privacy mix: only Meta's mails about a request, no ordinary notifications.
PRIVACY_MAILS = [mail for mail in META_MAILS if "notification" not in mail[0] and "login" not in mail[1]]


def _meta_template(rng: random.Random, size: int) -> str:
    """Markup in the shape of Meta's mail template: layout, spacers, a footer; little text."""
    rows = []
    while sum(map(len, rows)) < size:
        rows.append(
            '<tr><td height="16" style="line-height:16px;font-size:1px;padding:0" bgcolor="#ffffff">&nbsp;</td></tr>'
            '<tr><td align="left" style="padding:0 24px 0 24px"><table role="presentation" border="0" '
            'cellspacing="0" cellpadding="0" width="100%" style="border-collapse:collapse"><tr>'
            f'<td width="32" style="padding:0"><img src="https://static.xx.fbcdn.net/rsrc.php/v3/{rng.getrandbits(32):08x}.png" '
            'width="32" height="32" alt="" style="border:0;display:block"></td><td width="12">&nbsp;</td>'
            f'<td style="font-family:Helvetica Neue,Helvetica,Lucida Grande,tahoma,verdana,arial,sans-serif;'
            f'font-size:12px;line-height:16px;color:#90949c"><a href="https://www.facebook.com/n/?{rng.getrandbits(64):016x}'
            '&amp;aref=1&amp;medium=email&amp;mid=1" style="color:#90949c;text-decoration:none"></a></td>'
            '</tr></table></td></tr>\n')
    footer = ('<tr><td style="font-family:Helvetica,Arial,sans-serif;font-size:11px;color:#90949c;padding:24px">'
              'This message was sent to you. Meta Platforms Ireland Ltd., Merrion Road, Dublin 4, Ireland. '
              'To help keep your account secure, please don\u2019t forward this email.</td></tr>')
    return "".join(rows) + footer


def make_mail(index: int, rng: random.Random, mix: str = "realistic") -> bytes:
    date = datetime(2025, 5, 1, tzinfo=timezone.utc) + timedelta(minutes=index * 7)
    to = rng.choice(PEOPLE)
    from_meta = mix == "privacy" or rng.random() < META_SHARE
    if from_meta:
        sender, subject, sentence = rng.choice(PRIVACY_MAILS if mix == "privacy" else META_MAILS)
        sentence = sentence.format(code=f"{rng.randint(0, 999999):06d}")
        domain = sender.split("@")[1]
        auth = f"mx.example.org; dkim=pass header.d={domain} header.s=s1; dmarc=pass header.from={domain}"
    else:
        sender, subject = rng.choice(OTHER_SENDERS), f"Weekly digest #{index}"
        sentence = "Here is what happened this week."
        auth = f"mx.example.org; dkim=pass header.d={sender.split('@')[1]}; spf=pass"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = make_msgid(idstring=str(index), domain=sender.split("@")[1])
    message["Authentication-Results"] = auth
    filler = _meta_template(rng, HTML_TARGET) if from_meta else _filler(rng, HTML_TARGET)
    html_body = (f"<html><body><table><tr><td><p>Hi,</p><p>{sentence}</p></td></tr>"
                 f"{filler}</table></body></html>")
    message.set_content(f"Hi,\n\n{sentence}\n" if rng.random() < 0.5 else "")
    message.add_alternative(html_body, subtype="html",
                            cte=rng.choice(["quoted-printable", "base64", "8bit"]))
    if not message.get_body(("plain",)).get_content().strip():  # HTML-only variant
        message = message.get_body(("html",))
        for header, value in (("From", sender), ("To", to), ("Subject", subject),
                              ("Date", format_datetime(date)), ("Authentication-Results", auth),
                              ("Message-ID", make_msgid(idstring=str(index), domain="bench.example"))):
            message[header] = value
    return bytes(message)


def generate(folder: Path, count: int, seed: int = 7, mix: str = "realistic") -> int:
    rng = random.Random(seed)
    total = 0
    for index in range(count):
        raw = make_mail(index, rng, mix)
        (folder / f"{index:06d}.eml").write_bytes(raw)
        total += len(raw)
    return total


def best_of(repeat: int, run) -> float:
    """The fastest of ``repeat`` runs: the others measured the machine's other work too."""
    return min(run() for _ in range(repeat))


def time_parse(files: list[Path]) -> float:
    import mailparser
    start = time.perf_counter()
    for path in files:
        mailparser.parse_from_bytes(path.read_bytes())
    return time.perf_counter() - start


def time_classify(files: list[Path]) -> tuple[float, dict]:
    from tracker.config import Settings
    from tracker.ingest import classify_raw
    from tracker.rules.engine import load_rules

    settings, rules, counts = Settings(), load_rules(), {}
    start = time.perf_counter()
    for path in files:
        _, result = classify_raw(path.read_bytes(), rules, settings)
        counts[result.category] = counts.get(result.category, 0) + 1
    return time.perf_counter() - start, counts


def time_ingest(folder: Path, files: list[Path], workdir: Path) -> float:
    from tracker.config import settings_from_dict
    from tracker.ingest import Ingestor
    from tracker.sources.local import LocalSource
    from tracker.store import Store

    settings = settings_from_dict({"database": {"url": f"sqlite:///{workdir / 'bench.sqlite3'}"},
                                   "evidence": {"dir": str(workdir / "evidence")}})
    ingestor = Ingestor(Store(settings.database.resolved_url()), settings)
    start = time.perf_counter()
    stats = ingestor.ingest(LocalSource(files))
    elapsed = time.perf_counter() - start
    assert stats.new == len(files), stats
    return elapsed


def peak_rss_of_ingest(folder: Path, count: int) -> float:
    """Peak RSS (MiB) of a fresh process that ingests the first ``count`` mails."""
    code = (
        "import sys, json, resource, tempfile; from pathlib import Path; sys.path.insert(0, %r);"
        "import ingest as b; folder = Path(%r); files = sorted(folder.glob('*.eml'))[:%d];"
        "b.time_ingest(folder, files, Path(tempfile.mkdtemp()));"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))"
    ) % (str(Path(__file__).parent), str(folder), count)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=10_000, help="mails to generate (default 10,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of parse and classify; the fastest counts")
    parser.add_argument("--mix", choices=("realistic", "privacy"), default="realistic",
                        help="realistic: one mail in ten from Meta; privacy: every mail a Meta privacy mail")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp:
        workdir = Path(tmp)
        folder = workdir / "mail"
        folder.mkdir()
        total = generate(folder, args.count, mix=args.mix)
        files = sorted(folder.glob("*.eml"))
        print(f"{args.mix} mix: {args.count} mails, {total / 1e6:.1f} MB ({total / args.count / 1024:.1f} KiB each on average)")

        parse_s = best_of(args.repeat, lambda: time_parse(files))
        runs = [time_classify(files) for _ in range(max(1, args.repeat))]
        classify_s, counts = min(run[0] for run in runs), runs[-1][1]
        ingest_s = time_ingest(folder, files, workdir)
        rate = {name: args.count / s for name, s in
                (("parse", parse_s), ("classify", classify_s), ("ingest", ingest_s))}
        print(f"categories: {json.dumps(dict(sorted(counts.items())))}")
        print(f"{'phase':<10}{'seconds':>10}{'mails/s':>10}{'vs parse':>10}   target")
        targets = {"parse": "", "classify": ">= 0.80" if args.mix == "realistic" else ">= 0.66",
                   "ingest": ">= 0.50" if args.mix == "realistic" else ""}
        for name, seconds in (("parse", parse_s), ("classify", classify_s), ("ingest", ingest_s)):
            ratio = rate[name] / rate["parse"]
            print(f"{name:<10}{seconds:>10.2f}{rate[name]:>10.0f}{ratio:>10.2f}   {targets[name]}")

        small = max(1, args.count // 10)
        rss_small, rss_full = peak_rss_of_ingest(folder, small), peak_rss_of_ingest(folder, args.count)
        print(f"peak RSS of ingest: {rss_small:.0f} MiB for {small} mails, {rss_full:.0f} MiB for "
              f"{args.count} mails (ratio {rss_full / rss_small:.2f}; flat in N means about 1)")
        print(f"this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
