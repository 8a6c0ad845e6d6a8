"""DKIM signatures checked by the tracker itself (dkimpy): the only module that imports it.

A mail that reaches the tracker through a person's own mailbox carries the
Authentication-Results of that person's server. The original attached to a
forward does not: it reached the intake mailbox inside another mail, and the
headers in it were written by servers the tracker does not know, or typed by
the forwarder. Its DKIM signatures still hold, though, if its bytes are the
ones Meta signed: this module checks them.

DNS lookups of the signers' keys go through ``lookup_txt`` (dkimpy's resolver,
dnspython); tests put a function of their own in its place. A lookup that fails
(no network, a timeout) means "not verified", never an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import dkim
from dkim import dnsplug

log = logging.getLogger(__name__)

# (name, timeout=seconds) -> the TXT record as bytes, or None: dkimpy's dnsfunc.
DnsFunc = Callable[..., bytes | None]

DNS_TIMEOUT_SECONDS = 5
# More signatures than this on one mail are not checked: each costs a DNS lookup.
MAX_SIGNATURES = 5
# Headers the tracker reads to decide what a mail means and when it was sent: a signature
# that leaves one of them out would let anybody change it.
REQUIRED_HEADERS = (b"from", b"subject", b"date")


def lookup_txt(name: bytes, timeout: float = DNS_TIMEOUT_SECONDS) -> bytes | None:
    """The TXT record at ``name`` through the system's resolver (dkimpy's own lookup)."""
    return dnsplug.get_txt(name, timeout=timeout)


@dataclass(frozen=True)
class DkimResult:
    """What the tracker found about a mail's DKIM signatures."""

    verified: tuple[str, ...]     # d= of every signature that verified, lower case
    problems: tuple[str, ...]     # one sentence for each signature that did not (or: there is none)

    def summary(self) -> str:
        if self.verified and not self.problems:
            return f"DKIM signature of {', '.join(self.verified)} verified."
        parts = [f"DKIM signature of {', '.join(self.verified)} verified" if self.verified else ""]
        return "; ".join(filter(None, [*parts, *self.problems])) + "."


class _DebugOnly(logging.LoggerAdapter):
    """dkimpy's log lines at debug level: what went wrong is in the result, said once, by the caller."""

    def log(self, level, msg, *args, **kwargs):
        super().log(logging.DEBUG, msg, *args, **kwargs)

    def error(self, msg, *args, **kwargs):
        self.log(logging.ERROR, msg, *args, **kwargs)


def _tag(fields: dict, name: bytes) -> str:
    value = fields.get(name, b"")
    return value.decode("ascii", "replace").strip().lower() if isinstance(value, bytes) else ""


def verify(raw: bytes, dnsfunc: DnsFunc | None = None) -> DkimResult:
    """Check every DKIM signature of ``raw`` (up to ``MAX_SIGNATURES``). Never raises."""
    lookup = dnsfunc or lookup_txt  # looked up now, so that a replaced ``lookup_txt`` counts
    try:
        checker = dkim.DKIM(raw, logger=_DebugOnly(log, {}), timeout=DNS_TIMEOUT_SECONDS)
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    except Exception as err:  # a mail dkimpy cannot even split into headers and body
        return DkimResult((), (f"its DKIM signatures could not be read ({type(err).__name__})",))
    if count == 0:
        return DkimResult((), ("it has no DKIM signature",))
    verified: list[str] = []
    problems: list[str] = []
    for index in range(min(count, MAX_SIGNATURES)):
        # dkimpy answers False both for a key it could not find and for a wrong signature:
        # what the lookup gave tells the two apart.
        found: list[object] = []

        def traced(name, timeout=DNS_TIMEOUT_SECONDS):
            try:
                answer = lookup(name, timeout=timeout)
            except Exception as err:
                found.append(err)
                raise
            found.append(answer)
            return answer

        checker.signature_fields = {}
        try:
            valid = checker.verify(idx=index, dnsfunc=traced)
        except Exception as err:  # a malformed signature or key, or DNS trouble dkimpy does not handle
            domain = _tag(checker.signature_fields or {}, b"d") or "an unnamed domain"
            if "body hash mismatch" in str(err):
                problems.append(f"the DKIM signature of {domain} does not match: the body was changed after signing")
                continue
            why = _one_line(err) if isinstance(err, dkim.DKIMException) else f"{type(err).__name__}: {_one_line(err)}"
            problems.append(f"the DKIM signature of {domain} could not be verified: {why}")
            continue
        fields = checker.signature_fields or {}
        domain = _tag(fields, b"d") or "an unnamed domain"
        if not valid:
            key = f"{_tag(fields, b's')}._domainkey.{domain}"
            if found and isinstance(found[-1], BaseException):
                problems.append(f"the key of the DKIM signature of {domain} could not be looked up "
                                f"({key}: {_one_line(found[-1]) or type(found[-1]).__name__})")
            elif found and not found[-1]:
                problems.append(f"the key of the DKIM signature of {domain} was not found ({key})")
            else:
                problems.append(f"the DKIM signature of {domain} does not match: the mail was changed after signing")
            continue
        if b"l" in fields:
            problems.append(f"the DKIM signature of {domain} covers only part of the body (l=): "
                            f"text after it could be anybody's")
            continue
        signed = set(getattr(checker, "include_headers", ()) or ())
        missing = [name.decode() for name in REQUIRED_HEADERS if name not in signed]
        if missing:
            problems.append(f"the DKIM signature of {domain} does not cover {', '.join(missing)}")
            continue
        verified.append(domain)
    if count > MAX_SIGNATURES:
        problems.append(f"{count - MAX_SIGNATURES} more DKIM signatures were not checked")
    return DkimResult(tuple(dict.fromkeys(verified)), tuple(problems))


# dkimpy's "body hash mismatch (got ..., expected ...)": the hashes tell a person nothing.
_HASHES = re.compile(r"\s*\(got .*\)\s*$", re.S)


def _one_line(err: BaseException) -> str:
    return " ".join(_HASHES.sub("", str(err)).split())[:200]

