"""Settings: read the TOML file once, validate it, hand out frozen objects.

Lookup order for the file: ``--config FILE``, then ``$PRIVACY_TRACKER_CONFIG``,
then ``config.toml`` in the platform's user config folder. No file at all means
defaults: a SQLite database in the user data folder and no accounts.
Secrets are never stored here: only the name of the variable or command that
gives them.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tracker.errors import ConfigError

APP_NAME = "privacy-tracker"
ENV_CONFIG = "PRIVACY_TRACKER_CONFIG"

DEFAULT_META_DOMAINS = (
    "facebookmail.com",
    "mail.instagram.com",
    "instagram.com",
    "support.facebook.com",
    "whatsapp.com",
    "fb.com",
    "facebook.com",
    "meta.com",
    "metamail.com",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(_Frozen):
    url: str | None = None  # sqlite:///path; None: the user data folder

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite:///{default_data_dir() / 'tracker.sqlite3'}"


class EvidenceSettings(_Frozen):
    keep_raw: bool = True       # keep every Meta mail's original bytes as .eml evidence
    dir: Path | None = None     # None: "evidence" beside the database


class RulesSettings(_Frozen):
    file: Path | None = None    # user rules: add rules, override default rules by id


class AuthenticitySettings(_Frozen):
    meta_domains: tuple[str, ...] = DEFAULT_META_DOMAINS
    trusted_authserv_id: str | None = None  # only trust Authentication-Results from this server
    unverified: Literal["trust", "review"] = "review"  # Meta mail without Authentication-Results

    @field_validator("meta_domains")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip().lower().lstrip(".") for d in value if d.strip())


class AccountSettings(_Frozen):
    name: str
    host: str
    port: int | None = None     # default: 993 for implicit TLS, 143 otherwise
    username: str
    password_env: str | None = None
    password_command: str | None = None
    oauth2_token_command: str | None = None
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    ca_file: Path | None = None
    folders: tuple[str, ...] | None = None  # None: INBOX and the server's \Junk folder
    since: date | None = None   # YYYY-MM-DD: mail before this date is ignored
    idle: bool = False
    timeout_seconds: float = 60.0

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)

    @model_validator(mode="after")
    def _one_credential(self) -> "AccountSettings":
        given = [key for key in ("password_env", "password_command", "oauth2_token_command")
                 if getattr(self, key)]
        if len(given) != 1:
            found = f"found {', '.join(given)}" if given else "none is set"
            raise ValueError(f"set exactly one of password_env, password_command, oauth2_token_command "
                             f"({found})")
        return self


class DaemonSettings(_Frozen):
    interval_minutes: float = Field(default=10.0, gt=0)
    jitter_seconds: int = Field(default=60, ge=0)


class AlertSettings(_Frozen):
    urls: tuple[str, ...] = ()          # apprise URLs: mailto://, ntfy://, json://...
    private_urls: tuple[str, ...] = ()  # channels the person marks private: may receive codes
    send_codes: bool = False            # one-time codes in alerts: off unless asked for
    max_attempts: int = Field(default=8, ge=1)


class Settings(_Frozen):
    database: DatabaseSettings = DatabaseSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    rules: RulesSettings = RulesSettings()
    authenticity: AuthenticitySettings = AuthenticitySettings()
    accounts: tuple[AccountSettings, ...] = ()
    daemon: DaemonSettings = DaemonSettings()
    alerts: AlertSettings = AlertSettings()
    source: Path | None = Field(default=None, exclude=True)  # the file these came from

    def evidence_dir(self) -> Path:
        if self.evidence.dir:
            return self.evidence.dir
        url = self.database.resolved_url()
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            return Path(url.removeprefix("sqlite:///")).parent / "evidence"
        return default_data_dir() / "evidence"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def find_config_file(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from ${ENV_CONFIG})")
        return path
    path = default_config_path()
    return path if path.is_file() else None


def _key_of(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def load_settings(explicit: Path | None = None) -> Settings:
    """Read and validate the config. Errors name the file and the key."""
    path = find_config_file(explicit)
    if path is None:
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    return settings_from_dict(data, source=path)


def settings_from_dict(data: dict, source: Path | None = None) -> Settings:
    base = source.parent if source else Path.cwd()
    if "source" in data:  # the file's own path, not a setting
        raise ConfigError(f"{source or 'config'}: key 'source': Extra inputs are not permitted")
    _resolve_paths(data, base)
    try:
        settings = Settings(**data, source=source)
    except ValidationError as err:
        first = err.errors()[0]
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}key '{_key_of(first)}': {first['msg']}") from err
    names = [a.name for a in settings.accounts]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"key 'accounts.name': duplicate account name {sorted(duplicates)[0]!r}")
    for account in settings.accounts:
        if account.tls == "none" and account.host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(
                f"key 'accounts.{account.name}.tls': 'none' is only allowed for loopback hosts, "
                f"not {account.host!r}"
            )
    return settings


def _resolve_paths(data: dict, base: Path) -> None:
    """Relative paths in the file are relative to the file, not to the working directory."""
    def fix(table: dict | None, key: str) -> None:
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = str((base / Path(table[key]).expanduser()))

    fix(data.get("rules"), "file")
    fix(data.get("evidence"), "dir")
    for account in data.get("accounts") or ():
        fix(account, "ca_file")
    db = data.get("database")
    if isinstance(db, dict) and isinstance(db.get("url"), str) and db["url"].startswith("sqlite:///"):
        path = db["url"].removeprefix("sqlite:///")
        if path != ":memory:" and not Path(path).expanduser().is_absolute():
            db["url"] = "sqlite:///" + str(base / path)
        elif path.startswith("~"):
            db["url"] = "sqlite:///" + str(Path(path).expanduser())
