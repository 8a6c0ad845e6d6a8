"""The person corrects the record: typed input checked, files that are not mail refused,
requests edited and deleted, stored mails shown, relabelled and forgotten; each change in the timeline."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import db_rows
from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail
from test_alerts import WebhookReceiver, with_alerts

OTP_BODY = "Your objection to AI at Meta: enter this code: 482913. It expires in one hour."
REFUSAL_DAY = datetime(2025, 6, 20, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def ingest_mail(cli, folder: Path, name: str, raw: bytes, expect: int = 0):
    path = folder / name
    path.write_bytes(raw)
    return cli("ingest", path, expect=expect)


def events(cli, request_id: int) -> list[dict]:
    return cli.json("request", "show", request_id, "--json")["events"]


def mail_id(cli, request_id: int, kind: str) -> int:
    return next(e["message"] for e in events(cli, request_id) if e["kind"] == kind)


def only_request(cli) -> dict:
    [request] = cli.json("status", "--json")["requests"]
    return request


# ---- what the person types ------------------------------------------------------------

def test_a_wrong_request_add_names_every_problem_writes_nothing_and_the_right_one_then_goes_through(cli):
    result = cli("request", "add", "--country", "Germany", "--address", "notanemail", "--date", "2030-01-01",
                 "--platform", "facebook", expect=2)

    [line] = [text for text in result.output.splitlines() if text.strip()]
    assert line.startswith("error: ")
    assert "--country: 'Germany' is not a country code" in line and "did you mean DE?" in line
    assert "--address: 'notanemail' is not an e-mail address" in line
    assert "--date: 2030-01-01 is in the future" in line
    assert cli.json("status", "--json")["requests"] == []

    added = cli("request", "add", "--country", "DE", "--region", "by", "--address", "Anna@Example.org",
                "--date", "2025-01-10", "--platform", "Instagram")

    assert "Request #1 added: anna@example.org, instagram" in added.stdout
    request = only_request(cli)
    assert (request["address"], request["platform"], request["country"]) == ("anna@example.org", "instagram", "DE")


@pytest.mark.parametrize("options, problem", [
    (["--country", "XX"], "--country: 'XX' is not a country code the authority directory knows"),
    (["--country", "Austria"], "did you mean AT?"),
    (["--country", "DE", "--region", "Bavaria"], "--region: 'Bavaria' is not a German Land code; known: BB, BE"),
    (["--country", "AT", "--region", "BY"], "--region: a Land (BY) is only for requests from Germany"),
    (["--address", "anna@localhost"], "--address: 'anna@localhost' is not an e-mail address"),
    (["--address", "anna maria@example.org"], "is not an e-mail address"),
    (["--address", "a@b@example.org"], "is not an e-mail address"),
    (["--platform", "myspace"], "--platform: 'myspace' is not a platform; must be one of facebook, instagram"),
    (["--kind", "deletion"], "--kind: 'deletion' is not a kind of request"),
])
def test_each_wrong_value_is_refused_in_one_line_naming_its_option(cli, options, problem):
    typed = {"--address": "anna@example.org", "--platform": "facebook"}
    for option, value in zip(options[::2], options[1::2]):
        typed[option] = value
    result = cli("request", "add", *[part for pair in typed.items() for part in pair], expect=2)
    assert problem in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert cli.json("status", "--json")["requests"] == []


def test_codes_are_taken_in_any_case_and_the_eu_spelling_of_greece(cli):
    cli("request", "add", "--address", "eleni@example.gr", "--platform", "FACEBOOK", "--country", "el",
        "--kind", "Third-Party-Data")
    request = only_request(cli)
    assert (request["platform"], request["kind"], request["country"]) == ("facebook", "third_party_data", "GR")


# ---- files that are not mail ----------------------------------------------------------------

def test_ingest_refuses_files_that_are_not_mail_one_line_each_and_records_a_damaged_mail(cli, config_file, tmp_path):
    (tmp_path / "objection.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n")
    (tmp_path / "notes.txt").write_text("Objected on Monday, waiting for Meta.\nCall back next week.\n")
    (tmp_path / "damaged.eml").write_bytes(
        b"From: Facebook <noreply@facebookmail.com>\nSubject: Your request\n"
        b"Content-Type: multipart/mixed; boundary=\"cut\"\n\n--cut\nContent-Transfer-Encoding: base64\n\n%%%")

    result = cli("ingest", config_file, tmp_path / "objection.pdf", tmp_path / "notes.txt",
                 tmp_path / "damaged.eml", expect=1)

    assert f"skipped {config_file}: not a mail (no header lines" in result.stderr
    assert f"skipped {tmp_path / 'objection.pdf'}: not a mail (a PDF document)" in result.stderr
    assert f"skipped {tmp_path / 'notes.txt'}: not a mail" in result.stderr
    assert result.stdout.startswith("1 new, 0 already known") and "3 file(s) not a mail, skipped" in result.stdout
    status = cli.json("status", "--json")
    assert status["messages_seen"] == 1
    assert [e["source"] for e in status["errors"]] == [str(tmp_path / "damaged.eml")]
    assert [m["subject"] for m in cli.json("review", "--json")["mails"]] == ["Your request"]


def test_a_maildir_with_a_stray_file_records_its_mail_and_names_the_stray(cli, tmp_path):
    import mailbox

    box = mailbox.Maildir(tmp_path / "Maildir")
    box.add(meta_mail(REFUSAL))
    box.close()
    stray = tmp_path / "Maildir" / "new" / "1700000000.scan.pdf"
    stray.write_bytes(b"%PDF-1.4\n")

    result = cli("ingest", tmp_path / "Maildir", expect=1)

    assert f"skipped {stray}: not a mail (a PDF document)" in result.stderr
    assert only_request(cli)["state"] == "rejected"


# ---- request edit / delete ----------------------------------------------------------------------

def test_edit_changes_a_request_and_the_timeline_says_so(cli):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-01-10",
        "--country", "DE", "--region", "BY")

    result = cli("request", "edit", "1", "--address", "Anna.Maria@Example.org", "--platform", "Instagram",
                 "--date", "2025-02-03", "--country", "AT")

    assert "Request #1 changed: address anna@example.org → anna.maria@example.org" in result.stdout
    request = only_request(cli)
    assert (request["address"], request["platform"], request["country"]) == ("anna.maria@example.org", "instagram",
                                                                             "AT")
    assert (request["submitted"], request["deadline"]) == ("2025-02-03", "2025-03-03")
    [change] = [e for e in events(cli, 1) if e["kind"] == "changed"]
    assert change["date"][:10] == datetime.now(timezone.utc).date().isoformat()
    assert change["detail"] == ("address anna@example.org → anna.maria@example.org; platform facebook → instagram; "
                                "country DE → AT; date 2025-01-10 → 2025-02-03; region BY → none")
    shown = cli("request", "show", "1").stdout
    assert "changed by you: address anna@example.org → anna.maria@example.org" in shown
    assert [e["kind"] for e in events(cli, 1)].count("submitted") == 1


def test_edit_no_date_lets_the_first_mail_start_the_clock(cli, tmp_path):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", "2025-05-01")
    ingest_mail(cli, tmp_path, "ack.eml", meta_mail(ACKNOWLEDGEMENT, date=datetime(2025, 6, 2, tzinfo=timezone.utc)))

    cli("request", "edit", "1", "--no-date")

    request = only_request(cli)
    assert (request["submitted"], request["deadline"]) == ("2025-06-02", "2025-07-02")
    assert "date 2025-05-01 → none" in cli("request", "show", "1").stdout


def test_editing_into_another_request_is_refused_naming_it(cli):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook")
    cli("request", "add", "--address", "anna@example.org", "--platform", "instagram")

    result = cli("request", "edit", "2", "--platform", "facebook", expect=1)

    assert result.output.strip() == ("error: request #1 is the facebook ai_objection request for anna@example.org "
                                     "already: edit or delete that one instead")
    assert [r["platform"] for r in sorted(cli.json("status", "--json")["requests"], key=lambda r: r["id"])] == [
        "facebook", "instagram"]


def test_edit_checks_its_input_like_add_and_needs_something_to_change(cli):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--country", "DE")
    assert "did you mean DE?" in cli("request", "edit", "1", "--country", "germany", expect=2).output
    assert "--region: 'XY' is not a German Land code" in cli("request", "edit", "1", "--region", "XY", expect=2).output
    assert "say what to change" in cli("request", "edit", "1", expect=2).output
    assert "no request with id 7" in cli("request", "edit", "7", "--region", "BY", expect=1).output
    cli("request", "edit", "1", "--region", "by")
    assert "nothing changed" in cli("request", "edit", "1", "--region", "BY").stdout
    assert [e["kind"] for e in events(cli, 1)] == ["changed"]


def test_moving_the_date_withdraws_an_overdue_alert_that_no_longer_holds(cli):
    long_ago = (date.today() - timedelta(days=120)).isoformat()
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", long_ago)
    assert [a["reason"] for a in cli.json("status", "--json")["alerts"]] == ["overdue"]

    cli("request", "edit", "1", "--date", date.today().isoformat())

    status = cli.json("status", "--json")
    assert status["alerts"] == [] and status["requests"][0]["overdue"] is False


def test_delete_keeps_the_mails_for_review_and_the_sent_alerts_as_history(cli, config_file, tmp_path, webhook):
    with_alerts(config_file, webhook.url)
    ingest_mail(cli, tmp_path, "refusal.eml", meta_mail(REFUSAL, subject="Your objection", date=REFUSAL_DAY))
    cli("complaint", "filed", "1", "--authority", "IE", "--date", date.today().isoformat())
    [sent] = cli.json("status", "--json")["alerts"]
    assert sent["reason"] == "refused" and sent["sent"] and len(webhook.posts) == 1
    refusal = mail_id(cli, 1, "rejected")

    aborted = cli("request", "delete", "1", expect=1)   # asks first; no answer means no
    assert "The mails stay recorded" in aborted.stdout
    assert len(cli.json("status", "--json")["requests"]) == 1

    result = cli("request", "delete", "1", "--yes")

    assert f"mail(s) {refusal} back on the review list" in result.stdout
    status = cli.json("status", "--json")
    assert status["requests"] == [] and status["messages_seen"] == 1
    assert [a["id"] for a in status["alerts"]] == [sent["id"]]
    assert db_rows(config_file, "SELECT request_id, message_id FROM alert") == [(None, refusal)]
    assert db_rows(config_file, "SELECT count(*) FROM event") == [(0,)]
    assert db_rows(config_file, "SELECT count(*) FROM complaint") == [(0,)]
    assert [m["id"] for m in cli.json("review", "--json")["mails"]] == [refusal]
    assert cli.json("mail", "show", refusal, "--json")["request"] is None
    # The same address may be entered again, the right way.
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook")


# ---- mail show -------------------------------------------------------------------------------------

def test_mail_show_prints_a_stored_mail_readably_with_its_evidence(cli, tmp_path):
    ingest_mail(cli, tmp_path, "refusal.eml", meta_mail(REFUSAL, subject="Your objection", date=REFUSAL_DAY,
                                                        message_id="<decision-1@facebookmail.com>"))
    refusal = mail_id(cli, 1, "rejected")

    text = cli("mail", "show", refusal).stdout

    for expected in ("Subject:      Your objection", "From:         Facebook <noreply@facebookmail.com>",
                     "To:           anna@example.org", "Message-ID:   <decision-1@facebookmail.com>",
                     "Category:     rejected (facebook, ai_objection), rule ", "Authenticity: authentic",
                     "Request:      #1 anna@example.org, facebook, ai_objection: refused",
                     "We will not honour your objection"):
        assert expected in text, expected
    shown = cli.json("mail", "show", refusal, "--json")
    evidence = Path(shown["evidence"]["path"])
    assert shown["evidence"]["matches"] is True and evidence.name == f"{shown['evidence']['sha256']}.eml"
    assert f"{shown['evidence']['sha256']} (matches the file)" in text
    assert shown["date"] == REFUSAL_DAY.isoformat() and shown["reason"]

    evidence.write_bytes(evidence.read_bytes().replace(b"not honour", b"now honour"))
    assert "DOES NOT MATCH the file" in cli("mail", "show", refusal).stdout
    assert cli.json("mail", "show", refusal, "--json")["evidence"]["matches"] is False
    assert "no mail with id 99" in cli("mail", "show", "99", expect=1).output


def test_mail_show_gives_a_code_only_from_authentic_mail(cli, tmp_path):
    ingest_mail(cli, tmp_path, "code.eml", meta_mail(OTP_BODY, subject="Your confirmation code"))
    fake = meta_mail(OTP_BODY, subject="Code 482913", sender="security@facebookmail.corn",
                     to="ben@example.org", date=datetime(2025, 6, 3, tzinfo=timezone.utc))
    ingest_mail(cli, tmp_path, "fake.eml", fake)
    code = mail_id(cli, 1, "otp")
    [held] = [m["id"] for m in cli.json("status", "--json")["review"]]

    assert cli.json("mail", "show", code, "--json")["otp"] == "482913"
    assert "Code:         482913" in cli("mail", "show", code).stdout
    fake_shown = cli.json("mail", "show", held, "--json")
    assert fake_shown["otp"] is None and fake_shown["category"] == "suspicious"
    text = cli("mail", "show", held).stdout
    assert "482913" not in text and "only pretends to come from Meta" in text


def test_mail_show_without_evidence_says_why(cli, config_file, tmp_path):
    config_file.write_text(config_file.read_text().replace("[evidence]\n", "[evidence]\nkeep_raw = false\n"))
    ingest_mail(cli, tmp_path, "refusal.eml", meta_mail(REFUSAL))
    refusal = mail_id(cli, 1, "rejected")

    text = cli("mail", "show", refusal).stdout

    assert "Subject:      Your request" in text and "(no text: its original was not kept ([evidence] keep_raw" in text


# ---- rules test --message ----------------------------------------------------------------------------

def test_rules_test_explains_a_stored_mail_as_it_explains_the_file(cli, config_file, tmp_path):
    path = tmp_path / "refusal.eml"
    path.write_bytes(meta_mail(REFUSAL))
    cli("ingest", path)
    refusal = mail_id(cli, 1, "rejected")

    from_file = cli("rules", "test", path).stdout.splitlines()
    stored = cli("rules", "test", "--message", refusal).stdout.splitlines()

    assert stored[1:] == from_file[1:] and f"mail #{refusal}" in stored[0]
    assert "no mail with id 99" in cli("rules", "test", "--message", "99", expect=1).output
    assert "give mail files, or --message ID" in cli("rules", "test", expect=2).output


def test_rules_test_of_a_mail_kept_without_evidence_says_so_in_one_line(cli, config_file, tmp_path):
    config_file.write_text(config_file.read_text().replace("[evidence]\n", "[evidence]\nkeep_raw = false\n"))
    ingest_mail(cli, tmp_path, "refusal.eml", meta_mail(REFUSAL))
    refusal = mail_id(cli, 1, "rejected")

    result = cli("rules", "test", "--message", refusal, expect=1)

    assert result.output.strip() == (f"error: mail #{refusal} has no evidence file to explain: its original was "
                                     f"not kept ([evidence] keep_raw was off)")


# ---- mail relabel / forget -----------------------------------------------------------------------------

def test_relabel_fixes_a_mail_the_tool_got_wrong_and_its_refusal_alert_is_withdrawn(cli, tmp_path):
    ingest_mail(cli, tmp_path, "ack.eml", meta_mail(ACKNOWLEDGEMENT, date=datetime(2025, 6, 2, tzinfo=timezone.utc)))
    ingest_mail(cli, tmp_path, "decision.eml", meta_mail(REFUSAL, subject="Decision", date=REFUSAL_DAY))
    decision = mail_id(cli, 1, "rejected")
    assert [a["reason"] for a in cli.json("status", "--json")["alerts"]] == ["refused"]

    result = cli("mail", "relabel", decision, "Approved")

    assert f"Mail #{decision}: rejected → approved; request #1 is approved now." in result.stdout
    request = only_request(cli)
    assert (request["state"], request["decided"]) == ("approved", "2025-06-20")
    assert cli.json("status", "--json")["alerts"] == []          # never sent: the refusal is not true
    assert cli.json("mail", "show", decision, "--json")["category"] == "approved"
    assert any(e["kind"] == "changed" and f"mail #{decision}" in e["detail"] for e in events(cli, 1))
    assert "changed by you:" in cli("request", "show", "1").stdout

    cli("mail", "relabel", decision, "rejected")
    assert only_request(cli)["state"] == "rejected"
    assert [a["reason"] for a in cli.json("status", "--json")["alerts"]] == ["refused"]
    assert "is rejected already" in cli("mail", "relabel", decision, "rejected", expect=1).output


def test_relabel_of_a_fake_needs_force(cli, tmp_path):
    ingest_mail(cli, tmp_path, "fake.eml", meta_mail(REFUSAL, sender="privacy@facebookmail.corn"))
    [fake] = [m["id"] for m in cli.json("status", "--json")["review"]]

    result = cli("mail", "relabel", fake, "rejected", expect=1)

    assert "failed authentication" in result.output and "--force" in result.output
    assert cli.json("status", "--json")["requests"] == []


def test_forget_removes_the_mail_its_evidence_and_its_events(cli, config_file, tmp_path, webhook):
    with_alerts(config_file, webhook.url)
    (tmp_path / "ack.eml").write_bytes(meta_mail(ACKNOWLEDGEMENT, date=datetime(2025, 6, 2, tzinfo=timezone.utc)))
    (tmp_path / "refusal.eml").write_bytes(meta_mail(REFUSAL, subject="Decision", date=REFUSAL_DAY))
    cli("ingest", tmp_path / "ack.eml", tmp_path / "refusal.eml")
    refusal = mail_id(cli, 1, "rejected")
    evidence = Path(cli.json("mail", "show", refusal, "--json")["evidence"]["path"])
    [sent] = cli.json("status", "--json")["alerts"]

    aborted = cli("mail", "forget", refusal, expect=1)
    assert '"Decision"' in aborted.stdout and evidence.exists()

    result = cli("mail", "forget", refusal, "--yes")

    assert f"Mail #{refusal} forgotten" in result.stdout and f"evidence file {evidence} deleted" in result.stdout
    assert not evidence.exists()
    assert only_request(cli)["state"] == "acknowledged"
    assert cli.json("status", "--json")["messages_seen"] == 1
    kinds = [(e["kind"], e["message"]) for e in events(cli, 1)]
    assert ("rejected", refusal) not in kinds and kinds[-1] == ("changed", None)
    assert f'mail #{refusal} forgotten ("Decision")' in cli("request", "show", "1").stdout
    assert db_rows(config_file, "SELECT id, message_id, sent_at IS NOT NULL FROM alert WHERE reason = 'refused'") == [
        (sent["id"], None, 1)]
    # Without its refusal the request is undecided, and past its deadline: the alerts follow.
    assert "overdue" in [a["reason"] for a in cli.json("status", "--json")["alerts"]]
    assert "no mail with id" in cli("mail", "show", refusal, expect=1).output


def test_a_forgotten_mail_ingested_again_comes_back(cli, tmp_path):
    ingest_mail(cli, tmp_path, "refusal.eml", meta_mail(REFUSAL))
    cli("mail", "forget", mail_id(cli, 1, "rejected"), "--yes")
    assert only_request(cli)["state"] == "submitted"

    assert cli("ingest", tmp_path / "refusal.eml").stdout.startswith("1 new")
    assert only_request(cli)["state"] == "rejected"


def test_a_relabelled_mail_can_be_forgotten_with_what_was_learned_from_it(cli, tmp_path):
    ingest_mail(cli, tmp_path, "decision.eml", meta_mail(REFUSAL, subject="Decision", date=REFUSAL_DAY))
    decision = mail_id(cli, 1, "rejected")
    cli("mail", "relabel", decision, "approved")
    [learned] = cli.json("rules", "learned", "--json")["templates"]
    assert learned["message"] == decision

    result = cli("mail", "forget", decision, "--yes")

    assert "1 template(s) learned from it forgotten too" in result.stdout
    assert cli.json("rules", "learned", "--json")["templates"] == []
    assert only_request(cli)["state"] == "submitted"
