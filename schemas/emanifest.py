"""Topic `emanifest.events` (key: ccn): the carrier's eManifest events and CBSA notices."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.common import (
    BrokerCode,
    CarrierCode,
    Ccn,
    EventEnvelope,
    ImporterBn,
    LongText,
    OfficeCode,
    ShortText,
    Timestamp,
)

NoticeKind = Literal[
    "matched",
    "not_matched",
    "document_not_on_file",
    "cargo_complete",
    "document_package_complete",
    "reported",
    "arrived",
    "released",
    "authorized_to_deliver",
    "held",
]


class CargoReported(EventEnvelope):
    """Cargo + conveyance data transmitted; sent again it is an amendment."""

    event_type: Literal["cargo_reported"]
    ccn: Ccn
    carrier_code: CarrierCode
    trip_number: ShortText
    load_ref: ShortText
    port_of_entry: OfficeCode
    eta: Timestamp
    importer_bn: ImporterBn
    importer_name: ShortText
    shipper_name: ShortText
    broker_code: BrokerCode | None
    broker_name: ShortText | None
    release_mode: Literal["rpp", "prepaid"] = "rpp"
    dispatch_team: ShortText | None = None
    # From the carrier's trip (ACI_TRIP), when known: shown in alerts so dispatch can reach the driver.
    consignee_name: ShortText | None = None
    truck_number: ShortText | None = None
    trailer_number: ShortText | None = None
    driver_name: ShortText | None = None
    driver_phone: ShortText | None = None


class CargoAccepted(EventEnvelope):
    event_type: Literal["cargo_accepted"]
    ccn: Ccn


class CargoRejected(EventEnvelope):
    event_type: Literal["cargo_rejected"]
    ccn: Ccn
    reason: LongText


class EtaUpdated(EventEnvelope):
    event_type: Literal["eta_updated"]
    ccn: Ccn
    eta: Timestamp
    port_of_entry: OfficeCode | None = None


class Notice(EventEnvelope):
    """An ACI eManifest (D4) notice received for the CCN."""

    event_type: Literal["notice"]
    ccn: Ccn
    notice: NoticeKind
    text: LongText | None = None


class Cancelled(EventEnvelope):
    event_type: Literal["cancelled"]
    ccn: Ccn


EManifestEvent = Annotated[
    CargoReported | CargoAccepted | CargoRejected | EtaUpdated | Notice | Cancelled,
    Field(discriminator="event_type"),
]
