"""The three things the notifier asks of Slack, and how a failed call is classified.

`SlackGateway` is implemented by `slack.SlackWebGateway` (AsyncWebClient) and by
`console.ConsoleGateway` (no token); tests may add their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from alerting.notify.render import SlackMessage

FailureKind = Literal["rate_limited", "transient", "permanent", "gone", "content"]

SLACK_METHODS = (
    "chat.postMessage",
    "chat.update",
    "conversations.history",
    "conversations.replies",
    "conversations.list",
)
"""The Web API methods the delivery core calls (and counts, `NotifyMetrics.slack_call`)."""
CALL_OUTCOMES: tuple[str, ...] = ("ok", *get_args(FailureKind))
"""How a counted call ended: `ok` or the kind of failure."""

# Configuration problems: retrying soon will not help; the alert waits until someone fixes them.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "team_access_not_granted",
        "ekm_access_denied",
        "org_login_required",
    }
)
# The message we would edit is gone (deleted by someone): post it again.
GONE_ERRORS = frozenset({"message_not_found", "cant_update_message", "thread_not_found"})
# Slack rejected the content: retry once as plain text.
CONTENT_ERRORS = frozenset(
    {"invalid_blocks", "invalid_blocks_format", "msg_too_long", "too_many_attachments"}
)


class SlackCallError(Exception):
    """A Slack call that did not succeed, with what the notifier should do about it."""

    def __init__(self, kind: FailureKind, error: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {error}")
        self.kind: FailureKind = kind
        self.error = error
        self.retry_after = retry_after


def classify(status: int | None, error: str | None, retry_after: str | None) -> SlackCallError:
    """Turn an HTTP status, a Slack `error` code and a Retry-After header into a decision."""
    code = error or (f"http_{status}" if status else "unknown_error")
    if status == 429 or code in {"ratelimited", "rate_limited"}:
        seconds: float | None
        try:
            seconds = max(0.0, float(retry_after)) if retry_after is not None else None
        except ValueError:
            seconds = None
        return SlackCallError("rate_limited", "ratelimited", retry_after=seconds)
    if code in PERMANENT_ERRORS:
        return SlackCallError("permanent", code)
    if code in GONE_ERRORS:
        return SlackCallError("gone", code)
    if code in CONTENT_ERRORS:
        return SlackCallError("content", code)
    return SlackCallError("transient", code)


@dataclass(frozen=True)
class Posted:
    channel_id: str
    ts: str


class SlackGateway(Protocol):
    async def post(
        self,
        channel: str,
        message: SlackMessage,
        *,
        key: str,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> Posted:
        """chat.postMessage; `key` is stored as message metadata to find the post again after a crash."""
        ...

    async def update(self, channel_id: str, ts: str, message: SlackMessage) -> None:
        """chat.update of a message posted earlier."""
        ...

    async def find(
        self, channel_id: str, key: str, *, oldest: float, thread_ts: str | None = None
    ) -> str | None:
        """ts of our message carrying `key` (posted at or after `oldest`, epoch seconds), if any."""
        ...

    async def channel_id(self, channel: str) -> str | None:
        """The id of a channel given by name (history needs ids); None if it cannot be found."""
        ...


def looks_like_channel_id(channel: str) -> bool:
    return channel[:1] in {"C", "G", "D"} and channel.isalnum() and channel.isupper()
