"""`doctor`: is everything in place? Config, database, mailboxes, alert channels, service.

Each check gives one line. A problem's line says what is wrong and what to do;
any problem makes the command exit non-zero. A database that does not exist
yet is not created, no alert is sent and no mail is read: an account is only
logged in to and out of.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import select

from tracker import __version__, migrations, store
from tracker.config import AccountSettings, Settings, load_settings, locate_config_file
from tracker.errors import (ConfigError, MailboxAuthError, MailboxConnectionError, SourceError, StoreError,
                            TrackerError)
from tracker.models import Account

OK, PROBLEM, WARNING, INFO = "ok", "problem", "warning", "info"
# A login that takes longer than this is reported as a problem rather than waited for.
LOGIN_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Check:
    level: str     # ok, problem, warning or info
    topic: str     # version, config, database, account NAME, alerts, service
    text: str      # one line; for a problem: what is wrong, and what to do


@dataclass
class Diagnosis:
    checks: list[Check]

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.level == PROBLEM]


def diagnose(config: Path | None, check_service: bool = True) -> Diagnosis:
    checks = [Check(INFO, "version", f"privacy-tracker {__version__} (Python {platform.python_version()})")]
    try:
        path, how = locate_config_file(config)
        settings = load_settings(config)
    except ConfigError as err:
        checks.append(Check(PROBLEM, "config", f"{err}: fix it, then run `privacy-tracker doctor` again"))
        return Diagnosis(checks)
    checks.append(Check(OK, "config", f"{path.absolute()} ({how})" if path else how))
    db_checks, accounts = _database(settings)
    checks += db_checks
    checks += _accounts(settings, accounts)
    checks += _alerts(settings)
    if check_service:
        checks.append(_service())
    return Diagnosis(checks)


# ---- database ----------------------------------------------------------------------

def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    for unit in ("bytes", "KB", "MB", "GB"):
        if total < 1024 or unit == "GB":
            return f"{total:.0f} {unit}" if unit == "bytes" else f"{total:.1f} {unit}"
        total /= 1024
    return ""


def _database(settings: Settings) -> tuple[list[Check], dict[str, Account]]:
    url = settings.database.resolved_url()
    shown = store._shown_url(url)
    configured = settings.database.url is not None
    path = store._sqlite_path(url)
    if path is not None and not path.exists():
        if configured and not path.parent.is_dir():
            return [Check(PROBLEM, "database", f"the folder {path.parent} of the database does not exist: "
                                               f"create it or fix [database] url")], {}
        return [Check(INFO, "database", f"{path}: not created yet (the first poll or ingest creates it)")], {}
    try:
        db = store.Store(url, create_folder=not configured)
    except StoreError as err:
        return [Check(PROBLEM, "database", str(err))], {}
    try:
        with db.session() as session:
            requests = len(store.all_requests(session))
            mails = store.message_count(session)
            accounts = {a.name: a for a in session.exec(select(Account))}
    except TrackerError as err:
        return [Check(PROBLEM, "database", f"cannot read {shown}: {err}")], {}
    except Exception as err:  # a damaged file: SQLAlchemy's own error, in one line
        return [Check(PROBLEM, "database", f"cannot read {shown}: {str(err).splitlines()[0]}: restore it from "
                                           f"a backup or choose another [database] url")], {}
    finally:
        db.dispose()
    where = f"{path}, {_size(path)}" if path is not None else shown
    return [Check(OK, "database", f"{where}, schema {migrations.head()}, {requests} request(s), "
                                  f"{mails} mail(s)")], accounts


# ---- accounts ------------------------------------------------------------------------

def _when(value: datetime | None) -> str:
    moment = store.utc(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "never"


def _fix(account: AccountSettings, err: TrackerError) -> str:
    """What to do about a failed login, in the words of the config."""
    credential = ("password_env" if account.password_env else "password_command" if account.password_command
                  else "password_keyring" if account.password_keyring else "oauth2_token_command")
    if isinstance(err, MailboxAuthError):
        return f"check username and the password ({credential}) of account {account.name}"
    if isinstance(err, MailboxConnectionError):
        return f"check host, port, tls and ca_file of account {account.name}"
    if isinstance(err, ConfigError) and account.password_env:
        return (f"set {account.password_env}, or keep the password in the keyring (password_keyring = true) "
                f"or use password_command")
    return f"fix account {account.name} in the config"


def login(account: AccountSettings) -> TrackerError | None:
    """Log in and out with the account's own settings; None when it worked."""
    from tracker.sources.imap import ImapConnection

    quick = account.model_copy(update={"timeout_seconds": min(account.timeout_seconds, LOGIN_TIMEOUT_SECONDS)})
    try:
        with ImapConnection(quick):
            return None
    except (SourceError, ConfigError) as err:
        return err


def _accounts(settings: Settings, known: dict[str, Account]) -> list[Check]:
    if not settings.accounts:
        return [Check(INFO, "accounts", "no IMAP account configured: add an [[accounts]] section to watch a "
                                        "mailbox (local files can still be ingested)")]
    checks = []
    for account in settings.accounts:
        topic = f"account {account.name}"
        row = known.get(account.name)
        synced = f"last sync {_when(row.last_success_at if row else None)}"
        failing = bool(row and row.last_error and (row.last_success_at is None or row.last_error_at is None
                                                   or row.last_error_at > row.last_success_at))
        if row is None or not row.last_error:
            history = f"{synced}; no error recorded"
        elif failing:
            history = f"{synced}; the last poll failed ({_when(row.last_error_at)}): {row.last_error}"
        else:
            history = f"{synced}; last error {_when(row.last_error_at)}, polls worked since: {row.last_error}"
        error = login(account)
        if error is not None:
            what = str(error).removeprefix(f"{topic}: ")
            checks.append(Check(PROBLEM, topic, f"{what} ({synced}): {_fix(account, error)}"))
        else:
            checks.append(Check(WARNING if failing else OK, topic,
                                f"login OK as {account.username} on {account.host}:{account.effective_port}; "
                                f"{history}"))
    return checks


# ---- alerts ---------------------------------------------------------------------------

def _alerts(settings: Settings) -> list[Check]:
    from tracker.alerts import configured_channels

    channels = configured_channels(settings)
    if not channels:
        return [Check(INFO, "alerts", "no alert channel: add apprise URLs to [alerts] urls to be told of "
                                      "refusals and deadlines")]
    checks = []
    positions = {url: f"[alerts] urls #{n}" for n, url in enumerate(settings.alerts.urls, 1)}
    positions |= {url: f"[alerts] private_urls #{n}" for n, url in enumerate(settings.alerts.private_urls, 1)}
    # apprise logs a URL it cannot parse as it is, password and all: this check names its position instead.
    apprise_log = logging.getLogger("apprise")
    level = apprise_log.level
    apprise_log.setLevel(logging.CRITICAL + 1)
    try:
        names = [channel.name for channel in channels]  # apprise parses each URL; nothing is sent
    finally:
        apprise_log.setLevel(level)
    for channel, name in zip(channels, names):
        if name.startswith("(invalid"):
            checks.append(Check(PROBLEM, "alerts", f"{positions[channel.url]} is not a URL apprise knows: "
                                                   f"correct it (see apprise's list of services)"))
        else:
            checks.append(Check(OK, "alerts", f"{name} (understood; nothing sent: `privacy-tracker alerts test` "
                                              f"sends a test)"))
    return checks


# ---- service --------------------------------------------------------------------------

def _service() -> Check:
    from tracker import service

    try:
        state = service.status()
    except TrackerError as err:
        return Check(INFO, "service", f"cannot tell: {err}")
    if not state.installed:
        return Check(INFO, "service", "not installed: `privacy-tracker service install` keeps the daemon running"
                     + (f" ({state.note})" if state.note else ""))
    if state.manager == "cron":
        return Check(OK, "service", f"cron: {state.command}")
    if state.enabled is None:
        return Check(INFO, "service", f"{state.path} installed; {state.note}")
    level = OK if state.running else WARNING
    return Check(level, "service", f"{state.manager}: {state.enabled}, {state.active} ({state.path})")
