"""Recognition that generalises: the wordings that broke the fixed-phrase rules, each in a test."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mails import meta_mail
from tracker.config import AuthenticitySettings
from tracker.parse import parse_mail
from tracker.rules import classify, explain, load_rules

RULES = load_rules()
REVIEW = AuthenticitySettings()


def classified(body, *, subject="Your request", sender="noreply@facebookmail.com", display="Facebook",
               html=False, auth="pass"):
    mail = parse_mail(meta_mail(body, subject=subject, sender=sender, display=display, html=html, auth=auth))
    return classify(mail, RULES, REVIEW)


# --- one-time codes -----------------------------------------------------------------

def test_code_to_confirm_a_request_without_the_word_objection_is_otp():
    result = classified("Use the code below to confirm your request: 771204", subject="Your code")
    assert (result.category, result.otp) == ("otp", "771204")


@pytest.mark.parametrize("written, digits", [("4821 7730", "48217730"), ("660-913", "660913"),
                                             ("482 913", "482913"), ("30571846", "30571846")])
def test_codes_written_in_groups_are_given_as_digits(written, digits):
    result = classified(f"Enter this code to verify your submission of the form:\n\n{written}\n\n"
                        "It expires in one hour.", subject="Confirm your request")
    assert (result.category, result.otp) == ("otp", digits)


def test_code_split_across_html_elements_is_read_whole():
    result = classified('Your confirmation code for the objection form is <b>48</b><span>21</span><b>77</b>.',
                        html=True)
    assert (result.category, result.otp) == ("otp", "482177")


@pytest.mark.parametrize("body", [
    "Use 551203 to log in to your Facebook account. Don't share this code.",
    "Someone asked to reset your password. Your password reset code is 551203.",
    "Use this code to confirm your new email address: 551203",
])
def test_codes_to_log_in_reset_or_confirm_an_address_are_unrelated(body):
    result = classified(body, subject="Your code")
    assert (result.category, result.otp) == ("unrelated", None)


# --- approvals with words inserted, in other languages ---------------------------------

@pytest.mark.parametrize("body", [
    "We've reviewed your request and will honor your objection.",
    "Wir haben deine Anfrage geprüft und werden deinem Widerspruch in Bezug auf deine öffentlichen "
    "Informationen nachkommen.",
    "Nous avons examiné votre demande et nous y avons fait droit.",
])
def test_approvals_with_inserted_words_are_approved(body):
    assert classified(body, subject="Update").category == "approved"


# --- meaning, not phrases ------------------------------------------------------------------

def test_cannot_confirm_acceptance_is_not_an_approval():
    result = classified("We have reviewed your objection to the use of your information for AI at Meta. "
                        "We cannot confirm that your objection has been accepted.")
    assert result.category == "rejected"


def test_a_negation_belongs_to_the_verb_next_to_it():
    result = classified("We will not honour your objection to the use of your information for AI at Meta.")
    assert result.category == "rejected"
    result = classified("We will honour your objection: we won't use your information for AI at Meta.")
    assert result.category == "approved"


def test_ai_is_a_whole_word_not_the_inside_of_explained():
    result = classified("We won't use your information in ways other than those explained in our terms.")
    assert result.category != "approved"
    why = explain(parse_mail(meta_mail("We won't use your information in ways other than those explained.")),
                  RULES, REVIEW)
    assert all(hit.concept != "ai" for s in why.signals for hit in s.matched)


def test_approval_that_quotes_the_persons_objection_is_approved():
    body = ("We will honour your objection. This means we won't use your public information for AI at Meta.\n\n"
            "Your request:\n"
            "> I object to the processing of my personal data for AI training. I do not consent.\n"
            "> There are no compelling legitimate grounds that override my interests.")
    assert classified(body).category == "approved"


def test_the_persons_own_words_in_the_first_person_do_not_decide():
    body = ('We will honour your objection. You wrote: "I do not consent and I reject your compelling '
            'legitimate grounds."')
    assert classified(body).category == "approved"


def test_quoted_history_below_a_reply_does_not_decide():
    body = ("We've received your objection and will review it.\n\n"
            "On Mon, 2 Jun 2025 at 10:00, Facebook <noreply@facebookmail.com> wrote:\n"
            "> We will not honour your objection.")
    assert classified(body).category == "acknowledgement"


def test_a_forwarded_part_does_not_decide():
    body = ("We've received your objection and will review it.\n\n"
            "---------- Forwarded message ---------\nFrom: Facebook\n\nWe will not honour your objection.")
    assert classified(body).category == "acknowledgement"


def test_hidden_preheader_does_not_decide():
    body = ('<div style="display:none">We will not honour your objection.</div>'
            "We will honour your objection to the use of your information for AI at Meta.")
    assert classified(body, html=True).category == "approved"


def test_strong_signs_of_two_decisions_go_to_review_with_both_guesses():
    result = classified("We will honour your objection. We will not honour your objection.")
    assert result.category == "meta_other"
    assert set(result.guesses) == {"approved", "rejected"}


# --- no silent drop ---------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "Your data protection enquiry has been forwarded to the responsible team.",
    "We wanted to update you about your request concerning artificial intelligence.",
    "Regarding your GDPR request: our team will contact you separately.",
    "About the form https://www.facebook.com/help/contact/1266025207620918 you sent us: see below.",
])
def test_meta_mail_with_a_sign_of_the_topic_is_never_unrelated(body):
    assert classified(body, subject="Update").category == "meta_other"


@pytest.mark.parametrize("body", [
    "Today is Lucia's birthday. Wish her a happy birthday!",
    "You have 3 new notifications and 2 friend requests.",
    "We noticed a new login to your account from Firefox on Linux.",
])
def test_ordinary_meta_mail_is_unrelated(body):
    assert classified(body, subject="Facebook").category == "unrelated"


# --- platforms ----------------------------------------------------------------------------

def test_whatsapp_is_a_platform():
    result = classified("We've received your objection to the use of your information for AI at Meta.",
                        sender="noreply@whatsapp.com", display="WhatsApp")
    assert (result.category, result.platform) == ("acknowledgement", "whatsapp")


def test_meta_com_mail_that_names_no_platform_leaves_it_open():
    result = classified("We've received your objection to the use of your information for AI.",
                        sender="privacy@meta.com", display="Meta")
    assert (result.category, result.platform) == ("acknowledgement", None)


def test_third_party_form_id_tells_the_kind():
    result = classified("We've received your request submitted through form 1266025207620918.")
    assert (result.category, result.kind) == ("acknowledgement", "third_party_data")


# --- explanations -------------------------------------------------------------------------

def test_rules_test_shows_sentence_words_and_runner_up(cli, tmp_path):
    path = tmp_path / "mail.eml"
    path.write_bytes(meta_mail("Thanks for your patience. Unfortunately, we are not able to honour your "
                               "objection to the use of your information for AI at Meta."))
    out = cli("rules", "test", path).stdout
    assert "rejected" in out
    assert "we are not able to honour your objection" in " ".join(out.split())
    assert "negation: not" in out and "approve: honour" in out and "request: objection" in out
    assert "Runner-up" in out


def test_a_decision_that_names_no_platform_joins_the_only_request_or_waits_for_review(cli, tmp_path):
    body = "We will not honour your objection to the use of your information for AI at Meta."
    (tmp_path / "meta.eml").write_bytes(meta_mail(body, sender="privacy@meta.com", display="Meta",
                                                  to="carla@example.org"))
    cli("ingest", tmp_path / "meta.eml")
    status = cli.json("status", "--json")
    assert status["requests"] == []
    assert [m["category"] for m in status["review"]] == ["meta_other"]

    (tmp_path / "ig.eml").write_bytes(meta_mail("We've received your objection to AI at Meta.",
                                                sender="security@mail.instagram.com", display="Instagram",
                                                to="dora@example.org", subject="Received"))
    (tmp_path / "meta2.eml").write_bytes(meta_mail(body, sender="privacy@meta.com", display="Meta",
                                                   to="dora@example.org", subject="Decision",
                                                   date=datetime(2025, 6, 20, tzinfo=timezone.utc)))
    cli("ingest", tmp_path / "ig.eml", tmp_path / "meta2.eml")
    [request] = [r for r in cli.json("status", "--json")["requests"] if r["address"] == "dora@example.org"]
    assert (request["platform"], request["state"]) == ("instagram", "rejected")


def test_trust_setting_applies_to_mail_without_authentication_results_only():
    trust = AuthenticitySettings(unverified="trust")
    body = "We will not honour your objection to the use of your information for AI at Meta."
    no_header = parse_mail(meta_mail(body, auth=None))
    assert classify(no_header, RULES, trust).category == "rejected"
    raw = meta_mail(body, auth=None).replace(
        b"From:", b"Authentication-Results: mx.example.org; dkim=none; spf=softfail smtp.mailfrom=facebookmail.com\nFrom:", 1)
    no_pass = parse_mail(raw)
    assert classify(no_pass, RULES, trust).category == "meta_other"
