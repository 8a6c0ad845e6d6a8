"""The words the whole tracker shares: categories, platforms, kinds, request states."""

from __future__ import annotations

# Categories the classifier assigns to a mail (DESIGN.md, "Categories").
OTP = "otp"
ACKNOWLEDGEMENT = "acknowledgement"
APPROVED = "approved"
REJECTED = "rejected"
INFO_REQUESTED = "info_requested"
EXTENDED = "extended"  # Meta announces the two-month extension of Art. 12(3)
NOTICE = "notice"
META_OTHER = "meta_other"
SUSPICIOUS = "suspicious"
UNRELATED = "unrelated"

CATEGORIES = (OTP, ACKNOWLEDGEMENT, APPROVED, REJECTED, INFO_REQUESTED, EXTENDED,
              NOTICE, META_OTHER, SUSPICIOUS, UNRELATED)
# A mail of one of these creates or updates a request.
REQUEST_CATEGORIES = frozenset({OTP, ACKNOWLEDGEMENT, APPROVED, REJECTED, INFO_REQUESTED, EXTENDED})
# Listed for the person to look at; never change a request.
REVIEW_CATEGORIES = frozenset({META_OTHER, SUSPICIOUS})

PLATFORMS = ("facebook", "instagram", "whatsapp")
KINDS = ("ai_objection", "third_party_data")
DEFAULT_KIND = "ai_objection"
