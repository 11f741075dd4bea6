"""CBSA land ports of entry that the simulator uses and the notifier names.

Kept apart from the simulator so the Slack notifier can show a port's name and its
local time without importing the generator. Codes are 4-digit CBSA office codes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Port:
    """A CBSA office: its 4-digit code, a readable name and its IANA time zone."""

    code: str
    name: str
    tz: str


# 0453 (Windsor) and 0410 (Fort Erie) are confirmed by carrier-software documentation;
# the others are recalled from CBSA's office list and worth a check against the
# Directory of CBSA Offices before anyone relies on them outside the simulator.
PORTS: dict[str, Port] = {
    port.code: port
    for port in (
        Port("0453", "Windsor - Ambassador Bridge, ON", "America/Toronto"),
        Port("0440", "Sarnia - Blue Water Bridge, ON", "America/Toronto"),
        Port("0410", "Fort Erie - Peace Bridge, ON", "America/Toronto"),
        Port("0427", "Niagara Falls - Queenston-Lewiston Bridge, ON", "America/Toronto"),
        Port("0352", "St-Bernard-de-Lacolle, QC", "America/Toronto"),
        Port("0211", "Woodstock, NB", "America/Moncton"),
        Port("0502", "Emerson, MB", "America/Winnipeg"),
        Port("0705", "Coutts, AB", "America/Edmonton"),
        Port("0813", "Surrey - Pacific Highway, BC", "America/Vancouver"),
    )
}

