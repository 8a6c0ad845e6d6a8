"""The range of dates the tracker believes: from 1990 to now.

A Date header is written by the sender, so it is hostile input like the rest of
a mail: the year 9999 would push a deadline past what a date can hold, and the
year 1900 would make a request overdue for a century. A mail's date outside
the range counts as missing, so its arrival time (IMAP INTERNALDATE, the file's
time) is used instead; a date a person types outside it is refused.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

EARLIEST = date(1990, 1, 1)
# A mail may claim to be a little ahead of our clock (time zones, a sender's clock that is
# fast); more than a day ahead is not believed.
FUTURE_SLACK = timedelta(days=1)


def sane_mail_time(value: datetime | None, now: datetime | None = None) -> datetime | None:
    """``value`` when it lies between 1990 and a day after ``now``, else None (as if it were missing)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    try:
        if value.date() < EARLIEST or value > now + FUTURE_SLACK:
            return None
    except (OverflowError, ValueError):
        return None
    return value


def latest_typed_day() -> date:
    """The last day a person may type: today where they are, or in UTC, whichever is later."""
    return max(date.today(), datetime.now(timezone.utc).date())


def typed_day_problem(day: date) -> str | None:
    """Why a date typed on the command line cannot be used, or None when it can."""
    if day < EARLIEST:
        return f"{day.isoformat()} is before {EARLIEST.year}"
    latest = latest_typed_day()
    if day > latest:
        return f"{day.isoformat()} is in the future (today is {latest.isoformat()})"
    return None
