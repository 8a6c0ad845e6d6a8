"""Only the person's own server's Authentication-Results count (issue 8, item 4).

An IMAP account learns the authserv-id of its server from the topmost
Authentication-Results of its ordinary mail, on the first sync; a Meta mail
whose topmost header names another server is then unverified and held for
review. Local files (`classify`, `ingest`) keep the topmost header as long as
the config names no server.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import db_rows
from mails import REFUSAL, meta_mail
from tracker.cli import app
from tracker.config import load_settings
from tracker.sync import learn_authserv_id, sender_search_terms, topmost_authserv_id

PERSON_SERVER = "mx.person.example"
FORGED_PASS = (b"Authentication-Results: mx.attacker.example; dkim=pass header.d=facebookmail.com; "
               b"dmarc=pass header.from=facebookmail.com\r\n")
GENUINE_PASS = (b"Authentication-Results: mx.person.example; dkim=pass header.d=facebookmail.com header.s=s1; "
                b"spf=pass smtp.mailfrom=noreply@facebookmail.com; dmarc=pass header.from=facebookmail.com\r\n")


def on_top(header: bytes, raw: bytes) -> bytes:
    """``raw`` with ``header`` added above every other header, as a receiving server adds its own."""
    return header + raw


def ordinary_mail(n: int) -> bytes:
    raw = meta_mail(f"Minutes of meeting {n}.", sender=f"colleague{n}@example.org", display="A Colleague",
                    subject=f"Meeting {n}", auth=None, message_id=f"<meeting-{n}@example.org>")
    return on_top(b"Authentication-Results: mx.person.example; dkim=pass header.d=example.org; "
                  b"spf=pass smtp.mailfrom=example.org; dmarc=pass header.from=example.org\r\n", raw)


def forged_refusal() -> bytes:
    """A genuine-looking refusal that brings its own "pass" from another server; the person's server added none."""
    return on_top(FORGED_PASS, meta_mail(REFUSAL, to="victim@example.org", subject="Your objection", auth=None,
                                         message_id="<forged-refusal@facebookmail.com>"))


def genuine_refusal() -> bytes:
    return on_top(GENUINE_PASS, meta_mail(REFUSAL, to="anna@example.org", subject="Your objection", auth=None,
                                          message_id="<genuine-refusal@facebookmail.com>"))


def rows(config, query: str) -> list[tuple]:
    return db_rows(config, query)


# ---- learning, without a server -------------------------------------------------

def test_the_most_common_topmost_id_of_ordinary_mail_is_learned_and_meta_mail_is_left_out():
    terms = sender_search_terms(load_settings(None).authenticity.meta_domains)
    blocks = [forged_refusal(), forged_refusal(), forged_refusal(), ordinary_mail(1), ordinary_mail(2),
              on_top(b"Authentication-Results: other.example; spf=pass smtp.mailfrom=example.net\r\n",
                     ordinary_mail(3)),
              meta_mail("no header", sender="a@example.org", auth=None)]

    assert topmost_authserv_id(forged_refusal()) == "mx.attacker.example"
    assert topmost_authserv_id(blocks[-1]) is None
    assert learn_authserv_id(blocks, terms) == PERSON_SERVER
    assert learn_authserv_id([forged_refusal()], terms) is None
    # A header without an authserv-id (Microsoft's style) teaches nothing.
    assert learn_authserv_id([on_top(b"Authentication-Results: spf=pass smtp.mailfrom=example.net\r\n",
                                     meta_mail("x", sender="a@example.org", auth=None))], terms) is None


# ---- an IMAP account ----------------------------------------------------------------

@pytest.mark.dovecot
def test_first_sync_learns_the_server_and_a_forged_header_from_another_server_is_held_for_review(
        dovecot, imap_config, cli, tmp_path):
    dovecot.deliver("alice", forged_refusal())
    for n in range(4):
        dovecot.deliver("alice", ordinary_mail(n))
    dovecot.deliver("alice", genuine_refusal())

    poll = cli("poll", "--once")

    assert "alice: 2 new mail(s)" in poll.stdout
    status = cli.json("status", "--json")
    alice = next(a for a in status["accounts"] if a["name"] == "alice")
    assert alice["authserv_id"] == PERSON_SERVER
    assert rows(imap_config, "SELECT authserv_id FROM account WHERE name = 'alice'") == [(PERSON_SERVER,)]
    assert PERSON_SERVER in cli("status").stdout
    recorded = dict(rows(imap_config, "SELECT dedupe_id, category FROM message"))
    # The forged "pass" came from mx.attacker.example: unverified, held for review, not a refusal.
    assert recorded["forged-refusal@facebookmail.com"] == "meta_other"
    [(authenticated, reason)] = rows(imap_config, "SELECT authenticated, reason FROM message "
                                                  "WHERE dedupe_id = 'forged-refusal@facebookmail.com'")
    assert authenticated is None and PERSON_SERVER in reason
    assert [m["subject"] for m in status["review"]] == ["Your objection"]
    # The person's own server's pass is believed: the genuine refusal opens its request.
    assert recorded["genuine-refusal@facebookmail.com"] == "rejected"
    assert [(r["address"], r["state"]) for r in status["requests"]] == [("anna@example.org", "rejected")]

    # Learned once, kept: a later forged mail is judged by the same server.
    dovecot.deliver("alice", on_top(FORGED_PASS, meta_mail(REFUSAL, to="second@example.org", auth=None,
                                                           message_id="<forged-2@facebookmail.com>")))
    cli("poll", "--once")
    assert dict(rows(imap_config, "SELECT dedupe_id, category FROM message"))["forged-2@facebookmail.com"] == \
        "meta_other"


@pytest.mark.dovecot
def test_a_configured_trusted_authserv_id_is_not_overridden_by_learning(dovecot, imap_config, cli):
    with imap_config.open("a") as handle:
        handle.write('\n[authenticity]\ntrusted_authserv_id = "mx.attacker.example"\n')
    for n in range(3):
        dovecot.deliver("alice", ordinary_mail(n))
    dovecot.deliver("alice", forged_refusal())

    cli("poll", "--once")

    assert rows(imap_config, "SELECT authserv_id FROM account WHERE name = 'alice'") == [(None,)]
    assert rows(imap_config, "SELECT category FROM message") == [("rejected",)]


@pytest.mark.dovecot
def test_a_mailbox_whose_mail_names_no_server_learns_nothing_and_keeps_the_topmost_rule(dovecot, imap_config, cli):
    for n in range(3):
        dovecot.deliver("alice", meta_mail(f"Minutes {n}", sender=f"c{n}@example.org", display="A Colleague",
                                           auth=None, message_id=f"<m{n}@example.org>"))
    dovecot.deliver("alice", genuine_refusal())

    cli("poll", "--once")

    assert rows(imap_config, "SELECT authserv_id FROM account WHERE name = 'alice'") == [(None,)]
    assert rows(imap_config, "SELECT category FROM message") == [("rejected",)]
    assert "not learned yet" in cli("status").stdout


# ---- local files ----------------------------------------------------------------------

def test_classify_and_ingest_without_a_config_keep_the_topmost_header(tmp_path):
    forged = tmp_path / "forged.eml"
    forged.write_bytes(forged_refusal())
    genuine = tmp_path / "genuine.eml"
    genuine.write_bytes(genuine_refusal())
    runner = CliRunner()  # no --config: the isolated user folders hold no config file

    classified = runner.invoke(app, ["classify", "--json", str(forged), str(genuine)])
    ingested = runner.invoke(app, ["ingest", str(genuine)])

    assert classified.exit_code == 0, classified.output
    verdicts = [json.loads(line) for line in classified.stdout.splitlines() if line.strip()]
    assert [v["category"] for v in verdicts] == ["rejected", "rejected"]
    assert ingested.exit_code == 0, ingested.output
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert [(r["address"], r["state"]) for r in status["requests"]] == [("anna@example.org", "rejected")]


def test_classify_with_a_configured_server_judges_local_files_by_it(config_file, cli, tmp_path):
    with config_file.open("a") as handle:
        handle.write(f'\n[authenticity]\ntrusted_authserv_id = "{PERSON_SERVER}"\n')
    forged = tmp_path / "forged.eml"
    forged.write_bytes(forged_refusal())

    [verdict] = cli.json_lines("classify", "--json", str(forged))

    assert verdict["category"] == "meta_other"
