"""The engine is the functional core: it imports no framework, broker, Slack or metrics client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "alerting" / "engine"
FORBIDDEN = ("faust", "mode", "kafka", "aiokafka", "slack_sdk", "prometheus_client", "streams")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_engine_module_imports_a_shell_library() -> None:
    modules = sorted(ENGINE.glob("*.py"))
    assert len(modules) >= 6
    offenders = {
        p.name: sorted(_imports(p) & set(FORBIDDEN)) for p in modules if _imports(p) & set(FORBIDDEN)
    }
    assert offenders == {}


def test_importing_the_engine_loads_none_of_them() -> None:
    # Transitively too (schemas included): checked in a fresh interpreter.
    code = (
        "import sys, alerting.engine.engine, alerting.engine.runner;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
