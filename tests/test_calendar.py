"""`calendar`: the open deadlines as an .ics file a calendar app can read, and the daemon keeping it current."""

from __future__ import annotations

import stat
from datetime import date, datetime, timedelta, timezone

import pytest
from icalendar import Calendar

from mails import ACKNOWLEDGEMENT, APPROVAL, REFUSAL, meta_mail
from tracker.config import load_settings
from tracker.daemon import Daemon
from tracker.lifecycle import add_months
from tracker.store import Store

OTP_BODY = "Your objection to AI at Meta: enter this code: 482913. It expires in one hour."


def events(ics: str | bytes) -> dict[str, object]:
    """The calendar's events by UID, parsed back as a calendar app would."""
    calendar = Calendar.from_ical(ics)
    found = {str(event["UID"]): event for event in calendar.walk("VEVENT")}
    assert len(found) == len(calendar.walk("VEVENT")), "two events share a UID"
    return found


def start(event) -> date:
    day = event["DTSTART"].dt
    assert type(day) is date, "a deadline is an all-day event"
    return day


def mail(tmp_path, name: str, body: str, when: datetime, to: str = "anna@example.org"):
    path = tmp_path / name
    path.write_bytes(meta_mail(body, to=to, subject=name, date=when, message_id=f"<{name}@facebookmail.com>"))
    return path


# ---- what the calendar holds -------------------------------------------------------------

def test_a_request_added_by_hand_is_due_one_month_later_with_a_reminder(cli):
    assert events(cli("calendar").stdout) == {}  # nothing to wait for yet: an empty, valid calendar

    cli("request", "add", "--address", "anna@example.org", "--platform", "instagram", "--date", "2025-01-31")
    [(uid, event)] = events(cli("calendar").stdout).items()
    assert uid == "request-1-round-1-deadline@privacy-tracker"
    assert start(event) == date(2025, 2, 28)  # Art. 12(3): one month, ending on the month's last day
    assert event["DTEND"].dt == date(2025, 3, 1)
    assert str(event["SUMMARY"]) == "Meta must answer your Instagram objection (request #1)"
    description = str(event["DESCRIPTION"])
    assert "anna@example.org" in description and "received it on 2025-01-31" in description
    assert "privacy-tracker complaint draft 1" in description  # what to do if nothing comes
    [alarm] = event.walk("VALARM")
    assert alarm["TRIGGER"].dt == timedelta(days=-3)
    assert str(alarm["ACTION"]) == "DISPLAY" and "request #1" in str(alarm["DESCRIPTION"])


def test_an_acknowledgement_starts_the_clock_and_an_extension_moves_the_same_event(cli, tmp_path):
    cli("ingest", mail(tmp_path, "ack", ACKNOWLEDGEMENT, datetime(2025, 6, 2, 10, tzinfo=timezone.utc)))
    [(uid, event)] = events(cli("calendar").stdout).items()
    assert uid == "request-1-round-1-deadline@privacy-tracker"
    assert start(event) == date(2025, 7, 2)
    assert str(event["SUMMARY"]) == "Meta must answer your Facebook objection (request #1)"

    cli("request", "extend", "1", "--date", "2025-06-20")
    [(uid_after, event)] = events(cli("calendar").stdout).items()
    assert uid_after == uid  # a subscribing app moves the event instead of adding a second one
    assert start(event) == date(2025, 9, 2)  # one month plus the two-month extension
    assert "extended" in str(event["DESCRIPTION"])


def test_decided_requests_have_no_event_and_a_filed_complaint_has_the_authoritys_date(cli, tmp_path):
    cli("ingest", mail(tmp_path, "ack", ACKNOWLEDGEMENT, datetime(2025, 6, 2, tzinfo=timezone.utc)),
        mail(tmp_path, "refusal", REFUSAL, datetime(2025, 6, 20, tzinfo=timezone.utc)),
        mail(tmp_path, "approval", APPROVAL, datetime(2025, 6, 21, tzinfo=timezone.utc), to="ben@example.org"))
    assert {r["state"] for r in cli.json("status", "--json")["requests"]} == {"rejected", "approved"}
    assert events(cli("calendar").stdout) == {}

    cli("complaint", "filed", "1", "--authority", "DE-BY", "--date", "2025-07-01", "--reference", "LDA-1234")
    [(uid, event)] = events(cli("calendar").stdout).items()
    assert uid == "complaint-1-authority@privacy-tracker"
    assert start(event) == date(2025, 10, 1)  # Art. 78(2): three months
    assert "request #1" in str(event["SUMMARY"])
    description = str(event["DESCRIPTION"])
    assert "Bayerisches Landesamt" in description and "LDA-1234" in description and "court" in description
    assert event.walk("VALARM")

    # Objecting again opens a second round with its own clock; the complaint's date stays.
    cli("ingest", mail(tmp_path, "ack-again", ACKNOWLEDGEMENT, datetime(2025, 8, 1, tzinfo=timezone.utc)))
    found = events(cli("calendar").stdout)
    assert sorted(found) == ["complaint-1-authority@privacy-tracker", "request-1-round-2-deadline@privacy-tracker"]
    assert start(found["request-1-round-2-deadline@privacy-tracker"]) == date(2025, 9, 1)


def test_an_information_request_keeps_the_deadline_and_says_what_to_do(cli, tmp_path):
    cli("request", "add", "--address", "cleo@example.org", "--platform", "facebook", "--kind", "third_party_data",
        "--date", "2025-06-01")
    cli("ingest", mail(tmp_path, "info", "We need more information to process your objection. Please provide a "
                       "screenshot showing how your information was used.",
                       datetime(2025, 6, 5, tzinfo=timezone.utc), to="cleo@example.org"))
    assert cli.json("status", "--json")["requests"][0]["state"] == "info_requested"
    [event] = events(cli("calendar").stdout).values()
    assert start(event) == date(2025, 7, 1)
    assert str(event["SUMMARY"]) == "Meta must answer your Facebook third-party data request (request #1)"
    assert "more information on 2025-06-05" in str(event["DESCRIPTION"])


def test_a_one_time_code_never_reaches_the_calendar(cli, tmp_path):
    cli("ingest", mail(tmp_path, "otp", OTP_BODY, datetime(2025, 6, 2, tzinfo=timezone.utc)))
    assert cli.json("status", "--json")["requests"][0]["state"] == "code_sent"
    ics = cli("calendar").stdout
    [event] = events(ics).values()
    assert start(event) == date(2025, 7, 2)  # the code mail tells when Meta received the request
    assert "482913" not in ics


# ---- the file ------------------------------------------------------------------------

def test_out_writes_a_private_file_that_stays_the_same_for_the_same_deadlines(cli, tmp_path):
    cli("request", "add", "--address", "anna@example.org", "--platform", "instagram", "--date", "2025-05-20")
    cli("request", "add", "--address", "ben@example.org", "--platform", "facebook", "--date", "2025-05-21")
    target = tmp_path / "deadlines.ics"
    target.write_text("an older file, readable by all\n")
    target.chmod(0o644)

    assert "2 deadlines written to" in cli("calendar", "--out", target).stdout
    first = target.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # it holds the person's addresses
    assert first == cli("calendar").stdout_bytes  # --out writes what is printed without it
    assert sorted(events(first)) == ["request-1-round-1-deadline@privacy-tracker",
                                     "request-2-round-1-deadline@privacy-tracker"]
    written = target.stat()

    assert "unchanged" in cli("calendar", "--out", target).stdout
    assert target.read_bytes() == first
    assert (target.stat().st_ino, target.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".deadlines.ics")]  # no temp file left

    cli("request", "note", "1", "called the helpline")  # a note moves no deadline: the file stays
    assert "unchanged" in cli("calendar", "--out", target).stdout


def test_out_in_a_missing_folder_is_one_line_naming_the_option(cli, tmp_path):
    result = cli("calendar", "--out", tmp_path / "missing" / "deadlines.ics", expect=1)
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: --out: the folder") and "does not exist" in line


# ---- kept up to date after each poll (real Dovecot) --------------------------------------

def acknowledgement_for(address: str) -> bytes:
    """Dated now, so the request is open and not overdue."""
    return meta_mail(ACKNOWLEDGEMENT, to=address, subject="We received your request",
                     message_id=f"<ack-{address}@facebookmail.com>", date=datetime.now(timezone.utc))


@pytest.mark.dovecot
def test_the_daemon_rewrites_the_calendar_file_after_a_poll_only_when_it_changed(dovecot, imap_config):
    imap_config.write_text(imap_config.read_text() + '\n[calendar]\nfile = "deadlines.ics"\n')
    settings = load_settings(imap_config)
    target = imap_config.parent / "deadlines.ics"  # relative to the config file
    assert settings.calendar.file == target
    db = Store(settings.database.resolved_url())
    daemon = Daemon(db, settings)
    [account] = settings.accounts
    try:
        dovecot.deliver("alice", acknowledgement_for("carla@example.org"))
        daemon._poll(account)  # what the scheduler runs for each account
        [event] = events(target.read_bytes()).values()
        assert "carla@example.org" in str(event["DESCRIPTION"])
        assert start(event) == add_months(datetime.now(timezone.utc).date(), 1)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        written = target.stat()

        daemon._poll(account)  # nothing new: the file is left alone
        assert (target.stat().st_ino, target.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)

        dovecot.deliver("alice", meta_mail(REFUSAL, to="carla@example.org", subject="Your objection",
                                           message_id="<refusal-carla@facebookmail.com>",
                                           date=datetime.now(timezone.utc)))
        daemon._poll(account)
        assert events(target.read_bytes()) == {}  # refused: nothing left to wait for
    finally:
        db.dispose()


@pytest.mark.dovecot
def test_poll_once_writes_the_calendar_file_and_a_bad_one_is_one_error_line(dovecot, imap_config, cli):
    dovecot.deliver("alice", acknowledgement_for("dora@example.org"))
    good = imap_config.read_text()
    imap_config.write_text(good + f'\n[calendar]\nfile = "{imap_config.parent / "nowhere" / "d.ics"}"\n')
    result = cli("poll", "--once", expect=1)
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: [calendar] file: the folder") and "nowhere" in line
    assert cli.json("status", "--json")["requests"][0]["address"] == "dora@example.org"  # the poll itself went on

    imap_config.write_text(good + '\n[calendar]\nfile = "deadlines.ics"\n')
    cli("poll", "--once")
    [event] = events((imap_config.parent / "deadlines.ics").read_bytes()).values()
    assert "dora@example.org" in str(event["DESCRIPTION"])
