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
    "0352": 0.12,
    "0211": 0.04,
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
    "0352": "quebec",
    "0211": "atlantic",
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


def _build_importer(
    rng: random.Random,
    index: int,
    bn: str,
    flaw: str | None,
    fix_at: int | None,
    start: datetime,
    taken: set[str],
) -> Importer:
    legal_name = _importer_name(rng, taken)
    contact = _contact(rng, legal_name)
    broker = rng.choices([b[0] for b in BROKERS], weights=[b[2] for b in BROKERS])[0]
    others = [b[0] for b in BROKERS if b[0] != broker]
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
    r = rng.random()
    if flaw in ("security_short", "security_none"):
        highest: float | None = float(round(math.exp(rng.gauss(math.log(30000), 1.0)), -2)) + 1000.0
    elif r < 0.05:
        highest = 0.0  # zero-duty importer: RPP without security is enough
    elif r < 0.08:
        highest = None  # unknown history: the minimum applies
    else:
        highest = float(round(math.exp(rng.gauss(math.log(20000), 1.2)), -2))
    required = _required_surety(highest)
    if required == 0:
        security = Security(kind="none", amount_cad=0.0)
    elif rng.random() < 0.15:
        cash_required = max(5000.0, highest or 0.0)
        security = Security(
            kind="cash", amount_cad=float(math.ceil(cash_required * rng.uniform(1.0, 1.5) / 1000) * 1000)
        )
    else:
        security = Security(
            kind="surety", amount_cad=float(math.ceil(required * rng.uniform(1.0, 2.5) / 1000) * 1000)
        )
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
    flawed = dict(ready)
    if flaw == "not_delegated":
        mode = rng.random()
        if mode < 0.5:
            flawed["delegations"] = [
                Delegation(
                    broker_code=rng.choice(others), access="business_management", transaction_visibility=True
                )
            ]
        elif mode < 0.75:
            flawed["delegations"] = [
                Delegation(broker_code=broker, access="none", transaction_visibility=False)
            ]
        else:
            flawed["delegations"] = []
    elif flaw == "delegation_incomplete":
        flawed["delegations"] = [d.model_copy(update={"transaction_visibility": False}) for d in delegations]
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
            flawed["ccp_registered"] = False
            flawed["rm_account_linked"] = False
            flawed["delegations"] = []
            flawed["last_portal_login_at"] = None
        else:
            flawed["rm_account_linked"] = False
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


def plan_load(i: int, world: World, config: SimulationConfig) -> LoadPlan:
    """Plan every event of load i, sorted by time; none before load_base_time(i) - EARLY_RNS_MAX_S."""
    rng = random.Random(f"{config.seed}:load:{i}")
    uniform = rng.uniform
    t_rep = load_base_time(i, config) + int(rng.random() * config.hours * HOUR / max(config.loads, 1))

    idx = min(
        bisect(world.importer_cum_weights, rng.random() * world.importer_cum_weights[-1]),
        len(world.importers) - 1,
    )
    importer = world.importers[idx]
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
    release_blocking = release_mode == "rpp" and flaw in ("no_rpp", "security_short", "security_none")
    if blocking:
        profile = "blocking"
    elif flaw is not None:
        profile = "mild"
    else:
        profile = "ready"

    ccn = f"{carrier}{(310_000_000 + i * 7919 + config.seed * 104_729) % 1_000_000_000:09d}"
    trip = f"{carrier}{(4_200_000 + i * 104_729 + config.seed * 7919) % 10_000_000:07d}"
    account = 10_000 + 7_919 * (_BROKER_CODES.index(broker) if broker else 8) % 90_000
    transaction = f"{account:05d}{(i * 15_485_863 + config.seed) % 1_000_000_000:09d}"

    events: list[Planned] = []

    def add(t: float, kind: str, *args: Any) -> None:
        events.append((int(t), len(events), kind, args))

    # How far ahead the cargo is reported.
    r = rng.random()
    if r < LATE_EMANIFEST_RATE:
        lead = uniform(20, 55) * MINUTE
    elif r < LATE_EMANIFEST_RATE + SHORT_HAUL_RATE:
        lead = uniform(60, 150) * MINUTE
    else:
        lead = uniform(150, 720) * MINUTE
    eta0 = int(t_rep + lead)
    add(t_rep, "reported", eta0, port)

    # ETA changes from dispatch or the ELD.
    eta_changes: list[tuple[int, int, str]] = [(t_rep, eta0, port)]
    r = rng.random()
    n_changes = 2 if r < ETA_TWO_CHANGES_RATE else 1 if r < ETA_TWO_CHANGES_RATE + ETA_ONE_CHANGE_RATE else 0
    for _ in range(n_changes):
        last_t, cur_eta, cur_port = eta_changes[-1]
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
        eta_changes.append((t, new_eta, new_port))
        add(t, "eta", new_eta, new_port if new_port != cur_port else None)
    final_eta = eta_changes[-1][1]
    ref_eta = min(eta0, final_eta)

    def eta_at(t: int) -> tuple[int, str]:
        current = eta_changes[0]
        for change in eta_changes:
            if change[0] <= t:
                current = change
        return current[1], current[2]

    # CBSA's answer to the cargo data.
    answer = _pick(rng, _ANSWERS, _ANSWER_CUM)
    t_acc: int | None = None
    if answer == "accepted":
        t_acc = int(t_rep + uniform(120, 240))
        add(t_acc, "accepted")
    elif answer.startswith("rejected"):
        t_rej = int(t_rep + uniform(120, 240))
        add(t_rej, "rejected", rng.choice(_REJECT_REASONS))
        if answer == "rejected_fixed":
            t_resub = int(t_rej + uniform(10, 90) * MINUTE)
            eta_now, port_now = eta_at(t_resub)
            add(t_resub, "reported", eta_now, port_now)
            t_acc = int(t_resub + uniform(120, 240))
            add(t_acc, "accepted")
    if t_acc is not None and rng.random() < 0.25:
        add(t_acc + uniform(30, 90), "notice", "cargo_complete", None)
    t_ready = t_acc if t_acc is not None else t_rep + 180

    # The broker's PARS and CBSA's link to the cargo.
    links: list[tuple[int, bool]] = []  # (time, linked?) from matched/9/34 vs document_not_on_file
    early = rng.random() < EARLY_RNS_RATE and broker is not None

    def link(t: float, first_indicator: int = 1) -> int:
        t = max(int(t), t_rep + MINUTE)
        add(t, "rns", first_indicator)
        t9 = int(t + uniform(60, 600))
        add(t9, "rns", 9)
        t_link = t if first_indicator == 34 else t9
        if t_acc is not None:
            t_match = max(t9, t_acc) + int(uniform(5, 60))
            add(t_match, "notice", "matched", None)
            if rng.random() < 0.35:
                add(t_match + uniform(60, 180), "notice", "document_package_complete", None)
        links.append((t_link, True))
        return t_link

    def not_matched() -> None:
        add(t_ready + uniform(30, 300), "notice", "not_matched", "No release document linked to the cargo")

    scenario = (
        "early_rns"
        if early
        else PARS_SCENARIOS[
            min(bisect(_PARS_CUM[profile], rng.random() * _PARS_CUM[profile][-1]), len(PARS_SCENARIOS) - 1)
        ]
    )
    if broker is None and scenario != "never":
        scenario = "never"  # no broker named: nobody files a PARS
    on_time_lo, on_time_hi = t_ready + 120, ref_eta - 125 * MINUTE
    t_on_time = uniform(on_time_lo, on_time_hi) if on_time_hi > on_time_lo else on_time_lo + uniform(0, 900)
    unfixed = False
    if scenario == "early_rns":
        t_early = t_rep - int(uniform(60, EARLY_RNS_MAX_S))
        add(t_early, "rns", 34)
        links.append((t_early, True))
        link(t_on_time, 1)
    elif scenario == "on_time":
        link(t_on_time, 34 if rng.random() < 0.3 else 1)
    elif scenario == "not_matched_then_matched":
        not_matched()
        # Usually fixed before the PARS window opens; late fixes are the late_* scenarios.
        link(uniform(t_ready + 20 * MINUTE, max(t_ready + 25 * MINUTE, ref_eta - 130 * MINUTE)))
    elif scenario == "late_warning":
        if rng.random() < 0.5:
            not_matched()
        link(max(final_eta - uniform(35, 115) * MINUTE, t_ready + 5 * MINUTE))
    elif scenario == "late_critical":
        not_matched()
        link(max(final_eta - uniform(-10, 29) * MINUTE, t_ready + 5 * MINUTE))
    elif scenario == "never":
        not_matched()
        unfixed = True
    elif scenario == "silent_cancel":
        t_link = link(t_on_time)
        lo, hi = t_link + 10 * MINUTE, final_eta - 10 * MINUTE
        t_dnof = int(uniform(lo, hi)) if hi > lo else t_link + 10 * MINUTE
        add(t_dnof, "notice", "document_not_on_file", "Release document not on file")
        links.append((t_dnof, False))
        if rng.random() < SILENT_CANCEL_FIXED_RATE:
            link(t_dnof + uniform(20, 150) * MINUTE)
        else:
            unfixed = True
    elif scenario == "rns_rejected":
        t_rej = max(int(t_on_time), t_rep + MINUTE)
        add(t_rej, "rns", 2 if rng.random() < 0.6 else 14)
        if rng.random() < RNS_REJECTED_FIXED_RATE:
            link(t_rej + uniform(15, 90) * MINUTE)
        else:
            unfixed = True

    # Arrival at the port.
    last_change = eta_changes[-1][0]
    arrival = final_eta + int(max(-30 * MINUTE, min(45 * MINUTE, rng.gauss(0, 12 * MINUTE))))
    arrival = max(arrival, last_change + 5 * MINUTE, t_rep + 5 * MINUTE)

    def linked_at(t: int) -> bool:
        state = False
        for when, linked in sorted(links):
            if when <= t:
                state = linked
        return state

    def release(t: float) -> None:
        r = rng.random()
        if r < 0.85:
            add(t, "rns", 4)
            if rng.random() < 0.6:
                add(t + uniform(5, 90), "notice", "released", None)
        elif r < 0.93:
            add(t, "notice", "released", None)
        elif r < 0.97:
            add(t, "rns", 23)
            if rng.random() < 0.7:
                add(t + uniform(5, 90), "notice", "authorized_to_deliver", None)
        else:
            add(t, "rns", 8)

    # Cancellation before arrival cuts the story short.
    if rng.random() < CANCEL_RATE and arrival - 10 * MINUTE > t_rep + 5 * MINUTE:
        t_cancel = int(uniform(t_rep + 5 * MINUTE, arrival - 10 * MINUTE))
        events = [e for e in events if e[0] < t_cancel]
        add(t_cancel, "cancelled")
        outcome = "cancelled"
    else:
        if rng.random() < 0.85:
            add(arrival, "notice", "reported", None)
            if rng.random() < 0.75:
                add(arrival + uniform(60, 240), "notice", "arrived", None)
        else:
            add(arrival, "notice", "arrived", None)
        exam_rate = EXAM_RATE_READY if flaw is None else EXAM_RATE_FLAWED
        later_links = [when for when, linked in links if linked and when > arrival]
        if t_acc is None:
            outcome = "not_released"  # no eManifest on file: the truck waits at the plaza
        elif linked_at(arrival):
            if rng.random() < exam_rate:
                t_exam = arrival + uniform(5, 25) * MINUTE
                if rng.random() < 0.8:
                    add(t_exam, "rns", 5)
                    if rng.random() < 0.6:
                        add(t_exam + uniform(5, 120), "notice", "held", "Referred for examination")
                else:
                    add(t_exam, "notice", "held", "Referred for examination")
                if rng.random() < EXAM_RELEASED_RATE:
                    release(t_exam + uniform(2, 8) * HOUR)
                    outcome = "examined_released"
                else:
                    outcome = "examined_held"
            elif release_blocking and (r := rng.random()) < PAYMENT_DELAY_RATE + PAYMENT_NEVER_RATE:
                if r < PAYMENT_DELAY_RATE:
                    release(arrival + uniform(45, 360) * MINUTE)
                    outcome = "released_late"
                else:
                    outcome = "not_released"
            else:
                release(arrival + uniform(2, 25) * MINUTE)
                outcome = "released"
        elif later_links:
            release(max(min(later_links), arrival) + uniform(5, 20) * MINUTE)
            outcome = "released_late"
        elif unfixed and rng.random() < FILED_AFTER_ARRIVAL_RATE:
            t_link = link(arrival + uniform(40, 180) * MINUTE)
            release(t_link + uniform(5, 20) * MINUTE)
            outcome = "released_late"
        else:
            outcome = "not_released"
    events.sort()
    return LoadPlan(
        index=i,
        ccn=ccn,
        carrier_code=carrier,
        trip_number=trip,
        load_ref=f"LD{i + 1:07d}",
        importer=importer,
        shipper_name=rng.choice(_SHIPPERS),
        broker_code=broker,
        broker_name=_BROKER_NAMES[broker] if broker else None,
        release_mode=release_mode,
        dispatch_team=team,
        transaction_number=transaction,
        events=events,
        scenario=scenario,
        outcome=outcome,
    )


# --- building records ------------------------------------------------------------------------


def _ts(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _event_value(
    plan: LoadPlan, kind: str, args: tuple[Any, ...], t: int, event_id: str
) -> tuple[bool, dict[str, Any]]:
    """The event as a validated model dumped to JSON types; True when it goes to the RNS topic."""
    common: dict[str, Any] = {"event_id": event_id, "occurred_at": _ts(t), "schema_version": SCHEMA_VERSION}
    ccn = plan.ccn
    model: Any
    if kind == "reported":
        eta, port = args
        model = CargoReported(
            **common,
            event_type="cargo_reported",
            ccn=ccn,
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


def simulate(config: SimulationConfig, stats: SimulationStats | None = None) -> Iterator[SimRecord]:
    """Yield the log's records in event-time order (see the module docstring)."""
    stats = stats if stats is not None else SimulationStats()
    world = build_world(config)
    noise = random.Random(f"{config.seed}:noise")
    start_s = int(config.start.timestamp())
    counter = 0

    def next_id() -> str:
        nonlocal counter
        counter += 1
        return f"sim{config.seed}-{counter:09d}"

    # heap entries: (epoch s, rank, tie, payload); rank 0 = CARM fix, 1 = load event, 2 = re-send
    heap: list[tuple[int, int, int, Any]] = []
    stats.importers = len(world.importers)
    for importer in world.importers:
        if importer.flaw is not None:
            stats.importer_flaws[importer.flaw] += 1
        if config.midway_fixes and importer.fix_at is not None:
            heapq.heappush(heap, (importer.fix_at, 0, importer.index, importer))

    def finish(record: SimRecord, event_type: str) -> Iterator[SimRecord]:
        stats.events += 1
        stats.records += 1
        stats.event_types[event_type] += 1
        yield record
        if noise.random() < config.duplicate_rate:
            resend_at = record.timestamp_ms // 1000 + noise.randint(1, 20)
            heapq.heappush(heap, (resend_at, 2, stats.duplicates, record))
            stats.duplicates += 1
        if noise.random() < config.malformed_rate:
            kind = noise.choice(MALFORMED_KINDS)
            stats.malformed += 1
            stats.records += 1
            stats.malformed_kinds[kind] += 1
            yield _malformed(noise, record, kind, next_id() + "-bad")

    # CARM snapshots for every known importer, at the start, before any shipment event.
    for importer in world.importers:
        if importer.flaw == "unknown":
            continue
        value = _snapshot_value(importer, start_s, next_id(), ready=importer.flaw is None)
        stats.carm_snapshots += 1
        yield from finish(SimRecord(config.topic_carm, importer.bn, value, start_s * 1000), "carm_snapshot")

    next_load = 0
    while True:
        while next_load < config.loads and (
            not heap or load_base_time(next_load, config) - EARLY_RNS_MAX_S <= heap[0][0]
        ):
            plan = plan_load(next_load, world, config)
            stats.loads += 1
            stats.pars_scenarios[plan.scenario] += 1
            stats.outcomes[plan.outcome] += 1
            heapq.heappush(heap, (plan.events[0][0], 1, plan.index * 1000, (plan, 0)))
            next_load += 1
        if not heap:
            break
        t, rank, _tie, payload = heapq.heappop(heap)
        if rank == 0:
            importer = payload
            value = _snapshot_value(importer, t, next_id(), ready=True)
            stats.carm_snapshots += 1
            stats.midway_fixes += 1
            yield from finish(SimRecord(config.topic_carm, importer.bn, value, t * 1000), "carm_snapshot")
        elif rank == 1:
            plan, pos = payload
            _, _, kind, args = plan.events[pos]
            if pos + 1 < len(plan.events):
                heapq.heappush(
                    heap, (plan.events[pos + 1][0], 1, plan.index * 1000 + pos + 1, (plan, pos + 1))
                )
            is_rns, value = _event_value(plan, kind, args, t, next_id())
            topic = config.topic_rns if is_rns else config.topic_emanifest
            yield from finish(SimRecord(topic, plan.ccn, value, t * 1000), value["event_type"])
        else:
            stats.records += 1
            yield SimRecord(payload.topic, payload.key, payload.value, t * 1000)


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
