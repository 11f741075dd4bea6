"""Routing: dispatch team, then port, then the default channel; clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.notify.routing import RoutingError, load_routing
from tests.fixtures.slack import make_alert


def test_team_then_port_then_default(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    path.write_text('[teams]\neast = "#east"\n[ports]\n"0453" = "#windsor"\n')
    routing = load_routing(path, default_channel="#dispatch")
    assert routing.channel_for(make_alert(team="east", port="0453")) == "#east"
    assert routing.channel_for(make_alert(team="west", port="0453")) == "#windsor"
    assert routing.channel_for(make_alert(team=None, port="0410")) == "#dispatch"
    assert routing.channel_for(make_alert(port=None)) == "#dispatch"


def test_json_file_and_its_own_default(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    path.write_text('{"default": "C0DEFAULT", "teams": {"west": "C0WEST"}}')
    routing = load_routing(path, default_channel="#dispatch")
    assert routing.channel_for(make_alert(team="west")) == "C0WEST"
    assert routing.channel_for(make_alert()) == "C0DEFAULT"
    assert routing.channels() == {"C0DEFAULT", "C0WEST"}


def test_no_file_routes_everything_to_the_default() -> None:
    assert load_routing(None, default_channel="#x").channel_for(make_alert(team="east")) == "#x"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("r.json", "{not json", "not valid"),
        ("r.toml", "teams = 3", "must be a table"),
        ("r.json", '{"teams": {"east": ""}}', "non-empty"),
        ("r.json", '{"chanels": {}}', "unknown keys"),
        ("r.json", "[]", "top level"),
    ],
)
def test_bad_files_are_reported_plainly(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RoutingError, match=message):
        load_routing(path, default_channel="#dispatch")


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match="cannot read"):
        load_routing(tmp_path / "nope.toml", default_channel="#dispatch")
