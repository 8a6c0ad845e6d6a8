"""Forwarded-mail intake: members forward Meta's mails to an organisation's [[intake]] mailbox.

The intake mailbox is bob's on a real Dovecot (one server for the module, a folder of its own
for each test), read by `poll --once`. Meta's mails are signed with a key made here, and the
tracker's DNS lookup of DKIM keys is replaced by one that knows only that key.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from email.utils import format_datetime

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import IMAP_USERS, Cli, db_rows, imap_account_toml, running_dovecot
from mails import APPROVAL, REFUSAL, meta_mail
from test_alerts import WebhookReceiver
from tracker import dkim_check, migrations
from tracker.intake import attached_originals

pytestmark = pytest.mark.dovecot

SELECTOR = "test"
META = "facebookmail.com"


# ---- a key of our own, and Meta's mail signed with it ------------------------------------

@pytest.fixture(scope="module")
def signing_key() -> tuple[bytes, bytes]:
    """(private key in PEM, the TXT record ``v=DKIM1; k=rsa; p=...`` that publishes it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture
def dns(monkeypatch, signing_key) -> list[bytes]:
    """The tracker's DKIM key lookups answered from here: only test._domainkey.facebookmail.com exists."""
    asked: list[bytes] = []
    records = {f"{SELECTOR}._domainkey.{META}.".encode(): signing_key[1]}

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        asked.append(name)
        return records.get(name)

    monkeypatch.setattr(dkim_check, "lookup_txt", lookup)
    return asked


def signed(raw: bytes, private_key: bytes, domain: str = META) -> bytes:
    header = dkim.sign(raw, SELECTOR.encode(), domain.encode(), private_key, linesep=b"\n",
                       include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return header + raw


def meta_refusal(private_key: bytes, n: int = 1, **options) -> bytes:
    """A refusal from facebookmail.com, signed, without Authentication-Results (as a forward carries it)."""
    options.setdefault("auth", None)
    return signed(meta_mail(REFUSAL, to="anna.private@example.net", subject="Your objection",
                            message_id=f"<refusal-{n}@facebookmail.com>", **options), private_key)


def forward_attached(original: bytes, *, sender: str = "anna@example.org", n: int = 1,
                     base64_eml: bool = False) -> bytes:
    """A forward with the original attached, as mail programs send it ("Forward as attachment")."""
    if base64_eml:  # some programs attach it as an .eml file, base64-encoded
        attachment = (b"Content-Type: application/octet-stream; name=\"objection.eml\"\n"
                      b"Content-Transfer-Encoding: base64\n"
                      b"Content-Disposition: attachment; filename=\"objection.eml\"\n\n"
                      + base64.encodebytes(original))
    else:
        attachment = (b"Content-Type: message/rfc822\n"
                      b"Content-Disposition: attachment; filename=\"objection.eml\"\n\n" + original)
    head = (f"From: Anna Example <{sender}>\nTo: intake@org.example\nSubject: Fwd: Your objection\n"
            f"Date: {format_datetime(datetime(2025, 6, 3, 9, 0, tzinfo=timezone.utc))}\n"
            f"Message-ID: <forward-{n}@example.org>\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/mixed; boundary=\"BOUNDARY-{n}\"\n\n").encode()
    return (head + f"--BOUNDARY-{n}\nContent-Type: text/plain; charset=utf-8\n\nMeta said no, see attached.\n\n"
            f"--BOUNDARY-{n}\n".encode() + attachment + f"\n--BOUNDARY-{n}--\n".encode())


def forward_inline(body: str = REFUSAL, *, sender: str = "anna@example.org") -> bytes:
    """A forward with the original's text in its own body, as Gmail writes it."""
    text = (f"Meta said no.\n\n---------- Forwarded message ---------\n"
            f"From: Facebook <noreply@facebookmail.com>\nDate: Mon, 2 Jun 2025 at 12:00\n"
            f"Subject: Your objection\nTo: <anna@example.org>\n\n{body}\n")
    return meta_mail(text, sender=sender, display="Anna Example", to="intake@org.example",
                     subject="Fwd: Your objection", auth=None, message_id="<inline-1@example.org>")


# ---- an intake mailbox on a real Dovecot -------------------------------------------------

@pytest.fixture(scope="module")
def server():
    with running_dovecot() as dovecot:
        yield dovecot


@pytest.fixture
def intake(server, config_file, monkeypatch, request):
    """bob's mailbox as the organisation's [[intake]] mailbox, in a folder of this test's own."""
    monkeypatch.setenv("BOB_IMAP_PASSWORD", IMAP_USERS["bob"])
    folder = request.node.name.removeprefix("test_")[:40]
    table = imap_account_toml(server, "bob", name="intake", folders=[folder]).replace("[[accounts]]", "[[intake]]")
    with config_file.open("a") as handle:
        handle.write(table)

    class Intake:
        def deliver(self, raw: bytes) -> None:
            server.deliver("bob", raw, folder=folder)

        def configure(self, text: str) -> None:
            """Keys added to the [[intake]] table (it is the config file's last table)."""
            with config_file.open("a") as handle:
                handle.write(text)

    return Intake()


def rows(cli, query: str) -> list[tuple]:
    return db_rows(cli.config, query)


def status(cli) -> dict:
    return cli.json("status", "--json")


# ---- the forwarded refusal ---------------------------------------------------------------

def test_a_signed_refusal_attached_by_a_member_becomes_a_rejected_request_for_the_member_once(
        cli, intake, dns, signing_key):
    cli("member", "add", "Anna@Example.org", "--name", "Anna Example", "--country", "DE", "--region", "BY")
    intake.deliver(forward_attached(meta_refusal(signing_key[0])))

    first = cli("poll", "--once")

    assert "1 refusal" in first.stdout
    [request] = status(cli)["requests"]
    assert (request["address"], request["platform"], request["state"], request["country"]) == \
        ("anna@example.org", "facebook", "rejected", "DE")
    assert rows(cli, "SELECT region FROM request") == [("BY",)]
    original = rows(cli, "SELECT category, authenticated, authenticity, recipient, folder, uid FROM message "
                         "WHERE request_id IS NOT NULL")
    assert original == [("rejected", 1, "dkim-pass", "anna@example.org", None, None)]
    assert b"test._domainkey.facebookmail.com." in dns
    assert status(cli)["review"] == []

    # Read again from the start (the checkpoint lost): nothing counts twice.
    rows(cli, "DELETE FROM checkpoint")
    again = cli("poll", "--once")

    assert "0 new mails" in again.stdout
    assert rows(cli, "SELECT count(*) FROM message") == [(2,)]  # the forward and its original
    assert rows(cli, "SELECT count(*) FROM event WHERE kind = 'rejected'") == [(1,)]
    assert [a["reason"] for a in status(cli)["alerts"]] == ["refused"]


def test_the_same_original_forwarded_twice_counts_once(cli, intake, dns, signing_key):
    cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "AT")
    original = meta_refusal(signing_key[0])
    intake.deliver(forward_attached(original, n=1))
    intake.deliver(forward_attached(original, n=2))

    cli("poll", "--once")

    assert [(r["state"], r["country"]) for r in status(cli)["requests"]] == [("rejected", "AT")]
    assert rows(cli, "SELECT count(*) FROM event WHERE kind = 'rejected'") == [(1,)]
    reasons = [reason for (reason,) in rows(cli, "SELECT reason FROM message WHERE uid IS NOT NULL ORDER BY uid")]
    assert "recorded before" not in reasons[0] and "recorded before" in reasons[1]


def test_an_original_attached_as_a_base64_eml_file_is_verified_too(cli, intake, dns, signing_key):
    cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "DE")
    intake.deliver(forward_attached(meta_refusal(signing_key[0]), base64_eml=True))

    cli("poll", "--once")

    assert [r["state"] for r in status(cli)["requests"]] == ["rejected"]


# ---- what is held ----------------------------------------------------------------------------

def test_a_tampered_original_is_not_authentic_and_is_held_even_with_a_passing_header_inside(
        cli, intake, dns, signing_key):
    cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "DE")
    # The forwarder's copy claims dkim=pass in an Authentication-Results header of its own: it counts for nothing.
    genuine = meta_refusal(signing_key[0], auth="pass")
    tampered = genuine.replace(b"We will not honour your objection", b"We will not honor your objection")
    assert tampered != genuine
    intake.deliver(forward_attached(tampered))

    cli("poll", "--once")

    data = status(cli)
    assert data["requests"] == []
    [held] = data["review"]
    assert held["category"] == "meta_other" and held["recipient"] == "anna@example.org"
    assert "changed after signing" in held["reason"]
    assert rows(cli, "SELECT authenticated, guesses FROM message WHERE id = :id".replace(":id", str(held["id"]))) == \
        [(None, "rejected")]


def test_an_inline_forward_is_never_authentic_and_is_held_with_its_guess(cli, intake, dns):
    cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "DE")
    intake.deliver(forward_inline())

    cli("poll", "--once")

    data = status(cli)
    assert data["requests"] == []
    [held] = data["review"]
    assert (held["category"], held["sender"], held["recipient"]) == ("meta_other", "anna@example.org",
                                                                     "anna@example.org")
    assert "inline forward" in held["reason"] and "rejected" in held["reason"]
    [mail] = cli.json("review", "--json")["mails"]
    assert [g["category"] for g in mail["guesses"]] == ["rejected"]
    assert rows(cli, "SELECT authenticated FROM message") == [(None,)]
    assert [a["title"] for a in data["alerts"]] == ["A forwarded mail needs your review (anna@example.org)"]

    # The person decides: the held forward joins the member's request.
    cli("review", str(held["id"]), "--as", "rejected")
    assert [(r["address"], r["state"], r["country"]) for r in status(cli)["requests"]] == \
        [("anna@example.org", "rejected", "DE")]


def test_a_forward_from_an_address_that_is_no_member_is_held(cli, intake, dns, signing_key):
    intake.deliver(forward_attached(meta_refusal(signing_key[0]), sender="stranger@example.com"))

    cli("poll", "--once")

    data = status(cli)
    assert data["requests"] == []
    [held] = data["review"]
    assert held["sender"] == "stranger@example.com" and "not a registered member" in held["reason"]
    assert "member add stranger@example.com" in held["reason"]
    # The original is not recorded for anybody: once the member is registered, a new forward counts.
    assert rows(cli, "SELECT count(*) FROM message") == [(1,)]


def test_a_signature_of_another_domain_does_not_vouch_for_meta(cli, intake, dns, signing_key, monkeypatch):
    cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "DE")
    records = {b"test._domainkey.example.com.": signing_key[1]}
    monkeypatch.setattr(dkim_check, "lookup_txt", lambda name, timeout=5: records.get(name))
    original = signed(meta_mail(REFUSAL, auth=None, message_id="<other@facebookmail.com>"), signing_key[0],
                      domain="example.com")
    intake.deliver(forward_attached(original))

    cli("poll", "--once")

    data = status(cli)
    assert data["requests"] == [] and [m["category"] for m in data["review"]] == ["meta_other"]


def test_without_dns_a_signature_is_not_verified_and_nothing_breaks(cli, intake, signing_key, monkeypatch):
    def offline(name, timeout=5):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(dkim_check, "lookup_txt", offline)
    cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "DE")
    intake.deliver(forward_attached(meta_refusal(signing_key[0])))

    result = cli("poll", "--once")

    assert "0 errors" in result.stdout
    [held] = status(cli)["review"]
    assert "could not be verified" in held["reason"] and "Network is unreachable" in held["reason"]


# ---- the member's acknowledgement ------------------------------------------------------

def test_the_member_is_acknowledged_only_when_the_intake_mailbox_says_so(cli, intake, dns, signing_key):
    webhook = WebhookReceiver()
    webhook.start()
    try:
        intake.configure(f'acknowledge = true\n\n[alerts]\nurls = ["{webhook.url}"]\n')
        cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "DE")
        intake.deliver(forward_attached(meta_refusal(signing_key[0], n=1), n=1))
        intake.deliver(forward_inline(APPROVAL))

        cli("poll", "--once")
        cli("poll", "--once")
    finally:
        webhook.stop()

    acknowledgements = [post for post in webhook.posts if post["title"].startswith("To Anna Example")]
    assert len(acknowledgements) == 2
    refusal, inline = sorted(acknowledgements, key=lambda post: "as text" in post["message"])
    assert "<anna@example.org>" in refusal["title"] and refusal["message"].startswith("Dear Anna Example,")
    assert "recorded for your Facebook objection to AI training" in refusal["message"]
    assert "forward Meta's mail as an attachment" in inline["message"]


def test_no_acknowledgement_without_acknowledge(cli, intake, dns, signing_key):
    cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "DE")
    intake.deliver(forward_attached(meta_refusal(signing_key[0])))

    cli("poll", "--once")

    assert [a["reason"] for a in status(cli)["alerts"]] == ["refused"]


# ---- members ----------------------------------------------------------------------------------

def test_members_are_added_listed_and_removed(cli):
    added = cli("member", "add", "Ben@Example.org", "--name", "Ben Example", "--country", "de", "--region", "by")
    assert "Ben Example <ben@example.org>, DE-BY" in added.stdout
    cli("member", "add", "cleo@example.fr", "--name", "Cléo", "--country", "FR")

    assert cli.json("member", "list", "--json")["members"] == [
        {"address": "ben@example.org", "name": "Ben Example", "country": "DE", "region": "BY",
         "since": datetime.now(timezone.utc).date().isoformat(), "requests": 0},
        {"address": "cleo@example.fr", "name": "Cléo", "country": "FR", "region": None,
         "since": datetime.now(timezone.utc).date().isoformat(), "requests": 0}]
    assert "ben@example.org  Ben Example, DE-BY" in cli("member", "list").stdout

    twice = cli("member", "add", "ben@example.org", "--name", "B", "--country", "DE", expect=1)
    assert twice.output.strip() == ("error: ADDRESS: ben@example.org is a member already (`privacy-tracker member "
                                    "remove ben@example.org` first to change the entry)")
    wrong = cli("member", "add", "ben", "--name", "B", "--country", "XX", expect=2)
    assert "ADDRESS: 'ben' is not an e-mail address" in wrong.output and "--country: 'XX'" in wrong.output
    assert len(wrong.output.strip().splitlines()) == 1

    assert "Member removed: Ben Example" in cli("member", "remove", "BEN@example.org").stdout
    assert [m["address"] for m in cli.json("member", "list", "--json")["members"]] == ["cleo@example.fr"]
    gone = cli("member", "remove", "ben@example.org", expect=1)
    assert "ben@example.org is not a member" in gone.output


def test_every_member_command_has_help(cli):
    for command in (["member"], ["member", "add"], ["member", "list"], ["member", "remove"]):
        assert "Usage" in cli(*command, "--help").stdout


def test_an_intake_table_takes_the_account_keys_and_acknowledge(cli, config_file):
    config_file.write_text(config_file.read_text() + '[[accounts]]\nname = "org"\nhost = "imap.example.org"\n'
                           'username = "a"\npassword_env = "X"\nacknowledge = true\n')
    wrong = cli("status", expect=1)
    assert "accounts #1: unknown key 'acknowledge' – it belongs in an [[intake]] table" in wrong.output
    config_file.write_text(config_file.read_text().replace("[[accounts]]", "[[intake]]")
                           + '[[accounts]]\nname = "org"\nhost = "imap.example.org"\nusername = "b"\n'
                             'password_env = "X"\n')
    same = cli("status", expect=1)
    assert "intake #1.name: duplicate account name 'org'" in same.output


# ---- unpacking -----------------------------------------------------------------------------

def test_the_attached_original_is_cut_out_byte_for_byte(signing_key):
    original = meta_refusal(signing_key[0])

    assert attached_originals(forward_attached(original)) == [original]
    assert attached_originals(forward_attached(original).replace(b"\n", b"\r\n")) == \
        [original.replace(b"\n", b"\r\n")]
    assert attached_originals(forward_attached(original, base64_eml=True)) == [original]
    assert attached_originals(forward_inline()) == []


# ---- the schema --------------------------------------------------------------------------------

def test_a_database_of_the_previous_revision_gets_the_member_table(new_database_url, tmp_path):
    from alembic import command
    from sqlalchemy import create_engine

    url = new_database_url("previous", empty=True)
    engine = create_engine(url)
    with engine.begin() as connection:
        command.upgrade(migrations._config(connection), "0003_verdicts")
    engine.dispose()
    db_rows(url, "INSERT INTO request (address, platform, kind, notes, state, created_at) VALUES "
                 "('anna@example.org', 'facebook', 'ai_objection', '', 'submitted', '2025-06-01 10:00:00')")
    config = tmp_path / "previous.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    cli = Cli(config)

    cli("member", "add", "anna@example.org", "--name", "Anna Example", "--country", "DE")

    assert [m["requests"] for m in cli.json("member", "list", "--json")["members"]] == [1]
    assert db_rows(url, "SELECT version_num FROM alembic_version") == [(migrations.head(),)]
    if url.startswith("sqlite"):  # a copy of the file as it was, beside it
        assert list(tmp_path.glob("previous.sqlite3.0003_verdicts-*.bak"))
