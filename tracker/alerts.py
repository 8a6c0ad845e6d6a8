"""Alerts as an outbox.

An alert row is written in the same transaction as the event that causes it,
keyed by (request or message, reason), so ingesting a mail twice can never
queue it twice. Periodic checks (``check_due``) queue what time alone causes:
an overdue request, a silent authority, a failing mailbox.

Sending happens afterwards (``send_pending``), through apprise; this is the
only module that imports it. A refusal goes out as a warning and an
impersonation as a failure (apprise's notification types, which channels show
in amber and red or with a higher priority); every other alert as information.

Alert texts are written in the person's language (``[person] language``: en, de,
fr, it, es, nl, pl; English otherwise) when the alert is queued, from the
``[alert]`` table of ``tracker/letters/<language>.toml``; mail text is inserted on
one line, with codes masked, in every language. Delivery is at least once, and at most twice:

* a channel is recorded as having an alert, in its own transaction, only after
  apprise reported success; a channel that has it is never sent it again;
* if the process dies between apprise's success and that commit, the next run
  sends the alert to that one channel once more. No outbox can avoid this
  window without the receiver's help; it is one duplicate, never a loss;
* a sender claims an alert (``claimed_until``) before delivering it, so two
  processes (two workers, the daemon and a manual ``ingest``) never send it at the
  same time; a sender killed while it held the claim leaves it to the others once
  the claim ends (``[daemon] lease_seconds``, at least ``CLAIM_AT_LEAST``);
* a failed delivery is retried with exponential backoff and jitter, up to
  ``[alerts] max_attempts`` attempts; then it is given up and logged.

An "overdue" alert is only true while the request stays undecided with the same
deadline. Pollers run in parallel (the daemon's account threads, a cron
``poll --once``), so a decision can be recorded just after the check queued one:

* the check reads and writes in one transaction that holds the write lock from
  its start (``Store.write``), so it sees every decision committed before it,
  and none can be committed while it decides;
* a decision, or a moved deadline, withdraws the request's unsent overdue alerts
  (``withdraw_stale_overdue``) in the transaction that records it;
* the sender checks again when it claims an overdue alert, and withdraws it
  instead of sending it if the request is decided by then.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import apprise
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from tracker import lifecycle, store
from tracker.config import Settings
from tracker.letters import normalise_language, texts
from tracker.logs import redact
from tracker.models import Account, Alert, Complaint, Message, Request, utcnow
from tracker.safe_text import one_line
from tracker.text import mask_codes_in

log = logging.getLogger(__name__)

# Reasons, also used in alert keys.
REFUSED = "refused"
INFO_REQUESTED = "info_requested"
OVERDUE = "overdue"
REVIEW = "review"
IMPERSONATION = "impersonation"
AUTHORITY_SILENT = "authority_silent"
MAILBOX_FAILING = "mailbox_failing"
ONE_TIME_CODE = "one_time_code"
MEMBER_ACKNOWLEDGEMENT = "member_acknowledgement"  # to a member of an organisation: their forward arrived

KIND_LABELS = {"ai_objection": "objection to AI training", "third_party_data": "third-party data request"}

# How loud an alert is, by reason: a refusal needs the person's action (a complaint), an
# impersonation is a danger (a fake asking for a code or a click). Every other reason is news.
NOTIFY_TYPES = {REFUSED: apprise.NotifyType.WARNING, IMPERSONATION: apprise.NotifyType.FAILURE}


def _texts(language: str | None) -> dict:
    """The [alert] texts in ``language`` ("de", "de-AT"...); English for none or one without texts."""
    return texts(normalise_language(language) or "en")["alert"]


def _day(value: datetime | None, t: dict | None = None) -> str:
    return value.strftime("%Y-%m-%d") if value else (t or _texts(None))["unknown_date"]


def _on(value: datetime | None, t: dict) -> str:
    return t["on_day"].format(day=value.strftime("%Y-%m-%d")) if value else t["on_unknown"]


def _count(forms: list[str], n: int) -> str:
    return (forms[0] if n == 1 else forms[1]).format(n=n)


def describe_request(request: Request, language: str | None = None) -> str:
    t = _texts(language)
    return t["request"].format(id=request.id, platform=request.platform.capitalize(),
                               kind=t["kinds"].get(request.kind, request.kind), address=request.address)


def queue(session: Session, key: str, reason: str, title: str, body: str, *,
          request_id: int | None = None, message_id: int | None = None,
          account_id: int | None = None, contains_code: bool = False) -> Alert | None:
    """Add an alert unless one with this key exists. Returns the new alert, or None."""
    if session.exec(select(Alert.id).where(Alert.key == key)).first() is not None:
        return None
    alert = Alert(key=key, reason=reason, title=title, body=body, request_id=request_id,
                  message_id=message_id, account_id=account_id, contains_code=contains_code)
    session.add(alert)
    log.info("alert queued: %s", title)
    return alert


def _quoted(text: str | None) -> str:
    """Mail text as an alert quotes it: one line, no control codes, and 6-8 digit runs masked
    (a fake or held code mail carries its code in the subject, the display name, or the
    reason that quotes them; these alerts go to every channel)."""
    return mask_codes_in(one_line(text))


def queue_for_request_mail(session: Session, request: Request, message: Message,
                           language: str | None = None) -> None:
    """Alerts a request mail causes: a refusal, or a request for more information.

    Called after the mail's event is added, in the same transaction: a decision (or
    an extension that moved the deadline) also withdraws an overdue alert that waits.
    ``language`` is the person's ([person] language); the texts are English without it.
    """
    withdraw_stale_overdue(session, request)
    t = _texts(language)
    fill = dict(request=describe_request(request, language), on=_on(message.mail_date, t), id=request.id,
                platform=request.platform.capitalize(), address=request.address,
                subject=one_line(message.subject))  # a newline in it would add a line of its own to the alert
    if message.category == "rejected":
        # Keyed by the refusal mail: a second refusal (after objecting again) is news too.
        queue(session, f"request:{request.id}:{REFUSED}:{message.id}", REFUSED,
              t["refused_title"].format(**fill), t["refused_body"].format(**fill),
              request_id=request.id, message_id=message.id)
    elif message.category == "info_requested":
        queue(session, f"request:{request.id}:{INFO_REQUESTED}:{message.id}", INFO_REQUESTED,
              t["info_title"].format(**fill), t["info_body"].format(**fill),
              request_id=request.id, message_id=message.id)


def queue_for_review_mail(session: Session, message: Message, language: str | None = None) -> None:
    """Alerts for mail that never changes a request: unrecognised Meta mail and impersonation."""
    t = _texts(language)
    fill = dict(on=_on(message.mail_date, t), subject=_quoted(message.subject), reason=_quoted(message.reason),
                recipient=message.recipient or t["unknown_recipient"], sender=one_line(message.sender),
                sender_name=_quoted(message.sender_name))
    if message.category == "suspicious":
        queue(session, f"message:{message.id}:{IMPERSONATION}", IMPERSONATION,
              t["impersonation_title"].format(**fill), t["impersonation_body"].format(**fill),
              message_id=message.id)
    elif message.category == "meta_other":
        queue(session, f"message:{message.id}:{REVIEW}", REVIEW,
              t["review_title"].format(**fill), t["review_body"].format(**fill),
              message_id=message.id)


def queue_for_forward(session: Session, forward: Message, mailbox: str, *, held: bool,
                      member: tuple[str, str] | None = None, acknowledgement: str | None = None) -> None:
    """Alerts for a mail forwarded to an intake mailbox (tracker/intake.py), keyed by the forward.

    ``held``: the forward itself waits for review (forwarded inline, or by an address that is no
    member's), said as a forward: a member sent it, not Meta. ``acknowledgement``: what became of
    it, addressed in its text to ``member`` (name, address), for an intake mailbox with
    ``acknowledge = true``; like every alert it goes to the configured channels.
    """
    when = _day(forward.mail_date)
    subject, sender = _quoted(forward.subject), one_line(forward.sender)
    if held:
        reason = IMPERSONATION if forward.category == "suspicious" else REVIEW
        queue(session, f"message:{forward.id}:{reason}", reason,
              f"A forwarded mail needs your review ({sender or 'unknown sender'})",
              f"On {when} {sender or 'an unknown sender'} forwarded \"{subject}\" to the intake mailbox "
              f"{one_line(mailbox)}: {_quoted(forward.reason)}\n"
              f"  privacy-tracker review",
              message_id=forward.id)
    if acknowledgement is not None and member is not None:
        name, address = member
        queue(session, f"message:{forward.id}:{MEMBER_ACKNOWLEDGEMENT}", MEMBER_ACKNOWLEDGEMENT,
              f"To {_quoted(name)} <{one_line(address)}>: your forwarded mail was received",
              f"Dear {_quoted(name)},\n"
              f"we received the mail you forwarded on {when} (\"{subject}\"). {_quoted(acknowledgement)}",
              message_id=forward.id)


def queue_code(session: Session, request: Request, message: Message, language: str | None = None) -> None:
    """The one-time code, for people who asked for it on a private channel."""
    t = _texts(language)
    queue(session, f"message:{message.id}:{ONE_TIME_CODE}", ONE_TIME_CODE,
          t["code_title"].format(platform=request.platform.capitalize()),
          t["code_body"].format(request=describe_request(request, language), otp=message.otp,
                                when=_day(message.mail_date, t)),
          request_id=request.id, message_id=message.id, contains_code=True)


# ---- periodic checks: what time alone causes ---------------------------------

# A mailbox is reported when it has not synced for this many polling intervals.
MAILBOX_SILENT_INTERVALS = 3


def _overdue_key(request_id: int, deadline: date) -> str:
    # The deadline is part of the key: an extension recorded later moves the
    # deadline, and the request is reported again if it passes that one too.
    return f"request:{request_id}:{OVERDUE}:{deadline.isoformat()}"


def _overdue_is_stale(alert: Alert, request: Request | None, timeline: lifecycle.Timeline | None) -> str | None:
    """Why an overdue alert no longer holds (the request is decided, or its deadline moved); None if it holds."""
    if request is None or timeline is None:
        return "the request no longer exists"
    if not timeline.is_open:
        return f"the request is {timeline.state} now"
    if timeline.deadline is None or alert.key != _overdue_key(request.id, timeline.deadline):
        moved = timeline.deadline.isoformat() if timeline.deadline else "no date"
        return f"the deadline is {moved} now"
    return None


def _withdraw(session: Session, alert: Alert, why: str) -> None:
    """Take an unsent alert back. One that some channel already has stays on record, as done."""
    if alert.delivered_channels.strip():
        alert.sent_at = alert.sent_at or utcnow()
        alert.claimed_until = alert.next_attempt_at = None
        alert.last_error = f"withdrawn before every channel had it: {why}"[:1000]
        session.add(alert)
    else:
        session.delete(alert)
    log.info("alert withdrawn (%s): %s", why, alert.title)


def withdraw_stale_overdue(session: Session, request: Request, timeline: lifecycle.Timeline | None = None) -> int:
    """Withdraw the request's unsent overdue alerts that its state no longer supports.

    Called in the transaction that records a decision or moves a deadline, and by the
    periodic check. ``timeline`` is derived from the events when not given. Returns
    how many were withdrawn.
    """
    pending = list(session.exec(select(Alert).where(Alert.request_id == request.id, Alert.reason == OVERDUE,
                                                    Alert.sent_at == None)))  # noqa: E711
    if not pending:
        return 0
    if timeline is None:
        timeline = store.timeline_of(session, request)
    withdrawn = 0
    for alert in pending:
        why = _overdue_is_stale(alert, request, timeline)
        if why is not None:
            _withdraw(session, alert, why)
            withdrawn += 1
    return withdrawn


# The category a mail must still have for the alert it caused to hold.
_MAIL_ALERT_HOLDS_FOR = {REFUSED: "rejected", INFO_REQUESTED: "info_requested", REVIEW: "meta_other",
                         IMPERSONATION: "suspicious", ONE_TIME_CODE: "otp"}


def withdraw_stale_for_message(session: Session, message_id: int, category: str | None) -> int:
    """Withdraw the unsent alerts a mail caused that it no longer supports: the person relabelled it
    (a "refused" alert for a mail that is an approval now) or forgot it (``category`` None)."""
    withdrawn = 0
    for alert in session.exec(select(Alert).where(Alert.message_id == message_id, Alert.sent_at == None)):  # noqa: E711
        holds_for = _MAIL_ALERT_HOLDS_FOR.get(alert.reason)
        if category is None or (holds_for is not None and holds_for != category):
            _withdraw(session, alert, f"the mail is {category or 'forgotten'} now")
            withdrawn += 1
    return withdrawn


def withdraw_unsent_of_request(session: Session, request_id: int) -> int:
    """Withdraw every unsent alert of a request the person deleted; sent ones stay on record."""
    pending = list(session.exec(select(Alert).where(Alert.request_id == request_id,
                                                    Alert.sent_at == None)))  # noqa: E711
    for alert in pending:
        _withdraw(session, alert, "the request was deleted")
    return len(pending)


def _queue_overdue(session: Session, request: Request, timeline: lifecycle.Timeline, today: date,
                   language: str | None = None) -> Alert | None:
    t = _texts(language)
    fill = dict(request=describe_request(request, language), id=request.id, address=request.address,
                platform=request.platform.capitalize(), received=timeline.received.isoformat(),
                deadline=timeline.deadline.isoformat(), today=today.isoformat(),
                extension=t["extension"] if timeline.extended else "",
                late=_count(t["days"], -timeline.days_left(today)))
    return queue(session, _overdue_key(request.id, timeline.deadline), OVERDUE,
                 t["overdue_title"].format(**fill), t["overdue_body"].format(**fill), request_id=request.id)


def _queue_authority_silent(session: Session, request: Request, complaint: Complaint, today: date,
                            language: str | None = None) -> Alert | None:
    from tracker.complaint import authority_name

    t = _texts(language)
    due = lifecycle.authority_deadline(complaint.filed)
    fill = dict(request=describe_request(request, language), id=request.id, address=request.address,
                filed=complaint.filed.isoformat(), authority=authority_name(complaint.authority),
                code=complaint.authority, due=due.isoformat(), today=today.isoformat(),
                reference=t["reference"].format(reference=complaint.reference) if complaint.reference else "",
                ago=_count(t["days"], (today - due).days))
    return queue(session, f"complaint:{complaint.id}:{AUTHORITY_SILENT}", AUTHORITY_SILENT,
                 t["silent_title"].format(**fill), t["silent_body"].format(**fill), request_id=request.id)


def _queue_mailbox_failing(session: Session, account: Account, settings: Settings,
                           now: datetime) -> Alert | None:
    if account.consecutive_failures <= 0:
        return None
    silent_for = timedelta(minutes=settings.daemon.interval_minutes * MAILBOX_SILENT_INTERVALS)
    last_success = store.utc(account.last_success_at)
    stale = (account.consecutive_failures >= MAILBOX_SILENT_INTERVALS
             or (last_success is not None and now - last_success >= silent_for))
    login = account.login_refused
    if not (stale or login):
        return None
    # One alert per outage: the key names the last success, so a mailbox that
    # recovers and fails again is reported again.
    since = last_success.strftime("%Y-%m-%d %H:%M") if last_success else "never"
    t = _texts(settings.person.language)
    fill = dict(name=account.name, since=since, failures=_count(t["failures"], account.consecutive_failures),
                where=f"{account.username}@{account.host}" if account.username else (account.host or account.name),
                when=_day(account.last_error_at, t), error=redact(account.last_error or t["unknown_error"]))
    body = t["mailbox_body_since" if last_success else "mailbox_body_never"].format(**fill)
    return queue(
        session, f"account:{account.id}:{MAILBOX_FAILING}:{since}", MAILBOX_FAILING,
        t["mailbox_title_login" if login else "mailbox_title_sync"].format(**fill),
        f"{body}\n{t['mailbox_next']}", account_id=account.id)


def check_due(session: Session, settings: Settings, today: date, now: datetime) -> list[Alert]:
    """Queue the alerts that time alone causes. Returns the new ones (none twice, whenever called).

    Run it in a ``Store.write`` transaction (``run_checks`` does): it must decide on the
    committed state, with no decision committed between its reading and its writing.
    An unsent overdue alert that the state no longer supports is withdrawn.
    """
    new = []
    pending_overdue = set(session.exec(
        select(Alert.request_id).where(Alert.reason == OVERDUE, Alert.sent_at == None)))  # noqa: E711
    for request in store.all_requests(session):
        timeline = store.timeline_of(session, request)
        if request.id in pending_overdue:
            withdraw_stale_overdue(session, request, timeline)
        if timeline.overdue(today):
            new.append(_queue_overdue(session, request, timeline, today, settings.person.language))
        complaints = store.complaints_of(session, request.id)
        if complaints:
            latest = complaints[-1]
            if latest.state == "filed" and today > lifecycle.authority_deadline(latest.filed):
                new.append(_queue_authority_silent(session, request, latest, today, settings.person.language))
    for account in session.exec(select(Account).where(Account.host != None)):  # noqa: E711 (IMAP only)
        if account.consecutive_failures <= 0:
            # It syncs again: a "mailbox failing" alert not sent yet would now be false.
            for alert in session.exec(select(Alert).where(Alert.account_id == account.id,
                                                          Alert.reason == MAILBOX_FAILING,
                                                          Alert.sent_at == None)):  # noqa: E711
                _withdraw(session, alert, "the mailbox syncs again")
        new.append(_queue_mailbox_failing(session, account, settings, now))
    return [alert for alert in new if alert is not None]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def run_checks(db: store.Store, settings: Settings, now: datetime | None = None) -> list[Alert]:
    """``check_due`` in its own transaction: after an ingest, on each daemon interval, before `status`.

    The transaction holds the write lock from its first read, so the check sees every
    decision committed before it (a parallel poll's refusal) and none can slip in
    before it commits. On PostgreSQL it is SERIALIZABLE instead (Store.write): if a
    refusal is committed in between, one of the two fails as busy and is done again
    on the new state. A database kept busy past the retries skips this round (the
    check runs again after the next poll) rather than failing the command.
    """
    now = now or _utcnow()

    def check() -> list[Alert]:
        with db.write() as session:
            return check_due(session, settings, now.date(), now)

    try:
        # A short budget: `status` runs this before it prints, and the check comes round again anyway.
        return store.retry_busy(check, "the periodic alert check", budget=store.BUSY_TIMEOUT_SECONDS)
    except IntegrityError:
        # Another process queued the same alerts between our check and our commit.
        log.debug("periodic alerts were queued by another process")
        return []
    except store.DatabaseBusy as err:
        log.warning("periodic alerts not checked this time: %s", err)
        return []


# ---- sending ------------------------------------------------------------------

RETRY_FIRST_DELAY = timedelta(minutes=1)
RETRY_MAX_DELAY = timedelta(hours=6)
RETRY_JITTER = 0.25       # up to 25% more, so alerts that failed together do not retry together
# A sender claims an alert for [daemon] lease_seconds, but never for less than this, which is
# longer than apprise's own timeouts: a live sender is never overtaken by another one, and the
# alert a killed worker was sending is sent by another worker once the claim ends.
CLAIM_AT_LEAST = timedelta(seconds=30)


@contextlib.contextmanager
def _apprise_silenced():
    """apprise logs a URL it cannot parse as it is, password and all: never let that through."""
    apprise_log = logging.getLogger("apprise")
    level = apprise_log.level
    apprise_log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        apprise_log.setLevel(level)


@dataclass(frozen=True)
class Channel:
    """One apprise URL. Its id (a hash) is what the database stores: URLs may hold passwords."""

    url: str
    private: bool = False

    @property
    def id(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """The URL with passwords and tokens masked, for logs and reports."""
        with _apprise_silenced():
            plugin = apprise.Apprise.instantiate(self.url)
        if plugin is None:
            return f"(invalid apprise URL #{self.id[:6]})"
        return plugin.url(privacy=True).split("?")[0]  # the query only repeats apprise's defaults


def configured_channels(settings: Settings) -> list[Channel]:
    """Every channel once; a URL listed in both lists counts as private."""
    private = set(settings.alerts.private_urls)
    urls = dict.fromkeys([*settings.alerts.urls, *settings.alerts.private_urls])
    return [Channel(url, url in private) for url in urls]


def channels_for(alert: Alert, settings: Settings) -> list[Channel]:
    """Where an alert goes: codes only to private channels, and only when the person asked for them."""
    channels = configured_channels(settings)
    if alert.contains_code:
        return [c for c in channels if c.private] if settings.alerts.send_codes else []
    return channels


def notify(channel: Channel, title: str, body: str, reason: str | None = None) -> str | None:
    """Send one notification, as loud as its reason (``NOTIFY_TYPES``). Returns None on success,
    else why it failed (without secrets)."""
    notifier = apprise.Apprise()
    with _apprise_silenced():
        added = notifier.add(channel.url)
    if not added:
        return "not a valid apprise URL"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        delivered = notifier.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT,
                                    notify_type=NOTIFY_TYPES.get(reason, apprise.NotifyType.INFO))
    if delivered:
        return None
    reasons = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
    return redact(reasons[-1] if reasons else "the channel did not accept the notification")[:300]


@dataclass
class SendReport:
    sent: list[int] = field(default_factory=list)        # alert ids now delivered everywhere
    retrying: list[int] = field(default_factory=list)    # failed somewhere; tried again later
    gave_up: list[int] = field(default_factory=list)     # failed max_attempts times
    errors: list[str] = field(default_factory=list)      # "alert #3, channel json://...: why"

    @property
    def ok(self) -> bool:
        return not self.retrying and not self.gave_up


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4, 8... minutes after the 1st, 2nd, 3rd, 4th... failure, at most six hours, plus jitter."""
    delay = min(RETRY_FIRST_DELAY * 2 ** max(attempts - 1, 0), RETRY_MAX_DELAY)
    return delay * (1 + random.uniform(0, RETRY_JITTER))


def _delivered(alert: Alert) -> set[str]:
    return set(alert.delivered_channels.split())


def _due_ids(session: Session, settings: Settings, now: datetime, force: bool) -> list[int]:
    query = select(Alert.id).where(Alert.sent_at == None)  # noqa: E711
    if not any(c.private for c in configured_channels(settings)) or not settings.alerts.send_codes:
        query = query.where(Alert.contains_code == False)  # noqa: E712  (nowhere to send it: it stays unsent)
    if not force:
        query = query.where(Alert.attempts < settings.alerts.max_attempts,
                            or_(Alert.next_attempt_at == None, Alert.next_attempt_at <= now))  # noqa: E711
    return list(session.exec(query.order_by(Alert.created_at, Alert.id)))


def _claim(db: store.Store, alert_id: int, now: datetime, claim_for: timedelta) -> Alert | None:
    """Take the alert for ``claim_for``; None if another sender holds it or it was sent meanwhile.

    An overdue alert is checked against the request as it is now, in the same
    transaction: if Meta has decided (or the deadline moved) since it was queued,
    it is withdrawn instead of sent.
    """
    def attempt() -> Alert | None:
        with db.write() as session:
            taken = session.execute(update(Alert).where(
                Alert.id == alert_id, Alert.sent_at == None,  # noqa: E711
                or_(Alert.claimed_until == None, Alert.claimed_until <= now))  # noqa: E711
                .values(claimed_until=now + claim_for))
            if taken.rowcount != 1:
                return None
            alert = session.get(Alert, alert_id)
            if alert.reason == OVERDUE:
                request = session.get(Request, alert.request_id) if alert.request_id is not None else None
                timeline = store.timeline_of(session, request) if request is not None else None
                why = _overdue_is_stale(alert, request, timeline)
                if why is not None:
                    _withdraw(session, alert, why)
                    return None
            return alert

    return store.retry_busy(attempt, f"claiming alert #{alert_id}")


def _record_delivery(db: store.Store, alert_id: int, channel: Channel) -> None:
    def attempt() -> None:
        with db.write() as session:
            alert = session.get(Alert, alert_id)
            if alert is None:  # withdrawn while it was on its way
                return
            alert.delivered_channels = " ".join(sorted(_delivered(alert) | {channel.id}))
            session.add(alert)

    store.retry_busy(attempt, f"recording the delivery of alert #{alert_id}")


def _record_outcome(db: store.Store, alert_id: int, errors: list[str], settings: Settings,
                    now: datetime, report: SendReport) -> None:
    def attempt() -> list[int] | None:
        with db.write() as session:
            alert = session.get(Alert, alert_id)
            if alert is None:  # withdrawn while it was on its way: a decision made it untrue
                return None
            alert.claimed_until = None
            if not errors:
                alert.sent_at = alert.sent_at or now
                alert.next_attempt_at = None
                outcome = report.sent
            else:
                alert.attempts += 1
                alert.last_error = "; ".join(errors)[:1000]
                if alert.attempts >= settings.alerts.max_attempts:
                    alert.next_attempt_at = None
                    outcome = report.gave_up
                    log.error("alert #%d given up after %d attempts: %s (%s)", alert_id, alert.attempts,
                              alert.title, alert.last_error)
                else:
                    alert.next_attempt_at = now + retry_delay(alert.attempts)
                    outcome = report.retrying
                    log.warning("alert #%d not delivered (attempt %d of %d), next try at %s: %s", alert_id,
                                alert.attempts, settings.alerts.max_attempts,
                                alert.next_attempt_at.isoformat(timespec="seconds"), alert.last_error)
            session.add(alert)
            return outcome

    outcome = store.retry_busy(attempt, f"recording the outcome of alert #{alert_id}")
    if outcome is not None:
        outcome.append(alert_id)


def send_pending(db: store.Store, settings: Settings, now: datetime | None = None,
                 force: bool = False) -> SendReport:
    """Deliver every unsent alert that is due to every channel that does not have it yet.

    ``force`` (``privacy-tracker alerts send``) also sends alerts that wait for
    their next retry or were given up: the person asked for it now.
    """
    report = SendReport()
    if not configured_channels(settings):
        return report
    started, started_mono = store.to_db_time(now or _utcnow()), time.monotonic()
    claim_for = max(timedelta(seconds=settings.daemon.lease_seconds), CLAIM_AT_LEAST)

    def clock() -> datetime:
        # Sending a backlog can take longer than a claim lasts: each claim and
        # each retry time is counted from the moment it is made.
        return started + timedelta(seconds=time.monotonic() - started_mono)

    with db.session() as session:
        due = _due_ids(session, settings, started, force)
    for alert_id in due:
        alert = _claim(db, alert_id, clock(), claim_for)
        if alert is None:
            continue
        errors = []
        for channel in channels_for(alert, settings):
            if channel.id in _delivered(alert):
                continue
            error = notify(channel, alert.title, alert.body, alert.reason)
            if error is None:
                _record_delivery(db, alert_id, channel)
                log.info("alert #%d sent to %s: %s", alert_id, channel.name, alert.title)
            else:
                errors.append(f"{channel.name}: {error}")
                report.errors.append(f"alert #{alert_id}, {channel.name}: {error}")
        _record_outcome(db, alert_id, errors, settings, clock(), report)
    return report


def send_test(settings: Settings) -> list[tuple[str, str | None]]:
    """A test notification to every configured channel: (channel name, error or None) each."""
    t = _texts(settings.person.language)
    title, body = t["test_title"], t["test_body"]
    return [(channel.name, notify(channel, title, body)) for channel in configured_channels(settings)]
