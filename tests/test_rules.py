"""What the classifier makes of Meta's mails: categories, codes, user rules, explanations."""

import textwrap
from pathlib import Path

import pytest

import tracker
from tracker.config import AuthenticitySettings
from tracker.errors import RulesError
from tracker.parse import parse_mail
from tracker.rules import classify, explain, load_rules
from tracker.rules.engine import normalise_pattern

RULES = load_rules()
REVIEW = AuthenticitySettings()
TRUST = AuthenticitySettings(unverified="trust")
PASS = ("mx.example.org; dkim=pass header.d={domain} header.s=s1 header.b=abc; "
        "spf=pass smtp.mailfrom=bounce@{domain}; dmarc=pass (p=REJECT) header.from={domain}")


def make_mail(body, *, subject="Your request", sender="noreply@facebookmail.com", name="Facebook",
              auth="pass", html=False, to="anna@example.org"):
    """Raw bytes of a mail as the person's server delivers it, parsed like any other."""
    domain = sender.split("@")[1]
    headers = []
    if auth == "pass":
        headers.append("Authentication-Results: " + PASS.format(domain=domain))
    elif auth == "fail":
        headers.append(f"Authentication-Results: mx.example.org; dkim=fail header.d={domain}; "
                       f"dmarc=fail header.from={domain}")
    headers += [f"From: {name} <{sender}>", f"To: {to}", f"Subject: {subject}",
                "Date: Mon, 12 May 2025 10:00:00 +0000", "Message-ID: <test@example>", "MIME-Version: 1.0",
                f"Content-Type: text/{'html' if html else 'plain'}; charset=utf-8",
                "Content-Transfer-Encoding: 8bit"]
    return parse_mail(("\n".join(headers) + "\n\n" + body + "\n").encode("utf-8"))


def category_of(body, settings=REVIEW, **kwargs):
    return classify(make_mail(body, **kwargs), RULES, settings).category


# --- refusals before approvals ---------------------------------------------------

def test_refusal_among_general_remarks_about_approvals_is_rejected():
    body = ("We have reviewed your objection. Most objections are approved and we honour them going forward. "
            "However, we will not honour your objection. We will honour your objection only if your "
            "situation changes.")
    mail = make_mail(body)
    assert classify(mail, RULES, REVIEW).category == "rejected"
    explanation = explain(mail, RULES, REVIEW)
    assert explanation.matched_text == "However, we will not honour your objection."


@pytest.mark.parametrize("sentence", [
    "We will not honour your objection.",
    "We won't honor your objection.",
    "We're unable to honour your objection.",
    "Unfortunately we are not able to honor your request.",
    "We cannot take further action on your request.",
    "We can't take any further action.",
    "We don't automatically fulfil requests of this kind.",
    "Your objection has been rejected.",
])
def test_refusal_phrasings(sentence):
    assert category_of(f"Hi Anna, about your objection. {sentence} Thanks, Meta") == "rejected"


def test_asking_for_information_is_not_a_refusal():
    body = ("We don't automatically fulfil requests about information from third parties. "
            "Please send us the prompts you used and screenshots of the AI answer. "
            "Without this information we cannot take further action.")
    result = classify(make_mail(body), RULES, REVIEW)
    assert result.category == "info_requested"
    assert result.kind == "third_party_data"


def test_not_automatic_answer_without_a_question_is_a_third_party_refusal():
    result = classify(make_mail("Thanks for reaching out. We don't automatically fulfil requests "
                                "about third-party information used for AI at Meta."), RULES, REVIEW)
    assert (result.category, result.kind) == ("rejected", "third_party_data")


# --- the safety net and the rest of Meta's mail ---------------------------------------

def test_unknown_privacy_mail_from_meta_is_meta_other():
    result = classify(make_mail("Your data protection enquiry has been forwarded to the responsible team. "
                                "They will get in touch with you separately."), RULES, REVIEW)
    assert result.category == "meta_other"
    assert result.otp is None


@pytest.mark.parametrize("body", [
    "We noticed a new login to your account from Firefox on Linux. If this was you, you can ignore this.",
    "Today is Lucia's birthday. Wish her a happy birthday! Privacy Policy · Help Centre",
    "Your ads receipt: 25.00 EUR charged to your card ending in 4242.",
    "Your security code is 123456. Don't share it with anyone.",
])
def test_ordinary_meta_mail_is_unrelated(body):
    assert category_of(body) == "unrelated"


def test_same_words_from_a_non_meta_sender_are_unrelated():
    assert category_of("We will honour your objection.", sender="news@digitalrights.example.net",
                       name="Digital Rights Weekly") == "unrelated"


# --- impersonation and unverified senders ------------------------------------------------

OTP_BODY = "Use this confirmation code to confirm your objection to AI at Meta: 551203"


@pytest.mark.parametrize("sender, name, auth", [
    ("security@facebookmail.corn", "Facebook", "none"),
    ("help@faceb00k-mail.com", "Facebook", "none"),
    ("support@instagram-support.net", "Instagram Support", "none"),
    ("privacy@meta-privacy.com", "Meta", "none"),
    ("desk@account-review.example.net", "Facebook Privacy", "none"),
    ("noreply@facebookmail.com", "Facebook", "fail"),
])
def test_every_impersonation_is_suspicious_without_a_code(sender, name, auth):
    result = classify(make_mail(OTP_BODY, sender=sender, name=name, auth=auth), RULES, REVIEW)
    assert result.category == "suspicious"
    assert result.otp is None
    assert result.rule is None


def test_unverified_meta_mail_is_held_for_review_without_code():
    result = classify(make_mail(OTP_BODY, auth="none"), RULES, REVIEW)
    assert result.category == "meta_other"
    assert result.otp is None and result.authenticated is None
    assert "not verified" in result.reason


def test_unverified_meta_mail_is_classified_when_trusted_but_shows_no_code():
    result = classify(make_mail(OTP_BODY, auth="none"), RULES, TRUST)
    assert (result.category, result.otp, result.authenticated) == ("otp", None, None)
    assert "not verified" in result.reason


def test_code_is_given_for_authentic_mail():
    result = classify(make_mail(OTP_BODY), RULES, REVIEW)
    assert (result.category, result.otp, result.authenticated) == ("otp", "551203", True)


# --- platform, kind, reference -------------------------------------------------------------

def test_platform_from_instagram_sender_and_kind_from_text():
    result = classify(make_mail("We've received your request about information from third parties used for AI.",
                                sender="no-reply@mail.instagram.com", name="Instagram"), RULES, REVIEW)
    assert (result.category, result.platform, result.kind) == ("acknowledgement", "instagram", "third_party_data")


def test_reference_number_is_extracted():
    result = classify(make_mail("We've received your objection. Reference number: 120455821933."), RULES, REVIEW)
    assert result.reference == "120455821933"


# --- normalisation ------------------------------------------------------------------------

@pytest.mark.parametrize("body, html", [
    ("We won\u2019t honour your objection.", False),                # curly apostrophe
    ("We\u00a0will\u00a0not honour your\u00a0objection.", False),     # non-breaking spaces
    ("We will not hon\u200bour your ob\u200cjection.", False),         # zero-width characters
    ("<p>We won&rsquo;t&nbsp;honour <b>your</b> objection.</p>", True),  # HTML entities and tags
    ("WE WILL NOT HONOUR YOUR OBJECTION.", False),                     # capitals
])
def test_normalised_text_still_matches(body, html):
    assert category_of(body, html=html) == "rejected"


def test_patterns_are_normalised_but_escapes_kept():
    assert normalise_pattern("We Won\u2019t  \\D\\S") == "we won't \\D\\S"


# --- every language ------------------------------------------------------------------------

LANGUAGE_SAMPLES = {
    "en": {"otp": "Your confirmation code for your objection is 482913.",
           "approved": "We will honour your objection.",
           "rejected": "We can't take further action on your objection."},
    "de": {"otp": "Dein Bestätigungscode für deinen Widerspruch lautet 605118.",
           "approved": "Wir werden deinem Widerspruch nachkommen.",
           "rejected": "Leider können wir deinem Widerspruch nicht stattgeben."},
    "fr": {"otp": "Votre code de confirmation pour votre opposition : 774019",
           "approved": "Nous respecterons votre opposition.",
           "rejected": "Nous ne pouvons pas donner suite à votre demande d'opposition."},
    "it": {"otp": "Il tuo codice di conferma per l'opposizione è 348112.",
           "approved": "Abbiamo accolto la tua opposizione.",
           "rejected": "Non possiamo accogliere la tua opposizione."},
    "es": {"otp": "Tu código de confirmación para tu objeción es 930571.",
           "approved": "Respetaremos tu objeción.",
           "rejected": "Tu objeción ha sido rechazada."},
    "nl": {"otp": "Je bevestigingscode voor je bezwaar is 118204.",
           "approved": "We zullen je bezwaar honoreren.",
           "rejected": "We kunnen je bezwaar niet honoreren."},
    "pl": {"otp": "Kod potwierdzający Twój sprzeciw: 20934817",
           "approved": "Uwzględnimy Twój sprzeciw.",
           "rejected": "Nie możemy uwzględnić Twojego sprzeciwu."},
}


@pytest.mark.parametrize("language, category", [(lang, cat) for lang in LANGUAGE_SAMPLES for cat in
                                                 ("otp", "approved", "rejected")])
def test_each_language_has_codes_approvals_and_refusals(language, category):
    result = classify(make_mail(LANGUAGE_SAMPLES[language][category]), RULES, REVIEW)
    assert result.category == category
    if category == "otp":
        assert result.otp and result.otp.isdigit()


# --- user rules file ------------------------------------------------------------------------

def write_rules(tmp_path, text):
    path = tmp_path / "my_rules.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_user_pattern_rule_decides_for_its_template(tmp_path):
    path = write_rules(tmp_path, """
        [[rule]]
        id = "dpo-forwarded"
        category = "acknowledgement"
        body_any = ["forwarded to our data protection officer"]
        """)
    rules = load_rules(path)
    result = classify(make_mail("Your objection was forwarded to our data protection officer."), rules, REVIEW)
    assert (result.category, result.rule) == ("acknowledgement", "dpo-forwarded")


def test_user_concept_overrides_a_builtin_one_and_words_extend_a_language(tmp_path):
    path = write_rules(tmp_path, """
        [[concept]]
        id = "decision.granted"
        category = "approved"
        negated = "rejected"
        all = ["request", "approve"]
        window = 3

        [words.en]
        approve = ["greenlit"]
        """)
    rules = load_rules(path)
    assert classify(make_mail("We have greenlit your objection."), rules, REVIEW).category == "approved"
    # The narrower window of the override: the words stand too far apart now.
    far_apart = "We will honour, after careful and thorough review, your objection."
    assert classify(make_mail(far_apart), rules, REVIEW).category != "approved"
    assert classify(make_mail(far_apart), RULES, REVIEW).category == "approved"


def test_user_rules_can_switch_a_concept_off(tmp_path):
    rules = load_rules(write_rules(tmp_path, '[[concept]]\nid = "ack.received"\nenabled = false\n'))
    assert rules.get("ack.received") is None
    body = "We've received your objection."
    assert classify(make_mail(body), rules, REVIEW).category == "meta_other"
    assert classify(make_mail(body), RULES, REVIEW).category == "acknowledgement"


@pytest.mark.parametrize("text, expected", [
    ('[[rule]]\nid = "broken"\ncategory = "rejected"\nbody_any = ["(unclosed"]\n', "'broken'"),
    ('[[rule]]\nid = "odd"\ncategory = "refused"\nbody_any = ["x"]\n', "unknown category 'refused'"),
    ('[[rule]]\ncategory = "rejected"\nbody_any = ["x"]\n', "rule #1: missing 'id'"),
    ('[[rule]]\nid = "typo"\ncategory = "rejected"\nbody-any = ["x"]\n', "unknown key(s) body-any"),
    ('[[rule]]\nid = "empty"\ncategory = "rejected"\n', "'empty': needs at least one"),
    ('[[rule]]\nid = "twice"\ncategory = "otp"\nbody_any = ["x"]\n'
     '[[rule]]\nid = "twice"\ncategory = "otp"\nbody_any = ["y"]\n', "'twice': the id is used twice"),
    ('[[rule]]\nid = "code"\ncategory = "otp"\nbody_any = ["x"]\nextract_otp = "\\\\d+"\n', "needs a group"),
    ('[[rule\nid = 1\n', "not valid TOML"),
    ('[[concept]]\nid = "c"\ncategory = "approved"\nall = ["requests"]\n', "unknown concept(s) requests"),
    ('[[concept]]\nid = "c"\ncategory = "approved"\nall = ["request"]\nwindow = 0\n', "'window' must be"),
    ('[[concept]]\nid = "c"\nall = ["request"]\n', "needs a category"),
    ('[words.en]\napprove = ["x*"]\n', "too short"),
    ('[words.en]\nrequests = ["x"]\n', "unknown concept 'requests'"),
])
def test_bad_rules_file_names_file_and_rule(tmp_path, text, expected):
    path = write_rules(tmp_path, text)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_rules_file_is_a_rules_error(tmp_path):
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nowhere.toml")


# --- explanation -----------------------------------------------------------------------------

def test_explain_gives_sentence_words_and_runner_up():
    mail = make_mail("We've received your objection. We have reviewed it. We will not honour your objection. "
                     "Reference: 1234567.")
    explanation = explain(mail, RULES, REVIEW)
    assert explanation.classification.category == "rejected"
    assert explanation.winner == "decision.granted"
    assert explanation.matched_text == "We will not honour your objection."
    assert explanation.matched_words == "approve: honour; request: objection; negation: not"
    assert explanation.runner_up.startswith("acknowledgement by ack.received")
    text = explanation.to_text()
    assert "dmarc-pass" in text and "Runner-up" in text and "negation: not" in text


def test_explain_for_a_user_pattern_rule_quotes_the_match(tmp_path):
    rules = load_rules(write_rules(tmp_path, """
        [[rule]]
        id = "only-from-instagram"
        category = "approved"
        sender_domains = ["mail.instagram.com"]
        body_any = ["your objection is settled"]
        """))
    explanation = explain(make_mail("Good news: your objection is settled.", sender="x@mail.instagram.com"),
                          rules, REVIEW)
    assert (explanation.winner, explanation.matched_text) == ("only-from-instagram", "your objection is settled")
    # From another Meta domain the pattern rule does not apply; the concepts read the mail.
    assert explain(make_mail("Good news: your objection is settled."), rules, REVIEW).winner != "only-from-instagram"


def test_explain_for_non_meta_sender_reads_nothing():
    explanation = explain(make_mail("We will honour your objection.", sender="a@example.org", name="A"),
                          RULES, REVIEW)
    assert explanation.classification.category == "unrelated"
    assert explanation.signals == () and explanation.winner is None


# --- the speed-up never changes a result -------------------------------------------------------

def test_word_prefilter_never_hides_a_match_of_a_pattern_rule(tmp_path):
    rules = load_rules(write_rules(tmp_path, """
        [[rule]]
        id = "patterns"
        category = "approved"
        body_any = ["we (will|shall) hono(u)?r your (objection|request)", "(deinem|ihrem) widerspruch .{0,30}? nachkommen",
                    "\\bdemande\\b.{0,40}?fait droit", "accogli(amo|eremo) la (tua|sua) opposizione"]
        """))
    samples = Path(tracker.__file__).parent / "sample_mail"
    texts = []
    for path in sorted(samples.glob("*.eml")):
        mail = parse_mail(path.read_bytes())
        texts += [mail.normalised_subject, mail.normalised_text]
    texts += [make_mail(sentence).normalised_text for sample in LANGUAGE_SAMPLES.values() for sentence in sample.values()]
    from tracker.rules.prefilter import words_of
    matched = 0
    for rule in rules.rules:
        for pattern in rule.body_any:
            for text in texts:
                if pattern.regex.search(text):
                    matched += 1
                    assert pattern.search(text, words_of(text)), (rule.id, pattern.source)
    assert matched >= 2
