"""`privacy-tracker classify`: the JSON contract, damaged input, and no database."""

from __future__ import annotations

import tomllib
from pathlib import Path

from conftest import SAMPLE_MAIL
from mails import REFUSAL, meta_mail

MANIFEST = {e["file"]: e for e in tomllib.loads((SAMPLE_MAIL / "manifest.toml").read_text())["mail"]}
CONTRACT_KEYS = {"path", "category", "platform", "kind", "otp", "authenticated", "rule", "error"}


def test_classify_json_agrees_with_the_manifest_on_every_sample(cli):
    lines = cli.json_lines("classify", SAMPLE_MAIL, "--json")
    assert len(lines) == len(MANIFEST)
    for line in lines:
        assert CONTRACT_KEYS <= line.keys()
        expected = MANIFEST[Path(line["path"]).name]
        assert (line["category"], line["platform"], line["kind"], line["otp"]) == (
            expected["category"], expected.get("platform"), expected.get("kind"), expected.get("otp")), line
        assert (line["error"] is not None) == expected.get("error", False), line


def test_impersonations_show_no_code_and_are_not_authenticated(cli):
    for line in cli.json_lines("classify", SAMPLE_MAIL, "--json"):
        if line["category"] == "suspicious":
            assert line["otp"] is None
            assert line["authenticated"] is not True
        if line["otp"] is not None:
            assert line["authenticated"] is True


def test_damaged_and_empty_files_give_a_line_with_error_and_the_run_goes_on(cli, tmp_path):
    (tmp_path / "a-empty.eml").write_bytes(b"")
    (tmp_path / "b-junk.eml").write_bytes(b"\xff\xfe\x00\x00binary")
    (tmp_path / "c-good.eml").write_bytes(meta_mail(REFUSAL))
    lines = cli.json_lines("classify", tmp_path, "--json")
    assert [Path(l["path"]).name for l in lines] == ["a-empty.eml", "b-junk.eml", "c-good.eml"]
    assert lines[0]["error"] == "empty message"
    assert lines[1]["error"]
    assert lines[2]["error"] is None and lines[2]["category"] == "rejected"


def test_mbox_messages_are_numbered(cli, tmp_path):
    import mailbox

    box = mailbox.mbox(tmp_path / "m.mbox")
    box.add(meta_mail(REFUSAL))
    box.add(meta_mail("Happy birthday to your friend!", subject="Birthday"))
    box.close()
    lines = cli.json_lines("classify", tmp_path / "m.mbox", "--json")
    assert [l["path"].rsplit("#", 1)[1] for l in lines] == ["1", "2"]


def test_classify_touches_no_database(cli, tmp_path):
    cli("classify", SAMPLE_MAIL)
    assert not (tmp_path / "tracker.sqlite3").exists()
    assert not (tmp_path / "evidence").exists()


def test_plain_output_names_each_mail(cli):
    out = cli("classify", SAMPLE_MAIL).stdout
    assert out.count("\n") >= len(MANIFEST)
    assert "rejected" in out and "suspicious" in out


def test_rules_test_explains_the_winner(cli):
    refusal = next(SAMPLE_MAIL / f for f, e in MANIFEST.items() if e["category"] == "rejected")
    out = cli("rules", "test", refusal).stdout
    assert "rejected" in out
    assert "Sentence:" in out and "Words:" in out
