"""Mail on disk: single .eml files, folders of them, Maildir folders, and mbox files."""

from __future__ import annotations

import logging
import mailbox
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from tracker.errors import SourceError
from tracker.sources.base import MailItem, MailSource

log = logging.getLogger(__name__)

# In a plain folder only these are taken as mail, so a README or manifest beside
# the mails is not reported as a damaged message. Named files are always read.
MAIL_SUFFIXES = {".eml", ".msg", ".mbox", ".mbx", ""}


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
    """Reads the given paths in a stable order; never writes to them."""

    def __init__(self, paths: Iterable[Path | str]):
        self.paths = [Path(p) for p in paths]
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
            yield self._read_file(path)

    @staticmethod
    def _read_file(path: Path) -> MailItem:
        try:
            # The file's time stands in for the arrival time of a mail without a Date header:
            # in a Maildir it is when the mail was delivered.
            arrived = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
            return MailItem(raw=path.read_bytes(), label=str(path), path=str(path), internal_date=arrived)
        except OSError as err:
            return MailItem(raw=b"", label=str(path), path=str(path), error=f"cannot read file: {err}")

    @staticmethod
    def _read_maildir(path: Path) -> Iterator[MailItem]:
        # Reading the files directly (not through mailbox.Maildir) keeps the
        # Maildir untouched: no moving new/ to cur/, no flag changes.
        for sub in ("cur", "new"):
            for child in _children(path / sub):
                if child.is_file() and not child.name.startswith("."):
                    yield LocalSource._read_file(child)
        # Maildir++ keeps the other folders (".Junk", ".Archive.2024") inside the top one.
        for child in _children(path):
            if child.name.startswith(".") and is_maildir(child):
                yield from LocalSource._read_maildir(child)

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
