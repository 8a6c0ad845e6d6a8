"""Hostile text from mail, and faults around it (issue 8: items 2 and 10, and the low items).

Anyone can send mail to our users, so every byte of a mail is hostile input: a
subject may carry rich markup, terminal escape sequences or bidi overrides; a
library may quote a mail in its log. Each test is built from the shape of the
attack and asserts what the person would see.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import stat
import threading
from datetime import datetime, timezone

import pytest
from rich.console import Console

from mails import REFUSAL, meta_mail
import tracker.cli as cli_module

# ---- attack shapes ------------------------------------------------------------------------

CLOSING_TAG = "Update [/] on your objection"                       # rich: "closing tag has nothing to close"
LINK_MARKUP = "Your objection [link=https://evil.example]was refused: click here[/link]"
# OSC 8 hyperlink and a colour, as raw escape sequences, then C1 CSI, then a right-to-left override.
ESCAPES = ("Decision \x1b]8;;https://evil.example\x1b\\open your account\x1b]8;;\x1b\\ "
           "\x1b[31mred\x1b[0m \x9b2J \u202efdp.exe\u202c \u2066isolated\u2069 \u200emark\u061c")
CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
# Rich's own styling (when the output is a terminal) is SGR only; anything else came from a mail.
RICH_SGR = re.compile(r"\x1b\[[0-9;]*m")


def encoded_subject(raw: bytes, subject: str) -> bytes:
    """``raw`` (built with Subject "PLACEHOLDER") with ``subject`` as an RFC 2047 encoded word,
    the way a sender puts newlines and escape characters into a subject."""
    word = b"=?utf-8?b?" + base64.b64encode(subject.encode()) + b"?="
    return raw.replace(b"PLACEHOLDER", word, 1)


def fake_mail(subject: str, **options) -> bytes:
    """A mail from a look-alike domain: suspicious, so `status` lists it for review."""
    raw = meta_mail("Your objection to AI at Meta needs a confirmation.", subject="PLACEHOLDER",
                    sender="security@faceb00k-mail.com", display="Facebook", auth=None, **options)
    return encoded_subject(raw, subject)


def refusal(subject: str, **options) -> bytes:
    """A genuine refusal (DMARC pass) whose subject is ``subject``."""
    return encoded_subject(meta_mail(REFUSAL, subject="PLACEHOLDER", **options), subject)


@pytest.fixture
def terminal(monkeypatch) -> None:
    """The CLI prints to a real terminal (colours and hyperlinks on), wide enough for one line per cell."""
    monkeypatch.setattr(cli_module, "console", Console(force_terminal=True, width=500, emoji=False))


def seen_on_terminal(output: str) -> str:
    """What the person reads: rich's own colours removed, anything else left as it came."""
    return RICH_SGR.sub("", output)


def assert_nothing_reaches_the_terminal(output: str) -> None:
    shown = seen_on_terminal(output)
    assert "\x1b" not in shown, "an escape sequence (an OSC 8 link, a colour) from the mail reached the terminal"
    assert not CONTROL_CHARS.search(shown), CONTROL_CHARS.findall(shown)


def ingest(cli, tmp_path, **mails: bytes) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for name, raw in mails.items():
        (inbox / f"{name}.eml").write_bytes(raw)
    cli("ingest", inbox)


# ---- item 2: rich markup and terminal control codes --------------------------------------

def test_a_closing_tag_in_a_subject_does_not_crash_status(cli, tmp_path, terminal):
    ingest(cli, tmp_path, fake=fake_mail(CLOSING_TAG))
    result = cli("status")  # crashed with MarkupError: closing tag '[/]' ... has nothing to close
    assert CLOSING_TAG in seen_on_terminal(result.stdout)


def test_link_markup_in_a_subject_is_shown_as_text_not_as_a_link(cli, tmp_path, terminal):
    ingest(cli, tmp_path, fake=fake_mail(LINK_MARKUP))
    result = cli("status")
    assert "\x1b]8;" not in result.stdout, "the subject became a live link to evil.example"
    assert LINK_MARKUP in seen_on_terminal(result.stdout)


def test_escape_sequences_and_bidi_overrides_never_reach_the_terminal(cli, tmp_path, terminal):
    ingest(cli, tmp_path, fake=fake_mail(ESCAPES), refused=refusal(ESCAPES))
    for command in (("status",), ("request", "show", "1")):
        result = cli(*command)
        assert_nothing_reaches_the_terminal(result.stdout)
        shown = seen_on_terminal(result.stdout)
        assert "open your account" in shown and "red" in shown and "fdp.exe" in shown  # the words stay


def test_request_show_prints_a_refusal_subject_as_written(cli, tmp_path, terminal):
    subject = f"{CLOSING_TAG} {LINK_MARKUP} :warning:"
    ingest(cli, tmp_path, refused=refusal(subject))
    result = cli("request", "show", "1")
    assert subject in seen_on_terminal(result.stdout)  # no crash, no link, no emoji
    assert "\x1b]8;" not in result.stdout


def test_classify_and_rules_test_print_hostile_file_names_and_subjects_as_text(cli, tmp_path, terminal):
    # Names as a person may have saved an attachment: markup and an escape sequence in the path.
    folder = tmp_path / "saved" / "["
    folder.mkdir(parents=True)
    path = folder / "]Meta [link=mailto:it@evil.example]decision\x1b[2J.eml"
    path.write_bytes(refusal(f"{CLOSING_TAG} {ESCAPES}"))
    shown_name = "saved/[/]Meta [link=mailto:it@evil.example]decision[2J.eml"

    classified = cli("classify", path)
    assert f"{shown_name}: " in seen_on_terminal(classified.stdout)
    assert_nothing_reaches_the_terminal(classified.stdout)

    explained = cli("rules", "test", path)  # crashed: the file name heads the explanation as a rich rule
    assert_nothing_reaches_the_terminal(explained.stdout)
    assert shown_name in seen_on_terminal(explained.stdout)


def test_json_output_keeps_the_text_but_escapes_what_a_terminal_would_act_on(cli, tmp_path):
    ingest(cli, tmp_path, fake=fake_mail(ESCAPES))
    result = cli("status", "--json")
    assert not CONTROL_CHARS.search(result.stdout), "C1 controls and bidi overrides came out raw"
    [review] = json.loads(result.stdout)["review"]
    assert review["subject"] == ESCAPES  # the data itself is unchanged

    (tmp_path / "one.eml").write_bytes(fake_mail(ESCAPES))
    line = cli("classify", "--json", tmp_path / "one.eml").stdout
    assert not CONTROL_CHARS.search(line)
    assert json.loads(line)["subject"] == ESCAPES


def test_a_fake_mails_code_is_masked_in_status(cli, tmp_path):
    raw = meta_mail("Enter code 482913 to keep your objection to AI at Meta.", subject="Code 482913 for you",
                    sender="security@alerts-example.net", display="Facebook Security 482913", auth=None)
    ingest(cli, tmp_path, fake=raw)
    assert "482913" not in cli("status").stdout
    [review] = cli.json("status", "--json")["review"]
    assert review["category"] == "suspicious"
    assert "482913" not in json.dumps(review)
    assert "******" in review["subject"]


# ---- item 10: integrity of the evidence ----------------------------------------------------

# A forged timeline line and Markdown (a heading, HTML, a link) in a genuine refusal's subject.
FORGED = ("Update\n2025-03-01 08:00 UTC  note             Complaint withdrawn by the person\n"
          "# Withdrawn\n<script>alert(1)</script> [evidence](https://evil.example) **done**")


def test_a_subject_cannot_add_lines_to_the_timeline_or_markup_to_the_letter(cli, tmp_path):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook", "--country", "AT",
        "--date", "2025-01-31")
    ingest(cli, tmp_path, refused=refusal(FORGED, date=datetime(2025, 3, 5, 14, 30, tzinfo=timezone.utc)))
    out = tmp_path / "draft"
    cli("complaint", "draft", "1", "--lang", "en", "--out", out, "--name", "Anna Beispiel")

    timeline = (out / "evidence" / "timeline.txt").read_text().splitlines()
    assert len(timeline) == 2, timeline  # submitted, rejected: no forged "approved" line
    assert not any(line.startswith("2025-03-01") for line in timeline)
    assert "Update 2025-03-01 08:00 UTC note Complaint withdrawn by the person # Withdrawn" in timeline[1]

    markdown = (out / "letter.md").read_text()
    assert "<script>" not in markdown
    assert not re.search(r"^#+ Withdrawn", markdown, re.M), "a heading from the subject"
    assert not re.search(r"(?<!\\)\]\(https://evil", markdown), "a link from the subject"
    assert "\\<script\\>alert(1)\\</script\\>" in markdown  # shown as the text it is
    assert markdown.startswith("# Complaint under Article 77 GDPR")

    text = (out / "letter.txt").read_text()
    subject_line = " ".join(FORGED.split())
    assert f'with the subject "{subject_line}".' in " ".join(text.split())
    assert not any(line.startswith("# Withdrawn") for line in text.splitlines())


# ---- low: secrets and codes ----------------------------------------------------------------

class FakeImapServer:
    """Just enough IMAP for a client to connect: a greeting, OK to anything, BYE to LOGOUT."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
                for line in lines:
                    tag, _, command = line.decode().strip().partition(" ")
                    if command.upper().startswith("LOGOUT"):
                        conn.sendall(f"* BYE\r\n{tag} OK bye\r\n".encode())
                        break
                    conn.sendall(f"{tag} OK done\r\n".encode())

    def close(self):
        self.sock.close()


def test_a_failing_password_command_shows_its_exit_status_only(cli, config_file):
    server = FakeImapServer()
    try:
        with config_file.open("a") as handle:
            handle.write(f'[[accounts]]\nname = "alice"\nhost = "127.0.0.1"\nport = {server.port}\n'
                         f'username = "alice"\ntls = "none"\n'
                         f"password_command = \"echo 'pass: decrypting with passphrase hunter2-S3cret' >&2; "
                         f"exit 3\"\n")
        polled = cli("poll", "--once", expect=1)
    finally:
        server.close()
    assert "exit status 3" in polled.output
    assert "hunter2" not in polled.output
    [account] = cli.json("status", "--json")["accounts"]
    assert "exit status 3" in account["last_error"] and "hunter2" not in account["last_error"]
    assert "hunter2" not in cli("status").stdout


def test_no_log_line_shows_a_mails_code(cli, tmp_path):
    # A header that cannot be decoded, and a Received line, both carrying the code.
    raw = meta_mail("Your objection to AI at Meta: enter this code: 482913.", subject="PLACEHOLDER")
    raw = raw.replace(b"Subject: PLACEHOLDER", b"Received: from mx (code 482913) by mx.example.org\n"
                                                b"Subject: Your code 482913 =?utf-8?b?A?=")
    (tmp_path / "otp.eml").write_bytes(raw)
    for verbosity in ((), ("-v",), ("-vvv",)):
        result = cli(*verbosity, "classify", tmp_path / "otp.eml")
        assert "482913" not in result.stderr, (verbosity, result.stderr)
        assert result.exit_code == 0


def test_imap_protocol_dumps_are_not_logged_at_debug_level(capsys):
    from tracker.logs import configure

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(verbose=3)
        # What imaplib (through imapclient's logger) writes at debug level while fetching a mail,
        # and what apprise writes while sending a code alert.
        imaplib = logging.getLogger("imapclient.imaplib")
        imaplib.debug("> b'KDJH3 UID FETCH 7 (BODY.PEEK[])'")
        imaplib.debug("< b'* 1 FETCH (UID 7 ENVELOPE (\"Mon, 2 Jun 2025\" \"Your code 482913\") BODY[] {812}'")
        imaplib.debug("\tmatched b'(?P<tag>...)' => (b'*', b'Subject: Your code 482913')")
        imaplib.debug("untagged_responses[FETCH] 0 += [\"(b'1 (UID 7 BODY[] {812}', b'Subject: Your code 482913')\"]")
        imaplib.debug("< b'KDJH3 OK Fetch completed.'")
        logging.getLogger("apprise").debug("JSON Payload: {'title': 'code', 'message': 'Code 482913'}")
        logging.getLogger("imapclient.imapclient").debug("Logged in as alice")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    logged = capsys.readouterr().err
    assert "482913" not in logged
    # The protocol exchange itself stays visible for debugging.
    assert "UID FETCH 7" in logged and "KDJH3 OK Fetch completed" in logged and "Logged in as alice" in logged


# ---- low: files -----------------------------------------------------------------------------

@pytest.fixture
def umask_000():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_parent_folders_are_owner_only_under_umask_000(tmp_path, umask_000):
    from typer.testing import CliRunner

    from tracker.cli import app

    # The default location (XDG_DATA_HOME is tmp_path / "xdg-data"): the only one whose folders
    # the tracker creates; a configured [database] url must name a folder that exists.
    database = tmp_path / "xdg-data" / "privacy-tracker" / "tracker.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'[evidence]\ndir = "{tmp_path / "evidence"}"\n')
    result = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    for folder in (tmp_path / "xdg-data", tmp_path / "xdg-data" / "privacy-tracker"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, f"{folder} is {folder.stat().st_mode:o}"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


@pytest.mark.sqlite_only("the mode of the SQLite file")
def test_a_database_made_read_only_stays_read_only(cli, tmp_path):
    cli("request", "add", "--address", "anna@example.org", "--platform", "facebook")
    database = tmp_path / "tracker.sqlite3"
    database.chmod(0o400)
    result = cli("status", expect=1)
    assert stat.S_IMODE(database.stat().st_mode) == 0o400, "the tracker made it writable again"
    [line] = result.output.strip().splitlines()
    assert "read-only" in line and "Traceback" not in result.output


# ---- low: the -v option --------------------------------------------------------------------

def test_the_help_shows_v_as_the_counted_flag_it_is(cli):
    help_text = cli("--help").stdout
    [line] = [line for line in help_text.splitlines() if "--verbose" in line]
    assert "<int>" not in line and "INTEGER" not in line, "the help offers `-v N`, which does not parse"
    assert "-vv" in help_text
    for flags in ("-v", "-vv", "-vvv", "--verbose"):
        cli(flags, "status")
