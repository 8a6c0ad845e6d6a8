"""`doctor` and `service install/status/uninstall`: is everything working, and keep it running."""

from __future__ import annotations

import shlex
import shutil
from typing import Annotated

import typer

from tracker.cli import _state, app, console
from tracker.safe_text import plain, terminal

service_app = typer.Typer(help="Keep the daemon running in the background: a systemd user service, a launchd "
                               "agent on macOS, or else a cron line.", no_args_is_help=True)
app.add_typer(service_app, name="service")

_MARKS = {"ok": "[green]ok[/]", "problem": "[bold red]PROBLEM[/]", "warning": "[yellow]warning[/]",
          "info": "[dim]info[/]"}


def _say(text: str, indent: int = 0) -> None:
    """A line that may hold paths or a command to copy: printed whole, as it is."""
    console.print(" " * indent + plain(text), markup=False, highlight=False, soft_wrap=True)


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the setup: version, config, database, each mailbox's login, alert channels, the service.

    Reads no mail and sends no alert. Exit status 1 when something is wrong.
    """
    from tracker.doctor import diagnose

    diagnosis = diagnose(_state(ctx).config_path)
    for check in diagnosis.checks:
        console.print(f"{_MARKS[check.level]}{' ' * (8 - len(check.level))}{terminal(check.topic)}: "
                      f"{terminal(check.text)}", highlight=False, soft_wrap=True)
    problems = len(diagnosis.problems)
    if problems:
        console.print(f"[bold red]{problems} problem{'s' if problems > 1 else ''}[/]: fix "
                      f"{'them' if problems > 1 else 'it'}, then run `privacy-tracker doctor` again.",
                      highlight=False)
        raise typer.Exit(1)
    console.print("No problems found.")


@service_app.command("install")
def service_install(
    ctx: typer.Context,
    allow_env: Annotated[bool, typer.Option(
        "--allow-env", help="Accept accounts with password_env: the service reads the variables from an "
                            "owner-only file beside the config, which you fill in.")] = False,
) -> None:
    """Run the daemon in the background for this config, now and after every reboot.

    A systemd user unit (a launchd agent on macOS), written and started.

    Without systemd: the cron line to add.
    """
    from tracker.service import install

    done = install(_state(ctx).settings, allow_env=allow_env)
    if done.manager == "cron":
        console.print(f"No systemd service here ({terminal(done.why_cron)}). To poll from cron instead, "
                      f"add this line with `crontab -e` (cron mails you only errors):", highlight=False)
        _say(done.cron_line)
        if shutil.which("crontab") is None:
            console.print("This machine has no crontab command: install cron first (Debian/Ubuntu: "
                          "sudo apt install cron), or keep `privacy-tracker daemon` running another way.",
                          markup=False, highlight=False)
    else:
        console.print(f"{'Replaced' if done.replaced else 'Installed'} and started: {terminal(done.path)}",
                      highlight=False, soft_wrap=True)
        _say(f"runs: {shlex.join([*done.command, '-v', 'daemon'])}", 2)
        for call in done.calls:
            _say(call, 2)
        if done.manager == "systemd":
            console.print("Its log: journalctl --user -u privacy-tracker -f. To keep it running while you are "
                          "logged out: loginctl enable-linger $USER", markup=False, highlight=False)
        else:
            console.print("Its log: ~/Library/Logs/privacy-tracker.log", markup=False, highlight=False)
    if done.env_missing:
        restart = {"systemd": "systemctl --user restart privacy-tracker",
                   "launchd": "launchctl kickstart -k gui/$(id -u)/org.privacy-tracker.daemon"}.get(done.manager)
        _say(f"Fill in {', '.join(done.env_missing)} in {done.env_file} (one NAME=value line each; the file is "
             f"owner-only)" + (f", then: {restart}" if restart else "") + ".")


@service_app.command("status")
def service_status() -> None:
    """Whether the service is installed, enabled and running (exit status 0 when it runs, else 1)."""
    from tracker.service import status

    state = status()
    if not state.installed:
        where = f" ({state.path} does not exist)" if state.path else ""
        _say(f"{state.manager}: not installed{where}" + (f"; {state.note}" if state.note else "")
             + ". `privacy-tracker service install` sets it up.")
        raise typer.Exit(1)
    if state.manager == "cron":
        _say(f"cron: {state.note}")
    elif state.enabled is None:
        _say(f"{state.manager}: installed ({state.path}); {state.note}")
    else:
        _say(f"{state.manager}: installed ({state.path}), {state.enabled}, {state.active}")
    if state.command:
        _say(f"runs: {state.command}", 2)
    if not state.running:
        raise typer.Exit(1)


@service_app.command("uninstall")
def service_uninstall(ctx: typer.Context) -> None:
    """Stop and disable the service and remove its unit (or agent); nothing else is touched."""
    from tracker.errors import ConfigError
    from tracker.service import uninstall

    try:
        settings = _state(ctx).settings
    except ConfigError:  # a broken config must not keep the service in place
        settings = None
    removed = uninstall(settings)
    if removed.path is not None:
        _say(f"Stopped, disabled and removed {removed.path}.")
        for call in removed.calls:
            _say(call, 2)
    elif not removed.cron_lines:
        _say(f"No {removed.manager} service was installed.")
    if removed.note:
        _say(removed.note)
    for line in removed.cron_lines:
        _say(f"Cron runs the tracker: remove this line with `crontab -e`: {line}")
    if removed.env_file is not None:
        _say(f"The passwords file {removed.env_file} is left in place: delete it if nothing else needs it.")
