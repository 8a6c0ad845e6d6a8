"""Log set-up for the command line: plain or JSON lines on stderr, secrets redacted.

Library modules only call ``logging.getLogger(__name__)``; handlers are
configured here, once, by the CLI.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import datetime, timezone

from tracker.safe_text import json_text, strip_controls

# Defence in depth: a password or token must never reach a log line, even if a
# library logs a protocol exchange (imaplib's LOGIN / AUTHENTICATE lines).
_SECRET_PATTERNS = [
    (re.compile(r"(\bLOGIN\s+\S+\s+)(\S+)", re.I), r"\1**********"),
    (re.compile(r"(\bAUTHENTICATE\s+\S+\s+)(\S+)", re.I), r"\1**********"),
    (re.compile(r"(password|passwd|token|secret)(\s*[=:]\s*)(\S+)", re.I), r"\1\2**********"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# At debug level (-vvv) only these libraries are heard, because what they log is
# the tracker's own doing, not mail: imapclient's commands (LOGIN redacted by
# imapclient), the scheduler, SQL statements (parameters hidden). Not heard:
# apprise (it logs an alert's payload, a one-time code included), urllib3 (URLs
# with tokens), anything else.
_DEBUG_LIBRARIES = ("tracker", "imapclient", "apscheduler", "sqlalchemy")
# imaplib's dump at -vvv (through imapclient's "imapclient.imaplib" logger): the
# commands sent and the server's tagged answers are kept; the untagged responses
# and what is parsed from them, that is the mails fetched, are not.
_IMAPLIB_KEPT = re.compile(r"> |< b'[A-Z]+\d+ (OK|NO|BAD)\b|imaplib version|new IMAP4 connection|"
                           r"CAPABILITIES: |(write|read) literal size")


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


class MailContentFilter(logging.Filter):
    """Keeps mail content out of the log: third-party debug lines only from libraries that log no
    mail, and imaplib's protocol dump without the mails."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            if not _under(record.name, _DEBUG_LIBRARIES):
                return False
            if _under(record.name, ("imapclient.imaplib",)) and not _IMAPLIB_KEPT.match(record.getMessage()):
                return False
        return True


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Lines are kept (tracebacks); escape sequences and bidi controls that a message quotes are not.
        return strip_controls(redact(super().format(record)), keep_newlines=True)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="seconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json_text(entry)


def configure(verbose: int = 0, as_json: bool = False) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MailContentFilter())
    handler.setFormatter(JsonFormatter() if as_json else
                         RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party libraries stay quiet unless debugging.
    for name in ("imapclient", "apprise", "apscheduler", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)
    # SQLAlchemy logs result rows at debug level, and rows hold one-time codes: statements only.
    logging.getLogger("sqlalchemy").setLevel(logging.INFO if verbose >= 3 else logging.WARNING)
