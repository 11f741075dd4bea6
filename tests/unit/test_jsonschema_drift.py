"""The checked-in JSON Schema files are exactly what the models generate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from schemas.jsonschema import JSON_DIR, drifted, export, rendered_files
from streams.cli import schemas as schemas_command

TOPIC_FILES = {
    "emanifest.events.json",
    "rns.events.json",
    "carm.readiness.json",
    "holdwatch.alerts.json",
    "holdwatch.deadletter.json",
    "holdwatch.actions.json",
    "holdwatch.api.openapi.json",  # the status API, not a topic
}


def test_checked_in_schemas_match_the_models() -> None:
    assert drifted(JSON_DIR) == [], "run `holdwatch schemas export` and commit schemas/json/"


def test_there_is_one_schema_per_topic() -> None:
    assert set(rendered_files()) == TOPIC_FILES
    assert {path.name for path in JSON_DIR.glob("*.json")} == TOPIC_FILES


def test_output_is_deterministic_and_ends_with_a_newline() -> None:
    first, second = rendered_files(), rendered_files()
    assert first == second
    for text in first.values():
        assert text.endswith("}\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_schemas_carry_the_contract_rules() -> None:
    emanifest = json.loads(rendered_files()["emanifest.events.json"])
    assert emanifest["discriminator"]["propertyName"] == "event_type"
    assert set(emanifest["discriminator"]["mapping"]) == {
        "cargo_reported",
        "cargo_accepted",
        "cargo_rejected",
        "eta_updated",
        "notice",
        "cancelled",
    }
    reported = emanifest["$defs"]["CargoReported"]["properties"]
    assert reported["occurred_at"] == {"format": "date-time", "title": "Occurred At", "type": "string"}
    assert reported["schema_version"]["const"] == 1
    assert reported["ccn"]["pattern"] == "^[A-Za-z0-9-]{5,25}$"
    dead = json.loads(rendered_files()["holdwatch.deadletter.json"])
    assert "key_mismatch" in json.dumps(dead)


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="holdwatch")
    schemas_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["schemas", "export", *argv])
    result: int = args.func(args, None)
    return result


def test_export_writes_and_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("--check", "--dir", str(tmp_path)) == 1
    assert _cli("--dir", str(tmp_path)) == 0
    assert {path.name for path in tmp_path.iterdir()} == TOPIC_FILES
    assert _cli("--check", "--dir", str(tmp_path)) == 0

    stale = tmp_path / "rns.events.json"
    stale.write_text(stale.read_text(encoding="utf-8").replace("rns_status", "rns_state"), encoding="utf-8")
    capsys.readouterr()
    assert _cli("--check", "--dir", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "rns.events.json" in err
    assert "carm.readiness.json" not in err
    assert drifted(tmp_path) == ["rns.events.json"]
    assert export(tmp_path) == ["rns.events.json"]
    assert drifted(tmp_path) == []
