"""The carrier's own trip files (BorderConnect's `ACI_TRIP` / `ACI_SHIPMENT` JSON) → holdwatch events.

Pure: a parsed document, the mapping file's contents, the zone for times without one and what this
ingest published before → `cargo_reported` (a CCN seen for the first time, or its facts changed: an
amendment), `eta_updated` (only the ETA or the port changed) or, per shipment, what is missing.
The shell (streams/feeds/aci_publish.py) reads files, publishes and keeps the state.

Which JSON paths are read, and how sure we are of each, is in docs/connectors.md ("Carrier trip
files"): BorderConnect's upload format is known from its manual and published examples only in part,
so every path lives in the readers below and nowhere else.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from schemas.common import SCHEMA_VERSION
from schemas.emanifest import CargoReported, EtaUpdated

EVENT_ID_PREFIX: Final = "aci-trip"
TRIP: Final = "ACI_TRIP"
SHIPMENT: Final = "ACI_SHIPMENT"

# A time zone field names a region, not a standard-time offset [guess]: BorderConnect offers EST,
# CST, MST, PST, AST [3p] and a dispatcher picks "EST" in July too, so each abbreviation reads as
# its region's local clock (daylight saving applied). An IANA name (America/Regina) is exact.
ZONE_ABBREVIATIONS: Final[Mapping[str, str]] = {
    **dict.fromkeys(("EST", "EDT", "ET"), "America/Toronto"),
    **dict.fromkeys(("CST", "CDT", "CT"), "America/Winnipeg"),
    **dict.fromkeys(("MST", "MDT", "MT"), "America/Edmonton"),
    **dict.fromkeys(("PST", "PDT", "PT"), "America/Vancouver"),
    **dict.fromkeys(("AST", "ADT", "AT"), "America/Halifax"),
    **dict.fromkeys(("NST", "NDT", "NT"), "America/St_Johns"),
    **dict.fromkeys(("UTC", "GMT", "Z"), "UTC"),
}

_BN = re.compile(r"^[0-9]{9}RM[0-9]{4}$")
_CCN = re.compile(r"^[A-Z0-9-]{5,25}$")
_OFFICE = re.compile(r"^[0-9]{4}$")
_CARRIER = re.compile(r"^[A-Z0-9]{4}$")
_ENVELOPE_FIELDS: Final = frozenset({"event_id", "occurred_at", "schema_version", "event_type"})
_PROBE_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------
# The mapping file: shipper or consignee → importer BN and broker
# --------------------------------------------------------------------------------------

Party = Literal["consignee", "shipper"]
MAPPING_COLUMNS: Final = ("party", "name", "importer_bn", "importer_name", "broker_code", "broker_name")
_ENTRY_FIELDS: Final = MAPPING_COLUMNS[2:]


class MappingError(ValueError):
    """The mapping file cannot be used; the message names every bad line or entry."""


def normalize_name(name: str) -> str:
    """How names are matched: case, punctuation and repeated spaces do not count."""
    kept = "".join(ch if ch.isalnum() else " " for ch in name.casefold())
    return " ".join(kept.split())


@dataclass(frozen=True, slots=True)
class PartyFacts:
    """What the mapping file knows about one shipper or consignee; None = not given."""

    importer_bn: str | None = None
    importer_name: str | None = None
    broker_code: str | None = None
    broker_name: str | None = None


@dataclass(frozen=True, slots=True)
class TripMapping:
    """The mapping file's entries by normalised name; `source` is its path (None: no file set)."""

    consignees: Mapping[str, PartyFacts] = field(default_factory=dict)
    shippers: Mapping[str, PartyFacts] = field(default_factory=dict)
    source: str | None = None

    def find(self, party: Party, name: str | None) -> PartyFacts | None:
        if not name:
            return None
        table = self.consignees if party == "consignee" else self.shippers
        return table.get(normalize_name(name))


def _entry(values: Mapping[str, Any], where: str, problems: list[str]) -> PartyFacts:
    def text(key: str) -> str | None:
        raw = values.get(key)
        if raw is None:
            return None
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            problems.append(f"{where}: {key} must be text, got {raw!r}")
            return None
        return str(raw).strip() or None

    bn = text("importer_bn")
    if bn is not None:
        bn = bn.upper().replace(" ", "")
        if not _BN.match(bn):
            problems.append(f"{where}: importer_bn {bn!r} is not a BN15 (9 digits, RM, 4 digits)")
    broker = text("broker_code")
    if broker is not None:
        broker = broker.upper()
        if len(broker) > 32:
            problems.append(f"{where}: broker_code {broker!r} is longer than 32 characters")
    facts = PartyFacts(bn, text("importer_name"), broker, text("broker_name"))
    if facts == PartyFacts():
        problems.append(f"{where}: gives none of {', '.join(_ENTRY_FIELDS)}")
    return facts


def _add(
    tables: dict[Party, dict[str, PartyFacts]],
    party: Party,
    name: str,
    facts: PartyFacts,
    where: str,
    problems: list[str],
) -> None:
    key = normalize_name(name)
    if not key:
        problems.append(f"{where}: no name")
    elif key in tables[party]:
        problems.append(f"{where}: the {party} {name!r} is listed twice")
    else:
        tables[party][key] = facts


def mapping_from_csv(text: str, source: str) -> TripMapping:
    """CSV, header `party,name,importer_bn,importer_name,broker_code,broker_name`; blank = not given."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = [column.strip().lower() for column in reader.fieldnames or []]
    problems: list[str] = []
    unknown = [column for column in header if column not in MAPPING_COLUMNS]
    if unknown or "party" not in header or "name" not in header:
        raise MappingError(
            f"{source}: line 1: expected the columns {','.join(MAPPING_COLUMNS)} "
            f"(party and name required), got {','.join(header) or 'nothing'}"
        )
    reader.fieldnames = header
    tables: dict[Party, dict[str, PartyFacts]] = {"consignee": {}, "shipper": {}}
    for row in reader:
        where = f"{source}: line {reader.line_num}"
        values = {key: value for key, value in row.items() if key is not None}
        if not any((value or "").strip() for value in values.values()):
            continue
        party = (values.get("party") or "").strip().lower()
        if party not in ("consignee", "shipper"):
            problems.append(f"{where}: party must be consignee or shipper, got {party!r}")
            continue
        facts = _entry({k: v for k, v in values.items() if k in _ENTRY_FIELDS}, where, problems)
        _add(
            tables,
            "consignee" if party == "consignee" else "shipper",
            (values.get("name") or "").strip(),
            facts,
            where,
            problems,
        )
    if problems:
        raise MappingError("; ".join(problems))
    return TripMapping(tables["consignee"], tables["shipper"], source)


def mapping_from_data(data: object, source: str) -> TripMapping:
    """A parsed YAML (or JSON) document: `consignees:` and `shippers:`, each name → its fields."""
    if data is None:
        return TripMapping(source=source)
    if not isinstance(data, Mapping):
        raise MappingError(f"{source}: expected `consignees:` and `shippers:` at the top level")
    problems: list[str] = []
    unknown = sorted(str(key) for key in data if key not in ("consignees", "shippers"))
    if unknown:
        problems.append(f"{source}: unknown top-level keys {unknown} (expected consignees, shippers)")
    tables: dict[Party, dict[str, PartyFacts]] = {"consignee": {}, "shipper": {}}
    sections: tuple[tuple[str, Party], ...] = (("consignees", "consignee"), ("shippers", "shipper"))
    for section, party in sections:
        entries = data.get(section) or {}
        if not isinstance(entries, Mapping):
            problems.append(f"{source}: {section} must map names to their fields")
            continue
        for name, values in entries.items():
            where = f"{source}: {section}: {name!r}"
            if not isinstance(values, Mapping):
                problems.append(f"{where}: expected importer_bn, importer_name, broker_code, broker_name")
                continue
            extra = sorted(str(key) for key in values if key not in _ENTRY_FIELDS)
            if extra:
                problems.append(f"{where}: unknown fields {extra} (expected {', '.join(_ENTRY_FIELDS)})")
            _add(tables, party, str(name), _entry(values, where, problems), where, problems)
    if problems:
        raise MappingError("; ".join(problems))
    return TripMapping(tables["consignee"], tables["shipper"], source)


# --------------------------------------------------------------------------------------
# Reading a document: its shipments' facts, or what is missing
# --------------------------------------------------------------------------------------


class TripDocumentError(ValueError):
    """The document as a whole is not an ACI trip or shipment (no shipment can be read from it)."""


@dataclass(frozen=True, slots=True)
class TripContext:
    """What the mapping needs besides the document."""

    mapping: TripMapping = field(default_factory=TripMapping)
    local_tz: tzinfo = UTC
    """The zone of times that carry neither an offset nor a time zone field (settings.feed_local_tz)."""
    carrier_codes: Mapping[str, str] = field(default_factory=dict)
    """BorderConnect company key → carrier code (service-provider uploads carry `companyKey`)."""


@dataclass(frozen=True, slots=True)
class MissingFacts:
    """A shipment and what it lacks. Blocking: not published. Else published without it, and said."""

    ccn: str | None
    trip_number: str | None
    shipment: int
    """1-based position of the shipment in its document."""
    reasons: tuple[str, ...]
    blocking: bool = True

    def message(self) -> str:
        who = f"CCN {self.ccn}" if self.ccn else f"shipment {self.shipment} of trip {self.trip_number or '?'}"
        return f"{who}: {'; '.join(self.reasons)}"


@dataclass(frozen=True, slots=True)
class ShipmentFacts:
    """One shipment's `cargo_reported` fields (validated, JSON types), without the envelope."""

    ccn: str
    fields: Mapping[str, Any]
    shipment: int
    gaps: MissingFacts | None = None
    """Facts it is published without (a broker), said in the output."""

    @property
    def eta(self) -> str:
        return str(self.fields["eta"])

    @property
    def port_of_entry(self) -> str:
        return str(self.fields["port_of_entry"])

    def digest(self) -> str:
        """The facts other than ETA and port: when they change, it is an amendment."""
        rest = {k: v for k, v in self.fields.items() if k not in ("eta", "port_of_entry")}
        return _digest(rest)


Read: TypeAlias = ShipmentFacts | MissingFacts


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(value: object) -> str | None:
    """A field as stripped text; numbers are taken as their digits; anything else is absent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _get(obj: object, *path: str) -> object:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def resolve_zone(name: str) -> tzinfo | None:
    """A time zone field's value as a zone: an abbreviation (ZONE_ABBREVIATIONS) or an IANA name."""
    iana = ZONE_ABBREVIATIONS.get(name.strip().upper(), name.strip())
    if iana == "UTC":
        return UTC
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def parse_eta(text: str, zone_name: str | None, local_tz: tzinfo) -> datetime | str:
    """An aware ETA, or why not. `yyyy-mm-dd hh:mm[:ss]` (or with a T); an offset in the text wins,
    then the time zone field, then `local_tz`. A local time that a clock change skips or repeats
    takes the offset in force before the change (zoneinfo's fold=0)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return f"ETA {text!r} is not a date and time (yyyy-mm-dd hh:mm:ss)"
    if value.tzinfo is not None:
        return value
    if zone_name:
        zone = resolve_zone(zone_name)
        if zone is None:
            known = ", ".join(sorted({k for k in ZONE_ABBREVIATIONS if len(k) == 3}))
            return f"unknown time zone {zone_name!r} (use {known} or an IANA name like America/Regina)"
        return value.replace(tzinfo=zone)
    return value.replace(tzinfo=local_tz)


def _driver(trip: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The first driver's name and phone (a team's first driver is the one to call)."""
    drivers = trip.get("drivers")
    if not isinstance(drivers, list) or not drivers or not isinstance(drivers[0], Mapping):
        return None, None
    first = drivers[0]
    name = " ".join(part for part in (_text(first.get("firstName")), _text(first.get("lastName"))) if part)
    phone = _text(first.get("phoneNumber")) or _text(first.get("phone"))
    return name or None, phone


def _trailers(trip: Mapping[str, Any]) -> str | None:
    trailers = trip.get("trailers")
    if not isinstance(trailers, list):
        return None
    numbers = [number for t in trailers if (number := _text(_get(t, "number")))]
    return ", ".join(numbers) or None


def _advice(context: TripContext, consignee: str | None, shipper: str | None, what: str) -> str:
    """Where to add a missing fact: the consignee's entry, else the shipper's."""
    if consignee:
        entry = f"the consignee {consignee!r}"
    elif shipper:
        entry = f"the shipper {shipper!r}"
    else:
        return "the shipment names neither consignee nor shipper to look up"
    if context.mapping.source is None:
        return f"set HOLDWATCH_TRIP_MAPPING_FILE to a mapping file and add {entry} with its {what}"
    return f"add {entry} to the mapping file" + ("" if what == "importer_bn" else f" with its {what}")


def _entry_with(
    context: TripContext, consignee: str | None, shipper: str | None, attr: str
) -> PartyFacts | None:
    """The mapping entry that gives `attr`: the consignee's, else the shipper's."""
    parties: tuple[tuple[Party, str | None], ...] = (("consignee", consignee), ("shipper", shipper))
    for party, name in parties:
        entry = context.mapping.find(party, name)
        if entry is not None and getattr(entry, attr):
            return entry
    return None


def _broker(shipment: Mapping[str, Any]) -> tuple[str | None, str | None]:
    broker = shipment.get("customsBroker")
    code, name = (
        (_get(broker, "code"), _get(broker, "name")) if isinstance(broker, Mapping) else (broker, None)
    )
    code_text = _text(code)
    return (code_text.upper(), _text(name)) if code_text else (None, None)


def _carrier_code(trip: Mapping[str, Any], trip_number: str, context: TripContext) -> str | None:
    company = _text(trip.get("companyKey"))
    if company and company in context.carrier_codes:
        return context.carrier_codes[company].upper()
    prefix = trip_number[:4].upper()  # an ACI trip number starts with the carrier code [ex]
    return prefix if _CARRIER.match(prefix) else None


def _shipment_facts(
    trip: Mapping[str, Any], shipment: Mapping[str, Any], position: int, context: TripContext
) -> Read:
    def field_of(*keys: str) -> str | None:
        for key in keys:
            if (value := _text(shipment.get(key))) is not None:
                return value
        for key in keys:
            if (value := _text(trip.get(key))) is not None:
                return value
        return None

    ccn = _text(shipment.get("cargoControlNumber"))
    ccn = ccn.upper() if ccn else None
    trip_number = field_of("tripNumber")
    blocking: list[str] = []
    if ccn is None:
        blocking.append("no CCN (cargoControlNumber)")
    elif not _CCN.match(ccn):
        blocking.append(f"CCN {ccn!r} is not 5-25 letters, digits or '-'")
    carrier = None
    if trip_number is None:
        blocking.append("no trip number (ingest the ACI_TRIP that carries this shipment)")
    else:
        carrier = _carrier_code(trip, trip_number, context)
        if carrier is None:
            blocking.append(f"no carrier code (trip number {trip_number!r} should start with it)")
    port = field_of("portOfEntry")
    if port is None:
        blocking.append("no port of entry (portOfEntry)")
    elif not _OFFICE.match(port):
        blocking.append(f"port of entry {port!r} is not a 4-digit CBSA office code")
    eta: datetime | None = None
    eta_text = field_of("estimatedArrivalDateTime", "estimatedArrivalDate")
    if eta_text is None:
        blocking.append("no ETA (estimatedArrivalDateTime)")
    else:
        parsed = parse_eta(eta_text, field_of("estimatedArrivalTimeZone"), context.local_tz)
        if isinstance(parsed, str):
            blocking.append(parsed)
        else:
            eta = parsed
    shipper = _text(_get(shipment, "shipper", "name"))
    consignee = _text(_get(shipment, "consignee", "name"))
    if shipper is None:
        blocking.append("no shipper name (shipper.name)")
    own_bn = _text(shipment.get("importerCsaBusinessNumber")) or _text(shipment.get("importerBusinessNumber"))
    own_bn = own_bn.upper().replace(" ", "") if own_bn else None
    bn_entry = None if own_bn else _entry_with(context, consignee, shipper, "importer_bn")
    bn = own_bn or (bn_entry.importer_bn if bn_entry else None)
    if own_bn is not None and not _BN.match(own_bn):
        blocking.append(f"importer BN {own_bn!r} in the file is not a BN15 (9 digits, RM, 4 digits)")
    elif bn is None:
        blocking.append(f"no importer BN ({_advice(context, consignee, shipper, 'importer_bn')})")
    importer_name = (
        _text(shipment.get("importerName")) or (bn_entry.importer_name if bn_entry else None) or consignee
    )
    if importer_name is None and bn is not None:
        blocking.append("no importer name (importerName, the mapping file's importer_name or a consignee)")
    broker_code, broker_name = _broker(shipment)
    if broker_code is None:
        broker_entry = _entry_with(context, consignee, shipper, "broker_code")
        if broker_entry is not None:
            broker_code, broker_name = broker_entry.broker_code, broker_entry.broker_name
    if blocking:
        return MissingFacts(ccn, trip_number, position, tuple(blocking))
    driver_name, driver_phone = _driver(trip)
    values = {
        "ccn": ccn,
        "carrier_code": carrier,
        "trip_number": trip_number,
        "load_ref": _text(shipment.get("loadReference")) or ccn,
        "port_of_entry": port,
        "eta": eta,
        "importer_bn": bn,
        "importer_name": importer_name,
        "shipper_name": shipper,
        "broker_code": broker_code,
        "broker_name": broker_name,
        "consignee_name": consignee,
        "truck_number": _text(_get(trip, "truck", "number")),
        "trailer_number": _trailers(trip),
        "driver_name": driver_name,
        "driver_phone": driver_phone,
    }
    try:
        probe = CargoReported.model_validate(
            {
                **values,
                "event_type": "cargo_reported",
                "event_id": "probe",
                "occurred_at": _PROBE_TIME,
                "schema_version": SCHEMA_VERSION,
            }
        )
    except ValidationError as exc:
        reasons = tuple(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return MissingFacts(ccn, trip_number, position, reasons)
    assert ccn is not None
    gaps = None
    if broker_code is None:
        gaps = MissingFacts(
            ccn,
            trip_number,
            position,
            (
                f"published without a broker ({_advice(context, consignee, shipper, 'broker_code')}); "
                "the pipeline alerts BROKER_MISSING until one is known",
            ),
            blocking=False,
        )
    fields = probe.model_dump(mode="json", exclude=set(_ENVELOPE_FIELDS))
    return ShipmentFacts(probe.ccn, fields, position, gaps)


def read_document(document: object, context: TripContext) -> list[Read]:
    """Each shipment of one `ACI_TRIP` (its `shipments[]`) or `ACI_SHIPMENT` document, in order."""
    if not isinstance(document, Mapping):
        raise TripDocumentError(f"expected a JSON object, got {type(document).__name__}")
    kind = document.get("data")
    if kind == TRIP:
        shipments = document.get("shipments", [])
        if not isinstance(shipments, list):
            raise TripDocumentError("shipments must be a list")
        trip: Mapping[str, Any] = document
    elif kind == SHIPMENT:
        shipments, trip = [document], {}
    else:
        raise TripDocumentError(f"data is {kind!r}: only {TRIP} and {SHIPMENT} documents carry trip facts")
    operation = _text(document.get("operation"))
    if operation is not None and operation.upper() not in ("CREATE", "UPDATE"):
        raise TripDocumentError(
            f"operation {operation}: only CREATE and UPDATE are ingested (a cancellation is not derived "
            "from trip files)"
        )
    out: list[Read] = []
    for position, shipment in enumerate(shipments, start=1):
        if not isinstance(shipment, Mapping):
            trip_number = _text(trip.get("tripNumber"))
            out.append(MissingFacts(None, trip_number, position, ("not a JSON object",)))
            continue
        out.append(_shipment_facts(trip, shipment, position, context))
    return out


def documents_of(parsed: object) -> list[object]:
    """A file holds one document or a JSON list of them."""
    return list(parsed) if isinstance(parsed, list) else [parsed]


# --------------------------------------------------------------------------------------
# What to publish: against what this ingest published before
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Published:
    """What this ingest last published for a CCN."""

    event_id: str
    facts: str
    """`ShipmentFacts.digest()` of the last cargo_reported."""
    eta: str
    port_of_entry: str
    source: str
    """The file whose facts these are."""


def _event_id(ccn: str, previous: Published | None, event_type: str, body: Mapping[str, Any]) -> str:
    """From the content and the event it follows: re-publishing the same step is a duplicate, and
    an ETA that moves back to an earlier value is still a new event."""
    chained = {"after": previous.event_id if previous else None, "type": event_type, "body": body}
    return f"{EVENT_ID_PREFIX}:{ccn}:{_digest(chained)[:24]}"


def decide(
    facts: ShipmentFacts, previous: Published | None, observed_at: datetime
) -> CargoReported | EtaUpdated | None:
    """cargo_reported when the CCN is new or a fact other than ETA and port changed; eta_updated when
    only those changed; nothing when nothing did. `observed_at` (when the ingest read the file)
    is the event time: the file says what is true now, not when it was written."""
    envelope = {"occurred_at": observed_at, "schema_version": SCHEMA_VERSION}
    if previous is None or previous.facts != facts.digest():
        event_id = _event_id(facts.ccn, previous, "cargo_reported", facts.fields)
        return CargoReported.model_validate(
            {**facts.fields, **envelope, "event_type": "cargo_reported", "event_id": event_id}
        )
    if previous.eta == facts.eta and previous.port_of_entry == facts.port_of_entry:
        return None
    body = {"ccn": facts.ccn, "eta": facts.eta, "port_of_entry": facts.port_of_entry}
    event_id = _event_id(facts.ccn, previous, "eta_updated", body)
    return EtaUpdated.model_validate({**body, **envelope, "event_type": "eta_updated", "event_id": event_id})


def published_after(event: CargoReported | EtaUpdated, facts: ShipmentFacts, source: str) -> Published:
    return Published(event.event_id, facts.digest(), facts.eta, facts.port_of_entry, source)


Result: TypeAlias = CargoReported | EtaUpdated | MissingFacts


def map_trip(
    document: object,
    *,
    context: TripContext,
    observed_at: datetime,
    published: Mapping[str, Published] | None = None,
) -> list[Result]:
    """One document → its events and what is missing, in shipment order (nothing for an unchanged
    shipment). A CCN twice in the document is compared with its first occurrence."""
    state = IngestState(shipments=dict(published or {}))
    return ingest_documents(
        [document], source="", changed=True, state=state, context=context, observed_at=observed_at
    ).results


# --------------------------------------------------------------------------------------
# Files: the ingest's state and one file's outcome
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A file as last ingested: its content and the mapping file's, and whether all of it was published."""

    sha256: str
    mapping: str
    complete: bool


@dataclass(frozen=True, slots=True)
class IngestState:
    """What this ingest published per CCN and which files it read (the state file's content)."""

    shipments: Mapping[str, Published] = field(default_factory=dict)
    files: Mapping[str, FileRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "shipments": {ccn: _asdict(p) for ccn, p in sorted(self.shipments.items())},
            "files": {path: _asdict(f) for path, f in sorted(self.files.items())},
        }

    @classmethod
    def from_json(cls, data: object) -> IngestState:
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise ValueError("not a version 1 aci-trip state file")
        shipments = {str(k): Published(**v) for k, v in (data.get("shipments") or {}).items()}
        files = {str(k): FileRecord(**v) for k, v in (data.get("files") or {}).items()}
        return cls(shipments, files)

    def unchanged(self, source: str, sha256: str, mapping: str) -> bool:
        """The file was read before with this content and mapping, and all of it was published."""
        return self.files.get(source) == FileRecord(sha256, mapping, True)


def _asdict(value: Published | FileRecord) -> dict[str, Any]:
    return asdict(value)


@dataclass(frozen=True, slots=True)
class FileOutcome:
    results: list[Result]
    state: IngestState
    """The state once `results` are published (the shell keeps it only after the broker acked them)."""
    shipments: int
    complete: bool
    """Every shipment was published or unchanged (none is missing facts)."""


def ingest_documents(
    documents: Sequence[object],
    *,
    source: str,
    changed: bool,
    state: IngestState,
    context: TripContext,
    observed_at: datetime,
) -> FileOutcome:
    """One file's documents against the state.

    `changed`: the file's content differs from when it was last read (or it is new). An unchanged
    file is read again only when the mapping file changed or some of it was not published; then
    a CCN whose latest facts came from another file is left alone (that file is newer news), so
    re-reading an old version of a trip never moves the ETA back. Raises TripDocumentError.
    """
    shipments = dict(state.shipments)
    results: list[Result] = []
    count = 0
    complete = True
    for document in documents:
        for read in read_document(document, context):
            count += 1
            if isinstance(read, MissingFacts):
                results.append(read)
                complete = False
                continue
            previous = shipments.get(read.ccn)
            if not changed and previous is not None and previous.source != source:
                continue
            event = decide(read, previous, observed_at)
            if event is None:
                continue
            results.append(event)
            if read.gaps is not None:
                results.append(read.gaps)
            shipments[read.ccn] = published_after(event, read, source)
    return FileOutcome(results, replace(state, shipments=shipments), count, complete)


def events_of(results: Iterable[Result]) -> list[CargoReported | EtaUpdated]:
    return [r for r in results if not isinstance(r, MissingFacts)]


def with_file(state: IngestState, source: str, record: FileRecord) -> IngestState:
    return replace(state, files={**state.files, source: record})
