"""Complaint letters a person would send: the authority's language, only what the timeline supports,
the latest refusal across rounds, the evidence as attached messages, and where the person lives."""

from __future__ import annotations

import email
import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import datetime, timezone
from email import policy
from pathlib import Path

import pytest

from mails import ACKNOWLEDGEMENT, REFUSAL, meta_mail
from tracker.letters import LANGUAGES, load

ADDRESS = "anna@example.org"
INFO = ("We need more information to process your objection to the use of your information for AI at Meta. "
        "Please reply to this email with the requested details.")
OTP = "Your objection to AI at Meta: enter this code: 482913. It expires in one hour."
SUBMITTED = "2025-01-31"                                   # deadline: 2025-02-28
IN_TIME = datetime(2025, 2, 13, 9, 0, tzinfo=timezone.utc)  # day 13
LATE = datetime(2025, 3, 5, 14, 30, tzinfo=timezone.utc)    # 5 days after the deadline


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc)


def add_request(cli, country: str | None = "AT", region: str | None = None, kind: str | None = None,
                submitted: str | None = SUBMITTED) -> None:
    args = ["request", "add", "--address", ADDRESS, "--platform", "facebook"]
    for option, value in (("--country", country), ("--region", region), ("--kind", kind), ("--date", submitted)):
        if value:
            args += [option, value]
    cli(*args)


def ingest(cli, folder: Path, *mails: tuple[str, str, datetime]) -> None:
    """Each mail as (body, subject, date), in a folder of its own so that a later call adds only new mail."""
    folder.mkdir(parents=True)
    for n, (body, subject, when) in enumerate(mails, 1):
        (folder / f"{n:02d}.eml").write_bytes(meta_mail(body, subject=subject, date=when, to=ADDRESS))
    cli("ingest", folder)


def refused(cli, tmp_path, country: str | None = "AT", refusal: datetime = LATE, info: bool = False,
            **request) -> None:
    """Anna objected on 31 January 2025; Meta acknowledged, maybe asked for more, then refused."""
    add_request(cli, country, **request)
    mails = [(ACKNOWLEDGEMENT, "We received your objection", at("2025-02-01"))]
    if info:
        mails.append((INFO, "We need more information", at("2025-02-03")))
    mails.append((REFUSAL, "Update on your objection", refusal))
    ingest(cli, tmp_path / "inbox", *mails)


def draft(cli, tmp_path, *options: str, expect: int = 0):
    out = tmp_path / "draft"
    result = cli("complaint", "draft", "1", "--out", out, "--name", "Anna Beispiel", *options, expect=expect)
    return result, out


def flat(text: str) -> str:
    """Words as one line: wrapping and French non-breaking spaces aside."""
    return " ".join(text.replace("\u00a0", " ").split())


def letter_of(out: Path) -> str:
    return flat((out / "letter.txt").read_text())


# ---- a letter in each of the seven languages ---------------------------------------------

# Where the authority works in that language, the sentences only that language's letter has,
# and the dates of the round as that language writes them (received, refused, deadline).
LETTERS = {
    "en": ("IE", ["I hereby lodge a complaint under Article 77 GDPR against Meta Platforms Ireland Limited",
                  "Under Article 21(1) GDPR", "compelling legitimate grounds", "Yours faithfully"],
           ["31 January 2025", "5 March 2025", "28 February 2025"]),
    "de": ("AT", ["hiermit erhebe ich Beschwerde gemäß Art. 77 DSGVO", "Nach Art. 21 Abs. 1 DSGVO",
                  "zwingende schutzwürdige Gründe", "Mit freundlichen Grüßen"],
           ["31. Januar 2025", "5. März 2025", "28. Februar 2025"]),
    "fr": ("FR", ["Par la présente, je dépose une plainte au titre de l'article 77 du RGPD",
                  "motifs légitimes et impérieux", "Je vous prie d'agréer, Madame, Monsieur"],
           ["31 janvier 2025", "5 mars 2025", "28 février 2025"]),
    "it": ("IT", ["con la presente propongo reclamo ai sensi dell'articolo 77 del RGPD",
                  "motivi legittimi cogenti", "Distinti saluti"],
           ["31 gennaio 2025", "5 marzo 2025", "28 febbraio 2025"]),
    "es": ("ES", ["presento una reclamación conforme al artículo 77 del RGPD",
                  "motivos legítimos imperiosos", "Atentamente"],
           ["31 de enero de 2025", "5 de marzo de 2025", "28 de febrero de 2025"]),
    "nl": ("NL", ["Hierbij dien ik op grond van artikel 77 AVG een klacht in",
                  "dwingende gerechtvaardigde gronden", "Hoogachtend"],
           ["31 januari 2025", "5 maart 2025", "28 februari 2025"]),
    "pl": ("PL", ["niniejszym wnoszę skargę na podstawie art. 77 RODO",
                  "ważnych prawnie uzasadnionych podstaw", "Z poważaniem"],
           ["31 stycznia 2025 r.", "5 marca 2025 r.", "28 lutego 2025 r."]),
}
# Words of the English letter's template that no other of the seven languages uses.
ENGLISH = {"the", "and", "of", "with", "which", "your", "this", "that", "from", "refused", "objection",
           "request", "deadline", "complaint", "evidence", "please", "been", "under",
           "after", "attached", "authority", "time", "limit", "answer", "submitted", "faithfully"}
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "it": "Italian", "es": "Spanish",
                  "nl": "Dutch", "pl": "Polish"}


def template_words(letter: str) -> set[str]:
    """The letter's own words: without Meta's quoted mail, addresses, links, file names and the company name."""
    letter = re.sub(r'"[^"]*"|„[^“”]*[“”]|«[^»]*»', " ", letter)
    letter = re.sub(r"\S+@\S+|https?://\S+|\S+\.(?:eml|txt)\b|[0-9a-f]{64}", " ", letter)
    letter = letter.replace("Meta Platforms Ireland Limited", " ")
    return {word.lower() for word in re.findall(r"[^\W\d_]+", letter)}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_letter_in_each_language(cli, tmp_path, language):
    country, sentences, dates = LETTERS[language]
    refused(cli, tmp_path, country=country)
    result, out = draft(cli, tmp_path)
    assert f"in {LANGUAGE_NAMES[language]}:" in flat(result.stdout)
    letter = letter_of(out)
    for sentence in sentences + dates:
        assert sentence in letter, sentence
    assert "Merrion Road, Dublin 4, D04 X2K5" in letter
    if language != "en":
        assert not template_words(letter) & ENGLISH, sorted(template_words(letter) & ENGLISH)
        assert letter_of(out) != ""  # the English words above really are absent, not the whole letter
    # The decisive sentence of Meta's refusal is quoted as Meta wrote it, whatever the letter's language.
    assert "We will not honour your objection" in letter


def test_every_language_file_has_the_same_texts():
    keys = {}
    for language in LANGUAGES:
        texts = load(f"{language}.toml")
        keys[language] = {(table, key) for table in ("letter", "note", "alert") for key in texts[table]}
        assert set(texts["letter"]["kinds"]) == {"ai_objection", "third_party_data"}, language
        assert set(texts["letter"]["kinds"]["ai_objection"]) == set(texts["letter"]["kinds"]["third_party_data"])
    for language in LANGUAGES:
        assert keys[language] == keys["en"], (language, keys[language] ^ keys["en"])


def test_the_controller_is_metas_irish_company_with_the_source_of_its_address(cli, tmp_path):
    refused(cli, tmp_path, country="IE")
    _, out = draft(cli, tmp_path)
    letter = letter_of(out)
    controller = load("controller.toml")["controller"]
    assert "Controller ---------- Meta Platforms Ireland Limited Merrion Road, Dublin 4, D04 X2K5, Ireland" in letter
    assert controller["source"].startswith("https://www.facebook.com/privacy/policy/")
    assert f"Address as stated in Meta's privacy policy: {controller['source']}" in letter


# ---- only what the timeline supports -----------------------------------------------------

def test_a_refusal_on_day_13_is_not_called_late(cli, tmp_path):
    refused(cli, tmp_path, country="IE", refusal=IN_TIME)
    _, out = draft(cli, tmp_path)
    letter = letter_of(out)
    assert "On 13 February 2025 Meta refused my objection" in letter
    for claim in ("late", "time limit", "Article 12(3)", "Articles 12(3)"):
        assert claim not in letter, claim
    assert "to establish that Meta has infringed Article 21(1) GDPR;" in letter


def test_a_refusal_after_the_deadline_is_called_late_in_the_authoritys_language(cli, tmp_path):
    refused(cli, tmp_path, country="AT", refusal=LATE)
    _, out = draft(cli, tmp_path)
    letter = letter_of(out)
    assert "Die Frist für die Antwort von Meta endete am 28. Februar 2025; die Ablehnung erfolgte 5 Tage zu " \
           "spät." in letter
    assert "festzustellen, dass Meta gegen Art. 12 Abs. 3 und Art. 21 Abs. 1 DSGVO verstoßen hat;" in letter


def test_in_time_in_german_too(cli, tmp_path):
    refused(cli, tmp_path, country="AT", refusal=IN_TIME)
    _, out = draft(cli, tmp_path)
    letter = letter_of(out)
    assert "zu spät" not in letter and "Art. 12 Abs. 3" not in letter


def test_the_letter_says_meta_asked_for_more_information(cli, tmp_path):
    refused(cli, tmp_path, country="IE", refusal=IN_TIME, info=True)
    _, out = draft(cli, tmp_path)
    letter = letter_of(out)
    assert "On 3 February 2025 Meta asked me for further information." in letter
    # ...before the refusal, in the order things happened.
    assert letter.index("asked me for further information") < letter.index("Meta refused my objection")


def test_without_an_information_request_the_letter_claims_none(cli, tmp_path):
    refused(cli, tmp_path, country="IE", refusal=IN_TIME)
    _, out = draft(cli, tmp_path)
    assert "further information" not in letter_of(out)


def test_an_unanswered_third_party_request_claims_the_missed_deadline_and_erasure(cli, tmp_path):
    add_request(cli, "IE", kind="third_party_data")
    _, out = draft(cli, tmp_path)
    letter = letter_of(out)
    assert "On 31 January 2025 I submitted to Meta a request under Articles 17 and 21 GDPR" in letter
    assert "The time limit for Meta's decision ended on 28 February 2025. Today," in letter
    assert "Meta has still not decided on my request." in letter
    assert "Meta has not demonstrated any such grounds." in letter
    assert "(Article 17(1)(c) GDPR)" in letter
    assert "Articles 12(3), 17(1)(c) and 21(1) GDPR" in letter
    assert "Meta refused" not in letter


# ---- rounds --------------------------------------------------------------------------------

def test_after_objecting_again_the_draft_is_about_the_refusal(cli, tmp_path):
    """Refused, then a new code and acknowledgement open a second round: the refusal keeps its complaint."""
    refused(cli, tmp_path, country="IE", refusal=LATE)
    ingest(cli, tmp_path / "again", (OTP, "Your confirmation code", at("2025-03-10")),
           (ACKNOWLEDGEMENT, "We received your objection", at("2025-03-10", 10)))
    [request] = cli.json("status", "--json")["requests"]
    assert request["state"] != "rejected"  # the new round is open

    result, out = draft(cli, tmp_path)
    assert "About round 1 (received 2025-01-31): the refusal of 2025-03-05." in flat(result.stdout)
    letter = letter_of(out)
    assert "On 31 January 2025 I submitted to Meta an objection" in letter
    assert "On 5 March 2025 Meta refused my objection" in letter
    assert "the refusal came 5 days late" in letter
    assert ("After the refusal I submitted my objection again; Meta received it on 10 March 2025. "
            "This complaint concerns the refusal of 5 March 2025.") in letter
    message = email.message_from_bytes((out / "complaint.eml").read_bytes(), policy=policy.default)
    assert message["Subject"] == "Complaint under Article 77 GDPR: Meta (Facebook) refused my objection"


def test_a_second_refusal_is_the_one_complained_about(cli, tmp_path):
    refused(cli, tmp_path, country="IE", refusal=IN_TIME)
    ingest(cli, tmp_path / "again", (ACKNOWLEDGEMENT, "We received your objection", at("2025-03-10")),
           (REFUSAL, "Update on your objection", at("2025-04-20")))
    result, out = draft(cli, tmp_path)
    assert "About round 2 (received 2025-03-10): the refusal of 2025-04-20." in flat(result.stdout)
    letter = letter_of(out)
    assert "I had submitted the same objection to Meta before; this complaint concerns the objection that " \
           "Meta received on 10 March 2025." in letter
    assert "On 20 April 2025 Meta refused my objection" in letter
    assert "the refusal came 10 days late" in letter  # 10 April was the second round's deadline


def test_an_approval_after_a_refusal_settles_it(cli, tmp_path):
    refused(cli, tmp_path, country="IE", refusal=IN_TIME)
    approval = "We will honour your objection. This means that we won't use your public information for AI."
    ingest(cli, tmp_path / "again", (ACKNOWLEDGEMENT, "We received your objection", at("2025-03-10")),
           (approval, "Update on your objection", at("2025-03-12")))
    result, out = draft(cli, tmp_path, expect=1)
    [line] = result.output.strip().splitlines()
    assert "was approved on 2025-03-12 (after the refusal of 2025-02-13)" in line
    assert not out.exists()


# ---- the .eml draft --------------------------------------------------------------------------

def test_the_eml_is_an_unsent_draft_with_the_mails_attached_as_messages(cli, tmp_path):
    refused(cli, tmp_path, country="NL", info=True)
    _, out = draft(cli, tmp_path)
    message = email.message_from_bytes((out / "complaint.eml").read_bytes(), policy=policy.default)
    assert message["X-Unsent"] == "1"
    assert message["To"] == "info@autoriteitpersoonsgegevens.nl"
    assert message["From"] == "Anna Beispiel <anna@example.org>"
    assert message["Subject"] == "Klacht op grond van artikel 77 AVG: Meta (Facebook) heeft mijn bezwaar afgewezen"
    assert message.get_body(preferencelist=("plain",)).get_content() == (out / "letter.txt").read_text()

    parts = list(message.iter_attachments())
    mails = [p for p in parts if p.get_content_type() == "message/rfc822"]
    assert [p.get_filename() for p in mails] == ["01-2025-02-01-acknowledgement.eml",
                                                 "02-2025-02-03-info_requested.eml", "03-2025-03-05-rejected.eml"]
    subjects = [p.get_content()["Subject"] for p in mails]
    assert subjects == ["We received your objection", "We need more information", "Update on your objection"]
    refusal = mails[-1].get_content()
    assert "We will not honour your objection" in refusal.get_body(preferencelist=("plain",)).get_content()
    assert refusal["Authentication-Results"] == email.message_from_bytes(
        (out / "evidence" / "03-2025-03-05-rejected.eml").read_bytes(), policy=policy.default)["Authentication-Results"]
    texts = {p.get_filename(): p.get_content() for p in parts if p.get_content_type() == "text/plain"}
    assert sorted(texts) == ["SHA256SUMS", "timeline.txt"]
    assert texts["SHA256SUMS"] == (out / "evidence" / "SHA256SUMS").read_text()


def test_a_damaged_mail_is_attached_as_the_file_it_is(cli, tmp_path):
    """A mail the parser would write back differently is attached byte for byte, not rewritten."""
    add_request(cli, "IE")
    raw = meta_mail(REFUSAL, subject="Update on your objection", date=LATE)
    damaged = raw.replace(b"Content-Type: text/plain", b"Content-Type:  text/plain;;charset=\"utf-8", 1)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "refusal.eml").write_bytes(damaged)
    cli("ingest", tmp_path / "inbox")
    _, out = draft(cli, tmp_path)
    message = email.message_from_bytes((out / "complaint.eml").read_bytes(), policy=policy.default)
    [part] = [p for p in message.iter_attachments() if p.get_filename().endswith(".eml")]
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_content() == (out / "evidence" / part.get_filename()).read_bytes() == damaged


# ---- where the person lives -------------------------------------------------------------------

def test_no_country_anywhere_is_refused_in_one_line(cli, tmp_path):
    refused(cli, tmp_path, country=None)
    result, out = draft(cli, tmp_path, expect=1)
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: request #1: the country you live in is unknown")
    assert "--country" in line and "[person] country" in line
    assert not out.exists()
    assert "Ireland" not in result.output


def test_the_country_from_person_in_the_config_is_used(cli, config_file, tmp_path):
    with config_file.open("a") as handle:
        handle.write('\n[person]\nname = "Anna Beispiel"\ncountry = "AT"\n')
    refused(cli, tmp_path, country=None)
    result = cli("complaint", "draft", "1", "--out", tmp_path / "draft")
    output = flat(result.stdout)
    assert "You live in AT, from [person] in the config." in output
    assert "Österreichische Datenschutzbehörde" in output and "(AT)" in output and "in German" in output
    letter = letter_of(tmp_path / "draft")
    assert "Wohnsitzland: Österreich" in letter
    assert "Name: Anna Beispiel" in letter  # [person] name signs it
    assert "no name" not in result.stdout


def test_the_country_of_the_mailbox_comes_before_person(cli, config_file, tmp_path):
    """A family member's mailbox: its [[accounts]] entry says where that person lives."""
    with config_file.open("a") as handle:
        handle.write('\n[person]\ncountry = "AT"\n\n[[accounts]]\nname = "anna"\nhost = "imap.example.org"\n'
                     f'username = "{ADDRESS.upper()}"\npassword_env = "ANNA_PASSWORD"\ncountry = "DE"\n'
                     'region = "BY"\n')
    refused(cli, tmp_path, country=None)
    result, out = draft(cli, tmp_path)
    assert "You live in DE (BY), from [[accounts]] 'anna' in the config." in flat(result.stdout)
    assert "(DE-BY)" in result.stdout
    assert "Wohnsitzland: Deutschland (Bayern)" in letter_of(out)


def test_country_on_the_command_line_wins(cli, config_file, tmp_path):
    with config_file.open("a") as handle:
        handle.write('\n[person]\ncountry = "AT"\n')
    refused(cli, tmp_path, country=None)
    result, _ = draft(cli, tmp_path, "--country", "PL")
    assert "You live in PL, from --country." in flat(result.stdout) and "in Polish" in result.stdout


@pytest.mark.parametrize("person_language, expected", [(None, "fr"), ("nl", "nl"), ("de", "fr")])
def test_a_belgian_letter_is_french_or_dutch_by_the_persons_language(cli, config_file, tmp_path,
                                                                     person_language, expected):
    if person_language:
        with config_file.open("a") as handle:
            handle.write(f'\n[person]\nlanguage = "{person_language}"\n')
    refused(cli, tmp_path, country="BE")
    result, out = draft(cli, tmp_path)
    assert f"in {LANGUAGE_NAMES[expected]}:" in flat(result.stdout)
    letter = letter_of(out)
    if expected == "fr":
        assert "Autorité de protection des données Rue de la Presse 35, 1000 Bruxelles" in letter
    else:
        assert "Gegevensbeschermingsautoriteit Drukpersstraat 35, 1000 Brussel" in letter
    # NOTE.txt is for the person: in their language when the config says it.
    note = flat((out / "NOTE.txt").read_text())
    assert note.startswith({"fr": "Comment déposer", "nl": "Zo dient u", "de": "So reichen Sie"}[
        person_language or "fr"])


def test_lang_chooses_one_of_the_seven(cli, tmp_path):
    refused(cli, tmp_path, country="AT")
    result, out = draft(cli, tmp_path, "--lang", "sv", expect=2)
    assert "--lang" in result.output and "en, de, fr, it, es, nl, pl" in result.output
    result, out = draft(cli, tmp_path, "--lang", "IT")
    assert "in Italian" in result.stdout
    assert "Spettabile Autorità" in letter_of(out)


def test_at_a_terminal_the_command_asks_for_the_country(config_file, tmp_path, cli):
    """Run in a real pseudo-terminal, as a person would: the question, an answer, a draft."""
    refused(cli, tmp_path, country=None)
    out = tmp_path / "draft"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "COLUMNS": "200"}
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "tracker", "--config", str(config_file), "complaint",
                                "draft", "1", "--out", str(out)], stdin=follower, stdout=follower,
                               stderr=follower, env=env, close_fds=True)
    os.close(follower)
    seen, answered, deadline = b"", False, time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the command ended and closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"Which country do you live in?" in seen:
                os.write(leader, b"at\n")
                answered = True
            if process.poll() is not None and not ready:
                break
        assert process.wait(timeout=60) == 0, seen.decode(errors="replace")
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    text = seen.decode(errors="replace")
    assert answered, text
    assert "You live in AT, from your answer." in " ".join(text.split())
    assert "Wohnsitzland: Österreich" in letter_of(out)
