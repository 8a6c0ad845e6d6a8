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
request_app = typer.Typer(help="Requests: add one by hand, show its timeline, add notes, correct or delete "
                                 "one.", no_args_is_help=True)
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
            # Only the default location is created; a configured path with a missing folder is a typo.
            self._db = store.Store(self.settings.database.resolved_url(),
                                   create_folder=self.settings.database.url is None)
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


def _ingest_paths(state: State, paths: list[Path], on_not_mail=None):
    from tracker.ingest import Ingestor
    from tracker.sources.local import LocalSource

    stats = Ingestor(state.db, state.settings).ingest(LocalSource(paths, on_not_mail=on_not_mail))
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
    """Record mail files in the database (each mail once, however often it is ingested).

    Files that are not mail at all (no header lines) are skipped, one line each, and the exit status is 1.
    """
    skipped = []

    def not_mail(label: str, why: str) -> None:
        skipped.append(label)
        err_console.print(f"skipped {plain(label)}: {plain(why)}", markup=False, highlight=False, soft_wrap=True)

    stats = _ingest_paths(_state(ctx), paths, not_mail)
    categories = ", ".join(f"{n} {c}" for c, n in sorted(stats.categories.items()))
    console.print(f"{stats.new} new, {stats.duplicates} already known, {stats.errors} with errors"
                  + (f" ({categories})" if categories else "")
                  + (f"; {len(skipped)} file(s) not a mail, skipped" if skipped else ""), soft_wrap=True)
    if skipped:
        raise typer.Exit(1)


def _today() -> date:
    return datetime.now(timezone.utc).date()


def _print_status(state: State, as_json: bool, wide: bool = False, only=None) -> None:
    from tracker.status import build_status

    _run_checks(state)  # so that an overdue request shows its alert; sending is the daemon's
    with state.db.session() as session:
        data = build_status(session, _today(), only)
    if as_json:
        sys.stdout.write(json_text(data, indent=2) + "\n")
    else:
        from tracker.alerts import configured_channels

        data["database"] = str(state.db.path) if state.db.path else store._shown_url(state.db.url)
        data["alert_channels"] = len(configured_channels(state.settings))
        report.render_status(console, data, wide=wide)


# The filters of `status`, `export` and `complaint draft --all-refused`.
MemberOption = Annotated[Optional[str], typer.Option(
    "--member", help="Only the requests of this member's address (see `member list`).")]
StateOption = Annotated[Optional[str], typer.Option(
    "--state", help="Only requests in this state: submitted, code_sent, acknowledged, info_requested, approved, "
                    "rejected (or refused), complaint_filed.")]
PlatformOption = Annotated[Optional[str], typer.Option(
    "--platform", help="Only requests for this platform: " + ", ".join(v.PLATFORMS) + ".")]
CountryOption = Annotated[Optional[str], typer.Option(
    "--country", help="Only requests of this country (ISO code, e.g. DE): the request's, else its member's.")]


def _request_filter(state: State, *, member: str | None = None, state_name: str | None = None,
                    platform: str | None = None, country: str | None = None):
    """The filter options checked against the database; a wrong one is one line and exit status 2."""
    from tracker.status import InvalidFilter, RequestFilter, request_filter

    if member is None and state_name is None and platform is None and country is None:
        return RequestFilter()
    try:
        with state.db.session() as session:
            return request_filter(session, member=member, state=state_name, platform=platform, country=country)
    except InvalidFilter as err:
        err_console.print(f"error: {plain(err)}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from err


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Everything, one request per line, however wide "
                                       "the terminal (for a wide window or a file).")] = False,
    member: MemberOption = None,
    state_name: StateOption = None,
    platform: PlatformOption = None,
    country: CountryOption = None,
) -> None:
    """Every request with its state and deadline; mails to review; mailbox health; alerts.

    The filters show only some requests (and their one-time codes); they combine.
    """
    state = _state(ctx)
    only = _request_filter(state, member=member, state_name=state_name, platform=platform, country=country)
    _print_status(state, as_json, wide, only)


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
                      f"({stats.errors} damaged, each recorded with its error).\n", soft_wrap=not console.is_terminal)
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
    """Take mails you have looked at off the review list (the mails stay recorded); `review ID --dismiss` in short."""
    from tracker import review

    with _state(ctx).db.write() as session:
        waiting = {m.id: m for m in review.waiting_for_review(session)}
        done = sorted(i for i in set(message_ids) if i in waiting)
        for message_id in done:
            review.dismiss(session, waiting[message_id], by="reviewed")
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
    from tracker.cli_corrections import checked_fields

    # Every problem is named at once and nothing is written, so the corrected command goes through.
    values = checked_fields(address=address, platform=platform, kind=kind, country=country, region=region,
                            submitted=submitted)
    with _state(ctx).db.session() as session:
        request = store.add_request(session, values["address"], values["platform"], values["kind"],
                                    country=values.get("country"), region=values.get("region"),
                                    submitted=values.get("submitted"), notes=notes)
        console.print(f"Request #{request.id} added: {terminal(request.address)}, {request.platform}, "
                      f"{request.kind}, state: {report.state_label(request.state)}.", soft_wrap=not console.is_terminal)


@request_app.command("show")
def request_show(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="Request number (see `status`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A request's timeline: every mail and event, in date order."""
    from tracker.status import request_events, request_summary

    with _state(ctx).db.session() as session:
        request = store.get_request(session, request_id)
        summary = request_summary(session, request, _today())
        events = request_events(session, request, codes=True)
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
    files: Annotated[Optional[list[Path]], typer.Argument(exists=True, help="Mail files to explain.")] = None,
    message_ids: Annotated[Optional[list[int]], typer.Option(
        "--message", help="A stored mail's number (see `status`, `mail show`), explained from its evidence file; "
                          "repeat it for more.")] = None,
) -> None:
    """Which rule matched each mail, on which text, and why the others did not."""
    from tracker.corrections import stored_mail_bytes
    from tracker.parse import parse_mail
    from tracker.rules.engine import explain, load_rules
    from tracker.sources.local import LocalSource

    if not files and not message_ids:
        raise typer.BadParameter("give mail files, or --message ID for a stored mail", param_hint="FILES")
    state = _state(ctx)
    settings = state.settings
    rules = load_rules(settings.rules.file)
    with state.db.session() as session:  # what the person taught counts, as it does when mail arrives
        rules = rules.with_learned(store.learned_templates(session))

    def mails():
        for item in LocalSource(files or []).messages():
            yield item.label, item.raw, item.error
        for message_id in message_ids or []:
            yield *stored_mail_bytes(state.db, message_id), None

    for label, raw, read_error in mails():
        mail = parse_mail(raw)
        console.rule(terminal(label))
        if read_error or mail.error:
            console.print(f"error: {plain(read_error or mail.error)}", markup=False, highlight=False)
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


def _ask_residence(state: State, request_id: int, country: str | None,
                   region: str | None) -> tuple[str | None, str | None]:
    """Ask a person at the terminal for the country (and German Land) a draft needs but nothing gives."""
    from rich.prompt import Prompt

    from tracker.complaint import residence

    with state.db.session() as session:
        request = store.get_request(session, request_id)
        where = residence(request, state.settings, country, region)
        if where is None:
            country = Prompt.ask("Which country do you live in? It decides the authority (ISO code, e.g. AT)",
                                 console=console).strip() or None
            where = residence(request, state.settings, country, region)
    if where is not None and where.country == "DE" and not where.region:
        region = Prompt.ask("Which German Land? Its authority supervises Meta (e.g. BY for Bayern)",
                            console=console).strip() or None
    return country, region


def _draft_all_refused(state: State, *, member: str | None, country: str | None, out: Path | None,
                       authority: str | None, lang: str | None, name: str | None) -> None:
    """`complaint draft --all-refused`: one folder per refused request; one that cannot be drafted
    is one line on stderr, the others go on, and the exit status is 1."""
    from tracker.export import draft_all_refused
    from tracker.letters import LANGUAGE_NAMES

    only = _request_filter(state, member=member, state_name=None, country=country)
    drafted = skipped = 0
    with state.db.session() as session:
        for result in draft_all_refused(session, state.settings, _today(), only, out_dir=out or Path.cwd(),
                                        authority_code=authority, language=lang, name=name):
            who = plain(result.address) + (f", {plain(result.member)}" if result.member else "")
            if result.draft is None:
                skipped += 1
                err_console.print(f"skipped request #{result.request} ({who}): {plain(result.problem)}",
                                  markup=False, highlight=False, soft_wrap=True)
                continue
            drafted += 1
            draft = result.draft
            where = (f"; lives in {draft.residence.country}" + (f"-{draft.residence.region}" if draft.residence.region
                                                                else "") + f", from {result.source}"
                     if draft.residence is not None else "")
            console.print(f"Request #{result.request} ({who}): complaint to {plain(draft.authority.name)} "
                          f"({draft.authority.code}), in {LANGUAGE_NAMES[draft.language]}{plain(where)}: "
                          f"{plain(draft.folder)}", markup=False, highlight=False, soft_wrap=True)
            for warning in draft.warnings:
                console.print(f"  warning: {plain(warning)}", markup=False, highlight=False, soft_wrap=True)
    shown = f" ({plain(only.shown())})" if only else ""
    console.print(f"{_count(drafted, 'complaint')} drafted, {skipped} skipped{shown}."
                  + (" Read NOTE.txt in each folder for how to file it." if drafted else ""),
                  markup=False, highlight=False, soft_wrap=True)
    if skipped:
        raise typer.Exit(1)


@complaint_app.command("draft")
def complaint_draft(
    ctx: typer.Context,
    request_id: Annotated[Optional[int], typer.Argument(help="Request number (see `status`); or --all-refused.",
                                                        metavar="REQUEST_ID", show_default=False)] = None,
    all_refused: Annotated[bool, typer.Option("--all-refused", help="A folder for every refused request without "
                                              "a complaint (an organisation's members): complaint-ID-CODE under "
                                              "--out. Filters: --member, --country.")] = False,
    member: Annotated[Optional[str], typer.Option(help="With --all-refused: only this member's requests.")] = None,
    authority: Annotated[Optional[str], typer.Option(help="Authority code (see `complaint authorities`). "
                                                      "Default: the one where you live.")] = None,
    lang: Annotated[Optional[str], typer.Option(help="Letter language: en, de, fr, it, es, nl or pl. Default: the "
                                                     "authority's language (Belgium: yours, French or Dutch), "
                                                     "else en.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder to write. Default: ./complaint-ID-CODE. With "
                                                     "--all-refused: the folder to write them in (default: the "
                                                     "current folder).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Your name for the letter. Default: \\[person] name in the "
                                                     "config; nothing is filled in without it. With --all-refused: "
                                                     "for requests of no member (a member's letter has their "
                                                     "name).")] = None,
    country: Annotated[Optional[str], typer.Option(help="The country you live in (ISO code, e.g. AT). Default: "
                                                        "the request's, its mailbox's \\[\\[accounts]] country, "
                                                        "else \\[person] country. With --all-refused: only the "
                                                        "requests of this country (the request's, else its "
                                                        "member's).")] = None,
    region: Annotated[Optional[str], typer.Option(help="Your German Land (e.g. BY). Default: given with the "
                                                       "country (the request, \\[\\[accounts]] or \\[person]).")] = None,
) -> None:
    """Write a complaint folder: letter, .eml draft, how-to note, and the evidence with its SHA-256.

    The letter is about the latest refusal (or, if Meta never decided, the missed deadline).
    Without a known country it asks at a terminal, and refuses otherwise.

    With --all-refused, one folder for each refused request; one that cannot be drafted (no country known)
    is named on a line of its own, the others are drafted, and the exit status is 1.
    """
    from tracker.complaint import draft_complaint
    from tracker.letters import LANGUAGE_NAMES, LANGUAGES

    if lang is not None and lang.strip().lower() not in LANGUAGES:
        raise typer.BadParameter(f"must be one of {', '.join(LANGUAGES)}", param_hint="--lang")
    if (request_id is None) == (not all_refused):
        raise typer.BadParameter("give a request number or --all-refused, not both" if all_refused
                                 else "give a request number, or --all-refused", param_hint="REQUEST_ID")
    state = _state(ctx)
    if all_refused:
        if region is not None:
            raise typer.BadParameter("not with --all-refused: each request's Land is its own or its member's",
                                     param_hint="--region")
        _draft_all_refused(state, member=member, country=country, out=out, authority=authority,
                           lang=lang and lang.strip().lower(), name=name)
        return
    if member is not None:
        raise typer.BadParameter("only with --all-refused", param_hint="--member")
    given = country
    if authority is None and sys.stdin.isatty():
        country, region = _ask_residence(state, request_id, country, region)
    with state.db.session() as session:
        draft = draft_complaint(session, state.settings, request_id, authority_code=authority,
                                language=lang and lang.strip().lower(), out=out, name=name, country=country,
                                region=region, today=_today())
    competence = draft.competence
    if authority is None and competence.authority is None:
        console.print(f"[yellow]{terminal(competence.explanation)}[/] Drafted to {draft.authority.code} instead, "
                      f"Meta's lead authority.", highlight=False)
    if draft.residence is not None:
        land = f" ({terminal(draft.residence.region)})" if draft.residence.region else ""
        source = "your answer" if country != given and draft.residence.source == "--country" else draft.residence.source
        console.print(f"You live in {terminal(draft.residence.country)}{land}, from {terminal(source)}.",
                      highlight=False)
    about = draft.round
    if about is not None:
        what = f"the refusal of {about.decided}" if about.decided else f"the deadline of {about.deadline}"
        console.print(f"About round {about.number} (received {about.received or 'on an unknown date'}): {what}.",
                      highlight=False)
    console.print(f"Complaint to {draft.authority.name} ({draft.authority.code}), in "
                  f"{LANGUAGE_NAMES[draft.language]}: {terminal(draft.folder)}", highlight=False)
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

    accounts, db = state.settings.mailboxes, state.db
    if accounts:
        minutes = state.settings.daemon.interval_minutes
        every = "every minute" if minutes == 1 else f"every {minutes:g} minutes"
        idle = ", ".join(plain(a.name) for a in accounts if a.idle)
        console.print(f"Watching {_count(len(accounts), 'account')} {every}"
                      + (f" (IDLE on {idle})" if idle else "") + "; stop with Ctrl-C.",
                      markup=False, highlight=False, soft_wrap=True)
    with _poll_progress() as progress:
        run_daemon(db, state.settings, after_poll=lambda: _deliver_alerts(state), progress=progress)


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


@app.command()
def poll(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Poll every account once and exit (for cron). "
                                       "Without it, poll on the schedule like `daemon`.")] = False,
) -> None:
    """Read new mail from the configured IMAP accounts (read-only: nothing on the server changes)."""
    from tracker.errors import ConfigError

    state = _state(ctx)
    if not state.settings.mailboxes:
        raise ConfigError("no IMAP accounts configured: add an [[accounts]] section (see config.example.toml)")
    if not once:
        _run_daemon(state)
        return
    from tracker.daemon import poll_once

    with state.db.session() as session:
        before = store.last_message_id(session)
    with _poll_progress() as progress:
        results = poll_once(state.db, state.settings, progress=progress)
    _deliver_alerts(state)
    from tracker.cli_calendar import refresh_after_poll

    calendar_ok = refresh_after_poll(state)  # [calendar] file, when configured
    for result in results:
        # soft_wrap: one line per account however narrow the terminal, so logs and grep see it whole.
        if result.error:
            err_console.print(f"error: {plain(result.error)}", markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(plain(result.summary()), markup=False, highlight=False, soft_wrap=True)
    with state.db.session() as session:
        found = store.categories_after(session, before)
    console.print(f"Polled {_count(len(results), 'account')}: {_count(sum(found.values()), 'new mail')}, "
                  f"{_count(found.get(v.REJECTED, 0), 'refusal')}, "
                  f"{_count(sum(1 for r in results if r.error), 'error')}.", markup=False, highlight=False)
    if any(result.error for result in results) or not calendar_ok:
        raise typer.Exit(1)


@app.command()
def daemon(ctx: typer.Context) -> None:
    """Poll the IMAP accounts every few minutes (and at once with IDLE, where enabled) until stopped."""
    _run_daemon(_state(ctx))


# ---- commands kept in their own modules (they register on the apps above) ------

from tracker import (cli_calendar, cli_corrections, cli_members, cli_review, cli_service,  # noqa: E402,F401
                     cli_setup)


# ---- entry point ------------------------------------------------------------

def main() -> None:
    app()
