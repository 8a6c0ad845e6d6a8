"""Rich rendering of what the core computed. No queries, no decisions here."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tracker.alerts import KIND_LABELS

STATE_STYLES = {
    "approved": "green", "rejected": "bold red", "info_requested": "yellow",
    "complaint_filed": "magenta", "acknowledged": "cyan", "code_sent": "cyan", "submitted": "white",
}


def _deadline_cell(entry: dict) -> str:
    if entry["days_left"] is None:
        if entry["decided"]:
            return f"decided {entry['decided']}"
        return entry["deadline"] or "-"
    if entry["overdue"]:
        return f"{entry['deadline']} [bold red]({-entry['days_left']} days overdue)[/]"
    return f"{entry['deadline']} ({entry['days_left']} days left)"


def render_status(console: Console, status: dict) -> None:
    table = Table(title=f"Requests ({status['today']})", expand=False, show_lines=False)
    for column in ("#", "address", "platform", "kind", "state", "submitted", "last mail", "deadline", "flags"):
        table.add_column(column, overflow="fold")
    for entry in status["requests"]:
        style = STATE_STYLES.get(entry["state"], "")
        flags = ", ".join(entry["flags"])
        if entry["complaint"]:
            c = entry["complaint"]
            flags = ", ".join(filter(None, [flags, f"complaint {c['authority']} filed {c['filed']}, "
                                                   f"answer due {c['authority_deadline']}"]))
        table.add_row(str(entry["id"]), entry["address"], entry["platform"],
                      KIND_LABELS.get(entry["kind"], entry["kind"]), f"[{style}]{entry['state']}[/]",
                      entry["submitted"] or "-", (entry["last_mail"] or "-")[:10], _deadline_cell(entry), flags)
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
            review.add_row(str(m["id"]), f"[{style}]{m['category']}[/]", (m["date"] or "-")[:10],
                           f"{m['sender_name']} <{m['sender']}>", m["subject"], m["reason"])
        console.print(review)
        console.print("Looked at one? `privacy-tracker reviewed ID` takes it off this list.", markup=False)

    for notice in status.get("suggestions", ()):
        console.print(f"[yellow]Meta announced AI training to {notice['address']} "
                      f"({notice['platform'] or 'facebook'}) on {(notice['date'] or '-')[:10]} and no request "
                      f"exists for it yet.[/] To object: Meta's objection form, then\n"
                      f"  privacy-tracker request add --address {notice['address']} "
                      f"--platform {notice['platform'] or 'facebook'} --date YYYY-MM-DD")

    if status["errors"]:
        console.print(f"[yellow]{len(status['errors'])} mail(s) could not be read completely:[/]")
        for e in status["errors"]:
            console.print(f"  {e['source']}: {e['error']}", markup=False, highlight=False)

    if status["accounts"]:
        accounts = Table(title="Mailboxes", expand=False)
        for column in ("account", "last success", "last error", "mails seen"):
            accounts.add_column(column, overflow="fold")
        for a in status["accounts"]:
            error = f"{(a['last_error_at'] or '')[:16]} {a['last_error']}" if a["last_error"] else "-"
            accounts.add_row(a["name"], (a["last_success"] or "never")[:16], error, str(a["messages_seen"]))
        console.print(accounts)

    if status["alerts"]:
        waiting = [a for a in status["alerts"] if not a["sent"]]
        console.print(f"Alerts: {len(status['alerts'])} in all, {len(waiting)} not sent yet")
        for a in waiting:
            failed = (f" [yellow](not delivered after {a['attempts']} attempt(s): {a['last_error']})[/]"
                      if a["attempts"] else "")
            console.print(f"  [bold]{a['reason']}[/]: {a['title']}{failed}")
    console.print(f"{status['messages_seen']} mail(s) seen.")


def render_timeline(console: Console, summary: dict, events: list[dict]) -> None:
    console.print(f"[bold]Request #{summary['id']}[/]: {summary['address']}, {summary['platform']}, "
                  f"{KIND_LABELS.get(summary['kind'], summary['kind'])}")
    console.print(f"State: {summary['state']}   received: {summary['submitted'] or '-'}   "
                  f"deadline: {_deadline_cell(summary)}")
    table = Table(expand=False)
    for column in ("date", "event", "detail"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(event["date"], event["kind"], event["detail"])
    console.print(table)


def render_authorities(console: Console, authorities) -> None:
    table = Table(expand=False)
    for column in ("code", "name", "email", "complaint form"):
        table.add_column(column, overflow="fold")
    for authority in authorities:
        table.add_row(authority.code, authority.name, authority.email or "-", authority.complaint_url or "-")
    console.print(table)


# A folder gets a progress bar only when this many mails are to be fetched from it:
# a first sync, or a long time offline. Small polls stay quiet.
PROGRESS_MIN_MESSAGES = 20


class PollProgress:
    """A rich progress bar per folder with many mails to fetch, on stderr."""

    def __init__(self) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=Console(stderr=True), transient=True)
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
            self._tasks[key] = self._progress.add_task(f"{account}/{folder}", total=total)
        self._progress.update(self._tasks[key], completed=done, total=total)
