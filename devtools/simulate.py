"""A realistic synthetic history of Canada-bound loads, as an event log (events.md).

Deterministic per seed: every random draw comes from `random.Random` instances seeded
from the config (one for the world, one per load, one for transport noise), so the
same config gives byte-identical output. Loads are planned one at a time and merged
by event time through a heap, so memory is bounded by the loads in flight, not by
the size of the run. Every normal record is built as the schemas' pydantic model
and dumped, so it is valid by construction; malformed records are added on purpose
and counted. docs/simulator.md documents the model and its rates.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from bisect import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal

from alerting.engine.rules import KNOWN_INDICATORS
from schemas.carm import CarmSnapshot, Contact, Delegation, Security
from schemas.common import SCHEMA_VERSION
from schemas.emanifest import (
    Cancelled,
    CargoAccepted,
    CargoRejected,
    CargoReported,
    EtaUpdated,
    Notice,
    NoticeKind,
)
from schemas.eventlog import LogWriter
from schemas.rns import RnsStatus

MINUTE = 60
HOUR = 3600
DAY = 86400

DEFAULT_START = datetime(2025, 11, 3, 5, 0, tzinfo=UTC)
"""Fixed default so that a run without --start is reproducible (a Monday after CARM's RPP grace period)."""

LEAD_IN_S = HOUR
"""Shipment events start this long after the CARM snapshots (room for early RNS messages)."""
EARLY_RNS_MAX_S = 40 * MINUTE
"""An RNS message that precedes its cargo_reported does so by at most this much."""

# --- the world ---------------------------------------------------------------------------

BROKERS: tuple[tuple[str, str, float], ...] = (
    ("NGCB", "Northgate Customs Brokers", 0.22),
    ("LKCS", "Lakeshore Customs Services", 0.18),
    ("STLB", "St. Lawrence Brokerage", 0.14),
    ("MPLC", "Maple Leaf Clearances", 0.12),
    ("PRTC", "Portage Trade Compliance", 0.10),
    ("CSTD", "Coast-to-Coast Declarations", 0.10),
    ("BRDX", "Bridgewater Customs Exchange", 0.08),
    ("PRCG", "Prairie Customs Group", 0.06),
)
"""(code, name, share of importers using it as their usual broker)."""

CARRIERS: tuple[tuple[str, float], ...] = (
    ("8NLX", 0.28),
    ("2HWY", 0.22),
    ("5MPT", 0.16),
    ("9GRT", 0.14),
    ("3CDN", 0.12),
    ("6BRD", 0.08),
)
"""(4-character CBSA carrier code, share of loads)."""

PORT_SHARES: dict[str, float] = {
    "0453": 0.30,
    "0440": 0.14,
    "0410": 0.12,
    "0427": 0.07,
    "0351": 0.12,
    "0212": 0.04,
    "0502": 0.06,
    "0705": 0.05,
    "0813": 0.10,
}
"""Share of loads per CBSA port (codes and names in schemas/ports.py)."""

PORT_TEAMS: dict[str, str] = {
    "0453": "ontario",
    "0440": "ontario",
    "0410": "ontario",
    "0427": "ontario",
    "0351": "quebec",
    "0212": "atlantic",
    "0502": "prairies",
    "0705": "west",
    "0813": "west",
}
"""Dispatch team that handles loads for each port."""

IMPORTER_FLAW_RATES: dict[str, float] = {
    "not_delegated": 0.04,
    "delegation_incomplete": 0.03,
    "no_rpp": 0.025,
    "security_short": 0.025,
    "security_none": 0.01,
    "login_dormant": 0.03,
    "not_registered": 0.02,
    "unknown": 0.02,
}
"""Share of importers with each CARM readiness flaw (each gets at least one); the rest (≈80%) are ready."""
MIDWAY_FIX_RATE = 0.35
"""Share of flawed importers (at least one) that fix their CARM record during the run."""

# --- per load ----------------------------------------------------------------------------

BROKER_MISSING_RATE = 0.02
OTHER_BROKER_RATE = 0.025
"""Load filed by a broker other than the importer's usual one (often not delegated)."""
PREPAID_RATE = 0.04
PREPAID_RATE_NO_RPP = 0.35
DISPATCH_TEAM_MISSING_RATE = 0.05
LATE_EMANIFEST_RATE = 0.015
"""cargo_reported only 20-55 min before ETA (breaks the one-hour rule)."""
SHORT_HAUL_RATE = 0.04
"""cargo_reported 60-150 min before ETA; the rest 2.5-12 h before."""
EARLY_RNS_RATE = 0.005
"""An RNS 34 arrives before its cargo_reported (exercises unknown-CCN handling)."""
CARGO_ANSWER_WEIGHTS: dict[str, float] = {
    "accepted": 0.94,
    "rejected_fixed": 0.045,
    "rejected_unfixed": 0.01,
    "no_answer": 0.005,
}
ETA_ONE_CHANGE_RATE = 0.15
ETA_TWO_CHANGES_RATE = 0.04
ETA_LATER_SHARE = 0.7
PORT_CHANGE_RATE = 0.03
CANCEL_RATE = 0.015

PARS_SCENARIOS = (
    "on_time",
    "not_matched_then_matched",
    "late_warning",
    "late_critical",
    "never",
    "silent_cancel",
    "rns_rejected",
)
PARS_WEIGHTS: dict[str, tuple[float, ...]] = {
    "ready": (0.84, 0.06, 0.03, 0.01, 0.01, 0.02, 0.03),
    "mild": (0.70, 0.10, 0.06, 0.03, 0.03, 0.03, 0.05),
    "blocking": (0.25, 0.15, 0.15, 0.15, 0.20, 0.02, 0.08),
}
"""PARS scenario weights by the load's CARM situation (order of PARS_SCENARIOS)."""
SILENT_CANCEL_FIXED_RATE = 0.5
RNS_REJECTED_FIXED_RATE = 0.7
FILED_AFTER_ARRIVAL_RATE = 0.5
"""A load that reaches the border with no linked PARS gets one filed there (then released)."""
EXAM_RATE_READY = 0.03
EXAM_RATE_FLAWED = 0.10
EXAM_RELEASED_RATE = 0.85
PAYMENT_DELAY_RATE = 0.65
"""No RPP / short security with release_mode rpp: release waits 45 min-6 h for payment."""
PAYMENT_NEVER_RATE = 0.15
"""... or is not released within the log."""

# --- transport noise -----------------------------------------------------------------------

DEFAULT_DUPLICATE_RATE = 0.002
DEFAULT_MALFORMED_RATE = 0.001
MALFORMED_KINDS = (
    "not_json",
    "missing_field",
    "wrong_type",
    "naive_timestamp",
    "unknown_event_type",
    "key_mismatch",
)

_REJECT_REASONS = (
    "Consignee address incomplete",
    "Port of entry is not a frontier port",
    "Duplicate cargo control number",
    "Shipper name missing",
    "Cargo description must be in plain language",
)
_IMPORTER_PLACES = (
    "Maple Ridge",
    "Laurentian",
    "Fraser Valley",
    "Northshore",
    "Great Lakes",
    "Cobequid",
    "Red River",
    "Bow Valley",
    "Rideau",
    "Algonquin",
    "Okanagan",
    "Saguenay",
    "Muskoka",
    "Kawartha",
    "Niagara",
    "Chinook",
    "Tamarack",
    "Boreal",
    "Cedar Point",
    "Harbourfront",
    "Prairie Sky",
    "Lionsgate",
    "St. Maurice",
    "Georgian Bay",
    "Thousand Islands",
    "Acadia",
    "Mont-Royal",
    "Assiniboine",
    "Kootenay",
    "Hudson Bay",
    "Beaver Creek",
    "Stony Plain",
    "Grand River",
    "Pembina",
    "Elgin",
    "Champlain",
    "Miramichi",
    "Qu'Appelle",
    "Yellowhead",
    "Cariboo",
)
_IMPORTER_TRADES = (
    "Foods",
    "Auto Parts",
    "Building Supply",
    "Apparel",
    "Electronics",
    "Hardware",
    "Pharma",
    "Paper Products",
    "Furniture",
    "Plastics",
    "Steel",
    "Produce",
    "Pet Supply",
    "Tire",
    "Packaging",
    "Home Goods",
    "Sporting Goods",
    "Beverage",
    "Chemicals",
    "Lighting",
    "Farm Equipment",
    "Medical Supply",
    "Textiles",
    "Office Products",
    "Appliances",
)
_IMPORTER_KINDS = ("", " Distribution", " Wholesale", " Imports", " Trading", " Group")
_IMPORTER_SUFFIXES = (" Inc.", " Ltd.", " Corp.", " Ltée", " ULC")
_SHIPPERS = (
    "Midwest Packaging Co.",
    "Great Plains Foods LLC",
    "Ohio Valley Steel Inc.",
    "Carolina Textile Mills",
    "Lakeside Plastics LLC",
    "Heartland Auto Components",
    "Pacific Northwest Lumber Co.",
    "Keystone Paper Products",
    "Bluegrass Beverage Co.",
    "Gulf Coast Chemicals Inc.",
    "Sunbelt Appliance Corp.",
    "Empire State Electronics",
    "Rocky Mountain Outfitters",
    "Delta Farm Supply",
    "Twin Cities Medical LLC",
    "Badger State Dairy Co.",
    "Cascade Home Goods",
    "Motor City Parts Inc.",
    "Tri-State Hardware",
    "Magnolia Furniture Co.",
)
_FIRST_NAMES = (
    "Sophie",
    "Liam",
    "Chloé",
    "Noah",
    "Priya",
    "Mathieu",
    "Emma",
    "Raj",
    "Olivia",
    "Étienne",
    "Grace",
    "Daniel",
    "Amélie",
    "Jordan",
    "Fatima",
    "Marc",
    "Hannah",
    "Wei",
    "Isabelle",
    "Owen",
)
_LAST_NAMES = (
    "Tremblay",
    "Martin",
    "Singh",
    "Roy",
    "MacDonald",
    "Gagnon",
    "Chen",
    "Wilson",
    "Côté",
    "Campbell",
    "Bouchard",
    "Patel",
    "Morrison",
    "Lavoie",
    "Nguyen",
    "Fraser",
    "Leblanc",
    "Kaur",
)
_AREA_CODES = ("416", "905", "519", "613", "514", "450", "418", "506", "204", "403", "780", "604")


# --- configuration and output ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate. Topics are passed in (from Settings) so the generator reads no environment."""

    loads: int
    seed: int
    start: datetime = DEFAULT_START
    hours: float = 24.0
    midway_fixes: bool = True
    duplicate_rate: float = DEFAULT_DUPLICATE_RATE
    malformed_rate: float = DEFAULT_MALFORMED_RATE
    topic_emanifest: str = "emanifest.events"
    topic_rns: str = "rns.events"
    topic_carm: str = "carm.readiness"

    def __post_init__(self) -> None:
        if self.loads < 0:
            raise ValueError("loads must be >= 0")
        if not (self.hours > 0 and math.isfinite(self.hours)):
            raise ValueError("hours must be a positive number")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        for name in ("duplicate_rate", "malformed_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One line of the log: a record, or (`raw` set) a line that is deliberately not JSON."""

    topic: str
    key: str | None
    value: Any
    timestamp_ms: int
    raw: str | None = None


@dataclass(slots=True)
class SimulationStats:
    """Counts gathered while generating (filled in as records are yielded)."""

    loads: int = 0
    importers: int = 0
    carm_snapshots: int = 0
    midway_fixes: int = 0
    events: int = 0
    """Distinct valid events (CARM snapshots included; duplicates and malformed lines excluded)."""
    duplicates: int = 0
    malformed: int = 0
    records: int = 0
    """Lines written: events + duplicates + malformed."""
    event_types: Counter[str] = field(default_factory=Counter)
    malformed_kinds: Counter[str] = field(default_factory=Counter)
    importer_flaws: Counter[str] = field(default_factory=Counter)
    pars_scenarios: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)


# --- the world -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Importer:
    index: int
    bn: str
    legal_name: str
    contact: Contact
    broker: str
    flaw: str | None
    fix_at: int | None
    """Epoch second of its mid-way fix snapshot, if it gets one."""
    ready_fields: dict[str, Any]
    flawed_fields: dict[str, Any]
    """CarmSnapshot fields (without the envelope) as ready and as flawed."""

    def flaw_at(self, t: int, fixes: bool) -> str | None:
        if self.flaw is None:
            return None
        if fixes and self.fix_at is not None and t >= self.fix_at:
            return None
        return self.flaw

    def delegated_brokers(self, flaw: str | None) -> frozenset[str]:
        fields = self.ready_fields if flaw is None else self.flawed_fields
        return frozenset(d.broker_code for d in fields["delegations"] if d.access != "none")


@dataclass(frozen=True, slots=True)
class World:
    importers: tuple[Importer, ...]
    importer_cum_weights: tuple[float, ...]


def _required_surety(highest: float | None) -> float:
    if highest == 0:
        return 0.0
    return max(5000.0, 0.5 * highest) if highest is not None else 5000.0


def _importer_name(rng: random.Random, taken: set[str]) -> str:
    for _ in range(50):
        name = (
            rng.choice(_IMPORTER_PLACES)
            + " "
            + rng.choice(_IMPORTER_TRADES)
            + rng.choice(_IMPORTER_KINDS)
            + rng.choice(_IMPORTER_SUFFIXES)
        )
        if name not in taken:
            taken.add(name)
            return name
    name = f"{rng.choice(_IMPORTER_PLACES)} Holdings {len(taken)} Inc."
    taken.add(name)
    return name


def _contact(rng: random.Random, legal_name: str) -> Contact:
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    domain = "".join(ch for ch in legal_name.split(" ")[0].lower() if ch.isascii() and ch.isalpha())
    email_user = "".join(
        ch for ch in f"{first}.{last}".lower() if ch.isascii() and (ch.isalpha() or ch == ".")
    )
    phone = f"+1-{rng.choice(_AREA_CODES)}-555-01{rng.randrange(100):02d}"
    return Contact(name=f"{first} {last}", phone=phone, email=f"{email_user}@{domain or 'importer'}.ca")


def _delegations(rng: random.Random, broker: str, others: list[str]) -> list[Delegation]:
    """The usual broker, and sometimes a second one the importer also works with."""
    delegations = [
        Delegation(
            broker_code=broker,
            access="business_management" if rng.random() < 0.7 else "program_management",
            transaction_visibility=True,
        )
    ]
    if rng.random() < 0.3:
        delegations.append(
            Delegation(
                broker_code=rng.choice(others), access="business_management", transaction_visibility=True
            )
        )
    return delegations


def _highest_duties(rng: random.Random, flaw: str | None) -> float | None:
    """Highest monthly duties and taxes; a security flaw needs a real amount to fall short of."""
    r = rng.random()
    if flaw in ("security_short", "security_none"):
        return float(round(math.exp(rng.gauss(math.log(30000), 1.0)), -2)) + 1000.0
    if r < 0.05:
        return 0.0  # zero-duty importer: RPP without security is enough
    if r < 0.08:
        return None  # unknown history: the minimum applies
    return float(round(math.exp(rng.gauss(math.log(20000), 1.2)), -2))


def _security(rng: random.Random, highest: float | None, required: float) -> Security:
    """Security posted by a ready importer: enough for `required`, as cash or (usually) surety."""
    if required == 0:
        return Security(kind="none", amount_cad=0.0)
    if rng.random() < 0.15:
        cash_required = max(5000.0, highest or 0.0)
        return Security(
            kind="cash", amount_cad=float(math.ceil(cash_required * rng.uniform(1.0, 1.5) / 1000) * 1000)
        )
    return Security(
        kind="surety", amount_cad=float(math.ceil(required * rng.uniform(1.0, 2.5) / 1000) * 1000)
    )


def _undelegated(rng: random.Random, broker: str, others: list[str]) -> list[Delegation]:
    """Delegations of a not_delegated importer: another broker only, access none, or nothing."""
    mode = rng.random()
    if mode < 0.5:
        return [
            Delegation(
                broker_code=rng.choice(others), access="business_management", transaction_visibility=True
            )
        ]
    if mode < 0.75:
        return [Delegation(broker_code=broker, access="none", transaction_visibility=False)]
    return []


def _flawed_fields(
    rng: random.Random,
    flaw: str | None,
    ready: dict[str, Any],
    others: list[str],
    required: float,
    start: datetime,
) -> dict[str, Any]:
    """The importer's CARM record with its flaw applied (a copy of `ready` when it has none)."""
    flawed = dict(ready)
    if flaw == "not_delegated":
        flawed["delegations"] = _undelegated(rng, ready["delegations"][0].broker_code, others)
    elif flaw == "delegation_incomplete":
        flawed["delegations"] = [
            d.model_copy(update={"transaction_visibility": False}) for d in ready["delegations"]
        ]
    elif flaw == "no_rpp":
        flawed["rpp_enrolled"] = False
        flawed["security"] = Security(kind="none", amount_cad=0.0)
    elif flaw == "security_short":
        short = math.floor(required * rng.uniform(0.3, 0.95) / 500) * 500
        flawed["security"] = Security(kind="surety", amount_cad=float(min(short, required - 500)))
    elif flaw == "security_none":
        flawed["security"] = Security(kind="none", amount_cad=0.0)
    elif flaw == "login_dormant":
        flawed["last_portal_login_at"] = start - timedelta(seconds=int(rng.uniform(181, 420) * DAY))
    elif flaw == "not_registered":
        if rng.random() < 0.5:
            flawed.update(
                ccp_registered=False, rm_account_linked=False, delegations=[], last_portal_login_at=None
            )
        else:
            flawed["rm_account_linked"] = False
    return flawed


def _build_importer(
    rng: random.Random,
    index: int,
    bn: str,
    flaw: str | None,
    fix_at: int | None,
    start: datetime,
    taken: set[str],
) -> Importer:
    """One importer, its CARM record as ready and as flawed (draws in a fixed order: name first)."""
    legal_name = _importer_name(rng, taken)
    contact = _contact(rng, legal_name)
    broker = rng.choices([b[0] for b in BROKERS], weights=[b[2] for b in BROKERS])[0]
    others = [b[0] for b in BROKERS if b[0] != broker]
    delegations = _delegations(rng, broker, others)
    highest = _highest_duties(rng, flaw)
    required = _required_surety(highest)
    security = _security(rng, highest, required)
    last_login = start - timedelta(seconds=int(rng.uniform(0.5, 90) * DAY))
    ready: dict[str, Any] = {
        "importer_bn": bn,
        "legal_name": legal_name,
        "ccp_registered": True,
        "rm_account_linked": True,
        "delegations": delegations,
        "rpp_enrolled": True,
        "security": security,
        "highest_monthly_duties_taxes_cad": highest,
        "last_portal_login_at": last_login,
        "contact": contact,
    }
    flawed = _flawed_fields(rng, flaw, ready, others, required, start)
    if fix_at is not None:
        # The fix comes with a fresh login: the importer just worked in the portal.
        ready = dict(ready, last_portal_login_at=datetime.fromtimestamp(fix_at, UTC))
    return Importer(index, bn, legal_name, contact, broker, flaw, fix_at, ready, flawed)


def importer_count(loads: int) -> int:
    """A few hundred importers for thousands of loads; at least 60, at most 5000."""
    return min(5000, max(60, loads // 8))


def build_world(config: SimulationConfig) -> World:
    rng = random.Random(f"{config.seed}:world")
    n = importer_count(config.loads)
    flaws: list[str | None] = []
    for name, rate in IMPORTER_FLAW_RATES.items():
        flaws.extend([name] * max(1, round(rate * n)))
    flaws.extend([None] * max(0, n - len(flaws)))
    rng.shuffle(flaws)
    flawed_indices = [i for i, f in enumerate(flaws) if f is not None]
    fixed = set(rng.sample(flawed_indices, max(1, round(MIDWAY_FIX_RATE * len(flawed_indices)))))
    start_s = int(config.start.timestamp())
    period_s = int(config.hours * HOUR)
    bns: set[str] = set()
    taken_names: set[str] = set()
    importers = []
    for i, flaw in enumerate(flaws):
        while True:
            bn = f"{rng.randrange(100_000_000, 1_000_000_000)}RM{'0001' if rng.random() < 0.85 else '0002'}"
            if bn not in bns:
                bns.add(bn)
                break
        fix_at = start_s + LEAD_IN_S + int(period_s * rng.uniform(0.2, 0.8)) if i in fixed else None
        importers.append(_build_importer(rng, i, bn, flaw, fix_at, config.start, taken_names))
    # Skewed volume: a few importers ship a lot, most ship a little.
    weights = [1.0 / (rank + 1) ** 0.6 for rank in range(n)]
    rng.shuffle(weights)
    return World(tuple(importers), tuple(accumulate(weights)))


# --- planning one load ---------------------------------------------------------------------

Planned = tuple[int, int, str, tuple[Any, ...]]
"""(epoch second, sequence within the load, kind, arguments)."""


@dataclass(slots=True)
class LoadPlan:
    index: int
    ccn: str
    carrier_code: str
    trip_number: str
    load_ref: str
    importer: Importer
    shipper_name: str
    broker_code: str | None
    broker_name: str | None
    release_mode: Literal["rpp", "prepaid"]
    dispatch_team: str | None
    transaction_number: str
    events: list[Planned]
    scenario: str
    outcome: str


_CARRIER_CODES = tuple(c[0] for c in CARRIERS)
_CARRIER_CUM = tuple(accumulate(c[1] for c in CARRIERS))
_PORT_CODES = tuple(PORT_SHARES)
_PORT_CUM = tuple(accumulate(PORT_SHARES.values()))
_BROKER_NAMES = {b[0]: b[1] for b in BROKERS}
_BROKER_CODES = tuple(_BROKER_NAMES)
_ANSWERS = tuple(CARGO_ANSWER_WEIGHTS)
_ANSWER_CUM = tuple(accumulate(CARGO_ANSWER_WEIGHTS.values()))
_PARS_CUM = {k: tuple(accumulate(v)) for k, v in PARS_WEIGHTS.items()}


def _pick(rng: random.Random, items: tuple[str, ...], cum: tuple[float, ...]) -> str:
    return items[min(bisect(cum, rng.random() * cum[-1]), len(items) - 1)]


def load_base_time(i: int, config: SimulationConfig) -> int:
    """Lower bound of load i's cargo_reported time (epoch s); non-decreasing in i."""
    start_s = int(config.start.timestamp())
    return start_s + LEAD_IN_S + int(i * config.hours * HOUR / max(config.loads, 1))


@dataclass(frozen=True, slots=True)
class _LoadParties:
    """Who and where, drawn before any event: the load's importer, carrier, port and broker."""

    importer: Importer
    flaw: str | None
    """The importer's CARM flaw at the time the cargo is reported."""
    carrier: str
    port: str
    broker: str | None
    release_mode: Literal["rpp", "prepaid"]
    team: str | None
    profile: str
    """PARS_WEIGHTS key: ready, mild or blocking."""
    release_blocking: bool
    """Release waits for payment (release_mode rpp with no RPP or short security)."""


def _draw_parties(rng: random.Random, world: World, config: SimulationConfig, t_rep: int) -> _LoadParties:
    """The load's parties, and how ready its CARM situation is for its PARS and release."""
    cum = world.importer_cum_weights
    importer = world.importers[min(bisect(cum, rng.random() * cum[-1]), len(world.importers) - 1)]
    flaw = importer.flaw_at(t_rep, config.midway_fixes)
    carrier = _pick(rng, _CARRIER_CODES, _CARRIER_CUM)
    port = _pick(rng, _PORT_CODES, _PORT_CUM)
    broker: str | None = importer.broker
    r = rng.random()
    if r < BROKER_MISSING_RATE:
        broker = None
    elif r < BROKER_MISSING_RATE + OTHER_BROKER_RATE:
        broker = rng.choice(_BROKER_CODES)
    prepaid_rate = PREPAID_RATE_NO_RPP if importer.flaw == "no_rpp" else PREPAID_RATE
    release_mode: Literal["rpp", "prepaid"] = "prepaid" if rng.random() < prepaid_rate else "rpp"
    team = None if rng.random() < DISPATCH_TEAM_MISSING_RATE else PORT_TEAMS.get(port)
    blocking = (
        broker is None
        or flaw == "not_registered"
        or (flaw != "unknown" and broker not in importer.delegated_brokers(flaw))
    )
    profile = "blocking" if blocking else "mild" if flaw is not None else "ready"
    release_blocking = release_mode == "rpp" and flaw in ("no_rpp", "security_short", "security_none")
    return _LoadParties(importer, flaw, carrier, port, broker, release_mode, team, profile, release_blocking)


def _load_ids(i: int, seed: int, carrier: str, broker: str | None) -> tuple[str, str, str]:
    """(CCN, trip number, transaction number): unique per load and seed, no random draw."""
    ccn = f"{carrier}{(310_000_000 + i * 7919 + seed * 104_729) % 1_000_000_000:09d}"
    trip = f"{carrier}{(4_200_000 + i * 104_729 + seed * 7919) % 10_000_000:07d}"
    account = 10_000 + 7_919 * (_BROKER_CODES.index(broker) if broker else 8) % 90_000
    transaction = f"{account:05d}{(i * 15_485_863 + seed) % 1_000_000_000:09d}"
    return ccn, trip, transaction


EtaChange = tuple[int, int, str]
"""(epoch second of the change, new ETA, new port)."""


@dataclass(slots=True)
class _Story:
    """One load's events as they are planned; the phases below append to it in draw order."""

    rng: random.Random
    t_rep: int
    """When the cargo is first reported."""
    events: list[Planned] = field(default_factory=list)
    links: list[tuple[int, bool]] = field(default_factory=list)
    """(time, linked?) from matched/9/34 versus document_not_on_file."""
    t_acc: int | None = None
    """When CBSA accepted the cargo data, if it did."""

    @property
    def t_ready(self) -> int:
        return self.t_acc if self.t_acc is not None else self.t_rep + 180

    def add(self, t: float, kind: str, *args: Any) -> None:
        self.events.append((int(t), len(self.events), kind, args))

    def link(self, t: float, first_indicator: int = 1) -> int:
        """The broker's PARS is received (1 or 34), then linked (9) and matched; returns the link time."""
        uniform = self.rng.uniform
        t = max(int(t), self.t_rep + MINUTE)
        self.add(t, "rns", first_indicator)
        t9 = int(t + uniform(60, 600))
        self.add(t9, "rns", 9)
        t_link = t if first_indicator == 34 else t9
        if self.t_acc is not None:
            t_match = max(t9, self.t_acc) + int(uniform(5, 60))
            self.add(t_match, "notice", "matched", None)
            if self.rng.random() < 0.35:
                self.add(t_match + uniform(60, 180), "notice", "document_package_complete", None)
        self.links.append((t_link, True))
        return t_link

    def not_matched(self) -> None:
        t = self.t_ready + self.rng.uniform(30, 300)
        self.add(t, "notice", "not_matched", "No release document linked to the cargo")

    def linked_at(self, t: int) -> bool:
        state = False
        for when, linked in sorted(self.links):
            if when <= t:
                state = linked
        return state

    def release(self, t: float) -> None:
        """CBSA releases the load, in one of the ways RNS and notices say so."""
        rng = self.rng
        r = rng.random()
        if r < 0.85:
            self.add(t, "rns", 4)
            if rng.random() < 0.6:
                self.add(t + rng.uniform(5, 90), "notice", "released", None)
        elif r < 0.93:
            self.add(t, "notice", "released", None)
        elif r < 0.97:
            self.add(t, "rns", 23)
            if rng.random() < 0.7:
                self.add(t + rng.uniform(5, 90), "notice", "authorized_to_deliver", None)
        else:
            self.add(t, "rns", 8)


def _eta_at(changes: list[EtaChange], t: int) -> tuple[int, str]:
    """(ETA, port) as known at time t."""
    current = changes[0]
    for change in changes:
        if change[0] <= t:
            current = change
    return current[1], current[2]


def _report_cargo(story: _Story, port: str) -> list[EtaChange]:
    """cargo_reported some hours (rarely under one) before the ETA, then 0-2 ETA or port changes."""
    rng, uniform, t_rep = story.rng, story.rng.uniform, story.t_rep
    r = rng.random()
    if r < LATE_EMANIFEST_RATE:
        lead = uniform(20, 55) * MINUTE
    elif r < LATE_EMANIFEST_RATE + SHORT_HAUL_RATE:
        lead = uniform(60, 150) * MINUTE
    else:
        lead = uniform(150, 720) * MINUTE
    eta0 = int(t_rep + lead)
    story.add(t_rep, "reported", eta0, port)
    changes: list[EtaChange] = [(t_rep, eta0, port)]
    r = rng.random()
    n_changes = 2 if r < ETA_TWO_CHANGES_RATE else 1 if r < ETA_TWO_CHANGES_RATE + ETA_ONE_CHANGE_RATE else 0
    for _ in range(n_changes):
        last_t, cur_eta, cur_port = changes[-1]
        lo, hi = last_t + 10 * MINUTE, cur_eta - 20 * MINUTE
        if hi <= lo:
            break
        t = int(uniform(lo, hi))
        if rng.random() < ETA_LATER_SHARE:
            new_eta = cur_eta + int(uniform(15, 180) * MINUTE)
        else:
            new_eta = max(cur_eta - int(uniform(10, 60) * MINUTE), t + 20 * MINUTE)
        new_port = cur_port
        if rng.random() < PORT_CHANGE_RATE:
            new_port = rng.choice([p for p in _PORT_CODES if p != cur_port])
        changes.append((t, new_eta, new_port))
        story.add(t, "eta", new_eta, new_port if new_port != cur_port else None)
    return changes


def _answer_cargo(story: _Story, changes: list[EtaChange]) -> None:
    """CBSA accepts the cargo data, or rejects it (then it is usually fixed), or never answers."""
    rng, uniform = story.rng, story.rng.uniform
    answer = _pick(rng, _ANSWERS, _ANSWER_CUM)
    if answer == "accepted":
        story.t_acc = int(story.t_rep + uniform(120, 240))
        story.add(story.t_acc, "accepted")
    elif answer.startswith("rejected"):
        t_rej = int(story.t_rep + uniform(120, 240))
        story.add(t_rej, "rejected", rng.choice(_REJECT_REASONS))
        if answer == "rejected_fixed":
            t_resub = int(t_rej + uniform(10, 90) * MINUTE)
            eta_now, port_now = _eta_at(changes, t_resub)
            story.add(t_resub, "reported", eta_now, port_now)
            story.t_acc = int(t_resub + uniform(120, 240))
            story.add(story.t_acc, "accepted")
    if story.t_acc is not None and rng.random() < 0.25:
        story.add(story.t_acc + uniform(30, 90), "notice", "cargo_complete", None)


def _choose_scenario(rng: random.Random, broker: str | None, profile: str) -> str:
    """The load's PARS scenario (PARS_SCENARIOS, or early_rns), weighted by its CARM profile."""
    early = rng.random() < EARLY_RNS_RATE and broker is not None
    if early:
        return "early_rns"
    cum = _PARS_CUM[profile]
    scenario = PARS_SCENARIOS[min(bisect(cum, rng.random() * cum[-1]), len(PARS_SCENARIOS) - 1)]
    return "never" if broker is None else scenario  # no broker named: nobody files a PARS


def _file_pars(story: _Story, scenario: str, ref_eta: int, final_eta: int) -> bool:
    """The broker's PARS and CBSA's link to the cargo, per scenario; True when left unlinked."""
    rng, uniform, t_ready = story.rng, story.rng.uniform, story.t_ready
    on_time_lo, on_time_hi = t_ready + 120, ref_eta - 125 * MINUTE
    t_on_time = uniform(on_time_lo, on_time_hi) if on_time_hi > on_time_lo else on_time_lo + uniform(0, 900)
    if scenario == "early_rns":
        t_early = story.t_rep - int(uniform(60, EARLY_RNS_MAX_S))
        story.add(t_early, "rns", 34)
        story.links.append((t_early, True))
        story.link(t_on_time, 1)
    elif scenario == "on_time":
        story.link(t_on_time, 34 if rng.random() < 0.3 else 1)
    elif scenario == "not_matched_then_matched":
        story.not_matched()
        # Usually fixed before the PARS window opens; late fixes are the late_* scenarios.
        story.link(uniform(t_ready + 20 * MINUTE, max(t_ready + 25 * MINUTE, ref_eta - 130 * MINUTE)))
    elif scenario == "late_warning":
        if rng.random() < 0.5:
            story.not_matched()
        story.link(max(final_eta - uniform(35, 115) * MINUTE, t_ready + 5 * MINUTE))
    elif scenario == "late_critical":
        story.not_matched()
        story.link(max(final_eta - uniform(-10, 29) * MINUTE, t_ready + 5 * MINUTE))
    elif scenario == "never":
        story.not_matched()
        return True
    elif scenario == "silent_cancel":
        return _silently_cancelled(story, story.link(t_on_time), final_eta)
    elif scenario == "rns_rejected":
        t_rej = max(int(t_on_time), story.t_rep + MINUTE)
        story.add(t_rej, "rns", 2 if rng.random() < 0.6 else 14)
        if rng.random() < RNS_REJECTED_FIXED_RATE:
            story.link(t_rej + uniform(15, 90) * MINUTE)
        else:
            return True
    return False


def _silently_cancelled(story: _Story, t_link: int, final_eta: int) -> bool:
    """The link is dropped (document_not_on_file) and maybe re-filed; True when it is not."""
    lo, hi = t_link + 10 * MINUTE, final_eta - 10 * MINUTE
    t_dnof = int(story.rng.uniform(lo, hi)) if hi > lo else t_link + 10 * MINUTE
    story.add(t_dnof, "notice", "document_not_on_file", "Release document not on file")
    story.links.append((t_dnof, False))
    if story.rng.random() < SILENT_CANCEL_FIXED_RATE:
        story.link(t_dnof + story.rng.uniform(20, 150) * MINUTE)
        return False
    return True


def _arrival_time(rng: random.Random, changes: list[EtaChange], t_rep: int) -> int:
    """The truck reaches the port near its final ETA, never before the last change or the report."""
    arrival = changes[-1][1] + int(max(-30 * MINUTE, min(45 * MINUTE, rng.gauss(0, 12 * MINUTE))))
    return max(arrival, changes[-1][0] + 5 * MINUTE, t_rep + 5 * MINUTE)


def _cancel_or_arrive(story: _Story, parties: _LoadParties, arrival: int, unfixed: bool) -> str:
    """Cancelled before arrival (the story is cut short), or the truck arrives. Returns the outcome."""
    if story.rng.random() < CANCEL_RATE and arrival - 10 * MINUTE > story.t_rep + 5 * MINUTE:
        t_cancel = int(story.rng.uniform(story.t_rep + 5 * MINUTE, arrival - 10 * MINUTE))
        story.events = [e for e in story.events if e[0] < t_cancel]
        story.add(t_cancel, "cancelled")
        return "cancelled"
    rng = story.rng
    if rng.random() < 0.85:
        story.add(arrival, "notice", "reported", None)
        if rng.random() < 0.75:
            story.add(arrival + rng.uniform(60, 240), "notice", "arrived", None)
    else:
        story.add(arrival, "notice", "arrived", None)
    return _release_or_hold(story, parties, arrival, unfixed)


def _release_or_hold(story: _Story, parties: _LoadParties, arrival: int, unfixed: bool) -> str:
    """At the border: released, examined, delayed (payment, late PARS) or held. Returns the outcome."""
    rng, uniform = story.rng, story.rng.uniform
    later_links = [when for when, linked in story.links if linked and when > arrival]
    if story.t_acc is None:
        return "not_released"  # no eManifest on file: the truck waits at the plaza
    if story.linked_at(arrival):
        exam_rate = EXAM_RATE_READY if parties.flaw is None else EXAM_RATE_FLAWED
        if rng.random() < exam_rate:
            return _examine(story, arrival)
        if parties.release_blocking and (r := rng.random()) < PAYMENT_DELAY_RATE + PAYMENT_NEVER_RATE:
            if r < PAYMENT_DELAY_RATE:
                story.release(arrival + uniform(45, 360) * MINUTE)
                return "released_late"
            return "not_released"
        story.release(arrival + uniform(2, 25) * MINUTE)
        return "released"
    if later_links:
        story.release(max(min(later_links), arrival) + uniform(5, 20) * MINUTE)
        return "released_late"
    if unfixed and rng.random() < FILED_AFTER_ARRIVAL_RATE:
        t_link = story.link(arrival + uniform(40, 180) * MINUTE)
        story.release(t_link + uniform(5, 20) * MINUTE)
        return "released_late"
    return "not_released"


def _examine(story: _Story, arrival: int) -> str:
    """Referred for examination (RNS 5 and/or a held notice), then usually released hours later."""
    rng, uniform = story.rng, story.rng.uniform
    t_exam = arrival + uniform(5, 25) * MINUTE
    if rng.random() < 0.8:
        story.add(t_exam, "rns", 5)
        if rng.random() < 0.6:
            story.add(t_exam + uniform(5, 120), "notice", "held", "Referred for examination")
    else:
        story.add(t_exam, "notice", "held", "Referred for examination")
    if rng.random() < EXAM_RELEASED_RATE:
        story.release(t_exam + uniform(2, 8) * HOUR)
        return "examined_released"
    return "examined_held"


def plan_load(i: int, world: World, config: SimulationConfig) -> LoadPlan:
    """Plan every event of load i, sorted by time; none before load_base_time(i) - EARLY_RNS_MAX_S.

    The phases run in a fixed order (parties, report and ETA changes, CBSA's answer, PARS,
    arrival and release) because each draws from the load's own generator in turn.
    """
    rng = random.Random(f"{config.seed}:load:{i}")
    t_rep = load_base_time(i, config) + int(rng.random() * config.hours * HOUR / max(config.loads, 1))
    parties = _draw_parties(rng, world, config, t_rep)
    ccn, trip, transaction = _load_ids(i, config.seed, parties.carrier, parties.broker)
    story = _Story(rng, t_rep)
    changes = _report_cargo(story, parties.port)
    _answer_cargo(story, changes)
    scenario = _choose_scenario(rng, parties.broker, parties.profile)
    final_eta = changes[-1][1]
    unfixed = _file_pars(story, scenario, ref_eta=min(changes[0][1], final_eta), final_eta=final_eta)
    outcome = _cancel_or_arrive(story, parties, _arrival_time(rng, changes, t_rep), unfixed)
    story.events.sort()
    broker = parties.broker
    return LoadPlan(
        index=i,
        ccn=ccn,
        carrier_code=parties.carrier,
        trip_number=trip,
        load_ref=f"LD{i + 1:07d}",
        importer=parties.importer,
        shipper_name=rng.choice(_SHIPPERS),
        broker_code=broker,
        broker_name=_BROKER_NAMES[broker] if broker else None,
        release_mode=parties.release_mode,
        dispatch_team=parties.team,
        transaction_number=transaction,
        events=story.events,
        scenario=scenario,
        outcome=outcome,
    )


# --- building records ------------------------------------------------------------------------


def _ts(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _cargo_reported(plan: LoadPlan, common: dict[str, Any], eta: int, port: str) -> CargoReported:
    """A cargo_reported event: the first report, or the resubmission after a rejection."""
    return CargoReported(
        **common,
        event_type="cargo_reported",
        ccn=plan.ccn,
        carrier_code=plan.carrier_code,
        trip_number=plan.trip_number,
        load_ref=plan.load_ref,
        port_of_entry=port,
        eta=_ts(eta),
        importer_bn=plan.importer.bn,
        importer_name=plan.importer.legal_name,
        shipper_name=plan.shipper_name,
        broker_code=plan.broker_code,
        broker_name=plan.broker_name,
        release_mode=plan.release_mode,
        dispatch_team=plan.dispatch_team,
    )


def _event_value(
    plan: LoadPlan, kind: str, args: tuple[Any, ...], t: int, event_id: str
) -> tuple[bool, dict[str, Any]]:
    """The event as a validated model dumped to JSON types; True when it goes to the RNS topic."""
    common: dict[str, Any] = {"event_id": event_id, "occurred_at": _ts(t), "schema_version": SCHEMA_VERSION}
    ccn = plan.ccn
    model: Any
    if kind == "reported":
        model = _cargo_reported(plan, common, *args)
    elif kind == "accepted":
        model = CargoAccepted(**common, event_type="cargo_accepted", ccn=ccn)
    elif kind == "rejected":
        model = CargoRejected(**common, event_type="cargo_rejected", ccn=ccn, reason=args[0])
    elif kind == "eta":
        model = EtaUpdated(
            **common, event_type="eta_updated", ccn=ccn, eta=_ts(args[0]), port_of_entry=args[1]
        )
    elif kind == "notice":
        notice: NoticeKind = args[0]
        model = Notice(**common, event_type="notice", ccn=ccn, notice=notice, text=args[1])
    elif kind == "cancelled":
        model = Cancelled(**common, event_type="cancelled", ccn=ccn)
    elif kind == "rns":
        indicator: int = args[0]
        model = RnsStatus(
            **common,
            event_type="rns_status",
            ccn=ccn,
            processing_indicator=indicator,
            transaction_number=plan.transaction_number,
            broker_code=plan.broker_code,
            description=KNOWN_INDICATORS.get(indicator),
        )
        return True, model.model_dump(mode="json")
    else:  # pragma: no cover - the planner only makes the kinds above
        raise ValueError(f"unknown planned kind {kind!r}")
    return False, model.model_dump(mode="json")


def _snapshot_value(importer: Importer, t: int, event_id: str, ready: bool) -> dict[str, Any]:
    fields = importer.ready_fields if ready else importer.flawed_fields
    snapshot = CarmSnapshot(
        event_id=event_id,
        occurred_at=_ts(t),
        schema_version=1,
        event_type="carm_snapshot",
        **fields,
    )
    return snapshot.model_dump(mode="json")


def _naive(stamp: str) -> str:
    return stamp.removesuffix("Z")


def _malformed(rng: random.Random, record: SimRecord, kind: str, event_id: str) -> SimRecord:
    """A broken copy of `record` (which is not changed) with its own event_id."""
    value = dict(record.value)
    value["event_id"] = event_id
    key = record.key
    body_key = "importer_bn" if value.get("event_type") == "carm_snapshot" else "ccn"
    if kind == "not_json":
        text = json.dumps(
            {"topic": record.topic, "key": key, "value": value, "timestamp": record.timestamp_ms},
            separators=(",", ":"),
        )
        return SimRecord(record.topic, key, None, record.timestamp_ms, raw=text[: max(10, len(text) // 2)])
    if kind == "missing_field":
        value.pop(rng.choice([body_key, "occurred_at", "event_type"]))
    elif kind == "wrong_type":
        if "processing_indicator" in value:
            value["processing_indicator"] = str(value["processing_indicator"])
        else:
            value["schema_version"] = str(value["schema_version"])
    elif kind == "naive_timestamp":
        value["occurred_at"] = _naive(value["occurred_at"])
    elif kind == "unknown_event_type":
        value["event_type"] = "conveyance_reported"
    elif kind == "key_mismatch":
        original = str(value[body_key])
        key = original[:-1] + ("7" if original[-1] != "7" else "3")
    return SimRecord(record.topic, key, value, record.timestamp_ms)


# --- the merged stream -------------------------------------------------------------------------


HeapEntry = tuple[int, int, int, Any]
"""(epoch s, rank, tie, payload); rank 0 = CARM fix (Importer), 1 = load event ((LoadPlan, position)),
2 = re-send (SimRecord)."""
_FIX, _LOAD_EVENT, _RESEND = 0, 1, 2


class _Stream:
    """The state of one simulate() run: the world, the time-ordered heap, event ids and transport noise."""

    def __init__(self, config: SimulationConfig, stats: SimulationStats) -> None:
        self.config = config
        self.stats = stats
        self.world = build_world(config)
        self.noise = random.Random(f"{config.seed}:noise")
        self.heap: list[HeapEntry] = []
        self.counter = 0
        self.next_load = 0
        stats.importers = len(self.world.importers)
        for importer in self.world.importers:
            if importer.flaw is not None:
                stats.importer_flaws[importer.flaw] += 1
            if config.midway_fixes and importer.fix_at is not None:
                heapq.heappush(self.heap, (importer.fix_at, _FIX, importer.index, importer))

    def next_id(self) -> str:
        self.counter += 1
        return f"sim{self.config.seed}-{self.counter:09d}"

    def emit(self, record: SimRecord, event_type: str) -> Iterator[SimRecord]:
        """Yield a valid record; maybe schedule its re-send and add a malformed copy (transport noise)."""
        stats, noise = self.stats, self.noise
        stats.events += 1
        stats.records += 1
        stats.event_types[event_type] += 1
        yield record
        if noise.random() < self.config.duplicate_rate:
            resend_at = record.timestamp_ms // 1000 + noise.randint(1, 20)
            heapq.heappush(self.heap, (resend_at, _RESEND, stats.duplicates, record))
            stats.duplicates += 1
        if noise.random() < self.config.malformed_rate:
            kind = noise.choice(MALFORMED_KINDS)
            stats.malformed += 1
            stats.records += 1
            stats.malformed_kinds[kind] += 1
            yield _malformed(noise, record, kind, self.next_id() + "-bad")

    def emit_snapshot(self, importer: Importer, t: int, ready: bool) -> Iterator[SimRecord]:
        value = _snapshot_value(importer, t, self.next_id(), ready=ready)
        self.stats.carm_snapshots += 1
        record = SimRecord(self.config.topic_carm, importer.bn, value, t * 1000)
        yield from self.emit(record, "carm_snapshot")

    def initial_snapshots(self) -> Iterator[SimRecord]:
        """CARM snapshots for every known importer, at the start, before any shipment event."""
        start_s = int(self.config.start.timestamp())
        for importer in self.world.importers:
            if importer.flaw != "unknown":
                yield from self.emit_snapshot(importer, start_s, ready=importer.flaw is None)

    def plan_due_loads(self) -> None:
        """Plan loads until the next one cannot precede the heap's earliest entry (bounded memory)."""
        config, stats, heap = self.config, self.stats, self.heap
        while self.next_load < config.loads and (
            not heap or load_base_time(self.next_load, config) - EARLY_RNS_MAX_S <= heap[0][0]
        ):
            plan = plan_load(self.next_load, self.world, config)
            stats.loads += 1
            stats.pars_scenarios[plan.scenario] += 1
            stats.outcomes[plan.outcome] += 1
            heapq.heappush(heap, (plan.events[0][0], _LOAD_EVENT, plan.index * 1000, (plan, 0)))
            self.next_load += 1

    def emit_next(self) -> Iterator[SimRecord]:
        """Pop the earliest heap entry and yield what it stands for."""
        t, rank, _tie, payload = heapq.heappop(self.heap)
        if rank == _FIX:
            self.stats.midway_fixes += 1
            yield from self.emit_snapshot(payload, t, ready=True)
        elif rank == _LOAD_EVENT:
            yield from self.emit_load_event(t, *payload)
        else:
            self.stats.records += 1
            yield SimRecord(payload.topic, payload.key, payload.value, t * 1000)

    def emit_load_event(self, t: int, plan: LoadPlan, pos: int) -> Iterator[SimRecord]:
        """Yield event `pos` of the plan, scheduling the plan's next event first."""
        _, _, kind, args = plan.events[pos]
        if pos + 1 < len(plan.events):
            entry = (plan.events[pos + 1][0], _LOAD_EVENT, plan.index * 1000 + pos + 1, (plan, pos + 1))
            heapq.heappush(self.heap, entry)
        is_rns, value = _event_value(plan, kind, args, t, self.next_id())
        topic = self.config.topic_rns if is_rns else self.config.topic_emanifest
        yield from self.emit(SimRecord(topic, plan.ccn, value, t * 1000), value["event_type"])


def simulate(config: SimulationConfig, stats: SimulationStats | None = None) -> Iterator[SimRecord]:
    """Yield the log's records in event-time order (see the module docstring)."""
    stream = _Stream(config, stats if stats is not None else SimulationStats())
    yield from stream.initial_snapshots()
    while True:
        stream.plan_due_loads()
        if not stream.heap:
            break
        yield from stream.emit_next()


def write_simulation(
    config: SimulationConfig,
    path: Path,
    on_progress: Callable[[SimulationStats], None] | None = None,
    progress_every: int = 20_000,
) -> SimulationStats:
    """Write the simulated log to `path` (`.gz` compresses); call on_progress every N records."""
    stats = SimulationStats()
    with LogWriter(path) as writer:
        for n, record in enumerate(simulate(config, stats), start=1):
            if record.raw is not None:
                writer.write_raw_line(record.raw)
            else:
                writer.write(record.topic, record.key, record.value, record.timestamp_ms)
            if on_progress is not None and n % progress_every == 0:
                on_progress(stats)
    return stats
