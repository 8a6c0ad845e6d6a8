"""Is a mail really from Meta? Sender domains, lookalikes, display names, Authentication-Results."""

import pytest

from tracker.authenticity import check_authenticity, is_meta_domain, parse_authentication_results
from tracker.config import DEFAULT_META_DOMAINS, AuthenticitySettings
from tracker.parse import ParsedMail, parse_mail

SETTINGS = AuthenticitySettings()
PASS = ("mx.example.org; dkim=pass header.d=facebookmail.com header.s=s1 header.b=abc; "
        "spf=pass smtp.mailfrom=bounce@facebookmail.com; dmarc=pass (p=REJECT) header.from=facebookmail.com")


def mail(address="noreply@facebookmail.com", name="Facebook", auth=(PASS,)):
    return ParsedMail(sender_name=name, sender_address=address, auth_results=tuple(auth))


@pytest.mark.parametrize("domain, expected", [
    ("facebookmail.com", True),
    ("em.facebookmail.com", True),
    ("mail.instagram.com", True),
    ("support.facebook.com", True),
    ("evilfacebookmail.com", False),
    ("facebookmail.com.evil.net", False),
    ("example.org", False),
])
def test_meta_domains_match_on_the_domain_boundary(domain, expected):
    assert is_meta_domain(domain, DEFAULT_META_DOMAINS) is expected


@pytest.mark.parametrize("address", [
    "security@facebookmail.corn",
    "help@faceb00k-mail.com",
    "support@instagram-support.net",
    "privacy@meta-privacy.com",
    "security@facebookmai1.com",
    "no-reply@evilfacebookmail.com",
    "no-reply@facebookmail.com.evil.net",
])
def test_lookalike_domains_are_suspicious(address):
    verdict = check_authenticity(mail(address, name="Security", auth=()), SETTINGS)
    assert verdict.suspicious and verdict.authenticated is False
    assert verdict.label == "lookalike-domain"
    assert not verdict.is_meta_sender


@pytest.mark.parametrize("address", ["anna@example.org", "news@ft.com", "tickets@metallica.com",
                                     "friend@gmail.com", "alerts@metro.de"])
def test_honest_domains_are_simply_not_meta(address):
    verdict = check_authenticity(mail(address, name="Someone", auth=()), SETTINGS)
    assert not verdict.suspicious and not verdict.concerns_meta
    assert verdict.label == "not-meta"


@pytest.mark.parametrize("name", ["Facebook Privacy", "Meta Support", "Instagram", "F4cebook Security"])
def test_brand_in_display_name_on_other_domain_is_suspicious(name):
    verdict = check_authenticity(mail("desk@account-review.example.net", name=name, auth=()), SETTINGS)
    assert verdict.suspicious
    assert verdict.label == "brand-display-name"


def test_display_name_that_only_contains_meta_inside_a_word_is_fine():
    verdict = check_authenticity(mail("fanclub@example.org", name="Metallica Fanclub", auth=()), SETTINGS)
    assert not verdict.suspicious


def test_dmarc_pass_is_authentic():
    verdict = check_authenticity(mail(), SETTINGS)
    assert verdict.authenticated is True and verdict.label == "dmarc-pass"


def test_aligned_dkim_pass_of_a_meta_domain_is_authentic_without_dmarc():
    header = "mx.example.org; dkim=pass header.d=facebookmail.com header.s=s1; spf=none"
    verdict = check_authenticity(mail("update@em.facebookmail.com", auth=[header]), SETTINGS)
    assert verdict.authenticated is True and verdict.label == "dkim-pass"


def test_dkim_pass_of_an_unrelated_domain_proves_nothing():
    header = "mx.example.org; dkim=pass header.d=mailer.example.net; spf=pass smtp.mailfrom=x@mailer.example.net"
    verdict = check_authenticity(mail(auth=[header]), SETTINGS)
    assert verdict.authenticated is None and verdict.label == "unverified"
    assert not verdict.suspicious


@pytest.mark.parametrize("header, label", [
    ("mx.example.org; dkim=fail header.d=facebookmail.com; dmarc=fail header.from=facebookmail.com", "dmarc-fail"),
    ("mx.example.org; dkim=fail (bad signature) header.d=facebookmail.com; spf=softfail", "dkim-fail"),
])
def test_failed_authentication_on_a_meta_domain_is_suspicious(header, label):
    verdict = check_authenticity(mail(auth=[header]), SETTINGS)
    assert verdict.is_meta_sender
    assert verdict.suspicious and verdict.authenticated is False
    assert verdict.label == label


def test_no_header_leaves_the_mail_unverified():
    verdict = check_authenticity(mail(auth=()), SETTINGS)
    assert verdict.is_meta_sender and verdict.authenticated is None and not verdict.suspicious
    assert verdict.label == "unverified"


def test_only_the_topmost_header_counts():
    # A "pass" further down may have been written by the sender itself.
    forged = "mx.example.org; dkim=pass header.d=facebookmail.com; dmarc=pass header.from=facebookmail.com"
    real = "mx.example.org; dkim=fail header.d=facebookmail.com; dmarc=fail header.from=facebookmail.com"
    assert check_authenticity(mail(auth=[real, forged]), SETTINGS).suspicious


def test_trusted_authserv_id_picks_that_servers_header():
    settings = AuthenticitySettings(trusted_authserv_id="mx.example.org")
    forged = "evil.example.net; dkim=pass header.d=facebookmail.com; dmarc=pass header.from=facebookmail.com"
    real = "mx.example.org; dmarc=fail header.from=facebookmail.com"
    assert check_authenticity(mail(auth=[forged, real]), settings).label == "dmarc-fail"


def test_trusted_authserv_id_missing_means_unverified():
    settings = AuthenticitySettings(trusted_authserv_id="mx.example.org")
    other = "evil.example.net; dkim=pass header.d=facebookmail.com; dmarc=pass header.from=facebookmail.com"
    verdict = check_authenticity(mail(auth=[other]), settings)
    assert verdict.authenticated is None
    assert "mx.example.org" in verdict.reason


def test_dmarc_result_about_another_from_domain_is_ignored():
    header = "mx.example.org; dmarc=pass header.from=example.net"
    assert check_authenticity(mail(auth=[header]), SETTINGS).authenticated is None


def test_header_with_comments_and_folding_is_read():
    value = ("mx.example.org (Postfix 3.7);\r\n\tdkim=pass (2048-bit key; unprotected) header.d=facebookmail.com "
             "header.s=s1 header.b=\"Ab3d\";\r\n\tdmarc=pass (p=REJECT (nested)) header.from=facebookmail.com")
    parsed = parse_authentication_results(value)
    assert parsed.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in parsed.results] == [("dkim", "pass"), ("dmarc", "pass")]
    assert parsed.results[0].properties["header.d"] == "facebookmail.com"


# --- Authentication-Results by the grammar of RFC 8601 (issue 8, item 1) ----------------------

def raw_meta_mail(auth_results: list[str], *, extra: bytes = b"", sender: bytes = b"Facebook <security@facebookmail.com>",
                  to: bytes = b"anna@example.org") -> bytes:
    """A Meta refusal as it arrives, with the receiving server's Authentication-Results on top."""
    headers = b"".join(b"Authentication-Results: " + value.encode() + b"\r\n" for value in auth_results)
    return (headers + extra + b"From: " + sender + b"\r\nTo: " + to + b"\r\nSubject: Your objection\r\n"
            b"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <r1@facebookmail.com>\r\n\r\n"
            b"We will not honour your objection.\r\n")


def verdict_of(raw: bytes, settings: AuthenticitySettings = SETTINGS):
    return check_authenticity(parse_mail(raw), settings)


def test_a_semicolon_inside_a_quoted_mailfrom_does_not_start_a_dmarc_pass():
    # The sender chooses its MAIL FROM; the server quotes it and reports its own DMARC failure.
    header = ('mx.example.org; spf=pass smtp.mailfrom="x;dmarc=pass"@evil.example; '
              'dmarc=fail (p=REJECT) header.from=facebookmail.com')
    verdict = verdict_of(raw_meta_mail([header]))
    assert verdict.authenticated is False and verdict.suspicious
    assert verdict.label == "dmarc-fail"
    parsed = parse_authentication_results(header)
    assert [(r.method, r.result) for r in parsed.results] == [("spf", "pass"), ("dmarc", "fail")]
    assert parsed.results[0].properties["smtp.mailfrom"] == '"x;dmarc=pass"@evil.example'


def test_a_quoted_pass_alone_is_no_pass():
    header = 'mx.example.org; spf=pass smtp.mailfrom="a\\";dmarc=pass header.from=facebookmail.com;\\"b"@evil.example'
    verdict = verdict_of(raw_meta_mail([header]))
    assert verdict.authenticated is None and verdict.label == "unverified"


def test_an_unbalanced_parenthesis_in_a_gmail_style_comment_flips_nothing():
    # The server copies the sender's MAIL FROM into its comment; its ")" ends the comment early.
    header = ('mx.example.org; spf=pass (mx.example.org: domain of "a)b;dmarc=pass header.from=facebookmail.com x"'
              '@evil.example designates 192.0.2.1 as permitted sender) '
              'smtp.mailfrom="a)b;dmarc=pass header.from=facebookmail.com x"@evil.example')
    verdict = verdict_of(raw_meta_mail([header]))
    assert verdict.authenticated is not True
    assert "RFC 8601" in verdict.reason
    assert parse_authentication_results(header).problem


def test_a_closing_parenthesis_in_a_comment_cannot_hide_a_failure():
    header = ('mx.example.org; dkim=fail (signature did not verify for "x)" ; dmarc=pass header.from=facebookmail.com '
              '; y=(z") header.d=facebookmail.com')
    verdict = verdict_of(raw_meta_mail([header]))
    assert verdict.authenticated is False and verdict.suspicious


def test_nested_comments_with_results_inside_are_comments():
    header = ("mx.example.org; dmarc=fail (p=reject (sp=none; dmarc=pass header.from=facebookmail.com) dis=none) "
              "header.from=facebookmail.com")
    parsed = parse_authentication_results(header)
    assert [(r.method, r.result) for r in parsed.results] == [("dmarc", "fail")]
    assert parsed.problem is None
    assert verdict_of(raw_meta_mail([header])).label == "dmarc-fail"


def test_an_unclosed_comment_gives_no_pass():
    header = "mx.example.org; dkim=pass header.d=facebookmail.com; dmarc=pass (p=reject header.from=facebookmail.com"
    verdict = verdict_of(raw_meta_mail([header]))
    assert verdict.authenticated is None
    assert "comment is not closed" in verdict.reason


@pytest.mark.parametrize("header, label", [
    ("mx.example.org; dmarc=pass header.from=facebookmail.com; dmarc=fail header.from=facebookmail.com", "dmarc-fail"),
    ("mx.example.org; dmarc=fail header.from=facebookmail.com; dmarc=pass header.from=facebookmail.com", "dmarc-fail"),
    ("mx.example.org; dkim=pass header.d=facebookmail.com; dkim=fail header.d=facebookmail.com", "dkim-fail"),
])
def test_the_same_method_twice_with_different_results_fail_wins(header, label):
    verdict = verdict_of(raw_meta_mail([header]))
    assert verdict.suspicious and verdict.authenticated is False
    assert verdict.label == label


def test_a_dmarc_pass_without_header_from_is_no_pass_for_meta():
    verdict = verdict_of(raw_meta_mail(["mx.example.org; dmarc=pass (p=reject)"]))
    assert verdict.authenticated is None and verdict.label == "unverified"
    assert "names no header.from" in verdict.reason


def test_a_dmarc_pass_for_another_domain_is_no_pass_for_the_from_domain():
    verdict = verdict_of(raw_meta_mail(["mx.example.org; dmarc=pass header.from=evil.example"]))
    assert verdict.authenticated is None


def test_a_dmarc_pass_for_the_parent_domain_is_no_pass_for_a_subdomain_from():
    header = "mx.example.org; dmarc=pass header.from=facebookmail.com"
    verdict = verdict_of(raw_meta_mail([header], sender=b"Facebook <x@em.facebookmail.com>"))
    assert verdict.authenticated is None


def test_property_given_twice_with_different_values_proves_nothing():
    header = "mx.example.org; dmarc=pass header.from=evil.example header.from=facebookmail.com"
    assert verdict_of(raw_meta_mail([header])).authenticated is None


@pytest.mark.parametrize("header", [
    # Gmail
    ("mx.google.com;\r\n       dkim=pass header.i=@facebookmail.com header.s=s1 header.b=IzYk6E/+;\r\n"
     "       spf=pass (google.com: domain of security@facebookmail.com designates 69.171.232.143 as permitted "
     "sender) smtp.mailfrom=security@facebookmail.com;\r\n"
     "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=facebookmail.com"),
    # Microsoft 365 writes no authserv-id and a property without a dot
    ("spf=pass (sender IP is 69.171.232.143) smtp.mailfrom=facebookmail.com; dkim=pass (signature was verified) "
     "header.d=facebookmail.com;dmarc=pass action=none header.from=facebookmail.com;compauth=pass reason=100"),
    # RFC 8601 with a version, a quoted value and white space around "=" and "."
    'mx.example.org 1; dkim/1 = pass header . d = facebookmail.com header.b="Ab/3d=="; dmarc = pass header.from = "facebookmail.com"',
])
def test_real_servers_headers_still_prove_authentic_mail(header):
    verdict = verdict_of(raw_meta_mail([header]))
    assert verdict.authenticated is True and not verdict.suspicious


def test_a_300_kb_header_is_read_whole():
    # How long it takes is measured by bench/auth_results.py (300 KB / 3 KB ratio), not here.
    unit = 'dkim=pass (comment (nested) "q") header.d=a.example header.s=s header.b="x;y"; '
    small = "mx.example.org; " + unit * (3_000 // len(unit))
    large = "mx.example.org; " + unit * (300_000 // len(unit)) + "dmarc=fail header.from=facebookmail.com"
    parsed = parse_authentication_results(large)
    assert parsed.results[-1].result == "fail" and len(parsed.results) > 3_000
    assert parse_authentication_results(small).problem is None


@pytest.mark.parametrize("value", [
    "mx; dkim=pass " + "(" * 150_000 + ")" * 150_000 + " header.d=a.example",   # quadratic for the old regex
    "mx; dkim=pass (" + "(" * 300_000, "mx; " + ")" * 300_000, 'mx; x="' + "a" * 300_000,
    "mx;" + ";" * 300_000, "mx; " + "\\" * 300_000, "mx; dkim=pass header.b=" + "=" * 300_000,
], ids=["deeply-nested", "unclosed-comments", "closing-parentheses", "unclosed-quote", "semicolons",
        "backslashes", "equals-signs"])
def test_hostile_300_kb_headers_prove_nothing(value):
    # Their reading time is measured by bench/auth_results.py ("hostile" shapes), not here.
    parsed = parse_authentication_results(value)
    assert not any(r.result == "pass" and r.method == "dmarc" for r in parsed.results)


# --- repeated headers (issue 8, item 5) ---------------------------------------------------------

def test_a_genuine_refusal_replayed_with_an_extra_to_on_top_is_held():
    # DKIM signs the bottom-most To; the one added on top names the victim.
    raw = raw_meta_mail([PASS], extra=b"To: victim@example.org\r\n")
    mail = parse_mail(raw)
    assert mail.recipient == "victim@example.org"
    verdict = check_authenticity(mail, SETTINGS)
    assert verdict.held and "2 To headers" in verdict.held
    assert verdict.authenticated is not True and not verdict.suspicious and verdict.is_meta_sender


@pytest.mark.parametrize("extra, header", [
    (b"Date: Tue, 03 Jun 2025 10:00:00 +0000\r\n", "Date"),
    (b"Subject: We will honour your objection\r\n", "Subject"),
])
def test_a_second_date_or_subject_holds_meta_mail(extra, header):
    verdict = verdict_of(raw_meta_mail([PASS], extra=extra))
    assert verdict.held and f"2 {header} headers" in verdict.held


def test_ordinary_meta_mail_is_not_held():
    verdict = verdict_of(raw_meta_mail([PASS]))
    assert verdict.held is None and verdict.authenticated is True


def test_a_second_from_that_claims_meta_is_suspicious():
    raw = raw_meta_mail([PASS], extra=b"From: Someone <someone@evil.example>\r\n")
    verdict = verdict_of(raw)
    assert verdict.suspicious and verdict.authenticated is False
    assert verdict.label == "repeated-from"


def test_two_mailboxes_in_one_from_one_of_them_meta_is_suspicious():
    raw = raw_meta_mail([PASS], sender=b"Facebook <security@facebookmail.com>, Mallory <m@evil.example>")
    assert verdict_of(raw).label == "repeated-from"


def test_a_second_from_with_a_lookalike_is_suspicious():
    raw = (b"From: Anna <anna@example.org>\r\nFrom: Security <security@faceb00kmail.com>\r\n"
           b"To: ben@example.org\r\nSubject: hi\r\n\r\nhello")
    assert verdict_of(raw).suspicious


def test_two_froms_that_do_not_claim_meta_are_not_meta_mail():
    raw = (b"From: Anna <anna@example.org>\r\nFrom: Ben <ben@example.org>\r\n"
           b"To: carl@example.org\r\nSubject: lunch\r\n\r\nhello")
    verdict = verdict_of(raw)
    assert not verdict.concerns_meta and verdict.held is None


@pytest.mark.parametrize("sender", [
    b"=?utf-8?q?Facebook_<security@facebookmail.com>?= <x@evil.example>",
    b"=?utf-8?b?RmFjZWJvb2sgPHNlY3VyaXR5QGZhY2Vib29rbWFpbC5jb20+?= <x@evil.example>",
    b'"security@facebookmail.com" <x@evil.example>',
    b"x@evil.example (Facebook <security@facebookmail.com>)",
])
def test_a_meta_address_hidden_in_the_display_name_is_suspicious(sender):
    verdict = verdict_of(raw_meta_mail([], sender=sender))
    assert verdict.suspicious and verdict.label == "address-in-display-name"
    assert "facebookmail.com" in verdict.reason and "x@evil.example" in verdict.reason


def test_the_own_address_as_display_name_is_fine():
    raw = raw_meta_mail([], sender=b'"anna@example.org" <anna@example.org>')
    assert not verdict_of(raw).concerns_meta


# --- look-alikes (issue 8, item 6) --------------------------------------------------------------

@pytest.mark.parametrize("sender", [
    "security@f\u0430cebookmail.com",          # Cyrillic а
    "security@faceb\u03bfok.com",              # Greek ο
    "help@\u0456nstagram.com",                 # Cyrillic і
    "security@xn--facebk-0qfa.com",            # punycode of faceb(оо)k with Cyrillic о
    "help@xn--nstagram-shh.com",               # punycode of іnstagram
    "help@lnstagrarn.com",
    "privacy@metaprivacycenter.com",
    "alerts@fbmail-security.com",
    "help@instagrarn-help.net",
])
def test_lookalike_domains_of_every_kind_are_suspicious(sender):
    raw = raw_meta_mail([], sender=f"Security <{sender}>".encode())
    verdict = verdict_of(raw)
    assert verdict.suspicious and verdict.label == "lookalike-domain"


@pytest.mark.parametrize("name", ["F a c e b o o k", "lnstagrarn", "\u041c\u0435t\u0430 Privacy", "F\u0430cebook",
                                  "F.a.c.e.b.o.o.k Security", "\"Inst@gr4m Support\"", "ＦａｃｅｂｏｏｋＳｅｃｕｒｉｔｙ"])
def test_lookalike_display_names_are_suspicious(name):
    raw = raw_meta_mail([], sender=f"{name} <desk@account-review.example.net>".encode())
    verdict = verdict_of(raw)
    assert verdict.suspicious and verdict.label == "brand-display-name"


@pytest.mark.parametrize("address", ["info@metadata.org", "news@metacontent.com", "tickets@metallica.com",
                                     "agent@fbi.gov", "support@metamask.io", "shop@xn--bcher-kva.de",
                                     "kontakt@example.de", "team@metabase.com"])
def test_honest_domains_near_brand_words_are_not_lookalikes(address):
    raw = raw_meta_mail([], sender=f"Someone <{address}>".encode())
    assert not verdict_of(raw).concerns_meta


# --- impersonation without false alarms (issue 7, item 7) ---------------------------------------

@pytest.mark.parametrize("name", [
    "Meta Privacy", "Facebook Security", "Instagram Support", "Meta Datenschutz", "Équipe de sécurité Facebook",
    "Soporte de Instagram", "Sicurezza Facebook", "Meta Prywatność", "Facebook (Security)", "Meta | Support",
    "Meta Platforms Ireland", "FacebookSecurity", "Instagram Hilfe-Team",
])
def test_a_brand_with_a_service_word_impersonates_in_any_language(name):
    verdict = check_authenticity(mail("desk@account-review.example.net", name=name, auth=()), SETTINGS)
    assert verdict.suspicious and verdict.label == "brand-display-name"


@pytest.mark.parametrize("address, name", [
    ("meta.schmidt@example.de", "Meta Schmidt"),
    ("meta@vandijk.example.nl", "Meta van Dijk"),
    ("meta.schmidt@example.de", "meta.schmidt"),
    ("meta@example.se", "Meta"),
    ("newsletter@heise.example", "Heise: Meta & Facebook News"),
    ("newsletters@theverge.example", "The Verge – Facebook and Meta coverage"),
    ("news@example.org", "Heise Security: Meta & Facebook News"),
    ("fanclub@example.org", "Metallica Fanclub"),
    ("club@example.org", "Facebook Fan Club Hamburg"),
])
def test_people_called_meta_and_newsletters_about_meta_are_not_impersonation(address, name):
    verdict = check_authenticity(mail(address, name=name, auth=()), SETTINGS)
    assert not verdict.suspicious and not verdict.concerns_meta


def test_meta_alone_on_a_domain_that_imitates_meta_is_suspicious():
    verdict = check_authenticity(mail("privacy@meta-privacy.com", name="Meta", auth=()), SETTINGS)
    assert verdict.suspicious


def test_a_brand_alone_nobody_is_named_after_is_suspicious_anywhere():
    verdict = check_authenticity(mail("x@gmail.com", name="Facebook", auth=()), SETTINGS)
    assert verdict.suspicious and verdict.label == "brand-display-name"
