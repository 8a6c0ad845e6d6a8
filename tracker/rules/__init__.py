"""Recognising Meta's mails: load the word lists and rules, classify a mail, explain why.

The rules themselves are data: ``default_rules.toml`` and the word lists in
``lexicon/`` in this package, plus an optional user file (``[rules] file`` in
the config) that adds words, concept rules and pattern rules or overrides them.
"""

from tracker.rules.engine import (Classification, Explanation, Rule, RuleSet, classify, explain, load_rules,
                                  platform_of)

__all__ = ["Classification", "Explanation", "Rule", "RuleSet", "classify", "explain", "load_rules",
           "platform_of"]
