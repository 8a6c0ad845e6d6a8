"""Log set-up for the command line: plain or JSON lines on stderr, secrets redacted.

Library modules only call ``logging.getLogger(__name__)``; handlers are
configured here, once, by the CLI.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

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


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
        return json.dumps(entry, ensure_ascii=False)


def configure(verbose: int = 0, as_json: bool = False) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else
                         RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party libraries stay quiet unless debugging.
    for name in ("imapclient", "apprise", "apscheduler", "sqlalchemy", "mailparser", "mail-parser"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)
    # SQLAlchemy logs result rows at debug level, and rows hold one-time codes: statements only.
    logging.getLogger("sqlalchemy").setLevel(logging.INFO if verbose >= 3 else logging.WARNING)
