"""`init`: set up an account and the config without editing TOML."""

from __future__ import annotations

from tracker.cli import app  # noqa: F401
