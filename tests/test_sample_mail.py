"""The shipped sample mails: each is classified as its manifest says, and together they tell stories."""

import tomllib
from pathlib import Path

import pytest

import tracker
from tracker.config import AuthenticitySettings
from tracker.parse import parse_mail
from tracker.rules import classify, load_rules
from tracker.vocabulary import CATEGORIES, REQUEST_CATEGORIES

SAMPLES = Path(tracker.__file__).parent / "sample_mail"
MANIFEST = tomllib.loads((SAMPLES / "manifest.toml").read_text(encoding="utf-8"))["mail"]
RULES = load_rules()
SETTINGS = AuthenticitySettings()


def test_manifest_lists_exactly_the_mails_in_the_folder():
    listed = [entry["file"] for entry in MANIFEST]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(path.name for path in SAMPLES.glob("*.eml"))
    assert len(listed) >= 34


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_sample_is_classified_as_the_manifest_says(entry):
    mail = parse_mail((SAMPLES / entry["file"]).read_bytes())
    result = classify(mail, RULES, SETTINGS)
    assert (result.category, result.platform, result.kind, result.otp) == (
        entry["category"], entry.get("platform"), entry.get("kind"), entry.get("otp"))
    assert (mail.error is not None) == entry.get("error", False)


def test_samples_cover_every_category_and_both_platforms():
    assert {entry["category"] for entry in MANIFEST} == set(CATEGORIES)
    assert {entry.get("platform") for entry in MANIFEST} >= {"facebook", "instagram"}
    assert {entry.get("kind") for entry in MANIFEST} >= {"ai_objection", "third_party_data"}


def test_every_story_mail_is_addressed_to_its_person():
    # The file name starts with the person's first name; the request joins on their address.
    for entry in MANIFEST:
        if entry["category"] not in REQUEST_CATEGORIES:
            continue
        mail = parse_mail((SAMPLES / entry["file"]).read_bytes())
        person = entry["file"].split("_")[1]
        assert mail.recipient and mail.recipient.startswith(person + "@"), entry["file"]


def test_top_level_sample_mail_folder_is_the_packaged_one():
    top_level = Path(tracker.__file__).parent.parent / "sample_mail"
    if top_level.exists():
        assert top_level.resolve() == SAMPLES.resolve()
