"""The broker directory file (TOML or CSV) → `schemas.brokers.BrokerDirectory`.

Read once when the notifier and the worker start (`HOLDWATCH_BROKER_DIRECTORY_FILE`). Every row is
checked; if any is bad, nothing is used and `BrokerDirectoryError` lists each bad row with its line
and the reason, so a typo stops the process with a clear message instead of silently dropping a
broker's number. Formats in docs/connectors.md "Broker directory".

TOML: one `[[broker]]` table per broker. CSV: a header row naming the columns (any order; a
UTF-8 BOM, blank lines and blank cells are fine). Fields, both formats: `code`, `name`,
`phone_24h`, `phone`, `email`, `hours`, `tz`.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.brokers import BrokerContact, BrokerDirectory

FIELDS = tuple(BrokerContact.model_fields)
_TOML_HEADER = re.compile(r"^\s*\[\[\s*broker\s*\]\]")


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int  # 1-based line where the row (CSV) or its [[broker]] table (TOML) starts; 0: the file
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


class BrokerDirectoryError(ValueError):
    """The file cannot be used as it is: every bad row, with its line and reason."""

    def __init__(self, source: str, problems: list[RowProblem]) -> None:
        self.source, self.problems = source, problems
        listed = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"broker directory {source}: {len(problems)} bad row(s)\n{listed}")


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _build(
    rows: list[tuple[int, dict[str, Any]]], source: str, problems: list[RowProblem] | None = None
) -> BrokerDirectory:
    problems = list(problems or [])
    contacts: dict[str, BrokerContact] = {}
    first_line: dict[str, int] = {}
    for line, row in rows:
        try:
            contact = BrokerContact.model_validate(row)
        except ValidationError as exc:
            problems.append(RowProblem(line, _reason(exc)))
            continue
        if contact.code in contacts:
            first = first_line[contact.code]
            problems.append(RowProblem(line, f"code {contact.code} again (first on line {first})"))
            continue
        contacts[contact.code], first_line[contact.code] = contact, line
    if problems:
        raise BrokerDirectoryError(source, sorted(problems, key=lambda p: p.line))
    return BrokerDirectory(contacts=contacts)


def parse_csv(text: str, source: str = "<csv>") -> BrokerDirectory:
    """CSV text → the directory; `BrokerDirectoryError` for a bad header or any bad row."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header: list[str] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[RowProblem] = []
    for cells in reader:
        line = reader.line_num  # the row's last line (the same unless a quoted cell spans lines)
        values = [cell.strip() for cell in cells]
        if not any(values):
            continue  # a blank line
        if not header:
            header = [v.lower() for v in values]
            unknown = [name for name in header if name not in FIELDS]
            repeated = sorted({name for name in header if header.count(name) > 1})
            if unknown or repeated or "code" not in header:
                why = [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
                why += [f"column(s) {', '.join(repeated)} twice"] if repeated else []
                why += ["no code column"] if "code" not in header else []
                reason = "; ".join(why) + f" (columns: {', '.join(FIELDS)})"
                raise BrokerDirectoryError(source, [RowProblem(line, reason)])
            continue
        if len(values) > len(header) and any(values[len(header) :]):
            problems.append(RowProblem(line, f"{len(values)} cells for {len(header)} columns"))
            continue
        rows.append((line, {name: value for name, value in zip(header, values, strict=False) if value}))
    if not header:
        raise BrokerDirectoryError(source, [RowProblem(1, "no header row")])
    return _build(rows, source, problems)


def parse_toml(text: str, source: str = "<toml>") -> BrokerDirectory:
    """TOML text with `[[broker]]` tables → the directory; `BrokerDirectoryError` for any bad one."""
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise BrokerDirectoryError(source, [RowProblem(int(line.group(1)) if line else 1, str(exc))]) from exc
    extra = sorted(set(data) - {"broker"})
    if extra:
        raise BrokerDirectoryError(
            source, [RowProblem(1, f"unknown key(s) {', '.join(extra)}: use [[broker]]")]
        )
    tables = data.get("broker", [])
    if not isinstance(tables, list):
        raise BrokerDirectoryError(source, [RowProblem(1, "write each broker as a [[broker]] table")])
    lines = [n for n, text_line in enumerate(text.splitlines(), start=1) if _TOML_HEADER.match(text_line)]
    rows = [(lines[i] if i < len(lines) else 1, table) for i, table in enumerate(tables)]
    return _build(rows, source)


def load_broker_directory(path: Path | None) -> BrokerDirectory:
    """The directory in `path` (`.toml`, else CSV); an empty one when no file is configured."""
    if path is None:
        return BrokerDirectory()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BrokerDirectoryError(str(path), [RowProblem(0, f"cannot read the file: {exc}")]) from exc
    if path.suffix.lower() == ".toml":
        return parse_toml(text, str(path))
    return parse_csv(text, str(path))
