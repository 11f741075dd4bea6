"""Which Slack channel an alert goes to: by dispatch team, else by port of entry, else the default.

The routing file is JSON or TOML (chosen by extension)::

    default = "#dispatch"            # optional; else Settings.slack_channel
    [teams]
    "east" = "#dispatch-east"
    [ports]
    "0453" = "#windsor-desk"
    broadcast_resolutions = ["east"]  # optional: teams or channels whose resolutions ping the channel
    escalation_channel = "#dispatch-escalations"  # optional: unacknowledged criticals are posted here too
    [oncall]                          # user groups paged when a critical alert is not acknowledged
    default = "S0ONCALL"
    teams = { east = "S0EAST" }
    ports = { "0453" = "S0WINDSOR" }
    [shifts]                          # shift handover: one message per team's channel at each time
    east = { times = ["06:00", "14:00", "22:00"], tz = "America/Toronto" }

A resolution edits the alert's message and replies in its thread; by default that reply is not
sent to the channel too (one notification per load, not two). `broadcast_resolutions` lists the
teams (or channels) that want the resolution broadcast to the whole channel as well.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.alerts import AlertEvent


class RoutingError(ValueError):
    """The routing file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class OnCall:
    """User group ids paged when nobody acknowledges a critical alert: by team, then port, then default."""

    default: str | None = None
    teams: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, str] = field(default_factory=dict)

    def group_for(self, alert: AlertEvent) -> str | None:
        if alert.dispatch_team and alert.dispatch_team in self.teams:
            return self.teams[alert.dispatch_team]
        if alert.port_of_entry and alert.port_of_entry in self.ports:
            return self.ports[alert.port_of_entry]
        return self.default


@dataclass(frozen=True)
class Shift:
    """A team's shift changes: local wall times in one IANA time zone."""

    team: str
    channel: str
    times: tuple[time, ...]
    tz: str


@dataclass(frozen=True)
class Routing:
    default: str
    teams: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, str] = field(default_factory=dict)
    broadcast_resolutions: frozenset[str] = frozenset()
    """Teams or channels whose resolution replies are also sent to the channel."""
    oncall: OnCall = field(default_factory=OnCall)
    escalation_channel: str | None = None
    shifts: tuple[Shift, ...] = ()

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
    unknown = set(raw) - set(KNOWN_KEYS)
    if unknown:
        raise RoutingError(f"{source}: unknown keys {sorted(unknown)} (expected {', '.join(KNOWN_KEYS)})")
    default = raw.get("default", default_channel)
    if not isinstance(default, str) or not default.strip():
        raise RoutingError(f"{source}: default must be a non-empty channel name or id")
    teams = _channel_map(raw.get("teams"), "teams", source)
    escalation = raw.get("escalation_channel")
    if escalation is not None and (not isinstance(escalation, str) or not escalation.strip()):
        raise RoutingError(f"{source}: escalation_channel must be a non-empty channel name or id")
    return Routing(
        default=default.strip(),
        teams=teams,
        ports=_channel_map(raw.get("ports"), "ports", source),
        broadcast_resolutions=_names(raw.get("broadcast_resolutions"), source),
        oncall=_oncall(raw.get("oncall"), source),
        escalation_channel=escalation.strip() if isinstance(escalation, str) else None,
        shifts=_shifts(raw.get("shifts"), teams, default.strip(), source),
    )


KNOWN_KEYS = ("default", "teams", "ports", "broadcast_resolutions", "escalation_channel", "oncall", "shifts")


def _oncall(raw: Any, source: str) -> OnCall:
    if raw is None:
        return OnCall()
    if not isinstance(raw, dict) or set(raw) - {"default", "teams", "ports"}:
        raise RoutingError(f"{source}: [oncall] takes default, teams and ports (user group ids: S0123ABC)")
    default = raw.get("default")
    if default is not None and (not isinstance(default, str) or not default.strip()):
        raise RoutingError(f"{source}: oncall.default must be a user group id")
    return OnCall(
        default=default.strip() if isinstance(default, str) else None,
        teams=_channel_map(raw.get("teams"), "oncall.teams", source),
        ports=_channel_map(raw.get("ports"), "oncall.ports", source),
    )


def _shifts(raw: Any, teams: Mapping[str, str], default: str, source: str) -> tuple[Shift, ...]:
    """`[shifts] team = {times = ["06:00", ...], tz = "America/Toronto"}`; the team "default" is
    the default channel's."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise RoutingError(f"{source}: [shifts] must be a table of team = {{times = [...], tz = ...}}")
    shifts = []
    for team, spec in sorted(raw.items()):
        where = f"{source}: shifts.{team}"
        channel = default if team == "default" else teams.get(team)
        if channel is None:
            raise RoutingError(f"{where}: no such team in [teams] (or use 'default')")
        if not isinstance(spec, dict) or set(spec) - {"times", "tz"} or "times" not in spec:
            raise RoutingError(f'{where} must be {{times = ["06:00", ...], tz = "America/Toronto"}}')
        tz = spec.get("tz", "America/Toronto")
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise RoutingError(f"{where}.tz: unknown time zone {tz!r}") from exc
        shifts.append(Shift(team=str(team), channel=channel, times=_times(spec["times"], where), tz=str(tz)))
    return tuple(shifts)


def _times(raw: Any, where: str) -> tuple[time, ...]:
    if not isinstance(raw, list) or not raw:
        raise RoutingError(f'{where}.times must be a non-empty list of "HH:MM"')
    out = []
    for value in raw:
        try:
            hours, minutes = str(value).split(":")
            out.append(time(int(hours), int(minutes)))
        except ValueError as exc:
            raise RoutingError(f"{where}.times: {value!r} is not HH:MM") from exc
    return tuple(sorted(set(out)))


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
