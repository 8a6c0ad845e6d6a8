"""`doctor` and `service install/status/uninstall`: is everything working, and keep it running."""

from __future__ import annotations

from tracker.cli import app  # noqa: F401
