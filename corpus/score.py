"""Score the classifier on the corpus: right/total per language, per category and per split.

    python corpus/build.py && python corpus/score.py            # tables, then every miss
    python corpus/score.py --split holdout --misses             # one split, misses only

A mail is right when category, platform, kind and code are all as the
manifest says (platform and kind only where they matter: for request
categories). The three guarantees are counted separately: authentic Meta
privacy mail classified `unrelated`, refusals classified `approved`, and codes
shown from fakes.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tracker.config import AuthenticitySettings  # noqa: E402
from tracker.parse import parse_mail  # noqa: E402
from tracker.rules import classify, load_rules  # noqa: E402

REQUEST = {"otp", "acknowledgement", "approved", "rejected", "info_requested", "extended"}
PRIVACY = REQUEST | {"notice"}


@dataclass
class Outcome:
    entry: dict
    category: str
    platform: str | None
    kind: str | None
    otp: str | None
    reason: str

    @property
    def right(self) -> bool:
        expected = self.entry
        if self.category != expected["category"]:
            return False
        if self.category == "otp" and self.otp != expected.get("otp"):
            return False
        if self.category in REQUEST and (self.platform, self.kind) != (expected.get("platform"), expected.get("kind")):
            return False
        return True

    @property
    def dropped(self) -> bool:
        """Authentic Meta privacy mail that the person would never hear of."""
        return self.entry["written_as"] in PRIVACY and self.entry["shape"] != "fake" and self.category == "unrelated"

    @property
    def refusal_as_approval(self) -> bool:
        return self.entry["written_as"] == "rejected" and self.category == "approved"

    @property
    def fake_code(self) -> bool:
        return self.entry["category"] == "suspicious" and self.otp is not None


def manifest(folder: Path = HERE / "mail") -> list[dict]:
    return tomllib.loads((folder / "manifest.toml").read_text(encoding="utf-8"))["mail"]


def run(entries: list[dict], folder: Path = HERE / "mail") -> list[Outcome]:
    rules, settings = load_rules(), AuthenticitySettings()
    outcomes = []
    for entry in entries:
        result = classify(parse_mail((folder / entry["file"]).read_bytes()), rules, settings)
        outcomes.append(Outcome(entry, result.category, result.platform, result.kind, result.otp, result.reason))
    return outcomes


def print_table(outcomes: list[Outcome], key: str, splits: list[str]) -> None:
    """A Markdown table: right/total for each value of the manifest's ``key``, one column per split."""
    print(f"| {key} | " + " | ".join(splits) + " |")
    print("|---|" + "---|" * len(splits))
    for value in sorted({o.entry[key] for o in outcomes}):
        cells = []
        for split in splits:
            chosen = [o for o in outcomes if o.entry[key] == value and o.entry["split"] == split]
            cells.append(f"{sum(o.right for o in chosen)}/{len(chosen)}" if chosen else "-")
        print(f"| {value} | " + " | ".join(cells) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "holdout", "negatives"))
    parser.add_argument("--misses", action="store_true", help="list only the misses")
    args = parser.parse_args()
    entries = [e for e in manifest() if args.split is None or e["split"] == args.split]
    outcomes = run(entries)
    if not args.misses:
        splits = sorted({o.entry["split"] for o in outcomes})
        for key in ("language", "category"):
            print_table(outcomes, key, splits)
        for split in splits:
            chosen = [o for o in outcomes if o.entry["split"] == split]
            print(f"{split}: {sum(o.right for o in chosen)}/{len(chosen)} right; "
                  f"dropped as unrelated {sum(o.dropped for o in chosen)}; "
                  f"refusals as approved {sum(o.refusal_as_approval for o in chosen)}; "
                  f"codes from fakes {sum(o.fake_code for o in chosen)}")
        print()
    for outcome in outcomes:
        if not outcome.right:
            e = outcome.entry
            print(f"MISS {e['file']}: expected {e['category']}/{e.get('platform')}/{e.get('kind')}/{e.get('otp')} "
                  f"got {outcome.category}/{outcome.platform}/{outcome.kind}/{outcome.otp} - {outcome.reason[:150]}")


if __name__ == "__main__":
    main()
