"""Corrections by the person: `request edit/delete`, `mail show/relabel/forget`, `db upgrade`."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from tracker import corrections, report
from tracker import vocabulary as v
from tracker.cli import _state, app, console, err_console, request_app
from tracker.review import VERDICT_CATEGORIES
from tracker.safe_text import json_text, plain

mail_app = typer.Typer(help="Stored mails: show one, say what it really is, or forget it.", no_args_is_help=True)
db_app = typer.Typer(help="The database: upgrade its schema.", no_args_is_help=True)
app.add_typer(mail_app, name="mail")
app.add_typer(db_app, name="db")


def _say(text: str) -> None:
    console.print(plain(text), markup=False, highlight=False, soft_wrap=True)


def checked_fields(**typed) -> dict:
    """The typed request fields in their stored form; every problem at once in one line, exit status 2
    (as for any wrong argument), so nothing is written and the corrected command goes through."""
    try:
        return corrections.check_request_fields(**typed)
    except corrections.InvalidInput as err:
        err_console.print(f"error: {plain(err)}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from err


# ---- requests -----------------------------------------------------------------------

@request_app.command("edit")
def request_edit(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number (see `status`).")],
    address: Annotated[Optional[str], typer.Option(help="The address the request was made with.")] = None,
    platform: Annotated[Optional[str], typer.Option(help=f"{', '.join(v.PLATFORMS)}.")] = None,
    kind: Annotated[Optional[str], typer.Option(help=f"{' or '.join(v.KINDS)}.")] = None,
    country: Annotated[Optional[str], typer.Option(help="Your country (ISO code, e.g. DE): decides the "
                                                        "authority.")] = None,
    region: Annotated[Optional[str], typer.Option(help="German Land code (e.g. BY), with --country DE.")] = None,
    submitted: Annotated[Optional[str], typer.Option("--date", help="Date you submitted it (YYYY-MM-DD).")] = None,
    no_date: Annotated[bool, typer.Option("--no-date", help="Forget the submitted date: the first mail from "
                                          "Meta starts the clock.")] = False,
) -> None:
    """Correct a request: address, platform, kind, country, Land or submitted date. Kept in its timeline."""
    if submitted is not None and no_date:
        raise typer.BadParameter("give --date or --no-date, not both", param_hint="--date")
    typed = dict(address=address, platform=platform, kind=kind, country=country, region=region, submitted=submitted)
    if no_date is False and all(value is None for value in typed.values()):
        raise typer.BadParameter("say what to change: --address, --platform, --kind, --country, --region, "
                                 "--date or --no-date")
    state = _state(ctx)
    with state.db.session() as session:
        from tracker import store

        current = store.get_request(session, request_id).country
    values = checked_fields(**typed, current_country=current)
    if no_date:
        values["submitted"] = None
    edited = corrections.edit_request(state.db, request_id, values)
    if not edited.changes:
        _say(f"Request #{request_id}: nothing changed.")
        return
    _say(f"Request #{request_id} changed: {'; '.join(edited.changes)}. "
         f"State: {report.state_label(edited.state)}.")


@request_app.command("delete")
def request_delete(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number (see `status`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a request typed wrong: its timeline and complaints go; its mails stay, back on the review list."""
    from tracker import store

    state = _state(ctx)
    if not yes:
        with state.db.session() as session:
            request = store.get_request(session, request_id)
            mails = len(store.messages_of_request(session, request_id))
        _say(f"Request #{request_id}: {request.platform} {request.kind} request for {request.address}, "
             f"with {mails} mail(s). The mails stay recorded and go back to the review list.")
        typer.confirm("Delete it?", abort=True)
    deleted = corrections.delete_request(state.db, request_id)
    back = f"; mail(s) {', '.join(map(str, deleted.mails))} back on the review list" if deleted.mails else ""
    _say(f"Request #{request_id} deleted ({deleted.description}): {deleted.events} event(s), "
         f"{deleted.complaints} complaint(s){back}.")


# ---- mail ---------------------------------------------------------------------------

def _render_mail(details: dict) -> None:
    sender, request, evidence = details["from"], details["request"], details["evidence"]
    category = details["category"] + (f" ({', '.join(filter(None, [details['platform'], details['kind']]))})"
                                       if details["platform"] or details["kind"] else "")
    if evidence["path"] is None:
        check = "not kept"
    elif not evidence["present"]:
        check = "the file is MISSING"
    else:
        check = "matches the file" if evidence["matches"] else "DOES NOT MATCH the file: it changed after it arrived"
    fields = [
        ("Subject", details["subject"] or "(none)"),
        ("From", f"{sender['name']} <{sender['address']}>" if sender["name"] else f"<{sender['address']}>"),
        ("To", ", ".join(details["to"]) or "(no recipient)"),
        ("Date", report.local_time(details["date"], minutes=True) if details["date"] else "unknown"),
        ("Message-ID", f"<{details['message_id']}>" if details["message_id"] else "(none)"),
        ("Category", f"{category}, rule {details['rule'] or '-'}"),
        ("Why", details["reason"] or "-"),
        ("Authenticity", f"{details['authenticity']['verdict']} ({details['authenticity']['label']})"),
        ("Code", details["otp"]),
        ("Reference", details["reference"]),
        ("Request", f"#{request['id']} {request['address']}, {request['platform']}, {request['kind']}: "
                    f"{report.state_label(request['state'])}" if request else "none"),
        ("Error", details["error"]),
        ("Read from", details["source"]),
        ("Evidence", evidence["path"] or "-"),
        ("SHA-256", f"{evidence['sha256']} ({check})"),
    ]
    _say(f"Mail #{details['id']}")
    for label, value in fields:
        if value:
            console.print(f"{label + ':':<14}{plain(value)}", markup=False, highlight=False, soft_wrap=True)
    if details["fake"]:
        _say("This mail only pretends to come from Meta: do not click its links, reply, or enter a code from it "
             "(codes in it are masked).")
    console.print()
    if details["text"]:
        console.print(plain(details["text"], multiline=True), markup=False, highlight=False)
    else:
        _say(f"(no text: {details['text_note']})")


@mail_app.command("show")
def mail_show(
    ctx: typer.Context,
    message_id: Annotated[int, typer.Argument(help="Mail number (from `status`, `review` or `request show`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A stored mail: headers, category and why, authenticity, its request, its text, the evidence file."""
    state = _state(ctx)
    details = corrections.mail_details(state.db, state.settings, message_id)
    if as_json:
        sys.stdout.write(json_text(details, indent=2) + "\n")
    else:
        _render_mail(details)


@mail_app.command("relabel")
def mail_relabel(
    ctx: typer.Context,
    message_id: Annotated[int, typer.Argument(help="Mail number.")],
    category: Annotated[str, typer.Argument(help=f"What it really is: {', '.join(VERDICT_CATEGORIES)}.")],
    request_id: Annotated[Optional[int], typer.Option("--request", help="The request it belongs to. Default: the one "
                                                      "its recipient, platform and kind point to.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Relabel a mail that failed authentication (recorded "
                                        "as forced; nothing is learned from it).")] = False,
) -> None:
    """Fix a mail the tool got wrong: it counts as CATEGORY, its request's state and alerts follow."""
    state = _state(ctx)
    done = corrections.relabel(state.db, state.settings, message_id, category, request_id, forced=force)
    joined = (f"; request #{done.request_id} is {report.state_label(done.state)} now"
              if done.request_id is not None else "")
    _say(f"Mail #{message_id}: {done.before} {corrections.ARROW} {done.after}{joined}.")
    if done.not_learned and done.after != v.UNRELATED:
        _say(f"Nothing learned from it: {done.not_learned}.")


@mail_app.command("forget")
def mail_forget(
    ctx: typer.Context,
    message_id: Annotated[int, typer.Argument(help="Mail number.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove a stored mail, its evidence file and the events it caused (read again, it comes back)."""
    state = _state(ctx)
    if not yes:
        details = corrections.mail_details(state.db, state.settings, message_id)
        request = details["request"]
        _say(f"Mail #{message_id}: \"{details['subject']}\" from {details['from']['address']}"
             + (f", in request #{request['id']}" if request else "") + ".")
        typer.confirm("Forget it and delete its evidence file?", abort=True)
    forgotten = corrections.forget_message(state.db, message_id)
    parts = [f"Mail #{message_id} forgotten"]
    if forgotten.requests:
        parts.append(f"request(s) {', '.join(f'#{r}' for r in forgotten.requests)} derived again without it")
    if forgotten.learned:
        parts.append(f"{forgotten.learned} template(s) learned from it forgotten too")
    if forgotten.evidence_removed:
        parts.append(f"evidence file {forgotten.evidence_removed} deleted")
    elif forgotten.evidence_kept:
        parts.append(f"evidence file {forgotten.evidence_kept} kept: another stored mail has the same bytes")
    _say("; ".join(parts) + ".")
    if forgotten.evidence_problem:
        err_console.print(f"warning: {plain(forgotten.evidence_problem)}", markup=False, highlight=False,
                          soft_wrap=True)
        raise typer.Exit(1)


# ---- database -------------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Upgrade the database's schema to this version's now (a copy of the file is kept first).

    Opening the database does the same on its own; this says what it did.
    """
    from tracker import migrations

    done = migrations.upgrade_database(_state(ctx).settings.database.resolved_url())
    where = done.where
    if done.after is None:
        _say(f"No database at {where}: nothing to upgrade ([database] url). A new one is made at "
             f"schema {migrations.head()} when first used.")
    elif done.created:
        _say(f"Database {where} was empty: made at schema {done.after}.")
    elif not done.changed:
        _say(f"Database {where} is already up to date (schema {done.after}).")
    else:
        before = done.before or "of version 0.1.0 (no revision recorded)"
        kept = f"; the previous file is kept as {done.backup}" if done.backup else ""
        _say(f"Database {where} upgraded from schema {before} to {done.after}{kept}.")
