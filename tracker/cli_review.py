"""`review`: the mails that wait for the person, their verdicts, and what was learned from them."""

from __future__ import annotations

from tracker.cli import app  # noqa: F401
