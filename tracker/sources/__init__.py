"""Where mail comes from: IMAP folders (imap.py) and local files (local.py)."""

from tracker.sources.base import MailItem, MailSource

__all__ = ["MailItem", "MailSource"]
