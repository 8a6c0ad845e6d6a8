"""`doctor` tells what is in use and what is wrong; a database path with a missing folder is refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import IMAP_USERS, imap_account_toml, shown_database
from mails import REFUSAL, meta_mail
from tracker import __version__
from tracker.cli import app


def problem_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("PROBLEM")]


def files_under(folder) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


# ---- a good setup ------------------------------------------------------------------

@pytest.mark.dovecot
def test_doctor_on_a_working_setup_shows_what_is_in_use_and_exits_0(dovecot, imap_config, cli, tmp_path,
                                                                    database_url):
    with imap_config.open("a") as handle:
        handle.write('\n[alerts]\nurls = ["json://127.0.0.1:9/alerts"]\n')
    dovecot.deliver("alice", meta_mail(REFUSAL, subject="Your objection"))
    cli("poll", "--once")

    result = cli("doctor")

    out = result.stdout
    assert f"privacy-tracker {__version__}" in out
    assert f"config: {imap_config} (given with --config)" in out
    assert f"database: {shown_database(database_url)}, " in out and "1 request(s), 1 mail(s)" in out
    [alice] = [line for line in out.splitlines() if "account alice" in line]
    assert alice.startswith("ok") and f"login OK as alice on 127.0.0.1:{dovecot.tls_port}" in alice
    assert "last sync never" not in alice and "last sync 20" in alice and "no error recorded" in alice
    [alerts] = [line for line in out.splitlines() if "alerts:" in line]
    assert alerts.startswith("ok") and "json://127.0.0.1:9/alerts" in alerts and "nothing sent" in alerts
    assert problem_lines(out) == []
    assert out.rstrip().endswith("No problems found.")
    assert IMAP_USERS["alice"] not in result.output


@pytest.mark.dovecot
def test_doctor_shows_an_account_s_last_error_until_a_poll_works_again(dovecot, imap_config, cli, monkeypatch):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", "changed-on-the-server")
    cli("poll", "--once", expect=1)
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", IMAP_USERS["alice"])

    [failed] = [line for line in cli("doctor").stdout.splitlines() if "account alice" in line]
    cli("poll", "--once")
    [since] = [line for line in cli("doctor").stdout.splitlines() if "account alice" in line]

    assert failed.startswith("warning") and "login OK" in failed and "last sync never" in failed
    assert "the last poll failed (20" in failed and "refused the login" in failed
    assert since.startswith("ok") and "polls worked since: " in since


@pytest.mark.parametrize("how", ["env", "user folder"])
def test_doctor_says_how_the_config_was_found(tmp_path, monkeypatch, how):
    text = f'[database]\nurl = "sqlite:///{tmp_path / "tracker.sqlite3"}"\n'
    if how == "env":
        config = tmp_path / "elsewhere.toml"
        monkeypatch.setenv("PRIVACY_TRACKER_CONFIG", str(config))
        expected = f"config: {config} (from $PRIVACY_TRACKER_CONFIG)"
    else:
        config = tmp_path / "xdg-config" / "privacy-tracker" / "config.toml"
        config.parent.mkdir(parents=True)
        expected = f"config: {config} (found in the user config folder)"
    config.write_text(text)

    result = CliRunner().invoke(app, ["doctor"])

    assert result.exit_code == 0, result.output
    assert expected in result.stdout


def test_doctor_without_any_config_names_the_defaults_and_creates_no_database(tmp_path):
    result = CliRunner().invoke(app, ["doctor"])

    assert result.exit_code == 0, result.output
    assert "config: none: no --config, no $PRIVACY_TRACKER_CONFIG" in result.stdout
    database = tmp_path / "xdg-data" / "privacy-tracker" / "tracker.sqlite3"
    assert f"database: {database}: not created yet" in result.stdout
    assert not database.parent.exists()


# ---- a broken setup ------------------------------------------------------------------

@pytest.mark.dovecot
def test_doctor_on_a_broken_setup_names_each_problem_in_one_line_and_exits_1(dovecot, config_file, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", "not-her-password")
    missing = tmp_path / "no-such-folder"
    config_file.write_text(f'[database]\nurl = "sqlite:///{missing / "tracker.sqlite3"}"\n'
                           f'[alerts]\nurls = ["json://127.0.0.1:9/fine", "nosuchservice://hunter2@example.org"]\n'
                           + imap_account_toml(dovecot))
    before = files_under(tmp_path)
    runner = CliRunner()

    result = runner.invoke(app, ["--config", str(config_file), "doctor"])

    assert result.exit_code == 1, result.output
    problems = problem_lines(result.stdout)
    assert len(problems) == 3, result.stdout
    database, login, alert = problems
    assert database == (f"PROBLEM database: the folder {missing} of the database does not exist: "
                        f"create it or fix [database] url")
    assert "account alice: 127.0.0.1 refused the login for alice (wrong password or user name?)" in login
    assert login.endswith("check username and the password (password_env) of account alice")
    assert alert == ("PROBLEM alerts: [alerts] urls #2 is not a URL apprise knows: correct it "
                     "(see apprise's list of services)")
    assert "hunter2" not in result.output and "not-her-password" not in result.output
    assert "3 problems: fix them" in result.stdout
    assert files_under(tmp_path) == before, "doctor created files"
    assert not missing.exists()


@pytest.mark.dovecot
def test_doctor_names_an_unset_password_variable_and_the_other_ways(dovecot, config_file, monkeypatch):
    monkeypatch.delenv("NOBODY_IMAP_PASSWORD", raising=False)
    with config_file.open("a") as handle:
        handle.write(imap_account_toml(dovecot, password_env="NOBODY_IMAP_PASSWORD"))

    result = CliRunner().invoke(app, ["--config", str(config_file), "doctor"])

    assert result.exit_code == 1
    [line] = problem_lines(result.stdout)
    assert "NOBODY_IMAP_PASSWORD (password_env) is not set" in line
    assert "password_keyring" in line and "password_command" in line


def test_doctor_on_an_unreadable_config_stops_at_that_one_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[database\n")
    result = CliRunner().invoke(app, ["--config", str(config), "doctor"])
    assert result.exit_code == 1
    [line] = problem_lines(result.stdout)
    assert line.startswith(f"PROBLEM config: {config}: not valid TOML")


# ---- the database folder -------------------------------------------------------------

def test_a_configured_database_in_a_missing_folder_is_refused_and_nothing_is_created(tmp_path, cli, config_file):
    missing = tmp_path / "typo" / "deeper"
    config_file.write_text(f'[database]\nurl = "sqlite:///{missing / "tracker.sqlite3"}"\n')
    before = files_under(tmp_path)

    for command in (["status"], ["request", "add", "--address", "a@example.org", "--platform", "facebook"]):
        result = cli(*command, expect=1)
        assert result.output.strip().splitlines() == [
            f"error: the folder {missing} of the database does not exist: create it or fix [database] url"]
    assert not (tmp_path / "typo").exists()
    assert files_under(tmp_path) == before


def test_the_default_database_location_is_still_created_on_first_use(tmp_path):
    result = CliRunner().invoke(app, ["status"])
    database = tmp_path / "xdg-data" / "privacy-tracker" / "tracker.sqlite3"
    assert result.exit_code == 0, result.output
    assert database.is_file()
    assert f"No requests yet in {database}." in result.stdout


def test_an_empty_status_names_the_database_it_read(cli, database_url):
    assert f"No requests yet in {shown_database(database_url)}." in cli("status").stdout
    cli("request", "add", "--address", "a@example.org", "--platform", "facebook")
    assert "No requests yet" not in cli("status").stdout
