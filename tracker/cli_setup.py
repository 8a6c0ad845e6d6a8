"""`init`: set up an account and the config without editing TOML."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.prompt import Confirm, IntPrompt, Prompt

from tracker import setup
from tracker.cli import _state, app, console, err_console
from tracker.config import ENV_CONFIG
from tracker.errors import ConfigError, TrackerError
from tracker.safe_text import plain, terminal

def _say(text: str, **options) -> None:
    """One message (rich markup; whatever came from the person through terminal()). It wraps on a
    terminal; in a pipe or a log each line stays whole, so that a path or a command is never split."""
    console.print(text, highlight=False, soft_wrap=not console.is_terminal, **options)


_CREDENTIALS = ("--password-env", "--password-command", "--keyring", "--oauth2-token-command")


@app.command()
def init(
    ctx: typer.Context,
    non_interactive: Annotated[bool, typer.Option("--non-interactive", help="Ask nothing: take every answer "
                                                  "from the options (for scripts).")] = False,
    email: Annotated[Optional[str], typer.Option(help="The mailbox's address; its domain picks the provider's "
                                                 "settings.")] = None,
    host: Annotated[Optional[str], typer.Option(help="IMAP server. Default: the provider's.")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="IMAP port. Default: the provider's, "
                                                "else 993 (implicit TLS) or 143.")] = None,
    tls: Annotated[Optional[Literal["implicit", "starttls", "none"]],
                   typer.Option(help="implicit (port 993), starttls (port 143), or none (loopback servers only). "
                                     "Default: the provider's.")] = None,
    username: Annotated[Optional[str], typer.Option(help="IMAP user name. Default: the address.")] = None,
    password_env: Annotated[Optional[str], typer.Option(help="Read the password from this environment "
                                                        "variable (it must be set for the watcher too).")] = None,
    password_command: Annotated[Optional[str], typer.Option(help="Run this command for the password (its "
                                                            "first output line), e.g. 'pass show mail/me'.")] = None,
    keyring: Annotated[bool, typer.Option("--keyring", help=f"Keep the password in the system keyring. With "
                                          f"--non-interactive the password comes from ${setup.PASSWORD_ENV}, "
                                          f"else from the first line of standard input.")] = False,
    oauth2_token_command: Annotated[Optional[str], typer.Option(help="Run this command for an OAuth2 access "
                                                                "token instead of a password (Outlook.com).")] = None,
    ca_file: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Trust this CA file "
                                                    "instead of the system's (a private server, Proton Mail "
                                                    "Bridge).")] = None,
    country: Annotated[Optional[str], typer.Option(help="The country you live in (ISO code, e.g. DE): decides "
                                                   "the data protection authority.")] = None,
    region: Annotated[Optional[str], typer.Option(help="Your German Land (e.g. BY), when --country is DE.")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="Database URL. Default: tracker.sqlite3 in the "
                                                        "user data folder.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name of this mailbox in status, logs and alerts; unique. "
                                                "Default: the address.")] = None,
    no_check: Annotated[bool, typer.Option("--no-check", help="Write the account without logging in first "
                                           "(a server not reachable from here).")] = False,
) -> None:
    """Set up a mailbox to watch: recognise the provider, test the login, write the config (run again for
    another mailbox, e.g. a family member's)."""
    path = setup.config_target(_state(ctx).config_path)
    new = setup.NewAccount(email=email or "", host=host or "", username=username or "", port=port,
                           tls=tls or "implicit", name=name, password_env=password_env,
                           password_command=password_command, keyring=keyring,
                           oauth2_token_command=oauth2_token_command, ca_file=ca_file, country=country,
                           region=region, database_url=database_url)
    if non_interactive:
        _from_flags(new, tls_given=tls is not None)
    else:
        try:
            _ask(new, path, tls_given=tls is not None)
        except EOFError:
            raise TrackerError("init needs answers: run it in a terminal, or give --non-interactive and the "
                               "options (see --help)") from None
    if new.password_env:
        _say(f"Note: {terminal(new.password_env)} must also be set where the watcher runs (cron, systemd); "
             f"the keyring or a password command reach it there by themselves.")
    if not no_check:
        _say(f"Logging in to {terminal(new.host)}:{new.port} as {terminal(new.username)}...")
    while True:
        try:
            result = setup.init_account(path, new, check=not no_check)
            break
        except TrackerError as err:
            # A private server's self-signed certificate: ask for its CA file and try again,
            # rather than lose every answer given so far.
            if non_interactive or "not trusted" not in str(err) or not sys.stdin.isatty():
                raise
            err_console.print(f"{plain(err)}", markup=False, highlight=False)
            answer = Prompt.ask("The server's certificate is not trusted. The CA or certificate file to trust "
                                "(a .pem file; empty to stop)", console=console, default="")
            if not answer.strip():
                raise
            new.ca_file = Path(answer).expanduser().resolve()
    _report(result, new, path, explicit=_state(ctx).config_path is not None)


# ---- flags ----------------------------------------------------------------------

def _from_flags(new: setup.NewAccount, tls_given: bool) -> None:
    if not new.email or "@" not in new.email:
        raise typer.BadParameter("give the mailbox's address, e.g. --email me@example.org", param_hint="--email")
    provider = setup.provider_for(new.email)
    _apply_preset(new, provider, tls_given)
    if not new.host:
        raise typer.BadParameter(f"no preset for {setup.domain_of(new.email)}: give the IMAP server's name",
                                 param_hint="--host")
    given = [flag for flag, value in zip(_CREDENTIALS, (new.password_env, new.password_command, new.keyring,
                                                        new.oauth2_token_command)) if value]
    if len(given) != 1:
        raise typer.BadParameter(f"give exactly one of {', '.join(_CREDENTIALS)}"
                                 + (f" (got {', '.join(given)})" if given else ""), param_hint="password")
    _explain(provider)
    if new.keyring:
        new.password = _password_for_keyring()


def _apply_preset(new: setup.NewAccount, provider: setup.Provider | None, tls_given: bool) -> None:
    """The provider's values where no option gave one."""
    if provider is not None:
        new.host = new.host or provider.host
        if not tls_given:
            new.tls = provider.tls
        if new.port is None and new.host == provider.host:
            new.port = provider.port
    new.username = new.username or new.email
    new.port = new.port or (993 if new.tls == "implicit" else 143)


def _password_for_keyring() -> str:
    """--non-interactive --keyring: $PRIVACY_TRACKER_PASSWORD, else standard input's first line."""
    password = os.environ.get(setup.PASSWORD_ENV)
    if not password:
        if sys.stdin.isatty():
            password = Prompt.ask("Password (hidden)", password=True, console=console)
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise typer.BadParameter(f"no password: set ${setup.PASSWORD_ENV} or give it on standard input",
                                 param_hint="--keyring")
    return password


def _explain(provider: setup.Provider | None) -> None:
    if provider is None:
        return
    _say(f"Provider: {terminal(provider.name)}.")
    for sentence in (provider.app_password_hint(), provider.note):
        if sentence:
            _say(terminal(sentence))


# ---- questions --------------------------------------------------------------------

def _ask(new: setup.NewAccount, path: Path, tls_given: bool) -> None:
    existing = setup.read_existing(path)
    _say(f"Setting up a mailbox in {terminal(path)}"
         + (f" (it has {len(existing.account_names)} already)" if existing.account_names else "") + ".")
    while "@" not in new.email:
        new.email = Prompt.ask("Your e-mail address", console=console, default=new.email or None) or ""
    provider = setup.provider_for(new.email)
    if provider is None and not new.host:
        _say(f"No preset for {terminal(setup.domain_of(new.email))}: your provider's help pages name its IMAP "
             f"server.")
    _apply_preset(new, provider, tls_given)
    _explain(provider)
    if not new.host or not Confirm.ask(f"Use {terminal(new.host)}, port {new.port}, TLS {new.tls}?",
                                       console=console, default=True):
        new.host = Prompt.ask("IMAP server", console=console, default=new.host or None)
        new.tls = Prompt.ask("TLS", console=console, choices=list(setup.TLS_MODES), default=new.tls)
        new.port = IntPrompt.ask("Port", console=console,
                                 default=new.port or (993 if new.tls == "implicit" else 143))
    new.username = Prompt.ask("IMAP user name", console=console, default=new.username)
    _ask_credential(new, provider)
    if provider is not None and provider.login == "bridge" and new.ca_file is None:
        answer = Prompt.ask("Bridge's exported certificate (a .pem file; empty for none)", console=console,
                            default="", show_default=False)
        new.ca_file = Path(answer).expanduser() if answer.strip() else None
    _ask_country(new, existing)
    while True:
        new.name = Prompt.ask("A name for this mailbox (in status and alerts)", console=console,
                              default=new.name or new.email)
        if new.name not in existing.account_names:
            break
        err_console.print(f"{plain(new.name)} is taken in {plain(path)}: choose another.", markup=False)


def _ask_credential(new: setup.NewAccount, provider: setup.Provider | None) -> None:
    if any((new.password_env, new.password_command, new.keyring, new.oauth2_token_command)):
        if new.keyring and not new.password:
            new.password = _hidden("Password (hidden; it goes to the system keyring)")
        return
    from tracker.secrets import keyring_problem

    problem = keyring_problem()
    choices = ([] if problem else ["keyring"]) + ["command", "env", "oauth2"]
    default = "oauth2" if provider is not None and provider.login == "oauth2" else choices[0]
    if problem:
        _say(f"The system keyring cannot be used: {terminal(problem)}.")
    _say("Where does the password come from? "
         + ("[bold]keyring[/]: the system keyring (asked now, hidden); " if not problem else "")
         + "[bold]command[/]: a command that prints it (e.g. pass show mail/me); [bold]env[/]: an environment "
           "variable; [bold]oauth2[/]: a command that prints an OAuth2 token.")
    how = Prompt.ask("Password from", console=console, choices=choices, default=default)
    if how == "keyring":
        new.keyring = True
        new.password = _hidden("Password (hidden)")
    elif how == "command":
        new.password_command = Prompt.ask("Command", console=console)
    elif how == "env":
        new.password_env = Prompt.ask("Environment variable", console=console, default="IMAP_PASSWORD")
    else:
        new.oauth2_token_command = Prompt.ask("Token command", console=console)


def _hidden(question: str) -> str:
    while True:
        if sys.stdin.isatty():
            password = Prompt.ask(question, password=True, console=console)
        else:  # piped in: no echo to hide
            _say(f"{question}: ", end="")
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            password = line.rstrip("\r\n")
        if password:
            return password


def _ask_country(new: setup.NewAccount, existing: setup.ExistingConfig) -> None:
    person = existing.settings.person
    while True:
        country = Prompt.ask("The country you live in (ISO code such as DE, FR, PL; decides the data protection "
                             "authority; empty to skip)", console=console,
                             default=new.country or person.country or "", show_default=bool(new.country
                                                                                             or person.country))
        region = None
        if country.strip().upper() == "DE":
            lands = setup.german_lands()
            region = Prompt.ask(f"Your Land ({', '.join(lands)})", console=console,
                                default=new.region or person.region or None)
        try:
            new.country, new.region = setup.check_country(country, region)
            return
        except ConfigError as err:
            err_console.print(plain(err).removeprefix("--country: ").removeprefix("--region: "), markup=False)


# ---- the outcome --------------------------------------------------------------------

def _report(result: setup.InitResult, new: setup.NewAccount, path: Path, explicit: bool) -> None:
    if result.check is not None:
        _say("Login works. Mails the first poll will read from Meta (or from senders pretending to be Meta):")
        for folder in result.check.folders:
            _say(f"  {terminal(folder.name)}: {folder.meta_mails}")
        if result.check.junk is None:
            _say("No spam folder found: only INBOX is read (add folders = \\[\"INBOX\", \"...\"] to the "
                 "account for another).")
    if result.keyring_backend:
        _say(f"Password kept in the system keyring ({terminal(result.keyring_backend)}): service "
             f"privacy-tracker, user {terminal(new.username)}.")
    verb = "Created" if result.created else "Updated"
    _say(f"{verb} {terminal(path)} (mode 0600): account {terminal(result.account)} added.")
    where = {"person": "in \\[person], for every mailbox without its own", "account": "for this mailbox"}
    if result.placement.where is not None:
        _say(f"Country {new.country}{', Land ' + new.region if new.region else ''}: "
             f"{where[result.placement.where]}.")
    prefix = "privacy-tracker"
    if explicit or (os.environ.get(ENV_CONFIG) is None and path != setup.default_config_path()):
        prefix += f" --config {_quoted(path)}"
    steps = ((f"{prefix} doctor", "is everything working?"),
             (f"{prefix} service install", "keep watching (systemd, launchd, or a cron line)"),
             (f"{prefix} poll --once", "read the mail now"))
    width = max(len(command) for command, _ in steps)
    _say("\nNext:")
    for command, why in steps:
        console.print(f"  {plain(command).ljust(width)}  # {why}", markup=False, highlight=False, soft_wrap=True)


def _quoted(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
