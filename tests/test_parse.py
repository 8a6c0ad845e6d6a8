"""Parsing: decoded headers and text, and damaged mail that never crashes."""

from __future__ import annotations

from datetime import datetime, timezone

from tracker.parse import parse_mail
from tracker.text import html_to_text, mask_code, normalise

HTML_ONLY = (
    b"From: =?utf-8?q?Instagram?= <security@mail.instagram.com>\r\n"
    b"To: Ben <ben@example.de>\r\n"
    b"Delivered-To: ben@example.de\r\n"
    b"Subject: =?utf-8?b?V2lkZXJzcHJ1Y2g6IGRlaW5lIEFuZnJhZ2U=?=\r\n"
    b"Date: Tue, 04 Jun 2024 09:15:00 +0200\r\n"
    b"Message-ID: <abc@mail.instagram.com>\r\n"
    b"Authentication-Results: mx.example.de; dkim=pass header.d=mail.instagram.com\r\n"
    b"Authentication-Results: relay.example.net; dkim=fail\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<html><head><style>p{color:red}</style></head><body><p>Wir werden deinen Widerspruch=\r\n"
    b" nicht ber=C3=BCcksichtigen&nbsp;&amp; won=E2=80=99t</p><p>Zweiter</p></body></html>\r\n"
)


def test_headers_are_decoded():
    mail = parse_mail(HTML_ONLY)
    assert mail.error is None
    assert mail.subject == "Widerspruch: deine Anfrage"
    assert mail.sender_name == "Instagram"
    assert mail.sender_address == "security@mail.instagram.com"
    assert mail.sender_domain == "mail.instagram.com"
    assert mail.recipient == "ben@example.de"
    assert mail.recipients == ("ben@example.de",)
    assert mail.date == datetime(2024, 6, 4, 7, 15, tzinfo=timezone.utc)
    assert mail.message_id == "abc@mail.instagram.com"


def test_authentication_results_keep_their_order():
    mail = parse_mail(HTML_ONLY)
    assert mail.auth_results[0].startswith("mx.example.de;")
    assert mail.auth_results[1].startswith("relay.example.net;")


def test_html_only_mail_is_made_text_and_normalised():
    mail = parse_mail(HTML_ONLY)
    assert "color:red" not in mail.text
    assert "Zweiter" in mail.text
    assert "nicht berücksichtigen & won't" in mail.normalised_text


def test_normalise_folds_what_templates_hide():
    assert normalise("We\u00a0WON\u2019T\u200b honour\u2060 your \u201cobjection\u201d") == \
        "we won't honour your \"objection\""
    assert normalise("ＦＵＬＬ  width\n\tspaces") == "full width spaces"


def test_html_to_text_drops_scripts_and_decodes_entities():
    assert html_to_text("<script>x()</script><b>caf&eacute;</b><br>next") == "café\nnext"


def test_empty_mail_has_an_error():
    assert parse_mail(b"").error == "empty message"
    assert parse_mail(b"   \r\n").error == "empty message"


def test_binary_junk_is_read_as_far_as_it_goes():
    mail = parse_mail(b"\x00\xff\xfe\x00 not a mail at all \x80\x81")
    assert mail.error and "no mail headers" in mail.error
    assert mail.sender_address == ""


def test_broken_date_and_headers_do_not_crash():
    mail = parse_mail(b"From: <<<broken\r\nDate: yesterday-ish\r\nSubject: hi\r\n\r\nbody")
    assert mail.date is None
    assert mail.subject == "hi"


def test_codes_are_masked_to_their_length():
    assert mask_code("123456") == "******"
    assert mask_code(None) == ""


def test_headers_the_email_package_chokes_on_do_not_crash():
    mail = parse_mail(b"From: a@example.org\r\nDate: Fri, 31 Dec 9999 23:30:00 -0100\r\n"
                      b"Message-ID: <caf\xe9-\xff@example.org>\r\nSubject: x\r\n\r\nbody")
    assert mail.date is None
    assert mail.message_id and mail.message_id.endswith("@example.org")


def test_the_address_meta_wrote_to_comes_before_the_delivery_mailbox():
    # A family member's mail forwarded into the parent's mailbox belongs to the family member.
    mail = parse_mail(b"From: noreply@facebookmail.com\r\nTo: kid@example.org\r\n"
                      b"Delivered-To: parent@example.org\r\nSubject: x\r\n\r\nbody")
    assert mail.recipient == "kid@example.org"


def test_an_acute_accent_used_as_apostrophe_is_folded():
    assert normalise("we won\u00b4t honour") == "we won't honour"
