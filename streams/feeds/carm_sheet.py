"""The CARM readiness spreadsheet ↔ `CarmSnapshot`s, and the diff against what the topic holds.

Pure (bytes in, snapshots or row errors out; no Kafka, no files) so that every spreadsheet quirk
a dispatcher's file has is tested without a broker. docs/connectors.md ("CARM readiness
spreadsheet") documents the columns and how each cell is read; this module is that table.

Blank means unknown, and unknown is read the way that keeps a dispatcher safe: a step not known
to be done counts as not done, so the load gets an alert to check it instead of silence.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Final, Literal, TypeVar

from pydantic import ValidationError

from schemas.carm import CarmSnapshot, Contact, Delegation, Security

SheetFormat = Literal["csv", "yaml"]
DateOrder = Literal["mdy", "dmy"]
SecurityKind = Literal["surety", "cash", "none"]
Access = Literal["business_management", "program_management", "none"]
_T = TypeVar("_T")

# --- the columns -----------------------------------------------------------------------------

IMPORTER_BN: Final = "importer_bn"
LEGAL_NAME: Final = "legal_name"
CCP_ACCOUNT: Final = "ccp_account"
RM_LINKED: Final = "rm_linked"
DELEGATIONS: Final = "delegations"
RPP_ENROLLED: Final = "rpp_enrolled"
SECURITY_KIND: Final = "security_kind"
SECURITY_AMOUNT: Final = "security_amount_cad"
HIGHEST_MONTHLY: Final = "highest_monthly_duties_taxes_cad"
LAST_LOGIN: Final = "last_portal_login"
CONTACT_NAME: Final = "contact_name"
CONTACT_PHONE: Final = "contact_phone"
CONTACT_EMAIL: Final = "contact_email"

COLUMNS: Final = (
    IMPORTER_BN,
    LEGAL_NAME,
    CCP_ACCOUNT,
    RM_LINKED,
    DELEGATIONS,
    RPP_ENROLLED,
    SECURITY_KIND,
    SECURITY_AMOUNT,
    HIGHEST_MONTHLY,
    LAST_LOGIN,
    CONTACT_NAME,
    CONTACT_PHONE,
    CONTACT_EMAIL,
)
"""Every documented column, in the order the template and the export write them."""
OPTIONAL_COLUMNS: Final = frozenset({CONTACT_NAME, CONTACT_PHONE, CONTACT_EMAIL})
"""Columns a CSV header may leave out; every other one must be there (a missing RPP column would
otherwise read as "not enrolled" for every importer)."""

ALIASES: Final[Mapping[str, str]] = {
    **{name: name for name in COLUMNS},
    "bn": IMPORTER_BN,
    "bn15": IMPORTER_BN,
    "importer_bn15": IMPORTER_BN,
    "business_number": IMPORTER_BN,
    "importer": LEGAL_NAME,
    "importer_name": LEGAL_NAME,
    "name": LEGAL_NAME,
    "ccp": CCP_ACCOUNT,
    "ccp_registered": CCP_ACCOUNT,
    "rm_account_linked": RM_LINKED,
    "rm_link": RM_LINKED,
    "delegation": DELEGATIONS,
    "brokers": DELEGATIONS,
    "rpp": RPP_ENROLLED,
    "rpp_enrolment": RPP_ENROLLED,
    "rpp_enrollment": RPP_ENROLLED,
    "security": SECURITY_KIND,
    "security_type": SECURITY_KIND,
    "security_amount": SECURITY_AMOUNT,
    "highest_monthly_duties_taxes": HIGHEST_MONTHLY,
    "highest_monthly_duties_and_taxes": HIGHEST_MONTHLY,
    "highest_monthly_duties_and_taxes_cad": HIGHEST_MONTHLY,
    "last_portal_login_at": LAST_LOGIN,
    "last_login": LAST_LOGIN,
    "email": CONTACT_EMAIL,
    "phone": CONTACT_PHONE,
}
"""Header names (after `column_key`) → column. Also the YAML keys."""


def column_key(label: str) -> str:
    """How a header cell is matched: case, spaces, punctuation and `&`/`and` do not matter."""
    return re.sub(r"[^0-9a-z]+", "_", label.strip().lower()).strip("_")


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA: how a spreadsheet names the column."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    """One reason a row (or the file) cannot be used. `column` is the documented column name
    (or "" for the file or the row as a whole); `label` is where the file has it."""

    line: int
    column: str
    reason: str
    label: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        if self.label or self.column:
            where += f", column {self.label or self.column}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class RawRow:
    """One importer as the file has it: stripped cell texts ("" is blank), before validation."""

    line: int
    cells: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)
    lines: Mapping[str, int] = field(default_factory=dict)  # per-cell line (YAML)
    errors: tuple[RowError, ...] = ()  # found while reading (a cell beyond the last column, ...)

    def line_of(self, column: str) -> int:
        return self.lines.get(column, self.line)


@dataclass(frozen=True)
class ImportedRow:
    line: int
    snapshot: CarmSnapshot
    assumed: tuple[str, ...] = ()
    """Blank (unknown) cells and how they were read, e.g. "rpp_enrolled blank: read as no"."""


@dataclass(frozen=True)
class SheetResult:
    rows: tuple[ImportedRow, ...]
    errors: tuple[RowError, ...]  # bad rows: each bad cell once
    file_errors: tuple[RowError, ...] = ()  # the file as a whole (header, syntax): never skippable
    warnings: tuple[str, ...] = ()
    blank_rows: int = 0

    @property
    def bad_lines(self) -> tuple[int, ...]:
        return tuple(sorted({error.line for error in self.errors}))

    def snapshots(self) -> list[CarmSnapshot]:
        return [row.snapshot for row in self.rows]


@dataclass(frozen=True)
class SheetOptions:
    """How ambiguous cells are read: `11/03/2026` (date_order) and a time without a zone (tz)."""

    date_order: DateOrder = "mdy"
    tz: tzinfo = UTC


class CellError(ValueError):
    """A cell that cannot be read; the message is the reason shown to the dispatcher."""


# --- cells -----------------------------------------------------------------------------------

_UNKNOWN: Final = frozenset({"", "?", "unknown", "n/a", "na"})
_TRUE: Final = frozenset({"yes", "y", "true", "t", "1", "x", "✓", "✔", "oui"})
_FALSE: Final = frozenset({"no", "n", "false", "f", "0", "non"})
BOOL_HELP: Final = "yes, no, true, false, 1, 0, x (ticked) or blank (unknown)"


def parse_bool(text: str) -> bool | None:
    """yes/no and the ways a sheet writes them; None when unknown (blank)."""
    value = text.strip().lower()
    if value in _UNKNOWN:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CellError(f"{text!r} is not yes/no: write {BOOL_HELP}")


_CURRENCY = re.compile(r"^(?:CAD|CA\$|C\$|\$)\s*|\s*(?:CAD|\$)$", re.IGNORECASE)
_PLAIN_AMOUNT = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_GROUPED_AMOUNT = re.compile(r"\d{1,3}(?:(?P<sep>[, \u00a0\u202f])\d{3})(?:(?P=sep)\d{3})*(?:\.\d+)?")


def parse_amount(text: str) -> float | None:
    """Dollars: `12500`, `12,500.00`, `$12,500.00`, `12 500 $`, `CAD 5000`; None when blank
    (Excel's accounting zero `$ -` is blank too: nothing says it is 0)."""
    value = text.strip()
    if value.startswith("(") and value.endswith(")"):
        raise CellError(f"{text!r} is a negative amount (in parentheses); amounts are >= 0")
    for _ in range(2):  # a sign of currency on each side: "$12,500 CAD"
        value = _CURRENCY.sub("", value).strip()
    if value in {"", "-", "–", "—"}:
        return None
    if value.startswith("-"):
        raise CellError(f"{text!r} is a negative amount; amounts are >= 0")
    if _PLAIN_AMOUNT.fullmatch(value) or _GROUPED_AMOUNT.fullmatch(value):
        return float(re.sub(r"[, \u00a0\u202f]", "", value))
    raise CellError(
        f"{text!r} is not an amount: write 12500, 12,500.00 or $12,500.00 "
        "(a comma is a thousands separator only; decimals take a point)"
    )


_ISO_DATE = re.compile(r"(?P<y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})(?:(?:T|\s+)(?P<time>.+))?", re.I)
_SHEET_DATE = re.compile(r"(?P<a>\d{1,2})[/.-](?P<b>\d{1,2})[/.-](?P<y>\d{4})(?:\s+(?P<time>.+))?")
_SHORT_YEAR = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2}(?:\s.*)?")
_TIME = re.compile(
    r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?)?\s*(?P<ampm>[ap]\.?m\.?)?"
    r"\s*(?P<zone>Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


def _clock_time(text: str, raw: str) -> tuple[time, timedelta | None]:
    match = _TIME.fullmatch(text.strip())
    if not match:
        raise CellError(f"{raw!r}: the time {text!r} is not HH:MM[:SS] [AM|PM] [offset]")
    hour, minute = int(match["h"]), int(match["mi"])
    second = int(match["s"] or 0)
    micro = int((match["f"] or "0").ljust(6, "0"))
    ampm = (match["ampm"] or "").lower().replace(".", "")
    if ampm:
        if not 1 <= hour <= 12:
            raise CellError(f"{raw!r}: hour {hour} with {ampm.upper()}")
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    zone = match["zone"]
    offset: timedelta | None = None
    if zone:
        if zone.upper() == "Z":
            offset = timedelta(0)
        else:
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            offset = -offset if zone[0] == "-" else offset
    try:
        return time(hour, minute, second, micro), offset
    except ValueError as exc:
        raise CellError(f"{raw!r}: {exc}") from exc


def parse_date(text: str, options: SheetOptions, now: datetime) -> datetime | None:
    """`2026-11-03`, `11/03/2026` (options.date_order), optionally with a time; a date alone is
    the start of that day and a time without an offset is in options.tz. None when blank."""
    value = text.strip()
    if value.lower() in _UNKNOWN | {"-"}:
        return None
    if re.fullmatch(r"\d{5}(?:\.\d+)?", value):
        raise CellError(
            f"{text!r} looks like an Excel date serial number: format the column as a date (2026-11-03)"
        )
    if _SHORT_YEAR.fullmatch(value):
        raise CellError(f"{text!r}: write the year with 4 digits (2026-11-03 or 11/03/2026)")
    iso = _ISO_DATE.fullmatch(value)
    sheet = None if iso else _SHEET_DATE.fullmatch(value)
    if iso:
        year, month, day, clock = int(iso["y"]), int(iso["m"]), int(iso["d"]), iso["time"]
    elif sheet:
        first, second = int(sheet["a"]), int(sheet["b"])
        month, day = (first, second) if options.date_order == "mdy" else (second, first)
        year, clock = int(sheet["y"]), sheet["time"]
    else:
        raise CellError(f"{text!r} is not a date: write 2026-11-03 or {_order_example(options)}")
    try:
        day_value = date(year, month, day)
    except ValueError as exc:
        hint = ""
        if sheet:
            hint = (
                f" (HOLDWATCH_CARM_DATE_ORDER={options.date_order} reads it as "
                f"{'month/day/year' if options.date_order == 'mdy' else 'day/month/year'})"
            )
        raise CellError(f"{text!r} is not a date: {exc}{hint}") from exc
    at_time, offset = _clock_time(clock, text) if clock else (time(0), None)
    local = datetime.combine(day_value, at_time)
    zone = options.tz if offset is None else timezone(offset)
    instant = local.replace(tzinfo=zone).astimezone(UTC)
    if instant > now + timedelta(days=1):
        raise CellError(
            f"{text!r} is in the future (today is {now.astimezone(options.tz).date().isoformat()}); "
            f"check the date and HOLDWATCH_CARM_DATE_ORDER ({options.date_order})"
        )
    return instant


def _order_example(options: SheetOptions) -> str:
    return "11/03/2026 (month first)" if options.date_order == "mdy" else "03/11/2026 (day first)"


_BN15 = re.compile(r"\d{9}RM\d{4}")


def parse_bn(text: str) -> str:
    """A BN15 (`123456789RM0001`); spaces and dashes a sheet adds are dropped."""
    value = re.sub(r"[\s-]+", "", text).upper()
    if not value:
        raise CellError("blank: every row needs the importer's BN15 (e.g. 123456789RM0001)")
    if _BN15.fullmatch(value):
        return value
    if re.fullmatch(r"\d{9}", value):
        raise CellError(
            f"{text!r} is a BN9: the registry needs the BN15 with the import/export (RM) account, "
            f"e.g. {value}RM0001"
        )
    raise CellError(f"{text!r} is not a BN15 (9 digits, RM, 4 digits, e.g. 123456789RM0001)")


_ACCESS: Final[Mapping[str, Access]] = {
    "business_management": "business_management",
    "business": "business_management",
    "bm": "business_management",
    "program_management": "program_management",
    "programme_management": "program_management",
    "program": "program_management",
    "pm": "program_management",
    "none": "none",
}
_BROKER_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
DELEGATION_HELP: Final = (
    "write BROKER:ACCESS:VISIBILITY, e.g. LKCS:business_management:yes "
    "(ACCESS business_management, program_management or none; VISIBILITY yes/no for all three "
    "transaction visibility rules, or one per rule: yes/yes/no); several brokers separated by ;"
)


def parse_delegations(text: str) -> tuple[list[Delegation], list[str]]:
    """`LKCS:business_management:yes; BRK2:program_management:yes/yes/no` → delegations sorted
    by broker, and what was unknown and how it was read. Blank = no delegation known.

    The model keeps one `transaction_visibility`: true only when all three transaction
    visibility rules are known to be ticked."""
    delegations: dict[str, Delegation] = {}
    assumed: list[str] = []
    for entry in (part.strip() for part in re.split(r"[;,\n|]+", text)):
        if not entry:
            continue
        parts = [part.strip() for part in entry.split(":")]
        if len(parts) > 3:
            raise CellError(f"{entry!r} has {len(parts)} parts: {DELEGATION_HELP}")
        code, access_text, visibility_text = (*parts, "", "")[:3]
        if not _BROKER_CODE.fullmatch(code):
            raise CellError(
                f"{entry!r}: {code!r} is not a broker code (letters, digits, . _ -): {DELEGATION_HELP}"
            )
        code = code.upper()
        if code in delegations:
            raise CellError(f"broker {code} is listed twice: one entry per broker")
        access_key = column_key(access_text)
        if not access_key:
            access: Access = "none"
            assumed.append(f"{code} access blank: read as none (not delegated)")
        elif access_key in _ACCESS:
            access = _ACCESS[access_key]
        else:
            raise CellError(f"{entry!r}: access {access_text!r} is not known: {DELEGATION_HELP}")
        flags_text = [flag.strip() for flag in visibility_text.split("/")] if visibility_text else [""]
        if len(flags_text) not in (1, 3):
            raise CellError(
                f"{entry!r}: {len(flags_text)} visibility values; give one for all three rules or three"
            )
        try:
            flags = [parse_bool(flag) for flag in flags_text]
        except CellError as exc:
            raise CellError(f"{entry!r}: transaction visibility: {exc}") from exc
        if any(flag is None for flag in flags) and access != "none":
            assumed.append(f"{code} transaction visibility blank: read as no")
        delegations[code] = Delegation(
            broker_code=code, access=access, transaction_visibility=all(flag is True for flag in flags)
        )
    return [delegations[code] for code in sorted(delegations)], assumed


_SECURITY_KIND: Final[Mapping[str, SecurityKind]] = {
    "surety": "surety",
    "surety_bond": "surety",
    "bond": "surety",
    "cash": "cash",
    "cash_deposit": "cash",
    "deposit": "cash",
    "none": "none",
    "no": "none",
}


def parse_security_kind(text: str) -> SecurityKind | None:
    key = column_key(text)
    if not key or key in {"unknown", "n_a", "na"}:
        return None
    if key in _SECURITY_KIND:
        return _SECURITY_KIND[key]
    raise CellError(f"{text!r} is not a security kind: write surety, cash or none")


# --- rows → snapshots ------------------------------------------------------------------------


def content_id(snapshot: CarmSnapshot, previous_event_id: str | None = None) -> str:
    """An event id derived from the snapshot's content and the record it replaces.

    Content: a re-run of the same import publishes the same id (a duplicate the worker drops).
    The record it replaces: the worker remembers an importer's recent ids, so a change back to
    an earlier content (A → B → A) must get a new id, or it would be dropped as a duplicate."""
    body = snapshot.model_dump(mode="json", exclude={"event_id", "occurred_at", "schema_version"})
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(f"{text}\n{previous_event_id or ''}".encode()).hexdigest()[:24]
    return f"carm-{snapshot.importer_bn}-{digest}"


def snapshot_of_row(
    row: RawRow, options: SheetOptions, now: datetime
) -> tuple[CarmSnapshot | None, list[RowError], list[str]]:
    """One row → its snapshot (occurred_at = now), or every reason it is bad."""
    errors: list[RowError] = list(row.errors)
    assumed: list[str] = []

    def cell(column: str) -> str:
        return row.cells.get(column, "")

    def fail(column: str, reason: str) -> None:
        errors.append(RowError(row.line_of(column), column, reason, row.labels.get(column, "")))

    def read(column: str, parse: Callable[[str], _T]) -> _T | None:
        try:
            return parse(cell(column))
        except CellError as exc:
            fail(column, str(exc))
            return None

    bn = read(IMPORTER_BN, parse_bn)
    legal_name = cell(LEGAL_NAME)
    if not legal_name:
        fail(LEGAL_NAME, "blank: every row needs the importer's legal name")
    flags: dict[str, bool] = {}
    for column in (CCP_ACCOUNT, RM_LINKED, RPP_ENROLLED):
        try:
            value = parse_bool(cell(column))
        except CellError as exc:
            fail(column, str(exc))
            continue
        if value is None:
            assumed.append(f"{column} blank: read as no")
        flags[column] = bool(value)
    delegations: list[Delegation] = []
    try:
        delegations, notes = parse_delegations(cell(DELEGATIONS))
        assumed += [f"{DELEGATIONS}: {note}" for note in notes]
    except CellError as exc:
        fail(DELEGATIONS, str(exc))
    before = len(errors)
    kind = read(SECURITY_KIND, parse_security_kind)
    kind_ok = len(errors) == before
    amount = read(SECURITY_AMOUNT, parse_amount)
    amount_ok = len(errors) == before + (0 if kind_ok else 1)
    if kind is None and kind_ok:
        if amount:
            fail(
                SECURITY_KIND,
                f"blank, but {SECURITY_AMOUNT} is {cell(SECURITY_AMOUNT)!r}: write surety or cash",
            )
        else:
            assumed.append(f"{SECURITY_KIND} blank: read as none")
    elif kind == "none" and amount:
        fail(SECURITY_AMOUNT, f"{cell(SECURITY_AMOUNT)!r} with {SECURITY_KIND} none: write surety or cash")
    elif kind in ("surety", "cash") and amount is None and amount_ok:
        assumed.append(f"{SECURITY_AMOUNT} blank: read as 0")
    highest = read(HIGHEST_MONTHLY, parse_amount)
    last_login = read(LAST_LOGIN, lambda text: parse_date(text, options, now))
    contact_values = {column: cell(column) for column in (CONTACT_NAME, CONTACT_PHONE, CONTACT_EMAIL)}
    email = contact_values[CONTACT_EMAIL]
    if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        fail(CONTACT_EMAIL, f"{email!r} is not an email address")
    for column in (LEGAL_NAME, *contact_values):
        if len(cell(column)) > 256:
            fail(column, f"{len(cell(column))} characters; at most 256")
    if errors or bn is None:
        return None, errors, assumed
    contact = None
    if any(contact_values.values()):
        contact = Contact(
            name=contact_values[CONTACT_NAME] or None,
            phone=contact_values[CONTACT_PHONE] or None,
            email=email or None,
        )
    try:
        snapshot = CarmSnapshot(
            event_id=f"carm-{bn}",
            event_type="carm_snapshot",
            occurred_at=now,
            schema_version=1,
            importer_bn=bn,
            legal_name=legal_name,
            ccp_registered=flags[CCP_ACCOUNT],
            rm_account_linked=flags[RM_LINKED],
            delegations=delegations,
            rpp_enrolled=flags[RPP_ENROLLED],
            security=Security(kind="none" if kind is None else kind, amount_cad=amount or 0.0),
            highest_monthly_duties_taxes_cad=highest,
            last_portal_login_at=last_login,
            contact=contact,
        )
    except ValidationError as exc:  # a check above missed something: still said per row
        for error in exc.errors():
            fail("", f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}")
        return None, errors, assumed
    return snapshot.model_copy(update={"event_id": content_id(snapshot)}), errors, assumed


def parse_rows(
    raw_rows: Iterable[RawRow], options: SheetOptions, now: datetime
) -> tuple[list[ImportedRow], list[RowError]]:
    """Every row validated; one row per importer (a repeated BN is an error on the later row)."""
    rows: list[ImportedRow] = []
    errors: list[RowError] = []
    first_line: dict[str, int] = {}
    for raw in raw_rows:
        snapshot, row_errors, assumed = snapshot_of_row(raw, options, now)
        if snapshot is not None and snapshot.importer_bn in first_line:
            row_errors.append(
                RowError(
                    raw.line_of(IMPORTER_BN),
                    IMPORTER_BN,
                    f"{snapshot.importer_bn} is also on line {first_line[snapshot.importer_bn]}: "
                    "one row per importer",
                    raw.labels.get(IMPORTER_BN, ""),
                )
            )
        if row_errors:
            errors += row_errors
            continue
        assert snapshot is not None
        first_line[snapshot.importer_bn] = raw.line
        rows.append(ImportedRow(raw.line, snapshot, tuple(assumed)))
    return rows, errors


# --- files → rows ----------------------------------------------------------------------------


def decode_text(data: bytes) -> tuple[str, list[str]]:
    """Text of a file as a spreadsheet saves it: UTF-8 with or without a BOM, UTF-16 ("Unicode
    text"), else Windows-1252 (Excel's plain "CSV"), said in a warning."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), []
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), [
            "the file is not UTF-8: read as Windows-1252 (Excel's plain CSV); "
            'save as "CSV UTF-8" if accented names look wrong'
        ]


def _delimiter(line: str) -> str:
    counts = {sep: line.count(sep) for sep in (",", ";", "\t")}
    return max(counts, key=lambda sep: counts[sep]) if any(counts.values()) else ","


def read_csv_rows(text: str) -> tuple[list[RawRow], list[RowError], list[str], int]:
    """(rows, file errors, warnings, blank rows) of a CSV export; line numbers as in the file."""
    lines = text.splitlines(keepends=True)
    skipped = 0
    delimiter = None
    if lines and re.fullmatch(r"sep=(.)\s*", lines[0]):  # Excel's "sep=;" hint line
        delimiter = lines[0][4]
        skipped = 1
    body = "".join(lines[skipped:])
    if delimiter is None:
        first = next((line for line in lines if line.strip()), "")
        delimiter = _delimiter(first)
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter)
    header: list[str | None] = []
    labels: dict[str, str] = {}
    rows: list[RawRow] = []
    warnings: list[str] = []
    blank = 0
    previous_end = 0
    try:
        for record in reader:
            start, previous_end = previous_end + 1 + skipped, reader.line_num
            if not any(cell.strip() for cell in record):
                if header:
                    blank += 1
                continue
            if not header:
                header, labels, errors, unknown = _header(record, start)
                if errors:
                    return [], errors, warnings, 0
                if unknown:
                    warnings.append(
                        f"line {start}: column(s) {', '.join(unknown)} are not documented columns: ignored "
                        "(check the spelling if one of them should be read)"
                    )
                continue
            rows.append(_csv_row(record, header, labels, start))
    except csv.Error as exc:
        return [], [RowError(reader.line_num + skipped, "", f"not readable as CSV: {exc}")], warnings, 0
    if not header:
        return (
            [],
            [RowError(0, "", "the file is empty: it needs a header row (holdwatch carm template)")],
            [],
            0,
        )
    return rows, [], warnings, blank


def _header(
    record: list[str], line: int
) -> tuple[list[str | None], dict[str, str], list[RowError], list[str]]:
    header: list[str | None] = []
    labels: dict[str, str] = {}
    errors: list[RowError] = []
    unknown: list[str] = []
    for index, raw in enumerate(record):
        text = raw.strip().lstrip("\ufeff")
        column = ALIASES.get(column_key(text)) if text else None
        label = f"{column_letter(index)} ({text})" if text else column_letter(index)
        if column is None:
            if text:
                unknown.append(f"{column_letter(index)} ({text})")
            header.append(None)
            continue
        if column in labels:
            errors.append(RowError(line, column, f"{column} is also column {labels[column]}", label))
            header.append(None)
            continue
        labels[column] = label
        header.append(column)
    missing = [column for column in COLUMNS if column not in labels and column not in OPTIONAL_COLUMNS]
    if missing:
        errors.append(
            RowError(
                line,
                "",
                f"the header lacks column(s) {', '.join(missing)} (a header row with every documented "
                "column is needed: holdwatch carm template writes one)",
            )
        )
    return header, labels, errors, unknown


def _csv_row(record: list[str], header: list[str | None], labels: Mapping[str, str], line: int) -> RawRow:
    cells: dict[str, str] = {}
    errors: list[RowError] = []
    for index, raw in enumerate(record):
        if index >= len(header):
            if raw.strip():
                errors.append(
                    RowError(
                        line,
                        "",
                        f"{raw.strip()!r} is beyond the last column of the header",
                        column_letter(index),
                    )
                )
            continue
        column = header[index]
        if column is not None:
            cells[column] = raw.strip()
    return RawRow(line, cells, labels, errors=tuple(errors))


_YAML_NULL: Final = "tag:yaml.org,2002:null"


def read_yaml_rows(text: str) -> tuple[list[RawRow], list[RowError], list[str]]:
    """A YAML list of importers (or `importers:` holding one), each a mapping of the same
    columns; `delegations` may be a list of `{broker, access, transaction_visibility}` or of
    cell texts. Scalars are read as the text written (`yes`, `2026-11-03`, `$12,500`), exactly
    as a CSV cell, so both formats mean the same thing."""
    import yaml  # only for YAML files: PyYAML is not needed for CSV

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        return [], [RowError(line, "", f"not readable as YAML: {getattr(exc, 'problem', None) or exc}")], []
    if root is None:
        return [], [], []
    if isinstance(root, yaml.MappingNode):
        found = [
            value
            for key, value in root.value
            if isinstance(key, yaml.ScalarNode) and key.value == "importers"
        ]
        if not found:
            return (
                [],
                [
                    RowError(
                        root.start_mark.line + 1, "", "expected a list of importers (or importers: [...])"
                    )
                ],
                [],
            )
        root = found[0]
    if isinstance(root, yaml.ScalarNode) and root.tag == _YAML_NULL:
        return [], [], []
    if not isinstance(root, yaml.SequenceNode):
        return [], [RowError(root.start_mark.line + 1, "", "expected a list of importers")], []
    rows: list[RawRow] = []
    unknown: set[str] = set()
    for item in root.value:
        line = item.start_mark.line + 1
        if not isinstance(item, yaml.MappingNode):
            rows.append(
                RawRow(
                    line, {}, errors=(RowError(line, "", "an importer must be a mapping of column: value"),)
                )
            )
            continue
        cells: dict[str, str] = {}
        labels: dict[str, str] = {}
        lines: dict[str, int] = {}
        errors: list[RowError] = []
        for key_node, value_node in item.value:
            key_text = str(key_node.value)
            column = ALIASES.get(column_key(key_text))
            if column is None:
                unknown.add(key_text)
                continue
            labels[column], lines[column] = key_text, value_node.start_mark.line + 1
            try:
                cells[column] = _yaml_cell(column, value_node)
            except CellError as exc:
                errors.append(RowError(lines[column], column, str(exc), key_text))
        rows.append(RawRow(line, cells, labels, lines, tuple(errors)))
    warnings = [f"key(s) {', '.join(sorted(unknown))} are not documented columns: ignored"] if unknown else []
    return rows, [], warnings


def _yaml_scalar(node: Any) -> str:
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise CellError("expected a single value here")
    return "" if node.tag == _YAML_NULL else str(node.value).strip()


def _yaml_cell(column: str, node: Any) -> str:
    import yaml

    if column != DELEGATIONS or not isinstance(node, yaml.SequenceNode):
        return _yaml_scalar(node)
    entries: list[str] = []
    for entry in node.value:
        if not isinstance(entry, yaml.MappingNode):
            entries.append(_yaml_scalar(entry))
            continue
        parts: dict[str, str] = {}
        for key_node, value_node in entry.value:
            key = column_key(str(key_node.value))
            if key in {"broker", "broker_code"}:
                parts["broker"] = _yaml_scalar(value_node)
            elif key == "access":
                parts["access"] = _yaml_scalar(value_node)
            elif key == "transaction_visibility":
                values = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                parts["visibility"] = "/".join(_yaml_scalar(value) for value in values)
            else:
                raise CellError(
                    f"{key_node.value!r}: a delegation has broker, access, transaction_visibility"
                )
        for name, text in parts.items():
            if re.search(r"[:;,|\n]", text) or (name != "visibility" and "/" in text):
                raise CellError(f"delegation {name} {text!r} has a separator character in it")
        entries.append(f"{parts.get('broker', '')}:{parts.get('access', '')}:{parts.get('visibility', '')}")
    return "; ".join(entries)


def read_sheet(data: bytes, fmt: SheetFormat, options: SheetOptions, now: datetime) -> SheetResult:
    """A whole file: decoded, split into rows, every row validated."""
    text, warnings = decode_text(data)
    blank = 0
    if fmt == "csv":
        raw_rows, file_errors, more, blank = read_csv_rows(text)
    else:
        raw_rows, file_errors, more = read_yaml_rows(text)
    warnings += more
    if file_errors:
        return SheetResult((), (), tuple(file_errors), tuple(warnings))
    rows, errors = parse_rows(raw_rows, options, now)
    return SheetResult(tuple(rows), tuple(errors), (), tuple(warnings), blank)


# --- snapshots → cells, files ----------------------------------------------------------------


def format_amount(value: float) -> str:
    """Exact and plain (`12500`, `12500.5`): the export reads back to the same number."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def format_instant(value: datetime, tz: tzinfo) -> str:
    """A date when the instant is the start of a day in tz (how a sheet writes it), else the
    full local time with its offset."""
    local = value.astimezone(tz)
    if local.time() == time(0):
        return local.date().isoformat()
    return local.isoformat()


def format_bool(value: bool) -> str:
    return "yes" if value else "no"


def format_delegations(delegations: Sequence[Delegation]) -> str:
    return "; ".join(
        f"{d.broker_code}:{d.access}:{format_bool(d.transaction_visibility)}"
        for d in sorted(delegations, key=lambda d: d.broker_code)
    )


def cells_of(snapshot: CarmSnapshot, options: SheetOptions) -> dict[str, str]:
    """A snapshot as the row the export writes (every column, canonical texts)."""
    contact = snapshot.contact or Contact()
    highest = snapshot.highest_monthly_duties_taxes_cad
    login = snapshot.last_portal_login_at
    return {
        IMPORTER_BN: snapshot.importer_bn,
        LEGAL_NAME: snapshot.legal_name,
        CCP_ACCOUNT: format_bool(snapshot.ccp_registered),
        RM_LINKED: format_bool(snapshot.rm_account_linked),
        DELEGATIONS: format_delegations(snapshot.delegations),
        RPP_ENROLLED: format_bool(snapshot.rpp_enrolled),
        SECURITY_KIND: snapshot.security.kind,
        SECURITY_AMOUNT: format_amount(snapshot.security.amount_cad),
        HIGHEST_MONTHLY: "" if highest is None else format_amount(highest),
        LAST_LOGIN: "" if login is None else format_instant(login, options.tz),
        CONTACT_NAME: contact.name or "",
        CONTACT_PHONE: contact.phone or "",
        CONTACT_EMAIL: contact.email or "",
    }


def write_csv(rows: Iterable[Mapping[str, str]]) -> str:
    """CSV text with every column; the caller writes it with a BOM (Excel then reads UTF-8)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.get(column, "") for column in COLUMNS])
    return out.getvalue()


_PLAIN_YAML = re.compile(r"[A-Za-z0-9$][A-Za-z0-9 ._@+/()&'$-]*")


def _yaml_text(value: str) -> str:
    """Plain when YAML reads the same text back (the reader takes scalars as written), else
    double-quoted JSON (a subset of YAML)."""
    if _PLAIN_YAML.fullmatch(value) and not value.endswith(" ") and value.lower() not in {"null", "~"}:
        return value
    return json.dumps(value, ensure_ascii=False)


def write_yaml(rows: Iterable[Mapping[str, str]], header: str = "") -> str:
    """YAML text: `importers:` with one mapping per importer, delegations as a list; blank
    cells are left out (a missing key is blank)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines.append("importers:")
    for row in rows:
        first = True
        for column in COLUMNS:
            value = row.get(column, "")
            if not value:
                continue
            prefix = "  - " if first else "    "
            first = False
            if column != DELEGATIONS:
                lines.append(f"{prefix}{column}: {_yaml_text(value)}")
                continue
            lines.append(f"{prefix}{column}:")
            for entry in (part.strip() for part in value.split(";") if part.strip()):
                broker, access, visibility = (*entry.split(":"), "", "")[:3]
                lines.append(f"      - broker: {_yaml_text(broker)}")
                lines.append(f"        access: {_yaml_text(access)}")
                flags = [flag.strip() for flag in visibility.split("/")]
                if any(flags):
                    shown = flags[0] if len(flags) == 1 else f"[{', '.join(_yaml_text(f) for f in flags)}]"
                    lines.append(f"        transaction_visibility: {shown}")
    return "\n".join(lines) + "\n"


def write_sheet(rows: Iterable[Mapping[str, str]], fmt: SheetFormat, header: str = "") -> bytes:
    """The bytes of a file: CSV with a UTF-8 BOM (Excel reads accents right), or YAML."""
    if fmt == "csv":
        return ("\ufeff" + write_csv(rows)).encode("utf-8")
    return write_yaml(rows, header).encode("utf-8")


def template_rows(today: date, date_order: DateOrder = "mdy") -> list[dict[str, str]]:
    """Three example importers: ready; two brokers, one missing a visibility rule, dormant
    login; not ready. Dates in both styles (the second as HOLDWATCH_CARM_DATE_ORDER reads it)."""
    recent = (today - timedelta(days=12)).isoformat()
    dormant = (today - timedelta(days=200)).strftime("%m/%d/%Y" if date_order == "mdy" else "%d/%m/%Y")
    return [
        {
            IMPORTER_BN: "123456789RM0001",
            LEGAL_NAME: "Maple Leaf Fasteners Inc.",
            CCP_ACCOUNT: "yes",
            RM_LINKED: "yes",
            DELEGATIONS: "LKCS:business_management:yes",
            RPP_ENROLLED: "yes",
            SECURITY_KIND: "surety",
            SECURITY_AMOUNT: "$25,000.00",
            HIGHEST_MONTHLY: "$48,000.00",
            LAST_LOGIN: recent,
            CONTACT_NAME: "Jeanne Roy",
            CONTACT_PHONE: "+1-416-555-0142",
            CONTACT_EMAIL: "jroy@maple-fasteners.example",
        },
        {
            IMPORTER_BN: "987654321RM0002",
            LEGAL_NAME: "Boulangerie du Nord Ltée",
            CCP_ACCOUNT: "yes",
            RM_LINKED: "yes",
            DELEGATIONS: "LKCS:business_management:yes; BRK2:program_management:yes/yes/no",
            RPP_ENROLLED: "yes",
            SECURITY_KIND: "cash",
            SECURITY_AMOUNT: "12500",
            HIGHEST_MONTHLY: "12000",
            LAST_LOGIN: dormant,
            CONTACT_NAME: "Luc Gagnon",
            CONTACT_PHONE: "+1-514-555-0199",
            CONTACT_EMAIL: "",
        },
        {
            IMPORTER_BN: "555000111RM0001",
            LEGAL_NAME: "Prairie Tools Ltd",
            CCP_ACCOUNT: "yes",
            RM_LINKED: "no",
            DELEGATIONS: "",
            RPP_ENROLLED: "no",
            SECURITY_KIND: "none",
            SECURITY_AMOUNT: "0",
            HIGHEST_MONTHLY: "",
            LAST_LOGIN: "",
            CONTACT_NAME: "",
            CONTACT_PHONE: "",
            CONTACT_EMAIL: "",
        },
    ]


TEMPLATE_HEADER: Final = """\
holdwatch CARM readiness registry: one entry per importer (docs/connectors.md).
Import: holdwatch carm import FILE [--dry-run]. Blank = unknown, read as "not done".
delegations: one entry per broker: broker, access (business_management, program_management,
none), transaction_visibility (yes when all three transaction visibility rules are ticked,
or [yes, yes, no] one per rule)."""


# --- the diff against the topic --------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    column: str
    old: str
    new: str


@dataclass(frozen=True)
class Changed:
    snapshot: CarmSnapshot  # to publish (its event id chained to the record it replaces)
    fields: tuple[FieldChange, ...]


@dataclass(frozen=True)
class RegistryDiff:
    new: tuple[CarmSnapshot, ...]
    changed: tuple[Changed, ...]
    unchanged: tuple[str, ...]  # BNs
    missing: tuple[CarmSnapshot, ...]  # on the topic, not in the file: kept

    def to_publish(self) -> list[CarmSnapshot]:
        """New and changed importers only: an unchanged one is not re-published."""
        return [*self.new, *(change.snapshot for change in self.changed)]


def field_changes(old: CarmSnapshot, new: CarmSnapshot, options: SheetOptions) -> tuple[FieldChange, ...]:
    """The columns whose texts differ: equal texts are equal readiness (delegation order,
    an empty contact and float spelling do not count)."""
    before, after = cells_of(old, options), cells_of(new, options)
    return tuple(
        FieldChange(column, before[column], after[column])
        for column in COLUMNS
        if before[column] != after[column]
    )


def diff_registry(
    current: Mapping[str, CarmSnapshot], incoming: Sequence[CarmSnapshot], options: SheetOptions
) -> RegistryDiff:
    """What importing `incoming` changes on a topic holding `current` (BN → snapshot)."""
    new: list[CarmSnapshot] = []
    changed: list[Changed] = []
    unchanged: list[str] = []
    for snapshot in incoming:
        old = current.get(snapshot.importer_bn)
        if old is None:
            new.append(snapshot.model_copy(update={"event_id": content_id(snapshot)}))
            continue
        fields = field_changes(old, snapshot, options)
        if not fields:
            unchanged.append(snapshot.importer_bn)
            continue
        stamped = snapshot.model_copy(update={"event_id": content_id(snapshot, old.event_id)})
        changed.append(Changed(stamped, fields))
    seen = {snapshot.importer_bn for snapshot in incoming}
    missing = tuple(current[bn] for bn in sorted(current) if bn not in seen)
    return RegistryDiff(tuple(new), tuple(changed), tuple(unchanged), missing)


def _shown(text: str) -> str:
    return text if text else "(blank)"


def describe_diff(diff: RegistryDiff) -> list[str]:
    """The diff as lines: new, changed (one line per changed column: old → new), missing."""
    lines = [f"new        {s.importer_bn}  {s.legal_name}" for s in diff.new]
    for change in diff.changed:
        lines.append(f"changed    {change.snapshot.importer_bn}  {change.snapshot.legal_name}")
        lines += [f"             {f.column}: {_shown(f.old)} → {_shown(f.new)}" for f in change.fields]
    lines += [
        f"missing    {s.importer_bn}  {s.legal_name}  (on the topic, not in the file: kept)"
        for s in diff.missing
    ]
    lines.append(
        f"{len(diff.new)} new, {len(diff.changed)} changed, {len(diff.unchanged)} unchanged, "
        f"{len(diff.missing)} missing from the file"
    )
    return lines


def _money(value: float) -> str:
    return f"${value:,.2f}"


def describe_snapshot(snapshot: CarmSnapshot, options: SheetOptions, now: datetime) -> list[str]:
    """One importer's record, readable by a dispatcher (`holdwatch carm show`)."""
    yes = format_bool
    lines = [f"{snapshot.importer_bn}  {snapshot.legal_name}"]

    def add(label: str, value: str) -> None:
        lines.append(f"  {label:<34} {value}")

    add("CCP account", yes(snapshot.ccp_registered))
    add("CCP account linked to RM account", yes(snapshot.rm_account_linked))
    if not snapshot.delegations:
        add("delegated brokers", "none")
    for index, d in enumerate(sorted(snapshot.delegations, key=lambda d: d.broker_code)):
        visibility = (
            "all three visibility rules" if d.transaction_visibility else "visibility rules incomplete"
        )
        add(
            "delegated brokers" if index == 0 else "",
            f"{d.broker_code}: {d.access.replace('_', ' ')}, {visibility}",
        )
    add("RPP enrolled", yes(snapshot.rpp_enrolled))
    security = snapshot.security
    add("security", "none" if security.kind == "none" else f"{security.kind} {_money(security.amount_cad)}")
    highest = snapshot.highest_monthly_duties_taxes_cad
    add("highest monthly duties and taxes", "unknown" if highest is None else _money(highest))
    login = snapshot.last_portal_login_at
    if login is None:
        add("last portal login", "unknown")
    else:
        days = (now - login).days
        add("last portal login", f"{format_instant(login, options.tz)} ({days} days ago)")
    contact = snapshot.contact
    parts = [part for part in (contact.name, contact.phone, contact.email) if part] if contact else []
    add("contact", ", ".join(parts) if parts else "none")
    return lines
