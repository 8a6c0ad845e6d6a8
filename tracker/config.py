"""Settings: read the TOML file once, validate it, hand out frozen objects.

Lookup order for the file: ``--config FILE``, then ``$PRIVACY_TRACKER_CONFIG``,
then ``config.toml`` in the platform's user config folder. No file at all means
defaults: a SQLite database in the user data folder and no accounts.
Secrets are never stored here: only the name of the variable or command that
gives them.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

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


# Shapes every value must have. Numbers are strict (``port = true`` or ``port = "993"`` is
# refused, not read as 1 or 993) and bounded on both sides (1e300 minutes overflows a
# timedelta); errors are worded by _message() below, never pydantic's own words.
def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be one line without control characters")
    return value


def _database_url(value: str | None) -> str | None:
    if value is not None and "://" not in value:
        raise ValueError("must be a database URL such as sqlite:////path/to/tracker.sqlite3")
    return value


def _sane_since(value: date | None) -> date | None:
    from tracker.dates import EARLIEST, latest_typed_day

    if value is not None and not EARLIEST <= value <= latest_typed_day():
        raise ValueError(f"must be a date from {EARLIEST.isoformat()} to today, not {value.isoformat()}")
    return value


Text = Annotated[str, Field(strict=True), AfterValidator(_non_blank)]


class DatabaseSettings(_Frozen):
    url: Annotated[Text | None, AfterValidator(_database_url)] = None  # sqlite:///path; None: the user data folder

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite:///{default_data_dir() / 'tracker.sqlite3'}"


class EvidenceSettings(_Frozen):
    keep_raw: bool = Field(default=True, strict=True)  # keep every Meta mail's original bytes as .eml evidence
    dir: Path | None = None     # None: "evidence" beside the database
    # Mail larger than this (MB) is recorded by its headers and SHA-256, its body not read;
    # one from Meta, or pretending to be, is kept as evidence and listed for review.
    max_mail_mb: int = Field(default=25, ge=1, le=1024, strict=True)


class RulesSettings(_Frozen):
    file: Path | None = None    # user rules: add rules, override default rules by id


class AuthenticitySettings(_Frozen):
    meta_domains: tuple[Text, ...] = Field(default=DEFAULT_META_DOMAINS, min_length=1)
    trusted_authserv_id: Text | None = None  # only trust Authentication-Results from this server
    unverified: Literal["trust", "review"] = "review"  # Meta mail without Authentication-Results

    @field_validator("meta_domains")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        domains = tuple(d.strip().lower().lstrip(".") for d in value if d.strip())
        for domain in domains:
            if "." not in domain or any(c.isspace() or c in "@/:" for c in domain):
                raise ValueError(f"{domain!r} is not a domain name (such as facebookmail.com)")
        return domains


class AccountSettings(_Frozen):
    name: Text
    host: Text
    port: int | None = Field(default=None, ge=1, le=65535, strict=True)  # default: 993 for implicit TLS, 143 otherwise
    username: Text
    password_env: Text | None = None
    password_command: Text | None = None
    password_keyring: bool = Field(default=False, strict=True)  # the system keyring, service "privacy-tracker", this username
    oauth2_token_command: Text | None = None
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    ca_file: Path | None = None
    folders: tuple[Text, ...] | None = Field(default=None, min_length=1)  # None: INBOX and the server's \Junk folder
    since: Annotated[date | None, AfterValidator(_sane_since)] = None  # YYYY-MM-DD: mail before it is ignored
    idle: bool = Field(default=False, strict=True)
    timeout_seconds: float = Field(default=60.0, ge=1, le=3600, strict=True)
    # Where the person whose mailbox this is lives, when it differs from [person] (a family member).
    country: Text | None = None          # ISO 3166-1 alpha-2, e.g. "DE": decides the authority
    region: Text | None = None           # German Land code (e.g. "BY") for the state authorities

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)

    @model_validator(mode="after")
    def _one_credential(self) -> "AccountSettings":
        given = [key for key in ("password_env", "password_command", "password_keyring", "oauth2_token_command")
                 if getattr(self, key)]
        if len(given) != 1:
            found = f"found {', '.join(given)}" if given else "none is set"
            raise ValueError(f"set exactly one of password_env, password_command, password_keyring = true, "
                             f"oauth2_token_command ({found})")
        return self


class IntakeSettings(AccountSettings):
    """An organisation's intake mailbox: members forward Meta's mails to it (tracker/intake.py)."""

    acknowledge: bool = Field(default=False, strict=True)  # an alert addressed to the member for each forward


class DaemonSettings(_Frozen):
    interval_minutes: float = Field(default=10.0, ge=1, le=7 * 24 * 60, strict=True)  # up to a week
    jitter_seconds: int = Field(default=60, ge=0, le=3600, strict=True)
    # How long a worker's claim on a mailbox folder (and on an alert it is sending) lasts without
    # renewal: a killed worker's folders are taken over by the others after this.
    lease_seconds: int = Field(default=300, ge=5, le=3600, strict=True)


class AlertSettings(_Frozen):
    urls: tuple[Text, ...] = ()          # apprise URLs: mailto://, ntfy://, json://...
    private_urls: tuple[Text, ...] = ()  # channels the person marks private: may receive codes
    send_codes: bool = Field(default=False, strict=True)  # one-time codes in alerts: off unless asked for
    max_attempts: int = Field(default=8, ge=1, le=100, strict=True)


class PersonSettings(_Frozen):
    """Who the tracker works for: decides the authority, the letters' and alerts' language."""

    name: Text | None = None             # signs complaint letters
    country: Text | None = None          # ISO 3166-1 alpha-2, e.g. "DE"
    region: Text | None = None           # German Land code (e.g. "BY")
    language: Text | None = None         # en, de, fr, it, es, nl, pl; default: the authority's, else en


class CalendarSettings(_Frozen):
    file: Path | None = None             # the daemon keeps this iCalendar file up to date


class Settings(_Frozen):
    person: PersonSettings = PersonSettings()
    calendar: CalendarSettings = CalendarSettings()
    database: DatabaseSettings = DatabaseSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    rules: RulesSettings = RulesSettings()
    authenticity: AuthenticitySettings = AuthenticitySettings()
    accounts: tuple[AccountSettings, ...] = ()
    intake: tuple[IntakeSettings, ...] = ()
    daemon: DaemonSettings = DaemonSettings()
    alerts: AlertSettings = AlertSettings()
    source: Path | None = Field(default=None, exclude=True)  # the file these came from

    @property
    def mailboxes(self) -> tuple[AccountSettings, ...]:
        """Every IMAP mailbox to poll: the [[accounts]], then the organisation's [[intake]] mailboxes."""
        return (*self.accounts, *self.intake)

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


def locate_config_file(explicit: Path | None) -> tuple[Path | None, str]:
    """The config file in use and how it was found (for `doctor`); errors as ``find_config_file``."""
    path = find_config_file(explicit)
    if explicit is not None:
        return path, "given with --config"
    if os.environ.get(ENV_CONFIG):
        return path, f"from ${ENV_CONFIG}"
    if path is not None:
        return path, "found in the user config folder"
    return None, f"none: no --config, no ${ENV_CONFIG}, no {default_config_path()}; defaults are used"


def _key_of(loc: tuple) -> str:
    """``('accounts', 1, 'port')`` -> ``accounts #2.port``: positions counted from 1, as a person counts tables."""
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f" #{part + 1}"
        elif "[" not in str(part):  # pydantic's own steps ("function-after[...]") are not keys
            key += f".{part}" if key else str(part)
    return key or "(top level)"


def _model_of(annotation) -> type[BaseModel] | None:
    """The settings table inside ``annotation`` (``AccountSettings`` in ``tuple[AccountSettings, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_of(argument)
        if found is not None:
            return found
    return None


def _range_of(loc: tuple) -> str:
    """What the setting at ``loc`` allows, from its bounds: "must be from 1 to 65535"."""
    model: type[BaseModel] | None = Settings
    field = None
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None, None
        model = _model_of(field.annotation)
    bounds = {}
    for constraint in getattr(field, "metadata", ()):
        for name in ("ge", "gt", "le", "lt"):
            if getattr(constraint, name, None) is not None:
                bounds[name] = _number(getattr(constraint, name))
    low = f"from {bounds['ge']}" if "ge" in bounds else f"more than {bounds['gt']}" if "gt" in bounds else None
    high = f"to {bounds['le']}" if "le" in bounds else f"less than {bounds['lt']}" if "lt" in bounds else None
    if low and high:
        return f"must be {low} {high}".replace("more than ", "over ").replace(" to less than ", " and under ")
    if low:
        return f"must be at least {bounds['ge']}" if "ge" in bounds else f"must be {low}"
    if high:
        return f"must be at most {bounds['le']}" if "le" in bounds else f"must be {high}"
    return "is out of range"


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shown(value) -> str:
    """A wrong number or truth value as TOML writes it; other values are not repeated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(value)
    return ""  # a string may be a URL with a password in it: never repeated


def _shown_text(kind: str, value) -> str:
    """A short string is quoted only where it is a choice or a number in quotes, never a URL or a name."""
    if isinstance(value, str) and len(value) <= 40 and (kind == "literal_error" or kind.startswith(
            ("int_", "float_", "bool_"))):
        return repr(value)
    return _shown(value)


_TYPE_WORDS = {
    "int_type": "must be a whole number", "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number", "float_parsing": "must be a number", "finite_number": "must be a finite number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "string_type": "must be a string in quotes",
    "tuple_type": "must be a list, such as [\"a\", \"b\"]", "list_type": "must be a list, such as [\"a\", \"b\"]",
    "path_type": "must be a path in quotes",
    "date_type": "must be a date (YYYY-MM-DD)", "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_inexact": "must be a date (YYYY-MM-DD) without a time",
}


# Keys people write for a password; the answer is where a password goes instead.
_PASSWORD_KEYS = frozenset({"password", "passwd", "pass", "pwd", "app_password", "imap_password"})


def _table_at(loc: tuple) -> type[BaseModel] | None:
    """The settings table that ``loc`` points into (``Settings`` for the top level)."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part)) if model is not None else None
        if field is None:
            return None
        model = _model_of(field.annotation)
    return model


def _table_name(key: str) -> str:
    return f"[[{key}]]" if key in ("accounts", "intake") else f"[{key}]"


def _unknown_key(loc: tuple, value) -> str:
    """``accounts #1: unknown key 'passwrod_env' – did you mean 'password_env'?``, or where the key belongs."""
    key, where = str(loc[-1]), _key_of(loc[:-1]) if loc[:-1] else ""
    prefix = f"{where}: " if where else ""
    model = _table_at(loc[:-1])
    if model in (AccountSettings, IntakeSettings) and key.lower() in _PASSWORD_KEYS:
        return (f"{prefix}{key} is never read from the config file, where it would lie in plain text: keep the "
                f"password in the system keyring with `privacy-tracker init` (password_keyring = true), or name "
                f"an environment variable (password_env = \"VAR\") or a command that prints it "
                f"(password_command = \"pass show mail/me\")")
    known = [name for name in (model.model_fields if model else ()) if name != "source"]
    tables = isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)
    table = model is Settings and (isinstance(value, dict) or tables)
    what = (f"unknown table [[{key}]]" if table and tables else f"unknown table [{key}]" if table
            else f"unknown key '{key}'")
    homes = [name for name, field in Settings.model_fields.items()
             if (sub := _model_of(field.annotation)) is not None and sub is not model and key in sub.model_fields]
    if "accounts" in homes and "intake" in homes:  # an intake table takes every account key: name the usual one
        homes.remove("intake")
    if homes and not table:
        places = " or ".join(f"an {_table_name(home)} table" if home in ("accounts", "intake") else f"[{home}]"
                             for home in homes)
        return f"{prefix}{what} – it belongs in {places}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"{prefix}{what} – did you mean {_table_name(close[0]) if table else repr(close[0])}?"
    if model is not Settings and len(loc) == 2 and len(known) <= 6:  # a small table: all it takes fits
        return f"{prefix}{what} – [{loc[0]}] takes {', '.join(known)}"
    return f"{prefix}{what} (not a setting; config.example.toml lists them all)"


def _message(error: dict) -> str:
    """One pydantic error as ``key: what is wrong``, in the tracker's words."""
    loc, kind, ctx, value = tuple(error["loc"]), error["type"], error.get("ctx") or {}, error.get("input")
    keys = [part for part in loc if isinstance(part, str) and "[" not in part]
    if kind == "missing":
        text = "is required"
    elif kind == "extra_forbidden":
        return _unknown_key(loc, value)
    elif kind in ("tuple_type", "list_type") and keys in (["accounts"], ["intake"]) and isinstance(value, dict):
        text = (f"written as [{keys[0]}] (one table), but each mailbox needs a table of its own: write "
                f"[[{keys[0]}]], with two brackets, above each one")
    elif kind in ("tuple_type", "list_type") and keys in (["accounts"], ["intake"]):
        text = f"must be a list of [[{keys[0]}]] tables"
    elif kind in ("model_type", "model_attributes_type", "dict_type") and isinstance(value, list) and loc == (keys[0],):
        text = f"written as [[{keys[0]}]] (a list of tables), but it is one table: write [{keys[0]}], with one bracket"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = (f"must be an [[{keys[0]}]] table" if keys in (["accounts"], ["intake"])
                else f"must be a [{keys[0]}] table" if len(keys) == 1 else "must be a table")
    elif kind == "literal_error":
        text = f"must be {ctx.get('expected', 'one of the documented values')}"
    elif kind == "too_short":
        text = "must not be empty" if ctx.get("min_length") == 1 else f"needs at least {ctx.get('min_length')} entries"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        text = _range_of(loc)
    elif kind == "value_error":
        text = str(ctx.get("error") or error["msg"]).removeprefix("Value error, ")
    elif kind in _TYPE_WORDS:
        text = _TYPE_WORDS[kind]
    else:  # a shape not foreseen: pydantic's message, in our tone
        text = error["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    shown = _shown_text(kind, value)
    if shown and kind not in ("missing", "extra_forbidden", "value_error") and not isinstance(value, (dict, list)):
        text += f", not {shown}"
    return f"{_key_of(loc)}: {text}"


def _error(message: str, source: Path | None) -> ConfigError:
    return ConfigError(f"{message} (in {source})" if source else message)


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
        raise _error("unknown key 'source' (not a setting; config.example.toml lists them all)", source)
    _resolve_paths(data, base)
    try:
        settings = Settings(**data, source=source)
    except ValidationError as err:
        # One line; pydantic's report is not shown. A password written in the file is named first.
        errors = err.errors()
        shown = next((e for e in errors if e["type"] == "extra_forbidden" and str(e["loc"][-1]).lower()
                      in _PASSWORD_KEYS), errors[0])
        raise _error(_message(shown), source) from None
    # An intake mailbox is an account too (its Account row is found by name): one name space for both.
    tables = [("accounts", position, account) for position, account in enumerate(settings.accounts, 1)]
    tables += [("intake", position, account) for position, account in enumerate(settings.intake, 1)]
    names = [account.name for _, _, account in tables]
    for index, (table, position, account) in enumerate(tables):
        if account.name in names[:index]:
            raise _error(f"{table} #{position}.name: duplicate account name {account.name!r}", source)
    for table, position, account in tables:
        if account.tls == "none" and account.host not in ("127.0.0.1", "::1", "localhost"):
            raise _error(f"{table} #{position}.tls: 'none' is only allowed for loopback hosts, "
                         f"not {account.host!r}", source)
    return settings


def _resolve_paths(data: dict, base: Path) -> None:
    """Relative paths in the file are relative to the file, not to the working directory."""
    def fix(table: dict | None, key: str) -> None:
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = str((base / Path(table[key]).expanduser()))

    fix(data.get("rules"), "file")
    fix(data.get("evidence"), "dir")
    fix(data.get("calendar"), "file")
    for key in ("accounts", "intake"):
        accounts = data.get(key)
        for account in accounts if isinstance(accounts, list) else ():  # another shape: validation names it
            fix(account, "ca_file")
    db = data.get("database")
    if isinstance(db, dict) and isinstance(db.get("url"), str) and db["url"].startswith("sqlite:///"):
        path = db["url"].removeprefix("sqlite:///")
        if path != ":memory:" and not Path(path).expanduser().is_absolute():
            db["url"] = "sqlite:///" + str(base / path)
        elif path.startswith("~"):
            db["url"] = "sqlite:///" + str(Path(path).expanduser())
