"""The review queue: the person says what a held mail is, the tracker follows and learns; undo takes it back."""

from __future__ import annotations

from datetime import datetime, timezone

from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail


def turkish_refusal(name: str, to: str, number: str, day: int) -> bytes:
    """A refusal in a language the word lists do not cover: the rules hold it for review."""
    body = (f"Merhaba {name},\n\nMeta'daki yapay zeka için bilgilerinizin kullanılmasına yönelik itirazınızı "
            f"inceledik. İtirazınızı kabul edemiyoruz ve bu talep üzerinde başka bir işlem yapamayız.\n\n"
            f"Başvuru numaranız: {number}.\n\nTeşekkürler,\nMeta Gizlilik Ekibi")
    return meta_mail(body, subject="Meta AI itirazınız (GDPR)", to=to,
                     date=datetime(2025, 6, day, 9, 0, tzinfo=timezone.utc))


def write(tmp_path, name: str, raw: bytes):
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def review_ids(cli) -> list[int]:
    return [mail["id"] for mail in cli.json("review", "--json")["mails"]]


def test_a_verdict_on_a_held_mail_decides_the_request_and_is_learned_for_the_next_mail(cli, tmp_path):
    cli(*"request add --address anna@example.org --platform facebook --date 2025-06-01".split())
    cli("ingest", write(tmp_path, "first.eml", turkish_refusal("Anna", "anna@example.org", "4711-2231", 3)))
    held = cli.json("review", "--json")["mails"]
    assert [(m["category"], m["recipient"]) for m in held] == [("meta_other", "anna@example.org")]
    mail_id = held[0]["id"]

    said = cli("review", str(mail_id), "--as", "rejected").stdout
    assert "counts as rejected" in said and "Learned its template" in said
    assert cli.json("request", "show", "1", "--json")["state"] == "rejected"
    assert review_ids(cli) == []
    cli("complaint", "draft", "1", "--country", "DE", "--out", tmp_path / "complaint")
    assert (tmp_path / "complaint").is_dir()

    # Same template, another person, other numbers and names: recognised by itself.
    cli("ingest", write(tmp_path, "second.eml", turkish_refusal("Bernd", "bernd@example.net", "9902-1177", 20)))
    second = [r for r in cli.json("status", "--json")["requests"] if r["address"] == "bernd@example.net"]
    assert [r["state"] for r in second] == ["rejected"]
    learned = cli.json("rules", "learned", "--json")["templates"]
    assert len(learned) == 1 and learned[0]["message"] == mail_id and len(learned[0]["used_by"]) == 1
    explained = cli("rules", "test", tmp_path / "second.eml").stdout
    assert f"learned from your verdict on mail #{mail_id}" in explained
    assert f"learned from your verdict on mail #{mail_id}" in cli("status").stdout

    # Taken back: the first request is as before, and the template no longer decides.
    cli("review", str(mail_id), "--undo")
    assert cli.json("request", "show", "1", "--json")["state"] == "submitted"
    # What the template alone recognised goes back to the person, with the guess it had.
    # The request that mail alone had made goes with it: nothing of the person's was in it.
    assert [r["address"] for r in cli.json("status", "--json")["requests"]] == ["anna@example.org"]
    waiting = cli.json("review", "--json")["mails"]
    assert [m["id"] for m in waiting][0] == mail_id and len(waiting) == 2
    assert waiting[1]["guesses"][0]["category"] == "rejected"
    assert cli.json("rules", "learned", "--json")["templates"][0]["active"] is False
    cli("ingest", write(tmp_path, "third.eml", turkish_refusal("Clara", "clara@example.com", "1234-5678", 21)))
    assert "clara@example.com" not in [r["address"] for r in cli.json("status", "--json")["requests"]]


def test_a_mail_that_failed_authentication_needs_force_and_teaches_nothing(cli, tmp_path):
    fake = meta_mail(REFUSAL, sender="security@faceb00k-mail.com", auth="fail")
    cli("ingest", write(tmp_path, "fake.eml", fake))
    [mail] = cli.json("review", "--json")["mails"]
    assert mail["category"] == "suspicious" and mail["guesses"] == []
    refused = cli("review", str(mail["id"]), "--as", "rejected", expect=1)
    assert "failed authentication" in refused.output and "--force" in refused.output
    forced = cli("review", str(mail["id"]), "--as", "rejected", "--force").stdout
    assert "Nothing learned" in forced
    assert cli.json("rules", "learned", "--json")["templates"] == []
    events = cli.json("request", "show", "1", "--json")["events"]
    assert any("insisted" in e["detail"] for e in events)


def test_dismiss_takes_a_mail_off_the_list_and_undo_puts_it_back(cli, tmp_path):
    cli("ingest", write(tmp_path, "held.eml", turkish_refusal("Anna", "anna@example.org", "1", 3)))
    [mail_id] = review_ids(cli)
    cli("review", str(mail_id), "--dismiss")
    assert review_ids(cli) == []
    cli("review", str(mail_id), "--undo")
    assert review_ids(cli) == [mail_id]
    cli("reviewed", str(mail_id))  # the shorter spelling
    assert review_ids(cli) == []
    assert "no mail with id 999" in cli("review", "999", "--undo", expect=1).output
    cli("review", str(mail_id), "--undo")
    assert review_ids(cli) == [mail_id]
    assert "no verdict to take back" in cli("review", str(mail_id), "--undo", expect=1).output


def test_the_review_list_gives_guesses_with_the_request_they_would_join(cli, tmp_path):
    cli(*"request add --address anna@example.org --platform facebook --date 2025-06-01".split())
    both = ("We will honour your objection for your public information. "
            "We will not honour your objection, and we cannot take further action on this request.")
    cli("ingest", write(tmp_path, "both.eml", meta_mail(both)))
    [mail] = cli.json("review", "--json")["mails"]
    assert {g["category"] for g in mail["guesses"]} == {"approved", "rejected"}
    assert {g["request"] for g in mail["guesses"]} == {1}
    text = cli("review").stdout
    assert f"privacy-tracker review {mail['id']} --as" in text and "request #1" in text


def test_a_verdict_that_cannot_place_the_mail_changes_nothing(cli, tmp_path):
    body = REFUSAL.replace("AI at Meta", "AI")
    raw = meta_mail(body, sender="privacy@meta.com", display="Meta")
    cli("ingest", write(tmp_path, "noplatform.eml", raw))
    [mail] = cli.json("review", "--json")["mails"]
    refused = cli("review", str(mail["id"]), "--as", "rejected", expect=1)
    assert "--request N" in refused.output
    assert review_ids(cli) == [mail["id"]]
    cli(*"request add --address anna@example.org --platform facebook --date 2025-06-01".split())
    cli("review", str(mail["id"]), "--as", "rejected", "--request", "1")
    assert cli.json("request", "show", "1", "--json")["state"] == "rejected"


def test_rounds_a_new_code_after_a_refusal_keeps_the_refusal_complainable(cli, tmp_path):
    cli("ingest", write(tmp_path, "ack.eml", meta_mail(ACKNOWLEDGEMENT, date=datetime(2025, 6, 2, tzinfo=timezone.utc))))
    cli("ingest", write(tmp_path, "no.eml", meta_mail(REFUSAL, date=datetime(2025, 6, 10, tzinfo=timezone.utc))))
    again = meta_mail(ACKNOWLEDGEMENT, subject="We received your objection",
                      date=datetime(2025, 7, 1, tzinfo=timezone.utc))
    cli("ingest", write(tmp_path, "again.eml", again))
    shown = cli.json("request", "show", "1", "--json")
    assert shown["state"] == "acknowledged"
    assert [r["state"] for r in shown["rounds"]] == ["rejected", "acknowledged"]
    assert shown["rounds"][1]["deadline"] == "2025-08-01"
    cli("complaint", "draft", "1", "--country", "DE", "--out", tmp_path / "complaint")
    assert (tmp_path / "complaint").is_dir()
    assert "round 2" in cli("request", "show", "1").stdout.lower()


def test_status_shows_a_fresh_one_time_code_from_an_authentic_mail_and_never_an_old_one(cli, tmp_path):
    now = datetime.now(timezone.utc)
    code_mail = ("Use this code to confirm your objection request: 482913. "
                 "Enter the code in the form to submit your request.")
    cli("ingest", write(tmp_path, "code.eml", meta_mail(code_mail, subject="Your confirmation code", date=now)))
    status = cli.json("status", "--json")
    assert [c["code"] for c in status["codes"]] == ["482913"]
    assert "482913" in cli("status").stdout
    old = meta_mail(code_mail.replace("482913", "771100"), subject="Your confirmation code", to="old@example.org",
                    date=datetime(2025, 6, 1, tzinfo=timezone.utc))
    cli("ingest", write(tmp_path, "old.eml", old))
    assert [c["code"] for c in cli.json("status", "--json")["codes"]] == ["482913"]


def test_a_decision_read_from_a_weak_sign_counts_and_waits_for_the_person_to_confirm_it(cli, tmp_path):
    weak = ("Thank you for your message about AI at Meta. After careful consideration, "
            "we have decided to reject it.")
    cli("ingest", write(tmp_path, "weak.eml", meta_mail(weak)))
    assert cli.json("request", "show", "1", "--json")["state"] == "rejected"  # a refusal is never hidden
    [mail] = cli.json("review", "--json")["mails"]
    assert mail["category"] == "rejected" and "weak sign" in mail["why"]
    assert "uncertain" in cli("status").stdout
    cli("review", str(mail["id"]), "--as", "approved")
    assert cli.json("request", "show", "1", "--json")["state"] == "approved"
    assert review_ids(cli) == []
    events = cli.json("request", "show", "1", "--json")["events"]
    assert [e["kind"] for e in events].count("approved") == 1 and "rejected" not in [e["kind"] for e in events]
    assert any(e["kind"] == "changed" and "was rejected" in e["detail"] for e in events)


def test_status_wide_shows_each_request_with_its_rounds_on_one_line(cli, tmp_path):
    cli("ingest", write(tmp_path, "ack.eml", meta_mail(ACKNOWLEDGEMENT, date=datetime(2025, 6, 2, tzinfo=timezone.utc))))
    cli("ingest", write(tmp_path, "no.eml", meta_mail(REFUSAL, date=datetime(2025, 6, 10, tzinfo=timezone.utc))))
    cli("ingest", write(tmp_path, "again.eml", meta_mail(ACKNOWLEDGEMENT, subject="Again",
                                                          date=datetime(2025, 7, 1, tzinfo=timezone.utc))))
    lines = [line for line in cli("status", "--wide").stdout.splitlines() if line.startswith("#1 ")]
    assert len(lines) == 1
    assert "round 1: refused on 2025-06-10" in lines[0] and "round 2" in lines[0]


def test_what_one_person_taught_is_exported_as_a_rules_file_another_person_loads(cli, tmp_path):
    from conftest import Cli

    cli("ingest", write(tmp_path, "first.eml", turkish_refusal("Anna", "anna@example.org", "4711-2231", 3)))
    [mail_id] = review_ids(cli)
    cli("review", str(mail_id), "--as", "rejected")
    assert [a["reason"] for a in cli.json("status", "--json")["alerts"]] == ["refused"]  # as for a recognised refusal
    exported = tmp_path / "taught.toml"
    assert "1 template" in cli("rules", "export", exported).stdout
    assert "anna" not in exported.read_text().lower() and "4711" not in exported.read_text()

    other = tmp_path / "other"
    other.mkdir()
    config = other / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{other / "tracker.sqlite3"}"\n'
                      f'[rules]\nfile = "{exported}"\n')
    someone_else = Cli(config)
    mail = write(other, "theirs.eml", turkish_refusal("Dana", "dana@example.org", "5555-0000", 9))
    [record] = someone_else.json_lines("classify", mail, "--json")
    assert record["category"] == "rejected" and "template exported-" in record["reason"]


def test_a_verdict_alerts_in_the_persons_language(cli, tmp_path):
    with cli.config.open("a") as config:
        config.write('[person]\nlanguage = "de"\n')
    cli("ingest", write(tmp_path, "held.eml", turkish_refusal("Anna", "anna@example.org", "1", 3)))
    [mail_id] = review_ids(cli)
    cli("review", str(mail_id), "--as", "rejected")
    titles = [a["title"] for a in cli.json("status", "--json")["alerts"] if a["reason"] == "refused"]
    assert titles == ["Meta hat Ihre Facebook-Anfrage abgelehnt (anna@example.org)"]
