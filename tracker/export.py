"""What an organisation takes out of the tracker: every request with its timeline (CSV, JSON),
and a complaint draft for every refused request.

An export holds personal data and text from mail. A file is written 0600; a CSV cell that
a spreadsheet would read as a formula (=, +, -, @ first) is turned into text; one-time codes
are masked (status.request_events without codes).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator

from sqlmodel import Session

from tracker import lifecycle, store
from tracker.complaint import Draft, choose_authority, draft_complaint, residence
from tracker.config import Settings
from tracker.errors import TrackerError
from tracker.models import Member
from tracker.safe_text import json_text, one_line
from tracker.status import RequestFilter, matching_requests, request_events, without_codes

log = logging.getLogger(__name__)

FORMATS = ("csv", "json")

# One row per event, the request's columns repeated, so that a spreadsheet can filter on any of them.
CSV_COLUMNS = ("request", "address", "platform", "kind", "country", "region", "member", "state", "received",
               "deadline", "decided", "event_date", "event_kind", "event_detail")

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP "CSV injection"); tab and carriage return are gone already with the control characters.
_FORMULA_START = ("=", "+", "-", "@")


# ---- the records -------------------------------------------------------------------

def _member(member: Member | None) -> dict | None:
    if member is None:
        return None
    return {"address": member.address, "name": member.name, "country": member.country, "region": member.region}


def export_records(session: Session, today: date, only: RequestFilter | None = None) -> list[dict]:
    """Every request ``only`` lets through, in id order: its fields as `request show --json` gives
    them, its Land and member, and its events; no one-time code anywhere."""
    records = []
    for request, member, summary in matching_requests(session, today, only):
        codes = [m.otp for m in store.messages_of_request(session, request.id) if m.otp]
        records.append({**summary, "region": request.region, "member": _member(member),
                        "notes": without_codes(request.notes or "", codes),
                        "events": request_events(session, request, codes=False)})
    return records


def to_json(records: list[dict]) -> str:
    return json_text(records, indent=2) + "\n"


def csv_cell(value: object) -> str:
    """One spreadsheet cell: one line, no control characters, never a formula."""
    text = one_line(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def _where(record: dict) -> tuple[str | None, str | None]:
    """The request's country and Land, else its member's (what `--country` filters on)."""
    if record["country"]:
        return record["country"], record["region"]
    member = record["member"] or {}
    return member.get("country"), member.get("region")


def to_csv(records: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for record in records:
        country, region = _where(record)
        member = record["member"]
        columns = [record["id"], record["address"], record["platform"], record["kind"], country, region,
                   member["name"] if member else None, record["state"], record["submitted"], record["deadline"],
                   record["decided"]]
        # A request without events still gets its row: an export lists every request.
        for event in record["events"] or [{"date": None, "kind": None, "detail": None}]:
            writer.writerow([csv_cell(value) for value in (*columns, event["date"], event["kind"], event["detail"])])
    return out.getvalue()


def render(records: list[dict], form: str) -> str:
    if form not in FORMATS:
        raise TrackerError(f"--format: {form!r} is not a format; must be one of {', '.join(FORMATS)}")
    return to_csv(records) if form == "csv" else to_json(records)


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600, whole or not at all (a temporary file renamed)."""
    path = Path(path)
    if path.is_dir():
        raise TrackerError(f"--out: {path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise TrackerError(f"--out: the folder {folder} does not exist")
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)  # created 0600
        with os.fdopen(handle, "wb") as stream:
            stream.write(text.encode("utf-8"))
        os.replace(temporary, path)
        temporary = None
    except OSError as err:
        raise TrackerError(f"--out: cannot write {path}: {err.strerror or err}") from err
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    return path


# ---- complaint drafts for every refused request --------------------------------------

def is_refused(summary: dict) -> bool:
    """Meta refused and no complaint is recorded: refused now, or refused in an earlier round while
    a newer one is still open (a complaint about that refusal is possible)."""
    if summary["state"] == lifecycle.REJECTED:
        return True
    return summary["state"] in lifecycle.OPEN_STATES and any(
        r["state"] == lifecycle.REJECTED for r in summary.get("rounds", ())[:-1])


@dataclass
class BulkDraft:
    """One refused request of `complaint draft --all-refused`: its draft, or why it was skipped."""

    request: int
    address: str
    member: str | None
    draft: Draft | None = None
    source: str | None = None       # where its country came from
    problem: str | None = None


def draft_all_refused(session: Session, settings: Settings, today: date, only: RequestFilter | None, *,
                      out_dir: Path, authority_code: str | None = None, language: str | None = None,
                      name: str | None = None) -> Iterator[BulkDraft]:
    """Draft a complaint for every refused request ``only`` lets through, into
    ``out_dir/complaint-ID-AUTHORITY``; one that cannot be drafted is reported and the rest go on.

    The country is the request's, else its member's, else the config's ([[accounts]], [person]);
    the letter is signed with the member's name, else ``name`` ([person] name).
    """
    for request, member, summary in matching_requests(session, today, only):
        if not is_refused(summary):
            continue
        result = BulkDraft(request.id, request.address, member.name if member else None)
        # A member's country stands in for a request that has none; it comes before the config's.
        country, region = (member.country, member.region) if member and not request.country else (None, None)
        where = residence(request, settings, country, region)
        if where is None and not authority_code:
            result.problem = (f"its country is unknown: set it with `privacy-tracker request edit {request.id} "
                              f"--country CC`, register {request.address} with `privacy-tracker member add`, or "
                              f"set [person] country in the config")
            yield result
            continue
        result.source = "its member" if country else where.source if where else None
        try:
            authority, _ = choose_authority(request, authority_code, where)
            folder = out_dir / f"complaint-{request.id}-{authority.code}"
            result.draft = draft_complaint(session, settings, request.id, authority_code=authority_code,
                                           language=language, out=folder, name=member.name if member else name,
                                           country=country, region=region, today=today)
        except TrackerError as err:
            log.debug("request #%d: no complaint drafted", request.id, exc_info=True)
            result.problem = str(err)
        yield result
