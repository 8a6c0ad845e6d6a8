"""Build test mails in the shape Meta's mails have, so each test states only what matters."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone


def meta_mail(body: str, *, to: str = "anna@example.org", subject: str = "Your request",
              sender: str = "noreply@facebookmail.com", display: str = "Facebook",
              date: datetime = datetime(2025, 6, 2, 10, 0, tzinfo=timezone.utc),
              message_id: str | None = None, auth: str | None = "pass", html: bool = False) -> bytes:
    """A mail from ``sender``; ``auth`` is "pass", "fail" or None (no Authentication-Results)."""
    domain = sender.rpartition("@")[2]
    message = EmailMessage()
    message["From"] = f"{display} <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id or f"<{abs(hash((body, to, subject, date)))}@{domain}>"
    if auth is not None:
        message["Authentication-Results"] = (
            f"mx.example.org; dkim={auth} header.d={domain} header.s=s1; "
            f"spf={auth} smtp.mailfrom={sender}; dmarc={auth} (p=REJECT) header.from={domain}")
    if html:
        message.set_content(f"<html><body><p>{body}</p></body></html>", subtype="html")
    else:
        message.set_content(body)
    return bytes(message)


REFUSAL = ("We have reviewed your objection to the use of your information for AI at Meta. "
           "We will not honour your objection, and we cannot take further action on this request.")
APPROVAL = ("We will honour your objection. This means that we won't use your public information "
            "from Facebook and Instagram for the development of generative AI models.")
ACKNOWLEDGEMENT = ("We've received your objection request about the use of your information for AI at Meta. "
                   "We'll review it and let you know.")
