"""Running the poller: once (cron), or as a daemon on a schedule with optional IMAP IDLE.

Wiring only; what a poll does is in tracker/sync.py. The only module that
imports APScheduler.

* Each account has its own interval job (``[daemon] interval_minutes``, with
  ``jitter_seconds`` of random delay so several trackers do not poll a server
  in step). ``max_instances=1`` and ``coalesce`` keep one poll per account
  running, and turn polls missed while the machine slept into one.
* A poll that failed on a connection problem is retried sooner, with
  exponential backoff and jitter, but never later than the next interval. A
  refused login is not retried early: hammering a server with a wrong
  password gets accounts locked.
* An account with ``idle = true`` also gets a thread that keeps an IDLE
  connection open on its first folder and polls as soon as the server
  announces mail; a dropped IDLE connection is opened again with backoff.
* SIGTERM and SIGINT set a stop flag. The poller checks it between messages, so
  the message being recorded is committed, and the process exits with status 0.
* Several daemons (on one machine or several, one database) share the mailboxes.
  A scheduled poll leaves a mailbox alone, without logging in, when another worker
  is polling it (it holds the folders' leases: tracker/sync.py) or polled it less
  than half an interval ago; so each mailbox is polled about once an interval,
  by one of them. A mailbox left because it was leased is looked at again when
  that lease would end: a killed worker's mailboxes are taken over then.
* At most ``POLL_THREADS`` accounts are polled at once: hundreds of mailboxes
  must not mean hundreds of logins, database connections and fetched batches at
  the same moment.
* The alert checks and sending (``after_poll``) read every request; with
  hundreds of mailboxes, running them after each poll would cost a round time
  in proportion to mailboxes times requests. They run after a poll that
  recorded mail or failed, at most once every ``AFTER_POLL_SECONDS`` (the polls
  in between are caught up by one run at the end of that time), and otherwise
  once an interval. The calendar is rewritten after a poll that recorded mail,
  and once an interval.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from tracker import store
from tracker.config import AccountSettings, Settings
from tracker.errors import ConfigError, MailboxAuthError, MailboxConnectionError, SourceError, StoreError, TrackerError
from tracker.ical import refresh_calendar
from tracker.ingest import disk_full_error
from tracker.sources.imap import INBOX, ImapConnection
from tracker.sync import AccountPoll, Poller, ProgressCallback, backoff_seconds

log = logging.getLogger(__name__)

# An IDLE connection that lasted this long was healthy: its loss starts the backoff afresh.
IDLE_HEALTHY_SECONDS = 60
# Accounts polled at the same time by one daemon (the IDLE watchers have threads of their own).
POLL_THREADS = 8
# After polls that recorded mail, alerts are sent (and the checks run) at most this often.
AFTER_POLL_SECONDS = 5.0



@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set ``stop`` instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handle(_signum, _frame) -> None:
        stop.set()  # nothing else here: logging from a signal handler can raise in the main thread

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def poll_once(db: store.Store, settings: Settings, progress: ProgressCallback | None = None) -> list[AccountPoll]:
    """Poll every account once (``poll --once``). SIGTERM ends it after the current message."""
    stop = threading.Event()
    with stop_on_signals(stop):
        return Poller(db, settings, stop=stop, progress=progress).poll_all()


class Daemon:
    """The scheduler, the IDLE threads and the stop flag of one ``privacy-tracker daemon``."""

    def __init__(self, db: store.Store, settings: Settings, *, after_poll: Callable[[], None] = lambda: None,
                 progress: ProgressCallback | None = None, stop: threading.Event | None = None):
        self.db = db
        self.settings = settings
        self.stop = stop or threading.Event()
        self.after_poll = after_poll
        self.poller = Poller(db, settings, stop=self.stop, progress=progress)
        self.interval = timedelta(minutes=settings.daemon.interval_minutes)
        threads = max(1, min(len(settings.mailboxes), POLL_THREADS))
        self.scheduler = BackgroundScheduler(timezone=timezone.utc,
                                             executors={"default": ThreadPoolExecutor(threads)})
        self._failures: dict[str, int] = {}
        self._idle_threads: list[threading.Thread] = []
        self._after_poll_at: float | None = None  # time.monotonic() of the last after_poll
        self._after_poll_waiting = False          # a deferred after_poll is scheduled
        self._after_poll_guard = threading.Lock()

    def run(self) -> None:
        """Poll until ``stop`` is set (by a signal, or by the caller), then return."""
        if not self.settings.mailboxes:
            raise ConfigError("no IMAP accounts configured: add an [[accounts]] section "
                              "(see config.example.toml)")
        now = datetime.now(timezone.utc)
        for account in self.settings.mailboxes:  # [[intake]] mailboxes are polled like accounts
            self.scheduler.add_job(
                self._poll_when_due, IntervalTrigger(seconds=self.interval.total_seconds(),
                                                     jitter=self.settings.daemon.jitter_seconds or None),
                args=[account], id=f"poll:{account.name}", name=f"poll {account.name}",
                next_run_time=now, max_instances=1, coalesce=True,
                misfire_grace_time=int(self.interval.total_seconds()))
        for account in self.settings.mailboxes:
            if account.idle:
                thread = threading.Thread(target=self._watch, args=[account], name=f"idle-{account.name}",
                                          daemon=True)
                self._idle_threads.append(thread)
        log.info("daemon started: %d account(s), every %s min%s", len(self.settings.mailboxes),
                 f"{self.settings.daemon.interval_minutes:g}",
                 f", IDLE on {len(self._idle_threads)}" if self._idle_threads else "")
        self.scheduler.start()
        for thread in self._idle_threads:
            thread.start()
        while not self.stop.wait(1.0):
            pass
        log.warning("stopping: finishing the current message")
        # Running polls see the flag and stop after the message they are recording.
        self.scheduler.shutdown(wait=True)
        for thread in self._idle_threads:
            thread.join()
        if self._after_poll_waiting:  # alerts queued by the last polls go out before the process ends
            self._after_poll_waiting = False
            self._after_poll(self.settings.mailboxes[0])
        log.info("daemon stopped")

    def _poll_when_due(self, account: AccountSettings) -> None:
        """A scheduled poll: left to another worker that polled the account less than half an interval ago."""
        fresh_after = datetime.now(timezone.utc).replace(tzinfo=None) - self.interval / 2
        self._poll(account, fresh_after=fresh_after)

    def _poll(self, account: AccountSettings, fresh_after: datetime | None = None) -> None:
        try:
            result = self.poller.poll_account(account, fresh_after=fresh_after)
        except StoreError as err:
            # The database stayed busy past the retries (or cannot be written): one line (below),
            # retried with backoff like a lost connection; the other account threads go on.
            result = AccountPoll(account.name, error=f"account {account.name}: {err}", transient=True)
        if result.left_to_another is not None:
            if result.lease_ends_in is not None and not self.stop.is_set():
                # Look again when the lease would end: if its worker died, this one takes over then.
                delay = min(result.lease_ends_in + 1.0, self.interval.total_seconds())
                self.scheduler.add_job(self._poll_when_due, "date", args=[account], id=f"retry:{account.name}",
                                       run_date=datetime.now(timezone.utc) + timedelta(seconds=delay),
                                       replace_existing=True)
            self._after_poll_if_due(result, account)
            return
        if result.error is None:
            self._failures.pop(account.name, None)
            log.info("%s", result.summary())
        else:
            log.error("%s", result.error)
            failures = self._failures[account.name] = self._failures.get(account.name, 0) + 1
            if result.transient and not self.stop.is_set():
                delay = backoff_seconds(failures, cap=self.interval.total_seconds())
                log.info("%s: retrying in %.0f s", account.name, delay)
                self.scheduler.add_job(self._poll, "date", args=[account], id=f"retry:{account.name}",
                                       run_date=datetime.now(timezone.utc) + timedelta(seconds=delay),
                                       replace_existing=True)
        self._after_poll_if_due(result, account)

    def _after_poll_if_due(self, result: AccountPoll, account: AccountSettings) -> None:
        """After a poll that recorded mail or failed: now, or at the end of ``AFTER_POLL_SECONDS`` after
        the last run (one deferred run for all the polls in between). Otherwise once an interval."""
        with self._after_poll_guard:
            now = time.monotonic()
            since = None if self._after_poll_at is None else now - self._after_poll_at
            if since is None or since >= self.interval.total_seconds():
                run = True
            elif result.new or result.error:
                run = since >= AFTER_POLL_SECONDS
                if not run and not self._after_poll_waiting and not self.stop.is_set():
                    self._after_poll_waiting = True
                    self.scheduler.add_job(self._deferred_after_poll, "date", args=[account], id="after-poll",
                                           run_date=datetime.now(timezone.utc)
                                           + timedelta(seconds=AFTER_POLL_SECONDS - since),
                                           replace_existing=True)
            else:
                run = False
            if run:
                self._after_poll_at = now
        if run:
            self._after_poll(account)
        if run or result.new:  # the calendar only changes with what a poll records, or once an interval
            self._refresh_calendar(account)

    def _deferred_after_poll(self, account: AccountSettings) -> None:
        with self._after_poll_guard:
            self._after_poll_waiting = False
            self._after_poll_at = time.monotonic()
        self._after_poll(account)

    def _after_poll(self, account: AccountSettings) -> None:
        try:
            self.after_poll()
        except TrackerError as err:  # a busy database, a full disk: one line, and polling goes on
            log.error("after the poll of %s: %s", account.name, err)
        except Exception as err:  # sending alerts must not stop the polling
            full = disk_full_error(err, "the alerts")
            if full is not None:
                log.error("after the poll of %s: %s", account.name, full)
            else:
                log.exception("after-poll step failed")

    def _refresh_calendar(self, account: AccountSettings) -> None:
        """Rewrite ``[calendar] file`` when the deadlines changed; a failure is one line, polling goes on."""
        try:
            refresh_calendar(self.db, self.settings)
        except TrackerError as err:
            log.error("after the poll of %s: %s", account.name, err)
        except Exception:  # a fault in the calendar must not stop the polling
            log.exception("calendar refresh failed")

    def _watch(self, account: AccountSettings) -> None:
        """IDLE on the account's first folder; poll whenever it announces mail."""
        folder = (account.folders or (INBOX,))[0]
        failures = 0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with ImapConnection(account) as connection:
                    log.info("%s: waiting for new mail in %s (IDLE)", account.name, folder)
                    connection.watch(folder, self.stop, lambda: self._poll(account))
            except MailboxAuthError as err:
                # Retrying a refused login quickly could get the person's address locked out.
                log.warning("%s (IDLE); trying again at the next interval", err)
                self.stop.wait(self.interval.total_seconds())
            except MailboxConnectionError as err:
                # Only an IDLE that ran for a while counts as a success that resets the backoff.
                failures = 1 if time.monotonic() - started > IDLE_HEALTHY_SECONDS else failures + 1
                delay = backoff_seconds(failures, base=5.0, cap=self.interval.total_seconds())
                log.warning("%s (IDLE); connecting again in %.0f s", err, delay)
                self.stop.wait(delay)
            except (SourceError, ConfigError) as err:
                # No IDLE support, or the folder is refused: retrying changes nothing.
                log.error("%s; IDLE is off for this account, the interval polls go on", err)
                return
            except Exception:
                failures += 1
                delay = backoff_seconds(failures, base=5.0, cap=self.interval.total_seconds())
                log.exception("%s: IDLE watcher failed; starting again in %.0f s", account.name, delay)
                self.stop.wait(delay)


def run_daemon(db: store.Store, settings: Settings, *, after_poll: Callable[[], None] = lambda: None,
               progress: ProgressCallback | None = None) -> None:
    """``privacy-tracker daemon``: runs until SIGTERM or SIGINT, then returns normally."""
    daemon = Daemon(db, settings, after_poll=after_poll, progress=progress)
    with stop_on_signals(daemon.stop):
        daemon.run()
