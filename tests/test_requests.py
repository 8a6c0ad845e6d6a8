"""Requests added by hand, their timeline, notes, and how mails join them."""

from __future__ import annotations

from datetime import datetime, timezone

from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail


def test_request_added_by_hand_starts_the_clock(cli):
    result = cli("request", "add", "--address", "Anna@Example.org", "--platform", "instagram",
                 "--country", "de", "--date", "2025-01-31")
    assert "Request #1 added" in result.stdout
    [request] = cli.json("status", "--json")["requests"]
    assert request["address"] == "anna@example.org"
    assert request["country"] == "DE"
    assert request["state"] == "submitted"
    assert request["submitted"] == "2025-01-31"
    assert request["deadline"] == "2025-02-28"
    assert request["overdue"] is True


def test_mail_joins_the_request_by_address_platform_and_kind(cli, tmp_path):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-05-30")
    (tmp_path / "refusal.eml").write_bytes(meta_mail(REFUSAL, to="Anna <ANNA@example.org>"))
    cli("ingest", tmp_path / "refusal.eml")
    [request] = cli.json("status", "--json")["requests"]
    assert request["state"] == "rejected"
    assert request["submitted"] == "2025-05-30"


def test_request_show_lists_the_timeline_in_date_order(cli, tmp_path):
    (tmp_path / "b.eml").write_bytes(meta_mail(REFUSAL, subject="Decision",
                                               date=datetime(2025, 6, 20, tzinfo=timezone.utc)))
    (tmp_path / "a.eml").write_bytes(meta_mail(ACKNOWLEDGEMENT, subject="Received",
                                               date=datetime(2025, 6, 1, tzinfo=timezone.utc)))
    cli("ingest", tmp_path)
    shown = cli.json("request", "show", "1", "--json")
    assert [(e["kind"], e["detail"]) for e in shown["events"]] == [("acknowledgement", "Received"),
                                                                   ("rejected", "Decision")]
    text = cli("request", "show", "1").stdout
    assert "refused" in text and "2025-06-20" in text


def test_a_note_is_kept(cli):
    cli("request", "add", "--address", "a@example.org", "--platform", "facebook")
    cli("request", "note", "1", "Sent the form again by post")
    assert "Sent the form again by post" in cli("request", "show", "1").stdout


def test_duplicate_request_is_refused(cli):
    cli("request", "add", "--address", "a@example.org", "--platform", "facebook")
    result = cli("request", "add", "--address", "a@example.org", "--platform", "facebook", expect=1)
    assert "exists already" in result.output


def test_wrong_platform_is_a_usage_error(cli):
    result = cli("request", "add", "--address", "a@example.org", "--platform", "myspace", expect=2)
    assert "facebook, instagram" in result.output


def test_bad_date_is_a_usage_error(cli):
    result = cli("request", "add", "--address", "a@example.org", "--platform", "facebook",
                 "--date", "31.01.2025", expect=2)
    assert "YYYY-MM-DD" in result.output


def test_a_notice_without_a_request_suggests_objecting(cli, tmp_path):
    notice = meta_mail("We're getting ready to expand our AI at Meta experiences. You have the right to object "
                       "to how we use your information.", to="new@example.org",
                       subject="Learn how we'll use your information as we improve AI at Meta")
    (tmp_path / "notice.eml").write_bytes(notice)
    cli("ingest", tmp_path / "notice.eml")
    [suggestion] = cli.json("status", "--json")["suggestions"]
    assert suggestion["address"] == "new@example.org"
    assert "request add --address new@example.org" in cli("status").stdout
    cli("request", "add", "--address", "new@example.org", "--platform", "facebook")
    assert cli.json("status", "--json")["suggestions"] == []


def test_objecting_again_after_a_refusal_starts_a_new_clock_and_a_new_refusal_alerts_again(cli, tmp_path):
    for name, body, day in (("1.eml", ACKNOWLEDGEMENT, datetime(2024, 6, 10, tzinfo=timezone.utc)),
                            ("2.eml", REFUSAL, datetime(2024, 6, 20, tzinfo=timezone.utc)),
                            ("3.eml", ACKNOWLEDGEMENT, datetime(2025, 5, 20, tzinfo=timezone.utc)),
                            ("4.eml", REFUSAL, datetime(2025, 6, 2, tzinfo=timezone.utc))):
        (tmp_path / name).write_bytes(meta_mail(body, date=day, subject=name))
    cli("ingest", tmp_path / "1.eml", tmp_path / "2.eml", tmp_path / "3.eml")
    [request] = cli.json("status", "--json")["requests"]
    assert (request["state"], request["submitted"], request["deadline"]) == ("acknowledged", "2025-05-20",
                                                                             "2025-06-20")
    cli("ingest", tmp_path / "4.eml")
    refusals = [a for a in cli.json("status", "--json")["alerts"] if a["reason"] == "refused"]
    assert len(refusals) == 2


def test_a_complaint_filed_on_the_day_of_the_refusal_comes_after_it(cli, tmp_path):
    (tmp_path / "refusal.eml").write_bytes(meta_mail(REFUSAL, date=datetime(2025, 6, 2, 13, 47,
                                                                            tzinfo=timezone.utc)))
    cli("ingest", tmp_path / "refusal.eml")
    cli("complaint", "filed", "1", "--authority", "IE", "--date", "2025-06-02")
    [request] = cli.json("status", "--json")["requests"]
    assert request["state"] == "complaint_filed"
