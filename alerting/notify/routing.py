"""Which Slack channel an alert goes to: by dispatch team, else by port of entry, else the default.

The routing file is JSON or TOML (chosen by extension)::

    default = "#dispatch"            # optional; else Settings.slack_channel
    [teams]
    "east" = "#dispatch-east"
    [ports]
    "0453" = "#windsor-desk"
    broadcast_resolutions = ["east"]  # optional: teams or channels whose resolutions ping the channel

A resolution edits the alert's message and replies in its thread; by default that reply is not
sent to the channel too (one notification per load, not two). `broadcast_resolutions` lists the
teams (or channels) that want the resolution broadcast to the whole channel as well.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.alerts import AlertEvent


class RoutingError(ValueError):
    """The routing file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Routing:
    default: str
    teams: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, str] = field(default_factory=dict)
    broadcast_resolutions: frozenset[str] = frozenset()
    """Teams or channels whose resolution replies are also sent to the channel."""

    def broadcasts_resolutions(self, channel: str) -> bool:
        """Whether a resolution reply in `channel` is also sent to the channel (default: no)."""
        wanted = self.broadcast_resolutions
        return channel in wanted or any(self.teams.get(team) == channel for team in wanted)

    def channel_for(self, alert: AlertEvent) -> str:
        if alert.dispatch_team and alert.dispatch_team in self.teams:
            return self.teams[alert.dispatch_team]
        if alert.port_of_entry and alert.port_of_entry in self.ports:
            return self.ports[alert.port_of_entry]
        return self.default

    def channels(self) -> set[str]:
        return {self.default, *self.teams.values(), *self.ports.values()}


def _channel_map(raw: Any, section: str, source: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RoutingError(f"{source}: [{section}] must be a table of name = channel")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise RoutingError(f"{source}: {section}.{key} must be a non-empty channel name or id")
        out[str(key)] = value.strip()
    return out


def routing_from_mapping(raw: Mapping[str, Any], *, default_channel: str, source: str = "routing") -> Routing:
    unknown = set(raw) - {"default", "teams", "ports", "broadcast_resolutions"}
    if unknown:
        raise RoutingError(
            f"{source}: unknown keys {sorted(unknown)} "
            "(expected default, teams, ports, broadcast_resolutions)"
        )
    default = raw.get("default", default_channel)
    if not isinstance(default, str) or not default.strip():
        raise RoutingError(f"{source}: default must be a non-empty channel name or id")
    return Routing(
        default=default.strip(),
        teams=_channel_map(raw.get("teams"), "teams", source),
        ports=_channel_map(raw.get("ports"), "ports", source),
        broadcast_resolutions=_names(raw.get("broadcast_resolutions"), source),
    )


def _names(raw: Any, source: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise RoutingError(f"{source}: broadcast_resolutions must be a list of team or channel names")
    return frozenset(x.strip() for x in raw)


def load_routing(path: Path | None, *, default_channel: str) -> Routing:
    """Read the routing file (JSON or TOML); no file means everything goes to the default channel."""
    if path is None:
        return Routing(default=default_channel)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutingError(f"cannot read routing file {path}: {exc}") from exc
    try:
        raw: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise RoutingError(
            f"routing file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}"
        ) from exc
    if not isinstance(raw, dict):
        raise RoutingError(f"routing file {path}: expected a table at the top level")
    return routing_from_mapping(raw, default_channel=default_channel, source=str(path))
