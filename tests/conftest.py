"""Shared fixtures. Every test gets its own SQLite file and config in tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tracker
from tracker.cli import app

SAMPLE_MAIL = Path(tracker.__file__).parent / "sample_mail"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch):
    """No test reads or writes the real user's config or data folders."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("PRIVACY_TRACKER_CONFIG", raising=False)


@pytest.fixture
def config_file(tmp_path) -> Path:
    """A config with the database and evidence in tmp_path; tests may append sections."""
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "tracker.sqlite3"}"\n'
                    f'[evidence]\ndir = "{tmp_path / "evidence"}"\n')
    return path


class Cli:
    """Runs `privacy-tracker --config FILE ...` in-process, as a user would type it."""

    def __init__(self, config: Path):
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int = 0):
        result = self.runner.invoke(app, ["--config", str(self.config), *map(str, args)])
        assert result.exit_code == expect, (result.exit_code, result.output, result.exception)
        return result

    def json(self, *args: str):
        return json.loads(self(*args).stdout)

    def json_lines(self, *args: str) -> list[dict]:
        return [json.loads(line) for line in self(*args).stdout.splitlines() if line.strip()]


@pytest.fixture
def cli(config_file) -> Cli:
    return Cli(config_file)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# ---- a real Dovecot IMAP server (tests/dovecot_server.py) ---------------------

IMAP_USERS = {"alice": "alice-imap-secret", "bob": "bob-imap-secret"}


@contextlib.contextmanager
def running_dovecot(**options):
    """A running Dovecot on 127.0.0.1 with users alice and bob, its own CA and Maildirs.

    Without Dovecot the IMAP tests are skipped on a developer's machine but
    fail in CI, where .ci/run installs it: a missing server must not pass as green.
    """
    from dovecot_server import DovecotServer, dovecot_usable

    usable, why = dovecot_usable()
    if not usable:
        if in_ci():
            pytest.fail(f"Dovecot is needed in CI: {why}")
        pytest.skip(why)
    server = DovecotServer(IMAP_USERS, **options)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def dovecot():
    with running_dovecot() as server:
        yield server


def imap_account_toml(server, user: str = "alice", **overrides) -> str:
    """An [[accounts]] table for ``user`` on ``server``: implicit TLS, our CA, password from the environment."""
    account = {"name": user, "host": "127.0.0.1", "port": server.tls_port, "username": user,
               "password_env": f"{user.upper()}_IMAP_PASSWORD", "tls": "implicit",
               "ca_file": str(server.ca_file)}
    account.update(overrides)
    lines = ["", "[[accounts]]"]
    for key, value in account.items():
        if value is None:
            continue
        lines.append(f"{key} = {json.dumps(value)}")  # JSON strings, numbers, lists are valid TOML
    return "\n".join(lines) + "\n"


@pytest.fixture
def imap_config(config_file, dovecot, monkeypatch) -> Path:
    """``config_file`` with an account for alice on the test Dovecot; her password in the environment."""
    for user, password in IMAP_USERS.items():
        monkeypatch.setenv(f"{user.upper()}_IMAP_PASSWORD", password)
    with config_file.open("a") as handle:
        handle.write(imap_account_toml(dovecot))
    return config_file
