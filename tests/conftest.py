"""Shared fixtures. Every test gets its own database and config in tmp_path.

The database is a SQLite file in tmp_path, or, when PRIVACY_TRACKER_TEST_DATABASE_URL names
a PostgreSQL database (scripts/test_postgres.sh sets it), a database of its own on that
server, created for the test and dropped after it. Tests about SQLite files themselves are
marked ``sqlite_only`` and skipped then.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
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


# ---- the database: SQLite in tmp_path, or PostgreSQL ------------------------------

TEST_DATABASE_URL = os.environ.get("PRIVACY_TRACKER_TEST_DATABASE_URL", "").strip()


def on_postgresql() -> bool:
    """Whether this run's databases are on PostgreSQL (PRIVACY_TRACKER_TEST_DATABASE_URL)."""
    return bool(TEST_DATABASE_URL)


def pytest_configure(config):
    if TEST_DATABASE_URL and not TEST_DATABASE_URL.startswith("postgresql"):
        raise pytest.UsageError("PRIVACY_TRACKER_TEST_DATABASE_URL must be a postgresql+psycopg:// URL")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if on_postgresql():
            marker = item.get_closest_marker("sqlite_only")
            if marker is not None:
                why = marker.args[0] if marker.args else "about the SQLite file"
                item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))
        elif item.get_closest_marker("postgresql_only") is not None:
            # .ci/run runs the suite a second time on PostgreSQL, where these run.
            item.add_marker(pytest.mark.skip(reason="needs a PostgreSQL server: scripts/test_postgres.sh runs it"))


class PostgresDatabases:
    """Creates databases on the test server and drops them again.

    The first one built runs the migrations; every later one is a copy of it (a template),
    which is much faster than migrating an empty database for each test. ``empty`` ones
    (for tests of the migrations themselves) start with no tables.
    """

    def __init__(self, url: str):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.base = make_url(url)
        self.admin = create_engine(self.base, isolation_level="AUTOCOMMIT")
        self.prefix = f"pt{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.template: str | None = None
        self.made: list[str] = []

    def url(self, name: str) -> str:
        return self.base.set(database=name).render_as_string(hide_password=False)

    def _execute(self, sql: str) -> None:
        from sqlalchemy import text

        with self.admin.connect() as connection:
            connection.execute(text(sql))

    def create(self, empty: bool = False) -> str:
        if not empty and self.template is None:
            from tracker.store import Store

            template = f"{self.prefix}_template"
            self._execute(f'CREATE DATABASE "{template}" TEMPLATE template0')
            self.made.append(template)
            Store(self.url(template)).dispose()  # migrated once, to head
            self.template = template
        name = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        source = "template0" if empty else self.template
        # FILE_COPY: copying a small template's files is quicker than logging every page.
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY FILE_COPY')
        self.made.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        # FORCE: a Store a test did not dispose of still holds connections to it.
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.made:
            self.made.remove(name)

    def close(self) -> None:
        for name in reversed(list(self.made)):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture(scope="session")
def _postgres_databases():
    if not on_postgresql():
        yield None
        return
    databases = PostgresDatabases(TEST_DATABASE_URL)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def new_database_url(tmp_path, _postgres_databases):
    """Makes database URLs for a test: ``new_database_url("name")`` is a SQLite file in tmp_path,
    or a new PostgreSQL database dropped after the test; ``empty=True``: no tables yet (a
    SQLite file is always empty until opened). The same name gives the same database."""
    made: dict[str, str] = {}

    def make(name: str = "tracker", empty: bool = False) -> str:
        if name not in made:
            made[name] = (_postgres_databases.create(empty) if _postgres_databases is not None
                          else f"sqlite:///{tmp_path / (name + '.sqlite3')}")
        return made[name]

    yield make
    if _postgres_databases is not None:
        for url in made.values():
            _postgres_databases.drop(url)


@pytest.fixture
def database_url(new_database_url) -> str:
    """This test's database: the SQLite file tmp_path/tracker.sqlite3, or a PostgreSQL database."""
    return new_database_url("tracker")


def shown_database(url: str) -> str:
    """How the tracker names a database to the person: the SQLite file, or the URL without its password."""
    from sqlalchemy.engine import make_url

    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    return make_url(url).render_as_string(hide_password=True)


def db_rows(config_or_url, query: str, params: dict | None = None) -> list[tuple]:
    """Run one SQL statement on the tracker's database directly, as another process would, and
    return its rows (none for a statement that returns none). ``config_or_url``: a config file
    (its [database] url) or a database URL."""
    from sqlalchemy import create_engine, text

    from tracker.config import load_settings

    url = config_or_url if isinstance(config_or_url, str) else load_settings(config_or_url).database.resolved_url()
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    try:
        with engine.begin() as connection:
            result = connection.execute(text(query), params or {})
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def config_file(tmp_path, database_url) -> Path:
    """A config with the database and evidence in tmp_path; tests may append sections."""
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n'
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
def running_dovecot(users: dict[str, str] | None = None, **options):
    """A running Dovecot on 127.0.0.1 with users alice and bob (or ``users``: name -> password),
    its own CA and Maildirs.

    Without Dovecot the IMAP tests are skipped on a developer's machine but
    fail in CI, where .ci/run installs it: a missing server must not pass as green.
    """
    from dovecot_server import DovecotServer, dovecot_usable

    usable, why = dovecot_usable()
    if not usable:
        if in_ci():
            pytest.fail(f"Dovecot is needed in CI: {why}")
        pytest.skip(why)
    server = DovecotServer(users or IMAP_USERS, **options)
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
