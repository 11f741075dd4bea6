"""CBSA offices (ports of entry): code → name and time zone, for the messages and the status API.

Kept apart from the simulator so the notifier can show a port's name and its local time without
importing the generator. Codes are 4-digit CBSA office codes, checked against the public sources
in `SOURCES` (../shared/notes/cbsa-ports.md, docs/connectors.md "CBSA offices"); a code only one
source states is marked `single_source`: check it against the CBSA Directory of Offices before
relying on it. A carrier extends or corrects the table with a CSV file (`HOLDWATCH_PORTS_FILE`,
`streams/feeds/ports.py`), merged over this one by `with_overrides`; an office in neither is
shown by its code alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SOURCES: dict[str, str] = {
    "A": "customs-brokers' association notice relaying CBSA guidance (Windsor 0453, Sarnia 0440)",
    "B": "TMS vendor's ACI set-up guide (Fort Erie 0410)",
    "C": "2019 table of 293 CBSA commercial offices (adamtaylor78/BravoAPI, port-list-commercial.json)",
    "carrier": "the carrier's own ports file (HOLDWATCH_PORTS_FILE)",
}
"""Where a code was checked: the keys `Port.sources` names."""


@dataclass(frozen=True, slots=True)
class Port:
    """A CBSA office: its 4-digit code, a readable name, its IANA time zone, who states the code."""

    code: str
    name: str
    tz: str
    sources: tuple[str, ...] = ()  # keys of SOURCES

    @property
    def single_source(self) -> bool:
        """Only one source states this code: worth a check before anyone relies on it."""
        return len(self.sources) == 1


def _table(ports: Iterable[Port]) -> dict[str, Port]:
    return {port.code: port for port in ports}


_ON, _QC, _NB = "America/Toronto", "America/Toronto", "America/Moncton"
_BC = "America/Vancouver"

PORTS: dict[str, Port] = _table(
    (
        Port("0453", "Windsor - Ambassador Bridge, ON", _ON, ("A", "C")),
        Port("0452", "Windsor - Detroit-Windsor Tunnel (commercial), ON", _ON, ("C",)),
        Port("0440", "Sarnia - Blue Water Bridge, ON", _ON, ("A", "C")),
        Port("0410", "Fort Erie - Peace Bridge, ON", _ON, ("B", "C")),
        Port("0427", "Niagara Falls - Queenston-Lewiston Bridge, ON", _ON, ("C",)),
        Port("0456", "Lansdowne - Thousand Islands Bridge, ON", _ON, ("C",)),
        Port("0439", "Prescott, ON", _ON, ("C",)),
        Port("0409", "Cornwall (Akwesasne), ON", _ON, ("C",)),
        Port("0441", "Sault Ste. Marie, ON", _ON, ("C",)),
        # Rainy River district keeps Central time.
        Port("0478", "Fort Frances, ON", "America/Winnipeg", ("C",)),
        Port("0475", "Pigeon River, ON", _ON, ("C",)),
        # 0351, not 0352 (Cantic station, not the highway crossing): corrected.
        Port("0351", "St-Bernard-de-Lacolle, QC", _QC, ("C",)),
        Port("0314", "Stanstead (Rock Island), QC", _QC, ("C",)),
        Port("0328", "St-Armand / Philipsburg, QC", _QC, ("C",)),
        # Trucks at St. Stephen use the 3rd Bridge facility (0231).
        Port("0211", "St. Stephen, NB", _NB, ("C",)),
        Port("0231", "St. Stephen - 3rd Bridge, NB", _NB, ("C",)),
        # 0212, not 0211 (St. Stephen): corrected.
        Port("0212", "Woodstock Road (Belleville), NB", _NB, ("C",)),
        Port("0213", "Edmundston, NB", _NB, ("C",)),
        Port("0502", "Emerson (commercial), MB", "America/Winnipeg", ("C",)),
        Port("0602", "North Portal, SK", "America/Regina", ("C",)),
        Port("0607", "Regway, SK", "America/Regina", ("C",)),
        Port("0705", "Coutts, AB", "America/Edmonton", ("C",)),
        Port("0813", "Surrey - Pacific Highway, BC", _BC, ("C",)),
        Port("0815", "Boundary Bay, BC", _BC, ("C",)),
        Port("0817", "Huntingdon (Abbotsford), BC", _BC, ("C",)),
        Port("0841", "Aldergrove, BC", _BC, ("C",)),
        Port("0840", "Douglas, BC", _BC, ("C",)),
        # The Creston area keeps MST all year: check Kingsgate's zone before relying on it.
        Port("0818", "Kingsgate, BC", _BC, ("C",)),
        Port("0819", "Osoyoos, BC", _BC, ("C",)),
        Port("0824", "Roosville, BC", "America/Edmonton", ("C",)),
    )
)
"""The built-in table (cbsa-ports.md, checked against sources A, B and C)."""


def with_overrides(extra: Iterable[Port], base: Mapping[str, Port] = PORTS) -> dict[str, Port]:
    """`base` with `extra` added, a code in both taking `extra`'s row (a carrier's correction)."""
    merged = dict(base)
    merged.update(_table(extra))
    return merged
