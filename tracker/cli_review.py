"""`review`: the mails that wait for the person, their verdicts, and what was learned from them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tracker import review as reviews
from tracker.cli import _state, app, console, err_console, rules_app
from tracker.safe_text import json_text, plain

_CATEGORIES = ", ".join(reviews.VERDICT_CATEGORIES)


def _local_day(iso: str | None) -> str:
    from tracker.report import local_time

    return local_time(iso) if iso else "date unknown"


def _print_item(item: dict) -> None:
    sender = f"{item['sender_name']} <{item['sender']}>" if item["sender_name"] else f"<{item['sender']}>"
    lines = [f"#{item['id']}  {_local_day(item['date'])}  {item['category']}  from {sender}"
             f"  to {item['recipient'] or '(no recipient)'}",
             f"    Subject: {item['subject'] or '(none)'}",
             f"    Listed because {item['why']}."]
    if item["reason"]:
        lines.append(f"    Why: {item['reason']}")
    if item["guesses"]:
        shown = [f"{g['category']} ({'request #' + str(g['request']) if g['request'] else 'a new request'})"
                 if g["category"] in reviews.v.REQUEST_CATEGORIES else g["category"] for g in item["guesses"]]
        lines.append(f"    Best guesses: {'; '.join(shown)}")
        lines.append(f"    Say what it is: privacy-tracker review {item['id']} --as {item['guesses'][0]['category']}")
    elif item["category"] == reviews.v.SUSPICIOUS:
        lines.append("    Do not click its links or enter a code from it. "
                     f"Done looking: privacy-tracker review {item['id']} --dismiss")
    else:
        lines.append(f"    Say what it is: privacy-tracker review {item['id']} --as CATEGORY, "
                     f"or --dismiss if it means nothing")
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        console.print(" " * indent + plain(line.lstrip(" ")), markup=False, highlight=False, soft_wrap=True)


@app.command()
def review(
    ctx: typer.Context,
    message_id: Annotated[Optional[int], typer.Argument(help="A mail's number from the list. Without it: the list.")] = None,
    as_category: Annotated[Optional[str], typer.Option("--as", help=f"What the mail is: {_CATEGORIES}.")] = None,
    request_id: Annotated[Optional[int], typer.Option("--request", help="The request it belongs to. Default: the "
                                                      "one its recipient, platform and kind point to.")] = None,
    dismiss: Annotated[bool, typer.Option("--dismiss", help="Take it off the list; it means nothing more.")] = False,
    undo: Annotated[bool, typer.Option("--undo", help="Take back your last verdict on it.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Give a verdict on a mail that failed authentication "
                                        "(recorded as forced; nothing is learned from it).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """Mails that wait for you: held, fake, unreadable or uncertain ones. Say what one is, or dismiss it."""
    state = _state(ctx)
    actions = sum(bool(x) for x in (as_category, dismiss, undo))
    if actions > 1:
        raise typer.BadParameter("give one of --as, --dismiss, --undo")
    if actions and message_id is None:
        raise typer.BadParameter("say which mail: privacy-tracker review ID --as CATEGORY")
    if (request_id is not None or force) and not as_category:
        raise typer.BadParameter("--request and --force go with --as")
    if as_category is not None:
        as_category = as_category.strip().lower()
    with state.db.write() as session:
        if message_id is None or not actions:
            items = reviews.review_list(session)
            if message_id is not None:
                items = [item for item in items if item["id"] == message_id]
                if not items:
                    reviews.get_message(session, message_id)  # "no mail with id N" when there is none
                    raise reviews.VerdictError(f"mail #{message_id} is not on the review list "
                                               f"(privacy-tracker mail show {message_id} shows it)")
        elif as_category:
            message = reviews.get_message(session, message_id)
            result = reviews.assign(session, state.settings, message, as_category, request_id, forced=force)
        elif dismiss:
            reviews.dismiss(session, reviews.get_message(session, message_id))
        else:
            verdict = reviews.undo(session, state.settings, reviews.get_message(session, message_id))
            message = reviews.get_message(session, message_id)
    if message_id is None or not actions:
        if as_json:
            sys.stdout.write(json_text({"mails": items}, indent=2) + "\n")
        elif not items:
            console.print("No mails wait for your review.")
        else:
            for item in items:
                _print_item(item)
        return
    if as_category:
        where = f" It joins request #{result.request.id}, now {_state_label(result.request.state)}." \
            if result.request is not None else ""
        console.print(plain(f"Mail #{message_id} counts as {as_category}.{where}"), markup=False, highlight=False)
        if result.learned is not None:
            console.print(f"Learned its template: a later mail of the same template from Meta is {as_category} "
                          f"by itself (privacy-tracker rules learned).", markup=False, highlight=False)
        elif result.not_learned:
            console.print(plain(f"Nothing learned: {result.not_learned}."), markup=False, highlight=False)
    elif dismiss:
        console.print(f"Mail #{message_id} is off the review list.")
    else:
        console.print(plain(f"Verdict on mail #{message_id} taken back: it is {message.category} again"
                            f"{', back on the review list' if not message.reviewed else ''}."
                            f"{' What was learned from it no longer counts.' if verdict.category else ''}"),
                      markup=False, highlight=False)


def _state_label(state: str) -> str:
    from tracker.report import state_label

    return state_label(state)


@rules_app.command("learned")
def rules_learned(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the tracker learned from your verdicts: one template per verdict on an authentic Meta mail."""
    with _state(ctx).db.session() as session:
        learned = reviews.learned_list(session)
    if as_json:
        sys.stdout.write(json_text({"templates": learned}, indent=2) + "\n")
        return
    if not learned:
        console.print("Nothing learned yet: it learns from `privacy-tracker review ID --as CATEGORY` "
                      "on mails from Meta.")
        return
    for row in learned:
        status = "" if row["active"] else " (taken back)"
        used = f"; recognised since: mail {', '.join('#' + str(i) for i in row['used_by'])}" if row["used_by"] else ""
        words = row["words"] if len(row["words"]) <= 100 else row["words"][:97] + "..."
        console.print(plain(f"learned:{row['id']}  {row['category']}  from your verdict on mail #{row['message']}"
                            f"{status}{used}"), markup=False, highlight=False, soft_wrap=True)
        console.print(plain(f"    {words}"), markup=False, highlight=False, soft_wrap=True)


@rules_app.command("export")
def rules_export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The rules file to write (TOML).", dir_okay=False)],
) -> None:
    """Write what was learned as a rules file another person can load ([rules] file in their config)."""
    from tracker.rules.engine import load_rules

    with _state(ctx).db.session() as session:
        text = reviews.export_rules(session)
    count = text.count("[[template]]")
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    load_rules(file)  # what others will load must load: fails here, not on their machine
    console.print(plain(f"Wrote {count} template(s) to {file}."), markup=False, highlight=False)
    if not count:
        err_console.print("Nothing learned yet: the file has no templates.", markup=False)
