"""`status`, `request show` and `complaint authorities` read well at 80 columns and in a pipe or cron mail:
no word, date, address or URL broken across lines, human state names, local dates without microseconds."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from rich.console import Console

import tracker.cli as cli_module
import shutil

from conftest import SAMPLE_MAIL
from mails import ACKNOWLEDGEMENT, meta_mail

ADDRESS = "christina.beispiel@example.org"
UNBROKEN = ("platform", "complaint", "2025-05-21", "2025-05-14", ADDRESS, "ben@example.de",
            "more information", "waiting for Meta")
MICROSECONDS = re.compile(r"\d{2}:\d{2}:\d{2}\.\d+")


@pytest.fixture
def requests(cli, tmp_path):
    """Three requests: refused, waiting, and one where Meta asked for more information."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "ack.eml").write_bytes(meta_mail(ACKNOWLEDGEMENT, to=ADDRESS, subject="We received your objection",
                                              date=datetime(2025, 5, 21, 9, 30, 12, 345678, tzinfo=timezone.utc)))
    shutil.copy(SAMPLE_MAIL / "10_chiara_facebook_info_requested_it.eml", inbox / "b_info.eml")
    cli("ingest", inbox)
    cli("request", "add", "--address", "ben@example.de", "--platform", "instagram", "--date", "2025-05-14")
    cli("request", "note", "3", "complaint platform 2025-05-21")
    return cli


@pytest.fixture
def terminal80(monkeypatch):
    """An 80-column terminal (COLUMNS=80), as a person sees `status`."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(cli_module, "console", Console(force_terminal=True, emoji=False, color_system=None))


def assert_unbroken(output: str, words=UNBROKEN) -> None:
    # A word broken across lines shows up with a line break (and table padding) inside it.
    joined = re.sub(r"\s+", " ", output)
    for word in words:
        if word in joined:
            assert word in output, f"{word!r} is split across lines:\n{output}"
    for line in output.splitlines():
        assert len(line) <= 80 or not re.search("[─━│┃]", output), line


def status_words(output: str) -> list[str]:
    return [word for word in UNBROKEN if word in output]


def test_status_at_80_columns_breaks_no_word_and_uses_two_lines_per_request(requests, terminal80):
    output = requests("status").stdout
    assert_unbroken(output)
    for word in (ADDRESS, "ben@example.de", "chiara@example.it", "2025-05-21", "2025-05-14"):
        assert word in output, output
    assert all(len(line) <= 80 for line in output.splitlines()), output
    # Each request: its first line holds the address, the next starts the next request or ends the table.
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"\s*\d+\s{2}\S+@", line)]
    assert len(starts) == 3, output
    assert [b - a for a, b in zip(starts, starts[1:])] == [2, 2], output


def test_status_in_a_pipe_is_plain_and_never_wraps_inside_a_word(requests, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    output = requests("status").stdout
    assert not re.search("[─━│┃┏┓┗┛┡┩]", output), output  # no box drawing
    assert_unbroken(output)
    for word in (ADDRESS, "ben@example.de", "chiara@example.it", "2025-05-14"):
        assert word in output
    request_lines = [line for line in output.splitlines() if line.startswith("#") and "@" in line]
    assert len(request_lines) == 3, output


def test_state_names_are_readable_and_json_keeps_the_raw_names(requests):
    output = requests("status").stdout
    assert "more information requested" in output and "waiting for Meta" in output
    assert "sent, no answer yet" in output
    for raw in ("info_requested", "acknowledged", "code_sent", "meta_other"):
        assert raw not in output, raw
    states = {r["address"]: r["state"] for r in requests.json("status", "--json")["requests"]}
    assert states == {ADDRESS: "acknowledged", "chiara@example.it": "info_requested",
                      "ben@example.de": "submitted"}


def test_review_category_is_readable(cli, tmp_path):
    (tmp_path / "other.eml").write_bytes(meta_mail("A Meta mail about privacy nothing recognises.",
                                                   subject="Regarding your data protection enquiry", auth=None))
    cli("ingest", tmp_path)
    shown = cli("status").stdout
    if "Mails to review" in shown:
        assert "meta_other" not in shown


def test_dates_are_local_without_microseconds_and_json_keeps_iso(requests, terminal80):
    for command in (("status",), ("request", "show", "1"), ("request", "show", "3")):
        output = requests(*command).stdout
        assert not MICROSECONDS.search(output), output
        assert "+00:00" not in output
    # The note's time has microseconds (it is now): JSON keeps ISO 8601 in UTC, the text shows minutes.
    events = requests.json("request", "show", "3", "--json")["events"]
    assert any(MICROSECONDS.search(e["date"]) and "+00:00" in e["date"] for e in events), events
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} ", requests("request", "show", "3").stdout)


def test_status_and_request_show_use_the_same_word_for_receipt(requests, terminal80):
    assert "received" in requests("status").stdout
    shown = requests("request", "show", "1").stdout
    assert "received: 2025-05-21" in shown
    assert "submitted" not in requests("status").stdout


def test_request_show_in_a_pipe_breaks_no_word(requests):
    output = requests("request", "show", "3").stdout
    assert_unbroken(output, ("complaint platform 2025-05-21", "ben@example.de"))
    assert "sent, no answer yet" in output


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_complaint_authorities_keeps_addresses_and_urls_whole(cli, monkeypatch, where):
    from tracker.complaint import load_authorities

    monkeypatch.setenv("COLUMNS", "80")
    if where == "terminal":
        monkeypatch.setattr(cli_module, "console", Console(force_terminal=True, emoji=False, color_system=None))
    output = cli("complaint", "authorities").stdout
    lines = output.splitlines()
    for authority in load_authorities().values():
        for value in (authority.email, authority.complaint_url):
            if value:
                assert any(value in line for line in lines), f"{value!r} is split:\n{output}"
