"""The layout's import rules (docs/architecture.md), checked on every module's source.

Each package's `__init__` docstring says what it may import; this test holds the code to it:
the pure core imports no framework, the notify stages no broker, production code no developer
tool (only the CLI's composition root may, to register the dev commands), and Faust stays in
the worker's topology.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELL_LIBRARIES = frozenset({"faust", "mode", "kafka", "aiokafka", "slack_sdk", "prometheus_client"})

# package (dotted prefix) -> top-level or dotted names it must never import
FORBIDDEN: dict[str, frozenset[str]] = {
    "schemas": SHELL_LIBRARIES | {"alerting", "streams", "devtools"},
    "alerting.engine": SHELL_LIBRARIES | {"alerting.notify", "streams", "devtools"},
    "alerting.notify": SHELL_LIBRARIES - {"slack_sdk"} | {"streams", "devtools"},
    "streams": frozenset({"devtools"}),
    "streams.kafka": frozenset({"streams.worker", "streams.notifier", "streams.replay", "streams.cli"}),
    "streams.replay": frozenset({"faust", "streams.worker", "streams.notifier", "streams.cli"}),
    "streams.notifier": frozenset({"faust", "streams.worker", "streams.replay", "streams.cli"}),
    "streams.worker": frozenset({"streams.replay", "streams.cli"}),
    "streams.feeds": frozenset(
        {"faust", "streams.worker", "streams.notifier", "streams.replay", "streams.cli", "alerting.notify"}
    ),
}
# module -> names it alone may import despite its package's rule (and why)
EXCEPTIONS: dict[str, frozenset[str]] = {
    "streams.cli.main": frozenset({"devtools"}),  # registers broker/simulate/demo, finds the local broker
    "alerting.notify.slack": frozenset({"slack_sdk"}),
}
FAUST_MODULES = frozenset(
    {"streams.worker.app", "streams.worker.recovery", "streams.kafka.config", "streams.cli.worker"}
)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in ("schemas", "alerting", "streams", "devtools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[dotted.removesuffix(".__init__")] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement, at any depth (function bodies included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _matches(imported: str, rule: str) -> bool:
    return imported == rule or imported.startswith(rule + ".")


def _violations(module: str, imported: set[str]) -> list[str]:
    allowed = EXCEPTIONS.get(module, frozenset())
    out: list[str] = []
    for package, forbidden in FORBIDDEN.items():
        if not _matches(module, package):
            continue
        for name in sorted(imported):
            if any(_matches(name, rule) for rule in forbidden) and not any(
                _matches(name, a) for a in allowed
            ):
                out.append(f"{module} imports {name} (forbidden in {package})")
    return out


def test_every_module_keeps_its_packages_import_rules() -> None:
    modules = _modules()
    assert len(modules) > 40
    problems = [v for module, path in modules.items() for v in _violations(module, _imports(path))]
    assert problems == []


def test_faust_stays_in_the_worker_topology() -> None:
    users = {m for m, p in _modules().items() if any(_matches(n, "faust") for n in _imports(p))}
    assert users <= FAUST_MODULES


def test_the_rule_checker_catches_a_violation() -> None:
    assert _violations("alerting.engine.rules", {"kafka.admin", "schemas.carm"}) == [
        "alerting.engine.rules imports kafka.admin (forbidden in alerting.engine)"
    ]
    assert _violations("streams.cli.main", {"devtools.broker"}) == []
    assert _violations("streams.worker.app", {"devtools.broker"}) != []


def test_every_package_says_its_concern_and_what_it_may_import() -> None:
    for module, path in _modules().items():
        if path.name != "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert len(doc) > 40, f"{module} has no docstring saying its concern"


@pytest.mark.parametrize(
    ("entry", "forbidden"),
    [
        (
            "alerting.engine.engine, alerting.engine.runner, alerting.engine.ingest",
            SHELL_LIBRARIES | {"streams"},
        ),
        ("alerting.notify.delivery", SHELL_LIBRARIES - {"slack_sdk"} | {"streams"}),
        (
            "streams.cli.main, streams.worker.processor, streams.notifier.service, "
            "streams.replay.publish, streams.backtest",
            frozenset({"devtools"}),
        ),
    ],
)
def test_importing_a_room_loads_nothing_it_must_not(entry: str, forbidden: frozenset[str]) -> None:
    # Transitively too: checked in a fresh interpreter.
    loaded = f"sorted(m for m in sys.modules if m.split('.')[0] in {sorted(forbidden)!r})"
    code = f"import sys, {entry}; print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
