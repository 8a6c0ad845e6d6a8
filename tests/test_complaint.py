"""Complaint drafts: the letter states the facts, the .eml carries the evidence unchanged, hashes match."""

from __future__ import annotations

import email
import email.utils
import hashlib
import importlib.util
import os
import stat
from datetime import datetime, timezone
from email import policy
from pathlib import Path

import pytest

from conftest import in_ci
from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail
from tracker.complaint import competent_authority, load_authorities

REPO = Path(__file__).resolve().parent.parent
TSV = REPO.parent / "shared" / "reference" / "dpa_directory.tsv"
DECISIVE = "We will not honour your objection, and we cannot take further action on this request."


@pytest.fixture
def refused(cli, tmp_path) -> dict[str, Path]:
    """Request #1: Anna in Austria objected on 31 January 2025; Meta acknowledged, then refused on 5 March."""
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--country", "AT",
        "--date", "2025-01-31")
    mails = {
        "ack": meta_mail(ACKNOWLEDGEMENT, subject="We received your objection",
                         date=datetime(2025, 2, 1, 9, 0, tzinfo=timezone.utc)),
        "refusal": meta_mail(REFUSAL, subject="Update on your objection",
                             date=datetime(2025, 3, 5, 14, 30, tzinfo=timezone.utc)),
    }
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    paths = {}
    for name, raw in mails.items():
        paths[name] = inbox / f"{name}.eml"
        paths[name].write_bytes(raw)
    cli("ingest", inbox)
    return paths


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


def test_the_letter_states_who_what_when_and_quotes_the_refusal(cli, refused, tmp_path):
    out = tmp_path / "draft"
    result = cli("complaint", "draft", "1", "--lang", "en", "--out", out, "--name", "Anna Beispiel")
    assert "Österreichische Datenschutzbehörde" in result.stdout and "(AT)" in result.stdout

    text = (out / "letter.txt").read_text()
    markdown = (out / "letter.md").read_text()
    for letter in (text, markdown):
        flat = " ".join(letter.split())
        assert "Name: Anna Beispiel" in flat
        assert "anna@example.org" in flat
        assert "On 31 January 2025 I submitted to Meta an objection under Article 21(1) GDPR" in flat
        assert 'On 5 March 2025 Meta refused my objection by email from noreply@facebookmail.com with the ' \
               'subject "Update on your objection".' in flat
        assert f'The decisive sentence of that email reads: "{DECISIVE}"' in flat
        assert "The time limit for Meta's answer ended on 28 February 2025; the refusal came 5 days late." in flat
        assert "Meta did not meet this time limit." in flat
        for article in ("Article 21(1) GDPR", "Article 12(3) GDPR", "Article 77 GDPR", "Article 58(2)(c) GDPR"):
            assert article in flat
        assert "Irish data protection authority as lead supervisory authority" in flat
        assert "Barichgasse 40-42, 1030 Wien" in flat
        assert "Country of residence: Austria" in flat
    assert markdown.startswith("# Complaint under Article 77 GDPR against Meta Platforms Ireland Limited")


def test_without_a_name_nothing_is_invented(cli, refused, tmp_path):
    result = cli("complaint", "draft", "1", "--lang", "en", "--out", tmp_path / "draft")
    assert "no name" in result.stdout
    letter = (tmp_path / "draft" / "letter.txt").read_text()
    assert "Name: [your name: please add it before sending]" in letter
    message = email.message_from_bytes((tmp_path / "draft" / "complaint.eml").read_bytes(), policy=policy.default)
    assert message["From"] == "anna@example.org"
    assert message.get_body(preferencelist=("plain",)).get_content() == letter


def test_the_eml_parses_back_with_byte_identical_evidence(cli, refused, tmp_path):
    out = tmp_path / "draft"
    cli("complaint", "draft", "1", "--out", out, "--name", "Anna Beispiel")
    message = email.message_from_bytes((out / "complaint.eml").read_bytes(), policy=policy.default)
    assert message["To"] == "dsb@dsb.gv.at"
    assert message["From"] == "Anna Beispiel <anna@example.org>"
    assert message["X-Unsent"] == "1"
    assert message["Subject"] == "Beschwerde gemäß Art. 77 DSGVO: Meta (Facebook) hat meinen Widerspruch abgelehnt"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert body == (out / "letter.txt").read_text()
    assert "Am 5. März 2025 hat Meta meinen Widerspruch" in body  # Austria: German unless --lang says otherwise

    # Each mail is attached as the message it is (message/rfc822), the same mail line for line;
    # the timeline and the checksums as text.
    evidence = out / "evidence"
    parts = {part.get_filename(): part for part in message.iter_attachments()}
    assert sorted(parts) == sorted(p.name for p in evidence.iterdir())
    for name, part in parts.items():
        original = (evidence / name).read_bytes()
        if name.endswith(".eml"):
            assert part.get_content_type() == "message/rfc822", name
            attached = part.get_content()
            assert attached["Message-ID"] == email.message_from_bytes(original)["Message-ID"]
            assert attached.as_bytes(policy=policy.default.clone(max_line_length=998, refold_source="none")) \
                .replace(b"\r\n", b"\n") == original.replace(b"\r\n", b"\n"), name
        else:
            assert part.get_content_type() == "text/plain", name
            assert part.get_content() == original.decode(), name

    # The evidence is the mail exactly as it was received.
    assert (evidence / "01-2025-02-01-acknowledgement.eml").read_bytes() == refused["ack"].read_bytes()
    assert (evidence / "02-2025-03-05-rejected.eml").read_bytes() == refused["refusal"].read_bytes()


def test_sha256sums_match_every_evidence_file(cli, refused, tmp_path):
    out = tmp_path / "draft"
    cli("complaint", "draft", "1", "--out", out)
    evidence = out / "evidence"
    listed = {}
    for line in (evidence / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert sorted(listed) == sorted(p.name for p in evidence.iterdir() if p.name != "SHA256SUMS")
    for name, digest in listed.items():
        assert hashlib.sha256((evidence / name).read_bytes()).hexdigest() == digest
    timeline = (evidence / "timeline.txt").read_text()
    assert "2025-02-01 09:00 UTC  acknowledgement" in timeline
    assert "2025-03-05 14:30 UTC  rejected" in timeline and "evidence/02-2025-03-05-rejected.eml" in timeline


def test_every_file_is_owner_only(cli, refused, tmp_path):
    out = tmp_path / "draft"
    cli("complaint", "draft", "1", "--out", out)
    entries = [out, *_files(out)]
    assert len(entries) >= 9
    for path in entries:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_complaint_filed_changes_the_status_and_starts_the_authority_clock(cli, refused, tmp_path):
    result = cli("complaint", "filed", "1", "--authority", "AT", "--date", "2025-03-20", "--reference", "D130.0456")
    assert "2025-06-20" in result.stdout
    [request] = cli.json("status", "--json")["requests"]
    assert request["state"] == "complaint_filed"
    assert request["complaint"] == {**request["complaint"], "authority": "AT", "filed": "2025-03-20",
                                    "reference": "D130.0456", "authority_deadline": "2025-06-20"}
    assert "authority silent" in request["flags"]
    events = [e["kind"] for e in cli.json("request", "show", "1", "--json")["events"]]
    assert events[-1] == "complaint_filed"


def test_complaint_filed_with_an_unknown_authority_is_refused(cli, refused):
    result = cli("complaint", "filed", "1", "--authority", "XX", "--date", "2025-03-20", expect=1)
    assert "no authority with code 'XX'" in result.stderr


def test_a_german_resident_needs_a_land_and_is_offered_the_irish_dpc(cli, tmp_path):
    cli("request", "add", "--address", "max@example.org", "--platform", "instagram", "--country", "DE",
        "--date", "2025-01-10")
    (tmp_path / "refusal.eml").write_bytes(meta_mail(REFUSAL, to="max@example.org", sender="security@mail.instagram.com",
                                                     display="Instagram", subject="Your objection"))
    cli("ingest", tmp_path / "refusal.eml")

    without_land = cli("complaint", "draft", "1", "--out", tmp_path / "a")
    assert "Land" in without_land.stdout and "(IE)" in without_land.stdout
    with_land = cli("complaint", "draft", "1", "--region", "BY", "--out", tmp_path / "b")
    assert "Bayerisches Landesamt für Datenschutzaufsicht" in with_land.stdout and "(DE-BY)" in with_land.stdout
    letter = " ".join((tmp_path / "b" / "letter.txt").read_text().split())
    assert "Art. 21 Abs. 1 DSGVO" in letter and "Wohnsitzland: Deutschland (Bayern)" in letter
    assert "An: Bayerisches Landesamt für Datenschutzaufsicht (BayLDA) Postfach 1349, 91504 Ansbach" in letter
    note = (tmp_path / "b" / "NOTE.txt").read_text()
    assert "privacy-tracker complaint draft 1 --authority IE" in note


def test_an_authority_without_email_gets_a_note_with_its_form(cli, refused, tmp_path):
    out = tmp_path / "draft"
    cli("complaint", "draft", "1", "--authority", "FR", "--out", out)
    # The draft has no recipient: the CNIL takes complaints through its form.
    message = email.message_from_bytes((out / "complaint.eml").read_bytes(), policy=policy.default)
    assert message["To"] is None and message["X-Unsent"] == "1"
    assert message["Subject"].startswith("Plainte au titre de l'article 77 du RGPD")
    note = (out / "NOTE.txt").read_text()
    assert "complaint.eml ist ein Entwurf ohne Empfänger" in " ".join(note.split())  # the note in the language of where Anna lives
    assert "https://www.cnil.fr/fr/plaintes" in note
    assert "3 Place de Fontenoy" in note


def test_a_request_meta_never_answered_can_be_complained_about_once_overdue(cli, tmp_path):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--country", "NL",
        "--date", "2025-01-31")
    cli("complaint", "draft", "1", "--out", tmp_path / "draft", "--lang", "en")
    flat = " ".join((tmp_path / "draft" / "letter.txt").read_text().split())
    assert "The time limit for Meta's decision ended on 28 February 2025. Today," in flat
    assert "Meta has still not decided on my objection." in flat
    assert "Articles 12(3) and 21(1) GDPR" in flat


def test_no_draft_while_meta_still_has_time_or_after_an_approval(cli, tmp_path):
    today = datetime.now(timezone.utc).date()
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--date", today.isoformat())
    result = cli("complaint", "draft", "1", "--out", tmp_path / "a", expect=1)
    assert "still has until" in result.stderr
    assert not (tmp_path / "a").exists()


def test_an_existing_draft_is_not_overwritten(cli, refused, tmp_path):
    cli("complaint", "draft", "1", "--out", tmp_path / "draft")
    result = cli("complaint", "draft", "1", "--out", tmp_path / "draft", expect=1)
    assert "not empty" in result.stderr


# ---- hostile input and faults (issue 8) -----------------------------------------------------

def _left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".draft") or p.name == "draft")


def test_a_name_with_a_line_break_is_refused_in_one_line_and_nothing_is_written(cli, refused, tmp_path):
    out = tmp_path / "draft"
    result = cli("complaint", "draft", "1", "--out", out, "--name", "Anna\r\nBcc: everyone@evil.example", expect=1)
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: --name must be one line")
    assert _left_behind(tmp_path) == []
    cli("complaint", "draft", "1", "--out", out, "--name", "Anna Beispiel")  # the next run is not blocked
    message = email.message_from_bytes((out / "complaint.eml").read_bytes(), policy=policy.default)
    assert message["From"] == "Anna Beispiel <anna@example.org>" and message["Bcc"] is None


def test_an_address_that_is_not_ascii_gets_a_complete_draft(cli, tmp_path):
    for address in ("anna@exämple.org", "jürgen@example.org"):
        cli("request", "add", "--address", address, "--platform", "facebook", "--country", "AT",
            "--date", "2025-01-31")
    for number, (local, domain) in enumerate((("anna", "xn--exmple-cua.org"), ("jürgen", "example.org")), 1):
        out = tmp_path / f"draft{number}"
        result = cli("complaint", "draft", number, "--out", out, "--name", "Anna Beispiel")
        assert "Traceback" not in result.output
        assert sorted(p.name for p in out.iterdir()) == ["NOTE.txt", "complaint.eml", "evidence", "letter.md",
                                                         "letter.txt"]
        raw = (out / "complaint.eml").read_bytes()
        assert email.message_from_bytes(raw, policy=policy.default)["To"] == "dsb@dsb.gv.at"
        # The domain in its ASCII form; a local part that has none in UTF-8 (RFC 6532).
        [header] = [line for line in raw.splitlines() if line.startswith(b"From: ")]
        assert email.utils.parseaddr(header.decode("utf-8")[6:]) == ("Anna Beispiel", f"{local}@{domain}")


def test_a_fault_halfway_leaves_nothing_behind(cli, refused, tmp_path, monkeypatch):
    import errno

    import tracker.complaint

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "draft"
    with monkeypatch.context() as patch:
        patch.setattr(tracker.complaint, "_note_text", disk_full)  # the last file of the draft
        result = cli("complaint", "draft", "1", "--out", out, expect=1)
    [line] = result.output.strip().splitlines()
    assert "No space left on device" in line and "nothing was written" in line
    assert _left_behind(tmp_path) == []
    cli("complaint", "draft", "1", "--out", out)
    assert (out / "NOTE.txt").exists() and (out / "evidence" / "SHA256SUMS").exists()


def test_the_folders_made_for_a_draft_are_owner_only_whatever_the_umask(cli, refused, tmp_path):
    out = tmp_path / "complaints" / "2025" / "draft"
    old = os.umask(0)
    try:
        cli("complaint", "draft", "1", "--out", out)
    finally:
        os.umask(old)
    for folder in (tmp_path / "complaints", tmp_path / "complaints" / "2025", out, out / "evidence"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# ---- the authority directory ------------------------------------------------------------

def test_the_directory_has_every_authority_once():
    directory = load_authorities()
    assert len(directory) == 49
    assert sum(1 for a in directory.values() if a.country_code == "DE") == 18
    for code in ("IE", "GB", "CH", "IS", "LI", "NO", "GR", "DE", "DE-BY", "DE-BY-PUBLIC", "DE-NW", "DE-TH"):
        assert code in directory, code
    assert directory["GB"].law == "UK GDPR" and directory["CH"].law == "FADP" and directory["AT"].law == "GDPR"
    assert "QES" in directory["BG"].notes and "PEC" in directory["IT"].notes and "BankID" in directory["NO"].notes


@pytest.mark.parametrize("country, region, competent, alternative", [
    ("AT", None, "AT", "IE"),
    ("DE", "BY", "DE-BY", "IE"),      # the BayLDA (private sector), not the BayLfD
    ("de", "nw", "DE-NW", "IE"),
    ("DE", None, None, "IE"),         # the Land decides; unknown
    ("EL", None, "GR", "IE"),         # the EU's code for Greece
    ("IE", None, "IE", None),
    ("GB", None, "GB", None),         # UK GDPR: the DPC is no alternative
    ("CH", None, "CH", None),
    (None, None, None, "IE"),
])
def test_the_competent_authority(country, region, competent, alternative):
    found = competent_authority(country, region)
    assert (found.authority.code if found.authority else None) == competent
    assert (found.alternative.code if found.alternative else None) == alternative
    assert found.explanation


def test_authorities_toml_is_compiled_from_the_shared_directory():
    if not TSV.exists():
        if in_ci():
            pytest.fail(f"{TSV} is missing; CI has shared/ beside the repository")
        pytest.skip(f"{TSV} is not here (shared/ lies beside the repository)")
    spec = importlib.util.spec_from_file_location("compile_authorities", REPO / "scripts" / "compile_authorities.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    compiled = script.compile_tsv(TSV.read_text(encoding="utf-8"), TSV.name)
    assert (REPO / "tracker" / "authorities.toml").read_text(encoding="utf-8") == compiled, \
        "run scripts/compile_authorities.py"
    # Every URL and address comes from the TSV, none from elsewhere.
    cells = set(TSV.read_text(encoding="utf-8").replace("\n", "\t").split("\t"))
    for authority in load_authorities().values():
        for value in (authority.website, authority.complaint_url, authority.email, authority.address):
            assert value == "" or value in cells, (authority.code, value)


def test_mails_whose_original_was_not_kept_are_listed_but_not_invented(cli, config_file, tmp_path):
    config_file.write_text(config_file.read_text().replace("[evidence]\n", "[evidence]\nkeep_raw = false\n"))
    (tmp_path / "refusal.eml").write_bytes(meta_mail(REFUSAL, subject="Update on your objection"))
    cli("ingest", tmp_path / "refusal.eml")
    result = cli("complaint", "draft", "1", "--out", tmp_path / "draft", "--country", "IE")
    assert "was not kept" in result.stdout
    evidence = tmp_path / "draft" / "evidence"
    assert sorted(p.name for p in evidence.iterdir()) == ["SHA256SUMS", "timeline.txt"]
    letter = " ".join((tmp_path / "draft" / "letter.txt").read_text().split())
    assert "not attached: the original of this email was not kept" in letter
    assert "On 2 June 2025 Meta refused my objection" in letter
    assert "The email is attached" not in letter
