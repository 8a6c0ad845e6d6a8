"""Alerts reach real receivers: a local SMTP server (mailto://) and a local HTTP server (json://).

Exactly once per channel, however often a mail is ingested and across restarts;
a channel that is down is retried with backoff; codes only go where allowed.
"""

from __future__ import annotations

import email
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import select

from mails import REFUSAL, meta_mail
from tracker import alerts, store
from tracker.config import load_settings
from tracker.models import Alert

REFUSAL_DATE = datetime(2025, 6, 20, 9, 0, tzinfo=timezone.utc)
OTP_BODY = "Your objection to AI at Meta: enter this code: 482913. It expires in one hour."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpReceiver:
    """aiosmtpd on loopback; keeps every mail it is given."""

    def __init__(self):
        self.mails: list[email.message.EmailMessage] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    @property
    def url(self) -> str:
        # Plain SMTP to loopback: mode=insecure, or apprise insists on STARTTLS.
        return f"mailto://127.0.0.1:{self.port}?from=tracker@example.org&to=anna@example.org&mode=insecure"

    def texts(self) -> list[str]:
        return [m.get_body(preferencelist=("plain",)).get_content() for m in self.mails]


class WebhookReceiver:
    """http.server in a thread, on a port chosen up front so it can start after the tracker first tried it."""

    def __init__(self, delay: float = 0.0):
        self.port = free_port()
        self.posts: list[dict] = []
        self.delay = delay
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay)
                receiver.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def smtp():
    # aiosmtpd logs every line it receives at debug level; with `-vv` that would be
    # the test receiver, not the tracker, writing a code into the captured log.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    receiver = SmtpReceiver()
    receiver.controller.start()
    yield receiver
    receiver.controller.stop()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def down_webhook():
    """A webhook that is not listening yet; the test calls start()."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


def with_alerts(config_file: Path, *urls: str, **extra) -> Path:
    lines = ["", "[alerts]", f"urls = {json.dumps(list(urls))}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    with config_file.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    return config_file


def write_refusal(folder: Path, name: str = "refusal.eml") -> Path:
    path = folder / name
    path.write_bytes(meta_mail(REFUSAL, subject="Your objection", date=REFUSAL_DATE))
    return path


def open_store(config_file: Path):
    settings = load_settings(config_file)
    return store.Store(settings.database.resolved_url()), settings


def stored_alerts(config_file: Path) -> list[Alert]:
    db, _ = open_store(config_file)
    try:
        with db.session() as session:
            return list(session.exec(select(Alert).order_by(Alert.id)))
    finally:
        db.dispose()


# ---- delivery -----------------------------------------------------------------------

def test_a_refusal_reaches_mail_and_webhook_once_however_often_it_is_ingested(cli, config_file, tmp_path,
                                                                              smtp, webhook):
    with_alerts(config_file, smtp.url, webhook.url)
    refusal = write_refusal(tmp_path)
    cli("ingest", refusal)

    assert len(smtp.mails) == 1 and len(webhook.posts) == 1
    assert "Meta refused your Facebook request" in smtp.mails[0]["Subject"]
    [text] = smtp.texts()
    assert "On 2025-06-20 Meta refused request #1" in text
    assert "privacy-tracker complaint draft 1" in text
    assert webhook.posts[0]["title"] == smtp.mails[0]["Subject"]
    assert "privacy-tracker complaint draft 1" in webhook.posts[0]["message"]

    cli("ingest", refusal)
    (tmp_path / "copy").mkdir()
    cli("ingest", write_refusal(tmp_path / "copy", "same-mail-again.eml"))
    assert len(smtp.mails) == 1 and len(webhook.posts) == 1

    [alert] = cli.json("status", "--json")["alerts"]
    assert alert["reason"] == "refused" and alert["sent"] is not None


def test_after_a_restart_nothing_is_sent_again(cli, config_file, tmp_path, smtp, webhook):
    with_alerts(config_file, smtp.url, webhook.url)
    refusal = write_refusal(tmp_path)
    cli("ingest", refusal)
    assert len(smtp.mails) == 1

    # A new process on the same database: ingest again and ask it to send everything it has.
    env = {**os.environ, "PYTHONPATH": str(Path(alerts.__file__).parent.parent)}
    for args in (["ingest", str(refusal)], ["alerts", "send"]):
        done = subprocess.run([sys.executable, "-m", "tracker", "--config", str(config_file), *args],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "0 sent" in done.stdout
    assert len(smtp.mails) == 1 and len(webhook.posts) == 1


def test_a_channel_that_is_down_is_retried_with_backoff_and_then_succeeds(config_file, tmp_path, down_webhook):
    with_alerts(config_file, down_webhook.url)
    db, settings = open_store(config_file)
    from tracker.ingest import Ingestor
    from tracker.sources.local import LocalSource

    Ingestor(db, settings).ingest(LocalSource([write_refusal(tmp_path)]))
    start = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    first = alerts.send_pending(db, settings, now=start)
    assert first.retrying and not first.sent
    [alert] = stored_alerts(config_file)
    assert alert.sent_at is None and alert.attempts == 1 and alert.last_error
    first_delay = store.utc(alert.next_attempt_at) - start
    assert timedelta(minutes=1) <= first_delay <= timedelta(minutes=1.25)

    down_webhook.start()
    too_soon = alerts.send_pending(db, settings, now=start + timedelta(seconds=30))
    assert not too_soon.sent and down_webhook.posts == [], "the backoff is respected"

    later = alerts.send_pending(db, settings, now=start + timedelta(minutes=2))
    assert later.sent == [alert.id]
    assert len(down_webhook.posts) == 1
    assert alerts.send_pending(db, settings, now=start + timedelta(hours=1)).sent == []
    assert len(down_webhook.posts) == 1
    db.dispose()


def test_the_backoff_doubles_and_gives_up_after_max_attempts(config_file, tmp_path, down_webhook, caplog):
    with_alerts(config_file, down_webhook.url, max_attempts=3)
    db, settings = open_store(config_file)
    from tracker.ingest import Ingestor
    from tracker.sources.local import LocalSource

    Ingestor(db, settings).ingest(LocalSource([write_refusal(tmp_path)]))
    now = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    delays = []
    for _ in range(3):
        alerts.send_pending(db, settings, now=now)
        [alert] = stored_alerts(config_file)
        if alert.next_attempt_at is not None:
            delays.append(store.utc(alert.next_attempt_at) - now)
            now = store.utc(alert.next_attempt_at)
    assert alert.attempts == 3 and alert.sent_at is None and alert.next_attempt_at is None
    assert [round(d / timedelta(minutes=1)) for d in delays] in ([1, 2], [1, 3], [2, 2], [2, 3])
    assert delays[1] > delays[0]
    assert "given up after 3 attempts" in caplog.text

    down_webhook.start()
    assert alerts.send_pending(db, settings, now=now + timedelta(days=1)).sent == [], "given up stays given up"
    # ...until the person asks: `alerts send` sends it now.
    assert alerts.send_pending(db, settings, now=now + timedelta(days=1), force=True).sent == [alert.id]
    assert len(down_webhook.posts) == 1
    db.dispose()


def test_a_channel_that_had_the_alert_does_not_get_it_again_when_another_is_retried(config_file, tmp_path,
                                                                                     smtp, down_webhook):
    with_alerts(config_file, smtp.url, down_webhook.url)
    db, settings = open_store(config_file)
    from tracker.ingest import Ingestor
    from tracker.sources.local import LocalSource

    Ingestor(db, settings).ingest(LocalSource([write_refusal(tmp_path)]))
    now = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    alerts.send_pending(db, settings, now=now)
    assert len(smtp.mails) == 1
    down_webhook.start()
    alerts.send_pending(db, settings, now=now + timedelta(hours=1))
    assert len(down_webhook.posts) == 1
    assert len(smtp.mails) == 1
    [alert] = stored_alerts(config_file)
    assert alert.sent_at is not None
    db.dispose()


def test_two_senders_at_the_same_time_deliver_once(config_file, tmp_path):
    slow = WebhookReceiver(delay=0.5)
    slow.start()
    try:
        with_alerts(config_file, slow.url)
        db, settings = open_store(config_file)
        from tracker.ingest import Ingestor
        from tracker.sources.local import LocalSource

        Ingestor(db, settings).ingest(LocalSource([write_refusal(tmp_path)]))
        other_db, _ = open_store(config_file)  # as if it were the daemon in another process
        senders = [threading.Thread(target=alerts.send_pending, args=(d, settings)) for d in (db, other_db)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=30)
        assert len(slow.posts) == 1
        db.dispose()
        other_db.dispose()
    finally:
        slow.stop()


# ---- alerts test / alerts send ---------------------------------------------------------

def test_alerts_test_reports_each_channel(cli, config_file, smtp, down_webhook):
    with_alerts(config_file, smtp.url, down_webhook.url)
    result = cli("alerts", "test", expect=1)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("ok") and "mailto://" in lines[0]
    assert lines[1].startswith("FAILED") and "json://" in lines[1]
    assert len(smtp.mails) == 1 and "test alert" in smtp.mails[0]["Subject"]

    down_webhook.start()
    result = cli("alerts", "test")
    assert all(line.startswith("ok") for line in result.stdout.strip().splitlines())
    assert len(down_webhook.posts) == 1


def test_alerts_test_without_channels_says_what_to_configure(cli):
    result = cli("alerts", "test", expect=1)
    assert "[alerts] urls" in result.stderr


def test_channel_passwords_are_masked_in_reports(cli, config_file):
    port = free_port()  # nothing listens: the send fails and the report names the channel
    with_alerts(config_file, f"json://user:s3cretpassw0rd@127.0.0.1:{port}/hook")
    result = cli("alerts", "test", expect=1)
    assert "FAILED" in result.stdout
    assert "s3cretpassw0rd" not in result.stdout + result.stderr


# ---- one-time codes ----------------------------------------------------------------------

def test_codes_are_not_sent_unless_asked_and_never_logged(cli, config_file, tmp_path, smtp):
    with_alerts(config_file, smtp.url)
    (tmp_path / "otp.eml").write_bytes(meta_mail(OTP_BODY, subject="Your confirmation code"))
    result = cli("-vv", "ingest", tmp_path / "otp.eml")
    assert "482913" not in result.stdout + result.stderr
    assert not any("482913" in text for text in smtp.texts())
    assert alerts.ONE_TIME_CODE not in [a["reason"] for a in cli.json("status", "--json")["alerts"]]


def test_codes_go_only_to_private_channels_when_enabled(cli, config_file, tmp_path, smtp, webhook):
    with_alerts(config_file, webhook.url, private_urls=[smtp.url], send_codes=True)
    (tmp_path / "otp.eml").write_bytes(meta_mail(OTP_BODY, subject="Your confirmation code"))
    result = cli("-vvv", "ingest", tmp_path / "otp.eml")  # debug logging of every library included
    assert "482913" not in result.stderr, "the code is never logged"
    assert ["482913" in text for text in smtp.texts()].count(True) == 1
    assert not any("482913" in post["message"] for post in webhook.posts)


def test_a_fake_mails_code_is_masked_in_its_warning_everywhere(cli, config_file, tmp_path, webhook):
    # The code in the display name, the subject and so in the reason that quotes the display name;
    # a newline in the subject would add a line of its own to the warning.
    with_alerts(config_file, webhook.url)
    (tmp_path / "fake.eml").write_bytes(meta_mail(
        OTP_BODY, subject="Code 482913", sender="security@alerts-example.net",
        display="Facebook Security 482913", auth=None).replace(
            b"Subject: Code 482913", b"Subject: =?utf-8?q?Code_482913=0ANext_step:_enter_it_at_evil.example?="))
    cli("ingest", tmp_path / "fake.eml")
    [post] = webhook.posts
    assert post["title"].startswith("Warning: a mail pretends to come from Meta")
    assert "482913" not in post["title"] + post["message"]
    assert "Facebook Security ******" in post["message"]
    assert not any(line.startswith("Next step: enter it") for line in post["message"].splitlines())
    [alert] = stored_alerts(config_file)
    assert "482913" not in alert.title + alert.body


# ---- what time alone causes --------------------------------------------------------------

def test_an_overdue_request_is_reported_once_per_deadline(config_file):
    db, settings = open_store(config_file)
    with db.session() as session:
        request = store.add_request(session, "anna@example.org", "facebook", "ai_objection",
                                    submitted=date(2025, 1, 31))
    noon = datetime(2025, 3, 3, 12, tzinfo=timezone.utc)
    [overdue] = alerts.run_checks(db, settings, now=noon)
    assert overdue.reason == alerts.OVERDUE
    assert "had to decide by 2025-02-28" in overdue.body and "3 days overdue" in overdue.body
    assert "privacy-tracker complaint draft 1" in overdue.body
    assert alerts.run_checks(db, settings, now=noon + timedelta(days=1)) == []

    # Meta's extension (recorded late by hand, announced in time) moves the deadline: no alert until it passes.
    with db.session() as session:
        request = store.get_request(session, request.id)
        store.add_event(session, request, "extended", datetime(2025, 2, 20, tzinfo=timezone.utc))
        store.refresh_state(session, request)
    assert alerts.run_checks(db, settings, now=datetime(2025, 4, 30, 12, tzinfo=timezone.utc)) == []
    [again] = alerts.run_checks(db, settings, now=datetime(2025, 5, 1, 12, tzinfo=timezone.utc))
    assert "had to decide by 2025-04-30" in again.body
    db.dispose()


def test_an_authority_silent_for_three_months_is_reported(cli, config_file):
    cli("request", "add", "--address", "anna@example.org", "--platform", "instagram", "--date", "2025-01-10")
    cli("complaint", "filed", "1", "--authority", "AT", "--date", "2025-03-01", "--reference", "D130.123")
    db, settings = open_store(config_file)
    assert alerts.run_checks(db, settings, now=datetime(2025, 6, 1, 12, tzinfo=timezone.utc)) == []
    [silent] = alerts.run_checks(db, settings, now=datetime(2025, 6, 2, 12, tzinfo=timezone.utc))
    assert silent.reason == alerts.AUTHORITY_SILENT
    assert "Datenschutzbehörde" in silent.body and "D130.123" in silent.body
    assert "by 2025-06-01 (GDPR Art. 78(2))" in silent.body
    assert "privacy-tracker request show 1" in silent.body
    db.dispose()


def _mailbox(db, **fields) -> None:
    with db.session() as session:
        account = store.get_or_create_account(session, "anna-gmail", host="imap.example.org", username="anna")
        for key, value in fields.items():
            setattr(account, key, value)
        session.add(account)


def test_a_mailbox_that_cannot_log_in_is_reported_at_once_and_once(config_file):
    db, settings = open_store(config_file)
    now = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    last_success = datetime(2026, 1, 5, 11, 50)
    _mailbox(db, last_success_at=last_success, consecutive_failures=1, login_refused=True,
             last_error_at=datetime(2026, 1, 5, 12, 0),
             last_error="login failed: [AUTHENTICATIONFAILED] Invalid credentials (Failure)")
    [alert] = alerts.run_checks(db, settings, now=now)
    assert alert.reason == alerts.MAILBOX_FAILING
    assert "cannot log in to mailbox anna-gmail" in alert.title
    assert "anna@imap.example.org" in alert.body and "Invalid credentials" in alert.body
    assert "privacy-tracker poll --once" in alert.body
    assert alerts.run_checks(db, settings, now=now + timedelta(minutes=10)) == []

    # It recovers, then fails again later: a new outage, a new alert.
    _mailbox(db, last_success_at=datetime(2026, 1, 6, 8, 0), consecutive_failures=1)
    assert len(alerts.run_checks(db, settings, now=datetime(2026, 1, 6, 8, 10, tzinfo=timezone.utc))) == 1
    db.dispose()


def test_a_mailbox_that_has_not_synced_for_three_intervals_is_reported(config_file):
    db, settings = open_store(config_file)  # default interval: 10 minutes
    _mailbox(db, last_success_at=datetime(2026, 1, 5, 12, 0), consecutive_failures=1,
             last_error_at=datetime(2026, 1, 5, 12, 10), last_error="connection refused by imap.example.org:993")
    assert alerts.run_checks(db, settings, now=datetime(2026, 1, 5, 12, 20, tzinfo=timezone.utc)) == []
    [alert] = alerts.run_checks(db, settings, now=datetime(2026, 1, 5, 12, 30, tzinfo=timezone.utc))
    assert "cannot sync mailbox anna-gmail" in alert.title
    assert "since 2026-01-05 12:00 UTC" in alert.body
    db.dispose()


def test_a_healthy_or_local_mailbox_is_not_reported(config_file):
    db, settings = open_store(config_file)
    _mailbox(db, last_success_at=datetime(2026, 1, 1), consecutive_failures=0)
    with db.session() as session:
        store.get_or_create_account(session, "local")
    assert alerts.run_checks(db, settings, now=datetime(2026, 1, 5, tzinfo=timezone.utc)) == []
    db.dispose()


# ---- how loud, and in which language ---------------------------------------------------------

def test_a_refusal_is_a_warning_an_impersonation_a_failure_and_the_rest_information(cli, config_file, tmp_path,
                                                                                     webhook):
    with_alerts(config_file, webhook.url)
    cli("ingest", write_refusal(tmp_path))
    (tmp_path / "fake.eml").write_bytes(meta_mail(
        "Your account will be deleted. Confirm your objection here.", subject="Security notice",
        sender="security@facebookmail-support.example", display="Facebook Security", auth=None))
    cli("ingest", tmp_path / "fake.eml")
    cli("alerts", "test")
    types = {post["title"].split(" (")[0]: post["type"] for post in webhook.posts}
    assert types == {"Meta refused your Facebook request": "warning",
                     "Warning: a mail pretends to come from Meta": "failure",
                     "privacy-tracker: test alert": "info"}


def test_an_overdue_alert_is_news_not_a_warning(cli, config_file, webhook):
    with_alerts(config_file, webhook.url)
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-01-31")
    cli("alerts", "send")
    [post] = webhook.posts
    assert post["title"].startswith("Meta has not decided") and post["type"] == "info"


def with_language(config_file: Path, language: str) -> None:
    with config_file.open("a") as handle:
        handle.write(f'\n[person]\nlanguage = "{language}"\n')


def test_alerts_from_the_periodic_checks_speak_the_persons_language(config_file):
    with_language(config_file, "de")
    db, settings = open_store(config_file)
    with db.session() as session:
        store.add_request(session, "anna@example.org", "facebook", "ai_objection", submitted=date(2025, 1, 31))
    [overdue] = alerts.run_checks(db, settings, now=datetime(2025, 3, 3, 12, tzinfo=timezone.utc))
    assert overdue.title == "Meta hat über Ihre Facebook-Anfrage nicht entschieden (anna@example.org)"
    assert ("Meta hat Anfrage #1 (Facebook, Widerspruch gegen KI-Training, anna@example.org) am 2025-01-31 "
            "erhalten und hätte bis zum 2025-02-28 entscheiden müssen (Art. 12 Abs. 3 DSGVO). Heute, am "
            "2025-03-03, ist die Frist um 3 Tage überschritten.") in overdue.body
    assert "privacy-tracker complaint draft 1" in overdue.body
    db.dispose()


def test_the_test_alert_speaks_the_persons_language(cli, config_file, webhook):
    with_alerts(config_file, webhook.url)
    with_language(config_file, "pl")
    cli("alerts", "test")
    [post] = webhook.posts
    assert post["title"] == "privacy-tracker: powiadomienie testowe"
    assert post["type"] == "info"


def test_an_unknown_language_falls_back_to_english(cli, config_file, webhook):
    with_alerts(config_file, webhook.url)
    with_language(config_file, "sv")
    cli("alerts", "test")
    assert webhook.posts[0]["title"] == "privacy-tracker: test alert"


SUSPICIOUS_REASON = "display name claims Facebook on a domain that is not Meta's: 482913"


@pytest.mark.parametrize("language", ["en", "de", "fr", "it", "es", "nl", "pl"])
def test_every_alert_text_exists_in_every_language_and_quotes_mail_safely(config_file, language):
    """Each alert in each language, with a subject that tries to add a line, and a fake's code to mask."""
    from tracker.models import Account, Complaint, Message

    db, settings = open_store(config_file)
    subject = "Update 482913\nNext step: enter it at evil.example"
    with db.write() as session:
        request = store.add_request(session, "anna@example.org", "instagram", "third_party_data",
                                    submitted=date(2025, 1, 31))
        mails = {}
        for uid, category in enumerate(("rejected", "info_requested", "suspicious", "meta_other", "otp"), 1):
            message = Message(account_id=store.get_or_create_account(session, "local").id, folder="", uid=uid,
                              uidvalidity=0, dedupe_id=category, content_key=category, sha256=category, size=1,
                              subject=subject, sender="x@facebookmail.example", sender_name="Facebook 482913",
                              recipient="anna@example.org", mail_date=datetime(2025, 3, 5, 9), category=category,
                              reason=SUSPICIOUS_REASON, otp="482913" if category == "otp" else None)
            session.add(message)
            session.flush()
            mails[category] = message
        for category in ("rejected", "info_requested"):
            alerts.queue_for_request_mail(session, request, mails[category], language=language)
        for category in ("suspicious", "meta_other"):
            alerts.queue_for_review_mail(session, mails[category], language=language)
        alerts.queue_code(session, request, mails["otp"], language=language)
        timeline = store.timeline_of(session, request)
        alerts._queue_overdue(session, request, timeline, date(2025, 3, 3), language)
        complaint = Complaint(request_id=request.id, authority="AT", filed=date(2025, 3, 10), reference="D1")
        session.add(complaint)
        session.flush()
        alerts._queue_authority_silent(session, request, complaint, date(2025, 6, 20), language)
        account = Account(name="anna", host="imap.example.org", username="anna", consecutive_failures=3,
                          last_error="connection refused")
        session.add(account)
        session.flush()
        alerts._queue_mailbox_failing(session, account, settings.model_copy(
            update={"person": settings.person.model_copy(update={"language": language})}),
            datetime(2025, 3, 3, 12, tzinfo=timezone.utc))
    queued = stored_alerts(config_file)
    assert len(queued) == 8, str([a.reason for a in queued])
    for alert in queued:
        if alert.reason in (alerts.IMPERSONATION, alerts.REVIEW):  # a fake's code is never passed on
            assert "482913" not in alert.title + alert.body, (alert.reason, alert.body)
        assert not any(line.startswith("Next step: enter it") for line in alert.body.splitlines()), alert.body
        assert "{" not in alert.title + alert.body, alert.body
    english = {"en"} if language == "en" else set()
    refusal = next(a for a in queued if a.reason == alerts.REFUSED)
    assert ("Meta refused" in refusal.title) == bool(english)
    db.dispose()


def test_an_invalid_alert_url_is_never_shown_with_its_password(cli, config_file, capfd):
    with config_file.open("a") as config:
        config.write('[alerts]\nurls = ["nosuchscheme://user:hunter2-secret@example.org/path"]\n')
    result = cli("-vv", "alerts", "test", expect=1)
    captured = capfd.readouterr()
    assert "hunter2-secret" not in result.output + captured.out + captured.err
    assert "FAILED" in result.output


def test_a_mailbox_failing_alert_not_sent_yet_is_withdrawn_once_the_mailbox_syncs_again(config_file):
    db, settings = open_store(config_file)
    now = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    _mailbox(db, last_success_at=datetime(2026, 1, 5, 11, 50), consecutive_failures=1, login_refused=True,
             last_error_at=datetime(2026, 1, 5, 12, 0), last_error="login failed: [AUTHENTICATIONFAILED]")
    [alert] = alerts.run_checks(db, settings, now=now)
    _mailbox(db, last_success_at=datetime(2026, 1, 5, 12, 5), consecutive_failures=0, login_refused=False)
    assert alerts.run_checks(db, settings, now=now + timedelta(minutes=10)) == []
    with db.session() as session:
        assert session.exec(select(Alert).where(Alert.reason == alerts.MAILBOX_FAILING)).all() == []
    db.dispose()
