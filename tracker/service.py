"""Keep the daemon running: a systemd user unit, a launchd agent on macOS, or a cron line.

The only module that runs systemctl, launchctl and crontab. The service runs
the executable in use now (so a pipx or virtualenv install works wherever it
lives) with ``--config`` set to the absolute path of the config in use (the
service does not see ``$PRIVACY_TRACKER_CONFIG``).

A service does not inherit the shell's environment, so an account whose
password comes from ``password_env`` would fail there. ``install`` refuses such
accounts unless asked (``allow_env``); then the service reads the variables
from an owner-only file beside the config, which the person fills in. The
tracker never writes a secret into it.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tracker.config import Settings
from tracker.errors import ConfigError, TrackerError
from tracker.store import make_private_dirs

UNIT_NAME = "privacy-tracker.service"
LAUNCHD_LABEL = "org.privacy-tracker.daemon"
ENV_FILE_NAME = "service.env"
# systemctl answers at once when the user manager is there; a hung D-Bus must not hang the command.
SYSTEMCTL_TIMEOUT = 30


class ServiceError(TrackerError):
    """The service manager refused or failed; the message says which call and why."""


# ---- where things are ----------------------------------------------------------

def systemd_unit_path() -> Path:
    """$XDG_CONFIG_HOME/systemd/user/privacy-tracker.service: where systemd looks for user units."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def launchd_plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def env_file_path(config: Path) -> Path:
    return config.parent / ENV_FILE_NAME


def tracker_command(argv0: str | None = None) -> list[str]:
    """The command that runs this tracker, with absolute paths.

    The script the person ran (``privacy-tracker`` from pipx or a virtualenv) when that
    is what runs now, else the one on PATH, else this Python with ``-m tracker``. A
    symlink is kept as it is: pipx points ~/.local/bin at the current install, so the
    service follows an upgrade.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    name = Path(argv0).name
    if name.startswith("privacy-tracker"):
        found = argv0 if os.sep in argv0 else shutil.which(argv0)
        if found and Path(found).is_file():
            return [os.path.abspath(found)]
    running_as_module = name == "__main__.py" and Path(argv0).parent.name == "tracker"
    if not running_as_module:
        found = shutil.which("privacy-tracker")
        if found:
            return [os.path.abspath(found)]
    return [sys.executable, "-m", "tracker"]


# ---- what is installed -----------------------------------------------------------

@dataclass
class Installed:
    """What ``install`` did; ``manager`` is systemd, launchd or cron (then only ``cron_line``)."""

    manager: str
    command: list[str]                 # what the service runs
    path: Path | None = None           # the unit or plist written
    cron_line: str | None = None
    why_cron: str | None = None        # why there is no systemd here
    env_file: Path | None = None       # the file with password_env variables, when allowed
    env_missing: list[str] = field(default_factory=list)  # variables not in it yet
    calls: list[str] = field(default_factory=list)        # the manager commands run
    replaced: bool = False             # a unit was there before (it was restarted)


@dataclass
class ServiceState:
    manager: str                       # systemd, launchd or cron
    installed: bool
    path: Path | None = None
    enabled: str | None = None         # systemctl is-enabled: enabled, disabled...
    active: str | None = None          # systemctl is-active: active, inactive, failed...
    running: bool = False
    command: str | None = None         # ExecStart, the plist's program, or the cron line
    note: str | None = None


@dataclass
class Removed:
    manager: str
    path: Path | None = None           # the file removed, if there was one
    calls: list[str] = field(default_factory=list)
    env_file: Path | None = None       # left in place: it holds the person's passwords
    cron_lines: list[str] = field(default_factory=list)  # for the person to delete with crontab -e
    note: str | None = None


# ---- systemd -------------------------------------------------------------------

def _run(args: list[str], timeout: float = SYSTEMCTL_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise ServiceError(f"{' '.join(args)} did not answer within {timeout:g} s") from err
    except OSError as err:
        raise ServiceError(f"cannot run {args[0]}: {err.strerror or err}") from err


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def systemd_problem() -> str | None:
    """Why there is no systemd user manager to talk to, or None when there is one."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return "there is no systemctl here"
    try:
        answer = _run([systemctl, "--user", "show-environment"], timeout=10)
    except ServiceError as err:
        return str(err)
    if answer.returncode != 0:
        why = _first_line(answer.stderr) or f"exit status {answer.returncode}"
        return f"systemctl --user cannot reach a user service manager ({why})"
    return None


def _systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    answer = _run([shutil.which("systemctl") or "systemctl", "--user", *args])
    if check and answer.returncode != 0:
        why = _first_line(answer.stderr) or _first_line(answer.stdout) or f"exit status {answer.returncode}"
        raise ServiceError(f"systemctl --user {' '.join(args)} failed: {why}")
    return answer


_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def _systemd_word(word: str) -> str:
    """One argument of ExecStart: % and $ are systemd's own, anything unusual is quoted."""
    word = word.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(command: list[str], env_file: Path | None = None) -> str:
    lines = [
        "# Written by `privacy-tracker service install`; `privacy-tracker service uninstall` removes it.",
        "# Its log: journalctl --user -u privacy-tracker -f",
        "[Unit]",
        "Description=privacy-tracker: watch mailboxes for Meta's answers to GDPR objections",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
    ]
    if env_file is not None:
        lines.append(f"EnvironmentFile={str(env_file).replace('%', '%%')}")
    lines += [
        # -v: each poll's outcome in the journal.
        "ExecStart=" + " ".join(_systemd_word(word) for word in [*command, "-v", "daemon"]),
        # SIGTERM lets the daemon finish the mail it is recording, then it exits 0.
        "KillSignal=SIGTERM",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "RestartSec=30",
        "NoNewPrivileges=yes",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def _write_private(path: Path, text: str | bytes) -> None:
    """Replace ``path`` in one step with an owner-only file."""
    make_private_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def _command_exec_start(unit_text: str) -> str | None:
    return next((line.removeprefix("ExecStart=") for line in unit_text.splitlines()
                 if line.startswith("ExecStart=")), None)


# ---- cron ------------------------------------------------------------------------

def cron_schedule(minutes: float) -> str:
    """Cron's nearest schedule to ``[daemon] interval_minutes``."""
    whole = max(1, round(minutes))
    if whole < 60:
        return f"*/{whole} * * * *"
    if whole < 24 * 60:
        return f"0 */{round(whole / 60)} * * *"
    days = round(whole / (24 * 60))
    return "0 0 * * *" if days == 1 else f"0 0 */{days} * *"


def cron_line(command: list[str], config: Path, minutes: float, env_file: Path | None = None) -> str:
    # Only errors reach cron's mail: the summary of every poll would be a mail every few minutes.
    run = " ".join(shlex.quote(word) for word in [*command, "--config", str(config), "poll", "--once"])
    if env_file is not None:
        run = f"set -a; . {shlex.quote(str(env_file))}; set +a; {run}"
    return f"{cron_schedule(minutes)} {run} >/dev/null".replace("%", "\\%")  # % ends a cron command


def _crontab_lines() -> list[str] | None:
    """The person's cron lines that run this tracker, or None when there is no crontab command."""
    crontab = shutil.which("crontab")
    if crontab is None:
        return None
    answer = _run([crontab, "-l"], timeout=10)
    if answer.returncode != 0:  # "no crontab for USER"
        return []
    return [line for line in answer.stdout.splitlines()
            if not line.lstrip().startswith("#") and "poll --once" in line
            and ("privacy-tracker" in line or "-m tracker" in line)]


# ---- the env file (--allow-env) ----------------------------------------------------

def _env_names(settings: Settings) -> list[str]:
    return [a.password_env for a in settings.accounts if a.password_env]


def prepare_env_file(path: Path, names: list[str]) -> list[str]:
    """Create ``path`` owner-only with a line to fill per variable; returns the variables without a value.

    Values are never written, and only the names are read back.
    """
    if not path.exists():
        _write_private(path, "# Passwords for the privacy-tracker service: one NAME=value line each.\n"
                             "# Keep this file owner-only (chmod 600).\n")
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    listed, filled = set(), set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        name, equals, value = line.strip().removeprefix("export ").partition("=")
        if equals and not name.startswith("#"):
            listed.add(name.strip())
            if value.strip():
                filled.add(name.strip())
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(f"{name}=\n" for name in names if name not in listed)
    return [name for name in names if name not in filled]


# ---- install / status / uninstall ------------------------------------------------------

def _checked_config(settings: Settings, allow_env: bool) -> Path:
    if not settings.accounts or settings.source is None:
        raise ConfigError("no IMAP accounts configured: add an [[accounts]] section (see config.example.toml) "
                          "before installing the service")
    config = Path(settings.source).expanduser().absolute()
    with_env = [a.name for a in settings.accounts if a.password_env]
    if with_env and not allow_env:
        which = "account" if len(with_env) == 1 else "accounts"
        raise ConfigError(f"{which} {', '.join(with_env)} in {config}: password_env is only in your "
                          f"shell's environment, which the service does not get: store the password in the "
                          f"keyring (password_keyring = true, via `privacy-tracker init --keyring`) or use "
                          f"password_command; or run `service install --allow-env` to fill a file it reads")
    return config


def install(settings: Settings, allow_env: bool = False, platform: str | None = None,
            argv0: str | None = None) -> Installed:
    """Write and start the service for the config in use; where there is no service manager,
    the cron line to add instead."""
    config = _checked_config(settings, allow_env)
    base = tracker_command(argv0)
    command = [*base, "--config", str(config)]
    names = _env_names(settings)
    env_file = env_file_path(config) if names else None
    platform = platform or sys.platform

    if platform == "darwin":
        return _install_launchd(command, env_file, names)
    problem = systemd_problem()
    if problem is not None:
        missing = prepare_env_file(env_file, names) if env_file else []
        line = cron_line(base, config, settings.daemon.interval_minutes, env_file)
        return Installed("cron", command, cron_line=line, why_cron=problem, env_file=env_file, env_missing=missing)

    missing = prepare_env_file(env_file, names) if env_file else []
    path = systemd_unit_path()
    replaced = path.exists()
    _write_private(path, systemd_unit(command, env_file))
    done = Installed("systemd", command, path=path, env_file=env_file, env_missing=missing, replaced=replaced)
    steps = [("daemon-reload",), ("enable", "--now", UNIT_NAME)] + ([("restart", UNIT_NAME)] if replaced else [])
    for step in steps:
        _systemctl(*step)
        done.calls.append("systemctl --user " + " ".join(step))
    return done


def _launchctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    answer = _run([shutil.which("launchctl") or "launchctl", *args])
    if check and answer.returncode != 0:
        why = _first_line(answer.stderr) or _first_line(answer.stdout) or f"exit status {answer.returncode}"
        raise ServiceError(f"launchctl {' '.join(args)} failed: {why}")
    return answer


def _install_launchd(command: list[str], env_file: Path | None, names: list[str]) -> Installed:
    missing = prepare_env_file(env_file, names) if env_file else []
    program = [*command, "-v", "daemon"]
    if env_file is not None:
        # launchd has no EnvironmentFile: a shell exports the file's lines, then becomes the tracker.
        program = ["/bin/sh", "-c", 'set -a; . "$0"; set +a; exec "$@"', str(env_file), *program]
    log = Path.home() / "Library" / "Logs" / "privacy-tracker.log"
    plist = {"Label": LAUNCHD_LABEL, "ProgramArguments": program, "RunAtLoad": True,
             "KeepAlive": {"SuccessfulExit": False}, "ProcessType": "Background",
             "StandardOutPath": str(log), "StandardErrorPath": str(log)}
    path = launchd_plist_path()
    replaced = path.exists()
    done = Installed("launchd", command, path=path, env_file=env_file, env_missing=missing, replaced=replaced)
    if replaced:
        _launchctl("unload", str(path), check=False)
        done.calls.append(f"launchctl unload {path}")
    _write_private(path, plistlib.dumps(plist))
    _launchctl("load", "-w", str(path))
    done.calls.append(f"launchctl load -w {path}")
    return done


def status(platform: str | None = None) -> ServiceState:
    if (platform or sys.platform) == "darwin":
        path = launchd_plist_path()
        if not path.exists():
            return ServiceState("launchd", False, path)
        listed = _launchctl("list", LAUNCHD_LABEL, check=False)
        pid = re.search(r'"PID"\s*=\s*(\d+)', listed.stdout or "")
        program = plistlib.loads(path.read_bytes()).get("ProgramArguments", [])
        return ServiceState("launchd", True, path, enabled="loaded" if listed.returncode == 0 else "not loaded",
                            active="running" if pid else "not running", running=bool(pid),
                            command=" ".join(shlex.quote(word) for word in program))
    path = systemd_unit_path()
    problem = systemd_problem()
    if problem is None:
        if not path.exists():
            return ServiceState("systemd", False, path)
        enabled = _first_line(_systemctl("is-enabled", UNIT_NAME, check=False).stdout) or "unknown"
        active = _first_line(_systemctl("is-active", UNIT_NAME, check=False).stdout) or "unknown"
        return ServiceState("systemd", True, path, enabled=enabled, active=active, running=active == "active",
                            command=_command_exec_start(path.read_text(encoding="utf-8")))
    if path.exists():  # written here, but no user manager to ask (an SSH session without one...)
        return ServiceState("systemd", True, path, command=_command_exec_start(path.read_text(encoding="utf-8")),
                            note=f"{problem}: whether it runs cannot be told")
    lines = _crontab_lines()
    if lines is None:
        return ServiceState("cron", False, note=f"{problem}, and no crontab command")
    return ServiceState("cron", bool(lines), command=lines[0] if lines else None, running=bool(lines),
                        note=f"{problem}; cron runs `poll --once`" if lines else problem)


def uninstall(settings: Settings | None = None, platform: str | None = None) -> Removed:
    source = settings.source if settings is not None else None
    env_file = env_file_path(Path(source).absolute()) if source else None
    env_file = env_file if env_file is not None and env_file.exists() else None
    if (platform or sys.platform) == "darwin":
        path = launchd_plist_path()
        removed = Removed("launchd", env_file=env_file)
        if path.exists():
            _launchctl("unload", "-w", str(path), check=False)
            removed.calls.append(f"launchctl unload -w {path}")
            path.unlink()
            removed.path = path
        return removed
    path = systemd_unit_path()
    problem = systemd_problem()
    removed = Removed("systemd", env_file=env_file)
    if path.exists():
        if problem is None:
            _systemctl("disable", "--now", UNIT_NAME)
            removed.calls.append(f"systemctl --user disable --now {UNIT_NAME}")
        path.unlink()
        removed.path = path
        if problem is None:
            _systemctl("daemon-reload")
            removed.calls.append("systemctl --user daemon-reload")
        else:
            removed.note = f"{problem}: the unit file was removed; a running daemon stops at the next log-in"
    if problem is not None:
        removed.cron_lines = _crontab_lines() or []
    return removed
