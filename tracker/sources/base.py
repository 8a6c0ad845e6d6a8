"""The one interface every mail source offers to the ingest core."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class MailItem:
    """Raw bytes of one mail and where they came from."""

    raw: bytes
    label: str                       # how to name the mail to the person: a path, "alice/INBOX#42"
    folder: str | None = None        # IMAP folder
    uidvalidity: int | None = None
    uid: int | None = None
    path: str | None = None          # local file the mail was read from
    internal_date: datetime | None = None
    error: str | None = None         # the source could not read the mail (raw may be empty)


class MailSource(ABC):
    """A place to read mail from. Sources never change the mailbox."""

    @abstractmethod
    def messages(self) -> Iterator[MailItem]:
        """Every mail of the source, one at a time (never all in memory)."""
