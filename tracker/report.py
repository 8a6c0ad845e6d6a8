"""Rich rendering of what the core computed. No queries, no decisions here."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tracker.alerts import KIND_LABELS
from tracker.safe_text import plain, terminal as t

STATE_STYLES = {
    "approved": "green", "rejected": "bold red", "info_requested": "yellow",
    "complaint_filed": "magenta", "acknowledged": "cyan", "code_sent": "cyan", "submitted": "white",
}


def _deadline_cell(entry: dict) -> str:
    if entry["days_left"] is None:
        if entry["decided"]:
            return f"decided {t(entry['decided'])}"
        return t(entry["deadline"] or "-")
    if entry["overdue"]:
        return f"{t(entry['deadline'])} [bold red]({-entry['days_left']} days overdue)[/]"
    return f"{t(entry['deadline'])} ({entry['days_left']} days left)"


def render_status(console: Console, status: dict) -> None:
    """Every string that may come from a mail (addresses, subjects, names, reasons, errors) goes
    through safe_text.terminal (``t``): it shows as written, never as markup or control codes."""
    table = Table(title=f"Requests ({status['today']})", expand=False, show_lines=False)
    for column in ("#", "address", "platform", "kind", "state", "submitted", "last mail", "deadline", "flags"):
        table.add_column(column, overflow="fold")
    for entry in status["requests"]:
        style = STATE_STYLES.get(entry["state"], "")
        flags = ", ".join(entry["flags"])
        if entry["complaint"]:
            c = entry["complaint"]
            flags = ", ".join(filter(None, [flags, f"complaint {c['authority']} filed {c['filed']}, "
                                                   f"answer due {c['authority_deadline'] or 'unknown'}"]))
        table.add_row(str(entry["id"]), t(entry["address"]), t(entry["platform"]),
                      t(KIND_LABELS.get(entry["kind"], entry["kind"])), f"[{style}]{t(entry['state'])}[/]",
                      t(entry["submitted"] or "-"), t((entry["last_mail"] or "-")[:10]), _deadline_cell(entry),
                      t(flags))
    if status["requests"]:
        console.print(table)
    else:
        console.print("No requests yet. Ingest mail (`privacy-tracker ingest PATH`) or add one "
                      "(`privacy-tracker request add`).")

    if status["review"]:
        review = Table(title="Mails to review", expand=False)
        for column in ("#", "category", "date", "from", "subject", "why"):
            review.add_column(column, overflow="fold")
        for m in status["review"]:
            style = "bold red" if m["category"] == "suspicious" else "yellow"
            review.add_row(str(m["id"]), f"[{style}]{t(m['category'])}[/]", t((m["date"] or "-")[:10]),
                           t(f"{m['sender_name'] or ''} <{m['sender'] or ''}>".strip()), t(m["subject"]),
                           t(m["reason"]))
        console.print(review)
        console.print("Looked at one? `privacy-tracker reviewed ID` takes it off this list.", markup=False)

    for notice in status.get("suggestions", ()):
        address, platform = t(notice["address"]), t(notice["platform"] or "facebook")
        console.print(f"[yellow]Meta announced AI training to {address} "
                      f"({platform}) on {t((notice['date'] or '-')[:10])} and no request "
                      f"exists for it yet.[/] To object: Meta's objection form, then\n"
                      f"  privacy-tracker request add --address {address} "
                      f"--platform {platform} --date YYYY-MM-DD")

    if status["errors"]:
        console.print(f"[yellow]{len(status['errors'])} mail(s) could not be read completely:[/]")
        for e in status["errors"]:
            console.print(f"  {plain(e['source'])}: {plain(e['error'])}", markup=False, highlight=False)

    if status["accounts"]:
        accounts = Table(title="Mailboxes", expand=False)
        for column in ("account", "last success", "last error", "mails seen", "mail server (authserv-id)"):
            accounts.add_column(column, overflow="fold")
        for a in status["accounts"]:
            error = f"{(a['last_error_at'] or '')[:16]} {a['last_error']}" if a["last_error"] else "-"
            accounts.add_row(t(a["name"]), t((a["last_success"] or "never")[:16]), t(error), str(a["messages_seen"]),
                             t(a.get("authserv_id") or "not learned yet"))
        console.print(accounts)

    if status["alerts"]:
        waiting = [a for a in status["alerts"] if not a["sent"]]
        console.print(f"Alerts: {len(status['alerts'])} in all, {len(waiting)} not sent yet")
        for a in waiting:
            failed = (f" [yellow](not delivered after {a['attempts']} attempt(s): {t(a['last_error'])})[/]"
                      if a["attempts"] else "")
            console.print(f"  [bold]{t(a['reason'])}[/]: {t(a['title'])}{failed}")
    console.print(f"{status['messages_seen']} mail(s) seen.")


def render_timeline(console: Console, summary: dict, events: list[dict]) -> None:
    console.print(f"[bold]Request #{summary['id']}[/]: {t(summary['address'])}, {t(summary['platform'])}, "
                  f"{t(KIND_LABELS.get(summary['kind'], summary['kind']))}")
    console.print(f"State: {t(summary['state'])}   received: {t(summary['submitted'] or '-')}   "
                  f"deadline: {_deadline_cell(summary)}")
    table = Table(expand=False)
    for column in ("date", "event", "detail"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(t(event["date"]), t(event["kind"]), t(event["detail"]))
    console.print(table)


def render_authorities(console: Console, authorities) -> None:
    table = Table(expand=False)
    for column in ("code", "name", "email", "complaint form"):
        table.add_column(column, overflow="fold")
    for authority in authorities:
        table.add_row(t(authority.code), t(authority.name), t(authority.email or "-"),
                      t(authority.complaint_url or "-"))
    console.print(table)


# A folder gets a progress bar only when this many mails are to be fetched from it:
# a first sync, or a long time offline. Small polls stay quiet.
PROGRESS_MIN_MESSAGES = 20


class PollProgress:
    """A rich progress bar per folder with many mails to fetch, on stderr."""

    def __init__(self) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=Console(stderr=True, emoji=False),
                                  transient=True)
        self._tasks: dict[tuple[str, str], int] = {}

    def __enter__(self) -> PollProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def __call__(self, account: str, folder: str, done: int, total: int) -> None:
        if total < PROGRESS_MIN_MESSAGES:
            return
        key = (account, folder)
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(t(f"{account}/{folder}"), total=total)
        self._progress.update(self._tasks[key], completed=done, total=total)
