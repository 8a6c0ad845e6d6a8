"""`calendar`: the open deadlines as an iCalendar file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tracker.cli import State, _state, app, console, err_console
from tracker.errors import TrackerError
from tracker.safe_text import plain


@app.command("calendar", help=(
    "The open deadlines as an iCalendar (.ics) file, each with a reminder 3 days before.\n\n"
    "One all-day event per open request, on the day Meta's decision is due, and one per filed complaint, "
    "on the day the authority's three months end. Set \\[calendar] file in the config and `daemon` and "
    "`poll --once` keep that file up to date, for a calendar app to subscribe to."))
def calendar_command(
    ctx: typer.Context,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the .ics to this file (replaced in one "
                                                "step, mode 0600). Default: print it.")] = None,
) -> None:
    """Print or write the calendar of open deadlines."""
    from tracker import ical

    data, count = ical.build(_state(ctx).db)
    if out is None:
        sys.stdout.write(data.decode("utf-8"))
        return
    written = ical.write_private(out, data, "--out")
    events = f"{count} deadline{'' if count == 1 else 's'}"
    console.print(f"{events} {'written to' if written else 'unchanged in'} {plain(out)}",
                  markup=False, highlight=False, soft_wrap=True)


def refresh_after_poll(state: State) -> bool:
    """Bring `[calendar] file` up to date after `poll --once`; False (and one error line) if it failed."""
    from tracker import ical

    try:
        ical.refresh_calendar(state.db, state.settings)
    except TrackerError as err:
        err_console.print(f"error: {plain(err)}", markup=False, highlight=False, soft_wrap=True)
        return False
    return True
