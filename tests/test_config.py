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
    with pytest.raises(ConfigError, match="^unknown key 'source' \\(not a setting"):
        load_settings(config)


# ---- shapes and ranges (issue 8): one line that names the key, never pydantic's words ----

ACCOUNT = {"name": "a", "host": "imap.example.org", "username": "u", "password_env": "P"}


@pytest.mark.parametrize("data, expected", [
    ({"accounts": 5}, "accounts: must be a list of [[accounts]] tables, not 5"),
    ({"accounts": {"name": "a"}}, "accounts: written as [accounts] (one table), but each mailbox needs a table of "
                                  "its own: write [[accounts]], with two brackets"),
    ({"accounts": [5]}, "accounts #1: must be an [[accounts]] table, not 5"),
    ({"daemon": {"interval_minutes": 1e300}}, "daemon.interval_minutes: must be from 1 to 10080, not 1e+300"),
    ({"daemon": {"interval_minutes": float("nan")}}, "daemon.interval_minutes: must be from 1 to 10080, not nan"),
    ({"daemon": {"interval_minutes": float("inf")}}, "daemon.interval_minutes: must be from 1 to 10080, not inf"),
    ({"daemon": {"interval_minutes": 0}}, "daemon.interval_minutes: must be from 1 to 10080, not 0"),
    ({"daemon": {"interval_minutes": "10"}}, "daemon.interval_minutes: must be a number, not '10'"),
    ({"daemon": {"jitter_seconds": -1}}, "daemon.jitter_seconds: must be from 0 to 3600, not -1"),
    ({"daemon": 3}, "daemon: must be a [daemon] table, not 3"),
    ({"accounts": [{**ACCOUNT, "timeout_seconds": -5}]}, "accounts #1.timeout_seconds: must be from 1 to 3600, not -5"),
    ({"accounts": [ACCOUNT, {**ACCOUNT, "name": "b", "port": 99999}]},
     "accounts #2.port: must be from 1 to 65535, not 99999"),
    ({"accounts": [{**ACCOUNT, "port": 0}]}, "accounts #1.port: must be from 1 to 65535, not 0"),
    ({"accounts": [{**ACCOUNT, "port": True}]}, "accounts #1.port: must be a whole number, not true"),
    ({"accounts": [{**ACCOUNT, "port": "993"}]}, "accounts #1.port: must be a whole number, not '993'"),
    ({"accounts": [{**ACCOUNT, "port": 993.5}]}, "accounts #1.port: must be a whole number, not 993.5"),
    ({"accounts": [{**ACCOUNT, "tls": "ssl"}]}, "accounts #1.tls: must be 'implicit', 'starttls' or 'none', not 'ssl'"),
    ({"accounts": [{**ACCOUNT, "folders": []}]}, "accounts #1.folders: must not be empty"),
    ({"accounts": [{**ACCOUNT, "folders": ["INBOX", ""]}]}, "accounts #1.folders #2: must not be empty"),
    ({"accounts": [{**ACCOUNT, "folders": "INBOX"}]}, "accounts #1.folders: must be a list"),
    ({"accounts": [{**ACCOUNT, "name": " "}]}, "accounts #1.name: must not be empty"),
    ({"accounts": [{**ACCOUNT, "host": 5}]}, "accounts #1.host: must be a string in quotes"),
    ({"accounts": [{**ACCOUNT, "idle": "yes"}]}, "accounts #1.idle: must be true or false, not 'yes'"),
    ({"accounts": [{**ACCOUNT, "since": "1900-01-01"}]}, "accounts #1.since: must be a date from 1990-01-01 to today"),
    ({"accounts": [{**ACCOUNT, "since": "2025-13-01"}]}, "accounts #1.since: must be a date (YYYY-MM-DD)"),
    ({"accounts": [{**ACCOUNT, "prot": 993}]}, "accounts #1: unknown key 'prot' – did you mean 'port'?"),
    ({"accounts": [{k: v for k, v in ACCOUNT.items() if k != "host"}]}, "accounts #1.host: is required"),
    ({"accounts": [{k: v for k, v in ACCOUNT.items() if k != "password_env"}]},
     "accounts #1: set exactly one of password_env, password_command, password_keyring = true, oauth2_token_command (none is set)"),
    ({"alerts": {"max_attempts": 0}}, "alerts.max_attempts: must be from 1 to 100, not 0"),
    ({"alerts": {"max_attempts": 10**9}}, "alerts.max_attempts: must be from 1 to 100, not 1000000000"),
    ({"alerts": {"urls": "json://u:secret@example.org"}}, "alerts.urls: must be a list"),
    ({"alerts": {"send_codes": "false"}}, "alerts.send_codes: must be true or false, not 'false'"),
    ({"authenticity": {"meta_domains": []}}, "authenticity.meta_domains: must not be empty"),
    ({"authenticity": {"meta_domains": ["facebookmail.com", "not a domain"]}},
     "authenticity.meta_domains: 'not a domain' is not a domain name"),
    ({"authenticity": {"unverified": "yes"}}, "authenticity.unverified: must be 'trust' or 'review', not 'yes'"),
    ({"database": {"url": "tracker.sqlite3"}}, "database.url: must be a database URL such as sqlite:///"),
    ({"evidence": {"keep_raw": "no"}}, "evidence.keep_raw: must be true or false, not 'no'"),
    ({"bogus": 1}, "unknown key 'bogus' (not a setting; config.example.toml lists them all)"),
])
def test_a_wrong_shape_or_number_is_one_line_naming_the_key(data, expected):
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(data)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message
    assert "Input should" not in message and "Value error" not in message and "pydantic" not in message
    assert "secret" not in message   # a value is never repeated when it may be a URL with a password


def test_the_ranges_allow_the_documented_values():
    settings = settings_from_dict({"daemon": {"interval_minutes": 1, "jitter_seconds": 0},
                                   "alerts": {"max_attempts": 100},
                                   "accounts": [{**ACCOUNT, "port": 65535, "timeout_seconds": 3600,
                                                 "since": "1990-01-01"}]})
    assert settings.accounts[0].port == 65535


def test_duplicate_and_plain_text_accounts_are_named_by_position():
    with pytest.raises(ConfigError, match=r"^accounts #3\.name: duplicate account name 'a'"):
        settings_from_dict({"accounts": [ACCOUNT, {**ACCOUNT, "name": "b"}, ACCOUNT]})
    with pytest.raises(ConfigError, match=r"^accounts #2\.tls: 'none' is only allowed for loopback hosts"):
        settings_from_dict({"accounts": [ACCOUNT, {**ACCOUNT, "name": "b", "tls": "none"}]})


@pytest.mark.parametrize("toml, expected", [
    ("accounts = 5\n", "config error: accounts: must be a list of [[accounts]] tables, not 5 (in "),
    ("[daemon]\ninterval_minutes = 1e300\n", "config error: daemon.interval_minutes: must be from 1 to 10080, "
                                             "not 1e+300 (in "),
    ('[[accounts]]\nname = "a"\nhost = "h"\nusername = "u"\npassword_env = "P"\ntimeout_seconds = -5\n',
     "config error: accounts #1.timeout_seconds: must be from 1 to 3600, not -5 (in "),
    ('[[accounts]]\nname = "a"\nhost = "h"\nusername = "u"\npassword_env = "P"\nport = 99999\n',
     "config error: accounts #1.port: must be from 1 to 65535, not 99999 (in "),
])
def test_the_command_line_shows_a_config_error_in_one_line(tmp_path, toml, expected):
    from conftest import Cli

    config = tmp_path / "c.toml"
    config.write_text(toml)
    for command in (["status"], ["poll", "--once"], ["daemon"]):
        result = Cli(config)(*command, expect=1)
        [line] = result.output.splitlines()
        assert line.startswith(expected) and line.endswith(f"{config})"), line


@pytest.mark.parametrize("url, driver, package, install", [
    ("postgresql://tracker:hunter2@db.example.org/tracker", "psycopg", "postgresql+psycopg", "psycopg[binary]"),
    ("postgresql+psycopg2://tracker@db.example.org/tracker", "psycopg2", "postgresql+psycopg2", "psycopg2-binary"),
    ("mysql://tracker:hunter2@db.example.org/tracker", "MySQLdb", "mysql+mysqldb", "mysqlclient"),
    ("mysql+pymysql://tracker@db.example.org/tracker", "pymysql", "mysql+pymysql", "PyMySQL"),
])
def test_a_database_url_without_its_driver_says_which_package_is_missing(tmp_path, url, driver, package, install):
    import importlib.util

    from conftest import Cli

    if importlib.util.find_spec(driver) is not None:
        pytest.skip(f"{driver} is installed here")
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    result = Cli(config)("status", expect=1)
    [line] = result.output.splitlines()
    assert f"needs the {package} driver, which is not installed: pip install '{install}'" in line, line
    assert "hunter2" not in line                 # the password in the URL is not printed
    assert line.startswith("error: the database URL ")


# ---- errors in people's words: misspelt keys, a password in the file, one bracket for two ----

@pytest.mark.parametrize("toml, expected", [
    ('[[accounts]]\nname = "a"\nhost = "h"\nusername = "u"\npasswrod_env = "P"\n',
     "accounts #1: unknown key 'passwrod_env' – did you mean 'password_env'?"),
    ('[[accounts]]\nname = "a"\nhost = "h"\nusername = "u"\npassword_env = "P"\n'
     '[[accounts]]\nname = "b"\nhost = "h"\nusername = "u"\npassword_env = "P"\ntsl = "starttls"\n',
     "accounts #2: unknown key 'tsl' – did you mean 'tls'?"),
    ('[daemon]\nintervall_minutes = 5\n', "daemon: unknown key 'intervall_minutes' – did you mean 'interval_minutes'?"),
    ('[person]\ncontry = "DE"\n', "person: unknown key 'contry' – did you mean 'country'?"),
    ('[databse]\nurl = "sqlite:///t.db"\n', "unknown table [databse] – did you mean [database]?"),
    ('[[acounts]]\nname = "a"\n', "unknown table [[acounts]] – did you mean [[accounts]]?"),
    ('country = "DE"\n', "unknown key 'country' – it belongs in [person] or an [[accounts]] table"),
    ('[database]\npath = "x.db"\n', "database: unknown key 'path' – [database] takes url"),
    ('[alerts]\nurls = []\ninterval_minutes = 5\n', "alerts: unknown key 'interval_minutes' – it belongs in [daemon]"),
    ('[[person]]\ncountry = "DE"\n', "person: written as [[person]] (a list of tables), but it is one table: "
                                     "write [person], with one bracket"),
    ('[accounts]\nname = "a"\nhost = "h"\nusername = "u"\npassword_env = "P"\n',
     "accounts: written as [accounts] (one table), but each mailbox needs a table of its own: write [[accounts]], "
     "with two brackets, above each one"),
])
def test_config_errors_say_what_to_write_instead(tmp_path, toml, expected):
    from conftest import Cli

    config = tmp_path / "c.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value) == f"{expected} (in {config})"
    [line] = Cli(config)("status", expect=1).output.splitlines()     # the same one line on the command line
    assert line == f"config error: {expected} (in {config})"


@pytest.mark.parametrize("key", ["password", "Password", "passwd", "pass"])
def test_a_password_in_the_file_is_answered_with_where_it_goes_and_never_repeated(tmp_path, key):
    config = tmp_path / "c.toml"
    # Written next to a missing host: the password is what is named, whatever pydantic lists first.
    config.write_text(f'[[accounts]]\nname = "a"\nusername = "u"\n{key} = "hunter2-secret"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert message.startswith(f"accounts #1: {key} is never read from the config file"), message
    for way in ("`privacy-tracker init`", "password_keyring = true", "password_env", "password_command"):
        assert way in message
    assert "hunter2" not in message and "\n" not in message
