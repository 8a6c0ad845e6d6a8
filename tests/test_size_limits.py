"""Mail over the size limit ([evidence] max_mail_mb): recorded by its headers and SHA-256, never
classified from a body that was not read; Meta's (and fakes of it) kept as evidence and listed for review.
And hostile shapes inside the limit cost bounded time and memory."""

from __future__ import annotations

import email
import email.policy
import hashlib
import random
from pathlib import Path

import pytest

from conftest import Cli, db_rows
from mails import REFUSAL, meta_mail

MB = 1024 * 1024


def with_attachment(raw: bytes, size_mb: float) -> bytes:
    """``raw`` with a zip attachment of random bytes, so that the whole mail is about ``size_mb`` MB."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    payload = random.Random(7).randbytes(int(size_mb * MB * 3 / 4))
    message.add_attachment(payload, maintype="application", subtype="zip", filename="your-information.zip")
    return bytes(message)


def set_limit(config: Path, value: str) -> None:
    config.write_text(config.read_text().replace("[evidence]\n", f"[evidence]\nmax_mail_mb = {value}\n", 1))


def rows(config: Path, query: str) -> list[tuple]:
    return db_rows(config, query)


def evidence_of(tmp_path: Path, raw: bytes) -> Path:
    return tmp_path / "evidence" / f"{hashlib.sha256(raw).hexdigest()}.eml"


def test_an_over_size_refusal_from_meta_is_kept_and_listed_for_review_not_decided(cli, config_file, tmp_path):
    set_limit(config_file, "1")
    raw = with_attachment(meta_mail(REFUSAL, subject="Update on your request"), 1.5)
    (tmp_path / "big.eml").write_bytes(raw)
    assert "(1 meta_other)" in cli("ingest", tmp_path / "big.eml").stdout

    status = cli.json("status", "--json")
    assert status["requests"] == []  # no refusal read from a body that was not read
    [held] = status["review"]
    assert held["category"] == "meta_other"
    assert held["sender"] == "noreply@facebookmail.com"
    assert "over the size limit of 1 MB" in held["reason"] and "max_mail_mb" in held["reason"]
    [error] = status["errors"]
    assert "over the size limit of 1 MB" in error["error"]
    kept = evidence_of(tmp_path, raw)
    assert kept.read_bytes() == raw
    assert rows(config_file, "SELECT sha256, subject, recipient FROM message") == [
        (hashlib.sha256(raw).hexdigest(), "Update on your request", "anna@example.org")]
    assert "Mails to review" in cli("status").stdout


def test_an_over_size_mail_that_only_claims_to_be_meta_is_suspicious_and_kept(cli, config_file, tmp_path):
    set_limit(config_file, "1")
    raw = with_attachment(meta_mail(REFUSAL, sender="security@facebook-help.net", display="Facebook Security",
                                    auth=None), 1.5)
    (tmp_path / "fake.eml").write_bytes(raw)
    cli("ingest", tmp_path / "fake.eml")
    [held] = cli.json("status", "--json")["review"]
    assert held["category"] == "suspicious"
    assert "over the size limit of 1 MB" in held["reason"]
    assert evidence_of(tmp_path, raw).read_bytes() == raw


def test_an_over_size_mail_from_someone_else_is_recorded_as_unrelated_and_not_kept(cli, config_file, tmp_path):
    set_limit(config_file, "1")
    raw = with_attachment(meta_mail("Holiday photos attached.", sender="friend@example.net", display="A friend",
                                    subject="Photos"), 1.5)
    (tmp_path / "photos.eml").write_bytes(raw)
    assert "(1 unrelated)" in cli("ingest", tmp_path / "photos.eml").stdout
    status = cli.json("status", "--json")
    assert status["messages_seen"] == 1
    assert status["review"] == [] and status["requests"] == []
    assert not evidence_of(tmp_path, raw).exists()
    assert rows(config_file, "SELECT category, sha256, sender, size FROM message") == [
        ("unrelated", hashlib.sha256(raw).hexdigest(), "friend@example.net", len(raw))]


def test_the_configured_limit_is_honoured(tmp_path, new_database_url):
    raw = with_attachment(meta_mail(REFUSAL), 1.5)
    (tmp_path / "refusal.eml").write_bytes(raw)
    for limit, state, review in (("2", ["rejected"], []), ("1", [], ["meta_other"])):
        folder = tmp_path / f"limit-{limit}"
        folder.mkdir()
        config = folder / "config.toml"
        config.write_text(f'[database]\nurl = "{new_database_url(f"limit-{limit}")}"\n'
                          f'[evidence]\ndir = "{folder / "evidence"}"\nmax_mail_mb = {limit}\n')
        cli = Cli(config)
        cli("ingest", tmp_path / "refusal.eml")
        status = cli.json("status", "--json")
        assert [r["state"] for r in status["requests"]] == state, limit
        assert [m["category"] for m in status["review"]] == review, limit
        assert (folder / "evidence" / f"{hashlib.sha256(raw).hexdigest()}.eml").exists()
        # `classify` reads the same setting.
        [line] = cli.json_lines("classify", "--json", tmp_path / "refusal.eml")
        assert line["category"] == (state or review)[0]


def test_the_default_limit_is_25_mb(cli, tmp_path):
    raw = with_attachment(meta_mail(REFUSAL), 26)
    assert 25 * MB < len(raw) < 27 * MB
    (tmp_path / "big.eml").write_bytes(raw)
    cli("ingest", tmp_path / "big.eml")
    [held] = cli.json("status", "--json")["review"]
    assert "over the size limit of 25 MB" in held["reason"]


@pytest.mark.parametrize("value", ["0", "-5", "5000", '"25"', "2.5", "true"])
def test_a_bad_limit_is_one_line_naming_the_key(config_file, value):
    set_limit(config_file, value)
    result = Cli(config_file)("status", expect=1)
    [line] = result.output.splitlines()
    assert line.startswith("config error:") and "evidence.max_mail_mb" in line, line
    assert "Traceback" not in result.output


def test_the_example_config_documents_the_limit():
    example = (Path(__file__).parent.parent / "config.example.toml").read_text()
    assert "\nmax_mail_mb = 25\n" in example


def test_the_same_large_mail_with_crlf_and_lf_counts_once_whatever_the_hashing_pieces(cli, tmp_path, monkeypatch):
    # The content key is hashed a piece at a time; a CRLF split between two pieces must still count as LF.
    monkeypatch.setattr("tracker.ingest._KEY_CHUNK", 7)
    raw = with_attachment(meta_mail(REFUSAL), 0.05).replace(b"\r\n", b"\n")
    (tmp_path / "lf.eml").write_bytes(raw)
    (tmp_path / "crlf.eml").write_bytes(raw.replace(b"\n", b"\r\n"))
    assert cli("ingest", tmp_path).stdout.startswith("1 new, 1 already known")


def test_a_mail_of_a_million_mime_parts_is_read_in_a_moment_with_its_first_parts(cli, tmp_path):
    import time

    head = meta_mail(REFUSAL).split(b"\n\n", 1)[0].replace(b"Content-Type: text/plain", b"X-Old-Type: text/plain")
    raw = (head + b'\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
           + REFUSAL.encode() + b"\n" + b"--b\n" * 1_000_000 + b"--b--\n")
    (tmp_path / "parts.eml").write_bytes(raw)
    started = time.monotonic()
    cli("ingest", tmp_path / "parts.eml")
    assert time.monotonic() - started < 10
    status = cli.json("status", "--json")
    assert [r["state"] for r in status["requests"]] == ["rejected"]
    assert "more than 1000 MIME parts" in status["errors"][0]["error"]


def test_a_damaged_large_mail_is_read_from_its_first_megabytes(cli, config_file, tmp_path):
    set_limit(config_file, "100")
    raw = with_attachment(meta_mail(REFUSAL), 12)
    cut = raw[:raw.rstrip().rfind(b"\n")]  # cut off before its closing boundary
    (tmp_path / "cut.eml").write_bytes(cut)
    cli("ingest", tmp_path / "cut.eml")
    status = cli.json("status", "--json")
    assert [r["state"] for r in status["requests"]] == ["rejected"]
    assert "only its first 8 MB were read" in status["errors"][0]["error"]


@pytest.mark.dovecot
def test_an_over_size_meta_mail_polled_over_imap_is_kept_and_listed(dovecot, imap_config, cli, tmp_path):
    set_limit(imap_config, "1")
    raw = with_attachment(meta_mail(REFUSAL), 1.5).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    dovecot.deliver("alice", raw)
    cli("poll", "--once")
    [held] = cli.json("status", "--json")["review"]
    assert held["category"] == "meta_other" and "over the size limit of 1 MB" in held["reason"]
    assert evidence_of(tmp_path, raw).read_bytes() == raw
