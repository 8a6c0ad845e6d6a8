"""Is a mail really from Meta? Sender domains, lookalikes, display names, Authentication-Results."""

import pytest

from tracker.authenticity import check_authenticity, is_meta_domain, parse_authentication_results
from tracker.config import DEFAULT_META_DOMAINS, AuthenticitySettings
from tracker.parse import ParsedMail

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
