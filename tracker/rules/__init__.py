"""Recognising Meta's mails: load the pattern rules, classify a mail, explain why.

The rules themselves are data: ``default_rules.toml`` in this package, plus an
optional user file (``[rules] file`` in the config) that adds or overrides rules.
"""

from tracker.rules.engine import (Classification, Explanation, Rule, RuleCheck, RuleSet, classify, explain,
                                  load_rules, platform_of)

__all__ = ["Classification", "Explanation", "Rule", "RuleCheck", "RuleSet", "classify", "explain",
           "load_rules", "platform_of"]
