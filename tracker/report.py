"""Rich rendering of what the core computed. No queries, no decisions here."""

from __future__ import annotations

from datetime import datetime, timezone

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from tracker.alerts import KIND_LABELS
from tracker.safe_text import plain, terminal as t

STATE_STYLES = {
    "approved": "green", "rejected": "bold red", "info_requested": "yellow",
    "complaint_filed": "magenta", "acknowledged": "cyan", "code_sent": "cyan", "submitted": "white",
}

# Words a person reads for the stable names that `--json` keeps.
STATE_LABELS = {
    "submitted": "sent, no answer yet",
    "code_sent": "code received",
    "acknowledged": "waiting for Meta",
    "info_requested": "more information requested",
    "approved": "approved",
    "rejected": "refused, you can complain",
    "complaint_filed": "complaint filed",
}
CATEGORY_LABELS = {"meta_other": "needs your review", "suspicious": "suspicious"}
EVENT_LABELS = {
    "submitted": "request sent", "otp": "code received", "acknowledgement": "Meta confirmed receipt",
    "info_requested": "more information requested", "extended": "deadline extended", "approved": "approved",
    "rejected": "refused", "complaint_filed": "complaint filed", "note": "note", "changed": "changed by you",
}
# Short kinds for the 80-column table; the plain layout uses KIND_LABELS.
KIND_SHORT = {"ai_objection": "AI objection", "third_party_data": "third-party data"}
# The one word for when Meta received the request, in `status` and `request show` alike.
RECEIVED = "received"


def _label(labels: dict, name: str | None) -> str:
    if not name:
        return "-"
    return labels.get(name, name.replace("_", " "))


def state_label(state: str | None) -> str:
    return _label(STATE_LABELS, state)


def local_time(value: str | None, *, minutes: bool = False) -> str:
    """An ISO date or time from the core, in the local time zone, without seconds: YYYY-MM-DD,
    or YYYY-MM-DD HH:MM with ``minutes``. A date alone stays as it is."""
    if not value:
        return "-"
    if len(value) == 10:
        return value
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        moment = moment.astimezone()
    except (OverflowError, ValueError, OSError):
        return value[:16 if minutes else 10]
    return moment.strftime("%Y-%m-%d %H:%M" if minutes else "%Y-%m-%d")


def _deadline_parts(entry: dict) -> tuple[str, str]:
    """The deadline's date and what it means ("12 days left", "3 days overdue", "decided")."""
    if entry["days_left"] is None:
        if entry["decided"]:
            return entry["decided"], "decided"
        return entry["deadline"] or "-", ""
    if entry["overdue"]:
        return entry["deadline"], f"{-entry['days_left']} days overdue"
    return entry["deadline"], f"{entry['days_left']} days left"


def _deadline_cell(entry: dict) -> str:
    day, note = _deadline_parts(entry)
    if note == "decided":
        return f"decided {t(day)}"
    if not note:
        return t(day)
    return f"{t(day)} [bold red]({note})[/]" if entry["overdue"] else f"{t(day)} ({note})"


def _flags(entry: dict, *, drop: tuple[str, ...] = ()) -> str:
    flags = [f for f in entry["flags"] if f not in drop]
    if entry["complaint"]:
        c = entry["complaint"]
        flags.append(f"complaint {c['authority']} filed {c['filed']}, answer due {c['authority_deadline'] or 'unknown'}")
    return ", ".join(flags)


# A terminal table: a rule under the header, two spaces between columns, no frame.
_COMPACT = dict(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0), expand=False)
# Flags the compact table shows in its state or deadline column instead.
_SAID_BY_THE_COLUMNS = frozenset({"overdue", "action needed", "authority silent", "complaint possible"})


def _fit(console: Console, fixed: list[int], wanted: int, flexible: int, least: int) -> tuple[int, int] | None:
    """Widths for a table's two wrapping columns so that it fits the console, or None when it fits as
    it is. ``fixed``: the other columns' widths; the first wrapping column (addresses, which cannot
    break at a space) gets ``wanted`` if it can, leaving at least ``least`` to the second (words)."""
    columns = len(fixed) + 2
    room = console.width - sum(fixed) - (2 * columns - 1)  # a padding per column, a rule between two
    if wanted + flexible <= room:
        return None
    first = min(wanted, room - least)
    if first < 8:
        return None  # too narrow to plan: rich folds what it must
    return first, room - first


def _lines(*cells: str) -> int:
    """The longest line in these cells (rich markup), as shown."""
    return max((cell_len(line) for cell in cells for line in Text.from_markup(cell).plain.split("\n")), default=0)


def _longest_word(*cells: str) -> int:
    return max((cell_len(word) for cell in cells for word in Text.from_markup(cell).plain.split()), default=0)


def _print_plain(console: Console, text: str) -> None:
    """One line as it is: no markup, no wrapping (a pipe or a cron mail wraps nothing inside a word)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def render_status(console: Console, status: dict, *, wide: bool = False) -> None:
    """Every string that may come from a mail (addresses, subjects, names, reasons, errors) goes
    through safe_text.terminal (``t``) or, without markup, safe_text.plain: it shows as written,
    never as markup or control codes.

    On a terminal: tables that fit a request in two lines at 80 columns. Elsewhere (a pipe, a cron
    mail): plain lines, no box drawing, never wrapped inside a word, a date, an address or a URL."""
    if not console.is_terminal or wide:
        _render_status_plain(console, status, wide=wide)
        return
    if status["requests"]:
        rows, notes = [], []
        for entry in status["requests"]:
            kind = KIND_SHORT.get(entry["kind"], entry["kind"])
            first, second = entry["address"] or "-", f"{entry['platform']}, {kind}"
            # What the state or the deadline column already says is not repeated as a flag.
            flags = [f for f in entry["flags"] if f not in _SAID_BY_THE_COLUMNS]
            day, note = _deadline_parts(entry)
            if entry["complaint"]:
                c = entry["complaint"]
                day = c["authority_deadline"] or "unknown"
                note = f"{c['authority']} {'silent' if c['authority_overdue'] else 'to answer'}"
            style = STATE_STYLES.get(entry["state"], "")
            late = entry["overdue"] or bool(entry["complaint"] and entry["complaint"]["authority_overdue"])
            if flags:  # below the table: in the state column they would make the row three lines or more
                notes.append(f"#{entry['id']}: {', '.join(flags)}")
            rows.append((str(entry["id"]), first, second, f"[{style}]{t(state_label(entry['state']))}[/]",
                         f"{t(entry['submitted'] or '-')}\n{t(local_time(entry['last_mail']))}",
                         t(day) + (f"\n[bold red]{t(note)}[/]" if late else f"\n{t(note)}" if note else "")))
        table = Table(title=t(f"Requests ({status['today']}{_filtered(status)})"), **_COMPACT)
        table.add_column("#", justify="right", no_wrap=True)
        # An address cannot break at a space: the column is as wide as the longest (up to 40
        # characters); only a longer one folds.
        widths = _fit(console, [_lines(*(r[0] for r in rows)), 10, _lines("deadline", *(r[5] for r in rows))],
                      _lines(*(t(r[1]) for r in rows), *(t(r[2]) for r in rows)),
                      _lines(*(r[3] for r in rows)), least=max(8, _longest_word(*(r[3] for r in rows)))) \
            or (None, None)
        table.add_column("address\nplatform, kind", overflow="fold", width=widths[0])
        table.add_column("state", width=widths[1])
        table.add_column(f"{RECEIVED}\nlast mail", no_wrap=True)
        table.add_column("deadline", no_wrap=True)
        for number, first, second, state, dates, deadline in rows:
            table.add_row(number, f"{t(first)}\n{t(second)}", state, dates, deadline)
        console.print(table)
        for note in notes:
            console.print(plain(note), markup=False, highlight=False)
    elif status.get("filter"):
        console.print(f"No requests match{_filtered(status, ':')}.", markup=False, highlight=False)
    else:
        console.print(f"No requests yet{_in_database(status)}. Ingest mail (`privacy-tracker ingest PATH`) or add "
                      "one (`privacy-tracker request add`).", markup=False, highlight=False)

    if status["review"]:
        review = Table(title="Mails to review", **_COMPACT)
        review.add_column("#", justify="right", no_wrap=True)
        review.add_column("date", no_wrap=True)
        senders = [m["sender"] or "" for m in status["review"]]
        widths = _fit(console, [_lines(*(str(m["id"]) for m in status["review"])), 10],
                      _lines(*map(t, senders), *(t(m["sender_name"]) for m in status["review"])),
                      _lines(*(t(f"{m['subject']} {m['reason']}") for m in status["review"])), least=20) or (None, None)
        review.add_column("from", overflow="fold", width=widths[0])
        review.add_column("subject, why", width=widths[1])
        for m in status["review"]:
            style = "bold red" if m["category"] == "suspicious" else "yellow"
            sender = "\n".join(filter(None, [t(m["sender_name"]), t(m["sender"] or "-")]))
            review.add_row(str(m["id"]), t(local_time(m["date"])),
                           f"{sender}\n[{style}]{t(_review_label(m))}[/]",
                           f"{t(m['subject'])}\n[dim]{t(m['reason'])}[/]")
        console.print(review)
        console.print(REVIEW_HINT, markup=False)
    for code in status.get("codes", ()):
        console.print(f"[bold]One-time code[/] for {t(code['address'])} ({t(code['platform'])}): "
                      f"[bold]{t(code['code'])}[/], received {t(local_time(code['received'], minutes=True))}. "
                      f"Enter it in Meta's form soon: codes expire.", highlight=False)
    for m in status.get("learned", ()):
        console.print(f"Mail #{m['id']} of {t(local_time(m['date']))} is {t(m['category'])}: "
                      f"{t(_learned_from(m))} (privacy-tracker review {m['id']} --as ... corrects it).",
                      highlight=False, soft_wrap=not console.is_terminal)

    for notice in status.get("suggestions", ()):
        address, platform = t(notice["address"]), t(notice["platform"] or "facebook")
        console.print(f"[yellow]Meta announced AI training to {address} "
                      f"({platform}) on {t(local_time(notice['date']))} and no request "
                      f"exists for it yet.[/] To object: Meta's objection form, then")
        console.print(f"  privacy-tracker request add --address {address} --platform {platform} --date YYYY-MM-DD",
                      soft_wrap=True, highlight=False)

    if status["errors"]:
        console.print(f"[yellow]{len(status['errors'])} mail(s) could not be read completely:[/]")
        for e in status["errors"]:
            console.print(f"  {plain(e['source'])}: {plain(e['error'])}", markup=False, highlight=False)

    if status["accounts"]:
        accounts = Table(title="Mailboxes", **_COMPACT)
        for column in ("account", "last success", "last error", "mails seen", "mail server (authserv-id)"):
            accounts.add_column(column, overflow="fold")
        for a in status["accounts"]:
            error = (f"{local_time(a['last_error_at'], minutes=True)} {a['last_error']}"
                     if a["last_error"] else "-")
            accounts.add_row(t(a["name"]), t(local_time(a["last_success"], minutes=True)
                                             if a["last_success"] else "never"),
                             t(error), str(a["messages_seen"]), t(a.get("authserv_id") or "not learned yet"))
        console.print(accounts)

    if status["alerts"]:
        waiting = [a for a in status["alerts"] if not a["sent"]]
        console.print(f"Alerts: {len(status['alerts'])} in all, {len(waiting)} not sent yet{_no_channel(status)}")
        for a in waiting:
            failed = (f" [yellow](not delivered after {a['attempts']} attempt(s): {t(a['last_error'])})[/]"
                      if a["attempts"] else "")
            console.print(f"  [bold]{t(_label({}, a['reason']))}[/]: {t(a['title'])}{failed}")
    console.print(f"{status['messages_seen']} mail(s) seen.")


def _round_outcome(state: str) -> str:
    """How a round ended, in a word ("refused"), or where it stands."""
    return {"rejected": "refused", "approved": "approved", "complaint_filed": "refused, complaint filed"}.get(
        state, state_label(state))


REVIEW_HINT = ("What is it? `privacy-tracker review` shows the guesses; `privacy-tracker review ID --as CATEGORY` "
               "says what it is, `privacy-tracker reviewed ID` takes it off this list.")


def _review_label(mail: dict) -> str:
    label = _label(CATEGORY_LABELS, mail["category"])
    return f"uncertain: {label}" if mail.get("uncertain") else label


def _learned_from(mail: dict) -> str:
    reason = mail.get("reason") or ""
    found = reason.find("learned from ")
    return reason[found:].rstrip(".") if found >= 0 else "learned from your verdict"


def _filtered(status: dict, lead: str = ";") -> str:
    """The filters of `status --member/--state/...`, so a partial list is not taken for all of it."""
    only = status.get("filter") or {}
    shown = ", ".join(f"{key} {value}" for key, value in only.items() if value)
    return f"{lead} {plain(shown)}" if shown else ""


def _no_channel(status: dict) -> str:
    if status.get("alert_channels", 1):
        return ""
    return " (no alert channel is configured: add apprise URLs to [alerts] urls; `privacy-tracker doctor` checks them)"


def _in_database(status: dict) -> str:
    """Which database is empty, so that a mistyped path shows."""
    return f" in {plain(status['database'])}" if status.get("database") else ""


def _render_status_plain(console: Console, status: dict, *, wide: bool = False) -> None:
    """For a pipe or a cron mail: a request is two lines, everything else one line per item."""
    out = lambda text: _print_plain(console, text)  # noqa: E731
    if status["requests"]:
        out(f"Requests ({status['today']}{_filtered(status)})")
        for entry in status["requests"]:
            kind = KIND_LABELS.get(entry["kind"], entry["kind"])
            day, note = _deadline_parts(entry)
            deadline = (f"decided {day}" if note == "decided" else f"deadline {day}" + (f" ({note})" if note else ""))
            details = [state_label(entry["state"]), f"{RECEIVED} {entry['submitted'] or '-'}",
                       f"last mail {local_time(entry['last_mail'])}", deadline]
            flags = _flags(entry)
            head = f"#{entry['id']} {plain(entry['address'])}, {plain(entry['platform'])}, {plain(kind)}"
            if wide:  # everything on one line: the country, each round, the complaint
                extra = [f"country {entry['country']}"] if entry.get("country") else []
                if len(entry.get("rounds", ())) > 1:
                    extra += [f"round {r['number']}: {_round_outcome(r['state'])}"
                              + (f" on {r['decided']}" if r["decided"] else "") for r in entry["rounds"]]
                if entry["complaint"]:
                    c = entry["complaint"]
                    extra.append(f"complaint to {c['authority']} filed {c['filed']}, answer due "
                                 f"{c['authority_deadline'] or 'unknown'}")
                out(head + "; " + "; ".join(plain(d) for d in [*details, *extra]) + (f"; {plain(flags)}" if flags else ""))
                continue
            out(head)
            out("    " + "; ".join(plain(d) for d in details) + (f"; {plain(flags)}" if flags else ""))
    elif status.get("filter"):
        out(f"No requests match{_filtered(status, ':')}.")
    else:
        out(f"No requests yet{_in_database(status)}. Ingest mail (`privacy-tracker ingest PATH`) or add one "
            "(`privacy-tracker request add`).")

    if status["review"]:
        out("")
        out("Mails to review")
        for m in status["review"]:
            sender = f"{m['sender_name'] or ''} <{m['sender'] or ''}>".strip()
            out(f"#{m['id']} {local_time(m['date'])} {_review_label(m)}: "
                f"from {plain(sender)}; subject: {plain(m['subject'])}; why: {plain(m['reason'])}")
        out(REVIEW_HINT)
    for code in status.get("codes", ()):
        out(f"One-time code for {plain(code['address'])} ({plain(code['platform'])}): {plain(code['code'])}, "
            f"received {local_time(code['received'], minutes=True)}. Enter it in Meta's form soon: codes expire.")
    for m in status.get("learned", ()):
        out(f"Mail #{m['id']} of {local_time(m['date'])} is {plain(m['category'])}: {plain(_learned_from(m))} "
            f"(privacy-tracker review {m['id']} --as ... corrects it).")

    for notice in status.get("suggestions", ()):
        address, platform = plain(notice["address"]), plain(notice["platform"] or "facebook")
        out("")
        out(f"Meta announced AI training to {address} ({platform}) on {local_time(notice['date'])} and no "
            f"request exists for it yet. To object: Meta's objection form, then")
        out(f"  privacy-tracker request add --address {address} --platform {platform} --date YYYY-MM-DD")

    if status["errors"]:
        out("")
        out(f"{len(status['errors'])} mail(s) could not be read completely:")
        for e in status["errors"]:
            out(f"  {plain(e['source'])}: {plain(e['error'])}")

    if status["accounts"]:
        out("")
        out("Mailboxes")
        for a in status["accounts"]:
            error = (f"{local_time(a['last_error_at'], minutes=True)} {plain(a['last_error'])}"
                     if a["last_error"] else "-")
            success = local_time(a["last_success"], minutes=True) if a["last_success"] else "never"
            out(f"{plain(a['name'])}: last success {success}; last error {error}; {a['messages_seen']} mail(s) seen; "
                f"mail server (authserv-id) {plain(a.get('authserv_id') or 'not learned yet')}")

    if status["alerts"]:
        waiting = [a for a in status["alerts"] if not a["sent"]]
        out("")
        out(f"Alerts: {len(status['alerts'])} in all, {len(waiting)} not sent yet{_no_channel(status)}")
        for a in waiting:
            failed = (f" (not delivered after {a['attempts']} attempt(s): {plain(a['last_error'])})"
                      if a["attempts"] else "")
            out(f"  {plain(_label({}, a['reason']))}: {plain(a['title'])}{failed}")
    out(f"{status['messages_seen']} mail(s) seen.")


def render_timeline(console: Console, summary: dict, events: list[dict]) -> None:
    soft = not console.is_terminal
    console.print(f"[bold]Request #{summary['id']}[/]: {t(summary['address'])}, {t(summary['platform'])}, "
                  f"{t(KIND_LABELS.get(summary['kind'], summary['kind']))}", soft_wrap=soft)
    console.print(f"State: {t(state_label(summary['state']))}   {RECEIVED}: {t(summary['submitted'] or '-')}   "
                  f"deadline: {_deadline_cell(summary)}", soft_wrap=soft)
    rounds = summary.get("rounds", ())
    if len(rounds) > 1:
        for r in rounds:
            outcome = (f"{_round_outcome(r['state'])} on {r['decided']}" if r["decided"]
                       else f"{state_label(r['state'])}, deadline {r['deadline'] or '-'}")
            late = " (answered late)" if r["answered_late"] else ""
            _print_plain(console, f"Round {r['number']}: {RECEIVED} {r['received'] or '-'}; {outcome}{late}")
    if soft:
        for event in events:
            _print_plain(console, f"{local_time(event['date'], minutes=True)}  "
                                  f"{_label(EVENT_LABELS, event['kind'])}"
                                  + (f": {plain(event['detail'])}" if event["detail"] else ""))
        return
    table = Table(**_COMPACT)
    table.add_column("date", no_wrap=True)
    table.add_column("event")
    table.add_column("detail", overflow="fold")
    for event in events:
        table.add_row(t(local_time(event["date"], minutes=True)), t(_label(EVENT_LABELS, event["kind"])),
                      t(event["detail"]))
    console.print(table)


def render_authorities(console: Console, authorities) -> None:
    """A block per authority: code and name, then its address, then its complaint form. Addresses and
    URLs are never split: a line longer than the terminal is left for the terminal to wrap."""
    for authority in authorities:
        console.print(f"[bold]{t(authority.code)}[/]  {t(authority.name)}", soft_wrap=True, highlight=False)
        console.print(f"    e-mail: {t(authority.email or '-')}", soft_wrap=True, highlight=False)
        console.print(f"    complaint form: {t(authority.complaint_url or '-')}", soft_wrap=True, highlight=False)


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
