"""privacy-request-tracker: follow GDPR objections and data requests to Meta by mail."""

__version__ = "0.1.0"
