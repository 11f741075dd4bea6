"""`holdwatch status CCN|LOAD_REF` and `holdwatch check BN --broker CODE`: the status API, for a person.

Both ask a running worker (HOLDWATCH_WEB_URL, default http://127.0.0.1:HOLDWATCH_WEB_PORT) and
print its answer: colour, the ETA in the port's time zone with a countdown, the reasons in the
alerts' own words. `--json` prints the API's JSON unchanged, for scripts. Exit codes: 0 ready
or found and not at risk, 1 at risk (or not ready), 2 not found / bad input / no worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.alerts import ReasonDetail
from schemas.api import LoadPage, LoadStatus, ReadinessCheck
from streams.settings import Settings

_COLOURS = {"critical": "\033[1;31m", "warning": "\033[1;33m", None: "\033[1;32m"}
_RESET = "\033[0m"


class ApiUnavailable(Exception):
    """No worker answered (or it answered with an error): the message says what to do."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status",
        help="what holdwatch knows about a load now (asks a running worker)",
        description="Show one load: facts, ETA countdown in the port's time zone, every active "
        "reason with what to do and whom to call. Asks the worker's status API "
        "(HOLDWATCH_WEB_URL; token from HOLDWATCH_WEB_TOKENS). Exit 0 not at risk, 1 at risk, 2 not found.",
    )
    status.add_argument(
        "load", metavar="CCN|LOAD_REF", help="cargo control number or the carrier's load reference"
    )
    status.add_argument("--json", action="store_true", help="print the API's JSON (for scripts)")
    status.set_defaults(func=run_status)
    check = sub.add_parser(
        "check",
        help="the pre-pickup CARM check: can a truck pick up for this importer with this broker?",
        description="Judge a new load of the importer with the broker by the same rules and thresholds "
        "as real loads, right now: CARM registration, delegation, RPP, security, portal login. "
        "An importer without a CARM record is reported as unknown, with advice. Exit 0 ready, 1 not ready.",
    )
    check.add_argument("bn", metavar="BN", help="the importer's business number, e.g. 123456789RM0001")
    check.add_argument("--broker", required=True, help="the customs broker's code, e.g. LKCS")
    check.add_argument(
        "--release-mode",
        choices=("rpp", "prepaid"),
        default="rpp",
        help="rpp: Release Prior to Payment (default); prepaid: duties paid before release",
    )
    check.add_argument("--json", action="store_true", help="print the API's JSON (for scripts)")
    check.set_defaults(func=run_check)


def _get(settings: Settings, path: str) -> tuple[int, bytes]:
    base = settings.web_base_url()
    request = urllib.request.Request(base + path, headers={"Accept": "application/json"})
    if settings.web_tokens:
        request.add_header("Authorization", f"Bearer {settings.web_tokens[0].get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise ApiUnavailable(
            f"no holdwatch worker answers at {base} ({exc}): start `holdwatch worker`, or set "
            "HOLDWATCH_WEB_URL to a worker's address"
        ) from exc


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body).get("detail", body.decode(errors="replace")))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")


def find_load(settings: Settings, key: str) -> tuple[int, bytes]:
    """By CCN first; not found, by load reference (the API's list, every phase)."""
    status, body = _get(settings, "/v1/loads/" + urllib.parse.quote(key, safe=""))
    if status not in (400, 404):
        return status, body
    query = urllib.parse.urlencode({"load_ref": key, "open": "false", "limit": "1"})
    found_status, found = _get(settings, "/v1/loads?" + query)
    if found_status == 200:
        page = LoadPage.model_validate_json(found)
        if page.items:
            return 200, page.items[0].model_dump_json(exclude_none=True).encode()
        return 404, json.dumps({"detail": f"no load with CCN or load reference {key!r}"}).encode()
    return status, body


def _answer(command: str, ask: Callable[[], tuple[int, bytes]]) -> bytes | None:
    """The API's 200 body, or None after saying on stderr why there is none."""
    try:
        status, body = ask()
    except ApiUnavailable as exc:
        print(f"holdwatch {command}: {exc}", file=sys.stderr)
        return None
    if status != 200:
        print(f"holdwatch {command}: {_detail(body)}", file=sys.stderr)
        return None
    return body


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    body = _answer("status", lambda: find_load(settings, args.load))
    if body is None:
        return 2
    load = LoadStatus.model_validate_json(body)
    print(body.decode() if args.json else format_load(load, colour=sys.stdout.isatty()))
    return 1 if load.severity is not None else 0


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    query = urllib.parse.urlencode({"broker": args.broker, "release_mode": args.release_mode})
    path = f"/v1/importers/{urllib.parse.quote(args.bn, safe='')}/readiness?{query}"
    body = _answer("check", lambda: _get(settings, path))
    if body is None:
        return 2
    check = ReadinessCheck.model_validate_json(body)
    print(body.decode() if args.json else format_check(check, colour=sys.stdout.isatty()))
    return 0 if check.ready else 1


# --- formatting (pure) -------------------------------------------------------------------
def _paint(text: str, severity: str | None, colour: bool) -> str:
    return f"{_COLOURS[severity]}{text}{_RESET}" if colour else text


def countdown(minutes: float) -> str:
    total = round(abs(minutes))
    hours, mins = divmod(total, 60)
    text = f"{hours} h {mins:02d} min" if hours else f"{mins} min"
    return f"{text} ago" if minutes < 0 else f"in {text}"


def local_time(at: datetime, tz: str | None) -> str:
    zone = ZoneInfo(tz) if tz else None
    shown = at.astimezone(zone) if zone else at
    return shown.strftime("%a %d %b %H:%M %Z")


def _reasons(reasons: list[ReasonDetail], colour: bool) -> list[str]:
    lines = []
    for r in reasons:
        lines.append("  " + _paint(f"● {r.severity.upper():8}", r.severity, colour) + f" {r.summary}")
        lines.append(f"               what to do: {r.action}")
        if r.call:
            lines.append(f"               call: {r.call}")
    return lines


def format_load(load: LoadStatus, *, colour: bool) -> str:
    verdict = {"critical": "AT RISK (critical)", "warning": "at risk (warning)"}.get(
        load.severity or "", "not at risk" if load.phase == "open" else load.phase.replace("_", " ")
    )
    title = f"{load.load_ref or '(no load ref)'}  CCN {load.ccn}  —  {verdict}"
    lines = [_paint(title, load.severity if load.phase == "open" else None, colour)]
    port = f"{load.port_name} ({load.port_of_entry})" if load.port_name else load.port_of_entry or "?"
    if load.eta is not None and load.minutes_to_eta is not None:
        eta = f"{local_time(load.eta, load.port_tz)}, {countdown(load.minutes_to_eta)}"
        lines.append(f"  ETA at {port}: {eta}")
    lines.append(f"  importer: {load.importer_name or '?'} ({load.importer_bn or 'no BN'})")
    lines.append(f"  broker:   {load.broker_name or '?'} ({load.broker_code or 'none named'})")
    contact = load.broker_contact
    if contact is not None:
        lines.append(f"            {contact.call}")
        if contact.office_note:
            lines.append(f"            {contact.office_note}")
    truck = ", ".join(
        f"{label} {value}"
        for label, value in (
            ("truck", load.truck_number),
            ("trailer", load.trailer_number),
            ("driver", " ".join(v for v in (load.driver_name, load.driver_phone) if v) or None),
        )
        if value
    )
    if truck:
        lines.append(f"  {truck}")
    if load.dispatch_team:
        lines.append(f"  team:     {load.dispatch_team}")
    facts = [f"eManifest {load.cargo_answer or 'not answered'}", f"PARS {load.link_state.replace('_', ' ')}"]
    if load.latest_rns_indicator is not None:
        facts.append(f"RNS {load.latest_rns_indicator}")
    if load.arrived_at is not None:
        facts.append(f"arrived {local_time(load.arrived_at, load.port_tz)}")
    lines.append("  " + ", ".join(facts))
    if load.alert is not None:
        raised = local_time(load.alert.first_raised_at, load.port_tz)
        lines.append(f"  alert {load.alert.alert_id} (step {load.alert.seq}), raised {raised}")
    lines += _reasons(load.reasons, colour)
    lines.append(f"  as of {load.as_of.isoformat(timespec='seconds')} (worker clock)")
    return "\n".join(lines)


def format_check(check: ReadinessCheck, *, colour: bool) -> str:
    who = f"{check.importer_name or check.importer_bn} with broker {check.broker_code or '(none)'}"
    verdict = "READY: nothing missing" if check.ready else f"NOT READY ({check.severity})"
    lines = [_paint(f"{who} ({check.release_mode.upper()}): {verdict}", check.severity, colour)]
    lines += _reasons(check.reasons, colour)
    if check.carm_record_at is not None and check.carm_record_age_hours is not None:
        lines.append(
            f"  CARM record of {check.carm_record_at.date()} ({check.carm_record_age_hours:g} h old)"
        )
    else:
        lines.append(
            "  no CARM record for this importer: ask the shipper for their CARM status before pickup"
        )
    lines.append(f"  as of {check.as_of.isoformat(timespec='seconds')} (worker clock)")
    return "\n".join(lines)
