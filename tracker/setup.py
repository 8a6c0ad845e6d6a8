"""Setting up a mailbox without editing TOML: what `privacy-tracker init` does.

1. The provider is recognised from the address (tracker/providers.toml):
   server, port, TLS, spam folder, and how it lets other programs log in.
2. The account is tested before anything is written: the login, INBOX and the
   spam folder, and how many mails the first poll would read from Meta (the
   same SEARCH the first sync sends, :func:`tracker.sync.search_criteria`).
3. The password goes to the system keyring only once the login worked.
4. The account is added to the config file as one more ``[[accounts]]`` table;
   what the file held stays as it was, comments included. The new text is
   validated as a whole before it replaces the file (mode 0600, folders 0700).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
import tomllib
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from tracker.config import (ENV_CONFIG, AccountSettings, Settings, default_config_path, find_config_file,
                            settings_from_dict)
from tracker.errors import ConfigError, SourceError

LOGINS = ("password", "app_password", "oauth2", "bridge")
TLS_MODES = ("implicit", "starttls", "none")
PASSWORD_ENV = "PRIVACY_TRACKER_PASSWORD"   # where `init --non-interactive --keyring` finds the password

HEADER = ("# privacy-tracker configuration, written by `privacy-tracker init`.\n"
          "# config.example.toml documents every key; run `privacy-tracker init` again to add a mailbox.\n")


# ---- providers ------------------------------------------------------------------

@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    domains: tuple[str, ...]
    host: str
    port: int
    tls: str
    login: str = "password"
    junk: str | None = None
    app_password_page: str | None = None
    app_password_url: str | None = None
    note: str | None = None

    def matches(self, domain: str) -> bool:
        return any(fnmatch.fnmatchcase(domain, pattern) for pattern in self.domains)

    def app_password_hint(self) -> str | None:
        """One sentence on app passwords, when this provider wants one."""
        if self.login != "app_password":
            return None
        where = f" ({self.app_password_url})" if self.app_password_url else ""
        return (f"{self.name} lets other mail programs log in only with an app password: create one on its "
                f"\"{self.app_password_page}\" page{where} and give that instead of your usual password.")


@cache
def load_providers() -> tuple[Provider, ...]:
    text = resources.files("tracker").joinpath("providers.toml").read_text(encoding="utf-8")
    return tuple(Provider(**{**entry, "domains": tuple(d.lower() for d in entry["domains"])})
                 for entry in tomllib.loads(text)["provider"])


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def provider_for(address: str) -> Provider | None:
    """The preset for ``address``'s domain, or None for a provider without one."""
    domain = domain_of(address)
    return next((p for p in load_providers() if p.matches(domain)), None) if domain else None


# ---- country and Land ---------------------------------------------------------------

def check_country(country: str | None, region: str | None) -> tuple[str | None, str | None]:
    """``country`` as an ISO 3166-1 alpha-2 code with an authority; ``region`` a German Land code.

    Returns them upper-cased (UK and EL as GB and GR); one-line ConfigError naming the option.
    """
    from tracker.complaint import load_authorities

    country = (country or "").strip().upper() or None
    region = (region or "").strip().upper() or None
    country = {"UK": "GB", "EL": "GR"}.get(country, country)
    authorities = load_authorities().values()
    if country is None:
        if region is not None:
            raise ConfigError("--region: give --country DE with it (a Land is a German state)")
        return None, None
    known = sorted({a.country_code for a in authorities})
    if country not in known:
        raise ConfigError(f"--country: {country!r} is not a country code the authority directory knows; "
                          f"known: {', '.join(known)}")
    if country != "DE":
        if region is not None:
            raise ConfigError(f"--region: only for Germany (a Land such as BY), not for {country}")
        return country, None
    lands = sorted({a.region for a in authorities if a.country_code == "DE" and a.region})
    if region is None:
        raise ConfigError(f"--region: in Germany the authority of your Land takes the complaint; give its code "
                          f"({', '.join(lands)})")
    if region not in lands:
        raise ConfigError(f"--region: {region!r} is not a German Land code; known: {', '.join(lands)}")
    return country, region


def german_lands() -> list[str]:
    from tracker.complaint import load_authorities

    return sorted({a.region for a in load_authorities().values() if a.country_code == "DE" and a.region})


# ---- where the config goes ------------------------------------------------------------

def config_target(explicit: Path | None) -> Path:
    """The file `init` writes: ``--config FILE``, else $PRIVACY_TRACKER_CONFIG, else the usual one.

    Unlike reading, a file that does not exist yet is fine: init creates it.
    """
    if explicit is not None:
        return explicit.expanduser()
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser()
    return find_config_file(None) or default_config_path()


@dataclass(frozen=True)
class ExistingConfig:
    path: Path
    text: str              # "" when the file does not exist yet
    data: dict
    settings: Settings

    @property
    def account_names(self) -> list[str]:
        return [account.name for account in self.settings.accounts]


def read_existing(path: Path) -> ExistingConfig:
    """The config as it stands. An error in it stops init: the new file must be valid as a whole."""
    if not path.exists():
        return ExistingConfig(path, "", {}, Settings())
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); fix it before adding an account") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text; fix it before adding an account") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        settings = settings_from_dict(tomllib.loads(text), source=path)
    except ConfigError as err:
        raise ConfigError(f"{err}; fix it before adding an account") from None
    return ExistingConfig(path, text, data, settings)


# ---- the account ------------------------------------------------------------------

@dataclass
class NewAccount:
    """What the person chose, by flags or answers. ``password`` only with ``keyring``."""

    email: str
    host: str
    username: str
    port: int | None = None
    tls: str = "implicit"
    name: str | None = None
    password_env: str | None = None
    password_command: str | None = None
    keyring: bool = False
    oauth2_token_command: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    country: str | None = None
    region: str | None = None
    database_url: str | None = None

    @property
    def account_name(self) -> str:
        return self.name or self.email

    def table(self) -> dict:
        """The [[accounts]] table, in the order a person reads it."""
        table: dict = {"name": self.account_name, "host": self.host,
                       "port": self.port or (993 if self.tls == "implicit" else 143), "username": self.username}
        if self.password_env:
            table["password_env"] = self.password_env
        if self.password_command:
            table["password_command"] = self.password_command
        if self.keyring:
            table["password_keyring"] = True
        if self.oauth2_token_command:
            table["oauth2_token_command"] = self.oauth2_token_command
        table["tls"] = self.tls
        if self.ca_file is not None:
            table["ca_file"] = str(self.ca_file.expanduser().resolve())
        return table


@dataclass(frozen=True)
class FolderCount:
    name: str
    meta_mails: int


@dataclass(frozen=True)
class Check:
    folders: tuple[FolderCount, ...]
    junk: str | None                  # the spam folder found, None when there is none
    write_folders: tuple[str, ...] | None  # set `folders` in the config: the server does not mark its spam folder


def check_account(account: AccountSettings, settings: Settings, junk_hint: str | None = None) -> Check:
    """Log in, find INBOX and the spam folder, count the mails the first poll would read from Meta.

    The count comes from the first sync's own SEARCH (sender mentions Meta or
    imitates it), so it is what `poll` will fetch, fakes included.
    """
    from tracker.sources.imap import INBOX, ImapConnection, ServerRefused
    from tracker.sync import search_criteria

    with ImapConnection(account) as connection:
        found = connection.default_folders()
        write_folders = None
        if len(found) == 1 and junk_hint:
            # The provider's spam folder, where the server does not mark it and its name is not a usual one.
            try:
                connection.folder_status(junk_hint)
            except ServerRefused:
                pass
            else:
                found = [INBOX, junk_hint]
                write_folders = tuple(found)
        counts = []
        for folder in found:
            try:
                connection.examine(folder)
            except ServerRefused as err:
                raise SourceError(f"account {account.name}: the folder {folder} cannot be opened: {err}") from err
            uids = connection.search(search_criteria(settings.authenticity.meta_domains, 0, account.since))
            counts.append(FolderCount(folder, len(uids)))
    return Check(tuple(counts), found[1] if len(found) > 1 else None, write_folders)


# ---- writing the file ------------------------------------------------------------------

def toml_value(value) -> str:
    """A TOML value for a string, whole number, truth value or list of strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("a value given is not valid text (a byte that is not UTF-8?)") from None
    # JSON's string escapes (\" \\ \n \t \uXXXX...) are TOML's too; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _table_header(text: str, table: str) -> re.Match | None:
    return re.search(rf"(?m)^[ \t]*\[[ \t]*{re.escape(table)}[ \t]*\][ \t]*(#.*)?(\r?\n|$)", text)


def _with_keys(text: str, data: dict, table: str, values: dict) -> str:
    """``text`` with ``values`` set in ``[table]``: under its header, or in a new table at the end."""
    values = {key: value for key, value in values.items() if key not in data.get(table, {})}
    if not values:
        return text
    lines = "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())
    if table not in data:
        return _appended(text, f"[{table}]\n{lines}")
    header = _table_header(text, table)
    if header is None:  # an inline table or dotted keys: where to add is the person's choice
        wanted = ", ".join(f"{key} = {toml_value(value)}" for key, value in values.items())
        raise ConfigError(f"{table}: add {wanted} to the [{table}] table of the config by hand "
                          f"(it is not written as a [{table}] section)")
    end = header.end()
    if not header.group(2):
        return text + "\n" + lines
    return text[:end] + lines + text[end:]


def _appended(text: str, block: str) -> str:
    if not text:
        return HEADER + "\n" + block
    if not text.endswith("\n"):
        text += "\n"
    return text + "\n" + block


@dataclass(frozen=True)
class Placement:
    """Where the country went: the [person] table, the account's own keys, or nowhere (not given)."""

    where: str | None       # "person", "account" or None


def plan_config(existing: ExistingConfig, new: NewAccount, write_folders: tuple[str, ...] | None
                ) -> tuple[str, Placement]:
    """The config's new text with the account added, and where the country went."""
    data = existing.data
    if new.account_name in existing.account_names:
        raise ConfigError(f"--name: an account named {new.account_name!r} is already in {existing.path}; "
                          f"choose another name with --name")
    if "accounts" in data and not isinstance(data["accounts"], list):
        raise ConfigError(f"{existing.path}: accounts is not a list of [[accounts]] tables; fix it first")
    table = new.table()
    if write_folders:
        table["folders"] = list(write_folders)
    person = existing.settings.person
    text = existing.text
    placement = Placement(None)
    if new.country is not None:
        first = not existing.settings.accounts and person.country is None
        if first:
            text = _with_keys(text, data, "person", {"country": new.country,
                                                     **({"region": new.region} if new.region else {})})
            placement = Placement("person")
        elif (new.country, new.region) != (person.country, person.region):
            table["country"] = new.country
            if new.region:
                table["region"] = new.region
            placement = Placement("account")
        else:
            placement = Placement("person")
    if new.database_url is not None:
        current = existing.settings.database.url if "url" in data.get("database", {}) else None
        if current is not None and current != _resolved_db_url(new.database_url, existing.path):
            raise ConfigError(f"--database-url: the config already names a database ([database] url in "
                              f"{existing.path}); change it there")
        if current is None:
            text = _with_keys(text, data, "database", {"url": new.database_url})
    block = "[[accounts]]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in table.items())
    text = _appended(text, block)
    _check_plan(existing, text, table)
    return text, placement


def _resolved_db_url(url: str, config: Path) -> str:
    return settings_from_dict({"database": {"url": url}}, source=config).database.url


def _check_plan(existing: ExistingConfig, text: str, table: dict) -> None:
    """The new text must parse, validate, and hold exactly the old accounts plus the new one."""
    try:
        data = tomllib.loads(text)
        settings = settings_from_dict(tomllib.loads(text), source=existing.path)
    except (tomllib.TOMLDecodeError, ConfigError) as err:
        raise ConfigError(f"the new account cannot be added to {existing.path}: {err}") from None
    names = [a.name for a in settings.accounts]
    if names != [*existing.account_names, table["name"]] or data["accounts"][-1].get("host") != table["host"]:
        raise ConfigError(f"the new account cannot be added to {existing.path} safely; add it by hand")


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once, mode 0600; missing folders are made 0700."""
    from tracker.store import make_private_dirs

    if path.is_symlink():
        path = path.resolve()
    make_private_dirs(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# ---- all of it -----------------------------------------------------------------

@dataclass(frozen=True)
class InitResult:
    path: Path
    created: bool            # the file is new
    account: str
    check: Check | None      # None with --no-check
    placement: Placement
    keyring_backend: str | None


def init_account(path: Path, new: NewAccount, *, check: bool = True) -> InitResult:
    """Test the account, keep its password in the keyring if asked, add it to the config file.

    Nothing is written, neither the file nor the keyring, when anything fails.
    """
    from tracker import secrets

    existing = read_existing(path)
    new.country, new.region = check_country(new.country, new.region)
    if new.database_url is not None:
        if "://" not in new.database_url:
            raise ConfigError("--database-url: must be a database URL such as sqlite:////path/to/tracker.sqlite3")
        new.database_url = _absolute_sqlite(new.database_url)
    if new.keyring:
        if not new.password:
            raise ConfigError(f"--keyring: no password given (set ${PASSWORD_ENV} or pipe it on standard input)")
        problem = secrets.keyring_problem()
        if problem is not None:
            raise ConfigError(f"--keyring: {problem}; use --password-command or --password-env instead")
    account = validated_account(new)
    plan_config(existing, new, None)  # a duplicate name or a clash with the file stops before the server is asked
    result = None
    if check:
        staged = secrets.staged(new.username, new.password) if new.keyring else nullcontext()
        try:
            with staged:
                result = check_account(account, existing.settings, (provider_for(new.email) or _NO_PROVIDER).junk)
        except (SourceError, ConfigError) as err:
            raise type(err)(f"{err} (nothing was written)") from err
    text, placement = plan_config(existing, new, result.write_folders if result else None)
    backend = None
    if new.keyring:
        secrets.store_password(new.username, new.password)
        backend = secrets.backend_name()
    write_private(path, text)
    if new.database_url is not None and new.database_url.startswith("sqlite:///") \
            and new.database_url != "sqlite:///:memory:":
        # The person named this database just now: its folder is made here, where a typo
        # later in the file would be refused rather than start an empty database.
        from tracker.store import make_private_dirs

        make_private_dirs(Path(new.database_url.removeprefix("sqlite:///")).parent)
    return InitResult(path, not existing.text, new.account_name, result, placement, backend)


def validated_account(new: NewAccount) -> AccountSettings:
    """The account on its own, its errors naming the option that set the value (``--port: ...``)."""
    try:
        return settings_from_dict({"accounts": [new.table()]}, source=None).accounts[0]
    except ConfigError as err:
        message = re.sub(r"^accounts #1\.(\w+)", lambda m: _OPTIONS.get(m.group(1), m.group(1)), str(err))
        raise ConfigError(message.replace("accounts #1: ", "")) from None


_OPTIONS = {"name": "--name", "host": "--host", "port": "--port", "username": "--username", "tls": "--tls",
            "password_env": "--password-env", "password_command": "--password-command",
            "password_keyring": "--keyring", "oauth2_token_command": "--oauth2-token-command",
            "ca_file": "--ca-file"}
_NO_PROVIDER = Provider("", "", (), "", 0, "implicit")


def _absolute_sqlite(url: str) -> str:
    """A relative SQLite path is meant from where the command runs, not from the config file."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        return "sqlite:///" + str(path if path.is_absolute() else Path.cwd() / path)
    return url
