"""Pure request logic: the state a request is in, and the deadlines the law sets.

No I/O here. The store hands in a request's events; this module says what they
mean. Events are replayed in mail-date order, so mails that arrive out of order
give the same result.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime

from tracker import vocabulary as v

# States a request can be in.
SUBMITTED = "submitted"            # entered by the person; nothing heard yet
CODE_SENT = "code_sent"            # a one-time code arrived: the form is being submitted
ACKNOWLEDGED = "acknowledged"      # Meta confirmed receipt; waiting for a decision
INFO_REQUESTED = "info_requested"  # Meta wants more information: the person must act
APPROVED = "approved"              # objection honoured: done
REJECTED = "rejected"              # refused: next step is a complaint
COMPLAINT_FILED = "complaint_filed"

OPEN_STATES = frozenset({SUBMITTED, CODE_SENT, ACKNOWLEDGED, INFO_REQUESTED})
_DECIDED_STATES = frozenset({APPROVED, REJECTED, COMPLAINT_FILED})

# Event kinds that are not mail categories.
EVENT_SUBMITTED = "submitted"
EVENT_EXTENDED = v.EXTENDED
EVENT_COMPLAINT_FILED = "complaint_filed"
EVENT_NOTE = "note"
EVENT_CHANGED = "changed"  # the person corrected something: kept in the timeline, no effect on the state

_STATE_AFTER = {
    EVENT_SUBMITTED: SUBMITTED,
    v.OTP: CODE_SENT,
    v.ACKNOWLEDGEMENT: ACKNOWLEDGED,
    v.INFO_REQUESTED: INFO_REQUESTED,
    v.APPROVED: APPROVED,
    v.REJECTED: REJECTED,
    EVENT_COMPLAINT_FILED: COMPLAINT_FILED,
}
# Same-day tie break: the later step of the process wins; a refusal outranks an approval
# so that a contradictory pair never hides a refusal from the person.
_RANK = {EVENT_SUBMITTED: 0, v.OTP: 1, v.ACKNOWLEDGEMENT: 2, EVENT_EXTENDED: 3,
         v.INFO_REQUESTED: 4, v.APPROVED: 5, v.REJECTED: 6, EVENT_COMPLAINT_FILED: 7, EVENT_NOTE: 8,
         EVENT_CHANGED: 8}
# Mails that tell when Meta received the request, when the person gave no date.
_RECEIPT_KINDS = frozenset({v.OTP, v.ACKNOWLEDGEMENT})

DECISION_MONTHS = 1    # Art. 12(3)
EXTENSION_MONTHS = 2   # Art. 12(3), only when the controller announces it
AUTHORITY_MONTHS = 3   # Art. 78(2)


@dataclass(frozen=True)
class EventFact:
    """The part of an event that lifecycle needs."""

    kind: str
    occurred_at: datetime
    tie: int = 0  # a stable last tie-breaker (the event id)


@dataclass(frozen=True)
class Round:
    """One go at the request: from the first mail (or the date the person gave) to Meta's answer.

    Objecting again after an answer starts a new round, with its own Art. 12(3) clock;
    an earlier round keeps what happened in it (a refusal stays a refusal one can complain about).
    """

    number: int                  # 1, 2, ...
    state: str                   # where this round ended, or stands
    received: date | None        # when Meta received it (Art. 12(3) clock start)
    deadline: date | None        # decision due
    extended: bool
    decided: date | None         # date of the approval or refusal that ended it
    info_requested: date | None  # first time Meta asked for more information in this round
    answered_late: bool          # decided (or still open) after the deadline


@dataclass(frozen=True)
class Timeline:
    state: str
    received: date | None        # when Meta received the request (Art. 12(3) clock start)
    deadline: date | None        # decision due
    extended: bool
    last_mail: datetime | None
    decided: date | None         # date of the approval or refusal
    rounds: tuple[Round, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def last_refusal(self) -> Round | None:
        """The latest round Meta refused (a complaint may be filed about it), even if a newer one is open."""
        refused = [r for r in self.rounds if r.state in (REJECTED, COMPLAINT_FILED) and r.decided is not None]
        return refused[-1] if refused else None

    def days_left(self, today: date) -> int | None:
        """Days until the deadline (negative: overdue). None once decided or without a date."""
        if not self.is_open or self.deadline is None:
            return None
        return (self.deadline - today).days

    def overdue(self, today: date) -> bool:
        left = self.days_left(today)
        return left is not None and left < 0


def add_months(start: date, months: int) -> date:
    """Same date ``months`` later, or that month's last day (Regulation 1182/71, Art. 3(2)(c)).

    The rule of Art. 3(4) that moves a period ending on a Saturday, Sunday or
    public holiday to the next working day is not applied: public holidays
    differ by country. A deadline may therefore show up to a long weekend
    earlier than the last day the law allows.
    """
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    if year > date.max.year:  # an extreme date stored by an older version: never overflow
        return date.max
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def ordered(events: list[EventFact]) -> list[EventFact]:
    return sorted(events, key=lambda e: (e.occurred_at, _RANK.get(e.kind, 9), e.tie))


class _RoundBuilder:
    """What one round has seen so far, while the events are replayed."""

    def __init__(self, number: int, submitted: date | None):
        self.number = number
        self.submitted = submitted
        self.state = SUBMITTED
        self.receipt_dates: list[date] = []
        self.extension_dates: list[date] = []
        self.decided: date | None = None
        self.info_requested: date | None = None

    def clock(self) -> tuple[date | None, date | None, bool]:
        received = self.submitted or (min(self.receipt_dates) if self.receipt_dates else None)
        if received is None:
            return None, None, bool(self.extension_dates)
        deadline = add_months(received, DECISION_MONTHS)
        # Art. 12(3): Meta must announce the extension within the first month;
        # one announced later does not move the deadline.
        extended = any(day <= deadline for day in self.extension_dates)
        if extended:
            deadline = add_months(received, DECISION_MONTHS + EXTENSION_MONTHS)
        return received, deadline, extended

    def build(self) -> Round:
        received, deadline, extended = self.clock()
        late = self.decided is not None and deadline is not None and self.decided > deadline
        return Round(number=self.number, state=self.state, received=received, deadline=deadline,
                     extended=extended, decided=self.decided, info_requested=self.info_requested,
                     answered_late=late)


def derive(events: list[EventFact], submitted: date | None = None) -> Timeline:
    """Replay a request's events in date order; the result does not depend on arrival order."""
    current = _RoundBuilder(1, submitted)
    finished: list[Round] = []
    last_mail = None
    for event in ordered(events):
        if event.kind in _RECEIPT_KINDS and current.state in _DECIDED_STATES:
            # Objecting again after an answer (a new code or acknowledgement):
            # a new round, with its own Art. 12(3) clock.
            finished.append(current.build())
            keep = submitted if (submitted is not None and current.decided is not None
                                 and submitted > current.decided) else None
            current = _RoundBuilder(current.number + 1, keep)
        if event.kind == EVENT_EXTENDED:
            current.extension_dates.append(event.occurred_at.date())
            if current.state in (SUBMITTED, CODE_SENT):
                current.state = ACKNOWLEDGED
        elif event.kind in _STATE_AFTER:
            current.state = _STATE_AFTER[event.kind]
            if event.kind in (v.APPROVED, v.REJECTED):
                current.decided = event.occurred_at.date()
            if event.kind == v.INFO_REQUESTED and current.info_requested is None:
                current.info_requested = event.occurred_at.date()
        if event.kind in _RECEIPT_KINDS:
            current.receipt_dates.append(event.occurred_at.date())
        if event.kind in v.REQUEST_CATEGORIES:
            last_mail = event.occurred_at
    rounds = (*finished, current.build())
    latest = rounds[-1]
    return Timeline(state=latest.state, received=latest.received, deadline=latest.deadline,
                    extended=latest.extended, last_mail=last_mail, decided=latest.decided, rounds=rounds)


def authority_deadline(filed: date) -> date:
    """Art. 78(2): the authority must handle the complaint or say how it stands within three months."""
    return add_months(filed, AUTHORITY_MONTHS)
