"""`privacy-tracker init`: provider presets, a login tested before anything is written, the config
file it writes (0600, added to, never overwritten), and passwords kept in the system keyring.

The IMAP tests run against the throwaway Dovecot (tests/dovecot_server.py), the
keyring tests against a keyring backend that keeps its entries in a file.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import keyring
import keyring.backend
import pytest
from keyring.backends import fail

from conftest import IMAP_USERS, Cli
from mails import REFUSAL, meta_mail
from tracker import setup
from tracker.config import load_settings

# ---- a keyring for the tests ---------------------------------------------------


class FileKeyring(keyring.backend.KeyringBackend):
    """A complete keyring backend whose entries live in one JSON file (mode 0600).

    Never chosen by keyring on its own (its priority refuses): a test sets it with keyring.set_keyring.
    """

    @keyring.backend.properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("a test keyring: set it with keyring.set_keyring")

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def _entries(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _save(self, entries: dict) -> None:
        self.path.write_text(json.dumps(entries))
        self.path.chmod(0o600)

    def get_password(self, service, username):
        return self._entries().get(f"{service}\0{username}")

    def set_password(self, service, username, password):
        self._save({**self._entries(), f"{service}\0{username}": password})

    def delete_password(self, service, username):
        entries = self._entries()
        if entries.pop(f"{service}\0{username}", None) is None:
            raise keyring.errors.PasswordDeleteError(username)
        self._save(entries)


@pytest.fixture
def test_keyring(tmp_path):
    before = keyring.get_keyring()
    backend = FileKeyring(tmp_path / "keyring.json")
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(before)


@pytest.fixture
def no_keyring():
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


# ---- helpers ----------------------------------------------------------------------

@pytest.fixture
def target(tmp_path) -> Path:
    """Where init writes: a folder that does not exist yet."""
    return tmp_path / "conf" / "privacy-tracker" / "config.toml"


def init_args(server, user: str = "alice", *credential: str, email: str | None = None, **options) -> list[str]:
    args = ["init", "--non-interactive", "--email", email or f"{user}@example.org", "--host", "127.0.0.1",
            "--port", str(server.tls_port), "--tls", "implicit", "--username", user, "--ca-file", str(server.ca_file)]
    args += list(credential or ("--password-env", f"{user.upper()}_IMAP_PASSWORD"))
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


@pytest.fixture
def passwords(monkeypatch):
    for user, password in IMAP_USERS.items():
        monkeypatch.setenv(f"{user.upper()}_IMAP_PASSWORD", password)


def refusal(n: int) -> bytes:
    return meta_mail(REFUSAL, to=f"person{n}@example.org", subject="Your objection",
                     message_id=f"<refusal-{n}@facebookmail.com>")


def fake(n: int) -> bytes:
    return meta_mail("Confirm your account now or it will be disabled.", sender="security@facebook-help.net",
                     display="Facebook Security", subject=f"Action needed {n}", auth=None,
                     message_id=f"<fake-{n}@facebook-help.net>")


def unrelated(n: int) -> bytes:
    return meta_mail(f"Minutes {n}.", sender=f"colleague{n}@example.org", display="A Colleague",
                     subject=f"Meeting {n}", auth=None, message_id=f"<meeting-{n}@example.org>")


# ---- against the test Dovecot -----------------------------------------------------------

@pytest.mark.dovecot
def test_init_writes_a_private_config_that_poll_then_uses(dovecot, passwords, target, tmp_path):
    for n in range(2):
        dovecot.deliver("alice", refusal(n))
    for n in range(3):
        dovecot.deliver("alice", unrelated(n))
    dovecot.deliver("alice", fake(1), folder="Junk")
    cli = Cli(target)

    out = cli(*init_args(dovecot, country="de", region="by",
                         database_url=f"sqlite:///{tmp_path / 'data' / 'tracker.sqlite3'}")).stdout

    assert "Login works" in out
    assert "INBOX: 2" in out and "Junk: 1" in out        # what the first poll will read: Meta's mails and fakes
    assert f"Created {target}" in out
    assert f"privacy-tracker --config {target} doctor" in out
    assert f"privacy-tracker --config {target} service install" in out
    assert f"privacy-tracker --config {target} poll --once" in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(target.parent.parent.stat().st_mode) == 0o700
    settings = load_settings(target)
    [account] = settings.accounts
    assert (account.name, account.username, account.password_env) == ("alice@example.org", "alice",
                                                                        "ALICE_IMAP_PASSWORD")
    assert (settings.person.country, settings.person.region) == ("DE", "BY")
    assert "alice-imap-secret" not in target.read_text()

    polled = cli("poll", "--once").stdout
    assert "alice@example.org: 3 new mail(s)" in polled
    assert (tmp_path / "data" / "tracker.sqlite3").exists()


@pytest.mark.dovecot
def test_a_wrong_password_writes_nothing_and_says_so_in_one_line(dovecot, target, monkeypatch):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", "not-her-password")
    result = Cli(target)(*init_args(dovecot), expect=1)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: account alice@example.org: 127.0.0.1 refused the login for alice")
    assert line.endswith("(nothing was written)")
    assert not target.exists() and not target.parent.exists()


@pytest.mark.dovecot
def test_an_untrusted_certificate_writes_nothing(dovecot, passwords, target):
    args = init_args(dovecot)
    args[args.index("--ca-file"):args.index("--ca-file") + 2] = []
    result = Cli(target)(*args, expect=1)
    [line] = result.stderr.splitlines()
    assert "TLS certificate of 127.0.0.1" in line and "not trusted" in line and "(nothing was written)" in line
    assert not target.exists()


@pytest.mark.dovecot
def test_running_init_again_adds_a_family_members_mailbox_and_keeps_the_file(dovecot, passwords, config_file):
    config_file.write_text("# my own notes stay\n" + config_file.read_text())
    before = config_file.read_text()
    cli = Cli(config_file)
    cli(*init_args(dovecot, "alice", country="AT"))
    second = cli(*init_args(dovecot, "bob", country="de", region="nw")).stdout
    assert "Country DE, Land NW: for this mailbox" in second

    text = config_file.read_text()
    assert text.startswith(before)                         # nothing the person wrote is lost
    settings = load_settings(config_file)
    assert [a.name for a in settings.accounts] == ["alice@example.org", "bob@example.org"]
    assert settings.person.country == "AT"                  # the first mailbox's owner
    assert (settings.accounts[1].country, settings.accounts[1].region) == ("DE", "NW")
    assert settings.accounts[0].country is None

    duplicate = cli(*init_args(dovecot, "bob"), expect=1)
    [line] = duplicate.stderr.splitlines()
    assert line.startswith("config error: --name: an account named 'bob@example.org' is already in")
    assert config_file.read_text() == text

    polled = cli("poll", "--once").stdout
    assert "alice@example.org: 0 new mail(s)" in polled and "bob@example.org: 0 new mail(s)" in polled


@pytest.mark.dovecot
def test_keyring_keeps_the_password_and_the_poller_reads_it(dovecot, test_keyring, target, monkeypatch):
    dovecot.deliver("alice", refusal(1))
    monkeypatch.setenv(setup.PASSWORD_ENV, IMAP_USERS["alice"])
    cli = Cli(target)
    out = cli(*init_args(dovecot, "alice", "--keyring")).stdout
    assert "Password kept in the system keyring" in out

    assert test_keyring.get_password("privacy-tracker", "alice") == IMAP_USERS["alice"]
    assert load_settings(target).accounts[0].password_keyring is True
    assert IMAP_USERS["alice"] not in target.read_text()

    monkeypatch.delenv(setup.PASSWORD_ENV)
    assert "alice@example.org: 1 new mail(s)" in cli("poll", "--once").stdout

    test_keyring.delete_password("privacy-tracker", "alice")
    failed = cli("poll", "--once", expect=1)
    [line] = failed.stderr.splitlines()
    assert line == ("error: account alice@example.org: no keyring entry for alice (service privacy-tracker): "
                    "run `privacy-tracker init` again or use password_command")


@pytest.mark.dovecot
def test_keyring_password_from_standard_input_and_a_wrong_one_never_reaches_the_keyring(dovecot, test_keyring,
                                                                                        target):
    cli = Cli(target)
    wrong = cli.runner.invoke(cli_app(), ["--config", str(target), *init_args(dovecot, "bob", "--keyring")],
                              input="not-bobs-password\n")
    assert wrong.exit_code == 1 and "refused the login for bob" in wrong.stderr
    assert test_keyring.get_password("privacy-tracker", "bob") is None and not target.exists()

    right = cli.runner.invoke(cli_app(), ["--config", str(target), *init_args(dovecot, "bob", "--keyring")],
                              input=IMAP_USERS["bob"] + "\n")
    assert right.exit_code == 0, right.output
    assert test_keyring.get_password("privacy-tracker", "bob") == IMAP_USERS["bob"]


@pytest.mark.dovecot
def test_interactive_init_asks_and_writes(dovecot, test_keyring, target):
    """Answers typed in: keep the settings shown, user name, keyring, password, a wrong Land then the right one."""
    answers = "\n".join(["y", "alice", "keyring", IMAP_USERS["alice"], "DE", "XX", "DE", "BE", "Alice's mail"]) + "\n"
    result = Cli(target).runner.invoke(cli_app(), ["--config", str(target), "init", "--email", "alice@example.org",
                                                   "--host", "127.0.0.1", "--port", str(dovecot.tls_port),
                                                   "--ca-file", str(dovecot.ca_file)], input=answers)
    assert result.exit_code == 0, result.output
    assert "'XX' is not a German Land code" in result.stderr
    settings = load_settings(target)
    [account] = settings.accounts
    assert (account.name, account.username, account.password_keyring) == ("Alice's mail", "alice", True)
    assert (settings.person.country, settings.person.region) == ("DE", "BE")
    assert IMAP_USERS["alice"] not in result.stdout and IMAP_USERS["alice"] not in target.read_text()


def cli_app():
    from tracker.cli import app

    return app


# ---- without a server -------------------------------------------------------------------

def test_no_check_writes_without_a_server_and_provider_presets_fill_in(target):
    out = Cli(target)("init", "--non-interactive", "--email", "Anna.Beispiel@GMX.de", "--password-command",
                      "pass show mail/anna", "--no-check").stdout
    assert "Provider: GMX." in out and "POP3/IMAP" in out
    [account] = load_settings(target).accounts
    assert (account.host, account.effective_port, account.tls) == ("imap.gmx.net", 993, "implicit")
    assert account.username == "Anna.Beispiel@GMX.de" and account.password_command == "pass show mail/anna"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_app_password_is_explained_with_the_providers_page(target):
    out = Cli(target)("init", "--non-interactive", "--email", "me@googlemail.com", "--password-env", "GMAIL_APP",
                      "--no-check").stdout
    assert "Gmail lets other mail programs log in only with an app password" in out
    assert "App passwords" in out and "myaccount.google.com/apppasswords" in out
    assert "GMAIL_APP must also be set where the watcher runs" in out


def test_flags_override_the_preset(target):
    Cli(target)("init", "--non-interactive", "--email", "me@gmail.com", "--host", "imap.example.net", "--tls",
                "starttls", "--username", "me", "--password-env", "P", "--no-check")
    [account] = load_settings(target).accounts
    assert (account.host, account.effective_port, account.tls, account.username) == ("imap.example.net", 143,
                                                                                     "starttls", "me")


@pytest.mark.parametrize("address, provider", [
    ("someone@gmail.com", "gmail"), ("someone@googlemail.com", "gmail"),
    ("someone@hotmail.de", "outlook"), ("someone@hotmail.co.uk", "outlook"), ("someone@outlook.fr", "outlook"),
    ("someone@live.com", "outlook"), ("someone@yahoo.it", "yahoo"), ("someone@icloud.com", "icloud"),
    ("someone@me.com", "icloud"), ("someone@mac.com", "icloud"), ("someone@gmx.net", "gmx"),
    ("someone@gmx.com", "gmx-com"), ("someone@web.de", "webde"), ("someone@t-online.de", "t-online"),
    ("someone@posteo.net", "posteo"), ("someone@mailbox.org", "mailbox-org"), ("someone@proton.me", "proton-bridge"),
    ("someone@pm.me", "proton-bridge"), ("someone@orange.fr", "orange"), ("someone@wanadoo.fr", "orange"),
    ("someone@free.fr", "free"), ("someone@libero.it", "libero"), ("someone@seznam.cz", "seznam"),
    ("someone@wp.pl", "wp"), ("someone@op.pl", "onet"), ("someone@interia.pl", "interia"),
    ("someone@ziggo.nl", "ziggo"), ("SomeOne@GMAIL.COM", "gmail"),
    ("someone@example.org", None), ("someone@notgmail.com", None), ("someone@gmail.com.evil.example", None),
])
def test_provider_is_recognised_from_the_address(address, provider):
    found = setup.provider_for(address)
    assert (found.id if found else None) == provider


def test_every_preset_is_complete():
    providers = setup.load_providers()
    assert len({p.id for p in providers}) == len(providers)
    for provider in providers:
        assert provider.tls in setup.TLS_MODES and provider.login in setup.LOGINS, provider.id
        assert 0 < provider.port < 65536 and "." in provider.host, provider.id
        if provider.login == "app_password":
            assert provider.app_password_page and provider.app_password_hint(), provider.id
        if provider.login in ("oauth2", "bridge"):
            assert provider.note, provider.id
    bridge = setup.provider_for("x@proton.me")
    assert (bridge.host, bridge.port, bridge.tls) == ("127.0.0.1", 1143, "starttls")


@pytest.mark.parametrize("options, message", [
    (["--country", "XX"], "config error: --country: 'XX' is not a country code the authority directory knows"),
    (["--country", "DE"], "config error: --region: in Germany the authority of your Land takes the complaint"),
    (["--country", "DE", "--region", "ZZ"], "config error: --region: 'ZZ' is not a German Land code"),
    (["--country", "FR", "--region", "BY"], "config error: --region: only for Germany"),
    (["--database-url", "tracker.sqlite3"], "config error: --database-url: must be a database URL"),
    (["--tls", "none", "--host", "imap.example.org"], "config error: --tls: 'none' is only allowed for loopback"),
])
def test_wrong_answers_are_one_line_naming_the_option(target, options, message):
    result = Cli(target)("init", "--non-interactive", "--email", "me@example.org", "--host", "imap.example.org",
                         "--password-env", "P", "--no-check", *options, expect=1)
    [line] = result.stderr.splitlines()
    assert line.startswith(message), line
    assert not target.exists()


def test_wrong_flags_exit_2_naming_them(target):
    cli = Cli(target)
    no_host = cli("init", "--non-interactive", "--email", "me@example.org", "--password-env", "P", expect=2)
    assert "--host" in no_host.output and "no preset for example.org" in no_host.output
    two = cli("init", "--non-interactive", "--email", "me@gmail.com", "--password-env", "P", "--password-command",
              "x", expect=2)
    assert "exactly one of" in two.output
    assert not target.exists()


def test_country_given_again_for_the_same_person_stays_in_person(target):
    cli = Cli(target)
    base = ["init", "--non-interactive", "--host", "imap.example.org", "--password-env", "P", "--no-check",
            "--country", "pl"]
    cli(*base, "--email", "a@example.org")
    cli(*base, "--email", "b@example.org")
    settings = load_settings(target)
    assert settings.person.country == "PL" and [a.country for a in settings.accounts] == [None, None]


def test_keyring_without_a_backend_is_one_line_and_writes_nothing(no_keyring, target, monkeypatch):
    monkeypatch.setenv(setup.PASSWORD_ENV, "secret")
    result = Cli(target)("init", "--non-interactive", "--email", "me@example.org", "--host", "imap.example.org",
                         "--keyring", "--no-check", expect=1)
    [line] = result.stderr.splitlines()
    assert line.startswith("config error: --keyring: no system keyring is available")
    assert "--password-command" in line and not target.exists()


def test_a_keyring_account_without_a_backend_fails_in_one_line(no_keyring):
    from tracker.config import settings_from_dict
    from tracker.errors import ConfigError
    from tracker.sources.imap import read_password

    account = settings_from_dict({"accounts": [{"name": "a", "host": "h", "username": "u",
                                                "password_keyring": True}]}).accounts[0]
    with pytest.raises(ConfigError) as caught:
        read_password(account)
    assert str(caught.value) == ("account a: no keyring entry for u (service privacy-tracker; no system keyring "
                                 "is available): run `privacy-tracker init` again or use password_command")


@pytest.mark.parametrize("value", ['quote " and backslash \\ end', "tab\there", "Zoë's mail ✓", "del\x7fchar",
                                   "a\\nb", "[not a table]", "# not a comment"])
def test_written_strings_read_back_exactly(value):
    assert tomllib.loads(f"key = {setup.toml_value(value)}\n")["key"] == value


def test_an_existing_table_gets_the_keys_under_its_header(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[person]\nname = "Ben Example"   # signs the letters\n\n[daemon]\ninterval_minutes = 5\n')
    Cli(config)("init", "--non-interactive", "--email", "ben@example.org", "--host", "imap.example.org",
                "--password-env", "P", "--no-check", "--country", "IE")
    settings = load_settings(config)
    assert (settings.person.name, settings.person.country) == ("Ben Example", "IE")
    assert settings.daemon.interval_minutes == 5


def test_a_broken_config_is_not_added_to(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[daemon]\nintervall = 5\n')
    result = Cli(config)("init", "--non-interactive", "--email", "ben@example.org", "--host", "imap.example.org",
                         "--password-env", "P", "--no-check", expect=1)
    [line] = result.stderr.splitlines()
    assert "unknown key 'intervall'" in line and line.endswith("fix it before adding an account")
    assert config.read_text() == '[daemon]\nintervall = 5\n'


def test_init_writes_to_the_environment_variables_file(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere" / "config.toml"
    monkeypatch.setenv("PRIVACY_TRACKER_CONFIG", str(path))
    from typer.testing import CliRunner

    from tracker.cli import app

    result = CliRunner().invoke(app, ["init", "--non-interactive", "--email", "ben@example.org", "--host",
                                      "imap.example.org", "--password-env", "P", "--no-check"])
    assert result.exit_code == 0, result.output
    assert load_settings(path).accounts[0].host == "imap.example.org"
    assert "privacy-tracker doctor" in result.stdout   # found again without --config
    assert os.stat(path).st_mode & 0o077 == 0


def test_interactive_without_answers_says_how_to_run_it(target):
    result = Cli(target).runner.invoke(cli_app(), ["--config", str(target), "init"], input="")
    assert result.exit_code == 1
    assert "init needs answers" in result.stderr and "--non-interactive" in result.stderr
    assert not target.exists()
