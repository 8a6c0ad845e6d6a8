"""The open deadlines as an iCalendar file (RFC 5545), for a calendar app to import or subscribe to.

The only module that imports icalendar.

* One all-day event per open request, on the day Meta's decision is due
  (Art. 12(3)), and one per filed complaint still waiting, on the day the
  authority's three months end (Art. 78(2)); each with a reminder some days before.
* UIDs are derived from the database rows (``request-3-round-2-deadline@privacy-tracker``),
  so an app that subscribes to the file moves an event when a deadline moves
  (an announced extension) instead of adding a second one.
* DTSTAMP is when the facts behind an event were last recorded, not when the
  file was made: the same database gives the same bytes, so the daemon rewrites
  the file only when something changed.
* Only what the tracker itself knows goes in: address, platform, dates,
  authority and reference. Never a one-time code, never mail text or notes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from icalendar import Alarm, Calendar, Event, vDuration

from tracker import lifecycle, store
from tracker.config import Settings
from tracker.errors import TrackerError
from tracker.models import Complaint, Request
from tracker.safe_text import one_line

log = logging.getLogger(__name__)

REMIND_DAYS = 3
UID_DOMAIN = "privacy-tracker"
PRODID = "-//privacy-request-tracker//deadlines//EN"
CALENDAR_NAME = "Privacy requests to Meta"
# How often a subscribing app should fetch the file again (RFC 7986 REFRESH-INTERVAL, and the
# older X-PUBLISHED-TTL that Outlook and Apple read).
REFRESH = timedelta(hours=1)

_PLATFORMS = {"facebook": "Facebook", "instagram": "Instagram", "whatsapp": "WhatsApp"}
_KINDS = {"ai_objection": "objection", "third_party_data": "third-party data request"}
_KINDS_LONG = {"ai_objection": "objection to the use of your data for AI at Meta",
               "third_party_data": "request to delete third-party data used for AI at Meta"}

# The daemon polls accounts in parallel threads: one calendar is built and written at a time,
# so an older snapshot never replaces a newer one.
_write_lock = threading.Lock()


@dataclass(frozen=True)
class Deadline:
    """One event of the calendar."""

    uid: str
    day: date
    summary: str
    description: str
    revised: datetime   # when the facts behind it were last recorded (aware, UTC)


def _aware(value: datetime) -> datetime:
    return store.utc(value).replace(microsecond=0)


def _platform(request: Request) -> str:
    return _PLATFORMS.get(request.platform, one_line(request.platform).capitalize())


def _what(request: Request) -> str:
    """'your Instagram objection (request #3)'"""
    return f"your {_platform(request)} {_KINDS.get(request.kind, 'request')} (request #{request.id})"


def _about(request: Request) -> str:
    kind = _KINDS_LONG.get(request.kind, one_line(request.kind).replace("_", " "))
    return f"your {kind}, on {_platform(request)}, made with {one_line(request.address)}"


def _request_deadline(session, request: Request) -> Deadline | None:
    try:
        timeline = store.timeline_of(session, request)
    except (OverflowError, ValueError):  # a date stored before dates were range-checked
        return None
    if not timeline.is_open or timeline.deadline is None or timeline.deadline == date.max:
        return None
    current = timeline.rounds[-1]
    facts = [e.created_at for e in store.events_of(session, request.id) if e.kind != lifecycle.EVENT_NOTE]
    lines = [f"Request #{request.id}: {_about(request)}."]
    again = " (you objected again)" if current.number > 1 else ""
    lines.append(f"Meta received it on {current.received.isoformat()}{again}.")
    if timeline.extended:
        lines.append("Meta extended its deadline by two months: it must decide within three months of "
                     "receiving the request (GDPR Art. 12(3)).")
    else:
        lines.append("Meta must decide within one month of receiving the request (GDPR Art. 12(3)).")
    if timeline.state == lifecycle.INFO_REQUESTED and current.info_requested is not None:
        lines.append(f"Meta asked you for more information on {current.info_requested.isoformat()}: "
                     f"answer it (privacy-tracker request show {request.id} has the mail).")
    lines.append("If nothing comes by this date, Meta is late: you can complain to your data protection "
                 "authority. The tracker drafts the complaint with the evidence:")
    lines.append(f"  privacy-tracker complaint draft {request.id}")
    if not timeline.extended:
        lines.append("If Meta announced an extension the tracker did not record:")
        lines.append(f"  privacy-tracker request extend {request.id} --date YYYY-MM-DD")
    return Deadline(
        uid=f"request-{request.id}-round-{current.number}-deadline@{UID_DOMAIN}",
        day=timeline.deadline,
        summary=f"Meta must answer {_what(request)}",
        description="\n".join(lines),
        revised=_aware(max([request.created_at, *facts])),
    )


def _complaint_deadline(request: Request, complaint: Complaint) -> Deadline | None:
    from tracker.complaint import authority_name

    try:
        due = lifecycle.authority_deadline(complaint.filed)
    except (OverflowError, ValueError):
        return None
    if due == date.max:
        return None
    reference = f", reference {one_line(complaint.reference)}" if complaint.reference.strip() else ""
    code = one_line(complaint.authority)
    return Deadline(
        uid=f"complaint-{complaint.id}-authority@{UID_DOMAIN}",
        day=due,
        summary=(f"The authority must tell you how your complaint stands ({_platform(request)} "
                 f"{_KINDS.get(request.kind, 'request')}, request #{request.id})"),
        description="\n".join([
            f"On {complaint.filed.isoformat()} you complained to {one_line(authority_name(complaint.authority))} "
            f"({code}{reference}) about request #{request.id}: {_about(request)}.",
            "The authority must handle the complaint or tell you how it stands within three months "
            "(GDPR Art. 78(2)).",
            "If nothing comes by this date, ask the authority how the complaint stands, quoting your reference; "
            "if it stays silent, Art. 78(2) lets you take it to court.",
            f"  privacy-tracker request show {request.id}",
        ]),
        revised=_aware(complaint.created_at),
    )


def deadlines(session) -> list[Deadline]:
    """Every open deadline in the database, by date."""
    found: list[Deadline] = []
    for request in store.all_requests(session):
        entry = _request_deadline(session, request)
        if entry is not None:
            found.append(entry)
        for complaint in store.complaints_of(session, request.id):
            if complaint.state != "filed":  # answered or closed: nothing to wait for
                continue
            entry = _complaint_deadline(request, complaint)
            if entry is not None:
                found.append(entry)
    return sorted(found, key=lambda d: (d.day, d.uid))


def render(entries: list[Deadline]) -> bytes:
    """The iCalendar text of ``entries``; the same entries give the same bytes."""
    calendar = Calendar()
    calendar.add("version", "2.0")
    calendar.add("prodid", PRODID)
    calendar.add("calscale", "GREGORIAN")
    calendar.add("name", CALENDAR_NAME)
    calendar.add("x-wr-calname", CALENDAR_NAME)
    calendar.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(REFRESH))
    for entry in entries:
        event = Event()
        event.add("uid", entry.uid)
        event.add("dtstamp", entry.revised)
        event.add("last-modified", entry.revised)
        event.add("dtstart", entry.day)
        event.add("dtend", entry.day + timedelta(days=1))
        event.add("summary", entry.summary)
        event.add("description", entry.description)
        event.add("transp", "TRANSPARENT")  # a deadline, not a meeting: the day stays free
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("trigger", timedelta(days=-REMIND_DAYS))
        alarm.add("description", f"In {REMIND_DAYS} days: {entry.summary}")
        event.add_component(alarm)
        calendar.add_component(event)
    return calendar.to_ical()


def build(db: store.Store) -> tuple[bytes, int]:
    """The calendar of the database's open deadlines, and how many events it has."""
    with db.session() as session:
        entries = deadlines(session)
    return render(entries), len(entries)


def write_private(path: Path, data: bytes, what: str) -> bool:
    """Replace ``path`` by ``data`` atomically, mode 0600; False (and nothing written) if it holds them already.

    ``what`` names the option or key the path came from, for the error line.
    """
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise TrackerError(f"{what}: {path} is a folder; name a file such as {path / 'deadlines.ics'}") from None
    except OSError as err:
        raise TrackerError(f"{what}: cannot read {path}: {err.strerror or err}") from err
    folder = path.parent
    if not folder.is_dir():
        raise TrackerError(f"{what}: the folder {folder} does not exist; create it or choose another file")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")  # created 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # A reader (a calendar app, a web server) sees the old file or the new one, never half of one.
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)
        raise TrackerError(f"{what}: cannot write {path}: {err.strerror or err}") from err
    return True


def refresh_calendar(db: store.Store, settings: Settings) -> bool:
    """Rewrite ``[calendar] file`` if the deadlines changed (after a poll); True if it was written."""
    path = settings.calendar.file
    if path is None:
        return False
    with _write_lock:
        data, count = build(db)
        written = write_private(path, data, "[calendar] file")
    if written:
        log.info("calendar %s: %d deadline(s)", path, count)
    return written
