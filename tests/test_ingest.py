"""Ingest: every mail once, states independent of arrival order, evidence kept privately."""

from __future__ import annotations

import stat
from datetime import datetime, timezone

import pytest

from conftest import SAMPLE_MAIL
from mails import ACKNOWLEDGEMENT, APPROVAL, REFUSAL, meta_mail


def _states(cli) -> dict:
    return {(r["address"], r["platform"], r["kind"]): r["state"] for r in cli.json("status", "--json")["requests"]}


def test_ingesting_twice_changes_nothing(cli):
    cli("ingest", SAMPLE_MAIL)
    first = cli.json("status", "--json")
    result = cli("ingest", SAMPLE_MAIL)
    assert result.stdout.startswith("0 new,")
    second = cli.json("status", "--json")
    assert second["messages_seen"] == first["messages_seen"] > 30
    assert second["requests"] == first["requests"]
    assert len(second["alerts"]) == len(first["alerts"])


def test_reverse_order_gives_the_same_states(cli, tmp_path, config_file, new_database_url):
    from conftest import Cli

    files = sorted(SAMPLE_MAIL.glob("*.eml"))
    for path in files:
        cli("ingest", path)
    forward = _states(cli)

    reverse_config = tmp_path / "reverse.toml"
    reverse_config.write_text(f'[database]\nurl = "{new_database_url("reverse")}"\n')
    reverse = Cli(reverse_config)
    for path in reversed(files):
        reverse("ingest", path)
    assert _states(reverse) == forward
    assert len(set(forward.values())) >= 4, forward


def test_a_refusal_after_an_acknowledgement_is_rejected_whatever_arrives_first(cli, tmp_path):
    ack = tmp_path / "ack.eml"
    ack.write_bytes(meta_mail(ACKNOWLEDGEMENT, date=datetime(2025, 6, 1, tzinfo=timezone.utc)))
    refusal = tmp_path / "refusal.eml"
    refusal.write_bytes(meta_mail(REFUSAL, date=datetime(2025, 6, 3, tzinfo=timezone.utc)))
    cli("ingest", refusal)
    cli("ingest", ack)
    [request] = cli.json("status", "--json")["requests"]
    assert request["state"] == "rejected"
    assert request["submitted"] == "2025-06-01"
    assert "complaint possible" in request["flags"]


def test_same_mail_in_two_places_is_counted_once(cli, tmp_path):
    raw = meta_mail(APPROVAL)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "one.eml").write_bytes(raw)
    (tmp_path / "b" / "copy.eml").write_bytes(raw)
    result = cli("ingest", tmp_path / "a", tmp_path / "b")
    assert result.stdout.startswith("1 new, 1 already known")


def test_damaged_mail_is_recorded_and_the_run_goes_on(cli, tmp_path):
    # Files with no header lines are not mail at all: refused, not recorded (test_corrections.py).
    (tmp_path / "0-empty.eml").write_bytes(b"")
    (tmp_path / "1-junk.eml").write_bytes(b"\x00\x01\x02 garbage \xff\xfe")
    (tmp_path / "2-good.eml").write_bytes(meta_mail(APPROVAL))
    (tmp_path / "3-cut.eml").write_bytes(b"From: noreply@facebookmail.com\nSubject: x\nContent-Type: multipart/mixed; "
                                         b"boundary=\"b\"\n\n--b\nContent-Transfer-Encoding: base64\n\n%%%")
    result = cli("ingest", tmp_path, expect=1)
    assert result.stdout.startswith("2 new,")
    assert "1 with errors" in result.stdout and "2 file(s) not a mail, skipped" in result.stdout
    status = cli.json("status", "--json")
    assert [e["source"] for e in status["errors"]] == [str(tmp_path / "3-cut.eml")]
    assert [r["state"] for r in status["requests"]] == ["approved"]


@pytest.mark.sqlite_only("the mode of the SQLite file")
def test_the_database_file_is_owner_only(cli, tmp_path):
    cli("ingest", SAMPLE_MAIL)
    db = tmp_path / "tracker.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_evidence_is_owner_only(cli, tmp_path):
    cli("ingest", SAMPLE_MAIL)
    evidence = list((tmp_path / "evidence").glob("*.eml"))
    assert evidence
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in evidence)
    assert stat.S_IMODE((tmp_path / "evidence").stat().st_mode) == 0o700


def test_evidence_is_byte_identical_to_the_mail(cli, tmp_path):
    raw = meta_mail(REFUSAL)
    (tmp_path / "refusal.eml").write_bytes(raw)
    cli("ingest", tmp_path / "refusal.eml")
    [kept] = (tmp_path / "evidence").glob("*.eml")
    assert kept.read_bytes() == raw


def test_ordinary_mail_is_seen_but_not_kept(cli, tmp_path):
    newsletter = meta_mail("Our summer sale starts now.", sender="news@shop.example.com", display="Shop")
    (tmp_path / "news.eml").write_bytes(newsletter)
    cli("ingest", tmp_path / "news.eml")
    status = cli.json("status", "--json")
    assert status["messages_seen"] == 1
    assert status["requests"] == []
    assert not (tmp_path / "evidence").exists() or not list((tmp_path / "evidence").iterdir())


def test_mbox_and_maildir_are_read(cli, tmp_path):
    import mailbox

    box = mailbox.mbox(tmp_path / "meta.mbox")
    box.add(meta_mail(ACKNOWLEDGEMENT, to="x@example.org"))
    box.add(meta_mail(APPROVAL, to="x@example.org", date=datetime(2025, 6, 9, tzinfo=timezone.utc)))
    box.close()
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add(meta_mail(REFUSAL, to="y@example.org"))
    maildir.close()
    result = cli("ingest", tmp_path / "meta.mbox", tmp_path / "Maildir")
    assert result.stdout.startswith("3 new,")
    assert _states(cli) == {("x@example.org", "facebook", "ai_objection"): "approved",
                            ("y@example.org", "facebook", "ai_objection"): "rejected"}


def test_ingest_never_modifies_the_maildir(cli, tmp_path):
    import mailbox

    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add(mailbox.MaildirMessage(meta_mail(REFUSAL)))
    maildir.close()
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "Maildir").rglob("*"))
    cli("ingest", tmp_path / "Maildir")
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "Maildir").rglob("*")) == before


def test_a_mail_with_crlf_and_the_same_with_lf_count_once(cli, tmp_path):
    raw = meta_mail(REFUSAL).replace(b"\r\n", b"\n")
    (tmp_path / "lf.eml").write_bytes(raw)
    (tmp_path / "crlf.eml").write_bytes(raw.replace(b"\n", b"\r\n"))
    result = cli("ingest", tmp_path)
    assert result.stdout.startswith("1 new, 1 already known")
    assert len(cli.json("status", "--json")["alerts"]) == 1


def test_a_mail_without_date_is_dated_by_its_file_not_by_the_ingest(cli, tmp_path):
    import os

    raw = b"\n".join(line for line in meta_mail(REFUSAL).split(b"\n") if not line.startswith(b"Date:"))
    path = tmp_path / "undated.eml"
    path.write_bytes(raw)
    delivered = datetime(2025, 6, 3, 12, 0, tzinfo=timezone.utc).timestamp()
    os.utime(path, (delivered, delivered))
    cli("ingest", path)
    [request] = cli.json("status", "--json")["requests"]
    assert request["decided"] == "2025-06-03"


def test_a_bad_evidence_folder_stops_with_one_clear_line_and_stores_nothing_half(tmp_path, new_database_url):
    from conftest import Cli

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{new_database_url("db")}"\n'
                      f'[evidence]\ndir = "{blocker / "evidence"}"\n')
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "refusal.eml").write_bytes(meta_mail(REFUSAL))
    result = Cli(config)("ingest", tmp_path / "mail", expect=1)
    assert result.output.startswith("error: cannot write evidence to")
    assert "Traceback" not in result.output


def test_a_damaged_header_does_not_stop_the_run(cli, tmp_path):
    (tmp_path / "a-bad.eml").write_bytes(b"From: a@example.org\r\nDate: Fri, 31 Dec 9999 23:30:00 -0100\r\n"
                                         b"Message-ID: <caf\xe9\xff@example.org>\r\nSubject: x\r\n\r\nbody")
    (tmp_path / "b-good.eml").write_bytes(meta_mail(REFUSAL))
    assert cli("ingest", tmp_path).stdout.startswith("2 new,")
    assert [r["state"] for r in cli.json("status", "--json")["requests"]] == ["rejected"]


def test_reviewed_mails_leave_the_review_list_but_stay_recorded(cli):
    cli("ingest", SAMPLE_MAIL)
    review = cli.json("status", "--json")["review"]
    first, rest = review[0]["id"], review[1:]
    assert "Reviewed" in cli("reviewed", first).stdout
    after = cli.json("status", "--json")
    assert [m["id"] for m in after["review"]] == [m["id"] for m in rest]
    assert after["messages_seen"] > 30
    assert "not on the review list: 9999" in cli("reviewed", "9999", expect=1).output
