"""The `privacy-tracker` command: thin Typer commands over the library.

Each command parses its arguments, calls one core function, and renders the
result. Errors the tracker raises on purpose become one line on stderr and
exit status 1; wrong arguments exit with 2.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from tracker import __version__, report, store
from tracker import vocabulary as v
from tracker.config import Settings, load_settings, settings_from_dict
from tracker.errors import TrackerError

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("tracker")


class TrackerGroup(TyperGroup):
    """Turns the tracker's own errors into one line on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TrackerError as err:
            err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from err


app = typer.Typer(cls=TrackerGroup, help="Track GDPR objections and data requests to Meta from your mailbox.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
request_app = typer.Typer(help="Requests: add one by hand, show its timeline, add notes.", no_args_is_help=True)
rules_app = typer.Typer(help="Pattern rules: see which rule matches a mail and why.", no_args_is_help=True)
app.add_typer(request_app, name="request")
app.add_typer(rules_app, name="rules")


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


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Config file (TOML). "
                      "Default: $PRIVACY_TRACKER_CONFIG, else the user config folder.")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")] = 0,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log as JSON lines on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(__version__)
        raise typer.Exit()
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
    paths: Annotated[list[Path], typer.Argument(help=".eml files, folders of them, Maildir folders or mbox files.")],
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
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            otp = f"  code {record['otp']}" if record["otp"] else ""
            error = f"  [red]error: {record['error']}[/]" if record["error"] else ""
            console.print(f"{record['path']}: [bold]{record['category']}[/] "
                          f"{record['platform'] or ''} {record['kind'] or ''} "
                          f"(rule {record['rule']}, {record['authenticity']}){otp}{error}", highlight=False)


def _ingest_paths(state: State, paths: list[Path]):
    from tracker.ingest import Ingestor
    from tracker.sources.local import LocalSource

    stats = Ingestor(state.db, state.settings).ingest(LocalSource(paths))
    _deliver_alerts(state)
    return stats


def _deliver_alerts(state: State) -> None:
    """Send what the outbox holds, when channels are configured."""
    if not state.settings.alerts.urls:
        return
    from tracker.alerts import send_pending
    send_pending(state.db, state.settings)


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help=".eml files, folders of them, Maildir folders or mbox files.")],
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

    with state.db.session() as session:
        data = build_status(session, _today())
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
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
        console.print(f"Demo: ingested {stats.new} sample mails from {bundled_sample_mail()} "
                      f"({stats.errors} damaged, recorded with their error).\n")
        _print_status(state, as_json=False)
        state.db.dispose()
        if keep:
            console.print(f"\nDemo database: {folder / 'demo.sqlite3'}")
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


# ---- requests ---------------------------------------------------------------

def _parse_day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None


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
        console.print(f"Request #{request.id} added: {request.address}, {platform}, {kind}, state {request.state}.")


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
        sys.stdout.write(json.dumps({**summary, "events": events}, ensure_ascii=False, indent=2) + "\n")
    else:
        report.render_timeline(console, summary, events)
        if summary["notes"]:
            console.print(f"Notes: {summary['notes']}", markup=False)


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
    files: Annotated[list[Path], typer.Argument(help="Mail files to explain.")],
) -> None:
    """Which rule matched each mail, on which text, and why the others did not."""
    from tracker.parse import parse_mail
    from tracker.rules.engine import explain, load_rules
    from tracker.sources.local import LocalSource

    settings = _state(ctx).settings
    rules = load_rules(settings.rules.file)
    for item in LocalSource(files).messages():
        mail = parse_mail(item.raw)
        console.rule(item.label)
        if item.error or mail.error:
            console.print(f"error: {item.error or mail.error}", markup=False)
        console.print(explain(mail, rules, settings.authenticity).to_text(), markup=False, highlight=False)


# ---- entry point ------------------------------------------------------------

def main() -> None:
    app()
