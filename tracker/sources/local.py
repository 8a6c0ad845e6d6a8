"""Mail on disk: single .eml files, folders of them, Maildir folders, and mbox files."""

from __future__ import annotations

import logging
import mailbox
from collections.abc import Iterable, Iterator
from pathlib import Path

from tracker.errors import SourceError
from tracker.sources.base import MailItem, MailSource

log = logging.getLogger(__name__)

# In a plain folder only these are taken as mail, so a README or manifest beside
# the mails is not reported as a damaged message. Named files are always read.
MAIL_SUFFIXES = {".eml", ".msg", ".mbox", ".mbx", ""}


def is_maildir(path: Path) -> bool:
    return path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir()


def is_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(5) == b"From "
    except OSError:
        return False


class LocalSource(MailSource):
    """Reads the given paths in a stable order; never writes to them."""

    def __init__(self, paths: Iterable[Path | str]):
        self.paths = [Path(p) for p in paths]
        for path in self.paths:
            if not path.exists():
                raise SourceError(f"no such file or folder: {path}")

    def messages(self) -> Iterator[MailItem]:
        for path in self.paths:
            yield from self._read_path(path, named=True)

    def _read_path(self, path: Path, named: bool) -> Iterator[MailItem]:
        if is_maildir(path):
            yield from self._read_maildir(path)
        elif path.is_dir():
            for child in sorted(path.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_dir() or child.suffix.lower() in MAIL_SUFFIXES:
                    yield from self._read_path(child, named=False)
        elif is_mbox(path):
            yield from self._read_mbox(path)
        else:
            yield self._read_file(path)

    @staticmethod
    def _read_file(path: Path) -> MailItem:
        try:
            return MailItem(raw=path.read_bytes(), label=str(path), path=str(path))
        except OSError as err:
            return MailItem(raw=b"", label=str(path), path=str(path), error=f"cannot read file: {err}")

    @staticmethod
    def _read_maildir(path: Path) -> Iterator[MailItem]:
        # Reading the files directly (not through mailbox.Maildir) keeps the
        # Maildir untouched: no moving new/ to cur/, no flag changes.
        for sub in ("cur", "new"):
            for child in sorted((path / sub).iterdir()):
                if child.is_file() and not child.name.startswith("."):
                    yield LocalSource._read_file(child)

    @staticmethod
    def _read_mbox(path: Path) -> Iterator[MailItem]:
        box = mailbox.mbox(path, create=False)
        try:
            for index, key in enumerate(box.iterkeys(), start=1):
                label = f"{path}#{index}"
                try:
                    raw = box.get_bytes(key)
                except (OSError, mailbox.Error) as err:
                    yield MailItem(raw=b"", label=label, path=str(path), error=f"cannot read mbox entry: {err}")
                    continue
                yield MailItem(raw=raw, label=label, path=str(path))
        finally:
            box.close()
