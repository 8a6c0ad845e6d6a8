"""Exception classes: one root so callers can catch everything the tracker raises."""


class TrackerError(Exception):
    """Root of every error the tracker raises on purpose."""


class ConfigError(TrackerError):
    """The configuration file is missing a key, has a wrong value, or cannot be read."""


class RulesError(TrackerError):
    """A rules file is malformed (bad regex, unknown category, duplicate id...)."""


class SourceError(TrackerError):
    """A mail source (IMAP account, Maildir, mbox, .eml file) cannot be read."""


class MailboxAuthError(SourceError):
    """The server refused the login."""


class MailboxConnectionError(SourceError):
    """The server cannot be reached, the connection dropped, or TLS failed."""


class StoreError(TrackerError):
    """The database cannot be opened or written."""


class NotFoundError(TrackerError):
    """A request, complaint or authority named by the user does not exist."""
