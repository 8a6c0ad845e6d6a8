"""Texts the tracker writes for people, one TOML file per language: the complaint letter,
the filing note (NOTE.txt) and the alerts. Also the data the letters draw on:
``controller.toml`` (Meta's address and its source) and ``recipients.toml`` (the
language each authority works in, and how a letter addresses it).
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib import resources

from tracker.errors import TrackerError

LANGUAGES = ("en", "de", "fr", "it", "es", "nl", "pl")
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "it": "Italian", "es": "Spanish",
                  "nl": "Dutch", "pl": "Polish"}


def load(name: str) -> dict:
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def texts(language: str) -> dict:
    """Everything written in ``language``: [letter], [note] and [alert] (<language>.toml)."""
    if language not in LANGUAGES:
        raise TrackerError(f"no texts in language {language!r}; choose one of {', '.join(LANGUAGES)}")
    return load(f"{language}.toml")


def normalise_language(value: str | None) -> str | None:
    """"de", "DE", "de-AT", "de_CH" -> "de"; None for an empty value or a language without texts."""
    code = re.split(r"[-_]", (value or "").strip().lower(), maxsplit=1)[0]
    return code if code in LANGUAGES else None
