"""Render the corpus texts into .eml files of real-world shapes, with fakes and negatives.

    python corpus/build.py          # writes corpus/mail/ and corpus/mail/manifest.toml

Deterministic: the same texts give the same files. Every Meta mail carries the
Authentication-Results header of the person's own server (mx.example.org),
except the few "unverified" ones, which are expected to be held for review.
"""

from __future__ import annotations

import base64
import hashlib
import html
import quopri
import random
import shutil
import tomllib
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXTS = HERE / "texts"
OUT = HERE / "mail"

SENDERS = {
    "facebook": [("Facebook", "security@facebookmail.com"), ("Facebook", "notification@facebookmail.com"),
                 ("Facebook Privacy", "noreply@facebookmail.com")],
    "instagram": [("Instagram", "security@mail.instagram.com"), ("Instagram", "no-reply@mail.instagram.com")],
    "whatsapp": [("WhatsApp", "noreply@whatsapp.com"), ("WhatsApp Privacy", "privacy@support.whatsapp.com")],
    None: [("Meta", "privacy@meta.com"), ("Meta Privacy", "noreply@account.meta.com"),
           ("Meta", "notification@global.metamail.com")],
}
SHAPES = ("plain", "plain-qp", "html-base64", "alternative-stub", "alternative", "html-table", "thread", "forward")
# Legacy charsets some mail systems still use, by language, when the text fits.
LEGACY_CHARSETS = {"de": "iso-8859-1", "fr": "iso-8859-1", "pl": "iso-8859-2", "cs": "windows-1250",
                   "el": "iso-8859-7", "bg": "windows-1251", "hu": "iso-8859-2", "sv": "iso-8859-1",
                   "lt": "iso-8859-13", "lv": "iso-8859-13"}
FAKES = [  # (display name, address, Authentication-Results or None)
    ("Facebook", "security@facebookmail.corn", None),
    ("Facebook Security", "desk@account-review.example.net", None),
    ("Meta Privacy Center", "privacy@meta-privacy-center.com", None),
    ("Instagram", "support@instagram-help.net", None),
    ("Facebook", "security@facebookmail.com", "mx.example.org; dkim=fail header.d=facebookmail.com; "
                                              "spf=fail smtp.mailfrom=facebookmail.com; dmarc=fail header.from=facebookmail.com"),
    ("Meta", "noreply@rneta.com", None),
]
NEGATIVES = [  # (file id, language, display name, address, subject, body): mail about Meta that is not from Meta
    ("neg-meta-schmidt", "de", "Meta Schmidt", "meta.schmidt@example-firma.de", "Mittagessen morgen?",
     "Hallo zusammen,\n\nwollen wir morgen um 12 Uhr zusammen essen gehen? Ich habe einen Tisch reserviert.\n\n"
     "Viele Grüße\nMeta"),
    ("neg-meta-van-dijk", "nl", "Meta van Dijk", "meta@vandijk.example.nl", "Verjaardag zaterdag",
     "Hoi!\n\nZaterdag vier ik mijn verjaardag. Kom je ook? Neem je partner mee.\n\nGroetjes,\nMeta"),
    ("neg-heise-newsletter", "de", "Heise: Meta & Facebook News", "newsletter@heise.example.de",
     "Widerspruch gegen KI-Training bei Meta: So geht's",
     "Meta will öffentliche Beiträge für das Training seiner KI verwenden. Wir erklären, wie Sie "
     "widersprechen können und was passiert, wenn Meta Ihren Widerspruch ablehnt.\n\n"
     "Newsletter abbestellen: https://heise.example.de/abmelden"),
    ("neg-rights-group", "en", "Digital Rights Weekly", "news@digitalrights.example.net",
     "Meta refuses objections: what to do",
     "Many readers report that Meta will not honour their objection to AI training. Here is how to "
     "file a complaint with your data protection authority.\n\nUnsubscribe: https://digitalrights.example.net/u"),
    ("neg-bank-code", "en", "Example Bank", "alerts@bank.example", "Your security code",
     "Your security code to confirm the payment is 481516. Never share it."),
    ("neg-verge", "en", "The Verge - Facebook and Meta coverage", "newsletter@theverge.example.com",
     "Meta AI is coming to your messages",
     "Meta is getting ready to use your public posts to train its AI models. Here is how to object."),
]


def _rng(key: str) -> random.Random:
    return random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))


def _paragraphs(body: str) -> list[str]:
    return [" ".join(p.split()) if "\n" not in p.strip() else p.strip() for p in body.strip().split("\n\n") if p.strip()]


def _html_body(paragraphs: list[str], rng: random.Random, preheader: str, split_code: str | None) -> str:
    cells = []
    for paragraph in paragraphs:
        text = html.escape(paragraph).replace("\n", "<br>")
        if split_code and split_code in paragraph:
            middle = len(split_code) // 2
            text = text.replace(html.escape(split_code),
                                f'<span style="font-weight:bold">{split_code[:middle]}</span>'
                                f'<span style="font-weight:bold">{split_code[middle:]}</span>')
        cells.append(f'<tr><td style="font-family:Helvetica,Arial,sans-serif;font-size:14px;'
                     f'line-height:20px;color:#1c1e21;padding:8px 24px">{text}</td></tr>')
    hidden = (f'<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">{html.escape(preheader)}'
              '&nbsp;&zwnj;&nbsp;&zwnj;</div>') if preheader else ""
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>td{padding:0}</style>"
            f"<title>{html.escape(paragraphs[0][:40] if paragraphs else '')}</title></head><body>{hidden}"
            '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">'
            '<tr><td align="center"><table width="600" style="border:1px solid #dddfe2">'
            + "".join(cells) + "</table></td></tr></table>"
            f'<img src="https://www.facebook.com/email_open_log_pic.php?mid={rng.getrandbits(40):x}" '
            'width="1" height="1" alt=""></body></html>')


def _qp_soft(text: str, rng: random.Random) -> bytes:
    """Quoted-printable with soft line breaks at random places, inside words too."""
    encoded = quopri.encodestring(text.encode("utf-8")).replace(b"=\n", b"")
    out, line = bytearray(), bytearray()
    index = 0
    while index < len(encoded):
        char = encoded[index:index + 1]
        if char == b"=":  # keep "=XX" together
            piece = encoded[index:index + 3]
        else:
            piece = char
        if piece == b"\n":
            out += line + b"\n"
            line = bytearray()
        else:
            if len(line) + len(piece) > rng.randint(30, 74):
                out += line + b"=\n"
                line = bytearray()
            line += piece
        index += len(piece)
    return bytes(out + line)


def _headers(name: str, address: str, to: str, subject: str, date: datetime, key: str, auth: str | None) -> list[str]:
    from email.header import Header
    lines = []
    if auth is not None:
        lines.append(f"Authentication-Results: {auth}")
    lines += [
        f"From: {Header(name, 'utf-8').encode() if not name.isascii() else name} <{address}>",
        f"To: {to}",
        f"Subject: {Header(subject, 'utf-8').encode()}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: <{hashlib.sha1(key.encode()).hexdigest()[:20]}@corpus.example>",
        "MIME-Version: 1.0",
    ]
    return lines


def _pass(address: str) -> str:
    domain = address.rpartition("@")[2]
    return (f"mx.example.org; dkim=pass header.d={domain} header.s=s1; spf=pass smtp.mailfrom={domain}; "
            f"dmarc=pass (p=REJECT) header.from={domain}")


def render(entry: dict, language: str, *, shape: str, name: str, address: str, auth: str | None,
           history: str | None, date: datetime) -> bytes:
    rng = _rng(entry["id"] + shape)
    to = f"{language}.reader{rng.randint(1, 3)}@example.org"
    body = entry["body"].replace("{address}", to)
    paragraphs = _paragraphs(body)
    quoted = entry.get("quoted")
    code_text = next((p for p in paragraphs for token in [entry.get("otp")] if token and token in p), None)
    headers = _headers(name, address, to, entry["subject"], date, entry["id"] + shape + address, auth)

    plain = "\n\n".join(paragraphs)
    if quoted:
        plain += (f"\n\nOn {format_datetime(date - timedelta(days=3))}, {to} wrote:\n"
                  + "\n".join("> " + line for line in quoted.strip().splitlines()))
    if shape == "thread" and history:
        plain += (f"\n\nOn {format_datetime(date - timedelta(days=9))}, {name} <{address}> wrote:\n"
                  + "\n".join("> " + line for line in history.strip().splitlines()))
    if shape == "forward" and history:
        plain += ("\n\n---------- Forwarded message ---------\n"
                  f"From: {name} <{address}>\nDate: {format_datetime(date - timedelta(days=9))}\n\n" + history.strip())

    html_paragraphs = list(paragraphs)
    markup = _html_body(html_paragraphs, rng, preheader=paragraphs[0] if paragraphs else "",
                        split_code=entry.get("otp") and next(
                            (c for c in [_written_code(entry)] if c and code_text and c in code_text), None))
    if quoted:
        markup = markup.replace("</body>", "<blockquote>" + html.escape(quoted).replace("\n", "<br>")
                                + "</blockquote></body>")

    charset = LEGACY_CHARSETS.get(language) if rng.random() < 0.5 else None
    if charset:
        try:
            plain.encode(charset)
        except UnicodeEncodeError:
            charset = None
    charset = charset or "utf-8"

    if shape in ("plain", "thread", "forward"):
        headers += [f"Content-Type: text/plain; charset={charset}", "Content-Transfer-Encoding: 8bit"]
        return ("\n".join(headers) + "\n\n").encode("ascii") + plain.encode(charset) + b"\n"
    if shape == "plain-qp":
        headers += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"]
        return ("\n".join(headers) + "\n\n").encode("ascii") + _qp_soft(plain, rng) + b"\n"
    if shape in ("html-base64", "html-table"):
        encoded = base64.encodebytes(markup.encode("utf-8")).decode("ascii") if shape == "html-base64" else None
        headers += ["Content-Type: text/html; charset=utf-8",
                    f"Content-Transfer-Encoding: {'base64' if encoded else 'quoted-printable'}"]
        payload = encoded.encode("ascii") if encoded else _qp_soft(markup, rng)
        return ("\n".join(headers) + "\n\n").encode("ascii") + payload + b"\n"
    boundary = f"=_b{rng.getrandbits(48):x}"
    stub = "View this email in your browser: https://www.facebook.com/n/?email_view" if shape == "alternative-stub" \
        else plain
    headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    parts = [
        f"--{boundary}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
        + _qp_soft(stub, rng).decode("ascii"),
        f"--{boundary}\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(markup.encode("utf-8")).decode("ascii"),
    ]
    return ("\n".join(headers) + "\n\n" + "\n".join(parts) + f"\n--{boundary}--\n").encode("ascii")


def _written_code(entry: dict) -> str | None:
    """The code as the body writes it ("482 913"), found from the digits of `otp`."""
    code = entry.get("otp")
    if not code:
        return None
    import re
    pattern = r"[ \-\u00a0]?".join(code)
    found = re.search(pattern, entry["body"])
    return found.group(0) if found else None


def _quote_value(value) -> str:
    if value is None:
        return '""'
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def build(out: Path = OUT) -> list[dict]:
    """Write every mail and the manifest into ``out`` (emptied first); returns the manifest entries."""
    if out.exists():
        shutil.rmtree(out)
    manifest = []
    base_date = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
    for split in ("dev", "holdout"):
        for path in sorted((TEXTS / split).glob("*.toml")):
            document = tomllib.loads(path.read_text(encoding="utf-8"))
            language = document["language"]
            entries = document.get("mail", [])
            by_category = {}
            for entry in entries:
                by_category.setdefault(entry["category"], entry)
            for number, entry in enumerate(entries):
                rng = _rng(entry["id"])
                shape = SHAPES[(number + len(language)) % len(SHAPES)]
                platform = entry.get("platform")
                name, address = rng.choice(SENDERS[platform])
                # Earlier mail quoted or forwarded below: the opposite decision, which must not count.
                other = "rejected" if entry["category"] != "rejected" else "approved"
                history = by_category.get(other, {}).get("body") if shape in ("thread", "forward") else None
                if shape in ("thread", "forward") and history is None:
                    shape = "plain"
                date = base_date + timedelta(hours=number * 5 + len(manifest))
                unverified = split == "dev" and number == 5 and language in ("en", "de", "pl", "fr", "el")
                auth = None if unverified else _pass(address)
                raw = render(entry, language, shape=shape, name=name, address=address, auth=auth,
                             history=history, date=date)
                expected = "meta_other" if unverified and entry["category"] != "unrelated" else entry["category"]
                file = f"{split}/{entry['id']}.eml"
                _write(out, file, raw)
                request = expected in ("otp", "acknowledgement", "approved", "rejected", "info_requested", "extended")
                manifest.append(dict(
                    file=file, split=split, language=language, shape=shape + ("-unverified" if unverified else ""),
                    category=expected, written_as=entry["category"],
                    platform=platform,
                    kind=entry.get("kind", "ai_objection") if request else None,
                    otp=entry.get("otp") if expected == "otp" else None))
            # One fake per language and split: a real text sent by an impersonator.
            source = by_category.get("otp") or by_category.get("rejected") or entries[0]
            fake_name, fake_address, fake_auth = FAKES[len(manifest) % len(FAKES)]
            raw = render(source, language, shape="alternative", name=fake_name, address=fake_address,
                         auth=fake_auth, history=None, date=base_date)
            file = f"{split}/{language}-{split}-fake.eml"
            _write(out, file, raw)
            manifest.append(dict(file=file, split=split, language=language, shape="fake", category="suspicious",
                                 written_as=source["category"], platform=None, kind=None, otp=None))
    for key, language, name, address, subject, body in NEGATIVES:
        entry = {"id": key, "subject": subject, "body": body}
        raw = render(entry, language, shape="plain", name=name, address=address,
                     auth=f"mx.example.org; dkim=pass header.d={address.rpartition('@')[2]}; "
                          f"dmarc=pass header.from={address.rpartition('@')[2]}",
                     history=None, date=base_date)
        file = f"negatives/{key}.eml"
        _write(out, file, raw)
        manifest.append(dict(file=file, split="negatives", language=language, shape="negative",
                             category="unrelated", written_as="unrelated", platform=None, kind=None, otp=None))

    lines = ["# Written by corpus/build.py from corpus/texts/: what the classifier must say about each mail.",
             "# written_as: the category of the text; category: the expected verdict (fakes are suspicious,",
             "# unverified Meta mail is held as meta_other).", ""]
    for item in manifest:
        lines.append("[[mail]]")
        for key in ("file", "split", "language", "shape", "category", "written_as", "platform", "kind", "otp"):
            if item[key] is not None:
                lines.append(f"{key} = {_quote_value(item[key])}")
        lines.append("")
    (out / "manifest.toml").write_text("\n".join(lines), encoding="utf-8")
    return manifest


def _write(out: Path, relative: str, raw: bytes) -> None:
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


if __name__ == "__main__":
    built = build()
    print(f"{len(built)} mails written to {OUT}")
