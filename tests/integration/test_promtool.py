"""promtool on deploy/prometheus: the config and the rules load, and the rule unit tests pass.

promtool comes from Debian's `prometheus` package, which `make install` installs. A missing
promtool fails (it does not skip): CI must never pass without having run the rule tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
INSTALL_HINT = (
    "promtool is not on PATH. Install Prometheus' tools: "
    "apt-get update && apt-get install -y --no-install-recommends prometheus (`make install` does it)"
)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(INSTALL_HINT)
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def test_config_is_valid() -> None:
    result = run_promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_are_valid() -> None:
    rule_files = sorted(
        str(path.relative_to(PROMETHEUS_DIR)) for path in (PROMETHEUS_DIR / "rules").glob("*.yml")
    )
    assert rule_files, "no rule files"
    result = run_promtool("check", "rules", *rule_files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", "tests/holdwatch.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_rule_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The suite must fail when an alert's threshold is wrong, or it proves nothing."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    rules = (PROMETHEUS_DIR / "rules" / "holdwatch.rules.yml").read_text(encoding="utf-8")
    broken = rules.replace("> 30 * 60", "> 20 * 60")
    assert broken != rules
    (tmp_path / "rules" / "holdwatch.rules.yml").write_text(broken, encoding="utf-8")
    shutil.copy(PROMETHEUS_DIR / "tests" / "holdwatch.rules.test.yml", tmp_path / "tests")
    result = subprocess.run(
        [promtool(), "test", "rules", "tests/holdwatch.rules.test.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "HoldwatchNoInput" in result.stdout + result.stderr
