"""The `privacy-tracker` command: thin Typer commands over the library.

Each command parses its arguments, calls one core function, and renders the
result. Errors the tracker raises on purpose become one line on stderr and
exit status 1; wrong arguments exit with 2.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from tracker import __version__, report, store
from tracker import vocabulary as v
from tracker.config import Settings, load_settings, settings_from_dict
from tracker.errors import ConfigError, TrackerError
from tracker.safe_text import json_text, plain, terminal

# Mail text reaches these consoles only through safe_text (terminal() where markup
# is on, plain() where it is off). No emoji codes: ":name:" in a subject stays as written.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
log = logging.getLogger("tracker")


class TrackerGroup(TyperGroup):
    """Turns the tracker's own errors into one line on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TrackerError as err:
            kind = "config error" if isinstance(err, ConfigError) else "error"
            err_console.print(f"{kind}: {plain(err)}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from err
        except click.ClickException as err:
            # Wrong arguments quote them ("Path '...' does not exist."): a file name may hold escape codes.
            err.message = plain(err.message)
            raise
        except (click.exceptions.Exit, click.exceptions.Abort, typer.Exit, typer.Abort):
            raise
        except Exception as err:  # a full disk is one line wherever it strikes; anything else is a bug
            from tracker.ingest import disk_full_error

            full = disk_full_error(err, "to the database")
            if full is None:
                raise
            err_console.print(f"error: {plain(full)}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from err


app = typer.Typer(cls=TrackerGroup, help="Track GDPR objections and data requests to Meta from your mailbox.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
request_app = typer.Typer(help="Requests: add one by hand, show its timeline, add notes.", no_args_is_help=True)
rules_app = typer.Typer(help="Pattern rules: see which rule matches a mail and why.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts: test the channels, send what waits.", no_args_is_help=True)
complaint_app = typer.Typer(help="Complaints to a data protection authority: draft one, record its filing.",
                            no_args_is_help=True)
app.add_typer(request_app, name="request")
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(complaint_app, name="complaint")


class State:
    """What the global options chose; settings and the database open on first use."""

    def __init__(self, config: Path | None):
        self.config_path = config
        self._settings: Settings | None = None
        self._db: store.Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def db(self) -> store.Store:
        if self._db is None:
            self._db = store.Store(self.settings.database.resolved_url())
        return self._db


def _state(ctx: typer.Context) -> State:
    return ctx.find_root().obj


def configure_logging(verbose: int, as_json: bool = False) -> None:
    from tracker.logs import configure
    configure(verbose, as_json)


def _print_version(value: bool) -> None:
    if value:
        console.print(__version__)
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Config file (TOML). "
                      "Default: $PRIVACY_TRACKER_CONFIG, else the user config folder.")] = None,
    # A counted flag takes no value: no type in the help (typer would show "<int>", which reads as `-v N`).
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, metavar="", show_default=False,
                                         help="More log output; repeat it: -v info, -vv debug, -vvv debug of "
                                              "the libraries too (never mail content).")] = 0,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log as JSON lines on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          is_eager=True, callback=_print_version)] = False,
) -> None:
    configure_logging(verbose, log_json)
    ctx.obj = State(config)


# ---- classify / ingest / status ---------------------------------------------

def _classification_record(item, mail, result) -> dict:
    return {
        "path": item.label,
        "category": result.category,
        "platform": result.platform,
        "kind": result.kind,
        "otp": result.otp,
        "authenticated": result.authenticated,
        "rule": result.rule,
        "error": "; ".join(filter(None, [item.error, mail.error])) or None,
        "subject": mail.subject,
        "from": mail.sender_address,
        "to": mail.recipient,
        "date": mail.date.isoformat() if mail.date else None,
        "reference": result.reference,
        "authenticity": result.authenticity,
        "reason": result.reason,
    }


@app.command()
def classify(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(exists=True, help=".eml files, folders of them, Maildir folders or mbox files.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per message per line.")] = False,
) -> None:
    """Classify mail files without touching any database."""
    from tracker.ingest import classify_raw
    from tracker.rules.engine import load_rules
    from tracker.sources.local import LocalSource

    settings = _state(ctx).settings
    rules = load_rules(settings.rules.file)
    for item in LocalSource(paths).messages():
        mail, result = classify_raw(item.raw, rules, settings)
        record = _classification_record(item, mail, result)
        if as_json:
            sys.stdout.write(json_text(record) + "\n")
        else:
            shown = {key: terminal(value) for key, value in record.items()}
            otp = f"  code {shown['otp']}" if record["otp"] else ""
            error = f"  [red]error: {shown['error']}[/]" if record["error"] else ""
            console.print(f"{shown['path']}: [bold]{shown['category']}[/] "
                          f"{shown['platform']} {shown['kind']} "
                          f"(rule {terminal(record['rule'] or '-')}, {shown['authenticity']}){otp}{error}",
                          highlight=False)


def _ingest_paths(state: State, paths: list[Path]):
    from tracker.ingest import Ingestor
    from tracker.sources.local import LocalSource

    stats = Ingestor(state.db, state.settings).ingest(LocalSource(paths))
    _deliver_alerts(state)
    return stats


def _run_checks(state: State) -> None:
    """Queue what time alone causes; a date stored before dates were range-checked (year 9999)
    overflows a deadline: one warning, and `status` still shows everything else."""
    from tracker.alerts import run_checks

    from tracker.ingest import disk_full_error

    try:
        run_checks(state.db, state.settings)
    except (OverflowError, ValueError) as err:
        log.debug("deadline checks failed", exc_info=True)
        err_console.print(f"warning: deadline alerts not checked: a stored date is out of range ({plain(err)}); "
                          f"`status` flags its request with 'date out of range'",
                          markup=False, highlight=False, soft_wrap=True)
    except Exception as err:  # a full disk: what is recorded can still be shown
        full = disk_full_error(err, "to the database")
        if full is None:
            raise
        err_console.print(f"warning: deadline alerts not checked: {plain(full)}",
                          markup=False, highlight=False, soft_wrap=True)


def _deliver_alerts(state: State) -> None:
    """Queue what time alone causes (overdue, silent authority), then send what the outbox holds."""
    from tracker.alerts import send_pending

    _run_checks(state)
    send_pending(state.db, state.settings)


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(exists=True, help=".eml files, folders of them, Maildir folders or mbox files.")],
) -> None:
    """Record mail files in the database (each mail once, however often it is ingested)."""
    stats = _ingest_paths(_state(ctx), paths)
    categories = ", ".join(f"{n} {c}" for c, n in sorted(stats.categories.items()))
    console.print(f"{stats.new} new, {stats.duplicates} already known, {stats.errors} with errors"
                  + (f" ({categories})" if categories else ""))


def _today() -> date:
    return datetime.now(timezone.utc).date()


def _print_status(state: State, as_json: bool) -> None:
    from tracker.status import build_status

    _run_checks(state)  # so that an overdue request shows its alert; sending is the daemon's
    with state.db.session() as session:
        data = build_status(session, _today())
    if as_json:
        sys.stdout.write(json_text(data, indent=2) + "\n")
    else:
        report.render_status(console, data)


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Every request with its state and deadline; mails to review; mailbox health; alerts."""
    _print_status(_state(ctx), as_json)


def bundled_sample_mail() -> Path:
    return Path(__file__).parent / "sample_mail"


@app.command()
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo database and print its path.")] = False,
) -> None:
    """Ingest the bundled sample mail into a throwaway database and print the status report."""
    folder = Path(tempfile.mkdtemp(prefix="privacy-tracker-demo-"))
    try:
        settings = settings_from_dict({"database": {"url": f"sqlite:///{folder / 'demo.sqlite3'}"},
                                       "evidence": {"dir": str(folder / "evidence")}})
        state = State(None)
        state._settings = settings
        stats = _ingest_paths(state, [bundled_sample_mail()])
        console.print(f"Demo: ingested {stats.new} sample mails from {terminal(bundled_sample_mail())} "
                      f"({stats.errors} damaged, recorded with their error).\n", soft_wrap=not console.is_terminal)
        _print_status(state, as_json=False)
        state.db.dispose()
        if keep:
            console.print(f"\nDemo database: {terminal(folder / 'demo.sqlite3')}")
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


@app.command()
def reviewed(
    ctx: typer.Context,
    message_ids: Annotated[list[int], typer.Argument(help="Numbers from the 'Mails to review' list of `status`.")],
) -> None:
    """Take mails you have looked at off the review list (the mails stay recorded)."""
    with _state(ctx).db.session() as session:
        done = store.mark_reviewed(session, message_ids)
    missing = sorted(set(message_ids) - set(done))
    if done:
        console.print(f"Reviewed: {', '.join(map(str, done))}.")
    if missing:
        err_console.print(f"not on the review list: {', '.join(map(str, missing))}", markup=False)
        raise typer.Exit(1)


# ---- requests ---------------------------------------------------------------

def _parse_day(value: str | None, option: str) -> date | None:
    """A date typed on the command line: YYYY-MM-DD, from 1990 to today; else one line and exit status 2."""
    from tracker.dates import typed_day_problem

    if value is None:
        return None
    try:
        day = date.fromisoformat(value) if len(value) == 10 else None  # not 20250131 or 2025-W05-1
    except ValueError:
        day = None
    problem = f"{value!r} is not a date (YYYY-MM-DD)" if day is None else typed_day_problem(day)
    if problem is not None:
        err_console.print(f"error: {option}: {plain(problem)}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    return day


@request_app.command("add")
def request_add(
    ctx: typer.Context,
    address: Annotated[str, typer.Option(help="The address the request was made with.")],
    platform: Annotated[str, typer.Option(help="facebook or instagram.")],
    kind: Annotated[str, typer.Option(help="ai_objection or third_party_data.")] = v.DEFAULT_KIND,
    country: Annotated[Optional[str], typer.Option(help="Your country (ISO code, e.g. DE): decides the authority.")] = None,
    region: Annotated[Optional[str], typer.Option(help="German state code (e.g. BY) for the state authority.")] = None,
    submitted: Annotated[Optional[str], typer.Option("--date", help="Date you submitted it (YYYY-MM-DD).")] = None,
    notes: Annotated[str, typer.Option(help="Free text.")] = "",
) -> None:
    """Record a request you submitted by hand."""
    if platform not in v.PLATFORMS:
        raise typer.BadParameter(f"must be one of {', '.join(v.PLATFORMS)}", param_hint="--platform")
    if kind not in v.KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(v.KINDS)}", param_hint="--kind")
    day = _parse_day(submitted, "--date")
    with _state(ctx).db.session() as session:
        request = store.add_request(session, address, platform, kind, country=country and country.upper(),
                                    region=region and region.upper(), submitted=day, notes=notes)
        console.print(f"Request #{request.id} added: {terminal(request.address)}, {platform}, {kind}, "
                      f"state: {report.state_label(request.state)}.", soft_wrap=not console.is_terminal)


@request_app.command("show")
def request_show(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number (see `status`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A request's timeline: every mail and event, in date order."""
    from tracker.status import request_summary

    with _state(ctx).db.session() as session:
        request = store.get_request(session, request_id)
        summary = request_summary(session, request, _today())
        messages = {m.id: m for m in store.messages_of_request(session, request_id)}
        events = []
        for e in sorted(store.events_of(session, request_id), key=lambda e: (e.occurred_at, e.id)):
            message = messages.get(e.message_id)
            detail = e.detail
            if message is not None and message.otp and e.kind == v.OTP:
                detail += f" (code {message.otp})"
            events.append({"date": store.utc(e.occurred_at).isoformat(), "kind": e.kind, "detail": detail,
                           "message": e.message_id})
        summary["notes"] = request.notes
    if as_json:
        sys.stdout.write(json_text({**summary, "events": events}, indent=2) + "\n")
    else:
        report.render_timeline(console, summary, events)
        if summary["notes"]:
            console.print(f"Notes: {plain(summary['notes'], multiline=True)}", markup=False, highlight=False)


@request_app.command("note")
def request_note(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number.")],
    text: Annotated[str, typer.Argument(help="The note.")],
) -> None:
    """Add a note to a request's timeline."""
    from tracker.lifecycle import EVENT_NOTE

    with _state(ctx).db.session() as session:
        request = store.get_request(session, request_id)
        store.add_event(session, request, EVENT_NOTE, datetime.now(timezone.utc), detail=text)
        request.notes = "\n".join(filter(None, [request.notes, text]))
        session.add(request)
    console.print(f"Note added to request #{request_id}.")


# ---- rules ------------------------------------------------------------------

@rules_app.command("test")
def rules_test(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(exists=True, help="Mail files to explain.")],
) -> None:
    """Which rule matched each mail, on which text, and why the others did not."""
    from tracker.parse import parse_mail
    from tracker.rules.engine import explain, load_rules
    from tracker.sources.local import LocalSource

    settings = _state(ctx).settings
    rules = load_rules(settings.rules.file)
    for item in LocalSource(files).messages():
        mail = parse_mail(item.raw)
        console.rule(terminal(item.label))
        if item.error or mail.error:
            console.print(f"error: {plain(item.error or mail.error)}", markup=False, highlight=False)
        # to_text() quotes the mail (subject, sender, matched text): its lines are kept, its control codes not.
        console.print(plain(explain(mail, rules, settings.authenticity).to_text(), multiline=True),
                      markup=False, highlight=False)


# ---- deadlines, alerts, complaints -------------------------------------------

@request_app.command("extend")
def request_extend(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number.")],
    announced: Annotated[Optional[str], typer.Option("--date", help="When Meta announced the extension "
                                                      "(YYYY-MM-DD). Default: today.")] = None,
) -> None:
    """Record that Meta extended its deadline by two months (GDPR Art. 12(3))."""
    from tracker.lifecycle import EVENT_EXTENDED

    day = _parse_day(announced, "--date") or _today()
    with _state(ctx).db.session() as session:
        request = store.get_request(session, request_id)
        store.add_event(session, request, EVENT_EXTENDED, store.end_of(day),
                        detail="extension announced by Meta (recorded by hand)")
        timeline = store.refresh_state(session, request)
    if timeline.extended:
        console.print(f"Request #{request_id}: extension recorded; the decision is now due on {timeline.deadline}.")
    elif timeline.deadline is not None:
        console.print(f"Request #{request_id}: extension recorded, but it was announced after the first month "
                      f"(Art. 12(3) requires it within one month): the deadline stays {timeline.deadline}.")
    else:
        console.print(f"Request #{request_id}: extension recorded; no receipt date is known, so no deadline yet.")


@alerts_app.command("test")
def alerts_test(ctx: typer.Context) -> None:
    """Send a test alert to every channel in [alerts] urls and private_urls; one line per channel."""
    from tracker.alerts import send_test

    results = send_test(_state(ctx).settings)
    if not results:
        err_console.print("No alert channels configured: add apprise URLs to [alerts] urls in the config.",
                          markup=False)
        raise typer.Exit(1)
    for channel, error in results:
        typer.echo(f"ok      {plain(channel)}" if error is None else f"FAILED  {plain(channel)}: {plain(error)}")
    if any(error is not None for _, error in results):
        raise typer.Exit(1)


@alerts_app.command("send")
def alerts_send(ctx: typer.Context) -> None:
    """Send every unsent alert now, including those waiting for a retry."""
    from tracker.alerts import configured_channels, run_checks, send_pending

    state = _state(ctx)
    if not configured_channels(state.settings):
        err_console.print("No alert channels configured: add apprise URLs to [alerts] urls in the config.",
                          markup=False)
        raise typer.Exit(1)
    run_checks(state.db, state.settings)
    result = send_pending(state.db, state.settings, force=True)
    console.print(f"{len(result.sent)} sent, {len(result.retrying)} failed (retried later), "
                  f"{len(result.gave_up)} given up.")
    for error in result.errors:
        typer.echo(f"  {plain(error)}")
    if not result.ok:
        raise typer.Exit(1)


@complaint_app.command("authorities")
def complaint_authorities(
    country: Annotated[Optional[str], typer.Option(help="Only this country (ISO code, e.g. DE).")] = None,
) -> None:
    """The data protection authorities the tracker knows, with their codes."""
    from tracker.complaint import load_authorities

    report.render_authorities(console, [a for a in load_authorities().values()
                                        if country is None or a.country_code == country.upper()])


@complaint_app.command("draft")
def complaint_draft(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number (see `status`).")],
    authority: Annotated[Optional[str], typer.Option(help="Authority code (see `complaint authorities`). "
                                                      "Default: the one where you live.")] = None,
    lang: Annotated[Optional[str], typer.Option(help="Letter language: en or de. Default: de for German-speaking "
                                                     "authorities, else en.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder to write. Default: ./complaint-ID-CODE")] = None,
    name: Annotated[Optional[str], typer.Option(help="Your name for the letter (nothing is filled in "
                                                     "without it).")] = None,
    country: Annotated[Optional[str], typer.Option(help="Your country, if the request has none (ISO code).")] = None,
    region: Annotated[Optional[str], typer.Option(help="Your German Land (e.g. BY), if the request has none.")] = None,
) -> None:
    """Write a complaint folder: letter, .eml draft, how-to note, and the evidence with its SHA-256."""
    from tracker.complaint import draft_complaint

    if lang is not None and lang not in ("en", "de"):
        raise typer.BadParameter("must be en or de", param_hint="--lang")
    state = _state(ctx)
    with state.db.session() as session:
        draft = draft_complaint(session, state.settings, request_id, authority_code=authority, language=lang,
                                out=out, name=name, country=country, region=region, today=_today())
    competence = draft.competence
    if authority is None and competence.authority is None:
        console.print(f"[yellow]{terminal(competence.explanation)}[/] Drafted to {draft.authority.code} instead, "
                      f"Meta's lead authority.", highlight=False)
    console.print(f"Complaint to {draft.authority.name} ({draft.authority.code}), in "
                  f"{'German' if draft.language == 'de' else 'English'}: {terminal(draft.folder)}", highlight=False)
    for path in draft.files:
        console.print(f"  {plain(path.relative_to(draft.folder))}", markup=False, highlight=False)
    for warning in draft.warnings:
        console.print(f"[yellow]warning:[/] {terminal(warning)}", highlight=False)
    console.print("Read NOTE.txt for how to file it.")


@complaint_app.command("filed")
def complaint_filed(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number.")],
    authority: Annotated[str, typer.Option(help="Authority code, e.g. IE or DE-BY.")],
    filed: Annotated[str, typer.Option("--date", help="Date you filed it (YYYY-MM-DD).")],
    reference: Annotated[str, typer.Option(help="The authority's reference, if it gave one.")] = "",
) -> None:
    """Record a complaint you filed; the authority's three-month clock (Art. 78(2)) starts."""
    from tracker.complaint import record_filing
    from tracker.lifecycle import authority_deadline

    day = _parse_day(filed, "--date")
    with _state(ctx).db.session() as session:
        complaint = record_filing(session, request_id, authority, day, reference)
    console.print(f"Complaint for request #{request_id} recorded: {complaint.authority}, filed {day}"
                  f"{', reference ' + terminal(reference) if reference else ''}. The authority has to answer by "
                  f"{authority_deadline(day)} (Art. 78(2)).", highlight=False)


# ---- IMAP: poll and daemon ----------------------------------------------------

def _poll_progress():
    """A progress bar for large syncs, only when a person watches stderr."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    return report.PollProgress()


def _run_daemon(state: State) -> None:
    from tracker.daemon import run_daemon

    with _poll_progress() as progress:
        run_daemon(state.db, state.settings, after_poll=lambda: _deliver_alerts(state), progress=progress)


@app.command()
def poll(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Poll every account once and exit (for cron). "
                                       "Without it, poll on the schedule like `daemon`.")] = False,
) -> None:
    """Read new mail from the configured IMAP accounts (read-only: nothing on the server changes)."""
    from tracker.errors import ConfigError

    state = _state(ctx)
    if not state.settings.accounts:
        raise ConfigError("no IMAP accounts configured: add an [[accounts]] section (see config.example.toml)")
    if not once:
        _run_daemon(state)
        return
    from tracker.daemon import poll_once

    with _poll_progress() as progress:
        results = poll_once(state.db, state.settings, progress=progress)
    _deliver_alerts(state)
    for result in results:
        # soft_wrap: one line per account however narrow the terminal, so logs and grep see it whole.
        if result.error:
            err_console.print(f"error: {plain(result.error)}", markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(plain(result.summary()), markup=False, highlight=False, soft_wrap=True)
    if any(result.error for result in results):
        raise typer.Exit(1)


@app.command()
def daemon(ctx: typer.Context) -> None:
    """Poll the IMAP accounts every few minutes (and at once with IDLE, where enabled) until stopped."""
    _run_daemon(_state(ctx))


# ---- commands kept in their own modules (they register on the apps above) ------

from tracker import (cli_calendar, cli_corrections, cli_review, cli_service,  # noqa: E402,F401
                     cli_setup)


# ---- entry point ------------------------------------------------------------

def main() -> None:
    app()
