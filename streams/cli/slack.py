"""`holdwatch slack test`: check a Slack configuration by posting a test message."""

from __future__ import annotations

import argparse
import asyncio
import sys

from alerting.notify.gateway import SlackCallError
from alerting.notify.render import render_test_message
from streams.settings import Settings

ADVICE = {
    "invalid_auth": "the token is not valid: check HOLDWATCH_SLACK_TOKEN (a bot token, xoxb-...)",
    "not_authed": "no token reached Slack: check HOLDWATCH_SLACK_TOKEN",
    "token_revoked": "the token was revoked: reinstall the Slack app and update HOLDWATCH_SLACK_TOKEN",
    "account_inactive": "the token's user or app is deactivated",
    "channel_not_found": "no such channel for this token: check the channel name or id",
    "not_in_channel": "the app is not a member of the channel: /invite it there",
    "is_archived": "the channel is archived",
    "missing_scope": "the app lacks a scope: it needs chat:write (and channels:history to avoid duplicates)",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "slack",
        help="check the Slack configuration",
        description="Slack configuration tools (HOLDWATCH_SLACK_TOKEN, HOLDWATCH_SLACK_BASE_URL).",
    )
    actions = parser.add_subparsers(dest="slack_command", metavar="ACTION", required=True)
    test = actions.add_parser(
        "test",
        help="post a test message and print a verdict: ok, invalid_auth, channel_not_found, unreachable",
        description="Post a test message; exit 0 if Slack accepted it, 1 otherwise, 2 without a token.",
    )
    test.add_argument("--channel", help="channel name or id (default HOLDWATCH_SLACK_CHANNEL)")
    test.add_argument("--timeout", type=int, default=10, help="seconds per Slack call (default 10)")
    test.set_defaults(func=run_test)


async def check(settings: Settings, channel: str, timeout_s: int = 10) -> tuple[str, str]:
    """(verdict, detail): verdict is "ok", a Slack error code, "rate_limited" or "unreachable"."""
    from alerting.notify.slack import SlackWebGateway, make_web_client

    assert settings.slack_token is not None
    gateway = SlackWebGateway(
        make_web_client(settings.slack_token, settings.slack_base_url, timeout_s=timeout_s)
    )
    try:
        who = await gateway.auth_test()
        posted = await gateway.post(channel, render_test_message(channel), key="holdwatch-slack-test")
    except SlackCallError as exc:
        if exc.kind == "transient":
            return "unreachable", f"{settings.slack_base_url}: {exc.error}"
        if exc.kind == "rate_limited":
            return "rate_limited", f"retry after {exc.retry_after or 1:g}s"
        return exc.error, ADVICE.get(exc.error, "Slack refused the call")
    return (
        "ok",
        f"posted to {channel} (channel {posted.channel_id}, ts {posted.ts}) "
        f"as {who.get('user')} on {who.get('team')}",
    )


def run_test(args: argparse.Namespace, settings: Settings) -> int:
    channel = args.channel or settings.slack_channel
    if settings.slack_token is None or not settings.slack_token.get_secret_value():
        print(
            "no token: set HOLDWATCH_SLACK_TOKEN (without it the notifier prints to the console)",
            file=sys.stderr,
        )
        return 2
    verdict, detail = asyncio.run(check(settings, channel, args.timeout))
    print(f"{verdict}: {detail}")
    return 0 if verdict == "ok" else 1
