"""The command line as a whole: every command has help, errors are one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from tracker.cli import app


def _all_commands(group, prefix=()):
    for name, command in group.commands.items():
        path = (*prefix, name)
        yield path
        if hasattr(command, "commands"):  # a command group
            yield from _all_commands(command, path)


COMMANDS = sorted(_all_commands(get_command(app)))


def test_the_main_commands_exist():
    names = {" ".join(path) for path in COMMANDS}
    for expected in ("demo", "classify", "ingest", "status", "request add", "request show",
                     "request note", "rules test"):
        assert expected in names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_has_help(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = get_command(app)
    for name in path:
        command = command.commands[name]
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run([sys.executable, "-m", "tracker", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip()


def test_bad_config_key_is_named_in_one_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[authenticity]\nunverified = "maybe"\n')
    result = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 1
    assert "authenticity.unverified" in result.output
    assert "Traceback" not in result.output


def test_unknown_config_key_is_named(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[database]\npath = "x.db"\n')
    result = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 1
    assert "database: unknown key 'path' – [database] takes url" in result.output


def test_missing_config_file_is_an_error(tmp_path):
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "nope.toml"), "status"])
    assert result.exit_code == 1
    assert "config file not found" in result.output


def test_missing_mail_path_is_a_usage_error(cli, tmp_path):
    for command in ("classify", "ingest"):
        result = cli(command, tmp_path / "missing.eml", expect=2)
        assert "does not exist" in result.output


def test_unknown_request_says_so(cli):
    result = cli("request", "show", "99", expect=1)
    assert "no request with id 99" in result.output
