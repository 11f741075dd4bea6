"""`SlackGateway` over slack-sdk's AsyncWebClient, with our own retry policy (the SDK's is off)."""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from alerting.notify.gateway import Posted, SlackCallError, classify, looks_like_channel_id
from alerting.notify.render import SlackMessage

METADATA_EVENT = "holdwatch_alert"


def make_web_client(token: SecretStr, base_url: str, *, timeout_s: int = 10) -> AsyncWebClient:
    """The token leaves its SecretStr only here, straight into the client."""
    if not base_url.endswith("/"):
        base_url += "/"
    return AsyncWebClient(
        token=token.get_secret_value(), base_url=base_url, timeout=timeout_s, retry_handlers=[]
    )


def _failure(exc: SlackApiError) -> SlackCallError:
    response = exc.response
    status = getattr(response, "status_code", None)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    headers = getattr(response, "headers", None) or {}
    retry_after = None
    for name, value in dict(headers).items():
        if str(name).lower() == "retry-after":
            retry_after = str(value[0] if isinstance(value, list) else value)
    return classify(status, error if isinstance(error, str) else None, retry_after)


class SlackWebGateway:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def _call(self, method: str, *, read: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Write methods take a JSON body; read methods (conversations.*) only form/query params."""
        try:
            if read:
                params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in kwargs.items()}
                response = await self.client.api_call(method, http_verb="GET", params=params)
            else:
                response = await self.client.api_call(method, json=kwargs)
        except SlackApiError as exc:
            raise _failure(exc) from exc
        except (aiohttp.ClientError, TimeoutError, ConnectionError, OSError) as exc:
            raise SlackCallError("transient", type(exc).__name__) from exc
        data = response.data
        if not isinstance(data, dict):
            raise SlackCallError("transient", "unexpected_response")
        return data

    async def post(
        self,
        channel: str,
        message: SlackMessage,
        *,
        key: str,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> Posted:
        args: dict[str, Any] = {
            "channel": channel,
            "text": message.text,
            "unfurl_links": False,
            "unfurl_media": False,
            "link_names": False,
            "parse": "none",
            "metadata": {"event_type": METADATA_EVENT, "event_payload": {"key": key}},
        }
        if message.blocks:
            args["blocks"] = list(message.blocks)
        if thread_ts is not None:
            args["thread_ts"] = thread_ts
            args["reply_broadcast"] = broadcast
        data = await self._call("chat.postMessage", **args)
        ts, channel_id = data.get("ts"), data.get("channel")
        if not isinstance(ts, str) or not isinstance(channel_id, str):
            raise SlackCallError("transient", "response_without_ts")
        return Posted(channel_id=channel_id, ts=ts)

    async def update(self, channel_id: str, ts: str, message: SlackMessage) -> None:
        args: dict[str, Any] = {
            "channel": channel_id,
            "ts": ts,
            "text": message.text,
            "link_names": False,
            "parse": "none",
            "blocks": list(message.blocks),
        }
        await self._call("chat.update", **args)

    async def find(
        self, channel_id: str, key: str, *, oldest: float, thread_ts: str | None = None
    ) -> str | None:
        args: dict[str, Any] = {
            "channel": channel_id,
            "oldest": f"{oldest:.6f}",
            "include_all_metadata": True,
            "limit": 200,
        }
        if thread_ts is None:
            data = await self._call("conversations.history", read=True, **args)
        else:
            data = await self._call("conversations.replies", read=True, ts=thread_ts, **args)
        for message in data.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == METADATA_EVENT and payload.get("key") == key:
                ts = message.get("ts")
                return ts if isinstance(ts, str) else None
        return None

    async def channel_id(self, channel: str) -> str | None:
        if looks_like_channel_id(channel):
            return channel
        name = channel.lstrip("#")
        cursor: str | None = None
        for _ in range(50):  # at most 50 pages of 1000 channels
            args: dict[str, Any] = {
                "exclude_archived": True,
                "limit": 1000,
                "types": "public_channel,private_channel",
            }
            if cursor:
                args["cursor"] = cursor
            data = await self._call("conversations.list", read=True, **args)
            for item in data.get("channels") or []:
                if item.get("name") == name and isinstance(item.get("id"), str):
                    return str(item["id"])
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    async def auth_test(self) -> dict[str, Any]:
        return await self._call("auth.test")
