"""The carrier's ports file (CSV) → the CBSA office table, merged over `schemas.ports.PORTS`.

Read once when the notifier and the worker start (`HOLDWATCH_PORTS_FILE`). Columns `code`, `name`,
`tz` (a header row, any order; a UTF-8 BOM, blank lines fine): a code the built-in table has is
replaced (a correction), a new one is added. Every row is checked (4-digit code, a name, a real
IANA zone, no code twice); if any is bad, `PortsFileError` lists each with its line and reason
and nothing is used. Format in docs/connectors.md "CBSA offices".
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.ports import PORTS, Port, with_overrides

COLUMNS = ("code", "name", "tz")
_CODE = re.compile(r"^[0-9]{4}$")


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int  # 1-based; 0: the whole file
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


class PortsFileError(ValueError):
    """The file cannot be used as it is: every bad row, with its line and reason."""

    def __init__(self, source: str, problems: list[RowProblem]) -> None:
        self.source, self.problems = source, problems
        listed = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"ports file {source}: {len(problems)} bad row(s)\n{listed}")


def _port(values: dict[str, str]) -> Port:
    code, name, tz = values.get("code", ""), values.get("name", ""), values.get("tz", "")
    if not _CODE.match(code):
        raise ValueError(f"code {code!r} is not a 4-digit CBSA office code")
    if not name:
        raise ValueError("no name")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}: use an IANA name like America/Toronto") from None
    return Port(code, name, tz, ("carrier",))


def parse_ports_csv(text: str, source: str = "<csv>") -> list[Port]:
    """CSV text → its ports (sources `("carrier",)`); `PortsFileError` for a bad header or row."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header: list[str] = []
    ports: list[Port] = []
    first_line: dict[str, int] = {}
    problems: list[RowProblem] = []
    for cells in reader:
        values = [cell.strip() for cell in cells]
        if not any(values):
            continue
        if not header:
            header = [v.lower() for v in values]
            if sorted(header) != sorted(COLUMNS):
                reason = f"header {', '.join(header)}: the columns are {', '.join(COLUMNS)}"
                raise PortsFileError(source, [RowProblem(reader.line_num, reason)])
            continue
        if len(values) > len(header) and any(values[len(header) :]):
            problems.append(RowProblem(reader.line_num, f"{len(values)} cells for {len(header)} columns"))
            continue
        try:
            port = _port(dict(zip(header, values, strict=False)))
        except ValueError as exc:
            problems.append(RowProblem(reader.line_num, str(exc)))
            continue
        if port.code in first_line:
            first = first_line[port.code]
            problems.append(RowProblem(reader.line_num, f"code {port.code} again (first on line {first})"))
            continue
        first_line[port.code] = reader.line_num
        ports.append(port)
    if not header:
        raise PortsFileError(source, [RowProblem(1, "no header row")])
    if problems:
        raise PortsFileError(source, problems)
    return ports


def load_ports(path: Path | None) -> dict[str, Port]:
    """The built-in table with the file's rows merged over it; the built-in one without a file."""
    if path is None:
        return dict(PORTS)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PortsFileError(str(path), [RowProblem(0, f"cannot read the file: {exc}")]) from exc
    return with_overrides(parse_ports_csv(text, str(path)))
