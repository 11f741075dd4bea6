"""`holdwatch ingest aci-trip`'s shell: reads the carrier's trip files, publishes what the mapping
(streams/feeds/aci_trip.py) derives from them and keeps the ingest's state file.

Order of a file's steps: read → map against the state → send → flush (every record acknowledged)
→ only then the state file is written. A crash in between leaves the state before the file: the
next run sends the same events again, with the same content-derived event_ids, and the pipeline
drops them as duplicates. One ingest per state file at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.emanifest import CargoReported, EtaUpdated
from streams.feeds.aci_trip import (
    FileRecord,
    IngestState,
    MappingError,
    MissingFacts,
    Result,
    TripContext,
    TripDocumentError,
    TripMapping,
    documents_of,
    events_of,
    ingest_documents,
    mapping_from_csv,
    mapping_from_data,
    with_file,
)
from streams.settings import Settings

CLIENT_ID: Final = "holdwatch-ingest-aci-trip"
DELIVERY_TIMEOUT_S: Final = 120.0
"""How long the producer retries a record the broker does not acknowledge before the file fails."""
STATE_FILE_NAME: Final = "aci-trip-state.json"


class PublishError(RuntimeError):
    """Records were not acknowledged by the broker: the file's state is not kept, a rerun resends them."""


class StateFileError(ValueError):
    """The state file exists but cannot be read."""


# --------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------


class Publisher(Protocol):
    def send(self, topic: str, *, key: bytes, value: bytes) -> None:
        """Queue one record; its Kafka timestamp is the producer's wall time (retention counts from
        the ingest; the event time is the value's occurred_at)."""

    def flush(self) -> None:
        """Wait until every sent record is acknowledged; raise PublishError if one is not."""

    def close(self) -> None: ...


@dataclass
class RecordingPublisher:
    """Keeps what would be sent: `--dry-run`, and tests."""

    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    def send(self, topic: str, *, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def producer_options(
    supported: Mapping[str, Any], delivery_timeout_s: float = DELIVERY_TIMEOUT_S
) -> dict[str, Any]:
    """acks=all always; idempotence (no duplicate from a producer retry) when the installed
    kafka-python has it (2.1 and later); retries bounded by `delivery_timeout_s`."""
    total_ms = max(1000, int(delivery_timeout_s * 1000))
    options: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "acks": "all",
        "linger_ms": 5,
        "max_block_ms": total_ms,
    }
    if "enable_idempotence" in supported:
        options["enable_idempotence"] = True
    if "delivery_timeout_ms" in supported:
        request_ms = min(30_000, max(500, total_ms // 2))
        options.update(request_timeout_ms=request_ms, delivery_timeout_ms=max(total_ms, request_ms + 6))
    if "allow_auto_create_topics" in supported:
        options["allow_auto_create_topics"] = False  # topics come from ensure_topics, with their partitions
    return options


class KafkaPublisher:
    """`Publisher` over kafka-python's KafkaProducer; a record counts once the broker acknowledged it."""

    def __init__(self, producer: Any, *, timeout_s: float = DELIVERY_TIMEOUT_S) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self._futures: list[Any] = []

    @classmethod
    def create(cls, config: Mapping[str, Any]) -> KafkaPublisher:
        from kafka import KafkaProducer

        return cls(KafkaProducer(**producer_options(KafkaProducer.DEFAULT_CONFIG), **config))

    def send(self, topic: str, *, key: bytes, value: bytes) -> None:
        try:
            self._futures.append(self._producer.send(topic, key=key, value=value))
        except Exception as exc:
            raise PublishError(f"cannot send to {topic}: {type(exc).__name__}: {exc}") from exc

    def flush(self) -> None:
        futures, self._futures = self._futures, []
        try:
            self._producer.flush(timeout=self._timeout_s)
        except Exception as exc:
            raise PublishError(f"records not acknowledged in {self._timeout_s:g} s: {exc}") from exc
        errors = []
        for future in futures:
            try:
                future.get(timeout=1)
            except Exception as exc:  # noqa: BLE001 - each failed record is counted
                errors.append(exc)
        if errors:
            first = errors[0]
            raise PublishError(
                f"{len(errors)} of {len(futures)} record(s) not acknowledged: {type(first).__name__}: {first}"
            )

    def close(self) -> None:
        self._producer.close(timeout=10)  # every file was flushed already; nothing is pending


def encode(event: CargoReported | EtaUpdated) -> bytes:
    """The record value: the event as compact JSON."""
    return json.dumps(event.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


# --------------------------------------------------------------------------------------
# Files: the mapping file and the state file
# --------------------------------------------------------------------------------------


def load_mapping(path: Path | None) -> tuple[TripMapping, str]:
    """The mapping file (CSV, YAML or JSON by its suffix) and a digest of its content ("" without one)."""
    if path is None:
        return TripMapping(), ""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MappingError(f"cannot read the mapping file {path}: {exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: not UTF-8 text: {exc}") from exc
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return mapping_from_csv(text, str(path)), digest
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise MappingError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write it as CSV"
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MappingError(f"{path}: not valid YAML: {exc}") from exc
        return mapping_from_data(data, str(path)), digest
    if suffix == ".json":
        try:
            return mapping_from_data(json.loads(text), str(path)), digest
        except json.JSONDecodeError as exc:
            raise MappingError(f"{path}: not valid JSON: {exc}") from exc
    raise MappingError(f"{path}: a mapping file is .csv, .yaml/.yml or .json")


def default_state_path(settings: Settings) -> Path:
    return settings.home / "feeds" / STATE_FILE_NAME


def load_state(path: Path) -> IngestState:
    if not path.exists():
        return IngestState()
    try:
        return IngestState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise StateFileError(
            f"cannot read the state file {path}: {exc}. Delete it to start over: the next ingest "
            "publishes every shipment again, as duplicates or amendments with the same facts"
        ) from exc


def save_state(path: Path, state: IngestState) -> None:
    """Atomically: a crash leaves the old state or the new one, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state.to_json(), handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def local_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"HOLDWATCH_FEED_LOCAL_TZ={name!r} is not an IANA time zone") from exc


def trip_files(paths: Iterable[Path]) -> list[Path]:
    """Named files as given; a directory's `*.json` files (not hidden), in name order: name later
    versions of a trip so that they sort later."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.iterdir() if p.suffix.lower() == ".json" and not p.name.startswith(".")
                )
            )
        else:
            found.append(path)
    return [path for path in found if path.is_file()]


# --------------------------------------------------------------------------------------
# The ingest
# --------------------------------------------------------------------------------------


@dataclass
class IngestReport:
    files: int = 0
    unchanged: int = 0
    unreadable: int = 0
    events: Counter[str] = field(default_factory=Counter)
    not_published: int = 0
    without_broker: int = 0
    dry_run: bool = False

    @property
    def incomplete(self) -> bool:
        """Something could not be published (said above): `holdwatch ingest` exits 3."""
        return self.unreadable > 0 or self.not_published > 0

    def summary(self) -> str:
        verb = "would publish" if self.dry_run else "published"
        events = ", ".join(f"{count} {kind}" for kind, count in sorted(self.events.items())) or "nothing new"
        return (
            f"aci-trip: {self.files} file(s) read ({self.unchanged} unchanged, {self.unreadable} not "
            f"readable); {verb} {events}; {self.not_published} shipment(s) not published, "
            f"{self.without_broker} without a broker"
        )


def _describe(event: CargoReported | EtaUpdated) -> str:
    eta = event.eta.isoformat().replace("+00:00", "Z")
    if isinstance(event, CargoReported):
        return f"cargo_reported {event.ccn} (trip {event.trip_number}, ETA {eta}, port {event.port_of_entry})"
    port = f", port {event.port_of_entry}" if event.port_of_entry else ""
    return f"eta_updated {event.ccn} (ETA {eta}{port})"


class TripIngest:
    """Reads trip files into events on `topic`; keeps the state in `state_path` (None: not kept)."""

    def __init__(
        self,
        *,
        topic: str,
        publisher: Publisher,
        context: TripContext,
        state: IngestState,
        state_path: Path | None,
        mapping_path: Path | None = None,
        mapping_digest: str = "",
        dry_run: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        say: Callable[[str], None] = print,
    ) -> None:
        self.topic = topic
        self.publisher = publisher
        self.context = context
        self.state = state
        self.state_path = state_path
        self.mapping_path = mapping_path
        self.mapping_digest = mapping_digest
        self.mapping_signature = _signature(mapping_path) if mapping_path else None
        self.dry_run = dry_run
        self.clock = clock
        self.say = say
        self.report = IngestReport(dry_run=dry_run)

    # -- one file ---------------------------------------------------------------------
    def ingest_file(self, path: Path) -> list[Result]:
        """Read, map, publish (acknowledged), then keep the state; what was published or is missing
        (nothing for an unchanged or unreadable file). Raises PublishError."""
        report = self.report
        report.files += 1
        source = str(path.resolve())
        try:
            raw = path.read_bytes()
        except OSError as exc:
            report.unreadable += 1
            self.say(f"{path}: cannot read: {exc}")
            return []
        sha = hashlib.sha256(raw).hexdigest()
        if self.state.unchanged(source, sha, self.mapping_digest):
            report.unchanged += 1
            return []
        seen = self.state.files.get(source)
        try:
            parsed = json.loads(raw.decode("utf-8-sig"))
            outcome = ingest_documents(
                documents_of(parsed),
                source=source,
                changed=seen is None or seen.sha256 != sha,
                state=self.state,
                context=self.context,
                observed_at=self.clock(),
            )
        except (UnicodeDecodeError, json.JSONDecodeError, TripDocumentError) as exc:
            report.unreadable += 1
            self.say(f"{path}: not ingested: {exc}")
            return []
        events = events_of(outcome.results)
        for event in events:
            self.publisher.send(self.topic, key=event.ccn.encode("utf-8"), value=encode(event))
        self.publisher.flush()
        self.state = with_file(outcome.state, source, FileRecord(sha, self.mapping_digest, outcome.complete))
        if self.state_path is not None:
            save_state(self.state_path, self.state)
        self._tell(path, outcome.results, outcome.shipments)
        return outcome.results

    def _tell(
        self, path: Path, results: Sequence[CargoReported | EtaUpdated | MissingFacts], count: int
    ) -> None:
        verb = "would publish" if self.dry_run else "published"
        if count == 0:
            self.say(f"{path.name}: no shipments")
        for result in results:
            if isinstance(result, MissingFacts):
                if result.blocking:
                    self.report.not_published += 1
                    self.say(f"not published: {result.message()}  [{path.name}, shipment {result.shipment}]")
                else:
                    self.report.without_broker += 1
                    self.say(f"note: {result.message()}")
                continue
            self.report.events[result.event_type] += 1
            self.say(f"{verb} {_describe(result)}  [{path.name}]")
            if self.dry_run:
                self.say(f"  {encode(result).decode('utf-8')}")

    # -- the mapping file ---------------------------------------------------------------
    def refresh_mapping(self) -> bool:
        """Reload the mapping file if it changed; True if it did. A bad new version is said and the
        previous one kept."""
        if self.mapping_path is None:
            return False
        signature = _signature(self.mapping_path)
        if signature == self.mapping_signature:
            return False
        self.mapping_signature = signature
        try:
            mapping, digest = load_mapping(self.mapping_path)
        except MappingError as exc:
            self.say(f"mapping file changed but cannot be used (keeping the previous one): {exc}")
            return False
        if digest == self.mapping_digest:
            return False
        self.context = replace(self.context, mapping=mapping)
        self.mapping_digest = digest
        self.say(f"mapping file {self.mapping_path} reloaded: every file is looked at again")
        return True

    # -- runs -----------------------------------------------------------------------------
    def run_once(self, paths: Sequence[Path]) -> IngestReport:
        for path in trip_files(paths):
            self.ingest_file(path)
        return self.report

    def watch(
        self,
        paths: Sequence[Path],
        *,
        interval_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        progress_every_s: float = 60.0,
    ) -> NoReturn:
        """Ingest, then poll for new or changed files every `interval_s` until interrupted (Ctrl-C:
        KeyboardInterrupt). A file is read again only when its size or modification time changes
        (or the mapping file does); a publish failure is said and the file retried at the next poll."""
        seen: dict[Path, tuple[int, int]] = {}
        self.say(f"watching {', '.join(map(str, paths))} every {interval_s:g} s (Ctrl-C stops)")
        next_progress = monotonic() + progress_every_s
        while True:
            if self.refresh_mapping():
                seen.clear()
            files = trip_files(paths)
            for path in files:
                signature = _signature(path)
                if signature is None or seen.get(path) == signature:
                    continue
                seen[path] = signature
                try:
                    self.ingest_file(path)
                except PublishError as exc:
                    del seen[path]
                    self.say(f"{path.name}: not published, retrying at the next poll: {exc}")
            for gone in set(seen) - set(files):
                del seen[gone]
            if monotonic() >= next_progress:
                next_progress = monotonic() + progress_every_s
                so_far = self.report.summary().removeprefix("aci-trip: ")
                self.say(f"watching: {len(files)} file(s); so far {so_far}")
            sleep(interval_s)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def trip_context(settings: Settings, mapping: TripMapping) -> TripContext:
    """The mapping's inputs from the settings: the zone of naive times, company keys → carrier codes."""
    return TripContext(
        mapping=mapping,
        local_tz=local_zone(settings.feed_local_tz),
        carrier_codes=dict(settings.borderconnect_company_keys),
    )
