"""Unit tests see no HOLDWATCH_* variable of the developer's shell: `Settings()` means the defaults."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_holdwatch_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HOLDWATCH_"):
            monkeypatch.delenv(name)
