"""Settings: defaults, lookup order, relative paths, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.config import load_settings, settings_from_dict
from tracker.errors import ConfigError


def test_no_config_file_means_defaults():
    settings = load_settings(None)
    assert settings.accounts == ()
    assert settings.database.resolved_url().endswith("tracker.sqlite3")
    assert "facebookmail.com" in settings.authenticity.meta_domains


def test_environment_variable_names_the_file(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text('[authenticity]\nunverified = "trust"\n')
    monkeypatch.setenv("PRIVACY_TRACKER_CONFIG", str(config))
    assert load_settings(None).authenticity.unverified == "trust"


def test_relative_paths_are_relative_to_the_file(tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "c.toml").write_text('[database]\nurl = "sqlite:///db.sqlite3"\n[rules]\nfile = "mine.toml"\n')
    settings = load_settings(folder / "c.toml")
    assert settings.database.resolved_url() == f"sqlite:///{folder / 'db.sqlite3'}"
    assert settings.rules.file == folder / "mine.toml"
    assert settings.evidence_dir() == folder / "evidence"


def test_invalid_toml_names_the_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[database\nurl=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)


def test_plain_text_imap_only_on_loopback():
    with pytest.raises(ConfigError, match="loopback"):
        settings_from_dict({"accounts": [{"name": "a", "host": "imap.example.org", "username": "u",
                                          "password_env": "P", "tls": "none"}]})


def test_duplicate_account_names_are_refused():
    account = {"name": "a", "host": "h", "username": "u", "password_env": "P"}
    with pytest.raises(ConfigError, match="duplicate account name 'a'"):
        settings_from_dict({"accounts": [account, account]})


def test_meta_domains_are_lower_cased():
    settings = settings_from_dict({"authenticity": {"meta_domains": ["FacebookMail.COM", ".meta.com"]}})
    assert settings.authenticity.meta_domains == ("facebookmail.com", "meta.com")


def test_example_config_is_valid():
    example = Path(__file__).parent.parent / "config.example.toml"
    load_settings(example)


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    config = tmp_path / "c.toml"
    config.write_bytes(b'[database]\nurl = "sqlite:///caf\xe9.db"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(config)


def test_source_is_not_a_setting(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('source = "x"\n')
    with pytest.raises(ConfigError, match="key 'source'"):
        load_settings(config)
