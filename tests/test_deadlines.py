"""Legal deadlines: Art. 12(3) one month (plus two when Meta extends in time), Art. 78(2) three months."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from mails import ACKNOWLEDGEMENT, meta_mail
from tracker import lifecycle
from tracker.lifecycle import EventFact, derive


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("received, deadline", [
    (date(2025, 1, 31), date(2025, 2, 28)),    # no 31 February: the month's last day
    (date(2024, 1, 31), date(2024, 2, 29)),    # leap year
    (date(2024, 1, 29), date(2024, 2, 29)),
    (date(2025, 1, 29), date(2025, 2, 28)),    # 29 February does not exist in 2025
    (date(2024, 2, 29), date(2024, 3, 29)),    # from a leap day: the same date next month
    (date(2025, 2, 28), date(2025, 3, 28)),    # not the month's end: the same date
    (date(2025, 3, 31), date(2025, 4, 30)),
    (date(2025, 12, 15), date(2026, 1, 15)),   # across the year end
    (date(2025, 12, 31), date(2026, 1, 31)),
])
def test_decision_is_due_one_calendar_month_after_receipt(received, deadline):
    timeline = derive([], submitted=received)
    assert timeline.deadline == deadline


@pytest.mark.parametrize("received, deadline", [
    (date(2025, 1, 31), date(2025, 4, 30)),    # three months from receipt, not two from 28 February
    (date(2023, 11, 30), date(2024, 2, 29)),   # over the year end into a leap February
    (date(2024, 11, 30), date(2025, 2, 28)),
    (date(2025, 12, 31), date(2026, 3, 31)),
])
def test_an_extension_announced_in_time_adds_two_months(received, deadline):
    announced = _at(received + timedelta(days=10))
    timeline = derive([EventFact(lifecycle.EVENT_EXTENDED, announced)], submitted=received)
    assert timeline.extended
    assert timeline.deadline == deadline


def test_an_extension_announced_after_the_first_month_does_not_move_the_deadline():
    received = date(2025, 1, 31)
    on_the_last_day = derive([EventFact(lifecycle.EVENT_EXTENDED, _at(date(2025, 2, 28)))], submitted=received)
    too_late = derive([EventFact(lifecycle.EVENT_EXTENDED, _at(date(2025, 3, 1)))], submitted=received)
    assert on_the_last_day.deadline == date(2025, 4, 30)
    assert not too_late.extended
    assert too_late.deadline == date(2025, 2, 28)
    assert too_late.overdue(date(2025, 3, 1))


def test_without_a_submitted_date_the_first_code_or_acknowledgement_starts_the_clock():
    events = [EventFact("acknowledgement", _at(date(2024, 1, 31))), EventFact("otp", _at(date(2024, 1, 30)))]
    timeline = derive(events)
    assert timeline.received == date(2024, 1, 30)
    assert timeline.deadline == date(2024, 2, 29)


def test_the_deadline_day_itself_is_not_overdue():
    timeline = derive([], submitted=date(2025, 1, 31))
    assert timeline.days_left(date(2025, 2, 28)) == 0
    assert not timeline.overdue(date(2025, 2, 28))
    assert timeline.overdue(date(2025, 3, 1))
    assert timeline.days_left(date(2025, 3, 1)) == -1


def test_a_decided_request_is_never_overdue():
    events = [EventFact("rejected", _at(date(2025, 5, 1)))]
    timeline = derive(events, submitted=date(2025, 1, 31))
    assert timeline.decided == date(2025, 5, 1)
    assert not timeline.overdue(date(2025, 6, 1))


@pytest.mark.parametrize("filed, due", [
    (date(2025, 11, 30), date(2026, 2, 28)),
    (date(2023, 11, 29), date(2024, 2, 29)),
    (date(2025, 10, 31), date(2026, 1, 31)),
])
def test_the_authority_has_three_months(filed, due):
    assert lifecycle.authority_deadline(filed) == due


# ---- through the command line ---------------------------------------------------

def test_request_extend_moves_the_deadline_shown_in_status(cli):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-01-31")
    result = cli("request", "extend", "1", "--date", "2025-02-20")
    assert "2025-04-30" in result.stdout
    [request] = cli.json("status", "--json")["requests"]
    assert request["deadline"] == "2025-04-30"
    assert request["extended"] is True
    assert "extended" in request["flags"]


def test_request_extend_too_late_says_the_deadline_stays(cli):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-01-31")
    result = cli("request", "extend", "1", "--date", "2025-03-10")
    assert "after the first month" in result.stdout and "2025-02-28" in result.stdout
    [request] = cli.json("status", "--json")["requests"]
    assert request["deadline"] == "2025-02-28"
    assert request["extended"] is False


def test_an_extension_mail_from_meta_extends_the_deadline(cli, tmp_path):
    (tmp_path / "ack.eml").write_bytes(meta_mail(ACKNOWLEDGEMENT, date=datetime(2024, 1, 31, 9, tzinfo=timezone.utc)))
    (tmp_path / "ext.eml").write_bytes(meta_mail(
        "We need more time to review your objection. We will extend the period to respond by two further months, "
        "as allowed by Article 12(3) GDPR.", subject="About your objection",
        date=datetime(2024, 2, 20, 9, tzinfo=timezone.utc)))
    cli("ingest", tmp_path)
    [request] = cli.json("status", "--json")["requests"]
    assert request["extended"] is True
    assert request["deadline"] == "2024-04-30"


def test_overdue_requests_come_first_most_overdue_first(cli):
    today = datetime.now(timezone.utc).date()
    submitted = {"future@example.org": today - timedelta(days=5), "late@example.org": today - timedelta(days=45),
                 "later@example.org": today - timedelta(days=80)}
    for address, day in submitted.items():
        cli("request", "add", "--address", address, "--platform", "facebook", "--date", day.isoformat())
    cli("request", "add", "--address", "done@example.org", "--platform", "facebook", "--date", "2024-01-10")
    cli("complaint", "filed", "4", "--authority", "IE", "--date", "2024-03-01")

    status = cli.json("status", "--json")
    assert [r["address"] for r in status["requests"]] == [
        "later@example.org", "late@example.org", "future@example.org", "done@example.org"]
    for entry in status["requests"][:3]:
        deadline = lifecycle.add_months(submitted[entry["address"]], 1)
        assert entry["deadline"] == deadline.isoformat()
        assert entry["days_left"] == (deadline - today).days
        assert entry["overdue"] is (deadline < today)
    assert [r["overdue"] for r in status["requests"]] == [True, True, False, False]
    assert status["requests"][3]["days_left"] is None
    overdue_alerts = [a for a in status["alerts"] if a["reason"] == "overdue"]
    assert len(overdue_alerts) == 2
    assert all("has not decided" in a["title"] for a in overdue_alerts)


def test_a_filed_complaint_shows_the_authority_deadline(cli):
    cli("request", "add", "--address", "anna@example.org", "--platform", "instagram", "--date", "2025-10-01")
    result = cli("complaint", "filed", "1", "--authority", "de-by", "--date", "2025-11-30", "--reference", "LDA-1-2025")
    assert "2026-02-28" in result.stdout
    [request] = cli.json("status", "--json")["requests"]
    assert request["state"] == "complaint_filed"
    assert request["complaint"]["authority"] == "DE-BY"
    assert request["complaint"]["reference"] == "LDA-1-2025"
    assert request["complaint"]["authority_deadline"] == "2026-02-28"


def test_a_period_from_an_extreme_stored_date_ends_at_the_last_date_there_is():
    from datetime import date

    from tracker.lifecycle import add_months
    assert add_months(date(9999, 12, 1), 3) == date.max
