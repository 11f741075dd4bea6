"""No Slack token: print what would have been posted, readably, with the same lifecycle logic."""

from __future__ import annotations

import itertools
import sys
from typing import TextIO

from alerting.notify.gateway import Posted
from alerting.notify.render import SlackMessage


class ConsoleGateway:
    """A `SlackGateway` that writes to a stream and answers with made-up timestamps."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self._counter = itertools.count(1)

    def _write(self, header: str, message: SlackMessage) -> None:
        body = message.plain or message.text
        print(f"── {header}\n{body}\n", file=self.out, flush=True)

    async def post(
        self,
        channel: str,
        message: SlackMessage,
        *,
        key: str,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> Posted:
        ts = f"{next(self._counter):010d}.000000"
        where = (
            f"{channel} (reply to {thread_ts}{', also sent to channel' if broadcast else ''})"
            if thread_ts
            else channel
        )
        self._write(f"new message in {where} [{ts}]", message)
        return Posted(channel_id=channel, ts=ts)

    async def update(self, channel_id: str, ts: str, message: SlackMessage) -> None:
        self._write(f"message {ts} in {channel_id} updated", message)

    async def find(
        self, channel_id: str, key: str, *, oldest: float, thread_ts: str | None = None
    ) -> str | None:
        return None

    async def channel_id(self, channel: str) -> str | None:
        return channel
