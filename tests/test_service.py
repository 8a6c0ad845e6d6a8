"""`service install|status|uninstall`, and the one-line summaries of `poll --once` and `daemon`.

systemd cannot run in a test container, so a stand-in `systemctl` goes first on
PATH: a real executable that records every call and answers as systemctl does.
It is the one part that is not real here.
"""

from __future__ import annotations

import json
import os
import plistlib
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import IMAP_USERS
from mails import REFUSAL, meta_mail
from tracker import service

REPO = Path(__file__).resolve().parents[1]

ACCOUNT = ('[[accounts]]\nname = "alice"\nhost = "imap.example.org"\nusername = "alice@example.org"\n'
           'password_command = "pass show mail/alice"\n')

# Answers like systemctl --user: state kept in a JSON file, every call appended to calls.jsonl.
FAKE_SYSTEMCTL = textwrap.dedent('''\
    #!{python}
    import json, os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    with open(os.path.join(here, "calls.jsonl"), "a") as log:
        log.write(json.dumps(args) + "\\n")
    state_file = os.path.join(here, "state.json")
    state = json.load(open(state_file)) if os.path.exists(state_file) else {{"enabled": False, "active": False}}
    if args[:1] != ["--user"]:
        sys.exit("only --user is expected")
    verb = args[1]
    if verb == os.environ.get("FAKE_SYSTEMCTL_FAIL"):
        sys.stderr.write("Failed to " + verb + " unit: Unit file privacy-tracker.service does not exist.\\n")
        sys.exit(1)
    if verb == "show-environment":
        if os.environ.get("FAKE_SYSTEMCTL_NO_BUS"):
            sys.stderr.write("Failed to connect to bus: No medium found\\n")
            sys.exit(1)
        print("HOME=" + os.environ.get("HOME", ""))
    elif verb == "enable":
        state["enabled"] = True
        state["active"] = state["active"] or "--now" in args
    elif verb == "disable":
        state["enabled"] = False
        state["active"] = state["active"] and "--now" not in args
    elif verb in ("start", "restart"):
        state["active"] = True
    elif verb == "is-enabled":
        print("enabled" if state["enabled"] else "disabled")
        sys.exit(0 if state["enabled"] else 1)
    elif verb == "is-active":
        print("active" if state["active"] else "inactive")
        sys.exit(0 if state["active"] else 3)
    json.dump(state, open(state_file, "w"))
''')


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch) -> Path:
    """A `systemctl` first on PATH; returns its folder (calls.jsonl, state.json)."""
    folder = tmp_path / "fake-bin"
    executable(folder / "systemctl", FAKE_SYSTEMCTL.format(python=sys.executable))
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def calls(folder: Path) -> list[list[str]]:
    log = folder / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def installed_tracker(tmp_path, monkeypatch) -> Path:
    """The person runs `privacy-tracker` from a virtualenv: that is the executable the service must use."""
    script = executable(tmp_path / "venv" / "bin" / "privacy-tracker", "#!/bin/sh\nexit 0\n")
    monkeypatch.setattr(sys, "argv", [str(script), "service", "install"])
    return script


@pytest.fixture
def account_config(config_file) -> Path:
    with config_file.open("a") as handle:
        handle.write(ACCOUNT)
    return config_file


def unit_path(tmp_path) -> Path:
    return tmp_path / "xdg-config" / "systemd" / "user" / "privacy-tracker.service"


# ---- systemd ----------------------------------------------------------------------------

def test_install_writes_a_unit_for_the_executable_in_use_and_enables_it(tmp_path, cli, account_config,
                                                                        fake_systemctl, installed_tracker):
    result = cli("service", "install")

    unit = unit_path(tmp_path)
    text = unit.read_text()
    assert f"ExecStart={installed_tracker} --config {account_config} -v daemon\n" in text
    assert "Restart=on-failure\n" in text and "WantedBy=default.target" in text
    assert "EnvironmentFile" not in text and "%h/.local/bin" not in text
    assert stat.S_IMODE(unit.stat().st_mode) == 0o600
    assert calls(fake_systemctl) == [["--user", "show-environment"], ["--user", "daemon-reload"],
                                     ["--user", "enable", "--now", "privacy-tracker.service"]]
    assert f"Installed and started: {unit}" in result.stdout
    assert "journalctl --user -u privacy-tracker" in result.stdout


def test_status_and_uninstall_follow_what_systemd_says(tmp_path, cli, account_config, fake_systemctl,
                                                       installed_tracker):
    unit = unit_path(tmp_path)
    before = cli("service", "status", expect=1)
    assert f"systemd: not installed ({unit} does not exist)" in before.stdout

    cli("service", "install")
    running = cli("service", "status")
    assert f"systemd: installed ({unit}), enabled, active" in running.stdout
    assert f"runs: {installed_tracker} --config {account_config} -v daemon" in running.stdout

    again = cli("service", "install")  # a changed config path or executable takes effect at once
    assert "Replaced and started" in again.stdout
    assert calls(fake_systemctl)[-1] == ["--user", "restart", "privacy-tracker.service"]

    removed = cli("service", "uninstall")
    assert f"Stopped, disabled and removed {unit}." in removed.stdout
    assert not unit.exists()
    assert calls(fake_systemctl)[-2:] == [["--user", "disable", "--now", "privacy-tracker.service"],
                                          ["--user", "daemon-reload"]]
    cli("service", "status", expect=1)
    assert "No systemd service was installed." in cli("service", "uninstall").stdout


def test_a_failing_systemctl_is_one_line(tmp_path, cli, account_config, fake_systemctl, installed_tracker,
                                         monkeypatch):
    monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL", "enable")
    result = cli("service", "install", expect=1)
    assert result.output.strip().splitlines() == [
        "error: systemctl --user enable --now privacy-tracker.service failed: Failed to enable unit: "
        "Unit file privacy-tracker.service does not exist."]


# ---- no systemd: the cron line ------------------------------------------------------------

def test_without_systemctl_the_cron_line_is_printed_and_nothing_is_written(tmp_path, cli, account_config,
                                                                          installed_tracker, monkeypatch):
    with account_config.open("a") as handle:
        handle.write("[daemon]\ninterval_minutes = 15\n")
    empty = tmp_path / "bin-without-systemctl"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    before = sorted(tmp_path.rglob("*"))

    result = cli("service", "install")

    line = f"*/15 * * * * {installed_tracker} --config {account_config} poll --once >/dev/null"
    assert line in result.stdout.splitlines()
    assert "crontab -e" in result.stdout and "there is no systemctl here" in result.stdout
    assert sorted(tmp_path.rglob("*")) == before
    assert not unit_path(tmp_path).exists()


def test_systemctl_without_a_user_manager_also_gives_the_cron_line(tmp_path, cli, account_config, fake_systemctl,
                                                                  installed_tracker, monkeypatch):
    monkeypatch.setenv("FAKE_SYSTEMCTL_NO_BUS", "1")
    result = cli("service", "install")
    assert f"*/10 * * * * {installed_tracker} --config {account_config} poll --once" in result.stdout
    assert "Failed to connect to bus" in result.stdout
    assert calls(fake_systemctl) == [["--user", "show-environment"]]
    assert not unit_path(tmp_path).exists()


# ---- passwords: never only in the shell's environment ---------------------------------------

def test_an_account_with_password_env_is_refused_in_one_line(tmp_path, cli, config_file, fake_systemctl,
                                                             installed_tracker):
    with config_file.open("a") as handle:
        handle.write(ACCOUNT.replace('password_command = "pass show mail/alice"',
                                     'password_env = "ALICE_IMAP_PASSWORD"'))
    result = cli("service", "install", expect=1)
    [line] = result.output.strip().splitlines()
    assert line.startswith("config error: account alice in ")
    assert "password_keyring" in line and "privacy-tracker init --keyring" in line and "password_command" in line
    assert "--allow-env" in line
    assert calls(fake_systemctl) == [] and not unit_path(tmp_path).exists()


def test_allow_env_points_the_unit_at_an_owner_only_file_to_fill(tmp_path, cli, config_file, fake_systemctl,
                                                                 installed_tracker, monkeypatch):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", "hunter2-secret")
    with config_file.open("a") as handle:
        handle.write(ACCOUNT.replace('password_command = "pass show mail/alice"',
                                     'password_env = "ALICE_IMAP_PASSWORD"'))

    result = cli("service", "install", "--allow-env")

    env_file = config_file.parent / "service.env"
    assert f"EnvironmentFile={env_file}\n" in unit_path(tmp_path).read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "ALICE_IMAP_PASSWORD=\n" in env_file.read_text()
    assert "hunter2" not in env_file.read_text() and "hunter2" not in unit_path(tmp_path).read_text()
    assert f"Fill in ALICE_IMAP_PASSWORD in {env_file}" in result.stdout

    # Filled in by the person: installing again keeps it, and asks for nothing more.
    env_file.write_text(env_file.read_text().replace("ALICE_IMAP_PASSWORD=\n", "ALICE_IMAP_PASSWORD=typed\n"))
    env_file.chmod(0o644)
    again = cli("service", "install", "--allow-env")
    assert "Fill in" not in again.stdout
    assert "ALICE_IMAP_PASSWORD=typed\n" in env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    removed = cli("service", "uninstall")
    assert f"The passwords file {env_file} is left in place" in removed.stdout and env_file.exists()


def test_no_accounts_means_nothing_to_run(tmp_path, cli, fake_systemctl, installed_tracker):
    result = cli("service", "install", expect=1)
    assert "no IMAP accounts configured" in result.output
    assert not unit_path(tmp_path).exists()


# ---- the executable ---------------------------------------------------------------------

def test_the_command_falls_back_to_this_python_when_no_script_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert service.tracker_command("/usr/lib/python3/site-packages/tracker/__main__.py") == \
        [sys.executable, "-m", "tracker"]
    assert service.tracker_command(str(tmp_path / "pytest")) == [sys.executable, "-m", "tracker"]
    on_path = executable(tmp_path / "privacy-tracker", "#!/bin/sh\n")
    assert service.tracker_command("privacy-tracker") == [str(on_path)]


def test_an_unusual_path_is_quoted_for_systemd():
    unit = service.systemd_unit(["/home/a b/bin/privacy-tracker", "--config", "/home/a b/100%.toml"])
    assert 'ExecStart="/home/a b/bin/privacy-tracker" --config "/home/a b/100%%.toml" -v daemon' in unit


def test_cron_schedules_follow_the_interval():
    assert [service.cron_schedule(m) for m in (1, 10, 59.6, 120, 1440, 10080)] == [
        "*/1 * * * *", "*/10 * * * *", "0 */1 * * *", "0 */2 * * *", "0 0 * * *", "0 0 */7 * *"]


# ---- macOS: a launchd agent ---------------------------------------------------------------

def test_on_macos_a_launch_agent_is_written_and_loaded(tmp_path, monkeypatch, account_config, installed_tracker):
    from tracker.config import load_settings

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "fake-bin"
    executable(folder / "launchctl", textwrap.dedent(f'''\
        #!{sys.executable}
        import json, os, sys
        with open({str(folder / "calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(sys.argv[1:]) + "\\n")
        if sys.argv[1] == "list":
            print('{{\\n\\t"PID" = 4242;\\n\\t"Label" = "org.privacy-tracker.daemon";\\n}};')
        '''))
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    settings = load_settings(account_config)

    done = service.install(settings, platform="darwin")

    plist_path = tmp_path / "home" / "Library" / "LaunchAgents" / "org.privacy-tracker.daemon.plist"
    assert done.path == plist_path and stat.S_IMODE(plist_path.stat().st_mode) == 0o600
    plist = plistlib.loads(plist_path.read_bytes())
    assert plist["Label"] == "org.privacy-tracker.daemon"
    assert plist["ProgramArguments"] == [str(installed_tracker), "--config", str(account_config), "-v", "daemon"]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert calls(folder) == [["load", "-w", str(plist_path)]]
    state = service.status(platform="darwin")
    assert state.installed and state.running and state.enabled == "loaded"

    service.uninstall(settings, platform="darwin")
    assert not plist_path.exists() and calls(folder)[-1] == ["unload", "-w", str(plist_path)]


# ---- poll and daemon say what they do --------------------------------------------------------

@pytest.mark.dovecot
def test_poll_once_ends_with_a_one_line_summary(dovecot, imap_config, cli):
    for n in range(2):
        dovecot.deliver("alice", meta_mail(REFUSAL, to=f"p{n}@example.org", subject="Your objection",
                                           message_id=f"<refusal-{n}@facebookmail.com>"))
    dovecot.deliver("alice", meta_mail("Lunch?", sender="bob@example.org", display="Bob", auth=None,
                                       message_id="<lunch@example.org>"))

    first = cli("poll", "--once").stdout.splitlines()
    second = cli("poll", "--once").stdout.splitlines()

    assert first[-1] == "Polled 1 account: 2 new mails, 2 refusals, 0 errors."
    assert second[-1] == "Polled 1 account: 0 new mails, 0 refusals, 0 errors."


@pytest.mark.dovecot
def test_poll_once_counts_a_failing_account_in_its_summary(dovecot, imap_config, cli, monkeypatch):
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", "wrong")
    result = cli("poll", "--once", expect=1)
    assert result.stdout.splitlines()[-1] == "Polled 1 account: 0 new mails, 0 refusals, 1 error."
    assert "refused the login" in result.stderr


def _polled(config: Path, accounts: int) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    from conftest import db_rows, on_postgresql

    if not on_postgresql() and not (config.parent / "tracker.sqlite3").exists():
        return False
    try:
        [(done,)] = db_rows(config, "SELECT count(*) FROM account WHERE last_success_at IS NOT NULL")
    except SQLAlchemyError:  # the tables are being created
        return False
    return done >= accounts


@pytest.mark.dovecot
def test_the_daemon_says_what_it_watches_when_it_starts(dovecot, config_file, monkeypatch):
    from conftest import imap_account_toml

    monkeypatch.setenv("ALICE_IMAP_PASSWORD", IMAP_USERS["alice"])
    monkeypatch.setenv("BOB_IMAP_PASSWORD", IMAP_USERS["bob"])
    config_file.write_text(config_file.read_text() + imap_account_toml(dovecot, idle=True)
                           + imap_account_toml(dovecot, "bob") + "\n[daemon]\ninterval_minutes = 10\n")
    process = subprocess.Popen([sys.executable, "-m", "tracker", "--config", str(config_file), "daemon"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        deadline = time.monotonic() + 30
        while not _polled(config_file, 2):  # stopped only once it runs
            assert process.poll() is None and time.monotonic() < deadline, "the daemon's first polls failed"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert first == "Watching 2 accounts every 10 minutes (IDLE on alice); stop with Ctrl-C.\n"
    assert process.returncode == 0, err
