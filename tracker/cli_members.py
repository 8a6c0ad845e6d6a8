"""The organisation's commands: `member add|list|remove` (the people it acts for, known by the
address they forward from) and `export` (every request with its timeline)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from tracker.cli import (CountryOption, MemberOption, PlatformOption, StateOption, _request_filter, _state, _today,
                         app, console, err_console)
from tracker.safe_text import json_text, plain

member_app = typer.Typer(help="Members of an organisation: the addresses that forward Meta's mails to an "
                              "\\[\\[intake]] mailbox, and where each member lives.", no_args_is_help=True)
app.add_typer(member_app, name="member")


def _checked(address: str, country: str | None = None, region: str | None = None) -> dict:
    """The typed values in their stored form; every problem at once in one line, exit status 2."""
    from tracker import corrections

    try:
        return corrections.check_request_fields(address=address, country=country, region=region)
    except corrections.InvalidInput as err:
        text = "; ".join(problem.replace("--address:", "ADDRESS:", 1) for problem in err.problems)
        err_console.print(f"error: {plain(text)}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from err


@member_app.command("add")
def member_add(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The address the member forwards Meta's mails from.")],
    name: Annotated[str, typer.Option(help="The member's name, as their acknowledgements and `member list` show it.")],
    country: Annotated[str, typer.Option(help="Where the member lives (ISO code, e.g. DE): decides the "
                                              "authority of their complaints.")],
    region: Annotated[Optional[str], typer.Option(help="German Land code (e.g. BY), with --country DE.")] = None,
) -> None:
    """Register a member: their forwarded mails become requests for their address, with their country and Land."""
    from tracker.intake import add_member

    if not name.strip() or any(ord(ch) < 32 for ch in name):
        raise typer.BadParameter("must be a name on one line", param_hint="--name")
    values = _checked(address, country, region)
    with _state(ctx).db.write() as session:
        member = add_member(session, values["address"], name, values["country"], values.get("region"))
        shown = f"{member.name} <{member.address}>, {member.country}" + (f"-{member.region}" if member.region else "")
    console.print(f"Member added: {plain(shown)}.", markup=False, highlight=False, soft_wrap=True)


@member_app.command("list")
def member_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every member: address, name, country and Land, since when, and how many requests their address has."""
    from tracker.intake import member_list as members

    with _state(ctx).db.session() as session:
        rows = members(session)
    if as_json:
        sys.stdout.write(json_text({"members": rows}, indent=2) + "\n")
        return
    if not rows:
        console.print("No members yet: `privacy-tracker member add ADDRESS --name NAME --country CC`.",
                      markup=False, highlight=False)
        return
    width = max(len(plain(row["address"])) for row in rows)
    for row in rows:
        where = row["country"] + (f"-{row['region']}" if row["region"] else "")
        requests = f"{row['requests']} request{'' if row['requests'] == 1 else 's'}"
        console.print(f"{plain(row['address']):<{width}}  {plain(row['name'])}, {plain(where)}, since "
                      f"{row['since']}, {requests}", markup=False, highlight=False, soft_wrap=True)


@member_app.command("remove")
def member_remove(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The member's address.")],
) -> None:
    """Forget a member. Their requests and mails stay; later forwards from the address are held for review."""
    from tracker.intake import remove_member

    with _state(ctx).db.write() as session:
        member = remove_member(session, address)
        shown = f"{member.name} <{member.address}>"
    console.print(f"Member removed: {plain(shown)}. Their requests stay.", markup=False, highlight=False,
                  soft_wrap=True)


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"


@app.command("export")
def export(
    ctx: typer.Context,
    form: Annotated[ExportFormat, typer.Option("--format", help="csv: one row per event, the request's columns "
                                               "repeated (for a spreadsheet); json: a list of requests, each with "
                                               "its events.", case_sensitive=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="File to write (mode 0600: it holds personal data). "
                                                "Default: standard output.", dir_okay=False)] = None,
    member: MemberOption = None,
    state_name: StateOption = None,
    platform: PlatformOption = None,
    country: CountryOption = None,
) -> None:
    """Every request with its timeline, for a spreadsheet or another program; the filters of `status`.

    One-time codes are never exported; CSV cells that a spreadsheet would run as a formula are made text.
    """
    from tracker.export import export_records, render, write_private

    state = _state(ctx)
    only = _request_filter(state, member=member, state_name=state_name, platform=platform, country=country)
    with state.db.session() as session:
        records = export_records(session, _today(), only)
    text = render(records, form.value)
    if out is None:
        sys.stdout.write(text)
        return
    write_private(out, text)
    events = sum(len(record["events"]) for record in records)
    console.print(f"{len(records)} request{'' if len(records) == 1 else 's'} with {events} "
                  f"event{'' if events == 1 else 's'} written to {plain(out)} ({form.value.upper()}).",
                  markup=False, highlight=False, soft_wrap=True)
