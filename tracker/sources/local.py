"""Mail on disk: single .eml files, folders of them, Maildir folders, and mbox files."""

from __future__ import annotations

import logging
import mailbox
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from tracker.errors import SourceError
from tracker.sources.base import MailItem, MailSource

log = logging.getLogger(__name__)

# In a plain folder only these are taken as mail, so a README or manifest beside
# the mails is not reported as a damaged message. Named files are always read.
MAIL_SUFFIXES = {".eml", ".msg", ".mbox", ".mbx", ""}

# A mail begins with header fields, "Name: value" (RFC 5322 section 2.2), and every mail a
# program writes or a server delivers has at least one of these. A PDF, a TOML file or a letter
# has none: recorded, it would sit on the review list for ever as a "damaged mail".
_MAIL_FIELDS = frozenset({b"from", b"date", b"subject", b"message-id", b"received", b"return-path", b"to"})
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")   # a field name: printable ASCII but the colon
_LOOK_BYTES = 64 * 1024


def not_mail_reason(raw: bytes) -> str | None:
    """Why ``raw`` is not a mail at all, or None when it starts like one (even a damaged one).

    Its first non-empty lines must be header fields (folded lines allowed) naming at least one
    of From, Date, Subject, Message-ID, Received, Return-Path, To; an mbox "From " line counts.
    """
    head = raw[:_LOOK_BYTES].removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")  # a byte order mark is no text
    if not head:
        return "not a mail (empty file)"
    if head.startswith(b"From "):
        return None
    names: set[bytes] = set()
    for line in head.splitlines():
        if not line.strip():
            break                      # the end of the header block
        if line[:1] in (b" ", b"\t") and names:
            continue                   # a folded field goes on
        field = _FIELD.match(line)
        if field is None:
            break                      # a damaged header block: what came before decides
        names.add(field.group(1).lower())
    if names & _MAIL_FIELDS:
        return None
    if head.startswith(b"%PDF"):
        return "not a mail (a PDF document)"
    return "not a mail (no header lines such as From:, Date:, Subject: at its start)"


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as err:
        log.warning("cannot read folder %s: %s", folder, err.strerror or err)
        return []


def is_maildir(path: Path) -> bool:
    return path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir()


def is_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(5) == b"From "
    except OSError:
        return False


def _from_line_date(from_line: bytes) -> datetime | None:
    """The delivery time on an mbox "From " line ("From sender Tue Jun  4 09:15:00 2024")."""
    try:
        stamp = " ".join(from_line.decode("ascii", "replace").split()[2:7])
        return datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


class LocalSource(MailSource):
    """Reads the given paths in a stable order; never writes to them.

    ``on_not_mail(label, why)``, when given, is told of each file that is not a mail at all
    (see :func:`not_mail_reason`), which is then left out; without it such a file is read like
    any other and comes out as a damaged mail (`classify` shows it so).
    """

    def __init__(self, paths: Iterable[Path | str], on_not_mail: Callable[[str, str], None] | None = None):
        self.paths = [Path(p) for p in paths]
        self.on_not_mail = on_not_mail
        for path in self.paths:
            if not path.exists():
                raise SourceError(f"no such file or folder: {path}")

    def messages(self) -> Iterator[MailItem]:
        for path in self.paths:
            yield from self._read_path(path)

    def _read_path(self, path: Path) -> Iterator[MailItem]:
        if is_maildir(path):
            yield from self._read_maildir(path)
        elif path.is_dir():
            for child in _children(path):
                if child.name.startswith("."):
                    continue
                if child.is_dir() or child.suffix.lower() in MAIL_SUFFIXES:
                    yield from self._read_path(child)
                else:
                    log.info("skipped %s: not a mail file name (%s)", child,
                             ", ".join(sorted(s or "no suffix" for s in MAIL_SUFFIXES)))
        elif is_mbox(path):
            yield from self._read_mbox(path)
        else:
            yield from self._checked(self._read_file(path))

    def _checked(self, item: MailItem) -> Iterator[MailItem]:
        why = None if self.on_not_mail is None or item.error else not_mail_reason(item.raw)
        if why is None:
            yield item
        else:
            self.on_not_mail(item.label, why)

    @staticmethod
    def _read_file(path: Path) -> MailItem:
        try:
            # The file's time stands in for the arrival time of a mail without a Date header:
            # in a Maildir it is when the mail was delivered.
            arrived = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
            return MailItem(raw=path.read_bytes(), label=str(path), path=str(path), internal_date=arrived)
        except OSError as err:
            return MailItem(raw=b"", label=str(path), path=str(path), error=f"cannot read file: {err}")

    def _read_maildir(self, path: Path) -> Iterator[MailItem]:
        # Reading the files directly (not through mailbox.Maildir) keeps the
        # Maildir untouched: no moving new/ to cur/, no flag changes.
        for sub in ("cur", "new"):
            for child in _children(path / sub):
                if child.is_file() and not child.name.startswith("."):
                    yield from self._checked(self._read_file(child))
        # Maildir++ keeps the other folders (".Junk", ".Archive.2024") inside the top one.
        for child in _children(path):
            if child.name.startswith(".") and is_maildir(child):
                yield from self._read_maildir(child)

    @staticmethod
    def _read_mbox(path: Path) -> Iterator[MailItem]:
        box = mailbox.mbox(path, create=False)
        try:
            for index, key in enumerate(box.iterkeys(), start=1):
                label = f"{path}#{index}"
                try:
                    from_line, _, raw = box.get_bytes(key, from_=True).partition(b"\n")
                except (OSError, mailbox.Error) as err:
                    yield MailItem(raw=b"", label=label, path=str(path), error=f"cannot read mbox entry: {err}")
                    continue
                yield MailItem(raw=raw, label=label, path=str(path), internal_date=_from_line_date(from_line))
        finally:
            box.close()
