"""Passwords in the system keyring. The only module that imports keyring.

An account with ``password_keyring = true`` finds its password under the
service ``privacy-tracker`` and the account's IMAP user name, in whatever
keyring the system offers (GNOME Keyring or KWallet through the Secret
Service, macOS Keychain, Windows Credential Locker). A service started by
systemd or launchd reaches the same keyring, unlike the shell's environment.

``init`` tests a login before it stores anything: :func:`staged` lends the
password to :func:`keyring_password` for the duration of that test, in this
process only, so a wrong password never lands in the keyring.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import keyring
import keyring.errors
from keyring.backends import fail

from tracker.errors import ConfigError

log = logging.getLogger(__name__)

SERVICE = "privacy-tracker"
FIX = "run `privacy-tracker init` again or use password_command"

_staged: dict[str, str] = {}
_staged_lock = threading.Lock()


def keyring_problem() -> str | None:
    """Why no keyring can be used here (None when one can): no backend, or only the one that fails."""
    try:
        backend = keyring.get_keyring()
    except Exception as err:  # a broken keyring configuration file, a backend that fails to load
        log.debug("no keyring backend", exc_info=True)
        return f"the keyring cannot be loaded ({type(err).__name__})"
    if isinstance(backend, fail.Keyring):
        return "no system keyring is available (no Secret Service, Keychain or Credential Locker)"
    return None


def backend_name() -> str:
    backend = keyring.get_keyring()
    return getattr(backend, "name", type(backend).__name__)


def keyring_password(username: str) -> str:
    """The password stored for ``username``; one-line ConfigError when there is none or no keyring."""
    with _staged_lock:
        if username in _staged:
            return _staged[username]
    try:
        password = keyring.get_password(SERVICE, username)
    except Exception as err:  # NoKeyringError, a locked keyring, a Secret Service that is not running
        log.debug("keyring lookup failed", exc_info=True)
        raise ConfigError(f"no keyring entry for {username} (service {SERVICE}; {_reason(err)}): {FIX}") from None
    if not password:
        raise ConfigError(f"no keyring entry for {username} (service {SERVICE}): {FIX}")
    return password


def store_password(username: str, password: str) -> None:
    """Keep ``password`` in the keyring under ``username``, replacing what was there."""
    problem = keyring_problem()
    if problem is not None:
        raise ConfigError(f"cannot store the password in the keyring: {problem}; "
                          f"use --password-command or --password-env instead")
    try:
        keyring.set_password(SERVICE, username, password)
    except Exception as err:
        log.debug("keyring store failed", exc_info=True)
        raise ConfigError(f"cannot store the password in the keyring ({_reason(err)}); "
                          f"use --password-command or --password-env instead") from None


@contextmanager
def staged(username: str, password: str) -> Iterator[None]:
    """While inside, :func:`keyring_password` answers ``password`` for ``username`` without the keyring."""
    with _staged_lock:
        _staged[username] = password
    try:
        yield
    finally:
        with _staged_lock:
            _staged.pop(username, None)


def _reason(err: BaseException) -> str:
    """The kind of failure, never its text: a backend's message may quote what it was given."""
    if isinstance(err, keyring.errors.KeyringLocked):
        return "the keyring is locked"
    if isinstance(err, keyring.errors.NoKeyringError):
        return "no system keyring is available"
    return f"the keyring failed: {type(err).__name__}"
