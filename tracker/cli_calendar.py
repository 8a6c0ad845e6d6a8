"""`calendar`: the open deadlines as an iCalendar file."""

from __future__ import annotations

from tracker.cli import app  # noqa: F401
