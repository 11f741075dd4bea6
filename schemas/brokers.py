"""The broker directory: broker code → whom to call, on which line, and when the office is open.

Reference data, not a wire event: a carrier keeps it in a TOML or CSV file
(`HOLDWATCH_BROKER_DIRECTORY_FILE`, read by `streams/feeds/brokers.py`, format in
docs/connectors.md "Broker directory"); the notifier's messages and the status API look the
alert's broker up at rendering time, so the engine stays pure and old alerts stay valid.

Office hours are one line, groups separated by `;`, each a day or day range and its spans:

    Mon-Fri 07:00-19:00; Sat 08:00-12:00; Sun closed
    Mon-Thu 07:00-12:00 13:00-17:00; Fri 07:00-15:00
    Fri 22:00-06:00        (a span that ends before it starts runs past midnight)
    24/7

read in the broker's time zone (DST included). Blank hours mean unknown: no open/closed flag.
The sentences alerts and the API show (`call_line`, `closed_note`) are worded here, once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.common import WireModel

_DAY_MINUTES = 24 * 60
_TIME = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
_GROUP = re.compile(r"^(?P<days>[A-Za-z][A-Za-z ,\-]*?)\s+(?P<spans>(?:[0-9]|closed\b).*)$", re.IGNORECASE)


class Span(NamedTuple):
    """Open on `weekday` (0 = Monday) from `start` to `end`, minutes after local midnight.

    `end` may pass 1440: the span runs into the next day."""

    weekday: int
    start: int
    end: int


def _minutes(text: str, *, end: bool) -> int:
    m = _TIME.match(text)
    if m is None:
        raise ValueError(f"bad time {text!r}: write HH:MM")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ValueError(f"bad time {text!r}")
    return hours * 60 + minutes


_DAY_NAMES: dict[str, int] = {
    name: i
    for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
    for name in (full, full[:3])
} | {"tues": 1, "thur": 3, "thurs": 3}


def _day(name: str) -> int:
    try:
        return _DAY_NAMES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown day {name.strip()!r}: write Mon, Tue, ... Sun") from None


def _days(text: str) -> list[int]:
    """Days as written ("Mon-Fri", "Sat, Sun", "Fri-Mon" wraps, "daily") → weekdays (0 = Monday)."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() == "daily":
            out.extend(range(7))
            continue
        first, dash, last = part.partition("-")
        a = _day(first)
        b = _day(last) if dash else a
        out.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
    return out


def parse_hours(text: str) -> tuple[Span, ...]:
    """Office hours in the format above → spans; a ValueError says what is wrong."""
    text = text.strip()
    if text.lower() in ("24/7", "24x7"):
        return tuple(Span(day, 0, _DAY_MINUTES) for day in range(7))
    spans: list[Span] = []
    for group in (g.strip() for g in text.split(";")):
        if not group:
            continue
        m = _GROUP.match(group)
        if m is None:
            raise ValueError(f"{group!r}: write days then times, e.g. 'Mon-Fri 07:00-19:00'")
        days = _days(m.group("days"))
        words = [w for w in re.split(r"[,\s]+", m.group("spans")) if w]
        if [w.lower() for w in words] == ["closed"]:
            continue
        for word in words:
            start_text, dash, end_text = word.partition("-")
            if not dash:
                raise ValueError(f"bad span {word!r}: write HH:MM-HH:MM")
            start, end = _minutes(start_text, end=False), _minutes(end_text, end=True)
            if end == start:
                raise ValueError(f"empty span {word!r}")
            if end < start:
                end += _DAY_MINUTES  # past midnight
            spans.extend(Span(day, start, end) for day in days)
    return tuple(sorted(set(spans)))


class OfficeOpen(NamedTuple):
    """Whether the office is open at an instant; if not, when it next opens (UTC)."""

    open_now: bool | None  # None: no office hours on file
    opens_at: datetime | None = None
    closes_at: datetime | None = None


class BrokerContact(BaseModel):
    """One broker: whom to call, the 24-hour line, the office line and hours, its time zone."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    code: str = Field(min_length=1, max_length=32, description="broker code, as the manifests name it")
    name: str = Field(min_length=1, max_length=256)
    phone_24h: str | None = Field(default=None, max_length=64, description="24-hour line")
    phone: str | None = Field(default=None, max_length=64, description="office line, during office hours")
    email: str | None = Field(default=None, max_length=256)
    hours: str | None = Field(default=None, max_length=512, description="office hours (module docstring)")
    tz: str = Field(default="America/Toronto", description="IANA time zone of the office hours")

    @field_validator("code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("phone_24h", "phone", "email", "hours", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hours(value)  # raises with the reason
        return value

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name like America/Toronto") from exc
        return value

    @model_validator(mode="after")
    def _a_number(self) -> BrokerContact:
        if self.phone_24h is None and self.phone is None:
            raise ValueError("no phone: give phone_24h (the 24-hour line) or phone")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def spans(self) -> tuple[Span, ...]:
        return parse_hours(self.hours) if self.hours is not None else ()

    def _intervals(self, around: date) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals (UTC) of the local days from the day before `around` to a week after."""
        zone = self.zone
        for offset in range(-1, 8):
            day = around + timedelta(days=offset)
            midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
            for span in self.spans():
                if span.weekday == day.weekday():
                    start = midnight + timedelta(minutes=span.start)  # wall-clock arithmetic
                    end = midnight + timedelta(minutes=span.end)
                    yield start.astimezone(UTC), end.astimezone(UTC)

    def office_open(self, at: datetime) -> OfficeOpen:
        """Open at `at`? If not, the next opening (within a week); `open_now` None without hours."""
        if self.hours is None:
            return OfficeOpen(None)
        intervals = sorted(self._intervals(at.astimezone(self.zone).date()))
        for start, end in intervals:
            if start <= at < end:
                close = end
                for later_start, later_end in intervals:  # adjoining spans (24/7, overnight) merge
                    if later_start <= close < later_end:
                        close = later_end
                return OfficeOpen(True, closes_at=close)
        upcoming = [start for start, _ in intervals if start > at]
        return OfficeOpen(False, opens_at=min(upcoming) if upcoming else None)

    def call_line(self) -> str:
        """Whom to call and on which numbers: "Call Lakeshore Customs (LKCS), 24 h line +1-…"."""
        who = f"{self.name} ({self.code})"
        numbers = []
        if self.phone_24h:
            numbers.append(f"24 h line {self.phone_24h}")
        if self.phone:
            numbers.append(f"office {self.phone}")
        if self.email:
            numbers.append(self.email)
        return f"Call {who}, " + ", ".join(numbers)

    def closed_note(self, at: datetime) -> str | None:
        """When closed at `at`: "office closed until 07:00 EST: use the 24 h line"; None if open/unknown."""
        state = self.office_open(at)
        if state.open_now is not False:
            return None
        until = ""
        if state.opens_at is not None:
            local = state.opens_at.astimezone(self.zone)
            same_day = local.date() == at.astimezone(self.zone).date()
            until = " until " + local.strftime("%H:%M %Z" if same_day else "%a %H:%M %Z")
        if self.phone_24h:
            return f"office closed{until}: use the 24 h line"
        return f"office closed{until}, and no 24 h line on file"

    def view(self, at: datetime) -> BrokerContactView:
        """The status API's account of this contact at `at`."""
        state = self.office_open(at)
        return BrokerContactView(
            code=self.code,
            name=self.name,
            phone_24h=self.phone_24h,
            phone=self.phone,
            email=self.email,
            office_hours=self.hours,
            tz=self.tz,
            open_now=state.open_now,
            opens_at=state.opens_at,
            call=self.call_line(),
            office_note=self.closed_note(at),
        )


class BrokerDirectory(BaseModel):
    """Every broker the carrier deals with, by code (upper case); empty when no file is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contacts: dict[str, BrokerContact] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_are_codes(self) -> BrokerDirectory:
        for key, contact in self.contacts.items():
            if key != contact.code:
                raise ValueError(f"directory key {key!r} is not its broker's code {contact.code!r}")
        return self

    @classmethod
    def of(cls, contacts: list[BrokerContact]) -> BrokerDirectory:
        return cls(contacts={c.code: c for c in contacts})

    def get(self, code: str | None) -> BrokerContact | None:
        return self.contacts.get(code.strip().upper()) if code else None

    def __len__(self) -> int:
        return len(self.contacts)


class BrokerContactView(WireModel):
    """The status API's broker contact: the numbers, and whether the office is open as of the answer."""

    code: str
    name: str
    phone_24h: str | None = Field(default=None, description="the 24-hour line")
    phone: str | None = Field(default=None, description="the office line, during office hours")
    email: str | None = None
    office_hours: str | None = Field(default=None, description="as written in the broker directory")
    tz: str = Field(description="IANA time zone of the office hours")
    open_now: bool | None = Field(default=None, description="none when the directory has no office hours")
    opens_at: AwareDatetime | None = Field(default=None, description="next opening, when closed")
    call: str = Field(description='the alerts\' sentence: "Call <name> (<code>), 24 h line …"')
    office_note: str | None = Field(
        default=None, description='when closed: "office closed until 07:00 EST: use the 24 h line"'
    )
