"""One IMAP account, read-only. The only module that imports imapclient.

:class:`ImapConnection` offers exactly what the poller needs and nothing that
could change the mailbox: folders are opened with EXAMINE (read-only), bodies
are fetched with ``BODY.PEEK[]`` (which leaves ``\\Seen`` alone), and there is
no method that stores flags, copies, moves, expunges or deletes.

Every failure leaves this module as a :class:`~tracker.errors.SourceError`
subclass whose message starts with ``account NAME:`` and says what went wrong
in words a person can act on (wrong password, unknown host, untrusted
certificate, connection lost). Passwords and tokens are read when connecting
and never kept, logged or put into a message.

The connection counts what it costs: commands sent (round trips), FETCH
commands and bytes received. The tests and the benchmark read these counters
to prove that a poll with nothing new fetches nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors

from tracker.config import AccountSettings
from tracker.errors import ConfigError, MailboxAuthError, MailboxConnectionError, SourceError

log = logging.getLogger(__name__)

INBOX = "INBOX"
JUNK_FLAG = rb"\Junk"   # RFC 6154 SPECIAL-USE attribute of the spam folder
# When the server does not mark its spam folder, these names are tried (in this order).
JUNK_NAMES = ("Junk", "Spam", "Junk E-mail", "Junk Email", "[Gmail]/Spam", "INBOX/Junk", "INBOX.Junk",
              "INBOX/Spam", "INBOX.Spam")

FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE"]
# A single FETCH asks for at most this many messages, and at most this many bytes
# (from RFC822.SIZE), so memory stays small even when a match carries attachments.
FETCH_BATCH_MESSAGES = 25
FETCH_BATCH_BYTES = 8 * 1024 * 1024
# Sizes are asked for this many UIDs at a time: servers limit the length of a command
# line, and RFC 7162 asks clients to stay under 8,192 octets.
SIZE_CHUNK = 500

# RFC 2177: a client should end IDLE and start it again before 29 minutes.
# Ten minutes also keeps home routers from forgetting a quiet connection.
IDLE_RENEW_SECONDS = 10 * 60


class ServerRefused(SourceError):
    """The server answered a command with NO or BAD (a folder that does not exist...).

    The connection is still good: the poller goes on with the next folder.
    """


@dataclass(frozen=True)
class FolderStatus:
    """What STATUS or EXAMINE tells about a folder, without reading any message."""

    name: str
    uidvalidity: int
    uidnext: int
    messages: int
    highestmodseq: int | None  # only from servers with CONDSTORE


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    raw: bytes
    internal_date: datetime | None


@dataclass
class Traffic:
    """What a connection cost: the figures the tests and the benchmark compare."""

    commands: int = 0          # round trips after the greeting
    fetch_commands: int = 0    # FETCH commands that asked for message bodies
    messages_fetched: int = 0
    bytes_received: int = 0


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _run_secret_command(account: AccountSettings, command: str, key: str) -> str:
    """Run ``password_command`` / ``oauth2_token_command``; its first output line is the secret."""
    try:
        result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SourceError(f"account {account.name}: {key} could not run: {type(err).__name__}") from err
    if result.returncode != 0:
        # Only the exit status: what the command printed is neither shown nor stored. Its stderr
        # may hold the secret, a token or a path (a debug trace, a prompt echoed back), and this
        # error is printed, stored as the account's last error, shown by `status` and alerted.
        raise SourceError(f"account {account.name}: {key} failed with exit status {result.returncode} "
                          f"(run it yourself to see why)")
    secret = _first_line(result.stdout)
    if not secret:
        raise SourceError(f"account {account.name}: {key} printed nothing")
    return secret


def read_password(account: AccountSettings) -> str:
    if account.password_env:
        value = os.environ.get(account.password_env)
        if not value:
            raise ConfigError(f"account {account.name}: the environment variable {account.password_env} "
                              f"(password_env) is not set")
        return value
    if account.password_command:
        return _run_secret_command(account, account.password_command, "password_command")
    if account.password_keyring:
        from tracker.secrets import keyring_password

        try:
            return keyring_password(account.username)
        except ConfigError as err:
            raise ConfigError(f"account {account.name}: {err}") from None
    raise ConfigError(f"account {account.name}: set password_env, password_command, password_keyring = true "
                      f"or oauth2_token_command")


def tls_context(account: AccountSettings) -> ssl.SSLContext:
    """Certificates and host names are always checked; ``ca_file`` replaces the system CAs."""
    try:
        return ssl.create_default_context(cafile=str(account.ca_file) if account.ca_file else None)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"account {account.name}: cannot read ca_file {account.ca_file}: {err}") from err


class ImapConnection:
    """A logged-in, read-only connection to one account. Use as a context manager.

    Not thread-safe: one thread uses a connection at a time (the daemon gives
    the IDLE watcher a connection of its own).
    """

    def __init__(self, account: AccountSettings):
        self.account = account
        self.traffic = Traffic()
        self._client: IMAPClient | None = None
        self._selected: str | None = None
        self._idling = False

    # ---- connecting ---------------------------------------------------------

    def __enter__(self) -> ImapConnection:
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"{self.account.host}:{self.account.effective_port}"

    def open(self) -> None:
        try:
            self._connect_and_log_in()
        except BaseException:
            self.close()
            raise

    def _connect_and_log_in(self) -> None:
        account = self.account
        with self._errors("connecting"):
            context = tls_context(account) if account.tls != "none" else None
            client = IMAPClient(account.host, port=account.effective_port, ssl=account.tls == "implicit",
                                ssl_context=context, timeout=account.timeout_seconds)
            self._client = client
            # imapclient sets imaplib's debug level to 5, at which imaplib formats every
            # untagged response with %r before handing it to the logger, whether or not
            # anything is logged: a fetched mail of 50 MB became two more copies of about
            # 50 MB each (its repr and the message). Level 4 keeps the lines that
            # tracker.logs lets through at -vvv (commands, tagged answers, literal sizes).
            client._imap.debug = min(client._imap.debug, 4)
            self._count_bytes(client)
            client.normalise_times = False  # keep INTERNALDATE's own zone; the store wants UTC
            if account.tls == "starttls":
                self.traffic.commands += 1
                client.starttls(context)
        with self._errors("logging in"):
            self.traffic.commands += 1
            if account.oauth2_token_command:
                token = _run_secret_command(account, account.oauth2_token_command, "oauth2_token_command")
                client.oauth2_login(account.username, token)
            else:
                password = read_password(account)
                try:
                    client.login(account.username, password)
                except UnicodeError:
                    # imaplib's LOGIN is ASCII only; its error would quote the password.
                    raise MailboxAuthError(f"account {account.name}: the password has characters other than "
                                           f"ASCII, which IMAP LOGIN cannot send") from None
        log.debug("%s: logged in to %s as %s", account.name, self.where, account.username)

    def close(self) -> None:
        """Log out politely; a connection that is already broken is simply dropped."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._idling:
                client.idle_done()
            client.logout()
        except Exception:  # the connection is already gone; nothing to save
            try:
                client.shutdown()
            except Exception:
                pass
        self._idling = False

    def _count_bytes(self, client: IMAPClient) -> None:
        """Count every byte read from the server by wrapping imaplib's two read methods."""
        imap = client._imap
        plain_read, plain_readline = imap.read, imap.readline

        def read(size):
            data = plain_read(size)
            self.received(len(data))
            return data

        def readline():
            line = plain_readline()
            self.received(len(line))
            return line

        imap.read, imap.readline = read, readline

    def received(self, count: int) -> None:
        """Called for every chunk read from the server (the fault tests stop the server from here)."""
        self.traffic.bytes_received += count

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise MailboxConnectionError(f"account {self.account.name}: not connected")
        return self._client

    # ---- errors -------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn whatever imapclient, ssl or socket raise into one clear SourceError."""
        name, host, where = self.account.name, self.account.host, self.where
        try:
            yield
        except (SourceError, ConfigError):
            raise  # already says what is wrong
        except imap_errors.LoginError as err:
            raise MailboxAuthError(f"account {name}: {host} refused the login for {self.account.username} "
                                   f"(wrong password or user name?): {_server_text(err)}") from err
        except socket.gaierror as err:
            raise MailboxConnectionError(f"account {name}: unknown host {host!r} ({err.strerror})") from err
        except ssl.SSLCertVerificationError as err:
            hint = (" (a private server: set ca_file in the account, or `privacy-tracker init --ca-file FILE`)"
                    if not self.account.ca_file else "")
            raise MailboxConnectionError(f"account {name}: the TLS certificate of {where} is not trusted: "
                                         f"{err.verify_message}{hint}") from err
        except ssl.SSLError as err:
            raise MailboxConnectionError(f"account {name}: TLS with {where} failed while {doing}: "
                                         f"{err.reason or err} (does the tls setting match the port?)") from err
        except ConnectionRefusedError as err:
            raise MailboxConnectionError(f"account {name}: {where} refused the connection "
                                         f"(wrong port, or the server is down)") from err
        except (socket.timeout, TimeoutError) as err:
            raise MailboxConnectionError(f"account {name}: {where} did not answer in time while {doing}") from err
        except (imap_errors.IMAPClientAbortError, ConnectionError, EOFError) as err:
            raise MailboxConnectionError(f"account {name}: connection to {where} lost while {doing}: "
                                         f"{_server_text(err) or type(err).__name__}") from err
        except OSError as err:
            raise MailboxConnectionError(f"account {name}: cannot reach {where} while {doing}: "
                                         f"{err.strerror or err}") from err
        except imap_errors.IMAPClientError as err:
            raise ServerRefused(f"account {name}: error from the server while {doing}: "
                                f"{_server_text(err)}") from err

    # ---- folders ------------------------------------------------------------

    def default_folders(self) -> list[str]:
        """INBOX and the spam folder: impersonations of Meta often land there."""
        folders = [INBOX]
        with self._errors("listing folders"):
            self.traffic.commands += 1
            listing = self.client.list_folders()
        names = {name for _flags, _sep, name in listing}
        junk = next((name for flags, _sep, name in listing if JUNK_FLAG in flags), None)
        if junk is None:
            junk = next((name for name in JUNK_NAMES if name in names), None)
        if junk is not None and junk != INBOX:
            folders.append(junk)
        return folders

    def folder_status(self, folder: str) -> FolderStatus:
        """STATUS: one round trip, reads no message and needs no SELECT."""
        items = ["UIDVALIDITY", "UIDNEXT", "MESSAGES"]
        if self.has_condstore:
            items.append("HIGHESTMODSEQ")
        with self._errors(f"asking for the status of {folder}"):
            self.traffic.commands += 1
            response = self.client.folder_status(folder, items)
        return self._folder_status(folder, response)

    def examine(self, folder: str) -> FolderStatus:
        """Open a folder read-only (EXAMINE): nothing in it can be changed on this connection."""
        with self._errors(f"opening {folder}"):
            self.traffic.commands += 1
            response = self.client.select_folder(folder, readonly=True)
        self._selected = folder
        return self._folder_status(folder, response)

    @property
    def has_condstore(self) -> bool:
        with self._errors("reading capabilities"):
            return self.client.has_capability("CONDSTORE")

    # ---- messages -----------------------------------------------------------

    def search(self, criteria: list) -> list[int]:
        """UID SEARCH in the examined folder; UIDs in ascending order."""
        with self._errors(f"searching {self._selected}"):
            self.traffic.commands += 1
            return sorted(self.client.search(criteria))

    def senders_after(self, after_uid: int) -> list[tuple[int, str, datetime | None]]:
        """(UID, From header, INTERNALDATE) of every message after ``after_uid``: headers only, no body.

        The UIDs come from the folder's UID map (SEARCH UID n:*, exact even where
        the server's text index lags), the headers a bounded chunk at a time.
        """
        with self._errors(f"listing new mail in {self._selected}"):
            self.traffic.commands += 1
            uids = sorted(uid for uid in self.client.search(["UID", f"{after_uid + 1}:*"]) if uid > after_uid)
        senders = []
        for start in range(0, len(uids), SIZE_CHUNK):
            chunk = uids[start:start + SIZE_CHUNK]
            with self._errors(f"reading new senders in {self._selected}"):
                self.traffic.commands += 1
                response = self.client.fetch(chunk, [b"BODY.PEEK[HEADER.FIELDS (FROM)]", b"INTERNALDATE"])
            for uid in chunk:
                data = response.get(uid)
                if data is None:
                    continue  # expunged meanwhile
                header = next((value for key, value in data.items() if key.startswith(b"BODY[HEADER")), b"")
                senders.append((uid, bytes(header or b"").decode("utf-8", "replace"),
                                _as_utc(data.get(b"INTERNALDATE"))))
        return senders

    def fetch_in_batches(self, uids: list[int]) -> Iterator[list[FetchedMail]]:
        """Fetch the given UIDs, a bounded batch at a time, oldest first.

        A message expunged since the search is simply missing from its batch.
        """
        batch: list[int] = []
        batch_bytes = 0
        for uid, size in self._sizes(uids):
            if batch and (len(batch) >= FETCH_BATCH_MESSAGES or batch_bytes + size > FETCH_BATCH_BYTES):
                yield self._fetch(batch)
                batch, batch_bytes = [], 0
            batch.append(uid)
            batch_bytes += size
        if batch:
            yield self._fetch(batch)

    def _sizes(self, uids: list[int]) -> Iterator[tuple[int, int]]:
        """(UID, RFC822.SIZE) of each UID that still exists, asked for a chunk at a time."""
        for start in range(0, len(uids), SIZE_CHUNK):
            chunk = uids[start:start + SIZE_CHUNK]
            with self._errors(f"reading message sizes in {self._selected}"):
                self.traffic.commands += 1
                response = self.client.fetch(chunk, [b"RFC822.SIZE"])
            for uid in chunk:
                if uid in response:
                    yield uid, response[uid].get(b"RFC822.SIZE", 0)

    def _fetch(self, uids: list[int]) -> list[FetchedMail]:
        with self._errors(f"fetching messages from {self._selected}"):
            self.traffic.commands += 1
            self.traffic.fetch_commands += 1
            response = self.client.fetch(uids, FETCH_ITEMS)
        mails = []
        for uid in uids:
            data = response.get(uid)
            if data is None or b"BODY[]" not in data:
                continue
            mails.append(FetchedMail(uid=uid, raw=bytes(data[b"BODY[]"]),
                                     internal_date=_as_utc(data.get(b"INTERNALDATE"))))
        self.traffic.messages_fetched += len(mails)
        return mails

    # ---- IDLE ---------------------------------------------------------------

    def watch(self, folder: str, stop: threading.Event, on_new_mail: Callable[[], None]) -> None:
        """IDLE on ``folder`` and call ``on_new_mail`` whenever it may hold new mail, until ``stop``.

        ``on_new_mail`` runs right after each IDLE has begun (so mail that came
        while we were not idling is caught up on) and again whenever the server
        announces a message. It must use another connection: this one is busy
        idling. The IDLE is ended and begun again, with a NOOP in between as a
        keepalive, every IDLE_RENEW_SECONDS. Returns when ``stop`` is set; raises
        MailboxConnectionError when the connection drops.
        """
        if not self.client.has_capability("IDLE"):
            raise SourceError(f"account {self.account.name}: the server does not support IDLE")
        self.examine(folder)
        while not stop.is_set():
            with self._errors(f"waiting for new mail in {folder}"):
                self.traffic.commands += 1
                self.client.idle()
                self._idling = True
                try:
                    on_new_mail()
                    self._idle_until_announced(stop, renew_at=time.monotonic() + IDLE_RENEW_SECONDS)
                finally:
                    if self._idling:
                        self._idling = False
                        self.client.idle_done()
                self.traffic.commands += 1
                self.client.noop()

    def _idle_until_announced(self, stop: threading.Event, renew_at: float) -> None:
        while not stop.is_set() and time.monotonic() < renew_at:
            asked = time.monotonic()
            responses = self.client.idle_check(timeout=1.0)
            if any(_announces_mail(r) for r in responses):
                return
            if not responses and time.monotonic() - asked < 0.5:
                # imapclient answers an end of stream with an empty list at once:
                # the server has closed the connection.
                self._idling = False
                raise ConnectionError("the server closed the connection")

    def _folder_status(self, folder: str, response: dict) -> FolderStatus:
        def number(key: bytes) -> int | None:
            value = response.get(key)
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            return int(value) if value is not None else None

        uidvalidity, uidnext = number(b"UIDVALIDITY"), number(b"UIDNEXT")
        if uidvalidity is None or uidnext is None:
            raise SourceError(f"account {self.account.name}: the server gave no UIDVALIDITY or UIDNEXT "
                              f"for {folder}")
        return FolderStatus(name=folder, uidvalidity=uidvalidity, uidnext=uidnext,
                            messages=number(b"MESSAGES") or number(b"EXISTS") or 0,
                            highestmodseq=number(b"HIGHESTMODSEQ"))


def _announces_mail(response) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")


def _server_text(err: BaseException) -> str:
    text = str(err)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text.strip()


def _as_utc(value) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
