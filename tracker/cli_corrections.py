"""Corrections by the person: `request edit/delete`, `mail show/relabel/forget`, `db upgrade`."""

from __future__ import annotations

from tracker.cli import app  # noqa: F401
