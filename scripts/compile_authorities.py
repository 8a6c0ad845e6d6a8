#!/usr/bin/env python3
"""Compile tracker/authorities.toml from the shared directory of data protection authorities.

    python scripts/compile_authorities.py                  # ../shared/reference/dpa_directory.tsv
    python scripts/compile_authorities.py --check          # exit 1 if the TOML is out of date
    python scripts/compile_authorities.py PATH/TO/dpa_directory.tsv --out FILE

The TSV (one row per authority, see dpa_directory.README.md beside it) is the
source of every name, address and URL; this script only gives each authority a
code, says which law it applies, and adds the notes the README makes about how
each one accepts complaints. Empty cells stay empty: no URL is made up here.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TSV = REPO.parent / "shared" / "reference" / "dpa_directory.tsv"
DEFAULT_OUT = REPO / "tracker" / "authorities.toml"

COLUMNS = ("country_code", "country", "authority_name", "website", "complaint_url", "email", "address", "source")

# The German authorities share the country code DE; the datenanfragen record
# each row cites tells them apart. Codes are ISO 3166-2 state codes, so the
# request's `region` ("BY") names its authority ("DE-BY"). Bavaria has two: the
# BayLDA for companies (DE-BY) and the BayLfD for Bavarian public bodies.
GERMAN_RECORDS = {
    "debfdi": ("DE", None),
    "debawueldb": ("DE-BW", "BW"),
    "debaylda": ("DE-BY", "BY"),
    "debayldb": ("DE-BY-PUBLIC", "BY"),
    "deberlbdi": ("DE-BE", "BE"),
    "debralda": ("DE-BB", "BB"),
    "debrelfdi": ("DE-HB", "HB"),
    "dehmbbfdi": ("DE-HH", "HH"),
    "dehessbdi": ("DE-HE", "HE"),
    "demvldi": ("DE-MV", "MV"),
    "dendslfd": ("DE-NI", "NI"),
    "denrwldi": ("DE-NW", "NW"),
    "derlpbdi": ("DE-RP", "RP"),
    "desaarudz": ("DE-SL", "SL"),
    "desaechsdsb": ("DE-SN", "SN"),
    "desalbd": ("DE-ST", "ST"),
    "deshuld": ("DE-SH", "SH"),
    "detlfdi": ("DE-TH", "TH"),
}

LAW = {"GB": "UK GDPR", "CH": "FADP"}  # everyone else: "GDPR"

# What dpa_directory.README.md says about how each authority takes complaints.
NOTES = {
    "IE": "Meta's lead supervisory authority in the EU: Meta Platforms Ireland Limited (Facebook, Instagram) "
          "has its European headquarters in Dublin. The complaint URL is the contact form datenanfragen lists; "
          "it was not confirmed to be the DPC's complaint form.",
    "BG": "Complaints by email must carry a qualified electronic signature (QES).",
    "IT": "protocollo@pec.gpdp.it accepts only certified email (PEC); this comes from third-party copies of "
          "the Garante's complaint guidance.",
    "LT": "Electronic complaints need a qualified electronic signature or a national e-ID.",
    "LV": "Electronic complaints need a qualified electronic signature or a national e-ID.",
    "PL": "Electronic complaints need a qualified electronic signature or a national e-ID.",
    "SK": "An electronic complaint without a qualified electronic signature or e-ID must be completed on "
          "paper within 3 working days.",
    "NO": "The digital complaint form needs BankID; otherwise complaints go by post.",
    "SE": "IMY states that data subjects may choose any country's authority.",
    "GB": "Applies the UK GDPR, not the EU GDPR (Art. 77 EU GDPR does not apply).",
    "CH": "Works under the Swiss FADP, where individuals file reports; not a GDPR authority. "
          "Listed for completeness; the complaint URL uses the older edoeb.admin.ch path structure.",
    "DE": "Competent for federal public bodies and for telecoms and postal companies nationwide. "
          "For other companies, such as Meta, the authority of the person's Land is competent.",
    "DE-BY": "Private sector in Bavaria (the competent Bavarian authority for companies such as Meta).",
    "DE-BY-PUBLIC": "Bavarian public bodies only; for companies such as Meta see DE-BY (BayLDA).",
}
LAND_NOTE = "Authority of the Land: competent for companies in the Land, such as Meta for people living there."


def read_rows(tsv_text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(tsv_text), delimiter="\t", quoting=csv.QUOTE_NONE)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise SystemExit(f"unexpected TSV columns {reader.fieldnames}; expected {COLUMNS}")
    return [{key: (value or "").strip() for key, value in row.items()} for row in reader]


def _german_code(row: dict) -> tuple[str, str | None]:
    for record, code in GERMAN_RECORDS.items():
        if f"/supervisory-authorities/{record}.json" in row["source"]:
            return code
    raise SystemExit(f"German authority without a known datenanfragen record: {row['authority_name']}")


def authorities(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        country_code = row["country_code"]
        code, region = _german_code(row) if country_code == "DE" else (country_code, None)
        notes = NOTES.get(code, LAND_NOTE if region and code != "DE-BY-PUBLIC" else "")
        out.append({
            "code": code,
            "country_code": country_code,
            "region": region or "",
            "country": row["country"],
            "name": row["authority_name"],
            "website": row["website"],
            "complaint_url": row["complaint_url"],
            "email": row["email"],
            "address": row["address"],
            "notes": notes,
            "law": LAW.get(country_code, "GDPR"),
            "source": [part.strip() for part in row["source"].split(" | ") if part.strip()],
        })
    codes = [a["code"] for a in out]
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise SystemExit(f"duplicate authority codes: {duplicates}")
    return out


def _toml_value(value) -> str:
    # A JSON string is a valid TOML basic string (same escapes); lists likewise.
    if isinstance(value, list):
        return "[\n" + "".join(f"    {json.dumps(v, ensure_ascii=False)},\n" for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def to_toml(entries: list[dict], tsv_name: str) -> str:
    lines = [
        f"# Data protection supervisory authorities, compiled from {tsv_name}",
        "# by scripts/compile_authorities.py. Do not edit by hand: change the TSV or the script and run it again.",
        "# Empty values are unknown. Confirm a URL on the authority's own site before filing a complaint.",
    ]
    for entry in entries:
        lines.append("")
        lines.append("[[authority]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in entry.items())
    return "\n".join(lines) + "\n"


def compile_tsv(tsv_text: str, tsv_name: str = "dpa_directory.tsv") -> str:
    return to_toml(authorities(read_rows(tsv_text)), tsv_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tsv", nargs="?", type=Path, default=DEFAULT_TSV)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="only check that --out is up to date")
    args = parser.parse_args(argv)
    compiled = compile_tsv(args.tsv.read_text(encoding="utf-8"), args.tsv.name)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != compiled:
            print(f"{args.out} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(compiled, encoding="utf-8")
    print(f"wrote {args.out}: {compiled.count('[[authority]]')} authorities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
