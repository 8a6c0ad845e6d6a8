"""Benchmark: reading an Authentication-Results header of 3 KB and of 300 KB.

A sender cannot write the receiving server's header, but it chooses much of
what the server copies into it (MAIL FROM, HELO, comments), and a forged header
further down the mail is read too. The parser must stay linear, so 100 times
the text may take about 100 times as long and never more.

Prints the best of several runs for each size and shape, and the ratio
300 KB / 3 KB (100 means linear):

    python bench/auth_results.py
    python bench/auth_results.py --repeat 10
"""

from __future__ import annotations

import argparse
import time

from tracker.authenticity import parse_authentication_results

# Each shape is one unit repeated to the size wanted.
SHAPES = {
    # What real servers write: results with comments, quoted values and properties.
    "realistic": ('dkim=pass (2048-bit key; unprotected) header.d=facebookmail.com header.s=s1 '
                  'header.b="Ab3d/+=="; spf=pass (mx.example.org: domain of bounce@facebookmail.com '
                  'designates 192.0.2.1 as permitted sender) smtp.mailfrom=bounce@facebookmail.com; '),
    # Comments inside comments, quoted strings that contain ";" and "dmarc=pass".
    "nested": 'dkim=pass (a (b (c) d) e) header.d=a.example header.b="x;dmarc=pass"; ',
    # The shapes that made the old regex parser slow or wrong: comments nested
    # thousands deep (removed one level per pass, so quadratic), an unclosed one.
    "deep": "()",
    "parentheses": "(",
    "semicolons": ";",
    "quote": "a\\",
}


def header(shape: str, size: int) -> str:
    unit = SHAPES[shape]
    body = unit * max(1, size // len(unit))
    if shape == "quote":
        return 'mx.example.org; dkim=pass header.b="' + body
    if shape == "deep":
        half = len(body) // 2
        return "mx.example.org; dkim=pass " + "(" * half + ")" * half + " header.d=a.example"
    return "mx.example.org; " + body + "dmarc=fail header.from=facebookmail.com"


def best_time(value: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        parse_authentication_results(value)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best counts")
    args = parser.parse_args()
    print(f"{'shape':<12} {'3 KB':>10} {'300 KB':>10} {'ratio':>7}")
    for shape in SHAPES:
        small = best_time(header(shape, 3_000), args.repeat)
        large = best_time(header(shape, 300_000), args.repeat)
        print(f"{shape:<12} {small * 1000:>8.2f}ms {large * 1000:>8.1f}ms {large / small:>7.0f}")


if __name__ == "__main__":
    main()
