"""JSON Schema files generated from the models: the contract for producers and consumers.

One file per topic under schemas/json/, plus the status API's OpenAPI document
(`holdwatch.api.openapi.json`, from schemas/openapi.py), written deterministically (sorted keys, two-space
indent, trailing newline) so that a checked-in file drifts visibly from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import TypeAdapter

from schemas.actions import DispatchAction
from schemas.alerts import AlertEvent
from schemas.carm import CarmEvent
from schemas.deadletter import DeadLetter
from schemas.emanifest import EManifestEvent
from schemas.openapi import openapi_document
from schemas.rns import RnsEvent

JSON_DIR: Final = Path(__file__).resolve().parent / "json"

# file name → (model, title, description)
_SCHEMAS: Final[dict[str, tuple[Any, str, str]]] = {
    "emanifest.events.json": (
        EManifestEvent,
        "emanifest.events",
        "Topic emanifest.events (key: ccn): eManifest events and CBSA notices, one JSON object per record.",
    ),
    "rns.events.json": (
        RnsEvent,
        "rns.events",
        "Topic rns.events (key: ccn): Release Notification System statuses.",
    ),
    "carm.readiness.json": (
        CarmEvent,
        "carm.readiness",
        "Topic carm.readiness (key: importer_bn, compacted): full CARM readiness snapshots; "
        "a null value deletes the importer.",
    ),
    "holdwatch.alerts.json": (
        AlertEvent,
        "holdwatch.alerts",
        "Topic holdwatch.alerts (key: ccn): alert lifecycle events raised, updated, resolved.",
    ),
    "holdwatch.actions.json": (
        DispatchAction,
        "holdwatch.actions",
        "Topic holdwatch.actions (key: ccn): dispatch acting on an alert in Slack (acknowledge, snooze, "
        "release), applied once per action_id.",
    ),
    "holdwatch.deadletter.json": (
        DeadLetter,
        "holdwatch.deadletter",
        "Topic holdwatch.deadletter: records that could not be used, with the reason and original bytes.",
    ),
}


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema document (validation mode: what a producer must send)."""
    documents: dict[str, dict[str, Any]] = {}
    for name, (model, title, description) in _SCHEMAS.items():
        schema = TypeAdapter(model).json_schema(mode="validation")
        documents[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            **schema,
            "title": title,
            "description": description,
        }
    return documents


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


OPENAPI_FILE: Final = "holdwatch.api.openapi.json"


def rendered_files() -> dict[str, str]:
    """File name → exact file content."""
    files = {name: render(document) for name, document in schema_documents().items()}
    files[OPENAPI_FILE] = render(openapi_document())
    return files


def drifted(directory: Path = JSON_DIR) -> list[str]:
    """Names of the files in `directory` that are missing or differ from the models."""
    stale = []
    for name, text in rendered_files().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def export(directory: Path = JSON_DIR) -> list[str]:
    """Write every schema file into `directory`; return the names of the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = drifted(directory)
    for name, text in rendered_files().items():
        if name in changed:
            (directory / name).write_text(text, encoding="utf-8")
    return changed
